"""A test-only exchange and its replay server, for the parts of the exchange contract Bitstamp cannot show.

`Sequenced` (registered only by the tests that use it, never in EXCHANGES) speaks a small protocol made of the
shapes the real exchanges use: acknowledgements that name no pair (a request id, as Binance) or many at once
(as Coinbase's `subscriptions`), a per-connection message sequence whose gaps mean lost messages (as Coinbase's
heartbeat counter), trade ids that go up by one per pair (as Kraken), RFC 3339 trade times in milliseconds,
and REST trades paged by id (`after_id`, `limit`, `more`). `SequencedReplay` serves it locally.
"""

import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed

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
from collector.records import Asset, Candle, Ticker, Trade
from tests.replay.server import ReplayServer

# --- the adapter -------------------------------------------------------------------------------------------


class Sequenced(Exchange):
    name = "sequenced"
    ws_url = "ws://127.0.0.1:9"
    rest_url = "http://127.0.0.1:9"
    rate_limit = RateLimit(requests=1000, per_seconds=1)
    heartbeat_s = 10
    silence_s = 30
    candle_steps = frozenset({60, 3600})
    candle_reach_rows = 24
    trade_history_s = 86_400
    trade_cursor = "id"
    trade_time_unit_ns = 1_000_000  # its REST trades carry milliseconds, as its websocket does
    sequential_trade_ids = True
    page_limit = 3  # trades per REST page: small, so a gap takes several pages

    def __init__(self, config):
        super().__init__(config)
        self._pairs: dict[str, Pair] = {}
        self._requests: dict[int, tuple[str, tuple[Pair, ...]]] = {}  # request id -> (op, pairs)
        self._request_ids = itertools.count(1)
        self._last_seq: dict[int, int] = {}  # per session (connection): the last sequence number seen
        self.connections_opened = 0

    def connection_opened(self) -> None:
        """Sessions before the previous one can send nothing more (a hand-over keeps only the last two)."""
        self.connections_opened += 1
        for session in sorted(self._last_seq)[:-1]:
            del self._last_seq[session]

    def subscribe_messages(self, pairs) -> list[str]:
        self._pairs.update({str(pair): pair for pair in pairs})
        return self._request("subscribe", pairs)

    def unsubscribe_messages(self, pairs) -> list[str]:
        return self._request("unsubscribe", pairs)

    def _request(self, op: str, pairs) -> list[str]:
        if not pairs:
            return []
        request_id = next(self._request_ids)
        self._requests[request_id] = (op, tuple(pairs))
        return [json.dumps({"op": op, "id": request_id, "pairs": [str(pair) for pair in pairs]})]

    def heartbeat_message(self) -> None:
        return None  # the server sends heartbeats; websocket pings prove the link

    def parse(self, message) -> Parsed:
        doc = load_json(message)
        if isinstance(doc, dict) and "result" in doc:
            op, pairs = self._requests.pop(int_from(field_of(doc, "id", "ack"), "ack id"), (None, ()))
            if op is None:
                raise MessageError(f"ack: no request with id {doc['id']!r}")
            return Parsed(subscribed=pairs) if op == "subscribe" else Parsed(unsubscribed=pairs)
        kind = field_of(doc, "type", "message")
        if kind == "subscriptions":
            names = field_of(doc, "pairs", "subscriptions")
            if not isinstance(names, list):
                raise MessageError("subscriptions: 'pairs' is not a list")
            return Parsed(subscribed=tuple(self._pair(name) for name in names))
        if kind not in ("trade", "heartbeat"):
            raise MessageError(f"unknown type {kind!r}")
        parsed = Parsed(missed=self._sequence_gap(doc))
        if kind == "trade":
            pair = self._pair(field_of(doc, "pair", "trade"))
            rows = field_of(doc, "trades", "trade")
            if not isinstance(rows, list):
                raise MessageError("trade: 'trades' is not a list")
            parsed.trades = [self._trade(pair, row) for row in rows]
        return parsed

    def _sequence_gap(self, doc) -> tuple[Pair, ...]:
        session = int_from(field_of(doc, "session", "message"), "session")
        seq = int_from(field_of(doc, "seq", "message"), "seq")
        last = self._last_seq.get(session)
        self._last_seq[session] = max(seq, last or seq)
        return tuple(self._pairs.values()) if last is not None and seq > last + 1 else ()

    def _pair(self, name) -> Pair:
        if name not in self._pairs:
            raise MessageError(f"pair {name!r} is not one we subscribed to")
        return self._pairs[name]

    def _trade(self, pair: Pair, row) -> Trade:
        return self.trade(
            pair,
            trade_id=field_of(row, "id", "trade"),
            price=field_of(row, "price", "trade"),
            amount=field_of(row, "qty", "trade"),
            side=field_of(row, "side", "trade"),
            exchange_time_ns=time_ns_from_iso(field_of(row, "time", "trade"), "trade time"),
        )

    def recent_trades(self, http, pair: Pair, since_s: float, after_id: int | None = None) -> Page:
        params = {"pair": str(pair), "limit": self.page_limit}
        if after_id is None:
            params["since_ms"] = int(since_s * 1000)
        else:
            params["after_id"] = after_id
        doc = http.get_json(f"{self.rest_url}/trades", params)
        rows = field_of(doc, "trades", "trades")
        page = parse_rows(rows, lambda row: self._trade(pair, row), "trades")
        page.more = field_of(doc, "more", "trades") is True
        with contextlib.suppress(MessageError):  # the last row's id, even in a row unusable otherwise
            page.next_after_id = int_from(field_of(rows[-1], "id", "trade"), "trade id") if rows else None
        return page

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        doc = http.get_json(
            f"{self.rest_url}/candles", {"pair": str(pair), "interval": interval_s, "start": start_s}
        )
        page = parse_rows(
            field_of(doc, "candles", "candles"), lambda row: self._candle(pair, interval_s, row), "c"
        )
        page.records = [
            c for c in page.records if start_s <= c.open_time_s and c.open_time_s + interval_s <= end_s
        ]
        page.next_start_s = end_s
        return page

    def _candle(self, pair: Pair, interval_s: int, row) -> Candle:
        if not isinstance(row, list) or len(row) != 6:
            raise MessageError("candle: expected [open time, open, high, low, close, volume]")
        values = [decimal_from(value, "candle value") for value in row[1:]]
        return Candle(self.name, pair, interval_s, int_from(row[0], "candle time"), *values)

    def ticker(self, http, pair: Pair) -> Ticker:
        doc = http.get_json(f"{self.rest_url}/ticker", {"pair": str(pair)})
        return Ticker(self.name, pair, time.time_ns(), decimal_from(field_of(doc, "last", "ticker"), "last"))

    def assets(self, http) -> Page:
        return Page(records=[Asset("BTC", time.time_ns(), name="Bitcoin")])


