"""Small pieces with exact behaviour: point identity, rate limit, progress bar, retry headers."""

import io
import threading
import time

import pytest

from collector.backfill import Progress
from collector.config import ExchangeConfig, Pair
from collector.exchanges.base import RateLimit, load_json
from collector.exchanges.bitstamp import Bitstamp
from collector.http import CallWindow
from collector.retry import Backoff, retry_after_seconds, retry_wait
from collector.stop import Stopped, StopSignal
from collector.storage.points import interval_name, to_line

BTC = Pair("BTC", "USD")


class CannedHttp:
    """An HTTP answer as the exchange sent it, through the same JSON loading as a real HttpClient."""

    def __init__(self, body: str):
        self.body = body

    def get_json(self, url, params=None):
        return load_json(self.body)


# The same trades as the websocket and REST give them: equal values in different spellings (float and
# string numbers, trailing zeros, scientific notation, a side as int or string, real microseconds).
SAME_TRADES = [
    (
        '{"data":{"id":216000477,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000",'
        '"price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596000",'
        '"buy_order_id":1443875737346049,"sell_order_id":1443875731320832},'
        '"channel":"live_trades_btcusd","event":"trade"}',
        {"date": "1641343699", "tid": "216000477", "price": "3805.44", "amount": "0.0792", "type": "0"},
    ),
    (
        '{"data":{"id":101164279,"timestamp":"1574951140","amount":"1E-8","amount_str":"1E-8",'
        '"price":"7463.00","price_str":"7463.00","type":1,"microtimestamp":"1574951140999999"},'
        '"channel":"live_trades_btcusd","event":"trade"}',
        {"date": 1574951140, "tid": 101164279, "price": "7463", "amount": "0.00000001", "type": 1},
    ),
]


def test_the_same_trade_is_the_same_point_from_the_websocket_and_from_rest():
    import json

    adapter = Bitstamp(ExchangeConfig("bitstamp", (BTC,)))
    adapter.subscribe_messages([BTC])
    live = [to_line(trade) for ws, _ in SAME_TRADES for trade in adapter.parse(ws).trades]
    rows = [row for _, row in reversed(SAME_TRADES)]  # REST answers newest first
    page = adapter.recent_trades(CannedHttp(json.dumps(rows)), BTC, since_s=time.time() - 3600)
    assert page.bad_rows == []
    recovered = [to_line(trade) for trade in reversed(page.records)]
    assert len(live) == 2 and recovered == live
    assert live[0] != live[1]


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


def test_call_window_allows_the_budget_then_never_more_in_any_window():
    now = [0.0]
    calls: list[float] = []

    def sleep(seconds):
        now[0] += seconds

    window = CallWindow(RateLimit(8000, 600), clock=lambda: now[0], sleep=sleep)
    for _ in range(8000):
        window.take()
        calls.append(now[0])
    assert now[0] == 0.0  # the whole budget at once
    for _ in range(8800):
        window.take()
        calls.append(now[0])
        now[0] += 0.01  # time passes between calls too
    # a token bucket refilling from full let 8000 more through in the first 10 minutes: twice the budget
    assert all(later - earlier >= 600 for earlier, later in zip(calls, calls[8000:], strict=False))


def test_retry_after_seconds_and_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_a_retry_waits_at_least_the_backoff_and_at_least_retry_after():
    assert retry_wait(Backoff(1.0, 1.0), 0.0) >= 0.5  # "Retry-After: 0" does not skip the backoff
    assert retry_wait(Backoff(1.0, 1.0), None) >= 0.5
    assert retry_wait(Backoff(0.01, 0.01), 3.0) == 3.0  # nor does the backoff shorten what was asked for


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


def test_a_stop_ends_a_blocking_call_and_a_sleep_at_once():
    stop = StopSignal()
    assert stop.call(lambda a, b: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        stop.call(lambda: 1 / 0)

    release = threading.Event()  # a call that would hang until the test ends
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        stop.call(release.wait, 60)
    assert time.monotonic() - started < 5
    with pytest.raises(Stopped):
        stop.sleep(60)  # already stopped: no wait at all
    with pytest.raises(Stopped):
        stop.call(lambda: "never runs")
    release.set()
