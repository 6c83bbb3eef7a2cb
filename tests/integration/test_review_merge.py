"""Review of the merged writer, valuation and service: flush() and the stop where the merged parts meet."""

import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from influxdb_client import BucketRetentionRules

from collector.config import Buckets, Pair
from collector.portfolio.history import HistoryRecompute
from collector.portfolio.work import PortfolioWork
from collector.records import Candle
from collector.service import Collector
from collector.storage.prices import StoredPrices
from collector.storage.spool import Spool
from collector.storage.sync import PointSync
from collector.storage.writer import Writer
from tests.influxd import ROOT
from tests.integration.harness import FAST, RunningCollector, running, wait_for, write_config
from tests.integration.test_writer_failures import InjectedFault, break_writes, probe_lines
from tests.integration.valuation_helpers import seed, stored_points
from tests.replay.bitstamp import synthetic_candle

BTC_USD = Pair.parse("BTC-USD")
HOUR = 3600


def flush_in_thread(writer: Writer, timeout_s: float) -> tuple[threading.Thread, dict]:
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=writer.flush(timeout_s)), daemon=True)
    thread.start()
    return thread, outcome


def doomed_writer(settings, tmp_path, options) -> Writer:
    """A started writer holding 10 points, whose every write fails in a way it does not know."""
    writer = Writer(settings, Buckets(), Spool(tmp_path / "spool"), options)
    broken = threading.Event()
    broken.set()
    break_writes(writer, broken)
    writer.start()
    for line in probe_lines("doomed", 10):
        writer.submit_line("meta", line)
    return writer


def test_flush_gives_up_at_once_when_the_writer_has_failed_for_good(collector_settings, tmp_path):
    """A one-shot command (`collector backfill`) flushes for up to 300 s before it closes: a writer that has given
    up will never settle anything, so flush must not wait out its whole timeout."""
    options = replace(FAST.writer, restarts=2)
    writer = doomed_writer(collector_settings, tmp_path, options)
    wait_for(lambda: writer.failed.is_set(), timeout=30, what="the writer giving up")
    thread, outcome = flush_in_thread(writer, 120)
    thread.join(10)
    assert not thread.is_alive(), "flush() waits out its timeout on a writer that has failed for good"
    assert outcome["result"] is False
    writer.close()
    assert writer.spool.points == 10  # what it held is spooled for the next start


def test_flush_given_up_by_a_writer_failing_while_it_waits(collector_settings, tmp_path):
    """The same when the writer gives up while a flush() already waits."""
    options = replace(FAST.writer, restarts=3, backoff_s=0.5)
    writer = doomed_writer(collector_settings, tmp_path, options)
    thread, outcome = flush_in_thread(writer, 120)
    wait_for(lambda: writer.failed.is_set(), timeout=30, what="the writer giving up")
    thread.join(10)
    assert not thread.is_alive(), "flush() waits out its timeout on a writer that has failed for good"
    assert outcome["result"] is False
    writer.close()


def test_sigterm_while_a_recompute_waits_in_flush_neither_stalls_the_stop_nor_cries_loss(
    collector_settings, replay, tmp_path, outage, caplog
):
    """InfluxDB down, points waiting in the spool: the recompute after a backfill waits in writer.flush() for the
    next replay. A SIGTERM then cancels the recompute task, but flush() knows only the writer's close, which comes
    after every task has ended: the stop waits out `producers_stop_s` for it and logs, as an ERROR, that what it
    submits is lost (flush submits nothing)."""
    config = write_config(tmp_path / "portfolio.yml", replay)
    seed = Spool(tmp_path / "spool")
    seed.append("meta", probe_lines("waiting", 3))
    seed.close()
    outage.stop()
    # the next replay comes late: flush() waits for it
    options = replace(
        FAST,
        flush_before_recompute_s=60,
        writer=replace(FAST.writer, backoff_s=20, max_backoff_s=30),
    )
    collector = Collector(tmp_path / "portfolio.yml", config, collector_settings, tmp_path / "spool", options)
    runner = RunningCollector(collector).start()
    wait_for(
        lambda: collector._history_lock.locked() and collector.writer._round_done._waiters,
        timeout=30,
        what="a recompute waiting in writer.flush()",
    )
    with caplog.at_level(logging.INFO):
        took = runner.stop()
    stalled = [r.getMessage() for r in caplog.records if "still running after the stop" in r.getMessage()]
    assert stalled == [], f"the stop took {took:.1f} s and said: {stalled}"