# --- the replay server ------------------------------------------------------------------------------------------


@dataclass
class SequencedTrade:
    pair: str
    id: int
    price: str
    qty: str
    side: str
    time_ms: int

    def row(self) -> dict:
        moment = datetime.fromtimestamp(self.time_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return {
            "id": self.id,
            "price": self.price,
            "qty": self.qty,
            "side": self.side,
            "time": f"{moment}.{self.time_ms % 1000:03d}Z",
        }


class SequencedReplay(ReplayServer):
    """Every published trade is kept for /trades."""

    def __init__(self, ack_style: str = "id"):
        super().__init__()
        self.ack_style = ack_style  # "id": {"result":null,"id":n}; "many": one `subscriptions` naming all
        self.trades: list[SequencedTrade] = []
        self.sessions: dict[object, int] = {}  # open connection -> its session number (1, 2, ...)
        self.subscriptions: dict[object, set[str]] = {}
        self.refused = 0  # connections to close at once, before any ack
        self.served_ids: list[int] = []  # every trade id /trades answered with, in order
        self.sessions_opened = 0
        self._seq: dict[object, int] = {}
        self._next_id: dict[str, int] = {}
        self._lock = threading.Lock()

    def open_connections(self) -> list:
        return list(self.sessions)

    # --- websocket ----------------------------------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        if self.refused:
            self.refused -= 1
            return  # closed before anything: the client backs off
        self.sessions_opened += 1
        self.sessions[conn], self.subscriptions[conn], self._seq[conn] = self.sessions_opened, set(), 0
        try:
            async for message in conn:
                request = json.loads(message)
                wanted = set(request["pairs"])
                if request["op"] == "subscribe":
                    self.subscriptions[conn] |= wanted
                else:
                    self.subscriptions[conn] -= wanted
                if self.ack_style == "id" or request["op"] == "unsubscribe":
                    await conn.send(json.dumps({"result": None, "id": request["id"]}))
                else:
                    ack = {"type": "subscriptions", "pairs": sorted(self.subscriptions[conn])}
                    await conn.send(json.dumps(ack))
        except ConnectionClosed:
            pass
        finally:
            for table in (self.sessions, self.subscriptions, self._seq):
                table.pop(conn, None)

    def subscribed(self, pair: str) -> int:
        return sum(pair in pairs for pairs in list(self.subscriptions.values()))

    def publish(
        self,
        pair: str,
        price: str,
        qty: str = "0.25",
        side: str = "buy",
        deliver: bool = True,
        in_sequence: bool = True,
        time_ms: int | None = None,
    ) -> SequencedTrade:
        """A trade happens: kept for /trades and, if `deliver`, sent to every connection subscribed to the
        pair. One not delivered still takes its place in each connection's sequence (a lost message), unless
        not `in_sequence` (the stream skipped it: only its trade id shows the gap)."""
        with self._lock:
            trade_id = self._next_id.get(pair, 1000)
            self._next_id[pair] = trade_id + 1
            moment_ms = time.time_ns() // 1_000_000 if time_ms is None else time_ms
            trade = SequencedTrade(pair, trade_id, price, qty, side, moment_ms)
            self.trades.append(trade)
        if deliver or in_sequence:
            self._send(lambda: {"type": "trade", "pair": pair, "trades": [trade.row()]}, pair, deliver)
        return trade

    def heartbeat(self) -> None:
        self._send(lambda: {"type": "heartbeat"}, None, True)

    def _send(self, body, pair: str | None, deliver: bool) -> None:
        async def send():
            for conn, pairs in list(self.subscriptions.items()):
                if pair is None or pair in pairs:
                    self._seq[conn] += 1
                    if deliver:
                        message = {**body(), "session": self.sessions[conn], "seq": self._seq[conn]}
                        with contextlib.suppress(ConnectionClosed):
                            await conn.send(json.dumps(message))

        self._call(send())

    # --- HTTP --------------------------------------------------------------------------------------------------

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        url = urlparse(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if url.path == "/trades":
            return 200, {}, json.dumps(self._trades(query))
        if url.path == "/candles":
            start = int(query["start"])
            step = int(query["interval"])
            now = int(time.time())
            opens = range(start + -start % step, now - now % step - step + 1, step)
            return (
                200,
                {},
                json.dumps({"candles": [[t, "100", "101", "99", "100.5", "2"] for t in opens][:100]}),
            )
        if url.path == "/ticker":
            return 200, {}, json.dumps({"last": "100.5"})
        return 404, {}, json.dumps({"error": "not found"})

    def _trades(self, query: dict) -> dict:
        """Ascending, after `after_id` (or from `since_ms`), at most `limit`, and whether more follow."""
        with self._lock:
            ours = [trade for trade in self.trades if trade.pair == query["pair"]]
        if "after_id" in query:
            ours = [trade for trade in ours if trade.id > int(query["after_id"])]
        else:
            ours = [trade for trade in ours if trade.time_ms >= int(query["since_ms"])]
        page = ours[: int(query["limit"])]
        self.served_ids += [trade.id for trade in page]
        return {"trades": [trade.row() for trade in page], "more": len(ours) > len(page)}
