"""A local Coinbase: the Advanced Trade websocket (`market_trades`, `heartbeats`, `subscriptions`) and the
Exchange REST API (trades paged by id, candles, ticker, stats), in the documented shapes.

Runs in its own thread and event loop; tests drive it with plain method calls. Every published trade is kept,
so /products/{id}/trades serves what a client missed. Like Coinbase, every message of a connection carries the
next `sequence_num`, heartbeats count up once per tick, a connection that subscribes to nothing within 5 s is
closed, and a subscription starts with a snapshot of the latest trades. Knobs: sequence and heartbeat counter
jumps (lost messages), dropped connections, raw frames, scripted HTTP answers. One rest_url serves
trades, candles, ticker and stats, as https://api.exchange.coinbase.com does.
"""

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed

from tests.replay.server import ReplayServer


@dataclass
class PublishedTrade:
    product: str
    id: int
    price: str
    size: str
    side: str  # the MAKER's side, as Coinbase reports it: BUY or SELL
    time_us: int

    @property
    def time(self) -> str:
        """RFC 3339 with microseconds, trailing zeros dropped, as Coinbase writes it (`.50436Z`)."""
        seconds, micros = divmod(self.time_us, 1_000_000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f"{micros:06d}".rstrip("0")
        return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"

    @property
    def taker_side(self) -> str:
        return "buy" if self.side == "SELL" else "sell"

    @property
    def point_time_ns(self) -> int:
        """What the collector must store: the microsecond, plus the id's sub-microsecond offset."""
        return self.time_us * 1000 + self.id % 1000

    def ws_row(self) -> dict:
        return {
            "trade_id": str(self.id),
            "product_id": self.product,
            "price": self.price,
            "size": self.size,
            "side": self.side,
            "time": self.time,
        }

    def rest_row(self) -> dict:
        return {
            "time": self.time,
            "trade_id": self.id,
            "price": self.price,
            "size": self.size,
            "side": self.side.lower(),
        }


@dataclass(eq=False)
class Connection:
    conn: object
    number: int
    products: set[str] = field(default_factory=set)
    heartbeats: bool = False
    sequence: int = 0
    heartbeat_counter: int = 0


class CoinbaseReplay(ReplayServer):
    def __init__(self, heartbeat_interval_s: float = 0.2, snapshot_size: int = 50):
        super().__init__()
        self.heartbeat_interval_s = heartbeat_interval_s  # Coinbase: 1 s
        self.snapshot_size = snapshot_size
        self.subscribe_deadline_s = 5.0  # Coinbase closes a connection with no subscription after 5 s
        self.trades: list[PublishedTrade] = []
        self.connections: list[Connection] = []
        self.connections_opened = 0
        self.received: list[tuple[int, float, dict]] = []  # (connection number, seconds since open, request)
        self.tickers: dict[str, dict] = {}  # per product; SAMPLE_TICKER for the others
        self.stats: dict[str, dict] = {}  # per product; SAMPLE_STATS for the others
        self.candle_start_s: int | None = None  # the pair's first candle (listing time)
        self.empty_every = 7  # every 7th interval has no trade: Coinbase omits it
        self._skip_sequence: tuple[int, str | None] = (0, None)
        self._skip_heartbeats = 0
        self._next_id = 995_000_000
        self._lock = threading.Lock()

    def open_connections(self) -> list:
        return [link.conn for link in self.connections]

    # --- websocket -----------------------------------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        self.connections_opened += 1
        link = Connection(conn, self.connections_opened)
        self.connections.append(link)
        opened = time.monotonic()
        ticker = asyncio.create_task(self._heartbeats(link))
        try:
            while True:
                try:
                    timeout = None if link.products else opened + self.subscribe_deadline_s - time.monotonic()
                    async with asyncio.timeout(timeout):
                        message = await conn.recv()
                except TimeoutError:
                    return  # no subscription in time: Coinbase closes the connection
                request = json.loads(message)
                self.received.append((link.number, time.monotonic() - opened, request))
                await self._on_request(link, request)
        except Exception:  # noqa: BLE001 - a dropped client is normal here
            pass
        finally:
            ticker.cancel()
            self.connections.remove(link)
            with contextlib.suppress(Exception):
                await conn.close()

    async def _on_request(self, link: Connection, request: dict) -> None:
        kind, channel = request.get("type"), request.get("channel")
        products = request.get("product_ids") or []
        if channel == "heartbeats":
            link.heartbeats = kind == "subscribe"
        elif channel == "market_trades" and kind == "subscribe":
            new = [product for product in products if product not in link.products]
            link.products |= set(products)
        elif channel == "market_trades" and kind == "unsubscribe":
            link.products -= set(products)
        else:
            await self._send(link, {"type": "error", "message": "failure to subscribe"})
            return
        await self._send(link, self._subscriptions(link))
        if channel == "market_trades" and kind == "subscribe" and new:
            with self._lock:
                of_new = [t for t in self.trades if t.product in new]
                latest = of_new[len(of_new) - self.snapshot_size :] if self.snapshot_size else []
            rows = [trade.ws_row() for trade in reversed(latest)]  # newest first
            await self._send(link, self._envelope("market_trades", [{"type": "snapshot", "trades": rows}]))

    async def _heartbeats(self, link: Connection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if not link.heartbeats:
                continue
            link.heartbeat_counter += 1 + self._skip_heartbeats
            self._skip_heartbeats = 0
            now = datetime.now(UTC)
            event = {
                "current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " +0000 UTC m=+41691.26",
                "heartbeat_counter": link.heartbeat_counter,
            }
            with contextlib.suppress(ConnectionClosed):
                await self._send(link, self._envelope("heartbeats", [event]))

    def _envelope(self, channel: str, events: list) -> dict:
        return {"channel": channel, "client_id": "", "timestamp": _now_nanos(), "events": events}

    async def _send(self, link: Connection, message: dict) -> None:
        if "channel" in message:
            count, channel = self._skip_sequence
            if count and channel in (None, message["channel"]):
                link.sequence += count
                self._skip_sequence = (0, None)
            message = {**message, "sequence_num": link.sequence}
            link.sequence += 1
        await link.conn.send(json.dumps(message))

    def close_channel(self, product: str) -> None:
        """Coinbase ends a product's market_trades subscription by itself (as it does to an idle channel) and
        lists what is left; the connection and its heartbeats go on."""

        async def close():
            for link in list(self.connections):
                if product in link.products:
                    link.products.discard(product)
                    with contextlib.suppress(ConnectionClosed):
                        await self._send(link, self._subscriptions(link))

        self._call(close())

    def _subscriptions(self, link: Connection) -> dict:
        """Every subscription of the connection, as Coinbase lists them after each change."""
        subscriptions = {"heartbeats": ["heartbeats"]} if link.heartbeats else {}
        if link.products:
            subscriptions["market_trades"] = sorted(link.products)
        return self._envelope("subscriptions", [{"subscriptions": subscriptions}])

    def subscribed(self, product: str) -> int:
        """How many open connections are subscribed to this product."""
        return sum(product in link.products for link in list(self.connections))

    def publish(
        self,
        product: str,
        price: str,
        size: str = "0.50000000",
        side: str = "BUY",
        time_us: int | None = None,
        trade_id: int | None = None,
        deliver: bool = True,
    ) -> PublishedTrade:
        """A trade happens: kept for /trades and, if `deliver`, sent to every subscribed connection."""
        with self._lock:
            if trade_id is None:
                trade_id = self._next_id
                self._next_id += 1
            trade = PublishedTrade(product, trade_id, price, size, side, time_us or time.time_ns() // 1000)
            self.trades.append(trade)
        if deliver:
            self._deliver([trade])
        return trade

    def _deliver(self, trades: list[PublishedTrade]) -> None:
        async def send():
            for link in list(self.connections):
                rows = [t.ws_row() for t in trades if t.product in link.products]
                if rows:
                    with contextlib.suppress(ConnectionClosed):  # a client that just left misses it
                        await self._send(
                            link, self._envelope("market_trades", [{"type": "update", "trades": rows}])
                        )

        self._call(send())

    def send_raw(self, text: str, product: str | None = None, numbered: bool = True) -> None:
        """Send a frame as is to every connection (subscribed to `product`, if given). `numbered`: it takes a
        sequence number, as any message Coinbase sends (a frame the client cannot read then leaves a jump)."""

        async def send():
            for link in list(self.connections):
                if product is None or product in link.products:
                    link.sequence += numbered
                    with contextlib.suppress(ConnectionClosed):
                        await link.conn.send(text)

        self._call(send())

    def skip_sequence(self, count: int = 1, channel: str | None = None) -> None:
        """The next message (of `channel`, if given) comes `count` sequence numbers later: messages were lost."""

        async def arm():  # on the server's loop: set from here, it could land between a send's read and reset
            self._skip_sequence = (count, channel)

        self._call(arm())

    def skip_heartbeats(self, count: int = 1) -> None:
        """The next heartbeat's counter jumps by `count` + 1: heartbeats were lost."""

        async def arm():  # as in skip_sequence
            self._skip_heartbeats = count

        self._call(arm())

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        url = urlparse(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        parts = [part for part in url.path.split("/") if part]
        if len(parts) == 3 and parts[0] == "products":
            product, what = parts[1], parts[2]
            if what == "trades":
                return self._trades(product, query)
            if what == "candles":
                return self._candles(product, query)
            if what == "ticker":
                return 200, {}, json.dumps(self.tickers.get(product, SAMPLE_TICKER))
            if what == "stats":
                return 200, {}, json.dumps(self.stats.get(product, SAMPLE_STATS))
        return 404, {}, json.dumps({"message": "NotFound"})

    def _trades(self, product: str, query: dict) -> tuple[int, dict, str]:
        """Newest first. `before`: the page just newer than that id; `after`: the page just older."""
        limit = int(query.get("limit", 1000))
        if not 1 <= limit <= 1000:
            return 400, {}, json.dumps({"message": "limit must be between 1 and 1000"})
        with self._lock:
            trades = sorted((t for t in self.trades if t.product == product), key=lambda t: t.id)
        if "before" in query:
            page = [t for t in trades if t.id > int(query["before"])][:limit]
        elif "after" in query:
            page = [t for t in trades if t.id < int(query["after"])][-limit:]
        else:
            page = trades[-limit:]
        page.reverse()
        headers = {"CB-BEFORE": str(page[0].id), "CB-AFTER": str(page[-1].id)} if page else {}
        return 200, headers, json.dumps([t.rest_row() for t in page])

    def _candles(self, product: str, query: dict) -> tuple[int, dict, str]:
        granularity = int(query.get("granularity", 0))
        if granularity not in (60, 300, 900, 3600, 21600, 86400):
            return 400, {}, json.dumps({"message": "Unsupported granularity"})
        now = int(time.time())
        start = _seconds(query.get("start")) if "start" in query else now - 300 * granularity
        end = _seconds(query.get("end")) if "end" in query else now
        first = -(-start // granularity) * granularity
        opens = range(first, min(end, now) + 1, granularity)
        if len(opens) > 300:
            message = "granularity too small for the requested time range. Count of aggregations requested exceeds 300"
            return 400, {}, json.dumps({"message": message})
        listed = self.candle_start_s if self.candle_start_s is not None else now - 400 * 86400
        rows = [
            synthetic_candle(product, t)
            for t in opens
            if t >= listed and (t // granularity) % self.empty_every
        ]
        return 200, {}, "[" + ",".join(rows[::-1]) + "]"  # newest first


SAMPLE_TICKER = {
    "ask": "68901.01",
    "bid": "68900.99",
    "volume": "12045.91233604",
    "trade_id": 995098700,
    "price": "68901.00",
    "size": "0.00150000",
    "time": "2026-04-07T14:30:02.789012Z",
    "rfq_volume": "19.420744",
}
SAMPLE_STATS = {
    "open": "67450.10",
    "high": "69320.00",
    "low": "67001.37",
    "last": "68901.00",
    "volume": "12045.91233604",
    "volume_30day": "312456.12345678",
}


def synthetic_candle(product: str, open_time: int) -> str:
    """A deterministic candle as Coinbase writes it: [time, low, high, open, close, volume], JSON numbers."""
    values = candle_values(product, open_time)
    return (
        "["
        + ",".join([str(open_time), *(str(values[k]) for k in ("low", "high", "open", "close", "volume"))])
        + "]"
    )


def candle_values(product: str, open_time: int) -> dict[str, Decimal]:
    """The exact values synthetic_candle writes, for tests to compare with."""
    base = Decimal(60000 + (open_time // 60) % 997) + Decimal(len(product)) / 100
    return {
        "open": base,
        "high": base + Decimal("12.34"),
        "low": base - Decimal("5.67"),
        "close": base + Decimal("1.015"),
        "volume": Decimal("18.49436608"),
    }


def _seconds(text: str) -> int:
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _now_nanos() -> str:
    nanos = time.time_ns()
    stamp = datetime.fromtimestamp(nanos // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos % 1_000_000_000:09d}Z"
