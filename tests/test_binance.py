"""Binance: symbols, subscribe requests and their acks, REST recovery by trade id, klines paging, tickers, and the
request weight, 429 and 418 rules, against the replayed REST API (no database needed)."""

import json
import logging
import threading
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import ExchangeConfig, Pair
from collector.exchanges.base import MessageError
from collector.exchanges.binance import Binance
from collector.http import HttpClient, RateLimited
from collector.retry import Backoff
from collector.stop import Stopped, StopSignal
from tests.replay.binance import BinanceReplay, kline_row

BTC_USDT, ETH_BTC = Pair("BTC", "USDT"), Pair("ETH", "BTC")
HOUR = 3600


@pytest.fixture
def binance():
    with BinanceReplay() as server:
        yield server


def adapter(replay=None, pairs=(BTC_USDT, ETH_BTC)) -> Binance:
    urls = {"rest_url": replay.rest_url, "ws_url": replay.ws_url} if replay else {}
    return Binance(ExchangeConfig("binance", tuple(pairs), **urls))


def client(**options) -> HttpClient:
    return HttpClient("binance", Binance.rate_limit, backoff=Backoff(0.01, 0.05), **options)


# --- symbols and the websocket protocol ---------------------------------------------------------------------


def test_symbols_are_split_with_the_configured_pairs_and_usdt_stays_usdt():
    exchange = adapter(pairs=(BTC_USDT, Pair("BTC", "USD"), Pair("USDT", "EUR")))
    assert exchange.symbol(BTC_USDT) == "BTCUSDT"

    def pair_of(symbol):
        event = {"e": "trade", "s": symbol, "t": 1, "p": "1.5", "q": "2", "T": 1_700_000_000_000, "m": False}
        return exchange.parse(json.dumps(event)).trades[0].pair

    assert pair_of("BTCUSDT") == BTC_USDT  # not BTC-USD, though BTCUSD is configured and a prefix of it
    assert pair_of("BTCUSD") == Pair("BTC", "USD")
    assert pair_of("USDTEUR") == Pair("USDT", "EUR")
    with pytest.raises(MessageError, match="'ETHUSDT' is not one we subscribed to"):
        pair_of("ETHUSDT")  # never guessed from the letters


def test_one_request_carries_every_stream_and_its_ack_names_the_pairs():
    exchange = adapter()
    (subscribe,) = exchange.subscribe_messages([BTC_USDT, ETH_BTC])
    request = json.loads(subscribe)
    assert request["method"] == "SUBSCRIBE"
    assert request["params"] == ["btcusdt@trade", "ethbtc@trade"]
    (unsubscribe,) = exchange.unsubscribe_messages([ETH_BTC])
    ack = exchange.parse(json.dumps({"result": None, "id": request["id"]}))
    assert ack.subscribed == (BTC_USDT, ETH_BTC)
    unsubscribed = exchange.parse(json.dumps({"result": None, "id": json.loads(unsubscribe)["id"]}))
    assert unsubscribed.unsubscribed == (ETH_BTC,)
    # a second ack of the same request (e.g. from a connection being replaced) acknowledges nothing new
    assert exchange.parse(json.dumps({"result": None, "id": request["id"]})).subscribed == ()
    (again,) = exchange.subscribe_messages([BTC_USDT])
    with pytest.raises(MessageError, match="expected a null result"):
        exchange.parse(json.dumps({"result": ["btcusdt@trade"], "id": json.loads(again)["id"]}))


def test_pairs_are_batched_1024_a_request_with_distinct_ids():
    pairs = [Pair(f"C{i:04d}", "USDT") for i in range(1500)]
    exchange = adapter(pairs=pairs)
    requests = [json.loads(message) for message in exchange.subscribe_messages(pairs)]
    assert [len(r["params"]) for r in requests] == [1024, 476]
    assert len({r["id"] for r in requests}) == 2
    acked = [exchange.parse(json.dumps({"result": None, "id": r["id"]})).subscribed for r in requests]
    assert [pair for batch in acked for pair in batch] == pairs


def test_an_error_reply_says_what_was_refused():
    exchange = adapter()
    (subscribe,) = exchange.subscribe_messages([BTC_USDT])
    request_id = json.loads(subscribe)["id"]
    reply = {"error": {"code": 2, "msg": "Invalid request: unknown stream"}, "id": request_id}
    with pytest.raises(MessageError) as refused:
        exchange.parse(json.dumps(reply))
    assert str(refused.value) == (
        f"exchange error: code 2 'Invalid request: unknown stream' answering request {request_id} "
        "(SUBSCRIBE BTC-USDT)"
    )


