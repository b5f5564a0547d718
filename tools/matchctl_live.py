"""The ``matchctl`` commands that talk to a running daemon (``tools.matchctl`` parses).

Every command but ``metrics`` goes through the client SDK (``ipc.client.Client``)
over the order-entry socket, prints its result as JSON on stdout, in the integer
units the wire carries (docs/protocol.md), and exits:

* 0: done;
* 1: the daemon answered an error: one JSON object on stderr,
  ``{"command", "op", "code", "message"}`` (and ``viabtc`` when the daemon gave it);
  or it did not answer in time: ``matchctl: COMMAND: why`` on stderr;
* 2: a usage error, found before anything was sent: ``matchctl: COMMAND: why``.

``place`` takes its AMOUNT, PRICE and fee rates as decimal strings in the market's
terms and converts them exactly, with the precisions of the daemon's own market list:
a value with more decimal places than the market allows, or out of its range, is
refused (exit 2) and no order is sent. No float ever touches them. So do ``market
limit`` and ``user limit`` their VALUE (``ipc.market_limits``), and ``markets`` and
``user limits`` show the risk limits as that text too (``limits``), beside the
integer fields.

``metrics`` reads the daemon's Prometheus endpoint over HTTP and prints its samples.
"""

from __future__ import annotations

import argparse
import http.client
import math
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from core.errors import ParseError
from core.fixed import format_units, is_exact, parse_decimal, to_units
from core.schema import (
    INT64_MAX,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    SOURCE_LENGTH,
    OrderFlag,
    Result,
    Side,
    StpMode,
    TimeInForce,
)
from core.viabtc import MAX_QUERY_LIMIT
from ipc.client import ApiError, Client, RequestRefused, RequestTimeout
from ipc.client_common import CurveKeys, unwrap
from ipc.market_limits import (
    LIMIT_NAMES,
    USER_LIMIT_NAMES,
    check_notionals,
    limit_text,
    limit_texts,
    limit_value,
)
from ipc.wire import AssetInfo, AssetList, MarketInfo
from tools import matchctl_catalog as catalog

EXIT_OK: Final = 0
#: The daemon answered an error, or did not answer.
EXIT_ERROR: Final = 1
#: A usage error: nothing was sent.
EXIT_USAGE: Final = 2

DEFAULT_ENDPOINT: Final = "tcp://127.0.0.1:7316"
DEFAULT_METRICS_URL: Final = "http://127.0.0.1:9316/metrics"
#: The most bytes of metrics text read (a real endpoint sends a few kilobytes).
MAX_METRICS_BYTES: Final = 16 * 2**20
_MAX_MARKET_INDEX: Final = 2**15 - 1

SIDES: Final = {"sell": Side.ASK, "buy": Side.BID}
TIFS: Final = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
STPS: Final = {
    "none": StpMode.NONE,
    "cancel-taker": StpMode.CANCEL_TAKER,
    "cancel-maker": StpMode.CANCEL_MAKER,
    "cancel-both": StpMode.CANCEL_BOTH,
}

#: The client commands: name -> help text.
CLIENT_COMMANDS: Final = {
    "status": "the running daemon's sequence, counters and versions",
    "balance": "a user's balances (units)",
    "book": "one side of a market's book",
    "depth": "a market's depth",
    "snapshot": "take a snapshot now",
    "promote": "make a standby the primary of a new epoch (docs/operations.md)",
    "orders": "a user's pending orders on a market, newest first",
    "order": "one pending order",
    "place": "place a limit or market order (decimal amount and price)",
    "cancel": "cancel one order",
    "cancel-all": "cancel a user's orders on a market (one side or both)",
    "market": "halt, resume or delist a market, set a risk limit, or add a market (admin; "
    "docs/operations.md)",
    "asset": "add an asset (admin; docs/operations.md)",
    "user": "block a user (the kill switch: cancels the user's orders) or unblock, or set or "
    "show the user's own risk limits in a market (admin)",
}
#: The actions of ``market``, ``user`` and ``asset``.
MARKET_ACTIONS: Final = ("halt", "resume", "delist", "limit", "add")
USER_ACTIONS: Final = ("block", "unblock", "limit", "limits")
ASSET_ACTIONS: Final = catalog.ASSET_ACTIONS
_MARKET_HELP: Final = {
    "halt": "make a market cancel-only",
    "resume": "open a halted or delisted market again",
    "delist": "delist a market and cancel all its orders",
    "limit": "set one of a market's risk limits",
    "add": "add a market to the catalog",
}


