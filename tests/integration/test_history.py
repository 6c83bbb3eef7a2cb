"""Hourly valuation history and transaction points in the real influxd: recompute is a diff (figures by hand)."""

from datetime import UTC, datetime

import pytest

from collector.config import Buckets, parse_config
from collector.portfolio.history import HistoryRecompute
from collector.portfolio.memo import HistoryMemo
from collector.records import Transaction
from collector.storage.prices import StoredPrices
from collector.storage.sync import PointSync
from tests.integration.valuation_helpers import at, hourly_candles, seed, stored_points, writer

NOW = at("2026-01-10T04:20:00Z")  # hours 00:00 … 04:00 are valued
NOW_NS = int(NOW.timestamp()) * 1_000_000_000
PAIRS = "exchanges:\n  bitstamp:\n    pairs: [BTC-USD, ETH-USD]\n"
BTC_FIRST = '    - {date: 2026-01-10T00:00:00Z, kind: buy, quantity: "1", price: "30000", fee: "10"}\n'
BTC_SECOND = '    - {date: 2026-01-10T02:00:00Z, kind: buy, quantity: "0.5", price: "31000"}\n'
ETH_BUY = '  ETH:\n    - {date: 2026-01-10T01:00:00Z, kind: buy, quantity: "2", price: "%s", note: first}\n'


def _recompute(
    settings,
    tmp_path,
    holdings: str,
    written: list | None = None,
    pairs: str = PAIRS,
    memo: HistoryMemo | None = None,
):
    """One recompute at NOW (given `memo`, of what changed since); what it submits is appended to `written`;
    flushed before the next run reads."""
    config = parse_config(pairs + "holdings:\n" + holdings, "p.yml")
    store, sync = StoredPrices(settings, Buckets(), 3600), PointSync(settings, Buckets())
    try:
        with writer(settings, tmp_path) as instance:

            def submit(records):
                (written if written is not None else []).extend(records)
                instance.submit(records)

            return HistoryRecompute(config, store, sync, submit).run(now_ns=NOW_NS, memo=memo)
    finally:
        store.close()
        sync.close()


