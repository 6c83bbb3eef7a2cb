"""The writer and the service's queries at their edges (found by a review of the hardening): one test per case,
each failing without its fix. flush() under a steady stream is tested in test_writer_flush.py."""

import json
import threading
import time

import urllib3

from collector import heartbeat
from collector.config import Buckets
from collector.portfolio.work import PortfolioWork
from collector.records import Asset
from collector.storage.spool import Spool
from collector.storage.writer import Writer
from tests.integration.harness import (
    FAST,
    bootstrap,
    collector_env,
    count_points,
    quiet,
    revoke_collector_token,
    run_process,
    settings_reading_the_token_file,
    sigterm,
    wait_for,
    write_config,
)
from tests.integration.test_writer_failures import InjectedFault, probe_lines
from tests.replay.hanging import HangingServer
from tests.test_spool import files_limited_to


def test_a_point_that_cannot_be_encoded_costs_only_itself(collector_settings, admin_client, tmp_path):
    # json.loads accepts a lone surrogate escape, e.g. a coin name cut in the middle of an emoji
    name = json.loads('"Broken \\ud83d coin"')
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), FAST.writer)
    writer.start()
    for line in probe_lines("neighbour", 20):
        writer.submit_line("meta", line)
    writer.submit([Asset(symbol="BRK", time_ns=1_700_000_000_000_000_000, name=name)])
    wait_for(
        lambda: writer.failed.is_set() or writer.stats.written_points >= 20,
        what="the writer giving up or writing the good points",
    )
    writer.close()
    assert not writer.failed.is_set()
    assert count_points(admin_client, collector_settings.org, "neighbour") == 20
    assert writer.stats.dropped_points == 1


def test_sigterm_during_a_valuation_query_on_a_hung_influxdb_exits_in_time(
    collector_settings, replay, tmp_path
):
    quiet(replay)
    write_config(
        tmp_path / "portfolio.yml", replay, extra="holdings:\n  BTC: '0.5'\nvaluation:\n  live_every: 1s\n"
    )
    with HangingServer() as hung:
        env = collector_env(collector_settings, tmp_path, INFLUXDB_V2_URL=hung.url)
        with run_process(env, tmp_path / "portfolio.yml") as process:
            replay.wait_subscribed("btcusd", timeout=30)
            # only the valuation's price queries read from the beginning of time: SIGTERM the moment one is sent
            marker = b"range(start: 0"
            seen = hung.received().count(marker)
            deadline = time.monotonic() + 30
            while hung.received().count(marker) == seen:
                assert time.monotonic() < deadline, "no valuation query reached the server"
                time.sleep(0.001)
            elapsed, output = sigterm(process)
    assert process.returncode == 0, output
    assert elapsed < 10, output


def test_a_partial_write_counts_only_the_points_influxdb_refused(collector_settings, admin_client, tmp_path):
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), FAST.writer)
    now_s = int(time.time())
    writer.submit_line(
        "live", f"partial value=0 {now_s - 200 * 86400}000000000"
    )  # older than the 90-day bucket
    for i in range(1, 10):
        writer.submit_line("live", f"partial value={i} {now_s - i}000000000")
    writer.start()
    assert writer.flush(20)
    writer.close()
    assert count_points(admin_client, collector_settings.org, "partial", bucket="crypto_live") == 9
    assert writer.stats.dropped_points == 1


def test_a_string_field_with_a_line_separator_survives_the_spool(
    collector_settings, admin_client, tmp_path, outage
):
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), FAST.writer)
    outage.stop()
    writer.start()
    for line in probe_lines("spooled_neighbour", 20):
        writer.submit_line("meta", line)
    writer.submit([Asset(symbol="SEP", time_ns=1_700_000_000_000_000_000, name="Line\u2028Separator")])
    wait_for(lambda: writer.stats.spool_points == 21, what="every point in the spool")
    outage.start()
    wait_for(lambda: not writer.spool, timeout=60, what="the spool replayed")
    writer.close()
    org = collector_settings.org
    assert count_points(admin_client, org, "spooled_neighbour") == 20
    assert stored_names(admin_client, org) == ["Line\u2028Separator"]
    assert writer.stats.dropped_points == 0


