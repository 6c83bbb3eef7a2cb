"""SIGTERM ends `collector run` within 10 s in every state, and everything it accepted is stored.

The collector runs as its own process (the container's command); the replay can answer slowly or never.
"""

import dataclasses
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from tests.integration.harness import collector_env, stored_trades, wait_for, write_config
from tests.replay.hanging import HangingServer

HOUR = 3600


class CollectorProcess:
    def __init__(self, tmp_path, settings):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collector", "run", "--config", str(tmp_path / "portfolio.yml")],
            env=collector_env(settings, tmp_path),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def terminate_within(self, seconds: float) -> str:
        """SIGTERM, then the process must have exited by the deadline; its output."""
        self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            raise AssertionError(f"still running {seconds} s after SIGTERM:\n{output}") from None
        assert self.process.returncode == 0, output
        assert "Traceback" not in output, output
        return output

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def handled_trades(replay, count: int) -> list:
    """Publish trades, then ask for a reconnect: the collector reads a connection in order, so once it
    subscribes on a new connection it has handed every one of these trades to its writer."""
    published = [replay.publish("btcusd", f"20000.{i:02d}") for i in range(count)]
    before = len(replay.connection_numbers)
    replay.request_reconnect()
    wait_for(
        lambda: any(number > before for number, event, _ in replay.subscribe_log if event == "bts:subscribe"),
        what="the collector to act on the reconnect request",
    )
    return published


def stored(client, org, measurement: str, bucket: str) -> list[dict]:
    query = f"""
from(bucket: "{bucket}")
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "{measurement}")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
"""
    return [r.values for t in client.query_api().query(query, org=org) for r in t.records]


def ohlc_requests(replay) -> int:
    return len([path for path in replay.http.requests if "/ohlc/" in path])


def sigterm_when(tmp_path, settings, admin_client, replay, condition, what: str) -> None:
    """Run the collector until `condition` holds, with ten live trades handed to its writer; SIGTERM must end
    it within 10 s with those trades stored."""
    collector = CollectorProcess(tmp_path, settings)
    try:
        replay.wait_subscribed("btcusd", timeout=30)
        wait_for(condition, timeout=30, what=what)
        published = handled_trades(replay, 10)
        collector.terminate_within(10)
    finally:
        collector.kill()
    rows = stored_trades(admin_client, settings.org, "BTC-USD")
    assert sorted(r["trade_id"] for r in rows) == sorted(str(t.id) for t in published)


def test_sigterm_mid_backfill_exits_within_ten_seconds_and_keeps_every_candle_accepted(
    collector_settings, admin_client, replay, tmp_path
):
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 1500 * HOUR
    since = datetime.fromtimestamp(replay.candle_start_s, UTC).date()
    start_s = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp())
    first_page = range(replay.candle_start_s, start_s + 1000 * HOUR, HOUR)  # answered at once
    replay.http.slow("/ohlc/", 12, quick=1)  # the next page takes 12 s
    write_config(tmp_path / "portfolio.yml", replay, since=since.isoformat())

    sigterm_when(
        tmp_path,
        collector_settings,
        admin_client,
        replay,
        lambda: ohlc_requests(replay) == 2,
        what="the slow second page",
    )
    org = collector_settings.org
    candles = stored(admin_client, org, "candle", "crypto_history")
    assert sorted(int(row["_time"].timestamp()) for row in candles) == list(first_page)
    assert len(stored(admin_client, org, "ticker", "crypto_meta")) == 1
    assert ohlc_requests(replay) == 2


def test_sigterm_with_a_hanging_endpoint_exits_within_ten_seconds(
    collector_settings, admin_client, replay, tmp_path
):
    replay.http.slow("/currencies/", 3600)  # never answers while the test runs
    write_config(tmp_path / "portfolio.yml", replay)

    sigterm_when(
        tmp_path,
        collector_settings,
        admin_client,
        replay,
        lambda: any("/currencies/" in path for path in replay.http.requests),
        what="the hanging request",
    )
    org = collector_settings.org
    (ticker,) = stored(admin_client, org, "ticker", "crypto_meta")  # fetched before the hang: kept
    assert ticker["last"] == 77265.0
    assert stored(admin_client, org, "asset", "crypto_meta") == []


def test_sigterm_while_the_start_reads_a_hanging_influxdb_exits_within_ten_seconds(
    collector_settings, replay, tmp_path
):
    write_config(tmp_path / "portfolio.yml", replay)
    with HangingServer() as influx:
        collector = CollectorProcess(tmp_path, dataclasses.replace(collector_settings, url=influx.url))
        try:
            wait_for(lambda: influx.received(), timeout=30, what="the collector to query InfluxDB")
            collector.terminate_within(10)
        finally:
            collector.kill()
