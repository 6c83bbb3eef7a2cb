"""A local Kraken: WebSocket v2 and the public REST API, speaking the documented shapes.

Runs in its own thread and event loop; tests drive it with plain method calls. Every published trade is kept, with
a per-pair sequential trade id and a nanosecond time (Kraken's own resolution): the websocket shows it to the
microsecond, REST `Trades` as a float of seconds and pages it with the nanosecond `since`/`last` cursor, so what a
client missed while disconnected can be recovered exactly as from Kraken.
"""

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed

from tests.replay.server import ReplayServer

NS = 1_000_000_000
# REST keys Kraken answers under, for the names it is asked with (the rest answer under the name asked)
REST_KEYS = {"XBTUSD": "XXBTZUSD", "XBTEUR": "XXBTZEUR", "ETHUSD": "XETHZUSD", "ETHEUR": "XETHZEUR"}
ALIASES = {"BTC": "XBT", "DOGE": "XDG"}
CONNECTION_ID = 13834774380200032777  # beyond 2^63, as real ones are
SNAPSHOT_SIZE = 50


def rest_name(pair: str) -> str:
    """BTC-USD -> XBTUSD, the name a client asks REST with."""
    base, quote = pair.split("-")
    return ALIASES.get(base, base) + ALIASES.get(quote, quote)


