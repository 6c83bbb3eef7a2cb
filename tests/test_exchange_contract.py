"""The exchange contract's building blocks: trade ids, point times, RFC 3339 times, exact values."""

import asyncio
import logging
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import ExchangeConfig, Pair
from collector.exchanges import EXCHANGES
from collector.exchanges.base import Exchange, MessageError, Page, Parsed, decimal_from, time_ns_from_iso
from collector.gap_fill import GapFiller
from collector.health import ExchangeHealth
from collector.open_gaps import OpenGaps
from collector.records import Candle, LastTrade, Ticker, inexact

BTC = Pair("BTC", "USD")


class Millis(Exchange):
    name = "millis"
    ws_url = rest_url = "http://localhost"
    trade_time_unit_ns = 1_000_000


def test_bitstamp_point_time_is_the_second_plus_the_id_offset_as_before():
    bitstamp = EXCHANGES["bitstamp"](ExchangeConfig("bitstamp", (BTC,)))
    trade = bitstamp.trade(BTC, "216000477", "3805.44", "0.0792", "buy", 1_641_343_699_596_000_000)
    assert trade.trade_id == 216000477 and trade.price == Decimal("3805.44")
    assert trade.time_ns == 1_641_343_699 * 10**9 + 216000477 % 10**9
    big = bitstamp.trade(BTC, 5_000_000_123, "1", "1", "sell", 1_641_343_699 * 10**9)
    assert big.time_ns == 1_641_343_699_000_000_123  # the offset is the id modulo the unit


def test_point_time_keeps_the_exchange_unit_and_separates_trades_within_it():
    exchange = Millis(ExchangeConfig("millis", (BTC,)))
    first = exchange.trade(BTC, 1001, "1", "1", "buy", 1_700_000_000_123_456_789)
    second = exchange.trade(BTC, 1002, "1", "1", "buy", 1_700_000_000_123_999_999)
    assert first.time_ns == 1_700_000_000_123_000_000 + 1001
    assert second.time_ns == 1_700_000_000_123_000_000 + 1002
    again = exchange.trade(BTC, "1001", "1.0", "1", "buy", 1_700_000_000_123_000_000)  # the REST copy
    assert again.time_ns == first.time_ns


@pytest.mark.parametrize("bad_id", ["abc", "1.5", "", " ", Decimal("1.5"), None, True, "0x1f", "١٢"])
def test_a_trade_id_that_is_no_integer_is_a_message_error(bad_id):
    with pytest.raises(MessageError, match="trade id"):
        Millis(ExchangeConfig("millis", (BTC,))).trade(BTC, bad_id, "1", "1", "buy", 0)


def test_a_side_other_than_buy_or_sell_is_a_message_error():
    with pytest.raises(MessageError, match="side"):
        Millis(ExchangeConfig("millis", (BTC,))).trade(BTC, 1, "1", "1", "b", 0)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-01-02T03:04:05Z", 1_704_164_645_000_000_000),
        ("2024-01-02T03:04:05.1Z", 1_704_164_645_100_000_000),
        ("2024-01-02T03:04:05.123456Z", 1_704_164_645_123_456_000),
        ("2024-01-02T03:04:05.123456789Z", 1_704_164_645_123_456_789),
        ("2024-01-02T03:04:05.1234567891Z", 1_704_164_645_123_456_789),  # past ns: cut, never rounded
        ("2024-01-02T04:04:05.5+01:00", 1_704_164_645_500_000_000),
        ("2024-01-02 03:04:05z", 1_704_164_645_000_000_000),
    ],
)
def test_rfc3339_times_become_exact_nanoseconds(text, ns):
    assert time_ns_from_iso(text) == ns


@pytest.mark.parametrize(
    "text",
    ["", "2024-01-02", "2024-01-02T03:04:05", "2024-13-02T03:04:05Z", "2024-01-02T03:04:05.Z", 7, None],
)
def test_a_time_that_is_no_rfc3339_is_a_message_error(text):
    with pytest.raises(MessageError):
        time_ns_from_iso(text)


def test_inexact_means_a_float_would_not_read_back_as_the_exact_value():
    for exact in ("3805.44", "0.00000001", "50000.00", "123456789012345", "1E-8", "0.1", "96.69000000"):
        assert not inexact(Decimal(exact)), exact
    for lossy in ("1234567890.123456789", "0.12345678901234567", "1E+400"):
        assert inexact(Decimal(lossy)), lossy


@settings(max_examples=3000, deadline=None)
@given(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.one_of(st.integers(min_value=-25, max_value=10), st.integers(min_value=-340, max_value=330)),
)
def test_inexact_takes_its_cheap_test_only_where_the_float_reads_back(mantissa, exponent):
    value = Decimal(mantissa).scaleb(exponent)
    assert inexact(value) == (Decimal(repr(float(value))) != value), value


