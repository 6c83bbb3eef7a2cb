"""`make bench`: ingest, steady-state cost, backfill, dashboards and valuation, measured in one run against a real
influxd (the one `make influxd` builds) and printed as one table, each row with its goal and whether it is met.

BENCH_QUICK=1 runs every part at a small size, for developing the bench itself (its figures mean little).
"""

import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.table import Row, load_average, machine, render  # noqa: E402
from tests.dashboard_queries import bootstrapped_organisation  # noqa: E402
from tests.influxd import InfluxServer  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    trades: int = 1_000_000  # the ingest burst
    sync_trades: int = 3_000  # one write each: ~1,000/s, so a few seconds give the rate
    steady_s: float = 60.0
    backfill_years: int = 10
    backfill_pairs: int = 10
    dashboard_assets: int = 20
    dashboard_full_rate_h: int = 6  # hours of trades at 5/s per pair before `now` (see README: Performance)
    valuation_years: int = 5
    valuation_assets: int = 20


QUICK = Sizes(
    trades=20_000,
    sync_trades=300,
    steady_s=10,
    backfill_years=1,
    backfill_pairs=2,
    dashboard_assets=4,
    dashboard_full_rate_h=1,
    valuation_years=1,
    valuation_assets=3,
)


def main() -> None:
    sizes = QUICK if os.environ.get("BENCH_QUICK") else Sizes()
    if os.environ.get("BENCH_TRADES"):  # the burst alone, e.g. to profile the collector on a mid-sized one
        sizes = replace(sizes, trades=int(os.environ["BENCH_TRADES"]))
    rows: list[Row] = []
    began, load_before = time.monotonic(), load_average()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        influx = InfluxServer(work / "influxd")
        try:  # an influxd that starts but never turns healthy or refuses onboarding is stopped too
            influx.start()
            influx.onboard()
            for part in _parts():
                with bootstrapped_organisation(influx, work / part.__name__, "bench") as org:
                    rows += part(influx, org, work / part.__name__, sizes)
                    print(f"  ... {part.__name__} done at {time.monotonic() - began:.0f} s", file=sys.stderr)
        finally:
            influx.remove()
    print(f"hodlboard bench on {machine()}")
    print(f"{load_before} at the start, {load_average()} at the end; {time.monotonic() - began:.0f} s in all")
    print(render(rows))


def _parts():
    from bench import ingest
    from bench.backfill_bench import backfill_rows
    from bench.dashboards_bench import dashboard_rows
    from bench.valuation_bench import valuation_rows

    def ingest_part(influx, org, work, sizes):
        return ingest.ingest_rows(influx, org, work, sizes.trades, sizes.sync_trades)

    def steady_part(influx, org, work, sizes):
        return ingest.steady_rows(org, work, sizes.steady_s)

    def backfill_part(influx, org, work, sizes):
        return backfill_rows(org, work, sizes.backfill_years, sizes.backfill_pairs)

    def dashboards_part(influx, org, work, sizes):
        return dashboard_rows(influx, org, work, sizes.dashboard_assets, sizes.dashboard_full_rate_h)

    def valuation_part(influx, org, work, sizes):
        return valuation_rows(org, work, sizes.valuation_years, sizes.valuation_assets)

    parts = {
        "ingest": ingest_part,
        "steady": steady_part,
        "backfill": backfill_part,
        "dashboards": dashboards_part,
        "valuation": valuation_part,
    }
    for name, part in parts.items():
        part.__name__ = name
    only = os.environ.get("BENCH_ONLY")  # e.g. BENCH_ONLY=ingest,backfill: while developing one part
    return [part for name, part in parts.items() if not only or name in only.split(",")]


if __name__ == "__main__":
    main()
