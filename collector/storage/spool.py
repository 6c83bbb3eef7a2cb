"""A durable FIFO of line-protocol batches on disk, for while InfluxDB cannot take them.

One file per batch, named by a rising sequence number, the bucket kind and the number of points
(`0000000000000007.live.250.lp`), written to a temporary name, fsynced and renamed, so a crash leaves either the
whole batch or none of it. A file holds the batch exactly as it is sent: its points joined by newlines. A string
field may hold a newline of its own, so the count comes from the name, and a file is split on newlines only
(never at the other line breaks str.splitlines() knows, which string fields keep): joined again, it is the same
payload. A name without a count (written by an earlier version) is counted by its lines.

A spool directory belongs to one process at a time: it holds an exclusive lock on `.lock` (flock, released by
the OS when the process dies, however it dies). A second process, e.g. `collector backfill` run next to
`collector run`, gets a guest directory of its own (`guests/<pid>-<time>`, locked the same way); the owner of
the spool adopts a guest's segments once the guest has ended, so they are replayed too. Only the holder of a
directory's lock creates, renames or deletes files in it: sequence numbers never collide and no process
removes another one's files.
"""

import fcntl
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import fields
from pathlib import Path

from collector.config import Buckets

log = logging.getLogger(__name__)

SUFFIX = ".lp"
LOCK = ".lock"
GUESTS = "guests"
UNREADABLE = "unreadable"  # segments that could not be read or parsed, kept for a person to look at
KINDS = frozenset(f.name for f in fields(Buckets))
STAGING_S = 60.0  # a guest directory still under its hidden set-up name after this long was abandoned
SEGMENT = re.compile(r"^(\d{16})\.([a-z]+)(?:\.(\d+))?\.lp$")  # sequence, kind, points


