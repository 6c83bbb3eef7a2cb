"""`collector run`: streams, schedules, health, hot reload and a clean stop, for one configuration at a time."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from collector.backfill import BackfillResult, backfill_pair, day_start_s
from collector.config import COINGECKO, Config, ExchangeConfig, Pair
from collector.errors import ConfigError, RuntimeFailure
from collector.exchanges import EXCHANGES, load_checked_config
from collector.exchanges.base import Exchange, MessageError
from collector.health import ExchangeHealth
from collector.http import HttpClient, HttpError
from collector.influx_settings import InfluxSettings
from collector.older_history import OlderHistory, Source, extra_pairs, plan_older_history, reach_start_s
from collector.open_gaps import OpenGaps
from collector.portfolio.history import Interrupted
from collector.portfolio.work import PortfolioWork
from collector.retry import Backoff
from collector.settled_file import SettledFile
from collector.stop import Stopped, StopSignal
from collector.storage.reader import Reader
from collector.storage.spool import Spool
from collector.storage.writer import Writer, WriterOptions
from collector.stream import StreamOptions, TradeStream

log = logging.getLogger(__name__)

LIVE_ONLY_COUNTERS = frozenset({"messages", "trades", "connected", "last_message_age_s", "reconnects"})


@dataclass(frozen=True)
class RunOptions:
    reload_s: float = 2.0  # how often portfolio.yml is checked for edits
    health_s: float = 10.0
    alive_file: Path | None = None  # the writer's heartbeat, judged by `collector healthcheck`
    shutdown_s: float = 8.0  # SIGTERM to exit stays under 10 s: producers stop, then the writer flushes
    producers_stop_s: float = 1.5  # a stop ends every network wait at once; this bounds the rest
    flush_before_recompute_s: float = 30.0  # candles just backfilled must be stored before history reads them
    # a failed history recompute is tried again after this, doubling up to the max
    recompute_retry_s: float = 2.0
    recompute_retry_max_s: float = 60.0
    writer: WriterOptions = WriterOptions()
    stream: StreamOptions = StreamOptions()


@dataclass
class ExchangeRuntime:
    config: ExchangeConfig
    adapter: Exchange
    http: HttpClient
    health: ExchangeHealth
    submit: Callable[[list], None]  # to the writer, inexact values counted on the way (health.count_inexact)
    stream: TradeStream | None = None
    task: asyncio.Task | None = None
    # (pair, interval) -> open of the last candle stored: after an interval edit the new one starts afresh
    last_candle_s: dict[tuple[Pair, int], int] = field(default_factory=dict)
    # (pair, interval) -> (from, until): a walk found no candle in that span; a pair with no data yet is not
    # walked from `since` again every round (from 2011 in 1 m candles, thousands of empty pages)
    empty_history: dict[tuple[Pair, int], tuple[int, int]] = field(default_factory=dict)


class Collector:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        settings: InfluxSettings,
        spool_dir: Path,
        options=RunOptions(),
    ):
        self.config_path = config_path
        self.config = config
        self.settings = settings
        self.options = options
        self.writer = Writer(settings, config.buckets, Spool(spool_dir), options.writer, options.alive_file)
        self.reader = Reader(settings, config.buckets)
        self.open_gaps = OpenGaps(spool_dir / "open_gaps.json")
        self.portfolio = PortfolioWork(settings, config, self.writer.submit)
        self._history_lock = asyncio.Lock()
        self._history_requested = False  # a recompute is waiting to start: another request needs no task
        self._older_pairs: dict[
            str, list[Pair]
        ] = {}  # source -> pairs it backfills for others' older history
        self.exchanges: dict[str, ExchangeRuntime] = {}
        self.stop = StopSignal()  # ends every wait on an exchange (REST calls, retry and rate-limit sleeps)
        self._tasks: set[asyncio.Task] = set()
        self._start_failed = False
        self._config_file = SettledFile(config_path)  # edits are reloaded once settled

    # --- one-shot jobs (also used by the `backfill` and `ticker` commands) -------------------------------

    def runtime(self, exchange: ExchangeConfig) -> ExchangeRuntime:
        adapter = EXCHANGES[exchange.name](exchange)
        health = ExchangeHealth()
        backoff = Backoff(self.options.stream.backoff_first_s, self.options.stream.backoff_max_s)
        http = HttpClient(exchange.name, adapter.rate_limit, backoff=backoff, stop=self.stop, health=health)

        def submit(records: list) -> None:
            health.count_inexact(log, records)
            self.writer.submit(records)

        return ExchangeRuntime(exchange, adapter, http, health, submit)

    def backfill(
        self, runtime: ExchangeRuntime, pairs, since_s: int | None = None, progress=None
    ) -> list[BackfillResult]:
        interval = self.config.backfill.interval_s
        since = since_s if since_s is not None else day_start_s(self.config.backfill.since)
        results = []
        for pair in pairs:  # the interval is one the exchange offers: load_checked_config saw to it
            stored = self._last_stored_candle(runtime, pair, interval, since)
            walked_from, start = since, since
            empty = runtime.empty_history.get((pair, interval))
            if stored is None and empty is not None and empty[0] <= since:
                walked_from, start = empty[0], max(since, empty[1])
            result = backfill_pair(
                runtime.adapter,
                runtime.http,
                runtime.submit,
                pair,
                interval,
                start,
                stored,
                progress=progress(runtime, pair) if progress else None,
            )
            if stored is None and result.empty_until_s is not None:
                runtime.empty_history[(pair, interval)] = (walked_from, result.empty_until_s)
            runtime.health.skipped_rows(log, f"{runtime.adapter.name} {pair} ohlc", result.bad_rows)
            if result.last_open_s is not None:
                runtime.last_candle_s[(pair, interval)] = result.last_open_s
                runtime.health.backfill_lag_s = max(0.0, time.time() - (result.last_open_s + 2 * interval))
            results.append(result)
        return results

    def _last_stored_candle(
        self, runtime: ExchangeRuntime, pair: Pair, interval: int, since: int
    ) -> int | None:
        remembered = runtime.last_candle_s.get((pair, interval))
        try:  # a stop does not wait for a slow database either
            stored = self.stop.call(
                self.reader.last_candle_open_s, runtime.adapter.name, pair, interval, since
            )
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreadable database must not stop the backfill
            runtime.health.error(
                log, "read-last-candle", "cannot read the last stored candle (%s); starting from memory", exc
            )
            stored = None
        else:
            runtime.health.recovered(log, "read-last-candle", "the last stored candle can be read again")
        known = [value for value in (remembered, stored) if value is not None]
        return max(known) if known else None

    def tickers(self, runtime: ExchangeRuntime) -> int:
        """Every pair's ticker (in one call where the exchange has one); returns how many were written."""
        name, health, pairs = runtime.adapter.name, runtime.health, runtime.config.pairs
        try:
            page = runtime.adapter.tickers(runtime.http, pairs)
        except (HttpError, MessageError) as exc:
            health.error(log, "tickers", "%s: tickers failed: %s", name, exc)
            return 0
        if page is not None:
            health.recovered(log, "tickers", "%s: tickers work again", name)
            health.skipped_rows(log, f"{name} tickers", page.bad_rows)
            runtime.submit(page.records)
            return len(page.records)
        tickers = 0
        for pair in pairs:
            try:
                runtime.submit([runtime.adapter.ticker(runtime.http, pair)])
                tickers += 1
            except (HttpError, MessageError) as exc:
                health.error(log, f"ticker:{pair}", "%s %s: ticker failed: %s", name, pair, exc)
            else:
                health.recovered(log, f"ticker:{pair}", "%s %s: ticker works again", name, pair)
        return tickers

    def reference_data(self, runtime: ExchangeRuntime) -> tuple[int, int]:
        """Tickers of every pair and the exchange's coin metadata; returns (tickers, assets) written."""
        tickers, assets = self.tickers(runtime), 0
        name, health = runtime.adapter.name, runtime.health
        try:
            page = runtime.adapter.assets(runtime.http)
        except (HttpError, MessageError) as exc:
            health.error(log, "assets", "%s: coin metadata failed: %s", name, exc)
        else:
            health.recovered(log, "assets", "%s: coin metadata works again", name)
            health.skipped_rows(log, f"{name} currencies", page.bad_rows)
            runtime.submit(page.records)
            assets = len(page.records)
        return tickers, assets

    # --- the long-running service --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.writer.on_failed = lambda: loop.call_soon_threadsafe(stop.set)
        self.writer.start()
        try:
            self._spawn(self._start(stop))  # a start reads the database: a stop must not wait for it
            await stop.wait()
            log.info("stopping: flushing what was accepted")
        finally:
            await self._stop_all()
        if self._start_failed:
            raise RuntimeFailure("the collector could not start (see the log)")
        if self.writer.failed.is_set():
            raise RuntimeFailure("the InfluxDB writer failed for good (see the log); exiting so it restarts")

    async def _blocking(self, function, *args):
        """function(*args) on a worker thread. A cancel still waits (briefly: the stop has ended its network
        waits) for the thread to finish, so nothing it submits reaches the writer after the writer closed."""
        work = asyncio.ensure_future(asyncio.to_thread(function, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work], timeout=self.options.producers_stop_s)
            if work.done() and not work.cancelled():
                work.exception()  # Stopped, most likely: expected, and nobody else will look at it
            else:
                log.error("%s still running after the stop; what it submits now is lost", function.__name__)
            raise

    async def _start(self, stop: asyncio.Event) -> None:
        try:
            for exchange in self.config.exchanges.values():
                await self._start_exchange(exchange)
            if self.config.coingecko:
                self._start_rest_source(self.config.coingecko)
        except Stopped:
            return
        except Exception:  # noqa: BLE001 - ends the run loudly (exit code 1), as when the start was awaited
            log.exception("cannot start streaming")
            self._start_failed = True
            stop.set()
            return
        for task in (self._schedule, self._health, self._watch_config, self._live_valuation):
            self._spawn(task())

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and not isinstance(task.exception(), Stopped | None):
            log.error("%s stopped unexpectedly", task.get_coro().__qualname__, exc_info=task.exception())

    async def _start_exchange(self, exchange: ExchangeConfig) -> None:
        runtime = self.runtime(exchange)
        try:  # through the stop, as any wait on the network: a hanging database does not hold up a stop
            last_trades = await asyncio.to_thread(self.stop.call, self.reader.last_trades, exchange.name)
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - without it there is just no gap fill after this restart
            log.warning(
                "%s: cannot read the last stored trades (%s); no gap fill for this start", exchange.name, exc
            )
            last_trades = {}
        for pair, start in self.open_gaps.of(exchange.name).items():  # live trades after it may be stored
            if pair in exchange.pairs:
                last_trades[pair] = start
            else:  # a pair no longer wanted owes nothing
                self.open_gaps.closed(exchange.name, pair)
        runtime.stream = TradeStream(
            runtime.adapter,
            exchange.pairs,
            runtime.http,
            runtime.submit,
            runtime.health,
            {pair: last for pair, last in last_trades.items() if pair in exchange.pairs},
            self.options.stream,
            self.open_gaps,
        )
        runtime.task = self._spawn(runtime.stream.run())
        self.exchanges[exchange.name] = runtime
        log.info("%s: streaming %s", exchange.name, ", ".join(map(str, exchange.pairs)))

    def _start_rest_source(self, source: ExchangeConfig) -> None:
        """A source without live trades (CoinGecko): the schedule's backfill and reference data, and its prices
        refreshed on their own, shorter schedule (its "now" price: there are no trades)."""
        runtime = self.exchanges[source.name] = self.runtime(source)
        if runtime.adapter.prices_every_s:
            runtime.task = self._spawn(self._refresh_prices(runtime))
        log.info(
            "%s: candles, prices and coin metadata of %s", source.name, ", ".join(map(str, source.pairs))
        )

    async def _refresh_prices(self, runtime: ExchangeRuntime) -> None:
        """Tickers every `prices_every_s` (the schedule's round fetches them on start and with each backfill)."""
        while True:
            await asyncio.sleep(runtime.adapter.prices_every_s)
            try:
                await self._blocking(self.tickers, runtime)
            except Stopped:
                return

    async def _stop_exchange(self, name: str) -> None:
        runtime = self.exchanges.pop(name)
        if runtime.task:
            runtime.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runtime.task
        runtime.http.close()

    async def _stop_all(self) -> None:
        """Producers first (streams, gap fills, backfill, tickers), then the writer flushes what they gave it."""
        started = time.monotonic()
        self.stop.set()  # every wait on an exchange ends now
        self.portfolio.stop.set()  # a recompute thread ends at its next step
        self.writer.release_flushes()  # ...and one waiting for the writer returns now, not at its close
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:  # bounded: a task that ignored its cancel must not keep the writer from closing
            done, pending = await asyncio.wait(list(self._tasks), timeout=self.options.producers_stop_s + 1.0)
            for task in done:
                if not task.cancelled():
                    task.exception()  # seen: each task logs its own failures
            for task in pending:
                log.error("%s did not stop in time; closing the writer anyway", task.get_coro().__qualname__)
        for runtime in self.exchanges.values():
            runtime.http.close()
        remaining = max(1.0, self.options.shutdown_s - (time.monotonic() - started))
        await asyncio.to_thread(self.writer.close, remaining)
        self.reader.close()
        self.portfolio.close()

    async def _schedule(self) -> None:
        """Reference data and backfill on start, then every `backfill.every`."""
        while True:
            self.older_history()
            for runtime in list(self.exchanges.values()):
                await self._refresh(
                    runtime, [*runtime.config.pairs, *self._older_pairs.get(runtime.adapter.name, [])]
                )
            await asyncio.sleep(self.config.backfill.every_s)

    def older_history(self) -> list[OlderHistory]:
        """Where each exchange's candles stop short of `backfill.since`, who has the older ones; logged."""
        now_s = time.time()
        sources = [
            Source(
                name,
                runtime.config.pairs,
                self._reach_start_s(runtime.adapter, now_s),
                frozenset(symbol for symbol, _ in getattr(runtime.config, "coins", ())),
            )
            for name, runtime in self.exchanges.items()
        ]
        plan = plan_older_history(sources, day_start_s(self.config.backfill.since))
        for entry in plan:
            log.info("older history: %s", entry.describe())
        self._older_pairs = {name: extra_pairs(plan, name) for name in self.exchanges}
        return plan

    def _reach_start_s(self, adapter: Exchange, now_s: float) -> int | None:
        interval = self.config.backfill.interval_s
        return reach_start_s(adapter.candle_reach_rows, adapter.candle_reach_s, interval, now_s)

    async def _refresh(self, runtime: ExchangeRuntime, pairs) -> None:
        try:
            await self._refresh_now(runtime, pairs)
        except Stopped:
            pass  # the service is stopping
        except Exception:  # one failed round must not end the schedule
            runtime.health.errors += 1
            log.exception(
                "%s: reference data or backfill failed; next try on the schedule", runtime.adapter.name
            )

    async def _refresh_now(self, runtime: ExchangeRuntime, pairs) -> None:
        tickers, assets = await self._blocking(self.reference_data, runtime)
        log.info("%s: %d tickers and %d assets written", runtime.adapter.name, tickers, assets)
        for result in await self._blocking(self.backfill, runtime, pairs):
            log.info(
                "%s %s backfill: %s, %d candles in %d requests%s",
                runtime.adapter.name,
                result.pair,
                result.status,
                result.candles,
                result.requests,
                f" ({result.detail})" if result.detail else "",
            )
        self._request_history()

    # --- portfolio valuation ------------------------------------------------------------------------------

    def _request_history(self) -> None:
        """A history recompute soon (after a backfill or an edit), in a task of its own."""
        if not self._history_requested:
            self._history_requested = True
            self._spawn(self._recompute_history())

    async def _recompute_history(self) -> None:
        """Hourly history and transaction points brought in line with the holdings and the stored candles; tried
        again with backoff until it succeeds, so an edit made while InfluxDB is away still reaches the history."""
        async with self._history_lock:  # one at a time; a later request runs after the current one
            backoff = Backoff(self.options.recompute_retry_s, self.options.recompute_retry_max_s)
            while True:
                self._history_requested = False  # each attempt reads the configuration of that moment
                if await self._recompute_history_once():
                    return
                await asyncio.sleep(backoff.next())  # a stop cancels the wait

    async def _recompute_history_once(self) -> bool:
        """True when the history is in line; False when it must be recomputed again."""
        try:
            # points submitted earlier (candles just backfilled, history points waiting in the spool) must be
            # stored first: read too early they leave gaps, replayed after the recompute they bring back stale hours
            settled = await self._blocking(self.writer.flush, self.options.flush_before_recompute_s)
            await self._blocking(self.portfolio.recompute, settled, self.writer.lost_points())
        except Interrupted:
            log.info("portfolio history recompute stopped")
            return True
        except Exception:  # noqa: BLE001 - counted and logged; tried again shortly
            self.portfolio.failed("history recompute")
            return False
        if not settled:
            self.portfolio.failed("history recompute", "points submitted before it were not all stored yet")
            return False
        self.portfolio.succeeded("history recompute")
        return True

    async def _live_valuation(self) -> None:
        """A `position`/`portfolio` sample in the live bucket every `valuation.live_every`."""
        while True:
            try:
                await asyncio.to_thread(self.portfolio.sample)
                self.portfolio.succeeded("live sample")
            except Exception:  # noqa: BLE001 - counted and logged; the next sample tries again
                self.portfolio.failed("live sample")
            await asyncio.sleep(self.config.live_valuation_every_s)

    async def _health(self) -> None:
        while True:
            self.writer.feeds_alive(
                {name: runtime.health.alive_s() for name, runtime in self.exchanges.items()}
            )
            await asyncio.sleep(self.options.health_s)
            writer = self.writer.stats.health()
            for name, runtime in self.exchanges.items():
                counters = runtime.health.counters()
                if not runtime.adapter.live_trades:  # no websocket: its age and "disconnected" would mislead
                    counters = {k: v for k, v in counters.items() if k not in LIVE_ONLY_COUNTERS}
                self.writer.submit_health(name, counters | writer)
            if self.config.holdings.assets:
                self.writer.submit_health("portfolio", {"errors": self.portfolio.errors})

    # --- hot reload -------------------------------------------------------------------------------------------

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload_s)
            if not self._config_file.changed():
                continue
            try:
                config = load_checked_config(self.config_path)
            except ConfigError as exc:
                log.error("configuration not reloaded, keeping the previous one: %s", exc)
                continue
            except Exception:  # noqa: BLE001 - a bug must not end hot reload until the next restart
                log.exception("configuration not reloaded (unexpected error), keeping the previous one")
                continue
            try:
                await self._apply(config)
            except Exception:  # noqa: BLE001 - the same: log it, keep watching for the next edit
                log.exception(
                    "configuration only partly applied (unexpected error); still watching for edits"
                )

    async def _apply(self, new: Config) -> None:
        old, self.config = self.config, new
        interval_changed = new.backfill.interval_s != old.backfill.interval_s
        if new.buckets != old.buckets:
            log.warning("bucket names changed in %s: they take effect after a restart", self.config_path)
            self.config = replace(new, buckets=old.buckets)
        for name in set(old.exchanges) - set(new.exchanges):
            await self._stop_exchange(name)
            log.info("%s: removed", name)
        for name, exchange in new.exchanges.items():
            runtime = self.exchanges.get(name)
            if runtime and (exchange.ws_url, exchange.rest_url) != (
                runtime.config.ws_url,
                runtime.config.rest_url,
            ):
                await self._stop_exchange(name)
                runtime = None
            if runtime is None:
                await self._start_exchange(exchange)
                self._spawn(self._refresh(self.exchanges[name], exchange.pairs))
                continue
            added = [pair for pair in exchange.pairs if pair not in runtime.config.pairs]
            removed = [pair for pair in runtime.config.pairs if pair not in exchange.pairs]
            runtime.config = exchange
            if added or removed:
                await runtime.stream.set_pairs(exchange.pairs)
                log.info(
                    "%s: pairs now %s (added %s, removed %s)",
                    name,
                    ", ".join(map(str, exchange.pairs)),
                    ", ".join(map(str, added)) or "none",
                    ", ".join(map(str, removed)) or "none",
                )
            if interval_changed:  # candles of the new interval: a backfill of every pair, then its recompute
                self._spawn(self._refresh(runtime, exchange.pairs))
            elif added:
                self._spawn(self._refresh(runtime, added))
        if new.coingecko != old.coingecko:
            await self._apply_coingecko(old.coingecko, new.coingecko, interval_changed)
        elif interval_changed and new.coingecko:
            self._spawn(self._refresh(self.exchanges[COINGECKO], new.coingecko.pairs))
        self._fetch_older_history(interval_changed)
        # after an interval edit the refreshes recompute: one now would find no candle of it and blank the history
        if self.portfolio.configure(self.config) and not (interval_changed and self.exchanges):
            self._request_history()
        log.info("configuration reloaded from %s", self.config_path)

    def _fetch_older_history(self, interval_changed: bool) -> None:
        """After an edit: older history a source must now fetch for another's pair (a pair added to a short
        exchange, a coin added to CoinGecko) is backfilled at once, not on the next round hours later."""
        before = self._older_pairs
        self.older_history()
        for name, pairs in self._older_pairs.items():
            new = [pair for pair in pairs if interval_changed or pair not in before.get(name, ())]
            if new:
                self._spawn(self._refresh(self.exchanges[name], new))

    async def _apply_coingecko(self, old, new, interval_changed: bool) -> None:
        """A `coingecko:` edit: a new source (its coins, ids, endpoint), refreshed for the coins or pairs that are
        new (a base currency edit changes every pair)."""
        window = self.exchanges[COINGECKO].http.bucket if old else None
        if old:
            await self._stop_exchange(COINGECKO)
        if not new:
            log.info("%s: removed", COINGECKO)
            return
        self._start_rest_source(new)
        if window:  # the calls just made count against CoinGecko's budget still: an edit does not renew it
            self.exchanges[COINGECKO].http.bucket = window
        changed = set(new.coins) - set(old.coins if old else ())
        before = old.pairs if old else ()  # a base currency edit makes every coin a new pair
        pairs = (
            new.pairs
            if interval_changed or (old and old.rest_url != new.rest_url)
            else [
                pair
                for pair, coin in zip(new.pairs, new.coins, strict=True)
                if coin in changed or pair not in before
            ]
        )
        if pairs:
            self._spawn(self._refresh(self.exchanges[COINGECKO], pairs))
