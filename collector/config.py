"""portfolio.yml: what to track and where it is stored.

Every validation error names the file, the line, the key and what was expected, so a user
editing YAML on a home server can fix it without reading code.
"""

import os
import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

import yaml

from collector.errors import ConfigError
from collector.holdings import Holdings, parse_holdings

CONFIG_ENV_VAR = "HODLBOARD_CONFIG"
DEFAULT_CONFIG_PATH = Path("portfolio.yml")


@dataclass(frozen=True)
class Buckets:
    live: str = "crypto_live"
    history: str = "crypto_history"
    meta: str = "crypto_meta"


@dataclass(frozen=True, order=True)
class Pair:
    """A market written BASE-QUOTE in upper case (BTC-USD); adapters map it to the exchange's symbol."""

    base: str
    quote: str

    def __str__(self) -> str:
        return f"{self.base}-{self.quote}"

    @classmethod
    def parse(cls, text: str) -> "Pair":
        match = _PAIR.fullmatch(text)
        if not match:
            raise ValueError(text)
        return cls(match["base"], match["quote"])


@dataclass(frozen=True)
class ExchangeConfig:
    name: str
    pairs: tuple[Pair, ...]
    ws_url: str | None = None
    rest_url: str | None = None


COINGECKO = "coingecko"  # the `coingecko:` section, and the exchange tag of what CoinGecko gives


@dataclass(frozen=True)
class CoinGeckoConfig(ExchangeConfig):
    """`coingecko:`: its pairs are SYMBOL-<base_currency>; `coins` maps each symbol to its CoinGecko id (coins are
    matched by id only: many coins share a symbol)."""

    coins: tuple[tuple[str, str], ...] = ()  # (SYMBOL, coingecko-id)


@dataclass(frozen=True)
class BackfillConfig:
    interval_s: int = 3600
    every_s: int = 12 * 3600
    since: date = date(2020, 1, 1)


@dataclass(frozen=True)
class Config:
    base_currency: str = "USD"
    exchanges: dict[str, ExchangeConfig] = field(default_factory=dict)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)
    buckets: Buckets = field(default_factory=Buckets)
    holdings: Holdings = field(default_factory=Holdings)
    live_valuation_every_s: float = 10
    coingecko: CoinGeckoConfig | None = None

    def sources(self) -> list[ExchangeConfig]:
        """Every configured source of market data: the exchanges, then CoinGecko."""
        return [*self.exchanges.values(), *([self.coingecko] if self.coingecko else [])]


_PAIR = re.compile(r"(?P<base>[A-Z0-9]{2,12})-(?P<quote>[A-Z0-9]{2,12})")
_COIN_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_DURATION = re.compile(r"(?P<count>[1-9][0-9]*)(?P<unit>[smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """`10s`, `30m`, `1h`, `12h`, `1d` -> seconds."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(text)
    return int(match["count"]) * _UNIT_SECONDS[match["unit"]]


def config_path(cli_path: str | None, environ=os.environ) -> tuple[Path, bool]:
    """The config file to read and whether the user named it (a named file must exist)."""
    if cli_path:
        return Path(cli_path), True
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR]), True
    return DEFAULT_CONFIG_PATH, False


def load_config(
    path: Path,
    required: bool = True,
    known_exchanges: set[str] | None = None,
    candle_steps: dict[str, frozenset[int]] | None = None,
    candle_reach_rows: dict[str, int | None] | None = None,
) -> Config:
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: configuration file not found (copy portfolio.example.yml)")
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, str(path), known_exchanges, candle_steps, candle_reach_rows)


def parse_config(
    text: str,
    source: str,
    known_exchanges: set[str] | None = None,
    candle_steps: dict[str, frozenset[int]] | None = None,
    candle_reach_rows: dict[str, int | None] | None = None,
) -> Config:
    """Validate everything; `known_exchanges` (the adapter registry's keys) limits `exchanges:`, `candle_steps`
    (exchange -> the candle intervals it offers, in seconds) limits `backfill.interval`, and `candle_reach_rows`
    (exchange -> how many of its latest candles it serves) limits `backfill.every`."""
    doc = _Document.parse(text, source)
    root = doc.mapping(
        (),
        allowed={
            "base_currency",
            "exchanges",
            COINGECKO,
            "backfill",
            "influxdb",
            "cost_basis",
            "holdings",
            "valuation",
        },
    )
    config = Config()
    if "base_currency" in root:
        config = replace(config, base_currency=doc.currency(("base_currency",)))
    if "exchanges" in root:
        config = replace(config, exchanges=_exchanges(doc, known_exchanges))
    if COINGECKO in root:
        config = replace(config, coingecko=_coingecko(doc, config.base_currency))
    if "backfill" in root:
        config = replace(config, backfill=_backfill(doc))
    _check_interval(doc, config, candle_steps or {})
    _check_every(doc, config, candle_reach_rows or {})
    if "cost_basis" in root or "holdings" in root:
        config = replace(config, holdings=parse_holdings(doc, config.base_currency))
    if "valuation" in root and "live_every" in doc.mapping(("valuation",), allowed={"live_every"}):
        config = replace(config, live_valuation_every_s=doc.duration(("valuation", "live_every")))
    influx = doc.mapping(("influxdb",), allowed={"buckets"}) if "influxdb" in root else {}
    if "buckets" in influx:
        names = doc.mapping(("influxdb", "buckets"), allowed={"live", "history", "meta"})
        config = replace(
            config, buckets=Buckets(**{k: doc.bucket_name(("influxdb", "buckets", k)) for k in names})
        )
    return config


