"""Prices and FX for valuation, read from what the collector stored (never from an exchange).

`Prices` answers "what is one unit of X worth in the base currency at time t" along a route (routes.py), with the
price of each leg taken from one of three lookups:
- `ClosesAt`: the latest candle close at or before t, one query per leg and moment (`collector portfolio --at`,
  and the rates of lots bought in another currency);
- `CloseSeries`: the same figure for every hour of a span, from one query per leg and span (hourly history);
- `LatestPrices`: the most recent of the latest trade and the latest close (live samples, `collector portfolio`);
  for CoinGecko, which has no trades, of its latest price (`ticker`) and the latest close.
"""

from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

from collector.config import COINGECKO
from collector.portfolio.ledger import PriceUnavailable
from collector.portfolio.routes import Leg, PriceRoutes, Route
from collector.storage.prices import StoredPrices

NS = 1_000_000_000
STALE_INTERVALS = (
    2  # a price older than this many candle intervals is stale: another source's fresher one is used
)

LegPrice = Callable[[Leg, int], Decimal | None]


def to_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // NS, UTC).replace(microsecond=ns % NS // 1000)


class Prices:
    """Asset prices and currency rates in the base currency; also the ledger's `Pricing`."""

    def __init__(self, routes: PriceRoutes, leg_price: LegPrice):
        self.routes = routes
        self.leg_price = leg_price
        self._routes: dict[str, Route | None] = {}

    def route(self, asset: str) -> Route | None:
        if asset not in self._routes:
            self._routes[asset] = self.routes.route(asset)
        return self._routes[asset]

    def price(self, asset: str, at_ns: int) -> Decimal | None:
        route = self.route(asset)
        return route.price([self.leg_price(leg, at_ns) for leg in route.legs]) if route else None

    def to_base(self, amount: Decimal, currency: str, at: datetime) -> Decimal:
        rate = self.price(currency, to_ns(at))
        if rate is None:
            raise PriceUnavailable(self.missing(currency, at))
        return amount * rate

    def market_price(self, asset: str, at: datetime) -> Decimal | None:
        return self.price(asset, to_ns(at))

    def missing(self, asset: str, at: datetime | None = None) -> str:
        """Why `asset` has no price at `at` (None: now)."""
        route = self.route(asset)
        if route is None:
            return self.routes.missing_message(asset)
        when = f" at or before {at:%Y-%m-%d %H:%M} UTC" if at else ""
        return f"{asset}: no stored {route.describe()} price{when} (run a backfill)"


def first_fresh(
    found_by_source: Iterable[tuple[int, Decimal] | None], fresh_ns: int
) -> tuple[int, Decimal] | None:
    """Of each source's (time, price), in preference order (lazily: a later source is asked only when needed): the
    first taken after `fresh_ns`; when none is, the first source's (a stale price beats none)."""
    found = None
    for candidate in found_by_source:
        if candidate and (found is None or found[0] <= fresh_ns < candidate[0]):
            found = candidate
        if found and found[0] > fresh_ns:
            break
    return found


class _PriceLookup:
    """A leg's price at a moment and when that price was taken, from `_found` (time ns, price) or None."""

    def __call__(self, leg: Leg, at_ns: int) -> Decimal | None:
        found = self._found(leg, at_ns)
        return found[1] if found else None

    def time(self, leg: Leg, at_ns: int) -> int | None:
        """When the price used at `at` was taken (the trade's time, or its candle's close time)."""
        found = self._found(leg, at_ns)
        return found[0] if found else None

    def _found(self, leg: Leg, at_ns: int) -> tuple[int, Decimal] | None:
        raise NotImplementedError


class ClosesAt(_PriceLookup):
    """The latest close at or before a moment, one query each, remembered."""

    def __init__(self, store: StoredPrices):
        self.store = store
        self._cache: dict[tuple[Leg, int], tuple[int, Decimal] | None] = {}

    def _found(self, leg: Leg, at_ns: int) -> tuple[int, Decimal] | None:
        key = (leg, at_ns)
        if key not in self._cache:  # the first source with a recent close by then (see `usable_from`)
            found = first_fresh(
                (self.store.close_at(exchange, leg.pair, at_ns) for exchange in leg.sources),
                at_ns - STALE_INTERVALS * self.store.interval_s * NS,
            )
            self._cache[key] = found
        return self._cache[key]


