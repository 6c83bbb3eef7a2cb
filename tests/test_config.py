"""portfolio.yml parsing: every error names the file, line and key."""

from pathlib import Path

import pytest

from collector.config import Buckets, Config, Pair, config_path, load_config, parse_config, parse_duration
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
            "p.yml:1: influx: unknown key; expected one of backfill, base_currency, coingecko, cost_basis, exchanges, "
            "holdings, "
            "influxdb, valuation",
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


FULL = """\
base_currency: EUR
exchanges:
  bitstamp:
    pairs: [BTC-EUR, ETH-EUR]
    ws_url: wss://ws.example
    rest_url: https://api.example/v2/
backfill:
  interval: 15m
  every: 6h
  since: 2021-03-04
"""


def test_full_configuration():
    config = parse_config(FULL, "p.yml", known_exchanges={"bitstamp"})
    bitstamp = config.exchanges["bitstamp"]
    assert config.base_currency == "EUR"
    assert bitstamp.pairs == (Pair("BTC", "EUR"), Pair("ETH", "EUR"))
    assert (bitstamp.ws_url, bitstamp.rest_url) == ("wss://ws.example", "https://api.example/v2")
    assert (config.backfill.interval_s, config.backfill.every_s) == (900, 21600)
    assert config.backfill.since.isoformat() == "2021-03-04"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("bitstamp:", "kraken:"), "p.yml:3: exchanges.kraken: unknown key; expected one of bitstamp"),
        (
            ("ETH-EUR]", "eth-eur]"),
            "p.yml:4: exchanges.bitstamp.pairs[1]: expected a pair written BASE-QUOTE",
        ),
        (("ETH-EUR]", "BTC-EUR]"), "p.yml:4: exchanges.bitstamp.pairs[1]: expected each pair once"),
        (
            ("pairs: [BTC-EUR, ETH-EUR]", "pairs: []"),
            "p.yml:4: exchanges.bitstamp.pairs: expected a non-empty list",
        ),
        (("    pairs: [BTC-EUR, ETH-EUR]\n", ""), "p.yml:3: exchanges.bitstamp: expected a 'pairs' list"),
        (
            ("wss://ws.example", "https://ws.example"),
            "p.yml:5: exchanges.bitstamp.ws_url: expected a ws or wss URL",
        ),
        (
            ("https://api.example/v2/", "api.example"),
            "p.yml:6: exchanges.bitstamp.rest_url: expected a http or https",
        ),
        (
            ("interval: 15m", "interval: 15 minutes"),
            "p.yml:8: backfill.interval: expected a duration such as 30m",
        ),
        (("every: 6h", "every: 0h"), "p.yml:9: backfill.every: expected a duration"),
        (
            ("since: 2021-03-04", "since: 04.03.2021"),
            "p.yml:10: backfill.since: expected a date written YYYY-MM-DD",
        ),
        (
            ("since: 2021-03-04", "since: 2021-02-30"),
            "p.yml:10: backfill.since: expected a date written YYYY-MM-DD, got '2021-02-30'",
        ),
        (("base_currency: EUR", "base_currency: eur"), "p.yml:1: base_currency: expected a currency code"),
        (
            ("  every: 6h", "  evry: 6h"),
            "p.yml:9: backfill.evry: unknown key; expected one of every, interval, since",
        ),
    ],
)
def test_bad_lines_are_named(change, message):
    old, new = change
    with pytest.raises(ConfigError) as err:
        parse_config(FULL.replace(old, new), "p.yml", known_exchanges={"bitstamp"})
    assert str(err.value).startswith(message), str(err.value)


def test_durations():
    assert [parse_duration(text) for text in ("10s", "1m", "30m", "1h", "12h", "1d", "1w")] == [
        10,
        60,
        1800,
        3600,
        43200,
        86400,
        604800,
    ]


def test_a_candle_interval_must_be_one_every_configured_exchange_offers():
    steps = {"bitstamp": frozenset({300, 900, 3600})}
    assert parse_config(FULL, "p.yml", {"bitstamp"}, steps).backfill.interval_s == 900
    with pytest.raises(ConfigError) as err:
        parse_config(FULL.replace("interval: 15m", "interval: 10m"), "p.yml", {"bitstamp"}, steps)
    assert str(err.value) == (
        "p.yml:8: backfill.interval: expected a candle interval bitstamp offers (5m, 15m, 1h), got 10m"
    )
    without_interval = FULL.replace("  interval: 15m\n", "")
    with pytest.raises(ConfigError) as err:  # the default (1h) is checked too, at the exchange's line
        parse_config(without_interval, "p.yml", {"bitstamp"}, {"bitstamp": frozenset({300})})
    assert str(err.value).startswith(
        "p.yml:3: exchanges.bitstamp: expected a candle interval bitstamp offers"
    )
