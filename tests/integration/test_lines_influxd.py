"""The hot path's line protocol (collector/storage/lines.py) in the real influxd: an exchange's exact decimal (up to
15 significant digits, any scale) reads back as itself, both as the client's float and as the text of the CSV
Grafana gets, and the odd tag values land as the tags they were."""

import random
import time
from decimal import Decimal

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from collector.config import Pair
from collector.records import Trade
from collector.storage.points import to_line

EDGES = [
    "0.00000001",
    "1E-8",
    "0.000000000000001",
    "123456789012345",
    "999999999999999",
    "0.999999999999999",
    "43000.12",
    "1E+20",
    "12345678901234.5",
    "0.1",
    "100000",
    "0",
    "-0",
    "7.0E-15",
]


def _exact_values(count: int) -> list[Decimal]:
    """Random prices and amounts as exchanges send them: 1 to 15 significant digits, scales 1e-20 to 1e+10."""
    rng = random.Random(11)
    values = []
    for _ in range(count):
        digits = str(rng.randrange(1, 10 ** rng.randint(1, 15)))
        values.append(Decimal(digits).scaleb(rng.randint(-20, 10)))
    return values


def test_exact_decimals_written_as_lines_read_back_from_influxd_as_themselves(collector_settings):
    values = [Decimal(text) for text in EDGES] + _exact_values(400)
    start_ns = (time.time_ns() // 10**9 - 3600) * 10**9
    # a pair no config allows: the cached, escaped series key still lands (a trailing backslash would not: influxdb-
    # client, Point included, writes it as an escaped space)
    pair = Pair("B,T C", "U=S\\D")
    trades = [
        Trade(
            "bitstamp", pair, 1000 + i, price, values[-1 - i], "buy" if i % 2 else "sell", start_ns + i * 1000
        )
        for i, price in enumerate(values)
    ]
    settings = collector_settings
    with InfluxDBClient(url=settings.url, token=settings.token, org=settings.org, timeout=30_000) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            "crypto_live", record=[to_line(t)[1] for t in trades]
        )
        flux = (
            'from(bucket: "crypto_live") |> range(start: 0) |> filter(fn: (r) => r._measurement == "trade") '
            '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group()'
        )
        rows = [record.values for table in client.query_api().query(flux) for record in table.records]
        csv_rows = list(client.query_api().query_csv(flux))
    assert {(row["pair"], row["base"], row["quote"]) for row in rows} == {("B,T C-U=S\\D", "B,T C", "U=S\\D")}
    stored = {int(row["trade_id"]): (row["price"], row["amount"], row["side"]) for row in rows}
    expected = {t.trade_id: (t.price, t.amount, t.side) for t in trades}
    assert stored.keys() == expected.keys()
    wrong = {
        trade_id: (stored[trade_id], expected[trade_id])
        for trade_id in expected
        if (Decimal(repr(stored[trade_id][0])), Decimal(repr(stored[trade_id][1])), stored[trade_id][2])
        != expected[trade_id]
    }
    assert not wrong
    header = next(row for row in csv_rows if "price" in row and "trade_id" in row)
    texts = {
        int(row[header.index("trade_id")]): (
            Decimal(row[header.index("price")]),
            Decimal(row[header.index("amount")]),
        )
        for row in csv_rows
        if len(row) == len(header) and row[header.index("trade_id")].isdigit()
    }
    assert texts == {trade_id: value[:2] for trade_id, value in expected.items()}
