"""``matchctl``: operator commands.

Offline commands that need only the config file:

* ``matchctl config-check --config PATH``: validate the engine tables of a config;
* ``matchctl markets --config PATH``: list its markets with their precisions;
* ``matchctl verify --config PATH --data-dir DIR``: replay a stopped daemon's log
  both ways (newest snapshot + tail, and the whole log) and compare the state hashes
  (``persistence.verify``); exit 0 when they agree, 1 when not.

Commands that talk to a running daemon over its order-entry socket (the SDK,
``ipc.client``), with ``--endpoint`` (default tcp://127.0.0.1:7316); each prints JSON:

* ``matchctl status``: sequence, last order and deal ids, wire and schema versions;
* ``matchctl balance USER``: the user's balances, in units, per asset index;
* ``matchctl book MARKET SIDE [--limit N]`` and ``matchctl depth MARKET [--limit N]``;
* ``matchctl snapshot``: take a snapshot now; prints its sequence and state hash.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import EngineConfig, parse_config
from core.errors import ConfigError
from core.fixed import format_units

#: Exit code for a usage error, an unreadable file or an invalid config.
EXIT_USAGE = 2
DEFAULT_ENDPOINT = "tcp://127.0.0.1:7316"

MARKET_COLUMNS = (
    "name",
    "stock",
    "money",
    "stock_prec",
    "money_prec",
    "fee_prec",
    "min_amount",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``matchctl`` argument parser."""
    parser = argparse.ArgumentParser(prog="matchctl", description="matchd operator commands")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("config-check", "validate a config file's assets, markets and limits"),
        ("markets", "list the markets of a config file"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
        )
    text = "replay a data directory's log two ways and compare the resulting states"
    verify = commands.add_parser("verify", help=text, description=text)
    verify.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    verify.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="the daemon's data_dir"
    )
    live = {
        "status": "the running daemon's sequence and versions",
        "balance": "a user's balances (units)",
        "book": "one side of a market's book",
        "depth": "a market's depth",
        "snapshot": "take a snapshot now",
    }
    for name, text in live.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="ZeroMQ endpoint")
        command.add_argument("--timeout", type=float, default=10.0, help="seconds")
        if name == "balance":
            command.add_argument("user", type=int)
        if name in ("book", "depth"):
            command.add_argument("market", type=int, help="market index")
            command.add_argument("--limit", type=int, default=20)
        if name == "book":
            command.add_argument("side", type=int, choices=(1, 2), help="1 asks, 2 bids")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``matchctl`` with ``argv`` (default: the process arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command in ("status", "balance", "book", "depth", "snapshot"):
        return _live(args)
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    if args.command == "config-check":
        print(f"config OK: {len(config.assets)} assets, {len(config.markets)} markets")
    elif args.command == "markets":
        print(format_markets(config))
    elif args.command == "verify":
        return _verify(config, args.data_dir)
    return 0


def _live(args: argparse.Namespace) -> int:
    import msgspec

    from ipc.client import Client
    from ipc.client_common import ApiError, RequestTimeout

    try:
        with Client(args.endpoint, timeout_s=args.timeout) as client:
            if args.command == "status":
                result: object = client.status()
            elif args.command == "balance":
                result = client.balance_query(args.user)
            elif args.command == "book":
                result = client.book(args.market, args.side, limit=args.limit)
            elif args.command == "depth":
                result = client.depth(args.market, limit=args.limit)
            else:
                result = client.snapshot()
    except (RequestTimeout, ApiError) as exc:
        print(f"matchctl: {args.command}: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.format(msgspec.json.encode(result)).decode())
    return 0


def _verify(config: EngineConfig, data_dir: Path) -> int:
    # Imported here: the other commands must not load the kernels.
    from persistence.log_errors import LogError
    from persistence.verify import verify

    try:
        result = verify(config, data_dir)
    except LogError as exc:
        print(f"matchctl: verify {data_dir}: {exc}", file=sys.stderr)
        return 1
    print(
        f"recovery road: snapshot seq {result.recovered_from} + log to seq {result.last_seq}: "
        f"{result.recovered_hash}"
    )
    print(
        f"whole-log road: from seq {result.full_from + 1}, {result.full.records:,} records "
        f"({result.full.records_per_s:,.0f}/s): {result.full_hash}"
    )
    for problem in result.problems:
        print(f"problem: {problem}")
    print("verify OK" if result.ok else "verify FAILED")
    return 0 if result.ok else 1


def _load(path: Path) -> EngineConfig | None:
    """The validated config at ``path``, or None after printing why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"matchctl: cannot read config {path}: {exc}", file=sys.stderr)
        return None
    try:
        return parse_config(text)
    except ConfigError as exc:
        print(f"matchctl: {path}: {exc}", file=sys.stderr)
        return None


def format_markets(config: EngineConfig) -> str:
    """A plain-text table of ``config``'s markets, one per line after a header."""
    rows = [MARKET_COLUMNS]
    rows.extend(
        (
            market.name,
            market.stock.name,
            market.money.name,
            str(market.stock_prec),
            str(market.money_prec),
            str(market.fee_prec),
            format_units(market.min_amount, market.stock_prec),
        )
        for market in config.markets
    )
    widths = [max(len(row[column]) for row in rows) for column in range(len(MARKET_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


if __name__ == "__main__":
    raise SystemExit(main())
