"""The collector end to end: replayed Bitstamp, real influxd. Nothing lost, nothing duplicated."""

import time

from tests.integration.harness import running, same_price, stored_trades, wait_for, write_config


def test_replayed_trades_become_exactly_these_points(collector_settings, admin_client, replay, tmp_path):
    config = write_config(tmp_path / "portfolio.yml", replay)
    with running(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool"):
        replay.wait_subscribed("btcusd")
        now_us = time.time_ns() // 1000
        published = [
            replay.publish(
                "btcusd", f"{43000 + i}.{i:02d}", f"0.{i + 1:08d}", side=i % 2, numbers_as_strings=i % 3 == 0
            )
            for i in range(48)
        ]
        # two trades in the same microsecond: both kept
        published += [
            replay.publish("btcusd", "43210.01", "1.00000000", microtimestamp=now_us),
            replay.publish("btcusd", "43210.02", "2.00000000", microtimestamp=now_us),
        ]
        rows = wait_for(
            lambda: (
                (r := stored_trades(admin_client, collector_settings.org, "BTC-USD")) and len(r) >= 50 and r
            ),
            what="50 trades",
        )
    rows = stored_trades(admin_client, collector_settings.org, "BTC-USD")
    assert len(rows) == 50
    by_id = {row["trade_id"]: row for row in rows}
    assert set(by_id) == {str(t.id) for t in published}
    for trade in published:
        row = by_id[str(trade.id)]
        assert same_price(row["price"], trade.price) and same_price(row["amount"], trade.amount)
        assert row["side"] == ("buy" if trade.type == 0 else "sell")
        assert row["_time"].timestamp() // 1 == trade.microtimestamp // 1_000_000
