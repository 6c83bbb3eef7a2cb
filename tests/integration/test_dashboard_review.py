"""Review findings on the dashboards and alert rules, each on data seeded for the case that once got it wrong.

Each test seeds a fresh organisation through the collector's own Writer, then runs the committed query after
Grafana's substitution (tests/dashboard_queries.py), as the dashboard suite does.
"""

import time
import uuid
from decimal import Decimal

import pytest
from influxdb_client import InfluxDBClient

from collector.bootstrap import Bootstrap
from collector.config import Buckets, Pair
from collector.influx_settings import InfluxSettings
from collector.records import Asset, Candle, PortfolioValue, Position, Trade
from collector.storage.points import health_point
from collector.storage.spool import Spool
from collector.storage.writer import Writer, WriterOptions
from tests.dashboard_queries import (
    alert_queries,
    load_dashboards,
    load_datasource,
    panel_targets,
    resolve_variables,
    run_target,
)
from tests.grafana_flux import backend_macros, run_flux

BTC = Pair("BTC", "USD")
HOUR = 3600


class Org:
    """A fresh organisation with the bootstrap's buckets and tokens; `seed` writes records like the collector."""

    def __init__(self, url: str, name: str, work):
        self.url, self.name, self.work = url, name, work
        self.datasource = load_datasource(name)

    def seed(self, records) -> None:
        self._write(lambda writer: writer.submit(records))

    def seed_lines(self, lines: list[str]) -> None:
        """Health samples, written to the live bucket as the collector writes them."""
        self._write(lambda writer: [writer.submit_line("live", line) for line in lines])

    def _write(self, submit) -> None:
        collector = InfluxSettings(
            self.url, self.name, (self.work / "secrets" / "collector.token").read_text()
        )
        writer = Writer(collector, Buckets(), Spool(self.work / "spool"), WriterOptions(batch_size=5000))
        writer.start()
        submit(writer)
        writer.close(timeout_s=60)
        assert writer.stats.write_errors == 0 and writer.stats.dropped_points == 0, writer.stats

    @property
    def token(self) -> str:
        return (self.work / "secrets" / "grafana.token").read_text()

    def alert_values(self, uid: str, now_s: int) -> dict[tuple[str, str], float]:
        result = self.alert_result(uid, now_s)
        keys = zip(result.values("exchange"), result.values("pair"), strict=True)
        return {key: float(value) for key, value in zip(keys, result.values("_value"), strict=True)}

    def alert_values_unlabelled(self, uid: str, now_s: int) -> list[float]:
        return [float(value) for value in self.alert_result(uid, now_s).values("_value")]

    def alert_result(self, uid: str, now_s: int):
        """The rule's query over its relative range ending at `now_s`, as Grafana's alerting runs it."""
        rule = next(rule for rule in alert_queries() if rule["uid"] == uid)
        query = rule["data"][0]
        span = query["relativeTimeRange"]
        flux = backend_macros(
            query["model"]["query"],
            self.datasource,
            (now_s - span["from"]) * 1000,
            (now_s - span["to"]) * 1000,
            query["model"]["intervalMs"],
        )
        result = run_flux(self.url, self.token, self.name, flux)
        assert result.error is None, result.error
        return result

    def panel_rows(self, dashboard: str, title: str, from_s: int, to_s: int) -> list[dict]:
        board = load_dashboards()[dashboard]
        target = next(t for t in panel_targets({dashboard: board}) if t.title == title)
        from_ms, to_ms = from_s * 1000, to_s * 1000
        variables = resolve_variables(board, self.datasource, self.url, self.token, from_ms, to_ms)
        local = {target.repeat: variables[target.repeat].options[0]} if target.repeat else None
        outcome = run_target(target, variables, self.datasource, self.url, self.token, from_ms, to_ms, local)
        assert outcome.result.error is None, outcome.result.error
        return [
            dict(zip(table["columns"], row, strict=True))
            for table in outcome.result.tables
            for row in table["rows"]
        ]