class UsageError(Exception):
    """A value the command refuses before sending anything (exit 2)."""


class Failure(Exception):
    """The daemon answered an error (exit 1): ``op`` failed with ``code``."""

    def __init__(self, op: str, code: int, message: str, viabtc: int | None = None) -> None:
        super().__init__(f"{op}: {code} {message}")
        self.op = op
        self.code = code
        self.message = message
        self.viabtc = viabtc


# --------------------------------------------------------------------------- parser


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return value

    return parse


def seconds(text: str) -> float:
    """A timeout argument: a number of seconds in (0, 3600]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 3600] seconds")
    return value


def market_ref(text: str) -> int | str:
    """A market argument: its index (digits) or its name."""
    if re.fullmatch(r"[0-9]{1,6}", text):
        return _bounded(0, _MAX_MARKET_INDEX)(text)
    if not text or len(text) > 64:
        raise argparse.ArgumentTypeError(f"not a market index or name: {text!r}")
    return text


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--endpoint``, ``--timeout`` and the CURVE keys, as every client command has
    them."""
    parser.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help=f"ZeroMQ endpoint ({DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--timeout", type=seconds, default=10.0, help="seconds (10)")
    parser.add_argument(
        "--key",
        type=Path,
        metavar="PATH",
        help="for a daemon with a key registry: this client's NAME.key_secret file",
    )
    parser.add_argument(
        "--server-key",
        type=Path,
        metavar="PATH",
        help="the daemon's public key file (server.key), with --key",
    )


def _curve(args: argparse.Namespace) -> CurveKeys | None:
    """The CURVE keys of ``--key`` and ``--server-key``, or None without them."""
    if args.key is None and args.server_key is None:
        return None
    if args.key is None or args.server_key is None:
        raise UsageError("--key and --server-key go together")
    try:
        return CurveKeys.from_files(args.key, args.server_key)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot use the keys: {exc}") from exc


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the live commands to ``matchctl``'s sub-parsers."""
    user = _bounded(0, MAX_USER_ID)
    order_id = _bounded(1, 2**63 - 1)
    limit = _bounded(0, MAX_QUERY_LIMIT)
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, text in CLIENT_COMMANDS.items():
        if name == "market":
            _add_market_parser(commands, text)
            continue
        aliases = ["balances"] if name == "balance" else []
        parsers[name] = p = commands.add_parser(name, help=text, description=text, aliases=aliases)
        p.set_defaults(command=name)
        add_client_options(p)
        if name in ("user", "asset"):
            actions = USER_ACTIONS if name == "user" else ASSET_ACTIONS
            p.add_argument("action", choices=actions, metavar="|".join(actions))
        if name in ("balance", "orders", "place", "cancel", "cancel-all", "user"):
            p.add_argument("user", type=user, metavar="USER", help="user id")
        if name not in ("status", "snapshot", "promote", "balance", "user", "asset"):
            p.add_argument("market", type=market_ref, metavar="MARKET", help="index or name")
        if name in ("order", "cancel"):
            p.add_argument("order_id", type=order_id, metavar="ORDER_ID")
        if name in ("book", "depth", "orders"):
            p.add_argument("--limit", type=limit, default=20, help="0..101 (20)")
        if name in ("book", "orders"):
            p.add_argument("--offset", type=_bounded(0, 2**31), default=0)
    _add_user_limit_options(parsers["user"])
    catalog.add_asset_arguments(parsers["asset"])
    parsers["book"].add_argument(
        "side", choices=("1", "2", "sell", "buy"), metavar="SIDE", help="1/sell asks, 2/buy bids"
    )
    parsers["snapshot"].add_argument("when", nargs="?", choices=("now",), help="(optional)")
    parsers["cancel-all"].add_argument("--side", choices=tuple(SIDES), help="default: both")
    _add_place_options(parsers["place"])
    text = "the daemon's Prometheus metrics, as JSON"
    metrics = commands.add_parser("metrics", help=text, description=text)
    metrics.add_argument("--url", default=DEFAULT_METRICS_URL, help=DEFAULT_METRICS_URL)
    metrics.add_argument("--grep", metavar="PREFIX", default="", help="only names with it")
    metrics.add_argument("--timeout", type=seconds, default=10.0, help="seconds (10)")


