"""A local Binance spot: websocket streams and the REST API v3, speaking the documented shapes (Binance's public
spot API documentation).

Runs in its own thread and event loop; tests drive it with plain method calls. Every published trade is kept, so
/historicalTrades serves what a client missed while it was disconnected. Like Binance it enforces what a client
must respect, and records every breach for tests to assert none happened: at most 5 messages a second on a
connection (more closes it), no request before a 429's or a 418's Retry-After has passed.
"""

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from tests.replay.channels import ChannelReplay
from tests.replay.server import HttpScript

MESSAGES_PER_S = 5
FIRST_TRADE_ID = 5_000_000_000  # beyond 2^32, as BTCUSDT's ids are
WEIGHTS = {"historicalTrades": 25, "trades": 25, "aggTrades": 4, "klines": 2, "ticker/24hr": 2}
INTERVALS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400}
INTERVALS |= {"6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400}


@dataclass
class PublishedTrade:
    symbol: str  # BTCUSDT
    id: int
    price: str
    qty: str
    time_ms: int
    buyer_is_maker: bool

    def event(self, with_order_ids: bool = False) -> dict:
        event = {"e": "trade", "E": self.time_ms + 1, "s": self.symbol, "t": self.id, "p": self.price}
        event |= {"q": self.qty, "T": self.time_ms, "m": self.buyer_is_maker, "M": True}
        if with_order_ids:  # captures before 2024-06 also carry the buyer's and seller's order ids
            event |= {"b": 88, "a": 50}
        return event

    @property
    def stream(self) -> str:
        return f"{self.symbol.lower()}@trade"

    def rest_row(self) -> dict:
        quote_qty = str(Decimal(self.price) * Decimal(self.qty))
        return {
            "id": self.id,
            "price": self.price,
            "qty": self.qty,
            "quoteQty": quote_qty,
            "time": self.time_ms,
            "isBuyerMaker": self.buyer_is_maker,
            "isBestMatch": True,
        }

    def aggregate_row(self) -> dict:  # each replayed trade is its own aggregate
        return {"a": self.id, "p": self.price, "q": self.qty, "f": self.id, "l": self.id, "T": self.time_ms}


class BinanceHttpScript(HttpScript):
    """Sees every request first (scripted answers included): one sent before a 429's or a 418's Retry-After has
    passed is recorded in `early_requests`."""

    def __init__(self):
        super().__init__()
        self.early_requests: list[str] = []
        self.back_off_until_s = 0.0
        self._lock = threading.Lock()

    def next_answer(self, path: str):
        with self._lock:
            if time.time() < self.back_off_until_s:
                self.early_requests.append(path)
            answer = super().next_answer(path)
            if answer is not None and answer[0] in (418, 429) and "Retry-After" in answer[1]:
                until_s = time.time() + float(answer[1]["Retry-After"])
                self.back_off_until_s = max(self.back_off_until_s, until_s)
        return answer


class BinanceReplay(ChannelReplay):
    rest_path = "/api/v3"

    def __init__(self, symbols=("BTCUSDT", "ETHUSDT", "ETHBTC", "BTCEUR")):
        super().__init__(first_trade_id=FIRST_TRADE_ID)
        self._next_ids: dict[
            str, int
        ] = {}  # each symbol counts its own trade ids, one by one, as Binance does
        self.http = BinanceHttpScript()
        self.symbols = set(symbols)
        self.received: list[tuple[int, dict]] = []  # (connection number, request)
        self.rate_breaches = 0  # connections closed for sending more than 5 messages in a second
        self.lifetime_cuts = 0  # connections closed for outliving max_lifetime_s (Binance: 24 h)
        self.max_lifetime_s: float | None = None
        self.weight_used_elsewhere = 0  # other programs on the IP: added to X-MBX-USED-WEIGHT-1M
        self.candle_start_s: int | None = None
        self.ticker = dict(SAMPLE_TICKER)
        self._weight_minute, self._weight_used = 0, 0

    @property
    def ws_url(self) -> str:
        return f"{super().ws_url}/stream"

    @property
    def early_requests(self) -> list[str]:
        return self.http.early_requests

    # --- websocket -----------------------------------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        number = self._connected(conn)
        lifetime = asyncio.create_task(self._cut_at_lifetime(conn))
        sent_s: list[float] = []
        try:
            async for message in conn:
                now = time.monotonic()
                sent_s = [s for s in sent_s if s > now - 1] + [now]
                if len(sent_s) > MESSAGES_PER_S:  # Binance disconnects a client that sends too much
                    self.rate_breaches += 1
                    await conn.close(1008, "Too many requests")
                    break
                await self._request(conn, number, message)
        except Exception:  # noqa: BLE001 - a dropped client is normal here
            pass
        finally:
            lifetime.cancel()
            self._disconnected(conn)

    async def _request(self, conn, number: int, message) -> None:
        try:
            request = json.loads(message)
            method, params, request_id = request["method"], request.get("params", []), request["id"]
        except (ValueError, KeyError, TypeError):
            await conn.send(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
            return
        self.received.append((number, request))
        valid = isinstance(params, list) and all(
            isinstance(p, str) and p.endswith("@trade") and p == p.lower() for p in params
        )
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS") or not valid:
            error = {"code": 2, "msg": f"Invalid request: {method} {params!r}"}
            await conn.send(json.dumps({"error": error, "id": request_id}))
            return
        if method == "LIST_SUBSCRIPTIONS":
            await conn.send(json.dumps({"result": sorted(self.subscriptions[conn]), "id": request_id}))
            return
        await self._acks_released.wait()
        if method == "SUBSCRIBE":
            self.subscriptions[conn].update(params)
        else:
            self.subscriptions[conn].difference_update(params)
        await conn.send(json.dumps({"result": None, "id": request_id}))

    async def _cut_at_lifetime(self, conn) -> None:
        while self.max_lifetime_s is None:
            await asyncio.sleep(0.05)
        await asyncio.sleep(self.max_lifetime_s)
        self.lifetime_cuts += 1
        await conn.close(1000, "connection lifetime reached")

    def publish(
        self,
        symbol: str,
        price: str,
        qty: str = "0.50000000",
        buyer_is_maker: bool = False,
        time_ms: int | None = None,
        trade_id: int | None = None,
        deliver: bool = True,
    ) -> PublishedTrade:
        """A trade happens: kept for REST and, if `deliver`, sent to every connection subscribed to it."""
        time_ms = time_ms or time.time_ns() // 1_000_000
        if trade_id is None:
            trade_id = self._next_ids.get(symbol, FIRST_TRADE_ID)
        self._next_ids[symbol] = max(self._next_ids.get(symbol, FIRST_TRADE_ID), trade_id + 1)
        trade = self._keep(
            lambda id_: PublishedTrade(symbol, id_, price, qty, time_ms, buyer_is_maker), trade_id
        )
        if deliver:
            self.send_event(trade.event(), trade.stream)
        return trade

    def send_event(self, event: dict, stream: str | None = None, wrapped: bool = True) -> None:
        """An event to every connection (subscribed to `stream`, if given), wrapped as a combined stream's."""
        text = json.dumps({"stream": stream or "", "data": event} if wrapped else event)
        self.send_raw(text, stream)

    def server_shutdown(self, wrapped: bool = False) -> None:
        self.send_event({"e": "serverShutdown", "E": time.time_ns() // 1_000_000}, wrapped=wrapped)

    def ping_clients(self, timeout: float = 5) -> int:
        """A protocol ping to every connection, as Binance sends every 20 s: how many answered with a pong."""

        async def ping():
            answered = 0
            for conn in list(self.connections):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(timeout):
                        await (await conn.ping(b"binance-ping"))
                    answered += 1
            return answered

        return self._call(ping(), timeout + 5)

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _add_weight(self, weight: int) -> int:
        with self._lock:
            minute = int(time.time() // 60)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += weight
            return self._weight_used + self.weight_used_elsewhere

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        status, headers, body = self._endpoint(raw_path)
        weight = WEIGHTS.get(urlparse(raw_path).path.removeprefix("/api/v3/"), 1)
        return status, {"X-MBX-USED-WEIGHT-1M": str(self._add_weight(weight)), **headers}, body

    def _endpoint(self, raw_path: str) -> tuple[int, dict, str]:
        url = urlparse(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        endpoint = url.path.removeprefix("/api/v3/")
        if endpoint not in WEIGHTS:
            return 404, {}, json.dumps({"code": -1000, "msg": "Not found"})
        if query.get("symbol") not in self.symbols:
            return 400, {}, json.dumps({"code": -1121, "msg": "Invalid symbol."})
        limit = int(query.get("limit", 500))
        if not 1 <= limit <= 1000:
            return (
                400,
                {},
                json.dumps({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}),
            )
        symbol = query["symbol"]
        if endpoint == "ticker/24hr":
            return 200, {}, json.dumps(self.ticker | {"symbol": symbol})
        if endpoint == "klines":
            if query.get("interval") not in INTERVALS:
                return 400, {}, json.dumps({"code": -1120, "msg": "Invalid interval."})
            return 200, {}, json.dumps(self._klines(symbol, INTERVALS[query["interval"]], query, limit))
        with self._lock:
            trades = sorted((t for t in self.trades if t.symbol == symbol), key=lambda t: t.id)
        if endpoint == "aggTrades":
            start_ms = int(query.get("startTime", 0))
            return 200, {}, json.dumps([t.aggregate_row() for t in trades if t.time_ms >= start_ms][:limit])
        if endpoint == "historicalTrades" and "fromId" in query:
            from_id = int(query["fromId"])
            return 200, {}, json.dumps([t.rest_row() for t in trades if t.id >= from_id][:limit])
        return 200, {}, json.dumps([t.rest_row() for t in trades[-limit:]])  # the most recent, ascending

    def _klines(self, symbol: str, step: int, query: dict, limit: int) -> list[list]:
        now = int(time.time())
        first = self.candle_start_s if self.candle_start_s is not None else now - 30 * 86400
        start = int(query.get("startTime", (now - limit * step) * 1000)) // 1000
        end = int(query.get("endTime", now * 1000)) // 1000
        start = max(start + -start % step, first + -first % step)
        # up to the candle still open now, as Binance answers
        return [kline_row(symbol, o, step) for o in range(start, min(end, now) + 1, step)][:limit]


def kline_row(symbol: str, open_s: int, step: int) -> list:
    """A deterministic kline in Binance's row shape, so tests can recompute what must be stored."""
    base = Decimal(20000 + (open_s // step) % 89) + Decimal(len(symbol)) / 100
    values = [
        base,
        base + Decimal("12.34"),
        base - Decimal("5.67"),
        base + Decimal("1.01"),
        Decimal("3.25000000"),
    ]
    closes_ms = (open_s + step) * 1000 - 1
    return [open_s * 1000, *map(str, values), closes_ms, "65000.00", 42, "1.50000000", "30000.00", "0"]


# A 24 h rolling ticker in Binance's shape: openPrice is the price 24 h ago, priceChangePercent is rounded.
SAMPLE_TICKER = {
    "symbol": "BTCUSDT",
    "priceChange": "-435.00000000",
    "priceChangePercent": "-0.560",
    "weightedAvgPrice": "78381.12345678",
    "prevClosePrice": "77699.99000000",
    "lastPrice": "77265.00000000",
    "lastQty": "0.00100000",
    "bidPrice": "77264.99000000",
    "bidQty": "1.20000000",
    "askPrice": "77265.00000000",
    "askQty": "0.30000000",
    "openPrice": "77700.00000000",
    "highPrice": "79588.00000000",
    "lowPrice": "77191.00000000",
    "volume": "10878.36100000",
    "quoteVolume": "852649012.12000000",
    "openTime": 1789369409000,
    "closeTime": 1789455809000,
    "firstId": 5000000000,
    "lastId": 5001000000,
    "count": 1000001,
}
