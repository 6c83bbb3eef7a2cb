"""Every query the generated dashboards and alert rules make Grafana send, and what each panel needs back."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from influxdb_client import InfluxDBClient

from collector.bootstrap import Bootstrap
from collector.config import Buckets
from collector.influx_settings import InfluxSettings
from tests.grafana_flux import (
    Datasource,
    FluxResult,
    Variable,
    backend_macros,
    interpolate_query_expr,
    interpolate_variables,
    metric_find_values,
    panel_interval_ms,
    run_flux,
)

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
RANGES_S = {"1h": 3600, "7d": 7 * 86400, "1y": 365 * 86400}
SCREEN_PX = 1920  # a panel without maxDataPoints gets its pixel width (24 grid columns span the screen)
NUMERIC = ("double", "long", "unsignedLong")


@dataclass(frozen=True)
class Target:
    dashboard: str
    title: str
    panel: dict
    query: str
    repeat: str | None = None  # the variable a repeated panel is cloned over

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.title}"


@dataclass
class Outcome:
    flux: str
    result: FluxResult
    seconds: float
    names: set[str] = field(default_factory=set)


def load_dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def load_datasource(org: str) -> Datasource:
    """The provisioned data source, with $INFLUXDB_V2_ORG expanded as Grafana expands provisioning env vars."""
    config = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yml").read_text())
    source = config["datasources"][0]
    organization = source["jsonData"]["organization"].replace("$INFLUXDB_V2_ORG", org)
    return Datasource(
        uid=source["uid"],
        organization=organization,
        default_bucket=source["jsonData"]["defaultBucket"],
        time_interval=source["jsonData"].get("timeInterval"),
    )


def panel_targets(dashboards: dict[str, dict]) -> list[Target]:
    targets = []
    for name, board in dashboards.items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target.get("hide"):
                    continue
                title = panel["title"] + ("" if target["refId"] == "A" else f" [{target['refId']}]")
                targets.append(Target(name, title, panel, target["query"], panel.get("repeat") or None))
        for annotation in board["annotations"]["list"]:
            if "target" in annotation:
                panel = {"type": "annotation", "title": annotation["name"]}
                targets.append(
                    Target(name, "annotation " + annotation["name"], panel, annotation["target"]["query"])
                )
    return targets


def needed_names(panel: dict) -> tuple[set[str], set[str]]:
    """(names the panel reads, names that must be numeric): its type's needs and every field its overrides name."""
    kind = panel["type"]
    names: set[str] = set()
    numeric: set[str] = set()
    if kind in ("timeseries", "candlestick"):
        names.add("_time")
    if kind == "candlestick":
        numeric |= {"open", "high", "low", "close", "volume"}
    if kind == "annotation":
        names |= {"_time", "text", "tags"}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override["matcher"]
        if matcher["id"] == "byName":
            names.add(matcher["options"])
    return names | numeric, numeric


def frame_names(result: FluxResult) -> tuple[set[str], set[str]]:
    """(every field name Grafana's frames will have, the numeric ones): columns, and _field values for _value."""
    names, numeric = set(), set()
    for table in result.tables:
        if not table["rows"]:
            continue
        for column, kind in zip(table["columns"], table["types"], strict=True):
            names.add(column)
            if kind in NUMERIC:
                numeric.add(column)
                if column == "_value" and "_field" in table["columns"]:
                    fields = {row[table["columns"].index("_field")] for row in table["rows"]}
                    names |= fields
                    numeric |= fields
    return names, numeric


def resolve_variables(board: dict, datasource: Datasource, url: str, token: str, from_ms: int, to_ms: int):
    """Each variable's options from its own query (as Grafana runs it), current value as saved (All)."""
    variables: dict[str, Variable] = {}
    for spec in board["templating"]["list"]:
        text = interpolate_variables(
            spec["query"], variables, from_ms, to_ms, default_format=interpolate_query_expr
        )
        flux = backend_macros(text, datasource, from_ms, to_ms, interval_ms=1000)
        result = run_flux(url, token, datasource.organization, flux)
        assert result.error is None, f"variable {spec['name']}: {result.error}\n{flux}"
        options = sorted(metric_find_values(result))
        assert options, f"variable {spec['name']} has no options:\n{flux}"
        current = spec["current"]["value"]
        variables[spec["name"]] = Variable(
            spec["name"],
            options,
            current,
            multi=spec["multi"],
            include_all=spec["includeAll"],
            all_value=spec.get("allValue"),
        )
    return variables


def run_target(
    target: Target,
    variables: dict[str, Variable],
    datasource: Datasource,
    url: str,
    token: str,
    from_ms: int,
    to_ms: int,
    local: dict[str, str] | None = None,
) -> Outcome:
    panel = target.panel
    text = interpolate_variables(target.query, variables, from_ms, to_ms, local=local)
    width = SCREEN_PX * panel.get("gridPos", {}).get("w", 24) // 24
    interval = panel_interval_ms(panel, from_ms, to_ms, datasource.time_interval, width)
    flux = backend_macros(text, datasource, from_ms, to_ms, interval)
    result = run_flux(url, token, datasource.organization, flux)
    return Outcome(flux, result, result.seconds)


