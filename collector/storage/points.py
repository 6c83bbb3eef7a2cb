"""Records -> InfluxDB points, per the contract in docs/data-contract.md. Decimals become floats only here."""

import time
from dataclasses import dataclass
from decimal import Decimal

from influxdb_client import Point, WritePrecision

from collector.records import Asset, Candle, PortfolioValue, Position, Ticker, Trade, Transaction
from collector.storage.lines import candle_line, parts_line, trade_line

NS = 1_000_000_000


def _pair_tags(point: Point, record) -> Point:
    return (
        point.tag("exchange", record.exchange)
        .tag("pair", str(record.pair))
        .tag("base", record.pair.base)
        .tag("quote", record.pair.quote)
    )


def trade_point(trade: Trade) -> Point:
    return (
        _pair_tags(Point("trade"), trade)
        .tag("side", trade.side)
        .field("price", float(trade.price))
        .field("amount", float(trade.amount))
        .field("trade_id", str(trade.trade_id))  # a string field since the first release: a type stays
        .time(trade.time_ns, WritePrecision.NS)  # Exchange.trade built it
    )


def candle_point(candle: Candle) -> Point:
    point = _pair_tags(Point("candle"), candle).tag("interval", interval_name(candle.interval_s))
    _optional_fields(point, candle, ("open", "high", "low", "close", "volume"))
    return point.time(candle.open_time_s * NS, WritePrecision.NS)


def ticker_point(ticker: Ticker) -> Point:
    point = Point("ticker").tag("exchange", ticker.exchange).tag("pair", str(ticker.pair))
    fields = ("last", "bid", "ask", "open", "high", "low", "volume", "vwap", "change_24h_pct")
    return _optional_fields(point, ticker, fields).time(ticker.time_ns, WritePrecision.NS)


def asset_point(asset: Asset) -> Point:
    point = Point("asset").tag("symbol", asset.symbol)
    for name in ("name", "type", "logo_url"):
        value = getattr(asset, name)
        if value is not None:
            point.field(name, value)
    if asset.decimals is not None:
        point.field("decimals", asset.decimals)
    if asset.available_supply is not None:
        point.field("available_supply", float(asset.available_supply))
    return point.time(asset.time_ns, WritePrecision.NS)


@dataclass(frozen=True)
class PointParts:
    """A valuation point before it becomes line protocol: what recompute compares with what is stored."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, float | str], ...]  # sorted by name; unknown figures are absent
    time_ns: int

    @property
    def key(self) -> tuple:
        return self.measurement, self.tags, self.time_ns


POSITION_FIELDS = ("quantity", "price", "value", "cost_basis", "unrealized_pnl", "realized_pnl", "pnl_pct")
PORTFOLIO_FIELDS = ("value", "cost_basis", "unrealized_pnl", "realized_pnl", "pnl_pct")


def valuation_parts(record: Transaction | Position | PortfolioValue) -> PointParts:
    if isinstance(record, Transaction):
        measurement, tags = "transaction", (("asset", record.asset), ("kind", record.kind))
        names = ("quantity", "price", "fee", "currency", "note")
    elif isinstance(record, Position):
        measurement, tags, names = "position", (("asset", record.asset),), POSITION_FIELDS
    else:
        measurement, tags, names = "portfolio", (), PORTFOLIO_FIELDS
    fields = []
    for name in sorted(names):
        value = getattr(record, name)
        if value is not None:  # an unknown figure is left out, never written as 0
            fields.append((name, float(value) if isinstance(value, Decimal) else value))
    return PointParts(measurement, tags, tuple(fields), record.time_ns)


def valuation_point(record: Transaction | Position | PortfolioValue) -> Point:
    parts = valuation_parts(record)
    point = Point(parts.measurement)
    for name, value in parts.tags:
        point.tag(name, value)
    for name, value in parts.fields:
        point.field(name, value)
    return point.time(parts.time_ns, WritePrecision.NS)


def _optional_fields(point: Point, record, names: tuple[str, ...]) -> Point:
    """Decimal fields as floats; a None (unknown) field is left out, never written as 0."""
    for name in names:
        value = getattr(record, name)
        if value is not None:
            point.field(name, float(value))
    return point


def health_point(
    exchange: str, values: dict[str, int | float | Decimal], time_ns: int | None = None
) -> Point:
    """A `collector` sample, stamped now unless `time_ns` says when it was taken."""
    point = Point("collector").tag("exchange", exchange)
    for name, value in sorted(values.items()):
        point.field(name, float(value) if isinstance(value, Decimal) else value)
    return point.time(time.time_ns() if time_ns is None else time_ns, WritePrecision.NS)


def interval_name(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# measurement -> bucket kind, per docs/data-contract.md; valuations name their own (hourly history or live samples)
BUCKET_OF = {Trade: "live", Candle: "history", Ticker: "meta", Asset: "meta", Transaction: "meta"}
POINT_OF = {
    Trade: trade_point,
    Candle: candle_point,
    Ticker: ticker_point,
    Asset: asset_point,
    Transaction: valuation_point,
    Position: valuation_point,
    PortfolioValue: valuation_point,
}


def to_line(record) -> tuple[str, str]:
    """(bucket kind, line protocol) of a record. Trades, candles and valuations, the bulk, skip the Point (lines.py)."""
    kind = type(record)
    if kind is Trade:
        return "live", trade_line(record)
    if kind is Candle:
        return "history", candle_line(record, interval_name(record.interval_s))
    bucket = record.bucket if kind in (Position, PortfolioValue) else BUCKET_OF[kind]
    if POINT_OF[kind] is valuation_point:  # a recompute writes them by the hundred thousand
        parts = valuation_parts(record)
        return bucket, parts_line(parts.measurement, parts.tags, parts.fields, parts.time_ns)
    return bucket, POINT_OF[kind](record).to_line_protocol()
