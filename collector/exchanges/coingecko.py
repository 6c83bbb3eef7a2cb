"""CoinGecko: REST only (no websocket, no trades). Candle history from price samples, current prices, names and logos.

Coins are matched by their CoinGecko id (portfolio.yml `coingecko.coins`), never by symbol: many coins share one.
A pair is SYMBOL-QUOTE; QUOTE is CoinGecko's `vs_currency`, lower-cased in requests.

`/coins/{id}/market_chart/range` has no OHLC: it answers price samples whose spacing depends on the span asked
(1 day ending now: 5 minutes; 2-90 days: hourly; more than 90 days: daily at 00:00 UTC), and the free and Demo
plans reach back 365 days. A candle here is built from the samples inside its interval: open the first, high the
highest, low the lowest, close the last; no volume (`total_volumes` is a rolling 24 h figure, not the candle's).
A sample exactly on a boundary (the daily ones at 00:00 UTC) is the close of the candle before it as well as the open
of the next: a day's close is the price at its end, not at its start. Each request spans what gives the interval's
granularity, clear of the 90-day edge (hourly candles: 2-89 days; daily: 91-365 days), so every candle of a series
is built from samples of the same spacing; an answer coarser than the interval is refused, never made into candles.
"""

import os
import time
from decimal import Decimal

from collector.config import COINGECKO, ExchangeConfig, Pair
from collector.exchanges.base import (
    Exchange,
    MessageError,
    Page,
    RateLimit,
    decimal_from,
    field_of,
    int_from,
    parse_rows,
)
from collector.records import Asset, Candle, Ticker

API_KEY_ENV_VAR = "COINGECKO_API_KEY"
API_KEY_HEADER = "x-cg-demo-api-key"
DAY = 86_400
# interval -> (shortest span, longest span) of one market_chart/range request that gives that granularity
_SPANS = {3600: (2 * DAY, 89 * DAY), DAY: (91 * DAY, 365 * DAY)}
_MARKETS_PER_PAGE = 250


class CoinGecko(Exchange):
    name = COINGECKO
    live_trades = False
    ws_url = ""
    rest_url = "https://api.coingecko.com/api/v3"
    heartbeat_s = 0.0
    silence_s = 0.0
    candle_steps = frozenset(_SPANS)
    trade_history_s = 0.0
    # the free and Demo plans answer history of the last 365 days only; a day's margin keeps a request inside it
    candle_reach_s = 364 * DAY
    # documented budgets, counted per minute: public ("keyless") 5-15 calls, Demo 30; the lower end of each
    keyless_budget = RateLimit(5, 60.0)
    demo_budget = RateLimit(30, 60.0)
    # its "now" price, for every coin in one call: a minute keeps a held coin's live value fresh within the budget
    prices_every_s = 60.0

    def __init__(self, config: ExchangeConfig, environ=os.environ):
        super().__init__(config)
        self.coin_ids = dict(getattr(config, "coins", ()))
        key = environ.get(API_KEY_ENV_VAR, "").strip()
        self.headers = {API_KEY_HEADER: key} if key else {}
        self.rate_limit = self.demo_budget if key else self.keyless_budget

    def coin_id(self, pair: Pair) -> str:
        if pair.base not in self.coin_ids:
            raise MessageError(f"{pair.base}: not in coingecko.coins")
        return self.coin_ids[pair.base]

    def _get(self, http, path: str, params: dict):
        return http.get_json(f"{self.rest_url}{path}", params, headers=self.headers)

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        """Closed candles opening in [start_s, the chunk's end), ascending; the next page starts at the chunk's end.
        (The backfill never asks for more than `candle_reach_s` back: CoinGecko refuses it.)"""
        shortest, longest = _SPANS[interval_s]
        chunk_end = min(start_s + longest, end_s)
        params = {
            "vs_currency": pair.quote.lower(),
            "from": min(start_s, chunk_end - shortest),
            "to": chunk_end,
        }
        doc = self._get(http, f"/coins/{self.coin_id(pair)}/market_chart/range", params)
        samples = parse_rows(_answer(doc, "prices", "market_chart"), _sample, "market_chart prices")
        page = Page(bad_rows=samples.bad_rows, next_start_s=chunk_end - chunk_end % interval_s)
        ordered = sorted(samples.records, key=lambda sample: sample[0])
        _check_spacing(ordered, interval_s)
        by_open: dict[int, list[Decimal]] = {}
        for sample_ms, price in ordered:
            open_s = sample_ms // 1000 - sample_ms // 1000 % interval_s
            on_boundary = sample_ms % (interval_s * 1000) == 0
            for candle_s in (open_s - interval_s, open_s) if on_boundary else (open_s,):
                if candle_s >= start_s and candle_s + interval_s <= chunk_end:  # inside the chunk, and closed
                    by_open.setdefault(candle_s, []).append(price)
        page.records = [
            Candle(self.name, pair, interval_s, open_s, prices[0], max(prices), min(prices), prices[-1], None)
            for open_s, prices in sorted(by_open.items())
        ]
        return page

    def ticker(self, http, pair: Pair) -> Ticker:
        """The current price; its time is CoinGecko's `last_updated_at` (when the price is from), else the fetch."""
        return _ticker(self._prices(http, [pair]), pair, self.coin_id(pair))

    def tickers(self, http, pairs) -> Page:
        """Every pair's current price from one `/simple/price` call (the budget is counted in calls); a coin it
        leaves out (unknown id, no price in that currency) is a bad row, the others are kept."""
        doc, page = self._prices(http, pairs), Page()
        for pair in pairs:
            try:
                page.records.append(_ticker(doc, pair, self.coin_id(pair)))
            except MessageError as exc:
                page.bad_rows.append(f"{pair}: {exc}")
        return page

    def _prices(self, http, pairs) -> dict:
        params = {
            "ids": ",".join(sorted({self.coin_id(pair) for pair in pairs})),
            "vs_currencies": ",".join(sorted({pair.quote.lower() for pair in pairs})),
            "include_last_updated_at": "true",
            "include_24hr_change": "true",
        }
        return _answer(self._get(http, "/simple/price", params), None, "simple price")

    def assets(self, http) -> Page:
        """Names and logos of the configured coins; a configured id CoinGecko does not know is a bad row."""
        symbols = {coin_id: symbol for symbol, coin_id in self.coin_ids.items()}
        now, page = time.time_ns(), Page()
        ids = sorted(symbols)
        for first in range(0, len(ids), _MARKETS_PER_PAGE):
            params = {
                "vs_currency": "usd",  # the market figures are not used: names, logos and supply are
                "ids": ",".join(ids[first : first + _MARKETS_PER_PAGE]),
                "per_page": _MARKETS_PER_PAGE,
                "page": 1,
            }
            rows = _answer(self._get(http, "/coins/markets", params), None, "coins markets")
            part = parse_rows(rows, lambda row: _asset(row, symbols, now), "coins markets")
            page.records += part.records
            page.bad_rows += part.bad_rows
        seen = {asset.symbol for asset in page.records}
        page.bad_rows += [
            f"no coin with id {i!r} (check coingecko.coins)" for i in ids if symbols[i] not in seen
        ]
        return page


