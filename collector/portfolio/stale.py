"""Which live samples an edit of the holdings makes wrong, and since when.

Live samples (`crypto_live`) are taken from the latest prices, so they cannot be recomputed the way the hourly history
is; after an edit the ones that no longer match the holdings are deleted instead (new ones follow every interval).
A sample is stale from the earliest transaction the edit added, removed or changed: an asset no longer held loses all
its samples, a changed lot the samples from its time on, and the portfolio total from the earliest of those. A new
base currency or cost-basis method makes every sample stale. An edit of a note or of the line order changes nothing.
"""

from collections import Counter

from collector.config import Config
from collector.holdings import Holding
from collector.portfolio.prices import to_ns

TOTAL = None  # the key of the `portfolio` samples, beside each asset's `position` samples


def stale_live_samples(old: Config, new: Config) -> dict[str | None, int]:
    """asset (or TOTAL) -> the time (ns) from which its live samples no longer match the new holdings."""
    assets = set(old.holdings.assets) | set(new.holdings.assets)
    if (old.base_currency, old.holdings.cost_basis) != (new.base_currency, new.holdings.cost_basis):
        return dict.fromkeys([*sorted(assets), TOTAL], 0)
    stale = {}
    for asset in sorted(assets):
        before = _valued_lines(old.holdings.assets.get(asset))
        after = _valued_lines(new.holdings.assets.get(asset))
        changed = (before - after) + (after - before)
        if changed:
            stale[asset] = min(moment for moment, *_ in changed)
    if stale:
        stale[TOTAL] = min(stale.values())
    return stale


def merge(pending: dict[str | None, int], more: dict[str | None, int]) -> dict[str | None, int]:
    """Stale spans of two edits not applied yet: the earliest start of each."""
    return {
        key: min(value for value in (pending.get(key), more.get(key)) if value is not None)
        for key in pending.keys() | more.keys()
    }


def _valued_lines(holding: Holding | None) -> Counter:
    """What a valuation reads of a holding: (time ns, kind, quantity, price, currency, fee) per line, counted; a bare
    quantity is held at every moment, so its line has time 0."""
    if holding is None:
        return Counter()
    if holding.quantity is not None:
        return Counter([(0, "bare", holding.quantity, None, None, None)])
    return Counter(
        (to_ns(line.time), line.kind, line.quantity, line.price, line.currency, line.fee)
        for line in holding.transactions
    )
