"""The real collector's data, read by every dashboard panel, variable and alert rule as Grafana would read it.

`collector run` (in-process, the service Docker runs) streams trades from the Bitstamp replay, backfills candles,
fetches tickers and coin metadata, writes its health samples and values a portfolio (lots bought, sold, one in
euros converted through EUR-USD, and a bare quantity) into a bootstrapped organisation of the real influxd. Then
every query of the committed dashboard JSON and alert rules is substituted as Grafana does
(tests/dashboard_queries.py) and run with the read-only grafana token: a field, tag, bucket or interval the
collector writes differently from what a panel reads shows up here as a panel without data.
"""

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from influxdb_client import InfluxDBClient

from collector.storage.reader import flux_query
from tests.dashboard_queries import (
    RANGES_S,
    Stack,
    Target,
    alert_outcome,
    alert_queries,
    bootstrapped_organisation,
    check,
    load_dashboards,
    panel_targets,
)
from tests.integration.harness import running, wait_for, write_config
from tests.replay.bitstamp import SAMPLE_TICKER, BitstampReplay, synthetic_candle

HOUR, DAY = 3600, 86400
PAIRS = ("BTC-USD", "ETH-USD", "EUR-USD")
TRADES_PER_PAIR = 30
RANGES = ("1h", "7d")
DASHBOARDS = load_dashboards()
TARGETS = panel_targets(DASHBOARDS)
ALERTS = alert_queries()

INTERVALS = {"15m": 900, "1h": HOUR, "1d": DAY}  # backfill intervals the scenario runs with
HISTORY_S = 9 * DAY  # the replay's candles begin this long before the run
HEALTH_WINDOW_S = 10  # v.windowPeriod of the health panels in the 1 h view
# Panels that may rightly show "No data" after this run, per range, and why. Every other panel must draw.
ONE_EXCHANGE = "one exchange: there is no second price to compare"
TWO_WINDOWS = (
    "a rate of cumulative counters needs samples in two 10 min windows; the collector ran for seconds"
)
MAY_BE_EMPTY = {
    ("prices:Spread between exchanges", "1h"): ONE_EXCHANGE,
    ("prices:Spread between exchanges", "7d"): ONE_EXCHANGE,
    ("health:Trades per second", "7d"): TWO_WINDOWS,
    (
        "health:Reconnects, errors, rate limits, dropped points, write errors, writer restarts, inexact values",
        "7d",
    ): TWO_WINDOWS,
}
# Alert rules that may rightly have no series (their noDataState is NoData, not Alerting), and why.
ALERTS_MAY_BE_EMPTY = {
    "hodlboard-volume-spike": "the trades began under an hour ago: there is no earlier day to compare with",
}


