"""Kraken's REST side and its names, against the replayed API over real HTTP (the documented answers served as
Kraken sends them), and the one point a trade makes whichever path brought it."""

import json
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.backfill import backfill_pair
from collector.config import ConfigError, ExchangeConfig, Pair
from collector.exchanges import load_checked_config
from collector.exchanges.base import MessageError, RateLimit
from collector.exchanges.kraken import Kraken, normalized_asset
from collector.http import HttpClient
from collector.retry import Backoff
from collector.storage.points import to_line
from tests.replay.kraken import SAMPLE_TICKER, KrakenReplay, PublishedTrade, synthetic_row
from tests.test_building_blocks import CannedHttp

BTC, DOGE = Pair("BTC", "USD"), Pair("DOGE", "USD")
NS = 1_000_000_000
# Kraken's documentation of Trades, as answered (times: a float64 of the seconds, 17 significant digits)
DOCUMENTED_TRADES = (
    '{"error":[],"result":{"XXBTZUSD":[["53018.10000","0.04628248",1616666442.2951703,"b","m","",33185849],'
    '["53019.50000","0.00168601",1616666442.296356,"b","m","",33185850],'
    '["53041.00000","0.00117527",1616666442.2980762,"s","l","",33185851]],"last":"1616666442298076166"}}'
)


@pytest.fixture
def kraken():
    with KrakenReplay() as server:
        yield server


def adapter(replay=None, pairs=(BTC,)) -> Kraken:
    exchange = Kraken(ExchangeConfig("kraken", pairs, rest_url=replay.rest_url if replay else None))
    exchange.subscribe_messages(pairs)
    return exchange


def http() -> HttpClient:
    return HttpClient("kraken", RateLimit(100, 1), attempts=3, backoff=Backoff(0.01, 0.05))


def test_documented_trades_are_read_exactly(kraken):
    kraken.http.script("/Trades", (200, {}, DOCUMENTED_TRADES))
    page = adapter(kraken).recent_trades(http(), BTC, since_s=1616666441.5)
    assert [t.trade_id for t in page.records] == [33185849, 33185850, 33185851]
    first = page.records[0]
    assert (first.price, first.amount, first.side) == (Decimal("53018.10000"), Decimal("0.04628248"), "buy")
    assert page.records[2].side == "sell"
    assert first.time_ns == 1616666442 * NS + 33185849  # the second (exact from the text) and the id
    assert not page.more and page.bad_rows == []
    assert kraken.http.requests == [f"/0/public/Trades?pair=XBTUSD&since={1616666440 * NS}&count=1000"]


def test_the_live_trade_and_its_rest_copy_are_one_point():
    exchange = adapter()
    live = {
        "symbol": "BTC/USD",
        "side": "buy",
        "price": 53018.1,
        "qty": 0.04628248,
        "ord_type": "market",
        "trade_id": 33185849,
        "timestamp": "2021-03-25T10:00:42.295170Z",
    }
    (from_ws,) = exchange.parse(json.dumps({"channel": "trade", "type": "update", "data": [live]})).trades
    (from_rest, *_) = exchange.recent_trades(CannedHttp(DOCUMENTED_TRADES), BTC, 1616666441).records
    assert to_line(from_ws) == to_line(from_rest)


