"""Every panel, variable, annotation and alert query, substituted exactly as Grafana does, run on the real influxd.

The data is a year of trades, candles, tickers, metadata, transactions, valuations and health, written through
the collector's own Writer (tests/dashboard_seed.py). Queries are read from the committed JSON that Grafana
provisions, so what is tested is what Grafana loads. Reading uses the read-only token Grafana gets.
"""

import time
from datetime import UTC, datetime

import pytest

from collector.config import Buckets
from collector.records import PortfolioValue
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
    variable_defaults,
)
from tests.dashboard_seed import EXCHANGES, SPIKE_FEED, STALE_FEED, seed, valuations

DASHBOARDS = load_dashboards()
TARGETS = panel_targets(DASHBOARDS)
NEEDS_TWO_EXCHANGES = {"prices:Spread between exchanges"}
WITH_VARIABLES = [target for target in TARGETS if DASHBOARDS[target.dashboard]["templating"]["list"]]


@pytest.fixture(scope="module")
def stack(influx_server, tmp_path_factory):
    """A seeded organisation, read with the grafana token that bootstrap writes for the data source."""
    work = tmp_path_factory.mktemp("dashboards")
    with bootstrapped_organisation(influx_server, work, "dash") as org:
        now_s = seed(org.collector, Buckets(), work / "spool", now=int(time.time()))
        yield Stack(influx_server.url, org.name, org.grafana_token, now_s, DASHBOARDS)


@pytest.mark.parametrize("range_name", list(RANGES_S))
@pytest.mark.parametrize("target", TARGETS, ids=[target.id for target in TARGETS])
def test_panel_query_returns_what_the_panel_draws(stack, target, range_name):
    for outcome in stack.run_all(target, range_name):
        check(outcome, target.panel, target.panel.get("maxDataPoints"))


@pytest.mark.parametrize("target", WITH_VARIABLES, ids=[target.id for target in WITH_VARIABLES])
def test_panel_query_with_one_selected_value(stack, target):
    """A multi-value variable with one selection is a one-element array: formats must still give valid Flux."""
    single = variable_defaults(stack.variables(target.dashboard, "7d"))
    for outcome in stack.run_all(target, "7d", variables=single):
        if target.id in NEEDS_TWO_EXCHANGES:
            # a spread between one exchange and itself does not exist: valid Flux, no rows
            assert outcome.result.error is None and outcome.result.rows == 0, outcome.flux
            continue
        check(outcome, target.panel, target.panel.get("maxDataPoints"))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables_have_options_for_every_range(stack, name):
    for range_name in RANGES_S:
        for variable in stack.variables(name, range_name).values():
            assert variable.options, variable.name


def target_named(dashboard: str, title: str) -> Target:
    return next(t for t in TARGETS if t.dashboard == dashboard and t.title == title)


def test_long_ranges_read_the_hourly_history_and_short_ones_live_trades(stack):
    """Trades are seeded for 3 days only: a year of prices can only come from the candles."""
    target = target_named("prices", "Price by exchange")
    (year,) = stack.run_all(target, "1y")
    (hour,) = stack.run_all(target, "1h")
    first_hour_point = min(hour.result.values("_time"))
    assert first_hour_point >= rfc3339_s(stack.now_s - 3600), (
        "a 1 h view reads live trades, not hourly candles"
    )
    first_year_point = min(year.result.values("_time"))
    assert first_year_point < rfc3339_s(stack.now_s - 300 * 86400)


def test_unknown_figures_stay_empty_in_the_positions_table(stack):
    (outcome,) = stack.run_all(target_named("portfolio", "Positions"), "7d")
    rows = dict(zip(outcome.result.values("asset"), outcome.result.tables[0]["rows"], strict=True))
    columns = outcome.result.tables[0]["columns"]
    sol = dict(zip(columns, rows["SOL"], strict=True))
    btc = dict(zip(columns, rows["BTC"], strict=True))
    assert sol["cost_basis"] == "" and sol["unrealized_pnl"] == "" and float(sol["value"]) > 0
    assert (
        float(btc["cost_basis"]) == 20000 and btc["name"] == "Bitcoin" and btc["logo_url"].endswith("btc.png")
    )
    total = sum(float(dict(zip(columns, row, strict=True))["allocation_pct"]) for row in rows.values())
    assert total == pytest.approx(100)


