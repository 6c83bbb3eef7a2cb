"""Prices: candles, live prices, tickers, volume, and one pair compared across exchanges."""

from dashboards.lib import panels as p
from dashboards.lib import variables
from dashboards.lib.board import dashboard
from dashboards.lib.queries import (
    CANDLE_INTERVAL,
    FEED_HEADER,
    HISTORY,
    LIVE,
    LONG,
    META,
    ONE_INTERVAL,
    RANGE,
    by_range,
    flux,
    matches,
    where,
    window_means,
    window_sums,
)

SELECTED = (matches("exchange", "exchange"), matches("pair", "pair"))
LEGEND = "${__field.labels.pair} ${__field.labels.exchange}"


# (candle field, aggregate over a window): open and close pick a row by its time, the others combine values.
CANDLE_PARTS = (("open", "first"), ("high", "max"), ("low", "min"), ("close", "last"), ("volume", "sum"))


def _candle_part(source: str, name: str, fn: str) -> str:
    """One candle field per pair and window, merged over the stored series (exchanges, trade sides).

    Every stored series is windowed first, which InfluxDB does in storage (a year of candles in 0.5 s instead of
    5.5 s when merged first). High, low and volume then merge by value: highest high, sum of sums. Open and close
    must be the window's first and last trade of any series, so each series' first()/last() keeps its own _time
    and the merge picks the earliest/latest of those (windows that share their start are the same window).
    Every field ends up timed at its window's start.
    """
    if fn in ("first", "last"):
        newest_first = "true" if fn == "last" else "false"
        merged = (
            f"  |> window(every: v.windowPeriod)\n  |> {fn}()\n"
            '  |> group(columns: ["pair"])\n'
            f'  |> sort(columns: ["_start", "_time"], desc: {newest_first})\n'
            '  |> unique(column: "_start")\n'
            "  |> map(fn: (r) => ({pair: r.pair, _time: r._start, _value: r._value}))\n"
        )
    elif fn in (
        "max",
        "min",
    ):  # aggregateWindow's fast path has no max/min: merged as the top of a sort instead
        highest_first = "true" if fn == "max" else "false"
        merged = (
            f'  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false, timeSrc: "_start")\n'
            '  |> group(columns: ["pair"])\n'
            f'  |> sort(columns: ["_time", "_value"], desc: {highest_first})\n'
            '  |> unique(column: "_time")\n'
            '  |> sort(columns: ["_time"])\n'
            '  |> keep(columns: ["pair", "_time", "_value"])\n'
        )
    else:
        merged = (
            f'  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false, timeSrc: "_start")\n'
            '  |> group(columns: ["pair"])\n  |> sort(columns: ["_time"])\n'
            f'  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false, timeSrc: "_start")\n'
            '  |> keep(columns: ["pair", "_time", "_value"])\n'
        )
    return f"{source.strip()}\n{merged}" + f'  |> set(key: "_field", value: "{name}")'


def _ohlcv(source_of) -> str:
    """Candles of the selected pairs: `source_of(field)` is the stored stream a candle field comes from."""
    parts = [_candle_part(source_of(name), name, fn) for name, fn in CANDLE_PARTS]
    return "union(tables: [\n" + ",\n".join(parts) + ",\n])"


TRADE_FIELDS = {"open": "price", "high": "price", "low": "price", "close": "price", "volume": "amount"}


def _trades(name: str) -> str:
    return f"from(bucket: {LIVE})\n  |> {RANGE}\n  |> {where('trade', TRADE_FIELDS[name], *SELECTED)}"


def _stored_candles(name: str) -> str:
    return f"from(bucket: {HISTORY})\n  |> {RANGE}\n  |> {where('candle', name, *SELECTED, ONE_INTERVAL)}"


# Candles over the selected exchanges: built from trades on short ranges, from stored candles on long ones.
CANDLES = flux(
    """
    <<long>>
    <<interval>>
    <<choice>>
    candles
      |> group(columns: ["pair"])
      |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
      |> keep(columns: ["_time", "pair", "open", "high", "low", "close", "volume"])
      |> sort(columns: ["_time"])
    """,
    long=LONG,
    interval=CANDLE_INTERVAL,
    choice=by_range(_ohlcv(_trades), _ohlcv(_stored_candles), "candles"),
)

PRICES = window_means("means", *SELECTED) + "means\n"

# Volume-weighted price over every selected exchange: each exchange's mean price in a window (as drawn above)
# weighted by its volume in that window, then summed per pair and window. Every step works on per-window
# aggregates, never on raw trades or candles (a year: ~0.2 s instead of 1.3-1.5 s when every candle was pivoted;
# two days of a 1/s feed no longer pivot 172,800 trades). The map()s use only columns and arithmetic, which Flux
# runs vectorized: a map that branched on an argument ran row by row (0.8 s a year).
COMPOSITE = (
    window_means("means", *SELECTED, time_src="_start")
    + window_sums("volume", *SELECTED, time_src="_start")
    + flux(
        """
        weights = union(tables: [means |> set(key: "at", value: "price"), volume |> set(key: "at", value: "volume")])
          |> pivot(rowKey: ["_time"], columnKey: ["at"], valueColumn: "_value")
          |> filter(fn: (r) => exists r.price and exists r.volume and r.volume > 0.0)
          |> map(fn: (r) => ({_time: r._time, pair: r.pair, weighted: r.price * r.volume, volume: r.volume}))
        perPair = (column) => weights
          |> duplicate(column: column, as: "_value")
          |> keep(columns: ["_time", "pair", "_value"])
          |> group(columns: ["pair"])
          |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)
          |> set(key: "at", value: column)
        union(tables: [perPair(column: "weighted"), perPair(column: "volume")])
          |> pivot(rowKey: ["_time"], columnKey: ["at"], valueColumn: "_value")
          |> map(fn: (r) => ({_time: r._time, pair: r.pair, exchange: "composite", _value: r.weighted / r.volume}))
        """
    )
)

# (highest - lowest) / mean of the exchanges' prices in each window, per pair: each exchange's window mean (as drawn
# in Price by exchange), then mean and count of those per pair and window with aggregateWindow's fast path (mean,
# sum and count only: `spread`, `max` or `min` there split a year into 29,000 one-row tables, 4-6 s). The highest
# and the lowest are the first of each window once sorted by value; the mean of that one value times it as the
# others.
SPREAD = window_means("means", *SELECTED, time_src="_start") + flux(
    """
    byPair = means |> group(columns: ["pair"])
    perWindow = (tables=<-, fn, name) => tables
      |> aggregateWindow(every: v.windowPeriod, fn: fn, createEmpty: false)
      |> map(fn: (r) => ({_time: r._time, pair: r.pair, _value: float(v: r._value)}))
      |> set(key: "at", value: name)
    extreme = (desc, name) => byPair
      |> sort(columns: ["_time", "_value"], desc: desc)
      |> unique(column: "_time")
      |> sort(columns: ["_time"])
      |> perWindow(fn: mean, name: name)
    union(tables: [extreme(desc: true, name: "high"), extreme(desc: false, name: "low"), byPair |> perWindow(fn: mean, name: "mean"), byPair |> perWindow(fn: count, name: "n")])
      |> pivot(rowKey: ["_time"], columnKey: ["at"], valueColumn: "_value")
      |> filter(fn: (r) => r.n > 1.0 and r.mean > 0.0)
      |> map(fn: (r) => ({_time: r._time, pair: r.pair, _value: (r.high - r.low) / r.mean * 100.0}))
    """
)

VOLUME = FEED_HEADER + window_sums("volume", *SELECTED) + "volume\n"

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

money = p.money()
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