def _hours_of(records) -> set:
    return {
        (
            type(r).__name__,
            getattr(r, "asset", ""),
            datetime.fromtimestamp(r.time_ns // 10**9, UTC).strftime("%H:%M"),
        )
        for r in records
        if not isinstance(r, Transaction)
    }


def _values(client, org, measurement, field="value"):
    return {key: fields.get(field) for key, fields in stored_points(client, org, measurement).items()}


@pytest.mark.parametrize("incremental", [False, True], ids=["in-full", "with-memo"])
def test_hourly_history_then_edits_rewrite_only_what_they_change(
    incremental, collector_settings, admin_client, tmp_path
):
    """The same figures whether each recompute redoes everything or, from the last one's memo, what changed."""
    org = collector_settings.org
    last = {}

    def recompute(holdings, written=None):
        result = _recompute(collector_settings, tmp_path, holdings, written, memo=last.get("memo"))
        if incremental:
            last["memo"] = result.memo
        return result

    seed(
        collector_settings,
        tmp_path,
        # BTC candles open 23:00 … 03:00 (closes known at 00:00 … 04:00); ETH open 00:00 … 03:00
        hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000", "32000", "33000", "34000"])
        + hourly_candles("ETH-USD", "2026-01-10T00:00:00Z", ["2100", "2200", "2300", "2400"]),
    )
    holdings = "  BTC:\n" + BTC_FIRST + BTC_SECOND + ETH_BUY % "2000"

    first = recompute(holdings)
    # positions: BTC at 00…04 (5), ETH from its buy at 01:00 (4); portfolio at 00…04 (5)
    assert (first.hours.written, first.hours.deleted) == (14, 0)
    assert (first.transactions.written, first.transactions.deleted) == (3, 0)
    assert _values(admin_client, org, "position") == {
        ("BTC", "2026-01-10T00:00:00Z"): 29000.0,  # 1 × 29000
        ("BTC", "2026-01-10T01:00:00Z"): 31000.0,  # 1 × 31000
        ("BTC", "2026-01-10T02:00:00Z"): 48000.0,  # 1.5 × 32000 (the 02:00 buy counts at 02:00)
        ("BTC", "2026-01-10T03:00:00Z"): 49500.0,  # 1.5 × 33000
        ("BTC", "2026-01-10T04:00:00Z"): 51000.0,  # 1.5 × 34000
        ("ETH", "2026-01-10T01:00:00Z"): 4200.0,  # 2 × 2100
        ("ETH", "2026-01-10T02:00:00Z"): 4400.0,  # 2 × 2200
        ("ETH", "2026-01-10T03:00:00Z"): 4600.0,  # 2 × 2300
        ("ETH", "2026-01-10T04:00:00Z"): 4800.0,  # 2 × 2400
    }
    assert _values(admin_client, org, "portfolio") == {
        ("", "2026-01-10T00:00:00Z"): 29000.0,
        ("", "2026-01-10T01:00:00Z"): 35200.0,  # 31000 + 4200
        ("", "2026-01-10T02:00:00Z"): 52400.0,  # 48000 + 4400
        ("", "2026-01-10T03:00:00Z"): 54100.0,  # 49500 + 4600
        ("", "2026-01-10T04:00:00Z"): 55800.0,  # 51000 + 4800
    }
    cost = _values(admin_client, org, "portfolio", "cost_basis")
    assert cost[("", "2026-01-10T02:00:00Z")] == 49510.0  # BTC 30010 + 15500, ETH 4000
    transactions = stored_points(admin_client, org, "transaction", bucket="crypto_meta")
    assert transactions[("ETH", "2026-01-10T01:00:00Z")] == {
        "quantity": 2.0,
        "price": 2000.0,
        "fee": 0.0,
        "currency": "USD",
        "note": "first",
    }

    second = recompute(holdings)
    assert (second.written, second.deleted) == (0, 0)  # nothing changed, nothing written

    # the ETH lot's price changes: its cost basis changes from 01:00 on, so ETH and portfolio at 01…04
    edited = "  BTC:\n" + BTC_FIRST + BTC_SECOND + ETH_BUY % "2100"
    rewritten = []
    third = recompute(edited, rewritten)
    assert (third.hours.written, third.hours.deleted) == (8, 0)
    assert _hours_of(rewritten) == {
        (kind, asset, hour)
        for kind, asset in (("Position", "ETH"), ("PortfolioValue", ""))
        for hour in ("01:00", "02:00", "03:00", "04:00")
    }
    assert (third.transactions.written, third.transactions.deleted) == (1, 0)
    eth_cost = _values(admin_client, org, "position", "cost_basis")
    assert eth_cost[("ETH", "2026-01-10T01:00:00Z")] == 4200.0  # 2 × 2100
    assert _values(admin_client, org, "position", "unrealized_pnl")[("ETH", "2026-01-10T04:00:00Z")] == 600.0

    # BTC's second lot and all of ETH are removed: BTC 02…04 rewritten (1 BTC), portfolio 01…04 rewritten,
    # ETH's 4 points deleted, and their two transaction points too
    removed = "  BTC:\n" + BTC_FIRST
    fourth = recompute(removed)
    assert (fourth.hours.written, fourth.hours.deleted) == (7, 4)
    assert (fourth.transactions.written, fourth.transactions.deleted) == (0, 2)
    assert _values(admin_client, org, "position") == {
        ("BTC", "2026-01-10T00:00:00Z"): 29000.0,
        ("BTC", "2026-01-10T01:00:00Z"): 31000.0,
        ("BTC", "2026-01-10T02:00:00Z"): 32000.0,  # 1 × 32000
        ("BTC", "2026-01-10T03:00:00Z"): 33000.0,
        ("BTC", "2026-01-10T04:00:00Z"): 34000.0,
    }
    assert set(stored_points(admin_client, org, "transaction", bucket="crypto_meta")) == {
        ("BTC", "2026-01-10T00:00:00Z")
    }

    # the first lot moves to 02:00: the hours before it are no longer held, so their points go
    later = "  BTC:\n" + BTC_FIRST.replace("T00:00", "T02:00")
    fifth = recompute(later)
    assert fifth.hours.deleted == 4  # BTC and portfolio at 00:00 and 01:00
    assert sorted(time for _, time in _values(admin_client, org, "portfolio")) == [
        "2026-01-10T02:00:00Z",
        "2026-01-10T03:00:00Z",
        "2026-01-10T04:00:00Z",
    ]
    assert (recompute(later).written, 0) == (0, 0)


def test_two_buys_on_one_date_are_two_transaction_points(collector_settings, admin_client, tmp_path):
    holdings = (
        "  BTC:\n"
        '    - {date: 2026-01-10, kind: buy, quantity: "1", price: "30000"}\n'
        '    - {date: 2026-01-10, kind: buy, quantity: "2", price: "30500"}\n'
    )
    result = _recompute(collector_settings, tmp_path, holdings)
    assert result.transactions.written == 2
    query = 'from(bucket: "crypto_meta") |> range(start: 0) |> filter(fn: (r) => r._field == "quantity")'
    tables = admin_client.query_api().query(query, org=collector_settings.org)
    assert sorted(record.get_value() for table in tables for record in table) == [1.0, 2.0]
    assert _recompute(collector_settings, tmp_path, holdings).transactions.written == 0


def test_history_through_a_bridge_carries_prices_across_monthly_windows(
    collector_settings, admin_client, tmp_path
):
    org = collector_settings.org
    config = parse_config(
        "exchanges:\n  bitstamp:\n    pairs: [ETH-USDT, USDT-USD]\n"
        "holdings:\n  ETH:\n    - {date: 2026-01-01, kind: buy, quantity: '2', price: '2000'}\n",
        "p.yml",
    )
    seed(
        collector_settings,
        tmp_path,
        # one USDT-USD close, at 2026-01-01 01:00, in the first 30-day window; ETH-USDT only 35 days later
        hourly_candles("USDT-USD", "2026-01-01T00:00:00Z", ["0.97"])
        + hourly_candles("ETH-USDT", "2026-02-05T10:00:00Z", ["2500"]),
    )
    store, sync = StoredPrices(collector_settings, Buckets(), 3600), PointSync(collector_settings, Buckets())
    try:
        with writer(collector_settings, tmp_path) as instance:
            now = int(at("2026-02-05T11:30:00Z").timestamp()) * 1_000_000_000
            result = HistoryRecompute(config, store, sync, instance.submit).run(now_ns=now)
    finally:
        store.close()
        sync.close()
    hours = 35 * 24 + 11 + 1  # 2026-01-01 00:00 … 2026-02-05 11:00
    positions = stored_points(admin_client, org, "position")
    assert (
        len(positions) == hours and result.hours.written == 2 * hours
    )  # a position and a portfolio point each
    portfolio = stored_points(admin_client, org, "portfolio")
    assert portfolio[("", "2026-02-05T10:00:00Z")] == {
        "cost_basis": 4000.0,
        "realized_pnl": 0.0,
    }  # no value yet
    assert portfolio[("", "2026-02-05T11:00:00Z")]["value"] == 4850.0
    # before ETH-USDT has a close the position is stored with its quantity and cost basis, and no value (never 0)
    assert positions[("ETH", "2026-02-05T10:00:00Z")] == {
        "quantity": 2.0,
        "cost_basis": 4000.0,
        "realized_pnl": 0.0,
    }
    # 11:00: 2500 USDT (closed at 11:00) × 0.97 USD (the close carried from the first window) = 2425 per ETH
    assert positions[("ETH", "2026-02-05T11:00:00Z")] == {
        "quantity": 2.0,
        "price": 2425.0,
        "value": 4850.0,  # 2 × 2425
        "cost_basis": 4000.0,
        "unrealized_pnl": 850.0,
        "realized_pnl": 0.0,
        "pnl_pct": 21.25,  # 850 / 4000 × 100
    }


def test_a_block_style_note_is_not_rewritten_by_a_second_run(collector_settings, tmp_path):
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    holdings = (
        "  BTC:\n    - date: 2026-01-10T00:00:00Z\n      kind: buy\n      quantity: '1'\n      price: '30000'\n"
        "      note: |\n        bought the dip\n"
    )
    assert _recompute(collector_settings, tmp_path, holdings).transactions.written == 1
    second = _recompute(collector_settings, tmp_path, holdings)
    assert (second.written, second.deleted) == (0, 0)


def test_an_empty_note_is_not_rewritten_by_a_second_run(collector_settings, tmp_path):
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    holdings = (
        "  BTC:\n    - {date: 2026-01-10T00:00:00Z, kind: buy, quantity: '1', price: '30000', note: ''}\n"
    )
    _recompute(collector_settings, tmp_path, holdings)
    second = _recompute(collector_settings, tmp_path, holdings)
    assert (second.written, second.deleted) == (0, 0)


def test_a_figure_that_becomes_unknown_is_removed_not_left_stale(collector_settings, admin_client, tmp_path):
    """Guards sync's delete-before-rewrite: no other test notices if a stored value survives its price's removal."""
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    holdings = "  BTC:\n    - {date: 2026-01-10T00:00:00Z, kind: buy, quantity: '1', price: '30000'}\n"
    _recompute(collector_settings, tmp_path, holdings)
    assert (
        stored_points(admin_client, collector_settings.org, "position")[("BTC", "2026-01-10T01:00:00Z")][
            "value"
        ]
        == 31000.0
    )
    # the pair goes: BTC has no price source any more, so no hour may keep a value
    _recompute(
        collector_settings, tmp_path, holdings, pairs="exchanges:\n  bitstamp:\n    pairs: [ETH-USD]\n"
    )
    for measurement in ("position", "portfolio"):
        points = stored_points(admin_client, collector_settings.org, measurement)
        assert len(points) == 5, points  # 00:00 … 04:00
        assert all("value" not in fields and fields["cost_basis"] == 30000.0 for fields in points.values()), (
            points
        )
