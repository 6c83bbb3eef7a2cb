"""What the last completed history recompute stored, so that the next one redoes only what changed since.

An hour's position of an asset depends on the asset's holdings timeline, its price route and the stored closes of
the route's legs; the hour's total depends on every position. So, against the memo of the last recompute, an asset's
positions may differ from the first moment its timeline differs, from the first 30-day window in which the count or
the sum of one leg's stored closes differs, and at every hour after the last one computed; a new or removed asset,
or a changed route, differs everywhere; so does every hour before the first one the last recompute covered (a
bucket retention lengthened since). A change of base currency or candle interval redoes everything, as does a
recompute without a memo (the first one after a start, or after one that failed or whose points were not all
stored).
"""

from dataclasses import dataclass

from collector.config import Pair
from collector.portfolio.prices import Prices
from collector.portfolio.valuation import AssetTimeline
from collector.storage.prices import StoredPrices

EARLIEST = -(2**63)  # before any hour: everything differs
NEVER = 2**63  # after any hour: nothing differs

Source = tuple[str, Pair]  # (exchange, pair): one stored series of closes


@dataclass(frozen=True)
class HistoryMemo:
    basis: tuple  # base currency and candle interval
    routes: dict[str, tuple]  # asset -> the sources its price is read from, per leg
    timelines: dict[str, AssetTimeline]
    digests: dict[Source, dict[int, tuple]]  # per source: window start -> (count, sum) of its closes
    start_ns: int  # every hour from it (the bucket's retention then, or the first transaction) was computed
    stop_ns: int  # every hour before it was computed


def price_sources(prices: Prices, timelines: dict[str, AssetTimeline]) -> dict[str, tuple]:
    """asset -> per leg of its route, (leg, its sources in order); () without a route."""
    sources = {}
    for asset in timelines:
        route = prices.route(asset)
        sources[asset] = tuple((leg, leg.sources) for leg in route.legs) if route else ()
    return sources


def read_digests(store: StoredPrices, routes: dict[str, tuple]) -> dict[Source, dict[int, tuple]]:
    """Read before the closes themselves: a candle stored meanwhile then shows up as a change the next time."""
    keys = {(exchange, leg.pair) for legs in routes.values() for leg, sources in legs for exchange in sources}
    return {key: store.close_digest(*key) for key in sorted(keys, key=str)}


def changed_since(
    memo: HistoryMemo | None,
    basis: tuple,
    routes: dict[str, tuple],
    timelines: dict[str, AssetTimeline],
    digests: dict[Source, dict[int, tuple]],
) -> dict[str, int] | None:
    """Per asset (held now or in the memo), the first moment from which its positions may differ from the stored
    ones; None when everything must be recomputed."""
    if memo is None or memo.basis != basis:
        return None
    since = {}
    for asset in sorted(memo.timelines.keys() | timelines.keys()):
        old, new = memo.timelines.get(asset), timelines.get(asset)
        if old is None or new is None or memo.routes.get(asset) != routes.get(asset):
            since[asset] = EARLIEST
            continue
        moment = min(memo.stop_ns, _first_difference(old, new))
        for leg, sources in routes[asset]:
            for exchange in sources:
                key = (exchange, leg.pair)
                moment = min(moment, _first_window_difference(memo.digests.get(key, {}), digests[key]))
        since[asset] = moment
    return since


def _first_difference(old: AssetTimeline, new: AssetTimeline) -> int:
    """The first moment at which the two timelines may give another state."""
    if old == new:
        return NEVER
    if old.first_ns is None or new.first_ns is None:
        return EARLIEST  # a bare quantity is held at every moment
    old_entries = zip(old.times_ns, old.states, strict=True)
    new_entries = zip(new.times_ns, new.states, strict=True)
    for old_entry, new_entry in zip(old_entries, new_entries, strict=False):  # the longer one's rest: below
        if old_entry != new_entry:
            return min(old_entry[0], new_entry[0])
    shorter = min(len(old.times_ns), len(new.times_ns))
    return min(
        (times[shorter] for times in (old.times_ns, new.times_ns) if len(times) > shorter), default=EARLIEST
    )


def _first_window_difference(old: dict[int, tuple], new: dict[int, tuple]) -> int:
    """The start of the first window whose closes differ: a close from then on changes the hours after it."""
    return min(
        (window for window in old.keys() | new.keys() if old.get(window) != new.get(window)),
        default=NEVER,
    )
