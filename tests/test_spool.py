"""The spool on its own: one owner per directory, guests beside it, nothing overwritten, unreadable files set aside."""

import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from collector.storage.spool import Spool
from tests.influxd import ROOT


def lines_on_disk(directory) -> list[str]:
    return [line for path in sorted(directory.rglob("*.lp")) for line in path.read_text().splitlines()]


def test_a_second_spool_on_a_taken_directory_is_a_guest_and_names_never_collide(tmp_path, caplog):
    owner = Spool(tmp_path)
    owner.append("live", ["a 1"])
    with caplog.at_level(logging.WARNING, logger="collector.storage.spool"):
        guest = Spool(tmp_path)
    assert guest.is_guest and guest.directory.parent == tmp_path / "guests"
    assert f"spool {tmp_path} is in use by another collector process (pid {os.getpid()})" in caplog.text
    assert str(guest.directory) in caplog.text
    guest.append("meta", ["b 2"])
    owner.append("live", ["c 3"])
    assert sorted(lines_on_disk(tmp_path)) == ["a 1", "b 2", "c 3"]  # nothing overwritten
    assert owner.adopt_guests() == 0  # a running guest keeps its segments

    guest.close()
    assert owner.adopt_guests() == 1
    assert not (tmp_path / "guests").exists() or not any((tmp_path / "guests").iterdir())
    replayed = []
    while (oldest := owner.oldest()) is not None:
        path, kind, lines = oldest
        replayed += [(kind, line) for line in lines]
        owner.remove(path)
    assert replayed == [("live", "a 1"), ("live", "c 3"), ("meta", "b 2")]
    assert owner.points == 0


def test_a_guest_never_deletes_the_owners_temporary_files(tmp_path):
    owner = Spool(tmp_path)
    unfinished = tmp_path / "0000000000000000.live.tmp"  # the owner is in the middle of an append
    unfinished.write_text("x 1\n")
    Spool(tmp_path).close()
    assert unfinished.exists() and not owner.is_guest


def test_the_lock_dies_with_its_process(tmp_path):
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from collector.storage.spool import Spool
        spool = Spool(Path({str(tmp_path)!r}))
        assert not spool.is_guest
        spool.append("live", ["from the child 1"])
        import os; os._exit(0)  # no close: the OS must release the lock
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    spool = Spool(tmp_path)
    assert not spool.is_guest
    assert spool.points == 1


def test_a_guest_left_by_a_dead_process_is_adopted_when_the_spool_is_opened(tmp_path):
    owner = Spool(tmp_path)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from collector.storage.spool import Spool
        spool = Spool(Path({str(tmp_path)!r}))
        assert spool.is_guest
        spool.append("history", ["candle 1", "candle 2"])
        import os; os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    owner.close()
    reopened = Spool(tmp_path)
    assert reopened.points == 2
    assert [path.name for path in tmp_path.glob("*.lp")] == ["0000000000000000.history.2.lp"]


def test_an_unreadable_segment_is_set_aside_and_the_next_one_is_served(tmp_path, caplog):
    (tmp_path / "0000000000000000.live.lp").write_bytes(b"\xff\xfe not utf-8\n")
    (tmp_path / "0000000000000001.live.lp").mkdir()  # cannot be read as a file at all
    (tmp_path / "0000000000000002.bogus.lp").write_text("x 1\n")
    (tmp_path / "0000000000000003.meta.lp").write_text("good 1\n")
    spool = Spool(tmp_path)
    with caplog.at_level(logging.ERROR, logger="collector.storage.spool"):
        path, kind, lines = spool.oldest()
    assert (path.name, kind, lines) == ("0000000000000003.meta.lp", "meta", ["good 1"])
    assert caplog.text.count("cannot be read") == 3
    assert len(list((tmp_path / "unreadable").iterdir())) == 3  # kept for a person to look at
    spool.remove(path)
    assert spool.oldest() is None and spool.points == 0


def test_string_fields_with_line_breaks_come_back_as_sent_and_count_once(tmp_path):
    lines = [
        'asset name="two\nlines" 1',
        'asset name="Line\u2028Sep\rara\x85tor\x0c" 2',
        "asset decimals=8i 3",
    ]
    spool = Spool(tmp_path)
    spool.append("meta", lines)
    assert spool.points == 3
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.points == 3  # the newline inside the first field is not a point of its own
    path, kind, pieces = reopened.oldest()
    assert "\n".join(pieces) == "\n".join(lines)  # the payload sent is the payload spooled, byte for byte
    assert reopened.points_in(path) == 3


def test_a_guest_directory_abandoned_while_being_set_up_is_removed_and_a_fresh_one_kept(tmp_path):
    guests = tmp_path / "guests"
    abandoned, fresh = guests / ".guest-killed", guests / ".guest-now"
    for directory in (abandoned, fresh):
        directory.mkdir(parents=True)
        (directory / ".lock").write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(abandoned, (an_hour_ago, an_hour_ago))
    spool = Spool(tmp_path)
    assert sorted(path.name for path in guests.iterdir()) == [".guest-now"]  # one may be setting up right now
    assert spool.points == 0


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
