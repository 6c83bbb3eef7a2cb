"""Trades missed while a connection was down, fetched over REST without holding up the live stream.

A failed fetch (network, 429, 5xx, an unusable answer) is retried with backoff, honouring Retry-After, for as
long as the exchange's REST history (Exchange.trade_history_s) still reaches the gap. What it no longer
reaches, or what the exchange refuses outright (another 4xx), is given up on out loud: its span is added to
`unrecoverable_gap_s` and logged with the pair and the time range, so a dashboard can show it.
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
from collector.records import Trade
from collector.retry import Backoff
from collector.stop import Stopped

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Running:
    since_s: float
    task: asyncio.Task


class GapFiller:
    def __init__(
        self,
        exchange: Exchange,
        http: HttpClient,
        health: ExchangeHealth,
        accept: Callable[[list[Trade]], list[Trade]],
        backoff_first_s: float,
        backoff_max_s: float,
    ):
        self.exchange = exchange
        self.http = http
        self.health = health
        self.accept = accept  # hands trades on; returns those of pairs still wanted
        self.backoff_s = (backoff_first_s, backoff_max_s)
        self._running: dict[Pair, _Running] = {}

    async def close(self) -> None:
        """Cancel every gap fill: nothing is handed on after this."""
        tasks = [running.task for running in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self, pair: Pair, since_s: float) -> None:
        """One gap fill per pair: a new gap while one is still retrying is merged into it."""
        running = self._running.get(pair)
        if running is not None:
            since_s = min(since_s, running.since_s)
            running.task.cancel()
        fill = _Running(since_s, asyncio.create_task(self._fill(pair, since_s, time.time())))
        self._running[pair] = fill
        fill.task.add_done_callback(lambda _task: self._done(pair, fill))

    def _done(self, pair: Pair, fill: _Running) -> None:
        if self._running.get(pair) is fill:
            del self._running[pair]
        if not fill.task.cancelled() and fill.task.exception() is not None:
            self.health.errors += 1
            log.error("%s %s: gap fill failed", self.exchange.name, pair, exc_info=fill.task.exception())

    async def _fill(self, pair: Pair, since_s: float, until_s: float) -> None:
        """Trades of [since_s, until_s] over REST, retried until they come or the exchange no longer has them.

        An answer only holds its window as of when it came (Page.complete_from_s): one delayed by retries may
        no longer reach back to since_s, so it is asked again (with a larger window) until one does."""
        name, kind = self.exchange.name, f"gap-fill:{pair}"
        backoff = Backoff(*self.backoff_s)
        complete_from_s = until_s  # the answers so far hold every trade from here to until_s
        filled = 0
        while True:
            reach_s = time.time() - self.exchange.trade_history_s
            if since_s < reach_s:  # that part is gone from the exchange's REST history
                reach_h = self.exchange.trade_history_s / 3600
                reason = f"the exchange's REST history reaches back {reach_h:g} h"
                self._unrecoverable(pair, since_s, min(until_s, reach_s), reason)
                since_s = min(until_s, reach_s)
            if since_s >= complete_from_s:
                break
            try:
                page = await asyncio.to_thread(self.exchange.recent_trades, self.http, pair, since_s)
            except Stopped:
                return
            except (HttpError, MessageError) as exc:
                if isinstance(exc, HttpError) and not exc.retryable:
                    self.health.error(log, kind, "%s %s: gap fill refused: %s", name, pair, exc)
                    self._unrecoverable(pair, since_s, complete_from_s, "the exchange refused the request")
                    return
                retry_after = exc.retry_after_s if isinstance(exc, HttpError) else None
                wait = backoff.next() if retry_after is None else retry_after
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
            missed = self.accept([trade for trade in page.records if trade.time_s >= int(since_s)])
            self.health.gap_filled += len(missed)
            filled += len(missed)
            complete_from_s = min(complete_from_s, page.complete_from_s or since_s)
        log.info("%s %s: gap of %.0f s filled with %d trades", name, pair, until_s - since_s, filled)

    def _unrecoverable(self, pair: Pair, from_s: float, to_s: float, reason: str) -> None:
        """Given up on: counted in `unrecoverable_gap_s` and logged with its span, for a dashboard to show."""
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


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
