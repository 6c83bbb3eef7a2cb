"""Dashboard variables: exchange and pair, filled from the tags InfluxDB already indexes.

Variable queries get no windowPeriod worth using (Grafana sends 1s) and run on every dashboard load, so they
read tag values from the index (schema.tagValues). A feed is listed as soon as it has trades or stored candles
(a fresh install before its first backfill, or a broken backfill, still shows its live trades); the Data health
dashboard also lists every exchange the collector reports health for.
Panels use them only as `r.tag =~ /^${name:regex}$/`; "All" sends every option (no custom allValue), so a
regex never has to match a pair the dashboard does not know.
"""

import textwrap

from grafanalib import core

from dashboards.lib.panels import DATASOURCE
from dashboards.lib.queries import HISTORY, LIVE, flux, matches

# (bucket, measurement) pairs whose tags name the feeds
FEEDS = ((LIVE, "trade"), (HISTORY, "candle"))
HEALTH = ((LIVE, "collector"),)

TAG_VALUES = """
schema.tagValues(
  bucket: <<bucket>>,
  tag: "<<tag>>",
  predicate: (r) => r._measurement == "<<measurement>>"<<extra>>,
  start: -1y,
)
"""


def _tag_values(tag: str, sources, extra: str = "") -> str:
    """The distinct values of `tag` over every (bucket, measurement) of `sources`."""
    lists = [
        flux(TAG_VALUES, bucket=bucket, tag=tag, measurement=measurement, extra=extra).strip()
        for bucket, measurement in sources
    ]
    return flux(
        """
        import "influxdata/influxdb/schema"
        union(tables: [
        <<lists>>,
        ])
          |> group()
          |> unique(column: "_value")
        """,
        lists=textwrap.indent(",\n".join(lists), "  "),
    )


def _variable(name: str, label: str, query: str, multi: bool) -> core.Template:
    template = core.Template(
        name=name,
        label=label,
        query=query,
        dataSource=DATASOURCE,
        includeAll=True,
        multi=multi,
        default="$__all",
        refresh=core.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=1,
    )
    template._current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return template


def exchange(with_health: bool = False) -> core.Template:
    """Exchanges with trades or candles; `with_health` adds those the collector reports on (Data health)."""
    sources = FEEDS + (HEALTH if with_health else ())
    return _variable("exchange", "Exchange", _tag_values("exchange", sources), multi=True)


def pair() -> core.Template:
    """Pairs of the selected exchanges."""
    query = _tag_values("pair", FEEDS, extra=f" and {matches('exchange', 'exchange')}")
    return _variable("pair", "Pair", query, multi=True)
