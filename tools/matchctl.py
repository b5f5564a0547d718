"""``matchctl``: operator commands.

Offline commands that need only the config file:

* ``matchctl config-check --config PATH``: validate the engine tables of a config;
* ``matchctl markets --config PATH``: list its markets with their precisions;
* ``matchctl verify --config PATH --data-dir DIR``: replay a stopped daemon's log
  both ways (newest snapshot + tail, and the whole log) and compare the state hashes
  (``persistence.verify``); exit 0 when they agree, 1 when not.

Commands that talk to a running daemon over its order-entry socket (the SDK,
``ipc.client``), with ``--endpoint`` (default tcp://127.0.0.1:7316) and ``--timeout``,
and for a daemon with a key registry ``--key NAME.key_secret --server-key server.key``
(docs/protocol.md, "Authentication and limits"); each prints JSON in the wire's
integer units (``tools.matchctl_live``). MARKET is an index or a name:

* ``matchctl status``: every field of the daemon's Status reply (sequence, last
  order and deal ids, wire and schema versions, and whatever else it reports);
* ``matchctl markets``: the daemon's markets (indexes, precisions, limits, status),
  and each market's risk limits as they are now in decimal text (``limits``, e.g.
  ``{"price_step": "0.05", "max_notional": "none", ...}``);
* ``matchctl balance USER`` (or ``balances``): the user's balances, in units;
* ``matchctl book MARKET SIDE [--offset N] [--limit N]`` (SIDE 1/sell or 2/buy) and
  ``matchctl depth MARKET [--limit N]``;
* ``matchctl orders USER MARKET [--offset N] [--limit N]``: pending orders, newest
  first; ``matchctl order MARKET ORDER_ID``: one pending order (exit 1 if none);
* ``matchctl place USER MARKET buy|sell AMOUNT [PRICE] [--market-order]
  [--tif gtc|ioc|fok] [--post-only] [--stp MODE] [--taker-fee RATE] [--maker-fee RATE]
  [--source TEXT] [--client-id N]``: AMOUNT, PRICE and the rates are decimals in the
  market's terms (a market buy's AMOUNT is the money to spend), converted exactly: too
  many decimal places or out of range is a usage error and nothing is sent; prints the
  seq, the order id and the order; with ``--client-id``, placing it again is refused
  (exit 1) with ``repeat order ...: order N``, the order placed the first time;
* ``matchctl cancel USER MARKET ORDER_ID``; ``matchctl cancel-all USER MARKET
  [--side buy|sell]`` (``value`` counts the orders cancelled);
* ``matchctl market halt|resume|delist MARKET``: make a market cancel-only, open it
  again, or delist it and cancel all its orders (admin; docs/operations.md); prints
  ``{"market", "status", "seq"}`` (seq 0: it already was) or, for delist,
  ``{"market", "status", "cancelled"}``; ``matchctl markets`` shows each ``status``;
* ``matchctl market limit MARKET LIMIT VALUE``: set one of a market's risk limits
  (admin; LIMIT ``price_step``, ``amount_step``, ``min_notional``, ``max_notional``,
  ``max_open_orders`` or ``price_band``; VALUE decimal text as in the config, or
  ``none``), converted exactly at the market's precisions (else exit 2, nothing
  sent); prints ``{"market", "limit", "value", "units", "seq"}`` (seq 0: it already
  was);
* ``matchctl user block|unblock USER``: the kill switch (block the user and cancel
  the user's orders in every market; prints ``{"user", "status", "cancelled"}``) and
  its undoing (admin);
* ``matchctl user limit USER MARKET LIMIT VALUE``: set one of a user's own risk
  limits in a market (admin; LIMIT ``max_order_amount`` or ``max_notional``; VALUE
  decimal text as in the config, or ``none``), converted exactly at the market's
  precisions (else exit 2, nothing sent); prints ``{"user", "market", "limit",
  "value", "units", "seq"}`` (seq 0: it already was); ``matchctl user limits USER
  MARKET``: the user's own limits there, in engine units and as text (``limits``);
* ``matchctl asset add NAME PREC [--prec-show N]`` and ``matchctl market add NAME
  STOCK MONEY STOCK_PREC MONEY_PREC [--fee-prec N] [--min-amount D] ...`` (an option
  per optional key of a ``[[markets]]`` table, decimals as the config writes them):
  add an asset or a market to the daemon's catalog (admin; docs/operations.md,
  "Adding assets and markets"; ``tools.matchctl_catalog``); prints ``{"asset" or
  "market", "index", "seq"}``; the daemon's refusal (the name taken, an unknown
  asset, the catalog full, a rule of the config broken) is exit 1 with its message;
* ``matchctl snapshot [now]``: take a snapshot now; prints its sequence and state hash;
* ``matchctl promote``: make a standby the primary of a new epoch (docs/operations.md);
  prints the epoch and the sequence its log ended at;
* ``matchctl metrics [--url URL] [--grep PREFIX]``: the samples of the daemon's
  Prometheus endpoint (default http://127.0.0.1:9316/metrics) as JSON
  ``{"name{labels}": value}``.

Exit codes: 0 done; 1 the daemon answered an error (a JSON object
``{"command", "op", "code", "message"[, "viabtc"]}`` on stderr), did not answer, or
``verify`` failed; 2 a usage error, an unreadable file or an invalid config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import EngineConfig, parse_config
from core.errors import ConfigError
from core.fixed import format_units
from tools import matchctl_live as live

#: Exit code for a usage error, an unreadable file or an invalid config.
EXIT_USAGE = live.EXIT_USAGE
DEFAULT_ENDPOINT = live.DEFAULT_ENDPOINT

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
    text = "validate a config file's assets, markets and limits"
    check = commands.add_parser("config-check", help=text, description=text)
    check.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    text = "list the markets of the running daemon, or of a config file (--config)"
    markets = commands.add_parser("markets", help=text, description=text)
    markets.add_argument(
        "--config", type=Path, metavar="PATH", help="TOML config file: offline, a table"
    )
    live.add_client_options(markets)
    text = "replay a data directory's log two ways and compare the resulting states"
    verify = commands.add_parser("verify", help=text, description=text)
    verify.add_argument(
        "--config", type=Path, required=True, metavar="PATH", help="TOML config file"
    )
    verify.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="the daemon's data_dir"
    )
    live.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``matchctl`` with ``argv`` (default: the process arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "metrics":
        return live.run_metrics(args)
    if args.command in live.CLIENT_COMMANDS or (args.command == "markets" and args.config is None):
        return live.run(args)
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