def _ticker(doc, pair: Pair, coin_id: str) -> Ticker:
    currency = pair.quote.lower()
    prices = field_of(doc, coin_id, "simple price")
    last = decimal_from(field_of(prices, currency, f"simple price of {coin_id}"), f"{coin_id} price")
    if last < 0:
        raise MessageError(f"{coin_id} price: expected a price, got {last}")
    change = prices.get(f"{currency}_24h_change")
    updated = prices.get("last_updated_at")
    return Ticker(
        exchange=COINGECKO,
        pair=pair,
        time_ns=int_from(updated, "last_updated_at") * 1_000_000_000 if updated else time.time_ns(),
        last=last,
        change_24h_pct=decimal_from(change, "24h change") if change is not None else None,
    )


def _answer(doc, key: str | None, what: str):
    """doc[key] (or doc itself when key is None); CoinGecko's error objects become a MessageError naming them."""
    if isinstance(doc, dict) and ("error" in doc or "status" in doc) and (key is None or key not in doc):
        raise MessageError(f"{what}: CoinGecko answered an error: {str(doc)[:200]}")
    return doc if key is None else field_of(doc, key, what)


def _check_spacing(samples: list[tuple[int, Decimal]], interval_s: int) -> None:
    """Hourly candles from daily samples would store one hour a day and leave the rest empty for good: an answer
    whose samples are all further apart than two intervals (the latest one, "now", aside) is refused."""
    times = [sample_ms // 1000 for sample_ms, _ in samples[:-1]]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    if len(gaps) >= 2 and min(gaps) > 2 * interval_s:
        raise MessageError(
            f"market_chart: samples {min(gaps)} s apart or more for {interval_s} s candles (a coarser granularity "
            "than asked for); no candles made from them"
        )


def _sample(row) -> tuple[int, Decimal]:
    if not isinstance(row, list) or len(row) != 2:
        raise MessageError("price sample: expected [milliseconds, price]")
    stamp, price = row
    if isinstance(stamp, Decimal) and stamp == stamp.to_integral_value():
        stamp = int(stamp)  # 1.7e12 written with a fraction
    sample_ms = int_from(stamp, "sample time")
    value = decimal_from(price, "sample price")
    if sample_ms <= 0 or value <= 0:
        raise MessageError(f"price sample: expected a time and a price above 0, got {row!r}")
    return sample_ms, value


def _asset(row, symbols: dict[str, str], time_ns: int) -> Asset:
    coin_id = field_of(row, "id", "coin")
    if not isinstance(coin_id, str) or coin_id not in symbols:
        raise MessageError(f"coin: an id that was not asked for: {coin_id!r}")
    supply = row.get("circulating_supply")
    return Asset(
        symbol=symbols[coin_id],  # the configured symbol: CoinGecko's own may be shared by other coins
        time_ns=time_ns,
        name=_text(row.get("name")),
        type="crypto",
        logo_url=_text(row.get("image")),
        available_supply=decimal_from(supply, "circulating_supply") if supply is not None else None,
    )


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
