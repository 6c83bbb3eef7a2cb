"""`collector portfolio` as a user runs it: on the example configuration after a backfill from the replay servers."""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from collector.cli import main
from collector.config import load_config
from collector.service import Collector
from tests.influxd import ROOT, free_port
from tests.integration.harness import FAST, cli, collector_env
from tests.integration.valuation_helpers import hourly_candles, seed
from tests.replay.binance import BinanceReplay
from tests.replay.bitstamp import synthetic_candle
from tests.replay.kraken import KrakenReplay

DAY = 86400
FIELDS = ["asset", "quantity", "price", "value", "cost_basis", "unrealized_pnl", "realized_pnl", "pnl_pct"]
TOTAL_FIELDS = ["value", "cost_basis", "unrealized_pnl", "realized_pnl", "pnl_pct"]


def _example_config(path, replay, kraken=None, binance=None, coinbase=None) -> None:
    """portfolio.example.yml pointed at the replay servers, with daily candles so the backfill since 2020 is quick."""
    text = (ROOT / "portfolio.example.yml").read_text()
    if coinbase is not None:
        text = text.replace("# ws_url: wss://advanced-trade-ws.coinbase.com", f"ws_url: {coinbase.ws_url}")
        text = text.replace("# rest_url: https://api.exchange.coinbase.com", f"rest_url: {coinbase.rest_url}")
    if kraken is not None:
        text = text.replace("# ws_url: wss://ws.kraken.com/v2", f"ws_url: {kraken.ws_url}")
        text = text.replace("# rest_url: https://api.kraken.com/0/public", f"rest_url: {kraken.rest_url}")
    text = text.replace("# ws_url: wss://ws.bitstamp.net", f"ws_url: {replay.ws_url}")
    text = text.replace("# rest_url: https://www.bitstamp.net/api/v2", f"rest_url: {replay.rest_url}")
    if binance is not None:
        text = text.replace("# ws_url: wss://stream.binance.com:9443/stream", f"ws_url: {binance.ws_url}")
        text = text.replace("# rest_url: https://api.binance.com/api/v3", f"rest_url: {binance.rest_url}")
        assert binance.rest_url in text
    text = text.replace("interval: 1h", "interval: 1d")
    assert replay.ws_url in text and replay.rest_url in text and "interval: 1d" in text
    path.write_text(text)


def _example_line(text: str) -> int:
    """The number of the example's line holding `text` (exchanges added above it move it down)."""
    lines = (ROOT / "portfolio.example.yml").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def _backfill(path, settings, tmp_path) -> None:
    """The real backfill from the replay server, in this process with a patient writer: the first write into six
    years of an empty bucket creates hundreds of shards, which can outlast the command's 4 s write timeout."""
    config = load_config(path)
    options = replace(FAST, writer=replace(FAST.writer, timeout_s=120))
    collector = Collector(path, config, settings, tmp_path / "spool", options)
    collector.writer.start()
    try:
        for exchange in config.exchanges.values():
            runtime = collector.runtime(exchange)
            results = collector.backfill(runtime, exchange.pairs)
            runtime.http.close()
            assert [result.status for result in results] == ["ok"] * len(exchange.pairs), results
        assert collector.writer.flush(300)
        assert not collector.writer.spool, "some candles were not written"
    finally:
        collector.writer.close()
        collector.reader.close()


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _numbers(line: str) -> list[Decimal | None]:
    return [None if cell == "—" else Decimal(cell.replace(",", "")) for cell in _cells(line)[1:]]


