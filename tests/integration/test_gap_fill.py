"""Gap fill after a lost connection: retried through exchange errors, bad rows skipped, and what the exchange no
longer has recorded as an unrecoverable span. Replayed Bitstamp, real influxd."""

import logging
from datetime import UTC, datetime

from tests.integration.harness import stored_trades, streaming, wait_for

MAINTENANCE = (503, {"Retry-After": "0.5"}, '{"status":"error","reason":"maintenance"}')


def _ids(client, org, pair="BTC-USD"):
    return sorted(row["trade_id"] for row in stored_trades(client, org, pair))


def test_gap_fill_retries_through_503s_and_skips_a_malformed_row(
    collector_settings, admin_client, replay, tmp_path, caplog
):
    org = collector_settings.org
    bad_row = {"date": "1700000000", "tid": "299999999", "price": "n/a", "amount": "1.0", "type": "0"}
    replay.extra_transaction_rows = [bad_row]
    with caplog.at_level(logging.INFO), streaming(tmp_path, replay, collector_settings) as runner:
        published = [replay.publish("btcusd", f"42000.{i:02d}") for i in range(5)]
        wait_for(lambda: len(_ids(admin_client, org)) == 5, what="live trades")
        # these happen on the exchange while the link is down: only REST can bring them
        published += [replay.publish("btcusd", f"42001.{i:02d}", deliver=False) for i in range(5)]
        # two whole gap-fill calls fail (5 attempts each), the third passes after two more 503s: 6 s of 503s
        replay.http.script("/transactions/", *[MAINTENANCE] * 12)
        replay.drop_connections()
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(2), what="the new connection")
        published.append(replay.publish("btcusd", "42002.00"))  # the live stream goes on meanwhile
        wait_for(lambda: str(published[-1].id) in _ids(admin_client, org), what="a live trade")
        assert replay.http.scripted["/transactions/"], "stored while the gap fill was still retrying"
        wait_for(lambda: len(_ids(admin_client, org)) == 11, what="the missed trades")
        assert replay.http.scripted["/transactions/"] == []
        health = runner.health()
        assert health.gap_filled >= 5  # the REST window overlaps stored trades: they become the same points
        assert health.errors == 3  # two failed gap-fill calls and one skipped row
    assert _ids(admin_client, org) == sorted(str(t.id) for t in published)
    assert "skipped an unusable row (trade price: expected a number, got 'n/a'" in caplog.text
    assert "gap fill works again" in caplog.text


def test_a_gap_the_exchange_no_longer_has_is_recorded_with_its_span(
    collector_settings, admin_client, replay, tmp_path, caplog, monkeypatch
):
    from collector.exchanges.bitstamp import Bitstamp

    monkeypatch.setattr(Bitstamp, "trade_history_s", 2)  # the REST history reaches 2 s back
    org = collector_settings.org
    with caplog.at_level(logging.INFO), streaming(tmp_path, replay, collector_settings) as runner:
        last = replay.publish("btcusd", "43000.00")
        wait_for(lambda: len(_ids(admin_client, org)) == 1, what="live trade")
        lost = replay.publish("btcusd", "43000.01", deliver=False)
        unavailable = (503, {"Retry-After": "0.3"}, "busy")
        replay.http.script("/transactions/", *[unavailable] * 1000)
        replay.drop_connections()
        gave_up_s = wait_for(lambda: runner.health().unrecoverable_gap_s, what="the gap given up")
        last_s = last.microtimestamp // 1_000_000
        assert 0 < gave_up_s <= lost.microtimestamp / 1e6 - last_s + 3
        assert runner.health().gap_filled == 0
        assert len([path for path in replay.http.requests if "/transactions/" in path]) >= 5  # retried
        wait_for(lambda: _health_field(admin_client, org, "unrecoverable_gap_s"), what="the health field")
    assert _ids(admin_client, org) == [str(last.id)]
    since = datetime.fromtimestamp(last_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"bitstamp BTC-USD: trades from {since} to " in caplog.text
    assert "cannot be recovered (the exchange's REST history reaches back" in caplog.text


def _health_field(client, org, field):
    query = f"""
from(bucket: "crypto_live")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "collector" and r._field == "{field}" and r._value > 0)
"""
    return [record.get_value() for table in client.query_api().query(query, org=org) for record in table]
