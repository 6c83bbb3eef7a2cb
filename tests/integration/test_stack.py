"""The stack as `docker compose up -d` runs it, with real processes instead of containers (no Docker engine here).

A fresh clone, `make setup` in it; the services' environments, commands and secrets taken from the Compose tool's
own reading of docker-compose.yml, with the containers' paths mapped to a work directory:
- influxdb: a real influxd with influxdb/config.yml, onboarded with the .env values as the official image's
  DOCKER_INFLUXDB_INIT_* setup does (its setup is the onboarding API), from the secret files;
- bootstrap: `collector bootstrap` with the admin token file, writing the scoped tokens to the secrets volume;
- collector: `collector run` with the token file bootstrap wrote, against the Bitstamp replay, until its trades,
  tickers, candles and valuation are stored; its healthcheck passes meanwhile;
- grafana: every dashboard query, substituted as Grafana does, sent with the token file the provisioned data source
  reads, to the URL and organisation compose gives Grafana.
No token or password appears in any log.
"""

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from collector.storage.reader import flux_query
from tests.dashboard_queries import PROVISIONING, Stack, load_dashboards, panel_targets
from tests.influxd import ROOT, InfluxServer
from tests.integration.harness import cli, count_points, run_process, sigterm, wait_for
from tests.replay.bitstamp import BitstampReplay
from tests.stack_files import OWN_PREFIXES, compose, env_file, fresh_clone, make_setup

PAIRS = ("BTC-USD", "ETH-USD")
TRADES = 30  # per pair
DASHBOARDS = load_dashboards()
TARGETS = panel_targets(DASHBOARDS)
# Panels that may rightly show "No data" after a run of seconds, and why; every other panel must draw.
MAY_BE_EMPTY = {
    "prices:Spread between exchanges": "one exchange: there is no second price to compare",
}
SECRET_DIRS = ("/run/secrets", "/run/hodlboard")


class Containers:
    """The paths the containers see, mapped to directories of the work directory."""

    def __init__(self, clone: Path, work: Path, influx_url: str, env: dict[str, str]):
        self.paths = {
            "/run/secrets": work / "run-secrets",  # compose's secrets (from .env)
            "/run/hodlboard": work / "secrets-volume",  # the `secrets` volume
            "/config/portfolio.yml": clone / "portfolio.yml",
            "/var/lib/hodlboard": work / "spool-volume",
            "/tmp": work / "container-tmp",
        }
        self.influx_url = influx_url
        self.paths["/run/secrets"].mkdir(mode=0o700)
        self.paths["/tmp"].mkdir()
        for name, variable in (
            ("influxdb-admin-password", "INFLUXDB_ADMIN_PASSWORD"),
            ("influxdb-admin-token", "INFLUXDB_ADMIN_TOKEN"),
            ("grafana-admin-password", "GRAFANA_ADMIN_PASSWORD"),
        ):
            (self.paths["/run/secrets"] / name).write_text(env[variable])

    def map(self, value: str) -> str:
        value = value.replace("http://influxdb:8086", self.influx_url)
        for inside, outside in self.paths.items():
            if value.startswith(inside):
                return str(outside) + value[len(inside) :]
        return value

    def environment(self, service: dict, **extra: str) -> dict[str, str]:
        """What the image sets (collector/Dockerfile's ENV) and compose adds, with the paths mapped."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(OWN_PREFIXES)}
        env.update({key: self.map(value) for key, value in image_environment().items()})
        env.update(
            {key: self.map(value) for key, value in service["environment"].items() if value is not None}
        )
        env.update(extra)
        return env


def image_environment() -> dict[str, str]:
    """The collector image's own variables: every `ENV NAME=value ...` of its Dockerfile."""
    dockerfile = (ROOT / "collector" / "Dockerfile").read_text()
    return dict(
        pair.split("=", 1)
        for line in dockerfile.splitlines()
        if line.startswith("ENV ")
        for pair in line.split()[1:]
    )


