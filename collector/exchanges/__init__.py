"""The exchange registry: config key -> adapter class. Adding an exchange is one module and one line here."""

from collector.exchanges.base import Exchange
from collector.exchanges.bitstamp import Bitstamp

EXCHANGES: dict[str, type[Exchange]] = {
    "bitstamp": Bitstamp,
}
