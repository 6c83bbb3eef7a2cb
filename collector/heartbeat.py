"""The writer's heartbeat file, and the judgement the container's healthcheck (`collector healthcheck`) makes.

The writer thread itself writes the file, about every second: the healthcheck so judges the writer, not some
other task that could keep running while the writer is dead.
"""

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BEAT_S = 1.0  # how often the writer thread writes the file
STALE_S = 30.0  # no beat for this long: the writer thread is dead or hung
STUCK_S = 120.0  # points waiting, and nothing written or spooled for this long
# an exchange's connection silent for this long, not even a pong: its feed is down. Trades are not the measure:
# a rarely traded pair is quiet on a live connection.
FRESH_S = 600.0

RUNNING, FAILED, DEAD, STOPPED = "running", "failed", "dead", "stopped"
STATE_PROBLEMS = {
    FAILED: "the writer failed and is starting over",
    DEAD: "the writer failed for good",
    STOPPED: "the writer has stopped",
}


@dataclass(frozen=True)
class Beat:
    pid: int
    state: str  # RUNNING; FAILED while it restarts after an error; DEAD once it gave up; STOPPED after close
    time: float  # wall clock of this beat
    progress: float  # when points were last written or spooled, or nothing was waiting
    waiting: int  # points accepted and not yet written or spooled
    accepted: int  # points of records accepted since the process started (health points aside)
    written: int
    spooled: int  # points on disk now
    error: str = ""
    # exchange -> wall clock of its connection's last message or pong (its start while there was none)
    feeds: dict[str, float] = field(default_factory=dict)


def write_beat(path: Path, beat: Beat) -> None:
    """Atomically, so the healthcheck never reads half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(beat)), encoding="utf-8")
    os.replace(partial, path)


class Pulse:
    """The writer thread's side: its state and progress, written to the file at most every BEAT_S, and at once
    when the state changes. `figures()` gives the Beat's waiting, accepted, written and spooled now."""

    def __init__(self, path: Path | None, figures: Callable[[], dict[str, int]]):
        self.path = path
        self.state, self.error = RUNNING, ""
        self._figures = figures
        self._progress = time.time()
        self._feeds: dict[str, float] = {}
        self._due = 0.0
        self._failing: OSError | None = None

    def progressed(self) -> None:
        """Points were written or spooled: a writer that failed is running again, even in mid-round."""
        self._progress = time.time()
        if self.state == FAILED:
            self.set(RUNNING)

    def feeds_alive(self, feeds: dict[str, float]) -> None:
        """The feeds' last signs of life, from the event loop: a hung loop stops them too. A new dict is set at
        once (no lock needed), never changed afterwards."""
        self._feeds = dict(feeds)

    def set(self, state: str, error: str = "") -> None:
        if (state, error) != (self.state, self.error):
            self.state, self.error = state, error
            self.beat(force=True)

    def beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or (not force and now < self._due):
            return
        self._due = now + BEAT_S
        figures = self._figures()
        if not figures["waiting"]:
            self._progress = time.time()  # nothing waits: nothing is stuck
        beat = Beat(
            pid=os.getpid(),
            state=self.state,
            time=time.time(),
            progress=self._progress,
            error=self.error,
            feeds=self._feeds,
            **figures,
        )
        try:
            write_beat(self.path, beat)
            self._failing = None
        except OSError as exc:
            if self._failing is None:  # once until it works again: it is tried every second
                log.error("cannot write the heartbeat file %s: %s", self.path, exc.strerror)
            self._failing = exc


def read_beat(path: Path) -> Beat | None:
    try:
        return Beat(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def judge(beat: Beat | None, now: float | None = None) -> str | None:
    """Why the writer is unhealthy, or None when it is healthy."""
    now = time.time() if now is None else now
    if beat is None:
        return "no heartbeat from the writer (not started, or the file is unreadable)"
    if beat.state in STATE_PROBLEMS:
        return STATE_PROBLEMS[beat.state] + (f" ({beat.error})" if beat.error else "")
    if now - beat.time > STALE_S:
        return f"the writer has not reported for {now - beat.time:.0f} s (dead or hung)"
    if beat.waiting and now - beat.progress > STUCK_S:
        return f"{beat.waiting} points waiting and nothing written or spooled for {now - beat.progress:.0f} s"
    if beat.feeds:
        name, alive = min(beat.feeds.items(), key=lambda feed: feed[1])
        if now - alive > FRESH_S:
            return (
                f"{name}: no message or pong on its connection for {now - alive:.0f} s (see the log for why)"
            )
    return None
