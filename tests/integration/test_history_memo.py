"""A recompute from the last one's memo, in the real influxd, over several 30-day windows: an edit of one lot
rewrites exactly the points it changes, a corrected close exactly the hour it prices, and what is stored afterwards is
what a full recompute computes (it then writes and deletes nothing)."""

import time
from datetime import UTC, datetime

import pytest
from influxdb_client import BucketRetentionRules

from collector.config import Buckets, parse_config
from collector.errors import RuntimeFailure
from collector.portfolio.history import HistoryRecompute, HistoryResult
from collector.portfolio.memo import HistoryMemo
from collector.portfolio.work import PortfolioWork
from collector.records import Position, Transaction
from collector.storage.prices import StoredPrices, _columns
from collector.storage.sync import PointSync
from tests.integration.valuation_helpers import at, hourly_candles, seed, stored_points, writer

NOW_NS = int(at("2026-03-12T04:20:00Z").timestamp()) * 1_000_000_000  # 70 days after the first candle
PAIRS = "exchanges:\n  bitstamp:\n    pairs: [BTC-USD, ETH-USD, LTC-USD]\n"
HOURS = 70 * 24 + 5  # candles opening 2026-01-01 00:00 … 2026-03-12 04:00


def _closes(base: int, step: int) -> list[str]:
    """A price that moves every hour, with cents, so that every hour's figures differ."""
    return [f"{base + (hour * step) % 97}.{hour % 100:02d}" for hour in range(HOURS)]


def _holdings(eth_lot_price: str) -> str:
    return (
        "holdings:\n"
        "  BTC:\n"
        "    - {date: 2026-01-01T05:00:00Z, kind: buy, quantity: '1.5', price: '30000', fee: '12.34'}\n"
        "    - {date: 2026-02-10T07:30:00Z, kind: sell, quantity: '0.5', price: '31000.01'}\n"
        "  ETH:\n"
        "    - {date: 2026-01-06T00:00:00Z, kind: buy, quantity: '2', price: '2000'}\n"
        # the lot the test edits, 50 days in, half past an hour: from 11:00 on its cost basis counts
        f"    - {{date: 2026-02-20T10:30:00Z, kind: buy, quantity: '0.3', price: '{eth_lot_price}'}}\n"
        "  LTC:\n"
        "    - {date: 2026-01-11T00:00:00Z, kind: buy, quantity: '10.123', price: '70.07'}\n"
    )


def _recompute(
    settings, tmp_path, eth_lot_price: str, memo: HistoryMemo | None, written: list
) -> HistoryResult:
    config = parse_config(PAIRS + _holdings(eth_lot_price), "p.yml")
    store, sync = StoredPrices(settings, Buckets(), 3600), PointSync(settings, Buckets())
    try:
        with writer(settings, tmp_path) as instance:

            def submit(records):
                written.extend(records)
                instance.submit(records)

            return HistoryRecompute(config, store, sync, submit).run(now_ns=NOW_NS, memo=memo)
    finally:
        store.close()
        sync.close()


def _seed_prices(settings, tmp_path) -> None:
    seed(
        settings,
        tmp_path,
        hourly_candles("BTC-USD", "2026-01-01T00:00:00Z", _closes(30000, 13))
        + hourly_candles("ETH-USD", "2026-01-01T00:00:00Z", _closes(2000, 7))
        + hourly_candles("LTC-USD", "2026-01-01T00:00:00Z", _closes(70, 3)),
    )


