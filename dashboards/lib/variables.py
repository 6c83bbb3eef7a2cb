"""Dashboard variables: exchange and pair, filled from the tags InfluxDB already indexes.

Variable queries get no windowPeriod worth using (Grafana sends 1s) and run on every dashboard load, so they
read tag values from the index (schema.tagValues) over the candle history, which every tracked pair has.
Panels use them only as `r.tag =~ /^${name:regex}$/`; "All" sends every option (no custom allValue), so a
regex never has to match a pair the dashboard does not know.
"""

from grafanalib import core

from dashboards.lib.panels import DATASOURCE
from dashboards.lib.queries import HISTORY, flux, matches

TAG_VALUES = """
import "influxdata/influxdb/schema"
schema.tagValues(
  bucket: <<bucket>>,
  tag: "<<tag>>",
  predicate: (r) => r._measurement == "candle"<<extra>>,
  start: -1y,
)
"""


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


def exchange() -> core.Template:
    query = flux(TAG_VALUES, bucket=HISTORY, tag="exchange", extra="")
    return _variable("exchange", "Exchange", query, multi=True)


def pair() -> core.Template:
    """Pairs of the selected exchanges."""
    query = flux(TAG_VALUES, bucket=HISTORY, tag="pair", extra=f" and {matches('exchange', 'exchange')}")
    return _variable("pair", "Pair", query, multi=True)
