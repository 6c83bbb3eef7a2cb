"""The generated dashboards, alert rules and Grafana provisioning: current, well-formed, and wired together.

No published JSON Schema of Grafana's dashboard model ships in a maintained package (docs/grafana-flux.md says
what was checked), so the rules Grafana 12 applies and the ones hodlboard adds are checked here directly.
"""

import json
import os
import re
import subprocess
from itertools import combinations

import pytest
import yaml

from collector.bootstrap import DEFAULT_SECRETS_DIR
from collector.config import Buckets
from dashboards import generate
from tests.dashboard_queries import DASHBOARDS, PROVISIONING, ROOT, alert_queries, load_dashboards

BOARDS = load_dashboards()
CURRENT_TYPES = {"timeseries", "stat", "table", "piechart", "bargauge", "candlestick"}
ANGULAR_TYPES = {"graph", "singlestat", "table-old", "grafana-piechart-panel", "grafana-worldmap-panel"}
DATASOURCE = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yml").read_text())["datasources"][0]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GRAFANA = COMPOSE["services"]["grafana"]
VARIABLE_USE = re.compile(r"\$\{?(\w+)")


def panels(board: dict) -> list[dict]:
    return board["panels"]


def queries(board: dict) -> list[str]:
    return [target["query"] for panel in panels(board) for target in panel.get("targets", [])]


def test_generated_files_are_current():
    assert generate.stale(generate.render()) == [], "run `make dashboards` and commit grafana/"


def test_a_stale_file_is_reported():
    files = generate.render()
    path = next(iter(files))
    files[path] += " "
    assert generate.stale(files) == [str(path.relative_to(ROOT))]


def test_rendering_is_stable():
    assert generate.render() == generate.render()


def test_every_source_has_its_json_and_there_are_four():
    names = {path.name.removesuffix(".dashboard.py") for path in generate.dashboard_sources()}
    assert names == set(BOARDS) == {"portfolio", "prices", "velocity", "health"}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_identity(name):
    board = BOARDS[name]
    assert board["uid"] == f"hodlboard-{name}"
    assert board["title"] and board["description"]
    assert "hodlboard" in board["tags"] and len(board["tags"]) >= 2
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["refresh"] and board["time"]["from"].startswith("now-")
    assert len({BOARDS[other]["uid"] for other in BOARDS}) == len(BOARDS)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_unique_and_grid_without_overlap(name):
    board_panels = panels(BOARDS[name])
    ids = [panel["id"] for panel in board_panels]
    assert len(ids) == len(set(ids))
    for panel in board_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel[
            "title"
        ]
    for a, b in combinations(board_panels, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        overlap_x = ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
        overlap_y = ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]
        assert not (overlap_x and overlap_y), f"{a['title']!r} overlaps {b['title']!r}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_current_panel_types_and_the_provisioned_datasource(name):
    board = BOARDS[name]
    for panel in panels(board):
        assert panel["type"] in CURRENT_TYPES and panel["type"] not in ANGULAR_TYPES, panel["type"]
        assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE["uid"]}
        assert panel["targets"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"], (
            f"{panel['title']}: no base threshold step"
        )
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE["uid"]
            assert target["refId"] and target["query"].strip()
    for annotation in board["annotations"]["list"]:
        if not annotation.get("builtIn"):
            assert annotation["datasource"]["uid"] == DATASOURCE["uid"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE["uid"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_queries_keep_the_measured_rules(name):
    board = BOARDS[name]
    variables = {variable["name"] for variable in board["templating"]["list"]}
    for panel in panels(board):
        for target in panel["targets"]:
            query = target["query"]
            if panel["type"] in ("timeseries", "candlestick"):
                assert re.search(r"aggregateWindow\(\s*every: v\.windowPeriod", query), panel["title"]
            # variables only as anchored regex filters: right for single, multi and All values
            for match in VARIABLE_USE.finditer(query):
                assert match.group(1) in variables, (
                    f"unknown variable ${match.group(1)} in {panel['title']!r}"
                )
                assert query[match.start() - 5 : match.start()] == "=~ /^", panel["title"]
                assert query[match.start() :].startswith(f"${{{match.group(1)}:regex}}$/"), panel["title"]
            assert not re.search(r"[a-zA-Z]+\.(bucket|organization)\b", query), (
                "rewritten by Grafana's macros"
            )
            assert "$__range" not in query and "$__rate_interval" not in query
    for variable in board["templating"]["list"]:
        assert variable["multi"] and variable["includeAll"] and "allValue" not in variable
        assert "windowPeriod" not in variable["query"]


def test_alert_rules_are_self_contained():
    rules = alert_queries()
    assert {rule["title"] for rule in rules} == {
        "Feed stale",
        "Price move",
        "Volume spike",
        "Portfolio drawdown",
    }
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "hodlboard.yml").read_text())["providers"][0]
    groups = json.loads((PROVISIONING / "alerting" / "hodlboard-rules.json").read_text())["groups"]
    assert all(group["folder"] == provider["folder"] == "hodlboard" for group in groups)
    for rule in rules:
        query = rule["data"][0]
        assert query["datasourceUid"] == DATASOURCE["uid"]
        span = query["relativeTimeRange"]
        assert span["from"] > span["to"] >= 0
        flux = query["model"]["query"]
        assert "$" not in flux, "alert queries get no dashboard variables"
        assert "windowPeriod" not in flux, "an alert's windowPeriod is 1s"
        assert rule["condition"] == rule["data"][-1]["refId"]
        assert [step["model"]["expression"] for step in rule["data"][1:]] == ["A", "B"]


