"""`make dashboards`: renders every dashboards/<name>.dashboard.py and the alert rules into grafana/.

Output is sorted and stable (sorted keys, fixed indentation, trailing newline, no null values), so a
regeneration without a source change leaves git clean; `--check` exits 1 and names the stale files.
"""

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder

from dashboards.lib import panels

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "dashboards"
DASHBOARDS_OUT = ROOT / "grafana" / "dashboards"
ALERT_RULES_OUT = ROOT / "grafana" / "provisioning" / "alerting" / "hodlboard-rules.json"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"dashboards.{path.name.split('.')[0]}_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# grafanalib still writes these pre-Grafana-5 keys; Grafana 12 ignores them, so they are left out.
LEGACY_KEYS = {"__inputs", "hideControls", "rows", "sharedCrosshair", "style"}


def _without_nulls(value):
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def to_text(data) -> str:
    plain = json.loads(json.dumps(data, cls=DashboardEncoder))
    for key in LEGACY_KEYS & plain.keys():
        del plain[key]
    return json.dumps(_without_nulls(plain), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def dashboard_sources() -> list[Path]:
    return sorted(SOURCES.glob("*.dashboard.py"))


def render(base_currency: str = panels.DEFAULT_BASE_CURRENCY) -> dict[Path, str]:
    """Every generated file and its content, money shown in `base_currency`."""
    panels.base_currency = base_currency
    files = {}
    for source in dashboard_sources():
        name = source.name.removesuffix(".dashboard.py")
        files[DASHBOARDS_OUT / f"{name}.json"] = to_text(_load(source).dashboard)
    from dashboards import alerts

    files[ALERT_RULES_OUT] = to_text(alerts.provisioning())
    return files


def stale(files: dict[Path, str]) -> list[str]:
    """Files whose content differs from what is committed, and generated files no source produces."""
    wrong = [
        str(path.relative_to(ROOT))
        for path, text in files.items()
        if not path.is_file() or path.read_text() != text
    ]
    extra = [str(path.relative_to(ROOT)) for path in DASHBOARDS_OUT.glob("*.json") if path not in files]
    return sorted(wrong + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    parser.add_argument(
        "--base-currency",
        default=panels.DEFAULT_BASE_CURRENCY,
        help="the base_currency of portfolio.yml: the unit of every money figure (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9]{2,10}", args.base_currency):
        parser.error(f"--base-currency {args.base_currency!r}: a currency code such as USD or EUR")
    files = render(args.base_currency.upper())
    if args.check:
        outdated = stale(files)
        for path in outdated:
            print(f"stale: {path} (run `make dashboards`)")
        return 1 if outdated else 0
    DASHBOARDS_OUT.mkdir(parents=True, exist_ok=True)
    for path in DASHBOARDS_OUT.glob("*.json"):
        if path not in files:
            path.unlink()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
