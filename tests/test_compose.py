"""docker-compose.yml as the real Compose tool reads it (no Docker engine needed), in a fresh clone after `make setup`.

`make compose` builds the tool (docker compose v2) from its Go module, pinned in tools/compose/go.mod.
"""

import json
import re
import stat
import subprocess
import sys

import pytest

from tests.stack_files import compose, env_file, fresh_clone, make_setup

SECRET_VARIABLES = ("INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD")
LONG_RUNNING = ("influxdb", "collector", "grafana")


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    make_setup(clone)
    return clone


def model(clone, *args: str, **env: str) -> dict:
    run = compose(clone, *args, "config", "--format", "json", **env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_make_setup_then_the_compose_check_passes(clone):
    run = compose(clone, "config", "--quiet")
    assert run.returncode == 0 and run.stdout == "", run.stderr


def test_make_setup_writes_fresh_secrets_readable_by_the_user_only_and_never_prints_them(tmp_path):
    first, second = fresh_clone(tmp_path / "a"), fresh_clone(tmp_path / "b")
    output = make_setup(first).stdout + make_setup(second).stdout
    for clone in (first, second):
        assert stat.S_IMODE((clone / ".env").stat().st_mode) == 0o600
        assert (clone / "portfolio.yml").read_text() == (clone / "portfolio.example.yml").read_text()
    values = [env_file(clone) for clone in (first, second)]
    for name in SECRET_VARIABLES:
        assert len(values[0][name]) >= 32 and values[0][name] != values[1][name], name
        assert values[0][name] not in output and values[1][name] not in output
    assert "GRAFANA_ADMIN_PASSWORD" in output and "grep GRAFANA_ADMIN .env" in output, (
        "says where the password is"
    )


def test_make_setup_never_overwrites(tmp_path):
    clone = fresh_clone(tmp_path)
    make_setup(clone)
    (clone / "portfolio.yml").write_text("# mine\n")
    before = (clone / ".env").read_text()
    again = make_setup(clone)
    assert (clone / ".env").read_text() == before and (clone / "portfolio.yml").read_text() == "# mine\n"
    assert ".env: kept" in again.stdout and "portfolio.yml: kept" in again.stdout


def test_no_secret_is_an_environment_value_or_printed_by_compose(clone):
    run = compose(clone, "config", "--format", "json")
    assert run.returncode == 0, run.stderr
    for name in SECRET_VARIABLES:
        assert env_file(clone)[name] not in run.stdout, (
            f"{name} would show in docker inspect or compose config"
        )
    services = json.loads(run.stdout)["services"]
    files = {
        "influxdb": {
            "DOCKER_INFLUXDB_INIT_PASSWORD_FILE": "influxdb-admin-password",
            "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE": "influxdb-admin-token",
        },
        "bootstrap": {"INFLUXDB_V2_TOKEN_FILE": "influxdb-admin-token"},
        "grafana": {"GF_SECURITY_ADMIN_PASSWORD__FILE": "grafana-admin-password"},
    }
    for service, variables in files.items():
        mounted = {secret["source"] for secret in services[service]["secrets"]}
        for variable, secret in variables.items():
            assert services[service]["environment"][variable] == f"/run/secrets/{secret}"
            assert secret in mounted, (service, secret)


def test_each_secret_comes_from_its_env_variable(clone):
    secrets = model(clone)["secrets"]
    assert {name: secret["environment"] for name, secret in secrets.items()} == {
        "influxdb-admin-password": "INFLUXDB_ADMIN_PASSWORD",
        "influxdb-admin-token": "INFLUXDB_ADMIN_TOKEN",
        "grafana-admin-password": "GRAFANA_ADMIN_PASSWORD",
        "grafana-smtp-password": "GRAFANA_SMTP_PASSWORD",
    }


@pytest.mark.parametrize("missing", [*SECRET_VARIABLES, "INFLUXDB_V2_ORG"])
def test_a_missing_secret_is_refused_with_its_name(clone, tmp_path, missing):
    env = (clone / ".env").read_text()
    broken = fresh_clone(tmp_path)
    (broken / ".env").write_text(re.sub(rf"(?m)^{missing}=.*$", f"{missing}=", env))
    run = compose(broken, "config", "--quiet")
    assert run.returncode != 0
    assert f"set {missing} in .env" in run.stderr, run.stderr
    for name in SECRET_VARIABLES:
        value = env_file(clone)[name]
        assert value not in run.stderr


def test_only_grafana_is_published_on_the_lan_by_default(clone):
    services = model(clone)["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert list(published) == ["grafana"]
    (port,) = published["grafana"]
    assert (port["host_ip"], port["published"], port["target"]) == ("0.0.0.0", "3000", 3000)


def test_grafana_bind_address_and_port_come_from_env(clone):
    services = model(clone, GRAFANA_BIND="127.0.0.1", GRAFANA_PORT="8300")["services"]
    (port,) = services["grafana"]["ports"]
    assert (port["host_ip"], port["published"]) == ("127.0.0.1", "8300")


def test_the_influxdb_ui_only_on_request_and_on_this_host_only(clone):
    services = model(clone, COMPOSE_FILE="docker-compose.yml:docker-compose.influxdb-ui.yml")["services"]
    (port,) = services["influxdb"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8086", 8086)
    assert [port["host_ip"] for port in services["grafana"]["ports"]] == ["0.0.0.0"]


def test_every_service_rotates_its_log_and_the_long_running_ones_restart(clone):
    services = model(clone)["services"]
    for name, service in services.items():
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "3"}, name
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["bootstrap"]["restart"] == "no"


def test_bootstrap_and_collector_share_one_image_build(clone):
    services = model(clone)["services"]
    bootstrap, collector = services["bootstrap"], services["collector"]
    assert bootstrap["image"] == collector["image"] and bootstrap["build"] == collector["build"]
    assert collector["build"]["dockerfile"] == "collector/Dockerfile"


def test_the_stack_starts_in_order(clone):
    services = model(clone)["services"]
    assert services["bootstrap"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    for name in ("collector", "grafana"):
        assert services[name]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"


def test_existing_influxdb_variant_has_no_influxdb_and_points_everything_at_the_given_url(clone):
    url = "https://eu-central-1-1.aws.cloud2.influxdata.com"
    services = model(clone, COMPOSE_FILE="docker-compose.external-influxdb.yml", INFLUXDB_V2_URL=url)[
        "services"
    ]
    assert sorted(services) == ["bootstrap", "collector", "grafana"]
    for name, service in services.items():
        assert service["environment"]["INFLUXDB_V2_URL"] == url, name
        assert "influxdb" not in service.get("depends_on", {}), name
    bundled = model(clone)["services"]
    for name in services:  # everything else as in the bundled stack
        for key in ("image", "command", "secrets", "volumes", "healthcheck", "logging", "restart"):
            assert services[name].get(key) == bundled[name].get(key), (name, key)


def test_existing_influxdb_variant_refuses_a_missing_url(clone):
    run = compose(clone, "config", "--quiet", COMPOSE_FILE="docker-compose.external-influxdb.yml")
    assert run.returncode != 0 and "set INFLUXDB_V2_URL in .env" in run.stderr, run.stderr


def test_the_readme_quick_start_is_these_two_commands():
    from tests.influxd import ROOT

    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") :]
    start = quick_start.index("```sh\n") + len("```sh\n")
    assert quick_start[start : quick_start.index("```", start)].splitlines() == [
        "make setup",
        "docker compose up -d",
    ]


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "docker-compose.external-influxdb.yml"])
def test_an_env_without_the_smtp_password_line_is_refused_by_the_check_naming_it(
    clone, tmp_path, compose_file
):
    """An .env older than the secret (or trimmed by hand): `docker compose up` would fail late, at Grafana's
    secret, with compose's own words; the check says what to do first. Empty is fine (no email alerts)."""
    older = fresh_clone(tmp_path)
    env = (clone / ".env").read_text()
    (older / ".env").write_text(re.sub(r"(?m)^GRAFANA_SMTP_PASSWORD=.*\n", "", env))
    url = {"INFLUXDB_V2_URL": "https://influx.example"} if "external" in compose_file else {}
    run = compose(older, "config", "--quiet", COMPOSE_FILE=compose_file, **url)
    assert run.returncode != 0 and "set GRAFANA_SMTP_PASSWORD in .env" in run.stderr, run.stderr
    assert "make setup adds it" in run.stderr
    (older / ".env").write_text(env)  # the line present, empty: accepted
    assert compose(older, "config", "--quiet", COMPOSE_FILE=compose_file, **url).returncode == 0


def test_make_setup_completes_an_older_env_keeping_every_line_of_it(clone, tmp_path):
    older = fresh_clone(tmp_path)
    env = (clone / ".env").read_text()
    trimmed = re.sub(r"(?m)^(GRAFANA_SMTP_PASSWORD|GRAFANA_BIND|GRAFANA_ADMIN_PASSWORD)=.*\n", "", env)
    trimmed = trimmed.replace("INFLUXDB_V2_ORG=hodlboard", "INFLUXDB_V2_ORG=home")  # the user's own value
    (older / ".env").write_text(trimmed)
    (older / ".env").chmod(0o600)
    output = make_setup(older).stdout
    completed = (older / ".env").read_text()
    assert completed.startswith(trimmed), "every line the user had is kept as it was"
    values = env_file(older)
    assert values["INFLUXDB_V2_ORG"] == "home"
    assert values["GRAFANA_SMTP_PASSWORD"] == "" and values["GRAFANA_BIND"] == "0.0.0.0"
    assert len(values["GRAFANA_ADMIN_PASSWORD"]) >= 32  # a missing secret gets a fresh value
    assert "GRAFANA_SMTP_PASSWORD" in output and values["GRAFANA_ADMIN_PASSWORD"] not in output
    assert stat.S_IMODE((older / ".env").stat().st_mode) == 0o600
    assert compose(older, "config", "--quiet").returncode == 0
    make_setup(older)
    assert (older / ".env").read_text() == completed, "a second run adds nothing"


def test_a_password_of_your_own_with_dollar_hash_or_quotes_reaches_compose_intact_as_documented(
    clone, tmp_path
):
    """Compose reads `$name` in an unquoted .env value as a variable (silently blank): the password InfluxDB or
    Grafana got would not be the one in .env. Single quotes keep it literal; .env.example and README say so."""
    own = 'pa$$w0rd #1 $HOME"x'
    mine = fresh_clone(tmp_path)
    env = (clone / ".env").read_text()
    (mine / ".env").write_text(
        re.sub(r"(?m)^GRAFANA_ADMIN_PASSWORD=.*$", f"GRAFANA_ADMIN_PASSWORD='{own}'", env)
    )
    run = compose(mine, "config", "--environment")
    assert run.returncode == 0, run.stderr
    assert f"GRAFANA_ADMIN_PASSWORD={own}\n" in run.stdout
    from tests.influxd import ROOT

    for documented in ((ROOT / ".env.example").read_text(), (ROOT / "README.md").read_text()):
        assert "in single quotes" in documented and "`$`" in documented


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "docker-compose.external-influxdb.yml"])
def test_the_guard_holding_the_secrets_in_labels_never_becomes_a_container(clone, compose_file):
    """`required-secrets` carries the secrets as labels (so compose refuses a missing one): with its profile
    switched on (`--profile '*'`, COMPOSE_PROFILES) it must still never be a container `docker inspect` shows."""
    url = {"INFLUXDB_V2_URL": "https://influx.example"} if "external" in compose_file else {}
    services = model(clone, COMPOSE_FILE=compose_file, COMPOSE_PROFILES="*", **url)["services"]
    assert services["required-secrets"].get("scale") == 0