def _exchanges(doc: "_Document", known: set[str] | None) -> dict[str, ExchangeConfig]:
    result = {}
    for name in doc.mapping(("exchanges",), allowed=known):
        path = ("exchanges", name)
        entry = doc.mapping(path, allowed={"pairs", "ws_url", "rest_url"})
        if "pairs" not in entry:
            doc.fail(path, "a 'pairs' list such as [BTC-USD, ETH-USD]")
        result[name] = ExchangeConfig(
            name=name,
            pairs=doc.pairs(path + ("pairs",)),
            ws_url=doc.url(path + ("ws_url",), ("ws", "wss")) if "ws_url" in entry else None,
            rest_url=doc.url(path + ("rest_url",), ("http", "https")) if "rest_url" in entry else None,
        )
    return result


def _coingecko(doc: "_Document", base_currency: str) -> CoinGeckoConfig:
    entry = doc.mapping((COINGECKO,), allowed={"coins", "rest_url"})
    path = (COINGECKO, "coins")
    if "coins" not in entry:
        doc.fail((COINGECKO,), "a 'coins' mapping of SYMBOL: coingecko-id, such as {HBAR: hedera-hashgraph}")
    coins = doc.mapping(path, allowed=None)
    if not coins:
        doc.fail(path, "at least one SYMBOL: coingecko-id, such as {HBAR: hedera-hashgraph}")
    seen: dict[str, str] = {}
    for symbol, coin_id in coins.items():
        if not isinstance(symbol, str) or not re.fullmatch(r"[A-Z0-9]{2,12}", symbol):
            doc.error(path + (symbol,), "expected a coin symbol in upper case, such as HBAR")
        if symbol == base_currency:
            doc.error(path + (symbol,), f"{symbol} is the base currency: it needs no price")
        if not isinstance(coin_id, str) or not _COIN_ID.fullmatch(coin_id):
            doc.fail(
                path + (symbol,),
                "a CoinGecko coin id (the API id on its coin page), such as hedera-hashgraph",
            )
        if coin_id in seen:
            doc.error(
                path + (symbol,), f"id {coin_id!r} is already given to {seen[coin_id]}; give each id once"
            )
        seen[coin_id] = symbol
    return CoinGeckoConfig(
        name=COINGECKO,
        pairs=tuple(Pair(symbol, base_currency) for symbol in seen.values()),
        rest_url=doc.url((COINGECKO, "rest_url"), ("http", "https")) if "rest_url" in entry else None,
        coins=tuple((symbol, coin_id) for coin_id, symbol in seen.items()),
    )


def _backfill(doc: "_Document") -> BackfillConfig:
    entry = doc.mapping(("backfill",), allowed={"interval", "every", "since"})
    config = BackfillConfig()
    if "interval" in entry:
        config = replace(config, interval_s=doc.duration(("backfill", "interval")))
    if "every" in entry:
        config = replace(config, every_s=doc.duration(("backfill", "every")))
    if "since" in entry:
        config = replace(config, since=doc.date(("backfill", "since")))
    return config


def _check_interval(doc: "_Document", config: Config, candle_steps: dict[str, frozenset[int]]) -> None:
    """Refused here, not at run time: a candle interval that a configured exchange does not offer."""
    interval = config.backfill.interval_s
    sources = {name: ("exchanges", name) for name in config.exchanges}
    if config.coingecko:
        sources[COINGECKO] = (COINGECKO,)
    for name, section in sources.items():
        offered = candle_steps.get(name)
        if offered is not None and interval not in offered:
            path = ("backfill", "interval")
            if path not in doc.lines:  # the default interval: name the exchange instead
                path = section
            names = ", ".join(_duration_name(step) for step in sorted(offered))
            line = doc.lines.get(path, 1)
            raise ConfigError(
                f"{doc.source}:{line}: {_key_name(path)}: expected a candle interval {name} offers "
                f"({names}), got {_duration_name(interval)}"
            )


