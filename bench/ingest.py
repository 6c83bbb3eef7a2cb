"""Ingest rows: a burst of trades through a real `collector run` process, beside the two baselines (one synchronous
write per trade; prebuilt line protocol in large batches), and the steady-state cost of a home server's feed."""

import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from bench.process import cpu_seconds, memory_mb
from bench.pusher import Pusher, burst
from bench.table import Row
from collector.config import ExchangeConfig, Pair
from collector.exchanges.bitstamp import Bitstamp
from collector.storage.points import to_line, trade_point
from tests.dashboard_queries import Organisation
from tests.integration.harness import collector_env, quiet, sigterm, wait_for, write_config
from tests.replay.bitstamp import SAMPLE_TICKER, BitstampReplay

FIRST_ID = 300_000_000
LP_BATCH = 10_000
PROBE_S = 0.1
STEADY_SYMBOLS = ("BTC", "ETH", "LTC", "XRP", "BCH", "LINK", "XLM", "UNI", "AAVE", "SOL")


def ingest_rows(influx, org: Organisation, work: Path, trades: int, sync_trades: int) -> list[Row]:
    start_us = (
        time.time_ns() // 1000
    ) - 3600 * 10**6  # an hour ago: inside the live bucket and a short range
    prebuilt = prebuilt_rate(influx, org, trades, start_us)
    sync = sync_rate(influx, org, sync_trades, start_us)
    rate, p99, peak_mb, detail = end_to_end(org, work, trades, start_us)
    return [
        Row("ingest: sync write per trade (a)", f"{sync:,.0f} trades/s ({sync_trades:,} trades)"),
        Row("ingest: prebuilt LP, 10k batches (b)", f"{prebuilt:,.0f} points/s ({trades:,} points)"),
        Row(
            "ingest: collector end to end",
            f"{rate:,.0f} trades/s ({trades:,} trades; {detail})",
            ">= 50x (a), >= 50% (b)",
            rate >= 50 * sync and rate >= 0.5 * prebuilt,
        ),
        Row(
            "ingest: vs (a) / vs (b)",
            f"{rate / sync:.0f}x / {100 * rate / prebuilt:.0f} %",
            "50x / 50 %",
            rate >= 50 * sync and rate >= 0.5 * prebuilt,
        ),
        Row("ingest: p99 trade-to-queryable", f"{p99:.2f} s (probed every {PROBE_S} s)", "(reported)"),
        Row("ingest: collector peak RSS", f"{peak_mb:.0f} MB", "< 80 MB", peak_mb < 80),
    ]


def _lines(count: int, start_us: int):
    """The line protocol the collector makes of the burst's trades, in batches."""
    adapter = Bitstamp(ExchangeConfig("bitstamp", (Pair("BTC", "USD"),)))
    adapter.subscribe_messages([Pair("BTC", "USD")])
    batch = []
    for message in burst("btcusd", count, FIRST_ID, start_us):
        batch.extend(to_line(trade)[1] for trade in adapter.parse(message).trades)
        if len(batch) == LP_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _bench_bucket(client: InfluxDBClient, org: str, name: str) -> str:
    org_id = client.organizations_api().find_organizations(org=org)[0].id
    client.buckets_api().create_bucket(bucket_name=name, org_id=org_id)
    return name


def prebuilt_rate(influx, org: Organisation, count: int, start_us: int) -> float:
    """influxd alone: the same points as line protocol built beforehand, written 10k lines a request."""
    with InfluxDBClient(url=influx.url, token=influx.admin_token, org=org.name, timeout=120_000) as client:
        bucket = _bench_bucket(client, org.name, "bench_prebuilt")
        write = client.write_api(write_options=SYNCHRONOUS)
        spent = 0.0
        for batch in _lines(count, start_us):  # built outside the clock
            started = time.perf_counter()
            write.write(bucket=bucket, record=batch)
            spent += time.perf_counter() - started
    return count / spent


