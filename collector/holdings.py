"""What is held, as written in portfolio.yml: per asset a bare quantity or a list of transactions.

Numbers are read from the text the user wrote, quoted or not, so a bare 0.1 is exactly Decimal("0.1"). Every
error names the file, the line and the key. The cost basis itself is computed by `collector.portfolio.ledger`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from collector.errors import ConfigError

if TYPE_CHECKING:
    from collector.config import _Document

KINDS = ("buy", "sell", "transfer_in", "transfer_out")
ADDS = ("buy", "transfer_in")
COST_BASIS_METHODS = ("fifo", "average")
_TRANSACTION_KEYS = {"date", "kind", "quantity", "price", "currency", "fee", "note"}
_SYMBOL = re.compile(r"[A-Z0-9]{2,12}")
# what a number of the holdings other than 0 may be, in size
SMALLEST, LARGEST = Decimal("1e-30"), Decimal("1e30")


@dataclass(frozen=True)
class TransactionLine:
    asset: str
    kind: str  # "buy" | "sell" | "transfer_in" | "transfer_out"
    time: datetime  # tz-aware UTC; a bare date is 00:00 UTC
    quantity: Decimal  # > 0
    price: (
        Decimal | None
    )  # per unit in `currency`; None only for a transfer (then valued at the market price)
    currency: str  # defaults to the config's base_currency
    fee: Decimal  # in `currency`; only a buy or a sell has one
    note: str | None
    source: str  # "portfolio.yml:12", for messages


@dataclass(frozen=True)
class Holding:
    asset: str
    transactions: tuple[TransactionLine, ...]  # sorted by time, stable for equal times (file order)
    quantity: Decimal | None = None  # a bare quantity: value only, no cost basis, no history start

    def quantity_now(self) -> Decimal:
        if self.quantity is not None:
            return self.quantity
        return sum((signed_quantity(line) for line in self.transactions), Decimal(0))

    def describe(self) -> str:
        """One line for check-config: what is held now and since when."""
        if self.quantity is not None:
            return f"{self.quantity} (a bare quantity: valued, no cost basis)"
        count = len(self.transactions)
        since = describe_time(self.transactions[0].time)
        return f"{self.quantity_now()} held, {count} transaction{'s' * (count != 1)} since {since}"


@dataclass(frozen=True)
class Holdings:
    cost_basis: str = "fifo"  # or "average"
    assets: dict[str, Holding] = field(default_factory=dict)


def signed_quantity(line: TransactionLine) -> Decimal:
    """What the line adds to the quantity held (negative for a sell or transfer_out)."""
    return line.quantity if line.kind in ADDS else -line.quantity


def describe_time(moment: datetime) -> str:
    """2026-01-10 for a midnight, else 2026-03-10 14:00:00 UTC: how messages name a transaction's time."""
    if moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_holdings(doc: _Document, base_currency: str) -> Holdings:
    """`cost_basis:` and `holdings:` of the document (the caller has checked the top-level keys)."""
    method = "fifo"
    if "cost_basis" in doc.data:
        method = doc.get(("cost_basis",))
        if method not in COST_BASIS_METHODS:
            doc.fail(("cost_basis",), "fifo or average")
    assets = {}
    if "holdings" in doc.data:
        for asset in doc.mapping(("holdings",), allowed=None):
            assets[asset] = _holding(doc, asset, base_currency)
    return Holdings(cost_basis=method, assets=assets)


def _holding(doc: _Document, asset, base_currency: str) -> Holding:
    path = ("holdings", asset)
    if not isinstance(asset, str):  # YAML reads ON, NO, YES or 1000 as a boolean or a number, not as text
        raise ConfigError(
            f"{doc.source}:{doc.line(path)}: holdings: an asset symbol that YAML reads as {asset!r}, not as text: "
            "put it in quotes (YAML reads ON, OFF, YES, NO and numbers that way unquoted)"
        )
    if not _SYMBOL.fullmatch(asset):
        doc.error(path, "expected an asset symbol in upper case, such as BTC")
    value = doc.get(path)
    if not isinstance(value, list):
        quantity = _number(doc, path, 'a quantity such as "0.5", or a list of transactions')
        if quantity <= 0:
            doc.fail(path, "a quantity above 0")
        return Holding(asset, (), quantity)
    if not value:
        doc.fail(path, "a quantity or a non-empty list of transactions")
    numbered = [
        (index, _transaction(doc, path + (index,), asset, base_currency)) for index in range(len(value))
    ]
    numbered.sort(key=lambda pair: pair[1].time)  # stable: equal times keep the file's order
    _check_never_oversold(doc, path, numbered)
    return Holding(asset, tuple(line for _, line in numbered))


