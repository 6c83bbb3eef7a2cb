"""Review of issue 6 part A (gap fill, hand-over, reload): findings recorded as strict xfails until fixed.
Replayed Bitstamp, real influxd."""

import contextlib
import dataclasses
import logging
import socket
import threading
import time

from collector.config import Pair, parse_config
from collector.exchanges.bitstamp import Bitstamp
from tests.integration.harness import (
    FAST,
    fast,
    running,
    stored_trades,
    streaming,
    wait_for,
    write_config,
)

UNAVAILABLE = (503, {"Retry-After": "0.3"}, '{"status":"error","reason":"maintenance"}')


def _ids(client, org, pair="BTC-USD"):
    return sorted(row["trade_id"] for row in stored_trades(client, org, pair))


def _transactions_requests(replay, symbol="btcusd") -> int:
    return len([path for path in replay.http.requests if f"/transactions/{symbol}/" in path])


def test_review_a_hand_over_on_a_quiet_pair_records_no_unrecoverable_gap(
    collector_settings, admin_client, replay, tmp_path, monkeypatch
):
    monkeypatch.setattr(Bitstamp, "trade_history_s", 2)  # the REST history reaches 2 s back
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        last = replay.publish("btcusd", "43000.00")
        wait_for(lambda: _ids(admin_client, org) == [str(last.id)], what="the live trade")
        last_s = last.microtimestamp // 1_000_000
        # the pair is quiet (no trade) for longer than the REST reach; the link stays up all along
        wait_for(lambda: time.time() > last_s + 4, what="a quiet pair", timeout=10)
        before = _transactions_requests(replay)
        replay.request_reconnect()  # make before break: nothing can be missed
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(2), what="the new connection")
        wait_for(lambda: _transactions_requests(replay) > before, what="the hand-over's gap fill")
        assert runner.health().unrecoverable_gap_s == 0, "no trade was lost: nothing is unrecoverable"


def test_review_a_unrecoverable_gap_is_not_counted_twice_over_two_reconnects(
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


def test_review_a_a_reconnect_request_during_a_hand_over_is_honoured(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings):
        replay.hold_acks()  # the new connection stays in its subscribe phase until released
        replay.request_reconnect()
        wait_for(lambda: (2, "bts:subscribe", "live_trades_btcusd") in replay.subscribe_log, what="hand-over")
        replay.request_reconnect()  # connection 2 is asked to go too, before its subscription is acknowledged
        replay.release_acks()
        wait_for(
            lambda: "live_trades_btcusd" in replay.subscribed_on(3),
            timeout=10,
            what="connection 2 handed over to a third one",
        )
        trade = replay.publish("btcusd", "43000.00")
        wait_for(lambda: _ids(admin_client, org) == [str(trade.id)], what="the trade on the third connection")


def test_review_a_a_reload_removing_a_pair_ends_its_retrying_gap_fill(
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


class HangingServer:
    """Accepts TCP connections and never answers: an InfluxDB that hangs."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.socket.accept()[0])

    def close(self) -> None:
        self.socket.close()
        for conn in self.accepted:
            conn.close()


def test_review_a_sigterm_while_the_start_reads_a_hanging_influxdb_exits_within_ten_seconds(
    collector_settings, replay, tmp_path
):
    from tests.integration.test_stop import CollectorProcess

    write_config(tmp_path / "portfolio.yml", replay)
    influx = HangingServer()
    settings = dataclasses.replace(collector_settings, url=influx.url)
    collector = CollectorProcess(tmp_path, settings)
    try:
        wait_for(lambda: influx.accepted, timeout=30, what="the collector to query InfluxDB")
        collector.terminate_within(10)
    finally:
        collector.kill()
        influx.close()


def test_review_a_a_gap_fill_answered_after_retries_still_reaches_the_gaps_start(
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
        wait_for(lambda: str(missed[1].id) in _ids(admin_client, org), timeout=40, what="the gap fill")
        assert runner.health().unrecoverable_gap_s == 0
        assert any("time=minute" in path for path in replay.http.requests)
        assert _ids(admin_client, org) == sorted(str(t.id) for t in [seen, *missed])


def _last_health(client, org, field):
    query = f"""
from(bucket: "crypto_live")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "collector" and r._field == "{field}")
  |> last()
"""
    values = [record.get_value() for table in client.query_api().query(query, org=org) for record in table]
    assert len(values) <= 1, values
    return values[0] if values else None


def test_review_a_the_message_age_grows_while_a_restarted_collector_cannot_connect(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay)
    with running(path, config, collector_settings, tmp_path / "spool"):
        replay.wait_subscribed("btcusd")
        replay.publish("btcusd", "43000.00")
        wait_for(lambda: _last_health(admin_client, org, "connected") == 1, what="a connected health point")
    # restarted while the exchange's websocket is unreachable
    path.write_text(path.read_text().replace(replay.ws_url, "ws://127.0.0.1:1/"))
    config = parse_config(path.read_text(), str(path))
    started = time.time()
    with running(path, config, collector_settings, tmp_path / "spool2"):
        wait_for(
            lambda: _last_health(admin_client, org, "connected") == 0, what="a disconnected health point"
        )
        wait_for(lambda: time.time() > started + 3, what="three seconds without any message")
        wait_for(lambda: _last_health(admin_client, org, "connected") == 0, what="a later health point")
        assert _last_health(admin_client, org, "last_message_age_s") >= 2


def test_review_a_a_zero_retry_after_does_not_make_the_gap_fill_spin(
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


def test_review_a_a_kind_of_bad_message_is_logged_again_on_each_new_connection(
    collector_settings, admin_client, replay, tmp_path, caplog
):
    """The README's "message errors: once per connection" had no test: removing recovered_all passed them all."""
    org = collector_settings.org

    def logged() -> int:
        return len([r for r in caplog.records if "unusable message" in r.getMessage()])

    with (
        caplog.at_level(logging.WARNING, logger="collector.stream"),
        streaming(tmp_path, replay, collector_settings) as runner,
    ):
        replay.send_raw("{not json")
        replay.send_raw("{not json")
        first = replay.publish("btcusd", "43000.00")  # read after both: they were handled
        wait_for(lambda: _ids(admin_client, org) == [str(first.id)], what="the live trade")
        assert (logged(), runner.health().errors) == (1, 2)
        replay.drop_connections()
        wait_for(lambda: "live_trades_btcusd" in replay.subscribed_on(2), what="the new connection")
        replay.send_raw("{not json")
        wait_for(lambda: runner.health().errors == 3, what="the bad message on the new connection")
        assert logged() == 2


def test_review_a_a_pair_added_back_by_a_reload_reports_no_unrecoverable_gap(
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


def test_review_a_a_restart_after_three_days_fills_what_rest_still_has_and_records_the_rest(
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