def _day(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def holdings(now_s: int) -> str:
    """BTC bought, partly sold, bought again in euros (EUR-USD prices the lot), a part given away in the last
    hour (a transaction the 1 h view shows); ETH a bare quantity."""
    now_hour = now_s // HOUR * HOUR
    return (
        "holdings:\n"
        "  BTC:\n"
        f"    - {{date: {_day(now_hour - 8 * DAY)}, kind: buy, quantity: '1.5', price: '900', fee: '2'}}\n"
        f"    - {{date: {_day(now_hour - 3 * DAY)}, kind: sell, quantity: '0.5', price: '1050', fee: '1'}}\n"
        f"    - {{date: {_day(now_hour - DAY)}, kind: buy, quantity: '0.25', price: '0.95', currency: EUR,"
        " note: euro account}\n"
        f"    - {{date: {_day(now_s - 20 * 60)}, kind: transfer_out, quantity: '0.05', note: gift}}\n"
        "  ETH: '3'\n"
        "valuation:\n"
        "  live_every: 1s\n"
    )


def counts(client: InfluxDBClient, org: str, bucket: str, measurement: str, by: tuple[str, ...]) -> dict:
    """{(values of `by`...): points} of one measurement."""
    columns = ", ".join(f'"{name}"' for name in by)
    query = flux_query(
        "from(bucket: {bucket}) |> range(start: 0) |> filter(fn: (r) => r._measurement == {measurement})"
        f" |> group(columns: [{columns}]) |> count()",
        bucket=bucket,
        measurement=measurement,
    )
    tables = client.query_api().query(query, org=org)
    return {
        tuple(record.values[name] for name in by): record.get_value() for t in tables for record in t.records
    }


def has_hour(client: InfluxDBClient, org: str, measurement: str, hour_s: int) -> bool:
    """An hourly valuation point at `hour_s` or later is stored."""
    query = flux_query(
        'from(bucket: "crypto_history") |> range(start: time(v: {start}))'
        " |> filter(fn: (r) => r._measurement == {measurement}) |> count()",
        start=_day(hour_s),
        measurement=measurement,
    )
    return any(record.get_value() for t in client.query_api().query(query, org=org) for record in t.records)


def everything_stored(client: InfluxDBClient, org: str, interval: str, now_hour: int) -> list[str]:
    """What the dashboards need that is not stored yet (empty when all is)."""
    missing = []
    trades = counts(client, org, "crypto_live", "trade", ("pair", "_field"))
    candles = counts(client, org, "crypto_history", "candle", ("pair", "interval", "_field"))
    tickers = counts(client, org, "crypto_meta", "ticker", ("pair",))
    for pair in PAIRS:
        if trades.get((pair, "price"), 0) < TRADES_PER_PAIR:
            missing.append(f"trades of {pair}")
        if candles.get((pair, interval, "close"), 0) < HISTORY_S // INTERVALS[interval] - 2:
            missing.append(f"{interval} candles of {pair}")
        if not tickers.get((pair,)):
            missing.append(f"ticker of {pair}")
    if not counts(client, org, "crypto_meta", "asset", ("symbol",)).get(("BTC",)):
        missing.append("asset BTC")
    health = counts(client, org, "crypto_live", "collector", ("exchange", "_field"))
    for key in (("bitstamp", "trades"), ("bitstamp", "writer_restarts"), ("portfolio", "errors")):
        if health.get(key, 0) < 2:
            missing.append(f"health {key}")
    if len(health_windows(client, org)) < 2:
        missing.append("health samples in two windows of the 1 h view")
    for measurement in ("position", "portfolio"):
        if not has_hour(client, org, measurement, now_hour):
            missing.append(f"hourly {measurement} history up to this hour")
    live = counts(client, org, "crypto_live", "position", ("asset",))
    if not (live.get(("BTC",)) and live.get(("ETH",))):
        missing.append("live position samples")
    if not counts(client, org, "crypto_live", "portfolio", ("_field",)).get(("cost_basis",)):
        missing.append("live portfolio samples with the euro lot's cost (after the backfill stored its rate)")
    transactions = counts(client, org, "crypto_meta", "transaction", ("asset", "kind", "_field"))
    expected = {
        ("BTC", "buy", "quantity"): 2,
        ("BTC", "sell", "quantity"): 1,
        ("BTC", "transfer_out", "quantity"): 1,
    }
    if any(transactions.get(key) != number for key, number in expected.items()):
        missing.append(f"transactions (have {transactions})")
    return missing


def health_windows(client: InfluxDBClient, org: str) -> set[int]:
    """The 1 h view's windows that hold a health sample of the exchange."""
    query = (
        'from(bucket: "crypto_live") |> range(start: 0)'
        ' |> filter(fn: (r) => r._measurement == "collector" and r.exchange == "bitstamp" and r._field == "trades")'
    )
    times = [record.get_time() for t in client.query_api().query(query, org=org) for record in t.records]
    return {int(moment.timestamp()) // HEALTH_WINDOW_S for moment in times}


def trade_price(pair: str, i: int) -> str:
    if pair == "EUR-USD":
        return f"1.08{i:02d}"
    return f"{1000 + 10 * PAIRS.index(pair) + i % 7}.{i:02d}"


LAST_PRICES = {pair: Decimal(trade_price(pair, TRADES_PER_PAIR - 1)) for pair in PAIRS}


def publish_last_hour(replay: BitstampReplay, now_s: int) -> None:
    """Trades of the last 50 minutes up to now, oldest first, as a feed delivers them: the last one is newer
    than every candle's close, so the live samples value at it."""
    for i in range(TRADES_PER_PAIR):
        at_us = (now_s - (TRADES_PER_PAIR - 1 - i) * 100) * 1_000_000
        for n, pair in enumerate(PAIRS):
            replay.publish(replay.symbol(pair), trade_price(pair, i), side=i % 2, microtimestamp=at_us + n)


class CollectedStack(Stack):
    """The stored run, with what the expected figures are counted from."""

    def __init__(self, *stack, started_hour: int, interval: str):
        super().__init__(*stack)
        self.started_hour = started_hour  # the hour the run began: the lots' dates are counted from it
        self.interval = interval  # the backfill interval the collector ran with


@pytest.fixture(scope="module", params=sorted(INTERVALS))
def stack(request, influx_server, tmp_path_factory):
    """The collector's run with a backfill interval, stopped once everything is stored; read as Grafana does."""
    work = tmp_path_factory.mktemp("end-to-end")
    with bootstrapped_organisation(influx_server, work, "e2e") as org, BitstampReplay() as replay:
        now_s = int(time.time())
        now_hour = now_s // HOUR * HOUR
        replay.candle_start_s = now_hour - HISTORY_S
        # an hour turning during the run brings no close newer than the trades
        replay.candle_end_s = now_hour - 1
        replay.tickers = {replay.symbol(pair): SAMPLE_TICKER for pair in PAIRS}
        path = work / "portfolio.yml"
        config = write_config(path, replay, pairs=PAIRS, extra=holdings(now_s), interval=request.param)
        with running(path, config, org.collector, work / "spool"):
            for pair in PAIRS:
                replay.wait_subscribed(replay.symbol(pair))
            publish_last_hour(replay, int(time.time()))
            missing: list[str] = []

            def stored() -> bool:
                missing[:] = everything_stored(org.admin, org.name, request.param, now_hour)
                return not missing

            try:
                wait_for(stored, timeout=120, what="everything the dashboards read")
            except AssertionError as timeout:
                raise AssertionError(f"{timeout}; still missing: {missing}") from None
        stored_by = int(time.time()) + 1  # the views end here, after the last point
        yield CollectedStack(
            influx_server.url,
            org.name,
            org.grafana_token,
            stored_by,
            DASHBOARDS,
            started_hour=now_hour,
            interval=request.param,
        )


@pytest.mark.parametrize("range_name", RANGES)
@pytest.mark.parametrize("target", TARGETS, ids=[target.id for target in TARGETS])
def test_every_panel_draws_what_the_collector_wrote(stack, target, range_name):
    for outcome in stack.run_all(target, range_name):
        if (target.id, range_name) in MAY_BE_EMPTY:
            assert outcome.result.error is None, f"{outcome.result.error}\n{outcome.flux}"
            continue
        check(outcome, target.panel, target.panel.get("maxDataPoints"))


def test_the_list_of_empty_panels_names_real_panels():
    ids = {target.id for target in TARGETS}
    assert {panel for panel, range_name in MAY_BE_EMPTY} <= ids
    assert {range_name for panel, range_name in MAY_BE_EMPTY} <= set(RANGES) <= set(RANGES_S)
    assert set(ALERTS_MAY_BE_EMPTY) <= {rule["uid"] for rule in ALERTS}


@pytest.mark.parametrize("range_name", RANGES)
def test_variables_offer_the_collected_exchange_and_pairs(stack, range_name):
    for name in sorted(DASHBOARDS):
        variables = stack.variables(name, range_name)  # each one's query ran without error and has options
        if "pair" in variables:
            assert variables["pair"].options == sorted(PAIRS), name
        if "exchange" in variables:
            assert "bitstamp" in variables["exchange"].options, name


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["uid"] for rule in ALERTS])
def test_every_alert_rule_evaluates_the_collected_data(stack, rule):
    outcome = alert_outcome(stack, rule)
    if rule["uid"] in ALERTS_MAY_BE_EMPTY:
        assert rule["noDataState"] != "Alerting" and outcome.result.error is None, outcome.flux
        return
    check(outcome, {"type": "alert"})
    assert "_value" in outcome.result.columns, outcome.flux


