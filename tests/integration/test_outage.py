"""InfluxDB going away: nothing accepted is lost, during the outage or across a collector restart."""

from tests.integration.harness import running, stored_trades, streaming, wait_for, write_config


def test_trades_during_an_outage_arrive_after_it(collector_settings, admin_client, replay, tmp_path, outage):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        published = [replay.publish("btcusd", f"30000.{i:02d}") for i in range(10)]
        wait_for(lambda: len(stored_trades(admin_client, org, "BTC-USD")) == 10, what="first trades")

        outage.stop()
        published += [replay.publish("btcusd", f"30001.{i:02d}") for i in range(30)]
        wait_for(lambda: runner.collector.writer.stats.spool_points >= 30, what="points spooled")
        assert list((tmp_path / "spool").glob("*.lp")), "the spool is on disk"
        outage.start()

        wait_for(lambda: runner.collector.writer.stats.spool_points == 0, timeout=30, what="spool replayed")
        wait_for(lambda: len(stored_trades(admin_client, org, "BTC-USD")) == 40, what="all trades")
        assert runner.collector.writer.stats.write_errors > 0  # counted, not silent
    ids = sorted(row["trade_id"] for row in stored_trades(admin_client, org, "BTC-USD"))
    assert ids == sorted(str(t.id) for t in published)
    assert not list((tmp_path / "spool").glob("*.lp"))


def test_spooled_points_survive_a_collector_restart(
    collector_settings, admin_client, replay, tmp_path, outage
):
    config = write_config(tmp_path / "portfolio.yml", replay)
    org = collector_settings.org
    outage.stop()
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool") as runner:
        replay.wait_subscribed("btcusd")
        published = [replay.publish("btcusd", f"31000.{i:02d}") for i in range(25)]
        wait_for(lambda: runner.collector.writer.stats.spool_points >= 25, what="points spooled")
        stop_seconds = runner.stop()
    assert stop_seconds < 10
    assert sum(len(p.read_text().splitlines()) for p in (tmp_path / "spool").glob("*.lp")) >= 25

    outage.start()
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool") as runner:
        wait_for(lambda: len(stored_trades(admin_client, org, "BTC-USD")) >= 25, timeout=30, what="replay")
        wait_for(lambda: runner.collector.writer.stats.spool_points == 0, what="empty spool")
    ids = sorted(row["trade_id"] for row in stored_trades(admin_client, org, "BTC-USD"))
    assert ids == sorted(str(t.id) for t in published)


def test_a_stop_cuts_a_long_retry_wait_short_and_spools_the_batch(collector_settings, tmp_path, outage):
    import time
    from dataclasses import replace

    from collector.config import Buckets
    from collector.storage.spool import Spool
    from collector.storage.writer import Writer
    from tests.integration.harness import FAST

    outage.stop()
    options = replace(FAST.writer, backoff_s=20, max_backoff_s=30)  # waits far beyond the 10 s stop budget
    writer = Writer(collector_settings, Buckets(), Spool(tmp_path / "spool"), options)
    writer.start()
    writer.submit_line("meta", "waiting value=1 1700000000000000000")
    wait_for(lambda: writer.stats.retries >= 1, what="first retry wait")
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 3
    assert writer.stats.spool_points == 1
    assert Spool(tmp_path / "spool").points == 1
