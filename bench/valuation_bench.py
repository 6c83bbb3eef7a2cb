"""Valuation rows: the hourly history of many assets over years, computed once, then recomputed after an edit of
one lot: how long it takes and how many points it rewrites against the hours the edit affects."""

import time
from datetime import UTC, datetime
from pathlib import Path

from bench.dashboards_bench import SYMBOLS, dec, price
from bench.table import Row
from collector.config import Buckets, Pair, parse_config
from collector.portfolio.history import HistoryRecompute, HistoryResult
from collector.records import Candle
from collector.storage.points import valuation_parts
from collector.storage.prices import StoredPrices
from collector.storage.spool import Spool
from collector.storage.sync import PointSync
from collector.storage.writer import Writer, WriterOptions
from tests.dashboard_queries import Organisation

HOUR, DAY = 3600, 86400
GOAL_S = 30.0


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _config(symbols: list[str], first_s: int, edited_s: int, edited_price: str):
    lines = [f"exchanges:\n  bitstamp:\n    pairs: [{', '.join(f'{s}-USD' for s in symbols)}]\nholdings:"]
    for index, symbol in enumerate(symbols):
        lines.append(f"  {symbol}:")
        lines.append(
            f'    - {{date: {_iso(first_s)}, kind: buy, quantity: "2", price: "{dec(price(index, first_s))}"}}'
        )
        lines.append(
            f'    - {{date: {_iso(first_s + 400 * DAY)}, kind: sell, quantity: "0.5", price: "{dec(price(index, first_s + 400 * DAY))}"}}'
        )
    # the lot the edit changes: a second buy of the last asset, a year before now
    lines.append(f'    - {{date: {_iso(edited_s)}, kind: buy, quantity: "1", price: "{edited_price}"}}')
    return parse_config("\n".join(lines) + "\n", "bench.yml")


def _recompute(
    org: Organisation, config, writer: Writer, now_ns: int, memo=None
) -> tuple[float, HistoryResult, list]:
    """`memo`: the last recompute's, as the running collector keeps it between recomputes."""
    store, sync = StoredPrices(org.collector, Buckets(), HOUR), PointSync(org.collector, Buckets())
    submitted = []

    def submit(records):
        submitted.extend(records)
        writer.submit(records)

    try:
        started = time.perf_counter()
        result = HistoryRecompute(config, store, sync, submit).run(now_ns=now_ns, memo=memo)
        if not writer.flush(1800):
            raise RuntimeError("the recomputed history was not stored within 30 minutes")
        elapsed = time.perf_counter() - started
    finally:
        store.close()
        sync.close()
    if result.problems:
        raise RuntimeError(f"valuation problems: {result.problems}")
    hourly = [record for record in submitted if getattr(record, "bucket", None) == "history"]
    if len(hourly) != result.hours.written:
        raise RuntimeError(
            f"{len(hourly):,} hourly points submitted, the recompute says {result.hours.written:,}"
        )
    return elapsed, result, hourly


def valuation_rows(org: Organisation, work: Path, years: int, assets: int) -> list[Row]:
    work.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    now_ns = now * 10**9
    first_s = now - now % HOUR - years * 365 * DAY
    symbols = list(SYMBOLS[:assets])
    writer = Writer(
        org.collector,
        Buckets(),
        Spool(work / "spool"),
        WriterOptions(batch_size=10_000, timeout_s=60, queue_limit=200_000),
    )
    writer.start()
    try:
        batch = []
        for index, symbol in enumerate(symbols):
            for t in range(first_s - DAY, now - now % HOUR, HOUR):
                o, c = price(index, t), price(index, t + HOUR)
                batch.append(
                    Candle(
                        "bitstamp",
                        Pair(symbol, "USD"),
                        HOUR,
                        t,
                        dec(o),
                        dec(max(o, c)),
                        dec(min(o, c)),
                        dec(c),
                        dec(3, 4),
                    )
                )
                if len(batch) == 10_000:
                    writer.submit(batch)
                    batch = []
        writer.submit(batch)
        if not writer.flush(1800):
            raise RuntimeError("the candles were not stored within 30 minutes")
        edited_s = (
            now - now % HOUR - 365 * DAY + 1800
        )  # half past an hour: the next whole hour on is affected
        first, computed, first_points = _recompute(
            org, _config(symbols, first_s, edited_s, "100.00"), writer, now_ns
        )
        edited = _config(symbols, first_s, edited_s, "101.00")
        edit, _, rewritten_points = _recompute(org, edited, writer, now_ns, computed.memo)
    finally:
        writer.close(timeout_s=60)
    if writer.stats.dropped_points or writer.stats.write_errors:
        raise RuntimeError(f"the valuation bench's points were not all stored: {writer.stats}")
    # the edited lot's asset and the portfolio, at every whole hour from the lot on, to the current hour: counted
    # from what was submitted, so a rewrite of the wrong hours (or of another asset) is no match
    hours = range(edited_s + 1800, now - now % HOUR + 1, HOUR)
    affected = {("position", symbols[-1], t * 10**9) for t in hours} | {
        ("portfolio", None, t * 10**9) for t in hours
    }
    rewritten = {
        (valuation_parts(r).measurement, getattr(r, "asset", None), r.time_ns) for r in rewritten_points
    }
    return [
        Row(
            f"valuation: first compute, {years} y x {assets} assets",
            f"{first:.1f} s ({len(first_points):,} points)",
            "(reported)",
        ),
        Row("valuation: recompute after a lot edit", f"{edit:.1f} s", "< 30 s", edit < GOAL_S),
        Row(
            "valuation: points rewritten / hours affected",
            f"{len(rewritten_points):,} / {len(affected):,}",
            "equal",
            len(rewritten_points) == len(affected) and rewritten == affected,
        ),
    ]
