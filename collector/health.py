"""Per-exchange counters, written as `collector` points; errors are counted always and logged once per kind."""

import logging
from dataclasses import dataclass, field, fields


@dataclass
class ExchangeHealth:
    messages: int = 0
    trades: int = 0
    gap_filled: int = 0
    errors: int = 0
    reconnects: int = 0
    backfill_lag_s: float = 0.0
    _logged: set[str] = field(default_factory=set, repr=False)

    def error(self, logger: logging.Logger, kind: str, message: str, *args) -> None:
        self.errors += 1
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(message + " (further ones are counted, not logged)", *args)

    def counters(self) -> dict[str, float]:
        """Every public field, as written to the `collector` measurement."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