@pytest.mark.parametrize(
    "message",
    [
        {"e": "serverShutdown", "E": 1789455809000},
        {"stream": "", "data": {"e": "serverShutdown", "E": 1789455809000}},
        {"event": {"e": "serverShutdown", "E": 1770123456789}},
    ],
)
def test_server_shutdown_is_a_reconnect_request(message):
    assert adapter().parse(json.dumps(message)).reconnect_requested


def test_the_taker_side_and_the_millisecond_point_time():
    exchange = adapter()
    base = {"e": "trade", "s": "BTCUSDT", "p": "68900.01", "q": "0.0015", "T": 1789455809123}
    (sold,) = exchange.parse(json.dumps(base | {"t": 5_123_456_789, "m": True})).trades
    (bought,) = exchange.parse(json.dumps(base | {"t": 5_123_456_790, "m": False})).trades
    assert (sold.side, bought.side) == ("sell", "buy")  # m: the buyer was the maker, so the taker sold
    assert sold.time_ns == 1789455809123_000_000 + 456_789  # the millisecond, plus id % 10^6 ns
    assert bought.time_ns == sold.time_ns + 1  # two trades in one millisecond never collide
    assert sold.price == Decimal("68900.01") and sold.amount == Decimal("0.0015")


# --- REST ---------------------------------------------------------------------------------------------------


def test_recent_trades_resume_exactly_after_an_id_and_page_by_1000(binance):
    published = [binance.publish("BTCUSDT", f"68000.{i % 100:02d}", deliver=False) for i in range(2500)]
    exchange, http = adapter(binance), client()
    after = published[9].id
    page = exchange.recent_trades(http, BTC_USDT, since_s=0, after_id=after)
    assert [t.trade_id for t in page.records] == [t.id for t in published[10:1010]]
    assert page.more
    collected = list(page.records)
    while page.more:
        page = exchange.recent_trades(http, BTC_USDT, since_s=0, after_id=collected[-1].trade_id)
        collected += page.records
    assert [t.trade_id for t in collected] == [t.id for t in published[10:]]
    assert any(f"fromId={after + 1}&" in path for path in binance.http.requests)


def test_recent_trades_without_an_id_start_at_the_first_trade_after_a_time(binance):
    now_ms = time.time_ns() // 1_000_000
    old = binance.publish("BTCUSDT", "1.0", time_ms=now_ms - 60_000, deliver=False)
    new = [binance.publish("BTCUSDT", "2.0", time_ms=now_ms - 10_000 + i, deliver=False) for i in range(3)]
    page = adapter(binance).recent_trades(client(), BTC_USDT, since_s=(now_ms - 30_000) / 1000)
    assert [t.trade_id for t in page.records] == [t.id for t in new]
    assert old.id not in [t.trade_id for t in page.records] and not page.more
    nothing = adapter(binance).recent_trades(client(), BTC_USDT, since_s=now_ms / 1000 + 5)
    assert nothing.records == [] and not nothing.more


