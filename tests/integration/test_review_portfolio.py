"""Review of issue 7 (portfolio valuation): each test records a finding and fails until it is fixed."""

from decimal import Decimal

import pytest

from collector.config import Buckets, parse_config
from collector.portfolio.history import HistoryRecompute
from collector.portfolio.work import value_portfolio
from collector.storage.prices import StoredPrices
from collector.storage.sync import PointSync
from tests.integration.valuation_helpers import at, hourly_candles, seed, writer

D = Decimal
NOW_NS = int(at("2026-01-10T04:20:00Z").timestamp()) * 10**9
PAIRS = "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n"


def _recompute(settings, tmp_path, holdings: str):
    config = parse_config(PAIRS + "holdings:\n" + holdings, "p.yml")
    store, sync = StoredPrices(settings, Buckets(), 3600), PointSync(settings, Buckets())
    try:
        with writer(settings, tmp_path) as instance:
            return HistoryRecompute(config, store, sync, instance.submit).run(now_ns=NOW_NS)
    finally:
        store.close()
        sync.close()


@pytest.mark.xfail(
    strict=True,
    reason="review: a multi-line note (YAML `note: |`) is read back from InfluxDB's CSV with \\r\\n, so its "
    "transaction point differs from the computed one and is rewritten on every recompute",
)
def test_a_block_style_note_is_not_rewritten_by_a_second_run(collector_settings, tmp_path):
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    holdings = (
        "  BTC:\n    - date: 2026-01-10T00:00:00Z\n      kind: buy\n      quantity: '1'\n      price: '30000'\n"
        "      note: |\n        bought the dip\n"
    )
    assert _recompute(collector_settings, tmp_path, holdings).transactions.written == 1
    second = _recompute(collector_settings, tmp_path, holdings)
    assert (second.written, second.deleted) == (0, 0)


@pytest.mark.xfail(
    strict=True,
    reason="review: an empty note is written as an empty string field, read back as no field, and so rewritten "
    "on every recompute",
)
def test_an_empty_note_is_not_rewritten_by_a_second_run(collector_settings, tmp_path):
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    holdings = (
        "  BTC:\n    - {date: 2026-01-10T00:00:00Z, kind: buy, quantity: '1', price: '30000', note: ''}\n"
    )
    _recompute(collector_settings, tmp_path, holdings)
    second = _recompute(collector_settings, tmp_path, holdings)
    assert (second.written, second.deleted) == (0, 0)


@pytest.mark.xfail(
    strict=True,
    reason="review: 'now' silently uses the newest stored price however old (here a candle from a year ago); "
    "the valuation neither says so nor names the price's time",
)
def test_a_year_old_price_used_as_now_is_reported(collector_settings, tmp_path):
    config = parse_config(
        PAIRS + "holdings:\n  BTC:\n    - {date: 2025-01-01, kind: buy, quantity: '1', price: '30000'}\n",
        "p.yml",
    )
    # the only stored BTC-USD price: a candle that closed on 2025-01-02 01:00 UTC
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2025-01-02T00:00:00Z", ["29000"]))
    valuation, problems = value_portfolio(collector_settings, config)
    assert valuation.positions[0].value == D("29000")  # valued "now" at a price from 2025
    assert any("BTC" in problem and "2025-01-02" in problem for problem in problems), problems


@pytest.mark.xfail(
    strict=True,
    reason="review: the portfolio total counts an unpriced asset's cost basis but not its value, so total value "
    "- total cost basis != total unrealized P/L (the unpriced asset is effectively valued at 0 in the total)",
)
def test_total_unrealized_is_total_value_minus_total_cost_basis(collector_settings, tmp_path):
    config = parse_config(
        PAIRS + "holdings:\n"
        "  BTC:\n    - {date: 2026-01-10, kind: buy, quantity: '1', price: '30000', fee: '10'}\n"
        "  ETH:\n    - {date: 2026-01-10, kind: buy, quantity: '2', price: '2000'}\n",  # no ETH price source
        "p.yml",
    )
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-10T00:00:00Z", ["31000"]))
    valuation, problems = value_portfolio(collector_settings, config, at("2026-01-10T02:00:00Z"))
    assert any(problem.startswith("ETH: no price source") for problem in problems)
    total = valuation.total
    # BTC: value 31000, cost 30010, unrealized 990; ETH: cost 4000, value unknown
    assert (total.value, total.cost_basis, total.unrealized_pnl) == (D("31000"), D("34010"), D("990"))
    # the identity: unrealized = value - cost basis (here 31000 - 34010 = -3010 != 990): either the total
    # value is unknown while an asset held has no price, or the identity holds
    assert total.value is None or total.value - total.cost_basis == total.unrealized_pnl
