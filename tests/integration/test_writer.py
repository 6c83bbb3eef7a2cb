"""The writer's error classes against the real influxd: drop and count, hold and shout, never silent."""

import logging
from dataclasses import replace

from collector.config import Buckets
from collector.storage.spool import Spool
from collector.storage.writer import Writer
from tests.integration.harness import FAST, count_points, streaming, wait_for


def writer_for(settings, tmp_path, **options) -> Writer:
    return Writer(settings, Buckets(), Spool(tmp_path / "spool"), replace(FAST.writer, **options))


def test_a_rejected_batch_is_dropped_counted_and_logged_once(
    collector_settings, admin_client, tmp_path, caplog
):
    writer = writer_for(collector_settings, tmp_path)
    writer.start()
    with caplog.at_level(logging.WARNING, logger="collector.storage.writer"):
        writer.submit_line("meta", "probe value=1.5 1700000000000000000")
        wait_for(lambda: writer.stats.written_points == 1, what="first write")
        for batch in range(1, 4):  # a field type conflict, refused (422) every time: three separate batches
            writer.submit_line("meta", 'probe value="text" 1700000001000000000')
            writer.submit_line("meta", 'probe value="text" 1700000002000000000')
            wait_for(lambda b=batch: writer.stats.dropped_points == 2 * b, what=f"drop {batch}")
    writer.close()
    assert writer.stats.write_errors == 3
    assert caplog.text.count("dropping the batch") == 1
    assert "HTTP 422" in caplog.text and "field type conflict" in caplog.text
    assert not writer.spool  # a batch InfluxDB refuses for good is not kept forever
    assert count_points(admin_client, collector_settings.org, "probe") == 1


def test_a_rejected_token_keeps_the_points_and_says_so(collector_settings, admin_client, tmp_path, caplog):
    bad = replace(collector_settings, token="revoked-token")
    writer = writer_for(bad, tmp_path)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="collector.storage.writer"):
        for second in range(5):
            writer.submit_line("meta", f"held value={second} {1700000000 + second}000000000")
        wait_for(lambda: writer.stats.spool_points == 5, what="points held in the spool")
    writer.close()
    assert "HTTP 401" in caplog.text and "not allowed to write" in caplog.text

    # the token is fixed (bootstrap again): the held points arrive
    fixed = writer_for(collector_settings, tmp_path)
    assert fixed.stats.spool_points == 5
    fixed.start()
    wait_for(lambda: fixed.stats.spool_points == 0, what="spool replayed")
    fixed.close()
    assert count_points(admin_client, collector_settings.org, "held") == 5


def test_health_points_carry_the_writers_figures(collector_settings, admin_client, replay, tmp_path):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        writer = runner.collector.writer
        writer.submit_line("meta", "probe value=1.5 1700000000000000000")
        wait_for(lambda: count_points(admin_client, org, "probe") == 1, what="the first probe")
        writer.submit_line("meta", 'probe value="text" 1700000001000000000')  # refused for good: 422
        wait_for(lambda: writer.stats.dropped_points == 1, what="the refused point counted")
        wait_for(
            lambda: any(row.get("dropped_points") == 1 for row in health_rows(admin_client, org)),
            what="a health point showing the loss",
        )
    latest = [row for row in health_rows(admin_client, org) if row.get("dropped_points") == 1][-1]
    assert latest["exchange"] == "bitstamp"
    assert latest["write_errors"] == 1 and latest["spool_points"] == 0
    assert latest["write_latency_ms"] > 0


def health_rows(client, org) -> list[dict]:
    query = """
from(bucket: "crypto_live")
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "collector")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
"""
    return [record.values for table in client.query_api().query(query, org=org) for record in table.records]
