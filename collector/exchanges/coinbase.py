"""Coinbase: Advanced Trade websocket for live trades, the Coinbase Exchange REST API for the rest.

- Live: `market_trades` and `heartbeats` on wss://advanced-trade-ws.coinbase.com, subscribed as soon as the
  connection opens (Coinbase closes one with no subscription after 5 s; `heartbeats` keeps a quiet channel
  open). One `subscriptions` message acknowledges every product at once: it lists all current subscriptions.
  A product that leaves the list without being unsubscribed (Coinbase closed its channel by itself) asks for
  a reconnect, which subscribes it again and gap fills it.
- Side: Coinbase reports the MAKER's side (the resting order's), on the websocket and on REST alike; checked
  on a real capture, where every trade at the best ask said SELL. The stored `side` is the taker's, the
  opposite: a trade Coinbase calls SELL was a taker buy.
- Missed messages: `sequence_num` numbers every message of a connection, `heartbeat_counter` every heartbeat;
  a jump in either (forwards, or back to a lower number: a reset) means messages were lost, so every pair
  of the connection is gap filled. A message that cannot be parsed does not move them on: the next one
  shows the jump, so its trades are recovered over REST.
  This per-connection state is reset in connection_opened; during the ~1 s hand-over after a reconnect the
  old connection's numbers may read as jumps: a needless gap fill by id, never a lost trade.
- Recovery: Exchange `/products/{id}/trades?before={id}` is the page of trades just after a trade id (its
  `before` cursor pages towards newer trades), so a gap fill resumes exactly after the last stored id. The
  Advanced Trade market ticker only gives the latest trades of a time window: it cannot resume by id.
- Times: REST trades carry microseconds, so the point time keeps microseconds (plus the id's sub-µs offset).
- One `rest_url` (https://api.exchange.coinbase.com) serves trades, candles, ticker and stats.
"""

import json
import time
from datetime import UTC, datetime

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

TAKER_SIDE = {"BUY": "sell", "SELL": "buy"}  # Coinbase's side is the maker's
TRADES_PER_PAGE = 1000  # the Exchange API's maximum
CANDLES_PER_REQUEST = 300  # more is refused


