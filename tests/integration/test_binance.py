"""Binance end to end: the replayed websocket and REST API v3, the real collector, the real influxd. Exactly the
trades the replay served, none twice, across drops, id jumps, restarts, planned 24 h hand-overs, serverShutdown,
429 and 418 bans; the protocol's rules (5 messages a second, pongs) kept."""

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.config import Config, parse_config
from collector.exchanges.binance import Binance
from collector.service import Collector
from tests.integration.harness import FAST, running, same_price, stored_rows, stored_trades, wait_for
from tests.replay.binance import BinanceReplay, kline_row

HOUR = 3600
BANNED = (418, {"Retry-After": "1"}, '{"code":-1003,"msg":"Way too many requests; IP banned until later."}')


@pytest.fixture
def binance():
    with BinanceReplay() as server:
        yield server


def write_config(path: Path, replay: BinanceReplay, pairs=("BTC-USDT",)) -> Config:
    since = datetime.fromtimestamp(time.time() - 3 * 86400, UTC).strftime("%Y-%m-%d")
    text = (
        "exchanges:\n"
        "  binance:\n"
        f"    pairs: [{', '.join(pairs)}]\n"
        f"    ws_url: {replay.ws_url}\n"
        f"    rest_url: {replay.rest_url}\n"
        f"backfill:\n  interval: 1h\n  every: 12h\n  since: {since}\n"
    )
    path.write_text(text)
    return parse_config(text, str(path))


