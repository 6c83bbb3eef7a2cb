"""Per-exchange counters, written as `collector` points; errors are counted always and logged once per kind."""

import logging
from dataclasses import dataclass, field


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
        return {
            "messages": self.messages,
            "trades": self.trades,
            "gap_filled": self.gap_filled,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "backfill_lag_s": float(self.backfill_lag_s),
        }
