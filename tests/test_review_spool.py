"""Review of the spool (issue 6 part B): findings recorded as strict xfails."""

import resource
import signal
from contextlib import contextmanager

import pytest

from collector.storage.spool import Spool


@contextmanager
def files_limited_to(size: int):
    """Every file this process writes stops growing at `size` bytes (EFBIG), as a full disk stops it (ENOSPC)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_failed_append_leaves_no_partial_file(tmp_path):
    spool = Spool(tmp_path / "spool")
    lines = [f"m value={i} {i}" for i in range(2000)]
    with files_limited_to(4096):
        for _ in range(3):
            with pytest.raises(OSError):
                spool.append("meta", lines)
    leftovers = sorted(path.name for path in spool.directory.glob("*.tmp"))
    spool.close()
    assert leftovers == []
    assert not spool