def _hour(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _keys(records) -> set:
    return {
        (type(r).__name__, getattr(r, "asset", ""), _hour(r.time_ns))
        for r in records
        if not isinstance(r, Transaction)
    }


def _hours_from(first: str, last: str) -> list[str]:
    start, stop = int(at(first).timestamp()), int(at(last).timestamp())
    return [_hour(t * 10**9) for t in range(start, stop + 1, 3600)]


def _assert_a_full_recompute_changes_nothing(settings, tmp_path, eth_lot_price: str) -> None:
    full = _recompute(settings, tmp_path, eth_lot_price, None, [])
    assert (full.hours.written, full.hours.deleted) == (0, 0)


def test_an_edit_and_a_corrected_close_rewrite_exactly_what_they_change(
    collector_settings, admin_client, tmp_path
):
    _seed_prices(collector_settings, tmp_path)
    first = _recompute(collector_settings, tmp_path, "2100", None, [])
    assert first.memo is not None and first.hours.written > 3 * 50 * 24

    unchanged: list = []
    again = _recompute(collector_settings, tmp_path, "2100", first.memo, unchanged)
    assert (again.hours.written, again.hours.deleted, unchanged) == (0, 0, [])

    # the lot's price: ETH's cost basis, so ETH's positions and the totals, differ from 11:00 that day to now
    rewritten: list = []
    edited = _recompute(collector_settings, tmp_path, "2110", again.memo, rewritten)
    hours = _hours_from("2026-02-20T11:00:00Z", "2026-03-12T04:00:00Z")
    assert _keys(rewritten) == {
        (kind, asset, hour) for kind, asset in (("Position", "ETH"), ("PortfolioValue", "")) for hour in hours
    }
    assert (edited.hours.written, edited.hours.deleted) == (2 * len(hours), 0)
    positions = stored_points(admin_client, collector_settings.org, "position")
    assert positions[("ETH", "2026-02-20T11:00:00Z")]["cost_basis"] == 4633.0  # 2 × 2000 + 0.3 × 2110
    _assert_a_full_recompute_changes_nothing(collector_settings, tmp_path, "2110")

    # a close corrected in the first window (the candle opening 2026-01-02 06:00 closes at 07:00): BTC's price at
    # that one hour, so its position and the total then
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-02T06:00:00Z", ["30123.45"]))
    corrected: list = []
    repriced = _recompute(collector_settings, tmp_path, "2110", edited.memo, corrected)
    assert _keys(corrected) == {
        ("Position", "BTC", "2026-01-02T07:00:00Z"),
        ("PortfolioValue", "", "2026-01-02T07:00:00Z"),
    }
    assert (repriced.hours.written, repriced.hours.deleted) == (2, 0)
    assert (
        stored_points(admin_client, collector_settings.org, "position")[("BTC", "2026-01-02T07:00:00Z")][
            "value"
        ]
        == 45185.18
    )  # 1.5 × 30123.45 = 45185.175, half up
    _assert_a_full_recompute_changes_nothing(collector_settings, tmp_path, "2110")


def test_a_removed_asset_is_deleted_and_the_totals_redone(collector_settings, admin_client, tmp_path):
    _seed_prices(collector_settings, tmp_path)
    first = _recompute(collector_settings, tmp_path, "2100", None, [])
    config = parse_config(PAIRS + _holdings("2100").split("  LTC:")[0], "p.yml")
    store, sync = StoredPrices(collector_settings, Buckets(), 3600), PointSync(collector_settings, Buckets())
    try:
        with writer(collector_settings, tmp_path) as instance:
            without = HistoryRecompute(config, store, sync, instance.submit).run(
                now_ns=NOW_NS, memo=first.memo
            )
        full = HistoryRecompute(config, store, sync, lambda records: None).run(now_ns=NOW_NS)
    finally:
        store.close()
        sync.close()
    ltc_hours = len(_hours_from("2026-01-11T00:00:00Z", "2026-03-12T04:00:00Z"))
    assert without.hours.deleted == ltc_hours  # LTC's positions
    assert without.hours.written == ltc_hours  # the totals of the hours LTC was held
    assert not {
        key for key in stored_points(admin_client, collector_settings.org, "position") if key[0] == "LTC"
    }
    assert (full.hours.written, full.hours.deleted) == (0, 0)


def test_points_the_writer_dropped_are_not_taken_as_stored(collector_settings, admin_client, tmp_path):
    """The writer drops a batch it cannot store (a 4xx, an unreadable spool segment) and counts it: the memo of the
    recompute whose points those were must not be trusted, or the lost hours stay missing until a restart."""
    now = time.time_ns()
    first_open = now - now % 3_600_000_000_000 - 3 * 86_400_000_000_000
    opens = _hour(first_open)
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", opens, _closes(30000, 13)[:80]))
    config = parse_config(
        PAIRS + f"holdings:\n  BTC:\n    - {{date: {opens}, kind: buy, quantity: '1.5', price: '30000'}}\n",
        "p.yml",
    )
    lost_hour = _hour(first_open + 24 * 3_600_000_000_000)
    lost = []
    with writer(collector_settings, tmp_path) as instance:

        def submit(records):  # what the writer dropped: BTC's position at one hour, the first time
            kept = [
                r for r in records if lost or not (isinstance(r, Position) and _hour(r.time_ns) == lost_hour)
            ]
            lost.extend(r for r in records if r not in kept)
            instance.submit(kept)

        work = PortfolioWork(collector_settings, config, submit)
        try:
            work.recompute(True, lost=0)
            assert lost, "no point was dropped"
            assert instance.flush(20)
            assert ("BTC", lost_hour) not in stored_points(admin_client, collector_settings.org, "position")
            work.recompute(True, lost=len(lost))  # the writer's count of lost points moved: a full recompute
            assert instance.flush(20)
        finally:
            work.close()
    assert ("BTC", lost_hour) in stored_points(admin_client, collector_settings.org, "position")


def _run(settings, tmp_path, config, memo: HistoryMemo | None, now_ns: int) -> HistoryResult:
    store, sync = StoredPrices(settings, Buckets(), 3600), PointSync(settings, Buckets())
    try:
        with writer(settings, tmp_path) as instance:
            return HistoryRecompute(config, store, sync, instance.submit).run(now_ns=now_ns, memo=memo)
    finally:
        store.close()
        sync.close()


def _set_history_retention(admin_client, org: str, seconds: int) -> None:
    bucket = admin_client.buckets_api().find_bucket_by_name("crypto_history")
    bucket.retention_rules = [
        BucketRetentionRules(type="expire", every_seconds=seconds, shard_group_duration_seconds=3600)
    ]
    admin_client.buckets_api().update_bucket(bucket)


def test_a_longer_history_retention_computes_the_hours_it_now_keeps(
    collector_settings, admin_client, tmp_path
):
    """The bucket's retention lengthened (bootstrap corrects a drifted one): the hours it now keeps, before the ones
    the last recompute could store, are computed as a full recompute computes them."""
    now = time.time_ns()
    first_open = now - now % 3_600_000_000_000 - 3 * 86_400_000_000_000
    opens = _hour(first_open)
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", opens, _closes(30000, 13)[:80]))
    config = parse_config(
        PAIRS + f"holdings:\n  BTC:\n    - {{date: {opens}, kind: buy, quantity: '1.5', price: '30000'}}\n",
        "p.yml",
    )
    _set_history_retention(admin_client, collector_settings.org, 2 * 86_400)
    first = _run(collector_settings, tmp_path, config, None, now)
    assert ("BTC", opens) not in stored_points(admin_client, collector_settings.org, "position")

    _set_history_retention(admin_client, collector_settings.org, 0)
    _run(collector_settings, tmp_path, config, first.memo, now)
    assert ("BTC", opens) in stored_points(admin_client, collector_settings.org, "position")
    full = _run(collector_settings, tmp_path, config, None, now)
    assert (full.hours.written, full.hours.deleted) == (0, 0)


def test_an_error_table_in_the_closes_csv_is_a_failure_not_closes():
    """influxd reports an error met after it began to answer as one more table (`error`, `reference`), after a blank
    line or straight after the rows: reading closes, that is a failure with influxd's message, never fewer closes."""
    header, row = (
        ["", "result", "table", "_time", "_value"],
        ["", "_result", "0", "2026-01-01T00:00:00Z", "1.5"],
    )
    for separator in ([[]], []):
        rows = [header, row, *separator, ["", "error", "reference"], ["", "timeout reading shard", ""]]
        with pytest.raises(RuntimeFailure, match="timeout reading shard"):
            _columns(iter(rows), "_time", "_value")
    assert (
        _columns(iter([header, row, [], header, row]), "_time", "_value")
        == [("2026-01-01T00:00:00Z", "1.5")] * 2
    )


def test_a_corrected_close_that_prices_a_lot_redoes_its_cost_basis(
    collector_settings, admin_client, tmp_path
):
    """A transfer_in without a price costs the market price of its hour, a lot priced in EUR the EUR-USD rate of
    its hour: a close corrected there changes the cost basis of every later hour, as a full recompute has it."""
    _seed_prices(collector_settings, tmp_path)
    seed(collector_settings, tmp_path, hourly_candles("EUR-USD", "2026-01-01T00:00:00Z", ["1.1000"] * HOURS))
    config = parse_config(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD, LTC-USD, EUR-USD]\nholdings:\n"
        "  BTC:\n    - {date: 2026-01-20T10:30:00Z, kind: buy, quantity: '1', price: '27000', currency: EUR}\n"
        "  LTC:\n    - {date: 2026-02-20T10:30:00Z, kind: transfer_in, quantity: '10'}\n",
        "p.yml",
    )
    first = _run(collector_settings, tmp_path, config, None, NOW_NS)
    seed(
        collector_settings,
        tmp_path,
        hourly_candles("EUR-USD", "2026-01-20T07:00:00Z", ["1.2000"] * 4)
        + hourly_candles("LTC-USD", "2026-02-20T07:00:00Z", ["99.99"] * 4),
    )
    again = _run(collector_settings, tmp_path, config, first.memo, NOW_NS)
    positions = stored_points(admin_client, collector_settings.org, "position")
    assert positions[("BTC", "2026-03-01T00:00:00Z")]["cost_basis"] == 32400.0  # 27000 EUR at 1.2000
    assert positions[("LTC", "2026-03-01T00:00:00Z")]["cost_basis"] == 999.9  # 10 at 99.99
    assert again.hours.written > 0
    full = _run(collector_settings, tmp_path, config, None, NOW_NS)
    assert (full.hours.written, full.hours.deleted) == (0, 0)


