"""Review of issue 7 (holdings parsing): each test records a finding and fails until it is fixed."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from collector.cli import main
from collector.config import parse_config
from collector.portfolio.ledger import PositionState
from collector.portfolio.render import as_table
from collector.portfolio.valuation import position, total


def test_a_bare_quantity_with_more_digits_than_a_float_holds_is_exact():
    """Guards the read-from-text path: str(float) would pass the 0.1 test but round 18 decimals (wei) to 17 digits."""
    config = parse_config(
        "holdings:\n  ETH:\n    - {date: 2026-01-10, kind: buy, quantity: 1.234567890123456789, price: 2000}\n"
        "  BTC: 12345678.123456789\n",
        "p.yml",
    )
    assert str(config.holdings.assets["ETH"].transactions[0].quantity) == "1.234567890123456789"
    assert str(config.holdings.assets["BTC"].quantity) == "12345678.123456789"


@pytest.mark.xfail(
    strict=True,
    reason="review: P/L % is rounded twice (to 4 places half-even in valuation, then to 2 in the table), so "
    "12.35499…% is shown as 12.36",
)
def test_the_table_shows_pnl_pct_rounded_once():
    # 1 BTC costing 100000.00 valued at 112354.99: unrealized 12354.99, P/L % = 12.35499 exactly → 12.35 to 2 places
    btc = position(
        "BTC", PositionState(Decimal("1"), Decimal("100000"), Decimal("0")), Decimal("112354.99"), 0, "x"
    )
    assert btc.unrealized_pnl == Decimal("12354.99")
    table = as_table("USD", datetime(2026, 1, 10, tzinfo=UTC), [btc], total([btc], 0, "x"), colour=False)
    row = next(line for line in table.splitlines() if line.startswith("BTC"))
    assert row.split()[-1] == "12.35", row


@pytest.mark.xfail(
    strict=True,
    reason="review: `collector portfolio --at` before the first transaction prints an empty table of dashes "
    "(exit 0) without saying that nothing was held yet, or since when something is",
)
def test_portfolio_at_a_time_before_the_first_transaction_says_nothing_was_held(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "portfolio.yml"
    path.write_text(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\nholdings:\n  BTC:\n"
        '    - {date: 2026-01-10, kind: buy, quantity: "1.0", price: "30000", fee: "10"}\n'
    )
    # nothing is held then, so nothing is read from InfluxDB (an unreachable URL proves it)
    monkeypatch.setenv("INFLUXDB_V2_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("INFLUXDB_V2_ORG", "org")
    monkeypatch.setenv("INFLUXDB_V2_TOKEN", "token")
    assert main(["portfolio", "--config", str(path), "--at", "2025-01-01"]) == 0
    out = capsys.readouterr().out
    assert "2026-01-10" in out, (
        out
    )  # e.g. "nothing held at that time; the first transaction is on 2026-01-10"
