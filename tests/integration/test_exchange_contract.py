"""The generalized exchange contract, end to end against the real influxd, with the parts Bitstamp cannot show
played by a test-only exchange (tests/replay/sequenced.py): acks that name no pair or many, gap fill by trade id
(resumed exactly after a drop and after a restart, paged while the exchange has more), trade id jumps and lost
messages filled mid-connection, inexact values counted, the planned hand-over before a connection time limit,
and one pair from two exchanges at once."""

import json
import logging
import time
from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse

import pytest
from influxdb_client.client.write_api import SYNCHRONOUS

from collector.config import Buckets, ExchangeConfig, Pair, parse_config
from collector.exchanges import EXCHANGES
from collector.records import LastTrade
from collector.storage.points import trade_point
from collector.storage.reader import Reader, flux_query
from tests.integration.harness import FAST, running, stored_trades, wait_for
from tests.replay.sequenced import Sequenced, SequencedReplay

PAIR = "BTC-USD"
BTC, ETH = Pair("BTC", "USD"), Pair("ETH", "USD")


@pytest.fixture
def sequenced(monkeypatch):
    monkeypatch.setitem(EXCHANGES, "sequenced", Sequenced)  # registered for this test only
    with SequencedReplay() as server:
        yield server


@pytest.fixture
def sequenced_many(monkeypatch):
    monkeypatch.setitem(EXCHANGES, "sequenced", Sequenced)
    with SequencedReplay(ack_style="many") as server:
        yield server


def write_config(tmp_path, sequenced, pairs=(PAIR,), bitstamp=None):
    text = (
        "exchanges:\n"
        "  sequenced:\n"
        f"    pairs: [{', '.join(pairs)}]\n"
        f"    ws_url: {sequenced.ws_url}\n"
        f"    rest_url: {sequenced.rest_url}\n"
    )
    if bitstamp is not None:
        text += f"  bitstamp:\n    pairs: [{PAIR}]\n    ws_url: {bitstamp.ws_url}\n    rest_url: {bitstamp.rest_url}\n"
    text += "backfill:\n  interval: 1h\n  every: 12h\n  since: 2020-01-01\n"
    path = tmp_path / "portfolio.yml"
    path.write_text(text)
    return path, parse_config(text, str(path))


@contextmanager
def streaming(tmp_path, replay, settings):
    """The collector running on the test exchange's BTC-USD, subscribed."""
    path, config = write_config(tmp_path, replay)
    with running(path, config, settings, tmp_path / "spool") as runner:
        replay.wait_subscribed(PAIR)
        yield runner


def stored_ids(client, org, pair=PAIR, exchange="sequenced") -> list[int]:
    return sorted(
        int(row["trade_id"]) for row in stored_trades(client, org, pair) if row["exchange"] == exchange
    )


def trade_requests(replay, pair=PAIR) -> list[dict]:
    """The /trades requests for `pair`, as their query parameters."""
    queries = [
        parse_qs(urlparse(path).query) for path in list(replay.http.requests) if path.startswith("/trades")
    ]
    return [{k: v[0] for k, v in q.items()} for q in queries if q["pair"] == [pair]]


def after_ids(replay, pair=PAIR) -> list[int | None]:
    return [int(q["after_id"]) if "after_id" in q else None for q in trade_requests(replay, pair)]


def health_field(client, org, name: str, exchange="sequenced") -> list[float]:
    query = flux_query(
        'from(bucket: "crypto_live") |> range(start: 0)'
        ' |> filter(fn: (r) => r._measurement == "collector" and r.exchange == {exchange} and r._field == {name})',
        exchange=exchange,
        name=name,
    )
    return [record.get_value() for table in client.query_api().query(query, org=org) for record in table]


def backoff_is_reset(runner) -> bool:
    stream = runner.collector.exchanges["sequenced"].stream
    return stream is not None and stream._backoff._next == FAST.stream.backoff_first_s