def test_parsed_names_pairs_as_tuples():
    assert Parsed() == Parsed(trades=[], subscribed=(), unsubscribed=(), missed=())


def test_only_the_exchanges_own_values_are_counted_and_each_kind_logged_once(caplog):
    health = ExchangeHealth()
    computed = Ticker("x", BTC, 0, last=Decimal("100"), change_24h_pct=Decimal(1) / Decimal(3))
    lossy = Decimal("1.00000000000000001")
    candle = Candle("x", BTC, 60, 0, Decimal(1), lossy, Decimal(1), Decimal(1), Decimal(1))
    with caplog.at_level(logging.WARNING):
        health.count_inexact(logging.getLogger("test"), [computed, candle, candle])
    assert health.inexact_values == 2  # the ticker's change is computed, not the exchange's text
    assert caplog.text.count("candle high 1.00000000000000001 is stored as the nearest float 1.0") == 1


class SamePage(Millis):
    """An exchange that ignores the id cursor: the same page, with `more`, whatever is asked."""

    trade_cursor = "id"
    trade_history_s = 3600

    def __init__(self, config):
        super().__init__(config)
        self.asked_after: list[int | None] = []

    def recent_trades(self, http, pair, since_s, after_id=None):
        self.asked_after.append(after_id)
        moment_ns = (int(time.time()) - 60) * 10**9
        return Page(records=[self.trade(BTC, i, "1", "1", "buy", moment_ns) for i in (6, 7)], more=True)


def test_a_gap_fill_whose_cursor_does_not_move_on_ends_out_loud(caplog):
    """Review: a page that names no later id than the one asked after (an exchange ignoring the cursor) ends
    the fill with an error counted, instead of asking for the same page for ever."""
    exchange, health, accepted = SamePage(ExchangeConfig("millis", (BTC,))), ExchangeHealth(), []

    async def fill() -> None:
        filler = GapFiller(
            exchange, None, health, lambda trades: accepted.extend(trades) or trades, 0.01, 0.01
        )
        filler.start(BTC, LastTrade(int(time.time()) - 120, 5))
        async with asyncio.timeout(5):
            while filler._running:
                await asyncio.sleep(0.01)

    with caplog.at_level(logging.WARNING):
        asyncio.run(fill())
    assert exchange.asked_after == [5, 7]
    assert [trade.trade_id for trade in accepted] == [6, 7]
    assert health.errors == 1
    assert "BTC-USD: the exchange has trades after id 7 but its page names no later id" in caplog.text


@pytest.mark.parametrize(
    "moment", [1_700_000_000.123456 * 10**9, Decimal("1700000000123456000"), "1700000000"]
)
def test_a_trade_time_that_is_not_integer_nanoseconds_is_an_adapter_bug(moment):
    """Review: a float time (Kraken's "1699999999.123456" * 1e9) would give a rounded or fractional point time."""
    with pytest.raises(TypeError, match="exchange_time_ns"):
        Millis(ExchangeConfig("millis", (BTC,))).trade(BTC, 1, "1", "1", "buy", moment)


def test_open_gaps_survive_a_restart_and_a_broken_file_is_said_and_ignored(tmp_path, caplog):
    path = tmp_path / "spool" / "open_gaps.json"
    OpenGaps(path).opened("kraken", BTC, LastTrade(1_700_000_000, 42))
    OpenGaps(path).opened("bitstamp", BTC, LastTrade(1_700_000_100))
    reread = OpenGaps(path)
    assert reread.of("kraken") == {BTC: LastTrade(1_700_000_000, 42)}
    assert reread.of("bitstamp") == {BTC: LastTrade(1_700_000_100, None)}
    reread.closed("kraken", BTC)
    assert OpenGaps(path).of("kraken") == {} and OpenGaps(path).of("bitstamp")
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert OpenGaps(path).of("bitstamp") == {}
    assert "open_gaps.json is unreadable" in caplog.text


@pytest.mark.parametrize("text", ["1e400", "-1E+309", "1e-400", "0.1e-320"])
def test_a_value_no_float_can_hold_is_a_bad_value_not_an_infinite_or_zero_point(text):
    with pytest.raises(MessageError, match="a float can hold"):
        decimal_from(text, "trade price")


@pytest.mark.parametrize("text", ["0", "0.00000000", "1e-8", "67000.10", "1E+20", "-3.5"])
def test_ordinary_values_are_kept_exactly(text):
    assert decimal_from(text, "trade price") == Decimal(text)