@pytest.fixture
def org(influx_server, tmp_path):
    with InfluxDBClient(url=influx_server.url, token=influx_server.admin_token, timeout=30_000) as admin:
        created = admin.organizations_api().create_organization(name=f"review-{uuid.uuid4().hex[:12]}")
        try:
            settings = InfluxSettings(
                url=influx_server.url, org=created.name, token=influx_server.admin_token
            )
            Bootstrap(settings, Buckets(), tmp_path / "secrets", report=lambda line: None).run()
            yield Org(influx_server.url, created.name, tmp_path)
        finally:
            admin.organizations_api().delete_organization(created.id)


def trade(exchange: str, trade_id: int, price: str, side: str, t: int, amount: str = "0.1") -> Trade:
    return Trade(
        exchange,
        BTC,
        trade_id,
        Decimal(price),
        Decimal(amount),
        side,
        t * 1_000_000_000 + trade_id % 1_000_000_000,
    )


def candle(exchange: str, t: int, price: str = "100", volume: str = "1", interval_s: int = HOUR) -> Candle:
    """A flat stored candle; one is enough for the exchange and pair variables (read from candle tags)."""
    return Candle(exchange, BTC, interval_s, t, *(Decimal(price) for _ in range(4)), Decimal(volume))


def test_trade_candles_open_with_the_first_trade_and_close_with_the_last(org):
    """1 h view: candles are built from trades in 10 s windows; open must be the window's first trade."""
    now = int(time.time())
    now -= now % 10
    a, b = now - 600, now - 300  # two 10 s windows, both inside the last hour
    org.seed(
        [
            candle("bitstamp", now - now % HOUR - 2 * HOUR),
            # window a: a sell opens at 100, a buy closes at 180
            trade("bitstamp", 1, "100", "sell", a + 1),
            trade("bitstamp", 2, "200", "buy", a + 4),
            trade("bitstamp", 3, "150", "sell", a + 6),
            trade("bitstamp", 4, "180", "buy", a + 8),
            # window b: a buy opens at 300, a sell closes at 260
            trade("bitstamp", 5, "300", "buy", b + 1),
            trade("bitstamp", 6, "250", "sell", b + 4),
            trade("bitstamp", 7, "280", "buy", b + 6),
            trade("bitstamp", 8, "260", "sell", b + 8),
        ]
    )
    rows = org.panel_rows("prices", "Candles $pair", now - HOUR, now)
    candles = {(row["open"], row["close"]) for row in rows}
    assert len(rows) == 2, rows
    assert {(float(o), float(c)) for o, c in candles} == {(100.0, 180.0), (300.0, 260.0)}, rows


def connection_samples(exchange: str, times, connected: int = 1) -> list[str]:
    """The collector's health samples of one exchange, as its 10 s health loop writes them."""
    return [
        health_point(
            exchange, {"connected": connected, "messages": t}, time_ns=t * 1_000_000_000
        ).to_line_protocol()
        for t in times
    ]


def connection_ages(org, now: int) -> dict[str, float]:
    result = org.alert_result("hodlboard-feed-stale", now)
    assert "pair" not in result.columns
    return dict(zip(result.values("exchange"), map(float, result.values("_value")), strict=True))


def test_feed_stale_is_quiet_for_a_rarely_traded_pair_on_a_live_connection(org):
    """The pair's last trade was 3 hours ago, but the connection is up: once a false alarm per pair."""
    now = int(time.time())
    org.seed([trade("kraken", 20_000, "100", "buy", now - 3 * HOUR)])
    org.seed_lines(connection_samples("kraken", range(now - HOUR, now, 10)))
    assert connection_ages(org, now)["kraken"] <= 10


def test_feed_stale_fires_when_the_connection_is_down(org):
    """Connected until 20 minutes ago, then the collector keeps reporting it disconnected."""
    now = int(time.time())
    org.seed_lines(
        connection_samples("bitstamp", range(now - HOUR, now - 1200, 10))
        + connection_samples("bitstamp", range(now - 1200, now, 10), connected=0)
        + connection_samples("kraken", range(now - HOUR, now, 10))
    )
    ages = connection_ages(org, now)
    assert 1200 <= ages["bitstamp"] <= 1210 and ages["kraken"] < 600, ages


