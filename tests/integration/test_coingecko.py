"""CoinGecko against its replay and the real influxd: candle history of a coin no exchange lists, its metadata and
price, its value in `collector portfolio`, a 429 survived, a restart without duplicates, older history for an
exchange whose candles stop short, and a hot-reloaded coin."""

import json
import logging
import time
from decimal import ROUND_HALF_UP, Decimal

import pytest

from collector.config import parse_config
from collector.exchanges.base import RateLimit
from collector.exchanges.bitstamp import Bitstamp
from collector.exchanges.coingecko import API_KEY_ENV_VAR, API_KEY_HEADER, CoinGecko
from collector.service import Collector
from tests.integration.harness import FAST, cli, collector_env, running, stored_rows, wait_for
from tests.integration.valuation_helpers import stored_points
from tests.replay.bitstamp import synthetic_candle
from tests.replay.coingecko import HOURLY_OFFSET_S, CoinGeckoReplay, synthetic_price

HOUR, DAY = 3600, 86_400
KEY = "CG-test-demo-key"
HBAR_ID = "hedera-hashgraph"


@pytest.fixture
def coingecko(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV_VAR, KEY)
    with CoinGeckoReplay() as server:
        yield server


def days_ago(days: int) -> tuple[str, int]:
    start = (int(time.time()) // DAY - days) * DAY
    return time.strftime("%Y-%m-%d", time.gmtime(start)), start


def write(path, text: str):
    path.write_text(text)
    return parse_config(text, str(path), {"bitstamp"}, {"bitstamp": Bitstamp.candle_steps})


def hbar_config(coingecko, since: str, extra: str = "") -> str:
    return (
        f"coingecko:\n  coins: {{HBAR: {HBAR_ID}}}\n  rest_url: {coingecko.rest_url}\n"
        f"backfill:\n  interval: 1h\n  every: 12h\n  since: {since}\n" + extra
    )


def backfill_once(tmp_path, config, settings):
    """One backfill and reference-data round of CoinGecko, as `collector run` does on start; then stored."""
    collector = Collector(tmp_path / "portfolio.yml", config, settings, tmp_path / "spool", FAST)
    collector.writer.start()
    try:
        runtime = collector.runtime(config.coingecko)
        results = collector.backfill(runtime, config.coingecko.pairs)
        counts = collector.reference_data(runtime)
        assert collector.writer.flush(60)
    finally:
        collector.writer.close()
        collector.reader.close()
    return runtime, results, counts


def candles(admin_client, org, pair: str, exchange: str = "coingecko") -> dict[int, dict]:
    rows = stored_rows(admin_client, org, "crypto_history", "candle", pair)
    return {int(row["_time"].timestamp()): row for row in rows if row["exchange"] == exchange}


def test_a_coin_no_exchange_lists_is_backfilled_described_priced_and_valued(
    coingecko, collector_settings, admin_client, tmp_path
):
    since, since_s = days_ago(10)
    config = write(tmp_path / "portfolio.yml", hbar_config(coingecko, since, 'holdings:\n  HBAR: "1000"\n'))

    runtime, (result,), (tickers, assets) = backfill_once(tmp_path, config, collector_settings)

    assert (result.status, result.requests, tickers, assets) == ("ok", 1, 1, 1), result
    assert all(
        headers.get(API_KEY_HEADER) == KEY for headers in coingecko.headers
    )  # the Demo key, every call
    stored = candles(admin_client, collector_settings.org, "HBAR-USD")
    closed = list(range(since_s, int(time.time()) // HOUR * HOUR, HOUR))
    assert (
        sorted(stored)[: len(closed) - 1] == closed[:-1]
    )  # every closed hour (the last may have turned since)
    assert set(stored) <= set(closed) | {closed[-1] + HOUR}
    for open_s in (closed[0], closed[len(closed) // 2], closed[-2]):
        exact = synthetic_price(HBAR_ID, "usd", open_s + HOURLY_OFFSET_S)  # its hour's one sample
        row = stored[open_s]
        assert row["open"] == row["high"] == row["low"] == row["close"] == float(exact)
        assert "volume" not in row  # CoinGecko has no candle volume: none is stored, never a 0
        assert (row["base"], row["quote"], row["interval"]) == ("HBAR", "USD", "1h")

    (asset,) = stored_rows_of(admin_client, collector_settings.org, "asset")
    assert (asset["symbol"], asset["name"], asset["type"]) == ("HBAR", "Hedera", "crypto")
    assert asset["logo_url"] == f"https://coin-images.example/{HBAR_ID}.png"
    (ticker,) = stored_rows(admin_client, collector_settings.org, "crypto_meta", "ticker", "HBAR-USD")
    (price_query,) = coingecko.requests_to("/simple/price")
    latest = Decimal(str(ticker["last"]))
    last_open_s = max(stored)
    if (
        last_open_s + HOUR > ticker["_time"].timestamp()
    ):  # the hour turned after the ticker's price: the candle
        latest = Decimal(str(stored[last_open_s]["close"]))  # just closed is the newer price
    assert price_query["ids"] == HBAR_ID and price_query["vs_currencies"] == "usd"

    env = collector_env(collector_settings, tmp_path, **{API_KEY_ENV_VAR: KEY})
    check = cli(env, "check-config", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "  coingecko: HBAR (hedera-hashgraph); Demo key" in check.stdout
    assert "    HBAR: priced from HBAR-USD on coingecko" in check.stdout
    assert KEY not in check.stdout + check.stderr

    now = json.loads(cli(env, "portfolio", "--json", cwd=tmp_path).stdout)
    (position,) = now["positions"]
    # valued with its newest CoinGecko price (the ticker, or the candle closed after it), exactly
    assert Decimal(position["price"]) == latest
    assert Decimal(position["value"]) == (1000 * latest).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )  # to the cent
    at = closed[len(closed) // 2] + HOUR  # the hour its middle candle closed
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    past = json.loads(cli(env, "portfolio", "--at", moment, "--json", cwd=tmp_path).stdout)
    assert Decimal(past["positions"][0]["price"]) == synthetic_price(
        HBAR_ID, "usd", at - HOUR + HOURLY_OFFSET_S
    )


def stored_rows_of(client, org, measurement: str) -> list[dict]:
    query = (
        'from(bucket: "crypto_meta") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "{measurement}") '
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    return [r.values for t in client.query_api().query(query, org=org) for r in t.records]


def test_a_429_is_waited_out_and_a_restart_resumes_without_duplicates(
    coingecko, collector_settings, admin_client, tmp_path
):
    since, since_s = days_ago(100)  # 100 days of hourly candles: two requests of at most 89 days
    config = write(tmp_path / "portfolio.yml", hbar_config(coingecko, since))
    throttled = '{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit."}}'
    coingecko.http.script(f"from={since_s}&", (429, {"Retry-After": "1"}, throttled))  # the first chunk
    malformed = (200, {}, '{"prices":[[1,')
    coingecko.http.script(f"from={since_s + 89 * DAY}&", malformed)  # the second chunk

    runtime, (first,), _ = backfill_once(tmp_path, config, collector_settings)

    assert runtime.health.rate_limited == 1
    chart = [i for i, path in enumerate(coingecko.http.requests) if "/market_chart/" in path]
    assert len(chart) == 3  # the 429, its retry, the malformed second chunk
    waited = coingecko.request_times[chart[1]] - coingecko.request_times[chart[0]]
    assert waited >= 1.0  # Retry-After honoured
    ranges = coingecko.requests_to("/market_chart/")
    assert int(ranges[1]["to"]) - int(ranges[1]["from"]) == 89 * DAY  # hourly granularity, clear of the edge
    assert first.status == "failed" and "not JSON" in first.detail  # said, and what came before it is kept
    stored = candles(admin_client, collector_settings.org, "HBAR-USD")
    assert sorted(stored) == list(range(since_s, since_s + 89 * DAY, HOUR)) and first.candles == len(stored)

    _, (resumed,), _ = backfill_once(tmp_path, config, collector_settings)  # a restart: after the last stored
    assert resumed.status == "ok" and resumed.requests == 1
    assert int(coingecko.requests_to("/market_chart/")[-1]["from"]) == since_s + 89 * DAY
    after = candles(admin_client, collector_settings.org, "HBAR-USD")
    assert len(after) == len(stored) + resumed.candles  # nothing written twice
    assert sorted(after)[: 100 * 24 - 1] == list(range(since_s, since_s + (100 * 24 - 1) * HOUR, HOUR))

    _, (again,), _ = backfill_once(tmp_path, config, collector_settings)
    assert again.candles <= 1 and again.requests <= 1  # only an hour that closed since
    assert len(candles(admin_client, collector_settings.org, "HBAR-USD")) == len(after) + again.candles


def test_a_coins_now_price_is_refreshed_on_its_own_schedule_and_valued_live(
    coingecko, collector_settings, admin_client, tmp_path, monkeypatch
):
    """Backfill rounds are 12 h apart; a CoinGecko coin's "now" price (every coin's in one `/simple/price` call) is
    refreshed every `prices_every_s` between them, and the live valuation values the holding with the newest."""
    monkeypatch.setattr(CoinGecko, "prices_every_s", 0.5)
    now_s = int(time.time())
    coingecko.now_s = now_s - 300  # five minutes ago, then now: a price from the future would not be read
    since, _ = days_ago(3)
    holdings = 'holdings:\n  HBAR: "1000"\n  ETH: "2"\nvaluation:\n  live_every: 1s\n'
    text = hbar_config(coingecko, since, holdings).replace(
        f"{{HBAR: {HBAR_ID}}}", f"{{HBAR: {HBAR_ID}, ETH: ethereum}}"
    )
    path = tmp_path / "portfolio.yml"
    org = collector_settings.org

    def live_value(asset: str, price: Decimal, quantity: int):
        points = stored_points(admin_client, org, "position", bucket="crypto_live")
        fields = [f for (a, _), f in points.items() if a == asset and f.get("price") == float(price)]
        return fields and fields[0]["value"] == float(
            (quantity * price).quantize(Decimal("0.01"), ROUND_HALF_UP)
        )

    with running(path, write(path, text), collector_settings, tmp_path / "spool"):
        first = synthetic_price(HBAR_ID, "usd", now_s - 300 - 42)
        wait_for(lambda: live_value("HBAR", first, 1000), 60, "a live value at the first price")
        coingecko.now_s = now_s  # five minutes on: CoinGecko has new prices
        newer = synthetic_price(HBAR_ID, "usd", now_s - 42)
        assert newer != first
        wait_for(lambda: live_value("HBAR", newer, 1000), 20, "a live value at the refreshed price")
        eth = synthetic_price("ethereum", "usd", now_s - 42)
        wait_for(lambda: live_value("ETH", eth, 2), 20, "ETH valued at its refreshed price too")
    queries = coingecko.requests_to("/simple/price")
    assert len(queries) >= 2 and all(
        q["ids"] == "ethereum,hedera-hashgraph" for q in queries
    )  # one call, all coins


def test_the_per_minute_budget_is_never_exceeded(
    coingecko, collector_settings, admin_client, tmp_path, monkeypatch
):
    """The replay counts every call in a sliding window and answers 429 past its budget, as CoinGecko counts calls
    a minute. Three coins over 100 days (two chunks each), their prices and metadata: never refused, and never
    more calls in a window than the budget (a window of 2 s for 60: the collector's is 10% longer, for jitter)."""
    calls, window_s = 4, 2.0
    monkeypatch.setattr(CoinGecko, "demo_budget", RateLimit(calls, window_s * 1.1))
    coingecko.budget = (calls, window_s)
    since, since_s = days_ago(100)
    coins = f"{{HBAR: {HBAR_ID}, ETH: ethereum, BTC: bitcoin}}"
    config = write(
        tmp_path / "portfolio.yml", hbar_config(coingecko, since).replace(f"{{HBAR: {HBAR_ID}}}", coins)
    )

    runtime, results, (tickers, assets) = backfill_once(tmp_path, config, collector_settings)

    assert [r.status for r in results] == ["ok"] * 3 and (tickers, assets) == (3, 3), results
    assert coingecko.over_budget == 0 and runtime.health.rate_limited == 0
    times = coingecko.request_times
    assert len(times) == 3 * 2 + 2  # two chunks a coin, one price call, one metadata call: twice the budget
    assert all(later - earlier >= window_s for earlier, later in zip(times, times[calls:], strict=False))
    for pair in ("HBAR-USD", "ETH-USD", "BTC-USD"):
        assert len(candles(admin_client, collector_settings.org, pair)) >= 100 * 24 - 1


def test_a_coingecko_edit_does_not_renew_the_budget(
    coingecko, collector_settings, admin_client, tmp_path, monkeypatch
):
    """A `coingecko:` edit restarts the source; the calls made just before still count against CoinGecko's budget."""
    calls, window_s = 3, 3.0
    monkeypatch.setattr(CoinGecko, "demo_budget", RateLimit(calls, window_s * 1.1))
    coingecko.budget = (calls, window_s)
    since, _ = days_ago(3)
    text = hbar_config(coingecko, since)
    path = tmp_path / "portfolio.yml"
    org = collector_settings.org
    with running(path, write(path, text), collector_settings, tmp_path / "spool"):
        wait_for(lambda: candles(admin_client, org, "HBAR-USD"), 30, "HBAR-USD candles")
        path.write_text(text.replace(f"{{HBAR: {HBAR_ID}}}", f"{{HBAR: {HBAR_ID}, ETH: ethereum}}"))
        wait_for(lambda: len(candles(admin_client, org, "ETH-USD")) >= 3 * 24 - 1, 60, "ETH-USD candles")
    assert coingecko.over_budget == 0


def test_a_base_currency_edit_backfills_the_coins_in_the_new_currency_at_once(
    coingecko, collector_settings, admin_client, tmp_path
):
    """base_currency USD -> EUR while running: each coin is now SYMBOL-EUR; its candles are fetched right away (not
    on the next round, 12 h later), and the holding is valued in euros from them."""
    since, since_s = days_ago(3)
    text = hbar_config(coingecko, since)
    path = tmp_path / "portfolio.yml"
    org = collector_settings.org
    with running(path, write(path, text), collector_settings, tmp_path / "spool"):
        wait_for(lambda: candles(admin_client, org, "HBAR-USD"), 30, "HBAR-USD candles")
        path.write_text("base_currency: EUR\n" + text)
        wait_for(
            lambda: min(candles(admin_client, org, "HBAR-EUR") or [0]) == since_s, 30, "HBAR-EUR candles"
        )
    assert {q["vs_currency"] for q in coingecko.requests_to("/market_chart/")} == {"usd", "eur"}


def test_older_history_of_a_short_exchange_comes_from_coingecko_and_coins_hot_reload(
    coingecko, replay, collector_settings, admin_client, tmp_path, monkeypatch, caplog
):
    """Bitstamp made to serve only its latest 48 hourly candles (as Kraken serves 720): ETH-EUR before them comes
    from CoinGecko (ethereum, in euros), fetched for it; BTC-USD has no other source, and the log says so."""
    monkeypatch.setattr(Bitstamp, "candle_reach_rows", 48)
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 48 * HOUR
    since, since_s = days_ago(6)
    text = (
        f"exchanges:\n  bitstamp:\n    pairs: [BTC-USD, ETH-EUR]\n"
        f"    ws_url: {replay.ws_url}\n    rest_url: {replay.rest_url}\n"
        f"coingecko:\n  coins: {{HBAR: {HBAR_ID}, ETH: ethereum}}\n  rest_url: {coingecko.rest_url}\n"
        f"backfill:\n  interval: 1h\n  every: 12h\n  since: {since}\n"
    )
    path = tmp_path / "portfolio.yml"
    caplog.set_level(logging.INFO, logger="collector.service")
    with running(path, write(path, text), collector_settings, tmp_path / "spool") as runner:
        org = collector_settings.org
        wait_for(
            lambda: len(candles(admin_client, org, "ETH-EUR")) >= 6 * 24 - 1, 60, "ETH-EUR from CoinGecko"
        )
        wait_for(
            lambda: len(candles(admin_client, org, "ETH-USD")) >= 6 * 24 - 1, 60, "ETH-USD from CoinGecko"
        )
        bitstamp = wait_for(lambda: candles(admin_client, org, "BTC-USD", "bitstamp"), 60, "bitstamp candles")
        assert min(bitstamp) >= now_hour - 48 * HOUR  # only what it serves is asked for
        older = candles(admin_client, org, "ETH-EUR")
        assert min(older) == since_s  # the span Bitstamp cannot reach is CoinGecko's, in euros
        assert older[since_s]["close"] == float(synthetic_price("ethereum", "eur", since_s + HOURLY_OFFSET_S))
        assert [q["vs_currency"] for q in coingecko.requests_to("/coins/ethereum/")] == ["usd", "eur"]
        log = caplog.text
        assert "bitstamp ETH-EUR: its candles reach back to" in log
        assert "older history from coingecko's ETH-EUR candles (fetched for this)" in log
        assert "no other configured source has older BTC-USD candles" in log

        path.write_text(text.replace("ETH: ethereum}", "ETH: ethereum, BTC: bitcoin}"))  # a coin added
        wait_for(
            lambda: len(candles(admin_client, org, "BTC-USD")) >= 6 * 24 - 1, 60, "BTC-USD from CoinGecko"
        )
        health = runner.collector.exchanges["coingecko"].health
        assert health.errors == 0 and health.rate_limited == 0
        fields = wait_for(lambda: health_fields(admin_client, org, "coingecko"), 20, "coingecko health")
        assert "errors" in fields and "backfill_lag_s" in fields
        assert not fields & {"connected", "last_message_age_s"}  # no websocket: never shown as disconnected


def test_a_pair_added_to_a_short_exchange_gets_its_older_history_at_once(
    coingecko, replay, collector_settings, admin_client, tmp_path, monkeypatch
):
    """ETH-EUR added to Bitstamp (serving only its latest 48 candles) while running: CoinGecko backfills ETH-EUR
    from `since` right after the edit, not on the next round 12 h later; so does a coin added to CoinGecko for a
    pair an exchange already has."""
    monkeypatch.setattr(Bitstamp, "candle_reach_rows", 48)
    replay.candle_start_s = int(time.time()) // HOUR * HOUR - 48 * HOUR
    since, since_s = days_ago(4)
    text = (
        f"exchanges:\n  bitstamp:\n    pairs: [BTC-USD]\n"
        f"    ws_url: {replay.ws_url}\n    rest_url: {replay.rest_url}\n"
        f"coingecko:\n  coins: {{ETH: ethereum}}\n  rest_url: {coingecko.rest_url}\n"
        f"backfill:\n  interval: 1h\n  every: 12h\n  since: {since}\n"
    )
    path = tmp_path / "portfolio.yml"
    org = collector_settings.org
    with running(path, write(path, text), collector_settings, tmp_path / "spool"):
        wait_for(
            lambda: len(candles(admin_client, org, "ETH-USD")) >= 4 * 24 - 1, 60, "ETH-USD from CoinGecko"
        )
        assert not candles(admin_client, org, "ETH-EUR")
        path.write_text(text.replace("pairs: [BTC-USD]", "pairs: [BTC-USD, ETH-EUR]"))
        wait_for(lambda: min(candles(admin_client, org, "ETH-EUR") or [0]) == since_s, 60, "older ETH-EUR")
        path.write_text(
            text.replace("{ETH: ethereum}", "{ETH: ethereum, BTC: bitcoin}").replace(
                "pairs: [BTC-USD]", "pairs: [BTC-USD, ETH-EUR]"
            )
        )
        wait_for(lambda: min(candles(admin_client, org, "BTC-USD") or [0]) == since_s, 60, "older BTC-USD")


def test_hourly_history_is_valued_with_older_history_before_the_exchanges_first_candle(
    coingecko, replay, collector_settings, admin_client, tmp_path, monkeypatch
):
    """The running collector's hourly history of 2 ETH bought 60 h ago, in EUR: Bitstamp serves only its latest 48
    ETH-EUR candles, so each hour before its first close is valued with CoinGecko's ETH-EUR close of the hour before,
    each hour after with Bitstamp's: one position per hour (never both sources), exact, and the total the same."""
    monkeypatch.setattr(Bitstamp, "candle_reach_rows", 48)
    wait_for(lambda: time.time() % HOUR < HOUR - 60, 65, "not the last minute of an hour")
    now_hour = int(time.time()) // HOUR * HOUR
    first_bitstamp = (
        now_hour - 47 * HOUR
    )  # its latest 48 candles, the still-open one counted (as Kraken's 720)
    replay.candle_start_s = first_bitstamp
    since, _ = days_ago(4)
    bought = now_hour - 60 * HOUR
    day = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(bought))
    path = tmp_path / "portfolio.yml"
    text = (
        "base_currency: EUR\n"
        f"exchanges:\n  bitstamp:\n    pairs: [ETH-EUR]\n    ws_url: {replay.ws_url}\n    rest_url: {replay.rest_url}\n"
        f"coingecko:\n  coins: {{ETH: ethereum}}\n  rest_url: {coingecko.rest_url}\n"
        f"backfill:\n  interval: 1h\n  every: 12h\n  since: {since}\n"
        f"holdings:\n  ETH:\n    - {{date: {day}, kind: buy, quantity: '2', price: '1000'}}\n"
    )

    def close_before(hour: int) -> Decimal:
        if hour - HOUR >= first_bitstamp:
            return Decimal(synthetic_candle("etheur", hour - HOUR)["close"])
        return synthetic_price("ethereum", "eur", hour - HOUR + HOURLY_OFFSET_S)

    def stamp(hour: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour))

    expected = {stamp(hour): float(2 * close_before(hour)) for hour in range(bought, now_hour + HOUR, HOUR)}
    org = collector_settings.org

    def history(measurement: str) -> dict:
        points = stored_points(admin_client, org, measurement)
        return {at: fields.get("value") for (_, at), fields in points.items()}

    with running(path, write(path, text), collector_settings, tmp_path / "spool"):
        wait_for(lambda: history("position") == expected, 90, "hourly history over both sources")
    assert history("portfolio") == expected  # the total: one position an hour, never both sources added
    assert expected[stamp(first_bitstamp)] != float(
        2 * Decimal(synthetic_candle("etheur", first_bitstamp - HOUR)["close"])
    )


def health_fields(client, org, exchange: str) -> set[str]:
    query = (
        'from(bucket: "crypto_live") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "collector" and r.exchange == "{exchange}") |> last()'
    )
    return {r.get_field() for t in client.query_api().query(query, org=org) for r in t.records}


def test_collector_backfill_fetches_older_history_and_the_valuation_reads_it(
    coingecko, replay, collector_settings, tmp_path, monkeypatch, capsys
):
    """`collector backfill` with Bitstamp serving only its latest 48 candles: ETH-EUR before them is CoinGecko's,
    and `collector portfolio --at` values ETH with it there, with Bitstamp's own closes after."""
    monkeypatch.setattr(Bitstamp, "candle_reach_rows", 48)
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 48 * HOUR
    since, since_s = days_ago(5)
    (tmp_path / "portfolio.yml").write_text(
        "base_currency: EUR\n"
        f"exchanges:\n  bitstamp:\n    pairs: [ETH-EUR]\n    ws_url: {replay.ws_url}\n"
        f"    rest_url: {replay.rest_url}\n"
        f"coingecko:\n  coins: {{ETH: ethereum}}\n  rest_url: {coingecko.rest_url}\n"
        f"backfill:\n  interval: 1h\n  every: 12h\n  since: {since}\n"
        'holdings:\n  ETH: "2"\n'
    )
    for key, value in collector_env(collector_settings, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    from collector.cli import main

    assert main(["backfill"]) == 0
    out = capsys.readouterr().out
    assert "bitstamp ETH-EUR: ok, 4" in out and "coingecko ETH-EUR: ok, " in out

    def price_at(moment_s: int) -> Decimal:
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment_s))
        assert main(["portfolio", "--at", moment, "--json"]) == 0
        return Decimal(json.loads(capsys.readouterr().out)["positions"][0]["price"])

    old = since_s + 3 * HOUR  # before Bitstamp's first candle: CoinGecko's close of the hour before
    assert price_at(old) == synthetic_price("ethereum", "eur", old - HOUR + HOURLY_OFFSET_S)
    recent = now_hour - 10 * HOUR  # Bitstamp has it: its own close
    assert price_at(recent) == Decimal(synthetic_candle("etheur", recent - HOUR)["close"])