def test_portfolio_on_the_example_after_a_backfill(collector_settings, replay, coinbase_replay, tmp_path):
    replay.candle_start_s = int(datetime(2020, 11, 1, tzinfo=UTC).timestamp())
    with KrakenReplay() as kraken, BinanceReplay() as binance:
        _example_config(tmp_path / "portfolio.yml", replay, kraken, binance, coinbase_replay)
        _backfill(tmp_path / "portfolio.yml", collector_settings, tmp_path)
    env = collector_env(collector_settings, tmp_path)

    result = cli(env, "portfolio", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Portfolio at ") and lines[0].endswith(" UTC, in USD")
    assert _cells(lines[2]) == [
        "asset",
        "quantity",
        "price",
        "value",
        "cost basis",
        "unrealized P/L",
        "realized P/L",
        "P/L %",
    ]
    rows = {_cells(line)[0]: _numbers(line) for line in lines[3:8]}
    assert list(rows) == ["BTC", "ETH", "LTC", "XRP", "total"]
    total = rows.pop("total")
    for column, name in enumerate(TOTAL_FIELDS[:4]):  # value, cost basis, unrealized, realized
        known = [row[column + 2] for row in rows.values() if row[column + 2] is not None]
        assert total[column] == sum(known), name
    assert rows["XRP"][3] is None  # a bare quantity has no cost basis
    assert all(row[2] is not None for row in rows.values())  # every asset has a stored price
    # the one note under the table: the example's transfer_in without a price took the market price, the close of
    # the daily candle that closed on its date (opened the day before)
    eth_close = Decimal(
        synthetic_candle("ethusd", int(datetime(2022, 9, 14, tzinfo=UTC).timestamp()))["close"]
    )
    assert lines[8] == "" and lines[10:] == [], lines[8:]
    note = re.fullmatch(
        rf"\S*portfolio\.yml:{_example_line('kind: transfer_in')}: transfer_in of 1\.5 ETH on 2022-09-15 at market "
        r"price (\S+) \(the line has no price\)",
        lines[9],
    )
    assert note and Decimal(note[1]) == eth_close, lines[9]
    assert result.stderr == ""

    as_json = cli(env, "portfolio", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert list(document) == ["base_currency", "at", "positions", "total"]
    assert document["base_currency"] == "USD"
    assert [list(position) for position in document["positions"]] == [FIELDS] * 4
    assert list(document["total"]) == TOTAL_FIELDS
    for position in document["positions"]:
        assert all(position[name] is None or isinstance(position[name], str) for name in FIELDS)
    assert Decimal(document["total"]["value"]) == sum(Decimal(p["value"]) for p in document["positions"])

    # on 2022-01-01 the example held 0.3 BTC (0.5 bought, 0.2 sold in 2021), 4 ETH, 12 LTC and 1500 XRP,
    # each at the close of the daily candle that closed at 2022-01-01 00:00 (opened 2021-12-31)
    past = json.loads(cli(env, "portfolio", "--at", "2022-01-01", "--json", cwd=tmp_path).stdout)
    opened = int(datetime(2021, 12, 31, tzinfo=UTC).timestamp())
    held = {"BTC": "0.3", "ETH": "4", "LTC": "12", "XRP": "1500"}
    assert past["at"] == "2022-01-01T00:00:00Z"
    for position in past["positions"]:
        close = Decimal(synthetic_candle(position["asset"].lower() + "usd", opened)["close"])
        assert Decimal(position["quantity"]) == Decimal(held[position["asset"]])
        assert Decimal(position["price"]) == close
        value = Decimal(held[position["asset"]]) * close
        assert Decimal(position["value"]) == value.quantize(Decimal("0.01"), ROUND_HALF_UP)  # to the cent


def test_portfolio_help_and_exit_codes(replay, tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    help_text = cli(env, "portfolio", "--help", cwd=tmp_path)
    assert help_text.returncode == 0
    assert "usage: collector portfolio" in help_text.stdout and "--at TIME" in help_text.stdout
    assert "--json" in help_text.stdout

    _example_config(tmp_path / "portfolio.yml", replay)
    bad_time = cli(env, "portfolio", "--at", "last tuesday", cwd=tmp_path)
    assert bad_time.returncode == 2 and "expected a time YYYY-MM-DD" in bad_time.stderr
    future = cli(env, "portfolio", "--at", "2999-01-01", cwd=tmp_path)
    assert future.returncode == 2 and "in the future" in future.stderr

    unreachable = env | {
        "INFLUXDB_V2_URL": f"http://127.0.0.1:{free_port()}",
        "INFLUXDB_V2_ORG": "o",
        "INFLUXDB_V2_TOKEN": "t",
    }
    down = cli(unreachable, "portfolio", cwd=tmp_path)
    assert down.returncode == 1
    assert re.fullmatch(
        r"collector portfolio: cannot read prices from InfluxDB at http://127\.0\.0\.1:\d+: \w+\n",
        down.stderr,
    )

    (tmp_path / "portfolio.yml").write_text("base_currency: USD\n")
    empty = cli(unreachable, "portfolio", cwd=tmp_path)
    assert empty.returncode == 2 and "no holdings to value" in empty.stderr


def test_check_config_names_each_price_source_and_what_to_add(tmp_path, capsys):
    path = tmp_path / "portfolio.yml"
    path.write_text(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD, ETH-USDT, USDT-USD]\n"
        "holdings:\n  BTC: '1'\n  ETH: '2'\n  DOGE: '1000'\n"
    )
    assert main(["check-config", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(
        "  prices (an asset without a source is reported and left unvalued, never valued at 0):"
    )
    assert lines[start + 1 :] == [
        "    BTC: priced from BTC-USD on bitstamp",
        "    DOGE: no price source: add a pair such as DOGE-USD (or DOGE-USDT with USDT-USD) under an exchange's "
        "pairs in portfolio.yml",
        "    ETH: priced from ETH-USDT × USDT-USD on bitstamp",
    ]


def test_portfolio_says_a_transfer_in_took_the_market_price(
    collector_settings, tmp_path, monkeypatch, capsys
):
    seed(collector_settings, tmp_path, hourly_candles("BTC-USD", "2026-01-09T23:00:00Z", ["29000", "31000"]))
    path = tmp_path / "portfolio.yml"
    path.write_text(
        "exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\nholdings:\n  BTC:\n    - {date: 2026-01-10T00:00:00Z, kind: transfer_in, quantity: '1'}\n"
    )
    done = cli(
        collector_env(collector_settings, tmp_path),
        "portfolio",
        "--config",
        str(path),
        "--at",
        "2026-01-10T01:00",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    position = json.loads(done.stdout)["positions"][0]
    assert position["cost_basis"] == "29000.00"  # the close at 00:00 (the 23:00 candle)
    assert "market price 29000" in done.stderr, done.stderr


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
