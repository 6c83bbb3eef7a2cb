"""Bitstamp: websocket v2 live trades, HTTP API v2 for gap fill, candles, tickers and currencies."""

import json
import time

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
    load_json_inexact,
    parse_rows,
)
from collector.records import Asset, Candle, Ticker, Trade

SIDES = {0: "buy", 1: "sell"}
CHANNEL_PREFIX = "live_trades_"
NS = 1_000_000_000


class Bitstamp(Exchange):
    name = "bitstamp"
    ws_url = "wss://ws.bitstamp.net"
    rest_url = "https://www.bitstamp.net/api/v2"
    rate_limit = RateLimit(requests=8000, per_seconds=600)
    heartbeat_s = 10
    silence_s = 35  # three heartbeats without any reply
    candle_steps = frozenset({60, 180, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400, 259200})
    max_candles = 1000
    trade_history_s = 86_400  # /transactions/?time=day
    trade_time_unit_ns = 1_000_000_000  # REST transactions carry whole seconds only

    def __init__(self, config):
        super().__init__(config)
        self._pairs_by_symbol: dict[str, Pair] = {}

    @staticmethod
    def symbol(pair: Pair) -> str:
        return f"{pair.base}{pair.quote}".lower()

    def _channel_pair(self, channel) -> Pair:
        if not isinstance(channel, str) or not channel.startswith(CHANNEL_PREFIX):
            raise MessageError(f"unexpected channel {channel!r}")
        symbol = channel.removeprefix(CHANNEL_PREFIX)
        if symbol not in self._pairs_by_symbol:
            raise MessageError(f"channel {channel!r} is not one we subscribed to")
        return self._pairs_by_symbol[symbol]

    # --- websocket -----------------------------------------------------------------------------------

    def subscribe_messages(self, pairs) -> list[str]:
        for pair in pairs:
            self._pairs_by_symbol[self.symbol(pair)] = pair
        return [self._channel_message("bts:subscribe", pair) for pair in pairs]

    def unsubscribe_messages(self, pairs) -> list[str]:
        return [self._channel_message("bts:unsubscribe", pair) for pair in pairs]

    def _channel_message(self, event: str, pair: Pair) -> str:
        return json.dumps({"event": event, "data": {"channel": CHANNEL_PREFIX + self.symbol(pair)}})

    def heartbeat_message(self) -> str:
        return json.dumps({"event": "bts:heartbeat"})

    def parse(self, message) -> Parsed:
        doc = load_json_inexact(message)  # the fast parser, kept only when every value a trade takes is exact
        if doc is None or _float_in_trade(doc):
            doc = load_json(message)
        event = field_of(doc, "event", "message")
        if event == "trade":
            pair = self._channel_pair(doc.get("channel"))
            return Parsed(trades=[self._live_trade(pair, field_of(doc, "data", "trade"))])
        if event == "bts:request_reconnect":
            return Parsed(reconnect_requested=True)
        if event == "bts:heartbeat":
            return Parsed(ignored="heartbeat")
        if event == "bts:subscription_succeeded":
            return Parsed(subscribed=(self._channel_pair(doc.get("channel")),))
        if event == "bts:unsubscription_succeeded":
            return Parsed(unsubscribed=(self._channel_pair(doc.get("channel")),))
        if event == "bts:error":
            data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
            raise MessageError(f"exchange error: {data.get('message') or data or 'no details'}")
        raise MessageError(f"unknown event {event!r}")

    def _live_trade(self, pair: Pair, data) -> Trade:
        if not isinstance(data, dict):
            raise MessageError("trade: 'data' is not an object")
        if "microtimestamp" in data:
            time_ns = int_from(data["microtimestamp"], "trade microtimestamp") * 1000
        else:
            time_ns = int_from(field_of(data, "timestamp", "trade"), "trade timestamp") * NS
        return self.trade(
            pair,
            trade_id=field_of(data, "id", "trade"),
            price=data.get("price_str", data.get("price")),
            amount=data.get("amount_str", data.get("amount")),
            side=_side(field_of(data, "type", "trade")),
            exchange_time_ns=time_ns,
        )

    # --- HTTP ----------------------------------------------------------------------------------------

    def recent_trades(self, http, pair: Pair, since_s: float, after_id: int | None = None) -> Page:
        """Trades of the last minute, hour or day: the smallest window that covers the gap, with a margin for
        the answer's latency. The window is fixed when asked; complete_from_s says what it held when answered."""
        gap_s = time.time() - since_s
        window, span_s = next((name, span) for name, span, used_below_s in _WINDOWS if gap_s < used_below_s)
        rows = http.get_json(f"{self.rest_url}/transactions/{self.symbol(pair)}/", {"time": window})
        page = parse_rows(rows, lambda row: self._rest_trade(pair, row), "transactions")
        page.complete_from_s = time.time() - span_s  # the exchange answered by now: its window began earlier
        return page

    def _rest_trade(self, pair: Pair, row) -> Trade:
        return self.trade(
            pair,
            trade_id=field_of(row, "tid", "transaction"),
            price=field_of(row, "price", "transaction"),
            amount=field_of(row, "amount", "transaction"),
            side=_side(field_of(row, "type", "transaction")),
            exchange_time_ns=int_from(field_of(row, "date", "transaction"), "transaction date") * NS,
        )

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        """Closed candles opening at or after start_s (at most max_candles), ascending.

        An empty answer is not the end of history (a pair listed after start_s answers empty pages first):
        the next page then starts where this one's window ends.
        """
        params = {
            "step": interval_s,
            "limit": self.max_candles,
            "start": start_s,
            "exclude_current_candle": "true",
        }
        doc = http.get_json(f"{self.rest_url}/ohlc/{self.symbol(pair)}/", params)
        rows = field_of(field_of(doc, "data", "ohlc response"), "ohlc", "ohlc response")
        page = parse_rows(rows, lambda row: self._candle(pair, interval_s, row), "ohlc")
        opens = [_row_open_s(row) for row in rows]
        known = [open_s for open_s in opens if open_s is not None]
        page.next_start_s = max(known) + interval_s if known else start_s + self.max_candles * interval_s
        page.records = sorted(
            (c for c in page.records if c.open_time_s >= start_s and c.open_time_s + interval_s <= end_s),
            key=lambda candle: candle.open_time_s,
        )  # outside what was asked, or still open: not a bad row, just not ours
        return page

    def _candle(self, pair: Pair, interval_s: int, row) -> Candle:
        return Candle(
            exchange=self.name,
            pair=pair,
            interval_s=interval_s,
            open_time_s=int_from(field_of(row, "timestamp", "candle"), "candle timestamp"),
            **{k: decimal_from(field_of(row, k, "candle"), f"candle {k}") for k in _OHLCV},
        )

    def ticker(self, http, pair: Pair) -> Ticker:
        """The last 24 h. Bitstamp's `open` is the UTC day's first price; `open_24`, the price 24 h ago, is
        what `percent_change_24` is measured from, so it is the open stored, and the change is computed
        exactly from it (the exchange's own figure is rounded to two decimals)."""
        doc = http.get_json(f"{self.rest_url}/ticker/{self.symbol(pair)}/")
        last = decimal_from(field_of(doc, "last", "ticker"), "ticker last")
        values = {
            key: decimal_from(doc[source], f"ticker {source}")
            for key, source in _TICKER_FIELDS.items()
            if doc.get(source) not in (None, "")
        }
        open_24 = values.get("open")
        if open_24:
            values["change_24h_pct"] = (last - open_24) / open_24 * 100
        return Ticker(exchange=self.name, pair=pair, time_ns=time.time_ns(), last=last, **values)

    def assets(self, http) -> Page:
        doc = http.get_json(f"{self.rest_url}/currencies/")
        rows = (
            doc.get("data") if isinstance(doc, dict) else doc
        )  # most clients see a list; one saw {"data": [...]}
        now = time.time_ns()
        return parse_rows(rows, lambda row: self._asset(row, now), "currencies")

    @staticmethod
    def _asset(row, time_ns: int) -> Asset:
        symbol = field_of(row, "currency", "currency")
        if not isinstance(symbol, str) or not symbol.strip():
            raise MessageError(f"currency: expected a code, got {symbol!r}")
        supply = row.get("available_supply")
        decimals = row.get("decimals")
        return Asset(
            symbol=symbol.strip().upper(),
            time_ns=time_ns,
            name=_text(row.get("name")),
            type=_text(row.get("type")),
            logo_url=_text(row.get("logo")),
            decimals=int_from(decimals, "currency decimals") if decimals not in (None, "") else None,
            available_supply=decimal_from(supply, "available_supply") if supply not in (None, "") else None,
        )


