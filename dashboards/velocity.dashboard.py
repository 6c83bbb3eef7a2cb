"""Velocity: how fast prices move (%/h), their moving averages, volatility, volume spikes and top movers."""

from dashboards.alerts import VOLUME_SPIKE_RATIO
from dashboards.lib import panels as p
from dashboards.lib import variables
from dashboards.lib.board import dashboard
from dashboards.lib.queries import (
    FEED_HEADER,
    flux,
    matches,
    price_points,
    side_by_side,
    window_means,
    window_sums,
)

SELECTED = (matches("exchange", "exchange"), matches("pair", "pair"))
LEGEND = {"fieldConfig": {"defaults": {"displayName": "${__field.labels.pair} ${__field.labels.exchange}"}}}
AVERAGE_WINDOWS = 24  # moving averages and volatility look back this many windows

WINDOWED = window_means("windowed", *SELECTED)

# 100 x d(ln price)/dt: the instantaneous rate of change in % per hour, whatever the window size.
RATE = WINDOWED + flux(
    """
    import "math"
    windowed
      |> map(fn: (r) => ({r with _value: math.log(x: r._value) * 100.0}))
      |> derivative(unit: 1h, nonNegative: false)
    """
)

# Price of each pair over the selected exchanges, with a fast and a slow moving average.
AVERAGES = price_points(*SELECTED) + flux(
    """
    price = prices
      |> group(columns: ["pair"])
      |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
      |> keep(columns: ["_time", "_value", "pair"])
    fast = price |> exponentialMovingAverage(n: 12) |> set(key: "line", value: "EMA 12")
    slow = price |> movingAverage(n: <<n>>) |> set(key: "line", value: "SMA <<n>>")
    union(tables: [price |> set(key: "line", value: "price"), fast, slow])
      |> group(columns: ["pair", "line"])
      |> sort(columns: ["_time"])
    """,
    n=str(AVERAGE_WINDOWS),
)

# Realized volatility: root mean square of the log returns between windows, over the last N windows, in %.
# `^ 0.5` is math.sqrt exactly (Go's Pow special case) but runs vectorized, where a math.* call runs row by row
# (0.6 s over a year of 20 pairs); the one math.log left is the cost of this panel (README: Performance).
VOLATILITY = WINDOWED + flux(
    """
    import "math"
    windowed
      |> map(fn: (r) => ({r with _value: math.log(x: r._value)}))
      |> difference(nonNegative: false)
      |> map(fn: (r) => ({r with _value: r._value * r._value}))
      |> movingAverage(n: <<n>>)
      |> map(fn: (r) => ({r with _value: r._value ^ 0.5 * 100.0}))
    """,
    n=str(AVERAGE_WINDOWS),
)

# Each window's volume against the average of the traded windows up to it (1 = usual, 4 = four times usual).
# movingAverage keeps a row's other columns, so the window's own volume rides along in a copy (no union and pivot).
VOLUME_SPIKES = (
    FEED_HEADER
    + window_sums("volume", *SELECTED)
    + flux(
        """
        volume
          |> duplicate(column: "_value", as: "volume")
          |> movingAverage(n: <<n>>)
          |> filter(fn: (r) => r._value > 0.0)
          |> map(fn: (r) => ({_time: r._time, exchange: r.exchange, pair: r.pair, _value: r.volume / r._value}))
        """,
        n=str(AVERAGE_WINDOWS),
    )
)

# Change over the selected range per exchange and pair, with the range's high-low span.
TOP_MOVERS = price_points(*SELECTED) + flux(
    """
    <<moves>>
      |> filter(fn: (r) => r.opening > 0.0 and r.low > 0.0)
      |> map(fn: (r) => ({r with change_pct: (r.closing - r.opening) / r.opening * 100.0, span_pct: (r.high - r.low) / r.low * 100.0}))
      |> sort(columns: ["change_pct"], desc: true)
    """,
    moves=side_by_side(
        {
            "opening": "prices |> first()",
            "closing": "prices |> last()",
            "high": "prices |> max()",
            "low": "prices |> min()",
        },
        ["exchange", "pair"],
    ),
)

money = p.money()
signed = [(p.RED, None), (p.GREEN, 0)]

rate = p.timeseries(
    "Rate of change",
    RATE,
    "percent",
    "How fast the price moves, in % per hour (100 x the time derivative of the log price).",
    axisLabel="%/h",
    extra=LEGEND,
)
averages = p.timeseries(
    "Price and moving averages $pair",
    AVERAGES,
    money,
    f"Mean price over the selected exchanges, its 12-window EMA and {AVERAGE_WINDOWS}-window SMA.",
    repeat=p.core.Repeat(direction="h", variable="pair", maxPerRow=2),
    extra={"fieldConfig": {"defaults": {"displayName": "${__field.labels.line}"}}},
)
volatility = p.timeseries(
    "Volatility",
    VOLATILITY,
    "percent",
    f"Root mean square of the window-to-window log returns over the last {AVERAGE_WINDOWS} windows.",
    extra=LEGEND,
)
spikes = p.timeseries(
    "Volume against its average",
    VOLUME_SPIKES,
    "x",
    f"Each window's volume divided by the mean of the last {AVERAGE_WINDOWS} traded windows; the line is the alert level.",
    drawStyle="bars",
    fillOpacity=60,
    thresholdsStyleMode="line",
    extra={
        "fieldConfig": {
            "defaults": {
                **LEGEND["fieldConfig"]["defaults"],
                "thresholds": p.thresholds((p.GREEN, None), (p.RED, VOLUME_SPIKE_RATIO)),
            }
        }
    },
)
movers = p.table(
    "Top movers",
    TOP_MOVERS,
    [
        {"name": "pair", "displayName": "Pair"},
        {"name": "exchange", "displayName": "Exchange"},
        {
            "name": "change_pct",
            "displayName": "Change",
            "unit": "percent",
            "decimals": 2,
            "thresholds": p.thresholds(*signed),
            "custom.cellOptions": {"type": "color-background", "mode": "basic"},
        },
        {"name": "opening", "displayName": "Open", "unit": money},
        {"name": "closing", "displayName": "Close", "unit": money},
        {"name": "high", "displayName": "High", "unit": money},
        {"name": "low", "displayName": "Low", "unit": money},
        {"name": "span_pct", "displayName": "High-low span", "unit": "percent", "decimals": 2},
    ],
    "Change from the first to the last price of the selected range, biggest gainers first.",
)

dashboard = dashboard(
    uid="hodlboard-velocity",
    title="Velocity",
    description="Rate of change, moving averages, volatility, volume spikes and top movers.",
    tags=("prices", "velocity"),
    variables=[variables.exchange(), variables.pair()],
    panels=p.layout(
        [(rate, 16, 9), (movers, 8, 9)],
        [(averages, 24, 9)],
        [(volatility, 12, 8), (spikes, 12, 8)],
    ),
    time_from="now-24h",
    refresh="30s",
)
