"""Hourly valuation history and transaction points, recomputed as a diff against what is stored.

Every whole hour T from the first transaction to now gets a `position` point per asset held at T and a `portfolio`
point, valued with the holdings held at T and the price at T (the close of the latest candle closed by T). The span
is processed a month at a time (one price query per market and month, one read of the stored points), so memory
stays flat however long the history is. Only points that differ are written; stored points that are no longer
computed (a removed lot or asset, an earlier start) are deleted. A second run writes and deletes nothing.

Given the memo of the last completed recompute (memo.py), only the hours from the first one whose inputs changed are
valued, and only the series whose inputs changed, and the totals, are read back and diffed: an edit of one lot costs
the hours after it, not the whole history.
"""

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from collector.config import Config
from collector.portfolio.memo import HistoryMemo, changed_since, price_sources, read_digests
from collector.portfolio.prices import NS, ClosesAt, CloseSeries, Prices, to_ns
from collector.portfolio.routes import PriceRoutes
from collector.portfolio.valuation import build_timelines, has_figures, value_at
from collector.records import Transaction
from collector.storage.prices import StoredPrices
from collector.storage.sync import PointSync, SyncResult

log = logging.getLogger(__name__)

HOUR_NS = 3600 * NS
WINDOW_NS = 30 * 24 * HOUR_NS
FOREVER_NS = 7_000_000_000 * NS  # year 2191: past any transaction date
VALUATIONS = ("position", "portfolio")


class Interrupted(Exception):
    """A stop arrived between two steps of a recompute."""


@dataclass(frozen=True)
class HistoryResult:
    hours: SyncResult = SyncResult()
    transactions: SyncResult = SyncResult()
    problems: tuple[str, ...] = ()
    memo: HistoryMemo | None = None  # what the next recompute may take as stored, once these points are

    @property
    def written(self) -> int:
        return self.hours.written + self.transactions.written

    @property
    def deleted(self) -> int:
        return self.hours.deleted + self.transactions.deleted


def transaction_records(config: Config) -> list[Transaction]:
    """One point per holdings line; lines of one asset and kind at the same moment are a nanosecond apart, in file
    order, so two buys on the same date are two points."""
    seen: Counter = Counter()
    records = []
    for asset, holding in sorted(config.holdings.assets.items()):
        for line in holding.transactions:
            moment = to_ns(line.time)
            key = (asset, line.kind, moment)
            records.append(
                Transaction(
                    asset=asset,
                    kind=line.kind,
                    time_ns=moment + seen[key],
                    quantity=line.quantity,
                    price=line.price,
                    fee=line.fee,
                    currency=line.currency,
                    note=line.note,
                )
            )
            seen[key] += 1
    return records


# points reach InfluxDB a while after they are computed: an hour at the retention's edge is left out before then
WRITE_MARGIN_NS = 60 * NS


class HistoryRecompute:
    """Brings the stored hourly history and transaction points in line with the configuration."""

    def __init__(
        self,
        config: Config,
        store: StoredPrices,
        sync: PointSync,
        submit,
        stop: threading.Event | None = None,
    ):
        self.config = config
        self.store = store
        self.sync = sync
        self.submit = submit
        self.stop = stop or threading.Event()

    def run(self, now_ns: int | None = None, memo: HistoryMemo | None = None) -> HistoryResult:
        started = time.monotonic()
        now_ns = time.time_ns() if now_ns is None else now_ns
        routes = PriceRoutes(self.config)
        closes = Prices(routes, ClosesAt(self.store))
        timelines, problems = build_timelines(self.config.holdings, closes)
        basis = (routes.base, self.store.interval_s)
        sources = price_sources(closes, timelines)
        digests = read_digests(self.store, sources)
        since = changed_since(memo, basis, sources, timelines, digests)
        transactions = self.sync.sync(
            "meta", ("transaction",), transaction_records(self.config), 0, FOREVER_NS, self.submit
        )
        firsts = [line.first_ns for line in timelines.values() if line.first_ns is not None]
        # the first whole hour at or after the first transaction
        start = -(-min(firsts) // HOUR_NS) * HOUR_NS if firsts else None
        stop = now_ns - now_ns % HOUR_NS + HOUR_NS  # up to the current whole hour, included
        # stored points before the (new) first hour are stale too: the span starts at the earliest of both
        known = [t for t in (start, self.sync.first_ns("history", VALUATIONS)) if t is not None]
        retention = self.sync.retention_ns("history")
        if retention and known:
            # InfluxDB refuses hours beyond the bucket's retention (422): written, every recompute would retry them
            kept = -(-(now_ns - retention + WRITE_MARGIN_NS) // HOUR_NS) * HOUR_NS
            start = max(start, kept) if start is not None else None
            known = [max(t, kept) for t in known]
        hours = SyncResult()
        begin = min(known) - min(known) % HOUR_NS if known else stop
        if memo is not None and begin < memo.start_ns:
            since = None  # hours the last recompute did not cover (its bucket kept less): all are computed
        if known:
            series = CloseSeries(self.store, routes.legs(timelines))
            prices = Prices(routes, series)
            for window in range(begin, stop, WINDOW_NS):
                if self.stop.is_set():
                    raise Interrupted
                window_stop = min(window + WINDOW_NS, stop)
                # with a memo: from the first hour that may differ, the series that may differ, and the totals
                changed = window if since is None else min(since.values(), default=window_stop)
                span_start = max(window, -(-changed // HOUR_NS) * HOUR_NS)  # the first whole hour from then
                if span_start >= window_stop:
                    continue
                redone = None if since is None else {asset for asset, t in since.items() if t < window_stop}
                series.load(window, window_stop)
                records = []
                first_hour = max(span_start, start) if start is not None else window_stop
                for hour in range(first_hour, window_stop, HOUR_NS):
                    valuation = value_at(timelines, prices, hour, "history")
                    records.extend(p for p in valuation.positions if redone is None or p.asset in redone)
                    if has_figures(valuation.total):
                        records.append(valuation.total)
                only = None if redone is None else _series(redone)
                hours += self.sync.sync(
                    "history", VALUATIONS, records, span_start, window_stop, self.submit, only
                )
        memo = HistoryMemo(basis, sources, timelines, digests, begin, stop)
        result = HistoryResult(hours, transactions, tuple(problems), memo)
        log.info(
            "portfolio history recomputed (%s) in %.1f s: %d hourly points written, %d deleted; %d transaction points "
            "written, %d deleted",
            "in full" if since is None else "what changed",
            time.monotonic() - started,
            hours.written,
            hours.deleted,
            transactions.written,
            transactions.deleted,
        )
        return result


def _series(assets) -> tuple:
    """The totals and the positions of these assets, as (measurement, tags) series."""
    return (("portfolio", ()), *(("position", (("asset", asset),)) for asset in sorted(assets)))
