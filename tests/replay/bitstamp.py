"""A local Bitstamp: websocket v2 and HTTP API v2, speaking the documented shapes (Bitstamp's public API documentation).

Runs in its own thread and event loop; tests drive it with plain method calls. Every published trade is kept,
so /transactions/ serves what a client missed while it was disconnected.
"""

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from tests.replay.channels import ChannelReplay


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


class BitstampReplay(ChannelReplay):
    rest_path = "/api/v2"

    def __init__(self):
        super().__init__(first_trade_id=300_000_000)
        self.received: list[dict] = []
        self.subscribe_log: list[tuple[int, str, str]] = []  # (connection number, event, channel)
        self.extra_transaction_rows: list[dict] = []  # served with every /transactions/ answer
        self.candle_overrides: dict[
            int, dict
        ] = {}  # open time -> the row served instead of the synthetic one
        self.candle_start_s: int | None = None  # the pair's first candle (listing time)
        self.candle_end_s: int | None = None  # no candles after this (else: up to now)
        self.tickers: dict[str, dict] = {"btcusd": SAMPLE_TICKER, "ethusd": SAMPLE_TICKER}
        self.currencies: object = SAMPLE_CURRENCIES

    # --- websocket -----------------------------------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        self._connected(conn)
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
            self._disconnected(conn)

    @staticmethod
    def symbol(pair: str) -> str:
        return pair.replace("-", "").lower()

    def channel(self, name: str) -> str:
        return f"live_trades_{name}"

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
        time_us = microtimestamp or time.time_ns() // 1000
        trade = self._keep(lambda id_: PublishedTrade(symbol, id_, price, amount, side, time_us), trade_id)
        if deliver:
            self.send_raw(trade.ws_event(numbers_as_strings), symbol)
        return trade

    def request_reconnect(self) -> None:
        self.send_raw(json.dumps({"event": "bts:request_reconnect", "channel": "", "data": ""}))

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
