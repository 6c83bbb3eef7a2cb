"""`make setup`: write .env with fresh random secrets and portfolio.yml from its example; never overwrite either.

Standard library only, so it runs on a fresh clone before anything is installed. Secrets are never printed:
.env is created with mode 0600 and the output says where to find them.
"""

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# variable -> how many random bytes (URL-safe base64: letters, digits, '-' and '_', so .env needs no quoting)
SECRETS = {"INFLUXDB_ADMIN_PASSWORD": 24, "INFLUXDB_ADMIN_TOKEN": 48, "GRAFANA_ADMIN_PASSWORD": 24}


def filled_env(example: str) -> str:
    """The example's lines, each secret that is empty there given a fresh random value."""
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in SECRETS and not value.strip():
            line = f"{name}={secrets.token_urlsafe(SECRETS[name])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


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
        empty = [name for name in SECRETS if not env_values(env.read_text(encoding="utf-8")).get(name)]
        print(".env: kept as it is (make setup never overwrites it)")
        if empty:
            print(
                f"  still empty there: {', '.join(empty)}: fill them in, or move .env away and run make setup"
            )
        return
    write_private(env, filled_env((root / ".env.example").read_text(encoding="utf-8")))
    print(f".env: written with fresh random secrets ({', '.join(SECRETS)}), readable by you only")


def setup_portfolio(root: Path) -> None:
    portfolio = root / "portfolio.yml"
    if portfolio.exists():
        print("portfolio.yml: kept as it is (make setup never overwrites it)")
        return
    shutil.copyfile(root / "portfolio.example.yml", portfolio)
    print("portfolio.yml: copied from portfolio.example.yml: list your pairs and holdings there")


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
    port = env_values((root / ".env").read_text(encoding="utf-8")).get("GRAFANA_PORT") or "3000"
    print(
        f"\nNext: docker compose up -d, then open http://<this host>:{port}\n"
        "Grafana login: user GRAFANA_ADMIN_USER (admin), password GRAFANA_ADMIN_PASSWORD, both in .env:\n"
        "  grep GRAFANA_ADMIN .env"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
