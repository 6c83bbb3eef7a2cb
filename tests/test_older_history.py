"""The older-history plan: who fills the span an exchange's candles do not reach."""

from collector.config import Pair
from collector.older_history import OlderHistory, Source, extra_pairs, plan_older_history, reach_start_s

DAY = 86_400
NOW = 1_800_000_000 - 1_800_000_000 % 3600 + 1234  # mid-hour
SINCE = NOW - 1000 * DAY
BTC, ETH_EUR, HBAR = Pair("BTC", "USD"), Pair("ETH", "EUR"), Pair("HBAR", "USD")
KRAKEN_REACH = reach_start_s(720, None, 3600, NOW)
COINGECKO_REACH = reach_start_s(None, 364 * DAY, 3600, NOW)


def test_reach_from_rows_or_from_a_span():
    current_open = NOW - 1234
    assert reach_start_s(720, None, 3600, NOW) == current_open - 719 * 3600  # the open one is the 720th
    assert reach_start_s(None, 364 * DAY, 3600, NOW) == NOW - 364 * DAY
    assert reach_start_s(None, None, 3600, NOW) is None
    assert reach_start_s(10, 364 * DAY, 3600, NOW) == current_open - 9 * 3600  # the shorter reach wins


def test_an_exchange_that_reaches_since_needs_no_plan():
    sources = [Source("bitstamp", (BTC,), None), Source("kraken", (BTC,), SINCE - 1)]
    assert plan_older_history(sources, SINCE) == []


def test_another_exchange_with_the_pair_fills_it_before_coingecko():
    sources = [
        Source("kraken", (BTC, ETH_EUR), KRAKEN_REACH),
        Source("bitstamp", (BTC,), None),
        Source("coingecko", (Pair("BTC", "USD"),), COINGECKO_REACH, frozenset({"BTC", "ETH"})),
    ]
    plan = plan_older_history(sources, SINCE)
    assert plan[0] == OlderHistory("kraken", BTC, SINCE, KRAKEN_REACH, "bitstamp", SINCE, fetch=False)
    # no exchange has ETH-EUR: CoinGecko, by ETH's id, in euros, from its own reach on; it must fetch ETH-EUR
    assert plan[1] == OlderHistory(
        "kraken", ETH_EUR, SINCE, KRAKEN_REACH, "coingecko", COINGECKO_REACH, fetch=True
    )
    assert "older history from coingecko's ETH-EUR candles (which start at" in plan[1].describe()
    assert "(fetched for this)" in plan[1].describe()
    # CoinGecko stops short too: BTC-USD is on bitstamp, which reaches everything
    assert plan[2] == OlderHistory("coingecko", BTC, SINCE, COINGECKO_REACH, "bitstamp", SINCE, fetch=False)
    assert extra_pairs(plan, "coingecko") == [ETH_EUR]
    assert extra_pairs(plan, "bitstamp") == []


def test_no_source_is_said():
    sources = [
        Source("kraken", (HBAR,), KRAKEN_REACH),
        Source("coingecko", (), COINGECKO_REACH, frozenset({"ETH"})),
    ]
    (entry,) = plan_older_history(sources, SINCE)
    assert entry.source is None and not entry.fetch
    assert entry.describe().endswith("no other configured source has older HBAR-USD candles")


def test_a_source_reaching_less_far_is_no_source():
    sources = [
        Source("coingecko", (HBAR,), COINGECKO_REACH, frozenset({"HBAR"})),
        Source("kraken", (HBAR,), KRAKEN_REACH),  # reaches 30 days: not before CoinGecko's start
    ]
    plan = plan_older_history(sources, SINCE)
    assert [(e.exchange, e.source) for e in plan] == [("coingecko", None), ("kraken", "coingecko")]


def test_of_several_the_furthest_reaching_then_the_first_listed():
    sources = [
        Source("kraken", (BTC,), KRAKEN_REACH),
        Source("coinbase", (BTC,), NOW - 500 * DAY),
        Source("binance", (BTC,), NOW - 900 * DAY),
        Source("bitstamp", (BTC,), SINCE - DAY),
        Source("other", (BTC,), None),
    ]
    (kraken, coinbase, binance) = plan_older_history(sources, SINCE)[:3]
    assert (kraken.source, coinbase.source, binance.source) == ("bitstamp", "bitstamp", "bitstamp")
