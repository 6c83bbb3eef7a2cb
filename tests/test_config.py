"""portfolio.yml parsing: every error names the file, line and key."""

from pathlib import Path

import pytest

from collector.config import Buckets, Config, config_path, load_config, parse_config
from collector.errors import ConfigError


def test_defaults_when_storage_is_not_configured():
    assert parse_config("", "p.yml").buckets == Buckets("crypto_live", "crypto_history", "crypto_meta")
    assert parse_config("influxdb:\n", "p.yml").buckets == Buckets()


def test_bucket_names_can_be_overridden_one_by_one():
    config = parse_config("influxdb:\n  buckets:\n    meta: reference\n", "p.yml")
    assert config.buckets == Buckets(meta="reference")


def test_example_file_is_valid():
    from tests.influxd import ROOT

    assert load_config(ROOT / "portfolio.example.yml").buckets == Buckets()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "influx:\n  x: 1\n",
            "p.yml:1: influx: unknown key; expected one of backfill, base_currency, exchanges, influxdb",
        ),
        (
            "# comment\ninfluxdb:\n  buckets:\n    lve: x\n",
            "p.yml:4: influxdb.buckets.lve: unknown key; expected one of history, live, meta",
        ),
        (
            "influxdb:\n  buckets:\n    live: 12\n",
            "p.yml:3: influxdb.buckets.live: expected a bucket name (text, not starting with '_'), got 12",
        ),
        (
            "influxdb:\n  buckets:\n    history: ''\n",
            "p.yml:3: influxdb.buckets.history: expected a bucket name (text, not starting with '_'), got ''",
        ),
        (
            "influxdb:\n  buckets: [a, b]\n",
            "p.yml:2: influxdb.buckets: expected a mapping of keys, got ['a', 'b']",
        ),
        ("- a\n", "p.yml:1: (top level): expected a mapping of keys, got ['a']"),
        ("influxdb: {\n", "p.yml:2: not valid YAML"),
    ],
)
def test_errors_name_line_and_key(text, message):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "p.yml")
    assert str(err.value).startswith(message)


def test_named_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.yml", required=True)
    assert load_config(tmp_path / "missing.yml", required=False) == Config()


def test_config_path_precedence():
    assert config_path("a.yml", {"HODLBOARD_CONFIG": "b.yml"}) == (Path("a.yml"), True)
    assert config_path(None, {"HODLBOARD_CONFIG": "b.yml"}) == (Path("b.yml"), True)
    assert config_path(None, {}) == (Path("portfolio.yml"), False)
