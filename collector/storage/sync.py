"""Make a span of stored valuation points equal to a computed set, touching only what differs.

Recompute compares what it computed with what is stored: a point whose fields are the same is not written again, a
changed one is rewritten, and a stored point that is no longer computed (a removed lot or asset) is deleted through
InfluxDB's delete API. Running it twice therefore writes nothing the second time.
"""

from collections import defaultdict
from dataclasses import dataclass

from influxdb_client import Dialect

from collector.config import Buckets
from collector.influx_settings import InfluxSettings
from collector.storage.current_token import CurrentTokenClient
from collector.storage.points import valuation_parts
from collector.storage.reader import flux_string, rfc3339_ns

# one row per point (pivot), read as plain CSV: the client's per-record objects cost more than the query
STORED = """
from(bucket: {bucket})
  |> range(start: time(v: {start}), stop: time(v: {stop}))
  |> filter(fn: (r) => {measurements})
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({{r with _ns: int(v: r._time)}}))
  |> drop(columns: ["_start", "_stop", "_time"])
"""
CSV_DIALECT = Dialect(header=True, annotations=["datatype", "group"])

# a plain equality filter and a bare first() are pushed down to the storage engine
FIRST = """
from(bucket: {bucket})
  |> range(start: 0)
  |> filter(fn: (r) => {measurements})
  |> first()
  |> map(fn: (r) => ({{r with _ns: int(v: r._time)}}))
"""

# the bucket's retention in ns (0: forever), from InfluxDB's own catalogue of buckets
RETENTION = """
buckets()
  |> filter(fn: (r) => r.name == {bucket})
  |> keep(columns: ["retentionPeriod"])
"""

_NOT_COLUMNS = {"", "result", "table", "_measurement", "_ns"}


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
        self._client = CurrentTokenClient(settings, timeout_s)
        self._query = self._delete = self._client  # its query(), query_csv() and delete() are the client's
        self._retention_ns: dict[str, int] = {}

    def retention_ns(self, kind: str) -> int:
        """How long the bucket of that kind keeps a point (0: forever); read once."""
        if kind not in self._retention_ns:
            query = RETENTION.format(bucket=flux_string(getattr(self.buckets, kind)))
            periods = [
                record.values["retentionPeriod"] for table in self._query.query(query) for record in table
            ]
            self._retention_ns[kind] = int(periods[0]) if periods else 0
        return self._retention_ns[kind]

    def first_ns(self, kind: str, measurements: tuple[str, ...]) -> int | None:
        """The time of the oldest stored point of these measurements, if any."""
        query = FIRST.format(
            bucket=flux_string(getattr(self.buckets, kind)), measurements=_measurement_filter(measurements)
        )
        times = [record.values["_ns"] for table in self._query.query(query) for record in table]
        return min(times) if times else None

    def stored(
        self,
        kind: str,
        measurements: tuple[str, ...],
        start_ns: int,
        stop_ns: int,
        series: tuple | None = None,
    ) -> dict[tuple, tuple]:
        """key (measurement, tags, time ns) -> fields, sorted by name, of the stored points in [start, stop) (of
        only those `series`, (measurement, tags) each, when given)."""
        query = STORED.format(
            bucket=flux_string(getattr(self.buckets, kind)),
            start=flux_string(rfc3339_ns(start_ns)),
            stop=flux_string(rfc3339_ns(stop_ns)),
            measurements=_measurement_filter(measurements) if series is None else _series_filter(series),
        )
        points = {}
        for measurement, tags, time_ns, fields in _points(self._query.query_csv(query, dialect=CSV_DIALECT)):
            points[(measurement, tags, time_ns)] = fields
        return points

    def sync(
        self,
        kind: str,
        measurements: tuple[str, ...],
        records,
        start_ns: int,
        stop_ns: int,
        submit,
        series: tuple | None = None,
    ) -> SyncResult:
        """Store exactly `records` (of `measurements`, all in [start, stop)) in that span of bucket `kind`; with
        `series` ((measurement, tags) each), the records are of those series only and no other is read or touched."""
        stored = self.stored(kind, measurements, start_ns, stop_ns, series)
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
                    self.delete_range(kind, measurement, tags, run[0], run[-1])
                    run = []
        return len(doomed)

    def delete_range(self, kind: str, measurement: str, tags: tuple, first_ns: int, last_ns: int) -> None:
        """Every point of one series (measurement and tags) from `first` to `last`, both included."""
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


def _measurement_filter(measurements: tuple[str, ...]) -> str:
    """A filter predicate for these measurements (equalities, which the storage engine can apply itself)."""
    return " or ".join(f"r._measurement == {flux_string(name)}" for name in measurements)


def _series_filter(series: tuple) -> str:
    """A filter predicate for these series, (measurement, tags) each."""
    return " or ".join(
        "("
        + " and ".join(
            [f"r._measurement == {flux_string(measurement)}"]
            + [f"r[{flux_string(name)}] == {flux_string(value)}" for name, value in tags]
        )
        + ")"
        for measurement, tags in series
    )


def _points(rows):
    """(measurement, tags, time ns, fields sorted by name) from annotated CSV of pivoted tables: group-key
    columns are the tags, the others the fields (an empty cell is a field the point does not have)."""
    types = groups = header = None
    for row in rows:
        if not row or not any(row):
            header = None  # a blank line ends a table; the next one brings its own annotations
        elif row[0] == "#datatype":
            types, header = row, None
        elif row[0] == "#group":
            groups = row
        elif header is None:
            header = row
        else:
            tags, fields = [], []
            for name, cell, kind, grouped in zip(header, row, types, groups, strict=True):
                if name in _NOT_COLUMNS:
                    continue
                if grouped == "true":
                    tags.append((name, cell))
                elif cell != "":
                    # the CSV of a query ends a line inside a text cell with \r\n: a note's line breaks were \n
                    fields.append((name, float(cell) if kind == "double" else cell.replace("\r\n", "\n")))
            measurement = row[header.index("_measurement")]
            yield measurement, tuple(sorted(tags)), int(row[header.index("_ns")]), tuple(sorted(fields))
