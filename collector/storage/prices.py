"""Prices read back from InfluxDB for valuation: candle closes (history, `--at`) and the latest trades (live).

A candle's close is the price at the candle's *close* time (open time + interval), so the price at a moment t is the
close of the latest candle that had closed by t: a candle still open at t is never used.
"""

from datetime import datetime
from decimal import Decimal

import urllib3
from influxdb_client import Dialect
from influxdb_client.rest import ApiException

from collector.config import Buckets, Pair
from collector.errors import RuntimeFailure
from collector.influx_settings import InfluxSettings, api_error_message
from collector.storage.current_token import CurrentTokenClient
from collector.storage.points import interval_name
from collector.storage.reader import flux_query, rfc3339_ns

NS = 1_000_000_000

CLOSES = """
from(bucket: {bucket})
  |> range(start: time(v: {start}), stop: time(v: {stop}))
  |> filter(fn: (r) => r._measurement == "candle" and r._field == "close")
  |> filter(fn: (r) => r.exchange == {exchange} and r.pair == {pair} and r.interval == {interval})
  |> keep(columns: ["_time", "_value"])
  |> sort(columns: ["_time"])
"""

# per 30 days of candle times, the count and the sum of the closes: a recompute compares them with the last one's
# to tell which spans of a pair's closes changed (aggregateWindow with count or sum is pushed down to storage)
CLOSE_DIGEST = """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "candle" and r._field == "close")
  |> filter(fn: (r) => r.exchange == {exchange} and r.pair == {pair} and r.interval == {interval})
  |> aggregateWindow(every: 30d, fn: AGGREGATE, createEmpty: false, timeSrc: "_start")
"""
DIGEST_AGGREGATES = ("count", "sum")

PLAIN_CSV = Dialect(header=True, annotations=[])  # a header row per table, no annotation rows

LAST_CLOSE = """
from(bucket: {bucket})
  |> range(start: 0, stop: time(v: {stop}))
  |> filter(fn: (r) => r._measurement == "candle" and r._field == "close")
  |> filter(fn: (r) => r.exchange == {exchange} and r.pair == {pair} and r.interval == {interval})
  |> last()
"""

# one table per series (pair, and side for trades): last() is pushed down to the storage engine
LAST_CLOSES = """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "candle" and r._field == "close")
  |> filter(fn: (r) => r.exchange == {exchange} and r.interval == {interval})
  |> last()
"""

LAST_TICKERS = """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "ticker" and r._field == "last" and r.exchange == {exchange})
  |> last()
"""

LAST_TRADES = """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "trade" and r._field == "price" and r.exchange == {exchange})
  |> last()
"""


def decimal_from_float(value: float) -> Decimal:
    """The shortest decimal that round-trips the stored float: the exchange's own string for a price like 30000.01."""
    exact = Decimal(repr(float(value)))
    text = format(exact, "f")
    return Decimal(text[:-2] if text.endswith(".0") else text)