def test_datasource_provisioning():
    assert DATASOURCE["type"] == "influxdb" and DATASOURCE["uid"] == "hodlboard-influxdb"
    data = DATASOURCE["jsonData"]
    assert data["version"] == "Flux"
    assert data["defaultBucket"] == Buckets().live
    # the organisation comes from the environment compose gives Grafana (empty breaks every panel)
    assert data["organization"] == "$INFLUXDB_V2_ORG"
    assert GRAFANA["environment"]["INFLUXDB_V2_ORG"].startswith("${INFLUXDB_V2_ORG:?")
    # the URL too: the bundled InfluxDB, or an existing one (docker-compose.external-influxdb.yml)
    assert DATASOURCE["url"] == "$INFLUXDB_V2_URL"
    assert GRAFANA["environment"]["INFLUXDB_V2_URL"] == "http://influxdb:8086"
    # the read-only token that bootstrap writes, in the secrets volume Grafana mounts
    token_path = re.fullmatch(r"\$__file\{(.+)\}", DATASOURCE["secureJsonData"]["token"]).group(1)
    assert token_path == str(DEFAULT_SECRETS_DIR / "grafana.token")
    assert f"secrets:{DEFAULT_SECRETS_DIR}:ro" in GRAFANA["volumes"]


def mount_target(source: str) -> str:
    return next(volume.split(":")[1] for volume in GRAFANA["volumes"] if volume.split(":")[0] == source)


