"""Valuation from prices stored in the real influxd: every expected figure is worked out by hand beside it.

Price rule: the price at t is the close of the latest candle that had *closed* by t (open time + 1 h <= t).
"""

import time
from dataclasses import replace
from decimal import Decimal

from collector.config import parse_config
from collector.portfolio.work import value_portfolio
from collector.records import Trade
from tests.integration.valuation_helpers import at, hourly_candles, seed

D = Decimal


def _config(pairs: str, holdings: str, base: str = "USD"):
    return parse_config(
        f"base_currency: {base}\nexchanges:\n  bitstamp:\n    pairs: [{pairs}]\nholdings:\n{holdings}",
        "p.yml",
    )


def _by_asset(valuation):
    return {position.asset: position for position in valuation.positions}


def _assert_totals_are_sums(valuation):
    """Totals are sums of rows; the value and unrealized P/L only while every row that counts has one."""
    with_cost_basis = [p for p in valuation.positions if p.cost_basis is not None]
    for name, rows in (("value", valuation.positions), ("unrealized_pnl", with_cost_basis)):
        figures = [getattr(p, name) for p in rows]
        assert getattr(valuation.total, name) == (
            None if not figures or None in figures else sum(figures, D(0))
        ), name
    for name in ("cost_basis", "realized_pnl"):
        known = [getattr(p, name) for p in valuation.positions if getattr(p, name) is not None]
        assert getattr(valuation.total, name) == (sum(known, D(0)) if known else None), name


BTC_LOTS = """\
  BTC:
    - {date: 2026-01-10, kind: buy, quantity: "1.0", price: "30000", fee: "10"}
    - {date: 2026-01-10T03:00:00Z, kind: sell, quantity: "0.8", price: "50000", fee: "8"}
"""


def test_value_at_a_past_hour_is_the_quantity_held_then_times_that_hours_close(collector_settings, tmp_path):
    config = _config("BTC-USD", BTC_LOTS)
    # candles opening 00:00, 01:00, 02:00, 03:00: closed at 01:00, 02:00, 03:00, 04:00
    seed(
        collector_settings,
        tmp_path,
        hourly_candles("BTC-USD", "2026-01-10T00:00:00Z", ["31000", "32000", "33000", "34000"]),
    )

    valuation, problems = value_portfolio(collector_settings, config, at("2026-01-10T02:30:00Z"))
    btc = _by_asset(valuation)["BTC"]
    assert problems == []
    assert btc.quantity == D("1.0")
    assert btc.price == D("32000")  # the 01:00 candle closed at 02:00; the 02:00 one is still open at 02:30
    assert btc.value == D("32000")  # 1.0 × 32000
    assert btc.cost_basis == D("30010")  # 1.0 × 30000 + fee 10
    assert btc.unrealized_pnl == D("1990")  # 32000 − 30010
    assert btc.realized_pnl == D("0")
    assert btc.pnl_pct == D("6.6311")  # 1990 / 30010 × 100 = 6.63112…

    # at 03:00 the sell (03:00) has happened: 0.2 left, at the close of the 02:00 candle
    valuation, _ = value_portfolio(collector_settings, config, at("2026-01-10T03:00:00Z"))
    btc = _by_asset(valuation)["BTC"]
    assert btc.quantity == D("0.2")
    assert btc.price == D("33000")
    assert btc.value == D("6600")  # 0.2 × 33000
    assert btc.cost_basis == D("6002")  # FIFO: 30010 × 0.2
    assert btc.realized_pnl == D("15984")  # 0.8 × 50000 − 8 − 30010 × 0.8 = 40000 − 8 − 24008
    assert btc.unrealized_pnl == D("598")  # 6600 − 6002
    assert btc.pnl_pct == D("9.9633")  # 598 / 6002 × 100 = 9.96334…
    _assert_totals_are_sums(valuation)
    assert valuation.total.value == D("6600") and valuation.total.pnl_pct == D("9.9633")

    # before the first transaction nothing is held
    valuation, _ = value_portfolio(collector_settings, config, at("2026-01-09T23:00:00Z"))
    assert valuation.positions == [] and valuation.total.value is None


