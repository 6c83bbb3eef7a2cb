"""The test harness itself: no real server means a loud failure."""

import pytest

from tests.influxd import InfluxServer


def test_missing_influxd_is_an_error_not_a_skip(tmp_path):
    with pytest.raises(RuntimeError, match="make influxd"):
        InfluxServer(tmp_path, binary=tmp_path / "no-influxd")
