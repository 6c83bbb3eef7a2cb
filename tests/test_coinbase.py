"""Coinbase's own rules, beyond the golden fixtures: one subscribe for every product, acknowledgements of many
products at once, lost messages seen in `sequence_num` and `heartbeat_counter` jumps, and the REST side (trades
resumed exactly after an id, candles, ticker) against the replayed Exchange API through the real HTTP client."""

import json
import time
from decimal import Decimal

import pytest

from collector.config import ExchangeConfig, Pair
from collector.exchanges.base import MessageError
from collector.exchanges.coinbase import Coinbase
from collector.http import CallWindow, HttpClient
from tests.replay.coinbase import SAMPLE_STATS, SAMPLE_TICKER, PublishedTrade, candle_values

BTC, ETH = Pair("BTC", "USD"), Pair("ETH", "USD")


def connected(*pairs) -> Coinbase:
    adapter = Coinbase(ExchangeConfig("coinbase", pairs))
    adapter.connection_opened()
    adapter.subscribe_messages(pairs)
    return adapter


def message(channel: str, sequence: int, events: list) -> str:
    return json.dumps({"channel": channel, "client_id": "", "sequence_num": sequence, "events": events})


def acks(sequence: int, *products: str) -> str:
    return message("subscriptions", sequence, [{"subscriptions": {"market_trades": list(products)}}])


def heartbeat(sequence: int, counter) -> str:
    event = {"current_time": "2026-08-09 21:05:42.123 +0000 UTC m=+41691.26", "heartbeat_counter": counter}
    return message("heartbeats", sequence, [event])


def test_one_subscribe_names_every_product_and_heartbeats_are_asked_once_per_connection():
    adapter = Coinbase(ExchangeConfig("coinbase", (BTC, ETH)))
    adapter.connection_opened()
    first = [json.loads(m) for m in adapter.subscribe_messages([BTC, ETH])]
    assert first == [
        {"type": "subscribe", "channel": "market_trades", "product_ids": ["BTC-USD", "ETH-USD"]},
        {"type": "subscribe", "channel": "heartbeats"},
    ]
    assert [json.loads(m)["channel"] for m in adapter.subscribe_messages([Pair("SOL", "USD")])] == [
        "market_trades"
    ]
    assert json.loads(adapter.unsubscribe_messages([ETH])[0]) == {
        "type": "unsubscribe",
        "channel": "market_trades",
        "product_ids": ["ETH-USD"],
    }
    adapter.connection_opened()  # a new connection subscribes to heartbeats again
    assert [json.loads(m)["channel"] for m in adapter.subscribe_messages([BTC])] == [
        "market_trades",
        "heartbeats",
    ]
    assert adapter.heartbeat_message() is None


def test_one_subscriptions_message_acknowledges_every_product_it_lists_and_only_news():
    adapter = connected(BTC, ETH)
    both = adapter.parse(acks(0, "BTC-USD", "ETH-USD"))
    assert both.subscribed == (BTC, ETH) and both.unsubscribed == ()
    again = adapter.parse(acks(1, "BTC-USD", "ETH-USD"))  # listed after another (un)subscribe
    assert again.subscribed == () and again.unsubscribed == ()
    after_unsubscribe = adapter.parse(acks(2, "BTC-USD"))
    assert after_unsubscribe.unsubscribed == (ETH,) and after_unsubscribe.subscribed == ()
    assert adapter.parse(acks(3, "BTC-USD", "DOGE-EUR")).subscribed == ()  # not ours: not acknowledged


def test_a_heartbeat_counter_jump_means_missed_messages_for_every_pair_of_the_connection():
    adapter = connected(BTC, ETH)
    adapter.parse(acks(0, "BTC-USD", "ETH-USD"))
    assert adapter.parse(heartbeat(1, 41)).missed == ()
    assert adapter.parse(heartbeat(2, "42")).missed == ()  # the counter as a string, too
    assert adapter.parse(heartbeat(3, 44)).missed == (BTC, ETH)  # heartbeat 43 was lost
    assert adapter.parse(heartbeat(4, 45)).missed == ()


