"""Grafana alert rules as code, rendered by `make dashboards` into grafana/provisioning/alerting/.

Grafana evaluates an alert query with a 1s windowPeriod and no dashboard variables (docs/grafana-flux.md), so
these queries use fixed windows and no `$variables`. Each query returns one number per series (labels:
exchange, exchange and pair, or none for the portfolio); a reduce (last) and a threshold turn it into the condition.
Change a threshold here and run `make dashboards`.
"""

from dataclasses import dataclass

from dashboards.lib.panels import DATASOURCE_UID
from dashboards.lib.queries import HISTORY, LIVE, finish, flux, side_by_side, where

FOLDER = "hodlboard"

FEED_STALE_S = 600  # no live connection to an exchange for 10 minutes
PRICE_MOVE_PCT_PER_H = 5.0  # |price change| over the last hour
VOLUME_SPIKE_RATIO = 4.0  # last hour's volume against the hourly average of the day before
VOLUME_BASELINE_H = 20  # a feed with fewer hours of trades than this in the day before is never a spike
DRAWDOWN_PCT = 15.0  # gain lost since its 30-day high, as a % of what the holdings now held were worth then
LIVE_RETENTION_S = 90 * 86400  # crypto_live keeps trades this long


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


# Judged on the connection, not on trades: a rarely traded pair on a live connection is no fault. The collector
# samples each exchange's `connected` every 10 s, and its stream turns silence into a reconnect (no message for
# `silence_s` and no pong), so `connected` = 1 means messages or pongs still arrive. The age of the newest sample
# that says so grows whether the connection is down, keeps failing, or the collector stopped writing at all.
FEED_STALE = Rule(
    uid="hodlboard-feed-stale",
    title="Feed stale",
    # every exchange with a sample still stored: one down for days must stay in the answer, or Grafana would
    # resolve its alert (last() straight after the filter is answered from storage, so this stays cheap)
    lookback_s=LIVE_RETENTION_S,
    threshold=FEED_STALE_S,
    no_data="Alerting",  # no exchange was ever connected in the live bucket's 90 days: the collector is down
    pending="1m",
    summary="No live connection to {{ $labels.exchange }} for {{ humanizeDuration $values.B.Value }}.",
    # an exchange that never connected counts from its first sample: the collector has reported it down since
    query=flux(
        """
        samples = from(bucket: <<live>>)
          |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
          |> <<connected>>
        lastConnected = samples |> filter(fn: (r) => r._value == 1) |> last()
        firstReported = samples |> first()
        union(tables: [lastConnected, firstReported])
          |> group(columns: ["exchange"])
          |> max(column: "_time")
          |> map(fn: (r) => ({
            _time: r._time,
            exchange: r.exchange,
            _value: float(v: int(v: v.timeRangeStop) - int(v: r._time)) / 1000000000.0,
          }))
        """,
        live=LIVE,
        connected=where("collector", "connected"),
    ),
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
    # the baseline is the volume of the day before the last hour divided by the hours of it that have trades (hours
    # counted back from an hour ago); a feed with fewer than VOLUME_BASELINE_H such hours reads 0 (no judgement yet),
    # so a feed that just started, or came back after a long outage, never fires
    query=flux(
        """
        import "date"
        hourAgo = date.sub(d: 1h, from: v.timeRangeStop)
        hourOffset = duration(v: int(v: hourAgo) % int(v: 1h))
        recent = from(bucket: <<live>>)
          |> range(start: hourAgo, stop: v.timeRangeStop)
          |> <<amount>>
          |> group(columns: ["exchange", "pair"])
          |> sum()
        before = from(bucket: <<live>>)
          |> range(start: v.timeRangeStart, stop: hourAgo)
          |> <<amount>>
        baseline = before |> group(columns: ["exchange", "pair"]) |> sum()
        hours = before
          |> aggregateWindow(every: 1h, offset: hourOffset, fn: count, createEmpty: false)
          |> group(columns: ["exchange", "pair"])
          |> unique(column: "_time")
          |> count()
          |> map(fn: (r) => ({r with _value: float(v: r._value)}))
        <<ratio>>
          |> map(fn: (r) => ({
            exchange: r.exchange,
            pair: r.pair,
            _value: if r.hours >= <<min_hours>> and r.baseline > 0.0 then r.recent / (r.baseline / r.hours) else 0.0,
          }))
        """,
        live=LIVE,
        amount=where("trade", "amount"),
        min_hours=f"{VOLUME_BASELINE_H:.1f}",
        ratio=side_by_side(
            {"recent": "recent", "baseline": "baseline", "hours": "hours"}, ["exchange", "pair"]
        ),
    ),
)

# Drawdown on the gain, not the value: gain = value - cost basis + realized P/L does not move when holdings are
# bought or sold (a sale turns unrealized P/L into realized), only when prices do. The fall is the gain lost since
# its 30-day high, as a % of what the holdings now held were worth then (value now + the loss): without buys or
# sells that is exactly the value's fall from its high.
DRAWDOWN = Rule(
    uid="hodlboard-drawdown",
    title="Portfolio drawdown",
    lookback_s=30 * 86400,
    threshold=DRAWDOWN_PCT,
    summary="The portfolio lost {{ humanize $values.B.Value }} % of its value since its 30-day high (buys and sells "
    "aside).",
    query=flux(
        """
        import "date"
        hourly = from(bucket: <<history>>)
          |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
          |> <<fields>>
        live = from(bucket: <<live>>)
          |> range(start: date.sub(d: 2h, from: v.timeRangeStop), stop: v.timeRangeStop)
          |> <<fields>>
        gain = union(tables: [hourly, live])
          |> group()
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> filter(fn: (r) => exists r.value)
          |> map(fn: (r) => ({
            _time: r._time,
            worth: r.value,
            _value: r.value - (if exists r.cost_basis then r.cost_basis else 0.0) + (if exists r.realized_pnl then r.realized_pnl else 0.0),
          }))
          |> sort(columns: ["_time"])
        high = gain |> max() |> findColumn(fn: (key) => true, column: "_value")
        gain
          |> last()
          |> map(fn: (r) => ({loss: high[0] - r._value, worth: r.worth}))
          |> filter(fn: (r) => r.worth + r.loss > 0.0)
          |> map(fn: (r) => ({_value: r.loss / (r.worth + r.loss) * 100.0}))
        """,
        live=LIVE,
        history=HISTORY,
        fields=where("portfolio", ["value", "cost_basis", "realized_pnl"]),
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