def sync_rate(influx, org: Organisation, count: int, start_us: int) -> float:
    """The original guide's path: a Point per trade, written synchronously."""
    with InfluxDBClient(url=influx.url, token=influx.admin_token, org=org.name, timeout=30_000) as client:
        bucket = _bench_bucket(client, org.name, "bench_sync")
        write = client.write_api(write_options=SYNCHRONOUS)
        adapter = Bitstamp(ExchangeConfig("bitstamp", (Pair("BTC", "USD"),)))
        adapter.subscribe_messages([Pair("BTC", "USD")])
        started = time.perf_counter()
        for message in burst("btcusd", count, FIRST_ID, start_us):
            for trade in adapter.parse(message).trades:
                write.write(bucket=bucket, record=trade_point(trade))
        return count / (time.perf_counter() - started)


class Watermark:
    """The highest trade id queryable, probed every PROBE_S: when each sampled trade became readable."""

    QUERY = (
        'from(bucket: "crypto_live") |> range(start: -1d) '
        '|> filter(fn: (r) => r._measurement == "trade" and r._field == "trade_id" and r.pair == "BTC-USD") '
        "|> last()"
    )

    def __init__(self, settings):
        self.client = InfluxDBClient(url=settings.url, token=settings.token, org=settings.org, timeout=30_000)
        self.seen: list[tuple[float, int]] = []  # (perf_counter, highest id)
        self.error: Exception | None = None  # a failed probe ends probing: the wait says why, at once
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        query = self.client.query_api()
        while not self.stop.wait(PROBE_S):
            try:
                tables = query.query(self.QUERY)
            except Exception as error:  # noqa: BLE001 - handed to the waiting thread, which raises it
                self.error = error
                return
            ids = [int(record.get_value()) for table in tables for record in table.records]
            self.seen.append((time.perf_counter(), max(ids, default=0)))

    def highest(self) -> int:
        return self.seen[-1][1] if self.seen else 0

    def queryable_at(self, trade_id: int) -> float:
        return next(at for at, highest in self.seen if highest >= trade_id)

    def count(self) -> int:
        flux = self.QUERY.replace("|> last()", "|> count()")
        tables = self.client.query_api().query(flux)
        return sum(int(record.get_value()) for table in tables for record in table.records)


def _collector(org: Organisation, work: Path, ws_url: str, replay: BitstampReplay, pairs: list[str]):
    """Config, environment and the alive file of a `collector run` fed by the pusher."""
    work.mkdir(parents=True, exist_ok=True)
    endpoints = SimpleNamespace(ws_url=ws_url, rest_url=replay.rest_url)
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    config = work / "portfolio.yml"
    write_config(config, endpoints, pairs=pairs, since=since)
    env = collector_env(org.collector, work, HODLBOARD_ALIVE_FILE=str(work / "alive.json"))
    return config, env


