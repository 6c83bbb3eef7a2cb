"""Review of issue 7 (holdings parsing): each test records a finding and fails until it is fixed."""

import pytest

from collector.cli import main
from collector.config import parse_config


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
