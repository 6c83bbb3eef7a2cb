"""Dashboard rows: every panel query, substituted as Grafana does (tests/grafana_flux.py), timed on a year of hourly
history for many assets plus live trades, read with the read-only token Grafana's data source gets."""

import math
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

from bench.table import Row
from collector.config import Buckets, Pair
from collector.records import Asset, Candle, PortfolioValue, Position, Ticker, Trade, Transaction
from collector.storage.spool import Spool
from collector.storage.writer import Writer, WriterOptions
from tests.dashboard_queries import Organisation, Stack, load_dashboards, panel_targets
from tests.dashboard_seed import health_lines

HOUR, DAY, NS = 3600, 86400, 1_000_000_000
SYMBOLS = [
    "BTC",
    "ETH",
    "SOL",
    "LTC",
    "XRP",
    "BCH",
    "LINK",
    "XLM",
    "UNI",
    "AAVE",
    "ADA",
    "DOT",
    "DOGE",
    "AVAX",
    "MATIC",
    "ATOM",
    "ALGO",
    "FIL",
    "ETC",
    "NEAR",
]
TRADE_PAIRS = 5
TRADES_PER_S = 5
SPARSE_TRADE_S = (
    300  # before the full-rate hours, one trade per pair every 5 minutes (see README: Performance)
)
GRAFANA_CONCURRENCY = 6  # a browser's connections to one host: how many panel queries run at once
PANEL_GOAL_S, DASHBOARD_GOAL_S = 0.3, 1.0


def price(index: int, t: float) -> float:
    base = 10.0 * (index + 1) ** 2
    return base * (1 + 0.1 * math.sin(2 * math.pi * t / (30 * DAY) + index) + 0.004 * math.sin(t / HOUR))


def dec(value: float, places: int = 2) -> Decimal:
    return Decimal(f"{value:.{places}f}")


def _records(now: int, assets: int, full_rate_h: int):
    pairs = [Pair(symbol, "USD") for symbol in SYMBOLS[:assets]]
    last_closed = now - now % HOUR - HOUR
    for index, pair in enumerate(pairs):
        # the traded pairs on a second exchange too, a little dearer: what the panels comparing exchanges compare
        for exchange, markup in [("bitstamp", 1.0)] + [("kraken", 1.001)] * (index < TRADE_PAIRS):
            for t in range(last_closed - 365 * DAY, last_closed + 1, HOUR):
                o, c = price(index, t) * markup, price(index, t + HOUR) * markup
                yield Candle(
                    exchange,
                    pair,
                    HOUR,
                    t,
                    dec(o),
                    dec(max(o, c) * 1.002),
                    dec(min(o, c) * 0.998),
                    dec(c),
                    dec(7, 4),
                )
        for t in range(now - 2 * DAY, now, 300):
            yield Ticker(
                "bitstamp", pair, t * NS, last=dec(price(index, t)), bid=dec(price(index, t) * 0.999)
            )
        logo = f"https://assets.example.org/{pair.base.lower()}.png"
        yield Asset(pair.base, (now - HOUR) * NS, pair.base.title(), "coin", logo, 8, Decimal("19000000"))
        yield Transaction(
            pair.base,
            "buy",
            (now - 364 * DAY) * NS,
            Decimal("1.5"),
            dec(price(index, now - 364 * DAY)),
            Decimal("1"),
            "USD",
        )
    trade_id = 1
    full_from = now - full_rate_h * HOUR
    for index, pair in enumerate(pairs[:TRADE_PAIRS]):
        times = list(range(now - 90 * DAY, full_from, SPARSE_TRADE_S))
        times += [full_from + step / TRADES_PER_S for step in range(full_rate_h * HOUR * TRADES_PER_S)]
        for t in times:
            trade_id += 1
            yield Trade(
                "bitstamp",
                pair,
                trade_id,
                dec(price(index, t)),
                dec(0.01 + (trade_id % 50) / 100, 6),
                "buy" if trade_id % 2 else "sell",
                int(t * NS),
            )
    for t in range(now - now % HOUR - 365 * DAY, now, HOUR):
        yield from _valuation(pairs, t, "history")
    for t in range(now - 3 * HOUR, now, 30):
        yield from _valuation(pairs, t, "live")


