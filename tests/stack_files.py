"""The stack's files as a newcomer gets them: a fresh clone, `make setup` run in it, and the real Compose tool."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.influxd import ROOT

COMPOSE_TOOL = ROOT / ".tools" / "bin" / "docker-compose"
COMPOSE_FILES = (
    "docker-compose.yml",
    "docker-compose.external-influxdb.yml",
    "docker-compose.influxdb-ui.yml",
)
# what the user's shell could set that would change what compose reads from .env
OWN_PREFIXES = ("COMPOSE_", "DOCKER_", "INFLUXDB_", "GRAFANA_", "HODLBOARD_", "INFLUXD_")


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (`!reset`, `!override`), read as their plain values."""


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_mapping(node)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_scalar(node)
        ),
    )


def compose_file(name: str = "docker-compose.yml") -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506 (a SafeLoader)


def fresh_clone(into: Path) -> Path:
    """The repository's files (committed or not, never what .gitignore keeps out: .env, .venv, .tools)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    clone = into / "hodlboard"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def make_setup(clone: Path) -> subprocess.CompletedProcess:
    """What `make setup` runs."""
    return subprocess.run(
        [sys.executable, "tools/setup.py"], cwd=clone, capture_output=True, text=True, timeout=60, check=True
    )


def env_file(clone: Path) -> dict[str, str]:
    values = {}
    for line in (clone / ".env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name] = value
    return values


def compose(clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real Compose tool in the clone, as a user runs it there (.env read from the project directory)."""
    if not COMPOSE_TOOL.is_file():
        raise RuntimeError(f"{COMPOSE_TOOL} is missing: run `make compose` (make test does it first)")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(OWN_PREFIXES)}
    environment.update(env)
    return subprocess.run(
        [str(COMPOSE_TOOL), *args], cwd=clone, env=environment, capture_output=True, text=True, timeout=120
    )
