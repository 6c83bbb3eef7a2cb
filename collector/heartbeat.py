"""The writer's heartbeat file, and the judgement the container's healthcheck (`collector healthcheck`) makes.

The writer thread itself writes the file, about every second: the healthcheck so judges the writer, not some
other task that could keep running while the writer is dead.
"""

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STALE_S = 30.0  # no beat for this long: the writer thread is dead or hung
STUCK_S = 120.0  # points waiting, and nothing written or spooled for this long

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


def write_beat(path: Path, beat: Beat) -> None:
    """Atomically, so the healthcheck never reads half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(beat)), encoding="utf-8")
    os.replace(partial, path)


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
    return None
