"""What a failed write means, by error class (as telegraf's influxdb_v2 output sorts them).

Network errors, 429 and 5xx are retried with backoff honouring Retry-After; other 4xx are dropped and
counted; 401/403 and a missing bucket (404) are configuration problems: the points wait in the spool.
Anything else is not classified: it is re-raised for the writer's supervisor to log with its traceback.
"""

from dataclasses import dataclass

import urllib3
from influxdb_client.rest import ApiException

from collector.influx_settings import api_error_message
from collector.retry import retry_after_seconds

RETRY, DROP, HOLD = "retry", "drop", "hold"


@dataclass(frozen=True)
class Failure:
    outcome: str  # RETRY, DROP or HOLD
    reason: str
    retry_after_s: float | None = None


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
        return Failure(DROP, reason)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return Failure(RETRY, f"InfluxDB unreachable: {exc.__class__.__name__}")
    raise exc
