"""What Grafana 12 does to a Flux query before InfluxDB sees it, reproduced so tests can send the same text.

Two stages, in Grafana's order (docs/grafana-flux.md names the Grafana source each rule comes from):
1. the browser interpolates dashboard variables and `$__from`-style macros (`interpolate_variables`);
2. the Flux data source backend replaces `v.timeRangeStart`, `v.windowPeriod`, ... and `$__interval`
   (`backend_macros`), then POSTs the text to /api/v2/query exactly as influxdb-client-go does (`run_flux`).
"""

import csv
import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

# --- stage 1: frontend variable interpolation (grafana/scenes variables/interpolation) -------------------

VARIABLE_REGEX = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}", re.ASCII
)
ALL_VALUE = "$__all"


@dataclass
class Variable:
    """A dashboard variable as the dashboard holds it once its options are known."""

    name: str
    options: list[str]
    current: str | list[str]  # a string for a single value, a list (even of one) for multi; ALL_VALUE for All
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None  # a custom allValue

    def value(self):
        selected = self.current
        if selected == ALL_VALUE or selected == [ALL_VALUE]:
            if self.all_value is not None:
                return CustomAllValue(self.all_value)
            return list(self.options)
        return selected

    def text(self):
        if self.current in (ALL_VALUE, [ALL_VALUE]):
            return "All"
        return " + ".join(self.current) if isinstance(self.current, list) else self.current


@dataclass(frozen=True)
class CustomAllValue:
    raw: str


def escape_regex(value: str) -> str:
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def _glob(value):
    if isinstance(value, str):
        return value
    return value[0] if len(value) == 1 else "{" + ",".join(value) + "}"


def _regex(value):
    if isinstance(value, str):
        return escape_regex(value)
    escaped = [escape_regex(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _json(value):
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _join(separator):
    return lambda value: value if isinstance(value, str) else separator.join(value)


def _quote(mark):
    def quoted(value):
        values = [value] if isinstance(value, str) else value
        return ",".join(mark + v.replace(mark, "\\" + mark) + mark for v in values)

    return quoted


FORMATS = {
    "glob": _glob,
    "regex": _regex,
    "json": _json,
    "csv": _join(","),
    "pipe": _join("|"),
    "raw": _join(","),
    "doublequote": _quote('"'),
    "singlequote": _quote("'"),
}


def _format(value, fmt: str | None):
    name, _, argument = (fmt or "glob").partition(":")
    if name == "join":
        return _join(argument or ",")(value)
    return FORMATS.get(name, _glob)(value)  # an unknown format falls back to glob, as Grafana does


def _time_macro(epoch_ms: int, fmt: str | None) -> str:
    if not fmt:
        return str(epoch_ms)
    if fmt in ("date", "date:iso"):
        moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
    if fmt == "date:seconds":
        return str(epoch_ms // 1000)
    raise NotImplementedError(f"time macro format {fmt!r} is not reproduced here")


def interpolate_variables(
    text: str,
    variables: dict[str, Variable],
    from_ms: int,
    to_ms: int,
    default_format=None,
    local: dict[str, str] | None = None,
) -> str:
    """templateSrv.replace: scoped (local) values, then dashboard variables, then macros; unknown names stay.

    `default_format` is used when the text names no format: None means glob (panel queries);
    a callable(value, variable) is the data source's own (variable queries use interpolate_query_expr).
    """
    local = local or {}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name in ("__interval", "__interval_ms"):
            return "$" + name  # applyTemplateVariables keeps them for the backend
        if name in local:
            return _format(local[name], fmt)
        if name in variables:
            variable = variables[name]
            value = variable.value()
            if isinstance(value, CustomAllValue):
                return "All" if fmt == "text" else value.raw
            if fmt == "text":
                return variable.text()
            if fmt is None and callable(default_format):
                return default_format(value, variable)
            return _format(value, fmt)
        if name == "__from":
            return _time_macro(from_ms, fmt)
        if name == "__to":
            return _time_macro(to_ms, fmt)
        return match.group(0)

    return VARIABLE_REGEX.sub(replace, text)


def interpolate_query_expr(value, variable: Variable) -> str:
    """The Influx data source's format for variables inside a variable query: alternation if multi, raw if single."""
    if not variable.multi and not variable.include_all:
        return value if isinstance(value, str) else ",".join(value)
    return _regex(value)


# --- interval (rangeutil.calculateInterval, roundInterval) -----------------------------------------------

_ROUND_STEPS_MS = [
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10000),
    (17500, 15000),
    (25000, 20000),
    (45000, 30000),
    (90000, 60000),
    (210000, 120000),
    (450000, 300000),
    (750000, 600000),
    (1050000, 900000),
    (1500000, 1200000),
    (2700000, 1800000),
    (5400000, 3600000),
    (9000000, 7200000),
    (16200000, 10800000),
    (32400000, 21600000),
    (86400000, 43200000),
    (604800000, 86400000),
    (1814400000, 604800000),
    (3628800000, 2592000000),
]
YEAR_MS = 31536000000
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000, "y": YEAR_MS}


def round_interval(interval_ms: float) -> int:
    for below, step in _ROUND_STEPS_MS:
        if interval_ms < below:
            return step
    return YEAR_MS


def interval_to_ms(text: str) -> int:
    """describeInterval: `10s`, `1m`; a bare number is seconds. `>10s` is an error, as in Grafana."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)?", text.strip())
    if not match:
        raise ValueError(
            f"Invalid interval string, has to be either unit-less or end with one of the units: {text!r}"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2) or "s"]


def calculate_interval_ms(from_ms: int, to_ms: int, max_data_points: int, low_limit: str | None) -> int:
    interval = round_interval((to_ms - from_ms) / max_data_points)
    if low_limit:
        interval = max(interval, interval_to_ms(low_limit))
    return interval


def panel_interval_ms(
    panel: dict, from_ms: int, to_ms: int, datasource_time_interval: str | None, width_px: int
) -> int:
    """SceneQueryRunner: lower limit = panel.interval or the data source's timeInterval; points = maxDataPoints or width."""
    max_data_points = panel.get("maxDataPoints") or width_px
    low_limit = panel.get("interval") or datasource_time_interval
    return calculate_interval_ms(from_ms, to_ms, max_data_points, low_limit)


# --- stage 2: backend macros (pkg/tsdb/influxdb/flux/macros.go) ------------------------------------------

FLUX_VARIABLE = re.compile(r"([a-zA-Z]+)\.([a-zA-Z]+)", re.MULTILINE)


def go_duration(ms: int) -> str:
    """time.Duration.String() for a whole number of milliseconds: 500ms, 2s, 10m0s, 6h0m0s, 24h0m0s."""
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3600000)
    minutes, rest = divmod(rest, 60000)
    seconds = f"{rest // 1000}"
    if rest % 1000:
        seconds += ("." + f"{rest % 1000:03d}").rstrip("0")
    text = seconds + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit, truncated ($__interval)."""
    for unit, size in (("y", YEAR_MS), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def rfc3339_nano(epoch_ms: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed, no fraction when it is 0."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{epoch_ms % 1000:03d}".rstrip("0")
    return moment + ("." + fraction if fraction else "") + "Z"


@dataclass(frozen=True)
class Datasource:
    """The provisioned data source's jsonData, as the backend reads it."""

    uid: str
    organization: str
    default_bucket: str
    time_interval: str | None = None