@settings(max_examples=500, deadline=None)
@given(st.integers(1_500_000_000 * NS, 2_500_000_000 * NS), st.integers(1, 10**12))
def test_both_paths_agree_on_the_point_away_from_a_seconds_edge(time_ns, trade_id):
    """Kraken's time in ns, shown to the microsecond by the websocket and as a float64 by REST: the same point
    unless within a microsecond of a second's turn (the few in ten million the module's doc speaks of)."""
    if time_ns % NS < 1000 or time_ns % NS > NS - 1000:
        return
    trade = PublishedTrade("BTC/USD", trade_id, "100.5", "0.25", "sell", time_ns)
    exchange = adapter()
    ws = json.loads(
        json.dumps({"channel": "trade", "type": "update", "data": [trade.ws_item()]}, default=str)
    )
    ws["data"][0].update(price=100.5, qty=0.25)
    (from_ws,) = exchange.parse(json.dumps(ws)).trades
    row = trade.rest_row()
    row[2] = time_ns / NS
    body = json.dumps({"error": [], "result": {"XXBTZUSD": [row], "last": str(time_ns)}})
    (from_rest,) = exchange.recent_trades(CannedHttp(body), BTC, time_ns // NS).records
    assert from_ws == from_rest


def paged_after(replay, after: PublishedTrade) -> list:
    """Every trade after `after`, paged as the gap fill pages: after the last id of each page while there is more."""
    exchange, client = adapter(replay), http()
    seen, page = [], exchange.recent_trades(client, BTC, after.time_ns / NS, after_id=after.trade_id)
    seen += page.records
    while page.more:
        page = exchange.recent_trades(client, BTC, seen[-1].time_ns / NS, after_id=seen[-1].trade_id)
        seen += page.records
    return seen


def test_trades_after_an_id_are_paged_with_krakens_cursor_each_once(kraken, monkeypatch):
    monkeypatch.setattr(Kraken, "trades_per_page", 40)
    start = time.time_ns() - 60 * NS
    published = [kraken.trade("BTC/USD", f"100.{i:02d}", time_ns=start + i * 7_000_000) for i in range(100)]
    seen = paged_after(kraken, published[9])
    assert [t.trade_id for t in seen] == [t.trade_id for t in published[10:]]
    sinces = [path.split("since=")[1].split("&")[0] for path in kraken.http.requests]
    # a nanosecond before Kraken's `last` (its since is exclusive): the last trade of each page is asked again
    assert sinces[1:] == [str(published[i].time_ns - 1) for i in (39, 78)]


def test_a_page_of_trades_already_held_is_walked_past(kraken, monkeypatch):
    monkeypatch.setattr(Kraken, "trades_per_page", 10)
    moment = time.time_ns() - 60 * NS
    published = [kraken.trade("BTC/USD", "100", time_ns=moment + i) for i in range(25)]  # all in one second
    page = adapter(kraken).recent_trades(http(), BTC, moment / NS, after_id=published[21].trade_id)
    assert [t.trade_id for t in page.records] == [t.trade_id for t in published[22:]]
    assert len(kraken.http.requests) == 3


@pytest.mark.parametrize(
    ("errors", "rate_limited", "requests"),
    [
        ('["EService:Unavailable"]', 0, 3),  # passing: retried with the client's attempts
        ('["EAPI:Rate limit exceeded"]', 3, 3),
        ('["EQuery:Unknown asset pair"]', 0, 1),  # for good: at once
    ],
)
def test_krakens_error_array_is_a_clear_error(kraken, errors, rate_limited, requests):
    kraken.http.script("/Trades", *[(200, {}, f'{{"error":{errors},"result":{{}}}}')] * 3)
    client = http()
    with pytest.raises(MessageError, match=f"Trades: Kraken says {json.loads(errors)[0]}"):
        adapter(kraken).recent_trades(client, BTC, time.time() - 10)
    assert client.health.rate_limited == rate_limited
    assert len(kraken.http.requests) == requests


def test_candles_drop_the_open_row_and_keep_exact_values(kraken):
    now = int(time.time())
    current = now // 3600 * 3600
    page = adapter(kraken).candles(http(), BTC, 3600, current - 1000 * 3600, now)
    opens = [candle.open_time_s for candle in page.records]
    assert opens == list(range(current - 719 * 3600, current, 3600))  # 720 rows, the open one dropped
    assert page.next_start_s == current  # asked again once it has closed
    row = synthetic_row("XXBTZUSD", opens[5])
    candle = page.records[5]
    assert (candle.open, candle.high, candle.low, candle.close) == tuple(Decimal(v) for v in row[1:5])
    assert candle.volume == Decimal(row[6])
    assert f"interval=60&since={current - 1000 * 3600 - 1}" in kraken.http.requests[0]


def test_ticker_takes_the_last_24_hours(kraken):
    asked_s = int(time.time())
    ticker = adapter(kraken).ticker(http(), BTC)
    assert ticker.last == Decimal(SAMPLE_TICKER["c"][0])
    assert (ticker.bid, ticker.ask) == (Decimal(SAMPLE_TICKER["b"][0]), Decimal(SAMPLE_TICKER["a"][0]))
    assert (ticker.high, ticker.low) == (Decimal("106400.00000"), Decimal("104100.00000"))
    assert (ticker.volume, ticker.vwap) == (Decimal("2113.84251766"), Decimal("105512.00915"))
    day_ago = [moment - 86_400 for moment in (asked_s, int(time.time()))]  # a 5-minute turn may come between
    opens_24 = {Decimal(synthetic_row("XXBTZUSD", moment - moment % 300)[1]) for moment in day_ago}
    assert ticker.open in opens_24 and ticker.open != Decimal(SAMPLE_TICKER["o"])  # not Kraken's day open
    assert ticker.change_24h_pct == (ticker.last - ticker.open) / ticker.open * 100
    assert "/OHLC?pair=XBTUSD&interval=5&since=" in kraken.http.requests[1]


def test_an_answer_for_another_pair_is_refused():
    body = '{"error":[],"result":{"XETHZEUR":[],"last":"1"}}'
    with pytest.raises(MessageError, match="no BTC-USD in the answer"):
        adapter().recent_trades(CannedHttp(body), BTC, 1_700_000_000)


@pytest.mark.parametrize(
    ("code", "normal"),
    [("XXBT", "BTC"), ("XBT", "BTC"), ("XXDG", "DOGE"), ("XDG", "DOGE"), ("ZUSD", "USD"), ("XETH", "ETH")]
    + [("USDT", "USDT"), ("XTZ", "XTZ"), ("SOL", "SOL"), ("ZEUS", "ZEUS")],
)
def test_kraken_names_map_to_the_usual_ones(code, normal):
    assert normalized_asset(code) == normal


def test_names_both_ways():
    assert (Kraken.rest_pair(BTC), Kraken.rest_pair(DOGE), Kraken.symbol(DOGE)) == (
        "XBTUSD",
        "XDGUSD",
        "DOGE/USD",
    )
    body = '{"error":[],"result":{"XDGUSD":[["0.0712","1500",1616666442.5,"s","l","",7]],"last":"1"}}'
    (trade,) = adapter(pairs=(DOGE,)).recent_trades(CannedHttp(body), DOGE, 1616666440).records
    assert trade.pair == DOGE


def test_the_status_connection_id_is_kept_to_the_last_digit():
    status = '{"channel":"status","type":"update","data":[{"api_version":"v2",'
    status += '"connection_id":13834774380200032777,"system":"online","version":"2.0.0"}]}'
    assert adapter().parse(status).ignored == "status: system online, connection 13834774380200032777"


def test_ping_and_subscriptions_carry_request_ids():
    exchange = adapter()
    (subscribe,) = [json.loads(m) for m in exchange.subscribe_messages([BTC, DOGE])]
    assert subscribe["params"] == {"channel": "trade", "symbol": ["BTC/USD", "DOGE/USD"], "snapshot": True}
    pings = [json.loads(exchange.heartbeat_message()) for _ in range(2)]
    assert [ping["method"] for ping in pings] == ["ping", "ping"]
    assert len({subscribe["req_id"], *(ping["req_id"] for ping in pings)}) == 3
    assert exchange.unsubscribe_messages([]) == []


def test_a_walk_past_pages_already_held_goes_on_where_it_stopped(kraken, monkeypatch):
    monkeypatch.setattr(Kraken, "trades_per_page", 3)  # each page asks its last trade again: 2 new a page
    moment = time.time_ns() - 60 * NS
    published = [kraken.trade("BTC/USD", "100", time_ns=moment + i) for i in range(50)]
    exchange, client, after = adapter(kraken), http(), published[45].trade_id
    with pytest.raises(MessageError, match=f"20 pages without a trade after id {after}"):
        exchange.recent_trades(client, BTC, moment / NS, after_id=after)
    page = exchange.recent_trades(client, BTC, moment / NS, after_id=after)  # the gap fill's retry
    assert [t.trade_id for t in page.records] == [published[46].trade_id]
    assert len(kraken.http.requests) == 20 + 3  # on from the 20th page, not from the start


@pytest.mark.parametrize("when", ['"1e400"', "-5", '"soon"', "null"])
def test_a_rest_trade_with_an_impossible_time_is_a_bad_row(when):
    body = f'{{"error":[],"result":{{"XXBTZUSD":[["1","1",{when},"b","l","",7]],"last":"1"}}}}'
    page = adapter().recent_trades(CannedHttp(body), BTC, 1_700_000_000)
    assert page.records == [] and len(page.bad_rows) == 1 and "trade time" in page.bad_rows[0]


def test_a_page_ending_inside_trades_of_one_nanosecond_loses_none(kraken, monkeypatch):
    """Kraken's `last` is the page's last trade time in ns and `since` is exclusive: trades sharing that
    nanosecond beyond the page must still come (review: they were skipped)."""
    monkeypatch.setattr(Kraken, "trades_per_page", 4)
    moment = time.time_ns() - 60 * NS
    published = [kraken.trade("BTC/USD", f"100.{i}", time_ns=moment + i // 3) for i in range(10)]  # 3 per ns
    seen = paged_after(kraken, published[0])
    assert [t.trade_id for t in seen] == [t.trade_id for t in published[1:]]


@pytest.mark.parametrize("error", ["EAPI:Rate limit exceeded", "EGeneral:Too many requests", "EService:Busy"])
def test_a_passing_kraken_error_in_a_200_answer_is_retried_like_a_429(kraken, error):
    """Kraken says "slow down" or "busy" with HTTP 200 and an error array: the backfill (and the ticker) retry it
    with backoff, as they retry a 429 or a 503, instead of failing the round (review: it failed at once)."""
    kraken.http.script("/OHLC", (200, {}, json.dumps({"error": [error]})))
    client, now = http(), int(time.time())
    result = backfill_pair(adapter(kraken), client, lambda records: None, BTC, 3600, now - 5 * 3600, None)
    assert (result.status, result.candles) == ("ok", 5)
    assert client.health.rate_limited == (0 if error == "EService:Busy" else 1)
    assert len(kraken.http.requests) == 2


def test_a_kraken_rate_limit_that_lasts_ends_the_round_after_the_clients_attempts(kraken):
    kraken.http.script("/OHLC", *[(200, {}, '{"error":["EAPI:Rate limit exceeded"]}')] * 3)
    client, now = http(), int(time.time())
    result = backfill_pair(adapter(kraken), client, lambda records: None, BTC, 3600, now - 5 * 3600, None)
    assert result.status == "failed" and "EAPI:Rate limit exceeded after 3 attempts" in result.detail
    assert client.health.rate_limited == 3 and len(kraken.http.requests) == 3


@pytest.mark.parametrize(
    ("interval", "every", "refused"),
    [("1m", "12h", True), ("1m", "7h", True), ("1m", "6h", False), ("1h", "12h", False)],
)
def test_rounds_further_apart_than_half_of_krakens_720_candles_are_refused(
    tmp_path, interval, every, refused
):
    """Kraken serves only its latest 720 candles (12 h of 1m): with rounds 12 h apart (the default `every`), the
    candles between two rounds were already out of its reach, each round, silently (review). At most half of it,
    so that one failed round is survived too."""
    path = tmp_path / "portfolio.yml"
    path.write_text(
        f"exchanges:\n  kraken:\n    pairs: [BTC-USD]\nbackfill:\n  interval: {interval}\n  every: {every}\n"
    )
    if not refused:
        assert load_checked_config(path).backfill.every_s > 0
        return
    with pytest.raises(
        ConfigError, match=r"portfolio.yml:6: backfill.every: at most 6h with 1m candles: kraken"
    ):
        load_checked_config(path)


def test_a_deeply_nested_frame_is_a_bad_message_not_a_reconnect():
    """A frame of 100 000 "[" (well under the 4 MB frame limit) made json raise RecursionError, which is no
    MessageError: the stream took it for a bug and dropped the connection (review)."""
    with pytest.raises(MessageError, match="not JSON"):
        adapter().parse("[" * 100_000)
