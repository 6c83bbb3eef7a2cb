"""Grafana alert rules as code, rendered by `make dashboards` into grafana/provisioning/alerting/.

Grafana evaluates an alert query with a 1s windowPeriod and no dashboard variables (docs/grafana-flux.md), so
these queries use fixed windows and no `$variables`. Each query returns one number per series (labels:
exchange and pair, or none for the portfolio); a reduce (last) and a threshold turn it into the condition.
Change a threshold here and run `make dashboards`.
"""

from dataclasses import dataclass

from dashboards.lib.panels import DATASOURCE_UID
from dashboards.lib.queries import HISTORY, LIVE, finish, flux, last_trade_age, side_by_side

FOLDER = "hodlboard"

FEED_STALE_S = 600  # no trade for 10 minutes
PRICE_MOVE_PCT_PER_H = 5.0  # |price change| over the last hour
VOLUME_SPIKE_RATIO = 4.0  # last hour's volume against the hourly average of the day before
DRAWDOWN_PCT = 15.0  # portfolio value below its 30-day high


@dataclass(frozen=True)
class Rule:
    uid: str
    title: str
    query: str
    lookback_s: int  # the query's relative time range: now - lookback_s .. now
    threshold: float
    summary: str
    no_data: str = "NoData"
    pending: str = "5m"


FEED_STALE = Rule(
    uid="hodlboard-feed-stale",
    title="Feed stale",
    lookback_s=6 * 3600,
    threshold=FEED_STALE_S,
    no_data="Alerting",  # no trade at all for 6 h is the stalest feed there is
    pending="1m",
    summary="No trade from {{ $labels.exchange }} {{ $labels.pair }} for {{ humanizeDuration $values.B.Value }}.",
    query=last_trade_age("v.timeRangeStart"),
)

PRICE_MOVE = Rule(
    uid="hodlboard-price-move",
    title="Price move",
    lookback_s=3600,
    threshold=PRICE_MOVE_PCT_PER_H,
    summary="{{ $labels.pair }} on {{ $labels.exchange }} moved {{ humanize $values.B.Value }} % in the last hour.",
    query=flux(
        """
        import "math"
        prices = from(bucket: <<live>>)
          |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
          |> filter(fn: (r) => r._measurement == "trade" and r._field == "price")
          |> group(columns: ["exchange", "pair"])
          |> aggregateWindow(every: 5m, fn: mean, createEmpty: false)
        <<moves>>
          |> filter(fn: (r) => r.opening > 0.0)
          |> map(fn: (r) => ({exchange: r.exchange, pair: r.pair, _value: math.abs(x: (r.closing - r.opening) / r.opening * 100.0)}))
        """,
        live=LIVE,
        moves=side_by_side(
            {"opening": "prices |> first()", "closing": "prices |> last()"}, ["exchange", "pair"]
        ),
    ),
)

VOLUME_SPIKE = Rule(
    uid="hodlboard-volume-spike",
    title="Volume spike",
    lookback_s=25 * 3600,
    threshold=VOLUME_SPIKE_RATIO,
    summary="{{ $labels.pair }} on {{ $labels.exchange }} traded {{ humanize $values.B.Value }}x its hourly average.",
    query=flux(
        """
        import "date"
        hourAgo = date.sub(d: 1h, from: v.timeRangeStop)
        amounts = from(bucket: <<live>>)
          |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
          |> filter(fn: (r) => r._measurement == "trade" and r._field == "amount")
          |> group(columns: ["exchange", "pair"])
        recent = amounts |> filter(fn: (r) => r._time >= hourAgo) |> sum()
        baseline = amounts |> filter(fn: (r) => r._time < hourAgo) |> sum() |> map(fn: (r) => ({r with _value: r._value / 24.0}))
        <<ratio>>
          |> filter(fn: (r) => r.baseline > 0.0)
          |> map(fn: (r) => ({exchange: r.exchange, pair: r.pair, _value: r.recent / r.baseline}))
        """,
        live=LIVE,
        ratio=side_by_side({"recent": "recent", "baseline": "baseline"}, ["exchange", "pair"]),
    ),
)

DRAWDOWN = Rule(
    uid="hodlboard-drawdown",
    title="Portfolio drawdown",
    lookback_s=30 * 86400,
    threshold=DRAWDOWN_PCT,
    summary="The portfolio is {{ humanize $values.B.Value }} % below its 30-day high.",
    query=flux(
        """
        import "date"
        hourly = from(bucket: <<history>>)
          |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
          |> filter(fn: (r) => r._measurement == "portfolio" and r._field == "value")
        live = from(bucket: <<live>>)
          |> range(start: date.sub(d: 2h, from: v.timeRangeStop), stop: v.timeRangeStop)
          |> filter(fn: (r) => r._measurement == "portfolio" and r._field == "value")
        series = union(tables: [hourly, live]) |> group() |> sort(columns: ["_time"])
        <<fall>>
          |> filter(fn: (r) => r.high > 0.0)
          |> map(fn: (r) => ({_value: (r.high - r.current) / r.high * 100.0}))
        """,
        live=LIVE,
        history=HISTORY,
        fall=side_by_side({"high": "series |> max()", "current": "series |> last()"}, ["_measurement"]),
    ),
)

RULES = (FEED_STALE, PRICE_MOVE, VOLUME_SPIKE, DRAWDOWN)


def _rule(rule: Rule) -> dict:
    expression = {"type": "__expr__", "uid": "__expr__"}
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "datasourceUid": DATASOURCE_UID,
                "relativeTimeRange": {"from": rule.lookback_s, "to": 0},
                "model": {
                    "refId": "A",
                    "query": finish(rule.query),
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                },
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "B",
                    "type": "reduce",
                    "expression": "A",
                    "reducer": "last",
                    "settings": {"mode": "dropNN"},
                    "datasource": expression,
                },
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [{"evaluator": {"type": "gt", "params": [rule.threshold]}}],
                    "datasource": expression,
                },
            },
        ],
        "noDataState": rule.no_data,
        "execErrState": "Error",
        "for": rule.pending,
        "annotations": {"summary": rule.summary},
        "labels": {"hodlboard": "alert"},
        "isPaused": False,
    }


def provisioning() -> dict:
    """The alert-rule provisioning file (apiVersion 1): one group, evaluated every minute."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "hodlboard",
                "folder": FOLDER,
                "interval": "1m",
                "rules": [_rule(r) for r in RULES],
            }
        ],
    }
