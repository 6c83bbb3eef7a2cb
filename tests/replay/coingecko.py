"""A local CoinGecko API v3: market_chart/range, simple/price and coins/markets in the documented shapes.

Prices are a deterministic function of coin, currency and time, written as exact JSON number text, so tests can
recompute what must be stored. Granularity follows CoinGecko's rules for the span asked (2-90 days: hourly, not on
the hour; more than 90 days: daily at 00:00 UTC; within the last day: 5-minutely), the last sample is "now", and
history older than 365 days is refused as the free and Demo plans refuse it. Scripted answers (429 with
Retry-After, 5xx, malformed bodies) come first, as in the Bitstamp replay.
"""

import json
import math
import threading
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from tests.replay.server import ReplayServer

DAY = 86_400
HOURLY_OFFSET_S = 137  # CoinGecko's hourly samples are not on the hour
REACH_S = 365 * DAY
COINS = {
    "bitcoin": {"symbol": "btc", "name": "Bitcoin", "base": Decimal("40000")},
    "ethereum": {"symbol": "eth", "name": "Ethereum", "base": Decimal("2000")},
    "hedera-hashgraph": {"symbol": "hbar", "name": "Hedera", "base": Decimal("0.05")},
}
CURRENCIES = {"usd": Decimal(1), "eur": Decimal("0.9")}


def synthetic_price(coin_id: str, currency: str, at_s: int) -> Decimal:
    """Exact, at most 12 significant digits: what the sample at `at_s` says."""
    base = COINS[coin_id]["base"] * CURRENCIES[currency]
    step = Decimal((at_s // 300) % 997) / 10000  # changes every 5 minutes
    return (base * (1 + step)).quantize(base / Decimal(10**8))


def sample_times(start_s: int, end_s: int, now_s: int) -> list[int]:
    """The sample times CoinGecko gives for [start, end], seconds."""
    span = end_s - start_s
    if span >= 90 * DAY:  # "2-90 days: hourly, above 90: daily": exactly 90 is the edge, read here as daily
        step, offset = DAY, 0
    elif now_s - start_s <= DAY:
        step, offset = 300, 0
    else:
        step, offset = 3600, HOURLY_OFFSET_S
    first = start_s - start_s % step + offset
    times = [t for t in range(first, min(end_s, now_s) + 1, step) if t >= start_s]
    if start_s <= now_s <= end_s and (not times or times[-1] != now_s):
        times.append(now_s)  # the latest price is always the last sample
    return times


class CoinGeckoReplay(ReplayServer):
    """REST only: its websocket server (from ReplayServer) is never used."""

    rest_path = "/api/v3"

    def __init__(self):
        self.headers: list[dict] = []  # the headers of every request, in order
        self.request_times: list[float] = []
        self.listed_from_s: dict[str, int] = {}  # coin id -> its first sample (listing)
        self.now_s = None  # fixed "now" for tests that need one; None: the clock
        self.budget: tuple[int, float] | None = (
            None  # (calls, seconds): more in any window are refused with 429
        )
        self.over_budget = 0  # requests refused for the budget
        self._lock = threading.Lock()
        super().__init__()

    def requests_to(self, fragment: str) -> list[dict]:
        """The query of every request whose path holds `fragment`, in order."""
        found = []
        for raw in self.http.requests:
            url = urlparse(raw)
            if fragment in url.path:
                found.append({key: values[0] for key, values in parse_qs(url.query).items()})
        return found

    def open_connections(self) -> list:
        return []

    async def _serve_ws(self, conn) -> None:
        await conn.close()

    def _seen(self, request) -> None:
        with self._lock:
            self.headers.append(dict(request.headers))
            self.request_times.append(time.monotonic())

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        refused = self._over_budget()
        if refused:
            return refused
        url = urlparse(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        parts = [part for part in url.path.split("/") if part][2:]  # drop "api", "v3"
        if len(parts) == 4 and parts[0] == "coins" and parts[2:] == ["market_chart", "range"]:
            return self._market_chart(parts[1], query)
        if parts == ["simple", "price"]:
            return 200, {}, self._simple_price(query)
        if parts == ["coins", "markets"]:
            return 200, {}, json.dumps(self._markets(query))
        return 404, {}, json.dumps({"error": "Not Found"})

    def _over_budget(self) -> tuple[int, dict, str] | None:
        """CoinGecko counts every call in a sliding minute; over the budget it answers 429 (refused calls count)."""
        if self.budget is None:
            return None
        calls, window_s = self.budget
        with self._lock:
            now = self.request_times[-1]
            inside = [t for t in self.request_times if t > now - window_s]
        if len(inside) <= calls:
            return None
        self.over_budget += 1
        wait = math.ceil(inside[0] + window_s - now)
        body = '{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit."}}'
        return 429, {"Retry-After": str(max(1, wait))}, body

    def _now(self) -> int:
        return int(time.time()) if self.now_s is None else self.now_s

    def _market_chart(self, coin_id: str, query: dict) -> tuple[int, dict, str]:
        currency = query.get("vs_currency", "")
        if coin_id not in COINS:
            return 404, {}, json.dumps({"error": "coin not found"})
        if currency not in CURRENCIES:
            return 400, {}, json.dumps({"error": "invalid vs_currency"})
        now = self._now()
        start, end = int(query["from"]), int(query["to"])
        if start < now - REACH_S:
            error = {
                "status": {
                    "error_code": 10012,
                    "error_message": "Your request exceeds the allowed time range. Public API users are limited "
                    "to querying historical data within the past 365 days.",
                }
            }
            return 401, {}, json.dumps({"error": error})
        listed = self.listed_from_s.get(coin_id, 0)
        times = [t for t in sample_times(start, end, now) if t >= listed]
        prices = ",".join(f"[{t * 1000},{synthetic_price(coin_id, currency, t)}]" for t in times)
        caps = ",".join(f"[{t * 1000},1234567890.5]" for t in times)
        return 200, {}, f'{{"prices":[{prices}],"market_caps":[{caps}],"total_volumes":[{caps}]}}'

    def _simple_price(self, query: dict) -> str:
        now = self._now()
        answer = []
        for coin_id in query.get("ids", "").split(","):
            if coin_id not in COINS:
                continue  # CoinGecko leaves unknown ids out
            entries = [f'"last_updated_at":{now - 42}']
            for currency in query.get("vs_currencies", "").split(","):
                if currency in CURRENCIES:
                    entries.append(f'"{currency}":{synthetic_price(coin_id, currency, now - 42)}')
                    entries.append(f'"{currency}_24h_change":-1.2345')
            answer.append(f'"{coin_id}":{{{",".join(entries)}}}')
        return "{" + ",".join(answer) + "}"

    def _markets(self, query: dict) -> list[dict]:
        rows = []
        for coin_id in query.get("ids", "").split(","):
            if coin_id in COINS:
                coin = COINS[coin_id]
                rows.append(
                    {
                        "id": coin_id,
                        "symbol": coin["symbol"],
                        "name": coin["name"],
                        "image": f"https://coin-images.example/{coin_id}.png",
                        "current_price": float(coin["base"]),
                        "circulating_supply": 19675962.0,
                    }
                )
        return rows
