"""Review of issue 7 (holdings parsing): each test records a finding and fails until it is fixed."""

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
