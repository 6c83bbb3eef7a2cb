"""Running the real collector in a background thread against replay servers and the real influxd."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from influxdb_client import InfluxDBClient

from collector.bootstrap import Bootstrap
from collector.config import Buckets, Config, parse_config
from collector.heartbeat import read_beat
from collector.influx_settings import InfluxSettings
from collector.service import Collector, RunOptions
from collector.storage.reader import flux_query
from collector.storage.writer import WriterOptions
from collector.stream import StreamOptions
from tests.influxd import ROOT

FAST = RunOptions(
    reload_s=0.2,
    health_s=0.5,
    shutdown_s=8,
    writer=WriterOptions(flush_interval_s=0.1, timeout_s=2, backoff_s=0.1, max_backoff_s=0.5),
    stream=StreamOptions(
        open_timeout_s=5, pong_timeout_s=1, backoff_first_s=0.05, backoff_max_s=0.5, drain_s=0.2
    ),
)


def write_config(
    path: Path,
    replay,
    pairs=("BTC-USD",),
    extra: str = "",
    since: str = "2020-01-01",
    interval: str = "1h",
    exchange: str = "bitstamp",
) -> Config:
    text = (
        "exchanges:\n"
        f"  {exchange}:\n"
        f"    pairs: [{', '.join(pairs)}]\n"
        f"    ws_url: {replay.ws_url}\n"
        f"    rest_url: {replay.rest_url}\n"
        "backfill:\n"
        f"  interval: {interval}\n"
        "  every: 12h\n"
        f"  since: {since}\n" + extra
    )
    path.write_text(text)
    return parse_config(text, str(path))


class RunningCollector:
    def __init__(self, collector: Collector):
        self.collector = collector
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop_event = asyncio.Event()
            await self.collector.run(self.stop_event)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def start(self) -> "RunningCollector":
        self.thread.start()
        return self

    def stop(self, timeout: float = 15) -> float:
        started = time.monotonic()
        while self.stop_event is None and self.thread.is_alive():
            time.sleep(0.01)
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "collector did not stop"
        if self.error:
            raise self.error
        return time.monotonic() - started

    def health(self, exchange: str = "bitstamp"):
        wait_for(lambda: exchange in self.collector.exchanges, what=f"{exchange} to start")
        return self.collector.exchanges[exchange].health


@contextmanager
def running(config_path: Path, config: Config, settings, spool_dir: Path, options: RunOptions = FAST):
    runner = RunningCollector(Collector(config_path, config, settings, spool_dir, options)).start()
    try:
        yield runner
    finally:
        if runner.thread.is_alive():
            runner.stop()


@contextmanager
def streaming(tmp_path: Path, replay, settings, pairs=("BTC-USD",)):
    """The usual test set-up: a portfolio.yml pointing at the replay, and the collector running on it."""
    config = write_config(tmp_path / "portfolio.yml", replay, pairs=pairs)
    with running(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool") as runner:
        replay.wait_subscribed(replay.symbol(pairs[0]))
        yield runner


def wait_for(condition, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stored_trades(client: InfluxDBClient, org: str, pair: str, bucket: str = "crypto_live") -> list[dict]:
    query = flux_query(
        """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "trade" and r.pair == {pair})
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
""",
        bucket=bucket,
        pair=pair,
    )
    tables = client.query_api().query(query, org=org)
    return [record.values for table in tables for record in table.records]


def same_price(stored: float, exact: str) -> bool:
    return stored == float(Decimal(exact))


def fast(options: RunOptions, **stream) -> RunOptions:
    return replace(options, stream=replace(options.stream, **stream))


def stored_rows(client: InfluxDBClient, org: str, bucket: str, measurement: str, pair: str) -> list[dict]:
    """Every point of `measurement` for `pair`, its fields pivoted into one row per time."""
    query = flux_query(
        """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == {measurement} and r.pair == {pair})
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
""",
        bucket=bucket,
        measurement=measurement,
        pair=pair,
    )
    return [record.values for table in client.query_api().query(query, org=org) for record in table.records]


# --- the collector as a separate process, as Docker runs it -----------------------------------------------


def collector_env(settings, tmp_path: Path, **extra: str) -> dict:
    """The environment of a `collector` process writing to `settings`, spooling to tmp_path/spool."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "HODLBOARD_"))}
    env.update(
        INFLUXDB_V2_URL=settings.url,
        INFLUXDB_V2_ORG=settings.org,
        INFLUXDB_V2_TOKEN=settings.token,
        HODLBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def cli(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def run_process(env: dict, config_path: Path):
    """`collector run` in a process of its own; killed if a test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(config_path)],
        env=env,
        cwd=config_path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def publish_accepted(replay, alive_file: Path, price: str, count: int = 10) -> list:
    """Publish `count` BTC-USD trades and wait until the collector process has accepted them all."""
    published = [replay.publish("btcusd", f"{price}.{i:02d}") for i in range(count)]
    wait_for(lambda: accepted(alive_file) >= count, what="the trades accepted")
    return published


def sigterm(process: subprocess.Popen) -> tuple[float, str]:
    """SIGTERM, then wait for the exit (killing it after 15 s, as Docker would); returns (seconds, output)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return time.monotonic() - started, output


def accepted(alive_file: Path) -> int:
    """Points of records the running collector has accepted, from its writer's heartbeat."""
    beat = read_beat(alive_file)
    return beat.accepted if beat else 0


def quiet(replay) -> None:
    """No tickers, coin metadata or candles: the only records a collector accepts are the trades published."""
    replay.tickers = {}
    replay.currencies = []
    replay.candle_start_s = int(time.time()) + 10 * 86400


def spooled_trade_ids(spool_dir: Path) -> list[str]:
    return [
        match.group(1)
        for path in sorted(spool_dir.rglob("*.lp"))
        for match in re.finditer(r'trade_id="(\d+)"', path.read_text())
    ]


def count_points(client: InfluxDBClient, org: str, measurement: str, bucket: str = "crypto_meta") -> int:
    query = flux_query(
        "from(bucket: {bucket}) |> range(start: 0) |> filter(fn: (r) => r._measurement == {measurement})",
        bucket=bucket,
        measurement=measurement,
    )
    return sum(len(table.records) for table in client.query_api().query(query, org=org))


# --- token rotation, as a later `collector bootstrap` does it ----------------------------------------------------


def bootstrap(influx, secrets_dir: Path) -> None:
    """`collector bootstrap` into `secrets_dir`: buckets, and a token written again if it was revoked."""
    Bootstrap(influx, Buckets(), secrets_dir, report=lambda line: None).run()


def settings_reading_the_token_file(influx, secrets_dir: Path) -> InfluxSettings:
    """Bootstrapped, and reaching InfluxDB as the collector container does: with the token file, not the token."""
    bootstrap(influx, secrets_dir)
    return InfluxSettings.from_env(
        {
            "INFLUXDB_V2_URL": influx.url,
            "INFLUXDB_V2_ORG": influx.org,
            "INFLUXDB_V2_TOKEN_FILE": str(secrets_dir / "collector.token"),
        }
    )


def revoke_collector_token(admin_client) -> None:
    auths = admin_client.authorizations_api()
    for auth in auths.find_authorizations():
        if auth.description == "hodlboard collector":
            auths.delete_authorization(auth)
