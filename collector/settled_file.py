"""A watched file's edits, each seen only once it has settled.

An in-place save (nano, a shell redirect, most scripts) first empties the file, then writes it: a poll that
lands in between reads an empty or half-written file, and an empty portfolio.yml is a valid configuration
without any exchange, whose hot reload would stop every stream (then start them again, their health counters
reset). An edit counts once the file reads the same on two polls in a row.
"""

from pathlib import Path


class SettledFile:
    def __init__(self, path: Path):
        self.path = path
        self._taken = self._seen = _stamp(path)  # the content in use; the content read at the last poll

    def changed(self) -> bool:
        """Polled: whether the file holds a settled edit, not yet taken; it is taken by this call."""
        stamp = _stamp(self.path)
        settled = stamp == self._seen and stamp != self._taken
        self._seen = stamp
        if settled:
            self._taken = stamp
        return settled


def _stamp(path: Path):
    try:
        info = path.stat()
        return info.st_mtime_ns, info.st_size, path.read_bytes()
    except OSError:
        return None
