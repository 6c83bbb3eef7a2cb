"""`collector portfolio` output: JSON of exact decimal strings, a table whose totals are the sum of its rows."""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal

from collector.portfolio import valuation
from collector.portfolio.ledger import PositionState
from collector.portfolio.render import as_json, as_table
from collector.records import PortfolioValue, Position

AT = datetime(2026, 11, 21, 7, tzinfo=UTC)
NS = 1_795_244_400_000_000_000  # AT in nanoseconds


def _position(asset, quantity, price=None, value=None, cost=None, unrealized=None, realized=None, pct=None):
    figures = [price, value, cost, unrealized, realized, pct]
    return Position(
        asset, NS, "live", Decimal(quantity), *(None if f is None else Decimal(f) for f in figures)
    )


# BTC: the issue's example valued at 50000: 0.2 * 50000 = 10000.00; cost 6002; unrealized 10000 - 6002 = 3998
#      P/L % = 3998 / 6002 * 100 = 66.6111...; realized 15984
# ETH: a bare quantity: 10 * 3000.50 = 30005.00, no cost basis
# XRP: no price source
# LTC: all sold: 0 held, realized a loss of 120.50
POSITIONS = [
    _position("BTC", "0.2", "50000.00", "10000.00", "6002.00", "3998.00", "15984.00", "66.6111"),
    _position("ETH", "10", "3000.50", "30005.00"),
    _position("XRP", "1500.5"),
    _position("LTC", "0", "80.10", "0.00", "0.00", "0.00", "-120.50"),
]
# value 10000.00 + 30005.00 + 0.00 = 40005.00; cost 6002.00 + 0.00 = 6002.00; unrealized 3998.00 + 0.00 = 3998.00
# realized 15984.00 - 120.50 = 15863.50; P/L % 3998 / 6002 * 100 = 66.6111
TOTAL = PortfolioValue(
    NS, "live", *(Decimal(f) for f in ("40005.00", "6002.00", "3998.00", "15863.50", "66.6111"))
)
PROBLEMS = ["XRP: no price source: add a pair such as XRP-USD under exchanges"]

TABLE = """\
Portfolio at 2026-11-21 07:00:00 UTC, in USD

asset  quantity      price      value  cost basis  unrealized P/L  realized P/L  P/L %
BTC         0.2  50,000.00  10,000.00    6,002.00        3,998.00     15,984.00  66.61
ETH        10     3,000.50  30,005.00           —               —             —      —
XRP     1,500.5   no price          —           —               —             —      —
LTC         0        80.10       0.00        0.00            0.00       -120.50      —
total                       40,005.00    6,002.00        3,998.00     15,863.50  66.61

XRP: no price source: add a pair such as XRP-USD under exchanges
"""


def test_json_has_the_issue_shape_with_exact_decimal_strings():
    document = json.loads(as_json("USD", AT, POSITIONS, TOTAL))
    assert list(document) == ["base_currency", "at", "positions", "total"]
    assert document["base_currency"] == "USD"
    assert document["at"] == "2026-11-21T07:00:00Z"
    assert document["positions"][0] == {
        "asset": "BTC",
        "quantity": "0.2",
        "price": "50000.00",
        "value": "10000.00",
        "cost_basis": "6002.00",
        "unrealized_pnl": "3998.00",
        "realized_pnl": "15984.00",
        "pnl_pct": "66.6111",
    }
    assert list(document["positions"][0]) == [
        "asset",
        "quantity",
        "price",
        "value",
        "cost_basis",
        "unrealized_pnl",
        "realized_pnl",
        "pnl_pct",
    ]
    # unknown figures are null, never 0
    assert document["positions"][2] == {
        "asset": "XRP",
        "quantity": "1500.5",
        "price": None,
        "value": None,
        "cost_basis": None,
        "unrealized_pnl": None,
        "realized_pnl": None,
        "pnl_pct": None,
    }
    assert document["total"] == {
        "value": "40005.00",
        "cost_basis": "6002.00",
        "unrealized_pnl": "3998.00",
        "realized_pnl": "15863.50",
        "pnl_pct": "66.6111",
    }


def test_json_numbers_are_never_floats_exponents_or_negative_zero():
    position = Position(
        "BTC",
        NS,
        "live",
        Decimal("0.1"),
        Decimal("1E+3"),  # 1000 written with an exponent
        Decimal("100.0"),
        Decimal("123456789012345678.123456789"),
        Decimal("-0.00"),
        Decimal("0E-8"),
    )
    total = PortfolioValue(NS, "live", Decimal("100.0"))
    text = as_json("EUR", AT.replace(hour=9), [position], total)
    figures = json.loads(text)["positions"][0]
    assert [figures[name] for name in ("quantity", "price", "value", "cost_basis", "unrealized_pnl")] == [
        "0.1",
        "1000",
        "100.0",
        "123456789012345678.123456789",
        "0.00",
    ]
    assert figures["realized_pnl"] == "0.00000000"
    assert json.loads(text)["total"]["cost_basis"] is None
    assert json.loads(text)["base_currency"] == "EUR"


def test_table_is_aligned_and_says_what_is_unknown():
    assert as_table("USD", AT, POSITIONS, TOTAL, colour=False, problems=PROBLEMS) == TABLE