def test_live_samples_follow_an_edit_of_the_candle_interval(collector_settings, replay, tmp_path):
    now = int(time.time()) // 3600 * 3600
    hourly = Candle("bitstamp", BTC_USD, 3600, now - 2 * 3600, *[Decimal("100")] * 4, Decimal(1))
    daily = Candle("bitstamp", BTC_USD, 86400, now - 3 * 86400, *[Decimal("200")] * 4, Decimal(1))
    seed(collector_settings, tmp_path, [hourly, daily])
    holdings = 'holdings:\n  BTC: "1"\n'
    path = tmp_path / "portfolio.yml"
    before = write_config(path, replay, extra=holdings, interval="1h")
    after = write_config(path, replay, extra=holdings, interval="1d")
    work = PortfolioWork(collector_settings, before, submit=lambda records: None)
    try:
        assert work.sample().positions[0].price == Decimal("100")  # the 1 h candle's close
        assert work.configure(after)  # a new interval: history is recomputed with 1 d candles
        assert work.sample().positions[0].price == Decimal("200")  # so are the live samples
    finally:
        work.close()


def test_points_spilled_while_a_guest_is_adopted_are_not_counted_twice_by_flush(collector_settings, tmp_path):
    """The writer counts an adoption as the growth of the spool around adopt_guests(); points a producer spills
    into the spool meanwhile (a full queue) were already counted when they were submitted: counted again, flush()
    waits for points that do not exist and times out on an idle writer."""
    owner = Spool(tmp_path / "spool")
    guest = Spool(tmp_path / "spool")  # another lock on the same directory: a guest, as a second process gets
    guest.append("meta", probe_lines("guest", 3))
    guest.close()
    options = replace(FAST.writer, queue_limit=10, batch_size=5)
    writer = Writer(collector_settings, Buckets(), owner, options)
    real_adopt = owner.adopt_guests

    def adopt_while_a_producer_overflows() -> int:
        adopted = real_adopt()
        if adopted:
            for line in probe_lines("overflow", 20):  # 10 fit in memory, 10 spill into the spool
                writer.submit_line("meta", line)
        return adopted

    owner.adopt_guests = adopt_while_a_producer_overflows
    writer.start()
    try:
        wait_for(lambda: writer.stats.written_points == 23, timeout=30, what="every point written")
        assert writer.flush(10), "flush() waits for points counted twice"
    finally:
        writer.close()


def test_a_restart_between_replaying_a_segment_and_removing_it_does_not_fool_flush(
    collector_settings, tmp_path, outage
):
    spool = Spool(tmp_path / "spool")
    spool.append("meta", probe_lines("replayed", 5))
    real_remove = spool.remove
    failures = []

    def remove_failing_once(path):
        if not failures:
            failures.append(path)
            raise InjectedFault("after the write, before the segment is removed")
        real_remove(path)

    spool.remove = remove_failing_once
    writer = Writer(collector_settings, Buckets(), spool, FAST.writer)
    writer.start()
    try:
        wait_for(
            lambda: failures and not writer.spool, timeout=30, what="the segment replayed after a restart"
        )
        outage.stop()
        for line in probe_lines("unstored", 3, first_s=1_700_000_100):
            writer.submit_line("meta", line)
        assert not writer.flush(5), "flush() says 3 points are stored while InfluxDB is down"
    finally:
        writer.close()


def test_the_hidden_loss_fields_of_issue_6_are_on_the_data_health_dashboard():
    shown = (ROOT / "grafana" / "dashboards" / "health.json").read_text()
    # dropped points, write errors, rate-limited responses, connection state (the age of the last message is
    # shown per pair, as the last trade's age)
    fields = ["dropped_points", "write_errors", "rate_limited", "connected"]
    assert [name for name in fields if f'\\"{name}\\"' not in shown] == []


