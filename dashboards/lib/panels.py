"""Panel constructors with hodlboard's defaults: the provisioned data source, current panel types only.

grafanalib has no candlestick panel and writes the bar gauge in its pre-Grafana-7 shape, so those two are
small classes of our own built on grafanalib's Panel. Every panel sets maxDataPoints, which (with the range)
decides `v.windowPeriod`; see docs/grafana-flux.md.
"""

import attr
from grafanalib import core

from dashboards.lib.queries import finish

DATASOURCE_UID = "hodlboard-influxdb"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SERIES_POINTS = 1000  # a one-year view then aggregates to 6 h windows, a 7-day one to 10 min
STAT_POINTS = 200

# Money is shown in the base currency of portfolio.yml: `make dashboards BASE_CURRENCY=EUR` sets it (generate.py)
# before the dashboards load. Grafana has a unit with the right sign for these; any other is written after the number.
DEFAULT_BASE_CURRENCY = "USD"
GRAFANA_CURRENCIES = [
    "USD",
    "GBP",
    "EUR",
    "JPY",
    "RUB",
    "UAH",
    "BRL",
    "DKK",
    "ISK",
    "NOK",
    "SEK",
    "CZK",
    "CHF",
    "PLN",
    "BTC",
    "ZAR",
    "INR",
    "KRW",
]
base_currency = DEFAULT_BASE_CURRENCY


def money() -> str:
    """The unit of a money figure in the base currency: `currencyEUR`, or `suffix: USDT` for one Grafana lacks."""
    code = base_currency.upper()
    return f"currency{code}" if code in GRAFANA_CURRENCIES else f"suffix: {code}"


GREEN, ORANGE, RED = "green", "orange", "red"
BASE_STEP = [{"color": GREEN, "value": None}]  # Grafana wants a base threshold step on every panel


@attr.s
class FluxTarget:
    query = attr.ib()
    refId = attr.ib(default="A")
    hide = attr.ib(default=False)

    def to_json_data(self):
        data = {"datasource": DATASOURCE, "query": finish(self.query), "refId": self.refId}
        if self.hide:
            data["hide"] = True
        return data


def _targets(queries) -> list[FluxTarget]:
    queries = [queries] if isinstance(queries, str) else queries
    return [FluxTarget(query, chr(ord("A") + index)) for index, query in enumerate(queries)]