def _check_every(doc: "_Document", config: Config, candle_reach_rows: dict[str, int | None]) -> None:
    """Refused: rounds further apart than half of what an exchange that serves only its latest candles reaches
    (Kraken: 720), or the candles between two rounds (one failed round included) would be out of its reach."""
    interval, every = config.backfill.interval_s, config.backfill.every_s
    for name in config.exchanges:
        rows = candle_reach_rows.get(name)
        if rows is not None and every > rows * interval // 2:
            doc.error(
                ("backfill", "every"),
                f"at most {_duration_name(rows * interval // 2)} with {_duration_name(interval)} candles: {name} "
                f"serves only its latest {rows} ({_duration_name(rows * interval)}), got {_duration_name(every)}",
            )


def _duration_name(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


class _Document:
    """A parsed YAML document that remembers the line of every key, for error messages."""

    def __init__(self, data, lines: dict[tuple, int], texts: dict[tuple, str], source: str):
        self.data = data
        self.lines = lines
        self.texts = texts  # each scalar as written, so a bare 0.1 can be read as an exact decimal
        self.source = source

    @classmethod
    def parse(cls, text: str, source: str) -> "_Document":
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from exc
        lines: dict[tuple, int] = {}
        texts: dict[tuple, str] = {}
        try:
            data = _to_python(node, (), lines, texts) if node is not None else {}
        except _DuplicateKey as dup:
            where = f"{source}:{dup.line}: {_key_name(dup.path)}"
            raise ConfigError(f"{where}: given twice (first on line {dup.first_line}); keep one") from None
        return cls(data, lines, texts, source)

    def get(self, path: tuple):
        value = self.data
        for key in path:
            value = value[key]
        return value

    def line(self, path: tuple) -> int:
        return next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), 1)

    def error(self, path: tuple, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}:{self.line(path)}: {_key_name(path) or '(top level)'}: {message}")

    def fail(self, path: tuple, expected: str) -> NoReturn:
        self.error(path, f"expected {expected}, got {self.get(path)!r}")

    def mapping(self, path: tuple, allowed: set[str] | None) -> dict:
        value = self.get(path)
        if value is None and path:
            value = {}
        if not isinstance(value, dict):
            self.fail(path, "a mapping of keys")
        for key in value:
            if allowed is not None and key not in allowed:
                line = self.lines.get(path + (key,), 1)
                where = _key_name(path + (key,))
                raise ConfigError(
                    f"{self.source}:{line}: {where}: unknown key; expected one of {', '.join(sorted(allowed))}"
                )
        return value

    def pairs(self, path: tuple) -> tuple[Pair, ...]:
        items = self.get(path)
        if not isinstance(items, list) or not items:
            self.fail(path, "a non-empty list of pairs such as [BTC-USD, ETH-USD]")
        pairs: list[Pair] = []
        for index, item in enumerate(items):
            try:
                pair = Pair.parse(item) if isinstance(item, str) else Pair.parse("")
            except ValueError:
                self.fail(path + (index,), "a pair written BASE-QUOTE in upper case, such as BTC-USD")
            if pair in pairs:
                self.fail(path + (index,), "each pair once")
            pairs.append(pair)
        return tuple(pairs)

    def url(self, path: tuple, schemes: tuple[str, ...]) -> str:
        value = self.get(path)
        parsed = urlparse(value) if isinstance(value, str) else None
        if parsed is None or parsed.scheme not in schemes or not parsed.netloc:
            self.fail(path, f"a {' or '.join(schemes)} URL")
        return value.rstrip("/")

    def duration(self, path: tuple) -> int:
        try:
            return parse_duration(self.get(path))
        except ValueError:
            self.fail(path, "a duration such as 30m, 1h, 12h or 1d")

    def date(self, path: tuple) -> date:
        value = self.get(path)
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            self.fail(path, "a date written YYYY-MM-DD")

    def currency(self, path: tuple) -> str:
        value = self.get(path)
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z0-9]{2,12}", value):
            self.fail(path, "a currency code in upper case, such as USD")
        return value

    def bucket_name(self, path: tuple) -> str:
        value = self.get(path)
        if not isinstance(value, str) or not value.strip() or value.startswith("_"):
            self.fail(path, "a bucket name (text, not starting with '_')")
        return value


def _key_name(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


class _DuplicateKey(Exception):
    def __init__(self, path: tuple, first_line: int, line: int):
        self.path, self.first_line, self.line = path, first_line, line


def _to_python(node, path: tuple, lines: dict[tuple, int], texts: dict[tuple, str]):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in result:  # YAML would keep the last silently: a second BTC block would hide the first
                raise _DuplicateKey(path + (key,), lines[path + (key,)], key_node.start_mark.line + 1)
            result[key] = _to_python(value_node, path + (key,), lines, texts)
            lines[path + (key,)] = key_node.start_mark.line + 1  # the key's line, not its value's
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, path + (index,), lines, texts) for index, item in enumerate(node.value)]
    texts[path] = node.value
    return _scalar(node)


def _scalar(node):
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except ValueError:  # shaped like a date but none (2026-02-30): the text, which the key's check then names
        return node.value