def test_a_lot_in_eur_is_converted_at_the_eur_usd_close_of_its_time(collector_settings, tmp_path):
    config = _config(
        "BTC-USD, EUR-USD",
        '  BTC:\n    - {date: 2026-04-01, kind: buy, quantity: "0.1", price: "27000", currency: EUR, fee: "5"}\n',
    )
    seed(
        collector_settings,
        tmp_path,
        # EUR-USD: the 23:00 candle closes at 2026-04-01 00:00 (the lot's time) at 1.0850; the next one at 1.0900
        hourly_candles("EUR-USD", "2026-03-31T23:00:00Z", ["1.0850", "1.0900"])
        + hourly_candles("BTC-USD", "2026-04-01T00:00:00Z", ["30000"]),
    )
    valuation, problems = value_portfolio(collector_settings, config, at("2026-04-01T01:00:00Z"))
    btc = _by_asset(valuation)["BTC"]
    assert problems == []
    assert btc.cost_basis == D("2934.93")  # (0.1 × 27000 + 5) EUR × 1.0850 = 2934.925, to the cent (half up)
    assert btc.value == D("3000")  # 0.1 × 30000 USD
    assert btc.unrealized_pnl == D("65.07")  # 3000 − 2934.93
    assert btc.pnl_pct == D("2.2171")  # 65.07 / 2934.93 × 100 = 2.217088…


def test_a_de_pegged_usdt_changes_the_value_through_the_bridge(collector_settings, tmp_path):
    config = _config("ETH-USDT, USDT-USD", '  ETH: "2"\n  USDT: "1000"\n')
    seed(
        collector_settings,
        tmp_path,
        hourly_candles("ETH-USDT", "2026-02-01T10:00:00Z", ["2000"])
        + hourly_candles("USDT-USD", "2026-02-01T10:00:00Z", ["0.97"]),
    )
    valuation, problems = value_portfolio(collector_settings, config, at("2026-02-01T11:00:00Z"))
    positions = _by_asset(valuation)
    assert problems == []
    assert positions["ETH"].price == D("1940.00")  # 2000 USDT × 0.97 USD per USDT
    assert positions["ETH"].value == D("3880.00")  # 2 × 1940, not the 4000 a USDT taken as 1 would give
    assert positions["USDT"].value == D("970.00")  # 1000 × 0.97
    assert positions["ETH"].cost_basis is None and positions["ETH"].pnl_pct is None  # a bare quantity
    assert valuation.total.value == D("4850.00")  # 3880 + 970
    _assert_totals_are_sums(valuation)


def test_an_asset_without_a_price_source_is_reported_and_left_unvalued(collector_settings, tmp_path):
    config = _config(
        "BTC-USD",
        '  BTC: "0.5"\n  XRP:\n    - {date: 2026-02-01, kind: buy, quantity: "100", price: "0.5"}\n',
    )
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-02-01T10:00:00Z", ["40000"]))
    valuation, problems = value_portfolio(collector_settings, config, at("2026-02-01T12:00:00Z"))
    positions = _by_asset(valuation)
    xrp = positions["XRP"]
    assert (xrp.quantity, xrp.cost_basis) == (D("100"), D("50.0"))  # 100 × 0.5
    assert (xrp.price, xrp.value, xrp.unrealized_pnl, xrp.pnl_pct) == (None, None, None, None)  # never 0
    assert problems == [
        "XRP: no price source: add a pair such as XRP-USD (or XRP-USDT with USDT-USD) under an exchange's "
        "pairs in portfolio.yml",
        "total: value unknown while XRP has no price",
    ]
    assert positions["BTC"].value == D("20000")  # 0.5 × 40000
    assert valuation.total.value is None  # XRP is unknown, not 0: 20000 would be a wrong total
    assert valuation.total.cost_basis == D("50.0")
    _assert_totals_are_sums(valuation)


