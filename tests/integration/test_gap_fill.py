"""Gap fill after a lost connection: retried through exchange errors, bad rows skipped, and what the exchange no
longer has recorded as an unrecoverable span. Replayed Bitstamp, real influxd."""

import logging
import time
from datetime import UTC, datetime

from collector.config import Pair
from collector.exchanges.bitstamp import Bitstamp
from tests.integration.harness import FAST, fast, running, stored_trades, streaming, wait_for, write_config

MAINTENANCE = (503, {"Retry-After": "0.5"}, '{"status":"error","reason":"maintenance"}')
UNAVAILABLE = (503, {"Retry-After": "0.3"}, '{"status":"error","reason":"maintenance"}')


def _ids(client, org, pair="BTC-USD"):
    return sorted(row["trade_id"] for row in stored_trades(client, org, pair))


def _transactions_requests(replay, symbol="btcusd") -> int:
    return len([path for path in replay.http.requests if f"/transactions/{symbol}/" in path])


def _a_trade_then_quiet(replay, admin_client, org, quiet_s: float) -> None:
    """A BTC-USD trade, stored, then no trade for `quiet_s` seconds."""
    last = replay.publish("btcusd", "43000.00")
    wait_for(lambda: _ids(admin_client, org) == [str(last.id)], what="the live trade")
    last_s = last.microtimestamp // 1_000_000
    wait_for(lambda: time.time() > last_s + quiet_s, what="a quiet pair", timeout=quiet_s + 5)


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


def test_a_gap_fill_answered_after_retries_still_reaches_the_gaps_start(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        now_us = time.time_ns() // 1000
        # the last trade seen was 45 s ago: a gap under 50 s is asked for with time=minute
        seen = replay.publish("btcusd", "43000.00", microtimestamp=now_us - 45_000_000)
        wait_for(lambda: _ids(admin_client, org) == [str(seen.id)], what="the live trade")
        missed = [
            replay.publish("btcusd", "43000.01", microtimestamp=now_us - 44_000_000, deliver=False),
            replay.publish("btcusd", "43000.02", microtimestamp=now_us - 30_000_000, deliver=False),
        ]
        busy = (503, {"Retry-After": "5"}, '{"status":"error","reason":"busy"}')
        replay.http.script("/transactions/", *[busy] * 4)  # answered on the 5th attempt, 20 s later
        replay.drop_connections()
        # 20 s later the minute's answer no longer holds the trade of 44 s ago: it comes from the next ask
        everything = sorted(str(t.id) for t in [seen, *missed])
        wait_for(lambda: _ids(admin_client, org) == everything, timeout=40, what="the gap fill, to its start")
        assert runner.health().unrecoverable_gap_s == 0
        assert any("time=minute" in path for path in replay.http.requests)


def test_a_zero_retry_after_does_not_make_the_gap_fill_spin(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay)
    options = fast(FAST, backoff_first_s=1.0, backoff_max_s=2.0)
    with running(path, config, collector_settings, tmp_path / "spool", options):
        replay.wait_subscribed("btcusd")
        seen = replay.publish("btcusd", "43000.00")
        wait_for(lambda: _ids(admin_client, org) == [str(seen.id)], what="the live trade")
        past = "Thu, 01 Jan 2026 00:00:00 GMT"  # an HTTP date behind our clock
        replay.http.script("/transactions/", *[(503, {"Retry-After": past}, "busy")] * 10_000)
        replay.drop_connections()
        wait_for(lambda: _transactions_requests(replay) >= 5, what="the first failed gap-fill call")
        window_end = time.monotonic() + 1.0
        wait_for(lambda: time.monotonic() > window_end, what="a second of retries")
        # with a backoff of at least 0.5 s between calls (5 attempts each): three calls at the very most
        assert _transactions_requests(replay) <= 15


def test_a_hand_over_on_a_quiet_pair_records_no_unrecoverable_gap(
    collector_settings, admin_client, replay, tmp_path, monkeypatch
):
    monkeypatch.setattr(Bitstamp, "trade_history_s", 2)  # the REST history reaches 2 s back
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        # the pair is quiet (no trade) for longer than the REST reach; the link stays up all along
        _a_trade_then_quiet(replay, admin_client, org, quiet_s=4)
        before = _transactions_requests(replay)
        replay.request_reconnect()  # make before break: nothing can be missed
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(2), what="the new connection")
        wait_for(lambda: _transactions_requests(replay) > before, what="the hand-over's gap fill")
        assert runner.health().unrecoverable_gap_s == 0, "no trade was lost: nothing is unrecoverable"