def test_gap_fill_by_id_resumes_exactly_after_a_drop_and_after_a_restart(
    sequenced, collector_settings, admin_client, tmp_path, caplog
):
    """Acks name only a request id: they still start the gap fill and reset the backoff. The gap fill asks for
    the trades after the last id seen (then stored), pages on while the exchange has more, and fetches each
    missed trade exactly once; reach-limited candles are asked only as far back as the exchange serves them."""
    org = collector_settings.org
    path, config = write_config(tmp_path, sequenced)
    sequenced.refused = 3  # three connections closed at once: the backoff grows
    with (
        caplog.at_level(logging.INFO),
        running(path, config, collector_settings, tmp_path / "spool") as runner,
    ):
        sequenced.wait_subscribed(PAIR)
        wait_for(lambda: backoff_is_reset(runner), what="the backoff reset by an ack naming no pair")
        published = [sequenced.publish(PAIR, f"100.{i}") for i in range(3)]
        wait_for(lambda: stored_ids(admin_client, org) == [t.id for t in published], what="live trades")
        assert trade_requests(sequenced) == []  # a pair never stored owes nothing
        published += [sequenced.publish(PAIR, f"101.{i}", deliver=False) for i in range(7)]
        sequenced.drop_connections()
        wait_for(lambda: len(stored_ids(admin_client, org)) == 10, what="the missed trades")
        assert after_ids(sequenced) == [1002, 1005, 1008]  # pages of 3, each right after the last
        assert sequenced.served_ids == list(range(1003, 1010))  # each missed trade fetched once
        assert runner.health("sequenced").gap_filled == 7
        candle_starts = [
            int(parse_qs(urlparse(p).query)["start"][0]) for p in sequenced.http.requests if "/candles" in p
        ]
        assert candle_starts and min(candle_starts) >= time.time() - 26 * 3600  # the latest 24 rows only
    assert "beyond the exchange's reach (its latest 24)" in caplog.text

    published += [sequenced.publish(PAIR, f"102.{i}", deliver=False) for i in range(4)]  # while stopped
    sequenced.http.requests.clear()
    sequenced.served_ids.clear()
    with running(path, config, collector_settings, tmp_path / "spool"):
        wait_for(lambda: len(stored_ids(admin_client, org)) == 14, what="the trades missed while stopped")
        assert after_ids(sequenced) == [1009, 1012]  # from the last id stored in InfluxDB
        assert sequenced.served_ids == list(range(1010, 1014))
    rows = [row for row in stored_trades(admin_client, org, PAIR)]
    assert sorted(int(row["trade_id"]) for row in rows) == [t.id for t in published]  # each once


def an_id_jump(replay) -> list:
    """Two trades the stream skipped (its sequence is whole), then one it sends: only the id jumps."""
    skipped = [replay.publish(PAIR, f"100.{i}", deliver=False, in_sequence=False) for i in (1, 2)]
    return [*skipped, replay.publish(PAIR, "100.3")]


def lost_messages(replay) -> list:
    """Two trade messages lost, then a heartbeat whose sequence number shows it (no later trade does)."""
    lost = [replay.publish(PAIR, f"100.{i}", deliver=False) for i in (1, 2)]
    replay.heartbeat()
    return lost


@pytest.mark.parametrize(
    ("gap", "logged"),
    [(an_id_jump, "a trade id jump"), (lost_messages, "the exchange says messages were lost")],
)
def test_a_gap_seen_on_a_live_connection_is_filled_at_once(
    gap, logged, sequenced, collector_settings, admin_client, tmp_path, caplog
):
    org = collector_settings.org
    with caplog.at_level(logging.INFO), streaming(tmp_path, sequenced, collector_settings) as runner:
        first = sequenced.publish(PAIR, "100.0")
        wait_for(lambda: stored_ids(admin_client, org) == [first.id], what="the first trade")
        expected = [first.id, *(trade.id for trade in gap(sequenced))]
        wait_for(lambda: stored_ids(admin_client, org) == expected, what="the trades of the gap")
        assert after_ids(sequenced) == [first.id]
        assert runner.health("sequenced").reconnects == 0  # filled on the live connection
    assert f"BTC-USD: {logged}; filling the gap over REST" in caplog.text


def test_one_ack_for_many_pairs_starts_the_gap_fill_of_each(
    sequenced_many, collector_settings, admin_client, tmp_path
):
    replay, org = sequenced_many, collector_settings.org
    path, config = write_config(tmp_path, replay, pairs=("BTC-USD", "ETH-USD"))
    replay.refused = 2
    with running(path, config, collector_settings, tmp_path / "spool") as runner:
        replay.wait_subscribed("ETH-USD")
        wait_for(lambda: backoff_is_reset(runner), what="the backoff reset by a many-pair ack")
        live = {pair: replay.publish(pair, "50.0") for pair in ("BTC-USD", "ETH-USD")}
        for pair, trade in live.items():
            wait_for(lambda p=pair, t=trade: stored_ids(admin_client, org, p) == [t.id], what=f"{pair} live")
        missed = {pair: replay.publish(pair, "51.0", deliver=False) for pair in ("BTC-USD", "ETH-USD")}
        replay.drop_connections()
        for pair in ("BTC-USD", "ETH-USD"):
            want = [live[pair].id, missed[pair].id]
            wait_for(lambda p=pair, w=want: stored_ids(admin_client, org, p) == w, what=f"{pair} gap fill")
            assert after_ids(replay, pair) == [live[pair].id]


