"""Holdings in portfolio.yml: exact numbers, times in UTC, file order, and a file:line: key message per mistake."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from collector.cli import main
from collector.config import Pair, load_config, parse_config
from collector.errors import ConfigError
from collector.holdings import Holding, Holdings, TransactionLine
from collector.portfolio.ledger import timeline

HOLDINGS = """\
base_currency: USD
cost_basis: average
valuation:
  live_every: 5s
holdings:
  BTC:
    - {date: 2026-01-10, kind: buy, quantity: "1.0", price: "30000", fee: "10", note: first}
    - {date: 2026-03-10T14:00:00Z, kind: sell, quantity: 0.8, price: 50000, fee: 8}
    - date: 2026-04-01
      kind: buy
      quantity: 0.1
      price: "27000"
      currency: EUR
  ETH: "10"
  XRP: 1500.5
"""


def _line(asset, kind, time, quantity, price, source, currency="USD", fee="0", note=None):
    return TransactionLine(
        asset=asset,
        kind=kind,
        time=time,
        quantity=Decimal(quantity),
        price=None if price is None else Decimal(price),
        currency=currency,
        fee=Decimal(fee),
        note=note,
        source=source,
    )


def test_transactions_and_bare_quantities_are_read_exactly():
    config = parse_config(HOLDINGS, "p.yml")
    assert config.live_valuation_every_s == 5
    assert config.holdings == Holdings(
        cost_basis="average",
        assets={
            "BTC": Holding(
                "BTC",
                (
                    _line(
                        "BTC",
                        "buy",
                        datetime(2026, 1, 10, tzinfo=UTC),
                        "1.0",
                        "30000",
                        "p.yml:7",
                        fee="10",
                        note="first",
                    ),
                    _line(
                        "BTC",
                        "sell",
                        datetime(2026, 3, 10, 14, tzinfo=UTC),
                        "0.8",
                        "50000",
                        "p.yml:8",
                        fee="8",
                    ),
                    _line(
                        "BTC",
                        "buy",
                        datetime(2026, 4, 1, tzinfo=UTC),
                        "0.1",
                        "27000",
                        "p.yml:9",
                        currency="EUR",
                    ),
                ),
            ),
            "ETH": Holding("ETH", (), Decimal("10")),
            "XRP": Holding("XRP", (), Decimal("1500.5")),
        },
    )


def test_bare_numbers_are_their_text_not_a_binary_float():
    config = parse_config(
        "holdings:\n  BTC:\n    - {date: 2026-01-10, kind: buy, quantity: 0.1, price: 0.3, fee: 1_000}\n  ETH: 0.1\n",
        "p.yml",
    )
    line = config.holdings.assets["BTC"].transactions[0]
    # Decimal(0.1) would be 0.1000000000000000055511151231257827...; the text is exact
    assert (str(line.quantity), str(line.price), str(line.fee)) == ("0.1", "0.3", "1000")
    assert str(config.holdings.assets["ETH"].quantity) == "0.1"
    assert line.quantity * 3 == Decimal("0.3")


def test_defaults_base_currency_zones_and_order():
    text = """\
base_currency: EUR
holdings:
  ETH:
    - {date: "2026-02-01T10:00:00+02:00", kind: transfer_in, quantity: "2"}
    - {date: 2026-02-01 08:00:00, kind: sell, quantity: "1", price: "2000"}
    - {date: "2026-02-01", kind: buy, quantity: "1", price: "1800"}
