"""Which source values an hour when the route's exchange has a long hole (a collector down longer than the exchange's
candle reach, e.g. Kraken's 720 hours) and CoinGecko, the pair's older source, has the hours in it."""

import time
from decimal import Decimal

from collector.config import Buckets, Pair, parse_config
from collector.portfolio.prices import ClosesAt, CloseSeries, LatestPrices
from collector.portfolio.routes import PriceRoutes
from collector.records import Ticker
from collector.storage.prices import StoredPrices
from tests.integration.valuation_helpers import at, hourly_candles, seed

NS = 1_000_000_000
CONFIG = """
base_currency: EUR
exchanges:
  bitstamp: {pairs: [ETH-EUR]}
coingecko:
  coins: {ETH: ethereum}
"""


def test_a_hole_in_the_exchanges_candles_is_valued_from_the_older_source(collector_settings, tmp_path):
    bitstamp = hourly_candles("ETH-EUR", "2026-01-01T00:00:00Z", ["1000", "1001"])  # then down for 10 hours
    bitstamp += hourly_candles("ETH-EUR", "2026-01-01T12:00:00Z", ["1012"])
    coingecko = hourly_candles(
        "ETH-EUR", "2026-01-01T00:00:00Z", [f"{2000 + hour}" for hour in range(13)], exchange="coingecko"
    )
    seed(collector_settings, tmp_path, bitstamp + coingecko)
    config = parse_config(CONFIG, "portfolio.yml", {"bitstamp"})
    (leg,) = PriceRoutes(config).route("ETH").legs
    store = StoredPrices(collector_settings, Buckets(), 3600)
    moment_ns = int(at("2026-01-01T08:00:00Z").timestamp()) * NS  # 6 hours into the hole

    closes = CloseSeries(store, [leg])
    closes.load(
        int(at("2026-01-01T00:00:00Z").timestamp()) * NS, int(at("2026-01-01T13:00:00Z").timestamp()) * NS
    )
    # Bitstamp's last close is 6 hours old; CoinGecko's ETH-EUR candle that closed at 08:00 opened at 07:00
    assert (ClosesAt(store)(leg, moment_ns), closes(leg, moment_ns)) == (2007, 2007)


def test_live_uses_the_older_sources_price_only_while_the_exchanges_is_stale(collector_settings, tmp_path):
    now_hour = int(time.time()) // 3600 * 3600
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_hour - 6 * 3600))
    # Bitstamp's last ETH-EUR candle closed 5 hours ago (its feed is down); CoinGecko's price is a minute old
    seed(collector_settings, tmp_path, hourly_candles("ETH-EUR", stamp, ["1500"]))
    ticker = Ticker("coingecko", Pair("ETH", "EUR"), (now_hour - 60) * NS, Decimal("1612.34"), None)
    seed(collector_settings, tmp_path, [ticker])
    config = parse_config(CONFIG, "portfolio.yml", {"bitstamp"})
    (leg,) = PriceRoutes(config).route("ETH").legs
    store = StoredPrices(collector_settings, Buckets(), 3600)
    assert LatestPrices(store, [leg])(leg, now_hour * NS) == Decimal("1612.34")

    fresh = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_hour - 3600)
    )  # closes at the hour: fresh again
    seed(collector_settings, tmp_path, hourly_candles("ETH-EUR", fresh, ["1511"]))
    assert LatestPrices(store, [leg])(leg, now_hour * NS) == Decimal("1511")  # the route's exchange first
