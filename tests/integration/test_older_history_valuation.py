"""Which source values an hour when the route's exchange has a long hole (a collector down longer than the exchange's
candle reach, e.g. Kraken's 720 hours) and CoinGecko, the pair's older source, has the hours in it."""

from collector.config import Buckets, parse_config
from collector.portfolio.prices import ClosesAt, CloseSeries
from collector.portfolio.routes import PriceRoutes
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
