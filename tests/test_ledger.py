"""The cost-basis ledger, figure by figure: each expected number is worked out by hand in the comment beside it."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from collector.config import load_config, parse_config
from collector.holdings import Holding
from collector.portfolio.ledger import (
    BEGINNING,
    PositionState,
    PriceUnavailable,
    timeline,
)


class TablePricing:
    """The ledger's own input, as a table: EUR-USD by day and market prices by moment (base currency USD)."""

    def __init__(
        self, eur_usd: dict[date, str] | None = None, market: dict[tuple[str, datetime], str] | None = None
    ):
        self.eur_usd = {day: Decimal(rate) for day, rate in (eur_usd or {}).items()}
        self.market = {key: Decimal(price) for key, price in (market or {}).items()}

    def to_base(self, amount: Decimal, currency: str, at: datetime) -> Decimal:
        if currency == "USD":
            return amount
        if currency == "EUR" and at.date() in self.eur_usd:
            return amount * self.eur_usd[at.date()]
        raise PriceUnavailable(f"no {currency}-USD rate on {at.date()}: add the pair {currency}-USD")

    def market_price(self, asset: str, at: datetime) -> Decimal | None:
        return self.market.get((asset, at))


def _holding(lines: str, asset: str = "BTC") -> Holding:
    return parse_config(f"holdings:\n  {asset}:\n{lines}", "p.yml").holdings.assets[asset]


def _states(lines: str, method: str, pricing=None) -> list[PositionState]:
    return [state for _, state in timeline(_holding(lines), method, pricing or TablePricing())]


def _state(quantity: str, cost_basis: str, realized: str) -> PositionState:
    return PositionState(Decimal(quantity), Decimal(cost_basis), Decimal(realized))


ISSUE_EXAMPLE = """\
    - {date: 2026-01-10, kind: buy, quantity: "1.0", price: "30000", fee: "10"}
    - {date: 2026-03-10T14:00:00Z, kind: sell, quantity: "0.8", price: "50000", fee: "8"}
"""


@pytest.mark.parametrize("method", ["fifo", "average"])
def test_issue_example_one_lot_partly_sold(method):
    # one lot, so both methods agree:
    # buy: cost 1.0 * 30000 + 10 = 30010
    # sell: proceeds 0.8 * 50000 - 8 = 39992; cost sold 0.8 * 30010 = 24008; realized 39992 - 24008 = 15984
    # left: 0.2 BTC costing 0.2 * 30010 = 6002
    assert _states(ISSUE_EXAMPLE, method) == [_state("1.0", "30010", "0"), _state("0.2", "6002", "15984")]


TWO_LOTS = """\
    - {date: 2026-01-10, kind: buy, quantity: "1.0", price: "30000", fee: "10"}
    - {date: 2026-02-10, kind: buy, quantity: "1.0", price: "40000", fee: "20"}
    - {date: 2026-03-10, kind: sell, quantity: "1.5", price: "50000", fee: "15"}
    - {date: 2026-04-01, kind: transfer_out, quantity: "0.2", note: to the hardware wallet}
    - {date: 2026-05-01, kind: transfer_in, quantity: "0.1", price: "45000"}
    - {date: 2026-06-01, kind: transfer_in, quantity: "0.1"}
    - {date: 2026-07-01, kind: sell, quantity: "0.5", price: "70000"}
"""
JUNE_MARKET = TablePricing(market={("BTC", datetime(2026, 6, 1, tzinfo=UTC)): "60000"})


def test_fifo_sells_the_oldest_lots_first():
    assert _states(TWO_LOTS, "fifo", JUNE_MARKET) == [
        _state("1.0", "30010", "0"),  # lot A: 1.0 * 30000 + 10
        _state("2.0", "70030", "0"),  # lot B: 1.0 * 40000 + 20 = 40020; 30010 + 40020
        # proceeds 1.5 * 50000 - 15 = 74985; sold all of A (30010) and half of B (40020 * 0.5 = 20010) = 50020
        # realized 74985 - 50020 = 24965; left 0.5 of B costing 40020 - 20010 = 20010
        _state("0.5", "20010", "24965"),
        # moved out 0.2 of B's 0.5: its cost 20010 * 0.2 / 0.5 = 8004 leaves with it, nothing realized
        _state("0.3", "12006", "24965"),
        _state("0.4", "16506", "24965"),  # lot C: 0.1 * 45000 = 4500; 12006 + 4500
        _state("0.5", "22506", "24965"),  # lot D at that day's market price: 0.1 * 60000 = 6000; 16506 + 6000
        # proceeds 0.5 * 70000 = 35000; sold B, C and D: 22506; realized 24965 + 35000 - 22506 = 37459
        _state("0", "0", "37459"),
    ]


def test_average_sells_a_share_of_one_pool():
    assert _states(TWO_LOTS, "average", JUNE_MARKET) == [
        _state("1.0", "30010", "0"),
        _state("2.0", "70030", "0"),  # 30010 + 40020
        # proceeds 74985; cost sold 70030 * 1.5 / 2.0 = 52522.5; realized 74985 - 52522.5 = 22462.5
        # left 70030 - 52522.5 = 17507.5
        _state("0.5", "17507.5", "22462.5"),
        _state("0.3", "10504.5", "22462.5"),  # moved out 17507.5 * 0.2 / 0.5 = 7003; 17507.5 - 7003
        _state("0.4", "15004.5", "22462.5"),  # 10504.5 + 0.1 * 45000
        _state("0.5", "21004.5", "22462.5"),  # 15004.5 + 0.1 * 60000 (market price)
        _state("0", "0", "36458"),  # all sold: 22462.5 + 35000 - 21004.5
    ]


