"""CoinGecko answers at their edges: samples coarser than asked are refused; a coin without a price is a bad row of
the one /simple/price call, the others' prices kept."""

from decimal import Decimal

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
    coins = (("BTC", "bitcoin"), ("HBAR", "hedera-hashgraph"), ("NEW", "new-coin"))
    return CoinGecko(CoinGeckoConfig("coingecko", (PAIR,), coins=coins), environ={})


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


def test_a_coin_without_a_price_is_a_bad_row_and_the_others_are_kept():
    pairs = [PAIR, Pair("HBAR", "USD"), Pair("NEW", "USD")]
    doc = {
        "bitcoin": {"usd": Decimal("42000.5"), "last_updated_at": 1_704_067_200},
        "hedera-hashgraph": {},  # known, but no price in this currency
    }  # new-coin left out: CoinGecko omits ids it has no price for
    page = adapter().tickers(Answer(doc), pairs)
    assert [(t.pair, t.last, t.time_ns) for t in page.records] == [
        (PAIR, Decimal("42000.5"), 1_704_067_200 * 10**9)
    ]
    assert len(page.bad_rows) == 2 and "HBAR-USD" in page.bad_rows[0] and "NEW-USD" in page.bad_rows[1]