def test_klines_are_paged_1000_at_a_time_without_the_open_candle(binance):
    now = int(time.time())
    start = now // HOUR * HOUR - 2500 * HOUR
    binance.candle_start_s = start - 10 * HOUR
    exchange, http = adapter(binance), client()
    candles, page_start, pages = [], start, 0
    while page_start < now:
        page = exchange.candles(http, BTC_USDT, HOUR, page_start, now)
        candles += page.records
        page_start, pages = page.next_start_s, pages + 1
    assert pages == 3
    opens = [c.open_time_s for c in candles]
    assert opens == list(range(start, now // HOUR * HOUR, HOUR))  # ascending, no gap, the open hour left out
    row = kline_row("BTCUSDT", opens[7], HOUR)
    assert [candles[7].open, candles[7].high, candles[7].low, candles[7].close, candles[7].volume] == [
        Decimal(value) for value in row[1:6]
    ]
    assert all("limit=1000" in path and "interval=1h" in path for path in binance.http.requests)


def test_the_ticker_change_is_exact_from_the_price_24_hours_ago(binance):
    ticker = adapter(binance).ticker(client(), BTC_USDT)
    assert ticker.last == Decimal("77265.00000000") and ticker.open == Decimal("77700.00000000")
    assert ticker.change_24h_pct == (Decimal("77265") - Decimal("77700")) / Decimal("77700") * 100
    assert ticker.vwap == Decimal("78381.12345678") and ticker.bid == Decimal("77264.99000000")


# --- request weight, 429, 418 -------------------------------------------------------------------------------


def test_a_418_ban_stops_every_request_until_retry_after_loudly(binance, caplog):
    exchange, http = adapter(binance), client()
    binance.http.queued = [
        (418, {"Retry-After": "2"}, '{"code":-1003,"msg":"Way too many requests; IP banned"}')
    ]
    with caplog.at_level(logging.ERROR):
        started = time.monotonic()
        tickers = _during_a_pause(http, lambda: exchange.ticker(http, BTC_USDT))
    assert time.monotonic() - started >= 2.0
    assert [ticker.last for ticker in tickers] == [Decimal("77265.00000000")] * 2
    assert binance.early_requests == []  # nothing was sent during the ban, by either thread
    assert http.health.rate_limited == 1
    assert "the exchange BANNED this IP (HTTP 418) for 2 s" in caplog.text


def _during_a_pause(http: HttpClient, request) -> list:
    """`request` on a thread; once its answer paused the client, `request` again on another: both results."""
    results: list = []
    first = threading.Thread(target=lambda: results.append(request()))
    first.start()
    deadline = time.monotonic() + 5
    while http.paused_until_s < time.time() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = threading.Thread(target=lambda: results.append(request()))
    second.start()
    first.join(10)
    second.join(10)
    return results


def test_a_ban_that_outlasts_the_retries_is_a_rate_limit_not_missing_data(binance):
    http = client(attempts=2)
    binance.http.queued = [(418, {"Retry-After": "0.3"}, "{}")] * 2
    with pytest.raises(RateLimited):
        adapter(binance).ticker(http, BTC_USDT)
    assert binance.early_requests == []


def test_a_429_retry_after_holds_every_request_of_the_client(binance):
    exchange, http = adapter(binance), client()
    binance.http.queued = [(429, {"Retry-After": "1.5"}, '{"code":-1003,"msg":"Too many requests"}')]
    results = _during_a_pause(http, lambda: exchange.ticker(http, BTC_USDT))
    assert len(results) == 2 and binance.early_requests == []
    assert http.health.rate_limited == 1


def test_the_exchanges_own_weight_count_near_its_limit_pauses_requests_to_the_next_minute(binance, caplog):
    binance.weight_used_elsewhere = 5500  # another program on the same IP
    stop = StopSignal()
    exchange, http = adapter(binance), client(stop=stop)
    with caplog.at_level(logging.WARNING):
        before_s = time.time()
        exchange.ticker(http, BTC_USDT)
        after_s = time.time()
    assert http.used == 5502
    # until just after the minute's end (that of the answer: a minute may turn during the request)
    assert (before_s // 60 + 1) * 60 < http.paused_until_s <= (after_s // 60 + 1) * 60 + 1.5
    assert "5502 of the 6000 request weight a minute used" in caplog.text
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Stopped):
        exchange.ticker(http, BTC_USDT)  # held back until the stop: not sent
    assert len(binance.http.requests) == 1


# --- fuzz ---------------------------------------------------------------------------------------------------

numberish = st.one_of(st.integers(), st.floats(), st.text(max_size=12), st.none(), st.booleans())
trade_events = st.fixed_dictionaries(
    {"e": st.sampled_from(["trade", "serverShutdown", "kline", 5, None])},
    optional={
        "s": st.sampled_from(["BTCUSDT", "ETHBTC", "btcusdt", "XRPUSDT", "", 3, None]),
        "t": numberish,
        "p": numberish,
        "q": numberish,
        "T": numberish,
        "m": numberish,
    },
)
replies = st.fixed_dictionaries(
    {"id": st.one_of(numberish, st.lists(st.integers(), max_size=2))},
    optional={
        "result": st.one_of(st.none(), st.lists(st.text(max_size=5))),
        "error": numberish,
        "code": numberish,
    },
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        trade_events,
        trade_events.map(lambda event: {"stream": "btcusdt@trade", "data": event}),
        trade_events.map(lambda event: {"event": event}),
        replies,
    )
)
def test_binance_shaped_messages_raise_only_message_errors(message):
    exchange = adapter()
    exchange.subscribe_messages([BTC_USDT, ETH_BTC])
    try:
        parsed = exchange.parse(json.dumps(message, default=str))
    except MessageError:
        return
    for trade in parsed.trades:
        assert trade.pair in (BTC_USDT, ETH_BTC)
        assert trade.side in ("buy", "sell") and isinstance(trade.trade_id, int)
