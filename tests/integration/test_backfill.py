"""Candle backfill, tickers and coin metadata against the replayed Bitstamp HTTP API and the real influxd."""

import json
import logging
import time
from decimal import Decimal

from collector.config import Pair
from collector.exchanges.base import RateLimit
from collector.http import HttpClient
from collector.retry import Backoff
from collector.service import Collector
from collector.storage.reader import flux_query
from tests.integration.harness import FAST, write_config
from tests.replay.bitstamp import SAMPLE_CURRENCIES, synthetic_candle

BTC = Pair("BTC", "USD")
HOUR = 3600


def collector_for(tmp_path, replay, settings, **config_kwargs) -> Collector:
    config = write_config(tmp_path / "portfolio.yml", replay, **config_kwargs)
    return Collector(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool", FAST)


def run_backfill(collector: Collector, pairs=(BTC,), since_s=None):
    collector.writer.start()
    try:
        runtime = collector.runtime(collector.config.exchanges["bitstamp"])
        return collector.backfill(runtime, pairs, since_s)
    finally:
        collector.writer.close()
        collector.reader.close()


def stored_candles(client, org) -> dict[int, dict]:
    query = """
from(bucket: "crypto_history")
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "candle" and r.pair == "BTC-USD" and r.interval == "1h")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
"""
    rows = [r.values for t in client.query_api().query(query, org=org) for r in t.records]
    return {int(row["_time"].timestamp()): row for row in rows}


def test_multi_page_backfill_writes_every_candle_once_then_only_new_ones(
    collector_settings, admin_client, replay, tmp_path
):
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 2500 * HOUR  # listed 2500 hours ago: three pages of at most 1000

    (result,) = run_backfill(
        collector_for(tmp_path, replay, collector_settings), since_s=replay.candle_start_s
    )

    assert result.status == "ok", result.detail
    expected_opens = list(range(replay.candle_start_s, now_hour, HOUR))  # the current hour is still open
    if int(time.time()) // HOUR * HOUR != now_hour:  # an hour turned during the test
        expected_opens.append(now_hour)
    assert result.candles == len(expected_opens) == len(set(expected_opens))
    assert result.requests == 3
    stored = stored_candles(admin_client, collector_settings.org)
    assert sorted(stored) == expected_opens
    for open_time in (expected_opens[0], expected_opens[1234], expected_opens[-1]):
        candle = synthetic_candle("btcusd", open_time)
        for field in ("open", "high", "low", "close", "volume"):
            assert stored[open_time][field] == float(Decimal(candle[field]))
    limits = [path for path in replay.http.requests if "/ohlc/" in path]
    assert all("limit=1000" in path and "exclude_current_candle=true" in path for path in limits)

    replay.http.requests.clear()
    (again,) = run_backfill(collector_for(tmp_path, replay, collector_settings))
    assert again.candles <= 1 and again.requests <= 1  # only a candle closed since, if an hour turned
    assert len(stored_candles(admin_client, collector_settings.org)) == len(expected_opens) + again.candles


def test_no_data_and_rate_limited_are_told_apart(collector_settings, replay, tmp_path):
    replay.candle_start_s = int(time.time()) + 10 * 86400  # nothing yet
    (empty,) = run_backfill(collector_for(tmp_path, replay, collector_settings))
    assert empty.status == "no data"
    assert "no BTC-USD candles" in empty.detail

    replay.candle_start_s = None
    collector = collector_for(tmp_path, replay, collector_settings)
    collector.writer.start()
    runtime = collector.runtime(collector.config.exchanges["bitstamp"])
    runtime.http.attempts = 2
    runtime.http.backoff = Backoff(0.01, 0.01)
    replay.http.queued = [(429, {"Retry-After": "0"}, '{"status":"error","reason":"rate limited"}')] * 2
    try:
        (limited,) = collector.backfill(runtime, [BTC])
    finally:
        collector.writer.close()
        collector.reader.close()
    assert limited.status == "rate limited"
    assert runtime.health.rate_limited == 2


def test_a_pair_with_no_data_yet_is_not_walked_from_the_start_every_round(
    collector_settings, replay, tmp_path
):
    now_hour = int(time.time()) // HOUR * HOUR
    since = time.strftime("%Y-%m-%d", time.gmtime(now_hour - 2500 * HOUR))  # three pages of 1000 hours
    replay.candle_start_s = now_hour + 10 * 86400  # not listed yet
    collector = collector_for(tmp_path, replay, collector_settings, since=since)
    collector.writer.start()
    runtime = collector.runtime(collector.config.exchanges["bitstamp"])
    try:
        (first,) = collector.backfill(runtime, [BTC])
        (second,) = collector.backfill(runtime, [BTC])
        replay.candle_start_s = now_hour - 5 * HOUR  # listed since the last round
        (listed,) = collector.backfill(runtime, [BTC])
    finally:
        collector.writer.close()
        collector.reader.close()
    assert (first.status, first.requests) == ("no data", 3)
    assert second.requests <= 1  # from where the first walk ended, not from `since`
    assert listed.status == "ok" and listed.requests == 1
    assert listed.candles >= 5 and listed.last_open_s >= now_hour - HOUR


def test_429_retry_after_is_honoured(replay):
    from collector.config import ExchangeConfig
    from collector.exchanges.bitstamp import Bitstamp

    adapter = Bitstamp(ExchangeConfig("bitstamp", (BTC,), rest_url=replay.rest_url))
    http = HttpClient("bitstamp", RateLimit(8000, 600))
    replay.http.queued = [(429, {"Retry-After": "1"}, "{}")]
    started = time.monotonic()
    ticker = adapter.ticker(http, BTC)
    assert time.monotonic() - started >= 1.0
    assert http.health.rate_limited == 1
    assert ticker.last == Decimal("77265")
    assert len(replay.http.requests) == 2


def test_a_503_retry_after_is_honoured_too(replay):
    from collector.config import ExchangeConfig
    from collector.exchanges.bitstamp import Bitstamp

    adapter = Bitstamp(ExchangeConfig("bitstamp", (BTC,), rest_url=replay.rest_url))
    http = HttpClient("bitstamp", RateLimit(8000, 600), backoff=Backoff(0.01, 0.01))
    replay.http.queued = [(503, {"Retry-After": "1"}, "maintenance")]
    started = time.monotonic()
    assert adapter.ticker(http, BTC).last == Decimal("77265")
    assert time.monotonic() - started >= 1.0  # not the 0.01 s backoff
    assert http.health.rate_limited == 0  # a 503 is not a rate limit


def test_server_errors_are_retried_and_client_errors_are_not(replay):
    from collector.config import ExchangeConfig
    from collector.exchanges.bitstamp import Bitstamp
    from collector.http import HttpError

    adapter = Bitstamp(ExchangeConfig("bitstamp", (BTC,), rest_url=replay.rest_url))
    http = HttpClient("bitstamp", RateLimit(8000, 600), backoff=Backoff(0.01, 0.01))
    replay.http.queued = [(500, {}, "oops"), (503, {}, "busy")]
    assert adapter.ticker(http, BTC).last == Decimal("77265")
    assert len(replay.http.requests) == 3

    replay.http.queued = [(400, {}, '{"reason":"bad pair"}'), (200, {}, "{}")]
    try:
        adapter.ticker(http, BTC)
    except HttpError as exc:
        assert exc.status == 400 and "bad pair" in str(exc)
    else:
        raise AssertionError("a 400 must not be retried into success")
    assert len(replay.http.requests) == 4


def test_tickers_and_coin_metadata_are_written(collector_settings, admin_client, replay, tmp_path):
    collector = collector_for(tmp_path, replay, collector_settings)
    collector.writer.start()
    try:
        runtime = collector.runtime(collector.config.exchanges["bitstamp"])
        assert collector.reference_data(runtime) == (1, 2)
    finally:
        collector.writer.close()
        collector.reader.close()
    query = flux_query(
        """
from(bucket: {bucket}) |> range(start: -1h)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
""",
        bucket="crypto_meta",
    )
    rows = [
        r.values for t in admin_client.query_api().query(query, org=collector_settings.org) for r in t.records
    ]
    ticker = next(row for row in rows if row["_measurement"] == "ticker")
    assert (ticker["exchange"], ticker["pair"], ticker["last"], ticker["bid"], ticker["vwap"]) == (
        "bitstamp",
        "BTC-USD",
        77265.0,
        77239.0,
        78381.0,
    )
    # the 24 h open is the price 24 h ago (open_24), not the day's first price (open: 78237), and the
    # change is measured from it: exactly, and as the exchange rounds it (percent_change_24: -0.56)
    assert ticker["open"] == 77700.0
    exact = (Decimal("77265") - Decimal("77700")) / Decimal("77700") * 100
    assert ticker["change_24h_pct"] == float(exact)
    assert round(ticker["change_24h_pct"], 2) == -0.56
    assert abs((ticker["last"] - ticker["open"]) / ticker["open"] * 100 - ticker["change_24h_pct"]) < 1e-9
    btc = next(row for row in rows if row["_measurement"] == "asset" and row["symbol"] == "BTC")
    assert (btc["name"], btc["type"], btc["logo_url"], btc["decimals"], btc["available_supply"]) == (
        "Bitcoin",
        "crypto",
        "https://assets.example/btc.svg",
        8,
        19500000.0,
    )
    usd = next(row for row in rows if row["_measurement"] == "asset" and row["symbol"] == "USD")
    assert "available_supply" not in usd or usd["available_supply"] is None


def test_empty_pages_before_a_listing_do_not_end_the_history(
    collector_settings, admin_client, replay, tmp_path
):
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 100 * HOUR  # listed 100 hours ago
    since_s = replay.candle_start_s - 1500 * HOUR  # the first page of 1000 hours is empty

    (result,) = run_backfill(collector_for(tmp_path, replay, collector_settings), since_s=since_s)

    assert (result.status, result.requests) == ("ok", 2), result.detail
    expected = list(range(replay.candle_start_s, int(time.time()) // HOUR * HOUR, HOUR))
    assert sorted(stored_candles(admin_client, collector_settings.org)) == expected
    assert result.candles == len(expected)


def test_a_bad_row_costs_only_itself(collector_settings, admin_client, replay, tmp_path):
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 10 * HOUR
    broken = replay.candle_start_s + 3 * HOUR
    replay.candle_overrides[broken] = {**synthetic_candle("btcusd", broken), "close": "n/a"}
    replay.currencies = [*SAMPLE_CURRENCIES, {"currency": "ETH", "name": "Ether", "decimals": "eight"}]
    collector = collector_for(tmp_path, replay, collector_settings)
    collector.writer.start()
    try:
        runtime = collector.runtime(collector.config.exchanges["bitstamp"])
        (result,) = collector.backfill(runtime, [BTC], since_s=replay.candle_start_s)
        assert collector.reference_data(runtime) == (1, 2)  # BTC and USD; the ETH row is unusable
    finally:
        collector.writer.close()
        collector.reader.close()
    assert result.status == "ok" and "1 unusable rows skipped" in result.detail
    assert result.bad_rows == [
        f"candle close: expected a number, got 'n/a': {json.dumps(replay.candle_overrides[broken])}"
    ]
    expected = [t for t in range(replay.candle_start_s, int(time.time()) // HOUR * HOUR, HOUR) if t != broken]
    assert sorted(stored_candles(admin_client, collector_settings.org)) == expected
    assert runtime.health.errors == 2  # one candle, one currency


def test_an_error_is_logged_again_after_a_recovery(collector_settings, replay, tmp_path, caplog):
    collector = collector_for(tmp_path, replay, collector_settings)
    collector.writer.start()
    runtime = collector.runtime(collector.config.exchanges["bitstamp"])
    runtime.http.attempts = 1
    unavailable = (503, {}, "busy")
    try:
        with caplog.at_level(logging.INFO, logger="collector.service"):
            replay.http.script("/currencies/", unavailable)
            collector.reference_data(runtime)  # fails: logged
            collector.reference_data(runtime)  # works: the recovery is logged
            replay.http.script("/currencies/", unavailable, unavailable)
            collector.reference_data(runtime)  # fails again: logged again
            collector.reference_data(runtime)  # still failing: counted only
    finally:
        collector.writer.close()
        collector.reader.close()
    failures = [r for r in caplog.records if "coin metadata failed" in r.getMessage()]
    recoveries = [r for r in caplog.records if "coin metadata works again" in r.getMessage()]
    assert (len(failures), len(recoveries), runtime.health.errors) == (2, 1, 3)
