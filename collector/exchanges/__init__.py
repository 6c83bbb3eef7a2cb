"""The exchange registry: config key -> adapter class. Adding an exchange is one module and one line here."""

from pathlib import Path

from collector.config import Config, load_config
from collector.exchanges.base import Exchange
from collector.exchanges.bitstamp import Bitstamp
from collector.exchanges.coinbase import Coinbase

EXCHANGES: dict[str, type[Exchange]] = {
    "bitstamp": Bitstamp,
    "coinbase": Coinbase,
}


def load_checked_config(path: Path) -> Config:
    """portfolio.yml, checked against the registry: known exchanges, candle intervals each one offers."""
    return load_config(
        path,
        known_exchanges=set(EXCHANGES),
        candle_steps={name: adapter.candle_steps for name, adapter in EXCHANGES.items()},
    )