class StoredPrices:
    """Candle closes and trade prices of one exchange's pairs, as stored (only `storage/` knows InfluxDB)."""

    def __init__(self, settings: InfluxSettings, buckets: Buckets, interval_s: int, timeout_s: float = 30):
        self.url = settings.url
        self.buckets = buckets
        self.interval_s = interval_s
        self._query = CurrentTokenClient(settings, timeout_s)

    def closes(self, exchange: str, pair: Pair, start_ns: int, stop_ns: int) -> list[tuple[int, Decimal]]:
        """(close time ns, close) of every candle that closed in [start, stop), oldest first."""
        interval_ns = self.interval_s * NS
        query = self._flux(
            CLOSES,
            start=rfc3339_ns(start_ns - interval_ns),
            stop=rfc3339_ns(stop_ns - interval_ns),
            exchange=exchange,
            pair=str(pair),
        )
        # read as plain CSV: a month of a pair's closes per query, the client's per-record objects cost more
        return [
            (_csv_ns(moment) + interval_ns, decimal_from_float(float(value)))
            for moment, value in self._read(
                lambda: _columns(self._query.query_csv(query, dialect=PLAIN_CSV), "_time", "_value")
            )
        ]

    def close_at(self, exchange: str, pair: Pair, at_ns: int) -> tuple[int, Decimal] | None:
        """(close time ns, close) of the latest candle closed at or before `at`, or None."""
        interval_ns = self.interval_s * NS
        query = self._flux(
            LAST_CLOSE, stop=rfc3339_ns(at_ns - interval_ns + 1), exchange=exchange, pair=str(pair)
        )
        rows = [
            (_ns(record) + interval_ns, decimal_from_float(record.get_value()))
            for record in self._rows(query)
        ]
        return max(rows) if rows else None

    def close_digest(self, exchange: str, pair: Pair) -> dict[int, tuple]:
        """Per 30-day window of candle open times (its start, ns): (count, sum) of the stored closes."""
        digest: dict[int, tuple] = {}
        for aggregate in DIGEST_AGGREGATES:  # a function name, not a string: set in before the values
            query = self._flux(
                CLOSE_DIGEST.replace("AGGREGATE", aggregate), exchange=exchange, pair=str(pair)
            )
            for record in self._rows(query):
                window = _ns(record)
                digest[window] = (*digest.get(window, ()), record.get_value())
        return digest

    def latest(self, exchange: str, tickers: bool = False) -> dict[Pair, tuple[int, Decimal]]:
        """Per pair: the most recent of its latest trade and its latest candle close (and, with `tickers`, its
        latest ticker: a source without trades, such as CoinGecko), as (time ns, price)."""
        interval_ns = self.interval_s * NS
        found: dict[Pair, tuple[int, Decimal]] = {}
        queries = [
            (self._flux(LAST_CLOSES, exchange=exchange), interval_ns),
            (flux_query(LAST_TRADES, bucket=self.buckets.live, exchange=exchange), 0),
        ]
        if tickers:
            queries.append((flux_query(LAST_TICKERS, bucket=self.buckets.meta, exchange=exchange), 0))
        for query, shift_ns in queries:
            for record in self._rows(query):
                pair = Pair.parse(record.values["pair"])
                candidate = (_ns(record) + shift_ns, decimal_from_float(record.get_value()))
                if pair not in found or candidate[0] > found[pair][0]:
                    found[pair] = candidate
        return found

    def _flux(self, template: str, **values: str) -> str:
        return flux_query(
            template, bucket=self.buckets.history, interval=interval_name(self.interval_s), **values
        )

    def _rows(self, query: str):
        return self._read(lambda: [record for table in self._query.query(query) for record in table])

    def _read(self, read):
        try:
            return read()
        except ApiException as exc:
            raise RuntimeFailure(
                f"cannot read prices from InfluxDB: HTTP {exc.status} {api_error_message(exc)}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RuntimeFailure(
                f"cannot read prices from InfluxDB at {self.url}: {exc.__class__.__name__}"
            ) from exc

    def close(self) -> None:
        self._query.close()


def _ns(record) -> int:
    moment = record.get_time()
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def _columns(rows, *names: str) -> list[tuple[str, ...]]:
    """These columns of every data row of a query's CSV (each table repeats its header; a blank line ends one)."""
    found, header, indexes = [], None, None
    for row in rows:
        if not row or not any(row):
            header = None
        elif "error" in row[:2] and "reference" in row:  # influxd's error met after it began to answer
            header, indexes = row, None
        elif header is None:
            header, indexes = row, [row.index(name) for name in names] if set(names) <= set(row) else None
        elif indexes is None or len(row) != len(header):
            raise RuntimeFailure(
                f"cannot read prices from InfluxDB: the query failed: {','.join(row).strip(',')}"
            )
        else:
            found.append(tuple(row[index] for index in indexes))
    return found


def _csv_ns(moment: str) -> int:
    """RFC 3339 time of a CSV cell (whole seconds, as candle times are) in ns."""
    return int(datetime.fromisoformat(moment).timestamp()) * NS