def test_an_unrecoverable_gap_is_not_counted_twice_over_two_reconnects(
    collector_settings, admin_client, replay, tmp_path, monkeypatch
):
    monkeypatch.setattr(Bitstamp, "trade_history_s", 2)
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        last = replay.publish("btcusd", "43000.00")
        wait_for(lambda: _ids(admin_client, org) == [str(last.id)], what="the live trade")
        last_s = last.microtimestamp // 1_000_000
        replay.http.script("/transactions/", *[UNAVAILABLE] * 10_000)  # REST down for the whole test
        wait_for(lambda: time.time() > last_s + 6, what="a quiet pair", timeout=10)
        replay.drop_connections()  # a gap of 6 s, given up on 2 s later
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(2), what="the second connection")
        wait_for(lambda: runner.health().unrecoverable_gap_s >= 4, what="a span given up", timeout=20)
        replay.drop_connections()  # the gap fill is still retrying
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(3), what="the third connection")
        before = _transactions_requests(replay)
        wait_for(lambda: _transactions_requests(replay) > before, what="the new gap fill")
        counted = runner.health().unrecoverable_gap_s
        # what the exchange can no longer give: from the last trade up to 2 s ago, at most
        assert counted <= time.time() - last_s - 2 + 1


def test_a_pair_added_back_by_a_reload_reports_no_unrecoverable_gap(
    collector_settings, admin_client, replay, tmp_path, monkeypatch
):
    monkeypatch.setattr(Bitstamp, "trade_history_s", 2)
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    with streaming(tmp_path, replay, collector_settings, pairs=("BTC-USD", "ETH-USD")) as runner:
        replay.wait_subscribed("ethusd")
        eth = replay.publish("ethusd", "2345.67")
        wait_for(lambda: stored_trades(admin_client, org, "ETH-USD"), what="the ETH trade")
        write_config(path, replay, pairs=("BTC-USD",))  # ETH is no longer wanted
        wait_for(lambda: replay.subscribed("ethusd") == 0, what="ETH unsubscribed")
        wait_for(lambda: time.time() > eth.microtimestamp / 1e6 + 5, what="a while without ETH", timeout=10)
        before = _transactions_requests(replay, "ethusd")
        write_config(path, replay, pairs=("BTC-USD", "ETH-USD"))  # wanted again
        replay.wait_subscribed("ethusd")
        wait_for(lambda: _transactions_requests(replay, "ethusd") > before, what="ETH's gap fill")
        assert runner.health().unrecoverable_gap_s == 0, "nothing was lost: ETH was not wanted meanwhile"


def test_a_reload_removing_a_pair_ends_its_retrying_gap_fill(
    collector_settings, admin_client, replay, tmp_path
):
    path = tmp_path / "portfolio.yml"
    org = collector_settings.org
    btc = Pair("BTC", "USD")
    with streaming(tmp_path, replay, collector_settings, pairs=("BTC-USD", "ETH-USD")) as runner:
        replay.wait_subscribed("ethusd")
        last = replay.publish("btcusd", "43000.00")
        wait_for(lambda: _ids(admin_client, org) == [str(last.id)], what="the live trade")
        replay.http.script("/transactions/btcusd", *[UNAVAILABLE] * 10_000)
        replay.drop_connections()
        stream = runner.collector.exchanges["bitstamp"].stream
        wait_for(lambda: btc in stream._gap_filler._running, what="BTC's gap fill retrying")
        before = _transactions_requests(replay)
        wait_for(lambda: _transactions_requests(replay) > before, what="a retry")
        write_config(path, replay, pairs=("ETH-USD",))
        wait_for(lambda: btc not in stream.pairs, what="the reload")
        wait_for(lambda: btc not in stream._gap_filler._running, timeout=10, what="BTC's gap fill ended")


def test_a_restart_after_three_days_fills_what_rest_still_has_and_records_the_rest(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay)
    three_days_ago_us = (time.time_ns() // 1000) - 3 * 86_400 * 1_000_000
    with running(path, config, collector_settings, tmp_path / "spool"):
        replay.wait_subscribed("btcusd")
        old = replay.publish("btcusd", "43000.00", microtimestamp=three_days_ago_us)
        wait_for(lambda: _ids(admin_client, org) == [str(old.id)], what="the last trade before the outage")
    # down for three days; the exchange still has the last day of trades
    missed = [replay.publish("btcusd", f"44000.0{i}", deliver=False) for i in range(3)]
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        replay.wait_subscribed("btcusd")
        wait_for(lambda: runner.health().unrecoverable_gap_s > 0, timeout=10, what="the lost span recorded")
        assert runner.health().unrecoverable_gap_s >= 2 * 86_400 - 60
        expected = sorted(str(trade.id) for trade in [old, *missed])
        wait_for(lambda: _ids(admin_client, org) == expected, what="the trades REST still has")


def test_a_dropped_connection_on_a_quiet_pair_records_no_unrecoverable_gap(
    collector_settings, admin_client, replay, tmp_path, monkeypatch
):
    """The connection was alive until just before it dropped: only what it had in flight can be missing."""
    monkeypatch.setattr(Bitstamp, "trade_history_s", 5)  # the REST history reaches 5 s back
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        _a_trade_then_quiet(replay, admin_client, org, quiet_s=8)
        messages = runner.health().messages
        replay.send_raw('{"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}}')
        wait_for(lambda: runner.health().messages > messages, what="a sign of life on the quiet connection")
        before = _transactions_requests(replay)
        replay.drop_connections()
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(2), what="the new connection")
        wait_for(lambda: _transactions_requests(replay) > before, what="the gap fill")
        assert runner.health().unrecoverable_gap_s == 0, "the trade 8 s ago is not where the gap starts"