def test_transfer_in_without_price_takes_the_market_price_and_says_so():
    notes = []
    timeline(_holding(TWO_LOTS), "fifo", JUNE_MARKET, notes)
    assert notes == [
        "p.yml:8: transfer_in of 0.1 BTC on 2026-06-01 at market price 60000 (the line has no price)"
    ]


def test_transfer_in_without_price_or_market_price_is_named():
    with pytest.raises(PriceUnavailable) as err:
        _states(TWO_LOTS, "fifo", TablePricing())
    assert str(err.value) == (
        "p.yml:8: transfer_in of 0.1 BTC on 2026-06-01 has no price and no BTC price is stored for that time; "
        "add its price to the line"
    )


EURO_LOT = """\
    - {date: 2026-04-01T09:30:00Z, kind: buy, quantity: "0.1", price: "27000", fee: "5", currency: EUR}
    - {date: 2026-05-01, kind: sell, quantity: "0.05", price: "30000", currency: EUR}
"""


@pytest.mark.parametrize("method", ["fifo", "average"])
def test_a_lot_in_another_currency_is_converted_at_that_days_rate(method):
    pricing = TablePricing(
        eur_usd={date(2026, 4, 1): "1.08", date(2026, 4, 2): "1.50", date(2026, 5, 1): "1.10"}
    )
    assert _states(EURO_LOT, method, pricing) == [
        # (0.1 * 27000 + 5) EUR = 2705 EUR, at 1.08 on April 1st = 2921.40 USD
        _state("0.1", "2921.40", "0"),
        # proceeds 0.05 * 30000 = 1500 EUR at 1.10 on May 1st = 1650.00 USD; cost sold 2921.40 * 0.05 / 0.1 = 1460.70
        # realized 1650.00 - 1460.70 = 189.30; left 2921.40 - 1460.70 = 1460.70
        _state("0.05", "1460.70", "189.30"),
    ]


def test_a_missing_rate_is_reported_not_guessed():
    with pytest.raises(PriceUnavailable, match="no EUR-USD rate on 2026-04-01: add the pair EUR-USD"):
        _states(EURO_LOT, "fifo", TablePricing())


def test_one_entry_per_transaction_at_its_time():
    entries = timeline(_holding(ISSUE_EXAMPLE), "fifo", TablePricing())
    assert [when for when, _ in entries] == [
        datetime(2026, 1, 10, tzinfo=UTC),
        datetime(2026, 3, 10, 14, tzinfo=UTC),
    ]


def test_a_bare_quantity_has_no_cost_basis():
    holding = parse_config('holdings:\n  ETH: "10"\n', "p.yml").holdings.assets["ETH"]
    # held since the beginning of time: valued at any moment, never a history start
    assert timeline(holding, "fifo", TablePricing()) == [
        (BEGINNING, PositionState(Decimal("10"), None, None))
    ]


def test_same_moment_lines_apply_in_file_order():
    lines = """\
    - {date: 2026-01-10, kind: buy, quantity: "1", price: "100"}
    - {date: 2026-01-10, kind: sell, quantity: "1", price: "120", fee: "1"}
"""
    # bought for 100, then sold at the same moment for 1 * 120 - 1 = 119: realized 19, nothing left
    assert _states(lines, "fifo") == [_state("1", "100", "0"), _state("0", "0", "19")]


def test_the_example_file_by_hand():
    from tests.influxd import ROOT

    holdings = load_config(ROOT / "portfolio.example.yml").holdings
    assert holdings.cost_basis == "fifo"
    pricing = TablePricing(
        eur_usd={date(2022, 6, 18): "1.05"},
        market={("ETH", datetime(2022, 9, 15, tzinfo=UTC)): "1470"},
    )
    final = {asset: timeline(holding, "fifo", pricing)[-1][1] for asset, holding in holdings.assets.items()}
    # BTC: buy 0.5 at 38000 + fee 19 = 19019
    #      sell 0.2 at 67000 - fee 13.40 = 13386.60; cost sold 19019 * 0.2 / 0.5 = 7607.6; realized 5779.00
    #      buy 0.25 at 19500 EUR + fee 4.50 EUR = 4879.50 EUR * 1.05 = 5123.475 USD
    #      transfer_out 0.05 of the first lot's 0.3 (11411.4): 1901.9 leaves; 11411.4 - 1901.9 + 5123.475 = 14632.975
    assert final["BTC"] == _state("0.50", "14632.975", "5779.00")
    # ETH: buy 4 at 3200 + 12.80 = 12812.80; transfer_in 1.5 at the market's 1470 = 2205
    #      sell 2 at 4000 - 8 = 7992; cost sold 12812.80 * 2 / 4 = 6406.40; realized 1585.60
    #      left 1.5 of the first lot (6406.40) + the transfer (2205) = 8611.40
    assert final["ETH"] == _state("3.5", "8611.40", "1585.60")
    # LTC: buy 20 at 85 + 1.70 = 1701.70; sell 8 at 380 - 3.04 = 3036.96; cost sold 1701.70 * 8 / 20 = 680.68
    #      realized 3036.96 - 680.68 = 2356.28; left 1701.70 - 680.68 = 1021.02
    assert final["LTC"] == _state("12", "1021.02", "2356.28")
    assert final["XRP"] == PositionState(Decimal("1500"), None, None)
