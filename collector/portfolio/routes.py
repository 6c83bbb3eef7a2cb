"""Price routes: which configured markets turn one unit of an asset (or a lot's currency) into the base currency.

In order of preference:
1. the asset is the base currency itself (worth exactly 1);
2. a pair ASSET-BASE, or BASE-ASSET read inverted (1 / price), e.g. EUR-USD for a EUR lot when the base is USD;
3. a bridge through one intermediate currency: ASSET-X × X-BASE, trying X = USDT, USDC, BTC, ETH, then any other
   quote currency in alphabetical order. The bridge uses the intermediate's own market price: a stablecoin is never
   assumed to be worth exactly 1, so a de-pegged USDT changes the value.
When several exchanges list the same pair, the first exchange in portfolio.yml that lists it is used; a coin in
`coingecko.coins` is a pair SYMBOL-BASE on CoinGecko, used when no exchange lists that pair. Before the first
candle of the chosen exchange (one that serves only recent candles), and in a hole in its candles, the other sources
of the pair are read, in the same order: the older history the backfill fetched from them (collector/older_history.py).
Only configured pairs are routes: their candles and trades (CoinGecko: candles and prices) are what the collector
stores.
"""

from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from collector.config import Config, Pair

PREFERRED_BRIDGES = ("USDT", "USDC", "BTC", "ETH")


@dataclass(frozen=True)
class Leg:
    exchange: str
    pair: Pair
    inverted: bool = False  # the pair quotes the other way round: the rate is 1 / its price
    # other sources of the pair, read where `exchange` has no price yet (its candles stop short); not identity
    older: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.exchange, *self.older)

    def describe(self) -> str:
        return f"1/{self.pair}" if self.inverted else str(self.pair)


@dataclass(frozen=True)
class Route:
    asset: str
    legs: tuple[Leg, ...]  # empty: the asset is the base currency

    def describe(self) -> str:
        if not self.legs:
            return "the base currency"
        exchanges = sorted({leg.exchange for leg in self.legs})
        return f"{' × '.join(leg.describe() for leg in self.legs)} on {', '.join(exchanges)}"

    def price(self, leg_prices: list[Decimal | None]) -> Decimal | None:
        """The route's price from its legs' prices (in leg order); unknown if any leg is."""
        price = Decimal(1)
        for leg, leg_price in zip(self.legs, leg_prices, strict=True):
            if leg_price is None or leg_price <= 0:
                return None
            price = price * (_rate(1 / leg_price) if leg.inverted else leg_price)
        return price


def _rate(value: Decimal) -> Decimal:
    """An inverted rate to 18 significant digits, plenty for any price, instead of the context's 28."""
    with localcontext() as context:
        context.prec = 18
        return +value


class PriceRoutes:
    def __init__(self, config: Config):
        self.base = config.base_currency
        self._markets: dict[Pair, str] = {}  # pair -> the first exchange listing it
        self._listed: dict[Pair, list[str]] = {}  # pair -> every exchange listing it, in order
        for exchange in config.exchanges.values():
            for pair in exchange.pairs:
                self._markets.setdefault(pair, exchange.name)
                self._listed.setdefault(pair, []).append(exchange.name)
        self._coingecko = config.coingecko
        for pair in config.coingecko.pairs if config.coingecko else ():
            self._markets.setdefault(pair, config.coingecko.name)

    def route(self, asset: str) -> Route | None:
        if asset == self.base:
            return Route(asset, ())
        direct = self._leg(asset, self.base)
        if direct:
            return Route(asset, (direct,))
        for bridge in self._bridges(asset):
            first, second = self._leg(asset, bridge), self._leg(bridge, self.base)
            if first and second:
                return Route(asset, (first, second))
        return None

    def legs(self, assets) -> set[Leg]:
        """Every market the routes of these assets read."""
        return {leg for asset in assets if (route := self.route(asset)) for leg in route.legs}

    def missing_message(self, asset: str) -> str:
        return (
            f"{asset}: no price source: add a pair such as {asset}-{self.base} (or {asset}-USDT with "
            f"USDT-{self.base}) under an exchange's pairs in portfolio.yml"
        )

    def _leg(self, asset: str, currency: str) -> Leg | None:
        for pair, inverted in ((Pair(asset, currency), False), (Pair(currency, asset), True)):
            if pair in self._markets:
                return Leg(self._markets[pair], pair, inverted, self._older(pair))
        return None

    def _older(self, pair: Pair) -> tuple[str, ...]:
        """The pair's sources after the first: other exchanges listing it, then CoinGecko if it has the base coin."""
        sources = list(self._listed.get(pair, ()))
        coingecko = self._coingecko
        if coingecko and pair.base in dict(coingecko.coins) and coingecko.name not in sources:
            sources.append(coingecko.name)
        return tuple(source for source in sources if source != self._markets[pair])

    def _bridges(self, asset: str) -> list[str]:
        currencies = {c for pair in self._markets for c in (pair.base, pair.quote)} - {asset, self.base}
        preferred = [c for c in PREFERRED_BRIDGES if c in currencies]
        return preferred + sorted(currencies - set(preferred))


def price_sources(config: Config) -> list[tuple[str, Route | None, str]]:
    """For check-config: every held asset and every lot currency, with its route or what to add.

    Each entry is (asset or currency, route or None, a line to print)."""
    routes = PriceRoutes(config)
    needed = dict.fromkeys(sorted(config.holdings.assets))
    for holding in config.holdings.assets.values():
        for line in holding.transactions:
            if line.currency != config.base_currency:
                needed.setdefault(line.currency)
    entries = []
    for name in needed:
        route = routes.route(name)
        text = f"{name}: priced from {route.describe()}" if route else routes.missing_message(name)
        entries.append((name, route, text))
    return entries