def test_a_new_direct_pair_and_a_deleted_candle_are_redone(collector_settings, admin_client, tmp_path):
    """ETH priced through BTC (ETH-BTC x BTC-USD) until ETH-USD is configured, and a candle deleted from an old
    window: what is stored afterwards is what a full recompute stores."""
    _seed_prices(collector_settings, tmp_path)
    seed(collector_settings, tmp_path, hourly_candles("ETH-BTC", "2026-01-01T00:00:00Z", ["0.0650"] * HOURS))
    holdings = (
        "holdings:\n  ETH:\n    - {date: 2026-01-06T00:00:00Z, kind: buy, quantity: '2', price: '2000'}\n"
    )
    bridged = parse_config("exchanges:\n  bitstamp:\n    pairs: [BTC-USD, ETH-BTC]\n" + holdings, "p.yml")
    direct = parse_config(PAIRS + holdings, "p.yml")
    first = _run(collector_settings, tmp_path, bridged, None, NOW_NS)
    again = _run(collector_settings, tmp_path, direct, first.memo, NOW_NS)
    assert again.hours.written > 60 * 24
    full = _run(collector_settings, tmp_path, direct, None, NOW_NS)
    assert (full.hours.written, full.hours.deleted) == (0, 0)

    admin_client.delete_api().delete(
        "2026-01-10T05:00:00Z",
        "2026-01-10T05:00:01Z",
        '_measurement="candle" AND pair="ETH-USD"',
        bucket="crypto_history",
        org=collector_settings.org,
    )
    deleted = _run(collector_settings, tmp_path, direct, full.memo, NOW_NS)
    assert deleted.hours.written == 2  # ETH at 06:00 keeps 05:00's price, and the total
    full = _run(collector_settings, tmp_path, direct, None, NOW_NS)
    assert (full.hours.written, full.hours.deleted) == (0, 0)


@pytest.mark.xfail(
    strict=True,
    reason="review: two closes of one 30-day window swapped (or changes cancelling exactly) keep its count and sum: "
    "the memo sees no change; a stronger pushed-down digest is needed (e.g. the sum of close x time)",
)
def test_two_swapped_closes_are_redone(collector_settings, admin_client, tmp_path):
    closes = [str(30000 + 10 * (hour % 7)) for hour in range(HOURS)]  # whole numbers: their sums are exact
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-01T00:00:00Z", closes))
    config = parse_config(
        PAIRS
        + "holdings:\n  BTC:\n    - {date: 2026-01-01T05:00:00Z, kind: buy, quantity: '1', price: '30000'}\n",
        "p.yml",
    )
    first = _run(collector_settings, tmp_path, config, None, NOW_NS)
    seed(
        collector_settings,
        tmp_path,
        hourly_candles("BTC-USD", "2026-01-02T00:00:00Z", [closes[25], closes[24]]),
    )
    _run(collector_settings, tmp_path, config, first.memo, NOW_NS)
    full = _run(collector_settings, tmp_path, config, None, NOW_NS)
    assert (full.hours.written, full.hours.deleted) == (0, 0)