_OHLCV = ("open", "high", "low", "close", "volume")
# /transactions/ windows: name, span, and the gaps it is asked for (its span less a margin for latency)
_WINDOWS = (("minute", 60, 50), ("hour", 3600, 3500), ("day", 86_400, float("inf")))
_TICKER_FIELDS = {
    "bid": "bid",
    "ask": "ask",
    "open": "open_24",  # not "open": see ticker()
    "high": "high",
    "low": "low",
    "volume": "volume",
    "vwap": "vwap",
    "change_24h_pct": "percent_change_24",  # replaced by the exact figure when open_24 is known
}


def _float_in_trade(doc) -> bool:
    """Whether a fast-parsed trade message would give the trade a float: a price or amount without its exact string
    (Bitstamp sends both as numbers and as strings), an integer past 64 bits. Such a message is parsed again
    exactly. Other messages take no numbers."""
    data = doc.get("data") if type(doc) is dict and doc.get("event") == "trade" else None
    if type(data) is not dict:
        return False
    return (
        type(data.get("price_str")) is not str
        or type(data.get("amount_str")) is not str
        or float in (type(data.get("id")), type(data.get("type")), type(data.get("microtimestamp")))
        or type(data.get("timestamp")) is float
    )


def _side(code) -> str:
    side_code = int_from(code, "trade type")
    if side_code not in SIDES:
        raise MessageError(f"trade type: expected 0 or 1, got {code!r}")
    return SIDES[side_code]


def _row_open_s(row) -> int | None:
    try:
        return int_from(field_of(row, "timestamp", "candle"), "candle timestamp")
    except MessageError:
        return None


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
