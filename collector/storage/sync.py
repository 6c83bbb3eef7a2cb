"""Make a span of stored valuation points equal to a computed set, touching only what differs.

Recompute compares what it computed with what is stored: a point whose fields are the same is not written again, a
changed one is rewritten, and a stored point that is no longer computed (a removed lot or asset) is deleted through
InfluxDB's delete API. Running it twice therefore writes nothing the second time.
"""

from collections import defaultdict
from dataclasses import dataclass

from collector.config import Buckets
from collector.influx_settings import InfluxSettings
from collector.storage.points import valuation_parts
from collector.storage.reader import flux_string, rfc3339_ns

STORED = """
from(bucket: {bucket})
  |> range(start: time(v: {start}), stop: time(v: {stop}))
  |> filter(fn: (r) => contains(value: r._measurement, set: {measurements}))
  |> map(fn: (r) => ({{r with _ns: int(v: r._time)}}))
"""

FIRST = """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => contains(value: r._measurement, set: {measurements}))
  |> first()
  |> map(fn: (r) => ({{r with _ns: int(v: r._time)}}))
"""

_NOT_TAGS = {"result", "table"}


@dataclass(frozen=True)
class SyncResult:
    written: int = 0
    deleted: int = 0  # stored points removed (stale, or rewritten without a field they had)

    def __add__(self, other: "SyncResult") -> "SyncResult":
        return SyncResult(self.written + other.written, self.deleted + other.deleted)


class PointSync:
    def __init__(self, settings: InfluxSettings, buckets: Buckets, timeout_s: float = 60):
        self.settings = settings
        self.buckets = buckets
        self._client = settings.client(timeout_s)
        self._query = self._client.query_api()
        self._delete = self._client.delete_api()

    def first_ns(self, kind: str, measurements: tuple[str, ...]) -> int | None:
        """The time of the oldest stored point of these measurements, if any."""
        query = FIRST.format(
            bucket=flux_string(getattr(self.buckets, kind)), measurements=_flux_set(measurements)
        )
        times = [record.values["_ns"] for table in self._query.query(query) for record in table]
        return min(times) if times else None

    def stored(
        self, kind: str, measurements: tuple[str, ...], start_ns: int, stop_ns: int
    ) -> dict[tuple, tuple]:
        """key (measurement, tags, time ns) -> fields, sorted by name, of the stored points in [start, stop)."""
        query = STORED.format(
            bucket=flux_string(getattr(self.buckets, kind)),
            start=flux_string(rfc3339_ns(start_ns)),
            stop=flux_string(rfc3339_ns(stop_ns)),
            measurements=_flux_set(measurements),
        )
        points: dict[tuple, dict] = defaultdict(dict)
        for table in self._query.query(query):
            for record in table:
                values = record.values
                tags = tuple(
                    sorted((k, v) for k, v in values.items() if not k.startswith("_") and k not in _NOT_TAGS)
                )
                points[(record.get_measurement(), tags, values["_ns"])][record.get_field()] = (
                    record.get_value()
                )
        return {key: tuple(sorted(fields.items())) for key, fields in points.items()}

    def sync(
        self, kind: str, measurements: tuple[str, ...], records, start_ns: int, stop_ns: int, submit
    ) -> SyncResult:
        """Store exactly `records` (of `measurements`, all in [start, stop)) in that span of bucket `kind`."""
        stored = self.stored(kind, measurements, start_ns, stop_ns)
        computed = {}
        for record in records:
            parts = valuation_parts(record)
            computed[parts.key] = (record, parts)
        to_delete = [key for key in stored if key not in computed]
        changed = []
        for key, (record, parts) in computed.items():
            old = stored.get(key)
            if old == parts.fields:
                continue
            if old is not None and {name for name, _ in old} - {name for name, _ in parts.fields}:
                to_delete.append(key)  # a field that is now unknown must not survive the rewrite
            changed.append(record)
        deleted = self._delete_points(kind, stored, set(to_delete))
        submit(changed)
        return SyncResult(written=len(changed), deleted=deleted)

    def _delete_points(self, kind: str, stored: dict[tuple, tuple], doomed: set[tuple]) -> int:
        """One delete call per run of consecutive doomed points of a series (a delete takes a time range)."""
        series: dict[tuple, list[int]] = defaultdict(list)
        for measurement, tags, time_ns in stored:
            series[(measurement, tags)].append(time_ns)
        for (measurement, tags), times in series.items():
            run: list[int] = []
            for time_ns in sorted(times) + [None]:
                if time_ns is not None and (measurement, tags, time_ns) in doomed:
                    run.append(time_ns)
                    continue
                if run:
                    self._delete_range(kind, measurement, tags, run[0], run[-1])
                    run = []
        return len(doomed)

    def _delete_range(self, kind: str, measurement: str, tags: tuple, first_ns: int, last_ns: int) -> None:
        predicate = " AND ".join(
            f"{name}={flux_string(value)}" for name, value in (("_measurement", measurement), *tags)
        )
        self._delete.delete(
            rfc3339_ns(first_ns),
            rfc3339_ns(last_ns),  # both ends are inclusive
            predicate,
            bucket=getattr(self.buckets, kind),
            org=self.settings.org,
        )

    def close(self) -> None:
        self._client.close()


def _flux_set(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(map(flux_string, values)) + "]"
