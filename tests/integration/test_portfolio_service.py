"""The running collector values the holdings: hourly history after its backfill, live samples, recompute on an edit."""

import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from collector.config import Buckets, parse_config
from collector.portfolio.history import HistoryRecompute, Interrupted
from collector.portfolio.valuation import build_timelines
from collector.portfolio.work import PortfolioWork
from collector.records import Position
from collector.storage.points import POSITION_FIELDS
from collector.storage.prices import StoredPrices
from collector.storage.sync import PointSync
from tests.integration.harness import FAST, running, wait_for, write_config
from tests.integration.valuation_helpers import hourly_candles, seed, stored_points
from tests.replay.bitstamp import synthetic_candle

HOUR = 3600


def _holdings(quantity: str, since_s: int) -> str:
    day = datetime.fromtimestamp(since_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"holdings:\n  BTC:\n    - {{date: {day}, kind: buy, quantity: '{quantity}', price: '1000'}}\n"
        "valuation:\n  live_every: 1s\n"
    )


def _hourly_values(quantity: str, first_hour: int, last_hour: int) -> dict:
    """quantity × the close of the candle that closed at each hour (the replay's candles are deterministic)."""
    return {
        ("BTC", datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")): float(
            Decimal(quantity) * Decimal(synthetic_candle("btcusd", hour - HOUR)["close"])
        )
        for hour in range(first_hour, last_hour + HOUR, HOUR)
    }


def test_history_after_backfill_live_samples_and_recompute_on_an_edit(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    # the expected hours are fixed below: start clear of an hour's turn (a condition, not a synchronisation)
    wait_for(lambda: time.time() % HOUR < HOUR - 60, timeout=65, what="not the last minute of an hour")
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 6 * HOUR
    bought = now_hour - 4 * HOUR
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, extra=_holdings("2", bought))
    expected = _hourly_values("2", bought, now_hour)  # from the buy to the current hour

    def history_values():
        return {
            key: fields.get("value") for key, fields in stored_points(admin_client, org, "position").items()
        }

    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        wait_for(lambda: history_values() == expected, what="hourly history after the backfill")
        transactions = stored_points(admin_client, org, "transaction", bucket="crypto_meta")
        assert list(transactions.values()) == [
            {"quantity": 2.0, "price": 1000.0, "fee": 0.0, "currency": "USD"}
        ]

        replay.wait_subscribed("btcusd")
        replay.publish("btcusd", "45678.90")

        def live_samples():
            return stored_points(admin_client, org, "position", bucket="crypto_live")

        def at_traded_price():
            return [key for key, fields in live_samples().items() if fields.get("price") == 45678.9]

        first = wait_for(at_traded_price, what="a live sample at the traded price")[0]

        # influxd makes a point's fields visible one series at a time: a query can land between them. That
        # sample's every field must show; a sample written without one times out here.
        def complete():
            fields = live_samples()[first]
            return fields if fields.keys() >= set(POSITION_FIELDS) else None

        sample = wait_for(complete, what=f"every field of the live sample {first}")
        assert sample["value"] == 91357.8  # 2 × 45678.90
        assert sample["cost_basis"] == 2000.0 and sample["unrealized_pnl"] == 89357.8
        wait_for(
            lambda: any(
                fields.get("value") == 91357.8
                for fields in stored_points(admin_client, org, "portfolio", bucket="crypto_live").values()
            ),
            what="the portfolio total of that sample",  # written with it, visible on its own
        )

        # an edit of the holdings recomputes the history: 3 BTC from one hour later; the earlier hour is deleted
        write_config(path, replay, extra=_holdings("3", bought + HOUR))
        edited = {
            key: value / 2 * 3
            for key, value in expected.items()
            if key[1] != min(time for _, time in expected)
        }
        wait_for(lambda: history_values() == edited, what="history recomputed after the edit")
        assert runner.collector.portfolio.errors == 0
        assert runner.stop() < 10


def test_valuation_errors_are_counted_and_the_service_keeps_going(
    collector_settings,
    admin_client,
    replay,
    tmp_path,
    outage,
    caplog,
):
    caplog.set_level(logging.INFO, logger="collector.portfolio.work")
    org = collector_settings.org
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 3 * HOUR
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, extra=_holdings("2", now_hour - 2 * HOUR))
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        portfolio = runner.collector.portfolio
        wait_for(
            lambda: stored_points(admin_client, org, "position", bucket="crypto_live"), what="a live sample"
        )
        outage.stop()
        # the recompute after the backfill may fail too (it counts in the same `errors`): wait for the samples'
        wait_for(lambda: "portfolio live sample failed" in caplog.text, what="a failed live sample")
        failed_before = portfolio.errors
        wait_for(lambda: portfolio.errors >= failed_before + 2, what="more failed live samples counted")
        assert caplog.text.count("portfolio live sample failed") == 1  # logged once, then counted
        outage.start()
        wait_for(lambda: "portfolio live sample works again" in caplog.text, timeout=30, what="recovery")
        replay.publish("btcusd", "50000.25")
        wait_for(
            lambda: any(
                fields.get("value") == 100000.5  # 2 × 50000.25, sampled after the outage
                for fields in stored_points(admin_client, org, "position", bucket="crypto_live").values()
            ),
            what="a live sample after the outage",
        )
        health = 'from(bucket: "crypto_live") |> range(start: 0) |> filter(fn: (r) => r._measurement == "collector"'
        health += ' and r.exchange == "portfolio" and r._field == "errors")'

        def errors_in_health_points():
            tables = admin_client.query_api().query(health, org=org)
            return max((record.get_value() for table in tables for record in table), default=0)

        wait_for(lambda: errors_in_health_points() >= 2, what="the error count in the collector measurement")
        assert runner.stop() < 10


