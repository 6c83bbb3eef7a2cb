"""The `coingecko:` section of portfolio.yml: coins by id, validated with file, line and key."""

import pytest

from collector.config import COINGECKO, CoinGeckoConfig, Pair, parse_config
from collector.errors import ConfigError
from collector.exchanges import EXCHANGES
from collector.exchanges.coingecko import API_KEY_HEADER, CoinGecko

GOOD = """\
base_currency: EUR
coingecko:
  coins: {HBAR: hedera-hashgraph, BTC: bitcoin}
  rest_url: http://127.0.0.1:9/api/v3/
"""
KNOWN = {name for name, adapter in EXCHANGES.items() if adapter.live_trades}
STEPS = {name: adapter.candle_steps for name, adapter in EXCHANGES.items()}


def test_coins_become_pairs_in_the_base_currency_matched_by_id():
    config = parse_config(GOOD, "p.yml", KNOWN, STEPS)
    assert config.coingecko == CoinGeckoConfig(
        name=COINGECKO,
        pairs=(Pair("HBAR", "EUR"), Pair("BTC", "EUR")),
        rest_url="http://127.0.0.1:9/api/v3",
        coins=(("HBAR", "hedera-hashgraph"), ("BTC", "bitcoin")),
    )
    assert config.sources() == [config.coingecko]
    assert parse_config("", "p.yml").coingecko is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "coingecko:\n  coin: {HBAR: x}\n",
            "p.yml:2: coingecko.coin: unknown key; expected one of coins, rest_url",
        ),
        ("coingecko:\n  rest_url: http://x\n", "p.yml:1: coingecko: expected a 'coins' mapping"),
        ("coingecko:\n  coins: {}\n", "p.yml:2: coingecko.coins: expected at least one SYMBOL: coingecko-id"),
        ("coingecko:\n  coins: [hbar]\n", "p.yml:2: coingecko.coins: expected a mapping of keys"),
        (
            "coingecko:\n  coins:\n    hbar: hedera-hashgraph\n",
            "p.yml:3: coingecko.coins.hbar: expected a coin symbol",
        ),
        (
            "coingecko:\n  coins:\n    HBAR: Hedera Hashgraph\n",
            "p.yml:3: coingecko.coins.HBAR: expected a CoinGecko coin id",
        ),
        (
            "coingecko:\n  coins:\n    HBAR: 12\n",
            "p.yml:3: coingecko.coins.HBAR: expected a CoinGecko coin id",
        ),
        (
            "coingecko:\n  coins:\n    BTC: bitcoin\n    XBT: bitcoin\n",
            "p.yml:4: coingecko.coins.XBT: id 'bitcoin' is already given to BTC; give each id once",
        ),
        ("coingecko:\n  coins:\n    USD: usd\n", "p.yml:3: coingecko.coins.USD: USD is the base currency"),
        (
            "coingecko:\n  coins: {A1: a}\n  rest_url: ftp://x\n",
            "p.yml:3: coingecko.rest_url: expected a http or https URL",
        ),
        ("exchanges:\n  coingecko:\n    pairs: [BTC-USD]\n", "p.yml:2: exchanges.coingecko: unknown key"),
        (
            "backfill:\n  interval: 15m\ncoingecko:\n  coins: {HBAR: hedera-hashgraph}\n",
            "p.yml:2: backfill.interval: expected a candle interval coingecko offers (1h, 1d), got 15m",
        ),
    ],
)
def test_bad_lines_are_named(text, message):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "p.yml", KNOWN, STEPS)
    assert str(err.value).startswith(message)


def test_the_demo_key_comes_from_the_environment_and_raises_the_budget():
    config = parse_config(GOOD, "p.yml", KNOWN, STEPS).coingecko
    keyless = CoinGecko(config, environ={})
    keyed = CoinGecko(config, environ={"COINGECKO_API_KEY": " CG-secret "})
    assert keyless.headers == {} and keyed.headers == {API_KEY_HEADER: "CG-secret"}
    assert keyed.rate_limit.requests / keyed.rate_limit.per_seconds > (
        keyless.rate_limit.requests / keyless.rate_limit.per_seconds
    )
    assert "CG-secret" not in repr(config)


def test_the_example_uses_coingecko_and_passes_check_config(capsys, monkeypatch):
    from collector.cli import main
    from tests.influxd import ROOT

    monkeypatch.delenv("COINGECKO_API_KEY", raising=False)
    assert main(["check-config", "--config", str(ROOT / "portfolio.example.yml")]) == 0
    out = capsys.readouterr().out
    assert "  coingecko: HBAR (hedera-hashgraph), ETH (ethereum); no key: the public rate limit\n" in out


def test_a_coingecko_coin_is_a_price_route_and_an_older_source():
    from collector.portfolio.routes import PriceRoutes

    config = parse_config(
        "exchanges:\n  kraken:\n    pairs: [ETH-USD, BTC-USD]\n  bitstamp:\n    pairs: [BTC-USD]\n"
        "coingecko:\n  coins: {HBAR: hedera-hashgraph, ETH: ethereum}\n",
        "p.yml",
    )
    routes = PriceRoutes(config)
    (hbar,) = routes.route("HBAR").legs
    assert (hbar.exchange, hbar.pair, hbar.older) == ("coingecko", Pair("HBAR", "USD"), ())
    assert routes.route("HBAR").describe() == "HBAR-USD on coingecko"
    (eth,) = routes.route(
        "ETH"
    ).legs  # an exchange listing the pair is preferred; CoinGecko has its older history
    assert (eth.exchange, eth.sources) == ("kraken", ("kraken", "coingecko"))
    (btc,) = routes.route("BTC").legs
    assert btc.sources == ("kraken", "bitstamp")