def test_dashboard_provider_and_home_dashboard():
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "hodlboard.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == "hodlboard"
    assert mount_target("./grafana/dashboards") == provider["options"]["path"]
    assert mount_target("./grafana/provisioning") == "/etc/grafana/provisioning"
    home = GRAFANA["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/portfolio.json"
    assert (DASHBOARDS / "portfolio.json").is_file()


@pytest.mark.parametrize("contact", ["none", "email", "webhook"])
def test_contact_points_come_from_env_and_none_sends_nothing(contact):
    # the entrypoint picks grafana/alerting/contact-<choice>.yml (test_contact_choice_* run it)
    assert GRAFANA["entrypoint"] == ["/bin/sh", "/etc/hodlboard/alerting/choose-contact.sh"]
    assert mount_target("./grafana/alerting") == "/etc/hodlboard/alerting"
    assert GRAFANA["environment"]["HODLBOARD_ALERT_CONTACT"] == "${HODLBOARD_ALERT_CONTACT:-none}"
    config = yaml.safe_load((ROOT / "grafana" / "alerting" / f"contact-{contact}.yml").read_text())
    assert config["apiVersion"] == 1
    if contact == "none":
        # nothing provisioned, only what earlier choices left is removed
        assert set(config) == {"apiVersion", "deleteContactPoints", "resetPolicies"}
        placeholder = ROOT / "grafana/provisioning/alerting/contact-point.yml"
        assert yaml.safe_load(placeholder.read_text()) == config
        return
    (point,) = config["contactPoints"]
    (receiver,) = point["receivers"]
    settings = " ".join(str(value) for value in receiver["settings"].values())
    variable = {"email": "$HODLBOARD_ALERT_EMAIL", "webhook": "$HODLBOARD_ALERT_WEBHOOK_URL"}[contact]
    assert variable in settings and "@" not in settings and "http" not in settings, "no default address"
    assert GRAFANA["environment"][variable[1:]] == "${" + variable[1:] + ":-}"
    assert config["policies"][0]["receiver"] == point["name"]
    env_example = (ROOT / ".env.example").read_text()
    assert f"\n{variable[1:]}=\n" in env_example and "\nHODLBOARD_ALERT_CONTACT=none\n" in env_example


RECEIVER_UID = {"email": "hodlboard-email", "webhook": "hodlboard-webhook"}


@pytest.mark.parametrize("choice", ["none", "email", "webhook"])
def test_each_contact_choice_removes_the_receivers_of_the_others(choice):
    """Grafana keeps a provisioned contact point and policy when the file that made them is replaced.

    So the receivers of the other choices are deleted (`deleteContactPoints`), and `none` resets the policy tree
    (`resetPolicies`), or switching HODLBOARD_ALERT_CONTACT would keep alerting the old recipient.
    """
    config = yaml.safe_load((ROOT / "grafana" / "alerting" / f"contact-{choice}.yml").read_text())
    deleted = {entry["uid"] for entry in config.get("deleteContactPoints", [])}
    others = {uid for name, uid in RECEIVER_UID.items() if name != choice}
    assert others <= deleted, f"contact-{choice}.yml leaves {sorted(others - deleted)} in Grafana"
    assert RECEIVER_UID.get(choice) not in deleted
    if choice == "none":
        assert 1 in config.get("resetPolicies", []), "the hodlboard policy would keep routing alerts"


def money_units(files: dict) -> set[str]:
    """Every unit a generated dashboard gives a money figure (currency signs and custom suffixes)."""
    text = "".join(content for path, content in files.items() if path.suffix == ".json")
    return set(re.findall(r'"(?:unit|format)": "(currency\w+|suffix: \w+)"', text))


@pytest.mark.parametrize(
    ("base", "unit"), [("USD", "currencyUSD"), ("EUR", "currencyEUR"), ("USDT", "suffix: USDT")]
)
def test_money_is_shown_in_the_base_currency(base, unit):
    """`make dashboards BASE_CURRENCY=EUR`: every money figure in euros, none left in dollars."""
    try:
        assert money_units(generate.render(base)) == {unit}
    finally:
        generate.render()  # the other tests read the default (USD) rendering


def test_a_mistyped_base_currency_is_refused(capsys):
    with pytest.raises(SystemExit) as refused:
        generate.main(["--check", "--base-currency", "$"])
    assert refused.value.code == 2 and "currency code" in capsys.readouterr().err


CHOOSE_CONTACT = ROOT / "grafana" / "alerting" / "choose-contact.sh"


def choose_contact(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Runs Grafana's compose entrypoint with a stand-in for the image's /run.sh that lists what it was given."""
    grafana = tmp_path / "run.sh"
    grafana.write_text('#!/bin/sh\necho "provisioning=$GF_PATHS_PROVISIONING args=$*"\n')
    grafana.chmod(0o755)
    environment = {
        "PATH": os.environ["PATH"],
        "HODLBOARD_ALERTING_DIR": str(ROOT / "grafana" / "alerting"),
        "GF_PATHS_PROVISIONING": str(PROVISIONING),
        "HODLBOARD_PROVISIONING_COPY": str(tmp_path / "provisioning"),
        "GRAFANA_ENTRYPOINT": str(grafana),
        **env,
    }
    return subprocess.run(
        ["/bin/sh", str(CHOOSE_CONTACT), "--flag"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HODLBOARD_ALERT_CONTACT": "slack"},
            "HODLBOARD_ALERT_CONTACT=slack is not a choice: set none, email or webhook",
        ),
        ({"HODLBOARD_ALERT_CONTACT": "email"}, "HODLBOARD_ALERT_CONTACT=email needs HODLBOARD_ALERT_EMAIL"),
        ({"HODLBOARD_ALERT_CONTACT": "webhook"}, "needs HODLBOARD_ALERT_WEBHOOK_URL"),
    ],
)
def test_a_mistyped_contact_choice_stops_grafana_with_a_clear_message(tmp_path, env, message):
    run = choose_contact(tmp_path, **env)
    assert run.returncode != 0 and message in run.stderr, run
    assert "provisioning=" not in run.stdout, "Grafana must not start"


@pytest.mark.parametrize(
    ("env", "choice"),
    [
        ({}, "none"),
        ({"HODLBOARD_ALERT_CONTACT": "email", "HODLBOARD_ALERT_EMAIL": "me@example.org"}, "email"),
        (
            {"HODLBOARD_ALERT_CONTACT": "webhook", "HODLBOARD_ALERT_WEBHOOK_URL": "https://ntfy.example/x"},
            "webhook",
        ),
    ],
)
def test_the_chosen_contact_point_is_provisioned_and_grafana_started(tmp_path, env, choice):
    run = choose_contact(tmp_path, **env)
    copy = tmp_path / "provisioning"
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"provisioning={copy} args=--flag"
    chosen = (ROOT / "grafana" / "alerting" / f"contact-{choice}.yml").read_text()
    assert (copy / "alerting" / "contact-point.yml").read_text() == chosen
    for provided in PROVISIONING.rglob("*.*"):
        if provided.name != "contact-point.yml":
            assert (copy / provided.relative_to(PROVISIONING)).read_bytes() == provided.read_bytes()
