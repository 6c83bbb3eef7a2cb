"""Line protocol for the hot path (trades and candles), without a Point per record.

A series' escaped key (measurement and tags) is built once, by influxdb-client's own escaping and tag ordering, and
cached; each record then adds only its fields and time. Values are formatted as Point formats them, so the bytes
are the same as `Point.to_line_protocol()` (tests/test_lines.py proves it, odd tag values included). Decimals become
floats only here.
"""

import math
from decimal import Decimal
from functools import lru_cache

from influxdb_client.client.write.point import _ESCAPE_MEASUREMENT, _append_tags, _escape_key, _escape_string

from collector.config import Pair
from collector.records import Candle, Trade

NS = 1_000_000_000
SERIES_CACHED = 4096  # pairs x sides (x intervals): far more than a portfolio follows


@lru_cache(maxsize=SERIES_CACHED)
def series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """'measurement,tag=value,... ' (tags sorted, escaped, empty ones left out), as influxdb-client writes it."""
    return _escape_key(measurement, _ESCAPE_MEASUREMENT) + _append_tags(dict(tags))


def pair_tags(exchange: str, pair: Pair) -> tuple[tuple[str, str], ...]:
    return (("exchange", exchange), ("pair", str(pair)), ("base", pair.base), ("quote", pair.quote))


@lru_cache(maxsize=SERIES_CACHED)
def _trade_key(exchange: str, pair: Pair, side: str) -> str:
    return series_key("trade", pair_tags(exchange, pair) + (("side", side),))


@lru_cache(maxsize=SERIES_CACHED)
def _candle_key(exchange: str, pair: Pair, interval: str) -> str:
    return series_key("candle", pair_tags(exchange, pair) + (("interval", interval),))


def float_text(number: float) -> str:
    """A finite float as Point writes it: its shortest repr, '.0' trimmed."""
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text


def float_field(name: str, value: Decimal | float | None) -> str:
    """`name=value` as Point writes a float; '' for an unknown value or one beyond a float (Point leaves both out)."""
    if value is None:
        return ""
    number = float(value)
    return f"{name}={float_text(number)}" if math.isfinite(number) else ""


def _fields(*parts: str) -> str:
    return ",".join(part for part in parts if part)


def trade_line(trade: Trade) -> str:
    key = _trade_key(trade.exchange, trade.pair, trade.side)
    amount, price = float(trade.amount), float(trade.price)
    if math.isfinite(amount) and math.isfinite(price):  # nearly always: no field to leave out
        return f'{key}amount={float_text(amount)},price={float_text(price)},trade_id="{int(trade.trade_id)}" {trade.time_ns}'
    fields = _fields(
        float_field("amount", trade.amount),
        float_field("price", trade.price),
        f'trade_id="{int(trade.trade_id)}"',  # digits only: nothing to escape
    )
    return f"{key}{fields} {trade.time_ns}"


def field(name: str, value: float | int | str) -> str:
    """A field of any type a valuation point holds, as Point writes it."""
    if isinstance(value, float):
        return float_field(_escape_key(name), value)
    if isinstance(value, bool):
        return f"{_escape_key(name)}={str(value).lower()}"
    if isinstance(value, int):
        return f"{_escape_key(name)}={value}i"
    return f'{_escape_key(name)}="{_escape_string(value)}"'


def parts_line(measurement: str, tags: tuple[tuple[str, str], ...], fields, time_ns: int) -> str:
    """A point from its parts (name-sorted fields), e.g. a valuation's: the series key cached, no Point."""
    text = _fields(*(field(name, value) for name, value in fields))
    return f"{series_key(measurement, tags)}{text} {time_ns}" if text else ""


def candle_line(candle: Candle, interval: str) -> str:
    fields = _fields(
        float_field("close", candle.close),
        float_field("high", candle.high),
        float_field("low", candle.low),
        float_field("open", candle.open),
        float_field("volume", candle.volume),
    )
    if not fields:
        return ""  # as Point: a point without fields is no point
    return f"{_candle_key(candle.exchange, candle.pair, interval)}{fields} {candle.open_time_s * NS}"
