"""The exchange registry: config key -> adapter class. Adding an exchange is one module and one line here."""

from pathlib import Path

from collector.config import Config, load_config
from collector.errors import ConfigError
from collector.exchanges.base import Exchange
from collector.exchanges.binance import Binance
from collector.exchanges.bitstamp import Bitstamp
from collector.exchanges.coinbase import Coinbase
from collector.exchanges.coingecko import CoinGecko
from collector.exchanges.kraken import Kraken

EXCHANGES: dict[str, type[Exchange]] = {
    "binance": Binance,
    "bitstamp": Bitstamp,
    "coinbase": Coinbase,
    "coingecko": CoinGecko,
    "kraken": Kraken,
}


def load_checked_config(path: Path) -> Config:
    """portfolio.yml, checked against the registry: known exchanges (REST-only sources such as CoinGecko have
    their own section), candle intervals each one offers, backfill rounds close enough for the candles each serves,
    no more pairs than one connection streams."""
    config = load_config(
        path,
        known_exchanges={name for name, adapter in EXCHANGES.items() if adapter.live_trades},
        candle_steps={name: adapter.candle_steps for name, adapter in EXCHANGES.items()},
        candle_reach_rows={name: adapter.candle_reach_rows for name, adapter in EXCHANGES.items()},
    )
    for name, exchange in config.exchanges.items():
        most = EXCHANGES[name].max_pairs
        if most is not None and len(exchange.pairs) > most:
            raise ConfigError(
                f"{path}: exchanges.{name}.pairs: {name} streams at most {most} pairs, got {len(exchange.pairs)}"
            )
    return config
