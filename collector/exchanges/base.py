"""What every exchange adapter provides. An adapter is one small class per module, registered in EXCHANGES."""

import calendar
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

import orjson

from collector.config import ExchangeConfig, Pair
from collector.records import Ticker, Trade


class MessageError(ValueError):
    """A message the adapter cannot use: counted and logged by the stream, never fatal."""


@dataclass
class Parsed:
    """What one websocket message meant."""

    trades: list[Trade] = field(default_factory=list)
    reconnect_requested: bool = False
    subscribed: tuple[Pair, ...] = ()  # every pair this message acknowledges (one ack may name many, or none
    unsubscribed: tuple[Pair, ...] = ()  # by name: the adapter maps a request id back to its pairs)
    missed: tuple[Pair, ...] = ()  # messages for these pairs were lost before this one: gap fill them
    ignored: str | None = None  # known but uninteresting (heartbeat replies, acks we do not track)


@dataclass
class Page:
    """What one REST answer held: the usable records, and what was wrong with each row that was skipped.

    One bad row never costs the others. `next_start_s` (candles) is where the following page begins, so
    paging goes on past a page whose rows were all bad or that was empty. `complete_from_s` (recent trades
    by time) is the earliest time from which the answer holds every trade: its window, as of when it was
    answered. `more` (recent trades by id) says the exchange has trades after this page's last one, and
    `next_after_id` the id to page on after: the last row's, usable or not (a page of only bad rows still
    says where the next one starts; without it, the last usable trade's id is used).
    """

    records: list = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    next_start_s: int | None = None
    complete_from_s: float | None = None
    more: bool = False
    next_after_id: int | None = None


def parse_rows(rows, parse_row: Callable, what: str) -> Page:
    """Each row through parse_row; a row that raises MessageError is skipped and described."""
    if not isinstance(rows, list):
        raise MessageError(f"{what}: expected a list, got {type(rows).__name__}")
    page = Page()
    for row in rows:
        try:
            page.records.append(parse_row(row))
        except MessageError as exc:
            page.bad_rows.append(f"{exc}: {json.dumps(row, default=str)[:200]}")
    return page


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float
    # An exchange that reports its own count of what this IP used (Binance: X-MBX-USED-WEIGHT-1M against 6000
    # a minute, shared with anything else on the IP): near the limit, requests wait for the next minute.
    used_header: str | None = None
    used_limit: int | None = None


class Exchange:
    """Declarative endpoints (overridable from config) plus the protocol-specific parts."""

    name: str
    ws_url: str
    rest_url: str
    rate_limit: RateLimit
    heartbeat_s: float  # how often the client sends an application heartbeat
    silence_s: float  # no message at all for this long (heartbeat replies included) = dead connection
    candle_steps: frozenset[
        int
    ]  # candle intervals (seconds) the exchange offers; config is checked against it
    candle_reach_rows: int | None = None  # how many of the latest candles it serves; None: all it has
    candle_reach_s: float | None = None  # how far back from now its candles reach (CoinGecko); None: no limit
    trade_history_s: float  # how far back its "recent trades" call reaches: older gaps cannot be filled
    live_trades: bool = True  # False: a REST-only source (CoinGecko): no websocket, no stream, no gap fill
    # a source without live trades refreshes its tickers (its "now" price) this often, between backfill rounds
    prices_every_s: float | None = None
    trade_cursor: str = "time"  # how recent_trades pages: "time" (windows from since_s) or "id" (after_id)
    # The precision the live feed and the REST recovery path share: a trade's point time is its exchange time
    # truncated to it, plus its id modulo it, so the live and the recovered trade are one point.
    trade_time_unit_ns: int
    sequential_trade_ids: bool = False  # a pair's ids go up by one: a jump on the live feed is a gap
    max_connection_s: float | None = None  # the exchange ends a connection after this: hand over before it
    max_pairs: int | None = None  # the most pairs a connection streams: the config check refuses more
    max_messages_per_s: int | None = None  # the most (un)subscribe requests a second sent on a connection

    def __init__(self, config: ExchangeConfig):
        self.ws_url = config.ws_url or self.ws_url
        self.rest_url = config.rest_url or self.rest_url

    def trade(self, pair: Pair, trade_id, price, amount, side: str, exchange_time_ns: int) -> Trade:
        """The one way an adapter builds a Trade: exact values, an integer id, and the point time."""
        number = int_from(trade_id, "trade id")
        if isinstance(exchange_time_ns, bool) or not isinstance(exchange_time_ns, int):  # an adapter's bug
            raise TypeError(f"exchange_time_ns: exact integer nanoseconds, got {exchange_time_ns!r}")
        if side not in ("buy", "sell"):
            raise MessageError(f"trade side: expected buy or sell, got {side!r}")
        unit = self.trade_time_unit_ns
        return Trade(
            exchange=self.name,
            pair=pair,
            trade_id=number,
            price=decimal_from(price, "trade price"),
            amount=decimal_from(amount, "trade amount"),
            side=side,
            time_ns=exchange_time_ns - exchange_time_ns % unit + number % unit,
        )

    def tickers(self, http, pairs) -> Page | None:
        """Every pair's ticker in one call, where the exchange has one (CoinGecko); None: a `ticker` call each."""
        return None

    # websocket
    def connection_url(self, pairs) -> str:
        """Where a connection for `pairs` opens (an exchange may name its streams in the URL)."""
        return self.ws_url

    def connection_opened(self) -> None:
        """A new connection starts (before its subscribe messages): reset per-connection state. During a
        hand-over the old connection still delivers for a moment (acks included), so keep such state keyed by
        what it names, and never reuse a request id: an old connection's late ack must not name new pairs."""

    def subscribe_messages(self, pairs) -> list[str]:
        raise NotImplementedError

    def unsubscribe_messages(self, pairs) -> list[str]:
        raise NotImplementedError

    def heartbeat_message(self) -> str | None:
        raise NotImplementedError

    def parse(self, message: str | bytes) -> Parsed:
        raise NotImplementedError

    # REST (each takes an HttpClient); pages of rows skip a bad row instead of failing
    def recent_trades(self, http, pair: Pair, since_s: float, after_id: int | None = None) -> Page:
        """Page of Trade, ascending.

        trade_cursor "time": from `since_s` on, as far as trade_history_s reaches, with complete_from_s set (an
        answer delayed by retries may no longer reach `since_s`: the caller then asks again).
        trade_cursor "id": the trades after `after_id` (from `since_s` when no id is known), with `more` set
        while the exchange has trades after the page's last one, and `next_after_id` the last row's id (usable
        or not), so a page of only bad rows does not end the paging."""
        raise NotImplementedError

    def candles(self, http, pair: Pair, interval_s: int, start_s: int, end_s: int) -> Page:
        """Page of closed Candle opening at or after start_s, ascending, with next_start_s set."""
        raise NotImplementedError

    def ticker(self, http, pair: Pair) -> Ticker:
        raise NotImplementedError

    def assets(self, http) -> Page:
        """Page of Asset."""
        raise NotImplementedError