def test_feed_stale_still_fires_for_a_collector_silent_for_7_hours(org):
    """No sample at all since: the exchange stays in the answer, so Grafana does not resolve its alert."""
    now = int(time.time())
    org.seed_lines(
        connection_samples("kraken", range(now - 10 * HOUR, now - 7 * HOUR, 10))
        + connection_samples("bitstamp", range(now - HOUR, now, 10))
    )
    ages = connection_ages(org, now)
    assert ages["kraken"] > 7 * HOUR and ages["bitstamp"] < 600, ages


def test_feed_stale_fires_for_an_exchange_that_never_connected(org):
    """A wrong URL from the first start: the collector reports it disconnected, and never anything else."""
    now = int(time.time())
    org.seed_lines(
        connection_samples("kraken", range(now - 1800, now, 10), connected=0)
        + connection_samples("bitstamp", range(now - HOUR, now, 10))
    )
    ages = connection_ages(org, now)
    assert ages["kraken"] == 1800 and ages["bitstamp"] < 600, ages


def test_volume_spike_is_quiet_on_a_feed_that_just_started(org):
    """First start (or back after an outage): 90 minutes of one steady trade a minute is no spike."""
    now = int(time.time())
    org.seed([trade("bitstamp", 30_000 + i, "100", "buy", now - 90 * 60 + 60 * i) for i in range(90)])
    ratios = org.alert_values("hodlboard-volume-spike", now)
    rule = next(rule for rule in alert_queries() if rule["uid"] == "hodlboard-volume-spike")
    limit = rule["data"][2]["model"]["conditions"][0]["evaluator"]["params"][0]
    assert ratios[("bitstamp", "BTC-USD")] < limit, ratios


def test_volume_spike_is_quiet_on_a_feed_back_after_a_long_outage(org):
    """Two hours of trades a day ago, silence, then the usual pace again: the baseline is those two hours, too few."""
    now = int(time.time())
    before = [trade("bitstamp", 31_000 + i, "100", "buy", now - 25 * HOUR + 60 * i) for i in range(120)]
    back = [trade("bitstamp", 32_000 + i, "100", "buy", now - HOUR + 60 * i) for i in range(60)]
    org.seed(before + back)
    ratios = org.alert_values("hodlboard-volume-spike", now)
    assert ratios[("bitstamp", "BTC-USD")] < 4.0, ratios


def test_volume_spike_averages_over_the_hours_with_trades(org):
    """A day with a 4-hour pause at the usual pace, then four times the pace: 4x its average, not 4 x 24/20."""
    now = int(time.time())
    day = [
        trade("bitstamp", 33_000 + i, "100", "buy", now - 25 * HOUR + 60 * i, amount="0.1")
        for i in range(24 * 60)
        if not 8 * 60 <= i < 12 * 60
    ]
    recent = [
        trade("bitstamp", 36_000 + i, "100", "buy", now - HOUR + 60 * i, amount="0.4") for i in range(60)
    ]
    org.seed(day + recent)
    ratios = org.alert_values("hodlboard-volume-spike", now)
    assert ratios[("bitstamp", "BTC-USD")] == pytest.approx(4.0), ratios


def test_the_value_stat_shows_the_newest_valuation_on_the_default_30_day_range(org):
    hour = int(time.time()) - 3600
    hour -= hour % HOUR
    end = hour + 1800  # the range ends half an hour after the newest hourly valuation
    ns = 1_000_000_000
    hourly = [
        PortfolioValue(t * ns, "history", Decimal("1000")) for t in range(hour - 3 * 86400, hour + 1, HOUR)
    ]
    live = [
        PortfolioValue(t * ns, "live", Decimal("1000") if t <= hour else Decimal("1200"))
        for t in range(hour - 2 * HOUR, end + 1, 30)
    ]
    org.seed(hourly + live)
    rows = org.panel_rows("portfolio", "Value", end - 30 * 86400, end)
    newest = max(rows, key=lambda row: row["_time"])
    assert float(newest["_value"]) == 1200.0, newest


