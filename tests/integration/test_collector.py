"""The collector end to end: replayed Bitstamp, real influxd. Nothing lost, nothing duplicated."""

import logging
import time

from collector.config import Pair, parse_config
from tests.integration.harness import running, same_price, stored_trades, streaming, wait_for, write_config


def test_replayed_trades_become_exactly_these_points(collector_settings, admin_client, replay, tmp_path):
    with streaming(tmp_path, replay, collector_settings) as runner:
        now_us = time.time_ns() // 1000
        published = [
            replay.publish(
                "btcusd", f"{43000 + i}.{i:02d}", f"0.{i + 1:08d}", side=i % 2, numbers_as_strings=i % 3 == 0
            )
            for i in range(48)
        ]
        # two trades in the same microsecond: both kept
        published += [
            replay.publish("btcusd", "43210.01", "1.00000000", microtimestamp=now_us),
            replay.publish("btcusd", "43210.02", "2.00000000", microtimestamp=now_us),
        ]
        for trade in published[:10]:  # re-delivered, in both number shapes: still one point each
            replay.send_raw(trade.ws_event(numbers_as_strings=True), "btcusd")
            replay.send_raw(trade.ws_event(), "btcusd")
        wait_for(lambda: runner.health().trades == 70, what="70 trade messages")
        _wait_stored(admin_client, collector_settings.org, "BTC-USD", 50)
    # stopped: everything accepted is written, so a duplicate, were there one, would be stored now
    rows = stored_trades(admin_client, collector_settings.org, "BTC-USD")
    assert len(rows) == 50
    by_id = {row["trade_id"]: row for row in rows}
    assert set(by_id) == {str(t.id) for t in published}
    for trade in published:
        row = by_id[str(trade.id)]
        assert same_price(row["price"], trade.price) and same_price(row["amount"], trade.amount)
        assert row["side"] == ("buy" if trade.type == 0 else "sell")
        assert row["_time"].timestamp() // 1 == trade.microtimestamp // 1_000_000


def _ids(client, org, pair="BTC-USD"):
    return sorted(row["trade_id"] for row in stored_trades(client, org, pair))


def _wait_stored(admin_client, org, pair, count, timeout=20):
    return wait_for(
        lambda: len(stored_trades(admin_client, org, pair)) >= count,
        timeout=timeout,
        what=f"{count} {pair} trades",
    )


def _assert_exactly(admin_client, org, pair, published):
    rows = stored_trades(admin_client, org, pair)
    ids = sorted(row["trade_id"] for row in rows)
    assert ids == sorted(str(t.id) for t in published), "missing or duplicated trades"


