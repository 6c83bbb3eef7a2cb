"""One exchange's live trades over its websocket: nothing lost, nothing duplicated.

- Reconnects with exponential backoff and jitter, reset once a subscription succeeds.
- A silence watchdog: no message for `silence_s` is answered with a websocket ping; only a missing pong
  means a dead connection, so a quiet but live pair never trips it.
- When the exchange asks for a reconnect, a new connection is opened and subscribed before the old one is
  read to its end and closed (make before break).
- Subscriptions belong to a connection (a Link): an acknowledgement counts only for the connection it came
  on, and only the task that owns the current connection sends (un)subscribes, reconciling the wanted pairs
  after its subscribe phase, so a hot reload at any moment (a hand-over included) ends subscribed to exactly
  the wanted pairs.
- After every subscription, the trades missed since the pair was last covered are fetched over REST
  (gap_fill.py). A connection covers the pairs subscribed on it up to its last message (or pong), so a quiet
  pair owes nothing for the time its connection was alive. One handed over was read to its end; one lost also
  lost what was in flight, so its cover ends earlier by the lag of its trade feed (how late its trades came,
  measured on the connection: acks, heartbeat replies and pongs do not wait for trades).
  Gap-filled trades become the same points as live ones, so overlaps overwrite themselves.
- A gap seen on a live connection is filled the same way, at once: the exchange says messages were lost
  (Parsed.missed), or, where a pair's trade ids go up by one (Exchange.sequential_trade_ids), an id jumps.
- An exchange that ends connections after a time (Exchange.max_connection_s) is handed over before it, the
  same make-before-break way as when it asks. One that limits the requests a second on a connection
  (Exchange.max_messages_per_s) gets them paced.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import connect

from collector.config import Pair
from collector.exchanges.base import Exchange, MessageError, Parsed
from collector.gap_fill import GapFiller
from collector.health import ExchangeHealth
from collector.http import HttpClient
from collector.open_gaps import OpenGaps
from collector.records import LastTrade, Trade
from collector.retry import Backoff
from collector.watchdog import Watchdog

log = logging.getLogger(__name__)

# A trade may arrive a little after a later message of the same connection: a connection is taken to have
# delivered a pair's trades up to this long before its last message.
DELIVERY_ALLOWANCE_S = 1.0
NS = 1_000_000_000
PLANNED_HAND_OVER = object()  # what _receive returns when the link's planned hand-over is due


def _hand_over_after_s(max_connection_s: float) -> float:
    """A planned hand-over starts this long after a connection opens: before the exchange's limit, with a
    margin (a tenth of it, at most 5 minutes) for the new connection to open and subscribe."""
    return max_connection_s - min(max_connection_s / 10, 300.0)


class ConnectionLost(Exception):
    pass


@dataclass(frozen=True)
class StreamOptions:
    open_timeout_s: float = 10.0
    pong_timeout_s: float = 10.0
    backoff_first_s: float = 1.0  # reconnects, gap-fill and REST retries
    backoff_max_s: float = 60.0
    drain_s: float = 1.0  # how long the old connection is still read after a hand-over


@dataclass(eq=False)
class Link:
    """One websocket connection and the subscriptions on it."""

    conn: object
    number: int
    requested: set[Pair] = field(default_factory=set)  # subscribe sent, not unsubscribed since
    subscribed: set[Pair] = field(default_factory=set)  # acknowledged on this connection
    alive_s: float | None = None  # when it last delivered a message or answered a ping
    feed_lag_s: float = 0.0  # the most a trade came after its exchange time
    hand_over_at: float | None = None  # monotonic time of its planned hand-over (Exchange.max_connection_s)
    last_seen: dict[Pair, LastTrade] = field(default_factory=dict)  # sequential ids: the last one per pair
    sent_s: deque[float] = field(default_factory=deque)  # monotonic times of its requests in the last second
    watchdog: Watchdog = field(default_factory=Watchdog)  # the deadline of the receive in progress


class TradeStream:
    def __init__(
        self,
        exchange: Exchange,
        pairs,
        http: HttpClient,
        sink,
        health: ExchangeHealth,
        last_trades: dict[Pair, LastTrade] | None = None,
        options: StreamOptions = StreamOptions(),
        open_gaps: OpenGaps | None = None,
    ):
        self.exchange = exchange
        self.pairs: set[Pair] = set(pairs)
        self.http = http
        self.sink = sink
        self.health = health
        self.last_trades: dict[Pair, LastTrade] = dict(last_trades or {})  # stored or accepted since
        self.options = options
        self.link: Link | None = None  # the connection being served
        self._first_subscribed_s: dict[Pair, float] = {}  # a pair never seen is owed its trades from then on
        self._links_opened = 0
        self._pairs_changed = asyncio.Event()
        self._backoff = Backoff(options.backoff_first_s, options.backoff_max_s)
        self._gap_filler = GapFiller(
            exchange, http, health, self._accept, options.backoff_first_s, options.backoff_max_s, open_gaps
        )

    async def run(self) -> None:
        expected = (OSError, TimeoutError, ConnectionLost, websockets.exceptions.WebSocketException)
        try:
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
                    await asyncio.sleep(delay)
        finally:  # a stopped stream produces nothing more: its gap fills end with it
            await self._gap_filler.close()

    async def set_pairs(self, pairs) -> None:
        """Hot reload: the task serving the connection (un)subscribes the difference, now or after its
        subscribe phase; a connection being opened subscribes the new set. A removed pair's gap fill ends and
        it owes nothing more; an added one is owed its trades from now."""
        pairs, now = set(pairs), time.time()
        for pair in self.pairs - pairs:
            self._gap_filler.forget(pair)
            self.last_trades.pop(pair, None)
            self._first_subscribed_s.pop(pair, None)
        for pair in pairs - self.pairs:
            self._gap_filler.wanted_from(pair, now)
        self.pairs = pairs
        self._pairs_changed.set()

    # --- connection life ---------------------------------------------------------------------------------

    async def _open(self) -> Link:
        conn = await connect(
            self.exchange.connection_url(sorted(self.pairs)),
            open_timeout=self.options.open_timeout_s,
            ping_interval=None,  # liveness is the watchdog's job (see _receive)
            close_timeout=2,
            max_size=2**22,
        )
        self._links_opened += 1
        link = Link(conn, self._links_opened)
        if self.exchange.max_connection_s is not None:
            link.hand_over_at = time.monotonic() + _hand_over_after_s(self.exchange.max_connection_s)
        self.exchange.connection_opened()
        self.health.recovered_all("message:")  # each connection logs each kind of bad message again
        try:
            await self._reconcile(link)
        except BaseException:
            await self._close(link, lost=True)
            raise
        return link

    async def _reconcile(self, link: Link) -> None:
        """Make the subscriptions on `link` the wanted pairs. Only the task owning the link calls this."""
        wanted = set(self.pairs)
        added, removed = sorted(wanted - link.requested), sorted(link.requested - wanted)
        link.requested = wanted
        link.subscribed -= set(removed)
        for pair in removed:  # trades made while it is not wanted are no gap once it is added back
            link.last_seen.pop(pair, None)
        for message in self.exchange.subscribe_messages(added) + self.exchange.unsubscribe_messages(removed):
            await self._send(link, message)

    async def _send(self, link: Link, message: str) -> None:
        """A request on `link`, held back as long as needed to keep to Exchange.max_messages_per_s (reloads in
        quick succession would otherwise get the connection cut)."""
        most = self.exchange.max_messages_per_s
        while most is not None:
            now = time.monotonic()
            while link.sent_s and link.sent_s[0] <= now - 1.0:
                link.sent_s.popleft()
            if len(link.sent_s) < most:
                link.sent_s.append(now)
                break
            await asyncio.sleep(link.sent_s[0] + 1.0 - now)
        await link.conn.send(message)

    async def _keep_subscriptions(self, link: Link) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            while True:
                await self._pairs_changed.wait()
                self._pairs_changed.clear()
                await self._reconcile(link)

    async def _serve(self, link: Link) -> None:
        helpers = self._start_helpers(link)
        try:
            while True:
                message = await self._receive(link)
                if message is PLANNED_HAND_OVER:
                    reason, hand_over = "its connection time limit is near", True
                else:
                    parsed = self._handle(message, link)
                    reason, hand_over = (
                        "asked for a reconnect",
                        parsed is not None and parsed.reconnect_requested,
                    )
                while hand_over:  # again if the new connection was asked to go during its hand-over
                    _cancel(helpers)
                    link, hand_over = await self._hand_over(link, reason)
                    helpers = self._start_helpers(link)
        finally:  # whichever connection it holds by now, handed over or not, ends here
            _cancel(helpers)
            self.link = None
            self.health.connected = 0
            await self._close(link, lost=True)

    def _start_helpers(self, link: Link) -> list[asyncio.Task]:
        """The link becomes the one served: its heartbeat, and its subscriptions kept to the wanted pairs
        (reconciled at once, for a reload that came during its subscribe phase)."""
        self.link = link
        self.health.connected = 1
        self._pairs_changed.set()
        helpers = [
            asyncio.create_task(self._heartbeat(link.conn)),
            asyncio.create_task(self._keep_subscriptions(link)),
        ]
        for task in helpers:
            task.add_done_callback(self._helper_done)
        return helpers

    def _helper_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.health.errors += 1
            log.error("%s: connection helper failed", self.exchange.name, exc_info=task.exception())

    async def _receive(self, link: Link):
        """The next message, or PLANNED_HAND_OVER once the link's planned hand-over is due."""
        conn = link.conn
        while True:
            wait_s = self.exchange.silence_s
            if link.hand_over_at is not None:
                wait_s = min(wait_s, link.hand_over_at - time.monotonic())
                if wait_s <= 0:
                    return PLANNED_HAND_OVER
            # one timer per connection, not one per message; and not wait_for, which in Python 3.11 loses a cancel
            # that lands as a message does
            link.watchdog.start(wait_s)
            try:
                return await conn.recv()
            except asyncio.CancelledError:
                if not link.watchdog.expired():
                    raise
            finally:
                link.watchdog.stop()
            if wait_s < self.exchange.silence_s:
                continue  # the hand-over is due, not a silence
            try:  # silence: a quiet pair or a dead connection? The pong tells.
                pong = await conn.ping()
                async with asyncio.timeout(self.options.pong_timeout_s):
                    await pong
                link.alive_s = self.health.last_alive_s = time.time()
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

    async def _hand_over(self, old: Link, reason: str) -> tuple[Link, bool]:
        """The new connection, subscribed, and whether it too was asked to reconnect meanwhile."""
        log.info("%s %s: opening a new connection before closing the old one", self.exchange.name, reason)
        old_reader = asyncio.create_task(self._read_to_end(old))
        new, again = None, False
        try:
            new = await self._open()
            deadline = time.monotonic() + self.options.open_timeout_s
            while new.subscribed != new.requested and time.monotonic() < deadline:
                timeout = max(0.01, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        message = await new.conn.recv()
                    parsed = self._handle(message, new)
                    again = again or (parsed is not None and parsed.reconnect_requested)
            await asyncio.sleep(self.options.drain_s)  # let the old connection deliver what it still has
        except BaseException:
            await self._close(new, lost=True)
            raise
        finally:
            closed_early = old_reader.done()  # it ended by itself: what it had in flight may be lost
            old_reader.cancel()
            await self._close(old, lost=closed_early)
        self.health.reconnects += 1
        return new, again

    async def _read_to_end(self, link: Link) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async for message in link.conn:
                self._handle(message, link)

    def _covered_by(self, link: Link, lost: bool = False) -> None:
        """The pairs subscribed on `link` count as delivered up to its last message, less what a lost link
        still had in flight (see the module's doc)."""
        if link.alive_s is not None:
            until_s = link.alive_s - DELIVERY_ALLOWANCE_S - (link.feed_lag_s if lost else 0.0)
            for pair in link.subscribed & self.pairs:
                self._gap_filler.delivered(pair, until_s)

    async def _close(self, link: Link | None, lost: bool = False) -> None:
        if link is not None:
            link.watchdog.close()
            self._covered_by(link, lost)
            with contextlib.suppress(Exception):
                await link.conn.close()

    # --- messages ------------------------------------------------------------------------------------------

    def _handle(self, message, link: Link) -> Parsed | None:
        self.health.messages += 1
        link.alive_s = self.health.last_message_s = self.health.last_alive_s = time.time()
        try:
            parsed = self.exchange.parse(message)
        except MessageError as exc:
            kind = str(exc).split(":")[0]
            text = message if isinstance(message, str) else repr(message)
            self.health.error(
                log, f"message:{kind}", "%s: unusable message (%s): %.200s", self.exchange.name, exc, text
            )
            return None
        # Messages lost before this one: fill from the pair's last trade before this message's own trades.
        missed_from = {pair: self.last_trades.get(pair) for pair in parsed.missed}
        if parsed.trades:
            oldest_s = min(trade.time_ns for trade in parsed.trades) / NS
            link.feed_lag_s = max(link.feed_lag_s, link.alive_s - oldest_s)
            jumps = {}
            if self.exchange.sequential_trade_ids:
                jumps = self._id_jumps(
                    [trade for trade in parsed.trades if trade.pair in link.requested], link
                )
            self._accept(parsed.trades)
            for pair, before in jumps.items():
                self._gap_found(pair, before, "a trade id jump")
        for pair in parsed.subscribed:
            self._on_subscribed(pair, link)
        link.subscribed.difference_update(parsed.unsubscribed)
        for pair in set(parsed.missed) & link.subscribed:
            since = missed_from[pair] or LastTrade(int(self._first_subscribed_s.get(pair, time.time())))
            self._gap_found(pair, since, "the exchange says messages were lost")
        return parsed

    @staticmethod
    def _id_jumps(trades: list[Trade], link: Link) -> dict[Pair, LastTrade]:
        """Pairs whose trade ids skipped some on this link, each with the last trade before its first skip.
        Ids at or below the last one seen (a snapshot, a repeat) are no gap."""
        jumps: dict[Pair, LastTrade] = {}
        for trade in sorted(trades, key=lambda trade: trade.trade_id):
            before = link.last_seen.get(trade.pair)
            if before is not None and trade.trade_id <= before.trade_id:
                continue
            if before is not None and trade.trade_id > before.trade_id + 1:
                jumps.setdefault(trade.pair, before)
            link.last_seen[trade.pair] = LastTrade(trade.time_ns // NS, trade.trade_id)
        return jumps

    def _gap_found(self, pair: Pair, before: LastTrade | None, why: str) -> None:
        if pair not in self.pairs:
            return
        log.info("%s %s: %s; filling the gap over REST", self.exchange.name, pair, why)
        self._gap_filler.start(pair, before)

    def _accept(self, trades: list[Trade]) -> list[Trade]:
        """Hand the trades of wanted pairs to the sink; returns them."""
        trades = [trade for trade in trades if trade.pair in self.pairs]
        if trades:
            self.sink(trades)
            self.health.trades += len(trades)
        for trade in trades:
            last = self.last_trades.get(trade.pair)
            time_s = trade.time_ns // NS
            if last is None:
                self.last_trades[trade.pair] = LastTrade(time_s, trade.trade_id)
            elif time_s > last.time_s or last.trade_id is None or trade.trade_id > last.trade_id:
                self.last_trades[trade.pair] = LastTrade(
                    max(time_s, last.time_s), max(trade.trade_id, last.trade_id or trade.trade_id)
                )
        return trades

    def _on_subscribed(self, pair: Pair, link: Link) -> None:
        if pair not in link.requested:
            return  # an acknowledgement for what this connection no longer wants
        link.subscribed.add(pair)
        self._backoff.reset()
        if self.link is not None and self.link is not link:  # a hand-over: the old connection is still alive
            self._covered_by(self.link)
        self._gap_filler.start(pair, self.last_trades.get(pair))
        self._first_subscribed_s.setdefault(pair, time.time() - DELIVERY_ALLOWANCE_S)


def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()


def _describe(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__
