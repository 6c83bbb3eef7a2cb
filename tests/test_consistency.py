"""Every file of the stack tied to what uses it: mounts, variables, data source, commands, image."""

import json
import os
import re
import subprocess
import tomllib
from importlib.metadata import entry_points

import pytest
import yaml

from collector.cli import build_parser
from tests.influxd import ROOT
from tests.stack_files import COMPOSE_FILES, compose_file

VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:?[-?+])?")
DOCKERFILE = (ROOT / "collector" / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
COLLECTOR_IMAGE = compose_file()["services"]["collector"]["image"]


def services():
    for name in COMPOSE_FILES:
        for service_name, service in compose_file(name)["services"].items():
            yield name, service_name, service


def dockerfile_instruction(name: str) -> list[str]:
    (line,) = [line for line in DOCKERFILE.splitlines() if line.startswith(f"{name} ")]
    return json.loads(line.split(" CMD ", 1)[-1] if name == "HEALTHCHECK" else line.split(" ", 1)[1])


def test_every_mounted_path_exists():
    """portfolio.yml is made by `make setup` (test_compose runs it in a fresh clone); all else is in the repository."""
    for name, service_name, service in services():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("./"):
                assert source in compose_file(name).get("volumes", {}), (name, service_name, source)
                continue
            if source == "./portfolio.yml":
                source = "./portfolio.example.yml"
            assert (ROOT / source).exists(), f"{name}: {service_name} mounts {source}, which does not exist"


def compose_variables() -> dict[str, set[str]]:
    """Each variable the compose files read, with how ('' plain, ':-' default, ':?' required, 'secret')."""
    found: dict[str, set[str]] = {}
    for name in COMPOSE_FILES:
        text = (ROOT / name).read_text()
        for match in VARIABLE.finditer(text):
            found.setdefault(match.group(1), set()).add(match.group(2) or "")
        for secret in compose_file(name).get("secrets", {}).values():
            found.setdefault(secret["environment"], set()).add("secret")
    return found


def documented(variable: str) -> bool:
    return re.search(rf"(?m)^#? ?{variable}=", ENV_EXAMPLE) is not None


def test_every_variable_compose_reads_is_documented_in_env_example():
    missing = [variable for variable in compose_variables() if not documented(variable)]
    assert missing == [], "document them in .env.example"


def test_every_variable_compose_needs_is_written_by_make_setup():
    """Required ones and secrets are set lines of .env.example (make setup writes it, secrets filled in)."""
    from tools.setup import SECRETS

    optional = {"INFLUXDB_V2_URL"}  # only the existing-InfluxDB variant needs it, and says so (test_compose)
    for variable, uses in compose_variables().items():
        if variable in optional or not uses & {"", ":?", "secret"}:
            continue
        line = re.search(rf"(?m)^{variable}=(.*)$", ENV_EXAMPLE)
        assert line, f"{variable}: a set line in .env.example, so make setup writes it"
        assert line.group(1) or variable in SECRETS or variable == "GRAFANA_SMTP_PASSWORD", variable


def data_source_uids(node) -> set[str]:
    """Every data source a dashboard or rule names: `datasource: {uid}` and `datasourceUid`."""
    if isinstance(node, list):
        return set().union(*map(data_source_uids, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set().union(*map(data_source_uids, node.values())) if node else set()
    if isinstance(node.get("datasource"), dict) and "uid" in node["datasource"]:
        found.add(node["datasource"]["uid"])
    if "datasourceUid" in node:
        found.add(node["datasourceUid"])
    return found


def test_the_data_source_uid_of_the_provisioning_is_the_one_dashboards_and_rules_use():
    provisioning = ROOT / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "influxdb.yml").read_text())["datasources"]
    files = [
        *(ROOT / "grafana" / "dashboards").glob("*.json"),
        provisioning / "alerting" / "hodlboard-rules.json",
    ]
    used = set().union(*(data_source_uids(json.loads(path.read_text())) for path in files))
    # Grafana's own: server-side expressions (an alert rule's reduce and threshold steps), built-in annotations
    assert used - {"__expr__", "-- Grafana --"} == {source["uid"]}


def collector_commands():
    for name, service_name, service in services():
        image = service.get("image") or compose_file("docker-compose.yml")["services"][service_name].get(
            "image"
        )
        if image == COLLECTOR_IMAGE or "extends" in service and service_name in ("bootstrap", "collector"):
            for command in (service.get("command"), service.get("healthcheck", {}).get("test")):
                if command:
                    yield f"{name}:{service_name}", command


@pytest.mark.parametrize(("where", "command"), list(collector_commands()))
def test_container_commands_exist_in_the_cli(where, command):
    if command[0] == "CMD":
        assert command[1] == "collector", where
        command = command[2:]
    build_parser().parse_args(command)  # argparse exits (SystemExit) on an unknown command or option


def test_the_image_entrypoint_cmd_and_healthcheck_exist_in_the_installed_package():
    (script,) = dockerfile_instruction("ENTRYPOINT")
    (entry,) = [entry for entry in entry_points(group="console_scripts") if entry.name == script]
    assert entry.value == "collector.cli:main"
    assert entry.dist.name == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    healthcheck = dockerfile_instruction("HEALTHCHECK")
    assert healthcheck[0] == script
    build_parser().parse_args(healthcheck[1:])
    build_parser().parse_args(dockerfile_instruction("CMD"))


def test_the_image_is_slim_non_root_and_installs_the_dependencies_before_the_code():
    assert re.search(r"(?m)^FROM python:[\d.]+-slim", DOCKERFILE)
    (user,) = re.findall(r"(?m)^USER (\S+)", DOCKERFILE)
    assert user not in ("root", "0")
    assert DOCKERFILE.index("pip install -c constraints.txt") < DOCKERFILE.index("COPY collector")
    instructions = "\n".join(line for line in DOCKERFILE.splitlines() if not line.startswith("#"))
    dependencies = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for dev_only in ("grafanalib", "pytest", "ruff", "hypothesis"):
        assert dev_only not in dependencies and dev_only not in instructions
    for source in re.findall(r"(?m)^COPY (.+) \S+$", DOCKERFILE):
        for path in source.split():
            assert (ROOT / path).exists(), path


def test_the_build_context_leaves_out_secrets_and_what_the_image_does_not_need():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", ".tools", "tests", "dashboards", "grafana"} <= ignored
    # make backup's folders (every token of InfluxDB, and they grow) and the user's holdings are no build input
    assert {"backups", "portfolio.yml"} <= ignored


def test_the_bundled_influxdb_is_the_version_the_tests_run_and_grafana_is_11_or_later():
    bundled = compose_file()["services"]
    pinned = re.search(
        r"github.com/influxdata/influxdb/v2 v(\S+)", (ROOT / "tools/influxd/go.mod").read_text()
    )
    assert bundled["influxdb"]["image"] == f"influxdb:{pinned.group(1)}"
    grafana = re.fullmatch(r"grafana/grafana:(\d+)\.\d+\.\d+", bundled["grafana"]["image"])
    assert grafana and int(grafana.group(1)) >= 11


def test_influxdb_reads_the_config_the_tests_run_with():
    from tests.influxd import CONFIG_DIR

    influxdb = compose_file()["services"]["influxdb"]
    target = influxdb["environment"]["INFLUXD_CONFIG_PATH"]
    assert f"./{CONFIG_DIR.relative_to(ROOT)}:{target}:ro" in influxdb["volumes"]
    assert (CONFIG_DIR / "config.yml").is_file()


def test_the_smtp_password_secret_reaches_grafana_only_when_set(tmp_path):
    runner = tmp_path / "run.sh"
    runner.write_text('#!/bin/sh\necho "smtp=${GF_SMTP_PASSWORD:-unset}"\n')
    runner.chmod(0o755)
    secret = tmp_path / "grafana-smtp-password"
    env = {
        "PATH": os.environ["PATH"],
        "HODLBOARD_ALERTING_DIR": str(ROOT / "grafana" / "alerting"),
        "GF_PATHS_PROVISIONING": str(ROOT / "grafana" / "provisioning"),
        "HODLBOARD_PROVISIONING_COPY": str(tmp_path / "provisioning"),
        "GRAFANA_ENTRYPOINT": str(runner),
        "HODLBOARD_SMTP_PASSWORD_FILE": str(secret),
    }
    script = ROOT / "grafana" / "alerting" / "choose-contact.sh"

    def grafana_sees() -> str:
        return subprocess.run(
            ["/bin/sh", str(script)], env=env, capture_output=True, text=True, check=True
        ).stdout

    assert grafana_sees() == "smtp=unset\n"  # compose leaves the file out when GRAFANA_SMTP_PASSWORD is empty
    secret.write_text("s3cret pass")
    assert grafana_sees() == "smtp=s3cret pass\n"


def test_bootstrap_hands_each_token_file_to_the_uid_its_container_runs_as():
    """The scoped token files are 0600: the collector (the image's user) and Grafana read theirs only if bootstrap
    gave them to exactly those uids. A uid changed on one side alone leaves Grafana without its data source."""
    bundled = compose_file()["services"]
    command = bundled["bootstrap"]["command"]
    owners = dict(command[i + 1].split("=") for i, arg in enumerate(command) if arg == "--owner")
    (image_uid,) = re.findall(r"useradd --uid (\d+) [^\n]*collector", DOCKERFILE)
    assert re.search(r"(?m)^USER collector$", DOCKERFILE)
    assert "user" not in bundled["collector"], "the collector runs as the image's user"
    assert owners == {"collector": image_uid, "grafana": str(bundled["grafana"]["user"])}
