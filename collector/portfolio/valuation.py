"""Positions and totals at one moment, in `Decimal`, from the holdings held then and the prices stored then.

value = quantity × price; unrealized P/L = value − remaining cost basis; P/L % = unrealized P/L / cost basis × 100.
Money figures are rounded half up to the cent of the base currency (to 8 decimals when the base is a coin such as
BTC), each on its own, so a total is the exact sum of the rows shown; P/L % has 4 decimals.
A figure that cannot be known (no price, a bare quantity without cost basis) stays None: never 0. The totals are
sums of the rows: the total value is unknown while any asset held has no price (counting it as 0 would understate
the portfolio); the total cost basis, unrealized and realized P/L cover the positions that have a cost basis (a bare
quantity has none), and the total unrealized P/L (so P/L %) is unknown while one of those has no price. So a known
total unrealized P/L is always the total value of those positions minus their cost basis.
"""

from bisect import bisect_right
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from collector.holdings import Holding, Holdings, signed_quantity
from collector.portfolio.ledger import PositionState, PriceUnavailable, timeline
from collector.portfolio.prices import Prices, to_ns
from collector.records import PortfolioValue, Position

PERCENT_PLACES = Decimal("0.0001")
CENT = Decimal("0.01")
COIN_BASES = {
    "BTC": Decimal("0.00000001"),
    "ETH": Decimal("0.00000001"),
}  # bases whose unit needs more digits


@dataclass(frozen=True)
class AssetTimeline:
    asset: str
    times_ns: tuple[int, ...]
    states: tuple[PositionState, ...]
    first_ns: int | None  # the first transaction; None for a bare quantity (held at every moment)

    def at(self, at_ns: int) -> PositionState | None:
        """The state after the last transaction at or before `at`; None before the first."""
        index = bisect_right(self.times_ns, at_ns) - 1
        return self.states[index] if index >= 0 else None


@dataclass(frozen=True)
class Valuation:
    at_ns: int
    positions: list[Position]
    total: PortfolioValue
    unpriced: list[str]  # assets held without a price at that moment


def build_timelines(holdings: Holdings, pricing: Prices) -> tuple[dict[str, AssetTimeline], list[str]]:
    """Each asset's states over time; an asset whose cost basis needs a rate that is not stored keeps its
    quantities (so it is still valued) and the problem is reported, as is a transfer_in that took the market price."""
    timelines, problems = {}, []
    for asset, holding in sorted(holdings.assets.items()):
        try:
            entries = timeline(holding, holdings.cost_basis, pricing, problems)
        except PriceUnavailable as exc:
            problems.append(f"{asset}: cost basis unknown: {exc}")
            entries = _quantities_only(holding)
        times = tuple(to_ns(moment) for moment, _ in entries)
        bare = holding.quantity is not None
        timelines[asset] = AssetTimeline(
            asset, times, tuple(state for _, state in entries), None if bare or not times else times[0]
        )
    return timelines, problems


def _quantities_only(holding: Holding) -> list:
    entries, quantity = [], Decimal(0)
    for line in holding.transactions:
        quantity += signed_quantity(line)
        entries.append((line.time, PositionState(quantity, None, None)))
    return entries


def value_at(timelines: dict[str, AssetTimeline], prices: Prices, at_ns: int, bucket: str) -> Valuation:
    positions, unpriced = [], []
    for asset, asset_timeline in sorted(timelines.items()):
        state = asset_timeline.at(at_ns)
        if state is None:
            continue  # not held yet
        price = prices.price(asset, at_ns)
        if price is None and state.quantity != 0:
            unpriced.append(asset)
        positions.append(position(asset, state, price, at_ns, bucket, money_unit(prices.routes.base)))
    return Valuation(at_ns, positions, total(positions, at_ns, bucket), unpriced)


def money_unit(base_currency: str) -> Decimal:
    return COIN_BASES.get(base_currency, CENT)


def position(
    asset: str,
    state: PositionState,
    price: Decimal | None,
    time_ns: int,
    bucket: str,
    unit: Decimal = CENT,
) -> Position:
    value = _round(state.quantity * price if price is not None else None, unit)
    if state.quantity == 0:
        value = Decimal(0)  # nothing held is worth nothing, whatever the price
    cost_basis, realized = _round(state.cost_basis, unit), _round(state.realized_pnl, unit)
    unrealized = value - cost_basis if value is not None and cost_basis is not None else None
    return Position(
        asset=asset,
        time_ns=time_ns,
        bucket=bucket,
        quantity=state.quantity,
        price=price,
        value=value,
        cost_basis=cost_basis,
        unrealized_pnl=unrealized,
        realized_pnl=realized,
        pnl_pct=percent(unrealized, cost_basis),
    )


def total(positions: list[Position], time_ns: int, bucket: str) -> PortfolioValue:
    with_cost_basis = [p for p in positions if p.cost_basis is not None]
    cost_basis = _sum(p.cost_basis for p in with_cost_basis)
    unrealized = _sum_of_all(p.unrealized_pnl for p in with_cost_basis)
    return PortfolioValue(
        time_ns=time_ns,
        bucket=bucket,
        value=_sum_of_all(p.value for p in positions),
        cost_basis=cost_basis,
        unrealized_pnl=unrealized,
        realized_pnl=_sum(p.realized_pnl for p in positions),
        pnl_pct=percent(unrealized, cost_basis),
    )


def has_figures(portfolio: PortfolioValue) -> bool:
    """A portfolio point needs one known figure (only bare quantities without a price have none)."""
    return any(
        figure is not None
        for figure in (
            portfolio.value,
            portfolio.cost_basis,
            portfolio.unrealized_pnl,
            portfolio.realized_pnl,
        )
    )


def percent(part: Decimal | None, whole: Decimal | None, places: Decimal = PERCENT_PLACES) -> Decimal | None:
    """part / whole × 100, rounded half up once to `places` (rounding an already rounded figure again can be off)."""
    if part is None or not whole:
        return None
    return (part / whole * 100).quantize(places, ROUND_HALF_UP)


def _round(amount: Decimal | None, unit: Decimal) -> Decimal | None:
    return None if amount is None else amount.quantize(unit, ROUND_HALF_UP)


def _sum(values) -> Decimal | None:
    """The sum of the known values; None when none is known."""
    known = [value for value in values if value is not None]
    return sum(known, Decimal(0)) if known else None


def _sum_of_all(values) -> Decimal | None:
    """The sum, or None when there is nothing to add or any value is unknown."""
    values = list(values)
    return None if not values or None in values else sum(values, Decimal(0))
