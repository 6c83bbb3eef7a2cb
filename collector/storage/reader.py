"""What the collector reads back: where the stored history ends, for incremental backfill and gap fill."""

from datetime import UTC, datetime

from collector.config import Buckets, Pair
from collector.influx_settings import InfluxSettings
from collector.records import LastTrade
from collector.storage.current_token import CurrentTokenClient
from collector.storage.points import interval_name

# OSS InfluxDB has no query parameters: values enter as escaped Flux string literals (see flux_string).
LAST_CANDLE = """
from(bucket: {bucket})
  |> range(start: time(v: {since}))
  |> filter(fn: (r) => r._measurement == "candle" and r._field == "close")
  |> filter(fn: (r) => r.exchange == {exchange} and r.pair == {pair} and r.interval == {interval})
  |> last()
"""

LAST_TRADES = """
from(bucket: {bucket})
  |> range(start: time(v: {since}))
  |> filter(fn: (r) => r._measurement == "trade" and r._field == "trade_id" and r.exchange == {exchange})
  |> group(columns: ["pair"])
  |> last()
"""  # range, filter, group and last() are all pushed down to storage: cheap over the live bucket's 90 days


def flux_string(value: str) -> str:
    """A Flux string literal: backslashes, quotes and ${ interpolation escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def rfc3339_ns(ns: int) -> str:
    """An RFC 3339 time with nanoseconds, as Flux's time() and the delete API read it."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def flux_query(template: str, **values: str) -> str:
    return template.format(**{key: flux_string(value) for key, value in values.items()})


# Shorter than the 10 s a stop may take: a query still running at SIGTERM ends before the process must.
READ_TIMEOUT_S = 5.0


class Reader:
    def __init__(self, settings: InfluxSettings, buckets: Buckets, timeout_s: float = READ_TIMEOUT_S):
        self.buckets = buckets
        self._client = CurrentTokenClient(settings, timeout_s)

    def last_candle_open_s(self, exchange: str, pair: Pair, interval_s: int, since_s: int) -> int | None:
        query = flux_query(
            LAST_CANDLE,
            bucket=self.buckets.history,
            since=_rfc3339(since_s),
            exchange=exchange,
            pair=str(pair),
            interval=interval_name(interval_s),
        )
        times = [record.get_time() for table in self._client.query(query) for record in table]
        return int(max(times).timestamp()) if times else None

    def last_trades(self, exchange: str, since_s: int = 0) -> dict[Pair, LastTrade]:
        """Each pair's last stored trade (its time and id); by default over the whole live bucket (its
        retention bounds it). Trade ids go up with time, so the last point holds the highest id."""
        query = flux_query(LAST_TRADES, bucket=self.buckets.live, since=_rfc3339(since_s), exchange=exchange)
        result: dict[Pair, LastTrade] = {}
        for table in self._client.query(query):
            for record in table:
                stored_id = record.get_value()
                trade_id = int(stored_id) if isinstance(stored_id, str) and stored_id.isdigit() else None
                result[Pair.parse(record.values["pair"])] = LastTrade(
                    int(record.get_time().timestamp()), trade_id
                )
        return result

    def close(self) -> None:
        self._client.close()


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
