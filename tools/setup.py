"""`make setup`: write .env with fresh random secrets and portfolio.yml from its example; never overwrite either.

An .env from an older version is completed: the settings of .env.example it lacks are appended (a missing secret
with a fresh value), every line already there kept as it is.

Standard library only, so it runs on a fresh clone before anything is installed. Secrets are never printed:
.env is created with mode 0600 and the output says where to find them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# variable -> how many random bytes (URL-safe base64: letters, digits, '-' and '_', so .env needs no quoting)
SECRETS = {"INFLUXDB_ADMIN_PASSWORD": 24, "INFLUXDB_ADMIN_TOKEN": 48, "GRAFANA_ADMIN_PASSWORD": 24}


def filled(line: str) -> str:
    """The line, given a fresh random value if it is a secret left empty."""
    name, sep, value = line.partition("=")
    if sep and name in SECRETS and not value.strip():
        return f"{name}={secrets.token_urlsafe(SECRETS[name])}"
    return line


def filled_env(example: str) -> str:
    """The example's lines, each secret that is empty there given a fresh random value."""
    return "\n".join(filled(line) for line in example.splitlines()) + "\n"


def missing_settings(example: str, env: str) -> list[str]:
    """The example's settings (secrets filled) that `env` does not set."""
    present = set(env_values(env))
    return [
        filled(line)
        for line in example.splitlines()
        if "=" in line and not line.startswith("#") and line.partition("=")[0] not in present
    ]


def env_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def write_private(path: Path, text: str) -> None:
    """Created with mode 0600 from the start (never readable by others, not even for a moment); fails if present."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def setup_env(root: Path) -> None:
    env = root / ".env"
    if env.exists():
        text = env.read_text(encoding="utf-8")
        added = missing_settings((root / ".env.example").read_text(encoding="utf-8"), text)
        if added:
            with env.open("a", encoding="utf-8") as handle:
                handle.write(("" if text.endswith("\n") or not text else "\n") + "\n".join(added) + "\n")
            names = ", ".join(line.partition("=")[0] for line in added)
            print(f".env: kept; added the settings it lacked (.env.example explains them): {names}")
        else:
            print(".env: kept as it is (make setup never overwrites it)")
        empty = [name for name in SECRETS if not env_values(env.read_text(encoding="utf-8")).get(name)]
        if empty:
            print(
                f"  still empty there: {', '.join(empty)}: fill them in, or move .env away and run make setup"
            )
        return
    write_private(env, filled_env((root / ".env.example").read_text(encoding="utf-8")))
    print(f".env: written with fresh random secrets ({', '.join(SECRETS)}), readable by you only")


def setup_portfolio(root: Path) -> None:
    portfolio = root / "portfolio.yml"
    if portfolio.is_dir():
        raise SetupError(
            "portfolio.yml is a directory: Docker made it when the stack started before the file existed. "
            "Run: docker compose down && rmdir portfolio.yml && make setup"
        )
    if portfolio.exists():
        print("portfolio.yml: kept as it is (make setup never overwrites it)")
        return
    shutil.copyfile(root / "portfolio.example.yml", portfolio)
    print("portfolio.yml: copied from portfolio.example.yml: list your pairs and holdings there")


class SetupError(Exception):
    """Something make setup cannot fix itself, said with what to do."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to set up (default: this one)")
    root = parser.parse_args(argv).root
    try:
        setup_env(root)
        setup_portfolio(root)
    except OSError as exc:
        print(f"make setup: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except SetupError as exc:
        print(f"make setup: {exc}", file=sys.stderr)
        return 1
    port = env_values((root / ".env").read_text(encoding="utf-8")).get("GRAFANA_PORT") or "3000"
    print(
        f"\nNext: docker compose up -d, then open http://<this host>:{port}\n"
        "Grafana login: user GRAFANA_ADMIN_USER (admin), password GRAFANA_ADMIN_PASSWORD, both in .env:\n"
        "  grep GRAFANA_ADMIN .env"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
