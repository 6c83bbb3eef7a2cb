"""Binance spot: `@trade` streams with live SUBSCRIBE, REST trades by id for gap fill, klines and 24 h tickers.

- Streams are subscribed on `/stream` with live SUBSCRIBE/UNSUBSCRIBE requests. One request carries every stream
  of a (re)subscription, so a connection sends at most two (one of each) per config reload, and the protocol's
  pongs: Binance allows 5 messages a second and closes a connection that sends more. Their acks,
  `{"result":null,"id":n}`, name no stream: each request id remembers the pairs it carried.
- Trade times are milliseconds in both the stream (`T`) and REST (`time`): points keep them (trade_time_unit_ns).
- `m` true means the buyer was the maker: the taker sold.
- Gap fill resumes exactly after the last trade id stored, with `/api/v3/historicalTrades?fromId=` (no API key
  needed, ids ascending, 1000 a page). `/api/v3/trades` cannot start at an id, and `/api/v3/aggTrades` merges
  trades of one price and taker into one row, so neither gives the individual trades back. A pair without a known
  id starts at a time: the first aggregate trade after it names its first trade id.
- A connection lives at most 24 h: the stream hands it over (make before break) shortly before; `serverShutdown`
  asks for the same hand-over. Binance's protocol pings (every 20 s) are answered by the websocket library.
- Symbols are BASE+QUOTE (BTCUSDT) and split back with the configured pairs, never guessed. USDT stays USDT.
"""

import itertools
import json
import time
from collections import OrderedDict

from collector.config import Pair
from collector.exchanges.base import (
    Exchange,
    MessageError,
    Page,
    Parsed,
    RateLimit,
    decimal_from,
    field_of,
    int_from,
    load_json,
    parse_rows,
)
from collector.records import Candle, Ticker

STREAM_SUFFIX = "@trade"
MAX_STREAMS_PER_REQUEST = 1024  # what a connection takes: every change of the wanted pairs is one request
PENDING_REQUESTS_KEPT = 256  # requests never answered (their connection died) are forgotten, oldest first
INTERVALS = {
    60: "1m",
    180: "3m",
    300: "5m",
    900: "15m",
    1800: "30m",
    3600: "1h",
    7200: "2h",
    14400: "4h",
    21600: "6h",
    28800: "8h",
    43200: "12h",
    86400: "1d",
}  # 3d, 1w and 1M open on Binance's own calendar, not on multiples of their length: not offered
MS = 1_000_000  # ns


