"""The `collector` command line: one subcommand per user action."""

import argparse
import sys
from pathlib import Path

from dotenv import load_dotenv

from collector import bootstrap as bootstrap_mod
from collector.config import config_path, load_config
from collector.errors import ConfigError, RuntimeFailure
from collector.influx_settings import InfluxSettings


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="portfolio.yml to read (default: $HODLBOARD_CONFIG, else ./portfolio.yml)",
    )


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

    check = commands.add_parser(
        "check-config",
        help="validate portfolio.yml and say what it configures",
        description="Validate the configuration file; errors name the file, line, key and what was expected.",
    )
    _add_config_option(check)
    check.set_defaults(handler=_check_config)
    return parser


def _bootstrap(args) -> None:
    path, named = config_path(args.config)
    config = load_config(path, required=named)
    owners = dict(bootstrap_mod.parse_owner(text) for text in args.owner)
    settings = InfluxSettings.from_env()
    bootstrap_mod.Bootstrap(settings, config.buckets, args.secrets_dir, owners).run(wait_seconds=args.wait)


def _check_config(args) -> None:
    path, _ = config_path(args.config)
    config = load_config(path, required=True)
    buckets = config.buckets
    print(f"{path}: ok (buckets: live={buckets.live}, history={buckets.history}, meta={buckets.meta})")


def main(argv: list[str] | None = None) -> int:
    load_dotenv()  # .env in the working directory; real environment variables win
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ConfigError, RuntimeFailure) as exc:
        print(f"collector {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