def test_a_stop_interrupts_a_recompute_between_windows(collector_settings, tmp_path):
    config = parse_config(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n"
        "holdings:\n  BTC:\n    - {date: 2025-01-01, kind: buy, quantity: '1', price: '1000'}\n",
        "p.yml",
    )
    stop = threading.Event()
    submitted = []

    def submit(records):
        submitted.extend(records)
        if any(record.__class__.__name__ == "Position" for record in records):
            stop.set()  # the service's shutdown arrives while the first month is being written

    store, sync = StoredPrices(collector_settings, Buckets(), 3600), PointSync(collector_settings, Buckets())
    try:
        with pytest.raises(Interrupted):
            HistoryRecompute(config, store, sync, submit, stop).run(now_ns=time.time_ns())
    finally:
        store.close()
        sync.close()
    positions = [record for record in submitted if record.__class__.__name__ == "Position"]
    assert len(positions) == 30 * 24  # one 30-day window of the ~2 years to value, then it stopped


def test_an_edit_made_during_an_outage_reaches_the_history_once_influxdb_is_back(
    collector_settings, admin_client, replay, tmp_path, outage, caplog
):
    caplog.set_level(logging.INFO, logger="collector.portfolio.work")
    org = collector_settings.org
    wait_for(lambda: time.time() % HOUR < HOUR - 120, timeout=125, what="not the last minutes of an hour")
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 6 * HOUR
    bought = now_hour - 4 * HOUR
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, extra=_holdings("2", bought))
    options = replace(FAST, flush_before_recompute_s=1.0)

    def history_assets():
        return {asset for asset, _ in stored_points(admin_client, org, "position")}

    with running(path, config, collector_settings, tmp_path / "spool", options) as runner:
        wait_for(lambda: history_assets() == {"BTC"}, what="hourly BTC history after the backfill")
        outage.stop()
        # the lot moves from BTC to ETH: BTC's hourly points are stale, ETH's are new (no ETH price: quantity and cost)
        write_config(path, replay, extra=_holdings("2", bought).replace("BTC:", "ETH:"))
        wait_for(
            lambda: "portfolio history recompute failed" in caplog.text, what="the edit's recompute to fail"
        )
        outage.start()
        wait_for(admin_client.ping, timeout=30, what="InfluxDB back")
        # the removed BTC lot must leave no stale points (and ETH's hours appear), without waiting 12 h
        wait_for(lambda: history_assets() == {"ETH"}, timeout=60, what="the edit applied to the history")
        assert runner.stop() < 10


def test_a_removed_asset_leaves_no_live_samples_behind(collector_settings, admin_client, replay, tmp_path):
    org = collector_settings.org
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 3 * HOUR
    path = tmp_path / "portfolio.yml"
    btc = _holdings("2", now_hour - 2 * HOUR)
    config = write_config(path, replay, extra=btc.replace("valuation:", "  USD: '100'\nvaluation:"))
    assert set(config.holdings.assets) == {"BTC", "USD"}

    def live_assets():
        return {asset for asset, _ in stored_points(admin_client, org, "position", bucket="crypto_live")}

    def history_assets():
        return {asset for asset, _ in stored_points(admin_client, org, "position")}

    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        wait_for(lambda: live_assets() == {"BTC", "USD"}, what="live samples of both assets")
        wait_for(lambda: history_assets() == {"BTC", "USD"}, what="the hourly history of both assets")
        write_config(path, replay, extra=btc)  # USD is no longer held
        wait_for(
            lambda: history_assets() == {"BTC"}, what="the hourly history without USD (the edit applied)"
        )
        assert live_assets() == {"BTC"}
        assert runner.stop() < 10


def test_a_sample_taken_across_a_recompute_does_not_keep_the_rates_it_missed(
    collector_settings, tmp_path, monkeypatch
):
    """The live sample caches the lots' costs; a recompute (after a backfill stored the rates) drops that cache.
    A sample whose costs were built before the rates were stored, and which ends after the recompute, must not
    put its cache back: every later sample would lack the euro lot's cost basis until the next backfill."""
    config = parse_config(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD, EUR-USD]\n"
        "holdings:\n  BTC:\n"
        "    - {date: 2026-01-01T12:00:00Z, kind: buy, quantity: '2', price: '900', currency: EUR}\n",
        "p.yml",
    )
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-01T10:00:00Z", ["40000"] * 4))
    built, resume = threading.Event(), threading.Event()

    def build_then_wait(*args):
        timelines = build_timelines(*args)
        if not built.is_set():  # only the first sample's: built without the rate
            built.set()
            assert resume.wait(20), "the test never resumed the sample"
        return timelines

    monkeypatch.setattr("collector.portfolio.work.build_timelines", build_then_wait)
    submitted = []
    work = PortfolioWork(collector_settings, config, submitted.extend)
    try:
        first = threading.Thread(target=work.sample)
        first.start()
        assert built.wait(20), "the first sample built no timelines"
        seed(collector_settings, tmp_path, hourly_candles("EUR-USD", "2026-01-01T10:00:00Z", ["1.10"] * 4))
        work.recompute()
        resume.set()
        first.join(20)
        submitted.clear()
        work.sample()
    finally:
        resume.set()
        work.close()
    (position,) = [record for record in submitted if isinstance(record, Position)]
    assert position.cost_basis == Decimal("1980.00")  # 2 x 900 EUR at 1.10