class Binance(Exchange):
    name = "binance"
    ws_url = "wss://stream.binance.com:9443/stream"
    rest_url = "https://api.binance.com/api/v3"
    # 6000 request weight a minute per IP; the heaviest call used (historicalTrades) weighs 25: 100 calls a minute
    # stay under half of it, and the exchange's own count (shared with other programs on the IP) is watched too
    rate_limit = RateLimit(requests=100, per_seconds=60, used_header="X-MBX-USED-WEIGHT-1M", used_limit=6000)
    heartbeat_s = 20  # unused: Binance has no application heartbeat (its protocol pings are answered for us)
    silence_s = 30  # then the stream pings; a live connection answers
    # Binance cuts a connection at 24 h: the stream hands it over (make before break) a margin before
    max_connection_s = 24 * 3600
    candle_steps = frozenset(INTERVALS)
    max_candles = 1000
    max_trades = 1000
    trade_history_s = 7 * 86_400  # historicalTrades reaches further; a week of BTCUSDT is ~10k calls already
    trade_time_unit_ns = MS
    trade_cursor = "id"
    sequential_trade_ids = True

    def __init__(self, config):
        super().__init__(config)
        self._pairs_by_symbol: dict[str, Pair] = {}
        self._remember(config.pairs)
        # never reused, not even by a new connection: an ack still coming on the one being replaced is safe
        self._request_ids = itertools.count(1)
        self._requests: OrderedDict[int, tuple[str, tuple[Pair, ...]]] = OrderedDict()

    @staticmethod
    def symbol(pair: Pair) -> str:
        return f"{pair.base}{pair.quote}"

    def _remember(self, pairs) -> None:
        for pair in pairs:
            self._pairs_by_symbol[self.symbol(pair)] = pair

    def _pair_of(self, symbol) -> Pair:
        """BTCUSDT or btcusdt@trade -> the configured pair it is; a symbol not configured is an error."""
        if not isinstance(symbol, str):
            raise MessageError(f"symbol: expected text, got {symbol!r}")
        key = symbol.removesuffix(STREAM_SUFFIX).upper()
        if key not in self._pairs_by_symbol:
            raise MessageError(f"symbol {symbol!r} is not one we subscribed to")
        return self._pairs_by_symbol[key]

    # --- websocket -----------------------------------------------------------------------------------

    def subscribe_messages(self, pairs) -> list[str]:
        self._remember(pairs)
        return self._requests_for("SUBSCRIBE", pairs)

    def unsubscribe_messages(self, pairs) -> list[str]:
        return self._requests_for("UNSUBSCRIBE", pairs)

    def _requests_for(self, method: str, pairs) -> list[str]:
        pairs = tuple(pairs)
        messages = []
        for start in range(0, len(pairs), MAX_STREAMS_PER_REQUEST):
            chunk = pairs[start : start + MAX_STREAMS_PER_REQUEST]
            request_id = next(self._request_ids)
            self._requests[request_id] = (method, chunk)
            while len(self._requests) > PENDING_REQUESTS_KEPT:
                self._requests.popitem(last=False)
            streams = [self.symbol(pair).lower() + STREAM_SUFFIX for pair in chunk]
            messages.append(json.dumps({"method": method, "params": streams, "id": request_id}))
        return messages

    def heartbeat_message(self) -> None:
        return None

    def parse(self, message) -> Parsed:
        doc = load_json(message)
        if not isinstance(doc, dict):
            raise MessageError(f"message: expected an object, got {type(doc).__name__}")
        if "id" in doc and ("result" in doc or "error" in doc or "code" in doc):
            return self._reply(doc)
        event = doc.get("data") if "stream" in doc else doc.get("event", doc)  # combined, WS-API or bare
        kind = field_of(event, "e", "event")
        if kind == "trade":
            return Parsed(trades=[self._live_trade(event, doc.get("stream"))])
        if kind == "serverShutdown":
            return Parsed(reconnect_requested=True)
        raise MessageError(f"unknown event {kind!r}")

    def _reply(self, doc) -> Parsed:
        """The answer to one of our requests: an ack names only its id, so the pairs come from the request."""
        request_id = doc["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, int | str | None):
            raise MessageError(f"reply: unexpected request id {request_id!r}")
        method, pairs = self._requests.pop(request_id, (None, ()))
        if doc.get("error") is not None or "code" in doc:  # {"error":{code,msg},"id"} or the older flat shape
            error = doc.get("error", doc)
            error = error if isinstance(error, dict) else {"msg": error}
            what = f"{method} {', '.join(map(str, pairs))}" if method else "an unknown request"
            raise MessageError(
                f"exchange error: code {error.get('code')} {error.get('msg')!r} answering request {request_id!r}"
                f" ({what})"
            )
        if method is None:
            return Parsed(ignored=f"reply to request {request_id!r}")  # e.g. LIST_SUBSCRIPTIONS, or forgotten
        if doc.get("result") is not None:
            raise MessageError(
                f"ack: expected a null result for request {request_id}, got {doc.get('result')!r}"
            )
        if method == "SUBSCRIBE":
            return Parsed(subscribed=pairs)
        return Parsed(unsubscribed=pairs)

    def _live_trade(self, event, stream):
        symbol = event.get("s", stream)
        return self._trade(
            self._pair_of(symbol),
            trade_id=field_of(event, "t", "trade"),
            price=field_of(event, "p", "trade"),
            amount=field_of(event, "q", "trade"),
            buyer_is_maker=field_of(event, "m", "trade"),
            time_ms=field_of(event, "T", "trade"),
        )

    def _trade(self, pair: Pair, trade_id, price, amount, buyer_is_maker, time_ms):
        if not isinstance(buyer_is_maker, bool):
            raise MessageError(f"trade buyer-is-maker: expected true or false, got {buyer_is_maker!r}")
        side = "sell" if buyer_is_maker else "buy"  # the buyer's order was in the book: the taker sold
        return self.trade(pair, trade_id, price, amount, side, int_from(time_ms, "trade time") * MS)

    # --- HTTP ----------------------------------------------------------------------------------------

    def recent_trades(self, http, pair: Pair, since_s: float, after_id: int | None = None) -> Page:
        """Up to max_trades trades after `after_id`, ascending; without an id, from the first trade at or after
        `since_s`. `more`: a full page, so more may follow."""
        from_id = after_id + 1 if after_id is not None else self._first_trade_id(http, pair, since_s)
        if from_id is None:
            return Page(complete_from_s=since_s)  # no trade since then
        params = {"symbol": self.symbol(pair), "fromId": from_id, "limit": self.max_trades}
        rows = http.get_json(f"{self.rest_url}/historicalTrades", params)
        page = parse_rows(rows, lambda row: self._rest_trade(pair, row), "historicalTrades")
        page.records = [trade for trade in page.records if trade.trade_id >= from_id]
        page.more = len(rows) >= self.max_trades
        page.complete_from_s = since_s
        return page

    def _first_trade_id(self, http, pair: Pair, since_s: float) -> int | None:
        params = {"symbol": self.symbol(pair), "startTime": int(since_s * 1000), "limit": 1}
        rows = http.get_json(f"{self.rest_url}/aggTrades", params)
        if not isinstance(rows, list):
            raise MessageError(f"aggTrades: expected a list, got {type(rows).__name__}")
        return int_from(field_of(rows[0], "f", "aggTrade"), "aggTrade first id") if rows else None

    def _rest_trade(self, pair: Pair, row):
        return self._trade(
            pair,
            trade_id=field_of(row, "id", "historical trade"),
            price=field_of(row, "price", "historical trade"),
            amount=field_of(row, "qty", "historical trade"),
            buyer_is_maker=field_of(row, "isBuyerMaker", "historical trade"),
            time_ms=field_of(row, "time", "historical trade"),
        )

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        """Closed candles opening in [start_s, end_s), ascending, at most max_candles.

        An empty answer is not the end of history (a pair listed after start_s answers empty pages first):
        the next page then starts where this one's window ends.
        """
        if interval_s not in INTERVALS:
            raise MessageError(f"klines: Binance has no {interval_s} s interval")
        params = {
            "symbol": self.symbol(pair),
            "interval": INTERVALS[interval_s],
            "startTime": start_s * 1000,
            "endTime": end_s * 1000 - 1,
            "limit": self.max_candles,
        }
        rows = http.get_json(f"{self.rest_url}/klines", params)
        page = parse_rows(rows, lambda row: self._candle(pair, interval_s, row), "klines")
        known = [open_s for open_s in map(_row_open_s, rows) if open_s is not None]
        page.next_start_s = max(known) + interval_s if known else start_s + self.max_candles * interval_s
        closed_before_s = min(end_s, time.time())  # the newest row is the candle still open
        page.records = sorted(
            (
                c
                for c in page.records
                if c.open_time_s >= start_s and c.open_time_s + interval_s <= closed_before_s
            ),
            key=lambda candle: candle.open_time_s,
        )
        return page

    def _candle(self, pair: Pair, interval_s: int, row) -> Candle:
        if not isinstance(row, list) or len(row) < 6:
            raise MessageError(f"kline: expected a list of at least 6 values, got {str(row)[:80]}")
        open_ms = int_from(row[0], "kline open time")
        if open_ms % 1000:
            raise MessageError(f"kline open time: expected whole seconds, got {open_ms} ms")
        return Candle(
            exchange=self.name,
            pair=pair,
            interval_s=interval_s,
            open_time_s=open_ms // 1000,
            **{key: decimal_from(row[index], f"kline {key}") for index, key in enumerate(_OHLCV, start=1)},
        )

    def ticker(self, http, pair: Pair) -> Ticker:
        """The rolling last 24 h: `openPrice` is the price 24 h ago; the change is computed exactly from it (the
        exchange's `priceChangePercent` has three decimals)."""
        doc = http.get_json(f"{self.rest_url}/ticker/24hr", {"symbol": self.symbol(pair)})
        last = decimal_from(field_of(doc, "lastPrice", "ticker"), "ticker lastPrice")
        values = {
            key: decimal_from(doc[source], f"ticker {source}")
            for key, source in _TICKER_FIELDS.items()
            if doc.get(source) not in (None, "")
        }
        if values.get("open"):
            values["change_24h_pct"] = (last - values["open"]) / values["open"] * 100
        return Ticker(exchange=self.name, pair=pair, time_ns=time.time_ns(), last=last, **values)

    def assets(self, http) -> Page:
        """Binance's public API has no names or logos of its assets: they come from other sources."""
        return Page()


_OHLCV = ("open", "high", "low", "close", "volume")
_TICKER_FIELDS = {
    "bid": "bidPrice",
    "ask": "askPrice",
    "open": "openPrice",
    "high": "highPrice",
    "low": "lowPrice",
    "volume": "volume",
    "vwap": "weightedAvgPrice",
    "change_24h_pct": "priceChangePercent",  # replaced by the exact figure when openPrice is known
}


def _row_open_s(row) -> int | None:
    try:
        return int_from(row[0], "kline open time") // 1000 if isinstance(row, list) and row else None
    except MessageError:
        return None