def _valuation(pairs, t: int, bucket: str):
    total = cost = Decimal(0)
    for index, pair in enumerate(pairs):
        unit = dec(price(index, t))
        value, basis = Decimal("1.5") * unit, dec(price(index, t - 364 * DAY)) * Decimal("1.5") + 1
        total, cost = total + value, cost + basis
        yield Position(
            pair.base,
            t * NS,
            bucket,
            Decimal("1.5"),
            unit,
            value,
            basis,
            value - basis,
            Decimal(0),
            (value - basis) / basis * 100,
        )
    yield PortfolioValue(t * NS, bucket, total, cost, total - cost, Decimal(0), (total - cost) / cost * 100)


def seed(org: Organisation, work: Path, assets: int, full_rate_h: int) -> tuple[int, int]:
    now = int(time.time())
    writer = Writer(
        org.collector,
        Buckets(),
        Spool(work / "spool"),
        WriterOptions(batch_size=10_000, timeout_s=60, queue_limit=200_000),
    )
    writer.start()
    batch = []
    for record in _records(now, assets, full_rate_h):
        batch.append(record)
        if len(batch) == 10_000:
            writer.submit(batch)
            batch = []
    writer.submit(batch)
    for line in health_lines(now):
        writer.submit_line("live", line)
    if not writer.flush(1800):
        raise RuntimeError("the dashboard data was not stored within 30 minutes")
    writer.close(timeout_s=60)
    stats = writer.stats
    if stats.dropped_points or stats.write_errors:
        raise RuntimeError(f"the dashboard data was not all stored: {stats}")
    return now, stats.written_points


def dashboard_rows(influx, org: Organisation, work: Path, assets: int, full_rate_h: int) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    now, points = seed(org, work, assets, full_rate_h)
    dashboards = load_dashboards()
    targets = panel_targets(dashboards)
    stack = Stack(influx.url, org.name, org.grafana_token, now, dashboards)
    for name in dashboards:  # variables first, as Grafana resolves them before the panels
        stack.variables(name, "1y")
        stack.variables(name, "1h")
    for target in targets:  # one warm-up pass: a dashboard is seldom opened on a cold database
        stack.run_all(target, "1y")
    rows = [
        Row(
            "dashboards: data",
            f"{points:,} points ({assets} assets, {min(assets, TRADE_PAIRS)} of them on 2 exchanges; "
            f"trades: 5/s for {full_rate_h} h, then 1/5 min to 90 d)",
        )
    ]
    for range_name in ("1y", "1h"):
        timed, empty = [], set()
        for target in targets:
            for outcome in _answered(stack.run_all(target, range_name), target):
                timed.append((outcome.seconds, target.id))
                if not outcome.result.rows:
                    empty.add(target.id)
        slowest, title = max(timed)
        over = [title for seconds, title in timed if seconds >= PANEL_GOAL_S]
        figure = f"slowest {slowest * 1000:.0f} ms ({title}), {len(timed)} queries"
        if over:
            figure += f"; over 300 ms: {', '.join(sorted(set(over)))}"
        if empty:  # fast because it found nothing: Grafana shows No data, and the time says little
            figure += f"; no rows: {', '.join(sorted(empty))}"
        goal = "every panel < 300 ms" if range_name == "1y" else "(reported)"
        met = not over and not empty if range_name == "1y" else None
        rows.append(Row(f"dashboards: panels at {range_name}", figure, goal, met))
    portfolio = [target for target in targets if target.dashboard == "portfolio"]
    started = time.perf_counter()
    with ThreadPoolExecutor(GRAFANA_CONCURRENCY) as pool:
        answers = list(pool.map(lambda target: stack.run_all(target, "1y"), portfolio))
    whole = time.perf_counter() - started
    empty = sorted(
        target.id
        for target, outcomes in zip(portfolio, answers, strict=True)
        for outcome in _answered(outcomes, target)
        if not outcome.result.rows
    )
    rows.append(
        Row(
            "dashboards: whole portfolio at 1y",
            f"{whole * 1000:.0f} ms ({len(portfolio)} queries, {GRAFANA_CONCURRENCY} at a time)"
            + (f"; no rows: {', '.join(empty)}" if empty else ""),
            "< 1 s",
            whole < DASHBOARD_GOAL_S and not empty,
        )
    )
    return rows


def _answered(outcomes, target):
    """The outcomes, once none failed: a query that fails is fast and would pass its goal."""
    for outcome in outcomes:
        if outcome.result.error:
            raise RuntimeError(f"{target.id}: {outcome.result.error}\n{outcome.flux}")
    return outcomes