class CloseSeries:
    """Closes of a span loaded in one query per leg; spans are loaded in time order, each carrying on the last one
    when it follows it (after a gap, the latest earlier close is read again)."""

    def __init__(self, store: StoredPrices, legs: Iterable[Leg]):
        self.store = store
        self.legs = tuple(legs)
        self._series: dict[Leg, tuple[list[int], list[Decimal]]] = {}
        self._carry: dict[tuple[Leg, str], tuple[int, Decimal] | None] = {}
        self._loaded_until: int | None = None

    def load(self, start_ns: int, stop_ns: int) -> None:
        if start_ns != self._loaded_until:
            self._carry = {}
        self._loaded_until = stop_ns
        for leg in self.legs:
            rows: list[tuple[int, Decimal]] = []
            for (
                exchange
            ) in leg.sources:  # an older source fills in where those before it have no recent close
                own = self._rows(leg, exchange, start_ns, stop_ns)
                rows = sorted(rows + usable_from(own, [time for time, _ in rows], self.store.interval_s * NS))
            self._series[leg] = ([time for time, _ in rows], [price for _, price in rows])

    def _rows(self, leg: Leg, exchange: str, start_ns: int, stop_ns: int) -> list[tuple[int, Decimal]]:
        """The carried (or the latest earlier) close and the closes in the span of one source."""
        key = (leg, exchange)
        seed = (
            self._carry[key] if key in self._carry else self.store.close_at(exchange, leg.pair, start_ns - 1)
        )
        rows = ([seed] if seed else []) + self.store.closes(exchange, leg.pair, start_ns, stop_ns)
        self._carry[key] = rows[-1] if rows else None
        return rows

    def __call__(self, leg: Leg, at_ns: int) -> Decimal | None:
        times, prices = self._series[leg]
        index = bisect_right(times, at_ns) - 1
        return prices[index] if index >= 0 else None


def usable_from(
    rows: list[tuple[int, Decimal]], preferred: list[int], interval_ns: int
) -> list[tuple[int, Decimal]]:
    """The closes of a later source of the pair that count: where the preferred sources' closes (`preferred`,
    sorted times) have none in the STALE_INTERVALS intervals up to them: before the first candle of an exchange
    that serves only recent ones, and inside a hole in its candles (a collector down longer than it reaches)."""
    window_ns = STALE_INTERVALS * interval_ns
    return [
        (time, price)
        for time, price in rows
        if bisect_right(preferred, time) == bisect_right(preferred, time - window_ns)
    ]


class LatestPrices(_PriceLookup):
    """The newest stored price of each leg (latest trade or latest close, whichever is more recent); from an
    older source of the pair only while its own exchange has none, or only a stale one."""

    def __init__(self, store: StoredPrices, legs: Iterable[Leg]):
        self._stale_ns = STALE_INTERVALS * store.interval_s * NS
        self._latest: dict[tuple[str, object], tuple[int, Decimal]] = {}
        for exchange in sorted({source for leg in legs for source in leg.sources}):
            for pair, found in store.latest(exchange, tickers=exchange == COINGECKO).items():
                self._latest[(exchange, pair)] = found

    def _found(self, leg: Leg, at_ns: int) -> tuple[int, Decimal] | None:
        latest = (self._latest.get((source, leg.pair)) for source in leg.sources)
        return first_fresh(latest, at_ns - self._stale_ns)


def old_prices(
    prices: Prices, lookup: ClosesAt | LatestPrices, assets, at_ns: int, max_age_ns: int
) -> list[str]:
    """A line for each asset valued with a price taken more than `max_age_ns` before `at` (the newest stored may be
    a year old: a valuation "now" must say so), naming the price's time."""
    problems = []
    for asset in assets:
        route = prices.route(asset)
        for leg in route.legs if route else ():
            taken = lookup.time(leg, at_ns)
            if taken is not None and at_ns - taken > max_age_ns:
                problems.append(
                    f"{asset}: valued with the {leg.pair} price of {from_ns(taken):%Y-%m-%d %H:%M} UTC, the latest "
                    f"stored then (run a backfill, or check that the exchange still trades it)"
                )
    return problems