def candles_and_trades(now: int) -> list:
    """Hourly candles closing at 200 for 400 days, trades at 100 for the last day: a value says which was read."""
    last_hour = now - now % HOUR - HOUR
    stored = [candle("bitstamp", t, price="200") for t in range(last_hour - 400 * 86400, last_hour + 1, HOUR)]
    return stored + [trade("bitstamp", 40_000 + i, "100", "buy", now - 86400 + 60 * i) for i in range(1440)]


def test_the_two_day_boundary_between_live_trades_and_hourly_candles(org):
    """Pins LONG_RANGE: changing it to 30d passed the whole suite (a 7 d view would read a week of raw trades)."""
    now = int(time.time())
    org.seed(candles_and_trades(now))
    two_days = {
        float(row["_value"]) for row in org.panel_rows("prices", "Price by exchange", now - 2 * 86400, now)
    }
    week = {
        float(row["_value"]) for row in org.panel_rows("prices", "Price by exchange", now - 7 * 86400, now)
    }
    assert two_days == {100.0} and week == {200.0}


def test_zooming_into_a_day_200_days_ago_shows_the_candles(org):
    now = int(time.time())
    org.seed(candles_and_trades(now))
    end = now - 200 * 86400
    rows = org.panel_rows("prices", "Price by exchange", end - 86400, end)
    assert {float(row["_value"]) for row in rows} == {200.0}, rows


def test_data_health_lists_an_exchange_that_has_trades_but_no_candles(org):
    now = int(time.time())
    org.seed([trade("bitstamp", 50_000 + i, "100", "buy", now - HOUR + 60 * i) for i in range(60)])
    board = load_dashboards()["health"]
    variables = resolve_variables(
        board, org.datasource, org.url, org.token, (now - 6 * HOUR) * 1000, now * 1000
    )
    assert variables["exchange"].options == ["bitstamp"]


def test_volume_counts_each_trade_once_when_two_candle_intervals_are_stored(org):
    now = int(time.time())
    day = now - now % 86400
    hourly = [candle("bitstamp", t) for t in range(day - 10 * 86400, day, HOUR)]
    daily = [
        candle("bitstamp", t, volume="24", interval_s=86400) for t in range(day - 10 * 86400, day, 86400)
    ]
    org.seed(hourly + daily)
    rows = org.panel_rows("prices", "Volume", day - 7 * 86400, day)
    assert sum(float(row["_value"]) for row in rows) == pytest.approx(7 * 24), rows


def test_selling_half_the_holdings_is_no_drawdown(org):
    now = int(time.time())
    hour = now - now % HOUR
    ns = 1_000_000_000
    sale = hour - 5 * HOUR

    def valuation(t: int) -> PortfolioValue:
        if t < sale:  # 10 000 worth, 8 000 paid
            return PortfolioValue(t * ns, "history", Decimal(10000), Decimal(8000), Decimal(2000), Decimal(0))
        # half sold at the same price: 1 000 realized, the rest still 1 000 up
        return PortfolioValue(t * ns, "history", Decimal(5000), Decimal(4000), Decimal(1000), Decimal(1000))

    org.seed([valuation(t) for t in range(hour - 10 * 86400, hour + 1, HOUR)])
    (fall,) = org.alert_values_unlabelled("hodlboard-drawdown", now)
    assert fall < 15.0, f"a {fall:.0f} % drawdown alert after a sale without loss"


def test_a_fall_after_a_sale_is_measured_on_what_is_still_held(org):
    """Sell half without loss, then prices fall 20 %: the drawdown is 20 % (of what is held), not 60 % of the high."""
    now = int(time.time())
    hour = now - now % HOUR
    ns = 1_000_000_000
    sale, fall = hour - 50 * HOUR, hour - 5 * HOUR

    def valuation(t: int) -> PortfolioValue:
        if t < sale:
            return PortfolioValue(t * ns, "history", Decimal(10000), Decimal(8000), Decimal(2000), Decimal(0))
        if t < fall:
            return PortfolioValue(
                t * ns, "history", Decimal(5000), Decimal(4000), Decimal(1000), Decimal(1000)
            )
        return PortfolioValue(t * ns, "history", Decimal(4000), Decimal(4000), Decimal(0), Decimal(1000))

    org.seed([valuation(t) for t in range(hour - 10 * 86400, hour + 1, HOUR)])
    (drawdown,) = org.alert_values_unlabelled("hodlboard-drawdown", now)
    assert drawdown == pytest.approx(20.0), drawdown