"""
    holdings = parse_config(text, "p.yml").holdings
    assert holdings.cost_basis == "fifo"
    lines = holdings.assets["ETH"].transactions
    # 10:00+02:00 is 08:00 UTC, the same moment as the zone-less 08:00 (read as UTC): file order breaks the tie
    assert [(line.kind, line.time, line.source) for line in lines] == [
        ("buy", datetime(2026, 2, 1, tzinfo=UTC), "p.yml:6"),
        ("transfer_in", datetime(2026, 2, 1, 8, tzinfo=UTC), "p.yml:4"),
        ("sell", datetime(2026, 2, 1, 8, tzinfo=UTC), "p.yml:5"),
    ]
    assert {line.currency for line in lines} == {"EUR"}
    assert lines[1].price is None
    # 1 bought + 2 transferred in - 1 sold
    assert holdings.assets["ETH"].quantity_now() == Decimal("2")


def test_no_holdings_section():
    config = parse_config("base_currency: USD\n", "p.yml")
    assert config.holdings == Holdings()
    assert config.live_valuation_every_s == 10


BAD = """\
holdings:
  BTC:
    - {date: 2026-01-10, kind: buy, quantity: "1.0", price: "30000", fee: "10"}
    - {date: 2026-03-10T14:00:00Z, kind: sell, quantity: "0.8", price: "50000", fee: "8"}
  ETH: "10"
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("kind: sell", "kind: sold"),
            "p.yml:4: holdings.BTC[1].kind: expected one of buy, sell, transfer_in, transfer_out, got 'sold'",
        ),
        (
            ('quantity: "0.8"', 'quantity: "0"'),
            "p.yml:4: holdings.BTC[1].quantity: expected a quantity above 0, got '0'",
        ),
        (
            ('quantity: "0.8"', "quantity: -0.8"),
            "p.yml:4: holdings.BTC[1].quantity: expected a quantity above 0, got -0.8",
        ),
        (
            ('price: "30000"', 'price: "30,000"'),
            "p.yml:3: holdings.BTC[0].price: expected a price per unit such as \"30000\", got '30,000'",
        ),
        (
            ('fee: "10"', "fee: ten"),
            "p.yml:3: holdings.BTC[0].fee: expected a fee such as \"10\", got 'ten'",
        ),
        (('fee: "10"', 'fee: "-1"'), "p.yml:3: holdings.BTC[0].fee: expected a fee of 0 or more, got '-1'"),
        (('fee: "10"', "fee: .nan"), 'p.yml:3: holdings.BTC[0].fee: expected a fee such as "10", got nan'),
        (('fee: "10"', "fee: yes"), 'p.yml:3: holdings.BTC[0].fee: expected a fee such as "10", got True'),
        (
            ("date: 2026-01-10", "date: 10.01.2026"),
            "p.yml:3: holdings.BTC[0].date: expected a date YYYY-MM-DD or a date-time YYYY-MM-DDTHH:MM:SSZ, "
            "got '10.01.2026'",
        ),
        (
            ("date: 2026-01-10", "date: 2026-02-30"),
            "p.yml:3: holdings.BTC[0].date: expected a date YYYY-MM-DD or a date-time",
        ),
        (
            ('fee: "8"', 'fees: "8"'),
            "p.yml:4: holdings.BTC[1].fees: unknown key; expected one of currency, date, fee, kind, note, price, "
            "quantity",
        ),
        (
            ('quantity: "0.8"', 'quantity: "1.5"'),
            "p.yml:4: holdings.BTC[1].quantity: sell of 1.5 BTC on 2026-03-10 14:00:00 UTC is more than the 1.0 "
            "held then",
        ),
        (
            ("2026-03-10T14:00:00Z", "2026-01-09"),
            "p.yml:4: holdings.BTC[1].quantity: sell of 0.8 BTC on 2026-01-09 is more than the 0 held then",
        ),
        (
            ('kind: sell, quantity: "0.8", price: "50000", fee: "8"', 'kind: sell, quantity: "0.8"'),
            "p.yml:4: holdings.BTC[1]: missing 'price'; a sell needs the price per unit",
        ),
        (
            ("{date: 2026-01-10, kind: buy", "{kind: buy"),
            "p.yml:3: holdings.BTC[0]: missing 'date'; a transaction needs date, kind and quantity",
        ),
        (
            (
                'kind: sell, quantity: "0.8", price: "50000", fee: "8"',
                'kind: transfer_out, quantity: "0.8", fee: "8"',
            ),
            "p.yml:4: holdings.BTC[1].fee: a fee goes with a price; this transfer_out has none",
        ),
        (
            (
                'kind: sell, quantity: "0.8", price: "50000"',
                'kind: transfer_out, quantity: "0.8", price: "50000"',
            ),
            "p.yml:4: holdings.BTC[1].fee: only a buy or a sell has a fee",
        ),
        (
            ('fee: "10"}', 'fee: "10", currency: eur}'),
            "p.yml:3: holdings.BTC[0].currency: expected a currency code in upper case, such as USD, got 'eur'",
        ),
        (('fee: "10"}', "fee: 10, note: 12}"), "p.yml:3: holdings.BTC[0].note: expected text, got 12"),
        (
            ('ETH: "10"', "eth: 10"),
            "p.yml:5: holdings.eth: expected an asset symbol in upper case, such as BTC",
        ),
        (
            ('ETH: "10"', 'ON: "10"'),  # a real symbol (Orion) that YAML reads as a boolean unless quoted
            "p.yml:5: holdings: an asset symbol that YAML reads as True, not as text: put it in quotes (YAML reads "
            "ON, OFF, YES, NO and numbers that way unquoted)",
        ),
        (('ETH: "10"', 'ETH: "0"'), "p.yml:5: holdings.ETH: expected a quantity above 0, got '0'"),
        (
            ('ETH: "10"', "ETH: {quantity: 10}"),
            "p.yml:5: holdings.ETH: expected a quantity such as \"0.5\", or a list of transactions, got {'quantity': 10}",
        ),
        (('ETH: "10"', 'BTC: "10"'), "p.yml:5: holdings.BTC: given twice (first on line 2); keep one"),
        (
            ('fee: "8"', 'fee: "8", fee: "9"'),
            "p.yml:4: holdings.BTC[1].fee: given twice (first on line 4); keep one",
        ),
        (
            ('ETH: "10"', "ETH: []"),
            "p.yml:5: holdings.ETH: expected a quantity or a non-empty list of transactions",
        ),
        (
            ("holdings:\n", "cost_basis: lifo\nholdings:\n"),
            "p.yml:1: cost_basis: expected fifo or average, got 'lifo'",
        ),
        (
            ("holdings:\n", "valuation: {live_every: 10}\nholdings:\n"),
            "p.yml:1: valuation.live_every: expected a duration",
        ),
        (
            ("holdings:\n", "valuation: {every: 10s}\nholdings:\n"),
            "p.yml:1: valuation.every: unknown key; expected one of live_every",
        ),
    ],
)
def test_bad_holdings_lines_are_named(change, message):
    old, new = change
    assert old in BAD
    with pytest.raises(ConfigError) as err:
        parse_config(BAD.replace(old, new), "p.yml")
    assert str(err.value).startswith(message), str(err.value)


