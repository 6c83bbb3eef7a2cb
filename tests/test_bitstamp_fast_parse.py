"""Bitstamp's messages go through the fast (inexact) JSON parser; a trade keeps only exact values all the same.

The fast parse is kept only when the trade's price and amount come from their strings and no number it takes is a
float; otherwise the message is parsed again exactly. So the fast path must change nothing a trade holds.
"""

from decimal import Decimal
from pathlib import Path

import pytest

from collector.config import ExchangeConfig, Pair
from collector.exchanges import bitstamp
from collector.exchanges.base import MessageError
from collector.exchanges.bitstamp import Bitstamp

BTC = Pair("BTC", "USD")
FIXTURES = Path(__file__).parent / "fixtures" / "bitstamp"


def _adapter() -> Bitstamp:
    pairs = (BTC, Pair("ETH", "USD"), Pair("XRP", "USD"))
    adapter = Bitstamp(ExchangeConfig("bitstamp", pairs))
    adapter.subscribe_messages(pairs)
    return adapter


def _outcome(adapter: Bitstamp, message: str):
    try:
        return adapter.parse(message)
    except MessageError as exc:
        return f"MessageError: {exc}"


def _trade(data: str) -> str:
    return f'{{"event": "trade", "channel": "live_trades_btcusd", "data": {{{data}}}}}'


@pytest.mark.parametrize(
    ("data", "price", "amount", "trade_id"),
    [
        # no strings: the number tokens themselves, exact (a float would round the price)
        (
            '"id": 7, "timestamp": "1", "type": 0, "price": 43000.123456789012345, "amount": 0.1',
            "43000.123456789012345",
            "0.1",
            7,
        ),
        # strings beside numbers: the strings
        (
            '"id": 7, "timestamp": "1", "type": 0, "price": 1.1, "price_str": "1.10", "amount": 2, "amount_str": "2.0"',
            "1.10",
            "2.0",
            7,
        ),
        # an id past 64 bits, which the fast parser makes a float
        (
            '"id": 36893488147419103232, "timestamp": "1", "type": 1, "price_str": "1", "amount_str": "1"',
            "1",
            "1",
            2**65,
        ),
    ],
)
def test_a_trade_keeps_exact_values_whatever_the_fast_parser_makes_of_them(data, price, amount, trade_id):
    (trade,) = _adapter().parse(_trade(data)).trades
    assert (trade.price, trade.amount, trade.trade_id) == (Decimal(price), Decimal(amount), trade_id)
    assert str(trade.price) == price  # the exact text, trailing zeros included


def test_the_fast_path_changes_no_outcome_of_the_recorded_messages(monkeypatch):
    messages = [
        line
        for case in sorted(FIXTURES.iterdir())
        if (case / "messages.jsonl").is_file()
        for line in (case / "messages.jsonl").read_text().splitlines()
    ]
    messages.append(_trade('"id": 1, "timestamp": "1", "type": 0, "price_str": "\\ud800", "amount_str": "1"'))
    messages.append('{"event": "trade", "channel": "live_trades_btcusd", "data": {"price": NaN}}')
    fast = [_outcome(_adapter(), message) for message in messages]
    monkeypatch.setattr(bitstamp, "load_json_inexact", lambda message: None)  # every message parsed exactly
    exact = [_outcome(_adapter(), message) for message in messages]
    assert len(messages) > 20
    assert fast == exact
