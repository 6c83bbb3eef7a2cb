"""The hot path's line protocol (collector/storage/lines.py) is byte for byte what influxdb-client's Point writes,
odd tag values included, and an exchange's exact decimal reads back as itself."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from collector.config import Pair
from collector.records import Candle, PortfolioValue, Position, Trade, Transaction
from collector.storage.points import candle_point, to_line, trade_point, valuation_point

ODD = [" ", ",", "=", "\\", '"', "\n", "\t", "é", "₿", "#", "a b", "end\\", ""]
tag_text = st.one_of(st.sampled_from(ODD), st.text(min_size=0, max_size=12))
names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
# an exchange's prices and amounts: up to 15 significant digits, which a float holds exactly as text
exact = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(-exponent),
    st.integers(min_value=0, max_value=10**15 - 1).map(str),
    st.integers(min_value=0, max_value=12),
)
any_decimal = st.one_of(
    exact,
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("1e400"), Decimal("-0"), Decimal("1E+20")]),
)


@given(
    names,
    tag_text,
    tag_text,
    st.sampled_from(["buy", "sell", "o dd"]),
    any_decimal,
    any_decimal,
    st.integers(0, 2**63 - 1),
)
def test_a_trade_line_is_what_point_writes(exchange, base, quote, side, price, amount, time_ns):
    trade = Trade(exchange, Pair(base, quote), 300_000_001, price, amount, side, time_ns)
    assert to_line(trade) == ("live", trade_point(trade).to_line_protocol())


@given(
    names, tag_text, tag_text, st.sampled_from([60, 3600, 86400, 90]), any_decimal, any_decimal, any_decimal
)
def test_a_candle_line_is_what_point_writes(exchange, base, quote, interval, open_, close, volume):
    candle = Candle(exchange, Pair(base, quote), interval, 1_700_000_000, open_, close, open_, close, volume)
    assert to_line(candle) == ("history", candle_point(candle).to_line_protocol())


def test_the_series_key_is_cached_per_pair_and_side_and_still_escaped():
    pair = Pair("B,T C", "U=SD\\")
    first = to_line(Trade("bitstamp", pair, 1, Decimal("1"), Decimal("2"), "buy", 5))[1]
    second = to_line(Trade("bitstamp", pair, 2, Decimal("3"), Decimal("4"), "sell", 6))[1]
    assert first.startswith(
        "trade,base=B\\,T\\ C,exchange=bitstamp,pair=B\\,T\\ C-U\\=SD\\ ,quote=U\\=SD\\ ,side=buy "
    )
    assert ",side=sell amount=4,price=3," in second


@given(exact, exact)
def test_exact_decimals_read_back_as_the_exchange_wrote_them(price, amount):
    line = to_line(Trade("bitstamp", Pair("BTC", "USD"), 7, price, amount, "buy", 1))[1]
    fields = dict(part.split("=", 1) for part in line.split(" ")[1].split(","))
    assert Decimal(fields["price"]) == price and Decimal(fields["amount"]) == amount


valuation_figure = st.one_of(st.none(), any_decimal)


@given(
    st.sampled_from(["history", "live"]),
    tag_text,
    st.integers(0, 2**62),
    any_decimal,
    valuation_figure,
    valuation_figure,
    valuation_figure,
)
def test_valuation_lines_are_what_point_writes(bucket, asset, time_ns, quantity, price, value, pnl):
    records = [
        Position(asset, time_ns, bucket, quantity, price, value, unrealized_pnl=pnl),
        PortfolioValue(time_ns, bucket, value, realized_pnl=pnl),
        Transaction(asset, "buy", time_ns, quantity, price, pnl, "U SD", 'a "note", with\\ odd=text'),
    ]
    for record in records:
        kind, line = to_line(record)
        assert line == valuation_point(record).to_line_protocol()
        assert kind == getattr(record, "bucket", "meta")
