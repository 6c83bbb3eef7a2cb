"""Normalized records: what every exchange adapter produces and only the storage layer turns into points.

Values stay `Decimal`, parsed from the exchange's exact strings, until a point is built.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from collector.config import Pair

# A decimal of at most 15 significant digits (a double's DBL_DIG) inside the normal range of a double always reads
# back as itself. Its text is at least as long as its digits, so a text of at most 15 characters is a cheap test that
# nearly every price and amount passes; longer ones take the exact test.
_FLOAT_DIGITS = 15
_NORMAL_EXPONENT = 307  # adjusted (scientific) exponents of normal doubles reach at least ±307


def inexact(value: Decimal) -> bool:
    """Whether `value`, written as a float, would not read back as itself: more than 15 significant digits
    (precisely: the float's shortest decimal is another number) or beyond a float's range."""
    if len(str(value)) <= _FLOAT_DIGITS and -_NORMAL_EXPONENT <= value.adjusted() <= _NORMAL_EXPONENT:
        return False
    return Decimal(repr(float(value))) != value


@dataclass(frozen=True, slots=True)
class Trade:
    exchange: str
    pair: Pair
    trade_id: int  # the exchange's id: integers (or integer strings) only, never hashed
    price: Decimal
    amount: Decimal
    side: str  # "buy" or "sell" (the taker's side)
    time_ns: int  # the point time: built by Exchange.trade (exchange time truncated to its unit + id offset)


class LastTrade(NamedTuple):
    """Where a pair's trades stand: the latest trade time (whole seconds) and the highest trade id."""

    time_s: int
    trade_id: int | None = None


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
    volume: Decimal | None  # None: the source has none (CoinGecko's candles are built from price samples)


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


@dataclass(frozen=True, slots=True)
class Transaction:
    """One line of a holding's history in portfolio.yml, stored so Grafana can annotate buys and sells."""

    asset: str
    kind: str  # buy, sell, transfer_in or transfer_out
    time_ns: int
    quantity: Decimal
    price: Decimal | None = None  # per unit, in `currency`
    fee: Decimal | None = None  # in `currency`
    currency: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """One asset valued at one moment, in the base currency.

    `bucket` is "history" for the hourly series and "live" for the samples taken every few seconds.
    A figure that cannot be known (no cost basis for a bare quantity, no price) is None and not written:
    an unknown value is never stored as 0.
    """

    asset: str
    time_ns: int
    bucket: str
    quantity: Decimal
    price: Decimal | None = None
    value: Decimal | None = None
    cost_basis: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    pnl_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PortfolioValue:
    """The whole portfolio at one moment, in the base currency (the sum of its positions)."""

    time_ns: int
    bucket: str
    value: Decimal | None  # None when no position has a price
    cost_basis: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    pnl_pct: Decimal | None = None


# The exchange's own values of each record: each must read back exactly (see inexact); computed figures
# (a ticker's change_24h_pct) are not the exchange's text and are not checked.
EXCHANGE_VALUES = {
    Trade: ("price", "amount"),
    Candle: ("open", "high", "low", "close", "volume"),
    Ticker: ("last", "bid", "ask", "open", "high", "low", "volume", "vwap"),
    Asset: ("available_supply",),
}

Record = Trade | Candle | Ticker | Asset | Transaction | Position | PortfolioValue