def collecting(tmp_path: Path, replay: BinanceReplay, settings, pairs=("BTC-USDT",)):
    config = write_config(tmp_path / "portfolio.yml", replay, pairs)
    return running(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool")


def _ids(client, org, pair="BTC-USDT") -> list[int]:
    return sorted(int(row["trade_id"]) for row in stored_trades(client, org, pair))


def _wait_ids(client, org, trades, pair="BTC-USDT", timeout=30) -> None:
    wanted = {t.id for t in trades}
    wait_for(
        lambda: wanted <= set(_ids(client, org, pair)), timeout=timeout, what=f"{len(wanted)} {pair} trades"
    )


def _assert_exactly(client, org, trades, pair="BTC-USDT") -> None:
    assert _ids(client, org, pair) == sorted(t.id for t in trades), "missing or duplicated trades"


def _historical_requests(replay) -> list[str]:
    return [path for path in replay.http.requests if "/historicalTrades" in path]


def _start(replay, runner, streams=("btcusdt@trade",)) -> None:
    for stream in streams:
        replay.wait_subscribed(stream)
    runner.health("binance")


def test_subscribed_trades_become_exactly_these_points(collector_settings, admin_client, binance, tmp_path):
    org = collector_settings.org
    with collecting(tmp_path, binance, collector_settings, ("BTC-USDT", "ETH-BTC")) as runner:
        _start(binance, runner, ("btcusdt@trade", "ethbtc@trade"))
        now_ms = time.time_ns() // 1_000_000
        published = [
            binance.publish("BTCUSDT", f"68900.{i:02d}", f"0.{i + 1:08d}", buyer_is_maker=i % 2 == 1)
            for i in range(30)
        ]
        same_ms = [binance.publish("BTCUSDT", "68950.00", "1.5", time_ms=now_ms) for _ in range(2)]
        eth = binance.publish("ETHBTC", "0.05123000", "2.00000000", buyer_is_maker=True)
        # malformed frames: counted and logged, the stream goes on
        binance.send_raw('{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"', "btcusdt@trade")
        binance.send_event(published[0].event() | {"p": "n/a"}, "btcusdt@trade")
        binance.send_event(published[0].event() | {"s": "XRPUSDT"}, "btcusdt@trade")
        late = binance.publish("BTCUSDT", "68999.99")
        for trade in published[:5]:  # redelivered, bare and wrapped: still one point each
            binance.send_event(trade.event(with_order_ids=True), trade.stream, wrapped=False)
            binance.send_event(trade.event(), trade.stream)
        # Binance's protocol ping is answered (it cuts a connection that leaves one unanswered for a minute)
        assert binance.ping_clients() == 1
        published.append(late)
        _wait_ids(admin_client, org, published + same_ms)
        _wait_ids(admin_client, org, [eth], "ETH-BTC")
        health = runner.health("binance")
        assert health.errors == 3 and health.trades == 44
    _assert_exactly(admin_client, org, published + same_ms)
    rows = {int(row["trade_id"]): row for row in stored_trades(admin_client, org, "BTC-USDT")}
    for trade in published + same_ms:
        row = rows[trade.id]
        assert same_price(row["price"], trade.price) and same_price(row["amount"], trade.qty)
        assert row["side"] == ("sell" if trade.buyer_is_maker else "buy")
        assert row["quote"] == "USDT"  # never folded into USD
        assert int(row["_time"].timestamp() * 1000) == trade.time_ms  # the exchange's millisecond
    (eth_row,) = stored_trades(admin_client, org, "ETH-BTC")
    assert eth_row["side"] == "sell" and same_price(eth_row["price"], "0.05123000")
    subscribes = [request for _, request in binance.received if request["method"] == "SUBSCRIBE"]
    assert [sorted(request["params"]) for request in subscribes] == [["btcusdt@trade", "ethbtc@trade"]]
    assert binance.rate_breaches == 0


def test_a_dropped_connection_is_gap_filled_by_id_from_the_last_trade_seen(
    collector_settings, admin_client, binance, tmp_path
):
    org = collector_settings.org
    with collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        published = [binance.publish("BTCUSDT", f"68000.{i:02d}") for i in range(5)]
        _wait_ids(admin_client, org, published)
        missed = [binance.publish("BTCUSDT", "68001.00", deliver=False) for _ in range(1500)]  # two pages
        binance.drop_connections()
        wait_for(lambda: "btcusdt@trade" in binance.subscribed_on(2), what="the new connection")
        published += missed + [binance.publish("BTCUSDT", "68002.00")]
        _wait_ids(admin_client, org, published, timeout=60)
        assert runner.health("binance").gap_filled >= 1500
    _assert_exactly(admin_client, org, published)
    fetched = _historical_requests(binance)
    assert f"fromId={published[4].id + 1}&" in fetched[0]  # exactly after the last trade seen
    assert not [path for path in binance.http.requests if "/aggTrades" in path]  # the id was known


def test_a_trade_id_jump_on_the_live_feed_is_filled(collector_settings, admin_client, binance, tmp_path):
    org = collector_settings.org
    with collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        first = binance.publish("BTCUSDT", "68000.00")
        _wait_ids(admin_client, org, [first])
        lost = [binance.publish("BTCUSDT", "68000.50", deliver=False) for _ in range(3)]  # never delivered
        after = binance.publish("BTCUSDT", "68001.00")
        _wait_ids(admin_client, org, [first, *lost, after])
        assert runner.health("binance").reconnects == 0  # found on a live connection, not by a reconnect
    _assert_exactly(admin_client, org, [first, *lost, after])
    assert f"fromId={first.id + 1}&" in _historical_requests(binance)[0]


def test_a_restart_resumes_exactly_after_the_last_stored_trade(
    collector_settings, admin_client, binance, tmp_path
):
    org = collector_settings.org
    with collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        before = [binance.publish("BTCUSDT", f"67000.{i:02d}") for i in range(10)]
        _wait_ids(admin_client, org, before)
    while_stopped = [binance.publish("BTCUSDT", "67001.00", deliver=False) for _ in range(20)]
    binance.http.requests.clear()
    with collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        after = [binance.publish("BTCUSDT", "67002.00")]
        _wait_ids(admin_client, org, before + while_stopped + after)
    _assert_exactly(admin_client, org, before + while_stopped + after)
    assert f"fromId={before[-1].id + 1}&" in _historical_requests(binance)[0]


def test_the_planned_24_hour_hand_over_loses_and_duplicates_nothing(
    collector_settings, admin_client, binance, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Binance, "max_connection_s", 3.0)  # 24 h, shortened: handed over 2.7 s after opening
    binance.max_lifetime_s = 4.5  # the replay cuts a connection then, as Binance does at 24 h
    org = collector_settings.org
    with caplog.at_level(logging.INFO), collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        published = []
        deadline = time.monotonic() + 8  # two hand-overs at least
        while time.monotonic() < deadline:
            published.append(binance.publish("BTCUSDT", "68000.00"))
            time.sleep(0.02)  # a steady feed, not a synchronisation
        _wait_ids(admin_client, org, published)
        health = runner.health("binance")
        assert health.reconnects >= 2 and health.errors == 0
    _assert_exactly(admin_client, org, published)
    assert binance.lifetime_cuts == 0, "a connection outlived its limit: the hand-over came too late"
    assert binance.rate_breaches == 0
    assert "its connection time limit is near" in caplog.text


def test_server_shutdown_is_handed_over_make_before_break(
    collector_settings, admin_client, binance, tmp_path
):
    org = collector_settings.org
    with collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        published = [binance.publish("BTCUSDT", f"68000.{i:02d}") for i in range(10)]
        binance.server_shutdown()
        for i in range(30):  # the old connection still delivers while the new one opens
            published.append(binance.publish("BTCUSDT", f"68001.{i:02d}"))
            time.sleep(0.01)
        wait_for(lambda: len(binance.connections) == 1 and binance.connection_number() == 2, what="hand-over")
        published += [binance.publish("BTCUSDT", "68002.00") for _ in range(10)]
        _wait_ids(admin_client, org, published)
        assert runner.health("binance").reconnects == 1
    _assert_exactly(admin_client, org, published)


def test_a_gap_fill_waits_out_a_429_and_a_418_ban(
    collector_settings, admin_client, binance, tmp_path, caplog
):
    org = collector_settings.org
    with caplog.at_level(logging.ERROR), collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        seen = binance.publish("BTCUSDT", "68000.00")
        _wait_ids(admin_client, org, [seen])
        missed = [binance.publish("BTCUSDT", "68000.10", deliver=False) for _ in range(5)]
        limited = (429, {"Retry-After": "1"}, '{"code":-1003,"msg":"Too many requests"}')
        binance.http.script("/historicalTrades", limited, BANNED)
        binance.drop_connections()
        _wait_ids(admin_client, org, [seen, *missed])
        assert runner.health("binance").rate_limited == 2
    _assert_exactly(admin_client, org, [seen, *missed])
    assert binance.early_requests == []  # nothing sent before either Retry-After had passed
    assert "BANNED this IP (HTTP 418)" in caplog.text


def test_pairs_added_and_removed_while_running(collector_settings, admin_client, binance, tmp_path):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    with collecting(tmp_path, binance, collector_settings) as runner:
        _start(binance, runner)
        write_config(path, binance, ("BTC-USDT", "ETH-BTC"))
        binance.wait_subscribed("ethbtc@trade")
        eth = binance.publish("ETHBTC", "0.05100000")
        _wait_ids(admin_client, org, [eth], "ETH-BTC")
        write_config(path, binance, ("ETH-BTC",))
        wait_for(lambda: binance.subscribed("btcusdt@trade") == 0, what="the unsubscribe")
        assert runner.health("binance").errors == 0
    requests = [(r["method"], r["params"]) for _, r in binance.received]
    assert requests == [
        ("SUBSCRIBE", ["btcusdt@trade"]),
        ("SUBSCRIBE", ["ethbtc@trade"]),
        ("UNSUBSCRIBE", ["btcusdt@trade"]),
    ]


def test_klines_and_the_ticker_are_stored(collector_settings, admin_client, binance, tmp_path):
    org = collector_settings.org
    now_hour = int(time.time()) // HOUR * HOUR
    binance.candle_start_s = now_hour - 1500 * HOUR  # two pages of klines
    config = write_config(tmp_path / "portfolio.yml", binance)
    collector = Collector(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", FAST)
    collector.writer.start()
    try:
        runtime = collector.runtime(config.exchanges["binance"])
        (result,) = collector.backfill(
            runtime, list(config.exchanges["binance"].pairs), binance.candle_start_s
        )
        tickers, _ = collector.reference_data(runtime)
    finally:
        collector.writer.close()
        collector.reader.close()
    assert result.status == "ok", result.detail
    assert tickers == 1
    rows = stored_rows(admin_client, org, "crypto_history", "candle", "BTC-USDT")
    opens = sorted(int(row["_time"].timestamp()) for row in rows)
    expected = list(range(binance.candle_start_s, now_hour, HOUR))
    assert (
        opens[: len(expected)] == expected and len(opens) <= len(expected) + 1
    )  # an hour may turn meanwhile
    row = next(r for r in rows if int(r["_time"].timestamp()) == expected[3])
    assert same_price(row["close"], kline_row("BTCUSDT", expected[3], HOUR)[4])
    (ticker,) = stored_rows(admin_client, org, "crypto_meta", "ticker", "BTC-USDT")
    assert same_price(ticker["last"], "77265.00000000")


def test_the_same_pair_from_two_exchanges_at_once_stays_apart(
    collector_settings, admin_client, binance, replay, tmp_path
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    write_config(path, binance, ("BTC-EUR",))
    text = path.read_text().replace(
        "backfill:",
        f"  bitstamp:\n    pairs: [BTC-EUR]\n    ws_url: {replay.ws_url}\n    rest_url: {replay.rest_url}\nbackfill:",
    )
    path.write_text(text)
    with running(path, parse_config(text, str(path)), collector_settings, tmp_path / "spool") as runner:
        _start(binance, runner, ("btceur@trade",))
        replay.wait_subscribed("btceur")
        now_ms = time.time_ns() // 1_000_000
        # the same id at the same moment on both: still two trades, one per exchange
        on_binance = [binance.publish("BTCEUR", "61000.10", time_ms=now_ms, trade_id=777)]
        on_binance += [binance.publish("BTCEUR", "61000.20") for _ in range(3)]
        on_bitstamp = [replay.publish("btceur", "61000.30", microtimestamp=now_ms * 1000, trade_id=777)]
        on_bitstamp += [replay.publish("btceur", "61000.40") for _ in range(2)]

        def by_exchange():
            rows = stored_trades(admin_client, org, "BTC-EUR")
            return {
                name: sorted(int(r["trade_id"]) for r in rows if r["exchange"] == name)
                for name in ("binance", "bitstamp")
            }

        expected = {
            "binance": sorted(t.id for t in on_binance),
            "bitstamp": sorted(t.id for t in on_bitstamp),
        }
        wait_for(lambda: by_exchange() == expected, what="both exchanges' trades")
    assert by_exchange() == expected
    prices = {
        (r["exchange"], int(r["trade_id"])): r["price"] for r in stored_trades(admin_client, org, "BTC-EUR")
    }
    assert same_price(prices["binance", 777], "61000.10") and same_price(prices["bitstamp", 777], "61000.30")
