"""Coinbase end to end: the replayed Advanced Trade websocket and Exchange REST API, the real influxd.

Subscribed at once, trades, candles and the ticker stored exactly (taker side, microsecond point times), a drop, a
heartbeat counter jump and a sequence jump gap filled by trade id, a restart resuming exactly after the last stored
id, 429 survived, malformed frames counted (and the trades they carried recovered), pairs added and removed by an
edit, and the same pair from Bitstamp at the same moment kept apart."""

import json
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from collector.config import parse_config
from collector.storage.reader import flux_query
from tests.integration import harness
from tests.integration.harness import running, same_price, stored_rows, wait_for
from tests.replay.coinbase import SAMPLE_STATS, SAMPLE_TICKER, candle_values

RATE_LIMITED = (429, {"Retry-After": "1"}, '{"message":"Public rate limit exceeded"}')


def write_config(path, replay, pairs=("BTC-USD",)):
    since = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()  # a page of candles, not years
    return harness.write_config(path, replay, pairs, since=since, exchange="coinbase")


@contextmanager
def streaming(tmp_path, replay, settings, pairs=("BTC-USD",)):
    config = write_config(tmp_path / "portfolio.yml", replay, pairs)
    with running(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool") as runner:
        for product in pairs:
            replay.wait_subscribed(product)
        yield runner


def stored(client, org, pair="BTC-USD") -> dict[str, dict]:
    """Each stored Coinbase trade by its id, with its exact point time in nanoseconds."""
    query = flux_query(
        """
from(bucket: "crypto_live")
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "trade" and r.exchange == "coinbase" and r.pair == {pair})
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({{r with time_ns: int(v: r._time)}}))
""",
        pair=pair,
    )
    rows = [record.values for table in client.query_api().query(query, org=org) for record in table.records]
    by_id = {row["trade_id"]: row for row in rows}
    assert len(by_id) == len(rows), "two points for one trade id"
    return by_id


def assert_exactly(client, org, published, pair="BTC-USD") -> None:
    rows = stored(client, org, pair)
    assert sorted(rows) == sorted(str(t.id) for t in published), "missing or duplicated trades"
    for trade in published:
        row = rows[str(trade.id)]
        assert same_price(row["price"], trade.price) and same_price(row["amount"], trade.size)
        assert row["side"] == trade.taker_side  # the opposite of Coinbase's (maker) side
        assert row["time_ns"] == trade.point_time_ns


def wait_stored(client, org, published, pair="BTC-USD", timeout=30):
    wanted = {str(t.id) for t in published}
    wait_for(
        lambda: wanted <= set(stored(client, org, pair)), timeout=timeout, what=f"{len(wanted)} {pair} trades"
    )


def trades_requests(replay, product="BTC-USD") -> list[str]:
    return [path for path in replay.http.requests if f"/products/{product}/trades" in path]


def test_subscribed_at_once_and_every_trade_stored_exactly(
    collector_settings, admin_client, coinbase_replay, tmp_path
):
    org = collector_settings.org
    now_us = time.time_ns() // 1000
    # before the collector connects: the subscription's snapshot brings them
    published = [
        coinbase_replay.publish("BTC-USD", f"68000.{i}", side="SELL", time_us=now_us - 5_000_000 + i)
        for i in range(3)
    ]
    with streaming(tmp_path, coinbase_replay, collector_settings, pairs=("BTC-USD", "ETH-USD")) as runner:
        wait_for(lambda: len(coinbase_replay.received) >= 2, what="both subscribes")
        subscribes = [
            (seconds, request) for number, seconds, request in coinbase_replay.received if number == 1
        ]
        assert all(seconds < 5 for seconds, _ in subscribes)  # Coinbase closes a silent connection after 5 s
        assert [request for _, request in subscribes] == [
            {"type": "subscribe", "channel": "market_trades", "product_ids": ["BTC-USD", "ETH-USD"]},
            {"type": "subscribe", "channel": "heartbeats"},
        ]
        now_us = time.time_ns() // 1000 - 100_000_000  # in the past: a query's range ends now
        for i in range(40):  # times with 6 down to 1 fraction digits once trailing zeros are dropped
            time_us = now_us - now_us % 1_000_000 + [123456, 120000, 100000, 500, 0][i % 5] + i * 1_000_000
            side = "BUY" if i % 2 else "SELL"
            published.append(
                coinbase_replay.publish("BTC-USD", f"{68001 + i}.{i:02d}", f"0.{i + 1:08d}", side, time_us)
            )
        same_us = now_us + 50_000_000
        published += [coinbase_replay.publish("BTC-USD", "68100.01", "1", "BUY", same_us) for _ in range(2)]
        eth = [coinbase_replay.publish("ETH-USD", "3500.125", "0.00000001", "SELL")]
        wait_stored(admin_client, org, published)
        wait_stored(admin_client, org, eth, "ETH-USD")
        candles = wait_for(
            lambda: stored_rows(admin_client, org, "crypto_history", "candle", "BTC-USD"), what="candles"
        )
        tickers = wait_for(
            lambda: stored_rows(admin_client, org, "crypto_meta", "ticker", "BTC-USD"), what="the ticker"
        )
        assert runner.health("coinbase").errors == 0
    assert_exactly(admin_client, org, published)
    assert_exactly(admin_client, org, eth, "ETH-USD")
    ticker = tickers[0]
    assert same_price(ticker["last"], SAMPLE_TICKER["price"]) and same_price(
        ticker["bid"], SAMPLE_TICKER["bid"]
    )
    assert same_price(ticker["open"], SAMPLE_STATS["open"]) and same_price(
        ticker["high"], SAMPLE_STATS["high"]
    )
    for row in candles:
        exact = candle_values("BTC-USD", int(row["_time"].timestamp()))
        assert all(
            same_price(row[key], str(exact[key])) for key in ("open", "high", "low", "close", "volume")
        )


def test_a_dropped_connection_is_gap_filled_by_trade_id_page_by_page(
    collector_settings, admin_client, coinbase_replay, tmp_path
):
    org = collector_settings.org
    coinbase_replay.snapshot_size = 0  # only REST can bring what the connection missed
    with streaming(tmp_path, coinbase_replay, collector_settings) as runner:
        published = [coinbase_replay.publish("BTC-USD", f"42000.{i:02d}") for i in range(5)]
        wait_stored(admin_client, org, published)
        last_seen = published[-1].id
        published += [
            coinbase_replay.publish("BTC-USD", f"42001.{i % 100:02d}", deliver=False) for i in range(1500)
        ]
        coinbase_replay.drop_connections()
        coinbase_replay.wait_subscribed("BTC-USD")
        published += [coinbase_replay.publish("BTC-USD", f"42002.{i:02d}") for i in range(3)]
        wait_stored(admin_client, org, published)
        assert runner.health("coinbase").reconnects >= 1
    assert_exactly(admin_client, org, published)
    cursors = [path for path in trades_requests(coinbase_replay) if "before=" in path]
    assert f"before={last_seen}&" in cursors[0]  # resumed exactly after the last trade seen
    assert len(cursors) >= 2  # 1500 trades: more than one page of 1000


@pytest.mark.parametrize("lost", ["heartbeats", "sequence", "sequence before a trade"])
def test_lost_messages_are_gap_filled_without_a_reconnect(
    collector_settings, admin_client, coinbase_replay, tmp_path, lost
):
    org = collector_settings.org
    with streaming(tmp_path, coinbase_replay, collector_settings) as runner:
        published = [coinbase_replay.publish("BTC-USD", f"43000.{i:02d}") for i in range(3)]
        wait_stored(admin_client, org, published)
        before = len(trades_requests(coinbase_replay))
        # messages Coinbase sent that never arrived: their trades, and a jump in the counter that says so
        published += [coinbase_replay.publish("BTC-USD", f"43001.{i:02d}", deliver=False) for i in range(4)]
        if lost == "heartbeats":
            # a heartbeat already on its way first: the counter's jump is only seen against one received before
            wait_for(
                lambda: coinbase_replay.connections and coinbase_replay.connections[0].heartbeat_counter >= 1,
                what="a first heartbeat",
            )
            coinbase_replay.skip_heartbeats(2)
        elif lost == "sequence":
            coinbase_replay.skip_sequence(3)
        else:  # the jump shows on a message with newer trades of the same pair: filled from before them
            coinbase_replay.skip_sequence(3, "market_trades")
            published.append(coinbase_replay.publish("BTC-USD", "43002.00"))
        wait_stored(admin_client, org, published)
        assert f"before={published[2].id}&" in trades_requests(coinbase_replay)[before]
        assert runner.health("coinbase").reconnects == 0
        assert coinbase_replay.connections_opened == 1
    assert_exactly(admin_client, org, published)


def test_a_restart_resumes_exactly_after_the_last_stored_trade(
    collector_settings, admin_client, coinbase_replay, tmp_path
):
    org = collector_settings.org
    coinbase_replay.snapshot_size = 0
    config = write_config(tmp_path / "portfolio.yml", coinbase_replay)
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool"):
        coinbase_replay.wait_subscribed("BTC-USD")
        published = [coinbase_replay.publish("BTC-USD", f"41000.{i:02d}") for i in range(10)]
        wait_stored(admin_client, org, published)
    last_stored = published[-1].id
    published += [
        coinbase_replay.publish("BTC-USD", f"41001.{i:02d}", deliver=False) for i in range(10)
    ]  # while down
    before = len(trades_requests(coinbase_replay))
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool") as runner:
        wait_stored(admin_client, org, published)
        assert runner.health("coinbase").gap_filled >= 10
    assert f"before={last_stored}&" in trades_requests(coinbase_replay)[before]
    assert_exactly(admin_client, org, published)


def test_429_with_retry_after_is_survived(collector_settings, admin_client, coinbase_replay, tmp_path):
    org = collector_settings.org
    coinbase_replay.snapshot_size = 0
    with streaming(tmp_path, coinbase_replay, collector_settings) as runner:
        published = [coinbase_replay.publish("BTC-USD", f"44000.{i:02d}") for i in range(3)]
        wait_stored(admin_client, org, published)
        published += [coinbase_replay.publish("BTC-USD", f"44001.{i:02d}", deliver=False) for i in range(5)]
        coinbase_replay.http.script("/trades", RATE_LIMITED, RATE_LIMITED)
        coinbase_replay.drop_connections()
        wait_stored(admin_client, org, published)
        assert coinbase_replay.http.scripted["/trades"] == [], coinbase_replay.http.requests
        assert runner.health("coinbase").rate_limited >= 2
    assert_exactly(admin_client, org, published)


def test_malformed_frames_are_counted_and_the_trades_they_carried_recovered(
    collector_settings, admin_client, coinbase_replay, tmp_path
):
    org = collector_settings.org
    with streaming(tmp_path, coinbase_replay, collector_settings) as runner:
        published = [coinbase_replay.publish("BTC-USD", "45000.00")]
        wait_stored(admin_client, org, published)
        errors_before = runner.health("coinbase").errors
        garbled = coinbase_replay.publish("BTC-USD", "45000.01", deliver=False)
        bad = {**garbled.ws_row(), "price": "45,000.01"}
        envelope = {
            "channel": "market_trades",
            "client_id": "",
            "events": [{"type": "update", "trades": [bad]}],
        }
        coinbase_replay.send_raw(json.dumps(envelope), "BTC-USD")
        coinbase_replay.send_raw("{not json")
        coinbase_replay.send_raw('{"channel":"level2","events":[]}')
        published += [garbled, coinbase_replay.publish("BTC-USD", "45000.02")]
        wait_stored(admin_client, org, published)
        assert runner.health("coinbase").errors - errors_before == 3
    assert_exactly(admin_client, org, published)  # the garbled trade came over REST, with its exact price


def test_pairs_added_and_removed_by_an_edit_are_subscribed_and_left(
    collector_settings, admin_client, coinbase_replay, tmp_path
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    with streaming(tmp_path, coinbase_replay, collector_settings) as runner:
        write_config(path, coinbase_replay, pairs=("BTC-USD", "ETH-USD"))
        coinbase_replay.wait_subscribed("ETH-USD")
        eth = [coinbase_replay.publish("ETH-USD", "3500.01")]
        wait_stored(admin_client, org, eth, "ETH-USD")
        write_config(path, coinbase_replay, pairs=("ETH-USD",))
        wait_for(lambda: coinbase_replay.subscribed("BTC-USD") == 0, what="BTC-USD left")
        eth.append(coinbase_replay.publish("ETH-USD", "3500.02"))
        wait_stored(admin_client, org, eth, "ETH-USD")
        requests = [request for _, _, request in coinbase_replay.received]
        assert {"type": "subscribe", "channel": "market_trades", "product_ids": ["ETH-USD"]} in requests
        assert {"type": "unsubscribe", "channel": "market_trades", "product_ids": ["BTC-USD"]} in requests
        assert coinbase_replay.connections_opened == 1  # all on the one connection
        assert runner.health("coinbase").errors == 0
    assert_exactly(admin_client, org, eth, "ETH-USD")


def test_the_same_pair_from_bitstamp_and_coinbase_at_once_stays_apart(
    collector_settings, admin_client, coinbase_replay, replay, tmp_path
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    write_config(path, coinbase_replay)
    text = path.read_text().replace(
        "exchanges:\n",
        f"exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n    ws_url: {replay.ws_url}\n    rest_url: {replay.rest_url}\n",
    )
    path.write_text(text)
    with running(path, parse_config(text, str(path)), collector_settings, tmp_path / "spool") as runner:
        coinbase_replay.wait_subscribed("BTC-USD")
        replay.wait_subscribed("btcusd")
        now_us = time.time_ns() // 1000 - 10_000_000
        # the same moment, the same price, ids that collide modulo either unit: still four points
        on_coinbase = [
            coinbase_replay.publish("BTC-USD", "68000.00", time_us=now_us, trade_id=2_000_000_000 + i)
            for i in range(2)
        ]
        for i in range(2):
            replay.publish("btcusd", "68000.00", microtimestamp=now_us, trade_id=2_000_000_000 + i)
        wait_stored(admin_client, org, on_coinbase)
        wait_for(
            lambda: len(stored_rows(admin_client, org, "crypto_live", "trade", "BTC-USD")) == 4,
            what="4 trades",
        )
        assert runner.health("coinbase").errors == 0 and runner.health("bitstamp").errors == 0
    query = flux_query(
        """
from(bucket: "crypto_live")
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "trade" and r.pair == {pair} and r._field == "trade_id")
""",
        pair="BTC-USD",
    )
    tables = admin_client.query_api().query(query, org=org)
    by_exchange = sorted(
        (record.values["exchange"], record.get_value()) for table in tables for record in table
    )
    ids = [str(2_000_000_000 + i) for i in range(2)]
    assert by_exchange == [
        ("bitstamp", ids[0]),
        ("bitstamp", ids[1]),
        ("coinbase", ids[0]),
        ("coinbase", ids[1]),
    ]
    assert_exactly(admin_client, org, on_coinbase)


def test_a_product_coinbase_drops_by_itself_is_subscribed_again_and_its_trades_recovered(
    collector_settings, admin_client, coinbase_replay, tmp_path
):
    """Coinbase closes a channel by itself (idle) while the connection and its heartbeats go on: no silence
    ever shows it, so the `subscriptions` list that no longer names the product must bring it back."""
    org = collector_settings.org
    with streaming(tmp_path, coinbase_replay, collector_settings) as runner:
        first = [coinbase_replay.publish("BTC-USD", "68000.01")]
        wait_stored(admin_client, org, first)
        coinbase_replay.close_channel("BTC-USD")
        while_dropped = coinbase_replay.publish("BTC-USD", "68000.02")  # reaches no connection
        coinbase_replay.wait_subscribed("BTC-USD")
        published = [*first, while_dropped, coinbase_replay.publish("BTC-USD", "68000.03")]
        wait_stored(admin_client, org, published)
        assert runner.health("coinbase").errors == 0
    assert_exactly(admin_client, org, published)
