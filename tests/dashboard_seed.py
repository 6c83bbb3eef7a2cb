"""A year of data for the dashboards, written through the collector's own Writer like every record it stores.

Two exchanges x two pairs: trades (3 days, one a minute), hourly candles (a year), tickers (2 days, every
5 minutes), coin metadata, transactions, hourly and live valuations (SOL is a bare quantity: no cost basis,
so its unknown figures are absent), and collector health samples. Prices are smooth deterministic waves.
Two events make the alert rules fire: Kraken's ETH-USD feed stops 20 minutes before `now`, and Bitstamp's
BTC-USD trades ten times its usual volume in the last hour.
"""

import math
import time
from decimal import Decimal
from pathlib import Path

from collector.config import Buckets, Pair
from collector.influx_settings import InfluxSettings
from collector.records import Asset, Candle, PortfolioValue, Position, Ticker, Trade, Transaction
from collector.storage.points import health_point
from collector.storage.spool import Spool
from collector.storage.writer import Writer, WriterOptions

HOUR, DAY = 3600, 86400
NS = 1_000_000_000
EXCHANGES = ("bitstamp", "kraken")
PAIRS = (Pair("BTC", "USD"), Pair("ETH", "USD"))
BASE_PRICE = {"BTC": 60000.0, "ETH": 3000.0, "SOL": 150.0}
HOLDINGS = {
    "BTC": (Decimal("0.5"), Decimal("20000")),
    "ETH": (Decimal("4"), Decimal("8000")),
    "SOL": (Decimal("10"), None),
}
REALIZED = Decimal("1500")
STALE_FEED = ("kraken", "ETH-USD")
SPIKE_FEED = ("bitstamp", "BTC-USD")


def price(asset: str, t: float, exchange: str = "bitstamp") -> float:
    wave = 0.1 * math.sin(2 * math.pi * t / (30 * DAY)) + 0.02 * math.sin(2 * math.pi * t / DAY)
    wave += 0.004 * math.sin(2 * math.pi * t / HOUR)
    return BASE_PRICE[asset] * (1 + wave) * (1.001 if exchange == "kraken" else 1.0)


def dec(value: float, places: int = 2) -> Decimal:
    return Decimal(f"{value:.{places}f}")


def trades(now: int):
    trade_id = 1_000_000
    for exchange in EXCHANGES:
        for pair in PAIRS:
            feed = (exchange, str(pair))
            stop = now - 20 * 60 if feed == STALE_FEED else now - 5
            for t in range(now - 3 * DAY, stop, 60):
                trade_id += 1
                amount = 0.01 + 0.5 * ((trade_id * 7919) % 100) / 100
                if feed == SPIKE_FEED and t > now - HOUR:
                    amount *= 10
                side = "buy" if trade_id % 2 else "sell"
                price_t = dec(price(pair.base, t, exchange))
                yield Trade(exchange, pair, trade_id, price_t, dec(amount, 6), side, t * NS + trade_id % NS)