def test_a_reload_adding_a_pair_and_its_holding_during_a_hand_over_values_the_new_asset(
    collector_settings, admin_client, replay, tmp_path
):
    """One edit adds ETH-USD and an ETH lot while a reconnect hand-over waits for its acknowledgements: the pair
    ends up on the new connection, and the ETH history is valued from the ETH candles backfilled after the edit
    (the recompute the edit asks for runs before that backfill; the one after it must bring the values)."""
    org = collector_settings.org
    wait_for(lambda: time.time() % HOUR < HOUR - 90, timeout=95, what="not the last minutes of an hour")
    now_hour = int(time.time()) // HOUR * HOUR
    replay.candle_start_s = now_hour - 6 * HOUR
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay, extra=lots(("BTC", "2", now_hour - 4 * HOUR)))
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        wait_for(
            lambda: history_values(admin_client, org, "BTC"), what="BTC history after the first backfill"
        )
        replay.wait_subscribed("btcusd")
        replay.hold_acks()
        replay.request_reconnect()
        wait_for(lambda: (2, "bts:subscribe", "live_trades_btcusd") in replay.subscribe_log, what="hand-over")
        write_config(
            path,
            replay,
            pairs=("BTC-USD", "ETH-USD"),
            extra=lots(("BTC", "2", now_hour - 4 * HOUR), ("ETH", "10", now_hour - 3 * HOUR)),
        )
        wait_for(
            lambda: runner.collector.portfolio.config.holdings.assets.keys() == {"BTC", "ETH"}, what="reload"
        )
        replay.release_acks()
        expected = {
            hour: 10 * float(Decimal(synthetic_candle("ethusd", hour - HOUR)["close"]))
            for hour in range(now_hour - 3 * HOUR, now_hour + HOUR, HOUR)
        }
        wait_for(
            lambda: history_values(admin_client, org, "ETH") == expected,
            timeout=30,
            what="the ETH history valued from its backfilled candles",
        )
        wait_for(
            lambda: replay.subscribed_on(2) == {"live_trades_btcusd", "live_trades_ethusd"}, what="ETH live"
        )
        assert runner.stop() < 10