@pytest.mark.parametrize("range_name", list(RANGES_S))
def test_candles_are_candles(stack, range_name):
    """Merged over exchanges and trade sides, every candle still has low <= open, close <= high."""
    for outcome in stack.run_all(target_named("prices", "Candles $pair"), range_name):
        (table,) = outcome.result.tables
        for row in table["rows"]:
            candle = {
                name: float(row[table["columns"].index(name)])
                for name in ("open", "high", "low", "close", "volume")
            }
            assert (
                candle["low"]
                <= min(candle["open"], candle["close"])
                <= max(candle["open"], candle["close"])
                <= candle["high"]
            )
            assert candle["volume"] > 0


def rfc3339_s(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")


ALERTS = alert_queries()


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["uid"] for rule in ALERTS])
def test_alert_query_returns_a_number_per_series(stack, rule):
    outcome = alert_outcome(stack, rule)
    check(outcome, {"type": "alert"})
    assert "_value" in outcome.result.columns, outcome.flux


def alert_values(stack: Stack, uid: str) -> dict[tuple[str, str], float]:
    rule = next(rule for rule in ALERTS if rule["uid"] == uid)
    result = alert_outcome(stack, rule).result
    keys = zip(result.values("exchange"), result.values("pair"), strict=True)
    return {key: float(value) for key, value in zip(keys, result.values("_value"), strict=True)}


def threshold(uid: str) -> float:
    rule = next(rule for rule in ALERTS if rule["uid"] == uid)
    return rule["data"][2]["model"]["conditions"][0]["evaluator"]["params"][0]


def test_feed_stale_judges_connections_and_is_quiet_for_a_pair_without_trades(stack):
    """STALE_FEED has had no trade for 20 minutes, but every exchange stays connected: no alert."""
    rule = next(rule for rule in ALERTS if rule["uid"] == "hodlboard-feed-stale")
    result = alert_outcome(stack, rule).result
    assert "pair" not in result.columns, "judged per exchange, not per pair"
    ages = dict(zip(result.values("exchange"), map(float, result.values("_value")), strict=True))
    assert threshold("hodlboard-feed-stale") == 600
    assert STALE_FEED[0] in ages and set(ages) == set(EXCHANGES), ages
    assert all(age < 60 for age in ages.values()), ages


def test_volume_spike_fires_for_the_spiking_feed_only(stack):
    ratios = alert_values(stack, "hodlboard-volume-spike")
    limit = threshold("hodlboard-volume-spike")
    assert ratios.pop(SPIKE_FEED) > limit
    assert ratios and all(ratio < limit for ratio in ratios.values()), ratios


def test_price_move_stays_quiet_on_calm_data(stack):
    moves = alert_values(stack, "hodlboard-price-move")
    assert moves and all(0 <= move < threshold("hodlboard-price-move") for move in moves.values()), moves


def test_drawdown_is_the_fall_from_the_30_day_high(stack):
    rule = next(rule for rule in ALERTS if rule["uid"] == "hodlboard-drawdown")
    start = stack.now_s - rule["data"][0]["relativeTimeRange"]["from"]
    points = [
        point
        for point in valuations(stack.now_s)
        if isinstance(point, PortfolioValue)
        and point.time_ns >= start * 1_000_000_000
        and (point.bucket == "history" or point.time_ns >= (stack.now_s - 7200) * 1_000_000_000)
    ]
    # the newest point by time: in the first 30 s of an hour that is the hourly one, not the last live sample
    # (taking the last one generated made this test fail once an hour)
    high = max(float(point.value) for point in points)
    current = float(max(points, key=lambda point: point.time_ns).value)
    result = alert_outcome(stack, rule).result
    assert float(result.values("_value")[0]) == pytest.approx((high - current) / high * 100, rel=1e-9)


# --- the test can fail: queries that break the way the documented pitfalls do ---------------------------

BROKEN = {
    "glob into a set": ("r.pair =~ /^${pair:regex}$/", "contains(value: r.pair, set: [$pair])"),
    "range macro Flux lacks": ("range(start: v.timeRangeStart", "range(start: -$__range"),
    "string field aggregated": ('r._field == "price"', 'r._field == "trade_id"'),
    "equality with a multi value": ("r.pair =~ /^${pair:regex}$/", 'r.pair == "$pair"'),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_query_fails_the_check(stack, case):
    old, new = BROKEN[case]
    target = next(t for t in TARGETS if t.dashboard == "prices" and t.title == "Price by exchange")
    assert old in target.query
    outcomes = stack.run_all(target, "1h", query=target.query.replace(old, new))
    with pytest.raises(AssertionError):
        for outcome in outcomes:
            check(outcome, target.panel, target.panel.get("maxDataPoints"))