def _number(cell: str) -> Decimal | None:
    return None if cell == "—" else Decimal(cell.replace(",", ""))


def _money_columns(table: str) -> tuple[list[list[Decimal | None]], list[Decimal | None]]:
    """The rows' and the totals line's value, cost basis, unrealized and realized figures, read back from the text."""
    lines = table.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("asset")) + 1
    end = next(index for index, line in enumerate(lines) if line.startswith("total"))
    rows = [re.split(r"\s{2,}", line.strip())[3:7] for line in lines[start:end]]
    totals = re.split(r"\s{2,}", lines[end].strip())[1:5]
    return [[_number(cell) for cell in row] for row in rows], [_number(cell) for cell in totals]


def _assert_totals_are_sums(table: str) -> None:
    rows, totals = _money_columns(table)
    for column, total in enumerate(totals):
        known = [row[column] for row in rows if row[column] is not None]
        assert sum(known, Decimal(0)) == total, (column, known, total)


def test_table_totals_line_is_the_sum_of_its_rows():
    _assert_totals_are_sums(as_table("USD", AT, POSITIONS, TOTAL, colour=False))


def test_figures_with_more_decimals_are_shown_whole_so_totals_still_add_up():
    # 0.3 * 50123.45 = 15037.035; 1.5 * 2000.1 = 3000.15; 15037.035 + 3000.15 = 18037.185
    positions = [
        _position("BTC", "0.3", "50123.45", "15037.035", "9000", "6037.035", "0"),
        _position("ETH", "1.5", "2000.1", "3000.15", "3100.10", "-99.95", "12.5"),
    ]
    # cost 9000 + 3100.10 = 12100.10; unrealized 6037.035 - 99.95 = 5937.085; realized 0 + 12.5 = 12.5
    total = PortfolioValue(NS, "live", *(Decimal(f) for f in ("18037.185", "12100.10", "5937.085", "12.5")))
    table = as_table("USD", AT, positions, total, colour=False)
    assert "15,037.035" in table and " 3,000.150 " in table and "18,037.185" in table
    _assert_totals_are_sums(table)
    # every row ends in the same column: the decimal points of each money column line up
    assert len({len(line) for line in table.splitlines()[2:]}) == 1


def test_colour_marks_gains_and_losses_only_when_on():
    plain = as_table("USD", AT, POSITIONS, TOTAL, colour=False)
    coloured = as_table("USD", AT, POSITIONS, TOTAL, colour=True)
    assert "\x1b" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    assert "  \x1b[32m3,998.00\x1b[0m" in coloured  # BTC's unrealized gain, green
    assert " \x1b[31m-120.50\x1b[0m" in coloured  # LTC's realized loss, red
    assert "\x1b[32m66.61\x1b[0m" in coloured
    assert "30,005.00" in coloured and "\x1b[32m30,005.00" not in coloured  # a value is neither gain nor loss


def test_a_portfolio_without_any_price_shows_no_value_rather_than_zero():
    positions = [_position("XRP", "1500.5")]
    total = PortfolioValue(NS, "live", None)
    table = as_table("USD", AT, positions, total, colour=False)
    assert table.splitlines()[-2:] == [
        "XRP     1,500.5  no price      —           —               —             —      —",
        "total                          —           —               —             —      —",
    ]
    assert json.loads(as_json("USD", AT, positions, total))["total"]["value"] is None


def test_long_decimals_next_to_large_figures_are_shown_whole():
    # an average cost such as 16534.875 * 0.5 / 0.55 carries 28 significant digits; padding the 5,187,000.56 beside it
    # to as many decimals would need 31 digits, beyond Decimal's default precision: the table pads text instead
    long = "7515.852272727272727272727273"
    positions = [
        _position("BTC", "0.5", "50000", "25000", long, "17484.147727272727272727272727", "0"),
        _position("ETH", "1000", "5187.00056", "5187000.56", "5187000.56", "0", "0"),
    ]
    total = PortfolioValue(NS, "live", Decimal("5212000.56"))
    table = as_table("USD", AT, positions, total, colour=False)
    assert "7,515.852272727272727272727273" in table
    assert "5,187,000.560000000000000000000000" in table  # zeros added as text: the same number
    assert " 5,212,000.56 " in table and " 25,000.00 " in table  # the value column has two decimals at most
    assert " 0.000000000000000000000000 " in table  # ETH's unrealized P/L, in line with BTC's


def test_the_table_shows_pnl_pct_rounded_once():
    # 1 BTC costing 100000.00 valued at 112354.99: unrealized 12354.99, P/L % = 12.35499 exactly → 12.35 to 2 places
    btc = valuation.position(
        "BTC", PositionState(Decimal("1"), Decimal("100000"), Decimal("0")), Decimal("112354.99"), 0, "x"
    )
    assert btc.unrealized_pnl == Decimal("12354.99")
    table = as_table(
        "USD", datetime(2026, 1, 10, tzinfo=UTC), [btc], valuation.total([btc], 0, "x"), colour=False
    )
    row = next(line for line in table.splitlines() if line.startswith("BTC"))
    assert row.split()[-1] == "12.35", row