def lots(*holdings: tuple[str, str, int]) -> str:
    text = "holdings:\n"
    for asset, quantity, bought_s in holdings:
        day = datetime.fromtimestamp(bought_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text += f"  {asset}:\n    - {{date: {day}, kind: buy, quantity: '{quantity}', price: '1000'}}\n"
    return text + "valuation:\n  live_every: 1s\n"


def history_values(client, org: str, asset: str) -> dict:
    return {
        int(datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()): fields.get(
            "value"
        )
        for (name, moment), fields in stored_points(client, org, "position").items()
        if name == asset
    }


def test_live_samples_of_a_removed_asset_waiting_in_the_spool_do_not_outlive_the_edit(
    collector_settings, admin_client, replay, tmp_path, outage
):
    org = collector_settings.org
    path = tmp_path / "portfolio.yml"
    config = write_config(
        path, replay, extra='holdings:\n  BTC: "1"\n  ETH: "2"\nvaluation:\n  live_every: 1s\n'
    )
    # a live sample taken before the edit, spooled while InfluxDB was away
    sample_s = int(time.time()) - 60
    seed = Spool(tmp_path / "spool")
    seed.append("live", [f"position,asset=ETH quantity=2 {sample_s}000000000"])
    seed.close()
    outage.stop()
    options = replace(
        FAST,
        flush_before_recompute_s=0.05,  # the spool is replayed late: flush() does not settle meanwhile
        recompute_retry_s=0.2,
        recompute_retry_max_s=0.5,
        writer=replace(FAST.writer, backoff_s=20, max_backoff_s=30),
    )
    collector = Collector(path, config, collector_settings, tmp_path / "spool", options)
    with_stop = RunningCollector(collector).start()
    try:
        wait_for(
            lambda: collector.writer.stats.write_errors,
            timeout=30,
            what="a failed replay: the next comes late",
        )
        outage.start()
        write_config(
            path, replay, extra='holdings:\n  BTC: "1"\nvaluation:\n  live_every: 1s\n'
        )  # ETH sold off
        wait_for(
            lambda: (
                "ETH" not in collector.portfolio.config.holdings.assets
                and not collector.portfolio._stale_live
            ),
            timeout=30,
            what="the edit applied and its stale live samples deleted",
        )
        assert collector.writer.spool, "the spool was replayed before the delete: the scenario did not happen"
        wait_for(
            lambda: not collector.writer.spool and "history recompute" not in collector.portfolio._failing,
            timeout=60,
            what="the spool replayed and a recompute after it",
        )
        eth = [
            key
            for key in stored_points(admin_client, org, "position", bucket="crypto_live")
            if key[0] == "ETH"
        ]
        assert eth == [], "live samples of ETH, no longer held, are stored after the edit"
    finally:
        with_stop.stop()


def test_hours_beyond_the_history_retention_are_not_rewritten_by_every_recompute(
    influx, admin_client, replay, tmp_path
):
    """The history bucket keeps 10 years; a bucket of 1 hour stands in for it, so the test stays small. Hours
    beyond it (a lot bought more than 10 years ago) are refused by InfluxDB (422): not even the first recompute
    writes them."""
    wait_for(lambda: time.time() % HOUR < HOUR - 90, timeout=95, what="not the last minutes of an hour")
    org = admin_client.organizations_api().find_organizations(org=influx.org)[0]
    short = Buckets(history="short_history")
    admin_client.buckets_api().create_bucket(
        bucket_name=short.history,
        org_id=org.id,
        retention_rules=BucketRetentionRules(type="expire", every_seconds=3600),
    )
    for name in (short.live, short.meta):
        admin_client.buckets_api().create_bucket(bucket_name=name, org_id=org.id)
    bought = datetime.fromtimestamp(int(time.time()) // HOUR * HOUR - 5 * HOUR, UTC)
    config = write_config(
        tmp_path / "portfolio.yml",
        replay,
        extra=f"holdings:\n  BTC:\n    - {{date: {bought:%Y-%m-%dT%H:%M:%SZ}, kind: buy, quantity: '1', price: '1'}}\n",
    )
    config = replace(config, buckets=short)
    writer = Writer(influx, short, Spool(tmp_path / "spool"), FAST.writer)
    writer.start()
    store, sync = StoredPrices(influx, short, 3600), PointSync(influx, short)
    try:
        writer.submit_line("history", f"probe value=1 {int(bought.timestamp())}000000000")
        assert writer.flush(20)
        dropped = writer.stats.dropped_points
        assert dropped > 0  # an hour beyond the retention: refused by InfluxDB
        first = HistoryRecompute(config, store, sync, writer.submit).run()
        assert writer.flush(20)
        assert first.hours.written > 0  # the hours inside the retention
        assert writer.stats.dropped_points == dropped
        again = HistoryRecompute(config, store, sync, writer.submit).run()
        assert writer.flush(20)
        assert (again.hours.written, writer.stats.dropped_points) == (0, dropped)
    finally:
        writer.close()
        store.close()
        sync.close()


def test_an_edit_of_the_candle_interval_keeps_the_history_valued(
    collector_settings, admin_client, replay, tmp_path
):
    org = collector_settings.org
    wait_for(lambda: time.time() % HOUR < HOUR - 90, timeout=95, what="not the last minutes of an hour")
    now_hour = int(time.time()) // HOUR * HOUR
    path = tmp_path / "portfolio.yml"
    holding = lots(("BTC", "2", now_hour - 4 * HOUR))
    config = write_config(path, replay, extra=holding, interval="1h")
    hours = range(now_hour - 4 * HOUR, now_hour + HOUR, HOUR)

    def valued_from(interval_s: int) -> dict:
        """2 × the close of the latest candle of that interval closed by each hour."""
        return {
            hour: 2
            * float(
                Decimal(synthetic_candle("btcusd", hour // interval_s * interval_s - interval_s)["close"])
            )
            for hour in hours
        }

    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        wait_for(lambda: history_values(admin_client, org, "BTC") == valued_from(HOUR), what="hourly history")
        write_config(path, replay, extra=holding, interval="1d")
        wait_for(lambda: runner.collector.portfolio.config.backfill.interval_s == 86400, what="the reload")
        wait_for(
            lambda: history_values(admin_client, org, "BTC") == valued_from(86400),
            timeout=30,
            what="the history valued from daily candles",
        )


def test_a_stop_during_a_steady_stream_of_messages_always_ends_the_run(collector_settings, replay, tmp_path):
    path = tmp_path / "portfolio.yml"
    config = write_config(path, replay)
    flooding = threading.Event()

    def flood():
        while flooding.is_set():
            replay.send_raw('{"event": "bts:heartbeat", "channel": "", "data": {}}')

    for attempt in range(8):
        runner = RunningCollector(
            Collector(path, config, collector_settings, tmp_path / f"spool{attempt}", FAST)
        )
        runner.start()
        replay.wait_subscribed("btcusd", connections=1)
        flooding.set()
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            took = runner.stop(timeout=12)
        finally:
            flooding.clear()
            flooder.join(5)
        assert took < 10, f"stop {attempt} took {took:.1f} s"