def target_named(dashboard: str, title: str) -> Target:
    return next(target for target in TARGETS if target.dashboard == dashboard and target.title == title)


def table_rows(outcome) -> list[dict]:
    return [dict(zip(t["columns"], row, strict=True)) for t in outcome.result.tables for row in t["rows"]]


def test_positions_table_shows_the_ledger_valued_at_the_last_trade(stack):
    """FIFO: the sell and the gift take from the first lot; the euro lot costs its price x that hour's EUR-USD."""
    (outcome,) = stack.run_all(target_named("portfolio", "Positions"), "1h")
    rows = {row["asset"]: row for row in table_rows(outcome)}
    assert set(rows) == {"BTC", "ETH"}, outcome.flux
    step = INTERVALS[stack.interval]
    bought = stack.started_hour - DAY
    eur_usd = Decimal(synthetic_candle("eurusd", bought // step * step - step)["close"])  # closed by then
    first_lot_unit = (Decimal("1.5") * 900 + 2) / Decimal("1.5")
    btc_cost = first_lot_unit * Decimal("0.95") + Decimal("0.25") * Decimal("0.95") * eur_usd
    btc = rows["BTC"]
    last_btc, last_eth = LAST_PRICES["BTC-USD"], LAST_PRICES["ETH-USD"]
    assert float(btc["quantity"]) == 1.2 and float(btc["price"]) == float(last_btc)
    assert float(btc["value"]) == pytest.approx(float(Decimal("1.2") * last_btc), abs=0.005)
    assert float(btc["cost_basis"]) == pytest.approx(float(btc_cost), abs=0.005)
    realized = Decimal("0.5") * 1050 - 1 - first_lot_unit * Decimal("0.5")
    assert float(btc["realized_pnl"]) == pytest.approx(float(realized), abs=0.005)
    assert float(btc["unrealized_pnl"]) == pytest.approx(
        float(btc["value"]) - float(btc["cost_basis"]), abs=0.01
    )
    assert btc["name"] == "Bitcoin"  # the coin metadata the collector fetched
    eth = rows["ETH"]  # a bare quantity: valued, with no cost basis or profit
    assert float(eth["quantity"]) == 3 and float(eth["value"]) == pytest.approx(
        3 * float(last_eth), abs=0.005
    )
    assert eth["cost_basis"] == eth["unrealized_pnl"] == ""


def test_value_stat_is_the_sum_of_the_positions(stack):
    (positions,) = stack.run_all(target_named("portfolio", "Positions"), "1h")
    total = sum(float(row["value"]) for row in table_rows(positions))
    for range_name in RANGES:
        (outcome,) = stack.run_all(target_named("portfolio", "Value"), range_name)
        assert float(outcome.result.values("_value")[-1]) == pytest.approx(total, abs=0.01), outcome.flux


def test_candle_coverage_finds_no_missing_candle(stack):
    for range_name in RANGES:
        (outcome,) = stack.run_all(target_named("health", "Candle coverage"), range_name)
        rows = table_rows(outcome)
        assert {row["pair"] for row in rows} == set(PAIRS)
        assert {row["interval"] for row in rows} == {stack.interval}
        step = INTERVALS[stack.interval]
        # at least 2 days, less the part of the hour gone since the last candle closed
        least = max(1, (2 * DAY - HOUR) // step - 1)
        assert all(row["missing"] == "0" and int(row["stored"]) >= least for row in rows), rows


def test_health_counters_of_the_exchange_the_writer_and_the_portfolio(stack):
    """The writer's fields ride on the exchange's sample; the valuation's errors are the `portfolio` series."""
    assert stack.variables("health", "1h")["exchange"].options == ["bitstamp", "portfolio"]
    (outcome,) = stack.run_all(
        target_named(
            "health",
            "Reconnects, errors, rate limits, dropped points, write errors, writer restarts, inexact values",
        ),
        "1h",
    )
    series = set(zip(outcome.result.values("exchange"), outcome.result.values("_field"), strict=True))
    counters = {
        "reconnects",
        "errors",
        "rate_limited",
        "dropped_points",
        "write_errors",
        "writer_restarts",
        "inexact_values",
    }
    assert series == {("bitstamp", name) for name in counters} | {("portfolio", "errors")}, outcome.flux


def test_transactions_annotate_the_portfolio(stack):
    (outcome,) = stack.run_all(target_named("portfolio", "annotation Transactions"), "7d")
    assert sorted(outcome.result.values("text")) == [
        "buy 0.25 BTC at 0.95 EUR",
        "sell 0.5 BTC at 1050 USD",
        "transfer_out 0.05 BTC",
    ], outcome.flux
