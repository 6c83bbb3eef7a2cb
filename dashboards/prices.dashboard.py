"""Prices: candles, live prices, tickers, volume, and one pair compared across exchanges."""

from dashboards.lib import panels as p
from dashboards.lib import variables
from dashboards.lib.board import dashboard
from dashboards.lib.queries import (
    HISTORY,
    LIVE,
    LONG,
    META,
    RANGE,
    by_range,
    flux,
    matches,
    price_points,
    where,
)

SELECTED = (matches("exchange", "exchange"), matches("pair", "pair"))
LEGEND = "${__field.labels.pair} ${__field.labels.exchange}"


CANDLE_PARTS = (("open", "first"), ("high", "max"), ("low", "min"), ("close", "last"), ("volume", "sum"))


def _ohlcv(bucket: str, measurement: str, field_of: dict[str, str]) -> str:
    """Candles of the selected pairs, one window aggregate per candle field, merged over exchanges.

    Each field is windowed per stored series first (InfluxDB pushes that down to storage: a year of candles
    in 0.5 s instead of 5.5 s when merged first), keyed by window start, then the series of a pair (exchanges,
    trade sides) are merged with the same aggregate: first of firsts, highest high, sum of sums.
    """
    parts = []
    for name, fn in CANDLE_PARTS:
        parts.append(
            f"from(bucket: {bucket})\n  |> {RANGE}\n  |> {where(measurement, field_of.get(name, name), *SELECTED)}\n"
            f'  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false, timeSrc: "_start")\n'
            '  |> group(columns: ["pair"])\n  |> sort(columns: ["_time"])\n'
            f"  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)\n"
            f'  |> set(key: "_field", value: "{name}")'
        )
    return "union(tables: [\n" + ",\n".join(parts) + ",\n])"


# Candles over the selected exchanges: built from trades on short ranges, from stored candles on long ones.
TRADE_FIELDS = {"open": "price", "high": "price", "low": "price", "close": "price", "volume": "amount"}
CANDLES = flux(
    """
    <<long>>
    <<choice>>
    candles
      |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
      |> keep(columns: ["_time", "pair", "open", "high", "low", "close", "volume"])
    """,
    long=LONG,
    choice=by_range(_ohlcv(LIVE, "trade", TRADE_FIELDS), _ohlcv(HISTORY, "candle", {}), "candles"),
)

PRICES = price_points(*SELECTED) + flux(
    """
    prices
      |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
      |> keep(columns: ["_time", "_value", "exchange", "pair"])
    """
)

# Volume-weighted price over every selected exchange: sum(price x amount) / sum(amount) per window.
COMPOSITE = flux(
    """
    <<long>>
    <<choice>>
    weighted
      |> group(columns: ["pair"])
      |> aggregateWindow(
        every: v.windowPeriod,
        fn: (column, tables=<-) => tables
          |> reduce(identity: {pv: 0.0, w: 0.0}, fn: (r, accumulator) => ({pv: accumulator.pv + r._value, w: accumulator.w + r.weight}))
          |> filter(fn: (r) => r.w > 0.0)
          |> map(fn: (r) => ({r with _value: r.pv / r.w})),
        createEmpty: false,
      )
      |> keep(columns: ["_time", "_value", "pair"])
      |> set(key: "exchange", value: "composite")
    """,
    long=LONG,
    choice=by_range(
        f"from(bucket: {LIVE})\n  |> {RANGE}\n  |> {where('trade', ['price', 'amount'], *SELECTED)}\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> map(fn: (r) => ({_time: r._time, pair: r.pair, _value: r.price * r.amount, weight: r.amount}))",
        f"from(bucket: {HISTORY})\n  |> {RANGE}\n  |> {where('candle', ['close', 'volume'], *SELECTED)}\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> map(fn: (r) => ({_time: r._time, pair: r.pair, _value: r.close * r.volume, weight: r.volume}))",
        "weighted",
    ),
)

