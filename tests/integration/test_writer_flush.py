"""Writer.flush: what the valuation waits on before it reads candles just backfilled."""

from tests.integration.harness import count_points, wait_for
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
