"""Portfolio: what the holdings are worth, what they cost, and how that moved (the home dashboard)."""

from dashboards.lib import panels as p
from dashboards.lib.board import annotation, dashboard
from dashboards.lib.queries import (
    HISTORY,
    LIVE,
    META,
    flux,
    latest_valuation,
    series_names,
    side_by_side,
    valuation_points,
)

POSITION_FIELDS = ["quantity", "price", "value", "cost_basis", "unrealized_pnl", "realized_pnl"]


def newest_of(fields: list[str]) -> str:
    """Portfolio totals for a stat: the last value of each window, then the newest valuation of either bucket.

    Long ranges read the hourly series, which can be an hour behind the live samples; the newest point of
    either bucket comes last, so the stat shows the same figure as Positions and 24 h change. `last()` keeps
    each point's own time, so a window's value never sorts after the newer sample.
    """
    return (
        valuation_points("portfolio", fields)
        + latest_valuation("portfolio", fields)
        + flux(
            """
            union(tables: [valuation |> window(every: v.windowPeriod) |> last(), latest])
              |> keep(columns: ["_time", "_value", "_field"])
              |> group(columns: ["_field"])
              |> sort(columns: ["_time"])
            """
        )
    )


VALUE = newest_of(["value"])
PROFIT = newest_of(["unrealized_pnl", "realized_pnl"])
PROFIT_PCT = newest_of(["pnl_pct"])

# The change over the 24 h before the end of the range: the newest value against the newest one a day earlier.
DAY_CHANGE = flux(
    """
    import "date"
    dayAgo = date.sub(d: 24h, from: v.timeRangeStop)
    lookFrom = date.sub(d: 26h, from: v.timeRangeStop)
    live = from(bucket: <<live>>)
      |> range(start: lookFrom, stop: v.timeRangeStop)
      |> filter(fn: (r) => r._measurement == "portfolio" and r._field == "value")
    hourly = from(bucket: <<history>>)
      |> range(start: lookFrom, stop: v.timeRangeStop)
      |> filter(fn: (r) => r._measurement == "portfolio" and r._field == "value")
    series = union(tables: [live, hourly]) |> group() |> sort(columns: ["_time"])
    <<change>>
      |> filter(fn: (r) => r.before != 0.0)
      |> map(fn: (r) => ({change: r.after - r.before, change_pct: (r.after - r.before) / r.before * 100.0}))
    """,
    live=LIVE,
    history=HISTORY,
    change=side_by_side(
        {"before": "series |> filter(fn: (r) => r._time <= dayAgo) |> last()", "after": "series |> last()"},
        ["_measurement"],
    ),
)

ALLOCATION = latest_valuation("position", ["value"]) + flux(
    """
    latest
      |> filter(fn: (r) => r._value > 0.0)
      |> keep(columns: ["_time", "_value", "asset"])
    """
)

VALUE_VS_COST = valuation_points("portfolio", ["value", "cost_basis"]) + flux(
    """
    valuation
      |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
      |> <<keep>>
    """,
    keep=series_names([]),
)

VALUE_BY_ASSET = valuation_points("position", ["value"]) + flux(
    """
    valuation
      |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
      |> <<keep>>
    """,
    keep=series_names(["asset"]),
)

# One row per asset: the newest valuation, its coin metadata, and its share of the total.
POSITIONS = latest_valuation("position", POSITION_FIELDS) + flux(
    """
    import "array"
    import "internal/debug"
    import "join"
    positions = latest
      |> group()
      |> pivot(rowKey: ["asset"], columnKey: ["_field"], valueColumn: "_value")
    totals = positions
      |> filter(fn: (r) => exists r.value)
      |> sum(column: "value")
      |> findColumn(fn: (key) => true, column: "value")
    total = if length(arr: totals) > 0 then totals[0] else 0.0
    stored = from(bucket: <<meta>>)
      |> range(start: 0)
      |> filter(fn: (r) => r._measurement == "asset" and (r._field == "name" or r._field == "logo_url"))
      |> last()
      |> group()
      |> pivot(rowKey: ["symbol"], columnKey: ["_field"], valueColumn: "_value")
      |> map(fn: (r) => ({symbol: r.symbol, name: if exists r.name then r.name else debug.null(type: "string"), logo_url: if exists r.logo_url then r.logo_url else debug.null(type: "string")}))
    // Kraken, Binance and Coinbase store no metadata: a row matching no asset keeps both columns and the join's
    // right side present when no stored asset has a name or a logo
    assets = union(tables: [stored, array.from(rows: [{symbol: "", name: "", logo_url: ""}])]) |> group()
    valued = positions
      |> filter(fn: (r) => exists r.value and total > 0.0)
      |> map(fn: (r) => ({r with allocation_pct: r.value / total * 100.0}))
    unvalued = positions |> filter(fn: (r) => not exists r.value or total <= 0.0)
    union(tables: [valued, unvalued])
      |> join.left(
        right: assets,
        on: (l, r) => l.asset == r.symbol,
        as: (l, r) => ({l with name: r.name, logo_url: r.logo_url}),
      )
      |> sort(columns: ["value"], desc: true)
    """,
    meta=META,
)

