"""Hot reload of portfolio.yml, and the command line: run under SIGTERM, backfill, ticker, check-config."""

import logging
import os
import subprocess
import sys
import time

from collector.config import Pair
from tests.influxd import ROOT
from tests.integration.harness import collector_env as _env
from tests.integration.harness import running, stored_trades, wait_for, write_config


def test_hot_reload_adds_and_removes_pairs_and_refuses_a_bad_edit(
    collector_settings, admin_client, replay, tmp_path, caplog
):
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, pairs=("BTC-USD",))
    org = collector_settings.org
    with running(path, config, collector_settings, tmp_path / "spool"):
        replay.wait_subscribed("btcusd")

        write_config(path, replay, pairs=("BTC-USD", "ETH-USD"))
        replay.wait_subscribed("ethusd")
        eth = replay.publish("ethusd", "2345.67")
        wait_for(lambda: stored_trades(admin_client, org, "ETH-USD"), what="ETH trade")
        wait_for(
            lambda: any("/ohlc/ethusd/" in p for p in replay.http.requests), what="backfill of the new pair"
        )

        with caplog.at_level(logging.ERROR, logger="collector.service"):
            path.write_text(
                path.read_text().replace("pairs: [BTC-USD, ETH-USD]", "pairs: [BTC-USD, eth_usd]")
            )
            wait_for(lambda: "keeping the previous one" in caplog.text, what="refusal")
        assert "pairs[1]: expected a pair written BASE-QUOTE" in caplog.text
        assert replay.subscribed("ethusd") == 1  # the previous configuration still runs

        write_config(path, replay, pairs=("ETH-USD",))
        wait_for(lambda: replay.subscribed("btcusd") == 0, what="unsubscribe")
        assert {"event": "bts:unsubscribe", "data": {"channel": "live_trades_btcusd"}} in replay.received
        replay.publish("btcusd", "1.00")  # no longer tracked: must not be stored
        eth2 = replay.publish("ethusd", "2345.68")
        wait_for(lambda: len(stored_trades(admin_client, org, "ETH-USD")) == 2, what="second ETH trade")
    assert stored_trades(admin_client, org, "BTC-USD") == []
    assert sorted(r["trade_id"] for r in stored_trades(admin_client, org, "ETH-USD")) == sorted(
        [str(eth.id), str(eth2.id)]
    )


def _cli(env, *args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_backfill_and_ticker(collector_settings, replay, tmp_path):
    write_config(tmp_path / "portfolio.yml", replay, pairs=("BTC-USD", "ETH-USD"))
    env = _env(collector_settings, tmp_path)
    replay.candle_start_s = int(time.time()) // 3600 * 3600 - 48 * 3600

    result = _cli(env, "backfill", "--pair", "btc-usd", "--since", "2024-01-01", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bitstamp BTC-USD: ok, 4" in result.stdout  # 47 or 48 closed candles in 1 request
    assert "ETH-USD" not in result.stdout

    result = _cli(env, "ticker", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bitstamp: 2 tickers, 2 assets written" in result.stdout


def test_cli_help_and_check_config(replay, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")} | {"PYTHONPATH": str(ROOT)}
    for command in ("run", "backfill", "ticker", "check-config", "bootstrap"):
        result = _cli(env, command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "usage: collector " + command in result.stdout
    assert "--pair P" in _cli(env, "backfill", "--help", cwd=tmp_path).stdout

    write_config(tmp_path / "portfolio.yml", replay, pairs=("BTC-USD", "XRP-USD"))
    result = _cli(env, "check-config", cwd=tmp_path)
    assert result.returncode == 0
    assert (
        "bitstamp: BTC-USD, XRP-USD" in result.stdout
        and "backfill: 1h candles since 2020-01-01" in result.stdout
    )

    (tmp_path / "portfolio.yml").write_text("exchanges:\n  bitstamp:\n    pairs: BTC-USD\n")
    result = _cli(env, "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "collector check-config: portfolio.yml:3: exchanges.bitstamp.pairs: "
        "expected a non-empty list of pairs such as [BTC-USD, ETH-USD], got 'BTC-USD'"
    )
    assert _cli(env, "run", cwd=tmp_path).returncode == 2
    assert _cli(env, "backfill", "--since", "yesterday", cwd=tmp_path).returncode == 2


def test_a_candle_interval_the_exchange_does_not_offer_is_refused_by_check_config_and_reload(
    collector_settings, replay, tmp_path, caplog
):
    path = tmp_path / "portfolio.yml"
    write_config(path, replay, interval="10m")  # Bitstamp has 5m and 15m, not 10m
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")} | {"PYTHONPATH": str(ROOT)}
    result = _cli(env, "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "collector check-config: portfolio.yml:7: backfill.interval: expected a candle interval bitstamp "
        "offers (1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d, 3d), got 10m"
    )

    config = write_config(path, replay, interval="15m")
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        replay.wait_subscribed("btcusd")
        with caplog.at_level(logging.ERROR, logger="collector.service"):
            write_config(path, replay, pairs=("BTC-USD", "ETH-USD"), interval="10m")
            wait_for(lambda: "keeping the previous one" in caplog.text, what="refusal")
        assert "backfill.interval: expected a candle interval bitstamp offers" in caplog.text
        assert runner.collector.config.backfill.interval_s == 900
        assert runner.collector.config.exchanges["bitstamp"].pairs == (Pair("BTC", "USD"),)
        assert replay.subscribed("ethusd") == 0