def load_json(message: str | bytes):
    """JSON with every non-integer number kept as the exact Decimal of its text."""
    try:
        return json.loads(message, parse_float=Decimal)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MessageError(f"not JSON: {exc}") from exc


def load_json_inexact(message: str | bytes):
    """JSON parsed fast (orjson) but not exactly: non-integer numbers, and integers past 64 bits, become floats. For
    a message whose values that matter are strings or integers: the caller checks that they are, and parses the
    message again with load_json when they are not, or when this returns None (JSON that orjson refuses, e.g. a
    lone surrogate or NaN, which load_json either accepts or explains)."""
    try:
        return orjson.loads(message)
    except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
        return None


def decimal_from(value, what: str) -> Decimal:
    """An exact decimal from an exchange's string or JSON number (parsed by load_json as Decimal)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise MessageError(f"{what}: expected a number, got {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError) as exc:
        raise MessageError(f"{what}: expected a number, got {value!r}") from exc
    if not number.is_finite() or not _FLOAT_TINY <= abs(number) <= _FLOAT_HUGE and number:
        # a value no float can hold would be stored as infinity or 0 (or not at all): no market has one
        raise MessageError(f"{what}: expected a finite number a float can hold, got {value!r}")
    return number


_FLOAT_HUGE = Decimal("1e308")
_FLOAT_TINY = Decimal("1e-300")


def time_ns_from_iso(text, what: str = "time") -> int:
    """Exact integer nanoseconds of an RFC 3339 time (`Z` or an offset; digits past the ninth are cut)."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise MessageError(f"{what}: expected an RFC 3339 time, got {text!r}")
    date, fraction, zone = match.group("date"), match.group("fraction") or "", match.group("zone")
    try:
        moment = datetime.fromisoformat(f"{date[:10]}T{date[11:]}{'+00:00' if zone in 'Zz' else zone}")
        seconds = calendar.timegm(moment.utctimetuple())
    except (ValueError, OverflowError) as exc:
        raise MessageError(f"{what}: expected an RFC 3339 time, got {text!r}") from exc
    return seconds * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))


_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?(?P<zone>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def int_from(value, what: str) -> int:
    if isinstance(value, bool):
        raise MessageError(f"{what}: expected an integer, got {value!r}")
    try:
        if isinstance(value, int):
            return value
        digits = value.strip().lstrip("-") if isinstance(value, str) else ""
        if digits.isascii() and digits.isdigit():  # ASCII only: int() would also read other scripts' digits
            return int(value)
    except ValueError:
        pass
    raise MessageError(f"{what}: expected an integer, got {value!r}")


def field_of(mapping, key: str, what: str):
    if not isinstance(mapping, dict):
        raise MessageError(f"{what}: expected an object, got {type(mapping).__name__}")
    if key not in mapping:
        raise MessageError(f"{what}: missing '{key}'")
    return mapping[key]