def stored_names(client, org) -> list[str]:
    query = 'from(bucket: "crypto_meta") |> range(start: 0) |> filter(fn: (r) => r._measurement == "asset")'
    return [record.get_value() for table in client.query_api().query(query, org=org) for record in table]


def test_a_replaced_token_is_picked_up_by_the_valuation(influx, admin_client, replay, tmp_path):
    secrets_dir = tmp_path / "secrets"
    settings = settings_reading_the_token_file(influx, secrets_dir)
    config = write_config(tmp_path / "portfolio.yml", replay, extra="holdings:\n  BTC: '0.5'\n")
    work = PortfolioWork(settings, config, submit=lambda records: None)
    work.sample()  # works with the first token
    revoke_collector_token(admin_client)
    bootstrap(influx, secrets_dir)  # a new token in the file
    try:
        work.sample()
        work.recompute()
    finally:
        work.close()


def test_close_on_a_full_disk_gives_up_calmly(collector_settings, tmp_path, outage):
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), FAST.writer)
    outage.stop()
    with files_limited_to(4096):  # a batch of these probes no longer fits: the disk is full
        writer.start()
        for line in probe_lines("full_disk", 500):
            writer.submit_line("meta", line)
        wait_for(lambda: writer.stats.write_errors >= 2, what="the spool failing")
        writer.close(timeout_s=3)
        errors_at_close = writer.stats.write_errors
        still_running = writer._thread.is_alive()
        leftovers = len(list((tmp_path / "spool").glob("*.tmp")))
    # the disk has room again: a spinning writer thread now spools what it held and ends
    wait_for(lambda: not writer._thread.is_alive(), what="the writer thread ending")
    assert not still_running
    assert leftovers <= 5 and errors_at_close <= 20


def test_a_writer_replaying_after_a_restart_is_healthy_while_it_writes(collector_settings, tmp_path):
    spool_dir = tmp_path / "spool"
    outage_spool = Spool(spool_dir)
    for batch in range(20):
        outage_spool.append("meta", probe_lines("after_restart", 10, first_s=1_700_000_000 + batch * 10))
    outage_spool.close()
    alive = tmp_path / "alive"
    writer = Writer(collector_settings, Buckets(), Spool(spool_dir), FAST.writer, alive)
    real_write = writer._write_api.write
    calls = iter(range(1_000_000))

    def slow_write_failing_once(*args, **kwargs):
        if next(calls) == 0:
            raise InjectedFault("one failure the writer does not know")
        time.sleep(0.3)  # a slow InfluxDB (simulated latency, not synchronisation)
        return real_write(*args, **kwargs)

    writer._write_api.write = slow_write_failing_once
    writer.start()
    try:

        def replay_state():
            if not writer.spool:
                return "replayed"
            if writer.stats.written_points and heartbeat.judge(heartbeat.read_beat(alive)) is None:
                return "healthy while replaying"
            return None

        outcome = wait_for(replay_state, timeout=30, what="the writer healthy again or the replay over")
        assert outcome == "healthy while replaying"
    finally:
        writer.close()


def test_close_keeps_the_spool_locked_while_a_write_in_flight_may_still_spool(collector_settings, tmp_path):
    spool_dir = tmp_path / "spool"
    writer = Writer(collector_settings, Buckets(), Spool(spool_dir), FAST.writer)
    in_flight, release = threading.Event(), threading.Event()

    def write_hanging_until_released(*args, **kwargs):  # InfluxDB hangs longer than close() may wait
        in_flight.set()
        release.wait(30)
        raise urllib3.exceptions.ReadTimeoutError(None, "/api/v2/write", "read timed out")

    writer._write_api.write = write_hanging_until_released
    writer.start()
    for line in probe_lines("held", 10):
        writer.submit_line("meta", line)
    assert in_flight.wait(10)
    writer.close(timeout_s=0.5)
    assert writer._thread.is_alive()  # close() returned; the writer thread still holds the batch
    meanwhile = Spool(spool_dir)
    assert meanwhile.is_guest  # the lock was not let go while the writer thread may still append
    meanwhile.close()
    release.set()
    wait_for(lambda: not writer._thread.is_alive(), what="the writer thread ending")
    after = Spool(spool_dir)
    assert not after.is_guest  # the writer thread let go of the spool once it had spooled what it held
    assert after.points == 10
    after.close()
