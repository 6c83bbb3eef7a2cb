"""Candle history over REST: paged through any span, incremental from the last stored candle."""

import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from collector.config import Pair
from collector.exchanges.base import Exchange, MessageError
from collector.http import HttpClient, HttpError, RateLimited
from collector.older_history import reach_start_s

log = logging.getLogger(__name__)


@dataclass
class BackfillResult:
    pair: Pair
    candles: int = 0
    requests: int = 0
    status: str = "ok"  # ok | up to date | no data | rate limited | failed
    detail: str = ""
    last_open_s: int | None = None
    empty_until_s: int | None = None  # the walk's pages before this time were empty: no candle before it
    bad_rows: list[str] = field(default_factory=list)  # skipped rows, what was wrong with each


def day_start_s(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()

    def update(self, done_s: int, start_s: int, end_s: int, candles: int) -> None:
        if not self.enabled or end_s <= start_s:
            return
        share = min(1.0, max(0.0, (done_s - start_s) / (end_s - start_s)))
        bar = "#" * int(share * 30)
        self.stream.write(f"\r{self.label:<22} [{bar:<30}] {share:6.1%} {candles:>8} candles")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def backfill_pair(
    exchange: Exchange,
    http: HttpClient,
    submit,
    pair: Pair,
    interval_s: int,
    since_s: int,
    last_stored_s: int | None,
    now_s: float | None = None,
    progress: Progress | None = None,
) -> BackfillResult:
    """Fetch every closed candle after the last stored one (or since `since_s`) and submit it.

    Pages follow each other up to now, past empty ones; a bad row is skipped (and reported in the result),
    never its page. A stop (Stopped) ends it between or during requests, after the last submitted page.
    """
    result = BackfillResult(pair, last_open_s=last_stored_s)
    now_s = int(now_s if now_s is not None else time.time())
    start = since_s if last_stored_s is None else max(since_s, last_stored_s + interval_s)
    start -= start % interval_s
    end = now_s - now_s % interval_s  # the candle opening here is still open
    start = _within_reach(exchange, pair, interval_s, start, end)
    first = start
    if start >= end:
        result.status = "up to date"
        return result
    while start < end:
        try:
            page = exchange.candles(http, pair, interval_s, start, now_s)
        except RateLimited as exc:
            result.status, result.detail = "rate limited", str(exc)
            break
        except (HttpError, MessageError) as exc:
            result.status, result.detail = "failed", str(exc)
            break
        finally:
            result.requests += 1
        result.bad_rows += page.bad_rows
        if page.records:
            submit(page.records)
            result.candles += len(page.records)
            result.last_open_s = page.records[-1].open_time_s
        if not (result.candles or result.bad_rows):
            result.empty_until_s = (
                start  # nothing before it; this page is asked again (a candle may come late)
            )
        start = max(page.next_start_s or 0, start + interval_s)
        if progress:
            progress.update(start, first, end, result.candles)
    if progress:
        progress.finish()
    if result.status == "ok" and result.candles == 0:
        result.status = "no data"
        result.detail = f"the exchange has no {pair} candles after {_iso(first)}"
    if result.bad_rows:
        skipped = f"{len(result.bad_rows)} unusable rows skipped"
        result.detail = f"{result.detail}; {skipped}" if result.detail else skipped
    return result


def _within_reach(exchange: Exchange, pair: Pair, interval_s: int, start: int, end: int) -> int:
    """Where the walk can start: an exchange that serves only its latest candle_reach_rows candles (or the last
    candle_reach_s seconds) is not asked for older ones; that older history has to come from another source
    (collector/older_history.py plans it), and the log says so."""
    reach = reach_start_s(exchange.candle_reach_rows, exchange.candle_reach_s, interval_s, end)
    if reach is None or start >= reach:
        return start
    reach += -reach % interval_s
    within = (
        f"its latest {exchange.candle_reach_rows}"
        if exchange.candle_reach_rows is not None
        else f"its last {exchange.candle_reach_s / 86400:g} days"
    )
    log.info(
        "%s %s: candles from %s to %s are beyond the exchange's reach (%s); older history comes from another "
        "configured source with this pair or coin, if there is one (see 'older history')",
        exchange.name,
        pair,
        _iso(start),
        _iso(reach),
        within,
    )
    return reach


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
