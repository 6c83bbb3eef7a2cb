"""Writer.flush: what the valuation waits on before it reads candles just backfilled."""

import threading
import time

from collector.config import Buckets
from collector.storage.spool import Spool
from collector.storage.writer import Writer
from tests.integration.harness import FAST, count_points, wait_for
from tests.integration.test_writer import writer_for


def test_flush_returns_once_the_points_are_readable_even_after_a_spell_in_the_spool(
    collector_settings,
    admin_client,
    tmp_path,
    outage,
):
    writer = writer_for(collector_settings, tmp_path, retry_attempts=1)
    writer.start()
    try:
        writer.submit_line("meta", "probe value=1 1700000000000000000")
        assert writer.flush(20)
        assert count_points(admin_client, collector_settings.org, "probe") == 1

        outage.stop()
        writer.submit_line("meta", "probe value=2 1700000001000000000")
        assert not writer.flush(20)  # gives up at the failed write, long before 20 s: not readable yet
        wait_for(lambda: writer.stats.spool_points == 1, what="the point spooled while InfluxDB is away")
        outage.start()
        assert writer.flush(30)  # replayed from the spool
        assert count_points(admin_client, collector_settings.org, "probe") == 2
    finally:
        writer.close()


def test_flush_returns_under_a_steady_stream_of_other_points(collector_settings, admin_client, tmp_path):
    writer = writer_for(collector_settings, tmp_path, flush_interval_s=1.0)  # the default interval
    writer.start()
    streaming = threading.Event()

    def trades():  # a busy market: a point every ~2 ms (pacing the load, not synchronising anything)
        number = 0
        while not streaming.is_set():
            number += 1
            writer.submit_line("live", f"busy value={number} {time.time_ns()}")
            time.sleep(0.002)

    producer = threading.Thread(target=trades)
    producer.start()
    try:
        wait_for(lambda: writer.stats.written_points > 100, what="the stream being written")
        writer.submit_line("history", "probe value=1 1700000000000000000")
        wait_for(
            lambda: count_points(admin_client, collector_settings.org, "probe", bucket="crypto_history") == 1,
            what="the probe point stored",
        )
        assert writer.flush(10)  # everything submitted before the call is readable: flush must say so
    finally:
        streaming.set()
        producer.join()
        writer.close()


def test_an_unreadable_spool_segment_does_not_hold_flush_up(collector_settings, tmp_path):
    """Its points are set aside, never replayed: flush counts them as settled instead of waiting for them forever."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "0000000000000000.meta.lp").write_bytes(b"garbled \xff\xfe\xfd value=1\n")
    (spool_dir / "0000000000000001.meta.lp").write_text("probe value=1 1700000000000000000\n")
    writer = Writer(collector_settings, Buckets(), Spool(spool_dir), FAST.writer)
    writer.start()
    try:
        writer.submit_line("meta", "probe value=2 1700000001000000000")
        assert writer.flush(20)
        assert writer.stats.written_points == 2 and writer.spool.set_aside_points == 1
    finally:
        writer.close()
