"""Trades missed while a connection was down, fetched over REST without holding up the live stream.

A failed fetch (network, 429, 5xx, an unusable answer) is retried with backoff, honouring Retry-After, for as
long as the exchange's REST history (Exchange.trade_history_s) still reaches the gap. What it no longer
reaches, or what the exchange refuses outright (another 4xx), is given up on out loud: its span is added to
`unrecoverable_gap_s` and logged with the pair and the time range, so a dashboard can show it.

Where the exchange pages recent trades by id (Exchange.trade_cursor "id"), a gap fill asks for the trades after
the last id stored or seen, then after the last id of each page while the exchange has more: every missed trade
is fetched once, none skipped.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.config import Pair
from collector.exchanges.base import Exchange, MessageError
from collector.health import ExchangeHealth
from collector.http import HttpClient, HttpError
from collector.open_gaps import OpenGaps
from collector.records import LastTrade, Trade
from collector.retry import Backoff, retry_wait
from collector.stop import Stopped

log = logging.getLogger(__name__)
NS = 1_000_000_000


@dataclass(eq=False)
class _Running:
    since_s: float  # where the gap still open starts: moves on as parts of it are given up on
    after_id: int | None = None  # id cursors: the last trade id stored before the gap (None: start by time)
    task: asyncio.Task | None = None
    finished: bool = False  # not stopped, cancelled or failed on the way: the gap is closed


class GapFiller:
    """One gap fill per pair, and per pair `covered_s`: every trade before it is stored or counted as
    unrecoverable. It moves on when a connection is known to have delivered the pair's trades (`delivered`),
    and when a gap fill finishes or gives a span up; a gap starts there (or at the pair's last trade, if later),
    so a quiet pair owes nothing for the time its connection was alive, and no span is counted twice."""

    def __init__(
        self,
        exchange: Exchange,
        http: HttpClient,
        health: ExchangeHealth,
        accept: Callable[[list[Trade]], list[Trade]],
        backoff_first_s: float,
        backoff_max_s: float,
        open_gaps: OpenGaps | None = None,
    ):
        self.exchange = exchange
        self.open_gaps = open_gaps  # kept on disk while open: a restart resumes them
        self.http = http
        self.health = health
        self.accept = accept  # hands trades on; returns those of pairs still wanted
        self.backoff_s = (backoff_first_s, backoff_max_s)
        self.covered_s: dict[Pair, float] = {}
        self._running: dict[Pair, _Running] = {}

    async def close(self) -> None:
        """Cancel every gap fill: nothing is handed on after this."""
        tasks = [running.task for running in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wanted_from(self, pair: Pair, seconds: float) -> None:
        """A pair added while running is owed its trades from the moment it was wanted."""
        self.covered_s.setdefault(pair, seconds)

    def forget(self, pair: Pair) -> None:
        """A pair no longer wanted: its gap fill ends and it owes nothing more."""
        running = self._running.pop(pair, None)
        if running is not None:
            running.task.cancel()
        self.covered_s.pop(pair, None)
        if self.open_gaps is not None:
            self.open_gaps.closed(self.exchange.name, pair)

    def delivered(self, pair: Pair, until_s: float) -> None:
        """A connection delivered every trade of `pair` up to `until_s`. While a gap before it is still being
        filled, coverage is not contiguous: the fill moves it on when it ends."""
        if pair not in self._running:
            self._cover(pair, until_s)

    def start(self, pair: Pair, last: LastTrade | None) -> None:
        """A new subscription (or a gap seen on a live one): fetch what was missed since the pair was last
        covered, or, where the exchange pages by id, everything after the last trade id stored or seen. A gap
        fill still running is merged into the new one, from where its open gap starts."""
        running = self._running.get(pair)
        if running is not None:
            since_s, after_id = running.since_s, running.after_id
            running.task.cancel()
        else:
            known = [s for s in (last and last.time_s, self.covered_s.get(pair)) if s is not None]
            if not known:
                return  # a pair never seen owes nothing: candles cover its history
            since_s, after_id = max(known), last and last.trade_id
        fill = _Running(since_s, after_id if self.exchange.trade_cursor == "id" else None)
        if self.open_gaps is not None:
            self.open_gaps.opened(self.exchange.name, pair, LastTrade(int(since_s), fill.after_id))
        fill.task = asyncio.create_task(self._fill(pair, fill, time.time()))
        self._running[pair] = fill
        fill.task.add_done_callback(lambda _task: self._done(pair, fill))

    def _cover(self, pair: Pair, until_s: float) -> None:
        if until_s > self.covered_s.get(pair, float("-inf")):
            self.covered_s[pair] = until_s

    def _done(self, pair: Pair, fill: _Running) -> None:
        """A fill that did not finish (a stop) stays open on disk; one merged into a newer fill is replaced."""
        if self._running.get(pair) is fill:
            del self._running[pair]
            if fill.finished and self.open_gaps is not None:
                self.open_gaps.closed(self.exchange.name, pair)
        if not fill.task.cancelled() and fill.task.exception() is not None:
            self.health.errors += 1
            log.error("%s %s: gap fill failed", self.exchange.name, pair, exc_info=fill.task.exception())

    async def _fill(self, pair: Pair, fill: _Running, until_s: float) -> None:
        """Trades of [fill.since_s, until_s] over REST, retried until they come or the exchange no longer has
        them; then the pair is covered up to until_s.

        An answer only holds its window as of when it came (Page.complete_from_s): one delayed by retries may
        no longer reach back to the gap's start, so it is asked again (with a larger window) until one does."""
        name, kind = self.exchange.name, f"gap-fill:{pair}"
        backoff = Backoff(*self.backoff_s)
        complete_from_s = until_s  # the answers so far hold every trade from here to until_s
        started_s, filled, by_id = fill.since_s, 0, self.exchange.trade_cursor == "id"
        while True:
            reach_s = time.time() - self.exchange.trade_history_s
            if fill.since_s < reach_s:  # that part is gone from the exchange's REST history
                reach_h = self.exchange.trade_history_s / 3600
                reason = f"the exchange's REST history reaches back {reach_h:g} h"
                fill.since_s = self._unrecoverable(pair, fill.since_s, min(until_s, reach_s), reason)
                fill.after_id = None  # that id is out of reach too: from the reach on, by time
            if not by_id and fill.since_s >= complete_from_s:
                break
            try:
                page = await asyncio.to_thread(
                    self.exchange.recent_trades, self.http, pair, fill.since_s, fill.after_id
                )
            except Stopped:
                return
            except (HttpError, MessageError) as exc:
                if isinstance(exc, HttpError) and not exc.retryable:
                    self.health.error(log, kind, "%s %s: gap fill refused: %s", name, pair, exc)
                    reason = "the exchange refused the request"
                    fill.since_s = self._unrecoverable(pair, fill.since_s, complete_from_s, reason)
                    break
                retry_after = exc.retry_after_s if isinstance(exc, HttpError) else None
                wait = retry_wait(backoff, retry_after)
                self.health.error(
                    log,
                    kind,
                    "%s %s: gap fill failed (%s); retrying while the exchange keeps them",
                    name,
                    pair,
                    exc,
                )
                await asyncio.sleep(wait)
                continue
            self.health.recovered(log, kind, "%s %s: gap fill works again", name, pair)
            self.health.skipped_rows(log, f"{name} {pair} transactions", page.bad_rows)
            missed = self.accept(self._in_gap(page.records, fill))
            self.health.gap_filled += len(missed)
            filled += len(missed)
            if not by_id:
                complete_from_s = min(complete_from_s, page.complete_from_s or fill.since_s)
            elif self._page_on(pair, fill, page, until_s):
                continue
            else:
                break
        self._cover(pair, until_s)
        log.info("%s %s: gap of %.0f s filled with %d trades", name, pair, until_s - started_s, filled)
        fill.finished = True

    def _in_gap(self, trades: list[Trade], fill: _Running) -> list[Trade]:
        """The trades of a page that belong to the gap: after its trade id, or from its start time."""
        if fill.after_id is not None:
            return [trade for trade in trades if trade.trade_id > fill.after_id]
        unit = self.exchange.trade_time_unit_ns
        since_ns = int(fill.since_s * NS) // unit * unit  # point times are truncated to the unit
        return [trade for trade in trades if trade.time_ns >= since_ns]

    def _page_on(self, pair: Pair, fill: _Running, page, until_s: float) -> bool:
        """Id cursors: the next page starts right after this one (Page.next_after_id, else its last trade);
        asked while the exchange has more and this page ended before the gap did. A page that does not move
        the cursor on ends the fill out loud: asking again would only get the same page."""
        last = max(page.records, key=lambda trade: trade.trade_id, default=None)
        ids = [number for number in (page.next_after_id, last and last.trade_id) if number is not None]
        cursor = max(ids, default=None)
        moved_on = cursor is not None and (fill.after_id is None or cursor > fill.after_id)
        if moved_on:
            fill.after_id = cursor
        if last is not None:
            fill.since_s = max(fill.since_s, last.time_ns // NS)
        if not page.more or (last is not None and last.time_ns >= until_s * NS):
            return False
        if not moved_on:
            self.health.error(
                log,
                f"gap-fill-cursor:{pair}",
                "%s %s: the exchange has trades after id %s but its page names no later id to ask after;"
                " trades after it may be missing",
                self.exchange.name,
                pair,
                fill.after_id,
            )
        return moved_on

    def _unrecoverable(self, pair: Pair, from_s: float, to_s: float, reason: str) -> float:
        """Given up on: counted in `unrecoverable_gap_s` and logged with its span, for a dashboard to show, and
        covered (never counted again). Returns where the gap still open now starts."""
        self._cover(pair, to_s)
        span = max(0.0, to_s - from_s)
        self.health.unrecoverable_gap_s += span
        log.warning(
            "%s %s: trades from %s to %s (%.0f s) cannot be recovered (%s); candles cover that span",
            self.exchange.name,
            pair,
            _iso(from_s),
            _iso(to_s),
            span,
            reason,
        )
        return max(from_s, to_s)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