def _transaction(doc: _Document, path: tuple, asset: str, base_currency: str) -> TransactionLine:
    entry = doc.mapping(path, allowed=_TRANSACTION_KEYS)
    for key in ("date", "kind", "quantity"):
        if key not in entry:
            doc.error(path, f"missing '{key}'; a transaction needs date, kind and quantity")
    kind = entry["kind"]
    if kind not in KINDS:
        doc.fail(path + ("kind",), "one of " + ", ".join(KINDS))
    quantity = _number(doc, path + ("quantity",), 'a quantity such as "0.5"')
    if quantity <= 0:
        doc.fail(path + ("quantity",), "a quantity above 0")
    price = None
    if "price" in entry:
        price = _number(doc, path + ("price",), 'a price per unit such as "30000"')
        if price < 0:
            doc.fail(path + ("price",), "a price of 0 or more")
    elif kind in ("buy", "sell"):
        doc.error(path, f"missing 'price'; a {kind} needs the price per unit")
    for key in ("currency", "fee"):
        if key in entry and price is None:
            doc.error(path + (key,), f"a {key} goes with a price; this {kind} has none")
    if "fee" in entry and kind not in ("buy", "sell"):
        doc.error(
            path + ("fee",), "only a buy or a sell has a fee; write a fee paid in the asset as a transfer_out"
        )
    fee = _number(doc, path + ("fee",), 'a fee such as "10"') if "fee" in entry else Decimal(0)
    if fee < 0:
        doc.fail(path + ("fee",), "a fee of 0 or more")
    note = entry.get("note")
    if note is not None and not isinstance(note, str):
        doc.fail(path + ("note",), "text")
    # no note is stored as none (an empty text field reads back as no field); line breaks as \n, the way they read
    note = note.replace("\r\n", "\n") if note else None
    return TransactionLine(
        asset=asset,
        kind=kind,
        time=_time(doc, path + ("date",)),
        quantity=quantity,
        price=price,
        currency=doc.currency(path + ("currency",)) if "currency" in entry else base_currency,
        fee=fee,
        note=note,
        source=f"{doc.source}:{doc.line(path)}",
    )


def _check_never_oversold(doc: _Document, path: tuple, numbered: list[tuple[int, TransactionLine]]) -> None:
    held = Decimal(0)
    for index, line in numbered:
        if line.kind not in ADDS and line.quantity > held:
            doc.error(
                path + (index, "quantity"),
                f"{line.kind} of {line.quantity} {line.asset} on {describe_time(line.time)} is more than the "
                f"{held} held then",
            )
        held += signed_quantity(line)


def _number(doc: _Document, path: tuple, expected: str) -> Decimal:
    """The number as written: a bare YAML float is read from its text, never through a binary float."""
    value = doc.get(path)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        doc.fail(path, expected)
    text = value if isinstance(value, str) else doc.texts[path]
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        doc.fail(path, expected)
    if not number.is_finite():
        doc.fail(path, expected)
    if number and not SMALLEST <= number.copy_abs() <= LARGEST:  # copy_abs: abs() would round, and overflow
        # far beyond any real amount, and its products would overflow Decimal later (in the ledger, every recompute)
        doc.error(path, f"{text.strip()} is out of range: a number is 0 or between 1e-30 and 1e30 in size")
    return number


def _time(doc: _Document, path: tuple) -> datetime:
    value = doc.get(path)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        doc.fail(path, "a date YYYY-MM-DD or a date-time YYYY-MM-DDTHH:MM:SSZ")
    # a time without a zone is UTC, like a bare date
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
