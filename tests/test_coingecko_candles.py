"""CoinGecko candles from price samples at the granularity edges: an answer coarser than asked is refused."""

import pytest

from collector.config import CoinGeckoConfig, Pair
from collector.exchanges.base import MessageError
from collector.exchanges.coingecko import DAY, CoinGecko

HOUR = 3600
PAIR = Pair("BTC", "USD")


class Answer:
    def __init__(self, doc):
        self.doc = doc

    def get_json(self, url, params=None, headers=None):
        return self.doc


def adapter() -> CoinGecko:
    return CoinGecko(CoinGeckoConfig("coingecko", (PAIR,), coins=(("BTC", "bitcoin"),)), environ={})


def test_daily_samples_answered_for_hourly_candles_are_refused_not_stored_as_one_hour_a_day():
    start = 1_704_067_200
    daily = [[(start + day * DAY) * 1000, 42000 + day] for day in range(10)] + [
        [(start + 10 * DAY + 7) * 1000, 1]
    ]
    with pytest.raises(MessageError, match="coarser granularity"):
        adapter().candles(Answer({"prices": daily}), PAIR, HOUR, start, start + 10 * DAY + 7)


def test_hourly_samples_with_holes_still_make_candles():
    start = 1_704_067_200
    hours = [0, 1, 5, 9, 10, 30]  # a few missing hours: CoinGecko leaves gaps
    samples = [[(start + h * HOUR + 137) * 1000, 42000 + h] for h in hours]
    page = adapter().candles(Answer({"prices": samples}), PAIR, HOUR, start, start + 3 * DAY)
    assert [c.open_time_s for c in page.records] == [start + h * HOUR for h in hours]
