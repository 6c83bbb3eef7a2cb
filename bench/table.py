"""The one table `make bench` prints: each row a measured figure, its goal and whether it is met."""

import os
import platform
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    figure: str
    goal: str = ""
    met: bool | None = None  # None: a reference figure with no goal of its own

    @property
    def status(self) -> str:
        return {True: "met", False: "NOT MET", None: ""}[self.met]


def machine() -> str:
    """What the figures were measured on, and how busy it was (other work shares the cores)."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown cpu",
    )
    memory_kb = next(
        (int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0
    )
    return f"{os.cpu_count()} cores ({cpu}), {memory_kb / 2**20:.1f} GiB, Python {platform.python_version()}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def render(rows: list[Row]) -> str:
    headers = ("row", "measured", "goal", "status")
    cells = [headers] + [(row.name, row.figure, row.goal, row.status) for row in rows]
    widths = [max(len(cell[i]) for cell in cells) for i in range(len(headers))]
    lines = [
        " | ".join(text.ljust(width) for text, width in zip(cell, widths, strict=True)).rstrip()
        for cell in cells
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _lines(path: str) -> list[str]:
    try:
        with open(path) as handle:
            return handle.read().splitlines()
    except OSError:
        return []