def read_secret(path: str) -> str:
    return Path(path).read_text().strip()


def onboard_as_the_image_does(server: InfluxServer, env: dict[str, str]) -> None:
    """DOCKER_INFLUXDB_INIT_MODE=setup: the user, organisation, first bucket and admin token, from the files."""
    server.onboard(
        username=env["DOCKER_INFLUXDB_INIT_USERNAME"],
        password=read_secret(env["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"]),
        org=env["DOCKER_INFLUXDB_INIT_ORG"],
        bucket=env["DOCKER_INFLUXDB_INIT_BUCKET"],
        retentionPeriodSeconds=int(env["DOCKER_INFLUXDB_INIT_RETENTION"].removesuffix("d")) * 86400,
        token=read_secret(env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"]),
    )


def portfolio_for_the_replay(clone: Path, replay: BitstampReplay, now_s: int) -> None:
    """The example portfolio.yml make setup copied, with the replay as Bitstamp and a recent history."""
    config = yaml.safe_load((clone / "portfolio.yml").read_text())
    config["exchanges"] = {
        "bitstamp": {"pairs": list(PAIRS), "ws_url": replay.ws_url, "rest_url": replay.rest_url}
    }
    config["backfill"]["since"] = time.strftime("%Y-%m-%d", time.gmtime(now_s - 2 * 86400))
    first = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(now_s - 36 * 3600))  # the 24 h change has a start
    recent = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(now_s - 1800))  # an annotation in the 1 h view
    config["holdings"] = {
        "BTC": [
            {"date": first, "kind": "buy", "quantity": "0.5", "price": "900", "fee": "1"},
            {"date": recent, "kind": "buy", "quantity": "0.1", "price": "1000", "fee": "1"},
        ],
        "ETH": "2",
    }
    (clone / "portfolio.yml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("stack")
    clone = fresh_clone(work)
    make_setup(clone)
    env = env_file(clone)
    model = compose(clone, "config", "--format", "json")
    assert model.returncode == 0, model.stderr
    services = json.loads(model.stdout)["services"]

    server = InfluxServer(work / "influxd")  # runs with influxdb/config.yml, as the container does
    server.start()
    logs: dict[str, str] = {}
    try:
        containers = Containers(clone, work, server.url, env)
        onboard_as_the_image_does(server, containers.environment(services["influxdb"]))

        bootstrap = services["bootstrap"]
        command = [
            arg for arg in bootstrap["command"] if not arg.startswith(("--owner", "collector=", "grafana="))
        ]
        command += ["--secrets-dir", containers.map("/run/hodlboard")]
        run = cli(containers.environment(bootstrap), *command, cwd=clone)
        logs["bootstrap"] = run.stdout + run.stderr
        assert run.returncode == 0, logs["bootstrap"]

        with BitstampReplay() as replay:
            now_s = int(time.time())
            replay.candle_start_s = now_s - 2 * 86400
            portfolio_for_the_replay(clone, replay, now_s)
            collector_env = containers.environment(services["collector"])
            health = {}
            with run_process(collector_env, clone / "portfolio.yml") as process:
                for pair in PAIRS:
                    replay.wait_subscribed(replay.symbol(pair))
                publish_the_last_50_minutes(replay, int(time.time()))
                org = env["INFLUXDB_V2_ORG"]
                with InfluxDBClient(
                    server.url, read_secret(containers.map("/run/hodlboard/collector.token"))
                ) as db:

                    def stored() -> bool:
                        return (
                            count_points(db, org, "trade", "crypto_live") >= TRADES * len(PAIRS)
                            and count_points(db, org, "candle", "crypto_history") > 0
                            and count_points(db, org, "ticker") > 0
                            and count_points(db, org, "portfolio", "crypto_live") > 0
                            and count_points(db, org, "portfolio", "crypto_history") > 0
                            and health_samples(db, org) >= 3  # rates need two windows of the health panels
                        )

                    wait_for(stored, timeout=120, what="trades, candles, tickers and valuation stored")
                check = cli(collector_env, *healthcheck_command(services), cwd=clone)
                health["healthcheck"] = (check.returncode, check.stdout + check.stderr)
                _, logs["collector"] = sigterm(process)
        grafana = services["grafana"]
        datasource = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yml").read_text())[
            "datasources"
        ][0]
        token_file = datasource["secureJsonData"]["token"].removeprefix("$__file{").removesuffix("}")
        url = datasource["url"].replace("$INFLUXDB_V2_URL", grafana["environment"]["INFLUXDB_V2_URL"])
        yield {
            "env": env,
            "health": health,
            "logs": logs,
            "server": server,
            "grafana": Stack(
                containers.map(url),
                grafana["environment"]["INFLUXDB_V2_ORG"],
                read_secret(containers.map(token_file)),
                int(time.time()) + 1,
                DASHBOARDS,
            ),
            "tokens": [read_secret(path) for path in Path(containers.map("/run/hodlboard")).glob("*.token")],
        }
    finally:
        server.remove()


