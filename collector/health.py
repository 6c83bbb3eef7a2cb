"""Per-exchange counters and state, written as `collector` points.

Errors are counted always; each kind is logged once while it lasts, and again after the next recovery, so a
log shows every outage without one line per failed message.
"""

import logging
import time
from dataclasses import dataclass, field, fields

from collector.records import EXCHANGE_VALUES, inexact


@dataclass
class ExchangeHealth:
    messages: int = 0
    trades: int = 0
    gap_filled: int = 0
    errors: int = 0
    reconnects: int = 0
    rate_limited: int = 0  # HTTP 429 answers and 418 bans, retried or not
    unrecoverable_gap_s: float = 0.0  # trade history given up on: older than the exchange's REST reach
    connected: int = 0  # 1 while a websocket connection is open
    backfill_lag_s: float = 0.0
    inexact_values: int = 0  # exchange values a float cannot carry exactly: written as the nearest one
    last_message_s: float | None = field(default=None, repr=False)  # wall clock of the last message
    last_alive_s: float | None = field(default=None, repr=False)  # ...of the last message or pong
    _failing: set[str] = field(default_factory=set, repr=False)
    _inexact_logged: set[str] = field(default_factory=set, repr=False)
    _started_s: float = field(
        default_factory=time.time, repr=False
    )  # before any message, the age counts from here

    def error(self, logger: logging.Logger, kind: str, message: str, *args) -> None:
        self.errors += 1
        if kind not in self._failing:
            self._failing.add(kind)
            logger.warning(message + " (further ones are counted, not logged, until it works again)", *args)

    def recovered(self, logger: logging.Logger, kind: str, message: str, *args) -> None:
        """`kind` works again: say so if it was failing, and log its next failure again."""
        if kind in self._failing:
            self._failing.discard(kind)
            logger.info(message, *args)

    def skipped_rows(self, logger: logging.Logger, source: str, rows: list[str]) -> None:
        """Rows of a REST answer that could not be used (the rest of it was): each one counted as an error."""
        kind = f"bad-row:{source}"
        for row in rows:
            self.error(logger, kind, "%s: skipped an unusable row (%s)", source, row)
        if not rows:
            self.recovered(logger, kind, "%s: every row usable again", source)

    def count_inexact(self, logger: logging.Logger, records) -> None:
        """Exchange values that will not read back exactly once written as floats: still written (the nearest
        float), never silently: counted, and each kind (measurement and field) logged once with its exact text."""
        for record in records:
            for name in EXCHANGE_VALUES.get(type(record), ()):
                value = getattr(record, name)
                if value is None or not inexact(value):
                    continue
                self.inexact_values += 1
                kind = f"{type(record).__name__.lower()} {name}"
                if kind not in self._inexact_logged:
                    self._inexact_logged.add(kind)
                    logger.warning(
                        "%s %s: %s %s is stored as the nearest float %r: a float holds 15 significant digits"
                        " (further ones are counted in inexact_values, not logged)",
                        getattr(record, "exchange", ""),
                        getattr(record, "pair", getattr(record, "symbol", "")),
                        kind,
                        value,
                        float(value),
                    )

    def recovered_all(self, prefix: str) -> None:
        """Forget every failing kind starting with `prefix` (e.g. a new connection for message errors)."""
        self._failing = {kind for kind in self._failing if not kind.startswith(prefix)}

    def alive_s(self) -> float:
        """When the connection last showed it is alive (a message or a pong); the start while it never did."""
        return self._started_s if self.last_alive_s is None else self.last_alive_s

    def counters(self, now_s: float | None = None) -> dict[str, float]:
        """Every public field, as written to the `collector` measurement, and the age of the last message: since
        the start while there was none, so a collector that cannot connect shows a growing age, not the
        previous process's last one."""
        values = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not f.name.startswith("_") and f.name not in ("last_message_s", "last_alive_s")
        }
        now_s = time.time() if now_s is None else now_s
        last_s = self._started_s if self.last_message_s is None else self.last_message_s
        values["last_message_age_s"] = max(0.0, now_s - last_s)
        return values