TRANSACTIONS = flux(
    """
    from(bucket: <<meta>>)
      |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
      |> filter(fn: (r) => r._measurement == "transaction" and (r._field == "quantity" or r._field == "price" or r._field == "currency"))
      |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
      |> group()
      |> map(fn: (r) => ({
        _time: r._time,
        text: r.kind + " " + string(v: r.quantity) + " " + r.asset
          + (if exists r.price then " at " + string(v: r.price) + " " + (if exists r.currency then r.currency else "") else ""),
        tags: r.asset + "," + r.kind,
      }))
    """,
    meta=META,
)

money = p.money()
profit_steps = [(p.RED, None), (p.GREEN, 0)]

value = p.stat(
    "Value", VALUE, money, "Newest valuation in the base currency; the sparkline is the selected range."
)
value.extraJson["fieldConfig"]["defaults"]["displayName"] = "Value"
profit = p.stat(
    "Profit / loss",
    PROFIT,
    money,
    "Unrealized: value minus cost basis of the holdings whose cost basis is known (a bare quantity has none). "
    "Realized: gains and losses already taken by selling.",
    steps=profit_steps,
    overrides=[
        p.override("unrealized_pnl", displayName="Unrealized"),
        p.override("realized_pnl", displayName="Realized"),
    ],
)
profit_pct = p.stat(
    "Unrealized P/L %",
    PROFIT_PCT,
    "percent",
    "Unrealized P/L against the cost basis of the same holdings: the Unrealized figure beside it, as a percentage.",
    steps=profit_steps,
    overrides=[p.override("pnl_pct", displayName="Unrealized")],
)
day_change = p.stat(
    "24 h change",
    DAY_CHANGE,
    money,
    "Change of the value over the 24 hours before the end of the range.",
    steps=profit_steps,
    graphMode="none",
    overrides=[
        p.override("change_pct", unit="percent", displayName="%"),
        p.override("change", displayName="Change"),
    ],
)
allocation = p.piechart("Allocation", ALLOCATION, money, "Newest value of each holding.")
allocation.extraJson = {"fieldConfig": {"defaults": {"displayName": "${__field.labels.asset}"}}}

value_vs_cost = p.timeseries(
    "Value vs cost basis",
    VALUE_VS_COST,
    money,
    "The portfolio's value against what was paid for it; buys and sells are marked.",
    overrides=[
        p.override("value", displayName="Value"),
        p.override(
            "cost_basis", displayName="Cost basis", **{"custom.lineStyle": {"fill": "dash", "dash": [10, 10]}}
        ),
    ],
)
value_by_asset = p.timeseries(
    "Value by asset",
    VALUE_BY_ASSET,
    money,
    "Each holding's value, stacked.",
    stacking={"mode": "normal", "group": "A"},
    fillOpacity=40,
    extra={"fieldConfig": {"defaults": {"displayName": "${__field.labels.asset}"}}},
)

positions = p.table(
    "Positions",
    POSITIONS,
    [
        {
            "name": "logo_url",
            "displayName": "Logo",
            "custom.cellOptions": {"type": "image"},
            "custom.width": 40,
        },
        {"name": "asset", "displayName": "Asset", "custom.width": 80},
        {"name": "name", "displayName": "Name"},
        {"name": "quantity", "displayName": "Quantity", "decimals": 8},
        {"name": "price", "displayName": "Price", "unit": money},
        {"name": "value", "displayName": "Value", "unit": money},
        {"name": "cost_basis", "displayName": "Cost basis", "unit": money},
        {
            "name": "unrealized_pnl",
            "displayName": "Unrealized P/L",
            "unit": money,
            "thresholds": p.thresholds(*profit_steps),
            "custom.cellOptions": {"type": "color-text"},
        },
        {
            "name": "realized_pnl",
            "displayName": "Realized P/L",
            "unit": money,
            "thresholds": p.thresholds(*profit_steps),
            "custom.cellOptions": {"type": "color-text"},
        },
        {
            "name": "allocation_pct",
            "displayName": "Allocation",
            "unit": "percent",
            "decimals": 1,
            "max": 100,
            "min": 0,
            "custom.cellOptions": {"type": "gauge", "mode": "basic"},
        },
    ],
    "Newest valuation of every holding. Unknown figures (no cost basis for a bare quantity) stay empty.",
)

dashboard = dashboard(
    uid="hodlboard-portfolio",
    title="Portfolio",
    description="Value, profit and loss, allocation and positions of the holdings in portfolio.yml.",
    tags=("portfolio",),
    panels=p.layout(
        [(value, 6, 5), (profit, 6, 5), (profit_pct, 6, 5), (day_change, 6, 5)],
        [(value_vs_cost, 16, 9), (allocation, 8, 9)],
        [(positions, 24, 8)],
        [(value_by_asset, 24, 8)],
    ),
    annotations=[annotation("Transactions", TRANSACTIONS, "#FADE2A")],
    time_from="now-30d",
)
