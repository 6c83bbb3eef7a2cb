"""The container's healthcheck judges fresh data by the feeds' connections, not by trades: a quiet pair whose
connection answers is healthy, a connection that stopped answering is not."""

from dataclasses import replace

from collector import heartbeat
from collector.exchanges.bitstamp import Bitstamp
from tests.integration.harness import FAST, running, wait_for, write_config

FRESH_S = 1.5  # FRESH_S of the judgement, shortened so that minutes of quiet take seconds
HEARTBEAT_S = 0.2  # Bitstamp's application heartbeat (10 s), shortened the same way


def judged(alive) -> str | None:
    return heartbeat.judge(heartbeat.read_beat(alive))


def test_a_quiet_pair_on_a_live_connection_is_healthy_and_a_dead_connection_is_not(
    collector_settings, replay, tmp_path, monkeypatch
):
    monkeypatch.setattr(heartbeat, "FRESH_S", FRESH_S)
    monkeypatch.setattr(Bitstamp, "heartbeat_s", HEARTBEAT_S)
    alive = tmp_path / "alive"
    config = write_config(tmp_path / "portfolio.yml", replay)
    options = replace(FAST, alive_file=alive)
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", options):
        replay.wait_subscribed(replay.symbol("BTC-USD"))
        started = heartbeat.read_beat(alive).time
        # no trade at all for several times FRESH_S, the connection answering its heartbeats meanwhile
        wait_for(lambda: heartbeat.read_beat(alive).time > started + 3 * FRESH_S, what="a quiet spell")
        assert judged(alive) is None, "a quiet pair is no problem while its connection answers"
        replay.freeze()  # open, but no message and no pong any more
        problem = wait_for(
            lambda: judged(alive), timeout=10, what="the healthcheck to see the dead connection"
        )
        assert problem.startswith("bitstamp: no message or pong on its connection for"), problem