def test_reconnect_request_mid_stream_loses_and_duplicates_nothing(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        published = [replay.publish("btcusd", f"50000.{i:02d}") for i in range(20)]
        replay.request_reconnect()
        # trades keep coming while the collector opens its second connection: the old one still delivers
        for i in range(20, 60):
            published.append(replay.publish("btcusd", f"50000.{i:02d}"))
            time.sleep(0.01)
        wait_for(lambda: len(replay.connections) == 1 and replay.subscribed("btcusd") == 1, what="hand-over")
        published += [replay.publish("btcusd", f"50001.{i:02d}") for i in range(20)]
        _wait_stored(admin_client, org, "BTC-USD", len(published))
        assert runner.health().reconnects == 1
        assert runner.health().errors == 0
    _assert_exactly(admin_client, org, "BTC-USD", published)
    subscribes = [m for m in replay.received if m.get("event") == "bts:subscribe"]
    assert len(subscribes) == 2


def test_dropped_connection_is_gap_filled_without_duplicates(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        published = [replay.publish("btcusd", f"42000.{i:02d}") for i in range(10)]
        _wait_stored(admin_client, org, "BTC-USD", 10)
        # these happen on the exchange but never reach the collector: it learns of them over REST only
        published += [replay.publish("btcusd", f"42001.{i:02d}", deliver=False) for i in range(15)]
        replay.drop_connections()
        wait_for(lambda: runner.health().gap_filled > 0, what="gap fill")
        published += [replay.publish("btcusd", f"42002.{i:02d}") for i in range(5)]
        _wait_stored(admin_client, org, "BTC-USD", len(published))
        assert runner.health().reconnects >= 1
        # the REST window overlaps trades already stored: they were written again, as the same points
        assert runner.health().gap_filled >= 15
    _assert_exactly(admin_client, org, "BTC-USD", published)


def test_restart_fills_the_gap_from_the_last_stored_trade(collector_settings, admin_client, replay, tmp_path):
    config = write_config(tmp_path / "portfolio.yml", replay)
    org = collector_settings.org
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool"):
        replay.wait_subscribed("btcusd")
        published = [replay.publish("btcusd", f"41000.{i:02d}") for i in range(10)]
        _wait_stored(admin_client, org, "BTC-USD", 10)
    published += [replay.publish("btcusd", f"41001.{i:02d}", deliver=False) for i in range(10)]  # while down
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool") as runner:
        wait_for(lambda: runner.health().gap_filled >= 10, what="gap fill after restart")
        _wait_stored(admin_client, org, "BTC-USD", 20)
    _assert_exactly(admin_client, org, "BTC-USD", published)


def test_malformed_messages_are_counted_and_streaming_goes_on(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        replay.send_raw("{not json")
        replay.send_raw('{"event":"bts:surprise","channel":"","data":{}}')
        replay.send_raw('{"event":"trade","channel":"live_trades_btcusd","data":{"id":5,"type":0}}')
        replay.send_raw(b"\xff\xfe binary".decode("latin-1"))
        published = [replay.publish("btcusd", "40000.00")]
        _wait_stored(admin_client, org, "BTC-USD", 1)
        assert runner.health().errors == 4
        wait_for(lambda: _health_points(admin_client, org), what="collector health points")
    _assert_exactly(admin_client, org, "BTC-USD", published)
    latest = _health_points(admin_client, org)[-1]
    assert latest["errors"] == 4 and latest["trades"] == 1 and latest["exchange"] == "bitstamp"
    assert latest["connected"] == 1 and latest["rate_limited"] == 0 and latest["unrecoverable_gap_s"] == 0
    assert 0 <= latest["last_message_age_s"] < 5


def _health_points(client, org):
    query = """
from(bucket: "crypto_live")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "collector")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
"""
    return [record.values for table in client.query_api().query(query, org=org) for record in table.records]


def test_quiet_pair_does_not_trip_the_watchdog_but_a_dead_link_does(
    collector_settings, admin_client, replay, tmp_path, monkeypatch
):
    from collector.exchanges.bitstamp import Bitstamp

    monkeypatch.setattr(Bitstamp, "silence_s", 0.3)
    monkeypatch.setattr(Bitstamp, "heartbeat_s", 60)  # no heartbeat replies: only the pong proves liveness
    with streaming(tmp_path, replay, collector_settings) as runner:
        time.sleep(1.5)  # five silences on a live connection
        assert runner.health().reconnects == 0
        replay.freeze()
        wait_for(lambda: runner.health().reconnects >= 1, timeout=10, what="watchdog reconnect")
        replay.wait_subscribed("btcusd", connections=2)  # the frozen one never hears the client leave
        published = [replay.publish("btcusd", "39000.00")]
        _wait_stored(admin_client, collector_settings.org, "BTC-USD", 1)
    _assert_exactly(admin_client, collector_settings.org, "BTC-USD", published)


def test_an_unexpected_error_restarts_the_stream_instead_of_ending_it(
    collector_settings, admin_client, replay, tmp_path, monkeypatch, caplog
):
    from collector.exchanges.bitstamp import Bitstamp

    original = Bitstamp.parse
    failures = []

    def parse_with_one_bug(self, message):
        if "live_trades" in str(message) and '"trade"' in str(message) and not failures:
            failures.append(message)
            raise RuntimeError("a bug in an adapter")
        return original(self, message)

    monkeypatch.setattr(Bitstamp, "parse", parse_with_one_bug)
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        published = [replay.publish("btcusd", "38000.00")]  # hits the bug; gap fill brings it back
        wait_for(lambda: runner.health().reconnects >= 1, what="stream restarted")
        replay.wait_subscribed("btcusd")
        published.append(replay.publish("btcusd", "38000.01"))
        _wait_stored(admin_client, org, "BTC-USD", 2)
    _assert_exactly(admin_client, org, "BTC-USD", published)
    assert "unexpected error in the stream" in caplog.text and "a bug in an adapter" in caplog.text


def test_a_thousand_trades_in_one_microsecond_are_a_thousand_points(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    moment_us = (time.time_ns() // 1000) - 5_000_000
    with streaming(tmp_path, replay, collector_settings):
        # consecutive ids across a power of ten, all at one exchange microsecond
        published = [
            replay.publish("btcusd", "50000.00", microtimestamp=moment_us, trade_id=999_999_500 + i)
            for i in range(1000)
        ]
        _wait_stored(admin_client, org, "BTC-USD", 1000)
    rows = stored_trades(admin_client, org, "BTC-USD")
    assert sorted(row["trade_id"] for row in rows) == sorted(str(t.id) for t in published)
    assert {int(row["_time"].timestamp()) for row in rows} == {moment_us // 1_000_000}


def test_pairs_changed_during_a_reconnect_hand_over_end_up_exactly_on_the_new_connection(
    collector_settings, admin_client, replay, tmp_path
):
    path = tmp_path / "portfolio.yml"
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings, pairs=("BTC-USD", "XRP-USD")) as runner:
        replay.wait_subscribed("xrpusd")
        replay.hold_acks()  # the new connection stays in its subscribe phase until released
        replay.request_reconnect()
        wait_for(lambda: (2, "bts:subscribe", "live_trades_btcusd") in replay.subscribe_log, what="hand-over")
        write_config(path, replay, pairs=("BTC-USD", "ETH-USD"))  # ETH added, XRP removed
        stream = runner.collector.exchanges["bitstamp"].stream
        wait_for(lambda: Pair("ETH", "USD") in stream.pairs, what="the reload")
        replay.release_acks()
        wait_for(
            lambda: (
                replay.subscribed_on(2) == {"live_trades_btcusd", "live_trades_ethusd"}
                and len(replay.connections) == 1
            ),
            what="exactly the wanted pairs on the new connection, the old one closed",
        )
        eth = replay.publish("ethusd", "2345.67")
        btc = replay.publish("btcusd", "50000.00")
        wait_for(lambda: stored_trades(admin_client, org, "ETH-USD"), what="the new pair's trade")
        _wait_stored(admin_client, org, "BTC-USD", 1)
        assert stream.link.number == 2 and stream.link.subscribed == stream.pairs
    # every change went to the connection that was kept, none to the one being closed
    changes = [(n, event, channel) for n, event, channel in replay.subscribe_log if "btcusd" not in channel]
    assert changes == [
        (1, "bts:subscribe", "live_trades_xrpusd"),
        (2, "bts:subscribe", "live_trades_xrpusd"),
        (2, "bts:subscribe", "live_trades_ethusd"),
        (2, "bts:unsubscribe", "live_trades_xrpusd"),
    ]
    assert [row["trade_id"] for row in stored_trades(admin_client, org, "ETH-USD")] == [str(eth.id)]
    assert [row["trade_id"] for row in stored_trades(admin_client, org, "BTC-USD")] == [str(btc.id)]


def test_a_reconnect_request_during_a_hand_over_is_honoured(
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


def test_a_kind_of_bad_message_is_logged_again_on_each_new_connection(
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
        # counted, then logged, on the collector's thread: the two are waited for together
        wait_for(
            lambda: (logged(), runner.health().errors) == (2, 3),
            what="the bad message on the new connection, counted and logged",
        )


def test_the_message_age_grows_while_a_restarted_collector_cannot_connect(
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


def test_connected_goes_back_to_0_when_the_connection_is_lost(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, replay, collector_settings) as runner:
        wait_for(lambda: _last_health(admin_client, org, "connected") == 1, what="a connected health point")
        replay.refuse_connections()  # the connection drops and every reconnect fails
        wait_for(lambda: runner.health().connected == 0, what="the lost connection")
        wait_for(
            lambda: _last_health(admin_client, org, "connected") == 0, what="a disconnected health point"
        )
        assert runner.health().reconnects >= 1


def test_a_start_that_fails_ends_the_run_loudly(collector_settings, replay, tmp_path, monkeypatch):
    from collector.errors import RuntimeFailure
    from collector.service import Collector
    from tests.integration.harness import FAST, RunningCollector

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the stream's set-up")

    monkeypatch.setattr("collector.service.TradeStream", broken)
    config = write_config(tmp_path / "portfolio.yml", replay)
    runner = RunningCollector(
        Collector(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", FAST)
    )
    runner.start().thread.join(15)
    assert not runner.thread.is_alive(), "a collector that cannot start must not run on doing nothing"
    assert isinstance(runner.error, RuntimeFailure)
