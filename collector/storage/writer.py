"""Batches records into InfluxDB without ever blocking the reader, and loses nothing.

A failed write is retried, dropped or held by its error class (`failures.py`); on a 401/403 the token file is
read again, since a later `collector bootstrap` may have replaced the token. Whatever cannot be written now
goes to the on-disk spool and is replayed, first spooled first, when InfluxDB takes writes again; newer
batches queue behind it (an adopted guest's or an overflow's batches may be older than ones before them: every
point carries its own time, so the order changes nothing stored). At most `queue_limit` points wait in memory;
more go straight to the spool.

The writer thread is supervised: a failure it does not know is logged with its traceback and the thread
starts over with the batch it held; after `restarts` failures in a row it gives up (`failed` is set) and the
process is expected to exit non-zero, so the container restarts. Its heartbeat file shows all of this to the
healthcheck. `close()` keeps to its time: request timeouts shrink to the time left, and what is not
written by then is spooled.
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from influxdb_client import WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from collector import heartbeat
from collector.config import Buckets
from collector.influx_settings import InfluxSettings
from collector.retry import Backoff
from collector.storage.current_token import CurrentTokenClient
from collector.storage.failures import DROP, HOLD, Failure, FailureLog, OutOfTime, classify
from collector.storage.inbox import Inbox, group_by_kind
from collector.storage.points import health_point, to_line
from collector.storage.spool import Spool
from collector.storage.writer_options import WriterOptions, WriterStats

log = logging.getLogger(__name__)

ADOPT_S = 5.0  # how often ended guests' spools are looked for
CLOSE_RESERVE_S = 1.0  # of close()'s time, kept for spooling what could not be written


class Writer:
    def __init__(
        self,
        settings: InfluxSettings,
        buckets: Buckets,
        spool: Spool,
        options: WriterOptions | None = None,
        heartbeat_file: Path | None = None,
    ):
        self.buckets = buckets
        self.spool = spool
        options = options or WriterOptions()
        self.options = options
        self.stats = WriterStats(spool_points=spool.points)
        self.failed = threading.Event()  # the writer gave up: the process should exit non-zero
        self.on_failed: Callable[[], None] | None = None  # called from the writer thread when it gives up
        self._inbox = Inbox(spool, options.queue_limit, options.batch_size, self._count_dropped)
        self._in_flight: dict[str, list[str]] = {}  # taken from the inbox, not yet written or spooled
        self._closing = threading.Event()
        self._deadline = float("inf")  # set by close()
        self._thread = threading.Thread(target=self._supervise, name="influx-writer", daemon=True)
        self._influx = CurrentTokenClient(settings, options.timeout_s)
        self._write_api = self._influx.client.write_api(write_options=SYNCHRONOUS)
        self._replay_at = 0.0
        self._adopt_at = 0.0
        self._replay_backoff = Backoff(options.backoff_s, options.max_backoff_s)
        self._failure_log = FailureLog(log)
        self._failures = 0  # in a row, reset by every complete round
        self._pulse = heartbeat.Pulse(heartbeat_file, self._figures)
        # for flush(): lines to settle (accepted here, found in the spool or adopted) against the lines settled
        # (written or dropped, straight away or from the spool, or set aside unreadable), both only ever growing
        self._to_settle = spool.points
        self._undelivered = 0  # writes failed for good (after quick retries): their points wait in the spool
        self._round_done = threading.Condition()
        self._flushes_released = threading.Event()
        # which of close() and the writer thread spools what is left and lets go of the spool: the last to end
        self._end_lock = threading.Lock()
        self._ended = False  # the writer thread has ended
        self._abandoned = False  # close() returned while the thread was still running

    # --- called from any thread -----------------------------------------------------------------------

    def start(self) -> None:
        self._pulse.beat(force=True)
        self._thread.start()

    @property
    def queued_points(self) -> int:
        """Points held in memory: the inbox and the batch in hand."""
        return len(self._inbox) + sum(map(len, list(self._in_flight.values())))

    def submit(self, records) -> None:
        """Never blocks: records are queued and written by the writer thread."""
        lines = [to_line(record) for record in records]
        self._count_to_settle(len(lines))
        self._inbox.put(lines, records=True)

    def submit_line(self, kind: str, line: str) -> None:
        """A point already in line protocol, for bucket `kind` (live, history or meta)."""
        self._count_to_settle(1)
        self._inbox.put([(kind, line)], records=False)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted before this call is in InfluxDB (or dropped), so a reader sees it: out of
        the queue and out of the spool. False if that took longer than `timeout_s`, a write failed meanwhile even
        after the quick retries (what failed waits in the spool; a retry that succeeds is no failure), the writer
        is closing or it has failed for good."""
        with self._round_done:
            target, undelivered = self._to_settle, self._undelivered

            def given_up() -> bool:  # stopping, dead, or a write failed for good since the call
                stopping = self._closing.is_set() or self._flushes_released.is_set()
                return stopping or self.failed.is_set() or self._undelivered > undelivered

            # lines settle in about the order they were accepted (the spool replays oldest first and newer lines
            # queue behind it; only a full in-memory queue lets newer lines overtake), so once as many are settled
            # as were waiting at the call, those are: unlike waiting for an idle moment, this ends under a steady
            # stream of newer points
            done = self._round_done.wait_for(lambda: given_up() or self._settled() >= target, timeout_s)
            return done and not given_up()

    def release_flushes(self) -> None:
        """A stop is under way: every flush() waiting now, or called later, returns False at once (close() comes
        after the producers have ended, and one of them may be waiting in flush())."""
        self._flushes_released.set()
        with self._round_done:
            self._round_done.notify_all()

    def _count_to_settle(self, lines: int) -> None:
        with self._round_done:
            self._to_settle += lines

    def _count_undelivered(self) -> None:
        with self._round_done:
            self._undelivered += 1
            self._round_done.notify_all()  # a flush() waiting now gives up: what failed waits in the spool

    def _settled(self) -> int:
        """Lines whose fate is sealed: written, dropped, or in an unreadable spool segment (never replayed)."""
        return self.stats.written_points + self.stats.dropped_points + self.spool.set_aside_points

    def lost_points(self) -> int:
        """Points that will never be stored: dropped, or in a spool segment set aside unreadable (only grows)."""
        return self.stats.dropped_points + self.spool.set_aside_points

    def submit_health(self, exchange: str, counters: dict) -> None:
        self.submit_line("live", health_point(exchange, counters).to_line_protocol())

    def feeds_alive(self, feeds: dict[str, float]) -> None:
        """Each exchange's last sign of life on its connection, shown by the heartbeat to the healthcheck."""
        self._pulse.feeds_alive(feeds)

    def close(self, timeout_s: float = 8.0) -> None:
        """Write or spool everything accepted, within `timeout_s`, then stop."""
        self._deadline = time.monotonic() + timeout_s
        self._closing.set()
        with self._round_done:
            self._round_done.notify_all()  # a flush() waiting now returns: nothing more will be replayed
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        with self._end_lock:
            ended = self._ended or self._thread.ident is None
            self._abandoned = not ended
        if ended:  # never started, ended normally (nothing left) or gave up
            self._finish()
        else:  # the spool stays locked: the thread may still append to it
            log.error(
                "the writer did not finish within %.0f s (a write in flight); it spools the %d points it holds "
                "when that write ends, unless the process exits first",
                timeout_s,
                self.queued_points,
            )

    def _finish(self) -> None:
        """Spool what is left in memory, then let go of the spool: once the writer thread can no longer append."""
        self._spill([(kind, line) for kind, lines in self._in_flight.items() for line in lines])
        self._in_flight = {}
        self._spill(self._inbox.take_all())
        if self._pulse.state != heartbeat.DEAD:
            self._pulse.set(heartbeat.STOPPED)
        self._influx.close()
        self.spool.close()

    # --- writer thread: supervision ----------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            self._run_restarting()
        finally:
            with self._end_lock:
                self._ended = True
                abandoned = self._abandoned
            if abandoned:  # close() gave up waiting and left the spool to this thread
                self._finish()

    def _run_restarting(self) -> None:
        backoff = Backoff(self.options.backoff_s, self.options.max_backoff_s)
        while True:
            try:
                self._run()
                return
            except Exception as exc:  # noqa: BLE001 - the supervisor's job: log it, start over
                self._failures += 1
                self.stats.restarts += 1
                self._pulse.set(heartbeat.FAILED, f"{exc.__class__.__name__}: {exc}")
                if self._closing.is_set():
                    log.exception("the writer failed while stopping; what it held is spooled")
                    return
                if self._failures >= self.options.restarts:
                    log.critical(
                        "the writer failed %d times in a row; giving up, the process exits so it restarts "
                        "(what was accepted is spooled)",
                        self._failures,
                        exc_info=True,
                    )
                    self._pulse.set(heartbeat.DEAD, self._pulse.error)
                    self.failed.set()
                    self._end_round()  # a flush() waiting now gives up: nothing more will be written
                    if self.on_failed:
                        self.on_failed()
                    return
                delay = backoff.next()
                log.exception("the writer failed; it starts over in %.1f s with what it held", delay)
                self._pause(delay)

    def _run(self) -> None:
        while True:
            closing = self._closing.is_set()
            if not self._in_flight:
                self._in_flight = self._collect(closing)
                self._pulse.beat()  # before a write that may hang: the heartbeat shows what was just taken
            while self._in_flight:  # a batch stays here until written, dropped or spooled
                kind = next(iter(self._in_flight))
                if not self._deliver(kind, self._in_flight[kind], closing):
                    return  # closing, and the spool fails: what is left is close()'s to count as lost
                del self._in_flight[kind]
            self._spill(self._inbox.take_overflow())
            if closing and not self._inbox:
                return
            if not closing:
                self._replay_if_due()
            self._failures = 0
            self.stats.spool_points = self.spool.points  # producers may have spilled into it too
            self._pulse.set(heartbeat.RUNNING)
            self._pulse.beat()
            self._end_round()

    def _end_round(self) -> None:
        with self._round_done:
            self._round_done.notify_all()  # a flush() waiting now checks what was settled meanwhile

    def _collect(self, closing: bool) -> dict[str, list[str]]:
        wait = 0.0 if closing else self.options.flush_interval_s
        return group_by_kind(self._inbox.take(self.options.batch_size, wait))

    # --- writer thread: delivery ---------------------------------------------------------------------------

    def _deliver(self, kind: str, lines: list[str], closing: bool) -> bool:
        """Write, drop or spool a batch; False when it is still in hand (closing, and the spool failed)."""
        if self.spool:  # older data waits on disk: keep the order
            return self._to_spool(kind, lines)
        attempts = 1 if closing else self.options.retry_attempts
        backoff = Backoff(self.options.backoff_s, self.options.max_backoff_s)
        attempt = 0
        while attempt < attempts:
            attempt += 1
            try:
                self._write(kind, lines)
                self.stats.written_points += len(lines)
                return True
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
                failure = classify(exc)
            if failure.outcome == DROP:  # handled for good: progress, unlike points lost to a full disk
                self._drop(failure, len(lines))
                return True
            self._report(failure)
            if failure.outcome == HOLD:
                if self._use_fresh_token():
                    attempt -= 1  # a new token deserves a try of its own
                    continue
                break
            if attempt == attempts:
                break
            self.stats.retries += 1
            # a stop interrupts the wait: the batch then goes to the spool
            if self._pause(min(failure.retry_after_s or backoff.next(), self.options.max_backoff_s)):
                break
        self._count_undelivered()
        return self._to_spool(kind, lines)

    def _replay_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._adopt_at:
            self._adopt_at = now + ADOPT_S
            if adopted := self.spool.adopt_guests():  # not the spool's growth: producers may spill meanwhile
                self._count_to_settle(adopted)  # older points, now ahead of flush()'s
                self.stats.spool_points = self.spool.points
        if self.spool and now >= self._replay_at:
            self._replay()

    def _replay(self) -> None:
        while not self._closing.is_set() and (oldest := self.spool.oldest()) is not None:
            path, kind, lines = oldest
            points = self.spool.points_in(path)
            written = points
            try:
                self._write(kind, lines)
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
                failure = classify(exc)
                if failure.outcome != DROP:
                    self._report(failure)
                    if failure.outcome == HOLD and self._use_fresh_token():
                        continue
                    self._count_undelivered()
                    wait = failure.retry_after_s or self._replay_backoff.next()
                    self._replay_at = time.monotonic() + min(wait, self.options.max_backoff_s)
                    break
                self._drop(failure, points)
                written = 0
            self.spool.remove(path)
            # counted once removed: a writer that fails in between replays the segment again after its restart
            self.stats.written_points += written
            self.stats.spool_points = self.spool.points
            self._pulse.beat()
        self.stats.spool_points = self.spool.points
        if not self.spool:
            self._replay_backoff.reset()
            if self._failure_log.recovered():
                log.info("InfluxDB takes writes again; the spool is empty")

    def _write(self, kind: str, lines: list[str]) -> None:
        timeout_s = min(self.options.timeout_s, self._deadline - CLOSE_RESERVE_S - time.monotonic())
        if timeout_s < 0.1:
            raise OutOfTime()
        started = time.monotonic()
        settings = self._influx.settings
        # the body as one string: a list makes influxdb-client inspect and encode each line apart, in this thread,
        # holding the interpreter lock the stream needs (an empty batch stays a list: no request at all)
        request = dict(bucket=getattr(self.buckets, kind), org=settings.org, record="\n".join(lines) or [])
        if timeout_s < self.options.timeout_s:  # closing: this write may only use the time left
            with settings.client(timeout_s) as client:
                client.write_api(write_options=SYNCHRONOUS).write(
                    **request, write_precision=WritePrecision.NS
                )
        else:
            self._write_api.write(**request, write_precision=WritePrecision.NS)
        self.stats.write_latency_ms = (time.monotonic() - started) * 1000
        self._pulse.progressed()

    def _use_fresh_token(self) -> bool:
        """Read the token file again; True when it holds a new token, now in use."""
        if not self._influx.renew():
            return False
        self._write_api = self._influx.client.write_api(write_options=SYNCHRONOUS)
        return True

    def _to_spool(self, kind: str, lines: list[str]) -> bool:
        """True when the batch left the writer's hands: spooled, or back in memory to be tried again shortly
        (the spool failing, e.g. a full disk). While closing, a failing spool ends the round at once: False."""
        try:
            self.spool.append(kind, lines)
        except OSError as exc:
            closing = self._closing.is_set()
            then = (
                "stopping: what is left is counted as lost"
                if closing
                else "the points stay in memory for now"
            )
            self._report(Failure(HOLD, f"the spool cannot take points: {exc.strerror or exc}"), action=then)
            if closing:
                return False
            self._inbox.put_back([(kind, line) for line in lines])
            self._pause(1.0)
            return True
        self.stats.spool_points = self.spool.points
        self._pulse.progressed()
        return True

    def _spill(self, items) -> None:
        if items and self._inbox.spill(items):
            self.stats.spool_points = self.spool.points
            self._pulse.progressed()

    def _count_dropped(self, points: int) -> None:
        with self._round_done:  # producers drop too (unencodable, full disk): no increment lost to a race
            self.stats.dropped_points += points

    def _drop(self, failure: Failure, points: int) -> None:
        """A batch InfluxDB refused for good: all of it, or (a partial write) the points it says it refused."""
        refused = failure.refused_of(points)
        self._report(failure, stored=points - refused)
        self._count_dropped(refused)
        self.stats.written_points += points - refused
        self._pulse.progressed()

    def _report(self, failure: Failure, stored: int = 0, action: str = "") -> None:
        """Count every failed write; log each kind once until writes succeed again (a HOLD again every minute).
        A partial write (`stored` points of it taken) is no failed write: what InfluxDB refused is counted in
        dropped_points."""
        if not stored:
            self.stats.write_errors += 1
        self._failure_log.log(failure, stored, action)

    # --- heartbeat ---------------------------------------------------------------------------------------------

    def _pause(self, seconds: float) -> bool:
        """Wait, still beating; True when a stop cut the wait short."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._closing.wait(min(left, heartbeat.BEAT_S)):
                return True
            self._pulse.beat()
        return self._closing.is_set()

    def _figures(self) -> dict[str, int]:
        """What the heartbeat shows besides the state."""
        return dict(
            waiting=self.queued_points,
            accepted=self._inbox.accepted_records,
            written=self.stats.written_points,
            spooled=self.spool.points,
        )