def check(outcome: Outcome, panel: dict, max_points: int | None = None) -> None:
    """What Grafana would show: no error, rows, the fields the panel reads, and within its point limits."""
    where = f"\n--- query sent ---\n{outcome.flux}"
    assert outcome.result.error is None, f"query failed: {outcome.result.error}{where}"
    assert outcome.result.rows > 0, f"no rows (Grafana shows No data){where}"
    names, numeric = frame_names(outcome.result)
    need, need_numeric = needed_names(panel)
    assert need <= names, f"missing fields {sorted(need - names)}; got {sorted(names)}{where}"
    assert need_numeric <= numeric, f"not numeric: {sorted(need_numeric - numeric)}{where}"
    if panel["type"] != "annotation":
        assert numeric - {"table"}, f"no numeric field to draw; got {sorted(names)}{where}"
    if max_points:
        # executor.go: a frame over maxDataPoints x 10 points is an error in Grafana
        for table in outcome.result.tables:
            assert len(table["rows"]) <= max_points * 10, f"{len(table['rows'])} points in one series{where}"


def alert_queries() -> list[dict]:
    rules = json.loads((PROVISIONING / "alerting" / "hodlboard-rules.json").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def variable_defaults(variables: dict[str, Variable]) -> dict[str, Variable]:
    """The same variables with each one set to a single selected option (a one-element list when multi)."""
    single = {}
    for name, variable in variables.items():
        first = variable.options[0]
        current = [first] if variable.multi else first
        single[name] = Variable(
            name, variable.options, current, variable.multi, variable.include_all, variable.all_value
        )
    return single


class Stack:
    """An organisation's data as Grafana reads it: the provisioned data source, the read-only token, `now_s`."""

    def __init__(self, url: str, org: str, token: str, now_s: int, dashboards: dict[str, dict]):
        self.url, self.org, self.token, self.now_s = url, org, token, now_s
        self.dashboards = dashboards
        self.datasource = load_datasource(org)
        self._variables: dict = {}

    def window(self, range_name: str) -> tuple[int, int]:
        to_ms = self.now_s * 1000
        return to_ms - RANGES_S[range_name] * 1000, to_ms

    def variables(self, dashboard: str, range_name: str):
        key = (dashboard, range_name)
        if key not in self._variables:
            from_ms, to_ms = self.window(range_name)
            board = self.dashboards[dashboard]
            self._variables[key] = resolve_variables(
                board, self.datasource, self.url, self.token, from_ms, to_ms
            )
        return self._variables[key]

    def run(self, target: Target, range_name: str, variables=None, local=None, query=None) -> Outcome:
        from_ms, to_ms = self.window(range_name)
        variables = self.variables(target.dashboard, range_name) if variables is None else variables
        if query is not None:
            target = Target(target.dashboard, target.title, target.panel, query, target.repeat)
        return run_target(target, variables, self.datasource, self.url, self.token, from_ms, to_ms, local)

    def run_all(self, target: Target, range_name: str, variables=None, query=None) -> list[Outcome]:
        """A repeated panel is one query per option, each with that option as a single value."""
        if not target.repeat:
            return [self.run(target, range_name, variables, query=query)]
        options = self.variables(target.dashboard, range_name)[target.repeat].options
        return [self.run(target, range_name, variables, {target.repeat: option}, query) for option in options]


def alert_outcome(stack: Stack, rule: dict) -> Outcome:
    query = rule["data"][0]
    span = query["relativeTimeRange"]
    to_ms = (stack.now_s - span["to"]) * 1000
    from_ms = (stack.now_s - span["from"]) * 1000
    # alert_query.go InitDefaults: intervalMs 1000, so v.windowPeriod is 1s; no dashboard variables
    flux = backend_macros(
        query["model"]["query"], stack.datasource, from_ms, to_ms, query["model"]["intervalMs"]
    )
    result = run_flux(stack.url, stack.token, stack.org, flux)
    return Outcome(flux, result, result.seconds)


@dataclass(frozen=True)
class Organisation:
    admin: InfluxDBClient
    name: str
    collector: InfluxSettings  # what the collector writes with: its scoped token
    grafana_token: str  # what Grafana's data source reads with: read-only


@contextmanager
def bootstrapped_organisation(influx_server, work: Path, prefix: str) -> Iterator[Organisation]:
    """A fresh organisation set up by `collector bootstrap`, deleted afterwards."""
    with InfluxDBClient(url=influx_server.url, token=influx_server.admin_token, timeout=30_000) as admin:
        org = admin.organizations_api().create_organization(name=f"{prefix}-{uuid.uuid4().hex[:12]}")
        try:
            settings = InfluxSettings(url=influx_server.url, org=org.name, token=influx_server.admin_token)
            Bootstrap(settings, Buckets(), work / "secrets", report=lambda line: None).run()
            collector = InfluxSettings(
                influx_server.url, org.name, (work / "secrets" / "collector.token").read_text()
            )
            yield Organisation(admin, org.name, collector, (work / "secrets" / "grafana.token").read_text())
        finally:
            admin.organizations_api().delete_organization(org.id)