def test_a_sequence_jump_or_an_unusable_message_means_missed_messages():
    adapter = connected(BTC)
    assert adapter.parse(acks(0, "BTC-USD")).missed == ()
    assert adapter.parse(heartbeat(1, 1)).missed == ()
    assert adapter.parse(heartbeat(3, 2)).missed == (BTC,)  # message 2 never came
    with pytest.raises(MessageError):
        adapter.parse(message("market_trades", 4, [{"type": "update", "trades": [{"trade_id": "x"}]}]))
    # the unusable message's trades are lost to the stream: the next message reports the jump, to gap fill them
    assert adapter.parse(heartbeat(5, 3)).missed == (BTC,)
    assert adapter.parse(heartbeat(5, 3)).missed == ()  # a repeat is no jump


def test_a_new_connection_starts_its_own_sequence_and_counter():
    adapter = connected(BTC)
    adapter.parse(acks(0, "BTC-USD"))
    adapter.parse(heartbeat(1, 500))
    adapter.connection_opened()
    adapter.subscribe_messages([BTC])
    ack = adapter.parse(acks(0, "BTC-USD"))
    assert ack.subscribed == (BTC,) and ack.missed == ()
    assert adapter.parse(heartbeat(1, 1)).missed == ()


def test_requests_are_spaced_to_ten_a_second():
    clock = [0.0]
    window = CallWindow(
        Coinbase.rate_limit, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
    )
    for _ in range(40):
        window.take()
    assert clock[0] >= 3.0 - 1e-9  # 40 requests: 10 in any second


@pytest.fixture
def http():
    client = HttpClient("coinbase", Coinbase.rate_limit, attempts=3)
    yield client
    client.close()


def rest_adapter(replay) -> Coinbase:
    return Coinbase(ExchangeConfig("coinbase", (BTC,), ws_url=replay.ws_url, rest_url=replay.rest_url))


def test_trades_resume_exactly_after_an_id_page_by_page(coinbase_replay, http):
    now_us = time.time_ns() // 1000
    published = [
        coinbase_replay.publish(
            "BTC-USD", f"68000.{i:02d}", side="SELL" if i % 2 else "BUY", time_us=now_us + i
        )
        for i in range(2500)
    ]
    adapter = rest_adapter(coinbase_replay)
    after, fetched, pages = published[99].id, [], 0
    while True:
        page = adapter.recent_trades(http, BTC, since_s=0, after_id=after)
        pages += 1
        fetched += page.records
        if not page.more:
            break
        after = page.records[-1].trade_id
    assert [t.trade_id for t in fetched] == [t.id for t in published[100:]]  # nothing missed or fetched twice
    assert pages == 3
    assert coinbase_replay.http.requests[0].endswith(f"before={published[99].id}&limit=1000")
    for trade, source in zip(fetched, published[100:], strict=True):
        assert trade.price == Decimal(source.price) and trade.amount == Decimal(source.size)
        assert trade.side == source.taker_side  # the opposite of Coinbase's (maker) side
        assert trade.time_ns == source.point_time_ns


def test_trades_without_a_known_id_start_with_the_page_holding_that_time(coinbase_replay, http):
    now_us = time.time_ns() // 1000
    published = [
        coinbase_replay.publish("BTC-USD", "68000.00", time_us=now_us - 3_000_000_000 + i * 1_000_000)
        for i in range(3500)
    ]
    since_s = published[1200].time_us / 1e6
    adapter = rest_adapter(coinbase_replay)
    page = adapter.recent_trades(http, BTC, since_s=since_s)
    assert page.records[0].time_ns <= published[1200].point_time_ns <= page.records[-1].time_ns
    assert page.more  # newer trades follow: paged by id from its last one, as a gap fill does
    fetched = list(page.records)
    while page.more:
        page = adapter.recent_trades(http, BTC, since_s=since_s, after_id=fetched[-1].trade_id)
        fetched += page.records
    assert [t.trade_id for t in fetched if t.time_ns >= since_s * 1e9] == [t.id for t in published[1200:]]
    searched = [path for path in coinbase_replay.http.requests if "after=" in path]
    assert len(searched) == 4  # three one-trade probes by id, then the page


