"""What a failed write means, by error class (as telegraf's influxdb_v2 output sorts them).

Network errors, 429 and 5xx are retried with backoff honouring Retry-After; other 4xx are dropped and
counted; 401/403 and a missing bucket (404) are configuration problems: the points wait in the spool.
A partial write (422, e.g. points older than the bucket's retention) stored the rest of the batch: the answer
says how many points were refused (`dropped=N`), and only those are dropped.
Anything else is not classified: it is re-raised for the writer's supervisor to log with its traceback.
"""

import logging
import re
import time
from dataclasses import dataclass

import urllib3
from influxdb_client.rest import ApiException

from collector.influx_settings import api_error_message
from collector.retry import retry_after_seconds

RETRY, DROP, HOLD = "retry", "drop", "hold"
RELOG_HOLD_S = 60.0  # a configuration problem (401/403/404) is logged again this often while it lasts
REFUSED = re.compile(r"\bdropped[= ](\d+)")  # "partial write: points beyond retention policy dropped=1"


@dataclass(frozen=True)
class Failure:
    outcome: str  # RETRY, DROP or HOLD
    reason: str
    retry_after_s: float | None = None
    refused: int | None = None  # of a DROP: how many points InfluxDB refused, when it says (a partial write)

    def refused_of(self, points: int) -> int:
        return points if self.refused is None else min(self.refused, points)


class OutOfTime(Exception):
    """close()'s time is up: what is left goes to the spool without another write."""


def classify(exc: Exception) -> Failure:
    if isinstance(exc, OutOfTime):
        return Failure(RETRY, "shutting down: no time left to write")
    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason = f"HTTP {status} {api_error_message(exc)}"
        if status == 429 or status >= 500:
            return Failure(RETRY, reason, retry_after_seconds((exc.headers or {}).get("Retry-After")))
        if status in (401, 403):
            return Failure(
                HOLD, f"{reason}: the collector token is not allowed to write (run bootstrap again)"
            )
        if status == 404:
            return Failure(HOLD, f"{reason}: bucket missing (run bootstrap again)")
        refused = REFUSED.search(reason)
        return Failure(DROP, reason, refused=int(refused.group(1)) if refused else None)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return Failure(RETRY, f"InfluxDB unreachable: {exc.__class__.__name__}")
    raise exc


class FailureLog:
    """Each kind of failure is logged once until writes succeed again; a HOLD (a configuration problem, or a
    spool that cannot take points) again every minute while it lasts."""

    def __init__(self, log: logging.Logger):
        self._log = log
        self._logged: dict[str, float] = {}  # failure kind -> when it was last logged

    def log(self, failure: Failure, stored: int = 0, action: str = "") -> None:
        """`stored`: of a partial write, the points InfluxDB took; `action`: what happens now, when the failure
        is not a write's."""
        key = failure.reason.split(":")[0]
        now = time.monotonic()
        last = self._logged.get(key)
        if last is not None and (failure.outcome != HOLD or now - last < RELOG_HOLD_S):
            return
        self._logged[key] = now
        level = logging.ERROR if failure.outcome == HOLD else logging.WARNING
        if action:
            self._log.log(level, "%s; %s", failure.reason, action)
            return
        actions = {
            RETRY: "keeping the points in the spool and retrying",
            DROP: f"{failure.refused} points dropped, InfluxDB stored the other {stored}"
            if stored
            else "dropping the batch",
            HOLD: "keeping the points in the spool",
        }
        self._log.log(level, "write to InfluxDB failed (%s); %s", failure.reason, actions[failure.outcome])

    def recovered(self) -> bool:
        """Writes succeed again: every kind is logged anew. True when a failure had been logged."""
        logged = bool(self._logged)
        self._logged.clear()
        return logged
