"""The Makefile's user targets, run by make in a fresh clone. There is no Docker engine here: `docker` on PATH is a
stand-in that records each call and does what `docker compose cp` does to the host side (copies a folder out or
reads one in), so the targets' own logic (dated folder, asking first, the order of the steps) is what is tested."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.stack_files import fresh_clone

USER_TARGETS = (
    "setup",
    "up",
    "down",
    "logs",
    "ps",
    "dashboards",
    "backfill",
    "portfolio",
    "backup",
    "restore",
)
USER_TARGETS += ("reset", "test", "lint", "bench")

STAND_IN = """#!/usr/bin/env bash
# records the call; `compose cp influxdb:<dir> <host dir>` leaves a backup there, as the real one copies it out
echo "$*" >> "$DOCKER_CALLS"
if [ "$1 $2" = "compose cp" ] && [[ "$3" == influxdb:* ]]; then
    mkdir -p "$4" && echo "influx backup of $3" > "$4/20261121T101500Z.manifest"
fi
"""


@pytest.fixture
def clone(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STAND_IN)
    (bin_dir / "docker").chmod(0o755)
    return clone


def make(clone: Path, *args: str, answer: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = clone.parent / "docker-calls"
    calls.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{clone.parent.parent / 'bin'}:{os.environ['PATH']}",
        "DOCKER_CALLS": str(calls),
    }
    run = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=clone,
        env=env,
        input=answer,
        capture_output=True,
        text=True,
    )
    return run, calls.read_text().splitlines() if calls.exists() else []


def test_make_alone_lists_every_user_target(clone):
    run, calls = make(clone)
    assert run.returncode == 0 and not calls, run.stderr
    listed = re.findall(r"(?m)^  make (\S+)", run.stdout)
    assert set(USER_TARGETS) <= set(listed), set(USER_TARGETS) - set(listed)


def test_backup_runs_influx_backup_in_the_container_and_copies_it_into_a_dated_folder(clone):
    run, calls = make(clone, "backup")
    assert run.returncode == 0, run.stderr
    (folder,) = (clone / "backups").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z", folder.name), folder.name
    assert (folder / "20261121T101500Z.manifest").is_file()
    assert f"backup: backups/{folder.name}" in run.stdout
    assert (
        calls[0].startswith("compose exec -T influxdb sh -c")
        and "influx backup /tmp/hodlboard-backup" in calls[0]
    )
    assert calls[1] == f"compose cp influxdb:/tmp/hodlboard-backup backups/{folder.name}"
    assert calls[2] == "compose exec -T influxdb rm -rf /tmp/hodlboard-backup"


def test_restore_asks_first_and_does_nothing_unless_told_yes(clone):
    make(clone, "backup")
    (folder,) = (clone / "backups").iterdir()
    run, calls = make(clone, "restore", f"FROM=backups/{folder.name}", answer="n\n")
    assert run.returncode != 0 and calls == [], calls
    run, calls = make(clone, "restore", f"FROM=backups/{folder.name}", answer="y\n")
    assert run.returncode == 0, run.stderr
    assert calls == [
        "compose stop collector grafana",
        "compose exec -T influxdb rm -rf /tmp/hodlboard-backup",
        f"compose cp backups/{folder.name} influxdb:/tmp/hodlboard-backup",
        "compose exec -T influxdb influx restore --full /tmp/hodlboard-backup",
        "compose exec -T influxdb rm -rf /tmp/hodlboard-backup",
        "compose up -d",
    ]


def test_restore_without_a_backup_names_the_ones_there_are(clone):
    make(clone, "backup")
    (folder,) = (clone / "backups").iterdir()
    run, calls = make(clone, "restore")
    assert run.returncode != 0 and calls == []
    assert "FROM=backups/<date>" in run.stderr and folder.name in run.stderr


def test_reset_drops_the_volumes_only_when_told_delete(clone):
    for answer in ("\n", "y\n", "yes\n"):
        run, calls = make(clone, "reset", answer=answer)
        assert run.returncode != 0 and calls == [], answer
    run, calls = make(clone, "reset", answer="delete\n")
    assert run.returncode == 0 and calls == ["compose down --volumes --remove-orphans"], run.stderr
