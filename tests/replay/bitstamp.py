"""A local Bitstamp: websocket v2 and HTTP API v2, speaking the documented shapes (Bitstamp's public API documentation).

Runs in its own thread and event loop; tests drive it with plain method calls. Every published trade is kept,
so /transactions/ serves what a client missed while it was disconnected.
"""

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed

from tests.replay.server import ReplayServer


@dataclass
class PublishedTrade:
    symbol: str
    id: int
    price: str
    amount: str
    type: int
    microtimestamp: int

    def ws_event(self, numbers_as_strings: bool = False) -> str:
        data = {
            "id": self.id,
            "timestamp": str(self.microtimestamp // 1_000_000),
            "amount": self.amount if numbers_as_strings else float(self.amount),
            "amount_str": self.amount,
            "price": self.price if numbers_as_strings else float(self.price),
            "price_str": self.price,
            "type": self.type,
            "microtimestamp": str(self.microtimestamp),
            "buy_order_id": 1443875737346049,
            "sell_order_id": 1443875731320832,
        }
        return json.dumps({"data": data, "channel": f"live_trades_{self.symbol}", "event": "trade"})

    def rest_row(self) -> dict:
        return {
            "date": str(self.microtimestamp // 1_000_000),
            "tid": str(self.id),
            "price": self.price,
            "amount": self.amount,
            "type": str(self.type),
        }


class BitstampReplay(ReplayServer):
    rest_path = "/api/v2"

    def __init__(self):
        super().__init__()
        self.trades: list[PublishedTrade] = []
        self.connections: list = []
        self.subscriptions: dict[object, set[str]] = {}
        self.received: list[dict] = []
        self.connection_numbers: dict[object, int] = {}  # 1 for the first connection ever, then 2, ...
        self.subscribe_log: list[tuple[int, str, str]] = []  # (connection number, event, channel)
        self.extra_transaction_rows: list[dict] = []  # served with every /transactions/ answer
        self.candle_overrides: dict[
            int, dict
        ] = {}  # open time -> the row served instead of the synthetic one
        self.candle_start_s: int | None = None  # the pair's first candle (listing time)
        self.candle_end_s: int | None = None  # no candles after this (else: up to now)
        self.tickers: dict[str, dict] = {"btcusd": SAMPLE_TICKER, "ethusd": SAMPLE_TICKER}
        self.currencies: object = SAMPLE_CURRENCIES
        self._next_id = 300_000_000
        self._lock = threading.Lock()

    # --- life --------------------------------------------------------------------------------------------

    def open_connections(self) -> list:
        return self.connections

    async def _start(self) -> None:
        self._acks_released = asyncio.Event()
        self._acks_released.set()
        await super()._start()

    # --- websocket -----------------------------------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        self.connections.append(conn)
        self.subscriptions[conn] = set()
        self.connection_numbers[conn] = len(self.connection_numbers) + 1
        try:
            async for message in conn:
                request = json.loads(message)
                self.received.append(request)
                event = request.get("event")
                channel = (request.get("data") or {}).get("channel", "")
                if event in ("bts:subscribe", "bts:unsubscribe"):
                    self.subscribe_log.append((self.connection_numbers[conn], event, channel))
                if event == "bts:subscribe":
                    await self._acks_released.wait()
                    self.subscriptions[conn].add(channel)
                    await conn.send(
                        json.dumps({"event": "bts:subscription_succeeded", "channel": channel, "data": {}})
                    )
                elif event == "bts:unsubscribe":
                    self.subscriptions[conn].discard(channel)
                    await conn.send(
                        json.dumps({"event": "bts:unsubscription_succeeded", "channel": channel, "data": {}})
                    )
                elif event == "bts:heartbeat":
                    await conn.send(
                        json.dumps({"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}})
                    )
        except Exception:  # noqa: BLE001 - a dropped client is normal here
            pass
        finally:
            self.connections.remove(conn)
            self.subscriptions.pop(conn, None)

    @staticmethod
    def symbol(pair: str) -> str:
        return pair.replace("-", "").lower()

    def subscribed(self, symbol: str) -> int:
        """How many open connections are subscribed to this pair."""
        return sum(f"live_trades_{symbol}" in channels for channels in list(self.subscriptions.values()))

    def wait_subscribed(self, symbol: str, connections: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.subscribed(symbol) < connections:
            if time.monotonic() > deadline:
                raise AssertionError(f"no subscription to {symbol} within {timeout} s")
            time.sleep(0.02)

    def publish(
        self,
        symbol: str,
        price: str,
        amount: str = "0.50000000",
        side: int = 0,
        microtimestamp: int | None = None,
        trade_id: int | None = None,
        numbers_as_strings=False,
        deliver: bool = True,
    ) -> PublishedTrade:
        """A trade happens: kept for /transactions/ and, if `deliver`, sent to every subscribed connection."""
        with self._lock:
            if trade_id is None:
                trade_id = self._next_id
                self._next_id += 1
            trade = PublishedTrade(
                symbol, trade_id, price, amount, side, microtimestamp or time.time_ns() // 1000
            )
            self.trades.append(trade)
        if deliver:
            self.send_raw(trade.ws_event(numbers_as_strings), symbol)
        return trade

    def send_raw(self, text: str, symbol: str | None = None) -> None:
        """Send a message as is to every connection (subscribed to `symbol`, if given)."""

        async def send():
            for conn, channels in list(self.subscriptions.items()):
                if symbol is None or f"live_trades_{symbol}" in channels:
                    with contextlib.suppress(
                        ConnectionClosed
                    ):  # a client that just left misses it, as on Bitstamp
                        await conn.send(text)

        self._call(send())

    def connection_number(self, index: int = -1) -> int:
        """The number of an open connection (the newest by default)."""
        return self.connection_numbers[self.connections[index]]

    def subscribed_on(self, number: int) -> set[str]:
        """The channels connection `number` is subscribed to now (empty once it is closed)."""
        for conn, channels in list(self.subscriptions.items()):
            if self.connection_numbers.get(conn) == number:
                return set(channels)
        return set()

    def hold_acks(self) -> None:
        """Subscribes are received and logged, but neither acknowledged nor active until release_acks()."""
        self._loop.call_soon_threadsafe(self._acks_released.clear)

    def release_acks(self) -> None:
        self._loop.call_soon_threadsafe(self._acks_released.set)

    def request_reconnect(self) -> None:
        self.send_raw(json.dumps({"event": "bts:request_reconnect", "channel": "", "data": ""}))

    def refuse_connections(self) -> None:
        """The websocket server goes away: open connections drop and new ones are refused."""
        self._call(self._shutdown())

    def freeze(self) -> None:
        """Keep connections open but stop reading them: no pong, no acks, no trades (a dead link)."""

        async def freeze():
            for conn in list(self.connections):
                conn.transport.pause_reading()

        self._call(freeze())

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        url = urlparse(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        parts = [part for part in url.path.split("/") if part][2:]  # drop "api", "v2"
        if len(parts) == 2 and parts[0] == "transactions":
            return 200, {}, json.dumps(self._transactions(parts[1], query.get("time", "hour")))
        if len(parts) == 2 and parts[0] == "ohlc":
            return 200, {}, json.dumps(self._ohlc(parts[1], query))
        if len(parts) == 2 and parts[0] == "ticker" and parts[1] in self.tickers:
            return 200, {}, json.dumps(self.tickers[parts[1]])
        if parts == ["currencies"]:
            return 200, {}, json.dumps(self.currencies)
        return 404, {}, json.dumps({"status": "error", "reason": "Not found"})

    def _transactions(self, symbol: str, window: str) -> list[dict]:
        span = {"minute": 60, "hour": 3600, "day": 86400}[window]
        since_us = (time.time() - span) * 1_000_000
        with self._lock:
            rows = [t.rest_row() for t in self.trades if t.symbol == symbol and t.microtimestamp >= since_us]
        return list(reversed(rows)) + self.extra_transaction_rows  # newest first, as Bitstamp answers

    def _ohlc(self, symbol: str, query: dict) -> dict:
        step = int(query["step"])
        limit = int(query["limit"])
        if not 1 <= limit <= 1000:
            return {"code": "400", "errors": [{"message": "Must be between 1 and 1000."}]}
        now = int(time.time())
        first = self.candle_start_s if self.candle_start_s is not None else now - 30 * 86400
        last_open = min(self.candle_end_s if self.candle_end_s is not None else now, now) // step * step
        if query.get("exclude_current_candle") == "true" and last_open + step > now:
            last_open -= step
        # the window [start, start + limit * step): empty before the pair was listed, though later ones are not
        start = int(query.get("start", last_open - (limit - 1) * step))
        start += -start % step
        rows = []
        for open_time in range(
            max(start, first + -first % step), min(last_open + 1, start + limit * step), step
        ):
            rows.append(self.candle_overrides.get(open_time) or synthetic_candle(symbol, open_time))
        return {"data": {"pair": symbol.upper(), "ohlc": rows}}


# The figures of a real BTC/USD ticker (2026-09): `open` is the UTC day's first price, `open_24` the price
# 24 h before, and percent_change_24 = (last - open_24) / open_24, rounded: -0.56, where `open` would say -1.24.
SAMPLE_TICKER = {
    "timestamp": "1789455809",
    "open": "78237",
    "high": "79588",
    "low": "77191",
    "last": "77265",
    "volume": "108.78361",
    "vwap": "78381",
    "bid": "77239",
    "ask": "77240",
    "side": "1",
    "open_24": "77700",
    "percent_change_24": "-0.56",
    "market_type": "SPOT",
}
SAMPLE_CURRENCIES = [
    {
        "name": "Bitcoin",
        "currency": "BTC",
        "type": "crypto",
        "symbol": "\u20bf",
        "decimals": 8,
        "logo": "https://assets.example/btc.svg",
        "available_supply": "19500000.00000000",
        "deposit": "Enabled",
        "withdrawal": "Enabled",
    },
    {
        "name": "US dollar",
        "currency": "USD",
        "type": "fiat",
        "symbol": "$",
        "decimals": 2,
        "available_supply": "",
    },
]


def synthetic_candle(symbol: str, open_time: int) -> dict:
    """A deterministic candle, so tests can recompute what must be stored."""
    base = Decimal(1000 + (open_time // 3600) % 97) + Decimal(len(symbol)) / 100
    return {
        "timestamp": str(open_time),
        "open": str(base),
        "high": str(base + Decimal("12.34")),
        "low": str(base - Decimal("5.67")),
        "close": str(base + Decimal("1.01")),
        "volume": "18.49436608",
    }
