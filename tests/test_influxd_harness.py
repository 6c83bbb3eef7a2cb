"""The test harness itself: no real server means a loud failure."""

import json
import urllib.request

import pytest
import yaml

from tests.influxd import CONFIG_DIR, FLAG_OVERRIDES, InfluxServer


def test_missing_influxd_is_an_error_not_a_skip(tmp_path):
    with pytest.raises(RuntimeError, match="make influxd"):
        InfluxServer(tmp_path, binary=tmp_path / "no-influxd")


def test_influxd_runs_with_the_config_file_the_container_mounts(influx_server):
    """influxdb/config.yml (docker-compose.yml mounts it): every setting in it is what the running server uses."""
    wanted = yaml.safe_load((CONFIG_DIR / "config.yml").read_text())
    request = urllib.request.Request(
        f"{influx_server.url}/api/v2/config", headers={"Authorization": f"Token {influx_server.admin_token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        running = json.load(response)["config"]
    assert len(wanted) >= 8
    for key, value in wanted.items():
        if key not in FLAG_OVERRIDES:
            assert running.get(key) == value, (
                f"{key}: {running.get(key)!r} in the server, {value!r} in the file"
            )
