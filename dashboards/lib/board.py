"""The dashboard frame shared by every hodlboard dashboard: uid, tags, refresh, schema version, links."""

from grafanalib import core

from dashboards.lib.panels import DATASOURCE
from dashboards.lib.queries import finish

SCHEMA_VERSION = 39  # Grafana 11/12 read it as current and migrate nothing
TAG = "hodlboard"
BUILT_IN_ANNOTATIONS = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def annotation(name: str, query: str, color: str) -> dict:
    """A Flux annotation: each row's _time is the moment, `text` the text and `tags` comma-separated tags."""
    return {
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": color,
        "name": name,
        "target": {"query": finish(query), "refId": "Anno"},
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list,
    tags: tuple[str, ...] = (),
    variables: list | None = None,
    annotations: list[dict] | None = None,
    time_from: str = "now-7d",
    refresh: str = "1m",
) -> core.Dashboard:
    return core.Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=[TAG, *tags],
        panels=panels,
        templating=core.Templating(list=variables or []),
        annotations=core.Annotations(list=[BUILT_IN_ANNOTATIONS, *(annotations or [])]),
        time=core.Time(time_from, "now"),
        timePicker=core.TimePicker(
            refreshIntervals=["10s", "30s", "1m", "5m", "15m", "1h"],
            timeOptions=["1h", "6h", "24h", "2d", "7d", "30d", "90d", "1y", "5y"],
        ),
        refresh=refresh,
        schemaVersion=SCHEMA_VERSION,
        timezone="browser",
        graphTooltip=core.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        editable=True,
        links=[
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "hodlboard",
                "type": "dashboards",
            }
        ],
    )
