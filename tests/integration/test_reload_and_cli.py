"""Hot reload of portfolio.yml, and the command line: run under SIGTERM, backfill, ticker, check-config."""

import logging
import os
import time

import collector.service
from collector.config import Pair
from tests.influxd import ROOT
from tests.integration.harness import (
    cli,
    collector_env,
    publish_accepted,
    quiet,
    run_process,
    running,
    sigterm,
    stored_rows,
    stored_trades,
    wait_for,
    write_config,
)
from tests.replay.bitstamp import SAMPLE_TICKER, synthetic_candle

HOUR = 3600


def test_hot_reload_adds_and_removes_pairs_and_refuses_a_bad_edit(
    collector_settings, admin_client, replay, tmp_path, caplog
):
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, pairs=("BTC-USD",))
    org = collector_settings.org
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
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
        # the previous configuration still runs (waited for: a watchdog reconnect on a loaded machine may be
        # between its unsubscribe and resubscribe at this instant)
        assert runner.collector.config.exchanges["bitstamp"].pairs == (Pair("BTC", "USD"), Pair("ETH", "USD"))
        replay.wait_subscribed("ethusd")

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


def test_run_stops_cleanly_on_sigterm_within_ten_seconds(collector_settings, admin_client, replay, tmp_path):
    quiet(replay)
    write_config(tmp_path / "portfolio.yml", replay)
    alive = tmp_path / "alive"
    env = collector_env(collector_settings, tmp_path, HODLBOARD_ALIVE_FILE=str(alive))
    with run_process(env, tmp_path / "portfolio.yml") as process:
        replay.wait_subscribed("btcusd", timeout=30)
        published = publish_accepted(replay, alive, "20000")  # accepted, maybe not yet written
        elapsed, output = sigterm(process)
    assert process.returncode == 0, output
    assert elapsed < 10
    assert "Traceback" not in output
    rows = stored_trades(admin_client, collector_settings.org, "BTC-USD")
    assert sorted(r["trade_id"] for r in rows) == sorted(str(t.id) for t in published)
    assert not list((tmp_path / "spool").rglob("*.lp"))  # written, not left for later