def thresholds(*steps: tuple[str, float | None]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def override(name: str, **properties) -> dict:
    """Field overrides by column/series name; keys use dots for nesting (custom.cellOptions)."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def timeseries(title: str, queries, unit: str = "", description: str = "", **options) -> core.TimeSeries:
    extra = options.pop("extra", {})
    panel = core.TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        unit=unit,
        maxDataPoints=SERIES_POINTS,
        lineWidth=options.pop("lineWidth", 2),
        fillOpacity=options.pop("fillOpacity", 10),
        showPoints="never",
        spanNulls=options.pop("spanNulls", True),
        tooltipMode="multi",
        legendDisplayMode=options.pop("legendDisplayMode", "list"),
        legendCalcs=options.pop("legendCalcs", []),
        thresholds=BASE_STEP,
        **options,
    )
    panel.extraJson = extra or None
    return panel


def stat(title: str, queries, unit: str = "", description: str = "", **options) -> core.Stat:
    steps = options.pop("steps", [(GREEN, None)])
    extra = {"fieldConfig": {"defaults": {"thresholds": thresholds(*steps)}}}
    extra.update(options.pop("extra", {}))
    return core.Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        format=unit,
        reduceCalc=options.pop("reduceCalc", "lastNotNull"),
        graphMode=options.pop("graphMode", "area"),
        colorMode=options.pop("colorMode", "value"),
        noValue="no data",
        maxDataPoints=STAT_POINTS,
        extraJson=extra,
        **options,
    )


def table(title: str, queries, columns: list[dict], description: str = "", **options) -> core.Table:
    """A table whose columns (name, displayName, unit, width, cellOptions...) are listed in order.

    Columns not listed are hidden, so a storage detail (`result`, `_start`) never shows.
    """
    shown = [column["name"] for column in columns]
    organize = {
        "id": "organize",
        "options": {
            "excludeByName": {name: True for name in ("result", "table", "_start", "_stop", "_measurement")},
            "indexByName": {name: index for index, name in enumerate(shown)},
            "renameByName": {},
        },
    }
    overrides = []
    for column in columns:
        properties = {key: value for key, value in column.items() if key != "name"}
        if properties:
            overrides.append(override(column["name"], **properties))
    extra = {
        "options": {"cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
        "fieldConfig": {"defaults": {"thresholds": thresholds((GREEN, None))}},
    }
    extra.update(options.pop("extra", {}))
    return core.Table(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        overrides=overrides,
        transformations=[{"id": "merge", "options": {}}, organize],
        sortBy=options.pop("sortBy", []),
        maxDataPoints=STAT_POINTS,
        filterable=False,
        extraJson=extra,
        **options,
    )


def piechart(title: str, queries, unit: str = "", description: str = "", **options) -> core.PieChartv2:
    return core.PieChartv2(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        unit=unit,
        pieType="donut",
        legendDisplayMode="table",
        legendPlacement="right",
        legendValues=["value", "percent"],
        tooltipMode="single",
        maxDataPoints=STAT_POINTS,
        thresholds=BASE_STEP,
        **options,
    )


@attr.s
class BarGauge(core.Panel):
    """The bar gauge in its Grafana 8+ shape (grafanalib's writes the removed `fieldOptions`)."""

    unit = attr.ib(default="")
    steps = attr.ib(factory=lambda: [(GREEN, None)])
    displayMode = attr.ib(default="gradient")
    orientation = attr.ib(default="horizontal")
    calc = attr.ib(default="lastNotNull")

    def to_json_data(self):
        return self.panel_json(
            {
                "fieldConfig": {
                    "defaults": {"unit": self.unit, "thresholds": thresholds(*self.steps), "min": 0},
                    "overrides": [],
                },
                "options": {
                    "displayMode": self.displayMode,
                    "orientation": self.orientation,
                    "reduceOptions": {"calcs": [self.calc], "fields": "", "values": False},
                    "showUnfilled": True,
                    "valueMode": "color",
                    "namePlacement": "auto",
                    "sizing": "auto",
                },
                "type": "bargauge",
            }
        )


def bargauge(title: str, queries, unit: str = "", description: str = "", **options) -> BarGauge:
    return BarGauge(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        unit=unit,
        maxDataPoints=STAT_POINTS,
        **options,
    )


@attr.s
class Candlestick(core.Panel):
    """Grafana's candlestick panel (core since 8.3): open/high/low/close columns, volume underneath."""

    unit = attr.ib(default="")

    def to_json_data(self):
        return self.panel_json(
            {
                "fieldConfig": {
                    "defaults": {
                        "unit": self.unit,
                        "thresholds": thresholds((GREEN, None)),
                        "color": {"mode": "palette-classic"},
                        "custom": {
                            "lineWidth": 1,
                            "fillOpacity": 80,
                            "axisPlacement": "auto",
                            "spanNulls": False,
                        },
                    },
                    "overrides": [override("volume", unit="none", decimals=2)],
                },
                "options": {
                    "mode": "candles+volume",
                    "candleStyle": "candles",
                    "colorStrategy": "open-close",
                    "colors": {"up": "green", "down": "red"},
                    "includeAllFields": False,
                    "fields": {
                        "open": "open",
                        "high": "high",
                        "low": "low",
                        "close": "close",
                        "volume": "volume",
                    },
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
                    "tooltip": {"mode": "multi", "sort": "none"},
                },
                "type": "candlestick",
            }
        )


def candlestick(title: str, query: str, unit: str = "", description: str = "", **options) -> Candlestick:
    return Candlestick(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(query),
        unit=unit,
        maxDataPoints=300,  # candles stay readable: 30 min candles over 7 days, daily ones over a year
        **options,
    )


def layout(*rows: list[tuple[core.Panel, int, int]]) -> list[core.Panel]:
    """Places panels row by row: each entry is (panel, width of 24, height); ids follow the order."""
    placed, y, panel_id = [], 0, 1
    for row in rows:
        x = 0
        for panel, width, height in row:
            assert x + width <= 24, f"row too wide at {panel.title!r}"
            panel.gridPos = core.GridPos(h=height, w=width, x=x, y=y)
            panel.id = panel_id
            panel_id += 1
            placed.append(panel)
            x += width
        y += max(height for _, _, height in row)
    return placed
