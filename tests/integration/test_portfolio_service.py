"""The running collector values the holdings: hourly history after its backfill, live samples, recompute on an edit."""

import time
from datetime import UTC, datetime
from decimal import Decimal

from tests.integration.harness import running, wait_for, write_config
from tests.integration.valuation_helpers import stored_points
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

        def live_sample():
            points = stored_points(admin_client, org, "position", bucket="crypto_live")
            return [fields for fields in points.values() if fields.get("price") == 45678.9]

        sample = wait_for(live_sample, what="a live sample at the traded price")[0]
        assert sample["value"] == 91357.8  # 2 × 45678.90
        assert sample["cost_basis"] == 2000.0 and sample["unrealized_pnl"] == 89357.8
        portfolio = stored_points(admin_client, org, "portfolio", bucket="crypto_live")
        assert any(fields.get("value") == 91357.8 for fields in portfolio.values())

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
