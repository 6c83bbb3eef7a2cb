"""Property-based fuzz of every registered exchange's parsers: no message or REST answer, however broken, makes
one raise anything but MessageError, and every trade one yields keeps the contract (an integer id, exact
values, a point time built from its exchange's unit).

Besides arbitrary text and JSON, each exchange gets its own recorded messages (tests/fixtures/<exchange>) with
values swapped for arbitrary ones: the shapes its parser actually branches on, fed broken values."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import CoinGeckoConfig, ExchangeConfig, Pair
from collector.exchanges import EXCHANGES
from collector.exchanges.base import MessageError, Page, load_json
from collector.records import Candle

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(EXCHANGES)
LIVE = [
    name for name in NAMES if EXCHANGES[name].live_trades
]  # REST-only sources (CoinGecko) parse no messages

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def recorded(name: str) -> tuple[tuple[Pair, ...], list]:
    """The pairs and the JSON messages of the exchange's golden fixtures."""
    pairs: set[Pair] = set()
    messages = []
    for case in sorted((FIXTURES / name).glob("*/case.json")):
        pairs.update(Pair.parse(text) for text in json.loads(case.read_text())["pairs"])
        for line in (case.parent / "messages.jsonl").read_text().splitlines():
            try:
                messages.append(json.loads(line))
            except ValueError:
                continue
    assert pairs and messages, f"exchange {name!r} has no fixtures to fuzz in {FIXTURES / name}"
    return tuple(sorted(pairs, key=str)), messages


def adapter(name: str, pairs):
    if not EXCHANGES[name].live_trades:
        coins = {}  # the ids its fixtures use, so recorded answers match
        for case in sorted((FIXTURES / name).glob("*/case.json")):
            coins.update(json.loads(case.read_text()).get("coins", {}))
        return EXCHANGES[name](CoinGeckoConfig(name, pairs, coins=tuple(coins.items())), environ={})
    exchange = EXCHANGES[name](ExchangeConfig(name, pairs))
    exchange.connection_opened()
    exchange.subscribe_messages(pairs)
    return exchange


def mutated(draw, value):
    """`value` with some of its parts (keys kept) replaced by arbitrary JSON."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    if isinstance(value, dict):
        return {key: mutated(draw, item) for key, item in value.items()}
    if isinstance(value, list):
        return [mutated(draw, item) for item in value]
    return value


def check_trades(exchange, pairs, parsed_trades) -> None:
    for trade in parsed_trades:
        assert trade.exchange == exchange.name and trade.pair in pairs
        assert trade.price.is_finite() and trade.amount.is_finite()
        assert trade.side in ("buy", "sell")
        assert type(trade.trade_id) is int and type(trade.time_ns) is int
        unit = exchange.trade_time_unit_ns
        assert trade.time_ns % unit == trade.trade_id % unit


def parse_or_message_error(name: str, message) -> None:
    pairs, _ = recorded(name)
    exchange = adapter(name, pairs)
    try:
        parsed = exchange.parse(message)
    except MessageError:
        return
    check_trades(exchange, pairs, parsed.trades)
    assert set(parsed.subscribed) | set(parsed.unsubscribed) | set(parsed.missed) <= set(pairs)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", LIVE)
@FUZZ
@given(message=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text(name, message):
    parse_or_message_error(name, message)


@pytest.mark.parametrize("name", LIVE)
@FUZZ
@given(value=json_values)
def test_arbitrary_json(name, value):
    parse_or_message_error(name, json.dumps(value))


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_recorded_messages_with_broken_values(name, data):
    _, messages = recorded(name)
    message = data.draw(st.sampled_from(messages))
    broken = json.dumps(mutated(data.draw, message), default=str)
    if EXCHANGES[name].live_trades:
        parse_or_message_error(name, broken)
    else:  # a REST-only source's fixtures are its answers
        fetch_or_message_error(name, broken)


class CannedHttp:
    def __init__(self, body: str):
        self.body = body

    def get_json(self, url, params=None, headers=None):
        return load_json(self.body)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(value=json_values)
def test_rest_answers(name, value):
    """Recent trades and candles from any answer: a page (bad rows described) or a MessageError."""
    fetch_or_message_error(name, json.dumps(value))


def fetch_or_message_error(name: str, answer: str) -> None:
    pairs, _ = recorded(name)
    exchange = adapter(name, pairs)
    http = CannedHttp(answer)
    since_s = 1_700_000_000
    rest_only = (
        lambda: exchange.candles(http, pairs[0], max(exchange.candle_steps), since_s, since_s + 3 * 86_400),
        lambda: Page([exchange.ticker(http, pair) for pair in pairs]),
        lambda: exchange.assets(http),
    )
    trades = (
        lambda: exchange.recent_trades(http, pairs[0], since_s),
        lambda: exchange.recent_trades(http, pairs[0], since_s, after_id=5),
    )
    for fetch in (
        *(trades if exchange.live_trades else rest_only),
        lambda: exchange.candles(http, pairs[0], min(exchange.candle_steps), since_s, since_s + 86_400),
    ):
        try:
            page = fetch()
        except MessageError:
            continue
        if page.records and hasattr(page.records[0], "trade_id"):
            check_trades(exchange, pairs, page.records)
        for candle in (record for record in page.records if isinstance(record, Candle)):
            assert (
                candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high
            )