def backend_macros(flux: str, datasource: Datasource, from_ms: int, to_ms: int, interval_ms: int) -> str:
    if not datasource.organization:
        raise ValueError("missing organization in datasource configuration")
    interval_ms = interval_ms or 1  # getQueryModel: an Interval of 0 becomes 1ms
    values = {
        "timeRangeStart": rfc3339_nano(from_ms),
        "timeRangeStop": rfc3339_nano(to_ms),
        "windowPeriod": go_duration(interval_ms),
        "bucket": f'"{datasource.default_bucket}"',  # options.bucket defaults to defaultBucket
        "defaultBucket": f'"{datasource.default_bucket}"',
        "organization": f'"{datasource.organization}"',
    }
    for match in FLUX_VARIABLE.findall(flux):  # matches are taken once, on the original text
        if match[1] in values:
            flux = flux.replace(f"{match[0]}.{match[1]}", values[match[1]])
    flux = flux.replace("$__interval_ms", str(interval_ms))
    return flux.replace("$__interval", format_interval(interval_ms))


# --- the wire (influxdb-client-go api/query.go) and the answer ---------------------------------------------


@dataclass
class FluxResult:
    tables: list[dict] = field(default_factory=list)  # {"columns": [...], "types": [...], "rows": [...]}
    error: str | None = None
    seconds: float = (
        0.0  # the round trip, until the whole answer arrived (parsing it here is not Grafana's cost)
    )

    @property
    def rows(self) -> int:
        return sum(len(table["rows"]) for table in self.tables)

    @property
    def columns(self) -> set[str]:
        return {name for table in self.tables if table["rows"] for name in table["columns"]}

    def values(self, column: str) -> list:
        out = []
        for table in self.tables:
            if column in table["columns"]:
                index = table["columns"].index(column)
                out.extend(row[index] for row in table["rows"])
        return out


def parse_annotated_csv(text: str) -> FluxResult:
    """Annotated CSV to tables; an error table inside an HTTP 200 stream becomes the result's error."""
    result = FluxResult()
    table = None
    datatypes: list[str] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or row == [""]:
            table = None
            continue
        if row[0] == "#datatype":
            datatypes = row[1:]
            table = None
            continue
        if row[0].startswith("#"):
            continue
        if table is None:
            header = row[1:]
            if header[:2] == ["error", "reference"]:
                table = {"error": True, "columns": header, "types": datatypes, "rows": []}
            else:
                table = {"columns": header, "types": datatypes, "rows": []}
                result.tables.append(table)
            continue
        if table.get("error"):
            result.error = result.error or row[1]
            continue
        table["rows"].append(row[1:])
    return result


def run_flux(url: str, token: str, org: str, flux: str, timeout_s: float = 120) -> FluxResult:
    started = time.monotonic()
    response = requests.post(
        f"{url}/api/v2/query",
        params={"org": org},
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip",
        },
        data=json.dumps(
            {
                "query": flux,
                "type": "flux",
                "dialect": {
                    "annotations": ["datatype", "group", "default"],
                    "delimiter": ",",
                    "header": True,
                },
            }
        ),
        timeout=timeout_s,
    )
    seconds = time.monotonic() - started  # the body is read: requests reads it all unless asked to stream
    if response.status_code != 200:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        return FluxResult(error=f"HTTP {response.status_code}: {message}", seconds=seconds)
    result = parse_annotated_csv(response.text)
    result.seconds = seconds
    return result


def metric_find_values(result: FluxResult) -> list[str]:
    """toMetricFindValue: for every frame the first string field (else the first non-time field), de-duplicated."""
    seen: list[str] = []
    for table in result.tables:
        if not table["rows"]:
            continue
        index = next(
            (
                i
                for i, (name, kind) in enumerate(zip(table["columns"], table["types"], strict=False))
                if kind == "string" and name not in ("result",)
            ),
            None,
        )
        if index is None:
            index = next(
                i for i, kind in enumerate(table["types"]) if not kind.startswith("dateTime") and i > 1
            )
        for row in table["rows"]:
            if row[index] not in seen:
                seen.append(row[index])
    return seen
