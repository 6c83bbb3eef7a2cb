"""docker-compose.yml as the real Compose tool reads it (no Docker engine needed), in a fresh clone after `make setup`.

`make compose` builds the tool (docker compose v2) from its Go module, pinned in tools/compose/go.mod.
"""

import json
import re
import stat

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