def test_the_composite_weights_each_exchange_by_its_volume_and_the_spread_compares_them(org):
    """1 h view, one 10 s window: Bitstamp trades 4 at a mean of 105 (both sides), Kraken 1 at 200."""
    now = int(time.time())
    now -= now % 10
    w = now - 600
    org.seed(
        [
            candle("bitstamp", now - now % HOUR - 2 * HOUR),
            trade("bitstamp", 60_001, "100", "buy", w + 1, amount="2"),
            trade("bitstamp", 60_002, "110", "sell", w + 5, amount="2"),
            trade("kraken", 60_003, "200", "buy", w + 3, amount="1"),
        ]
    )
    rows = org.panel_rows("prices", "Price by exchange [B]", now - HOUR, now)
    assert [(row["exchange"], float(row["_value"])) for row in rows] == [
        ("composite", pytest.approx((105 * 4 + 200 * 1) / 5))
    ]
    (spread,) = org.panel_rows("prices", "Spread between exchanges", now - HOUR, now)
    assert float(spread["_value"]) == pytest.approx((200 - 105) / ((200 + 105) / 2) * 100)


def test_data_health_lists_an_exchange_the_collector_reports_on_without_trades(org):
    """The portfolio's valuation errors are counted under exchange=portfolio: Data health must offer it."""
    now = int(time.time())
    org.seed([trade("bitstamp", 70_000, "100", "buy", now - 60)])
    writer_line = health_point("portfolio", {"errors": 1}, time_ns=(now - 30) * 1_000_000_000)
    org.seed_lines([writer_line.to_line_protocol()])
    board = load_dashboards()["health"]
    variables = resolve_variables(board, org.datasource, org.url, org.token, (now - HOUR) * 1000, now * 1000)
    assert variables["exchange"].options == ["bitstamp", "portfolio"]
    prices = resolve_variables(
        load_dashboards()["prices"], org.datasource, org.url, org.token, (now - HOUR) * 1000, now * 1000
    )
    assert prices["exchange"].options == ["bitstamp"]


def positions_now(now: int, *symbols: str) -> list[Position]:
    """A live valuation of one unit of each symbol, a minute before `now`."""
    t = (now - 60) * 1_000_000_000
    return [Position(symbol, t, "live", Decimal(1), Decimal(100), Decimal(100)) for symbol in symbols]


def test_positions_without_any_asset_metadata(org):
    """Kraken, Binance and Coinbase give no coin metadata: no `asset` point is stored at all."""
    now = int(time.time())
    org.seed(positions_now(now, "BTC", "ETH"))
    rows = org.panel_rows("portfolio", "Positions", now - HOUR, now)
    assert sorted((row["asset"], float(row["value"]), row["logo_url"]) for row in rows) == [
        ("BTC", 100.0, ""),
        ("ETH", 100.0, ""),
    ]


def test_positions_keep_the_logos_that_exist(org):
    """One asset with a name and a logo, one with a name only: no stored asset has the other's field."""
    now = int(time.time())
    t = (now - HOUR) * 1_000_000_000
    org.seed(
        positions_now(now, "BTC", "ETH", "SOL")
        + [Asset("BTC", t, "Bitcoin", "coin", "https://logos.example/btc.png"), Asset("ETH", t, "Ether")]
    )
    rows = org.panel_rows("portfolio", "Positions", now - HOUR, now)
    assert sorted((row["asset"], row["name"], row["logo_url"]) for row in rows) == [
        ("BTC", "Bitcoin", "https://logos.example/btc.png"),
        ("ETH", "Ether", ""),
        ("SOL", "", ""),
    ]


def test_positions_without_any_logo(org):
    now = int(time.time())
    t = (now - HOUR) * 1_000_000_000
    org.seed(positions_now(now, "BTC") + [Asset("BTC", t, "Bitcoin")])
    (row,) = org.panel_rows("portfolio", "Positions", now - HOUR, now)
    assert (row["asset"], row["name"], row["logo_url"]) == ("BTC", "Bitcoin", "")
