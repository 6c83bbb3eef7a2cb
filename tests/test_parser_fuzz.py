"""Property-based fuzz: no message, however broken, makes the Bitstamp parser raise anything but MessageError."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import ExchangeConfig, Pair
from collector.exchanges.base import MessageError
from collector.exchanges.bitstamp import Bitstamp

PAIRS = (Pair("BTC", "USD"), Pair("ETH", "EUR"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
numberish = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.decimals(allow_nan=True).map(str),
    st.none(),
    st.booleans(),
)
trade_data = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.integers(), st.text(max_size=12), st.none()),
        "timestamp": numberish,
        "microtimestamp": numberish,
        "price": numberish,
        "price_str": numberish,
        "amount": numberish,
        "amount_str": numberish,
        "type": numberish,
    },
)
events = st.sampled_from(
    ["trade", "bts:request_reconnect", "bts:heartbeat", "bts:subscription_succeeded", "bts:error", "other"]
)
channels = st.sampled_from(["live_trades_btcusd", "live_trades_etheur", "live_trades_x", "", None, 7])


def adapter() -> Bitstamp:
    bitstamp = Bitstamp(ExchangeConfig("bitstamp", PAIRS))
    bitstamp.subscribe_messages(PAIRS)
    return bitstamp


def parse_or_message_error(bitstamp: Bitstamp, message) -> None:
    try:
        parsed = bitstamp.parse(message)
    except MessageError:
        return
    for trade in parsed.trades:
        assert trade.pair in PAIRS
        assert trade.price.is_finite() and trade.amount.is_finite()
        assert trade.side in ("buy", "sell")
        assert trade.trade_id.lstrip("-").isdigit()


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text(message):
    parse_or_message_error(adapter(), message)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json(value):
    parse_or_message_error(adapter(), json.dumps(value))


@settings(max_examples=600, deadline=None)
@given(events, channels, st.one_of(trade_data, json_values))
def test_trade_shaped_messages(event, channel, data):
    parse_or_message_error(
        adapter(), json.dumps({"event": event, "channel": channel, "data": data}, default=str)
    )