def test_cli_backfill_and_ticker(collector_settings, admin_client, replay, tmp_path):
    write_config(tmp_path / "portfolio.yml", replay, pairs=("BTC-USD", "ETH-USD"))
    env = collector_env(collector_settings, tmp_path)
    org = collector_settings.org
    replay.candle_start_s = int(time.time()) // HOUR * HOUR - 48 * HOUR

    started = time.time()
    result = cli(env, "backfill", "--pair", "btc-usd", "--since", "2024-01-01", cwd=tmp_path)
    finished = time.time()
    assert result.returncode == 0, result.stderr
    candles = stored_rows(admin_client, org, "crypto_history", "candle", "BTC-USD")
    opens = [int(row["_time"].timestamp()) for row in candles]
    assert opens == list(range(replay.candle_start_s, opens[-1] + 1, HOUR))
    assert opens[-1] in {started // HOUR * HOUR - HOUR, finished // HOUR * HOUR - HOUR}  # the last closed
    for row, open_s in zip(candles, opens, strict=True):
        expected = synthetic_candle("btcusd", open_s)
        assert [row[name] for name in ("open", "high", "low", "close", "volume")] == [
            float(expected[name]) for name in ("open", "high", "low", "close", "volume")
        ]
    assert stored_rows(admin_client, org, "crypto_history", "candle", "ETH-USD") == []
    pages = sum("/ohlc/btcusd/" in path for path in replay.http.requests)
    assert result.stdout == f"bitstamp BTC-USD: ok, {len(candles)} candles in {pages} requests\n"

    result = cli(env, "ticker", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "bitstamp: 2 tickers, 2 assets written\n"
    for pair in ("BTC-USD", "ETH-USD"):
        (ticker,) = stored_rows(admin_client, org, "crypto_meta", "ticker", pair)
        assert [ticker[name] for name in ("last", "bid", "ask", "high", "low", "volume", "vwap")] == [
            float(SAMPLE_TICKER[name]) for name in ("last", "bid", "ask", "high", "low", "volume", "vwap")
        ]
    assets = stored_assets(admin_client, org)
    assert {row["symbol"]: row["name"] for row in assets} == {"BTC": "Bitcoin", "USD": "US dollar"}
    assert not list((tmp_path / "spool").rglob("*.lp"))


def stored_assets(client, org) -> list[dict]:
    query = """
from(bucket: "crypto_meta")
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "asset")
  |> pivot(rowKey: ["_time", "symbol"], columnKey: ["_field"], valueColumn: "_value")
"""
    return [record.values for table in client.query_api().query(query, org=org) for record in table.records]


def test_cli_help_and_check_config(replay, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")} | {"PYTHONPATH": str(ROOT)}
    for command in ("run", "backfill", "ticker", "check-config", "bootstrap", "healthcheck"):
        result = cli(env, command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "usage: collector " + command in result.stdout
    assert "--pair P" in cli(env, "backfill", "--help", cwd=tmp_path).stdout

    write_config(tmp_path / "portfolio.yml", replay, pairs=("BTC-USD", "XRP-USD"))
    result = cli(env, "check-config", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "portfolio.yml: ok",
        "  base currency: USD",
        "  bitstamp: BTC-USD, XRP-USD",
        "  backfill: 1h candles since 2020-01-01, every 12h",
        "  buckets: live=crypto_live, history=crypto_history, meta=crypto_meta",
        "  holdings: none (list them under 'holdings:' to value your portfolio; see portfolio.example.yml)",
    ]

    (tmp_path / "portfolio.yml").write_text("exchanges:\n  bitstamp:\n    pairs: BTC-USD\n")
    result = cli(env, "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "collector check-config: portfolio.yml:3: exchanges.bitstamp.pairs: "
        "expected a non-empty list of pairs such as [BTC-USD, ETH-USD], got 'BTC-USD'"
    )
    assert cli(env, "run", cwd=tmp_path).returncode == 2
    assert cli(env, "backfill", "--since", "yesterday", cwd=tmp_path).returncode == 2


def test_a_candle_interval_the_exchange_does_not_offer_is_refused_by_check_config_and_reload(
    collector_settings, replay, tmp_path, caplog
):
    path = tmp_path / "portfolio.yml"
    write_config(path, replay, interval="10m")  # Bitstamp has 5m and 15m, not 10m
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")} | {"PYTHONPATH": str(ROOT)}
    result = cli(env, "check-config", cwd=tmp_path)
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


def test_an_unexpected_error_while_reloading_keeps_the_watcher_alive(
    collector_settings, replay, tmp_path, caplog, monkeypatch
):
    """A bug in loading or applying an edit is logged with its traceback; hot reload keeps working for the next."""
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, pairs=("BTC-USD",))
    real_load = collector.service.load_checked_config
    failures = iter([ArithmeticError("a bug")])

    def load_once_broken(config_path):
        for failure in failures:
            raise failure
        return real_load(config_path)

    monkeypatch.setattr(collector.service, "load_checked_config", load_once_broken)
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        replay.wait_subscribed("btcusd")
        with caplog.at_level(logging.ERROR, logger="collector.service"):
            write_config(path, replay, pairs=("BTC-USD", "LTC-USD"))
            wait_for(lambda: "unexpected error" in caplog.text, what="the failed reload logged")
        assert "ArithmeticError: a bug" in caplog.text  # with its traceback
        assert runner.collector.config.exchanges["bitstamp"].pairs == (Pair("BTC", "USD"),)
        write_config(path, replay, pairs=("BTC-USD", "ETH-USD"))  # the next edit still applies
        replay.wait_subscribed("ethusd")
        assert runner.collector.config.exchanges["bitstamp"].pairs == (Pair("BTC", "USD"), Pair("ETH", "USD"))
