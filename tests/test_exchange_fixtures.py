"""Golden files: every registered exchange parses its recorded messages into exactly the expected points."""

import json
from pathlib import Path

import pytest

from collector.config import ExchangeConfig, Pair
from collector.exchanges import EXCHANGES
from collector.exchanges.base import MessageError
from collector.storage.points import to_line

FIXTURES = Path(__file__).parent / "fixtures"


def cases():
    for name in sorted(EXCHANGES):
        folder = FIXTURES / name
        found = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not found:
            yield pytest.param(name, None, id=f"{name}-NO-FIXTURES")
        for case in found:
            yield pytest.param(name, case, id=f"{name}-{case.name}")


@pytest.mark.parametrize(("exchange_name", "case"), list(cases()))
def test_messages_become_expected_points(exchange_name, case):
    assert case is not None, f"exchange {exchange_name!r} has no fixtures in {FIXTURES / exchange_name}"
    spec = json.loads((case / "case.json").read_text())
    pairs = tuple(Pair.parse(p) for p in spec["pairs"])
    adapter = EXCHANGES[exchange_name](ExchangeConfig(exchange_name, pairs))
    adapter.subscribe_messages(pairs)

    lines, errors, reconnects = [], 0, 0
    for message in (case / "messages.jsonl").read_text().splitlines():
        try:
            parsed = adapter.parse(message)
        except MessageError:
            errors += 1
            continue
        reconnects += parsed.reconnect_requested
        lines.extend(to_line(trade)[1] for trade in parsed.trades)

    expected = (case / "expected.lp").read_text().splitlines()
    assert lines == expected
    assert errors == spec["errors"]
    assert reconnects == spec.get("reconnect_requests", 0)