def publish_the_last_50_minutes(replay: BitstampReplay, now_s: int) -> None:
    """Trades spread over the last 50 minutes, oldest first: the velocity panels compare windows of them."""
    for i in range(TRADES):
        at_us = (now_s - (TRADES - 1 - i) * 100) * 1_000_000
        for n, pair in enumerate(PAIRS):
            replay.publish(replay.symbol(pair), f"{1000 + 10 * n + i % 7}.{i:02d}", microtimestamp=at_us + n)


def health_samples(client: InfluxDBClient, org: str) -> int:
    query = flux_query(
        "from(bucket: {bucket}) |> range(start: -1h) "
        '|> filter(fn: (r) => r._measurement == "collector" and r._field == "trades" and r.exchange == "bitstamp")',
        bucket="crypto_live",
    )
    return sum(len(table.records) for table in client.query_api().query(query, org=org))


def healthcheck_command(services: dict) -> list[str]:
    """The collector container's healthcheck command, without Docker's CMD prefix and the executable."""
    test = services["collector"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "collector"]
    return test[2:]


def test_the_collector_is_healthy_while_it_runs(stack):
    code, output = stack["health"]["healthcheck"]
    assert code == 0 and output.strip() == "healthy", output


@pytest.mark.parametrize("target", TARGETS, ids=[target.id for target in TARGETS])
def test_every_dashboard_query_is_answered_with_the_grafana_token_file(stack, target):
    for outcome in stack["grafana"].run_all(target, "1h"):
        assert outcome.result.error is None, f"{outcome.result.error}\n{outcome.flux}"
        if target.id not in MAY_BE_EMPTY:
            assert outcome.result.rows > 0, f"no rows (Grafana shows No data)\n{outcome.flux}"


def test_the_grafana_token_reads_but_cannot_write(stack):
    grafana = stack["grafana"]
    with InfluxDBClient(grafana.url, grafana.token, org=grafana.org) as client:
        with pytest.raises(Exception) as refused:
            client.write_api(write_options=SYNCHRONOUS).write("crypto_live", record="x value=1")
        assert getattr(refused.value, "status", None) in (401, 403, 404)


def test_no_token_or_password_in_any_log(stack):
    secrets = [
        *stack["tokens"],
        *(
            stack["env"][name]
            for name in ("INFLUXDB_ADMIN_TOKEN", "INFLUXDB_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
        ),
    ]
    assert len(stack["tokens"]) == 2 and all(len(secret) >= 32 for secret in secrets)
    logs = {**stack["logs"], "influxd": stack["server"].log_path.read_text(errors="replace")}
    for name, text in logs.items():
        assert text, f"{name} logged nothing: the check would prove nothing"
        for secret in secrets:
            assert secret not in text, f"a secret in the {name} log"
