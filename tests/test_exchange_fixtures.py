"""Golden files: every registered exchange parses its recorded messages into exactly the expected points.

A websocket exchange's cases are messages; a REST-only source's (CoinGecko) are HTTP answers, one a line, given to
its candles/ticker/assets calls in order, with the requests it must have made.
"""

import json
from pathlib import Path

import pytest

from collector.config import CoinGeckoConfig, ExchangeConfig, Pair
from collector.exchanges import EXCHANGES
from collector.exchanges.base import MessageError, load_json
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
    if not EXCHANGES[exchange_name].live_trades:
        check_rest_case(exchange_name, case, spec, pairs)
        return
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


class RecordedAnswers:
    """The HTTP client a REST call is given: answers the case's lines in order (exact decimals, as HttpClient),
    and keeps what was asked."""

    def __init__(self, answers: list[str]):
        self.answers = answers
        self.requests: list[list] = []

    def get_json(self, url: str, params: dict | None = None, headers: dict | None = None):
        assert self.answers, f"one request more than the case has answers: {url} {params}"
        self.requests.append([url, params])
        return load_json(self.answers.pop(0))


def check_rest_case(exchange_name: str, case: Path, spec: dict, pairs: tuple[Pair, ...]) -> None:
    config = CoinGeckoConfig(exchange_name, pairs, coins=tuple(spec.get("coins", {}).items()))
    adapter = EXCHANGES[exchange_name](config, environ={})
    http = RecordedAnswers((case / "messages.jsonl").read_text().splitlines())
    if spec["kind"] == "candles":  # walked page after page as the backfill does
        records, errors = [], 0
        interval, start, end = spec["interval_s"], spec["start_s"], spec["end_s"]
        while start < end - end % interval:
            page = adapter.candles(http, pairs[0], interval, start, end)
            records += page.records
            errors += len(page.bad_rows)
            start = max(page.next_start_s, start + interval)
    else:
        records, errors = [], 0
        while http.answers:
            try:
                page = adapter.assets(http) if spec["kind"] == "assets" else None
            except MessageError:
                errors += 1
                continue
            if page is None:
                try:
                    records.append(adapter.ticker(http, pairs[0]))
                except MessageError:
                    errors += 1
            else:
                records += page.records
                errors += len(page.bad_rows)
    lines = [to_line(record)[1] for record in records]
    if spec["kind"] == "assets":  # stamped with the fetch time
        lines = [line.rsplit(" ", 1)[0] for line in lines]
    assert lines == (case / "expected.lp").read_text().splitlines()
    assert errors == spec["errors"]
    assert not http.answers, "answers left: fewer requests than the case expects"
    expected_requests = spec["requests"] * (1 if spec["kind"] == "candles" else len(http.requests))
    assert [
        [url.removeprefix(adapter.rest_url), params] for url, params in http.requests
    ] == expected_requests