def raw_numbers(doc: dict) -> str:
    """JSON with the values wrapped as ("#", text) written as bare numbers: Kraken's engine-precision numbers."""

    def unwrap(value):
        if isinstance(value, tuple):
            return f"#{value[1]}#"
        if isinstance(value, dict):
            return {key: unwrap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [unwrap(item) for item in value]
        return value

    return json.dumps(unwrap(doc)).replace('"#', "").replace('#"', "")


@dataclass
class PublishedTrade:
    symbol: str  # BTC/USD
    trade_id: int
    price: str
    qty: str
    side: str  # buy | sell (the taker's)
    time_ns: int
    ord_type: str = "limit"

    def ws_item(self) -> dict:
        moment = datetime.fromtimestamp(self.time_ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return {
            "symbol": self.symbol,
            "side": self.side,
            "price": ("#", self.price),
            "qty": ("#", self.qty),
            "ord_type": self.ord_type,
            "trade_id": self.trade_id,
            "timestamp": f"{moment}.{self.time_ns % NS // 1000:06d}Z",
        }

    def rest_row(self) -> list:
        seconds = ("#", repr(self.time_ns / NS))  # a float64 of the seconds, as Kraken writes it
        return [self.price, self.qty, seconds, self.side[0], self.ord_type[0], "", self.trade_id]

    @property
    def second(self) -> int:
        return self.time_ns // NS


class KrakenReplay(ReplayServer):
    def __init__(self):
        super().__init__()
        self.trades: list[PublishedTrade] = []
        self.connections: list = []
        self.subscriptions: dict[object, set[str]] = {}  # connection -> symbols (BTC/USD)
        self.received: list[dict] = []
        self.heartbeat_s: float | None = 1.0  # Kraken sends one a second to subscribed connections
        self.candle_start_s: int | None = None  # the pair's first candle (listing time)
        self.tickers: dict[str, dict] = {"XBTUSD": SAMPLE_TICKER, "ETHEUR": SAMPLE_TICKER}
        self._next_ids: dict[str, int] = {}
        self._lock = threading.Lock()

    rest_path = "/0/public"

    @property
    def ws_url(self) -> str:
        return f"{super().ws_url}/v2"

    def open_connections(self) -> list:
        return self.connections

    async def _start(self) -> None:
        self._heartbeats = asyncio.create_task(self._send_heartbeats())
        await super()._start()

    async def _shutdown(self) -> None:
        self._heartbeats.cancel()
        await super()._shutdown()

    # --- websocket -----------------------------------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        self.connections.append(conn)
        self.subscriptions[conn] = set()
        status = {"api_version": "v2", "connection_id": CONNECTION_ID, "system": "online", "version": "2.0.0"}
        try:
            await conn.send(json.dumps({"channel": "status", "type": "update", "data": [status]}))
            async for message in conn:
                request = json.loads(message)
                self.received.append(request)
                await self._answer_ws(conn, request)
        except Exception:  # noqa: BLE001 - a dropped client is normal here
            pass
        finally:
            self.connections.remove(conn)
            self.subscriptions.pop(conn, None)

    async def _answer_ws(self, conn, request: dict) -> None:
        method, req_id = request.get("method"), request.get("req_id")
        stamps = {"time_in": "2026-11-21T10:00:00.000000Z", "time_out": "2026-11-21T10:00:00.000050Z"}
        if method == "ping":
            await conn.send(json.dumps({"method": "pong", "req_id": req_id, **stamps}))
            return
        params = request.get("params") or {}
        for symbol in params.get("symbol", []):
            result = {"channel": params.get("channel"), "symbol": symbol}
            if method == "subscribe":
                self.subscriptions[conn].add(symbol)
                result["snapshot"] = params.get("snapshot", True)
            else:
                self.subscriptions[conn].discard(symbol)
            ack = {"method": method, "result": result, "success": True, **stamps, "req_id": req_id}
            await conn.send(json.dumps(ack))
            if method == "subscribe" and params.get("snapshot", True):
                with self._lock:
                    recent = [t for t in self.trades if t.symbol == symbol][-SNAPSHOT_SIZE:]
                if recent:
                    await conn.send(self._trade_message(recent, "snapshot"))

    async def _send_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s or 1.0)
            if self.heartbeat_s:
                for conn, symbols in list(self.subscriptions.items()):
                    if symbols:
                        with contextlib.suppress(ConnectionClosed):
                            await conn.send('{"channel":"heartbeat"}')

    @staticmethod
    def _trade_message(trades: list[PublishedTrade], kind: str = "update") -> str:
        return raw_numbers({"channel": "trade", "type": kind, "data": [t.ws_item() for t in trades]})

    @staticmethod
    def symbol(pair: str) -> str:
        """BTC-USD -> BTC/USD, the websocket v2 name."""
        return pair.replace("-", "/")

    def subscribed(self, symbol: str) -> int:
        """How many open connections are subscribed to this pair."""
        return sum(symbol in symbols for symbols in list(self.subscriptions.values()))

    def trade(
        self, symbol: str, price: str, qty: str = "0.50000000", side: str = "buy", time_ns: int | None = None
    ) -> PublishedTrade:
        """A trade happens on the exchange: kept for REST and snapshots, not sent (see publish)."""
        with self._lock:
            trade_id = self._next_ids.get(symbol, 10_218_208)
            self._next_ids[symbol] = trade_id + 1
            trade = PublishedTrade(symbol, trade_id, price, qty, side, time_ns or time.time_ns())
            self.trades.append(trade)
        return trade

    def publish(self, symbol: str, *prices: str, deliver: bool = True, **details) -> list[PublishedTrade]:
        """Trades at these prices, in one message to every subscribed connection (unless not `deliver`)."""
        trades = [self.trade(symbol, price, **details) for price in prices]
        if deliver:
            self.send_raw(self._trade_message(trades), symbol)
        return trades

    def send_raw(self, text: str, symbol: str | None = None) -> None:
        """Send a message as is to every connection (subscribed to `symbol`, if given)."""

        async def send():
            for conn, symbols in list(self.subscriptions.items()):
                if symbol is None or symbol in symbols:
                    with contextlib.suppress(ConnectionClosed):  # a client that just left misses it
                        await conn.send(text)

        self._call(send())

    # --- REST ------------------------------------------------------------------------------------------------

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        url = urlparse(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        endpoint, name = url.path.rsplit("/", 1)[-1], query.get("pair", "")
        key = REST_KEYS.get(name, name)
        if endpoint == "Trades" and name:
            return 200, {}, self._trades(key, name, query.get("since", "0"), int(query.get("count", 1000)))
        if endpoint == "OHLC" and name:
            return 200, {}, json.dumps(self._ohlc(key, int(query["interval"]), int(query.get("since", 0))))
        if endpoint == "Ticker" and name in self.tickers:
            return 200, {}, json.dumps({"error": [], "result": {key: self.tickers[name]}})
        return 200, {}, json.dumps({"error": ["EQuery:Unknown asset pair"]})

    def _trades(self, key: str, name: str, since: str, count: int) -> str:
        """Trades after `since` (seconds, or nanoseconds as `last` gives them), ascending, at most `count`."""
        since_ns = int(Decimal(since) * NS) if "." in since or len(since) <= 12 else int(since)
        with self._lock:
            rows = [t for t in self.trades if rest_name(t.symbol.replace("/", "-")) == name]
        page = [t for t in rows if t.time_ns > since_ns][: min(count, 1000)]
        last = str(page[-1].time_ns if page else since_ns)
        return raw_numbers({"error": [], "result": {key: [t.rest_row() for t in page], "last": last}})

    def _ohlc(self, key: str, minutes: int, since: int) -> dict:
        """The latest 720 rows after `since`, the last one still open (as Kraken always sends it)."""
        step, now = minutes * 60, int(time.time())
        current = now // step * step
        first = max(current - 719 * step, since // step * step + step if since else 0)
        if self.candle_start_s is not None:
            first = max(first, self.candle_start_s + -self.candle_start_s % step)
        rows = [synthetic_row(key, open_s) for open_s in range(first, current + 1, step)]
        return {"error": [], "result": {key: rows, "last": current - step}}


# A real XBT/USD ticker's shape (2025): arrays of strings, index 0 today / 1 the last 24 h
SAMPLE_TICKER = {
    "a": ["106012.40000", "1", "1.000"],
    "b": ["106012.30000", "3", "3.000"],
    "c": ["106012.40000", "0.00047170"],
    "v": ["1024.51716834", "2113.84251766"],
    "p": ["105744.61364", "105512.00915"],
    "t": [31092, 64003],
    "l": ["104771.30000", "104100.00000"],
    "h": ["106400.00000", "106400.00000"],
    "o": "105262.80000",
}


def synthetic_row(key: str, open_s: int) -> list:
    """A deterministic OHLC row, so tests can recompute what must be stored."""
    base = Decimal(2000 + (open_s // 60) % 89) + Decimal(len(key)) / 10
    values = [base, base + Decimal("10.5"), base - Decimal("3.2"), base + Decimal("1.1"), base]
    return [open_s, *(f"{value:.1f}" for value in values), "12.34567890", 42]
