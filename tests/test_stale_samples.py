"""Which live samples an edit of the holdings makes wrong (deleted by the next recompute), and since when."""

from datetime import UTC, datetime

from collector.config import parse_config
from collector.portfolio.prices import to_ns
from collector.portfolio.stale import TOTAL, merge, stale_live_samples

BTC = "  BTC:\n    - {date: 2026-01-10, kind: buy, quantity: '1', price: '30000'}\n"
BTC_SOLD = BTC + "    - {date: 2026-03-10T14:00:00Z, kind: sell, quantity: '0.5', price: '50000', note: x}\n"


def _config(holdings: str, base: str = "USD"):
    return parse_config(f"base_currency: {base}\nholdings:\n{holdings}", "p.yml")


def _ns(text: str) -> int:
    return to_ns(datetime.fromisoformat(text).replace(tzinfo=UTC))


def test_a_changed_lot_makes_its_asset_and_the_total_stale_from_its_time_only():
    edited = BTC_SOLD.replace("'0.5'", "'0.4'")
    stale = stale_live_samples(_config(BTC_SOLD + '  ETH: "2"\n'), _config(edited + '  ETH: "2"\n'))
    assert stale == {"BTC": _ns("2026-03-10T14:00:00"), TOTAL: _ns("2026-03-10T14:00:00")}  # ETH untouched


def test_a_removed_asset_loses_every_sample_and_a_note_or_line_order_changes_nothing():
    assert stale_live_samples(_config(BTC + '  ETH: "2"\n'), _config(BTC)) == {"ETH": 0, TOTAL: 0}
    assert stale_live_samples(_config(BTC_SOLD), _config(BTC_SOLD.replace("note: x", "note: y"))) == {}
    swapped = "  BTC:\n" + "".join(reversed(BTC_SOLD.splitlines(keepends=True)[1:]))
    assert stale_live_samples(_config(BTC_SOLD), _config(swapped)) == {}


def test_a_new_base_currency_makes_every_sample_stale():
    assert stale_live_samples(_config(BTC), _config(BTC, "EUR")) == {"BTC": 0, TOTAL: 0}


def test_edits_not_applied_yet_keep_the_earliest_start():
    assert merge({"BTC": 5, TOTAL: 5}, {"ETH": 0, "BTC": 9, TOTAL: 0}) == {"BTC": 5, "ETH": 0, TOTAL: 0}
