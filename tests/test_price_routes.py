"""Price routes from the configured pairs, and the valuation arithmetic (figures worked out by hand)."""

from decimal import Decimal

from collector.config import Pair, parse_config
from collector.portfolio.ledger import PositionState
from collector.portfolio.routes import Leg, PriceRoutes, price_sources
from collector.portfolio.valuation import money_unit, position, total


def _routes(exchanges: str, base: str = "USD") -> PriceRoutes:
    return PriceRoutes(parse_config(f"base_currency: {base}\nexchanges:\n{exchanges}", "p.yml"))


def test_a_direct_pair_wins_and_the_first_exchange_in_the_file_is_used():
    routes = _routes(
        "  kraken:\n    pairs: [BTC-USD]\n  bitstamp:\n    pairs: [BTC-USD, BTC-USDT, USDT-USD]\n"
    )
    assert routes.route("BTC").legs == (Leg("kraken", Pair("BTC", "USD")),)
    assert routes.route("BTC").describe() == "BTC-USD on kraken"


def test_bridges_prefer_usdt_then_btc_and_never_assume_a_stablecoin_is_one():
    routes = _routes("  bitstamp:\n    pairs: [ETH-BTC, ETH-USDT, USDT-USD, BTC-USD, SOL-BTC]\n")
    assert routes.route("ETH").legs == (
        Leg("bitstamp", Pair("ETH", "USDT")),
        Leg("bitstamp", Pair("USDT", "USD")),
    )
    assert routes.route("SOL").describe() == "SOL-BTC × BTC-USD on bitstamp"
    # USDT itself is priced by its own market, never taken as 1
    assert routes.route("USDT").legs == (Leg("bitstamp", Pair("USDT", "USD")),)
    # 2 ETH-USDT at 2000 × USDT-USD 0.97 = 1940 per ETH
    assert routes.route("ETH").price([Decimal("2000"), Decimal("0.97")]) == Decimal("1940.00")


def test_an_inverted_pair_is_a_rate_and_the_base_currency_is_worth_one():
    routes = _routes("  bitstamp:\n    pairs: [EUR-USD, BTC-EUR]\n", base="EUR")
    route = routes.route("USD")
    assert route.legs == (Leg("bitstamp", Pair("EUR", "USD"), inverted=True),)
    assert route.price([Decimal("1.25")]) == Decimal("0.8")  # 1 / 1.25
    assert routes.route("EUR").legs == () and routes.route("EUR").price([]) == 1
    assert routes.route("BTC").price([None]) is None  # an unknown leg leaves the price unknown


def test_an_asset_without_a_price_source_is_named_with_what_to_add():
    config = parse_config(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\nholdings:\n  BTC: '1'\n  XRP: '100'\n"
        "  ETH:\n    - {date: 2026-01-10, kind: buy, quantity: '1', price: '2000', currency: EUR}\n",
        "p.yml",
    )
    assert PriceRoutes(config).route("XRP") is None
    lines = [line for _, _, line in price_sources(config)]
    assert lines == [
        "BTC: priced from BTC-USD on bitstamp",
        "ETH: no price source: add a pair such as ETH-USD (or ETH-USDT with USDT-USD) under an exchange's "
        "pairs in portfolio.yml",
        "XRP: no price source: add a pair such as XRP-USD (or XRP-USDT with USDT-USD) under an exchange's "
        "pairs in portfolio.yml",
        "EUR: no price source: add a pair such as EUR-USD (or EUR-USDT with USDT-USD) under an exchange's "
        "pairs in portfolio.yml",
    ]


def test_position_and_total_arithmetic():
    held = PositionState(Decimal("0.2"), Decimal("6002"), Decimal("15994"))
    # 0.2 × 45000 = 9000; unrealized 9000 − 6002 = 2998; 2998 / 6002 × 100 = 49.9500166… → 49.9500
    btc = position("BTC", held, Decimal("45000"), 0, "history")
    assert (btc.value, btc.unrealized_pnl, btc.pnl_pct) == (
        Decimal("9000.0"),
        Decimal("2998.0"),
        Decimal("49.9500"),
    )
    # a bare quantity: value, no cost basis, so no P/L
    eth = position("ETH", PositionState(Decimal("10"), None, None), Decimal("2000"), 0, "history")
    assert (eth.value, eth.cost_basis, eth.unrealized_pnl, eth.pnl_pct) == (
        Decimal("20000"),
        None,
        None,
        None,
    )
    # no price: value and P/L unknown (never 0), cost basis still known
    xrp = position("XRP", PositionState(Decimal("100"), Decimal("50"), Decimal("0")), None, 0, "history")
    assert (xrp.value, xrp.unrealized_pnl, xrp.cost_basis) == (None, None, Decimal("50"))
    # sold out: nothing held is worth 0, the realized P/L stays
    gone = position("SOL", PositionState(Decimal("0"), Decimal("0"), Decimal("-12.5")), None, 0, "history")
    assert (gone.value, gone.unrealized_pnl, gone.realized_pnl) == (
        Decimal("0"),
        Decimal("0"),
        Decimal("-12.5"),
    )

    whole = total([btc, eth, xrp, gone], 0, "history")
    assert whole.value is None  # XRP is held without a price: 9000 + 20000 + 0 would count it as 0
    assert whole.cost_basis == Decimal("6052")  # 6002 + 50 + 0
    assert whole.unrealized_pnl is None and whole.pnl_pct is None  # XRP has a cost basis but no value
    assert whole.realized_pnl == Decimal("15981.5")  # 15994 + 0 − 12.5
    # without XRP every figure is known: unrealized 2998 + 0 = value of those with a cost basis 9000 + 0 − 6002
    priced = total([btc, eth, gone], 0, "history")
    assert priced.value == Decimal("29000.0")  # 9000 + 20000 + 0
    assert (priced.cost_basis, priced.unrealized_pnl) == (Decimal("6002"), Decimal("2998.0"))
    assert priced.pnl_pct == Decimal("49.9500")  # 2998 / 6002 × 100: ETH, a bare quantity, has no P/L


def test_money_is_rounded_to_the_cent_so_totals_are_exact_sums():
    # an average-cost basis carries 28 digits: 16534.875 × 0.05 / 0.55 = 1503.170454545…
    average = PositionState(
        Decimal("0.5"), Decimal("16534.875") * Decimal("0.05") / Decimal("0.55"), Decimal("0")
    )
    a = position("BTC", average, Decimal("3000.01"), 0, "live")
    assert a.cost_basis == Decimal("1503.17")
    assert a.value == Decimal("1500.01")  # 0.5 × 3000.01 = 1500.005, half up
    assert a.unrealized_pnl == Decimal("-3.16")  # 1500.01 − 1503.17
    b = position(
        "ETH", PositionState(Decimal("3"), Decimal("0.335"), Decimal("0")), Decimal("0.333"), 0, "live"
    )
    assert (b.value, b.cost_basis) == (Decimal("1.00"), Decimal("0.34"))  # 0.999 and 0.335, half up
    whole = total([a, b], 0, "live")
    assert whole.value == Decimal("1501.01") and whole.cost_basis == Decimal("1503.51")
    assert whole.unrealized_pnl == Decimal("-2.50")  # −3.16 + 0.66
    # a coin as the base currency keeps satoshis
    sats = position(
        "ETH",
        PositionState(Decimal("1.5"), None, None),
        Decimal("0.0512345678"),
        0,
        "live",
        money_unit("BTC"),
    )
    assert sats.value == Decimal("0.07685185")  # 1.5 × 0.0512345678 = 0.0768518517