# (highest - lowest) / mean of the exchanges' prices in each window, per pair.
SPREAD = price_points(*SELECTED) + flux(
    """
    prices
      |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
      |> group(columns: ["pair", "_time"])
      |> reduce(
        identity: {n: 0, hi: 0.0, lo: 0.0, sum: 0.0},
        fn: (r, accumulator) => ({
          n: accumulator.n + 1,
          hi: if accumulator.n == 0 or r._value > accumulator.hi then r._value else accumulator.hi,
          lo: if accumulator.n == 0 or r._value < accumulator.lo then r._value else accumulator.lo,
          sum: accumulator.sum + r._value,
        }),
      )
      |> filter(fn: (r) => r.n > 1)
      |> map(fn: (r) => ({_time: r._time, pair: r.pair, _value: (r.hi - r.lo) / (r.sum / float(v: r.n)) * 100.0}))
      |> group(columns: ["pair"])
      |> sort(columns: ["_time"])
    """
)

VOLUME = price_points(*SELECTED, fields=("amount", "volume")) + flux(
    """
    prices
      |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)
      |> keep(columns: ["_time", "_value", "exchange", "pair"])
    """
)

TICKER_FIELDS = ["last", "bid", "ask", "open", "high", "low", "volume", "vwap", "change_24h_pct"]
TICKERS = flux(
    """
    import "date"
    from(bucket: <<meta>>)
      |> range(start: date.sub(d: 1d, from: v.timeRangeStop), stop: v.timeRangeStop)
      |> <<filter>>
      |> last()
      |> group()
      |> pivot(rowKey: ["exchange", "pair"], columnKey: ["_field"], valueColumn: "_value")
      |> sort(columns: ["pair", "exchange"])
    """,
    meta=META,
    filter=where("ticker", TICKER_FIELDS, *SELECTED),
)

money = "currencyUSD"
legend = {"fieldConfig": {"defaults": {"displayName": LEGEND}}}

candles = p.candlestick(
    "Candles $pair",
    CANDLES,
    money,
    "Open, high, low, close and volume over the selected exchanges; one panel per selected pair.",
    repeat=p.core.Repeat(direction="h", variable="pair", maxPerRow=2),
)
price_by_exchange = p.timeseries(
    "Price by exchange",
    [PRICES, COMPOSITE],
    money,
    "Mean trade price per window on each exchange, and the volume-weighted composite of all selected ones.",
    extra=legend,
    overrides=[
        {
            "matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        }
    ],
)
spread = p.timeseries(
    "Spread between exchanges",
    SPREAD,
    "percent",
    "(highest - lowest) / mean of the exchanges' prices in each window.",
    extra={"fieldConfig": {"defaults": {"displayName": "${__field.labels.pair}"}}},
)
volume = p.timeseries(
    "Volume",
    VOLUME,
    "none",
    "Traded base-currency amount per window.",
    drawStyle="bars",
    fillOpacity=70,
    stacking={"mode": "normal", "group": "A"},
    extra=legend,
)
tickers = p.table(
    "24 h tickers",
    TICKERS,
    [
        {"name": "pair", "displayName": "Pair"},
        {"name": "exchange", "displayName": "Exchange"},
        {"name": "last", "displayName": "Last", "unit": money},
        {
            "name": "change_24h_pct",
            "displayName": "24 h",
            "unit": "percent",
            "decimals": 2,
            "thresholds": p.thresholds((p.RED, None), (p.GREEN, 0)),
            "custom.cellOptions": {"type": "color-text"},
        },
        {"name": "bid", "displayName": "Bid", "unit": money},
        {"name": "ask", "displayName": "Ask", "unit": money},
        {"name": "open", "displayName": "Open", "unit": money},
        {"name": "high", "displayName": "High", "unit": money},
        {"name": "low", "displayName": "Low", "unit": money},
        {"name": "vwap", "displayName": "VWAP", "unit": money},
        {"name": "volume", "displayName": "Volume", "decimals": 2},
    ],
    "The newest ticker of each pair in the day before the end of the range.",
)

dashboard = dashboard(
    uid="hodlboard-prices",
    title="Prices",
    description="Candles, live prices, 24 h tickers and cross-exchange spreads of the tracked pairs.",
    tags=("prices",),
    variables=[variables.exchange(), variables.pair()],
    panels=p.layout(
        [(candles, 24, 10)],
        [(price_by_exchange, 16, 9), (spread, 8, 9)],
        [(volume, 12, 8), (tickers, 12, 8)],
    ),
    time_from="now-24h",
    refresh="30s",
)