class Spool:
    def __init__(self, directory: Path):
        self.root = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._lock_fd = _try_lock(directory)
        if self._lock_fd is None:
            owner = _holder(directory)
            self.directory, self._lock_fd = _new_guest(directory)
            log.warning(
                "spool %s is in use by another collector process (pid %s); this process spools to %s, "
                "which that process replays once this one has ended",
                directory,
                owner,
                self.directory,
            )
        else:
            self.directory = directory
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()  # an append that never finished renaming: never acknowledged (the lock is ours)
        found = sorted(path for path in self.directory.iterdir() if SEGMENT.match(path.name))
        self._segments = {path: _points_in(path) for path in found}  # oldest first, with their points
        self._points = sum(self._segments.values())
        self.set_aside_points = 0  # of unreadable segments set aside: they will never be replayed
        self._next = int(found[-1].name.split(".")[0]) + 1 if found else 0
        self.adopt_guests()

    @property
    def is_guest(self) -> bool:
        return self.directory != self.root

    @property
    def points(self) -> int:
        return self._points

    def __bool__(self) -> bool:
        return bool(self._segments)

    def append(self, kind: str, lines: list[str]) -> None:
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            path = self._next_path(f"{kind}.{len(lines)}")
            partial = path.with_suffix(".tmp")
            try:
                with partial.open("wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                partial.rename(path)
            except BaseException:
                partial.unlink(missing_ok=True)  # e.g. a full disk: a partial file only takes space
                raise
            _fsync_dir(self.directory)
            self._add(path, len(lines))

    def oldest(self) -> tuple[Path, str, list[str]] | None:
        """The oldest readable segment; one that cannot be read or parsed is set aside, loudly, and skipped."""
        while True:
            with self._lock:
                if not self._segments:
                    return None
                path = next(iter(self._segments))
            kind = SEGMENT.match(path.name).group(2)
            try:
                if kind not in KINDS:
                    raise ValueError(f"unknown bucket kind {kind!r}")
                lines = path.read_bytes().decode("utf-8").split("\n")
                if lines[-1] == "":
                    lines.pop()  # the newline that ends the last point
                return path, kind, lines
            except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                self._set_aside(path, exc)

    def points_in(self, path: Path) -> int:
        """The points of a segment (its lines may be more: a string field may hold a newline)."""
        with self._lock:
            return self._segments[path]

    def remove(self, path: Path) -> None:
        with self._lock:
            path.unlink(missing_ok=True)
            self._points -= self._segments.pop(path)

    def adopt_guests(self) -> int:
        """Move the segments of guests that have ended into this spool; returns how many points were adopted."""
        guests = self.root / GUESTS
        if self.is_guest or not guests.is_dir():
            return 0
        adopted = 0
        for guest in sorted(guests.iterdir()):
            staging = guest.name.startswith(".")
            if staging and not _older_than(guest, STAGING_S):
                continue  # a guest still being set up
            try:
                fd = _try_lock(guest)
            except OSError:
                continue  # gone meanwhile
            if fd is None:
                continue  # still running: its segments are its own
            try:
                adopted += self._adopt(
                    guest
                )  # a staging one, left by a process killed while setting it up: none
            finally:
                os.close(fd)
        return adopted

    def close(self) -> None:
        """Release the lock; an empty guest directory is removed first."""
        with self._lock:
            if self._lock_fd is None:
                return
            if self._segments:
                log.warning(
                    "%d points wait in the spool %s; %s",
                    self._points,
                    self.directory,
                    "the collector that owns the spool replays them"
                    if self.is_guest
                    else "replayed at the next start",
                )
            elif self.is_guest:
                for leftover in self.directory.glob("*.tmp"):
                    leftover.unlink()
                (self.directory / LOCK).unlink(missing_ok=True)
                _remove_empty_dir(self.directory)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- inside the lock --------------------------------------------------------------------------------------

    def _add(self, path: Path, points: int) -> None:
        self._segments[path] = points
        self._points += points

    def _next_path(self, name: str) -> Path:
        """The next segment's path; `name` is what follows the sequence number: kind and points."""
        path = self.directory / f"{self._next:016d}.{name}{SUFFIX}"
        self._next += 1
        return path

    def _adopt(self, guest: Path) -> int:
        segments = sorted(path for path in guest.iterdir() if SEGMENT.match(path.name))
        points = 0
        with self._lock:
            for segment in segments:
                target = self._next_path(segment.name.split(".", 1)[1].removesuffix(SUFFIX))
                segment.rename(target)
                points += _points_in(target)
                self._add(target, _points_in(target))
            _fsync_dir(self.directory)
        for leftover in guest.glob("*.tmp"):
            leftover.unlink()
        (guest / LOCK).unlink(missing_ok=True)
        _remove_empty_dir(guest)
        if segments:
            log.info("adopted %d spooled batches of an ended collector process from %s", len(segments), guest)
        return points

    def _set_aside(self, path: Path, exc: Exception) -> None:
        target = self.root / UNREADABLE / f"{time.time_ns()}-{os.getpid()}-{path.name}"
        with self._lock:
            target.parent.mkdir(exist_ok=True)
            try:
                path.rename(target)
                where = f"moved to {target}"
            except OSError as move_error:
                where = f"left in place, cannot be moved: {move_error.strerror}"
            points = self._segments.pop(path)
            self._points -= points
            self.set_aside_points += points
        log.error(
            "spool segment %s cannot be read (%s: %s); its points are not replayed (%s)",
            path,
            exc.__class__.__name__,
            exc,
            where,
        )


def _try_lock(directory: Path) -> int | None:
    """An exclusive lock on the directory's lock file, or None when another process holds it."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _holder(directory: Path) -> str:
    try:
        return (directory / LOCK).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _new_guest(root: Path) -> tuple[Path, int]:
    """A locked guest directory, prepared under a hidden name so the owner never sees it unlocked."""
    (root / GUESTS).mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".guest-", dir=root / GUESTS))
    fd = _try_lock(staging)
    guest = root / GUESTS / f"{os.getpid()}-{time.time_ns()}"
    staging.rename(guest)
    return guest, fd


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False  # gone meanwhile


def _remove_empty_dir(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError as exc:
        log.warning("cannot remove %s: %s", directory, exc.strerror)


def _points_in(path: Path) -> int:
    points = SEGMENT.match(path.name).group(3)
    if points is not None:
        return int(points)
    try:  # a segment named by an earlier version: one point a line
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0  # unreadable: set aside when its turn to be replayed comes


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
