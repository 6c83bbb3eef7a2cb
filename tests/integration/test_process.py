"""`collector run` as Docker runs it: SIGTERM while InfluxDB is down or hung, and a second process on its spool."""

import time

from tests.integration.harness import (
    cli,
    collector_env,
    publish_accepted,
    quiet,
    run_process,
    running,
    sigterm,
    spooled_trade_ids,
    stored_rows,
    stored_trades,
    wait_for,
    write_config,
)
from tests.replay.bitstamp import SAMPLE_TICKER, synthetic_candle
from tests.replay.hanging import HangingServer

HOUR = 3600


def replayed_on_next_start(tmp_path, replay, settings, admin_client, published) -> None:
    """A collector started on the same spool with InfluxDB answering writes every spooled trade, once."""
    config = write_config(tmp_path / "portfolio.yml", replay)
    with running(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool") as runner:
        wait_for(
            lambda: len(stored_trades(admin_client, settings.org, "BTC-USD")) >= len(published),
            timeout=30,
            what="the spool replayed",
        )
        wait_for(lambda: not runner.collector.writer.spool, what="an empty spool")
    rows = stored_trades(admin_client, settings.org, "BTC-USD")
    assert sorted(r["trade_id"] for r in rows) == sorted(str(t.id) for t in published)


def test_sigterm_while_influxdb_is_down_exits_in_time_and_spools_everything(
    collector_settings, admin_client, replay, tmp_path, outage
):
    quiet(replay)
    write_config(tmp_path / "portfolio.yml", replay)
    alive = tmp_path / "alive"
    env = collector_env(collector_settings, tmp_path, HODLBOARD_ALIVE_FILE=str(alive))
    with run_process(env, tmp_path / "portfolio.yml") as process:
        replay.wait_subscribed("btcusd", timeout=30)
        outage.stop()
        published = publish_accepted(replay, alive, "21000")
        elapsed, output = sigterm(process)
    assert process.returncode == 0, output
    assert elapsed < 10, output
    assert sorted(spooled_trade_ids(tmp_path / "spool")) == sorted(str(t.id) for t in published)

    outage.start()
    replayed_on_next_start(tmp_path, replay, collector_settings, admin_client, published)


def test_sigterm_while_influxdb_hangs_exits_in_time_and_spools_everything(
    collector_settings, admin_client, replay, tmp_path
):
    quiet(replay)
    write_config(tmp_path / "portfolio.yml", replay)
    alive = tmp_path / "alive"
    with HangingServer() as hung:
        env = collector_env(
            collector_settings, tmp_path, HODLBOARD_ALIVE_FILE=str(alive), INFLUXDB_V2_URL=hung.url
        )
        with run_process(env, tmp_path / "portfolio.yml") as process:
            replay.wait_subscribed("btcusd", timeout=30)
            published = publish_accepted(replay, alive, "22000")
            wait_for(lambda: b"trade_id=" in hung.received(), what="a write hanging on the server")
            elapsed, output = sigterm(process)
    assert process.returncode == 0, output
    assert elapsed < 10, output
    assert sorted(spooled_trade_ids(tmp_path / "spool")) == sorted(str(t.id) for t in published)

    replayed_on_next_start(tmp_path, replay, collector_settings, admin_client, published)


def test_a_one_shot_command_beside_run_gets_its_own_spool_and_every_point_arrives_once(
    collector_settings, admin_client, replay, tmp_path, outage
):
    replay.candle_start_s = int(time.time()) // HOUR * HOUR - 48 * HOUR
    run_dir, shot_dir = tmp_path / "run", tmp_path / "shot"
    run_dir.mkdir()
    shot_dir.mkdir()
    write_config(run_dir / "portfolio.yml", replay, pairs=("BTC-USD",))
    write_config(shot_dir / "portfolio.yml", replay, pairs=("ETH-USD",))  # its points come from it alone
    env = collector_env(collector_settings, tmp_path, HODLBOARD_ALIVE_FILE=str(tmp_path / "alive"))
    spool = tmp_path / "spool"
    org = collector_settings.org

    outage.stop()
    with run_process(env, run_dir / "portfolio.yml") as process:
        replay.wait_subscribed("btcusd", timeout=30)
        published = [replay.publish("btcusd", f"23000.{i:02d}") for i in range(10)]
        wait_for(lambda: len(spooled_trade_ids(spool)) >= 10, what="run spooling its trades")

        started = time.time()
        shots = [
            cli(env, command, "--config", str(shot_dir / "portfolio.yml"), cwd=shot_dir)
            for command in ("backfill", "ticker")
        ]
        finished = time.time()
        taken = f"spool {spool} is in use by another collector process (pid {process.pid}); this process spools to"
        for result in shots:
            assert result.returncode == 0, result.stderr
            assert f"{taken} {spool}/guests/" in result.stderr
            assert "; the collector that owns the spool replays them" in result.stderr  # InfluxDB is down

        # run keeps spooling next to what the one-shot commands left: no name may collide
        published += [replay.publish("btcusd", f"23001.{i:02d}") for i in range(10)]
        wait_for(lambda: len(spooled_trade_ids(spool)) >= 20, what="run spooling more trades")
        assert sorted(spooled_trade_ids(spool)) == sorted(str(t.id) for t in published)  # each once on disk

        outage.start()
        wait_for(lambda: not list(spool.rglob("*.lp")), timeout=60, what="every spool replayed")
        elapsed, output = sigterm(process)
    assert process.returncode == 0, output

    trades = stored_trades(admin_client, org, "BTC-USD")
    assert sorted(r["trade_id"] for r in trades) == sorted(str(t.id) for t in published)
    candles = stored_rows(admin_client, org, "crypto_history", "candle", "ETH-USD")
    opens = [int(row["_time"].timestamp()) for row in candles]
    last_closed = {started // HOUR * HOUR - HOUR, finished // HOUR * HOUR - HOUR}
    assert opens == list(range(replay.candle_start_s, opens[-1] + 1, HOUR)) and opens[-1] in last_closed
    for row, open_s in zip(candles, opens, strict=True):
        assert row["close"] == float(synthetic_candle("ethusd", open_s)["close"])
    tickers = stored_rows(admin_client, org, "crypto_meta", "ticker", "ETH-USD")
    assert [row["last"] for row in tickers] == [float(SAMPLE_TICKER["last"])]
    assert not list((spool / "guests").iterdir())
