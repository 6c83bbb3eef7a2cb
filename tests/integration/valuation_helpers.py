"""Seeding candles and reading valuation points back, for the portfolio tests (through the collector's own Writer)."""

from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from influxdb_client import InfluxDBClient

from collector.config import Buckets, Pair
from collector.records import Candle
from collector.storage.reader import flux_query
from collector.storage.spool import Spool
from collector.storage.writer import Writer
from tests.integration.harness import FAST


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def hourly_candles(pair: str, first_open: str, closes: list[str], exchange: str = "bitstamp") -> list[Candle]:
    """Hourly candles opening at `first_open`, one per close; open/high/low are the close (only closes matter)."""
    start = int(at(first_open).timestamp())
    return [
        Candle(
            exchange,
            Pair.parse(pair),
            3600,
            start + 3600 * i,
            Decimal(c),
            Decimal(c),
            Decimal(c),
            Decimal(c),
            Decimal(1),
        )
        for i, c in enumerate(closes)
    ]


@contextmanager
def writer(settings, tmp_path):
    """The collector's Writer, flushed and closed at the end."""
    instance = Writer(settings, Buckets(), Spool(tmp_path / "seed-spool"), replace(FAST.writer))
    instance.start()
    try:
        yield instance
        assert instance.flush(20), "the writer did not flush"
    finally:
        instance.close()


def seed(settings, tmp_path, records) -> None:
    with writer(settings, tmp_path) as instance:
        instance.submit(records)


def stored_points(client: InfluxDBClient, org: str, measurement: str, bucket: str = "crypto_history") -> dict:
    """{(asset or "", ISO time): {field: value}} of every stored point of the measurement."""
    query = flux_query(
        """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == {measurement})
""",
        bucket=bucket,
        measurement=measurement,
    )
    points: dict = {}
    for table in client.query_api().query(query, org=org):
        for record in table:
            key = (record.values.get("asset", ""), record.get_time().strftime("%Y-%m-%dT%H:%M:%SZ"))
            points.setdefault(key, {})[record.get_field()] = record.get_value()
    return points
