"""The ledger: the second half of every accepted order command.

The book half (``match.py``, ``settlement.py``) decides and writes the command's
events without touching a balance: each BALANCE event holds the change and the
account index, each DEAL event and its balance legs the mark ``DEAL_MARK``, every
event ``seq`` 0 and account indexes where user ids belong. ``settle`` then, in one
pass over those events:

* gives the command the next sequence number (if it wrote events) and stamps it on
  every event;
* numbers the deals from the deal counter (a leg takes its deal's number);
* applies every BALANCE event's change to the balances and writes the balance after
  it (``left`` available, ``deal_stock`` frozen);
* turns account indexes into user ids (``user``, and a deal's ``maker_user``; a
  MARKET_STATUS or MARKET_LIMIT event names no user, and a USER_LIMIT event names
  its user already).

A MARKET_STATUS, USER_STATUS, MARKET_LIMIT or USER_LIMIT event (``admin.py``,
``limits.py``, ``user_limits.py``) has changed its state already: the ledger only
numbers it.

In one process the two halves run one after the other for every command; in the
daemon the book half runs in the market's pair worker and ``settle`` in the
sequencer, which owns the balances (docs/daemon.md). The events come out the same.
"""

from __future__ import annotations

import numpy as np

from core.kernels import events as evw
from core.kernels.jit import kernel
from core.kernels.layout import A_BALANCES, A_USERS, AVAILABLE, FROZEN
from core.schema import COUNTER_DEAL_ID, COUNTER_SEQ, PROVISIONAL_ID_BASE


@kernel
def settle(accounts, ev: np.ndarray, first: int, ne: int, counters: np.ndarray) -> int:
    """Complete the events ``ev[first:ne]`` of one command; returns its sequence number.

    A command that wrote events changed the state: it takes the next sequence number
    from ``counters``. One without events changed nothing and gets 0.
    """
    if ne <= first:
        return 0
    counters[COUNTER_SEQ] += 1
    seq = counters[COUNTER_SEQ]
    users = accounts[A_USERS]
    bal = accounts[A_BALANCES]
    did = counters[COUNTER_DEAL_ID]
    for i in range(first, ne):
        e = ev[i]
        e["seq"] = seq
        kind = e["kind"]
        if kind == evw.MARKET_STATUS or kind == evw.MARKET_LIMIT or kind == evw.USER_LIMIT:
            continue  # names no user, or its user id
        if kind == evw.BALANCE:
            acct = e["user"]
            asset = e["asset"]
            bal[acct, asset, AVAILABLE] += e["deal_money"]
            bal[acct, asset, FROZEN] += e["deal_fee"]
            e["left"] = bal[acct, asset, AVAILABLE]
            e["deal_stock"] = bal[acct, asset, FROZEN]
            if e["deal_id"] != 0:
                e["deal_id"] = did
        elif kind == evw.DEAL:
            did += 1
            e["deal_id"] = did
            e["maker_user"] = users[e["maker_user"]]
        e["user"] = users[e["user"]]
    counters[COUNTER_DEAL_ID] = did
    return seq


@kernel
def name_orders(ev: np.ndarray, first: int, ne: int, real: np.ndarray, own: int) -> int:
    """Replace provisional order ids in ``ev[first:ne]`` (``order_id``, and a deal's
    ``maker_order``) with real ones: the order resting under ``PROVISIONAL_ID_BASE + d``
    is ``real[d % len(real)]`` (a power of two long; the sequencer keeps an entry until
    no event can name the provisional id any more, docs/daemon.md). Returns how many
    of the ids replaced were not ``own`` (the command's own new order): orders of
    earlier commands that the worker had not renamed yet."""
    mask = real.shape[0] - 1
    others = 0
    for i in range(first, ne):
        e = ev[i]
        oid = e["order_id"]
        if oid >= PROVISIONAL_ID_BASE:
            others += oid != own
            e["order_id"] = real[(oid - PROVISIONAL_ID_BASE) & mask]
        oid = e["maker_order"]
        if oid >= PROVISIONAL_ID_BASE:
            others += oid != own
            e["maker_order"] = real[(oid - PROVISIONAL_ID_BASE) & mask]
    return others