def test_now_uses_the_latest_trade_or_close_whichever_is_newer(collector_settings, tmp_path):
    config = _config("BTC-USD", '  BTC: "2"\n')
    pair = config.exchanges["bitstamp"].pairs[0]
    an_hour_ago = int(time.time()) - 3600
    seed(
        collector_settings,
        tmp_path,
        hourly_candles("BTC-USD", "2026-02-01T10:00:00Z", ["40000"])
        + [Trade("bitstamp", pair, 7, D("41000.5"), D("0.1"), "buy", an_hour_ago * 1_000_000_000 + 7)],
    )
    valuation, problems = value_portfolio(collector_settings, config)
    assert problems == []
    assert _by_asset(valuation)["BTC"].value == D("82001.0")  # 2 × 41000.5: the trade is newer than the close

    # a candle that closed after that trade wins over it (the stream may have been down while backfill ran)
    seed(
        collector_settings,
        tmp_path,
        [
            replace(
                hourly_candles("BTC-USD", "2026-02-01T10:00:00Z", ["39999.5"])[0],
                open_time_s=an_hour_ago - an_hour_ago % 3600,
            )
        ],
    )
    valuation, _ = value_portfolio(collector_settings, config)
    assert _by_asset(valuation)["BTC"].value == D(
        "79999.0"
    )  # 2 × 39999.5, closed at most 1 h after the trade


def test_total_unrealized_is_total_value_minus_total_cost_basis(collector_settings, tmp_path):
    config = _config(
        "BTC-USD",
        "  BTC:\n    - {date: 2026-01-10, kind: buy, quantity: '1', price: '30000', fee: '10'}\n"
        "  ETH:\n    - {date: 2026-01-10, kind: buy, quantity: '2', price: '2000'}\n",  # no ETH price source
    )
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-10T00:00:00Z", ["31000"]))
    valuation, problems = value_portfolio(collector_settings, config, at("2026-01-10T02:00:00Z"))
    assert any(problem.startswith("ETH: no price source") for problem in problems)
    assert "total: value unknown while ETH has no price" in problems
    total = valuation.total
    # BTC: value 31000, cost 30010, unrealized 990; ETH: cost 4000, value unknown. Counting ETH as 0 would give a
    # total value of 31000 against a cost of 34010 with an unrealized +990: the value and P/L are unknown instead
    assert (total.value, total.cost_basis, total.unrealized_pnl, total.pnl_pct) == (
        None,
        D("34010"),
        None,
        None,
    )
    assert total.realized_pnl == D("0")
    # the identity: unrealized = value - cost basis, whenever the total value is known
    assert total.value is None or total.value - total.cost_basis == total.unrealized_pnl
    _assert_totals_are_sums(valuation)


def test_a_year_old_price_used_as_now_is_reported(collector_settings, tmp_path):
    config = _config(
        "BTC-USD", "  BTC:\n    - {date: 2025-01-01, kind: buy, quantity: '1', price: '30000'}\n"
    )
    # the only stored BTC-USD price: a candle that closed on 2025-01-02 01:00 UTC
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2025-01-02T00:00:00Z", ["29000"]))
    valuation, problems = value_portfolio(collector_settings, config)
    assert valuation.positions[0].value == D("29000")  # valued "now" at a price from 2025
    assert any("BTC" in problem and "2025-01-02" in problem for problem in problems), problems
    # --at the same: a price from long before the moment asked is named, one within two candles is not
    _, problems = value_portfolio(collector_settings, config, at("2025-06-01T00:00:00Z"))
    assert problems == [
        "BTC: valued with the BTC-USD price of 2025-01-02 01:00 UTC, the latest stored then (run a backfill, or "
        "check that the exchange still trades it)"
    ]
    _, problems = value_portfolio(
        collector_settings, config, at("2025-01-02T03:00:00Z")
    )  # 2 h after the close
    assert problems == []