def candles(now: int):
    last_closed = now - now % HOUR - HOUR
    for exchange in EXCHANGES:
        for pair in PAIRS:
            for t in range(last_closed - 365 * DAY, last_closed + 1, HOUR):
                o, c = price(pair.base, t, exchange), price(pair.base, t + HOUR, exchange)
                h, low = max(o, c) * 1.002, min(o, c) * 0.998
                volume = 5 + (t // HOUR) % 17
                yield Candle(exchange, pair, HOUR, t, dec(o), dec(h), dec(low), dec(c), dec(volume, 4))


def tickers(now: int):
    for exchange in EXCHANGES:
        for pair in PAIRS:
            for t in range(now - 2 * DAY, now, 300):
                last = price(pair.base, t, exchange)
                yield Ticker(
                    exchange,
                    pair,
                    t * NS,
                    last=dec(last),
                    bid=dec(last * 0.9995),
                    ask=dec(last * 1.0005),
                    open=dec(price(pair.base, t - DAY, exchange)),
                    high=dec(last * 1.03),
                    low=dec(last * 0.97),
                    volume=dec(1234.5, 4),
                    vwap=dec(last * 0.999),
                    change_24h_pct=dec((last / price(pair.base, t - DAY, exchange) - 1) * 100, 4),
                )


def assets(now: int):
    for symbol, name in (("BTC", "Bitcoin"), ("ETH", "Ethereum"), ("SOL", "Solana")):
        logo = f"https://assets.example.org/{symbol.lower()}.png"
        yield Asset(symbol, (now - HOUR) * NS, name, "coin", logo, 8, Decimal("19000000"))


def transactions(now: int):
    yield Transaction(
        "BTC", "buy", (now - 300 * DAY) * NS, Decimal("0.6"), Decimal("30000"), Decimal("5"), "USD", "first"
    )
    yield Transaction(
        "ETH", "buy", (now - 200 * DAY) * NS, Decimal("4"), Decimal("2000"), Decimal("3"), "USD"
    )
    yield Transaction("BTC", "sell", (now - 20 * DAY) * NS, Decimal("0.1"), Decimal("65000"), None, "USD")
    yield Transaction("SOL", "transfer_in", (now - 5 * DAY) * NS, Decimal("10"))
    yield Transaction(
        "ETH", "buy", (now - 30 * 60) * NS, Decimal("0.01"), Decimal("3100"), Decimal("0.5"), "USD"
    )


def valuation(t: int, bucket: str):
    total_value, total_cost = Decimal(0), Decimal(0)
    for asset, (quantity, cost) in HOLDINGS.items():
        unit = dec(price(asset, t))
        value = quantity * unit
        total_value += value
        known = {}
        if cost is not None:
            total_cost += cost
            known = dict(cost_basis=cost, unrealized_pnl=value - cost, pnl_pct=(value - cost) / cost * 100)
        realized = REALIZED if asset == "BTC" else Decimal(0)
        yield Position(asset, t * NS, bucket, quantity, unit, value, realized_pnl=realized, **known)
    unrealized = total_value - total_cost  # SOL has no cost basis: the whole value counts as gain here
    yield PortfolioValue(
        t * NS, bucket, total_value, total_cost, unrealized, REALIZED, unrealized / total_cost * 100
    )


def valuations(now: int):
    first_hour = now - now % HOUR - 365 * DAY
    for t in range(first_hour, now, HOUR):
        yield from valuation(t, "history")
    for t in range(now - 3 * HOUR, now, 30):
        yield from valuation(t, "live")


def health_lines(now: int):
    """Cumulative counters per exchange, hourly for 90 days then every 10 s for 3 hours (a restart resets them)."""
    times = list(range(now - 90 * DAY, now - 3 * HOUR, HOUR)) + list(range(now - 3 * HOUR, now, 10))
    restart = now - 2 * DAY
    for exchange in EXCHANGES:
        for t in times:
            since = t - (restart if t >= restart else now - 91 * DAY)
            counters = {
                "messages": since * 3,
                "trades": since * 2,
                "errors": since // 3600,
                "reconnects": since // 7200,
                "gap_filled": since // 600,
                "dropped_points": 0,
                "writer_restarts": since // (30 * DAY),
                "rate_limited": since // 86400,
                "connected": 1,
                "last_message_age_s": float(t % 7),
                "write_latency_ms": 5.0 + t % 13,
                "spool_points": 0 if t % 3600 else 120,
                "backfill_lag_s": float(t % HOUR),
                "unrecoverable_gap_s": 30.0 if t % (7 * DAY) < HOUR else 0.0,
                "inexact_values": since // (7 * DAY),
            }
            yield health_point(exchange, counters, time_ns=t * NS).to_line_protocol()


def seed(settings: InfluxSettings, buckets: Buckets, spool_dir: Path, now: int | None = None) -> int:
    """Writes everything; returns `now` (epoch seconds) the data was built around."""
    now = now or int(time.time())
    writer = Writer(settings, buckets, Spool(spool_dir), WriterOptions(batch_size=5000, timeout_s=30))
    writer.start()
    for records in (trades, candles, tickers, assets, transactions, valuations):
        writer.submit(records(now))
    for line in health_lines(now):
        writer.submit_line("live", line)
    assert writer.flush(300), (
        "the seed was not stored within 5 minutes"
    )  # beyond the queue bound it goes via the spool
    writer.close(timeout_s=30)
    stats = writer.stats
    assert stats.write_errors == 0 and stats.dropped_points == 0 and stats.spool_points == 0, stats
    return now
