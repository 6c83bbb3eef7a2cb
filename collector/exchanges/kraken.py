"""Kraken spot: WebSocket v2 `trade` for live trades; the public REST API for gap fill, candles and tickers.

Trade point time. A trade's time is kept to the second, plus its trade id modulo 1e9 ns. Kraken holds trade times
in nanoseconds (REST's `last` cursor shows them), but neither path gives them exactly: the websocket writes
microseconds (RFC 3339), and REST `Trades` writes a float64 of the seconds (`1616666442.2951703`: 17 significant
digits, so its last digits are the float's, about 0.24 µs apart near today). Cut at the microsecond, about one
trade in four near a microsecond's edge would fall on different sides from the two paths, and one in a thousand
at the millisecond: a live trade and the same trade gap-filled over REST would be two points. Cut at the second,
that takes a trade within a fraction of a microsecond of a second's turn (a few in ten million). The REST time is
read exactly from its text (never through a float), then cut. Trade ids are a per-pair sequence, so the
offset keeps every trade of a second apart.

Gap fill is by trade id: a jump in the live ids is a gap (`sequential_trade_ids`), and REST `Trades` is paged
with Kraken's `since` cursor (nanoseconds) from a second before the last trade held, keeping only the trades
after its id, then from a nanosecond before the cursor each page ends with (Kraken's `since` is exclusive and its
`last` is the page's last trade time, which trades beyond the page may share; the overlap is dropped by id): it
resumes exactly after the last trade stored, and no trade is handed on twice.

Names: the websocket speaks `BTC/USD`; REST answers under Kraken's own names (`XXBTZUSD`, `XBTUSDT`, `XDGUSD`).
Both map to the BASE-QUOTE pair of the config (XBT is BTC, XDG is DOGE). Errors come in the answer's `error`
array (with HTTP 200): rate limit and busy errors are retried like a 429 or a 503; what lasts is a MessageError.
"""

import itertools
import json
import time
from decimal import Decimal

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
    time_ns_from_iso,
)
from collector.records import Candle, Ticker, Trade
from collector.retry import Backoff, retry_wait

NS = 1_000_000_000
REST_SIDES = {"b": "buy", "s": "sell"}  # the websocket writes buy and sell; REST b and s (the taker's side)
# Kraken's names that differ from the usual ones, and its legacy X/Z-prefixed REST asset codes
ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
KRAKEN_CODES = {normal: kraken for kraken, normal in ALIASES.items()}
LEGACY_CODES = {"XXBT", "XETH", "XLTC", "XXRP", "XXLM", "XXDG", "XETC", "XMLN", "XREP", "XZEC", "XXMR"}
LEGACY_CODES |= {"ZUSD", "ZEUR", "ZGBP", "ZCAD", "ZJPY", "ZCHF", "ZAUD"}
SKIP_PAGES = 20  # pages of trades already held that one gap-fill call walks past before answering
RATE_LIMIT_ERRORS = ("EAPI:Rate limit exceeded", "EGeneral:Too many requests")
BUSY_ERRORS = ("EService:Unavailable", "EService:Busy")  # passing, like a 503


def normalized_asset(code: str) -> str:
    """Kraken's asset code as the config writes it: XXBT, XBT -> BTC; ZUSD -> USD; XDG -> DOGE."""
    code = code.strip().upper()
    if code in LEGACY_CODES:
        code = code[1:]
    return ALIASES.get(code, code)


def kraken_asset(code: str) -> str:
    return KRAKEN_CODES.get(code, code)