def test_make_setup_says_what_to_do_when_docker_made_portfolio_yml_a_directory(tmp_path):
    """Started before portfolio.yml existed, Docker creates a directory in its place: make setup must not call
    that "kept", and the collector would say `Is a directory` forever."""
    clone = fresh_clone(tmp_path)
    (clone / "portfolio.yml").mkdir()
    run = subprocess.run(
        [sys.executable, "tools/setup.py"], cwd=clone, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1 and "kept" not in run.stdout.split("portfolio.yml")[-1]
    assert "portfolio.yml is a directory" in run.stderr and "rmdir portfolio.yml" in run.stderr, run.stderr
    (clone / "portfolio.yml").rmdir()
    make_setup(clone)
    assert (clone / "portfolio.yml").read_text() == (clone / "portfolio.example.yml").read_text()


def test_make_setup_runs_on_the_python3_of_older_distributions():
    """`make setup` runs the system's python3 before anything is installed: Debian 11 has 3.9, Ubuntu 20.04 3.8.
    Annotations like `list[str] | None` are evaluated when a function is defined there and crash it, unless
    postponed (`from __future__ import annotations`); newer syntax does not even parse."""
    import ast

    from tests.influxd import ROOT

    source = (ROOT / "tools" / "setup.py").read_text()
    tree = ast.parse(source, feature_version=(3, 8))  # a SyntaxError for what 3.8 cannot read
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    annotations = [
        node.returns if isinstance(node, ast.FunctionDef) else node.annotation
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.arg, ast.AnnAssign))
    ]
    newer = [
        ast.unparse(annotation)
        for annotation in annotations
        if annotation is not None
        and any(isinstance(part, (ast.BinOp, ast.Subscript)) for part in ast.walk(annotation))
    ]
    assert postponed or not newer, f"evaluated at definition on Python 3.8/3.9: {newer}"
