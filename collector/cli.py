"""The `collector` command line: one subcommand per user action."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from dotenv import load_dotenv

from collector import bootstrap as bootstrap_mod
from collector import heartbeat
from collector.backfill import Progress, day_start_s
from collector.config import Config, Pair, config_path, load_config
from collector.errors import ConfigError, RuntimeFailure
from collector.exchanges import load_checked_config
from collector.exchanges.coingecko import API_KEY_ENV_VAR
from collector.influx_settings import InfluxSettings
from collector.older_history import extra_pairs
from collector.portfolio.prices import from_ns
from collector.portfolio.render import as_json, as_table
from collector.portfolio.routes import price_sources
from collector.portfolio.work import value_portfolio
from collector.service import Collector, RunOptions
from collector.storage.points import interval_name

log = logging.getLogger("collector")
ONE_SHOT_FLUSH_S = (
    300.0  # how long a one-shot command waits for its points to be stored before it spools the rest
)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="portfolio.yml to read (default: $HODLBOARD_CONFIG, else ./portfolio.yml)",
    )


def _command(commands, name: str, handler, help: str, description: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=description)
    _add_config_option(parser)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="hodlboard collector: crypto trades, candles and tickers into InfluxDB 2.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    boot = commands.add_parser(
        "bootstrap",
        help="create the buckets and the scoped collector/grafana tokens (idempotent)",
        description=(
            "Create the live (90 days), history (3650 days) and meta (forever) buckets and two scoped tokens: "
            "'collector' (read/write the three buckets) and 'grafana' (read only), each written to "
            "SECRETS_DIR/<name>.token with mode 0600. Safe to run again: what is present is reused, a bucket "
            "whose retention differs is corrected. Reads INFLUXDB_V2_URL, INFLUXDB_V2_ORG and "
            "INFLUXDB_V2_TOKEN (an admin token) from the environment or .env."
        ),
    )
    _add_config_option(boot)
    boot.add_argument(
        "--secrets-dir",
        type=Path,
        default=bootstrap_mod.DEFAULT_SECRETS_DIR,
        help="where the token files are written (default: %(default)s)",
    )
    boot.add_argument(
        "--owner",
        action="append",
        default=[],
        metavar="ROLE=UID[:GID]",
        help="give a token file to a user, e.g. grafana=472 so the Grafana container can read it; repeatable",
    )
    boot.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="keep retrying an unreachable InfluxDB for this long (default: 0, fail at once)",
    )
    boot.set_defaults(handler=_bootstrap)

    _command(
        commands,
        "check-config",
        _check_config,
        help="validate portfolio.yml and say what it configures",
        description="Validate the configuration file; errors name the file, line, key and what was expected.",
    )
    _command(
        commands,
        "run",
        _run,
        help="stream live trades and keep candles, tickers and coin metadata up to date (the container's command)",
        description=(
            "Stream live trades of every configured pair, fill gaps after disconnects and restarts, backfill "
            "candles and record tickers and coin metadata on start and every backfill.every, value the holdings "
            "(hourly history recomputed after each backfill and each edit, live samples every valuation.live_every), "
            "and write health points. Edits to portfolio.yml take effect without a restart; a bad edit is refused and the "
            "previous configuration kept. SIGTERM flushes the writer and exits within 10 s. While InfluxDB is "
            "unreachable, points wait in the spool directory ($HODLBOARD_SPOOL_DIR, default ./spool)."
        ),
    )
    backfill = _command(
        commands,
        "backfill",
        _backfill,
        help="fetch candle history now (incremental: only candles after the last stored one)",
        description="Fetch closed candles of the configured interval from backfill.since (or --since) up to now, "
        "starting after the last stored candle of each pair. Shows a progress bar on a terminal.",
    )
    backfill.add_argument("--pair", metavar="P", type=_pair_argument, help="only this pair, e.g. BTC-USD")
    backfill.add_argument("--since", metavar="DATE", type=_date_argument, help="start date YYYY-MM-DD")
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 when the writer of `collector run` is healthy, 1 (saying why) when it is not",
        description=(
            "Judge the heartbeat that the writer of `collector run` keeps in $HODLBOARD_ALIVE_FILE: unhealthy "
            f"when the writer failed or gave up, has not reported for {heartbeat.STALE_S:.0f} s, or has points "
            f"waiting and wrote or spooled nothing for {heartbeat.STUCK_S:.0f} s, or an exchange's connection "
            f"showed no sign of life for {heartbeat.FRESH_S:.0f} s. The container's healthcheck."
        ),
    )
    health.set_defaults(handler=_healthcheck)
    _command(
        commands,
        "ticker",
        _ticker,
        help="record tickers and coin metadata now",
        description="Fetch the ticker of every configured pair and the exchanges' coin metadata, and write them.",
    )
    portfolio = _command(
        commands,
        "portfolio",
        _portfolio,
        help="value the holdings from the prices stored in InfluxDB: positions, totals, profit and loss",
        description=(
            "Value every holding of portfolio.yml in the base currency: quantity, price, value, remaining cost "
            "basis, unrealized and realized profit/loss and P/L %, per asset and in total. Prices are read from "
            "InfluxDB (never from an exchange): now, the latest stored trade or candle close; with --at, the "
            "latest candle closed at or before that time, with the holdings held then. Assets without a price "
            "are listed and the reason is printed on stderr."
        ),
    )
    portfolio.add_argument(
        "--at",
        metavar="TIME",
        type=_time_argument,
        help="a past time: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (UTC)",
    )
    portfolio.add_argument(
        "--json", action="store_true", help="print JSON (numbers as exact decimal strings)"
    )
    return parser


def _time_argument(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a time YYYY-MM-DD[THH:MM[:SS]] (UTC), got {text!r}"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment > datetime.now(UTC):
        raise argparse.ArgumentTypeError(f"{text} is in the future")
    return moment


def _pair_argument(text: str) -> Pair:
    try:
        return Pair.parse(text.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pair such as BTC-USD, got {text!r}") from None


def _date_argument(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _read_config(args) -> tuple[Path, Config]:
    path, _ = config_path(args.config)
    return path, load_checked_config(path)


def _alive_file() -> Path | None:
    alive = os.environ.get("HODLBOARD_ALIVE_FILE")
    return Path(alive) if alive else None


def _collector(args, alive_file: Path | None = None) -> tuple[Path, Collector]:
    """Only `collector run` keeps the heartbeat: a one-shot command beside it must not speak for it."""
    path, config = _read_config(args)
    settings = InfluxSettings.from_env()
    spool_dir = Path(os.environ.get("HODLBOARD_SPOOL_DIR") or "spool")
    options = RunOptions(alive_file=alive_file)
    try:
        return path, Collector(path, config, settings, spool_dir, options)
    except OSError as exc:
        raise RuntimeFailure(f"cannot use spool directory {spool_dir}: {exc.strerror}") from exc


def _run(args) -> None:
    _setup_logging()
    _, collector = _collector(args, _alive_file())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await collector.run(stop)

    asyncio.run(main())


@contextlib.contextmanager
def _one_shot(args):
    """A collector whose writer runs for one command, then flushes everything it accepted."""
    _setup_logging()
    _, collector = _collector(args)
    collector.writer.start()
    try:
        yield collector
    finally:
        # "done" means stored: wait for what went through the spool too (a first backfill into an empty bucket can
        # outlast a write timeout); what still cannot be written is spooled for `collector run` to replay
        if not collector.writer.flush(ONE_SHOT_FLUSH_S):
            log.warning("not everything is stored yet: the rest is spooled and `collector run` will write it")
        collector.writer.close(timeout_s=60)
        collector.reader.close()
    if collector.writer.failed.is_set():
        raise RuntimeFailure("the InfluxDB writer failed (see the log); what it held is spooled")


def _backfill(args) -> None:
    since = day_start_s(args.since) if args.since else None
    failed = False
    with _one_shot(args) as collector:
        collector.exchanges = {s.name: collector.runtime(s) for s in collector.config.sources()}
        plan = (
            collector.older_history()
        )  # older history of a pair an exchange cannot reach, from another source
        for exchange in collector.config.sources():
            runtime = collector.exchanges[exchange.name]
            wanted = [*exchange.pairs, *extra_pairs(plan, exchange.name)]
            pairs = [pair for pair in wanted if args.pair in (None, pair)]
            progress = lambda rt, pair: Progress(f"{rt.adapter.name} {pair}")  # noqa: E731
            for result in collector.backfill(runtime, pairs, since, progress):
                failed |= result.status in ("failed", "rate limited")
                detail = f": {result.detail}" if result.detail else ""
                print(
                    f"{exchange.name} {result.pair}: {result.status}, {result.candles} candles "
                    f"in {result.requests} requests{detail}"
                )
            runtime.http.close()
    if failed:
        raise RuntimeFailure("some pairs could not be backfilled (see above)")


def _ticker(args) -> None:
    with _one_shot(args) as collector:
        for exchange in collector.config.sources():
            runtime = collector.runtime(exchange)
            tickers, assets = collector.reference_data(runtime)
            print(f"{exchange.name}: {tickers} tickers, {assets} assets written")
            runtime.http.close()


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("HODLBOARD_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _healthcheck(args) -> None:
    path = _alive_file()
    if path is None:
        raise ConfigError("HODLBOARD_ALIVE_FILE is not set: no heartbeat to judge")
    problem = heartbeat.judge(heartbeat.read_beat(path))
    if problem:
        raise RuntimeFailure(f"unhealthy: {problem}")
    print("healthy")


def _bootstrap(args) -> None:
    path, named = config_path(args.config)
    config = load_config(path, required=named)
    owners = dict(bootstrap_mod.parse_owner(text) for text in args.owner)
    settings = InfluxSettings.from_env()
    bootstrap_mod.Bootstrap(settings, config.buckets, args.secrets_dir, owners).run(wait_seconds=args.wait)


def _check_config(args) -> None:
    path, config = _read_config(args)
    buckets = config.buckets
    print(f"{path}: ok")
    print(f"  base currency: {config.base_currency}")
    for exchange in config.exchanges.values():
        print(f"  {exchange.name}: {', '.join(map(str, exchange.pairs))}")
    if config.coingecko:
        coins = ", ".join(f"{symbol} ({coin_id})" for symbol, coin_id in config.coingecko.coins)
        key = "Demo key" if os.environ.get(API_KEY_ENV_VAR, "").strip() else "no key: the public rate limit"
        print(f"  coingecko: {coins}; {key}")
    backfill = config.backfill
    print(
        f"  backfill: {interval_name(backfill.interval_s)} candles since {backfill.since}, "
        f"every {interval_name(backfill.every_s)}"
    )
    print(f"  buckets: live={buckets.live}, history={buckets.history}, meta={buckets.meta}")
    holdings = config.holdings
    every = interval_name(int(config.live_valuation_every_s))
    count = len(holdings.assets)
    if count:
        print(
            f"  holdings: {count} asset{'s' * (count != 1)}, {holdings.cost_basis} cost basis, "
            f"valued live every {every}"
        )
    else:
        print(
            "  holdings: none (list them under 'holdings:' to value your portfolio; see portfolio.example.yml)"
        )
    for holding in holdings.assets.values():
        print(f"    {holding.asset}: {holding.describe()}")
    sources = price_sources(config)
    if sources:
        print("  prices (an asset without a source is reported and left unvalued, never valued at 0):")
        for _, _, line in sources:
            print(f"    {line}")


def _portfolio(args) -> None:
    path, config = _read_config(args)
    if not config.holdings.assets:
        raise ConfigError(
            f"{path}: no holdings to value: add them under 'holdings:' (see portfolio.example.yml)"
        )
    valuation, problems = value_portfolio(InfluxSettings.from_env(), config, args.at)
    at = args.at or from_ns(valuation.at_ns)
    if args.json:
        print(as_json(config.base_currency, at, valuation.positions, valuation.total))
        for problem in problems:  # stdout stays one JSON document
            print(f"collector portfolio: {problem}", file=sys.stderr)
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        print(
            as_table(config.base_currency, at, valuation.positions, valuation.total, colour, problems), end=""
        )


def main(argv: list[str] | None = None) -> int:
    load_dotenv()  # .env in the working directory; real environment variables win
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ConfigError, RuntimeFailure) as exc:
        print(f"collector {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