def test_an_inexact_value_is_stored_counted_and_logged(
    sequenced, collector_settings, admin_client, tmp_path, caplog
):
    org = collector_settings.org
    with caplog.at_level(logging.INFO), streaming(tmp_path, sequenced, collector_settings) as runner:
        exact = sequenced.publish(PAIR, "0.5", qty="0.00000001")
        lossy = sequenced.publish(PAIR, "0.12345678901234567")  # 17 significant digits
        wait_for(lambda: len(stored_ids(admin_client, org)) == 2, what="both trades")
        assert runner.health("sequenced").inexact_values == 1
        wait_for(lambda: 1 in health_field(admin_client, org, "inexact_values"), what="inexact_values stored")
    prices = {int(row["trade_id"]): row["price"] for row in stored_trades(admin_client, org, PAIR)}
    assert prices == {exact.id: 0.5, lossy.id: float("0.12345678901234567")}  # written, as the nearest float
    assert "trade price 0.12345678901234567 is stored as the nearest float" in caplog.text


def test_a_planned_hand_over_before_the_connection_limit_loses_and_duplicates_nothing(
    sequenced, collector_settings, admin_client, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(Sequenced, "max_connection_s", 1.5)  # handed over after 1.35 s
    org = collector_settings.org
    with caplog.at_level(logging.INFO), streaming(tmp_path, sequenced, collector_settings) as runner:
        published = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # trades all along, hand-overs included
            published.append(sequenced.publish(PAIR, f"100.{len(published)}"))
            time.sleep(0.05)  # pacing the publisher, not synchronising with the collector
        wait_for(lambda: stored_ids(admin_client, org) == [t.id for t in published], what="every trade")
        assert runner.health("sequenced").reconnects >= 2
        assert sequenced.sessions_opened >= 3
    rows = stored_trades(admin_client, org, PAIR)
    assert len(rows) == len(published)  # one point per trade
    assert (
        "its connection time limit is near: opening a new connection before closing the old one"
        in caplog.text
    )


def test_the_same_pair_from_two_exchanges_stays_two_series(
    sequenced, replay, collector_settings, admin_client, tmp_path
):
    """Even at the very same point time (a Bitstamp second and a millisecond exchange's trade, both id 1000)."""
    org = collector_settings.org
    path, config = write_config(tmp_path, sequenced, bitstamp=replay)
    second = int(time.time())
    with running(path, config, collector_settings, tmp_path / "spool"):
        sequenced.wait_subscribed(PAIR)
        replay.wait_subscribed("btcusd")
        ours = sequenced.publish(PAIR, "200.0", time_ms=second * 1000)
        theirs = replay.publish("btcusd", "100.00", microtimestamp=second * 1_000_000, trade_id=1000)
        assert ours.id == theirs.id == 1000
        wait_for(lambda: len(stored_trades(admin_client, org, PAIR)) == 2, what="both trades")
    rows = stored_trades(admin_client, org, PAIR)
    assert {(row["exchange"], row["price"]) for row in rows} == {("sequenced", 200.0), ("bitstamp", 100.0)}
    assert len({row["_time"] for row in rows}) == 1  # one point time, two series


def test_lost_messages_shown_by_a_trade_message_are_filled_from_before_its_trades(
    sequenced, collector_settings, admin_client, tmp_path, monkeypatch
):
    """Review: the message whose sequence number shows the loss may carry trades itself (a Coinbase
    `sequence_num` gap): the gap fill starts after the last trade before that message, not after its own."""
    monkeypatch.setattr(Sequenced, "sequential_trade_ids", False)  # only the sequence shows it (as Coinbase)
    org = collector_settings.org
    with streaming(tmp_path, sequenced, collector_settings):
        first = sequenced.publish(PAIR, "100.0")
        wait_for(lambda: stored_ids(admin_client, org) == [first.id], what="the first trade")
        lost = sequenced.publish(PAIR, "100.1", deliver=False)
        shown = sequenced.publish(PAIR, "100.2")  # its sequence number shows the lost message
        expected = [first.id, lost.id, shown.id]
        wait_for(lambda: stored_ids(admin_client, org) == expected, what="the lost trade")
        assert after_ids(sequenced) == [first.id]


def test_a_page_of_only_unusable_rows_does_not_end_the_gap_fill(
    sequenced, collector_settings, admin_client, tmp_path
):
    """Review: a whole page of bad rows with `more` still says where to go on (Page.next_after_id): the trades
    after it are fetched, the bad rows counted."""
    org = collector_settings.org
    with streaming(tmp_path, sequenced, collector_settings) as runner:
        first = sequenced.publish(PAIR, "100.0")
        wait_for(lambda: stored_ids(admin_client, org) == [first.id], what="the first trade")
        bad = [sequenced.publish(PAIR, "not a price", deliver=False) for _ in range(Sequenced.page_limit)]
        good = [sequenced.publish(PAIR, f"101.{i}", deliver=False) for i in range(2)]
        sequenced.drop_connections()
        wait_for(lambda: stored_ids(admin_client, org) == [first.id, *(t.id for t in good)], what="the rest")
        assert after_ids(sequenced) == [first.id, bad[-1].id]
        assert runner.health("sequenced").errors >= len(bad)


def test_the_last_stored_trade_of_each_pair_is_read_with_its_id(collector_settings, admin_client):
    """Review: per pair, the latest trade (over both sides) with its id as an integer: "1000" after "999"
    (a string field: no string ordering may pick "999"), other exchanges apart, a pair without trades absent."""
    exchange = Sequenced(_sequenced_config())
    second = int(time.time()) - 100
    trades = [
        exchange.trade(BTC, 999, "1", "1", "buy", second * 10**9),
        exchange.trade(BTC, 1000, "1", "1", "sell", (second + 1) * 10**9),
        exchange.trade(ETH, 5, "1", "1", "sell", (second + 2) * 10**9),
        exchange.trade(ETH, 4, "1", "1", "buy", (second - 5) * 10**9),
    ]
    other = EXCHANGES["bitstamp"](_sequenced_config()).trade(BTC, 2000, "1", "1", "buy", (second + 9) * 10**9)
    with admin_client.write_api(write_options=SYNCHRONOUS) as write:
        write.write("crypto_live", collector_settings.org, [trade_point(t) for t in [*trades, other]])
    reader = Reader(collector_settings, Buckets())
    try:
        assert reader.last_trades("sequenced") == {
            BTC: LastTrade(second + 1, 1000),
            ETH: LastTrade(second + 2, 5),
        }
    finally:
        reader.close()


def _sequenced_config() -> ExchangeConfig:
    return ExchangeConfig("sequenced", (BTC, ETH))


def test_a_gap_being_filled_when_the_collector_stops_is_filled_after_the_restart(
    sequenced, collector_settings, admin_client, tmp_path
):
    """Review: live trades after an id jump are stored while the jump's gap fill still retries, so the last id
    stored is past the gap: the restart resumes from the gap kept open on disk (open_gaps.json), then closes it."""
    org = collector_settings.org
    path, config = write_config(tmp_path, sequenced)
    with running(path, config, collector_settings, tmp_path / "spool"):
        sequenced.wait_subscribed(PAIR)
        first = sequenced.publish(PAIR, "100.0")
        wait_for(lambda: stored_ids(admin_client, org) == [first.id], what="the first trade")
        sequenced.http.script("/trades", *[(500, {}, "{}")] * 10_000)  # the gap fill keeps failing
        published = [first, *an_id_jump(sequenced)]
        wait_for(lambda: stored_ids(admin_client, org) == [first.id, published[-1].id], what="the live trade")
        wait_for(lambda: set(after_ids(sequenced)) == {first.id}, what="the gap fill retrying")
    sequenced.http.scripted.clear()
    assert json.loads((tmp_path / "spool" / "open_gaps.json").read_text()) == {
        "sequenced": {PAIR: [published[0].time_ms // 1000, first.id]}
    }
    with running(path, config, collector_settings, tmp_path / "spool"):
        wait_for(lambda: stored_ids(admin_client, org) == [t.id for t in published], what="the gap's trades")
        wait_for(
            lambda: json.loads((tmp_path / "spool" / "open_gaps.json").read_text()) == {"sequenced": {}},
            what="the gap closed",
        )


def test_reloads_landing_during_planned_hand_overs_end_subscribed_to_exactly_the_wanted_pairs(
    sequenced, collector_settings, admin_client, tmp_path, monkeypatch
):
    """Review: pairs added and removed again and again while connections are handed over every 1.35 s:
    the connection kept ends with exactly the wanted pairs, and every trade of the pair kept is stored once."""
    monkeypatch.setattr(Sequenced, "max_connection_s", 1.5)
    org = collector_settings.org
    with streaming(tmp_path, sequenced, collector_settings) as runner:
        published, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline:
            pairs = (PAIR, "ETH-USD") if len(published) % 20 < 10 else (PAIR, "XRP-USD")
            if len(published) % 10 == 0:
                write_config(tmp_path, sequenced, pairs=pairs)
            published.append(sequenced.publish(PAIR, f"100.{len(published)}"))
            time.sleep(0.05)  # pacing the publisher, not synchronising with the collector
        write_config(tmp_path, sequenced, pairs=(PAIR, "ETH-USD"))
        stream = runner.collector.exchanges["sequenced"].stream
        wait_for(
            lambda: newest_subscriptions(sequenced) == {PAIR, "ETH-USD"} and stream.pairs == {BTC, ETH},
            what="exactly the wanted pairs on the newest connection",
        )
        wait_for(lambda: stored_ids(admin_client, org) == [t.id for t in published], what="every BTC trade")
        eth = sequenced.publish("ETH-USD", "2000.0")
        wait_for(lambda: eth.id in stored_ids(admin_client, org, "ETH-USD"), what="the ETH trade")
        assert runner.health("sequenced").reconnects >= 2
    assert len(stored_trades(admin_client, org, PAIR)) == len(published)


def newest_subscriptions(replay) -> set[str] | None:
    sessions = dict(replay.sessions)
    newest = max(sessions, key=sessions.get, default=None)
    return replay.subscriptions.get(newest)


def test_a_pair_removed_and_added_back_on_one_connection_is_no_id_jump(
    sequenced, collector_settings, admin_client, tmp_path
):
    """Review: the trades made while a pair was not wanted are no gap: once added back it is owed its trades
    from then on, not everything after the last id seen before its removal (pages of REST calls for nothing)."""
    org = collector_settings.org
    with streaming(tmp_path, sequenced, collector_settings) as runner:
        first = sequenced.publish(PAIR, "100.0")
        wait_for(lambda: stored_ids(admin_client, org) == [first.id], what="the first trade")
        write_config(tmp_path, sequenced, pairs=("ETH-USD",))
        wait_for(lambda: sequenced.subscribed(PAIR) == 0, what="BTC-USD unsubscribed")
        while_removed = [sequenced.publish(PAIR, f"101.{i}") for i in range(4)]
        write_config(tmp_path, sequenced, pairs=(PAIR, "ETH-USD"))
        sequenced.wait_subscribed(PAIR)
        stream = runner.collector.exchanges["sequenced"].stream
        wait_for(
            lambda: (
                stream.link is not None and BTC in stream.link.subscribed and not stream._gap_filler._running
            ),
            what="BTC-USD acknowledged, its gap fill (from when it was added back) done",
        )
        back = sequenced.publish(PAIR, "102.0")
        wait_for(lambda: back.id in stored_ids(admin_client, org), what="the trade after the pair came back")
        assert set(after_ids(sequenced)) <= {None}  # nothing asked after the id seen before the removal
        assert stored_ids(admin_client, org) == [first.id, back.id]
        assert while_removed[-1].id + 1 == back.id


def test_messages_lost_before_the_first_trade_of_a_pair_never_stored_are_filled(
    sequenced, collector_settings, admin_client, tmp_path
):
    """Review: a pair never stored owes nothing from before its subscription, but everything after it: messages
    lost on its first connection, before any trade of it came, are filled from the subscription on."""
    org = collector_settings.org
    with streaming(tmp_path, sequenced, collector_settings) as runner:
        stream = runner.collector.exchanges["sequenced"].stream
        wait_for(
            lambda: stream.link is not None and BTC in stream.link.subscribed, what="BTC-USD acknowledged"
        )
        sequenced.heartbeat()  # the sequence starts
        wait_for(lambda: runner.health("sequenced").messages >= 2, what="the ack and the first heartbeat")
        lost = lost_messages(sequenced)
        wait_for(lambda: stored_ids(admin_client, org) == [t.id for t in lost], what="the lost trades")
