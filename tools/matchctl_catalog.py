"""``matchctl asset add`` and ``matchctl market add``: add an asset or a market to a
running daemon's catalog (admin; docs/operations.md, "Adding assets and markets").

``matchctl asset add NAME PREC [--prec-show N]`` and ``matchctl market add NAME STOCK
MONEY STOCK_PREC MONEY_PREC [--fee-prec N] [--min-amount D] ...``, one option per
optional key of a ``[[markets]]`` table (``core.config.MarketConfig``), written as the
config file writes it (decimals as text: ``--min-amount 0.001``). A key left out takes
the config's default, and ``--max-orders`` / ``--max-levels`` the room the engine
reserves for an added market. The daemon checks everything (``core.catalog``): a
refusal is exit 1 with its code and the catalog's message, naming the setting.
Each prints ``{"asset" or "market", "index", "seq"}``: the new index and the
command's sequence number.
"""

from __future__ import annotations

import argparse
from typing import Any, Final, get_type_hints

from core.config import MarketConfig
from ipc.client import Client
from ipc.wire import optional_market_settings

#: The actions of ``asset``.
ASSET_ACTIONS: Final = ("add",)

_INT_HELP: Final = {
    "fee_prec": "places of the fee rates (4)",
    "max_orders": "order pool slots (default: engine.added_market_orders)",
    "max_levels": "price levels per side (default: engine.added_market_levels)",
    "max_open_orders": "resting orders per user (none)",
}


def option_of(setting: str) -> str:
    """The command-line option of a ``[[markets]]`` key: ``min_amount`` -> ``--min-amount``."""
    return "--" + setting.replace("_", "-")


def _is_int(setting: str) -> bool:
    hint = get_type_hints(MarketConfig)[setting]
    return int in getattr(hint, "__args__", (hint,))


def add_asset_arguments(p: argparse.ArgumentParser) -> None:
    """``asset add NAME PREC [--prec-show N]``."""
    p.add_argument("name", metavar="NAME", help="the asset's name (1..15 bytes)")
    p.add_argument("prec", type=int, metavar="PREC", help="its internal scale: 0..18 places")
    p.add_argument(
        "--prec-show", type=int, metavar="N", help="places of shown balances: 0..PREC (PREC)"
    )


def add_market_arguments(p: argparse.ArgumentParser) -> None:
    """``market add NAME STOCK MONEY STOCK_PREC MONEY_PREC`` and an option for each
    optional key of a ``[[markets]]`` table."""
    p.add_argument("name", metavar="NAME", help="the market's name (1..32 bytes)")
    p.add_argument("stock", metavar="STOCK", help="the stock asset's name")
    p.add_argument("money", metavar="MONEY", help="the money asset's name")
    p.add_argument("stock_prec", type=int, metavar="STOCK_PREC", help="places of amounts")
    p.add_argument("money_prec", type=int, metavar="MONEY_PREC", help="places of prices")
    for setting in optional_market_settings():
        if _is_int(setting):
            p.add_argument(
                option_of(setting), dest=setting, type=int, metavar="N", help=_INT_HELP.get(setting)
            )
        else:
            p.add_argument(
                option_of(setting),
                dest=setting,
                metavar="D",
                help="decimal text, as in the config (the config's default)",
            )


def asset_action(client: Client, args: argparse.Namespace) -> object:
    """``asset add``: the new asset's index and the command's seq."""
    done = client.add_asset(args.name, args.prec, args.prec_show)
    return {"asset": args.name, "index": done.value, "seq": done.seq}


def market_add(client: Client, args: argparse.Namespace) -> object:
    """``market add``: the new market's index and the command's seq."""
    settings: dict[str, Any] = {
        setting: getattr(args, setting)
        for setting in optional_market_settings()
        if getattr(args, setting) is not None
    }
    done = client.add_market(
        args.name, args.stock, args.money, args.stock_prec, args.money_prec, **settings
    )
    return {"market": args.name, "index": done.value, "seq": done.seq}
