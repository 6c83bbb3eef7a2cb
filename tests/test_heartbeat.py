"""The healthcheck's judgement of the writer's heartbeat."""

from dataclasses import replace

from collector.heartbeat import (
    DEAD,
    FAILED,
    FRESH_S,
    STALE_S,
    STOPPED,
    STUCK_S,
    Beat,
    judge,
    read_beat,
    write_beat,
)

NOW = 1_800_000_000.0
HEALTHY = Beat(
    pid=1, state="running", time=NOW - 1, progress=NOW - 1, waiting=0, accepted=10, written=10, spooled=0
)


def test_a_running_writer_that_keeps_up_is_healthy():
    assert judge(HEALTHY, NOW) is None
    idle = replace(HEALTHY, progress=NOW - 10 * STUCK_S)  # nothing waiting: a quiet market is no problem
    assert judge(idle, NOW) is None


def test_a_writer_that_failed_gave_up_or_stopped_is_unhealthy_at_once():
    assert judge(replace(HEALTHY, state=FAILED, error="KeyError: 'x'"), NOW) == (
        "the writer failed and is starting over (KeyError: 'x')"
    )
    assert judge(replace(HEALTHY, state=DEAD), NOW) == "the writer failed for good"
    assert judge(replace(HEALTHY, state=STOPPED), NOW) == "the writer has stopped"


def test_a_silent_writer_is_unhealthy():
    assert judge(replace(HEALTHY, time=NOW - STALE_S + 1), NOW) is None
    assert judge(replace(HEALTHY, time=NOW - STALE_S - 1), NOW) == (
        f"the writer has not reported for {STALE_S + 1:.0f} s (dead or hung)"
    )
    assert judge(None, NOW).startswith("no heartbeat from the writer")


def test_points_waiting_with_nothing_written_or_spooled_is_unhealthy():
    stuck = replace(HEALTHY, waiting=250, progress=NOW - STUCK_S - 5)
    assert judge(stuck, NOW) == f"250 points waiting and nothing written or spooled for {STUCK_S + 5:.0f} s"
    assert judge(replace(stuck, progress=NOW - STUCK_S + 5), NOW) is None


def test_the_file_round_trips_and_a_garbled_one_reads_as_none(tmp_path):
    path = tmp_path / "alive"
    write_beat(path, HEALTHY)
    assert read_beat(path) == HEALTHY
    path.write_text("{not json")
    assert read_beat(path) is None
    assert read_beat(tmp_path / "missing") is None


def test_a_feed_whose_connection_is_silent_for_ten_minutes_is_unhealthy_even_with_a_working_writer():
    live = {"bitstamp": NOW - 5, "kraken": NOW - FRESH_S + 1}
    assert judge(replace(HEALTHY, feeds=live), NOW) is None
    assert judge(replace(HEALTHY, feeds={**live, "kraken": NOW - FRESH_S - 5}), NOW) == (
        f"kraken: no message or pong on its connection for {FRESH_S + 5:.0f} s (see the log for why)"
    )
    assert judge(replace(HEALTHY, feeds={}), NOW) is None  # no exchange streams: nothing to judge
