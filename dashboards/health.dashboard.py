"""Data health: is every feed alive, is the writer keeping up, is history complete."""

from dashboards.alerts import FEED_STALE_S
from dashboards.lib import panels as p
from dashboards.lib import variables
from dashboards.lib.board import dashboard
from dashboards.lib.queries import HISTORY, LIVE, RANGE, flux, last_trade_age, matches, where

EXCHANGE = matches("exchange", "exchange")
BY_EXCHANGE = {"fieldConfig": {"defaults": {"displayName": "${__field.labels.exchange}"}}}


def collector(fields: list[str], fn: str) -> str:
    """The collector's health samples (every 10 s, counters cumulative since the collector started)."""
    return flux(
        """
        from(bucket: <<live>>)
          |> <<range>>
          |> <<filter>>
          |> aggregateWindow(every: v.windowPeriod, fn: <<fn>>, createEmpty: false)
        """,
        live=LIVE,
        range=RANGE,
        filter=where("collector", fields, EXCHANGE),
        fn=fn,
    )


def keep(*columns: str) -> str:
    names = ", ".join(f'"{name}"' for name in ("_time", "_value", *columns))
    return f"  |> keep(columns: [{names}])\n"


# A counter's rate: the last sample of each window, differentiated; a restart (counter reset) is skipped.
TRADE_RATE = (
    collector(["trades"], "last") + "  |> derivative(unit: 1s, nonNegative: true)\n" + keep("exchange")
)

# Counter increase per window, one series per counter and exchange.
INCIDENTS = (
    collector(
        [
            "reconnects",
            "errors",
            "rate_limited",
            "dropped_points",
            "write_errors",
            "writer_restarts",
            "inexact_values",
        ],
        "last",
    )
    + "  |> difference(nonNegative: true)\n"
    + keep("exchange", "_field")
)

# 0 in a window where any sample saw the feed disconnected.
CONNECTED = collector(["connected"], "min") + keep("exchange")
WRITE_LATENCY = collector(["write_latency_ms"], "max") + keep("exchange")
SPOOL = collector(["spool_points"], "max") + keep("exchange")
UNRECOVERABLE = collector(["unrecoverable_gap_s"], "max") + keep("exchange")

# Seconds since each feed's newest trade, at the end of the range.
LAST_TRADE_AGE = 'import "date"\n' + last_trade_age("date.sub(d: 30d, from: v.timeRangeStop)", EXCHANGE)

# Stored candles against the intervals between the first and the last one in the range (at least 2 days:
# a short range holds one hourly candle or none). count(), first() and last() straight after the filter are
# answered from storage, one number per stored series (exchange, pair, interval): 40 ms over a year, where
# reducing every candle took 0.8 s.
CANDLE_COVERAGE = flux(
    """
    import "date"
    twoDaysBack = date.sub(d: 2d, from: v.timeRangeStop)
    coverageStart = if v.timeRangeStart < twoDaysBack then v.timeRangeStart else twoDaysBack
    candles = from(bucket: <<history>>)
      |> range(start: coverageStart, stop: v.timeRangeStop)
      |> <<filter>>
    union(tables: [
      candles |> count() |> set(key: "at", value: "stored"),
      candles |> first() |> map(fn: (r) => ({r with _value: int(v: r._time)})) |> set(key: "at", value: "first"),
      candles |> last() |> map(fn: (r) => ({r with _value: int(v: r._time)})) |> set(key: "at", value: "last"),
    ])
      |> group(columns: ["exchange", "pair", "interval"])
      |> pivot(rowKey: ["exchange", "pair", "interval"], columnKey: ["at"], valueColumn: "_value")
      |> map(fn: (r) => ({
        exchange: r.exchange,
        pair: r.pair,
        interval: r.interval,
        stored: r.stored,
        expected: (r.last - r.first) / int(v: duration(v: r.interval)) + 1,
      }))
      |> map(fn: (r) => ({r with missing: r.expected - r.stored}))
      |> group()
      |> sort(columns: ["missing", "pair"], desc: true)
    """,
    history=HISTORY,
    filter=where("candle", "close", EXCHANGE),
)

trade_rate = p.timeseries(
    "Trades per second", TRADE_RATE, "short", "Trades received per second, per exchange.", extra=BY_EXCHANGE
)
incidents = p.timeseries(
    "Reconnects, errors, rate limits, dropped points, write errors, writer restarts, inexact values",
    INCIDENTS,
    "short",
    "How many happened in each window. Inexact values: exchange prices or amounts with more than 15"
    " significant digits, stored as the nearest float.",
    drawStyle="bars",
    fillOpacity=70,
    stacking={"mode": "normal", "group": "A"},
    extra={"fieldConfig": {"defaults": {"displayName": "${__field.labels.exchange} ${__field.name}"}}},
)
connected = p.timeseries(
    "Connected",
    CONNECTED,
    "short",
    "1 while the exchange's websocket is connected; 0 in a window where it was down at some sample.",
    extra=BY_EXCHANGE,
)
latency = p.timeseries(
    "Write latency", WRITE_LATENCY, "ms", "Slowest InfluxDB write per window.", extra=BY_EXCHANGE
)
spool = p.timeseries(
    "Spool",
    SPOOL,
    "short",
    "Points waiting on disk while InfluxDB is unreachable (0 when all is well).",
    extra=BY_EXCHANGE,
)
age = p.bargauge(
    "Last trade age",
    LAST_TRADE_AGE,
    "s",
    f"Seconds since each feed's newest trade; red past {FEED_STALE_S // 60} minutes. A rarely traded pair is no fault:"
    " the feed-stale alert judges the connection.",
    steps=[(p.GREEN, None), (p.ORANGE, 120), (p.RED, FEED_STALE_S)],
    extraJson={
        "fieldConfig": {"defaults": {"displayName": "${__field.labels.exchange} ${__field.labels.pair}"}}
    },
)
unrecoverable = p.timeseries(
    "Unrecoverable gaps",
    UNRECOVERABLE,
    "s",
    "Seconds of trades lost for good (longer outages than the exchange's REST history covers).",
    drawStyle="bars",
    fillOpacity=70,
    extra=BY_EXCHANGE,
)
coverage = p.table(
    "Candle coverage",
    CANDLE_COVERAGE,
    [
        {"name": "exchange", "displayName": "Exchange"},
        {"name": "pair", "displayName": "Pair"},
        {"name": "interval", "displayName": "Interval"},
        {"name": "expected", "displayName": "Expected"},
        {"name": "stored", "displayName": "Stored"},
        {
            "name": "missing",
            "displayName": "Missing",
            "thresholds": p.thresholds((p.GREEN, None), (p.RED, 1)),
            "custom.cellOptions": {"type": "color-background", "mode": "basic"},
        },
    ],
    "Candles stored in the range (at least the last 2 days) against the intervals between the first and the last.",
)

dashboard = dashboard(
    uid="hodlboard-health",
    title="Data health",
    description="Feeds, writer and history completeness of the collector.",
    tags=("health",),
    variables=[variables.exchange(with_health=True)],
    panels=p.layout(
        [(age, 8, 8), (trade_rate, 16, 8)],
        [(incidents, 8, 8), (connected, 8, 8), (latency, 8, 8)],
        [(spool, 8, 8), (unrecoverable, 8, 8), (coverage, 8, 8)],
    ),
    time_from="now-6h",
    refresh="30s",
)
