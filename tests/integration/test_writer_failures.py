"""The writer under failures it was not written for: it starts over or exits loudly, and the healthcheck says so."""

import logging
import os
import subprocess
import sys
import threading
from dataclasses import replace

from collector import heartbeat
from collector.config import Buckets
from collector.service import Collector
from collector.storage.reader import Reader
from collector.storage.spool import Spool
from collector.storage.writer import Writer
from tests.influxd import ROOT
from tests.integration.harness import (
    FAST,
    RunningCollector,
    bootstrap,
    count_points,
    revoke_collector_token,
    settings_reading_the_token_file,
    stored_trades,
    wait_for,
    write_config,
)
from tests.integration.test_writer import health_rows


def probe_lines(measurement: str, count: int, first_s: int = 1_700_000_000) -> list[str]:
    return [f"{measurement} value={i} {first_s + i}000000000" for i in range(count)]


def healthcheck(alive_file) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODLBOARD_")}
    env.update(HODLBOARD_ALIVE_FILE=str(alive_file), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "collector", "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class InjectedFault(Exception):
    """A failure class the writer has never heard of."""


def break_writes(writer: Writer, broken: threading.Event, measurement: str = "") -> None:
    """While `broken` is set, the writer's InfluxDB client raises an exception the writer does not know
    for every batch holding a point of `measurement` (any, by default)."""
    real_write = writer._write_api.write

    def write(*args, **kwargs):
        body = kwargs["record"]  # the batch's lines joined into one string (or an empty list)
        lines = body.split("\n") if isinstance(body, str) else body
        if broken.is_set() and any(line.startswith(measurement) for line in lines):
            raise InjectedFault("injected into the write path")
        return real_write(*args, **kwargs)

    writer._write_api.write = write


def test_an_unknown_failure_restarts_the_writer_with_nothing_lost_and_the_healthcheck_sees_it(
    collector_settings, admin_client, tmp_path, caplog
):
    alive = tmp_path / "alive"
    options = replace(FAST.writer, restarts=1000)  # keeps starting over for as long as the fault lasts
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), options, alive)
    broken = threading.Event()
    broken.set()
    break_writes(writer, broken)
    writer.start()
    assert healthcheck(alive).returncode == 0
    with caplog.at_level(logging.ERROR, logger="collector.storage.writer"):
        for line in probe_lines("survivor", 50):
            writer.submit_line("meta", line)
        wait_for(lambda: writer.stats.restarts >= 2, what="the writer failing and starting over")
        result = healthcheck(alive)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "collector healthcheck: unhealthy: the writer failed and is starting over "
            "(InjectedFault: injected into the write path)"
        )
        broken.clear()
        wait_for(lambda: writer.stats.written_points == 50, what="the held batch written after the fault")
    failures = [r for r in caplog.records if "the writer failed; it starts over" in r.getMessage()]
    assert failures and failures[0].exc_info[0] is InjectedFault  # logged with its traceback
    wait_for(lambda: healthcheck(alive).returncode == 0, what="healthy again")
    writer.submit_health("bitstamp", writer.stats.health())  # as the service does every 10 s
    writer.close()
    assert count_points(admin_client, collector_settings.org, "survivor") == 50
    assert writer.stats.dropped_points == 0 and not writer.spool
    restarts = [row["writer_restarts"] for row in health_rows(admin_client, collector_settings.org)]
    assert restarts == [writer.stats.restarts]  # a restarting writer shows in Grafana


