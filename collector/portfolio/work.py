"""The valuation jobs as the service and the `portfolio` command run them (each call blocks; run it in a thread)."""

import logging
import threading
import time
from datetime import datetime

from collector.config import Config
from collector.influx_settings import InfluxSettings
from collector.portfolio.history import HistoryRecompute, HistoryResult
from collector.portfolio.prices import ClosesAt, LatestPrices, Prices, to_ns
from collector.portfolio.routes import PriceRoutes
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
    return config.holdings, config.base_currency, pairs, config.backfill.interval_s


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
            at_ns, prices = time.time_ns(), Prices(routes, LatestPrices(store, routes.legs(timelines)))
        else:
            at_ns, prices = to_ns(at), closes
        valuation = value_at(timelines, prices, at_ns, "live")
    finally:
        store.close()
    problems += [prices.missing(asset, at) for asset in valuation.unpriced]
    return valuation, problems


class PortfolioWork:
    """Hourly history recompute and live samples for the running collector."""

    def __init__(self, settings: InfluxSettings, config: Config, submit):
        self.settings = settings
        self.config = config
        self.submit = submit
        self.stop = threading.Event()  # set on shutdown: a recompute in progress ends at its next step
        self.errors = 0
        self._timelines: tuple[tuple, dict[str, AssetTimeline]] | None = None  # (valuation inputs, timelines)
        self._reported: set[str] = set()
        self._failing: set[str] = set()
        self._store: StoredPrices | None = None

    def configure(self, config: Config) -> bool:
        """Take a new configuration; True when the history must be recomputed."""
        changed = valuation_inputs(config) != valuation_inputs(self.config)
        self.config = config
        return changed

    def recompute(self) -> HistoryResult:
        config = self.config
        store = StoredPrices(
            self.settings, config.buckets, config.backfill.interval_s, SERVICE_QUERY_TIMEOUT_S
        )
        sync = PointSync(self.settings, config.buckets, SERVICE_QUERY_TIMEOUT_S)
        try:
            result = HistoryRecompute(config, store, sync, self.submit, self.stop).run()
        finally:
            store.close()
            sync.close()
        self._report(result.problems)
        self._timelines = None  # rebuilt by the next sample: a rate missing before may be stored now
        return result

    def sample(self) -> Valuation | None:
        """One live sample of every position and the total, from the latest stored prices."""
        config = self.config  # one configuration for the whole sample, even if a reload lands meanwhile
        if not config.holdings.assets:
            return None
        if self._store is None:
            self._store = StoredPrices(
                self.settings, config.buckets, config.backfill.interval_s, SERVICE_QUERY_TIMEOUT_S
            )
        routes = PriceRoutes(config)
        inputs = valuation_inputs(config)
        if self._timelines is not None and self._timelines[0] == inputs:
            timelines = self._timelines[1]
        else:
            timelines, problems = build_timelines(config.holdings, Prices(routes, ClosesAt(self._store)))
            self._report(problems)
            self._timelines = (inputs, timelines)
        prices = Prices(routes, LatestPrices(self._store, routes.legs(timelines)))
        valuation = value_at(timelines, prices, time.time_ns(), "live")
        self._report([prices.missing(asset) for asset in valuation.unpriced])
        self.submit(valuation.positions + ([valuation.total] if has_figures(valuation.total) else []))
        return valuation

    def failed(self, what: str) -> None:
        """Count a failed job; log it (with its traceback) once until that job succeeds again."""
        self.errors += 1
        if what not in self._failing:
            self._failing.add(what)
            log.exception("portfolio %s failed; trying again on the next occasion", what)

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