def test_a_sell_in_block_style_names_its_quantity_line():
    text = """\
holdings:
  BTC:
    - date: 2026-01-10
      kind: buy
      quantity: "0.5"
      price: "30000"
    - date: 2026-02-10
      kind: transfer_out
      quantity: "0.6"
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "p.yml")
    assert str(err.value) == (
        "p.yml:9: holdings.BTC[1].quantity: transfer_out of 0.6 BTC on 2026-02-10 is more than the 0.5 held then"
    )


def test_example_file_holds_lots_a_euro_lot_and_a_bare_quantity():
    from tests.influxd import ROOT

    config = load_config(ROOT / "portfolio.example.yml")
    assets = config.holdings.assets
    assert [asset for asset, holding in assets.items() if holding.transactions] == ["BTC", "ETH", "LTC"]
    assert assets["XRP"].quantity == Decimal("1500")
    euro = [line for line in assets["BTC"].transactions if line.currency == "EUR"]
    assert len(euro) == 1 and Pair("EUR", "USD") in config.exchanges["bitstamp"].pairs
    # every asset held has a pair to USD
    assert {pair.base for pair in config.exchanges["bitstamp"].pairs if pair.quote == "USD"} >= set(assets)


def test_check_config_reports_the_holdings(tmp_path, capsys):
    path = tmp_path / "portfolio.yml"
    path.write_text(HOLDINGS)
    assert main(["check-config", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("  holdings: 3 assets, average cost basis, valued live every 5s")
    assert lines[start : start + 4] == [
        "  holdings: 3 assets, average cost basis, valued live every 5s",
        # 1.0 - 0.8 + 0.1
        "    BTC: 0.3 held, 3 transactions since 2026-01-10",
        "    ETH: 10 (a bare quantity: valued, no cost basis)",
        "    XRP: 1500.5 (a bare quantity: valued, no cost basis)",
    ]


def test_check_config_names_a_bad_holdings_line(tmp_path, capsys):
    path = tmp_path / "portfolio.yml"
    path.write_text(HOLDINGS.replace("kind: sell", "kind: sel"))
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"collector check-config: {path}:8: holdings.BTC[1].kind: expected one of buy, sell, transfer_in, "
        "transfer_out, got 'sel'\n"
    )


class _OneToOne:
    def to_base(self, amount, currency, at):
        return amount

    def market_price(self, asset, at):
        return None


@pytest.mark.parametrize(
    "numbers",
    [
        'quantity: "1e1000000", price: "1"',  # overflows while checking that nothing is oversold
        'quantity: "1e500000", price: "1e500000"',  # parses, then overflows in the ledger (every recompute)
    ],
)
def test_a_number_too_large_for_decimal_is_a_named_config_error(numbers):
    text = "holdings:\n  BTC:\n    - {date: 2026-01-10, kind: buy, " + numbers + "}\n"
    try:
        holdings = parse_config(text, "p.yml").holdings
    except ConfigError as error:
        assert str(error).startswith("p.yml:3: holdings.BTC[0]."), str(error)
        return
    timeline(holdings.assets["BTC"], holdings.cost_basis, _OneToOne())  # nothing accepted may overflow later


def test_a_bare_quantity_with_more_digits_than_a_float_holds_is_exact():
    """Guards the read-from-text path: str(float) would pass the 0.1 test but round 18 decimals (wei) to 17 digits."""
    config = parse_config(
        "holdings:\n  ETH:\n    - {date: 2026-01-10, kind: buy, quantity: 1.234567890123456789, price: 2000}\n"
        "  BTC: 12345678.123456789\n",
        "p.yml",
    )
    assert str(config.holdings.assets["ETH"].transactions[0].quantity) == "1.234567890123456789"
    assert str(config.holdings.assets["BTC"].quantity) == "12345678.123456789"
