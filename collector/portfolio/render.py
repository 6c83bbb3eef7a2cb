"""How `collector portfolio` shows a valuation: an aligned table for people, JSON for programs.

Figures are shown as the valuation computed them, digit for digit (the table only adds thousands separators and
pads a column to one number of decimals), so the totals line is the sum of the rows above it. An unknown figure
is "—" in the table and null in JSON, never 0.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from collector.portfolio.valuation import percent
from collector.records import PortfolioValue, Position

UNKNOWN = "—"
NO_PRICE = "no price"
PERCENT_SHOWN = Decimal("0.01")
_GREEN, _RED, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[0m"
_PNL_FIELDS = ("unrealized_pnl", "realized_pnl", "pnl_pct")
_TOTAL_FIELDS = ("value", "cost_basis", "unrealized_pnl", "realized_pnl", "pnl_pct")
_COLUMNS = (  # field, heading, least decimals shown: None for an amount, whose decimal point is aligned by spaces
    ("quantity", "quantity", None),
    ("price", "price", None),
    ("value", "value", 2),
    ("cost_basis", "cost basis", 2),
    ("unrealized_pnl", "unrealized P/L", 2),
    ("realized_pnl", "realized P/L", 2),
    ("pnl_pct", "P/L %", 2),
)


def as_json(base_currency: str, at: datetime, positions: list[Position], total: PortfolioValue) -> str:
    """{"base_currency", "at", "positions": [...], "total": {...}} with every number an exact decimal string."""
    document = {
        "base_currency": base_currency,
        "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "positions": [
            {"asset": position.asset} | {name: _exact(getattr(position, name)) for name, _, _ in _COLUMNS}
            for position in positions
        ],
        "total": {name: _exact(getattr(total, name)) for name in _TOTAL_FIELDS},
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def as_table(
    base_currency: str,
    at: datetime,
    positions: list[Position],
    total: PortfolioValue,
    colour: bool,
    problems: Sequence[str] = (),
) -> str:
    """The positions, one row each, then the totals; gains green and losses red when `colour` is on. `problems`
    (e.g. an asset without a price source and how to add one) are listed under the table."""
    rows = [[position.asset] + [_figure(position, name) for name, _, _ in _COLUMNS] for position in positions]
    rows.append(["total", "", ""] + [_shown(total, name) for name in _TOTAL_FIELDS])
    headings = ["asset"] + [heading for _, heading, _ in _COLUMNS]
    columns = [[row[0] for row in rows]] + [
        _cells([row[index] for row in rows], least_decimals)
        for index, (_, _, least_decimals) in enumerate(_COLUMNS, start=1)
    ]
    widths = [max(len(heading), *map(len, column)) for heading, column in zip(headings, columns, strict=True)]
    gain_or_loss = [False] + [name in _PNL_FIELDS for name, _, _ in _COLUMNS]

    def line(cells: list[str], row: list | None = None) -> str:
        padded = [cells[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)
        ]
        if colour and row is not None:
            padded = [
                _coloured(cell, value) if pnl else cell
                for cell, value, pnl in zip(padded, row, gain_or_loss, strict=True)
            ]
        return "  ".join(padded).rstrip()

    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"Portfolio at {when}, in {base_currency}", "", line(headings)]
    lines += [line([column[index] for column in columns], row) for index, row in enumerate(rows)]
    if problems:
        lines += ["", *problems]
    return "\n".join(lines) + "\n"


def _figure(position: Position, name: str) -> Decimal | str | None:
    if name == "price" and position.price is None and position.quantity != 0:
        return NO_PRICE
    return _shown(position, name)


def _shown(row: Position | PortfolioValue, name: str) -> Decimal | None:
    """A percentage is read, not added up: two decimals are enough in the table (JSON keeps four). They are
    rounded once from the row's P/L and cost basis, as the four were: rounding those four again can be off."""
    if name == "pnl_pct":
        return percent(row.unrealized_pnl, row.cost_basis, PERCENT_SHOWN)
    return getattr(row, name)


def _exact(value: Decimal | None) -> str | None:
    return None if value is None else format(_no_negative_zero(value), "f")


def _cells(values: list[Decimal | str | None], least_decimals: int | None) -> list[str]:
    """Numbers with thousands separators and their decimal points in line: money padded with zeros to the
    column's most decimals (at least `least_decimals`), amounts with spaces; an unknown figure as "—"; words as
    they are. Padding is text added after the last digit: it never changes a number."""
    numbers = [value for value in values if isinstance(value, Decimal)]
    decimals = max([least_decimals or 0] + [_decimals(value) for value in numbers])
    filler = " " if least_decimals is None else "0"
    cells = []
    for value in values:
        if not isinstance(value, Decimal):
            cells.append(UNKNOWN if value is None else value)
            continue
        missing = decimals - _decimals(value)
        point = ("." if filler == "0" else " ") if missing and missing == decimals else ""
        cells.append(format(_no_negative_zero(value), ",f") + point + filler * missing)
    return cells


def _decimals(value: Decimal) -> int:
    return max(0, -int(value.as_tuple().exponent))


def _no_negative_zero(value: Decimal) -> Decimal:
    return abs(value) if value == 0 else value


def _coloured(cell: str, value) -> str:
    if not isinstance(value, Decimal) or value == 0:
        return cell
    figure = cell.strip()
    return cell.replace(figure, f"{_GREEN if value > 0 else _RED}{figure}{_RESET}")
