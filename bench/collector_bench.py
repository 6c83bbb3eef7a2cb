"""Prints how fast the collector's hot path is: Bitstamp messages -> records -> line protocol, and the writer
into a real influxd (the one `make influxd` builds). Run with `make bench`."""

import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.bootstrap import Bootstrap  # noqa: E402
from collector.config import Buckets, ExchangeConfig, Pair  # noqa: E402
from collector.exchanges.bitstamp import Bitstamp  # noqa: E402
from collector.influx_settings import InfluxSettings  # noqa: E402
from collector.storage.points import to_line  # noqa: E402
from collector.storage.spool import Spool  # noqa: E402
from collector.storage.writer import Writer, WriterOptions  # noqa: E402
from tests.influxd import InfluxServer  # noqa: E402

MESSAGES = 200_000


def messages(count: int) -> list[str]:
    now_us = time.time_ns() // 1000
    return [
        json.dumps(
            {
                "data": {
                    "id": 300_000_000 + i,
                    "timestamp": str((now_us + i * 1000) // 1_000_000),
                    "amount": 0.0792,
                    "amount_str": "0.07920000",
                    "price": 43805.44,
                    "price_str": f"{43805 + i % 100}.44",
                    "type": i % 2,
                    "microtimestamp": str(now_us + i * 1000),
                },
                "channel": "live_trades_btcusd",
                "event": "trade",
            }
        )
        for i in range(count)
    ]


def bench_parse(raw: list[str]) -> list[tuple[str, str]]:
    adapter = Bitstamp(ExchangeConfig("bitstamp", (Pair("BTC", "USD"),)))
    adapter.subscribe_messages([Pair("BTC", "USD")])
    started = time.perf_counter()
    lines = [to_line(trade) for message in raw for trade in adapter.parse(message).trades]
    elapsed = time.perf_counter() - started
    tracemalloc.start()  # a second pass for memory: tracing slows the first one down several times
    [to_line(trade) for message in raw for trade in adapter.parse(message).trades]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"parse+points: {len(raw) / elapsed:,.0f} messages/s ({elapsed * 1e6 / len(raw):.1f} us each); "
        f"peak traced memory {peak / 2**20:.1f} MiB for {len(raw):,} points"
    )
    return lines


def bench_writer(lines: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxServer(Path(tmp) / "influxd")
        server.start()
        server.onboard()
        try:
            admin = InfluxSettings(server.url, server.org, server.admin_token)
            Bootstrap(admin, Buckets(), Path(tmp) / "secrets", report=lambda line: None).run()
            # the whole burst fits in memory: this measures writing, not the overflow into the spool
            options = WriterOptions(flush_interval_s=0.2, queue_limit=len(lines))
            writer = Writer(admin, Buckets(), Spool(Path(tmp) / "spool"), options)
            writer.start()
            started = time.perf_counter()
            for kind, line in lines:
                writer.submit_line(kind, line)
            writer.close(timeout_s=300)
            elapsed = time.perf_counter() - started
            stats = writer.stats
            print(
                f"writer: {stats.written_points / elapsed:,.0f} points/s into influxd "
                f"({stats.written_points:,} points in {elapsed:.1f} s, batches of 5000, "
                f"last batch {stats.write_latency_ms:.0f} ms, spooled {stats.spool_points})"
            )
        finally:
            server.remove()


if __name__ == "__main__":
    raw = messages(MESSAGES)
    lines = bench_parse(raw)
    bench_writer(lines)
