"""Batches records into InfluxDB without ever blocking the reader, and loses nothing.

Retries by error class, as telegraf's influxdb_v2 output does: network errors, 429 and 5xx are retried with
backoff honouring Retry-After; other 4xx are dropped and counted; 401/403 (and a missing bucket, 404) are
configuration problems, reported loudly while the data waits in the spool. Whatever cannot be written now
goes to the on-disk spool and is replayed, oldest first, when InfluxDB takes writes again; newer batches
queue behind it so order is kept.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass

import urllib3
from influxdb_client import WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from collector.config import Buckets
from collector.influx_settings import InfluxSettings, api_error_message
from collector.retry import Backoff, retry_after_seconds
from collector.storage.points import health_point, to_line
from collector.storage.spool import Spool

log = logging.getLogger(__name__)

RETRY, DROP, HOLD = "retry", "drop", "hold"


@dataclass(frozen=True)
class WriterOptions:
    batch_size: int = 5000
    flush_interval_s: float = 1.0
    timeout_s: float = 4.0  # per HTTP request; bounds how long shutdown can wait on a hung server
    retry_attempts: int = 3  # quick retries before a batch is spooled
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0


@dataclass
class WriterStats:
    written_points: int = 0
    dropped_points: int = 0
    write_errors: int = 0
    retries: int = 0
    write_latency_ms: float = 0.0
    spool_points: int = 0


@dataclass(frozen=True)
class Failure:
    outcome: str  # RETRY, DROP or HOLD
    reason: str
    retry_after_s: float | None = None


def classify(exc: Exception) -> Failure:
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


class Writer:
    def __init__(
        self,
        settings: InfluxSettings,
        buckets: Buckets,
        spool: Spool,
        options: WriterOptions = WriterOptions(),
    ):
        self.settings = settings
        self.buckets = buckets
        self.spool = spool
        self.options = options
        self.stats = WriterStats(spool_points=spool.points)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._client = settings.client(options.timeout_s)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._replay_at = 0.0
        self._replay_backoff = Backoff(options.backoff_s, options.max_backoff_s)
        self._reported: set[str] = set()
        self._accepted = (
            0  # records submitted, and of those handled (written, dropped or spooled): for flush()
        )
        self._handled = 0
        self._progress = threading.Condition()

    # --- called from any thread -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, records) -> None:
        """Never blocks: records are queued and written by the writer thread."""
        for record in records:
            self.submit_line(*to_line(record))

    def submit_line(self, kind: str, line: str) -> None:
        """A point already in line protocol, for bucket `kind` (live, history or meta)."""
        with self._progress:
            self._accepted += 1
        self._queue.put((kind, line))

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted before this call is in InfluxDB (or dropped), so a reader sees it: out of
        the queue and out of the spool. False if that took longer than `timeout_s`."""
        with self._progress:
            target = self._accepted
            return self._progress.wait_for(lambda: self._handled >= target and not self.spool, timeout_s)

    def submit_health(self, exchange: str, counters: dict) -> None:
        self.submit_line("live", health_point(exchange, counters).to_line_protocol())

    def close(self, timeout_s: float = 8.0) -> None:
        """Write (or spool) everything accepted, then stop."""
        self._closing.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("writer did not finish within %.0f s; unsent points stay queued in memory", timeout_s)
        self._client.close()

    # --- writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            closing = self._closing.is_set()
            batches = self._collect(closing)
            for kind, lines in batches.items():
                self._deliver(kind, lines, closing)
                self._mark_handled(len(lines))
            if closing and self._queue.empty():
                return
            if self.spool and time.monotonic() >= self._replay_at and not closing:
                self._replay()

    def _collect(self, closing: bool) -> dict[str, list[str]]:
        batches: dict[str, list[str]] = {}
        count = 0
        deadline = time.monotonic() + (0 if closing else self.options.flush_interval_s)
        while count < self.options.batch_size:
            try:
                wait = max(0.0, deadline - time.monotonic())
                kind, line = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
            except queue.Empty:
                break
            batches.setdefault(kind, []).append(line)
            count += 1
        return batches

    def _deliver(self, kind: str, lines: list[str], closing: bool) -> None:
        if self.spool:  # older data waits on disk: keep the order
            self._to_spool(kind, lines)
            return
        attempts = 1 if closing else self.options.retry_attempts
        backoff = Backoff(self.options.backoff_s, self.options.max_backoff_s)
        for attempt in range(attempts):
            try:
                self._write(kind, lines)
                return
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
                failure = classify(exc)
            self._report(failure)
            if failure.outcome == DROP:
                self.stats.dropped_points += len(lines)
                return
            if failure.outcome == HOLD or attempt == attempts - 1:
                break
            self.stats.retries += 1
            # a stop interrupts the wait: the batch then goes to the spool
            if self._closing.wait(min(failure.retry_after_s or backoff.next(), self.options.max_backoff_s)):
                break
        self._to_spool(kind, lines)

    def _replay(self) -> None:
        while (oldest := self.spool.oldest()) is not None and not self._closing.is_set():
            path, kind, lines = oldest
            try:
                self._write(kind, lines)
            except Exception as exc:  # noqa: BLE001
                failure = classify(exc)
                self._report(failure)
                if failure.outcome != DROP:
                    wait = failure.retry_after_s or self._replay_backoff.next()
                    self._replay_at = time.monotonic() + min(wait, self.options.max_backoff_s)
                    return
                self.stats.dropped_points += len(lines)
            self.spool.remove(path, len(lines))
            self.stats.spool_points = self.spool.points
            self._mark_handled(0)  # wakes flush(), which waits for an empty spool
        if not self.spool:
            self._replay_backoff.reset()
            if self._reported:
                log.info("InfluxDB takes writes again; the spool is empty")
                self._reported.clear()

    def _write(self, kind: str, lines: list[str]) -> None:
        started = time.monotonic()
        self._write_api.write(
            bucket=getattr(self.buckets, kind),
            org=self.settings.org,
            record=lines,
            write_precision=WritePrecision.NS,
        )
        self.stats.write_latency_ms = (time.monotonic() - started) * 1000
        self.stats.written_points += len(lines)

    def _to_spool(self, kind: str, lines: list[str]) -> None:
        try:
            self.spool.append(kind, lines)
        except OSError as exc:
            # e.g. a full disk: keep the points queued in memory and try again shortly
            self._report(Failure(HOLD, f"spool unusable: {exc.strerror or exc}"))
            for line in lines:
                self._queue.put((kind, line))
            self._mark_handled(-len(lines))  # back in the queue: handled when they leave it again
            self._closing.wait(1.0)
            return
        self.stats.spool_points = self.spool.points

    def _mark_handled(self, count: int) -> None:
        with self._progress:
            self._handled += count
            self._progress.notify_all()

    def _report(self, failure: Failure) -> None:
        """Count every failure; log each kind once until writes succeed again."""
        self.stats.write_errors += 1
        key = failure.reason.split(":")[0]
        if key in self._reported:
            return
        self._reported.add(key)
        level = logging.ERROR if failure.outcome == HOLD else logging.WARNING
        action = {
            RETRY: "keeping the points in the spool and retrying",
            DROP: "dropping the batch",
            HOLD: "keeping the points in the spool",
        }
        log.log(level, "write to InfluxDB failed (%s); %s", failure.reason, action[failure.outcome])
