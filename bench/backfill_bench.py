"""Backfill row: hourly candles of many years and pairs, from the replay server (in a process of its own, so it
does not share the collector's interpreter), rate limit off; requests made against the fewest possible."""

import math
import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.table import Row
from collector.config import parse_config
from collector.exchanges.base import RateLimit
from collector.http import HttpClient
from collector.service import Collector
from tests.dashboard_queries import Organisation
from tests.replay.bitstamp import BitstampReplay

HOUR = 3600
SYMBOLS = ("BTC", "ETH", "LTC", "XRP", "BCH", "LINK", "XLM", "UNI", "AAVE", "SOL")


class CountingReplay(BitstampReplay):
    """Counts the candle requests it answers: the requests made, as the exchange would see them."""

    def __init__(self):
        super().__init__()
        self.candle_requests: list[str] = []  # appended from the server's threads: a list append is atomic

    def _answer(self, raw_path: str):
        if "/ohlc/" in raw_path:
            self.candle_requests.append(raw_path)
        return super()._answer(raw_path)


def _serve(connection, start_s: int) -> None:
    """Child process: a replay serving candles from `start_s`, until told to stop; then says how many candle
    requests it answered."""
    with CountingReplay() as replay:
        replay.candle_start_s = start_s
        connection.send(replay.rest_url)
        connection.recv()
        connection.send(len(replay.candle_requests))


def backfill_rows(org: Organisation, work: Path, years: int, pair_count: int) -> list[Row]:
    now = int(time.time())
    since = datetime.fromtimestamp(now - years * 365 * 86400, UTC).date()
    start_s = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp())
    pairs = [f"{symbol}-USD" for symbol in SYMBOLS[:pair_count]]
    parent, child = multiprocessing.get_context("fork").Pipe()
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(child, start_s), daemon=True)
    server.start()
    try:
        rest_url = parent.recv()
        text = (
            f"exchanges:\n  bitstamp:\n    pairs: [{', '.join(pairs)}]\n    rest_url: {rest_url}\n"
            f"backfill:\n  interval: 1h\n  since: {since.isoformat()}\n"
        )
        work.mkdir(parents=True, exist_ok=True)
        config = parse_config(text, "bench.yml")
        collector = Collector(work / "portfolio.yml", config, org.collector, work / "spool")
        collector.writer.start()
        runtime = collector.runtime(config.exchanges["bitstamp"])
        runtime.http = HttpClient("bitstamp", RateLimit(requests=10**9, per_seconds=1), stop=collector.stop)
        started = time.perf_counter()
        results = collector.backfill(runtime, list(config.exchanges["bitstamp"].pairs))
        if not collector.writer.flush(1800):
            raise RuntimeError("the backfilled candles were not all stored within 30 minutes")
        elapsed = time.perf_counter() - started
        collector.writer.close()
        if collector.writer.stats.dropped_points or collector.writer.stats.write_errors:
            raise RuntimeError(f"the backfilled candles were not all stored: {collector.writer.stats}")
        collector.reader.close()
        runtime.http.close()
    finally:
        parent.send("stop")
        served = parent.recv() if parent.poll(10) else None
        server.join(10)
    candles = sum(result.candles for result in results)
    requests = sum(result.requests for result in results)
    if served != requests:
        raise RuntimeError(f"the replay answered {served} candle requests, the backfill counted {requests}")
    # each pair's candles from `since` to the last closed hour, at most 1000 a request
    closed = (now - now % HOUR - start_s) // HOUR
    needed = pair_count * math.ceil(closed / 1000)
    failed = [
        f"{result.pair}: {result.status}" for result in results if result.status not in ("ok", "up to date")
    ]
    if failed or candles != pair_count * closed:
        raise RuntimeError(f"backfill stored {candles:,} of {pair_count * closed:,} candles; {failed}")
    return [
        Row(
            f"backfill: {years} y x {pair_count} pairs hourly",
            f"{candles / elapsed:,.0f} candles/s ({candles:,} in {elapsed:.0f} s)",
            "(reported)",
        ),
        Row("backfill: requests made / needed", f"{requests} / {needed}", "equal", requests == needed),
    ]
