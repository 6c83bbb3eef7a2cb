"""The valuation jobs as the service and the `portfolio` command run them (each call blocks; run it in a thread)."""

import logging
import threading
import time
from datetime import datetime

from collector.config import Config
from collector.holdings import describe_time
from collector.influx_settings import InfluxSettings
from collector.portfolio.history import HistoryRecompute, HistoryResult
from collector.portfolio.memo import HistoryMemo
from collector.portfolio.prices import (
    NS,
    STALE_INTERVALS,
    ClosesAt,
    LatestPrices,
    Prices,
    from_ns,
    old_prices,
    to_ns,
)
from collector.portfolio.routes import PriceRoutes
from collector.portfolio.stale import TOTAL, merge, stale_live_samples
from collector.portfolio.valuation import AssetTimeline, Valuation, build_timelines, has_figures, value_at
from collector.storage.prices import StoredPrices
from collector.storage.reader import READ_TIMEOUT_S
from collector.storage.sync import PointSync

log = logging.getLogger(__name__)

# every query of the service is small (one market, or one month of points); one in flight at SIGTERM must end, like
# the Reader's, well inside the 10 s a stop may take: the process waits for the thread that runs it
SERVICE_QUERY_TIMEOUT_S = READ_TIMEOUT_S


def valuation_inputs(config: Config) -> tuple:
    """What a valuation depends on in the configuration: an edit of any of it recomputes the history."""
    pairs = tuple((name, exchange.pairs) for name, exchange in config.exchanges.items())
    return config.holdings, config.base_currency, pairs, config.coingecko, config.backfill.interval_s


def value_portfolio(
    settings: InfluxSettings, config: Config, at: datetime | None = None
) -> tuple[Valuation, list[str]]:
    """The portfolio now (latest stored trade or close) or at `at` (latest close at or before it), with the
    problems to report: assets without a price (source), lots whose rate is not stored."""
    store = StoredPrices(settings, config.buckets, config.backfill.interval_s)
    try:
        routes = PriceRoutes(config)
        closes = Prices(routes, ClosesAt(store))
        timelines, problems = build_timelines(config.holdings, closes)
        if at is None:
            at_ns, lookup = time.time_ns(), LatestPrices(store, routes.legs(timelines))
            prices = Prices(routes, lookup)
        else:
            at_ns, lookup, prices = to_ns(at), closes.leg_price, closes
        valuation = value_at(timelines, prices, at_ns, "live")
        priced = [p.asset for p in valuation.positions if p.price is not None and p.quantity != 0]
        # older than the latest two candles: the collector has not stored a price of it for a while
        stale = old_prices(prices, lookup, priced, at_ns, STALE_INTERVALS * config.backfill.interval_s * NS)
    finally:
        store.close()
    problems += [prices.missing(asset, at) for asset in valuation.unpriced] + stale
    if not valuation.positions:
        problems.append(_nothing_held(config, at_ns))
    if valuation.unpriced:
        problems.append(f"total: value unknown while {', '.join(valuation.unpriced)} has no price")
    return valuation, problems


def _nothing_held(config: Config, at_ns: int) -> str:
    """Why a valuation has no position: every asset's first transaction comes later (bare quantities are always
    held, so there are none)."""
    first = min(
        holding.transactions[0].time for holding in config.holdings.assets.values() if holding.transactions
    )
    return f"nothing held at {from_ns(at_ns):%Y-%m-%d %H:%M} UTC: the first transaction is on {describe_time(first)}"


