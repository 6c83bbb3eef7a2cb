"""A durable FIFO of line-protocol batches on disk, for while InfluxDB cannot take them.

One file per batch, named by a rising sequence number and the bucket kind, written to a temporary name,
fsynced and renamed, so a crash leaves either the whole batch or none of it.
"""

import os
import threading
from pathlib import Path

SUFFIX = ".lp"


class Spool:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()  # an append that never finished renaming: never acknowledged
        self._lock = threading.Lock()
        self._segments = sorted(directory.glob(f"*{SUFFIX}"))
        self._points = sum(_count_lines(path) for path in self._segments)
        self._next = int(self._segments[-1].name.split(".")[0]) + 1 if self._segments else 0

    @property
    def points(self) -> int:
        return self._points

    def __bool__(self) -> bool:
        return bool(self._segments)

    def append(self, kind: str, lines: list[str]) -> None:
        with self._lock:
            path = self.directory / f"{self._next:016d}.{kind}{SUFFIX}"
            self._next += 1
            partial = path.with_suffix(".tmp")
            with partial.open("w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            partial.rename(path)
            _fsync_dir(self.directory)
            self._segments.append(path)
            self._points += len(lines)

    def oldest(self) -> tuple[Path, str, list[str]] | None:
        with self._lock:
            if not self._segments:
                return None
            path = self._segments[0]
        kind = path.name.split(".")[1]
        return path, kind, path.read_text(encoding="utf-8").splitlines()

    def remove(self, path: Path, lines: int) -> None:
        with self._lock:
            path.unlink(missing_ok=True)
            self._segments.remove(path)
            self._points -= lines


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