class Coinbase(Exchange):
    name = "coinbase"
    ws_url = "wss://advanced-trade-ws.coinbase.com"
    rest_url = "https://api.exchange.coinbase.com"
    rate_limit = RateLimit(requests=10, per_seconds=1)  # public endpoints: 10 requests a second
    silence_s = 10  # ten missed server heartbeats (its `heartbeats` tick every second; the client sends none)
    candle_steps = frozenset({60, 300, 900, 3600, 21600, 86400})
    # /trades reaches back to a pair's first trade; past a week a gap fill would take thousands of pages,
    # and the candles cover that span
    trade_history_s = 7 * 86_400
    trade_cursor = "id"
    trade_time_unit_ns = 1_000  # REST trades carry microseconds
    sequential_trade_ids = True  # a product's trade ids go up by one

    def __init__(self, config):
        super().__init__(config)
        self._pairs_by_product: dict[str, Pair] = {}
        self.connection_opened()

    @staticmethod
    def product(pair: Pair) -> str:
        return f"{pair.base}-{pair.quote}"

    def _pair(self, product) -> Pair:
        if not isinstance(product, str) or product not in self._pairs_by_product:
            raise MessageError(f"product {product!r} is not one we subscribed to")
        return self._pairs_by_product[product]

    # --- websocket -----------------------------------------------------------------------------------

    def connection_opened(self) -> None:
        self._last_sequence: int | None = None
        self._last_heartbeat: int | None = None
        self._heartbeats_requested = False
        self._heartbeats_listed = False  # a `subscriptions` message named the heartbeats channel
        self._requested: set[Pair] = set()  # market_trades subscribes sent on this connection
        self._listed: frozenset[Pair] = frozenset()  # what its last `subscriptions` message listed

    def subscribe_messages(self, pairs) -> list[str]:
        pairs = list(pairs)
        for pair in pairs:
            self._pairs_by_product[self.product(pair)] = pair
        self._requested |= set(pairs)
        messages = [self._channel_message("subscribe", "market_trades", pairs)] if pairs else []
        if pairs and not self._heartbeats_requested:
            self._heartbeats_requested = True
            messages.append(self._channel_message("subscribe", "heartbeats", []))
        return messages

    def unsubscribe_messages(self, pairs) -> list[str]:
        pairs = list(pairs)
        self._requested -= set(pairs)
        return [self._channel_message("unsubscribe", "market_trades", pairs)] if pairs else []

    def _channel_message(self, kind: str, channel: str, pairs) -> str:
        message = {"type": kind, "channel": channel}
        if pairs:
            message["product_ids"] = [self.product(pair) for pair in pairs]
        return json.dumps(message)

    def heartbeat_message(self) -> None:
        return None  # the `heartbeats` channel comes from the server

    def parse(self, message) -> Parsed:
        doc = load_json(message)
        if not isinstance(doc, dict):
            raise MessageError(f"message: expected an object, got {type(doc).__name__}")
        if doc.get("type") == "error":
            raise MessageError(f"exchange error: {doc.get('message') or doc.get('reason') or 'no details'}")
        channel = field_of(doc, "channel", "message")
        events = field_of(doc, "events", "message")
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            raise MessageError("message: 'events' is not a list of objects")
        sequence = doc.get("sequence_num")
        sequence = None if sequence is None else int_from(sequence, "sequence_num")
        if channel == "market_trades":
            parsed = Parsed(trades=self._trades(events))
        elif channel == "heartbeats":
            parsed = Parsed(ignored="heartbeat", missed=self._heartbeat_gap(events))
        elif channel == "subscriptions":
            parsed = self._subscriptions(events)
        else:
            raise MessageError(f"unknown channel {channel!r}")
        # only now that the message was usable: an unusable one shows up as a jump on the next message
        if sequence is not None:
            if _jumped(self._last_sequence, sequence):
                parsed.missed = self._connection_pairs()
            self._last_sequence = sequence
        return parsed

    def _trades(self, events) -> list[Trade]:
        trades = []
        for event in events:
            if event.get("type") not in ("snapshot", "update"):
                raise MessageError(f"market_trades: unknown event type {event.get('type')!r}")
            rows = field_of(event, "trades", "market_trades event")
            if not isinstance(rows, list):
                raise MessageError("market_trades: 'trades' is not a list")
            trades += [self._live_trade(row) for row in rows]
        return sorted(trades, key=lambda trade: trade.trade_id)  # snapshots come newest first

    def _live_trade(self, row) -> Trade:
        return self._trade(self._pair(field_of(row, "product_id", "trade")), row)

    def _trade(self, pair: Pair, row) -> Trade:
        """A trade row, the same on the websocket and over REST (where the id is a number, the side lower case)."""
        return self.trade(
            pair,
            trade_id=field_of(row, "trade_id", "trade"),
            price=field_of(row, "price", "trade"),
            amount=field_of(row, "size", "trade"),
            side=_taker_side(field_of(row, "side", "trade")),
            exchange_time_ns=time_ns_from_iso(field_of(row, "time", "trade"), "trade time"),
        )

    def _heartbeat_gap(self, events) -> tuple[Pair, ...]:
        """Its `current_time` is Go's format, not ISO (and not needed): only the counter is read."""
        if not events:
            raise MessageError("heartbeats: no event")
        counter = int_from(field_of(events[-1], "heartbeat_counter", "heartbeat"), "heartbeat_counter")
        previous, self._last_heartbeat = self._last_heartbeat, counter
        return self._connection_pairs() if _jumped(previous, counter) else ()

    def _subscriptions(self, events) -> Parsed:
        """The subscriptions of the connection, listed after each (un)subscribe: what is new in the list is
        acknowledged, what left it is unsubscribed. The first list naming `heartbeats` may be its ack alone
        (whether Coinbase lists every channel or only the one asked for is unconfirmed): without a
        `market_trades` list it changes nothing; later, no such list means no product is left."""
        lists, names_heartbeats = [], False
        for event in events:
            subscriptions = field_of(event, "subscriptions", "subscriptions event")
            if not isinstance(subscriptions, dict):
                raise MessageError("subscriptions: expected an object")
            products = subscriptions.get("market_trades")
            if products is not None:
                if not isinstance(products, list):
                    raise MessageError("subscriptions: 'market_trades' is not a list")
                lists.append(products)
            names_heartbeats = names_heartbeats or "heartbeats" in subscriptions
        heartbeats_ack = names_heartbeats and not self._heartbeats_listed
        self._heartbeats_listed |= names_heartbeats
        if not lists and heartbeats_ack:
            return Parsed(ignored="subscriptions")
        listed = {
            self._pairs_by_product[p]
            for products in lists
            for p in products
            if isinstance(p, str) and p in self._pairs_by_product
        }
        new, gone = listed - self._listed, self._listed - listed
        self._listed = frozenset(listed)
        return Parsed(
            subscribed=tuple(sorted(new)),
            unsubscribed=tuple(sorted(gone)),
            # Coinbase closed a channel by itself (idle): heartbeats go on, so no silence would ever show it
            reconnect_requested=bool(gone & self._requested),
            ignored="subscriptions",
        )

    def _connection_pairs(self) -> tuple[Pair, ...]:
        return tuple(sorted(self._listed | self._requested))

    # --- HTTP ----------------------------------------------------------------------------------------

    def recent_trades(self, http, pair: Pair, since_s: float, after_id: int | None = None) -> Page:
        """Ascending. With an id: the page of trades just after it (`before` is Coinbase's cursor towards newer
        trades), `more` while it is full, `next_after_id` its newest row's id even when that row is unusable (a
        page of only bad rows does not end the paging). Without one: the page that holds since_s (the newest,
        or one searched for by id with the `after` cursor); `more` when newer trades follow it, which the gap
        fill then pages through by id."""
        url = f"{self.rest_url}/products/{self.product(pair)}/trades"
        if after_id is not None:
            page, ids, full = self._trades_page(http, pair, url, {"before": after_id})
            page.records = [trade for trade in page.records if trade.trade_id > after_id]
            page.more = full and max(ids, default=after_id) > after_id
            return page
        page, ids, older = self._trades_page(http, pair, url, {})
        if not older or not ids or (page.records and page.records[0].time_ns < int(since_s * 1e9)):
            return page  # it holds since_s, or all there is
        return self._page_holding(http, pair, url, since_s, min(ids))

    def _page_holding(self, http, pair: Pair, url: str, since_s: float, later_id: int) -> Page:
        """The page of ids that holds since_s, older than `later_id` (a trade at or after since_s). Ids grow
        with time, so it is searched for by id (doubling steps back, then halving): a week of a busy pair
        costs some twenty small requests, not the thousands of pages a walk back would."""
        since_ns = int(since_s * 1e9)
        high, low, step = later_id, None, TRADES_PER_PAGE
        while low is None:
            probe = high - step
            if probe <= 0 or self._all_before(http, pair, url, probe, since_ns):
                low = max(probe, 0)
            else:
                high, step = probe, step * 2
        while high - low > TRADES_PER_PAGE:
            middle = (low + high) // 2
            if self._all_before(http, pair, url, middle, since_ns):
                low = middle
            else:
                high = middle
        page, _, _ = self._trades_page(http, pair, url, {"after": low + TRADES_PER_PAGE + 1})
        page.more = True  # `high` and the newer trades follow, paged by id
        return page

    def _all_before(self, http, pair: Pair, url: str, trade_id: int, since_ns: int) -> bool:
        """Whether every trade up to `trade_id` was made before since_ns: the latest of them is (or there is
        none). An unreadable one counts as not before: starting earlier costs pages, never trades."""
        rows = http.get_json(url, {"after": trade_id + 1, "limit": 1})
        page = parse_rows(rows, lambda row: self._trade(pair, row), "trades")
        return not rows or (bool(page.records) and page.records[0].time_ns < since_ns)

    def _trades_page(self, http, pair: Pair, url: str, cursor: dict) -> tuple[Page, list[int], bool]:
        """A page of trades, ascending; the ids of its rows, usable or not; whether it was full (the exchange
        has more beyond it)."""
        rows = http.get_json(url, {**cursor, "limit": TRADES_PER_PAGE})
        page = parse_rows(rows, lambda row: self._trade(pair, row), "trades")
        page.records.sort(key=lambda trade: trade.trade_id)  # Coinbase answers newest first
        ids = [number for number in map(_row_id, rows) if number is not None]
        page.next_after_id = max(ids, default=None)
        return page, ids, len(rows) >= TRADES_PER_PAGE

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        """Closed candles of one window of CANDLES_PER_REQUEST intervals from start_s, ascending. Coinbase
        answers newest first and omits intervals without trades, so the next page starts after the window."""
        window_end_s = start_s + CANDLES_PER_REQUEST * interval_s
        params = {
            "granularity": interval_s,
            "start": _iso(start_s),
            "end": _iso(window_end_s - interval_s),  # inclusive: the window's last candle
        }
        rows = http.get_json(f"{self.rest_url}/products/{self.product(pair)}/candles", params)
        page = parse_rows(rows, lambda row: self._candle(pair, interval_s, row), "candles")
        page.next_start_s = window_end_s
        page.records = sorted(
            (c for c in page.records if c.open_time_s >= start_s and c.open_time_s + interval_s <= end_s),
            key=lambda candle: candle.open_time_s,
        )  # outside what was asked, or still open: not a bad row, just not ours
        return page

    def _candle(self, pair: Pair, interval_s: int, row) -> Candle:
        if not isinstance(row, list) or len(row) < 6:
            raise MessageError(f"candle: expected [time, low, high, open, close, volume], got {row!r}")
        values = {
            name: decimal_from(value, f"candle {name}") for name, value in zip(_ROW, row[1:6], strict=True)
        }
        return Candle(
            exchange=self.name,
            pair=pair,
            interval_s=interval_s,
            open_time_s=int_from(row[0], "candle time"),
            **values,
        )

    def ticker(self, http, pair: Pair) -> Ticker:
        """The last trade and best bid/ask from /ticker, the last 24 h from /stats; the change is computed
        exactly from the 24 h open."""
        base = f"{self.rest_url}/products/{self.product(pair)}"
        tick = http.get_json(f"{base}/ticker")
        stats = http.get_json(f"{base}/stats")
        last = decimal_from(field_of(tick, "price", "ticker"), "ticker price")
        values = {
            key: decimal_from(doc[key], f"ticker {key}")
            for doc, keys in ((tick, ("bid", "ask")), (stats, ("open", "high", "low", "volume")))
            for key in keys
            if isinstance(doc, dict) and doc.get(key) not in (None, "")
        }
        if values.get("open"):
            values["change_24h_pct"] = (last - values["open"]) / values["open"] * 100
        return Ticker(exchange=self.name, pair=pair, time_ns=time.time_ns(), last=last, **values)

    def assets(self, http) -> Page:
        """No coin metadata from Coinbase: CoinGecko (or Bitstamp) provides names and logos."""
        return Page()


_ROW = ("low", "high", "open", "close", "volume")  # after the time, in Coinbase's order


def _jumped(last: int | None, number: int) -> bool:
    """A counter skipped numbers (messages were lost) or started again lower (what came between is unknown);
    the same number again is a repeat, no jump."""
    return last is not None and (number > last + 1 or number < last)


def _taker_side(maker_side) -> str:
    side = maker_side.upper() if isinstance(maker_side, str) else None
    if side not in TAKER_SIDE:
        raise MessageError(f"trade side: expected BUY or SELL, got {maker_side!r}")
    return TAKER_SIDE[side]


def _row_id(row) -> int | None:
    """A REST row's trade id, if it has a readable one: where the next page starts, even past a bad row."""
    try:
        return int_from(row.get("trade_id"), "trade_id") if isinstance(row, dict) else None
    except MessageError:
        return None


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
