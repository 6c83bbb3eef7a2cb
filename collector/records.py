"""Normalized records: what every exchange adapter produces and only the storage layer turns into points.

Values stay `Decimal`, parsed from the exchange's exact strings, until a point is built.
"""

from dataclasses import dataclass
from decimal import Decimal

from collector.config import Pair


@dataclass(frozen=True, slots=True)
class Trade:
    exchange: str
    pair: Pair
    trade_id: str
    price: Decimal
    amount: Decimal
    side: str  # "buy" or "sell" (the taker's side)
    time_s: int  # exchange trade time, whole seconds: what both the websocket and REST give


@dataclass(frozen=True, slots=True)
class Candle:
    exchange: str
    pair: Pair
    interval_s: int
    open_time_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Ticker:
    exchange: str
    pair: Pair
    time_ns: int  # fetch time
    last: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    volume: Decimal | None = None
    vwap: Decimal | None = None
    change_24h_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Asset:
    symbol: str
    time_ns: int  # fetch time
    name: str | None = None
    type: str | None = None
    logo_url: str | None = None
    decimals: int | None = None
    available_supply: Decimal | None = None


Record = Trade | Candle | Ticker | Asset