def test_the_page_holding_a_time_a_week_back_is_found_in_a_few_requests(coinbase_replay, http):
    """Without an id the page holding since_s is searched for by id, not walked to page by page: for a busy
    pair a week back is a million trades, a thousand pages at ten a second."""
    now_us = time.time_ns() // 1000
    published = [
        coinbase_replay.publish(
            "BTC-USD", "68000.00", time_us=now_us - 200_000_000_000 + i * 1_000, deliver=False
        )
        for i in range(200_000)
    ]
    since_s = published[3_456].time_us / 1e6
    page = rest_adapter(coinbase_replay).recent_trades(http, BTC, since_s=since_s)
    assert page.records[0].time_ns <= published[3_456].point_time_ns <= page.records[-1].time_ns
    assert page.more
    assert len(coinbase_replay.http.requests) <= 20  # a walk back would take 197 pages


def test_candles_are_exact_ascending_closed_and_page_past_omitted_intervals(coinbase_replay, http):
    step = 3600
    now = int(time.time())
    start = now - now % step - 400 * step
    adapter = rest_adapter(coinbase_replay)
    page = adapter.candles(http, BTC, step, start, now)
    assert page.next_start_s == start + 300 * step
    opens = [candle.open_time_s for candle in page.records]
    assert opens == sorted(opens) and opens[0] >= start and opens[-1] < start + 300 * step
    assert len(opens) == 300 - len(
        [t for t in range(start, start + 300 * step, step) if (t // step) % 7 == 0]
    )
    for candle in page.records:
        values = candle_values("BTC-USD", candle.open_time_s)
        assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
            values["open"],
            values["high"],
            values["low"],
            values["close"],
            values["volume"],
        )
    last = adapter.candles(http, BTC, step, page.next_start_s, now)
    assert last.records[-1].open_time_s + step <= now  # the open candle is not stored
    assert "granularity=3600" in coinbase_replay.http.requests[0]


def test_ticker_takes_the_last_trade_and_the_24h_stats(coinbase_replay, http):
    ticker = rest_adapter(coinbase_replay).ticker(http, BTC)
    last, open_24h = Decimal(SAMPLE_TICKER["price"]), Decimal(SAMPLE_STATS["open"])
    assert ticker.last == last
    assert (ticker.bid, ticker.ask) == (Decimal(SAMPLE_TICKER["bid"]), Decimal(SAMPLE_TICKER["ask"]))
    assert (ticker.open, ticker.high, ticker.low) == (open_24h, Decimal("69320.00"), Decimal("67001.37"))
    assert ticker.volume == Decimal(SAMPLE_STATS["volume"])
    assert ticker.change_24h_pct == (last - open_24h) / open_24h * 100


def test_a_page_of_only_malformed_rows_still_pages_on_to_the_trades_after_it(coinbase_replay, http):
    """A full page whose every row is unusable must not end the gap fill: it names the id to page on after."""
    now_us = time.time_ns() // 1000
    before = coinbase_replay.publish("BTC-USD", "68000.00", time_us=now_us, deliver=False)
    bad = [
        coinbase_replay.publish("BTC-USD", "not a price", time_us=now_us + 1 + i, deliver=False)
        for i in range(1000)
    ]
    good = [
        coinbase_replay.publish("BTC-USD", "68001.00", time_us=now_us + 2000 + i, deliver=False)
        for i in range(3)
    ]
    adapter = rest_adapter(coinbase_replay)
    page = adapter.recent_trades(http, BTC, since_s=0, after_id=before.id)
    assert page.records == [] and len(page.bad_rows) == 1000
    assert page.more and page.next_after_id == bad[-1].id
    after = adapter.recent_trades(http, BTC, since_s=0, after_id=page.next_after_id)
    assert [t.trade_id for t in after.records] == [t.id for t in good] and not after.more


def test_a_counter_that_starts_again_lower_is_a_new_baseline_and_its_jumps_still_count():
    """A heartbeat counter or sequence_num that resets (a server-side restart or wrap) must not blind the
    jump detection until it climbs past its old value; what came between is unknown, so it is a miss too."""
    adapter = connected(BTC)
    adapter.parse(acks(0, "BTC-USD"))
    assert adapter.parse(heartbeat(1, 500)).missed == ()
    assert adapter.parse(heartbeat(2, 0)).missed == (BTC,)  # counting again from 0
    assert adapter.parse(heartbeat(3, 1)).missed == ()
    assert adapter.parse(heartbeat(4, 3)).missed == (BTC,)  # heartbeat 2 was lost
    assert adapter.parse(heartbeat(0, 4)).missed == (BTC,)  # the sequence starts again
    assert adapter.parse(heartbeat(2, 5)).missed == (BTC,)  # and message 1 was lost
    assert adapter.parse(heartbeat(3, 6)).missed == ()


def test_a_subscriptions_message_without_market_trades_leaves_the_products_subscribed():
    """Whether Coinbase lists every channel in each `subscriptions` message or only the one just asked for is
    unconfirmed: the heartbeats ack after the market_trades one must not read as every product unsubscribed
    (they would stop being gap filled on a heartbeat jump). An explicit empty list still means none left."""
    adapter = connected(BTC, ETH)
    assert adapter.parse(acks(0, "BTC-USD", "ETH-USD")).subscribed == (BTC, ETH)
    heartbeats_only = [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
    only = adapter.parse(message("subscriptions", 1, heartbeats_only))
    assert only.unsubscribed == () and only.subscribed == ()
    assert adapter.parse(heartbeat(2, 7)).missed == ()
    assert adapter.parse(heartbeat(4, 9)).missed == (BTC, ETH)
    assert adapter.parse(acks(5)).unsubscribed == (BTC, ETH)


def test_a_product_coinbase_drops_by_itself_asks_for_a_reconnect_one_it_was_asked_to_leave_does_not():
    adapter = connected(BTC, ETH)
    adapter.parse(acks(0, "BTC-USD", "ETH-USD"))
    full = [{"subscriptions": {"heartbeats": ["heartbeats"], "market_trades": ["BTC-USD", "ETH-USD"]}}]
    assert not adapter.parse(message("subscriptions", 1, full)).reconnect_requested
    adapter.unsubscribe_messages([ETH])
    asked = adapter.parse(acks(2, "BTC-USD"))
    assert asked.unsubscribed == (ETH,) and not asked.reconnect_requested
    by_itself = adapter.parse(
        message("subscriptions", 3, [{"subscriptions": {"heartbeats": ["heartbeats"]}}])
    )
    assert by_itself.unsubscribed == (BTC,) and by_itself.reconnect_requested  # no product left


@pytest.mark.parametrize("micros", [0, 500_000, 504_360, 123_456, 1])  # Coinbase drops trailing zeros
@pytest.mark.parametrize("maker_side", ["BUY", "SELL"])
def test_a_live_trade_and_its_rest_copy_are_the_same_point(micros, maker_side):
    """Same tags (the side is a tag: both paths turn the maker's side into the taker's) and the same time,
    however many fraction digits Coinbase wrote: a gap fill overwrites, never duplicates."""
    trade = PublishedTrade(
        "BTC-USD", 995098703, "68900.50", "0.00150000", maker_side, 1_775_572_202 * 10**6 + micros
    )
    adapter = connected(BTC)
    live = adapter.parse(message("market_trades", 1, [{"type": "update", "trades": [trade.ws_row()]}])).trades
    recovered = adapter._trade(BTC, trade.rest_row())
    assert live == [recovered]
    assert recovered.side == trade.taker_side != maker_side.lower()
    assert recovered.time_ns == trade.point_time_ns
