import os
import uuid

import pytest
from influxdb_client import InfluxDBClient

from collector.influx_settings import InfluxSettings
from tests.influxd import InfluxServer


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory):
    """The real influxd for this test session; a missing binary is an error, never a skip."""
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    server.onboard()
    yield server
    server.remove()


@pytest.fixture
def admin_client(influx_server):
    with InfluxDBClient(url=influx_server.url, token=influx_server.admin_token, timeout=10_000) as client:
        yield client


@pytest.fixture
def influx(influx_server, admin_client):
    """Settings for an organisation of this test's own, so tests never see each other's buckets or tokens."""
    org = admin_client.organizations_api().create_organization(name=f"test-{uuid.uuid4().hex[:12]}")
    yield InfluxSettings(url=influx_server.url, org=org.name, token=influx_server.admin_token)
    admin_client.organizations_api().delete_organization(org.id)


@pytest.fixture
def influx_env(influx):
    """The process environment a collector command would see, pointing at this test's organisation."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}
    env.update(INFLUXDB_V2_URL=influx.url, INFLUXDB_V2_ORG=influx.org, INFLUXDB_V2_TOKEN=influx.token)
    return env


@pytest.fixture
def collector_settings(influx, tmp_path):
    """Buckets bootstrapped in this test's organisation; the collector writes with its own scoped token."""
    from collector.bootstrap import Bootstrap
    from collector.config import Buckets

    secrets_dir = tmp_path / "secrets"
    Bootstrap(influx, Buckets(), secrets_dir, report=lambda line: None).run()
    token = (secrets_dir / "collector.token").read_text()
    return InfluxSettings(url=influx.url, org=influx.org, token=token)


@pytest.fixture
def outage(influx_server):
    """Stops the session's influxd on demand and always brings it back (same data, same port)."""
    yield influx_server
    if influx_server.process is None:
        influx_server.start()


@pytest.fixture
def replay():
    from tests.replay.bitstamp import BitstampReplay

    with BitstampReplay() as server:
        yield server


@pytest.fixture
def coinbase_replay():
    from tests.replay.coinbase import CoinbaseReplay

    with CoinbaseReplay() as server:
        yield server
