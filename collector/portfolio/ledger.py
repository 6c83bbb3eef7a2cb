"""Cost basis and realized profit/loss of one holding, transaction by transaction (pure Decimal, no I/O).

FIFO sells the oldest lots first; average sells a share of one pool at its average cost. A buy's fee adds to its
cost, a sell's fee reduces its proceeds, a transfer moves quantity and its cost basis without realizing anything.
Amounts in another currency are converted into the base currency at the transaction's time by the given Pricing.
"""

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from collector.holdings import ADDS, Holding, TransactionLine, describe_time

BEGINNING = datetime.min.replace(tzinfo=UTC)
ZERO = Decimal(0)


class PriceUnavailable(Exception):
    """A price or exchange rate needed at some moment is not known; the message says what to configure."""


@dataclass(frozen=True)
class PositionState:
    quantity: Decimal
    cost_basis: Decimal | None  # remaining cost basis in base currency; None for a bare quantity
    realized_pnl: Decimal | None  # cumulative, base currency; None for a bare quantity


class Pricing(Protocol):
    def to_base(self, amount: Decimal, currency: str, at: datetime) -> Decimal:
        """`amount` of `currency` in the base currency at `at` (identity for the base currency); raises
        PriceUnavailable naming the missing FX pair."""

    def market_price(self, asset: str, at: datetime) -> Decimal | None:
        """The asset's price in the base currency at `at` (for a transfer_in without a price)."""


def timeline(
    holding: Holding, method: str, pricing: Pricing, notes: list[str] | None = None
) -> list[tuple[datetime, PositionState]]:
    """The state after each transaction, in time order; the state at any moment t is the last entry with time <= t
    (before the first: nothing held). A bare quantity gives [(BEGINNING, PositionState(q, None, None))].
    What the user should know (a transfer_in that took the market price) is appended to `notes`.

    Expects holdings as `collector.holdings` parses them: no sell or transfer_out exceeds what is held.
    """
    if holding.quantity is not None:
        return [(BEGINNING, PositionState(holding.quantity, None, None))]
    book = _Lots() if method == "fifo" else _Pool()
    realized = ZERO
    entries = []
    for line in holding.transactions:
        if line.kind in ADDS:
            book.add(line.quantity, _cost(line, pricing, notes if notes is not None else []))
        else:
            removed_cost = book.remove(line.quantity)
            if line.kind == "sell":
                proceeds = pricing.to_base(line.quantity * line.price - line.fee, line.currency, line.time)
                realized += proceeds - removed_cost
        entries.append((line.time, PositionState(book.quantity(), book.cost(), realized)))
    return entries


def _cost(line: TransactionLine, pricing: Pricing, notes: list[str]) -> Decimal:
    if line.price is not None:
        return pricing.to_base(line.quantity * line.price + line.fee, line.currency, line.time)
    price = pricing.market_price(line.asset, line.time)
    when = describe_time(line.time)
    if price is None:
        raise PriceUnavailable(
            f"{line.source}: transfer_in of {line.quantity} {line.asset} on {when} has no price and no "
            f"{line.asset} price is stored for that time; add its price to the line"
        )
    notes.append(
        f"{line.source}: transfer_in of {line.quantity} {line.asset} on {when} at market price {price} (the line "
        "has no price)"
    )
    return line.quantity * price


class _Lots:
    """FIFO: lots of (quantity, cost) taken oldest first; a lot taken in part keeps the rest of its cost."""

    def __init__(self) -> None:
        self.lots: deque[tuple[Decimal, Decimal]] = deque()

    def add(self, quantity: Decimal, cost: Decimal) -> None:
        self.lots.append((quantity, cost))

    def remove(self, quantity: Decimal) -> Decimal:
        removed = ZERO
        while quantity > 0:
            lot_quantity, lot_cost = self.lots.popleft()
            if quantity >= lot_quantity:
                removed += lot_cost
                quantity -= lot_quantity
            else:
                part = lot_cost * quantity / lot_quantity
                self.lots.appendleft((lot_quantity - quantity, lot_cost - part))
                removed += part
                quantity = ZERO
        return removed

    def quantity(self) -> Decimal:
        return sum((lot[0] for lot in self.lots), ZERO)

    def cost(self) -> Decimal:
        return sum((lot[1] for lot in self.lots), ZERO)


class _Pool:
    """Average cost: one pool; a removal takes its share of the pool's cost (all of it when it empties the pool)."""

    def __init__(self) -> None:
        self.held = ZERO
        self.total_cost = ZERO

    def add(self, quantity: Decimal, cost: Decimal) -> None:
        self.held += quantity
        self.total_cost += cost

    def remove(self, quantity: Decimal) -> Decimal:
        part = self.total_cost if quantity == self.held else self.total_cost * quantity / self.held
        self.held -= quantity
        self.total_cost -= part
        return part

    def quantity(self) -> Decimal:
        return self.held

    def cost(self) -> Decimal:
        return self.total_cost
