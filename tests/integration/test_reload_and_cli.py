"""Hot reload of portfolio.yml, and the command line: run under SIGTERM, backfill, ticker, check-config."""

import logging
import os
import signal
import subprocess
import sys
import time

from tests.influxd import ROOT
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


def _env(settings, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "HODLBOARD_"))}
    env.update(
        INFLUXDB_V2_URL=settings.url,
        INFLUXDB_V2_ORG=settings.org,
        INFLUXDB_V2_TOKEN=settings.token,
        HODLBOARD_SPOOL_DIR=str(tmp_path / "spool"),
        PYTHONPATH=str(ROOT),
    )
    return env


def test_run_stops_cleanly_on_sigterm_within_ten_seconds(collector_settings, admin_client, replay, tmp_path):
    write_config(tmp_path / "portfolio.yml", replay)
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(tmp_path / "portfolio.yml")],
        env=_env(collector_settings, tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        replay.wait_subscribed("btcusd", timeout=30)
        published = [replay.publish("btcusd", f"20000.{i:02d}") for i in range(10)]
        time.sleep(0.2)  # received, maybe not yet written: SIGTERM must flush them
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert elapsed < 10
    assert "Traceback" not in output
    rows = stored_trades(admin_client, collector_settings.org, "BTC-USD")
    assert sorted(r["trade_id"] for r in rows) == sorted(str(t.id) for t in published)


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
