"""The inputs of the reference engine (``core.reference``) as plain Python values, and
the checks of their form.

``RefCommand`` is a ``COMMAND_DTYPE`` record as Python ints, ``Outcome`` what a command
comes to (its result code, order id and value); ``fields_ok`` is common check 1 of
docs/engine.md and ``as_int`` reads balance.update's arguments. Decisions on points the
contract leaves open are marked ``# SPEC:``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.schema import (
    COMMAND_DTYPE,
    SOURCE_LENGTH,
    CommandKind,
    OrderFlag,
    Result,
    Side,
    StpMode,
    TimeInForce,
)

SIDES = (Side.ASK, Side.BID)
_TIFS = tuple(int(t) for t in TimeInForce)
_STPS = tuple(int(s) for s in StpMode)
_FLAG_MASK = int(OrderFlag.POST_ONLY)
#: Commands that may not be given by the fee account.
TRADING = (CommandKind.PUT_LIMIT, CommandKind.PUT_MARKET, CommandKind.REPLACE)


@dataclass(frozen=True, slots=True)
class RefCommand:
    """A ``COMMAND_DTYPE`` record as plain Python ints."""

    ts_ns: int
    user: int
    price: int
    amount: int
    order_id: int
    taker_rate: int
    maker_rate: int
    market: int
    kind: int
    side: int
    tif: int
    stp: int
    flags: int
    source_len: int
    source: bytes

    @classmethod
    def of(cls, rec: np.void) -> RefCommand:
        ints = {name: int(rec[name]) for name in COMMAND_DTYPE.names or () if name != "source"}
        return cls(source=bytes(rec["source"]), **ints)

    def used_source(self) -> bytes:
        # SPEC: bytes after source_len are ignored (need not be zero); events and the
        # canonical state carry the used bytes zero padded.
        return self.source[: max(self.source_len, 0)]


@dataclass(frozen=True, slots=True)
class Outcome:
    code: Result
    order_id: int = 0
    value: int = 0


def as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer of any kind (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)


def _source_ok(cmd: RefCommand) -> bool:
    """0 <= source_len <= 30 and the used bytes are UTF-8 without NUL."""
    if not 0 <= cmd.source_len <= SOURCE_LENGTH:
        return False
    used = cmd.used_source()
    if b"\0" in used:
        return False
    try:
        used.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def fields_ok(cmd: RefCommand) -> bool:
    """Common check 1 for the fields the command's kind uses.

    SPEC: each command is validated on the parameters its heading in docs/engine.md
    lists and ignores the other fields of the record: PUT_LIMIT (side, tif, stp,
    flags, source), PUT_MARKET (side, stp, source -- its record's tif, flags, price and
    maker_rate are ignored; the order gets IOC, 0, 0, 0), CANCEL_ALL (side 0..2),
    CANCEL and REPLACE (none beyond market and user). A PUT's ``order_id`` is its
    client order id: 0 (none) or positive.
    """
    kind = cmd.kind
    if kind == CommandKind.PUT_LIMIT:
        return (
            cmd.order_id >= 0
            and cmd.side in SIDES
            and cmd.tif in _TIFS
            and cmd.stp in _STPS
            and cmd.flags >= 0
            and cmd.flags & ~_FLAG_MASK == 0
            and _source_ok(cmd)
        )
    if kind == CommandKind.PUT_MARKET:
        return cmd.order_id >= 0 and cmd.side in SIDES and cmd.stp in _STPS and _source_ok(cmd)
    if kind == CommandKind.CANCEL_ALL:
        return cmd.side in (0, *SIDES)
    return True