def _add_market_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], text: str
) -> None:
    """``market ACTION ...``: an action each (``add`` takes a market's table, the
    others an existing MARKET, and ``limit`` LIMIT and VALUE)."""
    market = commands.add_parser("market", help=text, description=text)
    market.set_defaults(command="market")
    actions = market.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in MARKET_ACTIONS:
        help_text = _MARKET_HELP[action]
        p = actions.add_parser(action, help=help_text, description=help_text)
        add_client_options(p)
        if action == "add":
            catalog.add_market_arguments(p)
            continue
        p.add_argument("market", type=market_ref, metavar="MARKET", help="index or name")
        p.add_argument(
            "limit", nargs="?", choices=LIMIT_NAMES, metavar="LIMIT", help="limit: which one"
        )
        p.add_argument(
            "value",
            nargs="?",
            metavar="VALUE",
            help="limit: decimal text as in the config (a price, an amount, money, a whole "
            "number or a fraction), or none",
        )


def _add_user_limit_options(p: argparse.ArgumentParser) -> None:
    """``user limit USER MARKET LIMIT VALUE`` and ``user limits USER MARKET``."""
    p.add_argument(
        "market", nargs="?", type=market_ref, metavar="MARKET", help="limit(s): index or name"
    )
    p.add_argument(
        "limit",
        nargs="?",
        choices=USER_LIMIT_NAMES,
        metavar="LIMIT",
        help=f"limit: which one ({', '.join(USER_LIMIT_NAMES)})",
    )
    p.add_argument(
        "value",
        nargs="?",
        metavar="VALUE",
        help="limit: decimal text as in the config (an amount, or money), or none",
    )


def _add_place_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("side", choices=tuple(SIDES), metavar="SIDE", help="buy or sell")
    p.add_argument("amount", metavar="AMOUNT", help="decimal stock (market buy: money to spend)")
    p.add_argument("price", nargs="?", metavar="PRICE", help="decimal money per stock (limit)")
    p.add_argument("--market-order", action="store_true", help="a market order: no PRICE")
    p.add_argument("--tif", choices=tuple(TIFS), help="time in force (limit orders; gtc)")
    p.add_argument("--post-only", action="store_true", help="refused if it would take")
    p.add_argument("--stp", choices=tuple(STPS), default="none", help="self-trade prevention")
    p.add_argument("--taker-fee", default="0", metavar="RATE", help="decimal, e.g. 0.001 (0)")
    p.add_argument("--maker-fee", metavar="RATE", help="decimal (limit orders; 0)")
    p.add_argument("--source", default="", help=f"tag, at most {SOURCE_LENGTH} bytes")
    p.add_argument(
        "--client-id",
        type=_bounded(1, INT64_MAX),
        default=0,
        metavar="N",
        help="your own id for the order (1..2**63-1): placing it again is refused, naming it",
    )