class Kraken(Exchange):
    name = "kraken"
    ws_url = "wss://ws.kraken.com/v2"
    rest_url = "https://api.kraken.com/0/public"
    # about one call a second, as Kraken's public API allows, with a burst of three
    rate_limit = RateLimit(requests=3, per_seconds=3)
    heartbeat_s = 10  # an application ping; Kraken itself sends a heartbeat every second once subscribed
    silence_s = 5  # Kraken: about 5 s without a message is a dead connection (then the watchdog pings)
    candle_steps = frozenset(minutes * 60 for minutes in (1, 5, 15, 30, 60, 240, 1440, 10080, 21600))
    candle_reach_rows = 720  # OHLC serves the latest 720 rows whatever `since` says
    # Trades pages back to 2013, but at about a call a second a busy pair's week is already ~10 min of paging
    trade_history_s = 7 * 86_400
    trade_cursor = "id"
    trades_per_page = 1000  # REST Trades' `count`, at most 1000: a full page says more may follow
    trade_time_unit_ns = NS  # see the module's doc
    sequential_trade_ids = True

    def __init__(self, config):
        super().__init__(config)
        self._pairs: set[Pair] = set()
        self._request_ids = itertools.count(1)
        # per pair: the last trade id of the page answered last, and Kraken's cursor for the page after it
        self._cursors: dict[Pair, tuple[int, str]] = {}

    @staticmethod
    def symbol(pair: Pair) -> str:
        """The websocket v2 name."""
        return f"{pair.base}/{pair.quote}"

    @staticmethod
    def rest_pair(pair: Pair) -> str:
        """The name REST is asked with (its `altname`): XBTUSD, ETHEUR, XDGUSD."""
        return kraken_asset(pair.base) + kraken_asset(pair.quote)

    def _pair_of(self, symbol) -> Pair:
        if not isinstance(symbol, str) or symbol.count("/") != 1:
            raise MessageError(f"unexpected symbol {symbol!r}")
        base, quote = (normalized_asset(part) for part in symbol.split("/"))
        pair = Pair(base, quote)
        if pair not in self._pairs:
            raise MessageError(f"symbol {symbol!r} is not one we subscribed to")
        return pair

    # --- websocket -----------------------------------------------------------------------------------

    def subscribe_messages(self, pairs) -> list[str]:
        self._pairs.update(pairs)
        return self._channel_messages("subscribe", pairs, snapshot=True)

    def unsubscribe_messages(self, pairs) -> list[str]:
        return self._channel_messages("unsubscribe", pairs)

    def _channel_messages(self, method: str, pairs, **options) -> list[str]:
        if not pairs:
            return []
        params = {"channel": "trade", "symbol": [self.symbol(pair) for pair in pairs], **options}
        return [json.dumps({"method": method, "params": params, "req_id": next(self._request_ids)})]

    def heartbeat_message(self) -> str:
        return json.dumps({"method": "ping", "req_id": next(self._request_ids)})

    def parse(self, message) -> Parsed:
        doc = load_json(message)
        if not isinstance(doc, dict):
            raise MessageError(f"message: expected an object, got {type(doc).__name__}")
        if "method" in doc or doc.get("success") is False:
            return self._method_reply(doc)
        channel = field_of(doc, "channel", "message")
        if channel == "trade":
            data = field_of(doc, "data", "trade")
            if not isinstance(data, list):
                raise MessageError("trade: 'data' is not a list")
            # one bad trade costs its message; the ids jump, so the gap fill brings the good ones back
            return Parsed(trades=[self._live_trade(item) for item in data])
        if channel == "heartbeat":
            return Parsed(ignored="heartbeat")
        if channel == "status":
            return Parsed(ignored=_status(doc))
        raise MessageError(f"unknown channel {channel!r}")

    def _method_reply(self, doc: dict) -> Parsed:
        method = doc.get("method")
        if doc.get("success") is False:  # a refused request: Kraken says why in `error`
            what = f"{method} refused" if method else "exchange error"
            about = f" ({doc['symbol']})" if doc.get("symbol") else ""
            raise MessageError(f"{what}: {doc.get('error') or 'no details'}{about}")
        if method == "pong":
            return Parsed(ignored="pong")
        if method not in ("subscribe", "unsubscribe"):
            raise MessageError(f"unknown method {method!r}")
        result = doc.get("result")
        if not isinstance(result, dict) or result.get("channel") != "trade":
            return Parsed(ignored=f"{method} ack for another channel")
        symbols = field_of(result, "symbol", f"{method} ack")
        pairs = tuple(self._pair_of(s) for s in (symbols if isinstance(symbols, list) else [symbols]))
        return Parsed(subscribed=pairs) if method == "subscribe" else Parsed(unsubscribed=pairs)

    def _live_trade(self, item) -> Trade:
        return self.trade(
            self._pair_of(field_of(item, "symbol", "trade")),
            trade_id=field_of(item, "trade_id", "trade"),
            price=field_of(item, "price", "trade"),
            amount=field_of(item, "qty", "trade"),
            side=field_of(item, "side", "trade"),
            exchange_time_ns=time_ns_from_iso(field_of(item, "timestamp", "trade"), "trade timestamp"),
        )

    # --- REST ----------------------------------------------------------------------------------------

    def _public(self, http, endpoint: str, params: dict):
        """The `result` of a public call. Kraken's `error` array comes with HTTP 200: its rate limit and busy
        errors are retried with the client's attempts and backoff, as a 429 or 503 would be; an error that
        lasts, or any other, is a MessageError naming it (the gap fill retries it, the rest report it)."""
        attempt, backoff = 0, None
        while True:
            doc = http.get_json(f"{self.rest_url}/{endpoint}", params)
            errors = field_of(doc, "error", f"{endpoint} answer")
            if not errors:
                return field_of(doc, "result", f"{endpoint} answer")
            text = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
            problem = f"{endpoint}: Kraken says {text}"
            limited = any(error in text for error in RATE_LIMIT_ERRORS)
            if limited:
                http.health.rate_limited += 1
            elif not any(error in text for error in BUSY_ERRORS):
                raise MessageError(problem)
            attempt += 1
            if attempt >= http.attempts:
                raise MessageError(f"{problem} after {attempt} attempts")
            backoff = backoff or Backoff(http.backoff.first_s, http.backoff.max_s)
            http.stop.sleep(retry_wait(backoff, None))

    def _pair_result(self, result, pair: Pair, endpoint: str):
        """The value Kraken keys by its own name for the pair (XXBTZUSD for XBTUSD), whatever else is beside."""
        if not isinstance(result, dict):
            raise MessageError(f"{endpoint}: expected an object, got {type(result).__name__}")
        base, quote = kraken_asset(pair.base), kraken_asset(pair.quote)
        names = {base + quote, f"X{base}Z{quote}", f"X{base}X{quote}", f"X{base}{quote}", f"{base}Z{quote}"}
        found = [key for key in result if key in names]
        if not found:
            raise MessageError(f"{endpoint}: no {pair} in the answer (keys {sorted(result)[:5]})")
        return result[found[0]]

    def recent_trades(self, http, pair: Pair, since_s: float, after_id: int | None = None) -> Page:
        """The trades after `after_id` (from `since_s` when no id is known), ascending, at most a page of 1000.

        A page that continues the previous one starts at the cursor that page ended with; otherwise from a
        second before `since_s` (the last trade's time, kept to the second), skipping the trades up to
        `after_id`."""
        cursor = self._cursors.pop(pair, None)
        if after_id is not None and cursor is not None and cursor[0] == after_id:
            since = cursor[1]
        else:
            since = str(max(0, int(since_s) - 1) * NS)
        for _ in range(SKIP_PAGES):
            result = self._public(
                http, "Trades", {"pair": self.rest_pair(pair), "since": since, "count": self.trades_per_page}
            )
            rows = self._pair_result(result, pair, "Trades")
            page = parse_rows(rows, lambda row: self._rest_trade(pair, row), "Trades")
            if after_id is not None:
                page.records = [trade for trade in page.records if trade.trade_id > after_id]
            page.more = len(rows) >= self.trades_per_page
            page.complete_from_s = int(since) / NS  # every trade after `since` is here or was already held
            if page.records or not page.more:
                break
            since = _next_since(result, since)  # a whole page of trades already held: go on past it
        else:  # asked again (the gap fill retries), it goes on from here
            self._cursors[pair] = (after_id, since)
            raise MessageError(f"Trades: {SKIP_PAGES} pages without a trade after id {after_id}; going on")
        page.records.sort(key=lambda trade: trade.trade_id)
        if page.more and page.records:
            self._cursors[pair] = (page.records[-1].trade_id, _next_since(result, since))
        return page

    def _rest_trade(self, pair: Pair, row) -> Trade:
        if not isinstance(row, list) or len(row) < 7:
            raise MessageError(f"trade row: expected 7 values, got {row!r:.80}")
        price, volume, when, side, trade_id = row[0], row[1], row[2], row[3], row[6]
        return self.trade(
            pair,
            trade_id=trade_id,
            price=price,
            amount=volume,
            side=REST_SIDES.get(side, side) if isinstance(side, str) else side,
            exchange_time_ns=_time_ns(when),
        )

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        """Closed candles opening at or after start_s, ascending, of the latest 720 Kraken serves.

        The last row is the candle still open (Kraken always sends it): dropped, and the next page starts
        there, so it is stored once it has closed."""
        params = {"pair": self.rest_pair(pair), "interval": interval_s // 60, "since": start_s - 1}
        rows = self._pair_result(self._public(http, "OHLC", params), pair, "OHLC")
        if not isinstance(rows, list):
            raise MessageError(f"OHLC: expected a list, got {type(rows).__name__}")
        still_open = _row_open_s(rows[-1]) if rows else None
        page = parse_rows(rows[:-1], lambda row: self._candle(pair, interval_s, row), "OHLC")
        page.records = sorted(
            (c for c in page.records if c.open_time_s >= start_s and c.open_time_s + interval_s <= end_s),
            key=lambda candle: candle.open_time_s,
        )  # outside what was asked: not a bad row, just not ours
        if still_open is not None:
            page.next_start_s = still_open
        elif page.records:
            page.next_start_s = page.records[-1].open_time_s + interval_s
        else:
            page.next_start_s = start_s + self.candle_reach_rows * interval_s
        return page

    def _candle(self, pair: Pair, interval_s: int, row) -> Candle:
        if not isinstance(row, list) or len(row) < 7:
            raise MessageError(f"candle row: expected 8 values, got {row!r:.80}")
        values = {key: decimal_from(row[index], f"candle {key}") for key, index in _OHLCV.items()}
        return Candle(
            exchange=self.name,
            pair=pair,
            interval_s=interval_s,
            open_time_s=int_from(row[0], "candle time"),
            **values,
        )

    def ticker(self, http, pair: Pair) -> Ticker:
        """The last 24 h: last trade, best bid and ask, 24 h high, low, volume and vwap, and the price 24 h ago.

        Kraken's `o` is the UTC day's opening price, not the price 24 h ago that `open` means for the other
        exchanges: `open` is the open of the 5-minute candle 24 h ago instead (one OHLC call), and the change
        is computed exactly from it."""
        doc = self._pair_result(self._public(http, "Ticker", {"pair": self.rest_pair(pair)}), pair, "Ticker")
        values = {key: _ticker_value(doc, source, index) for key, (source, index) in _TICKER_FIELDS.items()}
        last = values.pop("last")
        if last is None:
            raise MessageError("Ticker: missing 'c' (the last trade)")
        now_ns = time.time_ns()
        open_24 = self._price_at(http, pair, now_ns // NS - 86_400)
        if open_24:
            values.update(open=open_24, change_24h_pct=(last - open_24) / open_24 * 100)
        present = {key: value for key, value in values.items() if value is not None}
        return Ticker(exchange=self.name, pair=pair, time_ns=now_ns, last=last, **present)

    def _price_at(self, http, pair: Pair, moment_s: int) -> Decimal | None:
        """The open of the 5-minute candle holding `moment_s` (None if Kraken has none from then on)."""
        step = 300
        start = moment_s - moment_s % step
        page = self.candles(http, pair, step, start, moment_s + 2 * step)
        return page.records[0].open if page.records else None

    def assets(self, http) -> Page:
        """Nothing: Kraken's Assets has no names or logos, and its `decimals` are its ledger's scale, not the
        coin's; other sources give coin metadata."""
        return Page()


_OHLCV = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 6}  # 5 is the vwap, 7 the trade count
# ticker field -> (Kraken's key, index): index 1 of v/p/l/h is the last 24 h, index 0 today
_TICKER_FIELDS = {
    "last": ("c", 0),
    "bid": ("b", 0),
    "ask": ("a", 0),
    "high": ("h", 1),
    "low": ("l", 1),
    "volume": ("v", 1),
    "vwap": ("p", 1),
}


def _ticker_value(doc, key: str, index: int) -> Decimal | None:
    values = doc.get(key) if isinstance(doc, dict) else None
    if values is None:
        return None
    if not isinstance(values, list) or len(values) <= index:
        raise MessageError(f"Ticker {key}: expected a list, got {values!r:.80}")
    return decimal_from(values[index], f"Ticker {key}")


def _time_ns(seconds) -> int:
    """REST's trade time (a float of seconds, read as the exact decimal of its text) in nanoseconds."""
    value = decimal_from(seconds, "trade time")
    if not 0 <= value < 10**11:
        raise MessageError(f"trade time: expected seconds since 1970, got {seconds!r}")
    return int(value * NS)


def _next_since(result, since: str) -> str:
    """Where the page after the one asked `since` begins: a nanosecond before Kraken's `last` (the time of the
    page's last trade; `since` is exclusive and several trades may share that nanosecond, some beyond the page:
    those already held are dropped by id), yet always past `since`, so a walk never stands still."""
    last = int_from(field_of(result, "last", "Trades answer"), "Trades last")
    return str(max(last - 1, int(since) + 1))


def _status(doc: dict) -> str:
    """A status update, its connection id exact (it exceeds 2^53: JSON integers are parsed as int, no float)."""
    data = doc.get("data")
    item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    connection_id = item.get("connection_id")
    if connection_id is not None and (isinstance(connection_id, bool) or not isinstance(connection_id, int)):
        raise MessageError(f"status: connection_id is not an integer: {connection_id!r}")
    return f"status: system {item.get('system', 'unknown')}, connection {connection_id}"


def _row_open_s(row) -> int | None:
    try:
        return int_from(row[0], "candle time") if isinstance(row, list) and row else None
    except MessageError:
        return None