class PortfolioWork:
    """Hourly history recompute and live samples for the running collector."""

    def __init__(self, settings: InfluxSettings, config: Config, submit):
        self.settings = settings
        self.config = config
        self.submit = submit
        self.stop = threading.Event()  # set on shutdown: a recompute in progress ends at its next step
        self.errors = 0
        self._timelines: tuple[tuple, dict[str, AssetTimeline]] | None = None  # (valuation inputs, timelines)
        self._recomputes = (
            0  # how many recomputes ended: a sample's timelines built across one are not cached
        )
        self._reported: set[str] = set()
        self._failing: set[str] = set()
        self._store: StoredPrices | None = None
        # asset (or TOTAL) -> since when edits made its live samples wrong; the next recompute deletes them
        self._stale_live: dict[str | None, int] = {}
        # deleted already, but samples taken before the edit may still wait in the writer's spool and be replayed
        # after the delete: asset (or TOTAL) -> (from, until) of that delete, done again by every recompute until
        # one runs after a settled flush (not up to its own moment: samples taken since are the new holdings')
        self._stale_live_deleted: dict[str | None, tuple[int, int]] = {}
        # what the last recompute stored: the next one redoes only what changed since (see memo.py)
        self._memo: HistoryMemo | None = None
        self._memo_lost = 0  # the writer's count of lost points when the recompute that made the memo began

    def configure(self, config: Config) -> bool:
        """Take a new configuration; True when the history must be recomputed."""
        changed = valuation_inputs(config) != valuation_inputs(self.config)
        if changed:
            self._stale_live = merge(self._stale_live, stale_live_samples(self.config, config))
        self.config = config
        return changed

    def recompute(self, settled: bool = True, lost: int = 0) -> HistoryResult:
        """`settled`: every point submitted before this recompute is stored (no stale sample can come back); `lost`:
        how many points the writer has lost so far (dropped, set aside unreadable)."""
        config = self.config
        store = StoredPrices(
            self.settings, config.buckets, config.backfill.interval_s, SERVICE_QUERY_TIMEOUT_S
        )
        sync = PointSync(self.settings, config.buckets, SERVICE_QUERY_TIMEOUT_S)
        # unsettled, the last recompute's points may not all be stored: only a full recompute can tell
        # nor when the writer lost points since the last one began: some of its points may be among them
        trusted = settled and lost == self._memo_lost
        memo, self._memo, self._memo_lost = (self._memo if trusted else None), None, lost
        try:
            self._delete_stale_live_samples(sync)
            result = HistoryRecompute(config, store, sync, self.submit, self.stop).run(memo=memo)
            self._memo = result.memo
        finally:
            store.close()
            sync.close()
        if settled:
            self._stale_live_deleted = {}
        self._report(result.problems)
        self._recomputes += 1
        self._timelines = None  # rebuilt by the next sample: a rate missing before may be stored now
        return result

    def _delete_stale_live_samples(self, sync: PointSync) -> None:
        """Live samples cannot be recomputed (they were taken from the prices of their moment): the ones an edit
        made wrong are deleted, and the next samples are taken with the new holdings."""
        now = time.time_ns()
        pending = dict(self._stale_live_deleted)
        for asset, since in self._stale_live.items():
            earlier = pending.get(asset, (since, now))
            pending[asset] = (min(since, earlier[0]), now)
        for asset, (since, until) in sorted(pending.items(), key=lambda item: item[0] or ""):
            if asset is TOTAL:
                sync.delete_range("live", "portfolio", (), since, until)
            else:
                sync.delete_range("live", "position", (("asset", asset),), since, until)
            # done once: a failure later keeps only what is left
            self._stale_live.pop(asset, None)
            self._stale_live_deleted[asset] = (since, until)

    def sample(self) -> Valuation | None:
        """One live sample of every position and the total, from the latest stored prices."""
        config = self.config  # one configuration for the whole sample, even if a reload lands meanwhile
        if not config.holdings.assets:
            return None
        if self._store is None or self._store.interval_s != config.backfill.interval_s:
            if self._store is not None:  # an edit changed the candle interval: closes are read in the new one
                self._store.close()
            self._store = StoredPrices(
                self.settings, config.buckets, config.backfill.interval_s, SERVICE_QUERY_TIMEOUT_S
            )
        routes = PriceRoutes(config)
        inputs = valuation_inputs(config)
        if self._timelines is not None and self._timelines[0] == inputs:
            timelines = self._timelines[1]
        else:
            recomputes = self._recomputes
            timelines, problems = build_timelines(config.holdings, Prices(routes, ClosesAt(self._store)))
            self._report(problems)
            # built while a recompute ended, they may lack a rate it found: cached, they would undo its reset
            if recomputes == self._recomputes:
                self._timelines = (inputs, timelines)
        prices = Prices(routes, LatestPrices(self._store, routes.legs(timelines)))
        valuation = value_at(timelines, prices, time.time_ns(), "live")
        self._report([prices.missing(asset) for asset in valuation.unpriced])
        if valuation_inputs(self.config) != inputs:
            return None  # an edit landed meanwhile: this sample may be one its recompute is deleting
        self.submit(valuation.positions + ([valuation.total] if has_figures(valuation.total) else []))
        return valuation

    def failed(self, what: str, reason: str | None = None) -> None:
        """Count a failed job; log it once until that job succeeds again, with the `reason` given or else with
        the traceback of the exception being handled."""
        self.errors += 1
        if what not in self._failing:
            self._failing.add(what)
            if reason:
                log.warning("portfolio %s failed (%s); trying again shortly", what, reason)
            else:
                log.exception("portfolio %s failed; trying again shortly", what)

    def succeeded(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("portfolio %s works again", what)

    def close(self) -> None:
        self.stop.set()
        if self._store:
            self._store.close()

    def _report(self, problems) -> None:
        """Each problem is logged once (the live sample would repeat it every few seconds)."""
        for problem in problems:
            if problem not in self._reported:
                self._reported.add(problem)
                log.warning("portfolio: %s", problem)
