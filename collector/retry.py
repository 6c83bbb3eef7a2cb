"""Backoff with jitter and Retry-After parsing, shared by the InfluxDB writer and the exchange clients."""

import random
import time
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header: delta seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class Backoff:
    """Exponential backoff with full jitter, reset after a success."""

    def __init__(self, first_s: float = 1.0, max_s: float = 60.0):
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def next(self) -> float:
        delay = self._next * (0.5 + random.random() / 2)
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


def retry_wait(backoff: Backoff, retry_after_s: float | None) -> float:
    """The pause before a retry: Retry-After is a minimum, never a reason to skip the backoff (a "0" or a date
    already past, e.g. clock skew, would otherwise retry in a hot loop)."""
    return max(backoff.next(), retry_after_s or 0.0)
