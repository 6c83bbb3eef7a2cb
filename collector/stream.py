"""One exchange's live trades over its websocket: nothing lost, nothing duplicated.

- Reconnects with exponential backoff and jitter, reset once a subscription succeeds.
- A silence watchdog: no message for `silence_s` is answered with a websocket ping; only a missing pong
  means a dead connection, so a quiet but live pair never trips it.
- When the exchange asks for a reconnect, a new connection is opened and subscribed before the old one is
  read to its end and closed (make before break).
- After every subscription, the trades missed since the last one seen are fetched over REST. They become the
  same points as live trades, so overlaps overwrite themselves.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import connect

from collector.config import Pair
from collector.exchanges.base import Exchange, MessageError, Parsed
from collector.health import ExchangeHealth
from collector.http import HttpClient, HttpError, RateLimited
from collector.records import Trade
from collector.retry import Backoff

log = logging.getLogger(__name__)
REST_TRADE_HISTORY_S = 86_400  # the oldest trades an exchange's "recent trades" call reaches


class ConnectionLost(Exception):
    pass


@dataclass(frozen=True)
class StreamOptions:
    open_timeout_s: float = 10.0
    pong_timeout_s: float = 10.0
    backoff_first_s: float = 1.0
    backoff_max_s: float = 60.0
    drain_s: float = 1.0  # how long the old connection is still read after a hand-over


class TradeStream:
    def __init__(
        self,
        exchange: Exchange,
        pairs,
        http: HttpClient,
        sink,
        health: ExchangeHealth,
        last_trade_s: dict[Pair, int] | None = None,
        options: StreamOptions = StreamOptions(),
    ):
        self.exchange = exchange
        self.pairs: set[Pair] = set(pairs)
        self.http = http
        self.sink = sink
        self.health = health
        self.last_trade_s: dict[Pair, int] = dict(last_trade_s or {})
        self.options = options
        self.subscribed: set[Pair] = set()
        self._alive_s: float | None = None  # when a connection last delivered a message
        self._lost_s: int | None = None  # _alive_s when the last connection was lost or handed over
        self._conn = None
        self._backoff = Backoff(options.backoff_first_s, options.backoff_max_s)
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        expected = (OSError, TimeoutError, ConnectionLost, websockets.exceptions.WebSocketException)
        while True:
            try:
                await self._serve(await self._open())
            except Exception as exc:  # cancellation (a BaseException) passes through
                delay = self._backoff.next()
                if isinstance(exc, expected):
                    log.warning(
                        "%s: connection lost (%s); reconnecting in %.1f s",
                        self.exchange.name,
                        _describe(exc),
                        delay,
                    )
                else:  # a bug must not end the stream: say it loudly, then start over
                    self.health.errors += 1
                    log.exception("%s: unexpected error in the stream; reconnecting", self.exchange.name)
                self.health.reconnects += 1
                self._mark_lost()
                await asyncio.sleep(delay)

    async def set_pairs(self, pairs) -> None:
        """Hot reload: subscribe what was added and unsubscribe what was removed, on the live connection."""
        pairs = set(pairs)
        added, removed = sorted(pairs - self.pairs), sorted(self.pairs - pairs)
        self.pairs = pairs
        self.subscribed -= set(removed)
        conn = self._conn
        if conn is None:
            return  # the next connection subscribes self.pairs
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            for message in self.exchange.subscribe_messages(added) + self.exchange.unsubscribe_messages(
                removed
            ):
                await conn.send(message)

    # --- connection life ---------------------------------------------------------------------------------

    async def _open(self):
        conn = await connect(
            self.exchange.ws_url,
            open_timeout=self.options.open_timeout_s,
            ping_interval=None,  # liveness is the watchdog's job (see _receive)
            close_timeout=2,
            max_size=2**22,
        )
        self.subscribed = set()
        try:
            for message in self.exchange.subscribe_messages(sorted(self.pairs)):
                await conn.send(message)
        except BaseException:
            await self._close(conn)
            raise
        return conn

    async def _serve(self, conn) -> None:
        self._conn = conn
        heartbeat = asyncio.create_task(self._heartbeat(conn))
        try:
            while True:
                parsed = self._handle(await self._receive(conn))
                if parsed is not None and parsed.reconnect_requested:
                    heartbeat.cancel()
                    conn = await self._hand_over(conn)
                    self._conn = conn
                    heartbeat = asyncio.create_task(self._heartbeat(conn))
        finally:  # whichever connection it holds by now, handed over or not, ends here
            heartbeat.cancel()
            self._conn = None
            await self._close(conn)

    async def _receive(self, conn):
        while True:
            try:
                return await asyncio.wait_for(conn.recv(), self.exchange.silence_s)
            except TimeoutError:
                pass
            try:  # silence: a quiet pair or a dead connection? The pong tells.
                pong = await conn.ping()
                await asyncio.wait_for(pong, self.options.pong_timeout_s)
            except TimeoutError as exc:
                raise ConnectionLost(f"no message for {self.exchange.silence_s:.0f} s and no pong") from exc

    async def _heartbeat(self, conn) -> None:
        message = self.exchange.heartbeat_message()
        if message is None:
            return
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            while True:
                await asyncio.sleep(self.exchange.heartbeat_s)
                await conn.send(message)

    async def _hand_over(self, old):
        log.info(
            "%s asked for a reconnect: opening a new connection before closing the old one",
            self.exchange.name,
        )
        old_reader = asyncio.create_task(self._read_to_end(old))
        new = None
        try:
            new = await self._open()
            deadline = time.monotonic() + self.options.open_timeout_s
            while self.subscribed != self.pairs and time.monotonic() < deadline:
                timeout = max(0.01, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    self._handle(await asyncio.wait_for(new.recv(), timeout))
            await asyncio.sleep(self.options.drain_s)  # let the old connection deliver what it still has
        except BaseException:
            await self._close(new)
            raise
        finally:
            old_reader.cancel()
            await self._close(old)
        self.health.reconnects += 1
        return new

    async def _read_to_end(self, conn) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async for message in conn:
                self._handle(message)

    def _mark_lost(self) -> None:
        if self._alive_s is not None:
            self._lost_s = int(self._alive_s)

    @staticmethod
    async def _close(conn) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # --- messages ------------------------------------------------------------------------------------------

    def _handle(self, message) -> Parsed | None:
        self.health.messages += 1
        self._alive_s = time.time()
        try:
            parsed = self.exchange.parse(message)
        except MessageError as exc:
            kind = str(exc).split(":")[0]
            text = message if isinstance(message, str) else repr(message)
            self.health.error(
                log, f"message:{kind}", "%s: unusable message (%s): %.200s", self.exchange.name, exc, text
            )
            return None
        if parsed.trades:
            self._accept([trade for trade in parsed.trades if trade.pair in self.pairs])
        if parsed.subscribed is not None:
            self._on_subscribed(parsed.subscribed)
        if parsed.unsubscribed is not None:
            self.subscribed.discard(parsed.unsubscribed)
        return parsed

    def _accept(self, trades: list[Trade]) -> None:
        if not trades:
            return
        self.sink(trades)
        self.health.trades += len(trades)
        for trade in trades:
            if trade.time_s > self.last_trade_s.get(trade.pair, 0):
                self.last_trade_s[trade.pair] = trade.time_s

    def _on_subscribed(self, pair: Pair) -> None:
        if pair not in self.pairs:
            return
        self.subscribed.add(pair)
        self._backoff.reset()
        # From the last trade seen, else (after a lost connection) from when the link was last alive;
        # a pair never seen on a first connection has no gap: candles cover its history.
        since = self.last_trade_s.get(pair, self._lost_s)
        if since is not None:
            task = asyncio.create_task(self._gap_fill(pair, since))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _gap_fill(self, pair: Pair, since_s: int) -> None:
        gap_s = max(0.0, time.time() - since_s)
        try:
            trades = await asyncio.to_thread(self.exchange.recent_trades, self.http, pair, gap_s)
        except (HttpError, RateLimited, MessageError) as exc:
            self.health.error(log, "gap-fill", "%s %s: gap fill failed: %s", self.exchange.name, pair, exc)
            return
        missed = [trade for trade in trades if trade.time_s >= since_s and trade.pair in self.pairs]
        self._accept(missed)
        self.health.gap_filled += len(missed)
        if gap_s > REST_TRADE_HISTORY_S:
            log.warning(
                "%s %s: %.1f h without trades; the REST API keeps one day, candles cover the rest",
                self.exchange.name,
                pair,
                gap_s / 3600,
            )
        log.info("%s %s: gap of %.0f s filled with %d trades", self.exchange.name, pair, gap_s, len(missed))


def _describe(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__