@contextmanager
def run_process(env: dict, config: Path):
    """`collector run` as Docker runs it; its log goes to a file (a pipe nobody reads would stall it)."""
    profile = os.environ.get(
        "BENCH_PROFILE"
    )  # a file: the collector runs under pyinstrument, its report there
    wrapper = ["-m", "pyinstrument", "-r", "text", "-o", profile] if profile else []
    with (config.parent / "collector.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, *wrapper, "-m", "collector", "run", "--config", str(config)],
            env=env,
            cwd=config.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _log_tail(config: Path) -> str:
    return (config.parent / "collector.log").read_text()[-3000:]


def end_to_end(org: Organisation, work: Path, count: int, start_us: int) -> tuple[float, float, float, str]:
    watermark = Watermark(org.collector)
    last_id = FIRST_ID + count - 1
    with BitstampReplay() as replay, Pusher() as pusher:
        quiet(replay)
        config, env = _collector(org, work / "ingest", pusher.url, replay, ["BTC-USD"])
        with run_process(env, config) as process:
            pusher.wait_subscribed({"btcusd"})
            watermark.thread.start()
            cpu_before = cpu_seconds(process.pid)
            started = time.perf_counter()
            pusher.push(burst("btcusd", count, FIRST_ID, start_us), FIRST_ID)
            pushed = time.perf_counter() - started
            wait_for(
                lambda: watermark.highest() >= last_id or process.poll() is not None or watermark.error,
                timeout=1800,
                what="every trade queryable",
            )
            if watermark.error:
                raise RuntimeError(f"the queryable probe failed: {watermark.error!r}")
            if process.poll() is not None:
                raise RuntimeError(f"collector run ended early:\n{_log_tail(config)}")
            elapsed = watermark.queryable_at(last_id) - started
            # the collector's CPU time a trade: steadier than the rates under the machine's other load
            cpu_us = (cpu_seconds(process.pid) - cpu_before) / count * 1e6
            peak_mb = memory_mb(process.pid, "VmHWM")
            watermark.stop.set()
            watermark.thread.join()
            stored = watermark.count()
            sigterm(process)
    if stored != count:
        raise RuntimeError(
            f"{stored:,} of {count:,} trades stored: the burst lost or duplicated data\n{_log_tail(config)}"
        )
    latencies = sorted(watermark.queryable_at(i) - at for i, at in pusher.sent_at.items())
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
    watermark.client.close()
    detail = f"all {stored:,} stored, pushed in {pushed:.0f} s, {cpu_us:.0f} us of collector CPU a trade"
    return count / elapsed, p99, peak_mb, detail


STEADY_PER_S = 50
STORED_TRADES = (
    'from(bucket: "crypto_live") |> range(start: -1d) '
    '|> filter(fn: (r) => r._measurement == "trade" and r._field == "trade_id") |> count() |> group() |> sum()'
)


def stored_trade_count(settings) -> int:
    with InfluxDBClient(url=settings.url, token=settings.token, org=settings.org, timeout=30_000) as client:
        tables = client.query_api().query(STORED_TRADES)
        return sum(int(record.get_value()) for table in tables for record in table.records)


def steady_rows(org: Organisation, work: Path, seconds: float) -> list[Row]:
    """`collector run` with 10 pairs at 50 trades/s each: CPU of one core and memory, over `seconds`. The figures
    count only if the feed kept its rate and every trade fed was stored: a collector that idles or drops trades
    is cheap."""
    pairs = [f"{symbol}-USD" for symbol in STEADY_SYMBOLS]
    symbols = {pair.replace("-", "").lower() for pair in pairs}
    sent: list[int] = []
    with BitstampReplay() as replay, Pusher() as pusher:
        quiet(replay)
        replay.tickers = dict.fromkeys(symbols, SAMPLE_TICKER)
        config, env = _collector(org, work / "steady", pusher.url, replay, pairs)
        with run_process(env, config) as process:
            pusher.wait_subscribed(symbols)
            feed = threading.Thread(
                target=lambda: sent.append(
                    pusher.feed(sorted(symbols), STEADY_PER_S, seconds + 10, FIRST_ID * 2)
                )
            )
            feed.start()
            time.sleep(10)  # warm-up: start-up backfill and first allocations are not the steady state
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            rss = []
            while feed.is_alive():
                rss.append(memory_mb(process.pid, "VmRSS"))
                feed.join(1.0)
            cpu = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - wall_before) * 100
            peak = memory_mb(process.pid, "VmHWM")
            if not sent:
                raise RuntimeError(f"the steady feed failed\n{_log_tail(config)}")
            try:
                wait_for(
                    lambda: stored_trade_count(org.collector) == sent[0], timeout=120, what="steady trades"
                )
            except Exception as error:
                raise RuntimeError(
                    f"{stored_trade_count(org.collector):,} of {sent[0]:,} steady trades stored ({error})\n"
                    f"{_log_tail(config)}"
                ) from error
            sigterm(process)
    per_pair = sent[0] / len(symbols) / (seconds + 10)
    fed = per_pair >= 0.95 * STEADY_PER_S  # a busy machine may starve the pusher: then the figure is too low
    return [
        Row(
            "steady: CPU, 10 pairs x 50 trades/s",
            f"{cpu:.1f} % of a core ({seconds:.0f} s; fed {per_pair:.1f} trades/s a pair, {sent[0]:,} all stored)",
            "< 5 %",
            cpu < 5 and fed,
        ),
        Row(
            "steady: RSS (max sampled / peak)",
            f"{max(rss):.0f} MB / {peak:.0f} MB",
            "< 80 MB",
            peak < 80 and fed,
        ),
    ]
