"""Small pieces with exact behaviour: point identity, rate limit, progress bar, retry headers."""

import io
from decimal import Decimal

from collector.backfill import Progress
from collector.config import Pair
from collector.exchanges.base import RateLimit
from collector.http import TokenBucket
from collector.records import Trade
from collector.retry import retry_after_seconds
from collector.storage.points import interval_name, trade_point, trade_time_ns


def trade(trade_id: str, time_s: int = 1_700_000_000, price: str = "1.5") -> Trade:
    return Trade("bitstamp", Pair("BTC", "USD"), trade_id, Decimal(price), Decimal("2"), "buy", time_s)


def test_trade_time_is_the_second_plus_an_id_offset():
    assert trade_time_ns(1_700_000_000, "216000477") == 1_700_000_000_216_000_477
    assert trade_time_ns(1_700_000_000, "5") // 1_000_000_000 == 1_700_000_000
    assert trade_time_ns(1, "abc-def") == trade_time_ns(
        1, "abc-def"
    )  # non-numeric ids hash deterministically
    assert trade_time_ns(1, "abc-def") // 1_000_000_000 == 1


def test_consecutive_trades_in_one_second_never_collide():
    times = {trade_time_ns(1_700_000_000, str(300_000_000 + i)) for i in range(100_000)}
    assert len(times) == 100_000


def test_the_same_trade_is_the_same_point_wherever_it_came_from():
    assert trade_point(trade("42")).to_line_protocol() == trade_point(trade("42")).to_line_protocol()
    assert trade_point(trade("42")).to_line_protocol() != trade_point(trade("43")).to_line_protocol()


def test_interval_names():
    assert [interval_name(s) for s in (60, 900, 3600, 14400, 86400, 259200, 45)] == [
        "1m",
        "15m",
        "1h",
        "4h",
        "1d",
        "3d",
        "45s",
    ]


def test_token_bucket_allows_the_limit_then_paces():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(RateLimit(8000, 600), clock=lambda: now[0], sleep=sleep)
    for _ in range(8000):
        bucket.take()
    assert slept == []
    bucket.take()
    assert abs(slept[0] - 600 / 8000) < 1e-9  # one request's worth of refill
    for _ in range(799):
        bucket.take()
    assert abs(now[0] - 60.0) < 1e-6  # 800 more requests take a minute: 8000 per 10 minutes


def test_retry_after_seconds_and_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    terminal = Terminal()
    progress = Progress("bitstamp BTC-USD", terminal)
    progress.update(50, 0, 100, 1234)
    progress.finish()
    assert "50.0%" in terminal.getvalue() and "1234 candles" in terminal.getvalue()
    assert "#" * 15 in terminal.getvalue()

    pipe = io.StringIO()
    Progress("x", pipe).update(50, 0, 100, 1)
    assert pipe.getvalue() == ""