# --------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    """Run a client command; returns the exit code."""
    command = str(args.command)
    try:
        if command == "place":
            _check_place(args)
        if command == "market":
            _check_market(args)
        if command == "user":
            _check_user(args)
        curve = _curve(args)
        with Client(args.endpoint, timeout_s=args.timeout, curve=curve) as client:
            result = _HANDLERS[command](client, args)
    except UsageError as exc:
        print(f"matchctl: {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        message = f"{exc.message}: order {exc.order_id}" if exc.order_id else exc.message
        return _failed(command, Failure(exc.op, exc.code, message, exc.viabtc))
    except RequestRefused as exc:
        return _failed(command, Failure("(frame)", int(exc.code), exc.message))
    except Failure as exc:
        return _failed(command, exc)
    except RequestTimeout as exc:
        print(f"matchctl: {command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(_json(result))
    return EXIT_OK


def _json(value: object) -> str:
    return msgspec.json.format(msgspec.json.encode(value)).decode()


def _failed(command: str, failure: Failure) -> int:
    body: dict[str, Any] = {
        "command": command,
        "op": failure.op,
        "code": failure.code,
        "message": failure.message,
    }
    if failure.viabtc is not None:
        body["viabtc"] = failure.viabtc
    print(msgspec.json.encode(body).decode(), file=sys.stderr)
    return EXIT_ERROR


def market_info(client: Client, ref: int | str) -> MarketInfo:
    """The daemon's market of index or name ``ref``, or ``Failure`` UNKNOWN_MARKET."""
    markets = client.markets()
    for market in markets:
        if ref in (market.index, market.name):
            return market
    names = ", ".join(f"{m.index} {m.name}" for m in markets) or "none"
    message = f"unknown market {ref!r}; the daemon has: {names}"
    raise Failure("market.list", Result.UNKNOWN_MARKET, message)


def _index(client: Client, ref: int | str) -> int:
    return ref if isinstance(ref, int) else market_info(client, ref).index


def _status(client: Client, args: argparse.Namespace) -> object:
    return client.status()


def _balance(client: Client, args: argparse.Namespace) -> object:
    return client.balance_query(args.user)


def _book(client: Client, args: argparse.Namespace) -> object:
    side = {"1": Side.ASK, "sell": Side.ASK}.get(args.side, Side.BID)
    market = _index(client, args.market)
    return client.book(market, side, offset=args.offset, limit=args.limit)


def _depth(client: Client, args: argparse.Namespace) -> object:
    return client.depth(_index(client, args.market), limit=args.limit)


def _snapshot(client: Client, args: argparse.Namespace) -> object:
    return client.snapshot()


def _promote(client: Client, args: argparse.Namespace) -> object:
    return client.promote()


def _markets(client: Client, args: argparse.Namespace) -> object:
    """The daemon's markets in the wire's integer units, and their risk limits as
    they are now in decimal text (``limits``: what ``market limit`` takes)."""
    precs = _asset_precs(client)
    return [
        {**msgspec.structs.asdict(m), "limits": limit_texts(m, notional_prec=precs[m.money])}
        for m in client.markets()
    ]


def _orders(client: Client, args: argparse.Namespace) -> object:
    market = _index(client, args.market)
    return client.pending(args.user, market, offset=args.offset, limit=args.limit)


def _order(client: Client, args: argparse.Namespace) -> object:
    market = _index(client, args.market)
    order = client.pending_detail(market, args.order_id)
    if order is None:
        message = f"order not found: no pending order {args.order_id} on market {args.market}"
        raise Failure("order.pending_detail", Result.ORDER_NOT_FOUND, message)
    return order


def _cancel(client: Client, args: argparse.Namespace) -> object:
    return client.cancel(args.user, _index(client, args.market), args.order_id)


def _cancel_all(client: Client, args: argparse.Namespace) -> object:
    side = SIDES[args.side] if args.side else 0
    return client.cancel_all(args.user, _index(client, args.market), side)


def _check_market(args: argparse.Namespace) -> None:
    """``market limit`` takes LIMIT and VALUE, halt, resume and delist neither (add
    has arguments of its own)."""
    if args.action == "add":
        return
    given = args.limit is not None or args.value is not None
    if args.action == "limit" and (args.limit is None or args.value is None):
        raise UsageError(f"limit needs LIMIT ({', '.join(LIMIT_NAMES)}) and VALUE")
    if args.action != "limit" and given:
        raise UsageError(f"{args.action} takes only MARKET")


def _market_action(client: Client, args: argparse.Namespace) -> object:
    """halt, resume (one command each; ``seq`` 0: it already was so), delist (the
    status, then the market's orders cancelled; run it again after a failure) or
    limit (one command), or add a market (``tools.matchctl_catalog``)."""
    if args.action == "add":
        return catalog.market_add(client, args)
    market = market_info(client, args.market)
    if args.action == "limit":
        return _market_limit(client, market, args.limit, args.value)
    if args.action == "delist":
        cancelled = client.delist_market(market.index)
        return {"market": market.name, "status": "delisted", "cancelled": cancelled}
    if args.action == "halt":
        done = client.halt_market(market.index)
    else:
        done = client.resume_market(market.index)
    status = "halted" if args.action == "halt" else "open"
    return {"market": market.name, "status": status, "seq": done.seq}


def _market_limit(client: Client, market: MarketInfo, limit: str, text: str) -> object:
    """Set ``market``'s risk limit ``limit`` to decimal ``text`` (or none), converted
    exactly at the market's precisions; ``UsageError`` (nothing sent) if it cannot be.
    Prints the value as the engine now holds it, as text and in engine units."""
    prec = _asset_precs(client)[market.money]
    try:
        value = limit_value(market, limit, text, notional_prec=prec)
        check_notionals(market, limit, value, notional_prec=prec)
    except ParseError as exc:
        raise UsageError(str(exc)) from None
    done = client.set_market_limit(market.index, limit, value)
    shown = limit_text(market, limit, value, notional_prec=prec)
    return {"market": market.name, "limit": limit, "value": shown, "units": value, "seq": done.seq}


def _check_user(args: argparse.Namespace) -> None:
    """``user limit`` takes MARKET, LIMIT and VALUE, ``user limits`` MARKET, the other
    actions none of them."""
    given = [v is not None for v in (args.market, args.limit, args.value)]
    if args.action == "limit" and not all(given):
        names = ", ".join(USER_LIMIT_NAMES)
        raise UsageError(f"limit needs MARKET, LIMIT ({names}) and VALUE")
    if args.action == "limits" and given != [True, False, False]:
        raise UsageError("limits takes USER and MARKET")
    if args.action in ("block", "unblock") and any(given):
        raise UsageError(f"{args.action} takes only USER")


def _user_action(client: Client, args: argparse.Namespace) -> object:
    """block (the kill switch: the status, then the user's orders cancelled in every
    market), unblock, limit (one command) or limits (a query)."""
    if args.action in ("limit", "limits"):
        market = market_info(client, args.market)
        if args.action == "limits":
            return _user_limits(client, args.user, market)
        return _user_limit(client, args.user, market, args.limit, args.value)
    if args.action == "block":
        cancelled = client.block_user(args.user)
        return {"user": args.user, "status": "blocked", "cancelled": cancelled}
    done = client.unblock_user(args.user)
    return {"user": args.user, "status": "active", "seq": done.seq}


def _user_limit(client: Client, user: int, market: MarketInfo, limit: str, text: str) -> object:
    """Set ``user``'s own risk limit ``limit`` in ``market`` to decimal ``text`` (or
    none), converted exactly at the market's precisions; ``UsageError`` (nothing
    sent) if it cannot be. Prints the value as text and in engine units."""
    prec = _asset_precs(client)[market.money]
    try:
        value = limit_value(market, limit, text, notional_prec=prec)
    except ParseError as exc:
        raise UsageError(str(exc)) from None
    done = client.set_user_limit(user, market.index, limit, value)
    shown = limit_text(market, limit, value, notional_prec=prec)
    return {
        "user": user, "market": market.name, "limit": limit, "value": shown, "units": value,
        "seq": done.seq,
    }  # fmt: skip


def _user_limits(client: Client, user: int, market: MarketInfo) -> object:
    """``user``'s own risk limits in ``market``: in engine units, and as text
    (``limits``: what ``user limit`` takes)."""
    prec = _asset_precs(client)[market.money]
    got = client.user_limits(user, market.index)
    units: dict[str, int] = {name: getattr(got, name) for name in USER_LIMIT_NAMES}
    texts = {
        name: limit_text(market, name, value, notional_prec=prec) for name, value in units.items()
    }
    out: dict[str, object] = {"user": user, "market": market.name, **units, "limits": texts}
    return out


# --------------------------------------------------------------------------- place


def _check_place(args: argparse.Namespace) -> None:
    """The checks of ``place`` that need no market: before anything is sent."""
    if args.market_order:
        given = [
            name
            for name, value in (
                ("PRICE", args.price is not None),
                ("--tif", args.tif is not None),
                ("--post-only", args.post_only),
                ("--maker-fee", args.maker_fee is not None),
            )
            if value
        ]
        if given:
            raise UsageError(f"a market order takes no {', '.join(given)}")
    elif args.price is None:
        raise UsageError("a limit order needs a PRICE (or --market-order)")
    if len(args.source.encode()) > SOURCE_LENGTH or "\0" in args.source:
        raise UsageError(f"--source must be at most {SOURCE_LENGTH} bytes of UTF-8, without NUL")


def units_of(text: str, places: int, what: str, low: int, high: int) -> int:
    """Decimal ``text`` as an exact number of units of 10**-places in ``low..high``;
    ``UsageError`` for anything else (no rounding, ever)."""
    try:
        value: Decimal = parse_decimal(text)
    except ParseError as exc:
        raise UsageError(f"{what}: {exc}") from None
    step = format_units(1, places)
    if not is_exact(value, places):
        raise UsageError(f"{what} {text} is not a multiple of {step} ({places} decimal places)")
    units = to_units(value, places)
    if not low <= units <= high:
        span = f"{format_units(low, places)}..{format_units(high, places)}"
        raise UsageError(f"{what} {text} is out of range: {span} in steps of {step}")
    return units


def _asset_precs(client: Client) -> dict[int, int]:
    """Each asset's prec, by index (``asset.list``)."""
    call = AssetList()
    (reply,) = client.call(call)
    assets: list[AssetInfo] = unwrap(call, reply)
    return {a.index: a.prec for a in assets}


def _place(client: Client, args: argparse.Namespace) -> object:
    market = market_info(client, args.market)
    side = SIDES[args.side]
    fee_den = 10**market.fee_prec
    taker = units_of(args.taker_fee, market.fee_prec, "--taker-fee", 0, fee_den - 1)
    stp = STPS[args.stp]
    if args.market_order:
        if side == Side.ASK:
            amount = units_of(args.amount, market.stock_prec, "AMOUNT", 1, market.max_amount)
        else:  # a market buy spends AMOUNT of money, in units of the money asset
            prec = _asset_precs(client)[market.money]
            amount = units_of(args.amount, prec, "AMOUNT (money)", 1, MAX_SUPPLY_UNITS)
        return client.put_market(
            args.user, market.index, side, amount, taker_rate=taker, stp=stp, source=args.source,
            client_id=args.client_id,
        )  # fmt: skip
    amount = units_of(args.amount, market.stock_prec, "AMOUNT", 1, market.max_amount)
    price = units_of(args.price, market.money_prec, "PRICE", 1, market.max_price)
    maker = units_of(args.maker_fee or "0", market.fee_prec, "--maker-fee", 0, fee_den - 1)
    return client.put_limit(
        args.user, market.index, side, amount, price,
        taker_rate=taker, maker_rate=maker, tif=TIFS[args.tif or "gtc"], stp=stp,
        flags=OrderFlag.POST_ONLY if args.post_only else 0, source=args.source,
        client_id=args.client_id,
    )  # fmt: skip


_HANDLERS: Final[dict[str, Callable[[Client, argparse.Namespace], object]]] = {
    "status": _status,
    "balance": _balance,
    "book": _book,
    "depth": _depth,
    "snapshot": _snapshot,
    "promote": _promote,
    "markets": _markets,
    "orders": _orders,
    "order": _order,
    "place": _place,
    "cancel": _cancel,
    "cancel-all": _cancel_all,
    "market": _market_action,
    "user": _user_action,
    "asset": catalog.asset_action,
}


# --------------------------------------------------------------------------- metrics


def run_metrics(args: argparse.Namespace) -> int:
    """``matchctl metrics``: fetch, parse and print; returns the exit code."""
    try:
        text = fetch_metrics(args.url, args.timeout)
        samples = parse_metrics(text, args.grep)
    except UsageError as exc:
        print(f"matchctl: metrics: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"matchctl: metrics: {args.url}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(_json(samples))
    return EXIT_OK


def fetch_metrics(url: str, timeout_s: float) -> str:
    """The text at ``url`` (http or https only); ``OSError`` when it cannot be had."""
    if not re.match(r"https?://", url):
        raise UsageError(f"--url must be an http:// or https:// URL, not {url!r}")
    try:
        # The scheme is checked above: no file:// or other opener.
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310
            body: bytes = reply.read(MAX_METRICS_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"cannot reach it: {exc.reason}") from None
    except TimeoutError:
        raise OSError(f"no answer within {timeout_s:g} s") from None
    except http.client.HTTPException as exc:
        raise OSError(f"not an HTTP answer: {exc!r}") from None
    if len(body) > MAX_METRICS_BYTES:
        raise ValueError(f"more than {MAX_METRICS_BYTES} bytes of metrics")
    return body.decode("utf-8")


def parse_metrics(text: str, prefix: str = "") -> dict[str, int | float | str]:
    """Samples of Prometheus ``text`` whose name starts with ``prefix``, as
    ``{'name{label="value",...}': value}``; integral values as ints, NaN and the
    infinities as strings (JSON has no such numbers). ``ValueError`` if the text is
    not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, int | float | str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(prefix):
                continue
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = _number(sample.value)
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> int | float | str:
    if isinstance(value, int):  # the parser gives ints for some samples
        return value
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value
