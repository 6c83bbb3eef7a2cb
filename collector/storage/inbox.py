"""Points accepted for writing and not yet taken by the writer thread: bounded in memory, never blocking.

Beyond `limit` points, new ones gather in a small overflow that goes to the on-disk spool once it holds a
batch (or the writer thread takes it), so a dead or slow writer never turns into unbounded memory.
"""

import logging
import threading
import time
from collections import deque

from collector.storage.spool import Spool

log = logging.getLogger(__name__)

Item = tuple[str, str]  # (bucket kind, line protocol)


class Inbox:
    def __init__(self, spool: Spool, limit: int, overflow_batch: int, on_dropped):
        self._spool = spool
        self._limit = limit
        self._overflow_batch = overflow_batch
        self._on_dropped = on_dropped
        self._items: deque[Item] = deque()
        self._overflow: list[Item] = []
        self._ready = threading.Condition()
        self._wanted = (
            0  # how many points the writer thread waits for (0: it does not wait); put() wakes it then
        )
        self.accepted_records = 0  # points of records, counted apart from lines such as health points

    def __len__(self) -> int:
        return len(self._items) + len(self._overflow)

    def put(self, items: list[Item], records: bool) -> None:
        items = self._encodable(items)
        spill = None
        with self._ready:
            if records:
                self.accepted_records += len(items)
            room = max(0, self._limit - len(self._items))
            self._items.extend(items[:room])
            self._overflow.extend(items[room:])
            if len(self._overflow) >= self._overflow_batch:
                spill, self._overflow = self._overflow, []
            if (
                self._wanted and len(self._items) >= self._wanted
            ):  # a notify per trade would cost more than the trade
                self._ready.notify()
        if spill:
            self.spill(spill)

    def _encodable(self, items: list[Item]) -> list[Item]:
        """The points that can be sent as UTF-8. One that cannot (a lone surrogate, which json.loads accepts, e.g.
        a coin name cut inside an emoji) is dropped here, counted and logged: taken in, it would fail its whole
        batch on every write and spool append."""
        if all(line.isascii() for _, line in items):  # the usual case, and a cheap test
            return items
        kept = []
        for kind, line in items:
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as exc:
                log.error("a point dropped: it cannot be encoded as UTF-8 (%s): %.200r", exc.reason, line)
                self._on_dropped(1)
            else:
                kept.append((kind, line))
        return kept

    def put_back(self, items: list[Item]) -> None:
        """Points the writer had taken and could not deliver: first in line again (they were in memory)."""
        with self._ready:
            self._items.extendleft(reversed(items))
            self._ready.notify()

    def take(self, count: int, wait_s: float) -> list[Item]:
        """Up to `count` points, waiting up to `wait_s` for that many to gather."""
        deadline = time.monotonic() + wait_s
        with self._ready:
            self._wanted = count
            try:
                while len(self._items) < count and (left := deadline - time.monotonic()) > 0:
                    self._ready.wait(left)
            finally:
                self._wanted = 0
            return [self._items.popleft() for _ in range(min(count, len(self._items)))]

    def take_all(self) -> list[Item]:
        with self._ready:
            items = list(self._items) + self._overflow
            self._items.clear()
            self._overflow = []
            return items

    def take_overflow(self) -> list[Item]:
        with self._ready:
            items, self._overflow = self._overflow, []
            return items

    def spill(self, items: list[Item]) -> int:
        """Straight to the spool; only a spool that cannot take them (a full disk) loses them, counted.
        Returns how many points were spooled."""
        spooled = 0
        for kind, lines in group_by_kind(items).items():
            try:
                self._spool.append(kind, lines)
                spooled += len(lines)
            except OSError as exc:
                log.error(
                    "%d points lost: they cannot be kept in memory and the spool cannot take them (%s)",
                    len(lines),
                    exc.strerror or exc,
                )
                self._on_dropped(len(lines))
        return spooled


def group_by_kind(items: list[Item]) -> dict[str, list[str]]:
    batches: dict[str, list[str]] = {}
    for kind, line in items:
        batches.setdefault(kind, []).append(line)
    return batches
