"""Kraken end to end: the replayed WebSocket v2 and REST API, the real collector and the real influxd.

Every test ends with exactly the trades the replay published stored, each once, at its exact price and amount."""

import logging
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from collector.config import parse_config
from collector.exchanges.kraken import Kraken
from collector.service import Collector
from tests.integration.harness import FAST, running, stored_rows, stored_trades, wait_for
from tests.replay.kraken import KrakenReplay, synthetic_row

BTC = "BTC/USD"


@pytest.fixture
def kraken():
    with KrakenReplay() as server:
        yield server


def write_kraken_config(path, replay, pairs=("BTC-USD",)):
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")  # one page of candles
    text = (
        "exchanges:\n"
        "  kraken:\n"
        f"    pairs: [{', '.join(pairs)}]\n"
        f"    ws_url: {replay.ws_url}\n"
        f"    rest_url: {replay.rest_url}\n"
        "backfill:\n"
        "  interval: 1h\n"
        "  every: 12h\n"
        f"  since: {yesterday}\n"
    )
    path.write_text(text)
    return parse_config(text, str(path))


@contextmanager
def streaming(tmp_path, replay, settings, pairs=("BTC-USD",)):
    config = write_kraken_config(tmp_path / "portfolio.yml", replay, pairs)
    with running(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool") as runner:
        replay.wait_subscribed(replay.symbol(pairs[0]))
        yield runner


def ids(client, org, pair="BTC-USD") -> list[str]:
    return sorted(row["trade_id"] for row in stored_trades(client, org, pair))


def wait_stored(client, org, published, pair="BTC-USD", timeout=30):
    wanted = sorted(str(t.trade_id) for t in published)
    wait_for(lambda: ids(client, org, pair) == wanted, timeout=timeout, what=f"{len(wanted)} {pair} trades")


def assert_exactly(client, org, published, pair="BTC-USD"):
    rows = stored_trades(client, org, pair)
    assert sorted(row["trade_id"] for row in rows) == sorted(str(t.trade_id) for t in published)
    by_id = {row["trade_id"]: row for row in rows}
    for trade in published:
        row = by_id[str(trade.trade_id)]
        assert Decimal(repr(row["price"])) == Decimal(trade.price)
        assert Decimal(repr(row["amount"])) == Decimal(trade.qty)
        assert row["side"] == trade.side
        assert int(row["_time"].timestamp()) == trade.second


def test_trades_become_exactly_these_points(collector_settings, admin_client, kraken, tmp_path):
    org = collector_settings.org
    with streaming(tmp_path, kraken, collector_settings) as runner:
        moment = time.time_ns()
        published = kraken.publish(BTC, "105944.2", "105944.3", "105950", qty="0.00027625")
        published += kraken.publish(BTC, "0.00009417", qty="12.123456789", side="sell")
        # three trades in one nanosecond, in one message: three points
        published += kraken.publish(BTC, "105001.1", "105001.2", "105001.3", time_ns=moment)
        wait_stored(admin_client, org, published)
        health = runner.health("kraken")
        assert health.trades == 7 and health.errors == 0
    assert_exactly(admin_client, org, published)
    subscribe = next(m for m in kraken.received if m.get("method") == "subscribe")
    assert subscribe["params"] == {"channel": "trade", "symbol": [BTC], "snapshot": True}


def test_a_dropped_connection_is_recovered_from_the_snapshot_and_rest(
    collector_settings, admin_client, kraken, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, kraken, collector_settings) as runner:
        published = kraken.publish(BTC, *(f"42000.{i:02d}" for i in range(10)))
        wait_stored(admin_client, org, published)
        # 80 trades the collector never hears of: the snapshot on the new subscription has the last 50 only
        published += kraken.publish(BTC, *(f"42001.{i:02d}" for i in range(80)), deliver=False)
        kraken.drop_connections()
        wait_for(lambda: kraken.subscribed(BTC) == 1 and len(kraken.connections) == 1, what="resubscribed")
        published += kraken.publish(BTC, "42002.00", "42002.01")
        wait_stored(admin_client, org, published)
        assert runner.health("kraken").gap_filled >= 30
    assert_exactly(admin_client, org, published)


def test_a_jump_in_trade_ids_is_gap_filled_over_rest(collector_settings, admin_client, kraken, tmp_path):
    org = collector_settings.org
    with streaming(tmp_path, kraken, collector_settings) as runner:
        published = kraken.publish(BTC, "43000.00", "43000.01")
        wait_stored(admin_client, org, published)
        published += kraken.publish(BTC, "43000.02", "43000.03", "43000.04", deliver=False)  # a lost message
        published += kraken.publish(BTC, "43000.05")  # its id is three past the last one seen
        wait_stored(admin_client, org, published)
        assert runner.health("kraken").gap_filled >= 3
        assert runner.health("kraken").reconnects == 0  # no reconnect: the ids told
    assert_exactly(admin_client, org, published)
    assert any("/Trades?" in path for path in kraken.http.requests)


def test_a_restart_resumes_exactly_after_the_last_stored_trade(
    collector_settings, admin_client, kraken, tmp_path, monkeypatch
):
    org = collector_settings.org
    config = write_kraken_config(tmp_path / "portfolio.yml", kraken)
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool"):
        kraken.wait_subscribed(BTC)
        published = kraken.publish(BTC, *(f"41000.{i:02d}" for i in range(10)))
        wait_stored(admin_client, org, published)
    monkeypatch.setattr(Kraken, "trades_per_page", 40)  # REST pages the 120 trades missed while down
    published += kraken.publish(BTC, *(f"41001.{i:03d}" for i in range(120)), deliver=False)
    kraken.http.requests.clear()
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool") as runner:
        wait_stored(admin_client, org, published)
        assert runner.health("kraken").gap_filled >= 70  # the snapshot brought the last 50
    assert_exactly(admin_client, org, published)
    trade_requests = [path for path in kraken.http.requests if "/Trades?" in path]
    assert len(trade_requests) >= 2  # paged on with Kraken's cursor


def test_rate_limits_server_errors_and_kraken_errors_are_survived(
    collector_settings, admin_client, kraken, tmp_path
):
    org = collector_settings.org
    limited = (429, {"Retry-After": "0.2"}, '{"error":["EGeneral:Too many requests"]}')
    unavailable = (503, {"Retry-After": "0.2"}, "<html>maintenance</html>")
    error_array = (200, {}, '{"error":["EService:Unavailable"]}')
    rate_error = (200, {}, '{"error":["EAPI:Rate limit exceeded"]}')
    other_error = (200, {}, '{"error":["EGeneral:Internal error"]}')
    with streaming(tmp_path, kraken, collector_settings) as runner:
        published = kraken.publish(BTC, "44000.00")
        wait_stored(admin_client, org, published)
        published += kraken.publish(BTC, *(f"44001.{i:02d}" for i in range(60)), deliver=False)
        kraken.http.script("/Trades", limited, unavailable, error_array, rate_error, other_error)
        kraken.drop_connections()
        wait_stored(admin_client, org, published)
        health = runner.health("kraken")
        assert kraken.http.scripted["/Trades"] == []
        assert health.rate_limited >= 2  # the 429 and Kraken's own rate-limit error
        # Kraken's passing errors are retried within the call, as the 429 and the 503 are; another one fails
        # the gap-fill call, which is retried
        assert health.errors == 1
    assert_exactly(admin_client, org, published)


def test_malformed_messages_are_counted_and_streaming_goes_on(
    collector_settings, admin_client, kraken, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, kraken, collector_settings) as runner:
        kraken.send_raw("{not json")
        kraken.send_raw('{"channel":"surprise","data":[]}')
        kraken.send_raw('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy"}]}')
        kraken.send_raw('{"error":"Exceeded msg rate","success":false}')
        published = kraken.publish(BTC, "40000.00")
        wait_stored(admin_client, org, published)
        assert runner.health("kraken").errors == 4
    assert_exactly(admin_client, org, published)


def test_pairs_added_and_removed_by_an_edit_are_subscribed_and_unsubscribed(
    collector_settings, admin_client, kraken, tmp_path
):
    org, path = collector_settings.org, tmp_path / "portfolio.yml"
    with streaming(tmp_path, kraken, collector_settings):
        write_kraken_config(path, kraken, pairs=("BTC-USD", "ETH-EUR"))
        kraken.wait_subscribed("ETH/EUR")
        eth = kraken.publish("ETH/EUR", "2345.01", "2345.02")
        wait_stored(admin_client, org, eth, pair="ETH-EUR")
        write_kraken_config(path, kraken, pairs=("ETH-EUR",))
        wait_for(lambda: kraken.subscribed(BTC) == 0, what="BTC/USD unsubscribed")
        eth += kraken.publish("ETH/EUR", "2345.03")
        wait_stored(admin_client, org, eth, pair="ETH-EUR")
    assert_exactly(admin_client, org, eth, pair="ETH-EUR")
    unsubscribe = next(m for m in kraken.received if m.get("method") == "unsubscribe")
    assert unsubscribe["params"] == {"channel": "trade", "symbol": [BTC]}


def test_the_same_pair_from_kraken_and_bitstamp_at_once(
    collector_settings, admin_client, kraken, replay, tmp_path
):
    org, path = collector_settings.org, tmp_path / "portfolio.yml"
    config = write_kraken_config(path, kraken)
    text = path.read_text().replace(
        "exchanges:\n",
        f"exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n    ws_url: {replay.ws_url}\n    rest_url: {replay.rest_url}\n",
    )
    path.write_text(text)
    config = parse_config(text, str(path))
    with running(path, config, collector_settings, tmp_path / "spool"):
        kraken.wait_subscribed(BTC)
        replay.wait_subscribed("btcusd")
        from_kraken = kraken.publish(BTC, "50000.1", "50000.2")
        from_bitstamp = [replay.publish("btcusd", "50000.3"), replay.publish("btcusd", "50000.4")]
        wait_for(lambda: len(stored_trades(admin_client, org, "BTC-USD")) == 4, what="four BTC-USD trades")
    rows = stored_trades(admin_client, org, "BTC-USD")
    by_exchange = {
        name: sorted(r["trade_id"] for r in rows if r["exchange"] == name) for name in ("kraken", "bitstamp")
    }
    assert by_exchange == {
        "kraken": sorted(str(t.trade_id) for t in from_kraken),
        "bitstamp": sorted(str(t.id) for t in from_bitstamp),
    }


def test_candles_within_krakens_reach_are_backfilled_exactly(
    collector_settings, admin_client, kraken, tmp_path, caplog
):
    config = write_kraken_config(tmp_path / "portfolio.yml", kraken)
    config = replace(config, backfill=replace(config.backfill, since=date(2020, 1, 1)))
    collector = Collector(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", FAST)
    collector.writer.start()
    try:
        runtime = collector.runtime(config.exchanges["kraken"])
        with caplog.at_level(logging.INFO):
            (result,) = collector.backfill(runtime, config.exchanges["kraken"].pairs)
        assert collector.writer.flush(60)
    finally:
        collector.writer.close()
        collector.reader.close()
    current = int(time.time()) // 3600 * 3600
    assert result.status == "ok" and result.requests == 1, result
    rows = stored_rows(admin_client, collector_settings.org, "crypto_history", "candle", "BTC-USD")
    opens = sorted(int(row["_time"].timestamp()) for row in rows)
    assert opens[-1] == current - 3600 and len(opens) in (719, 720)  # never the open candle
    expected = synthetic_row("XXBTZUSD", opens[-1])
    assert [rows[-1][f] for f in ("open", "high", "low", "close", "volume")] == [
        float(expected[i]) for i in (1, 2, 3, 4, 6)
    ]
    assert "kraken BTC-USD: candles from 2020-01-01 00:00 UTC to " in caplog.text
    assert "beyond the exchange's reach (its latest 720)" in caplog.text


def test_pings_are_answered_and_a_quiet_link_stays_up(
    collector_settings, admin_client, kraken, tmp_path, monkeypatch
):
    monkeypatch.setattr(Kraken, "heartbeat_s", 0.2)
    monkeypatch.setattr(
        Kraken, "silence_s", 0.5
    )  # Kraken's own heartbeats off: pongs and the watchdog's pings
    kraken.heartbeat_s = None
    org = collector_settings.org
    with streaming(tmp_path, kraken, collector_settings) as runner:
        wait_for(lambda: len([m for m in kraken.received if m.get("method") == "ping"]) >= 8, what="8 pings")
        health = runner.health("kraken")
        assert health.errors == 0 and health.reconnects == 0  # every pong understood, no false alarm
        published = kraken.publish(BTC, "45000.00")
        wait_stored(admin_client, org, published)
    assert_exactly(admin_client, org, published)


def test_a_restart_while_a_gap_fill_still_pages_fills_the_rest(
    collector_settings, admin_client, kraken, tmp_path
):
    org, path = collector_settings.org, tmp_path / "portfolio.yml"
    config = write_kraken_config(path, kraken)
    with running(path, config, collector_settings, tmp_path / "spool"):
        kraken.wait_subscribed(BTC)
        published = kraken.publish(BTC, *(f"46000.{i:02d}" for i in range(5)))
        wait_stored(admin_client, org, published)
        kraken.http.slow("/Trades", 3600)  # the gap fill after the drop hangs until the stop
        published += kraken.publish(BTC, *(f"46001.{i:02d}" for i in range(80)), deliver=False)
        kraken.drop_connections()
        wait_for(lambda: kraken.subscribed(BTC) == 1 and len(kraken.connections) == 1, what="resubscribed")
        published += kraken.publish(BTC, "46002.00")  # the newest trade, stored live
        wait_for(lambda: str(published[-1].trade_id) in ids(admin_client, org), what="the newest trade")
    kraken.http.delays.clear()
    with running(path, config, collector_settings, tmp_path / "spool"):
        wait_stored(admin_client, org, published, timeout=15)  # the 30 the snapshot does not hold included
    assert_exactly(admin_client, org, published)