def test_a_writer_that_keeps_failing_ends_run_nonzero_with_everything_spooled(
    collector_settings, admin_client, replay, tmp_path
):
    config = write_config(tmp_path / "portfolio.yml", replay)
    alive = tmp_path / "alive"
    options = replace(FAST, alive_file=alive, writer=replace(FAST.writer, restarts=3))
    collector = Collector(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", options)
    broken = threading.Event()
    broken.set()
    break_writes(collector.writer, broken, "trade,")  # health points still go through: only trades fail
    runner = RunningCollector(collector).start()
    replay.wait_subscribed("btcusd")
    published = [replay.publish("btcusd", f"25000.{i:02d}") for i in range(5)]
    runner.thread.join(30)
    assert not runner.thread.is_alive(), "run did not end after the writer gave up"
    assert type(runner.error).__name__ == "RuntimeFailure"
    assert heartbeat.judge(heartbeat.read_beat(alive)).startswith("the writer failed for good")
    assert healthcheck(alive).returncode == 1

    # the container restarts: the spooled trades arrive
    with_restart = RunningCollector(
        Collector(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", FAST)
    ).start()
    try:
        wait_for(
            lambda: len(stored_trades(admin_client, collector_settings.org, "BTC-USD")) == 5,
            timeout=30,
            what="spooled trades replayed",
        )
    finally:
        with_restart.stop()
    rows = stored_trades(admin_client, collector_settings.org, "BTC-USD")
    assert sorted(r["trade_id"] for r in rows) == sorted(str(t.id) for t in published)


def test_an_unreadable_spool_segment_is_set_aside_and_the_writer_carries_on(
    collector_settings, admin_client, tmp_path, caplog
):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "0000000000000000.meta.lp").write_text("\n".join(probe_lines("before", 3)) + "\n")
    (spool_dir / "0000000000000001.meta.lp").write_bytes(b"garbled \xff\xfe\xfd value=1\n")
    (spool_dir / "0000000000000002.meta.lp").write_text("\n".join(probe_lines("after", 4)) + "\n")
    writer = Writer(collector_settings, Buckets(), Spool(spool_dir), FAST.writer)
    with caplog.at_level(logging.ERROR, logger="collector.storage.spool"):
        writer.start()
        for line in probe_lines("fresh", 5):
            writer.submit_line("meta", line)
        wait_for(lambda: writer.stats.written_points == 12, what="every readable point written")
    writer.close()
    org = collector_settings.org
    assert [count_points(admin_client, org, m) for m in ("before", "after", "fresh")] == [3, 4, 5]
    assert "0000000000000001.meta.lp cannot be read (UnicodeDecodeError" in caplog.text
    assert [p.name.split("-")[-1] for p in (spool_dir / "unreadable").iterdir()] == [
        "0000000000000001.meta.lp"
    ]
    assert not writer.spool


def test_a_flood_beyond_the_queue_bound_goes_to_the_spool_not_to_memory(
    collector_settings, admin_client, tmp_path, outage
):
    outage.stop()
    options = replace(FAST.writer, queue_limit=1000, batch_size=500)
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), options)
    writer.start()
    most_in_memory = 0
    for chunk in range(40):
        writer_lines = probe_lines("flood", 1000, first_s=1_700_000_000 + chunk * 1000)
        for line in writer_lines:
            writer.submit_line("meta", line)
        most_in_memory = max(most_in_memory, writer.queued_points)
    assert most_in_memory <= options.queue_limit + 2 * options.batch_size  # queue, overflow, batch in hand
    wait_for(lambda: writer.stats.spool_points == 40_000, what="the whole flood on disk")
    assert writer.queued_points == 0

    outage.start()
    wait_for(lambda: not writer.spool, timeout=60, what="the spool replayed")
    writer.close()
    assert count_points(admin_client, collector_settings.org, "flood") == 40_000
    assert writer.stats.dropped_points == 0


def test_a_token_replaced_by_bootstrap_is_picked_up_after_a_401(influx, admin_client, tmp_path, caplog):
    secrets_dir = tmp_path / "secrets"
    settings = settings_reading_the_token_file(influx, secrets_dir)
    token_file = secrets_dir / "collector.token"
    writer = Writer(settings, Buckets(), Spool(tmp_path / "spool"), FAST.writer)
    writer.start()
    lines = probe_lines("rotated", 10)
    writer.submit_line("meta", lines[0])
    wait_for(lambda: writer.stats.written_points == 1, what="a write with the first token")

    revoke_collector_token(admin_client)  # every write now answers 401
    with caplog.at_level(logging.ERROR, logger="collector.storage.writer"):
        for line in lines[1:]:
            writer.submit_line("meta", line)
        wait_for(lambda: writer.stats.spool_points == 9, what="points waiting in the spool")
        assert "HTTP 401" in caplog.text and "run bootstrap again" in caplog.text

    old_token = token_file.read_text()
    bootstrap(influx, secrets_dir)  # replaces the revoked token
    assert token_file.read_text() != old_token
    wait_for(
        lambda: writer.stats.written_points == 10, timeout=30, what="the spool written with the new token"
    )
    writer.close()
    assert count_points(admin_client, influx.org, "rotated") == 10
    assert not writer.spool and writer.stats.dropped_points == 0
    reader = Reader(
        settings, Buckets()
    )  # still holds the revoked token, as a running collector's reader would
    assert reader.last_trades("bitstamp", 0) == {}  # no 401: it read the token file again
    reader.close()
