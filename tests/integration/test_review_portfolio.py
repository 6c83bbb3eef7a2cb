"""Review of issue 7 (portfolio valuation): each test records a finding and fails until it is fixed."""

from decimal import Decimal

from collector.config import Buckets, parse_config
from collector.portfolio.history import HistoryRecompute
from collector.storage.prices import StoredPrices
from collector.storage.sync import PointSync
from tests.integration.valuation_helpers import at, hourly_candles, seed, stored_points, writer

D = Decimal
HOUR = 3600
NOW_NS = int(at("2026-01-10T04:20:00Z").timestamp()) * 10**9
PAIRS = "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n"


def _recompute(settings, tmp_path, holdings: str, pairs: str = PAIRS):
    config = parse_config(pairs + "holdings:\n" + holdings, "p.yml")
    store, sync = StoredPrices(settings, Buckets(), 3600), PointSync(settings, Buckets())
    try:
        with writer(settings, tmp_path) as instance:
            return HistoryRecompute(config, store, sync, instance.submit).run(now_ns=NOW_NS)
    finally:
        store.close()
        sync.close()


def test_a_figure_that_becomes_unknown_is_removed_not_left_stale(collector_settings, admin_client, tmp_path):
    """Guards sync's delete-before-rewrite: no other test notices if a stored value survives its price's removal."""
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    holdings = "  BTC:\n    - {date: 2026-01-10T00:00:00Z, kind: buy, quantity: '1', price: '30000'}\n"
    _recompute(collector_settings, tmp_path, holdings)
    assert (
        stored_points(admin_client, collector_settings.org, "position")[("BTC", "2026-01-10T01:00:00Z")][
            "value"
        ]
        == 31000.0
    )
    # the pair goes: BTC has no price source any more, so no hour may keep a value
    _recompute(collector_settings, tmp_path, holdings, "exchanges:\n  bitstamp:\n    pairs: [ETH-USD]\n")
    for measurement in ("position", "portfolio"):
        points = stored_points(admin_client, collector_settings.org, measurement)
        assert len(points) == 5, points  # 00:00 … 04:00
        assert all("value" not in fields and fields["cost_basis"] == 30000.0 for fields in points.values()), (
            points
        )
