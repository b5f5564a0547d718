"""Client order ids: the permanent table (user, client id) -> order id (docs/engine.md,
"Client order ids").

A PUT_LIMIT or PUT_MARKET may carry the client's own id for the new order in its
``order_id`` field (1..2**63-1; 0 = none). The account half looks the pair up
(``check``): a pair already recorded is REPEAT_ORDER, with the order it names, so a
client that retries a put whose reply it lost never places the order twice. The pair
is recorded (``record``) when the order is accepted, by whoever gives the order its
id: the in-process engine after the book half, the sequencer at settlement. A refused
put records nothing: its client id stays free.

The table is ``accounts[A_CIDS]``, int64[capacity, 3] rows of (user, client id, order
id), a row of zeros free; open addressing with linear probing, kept at most half full
(capacity is a power of two at least twice ``max_client_ids``). Rows are never
removed. ``counters[COUNTER_CLIENT_IDS]`` counts the rows in use.
"""

from __future__ import annotations

import numpy as np

from core.kernels import hashmap
from core.kernels.codes import OK
from core.kernels.jit import inline, kernel
from core.kernels.layout import A_CIDS
from core.schema import COUNTER_CLIENT_IDS, Result

REPEAT_ORDER = int(Result.REPEAT_ORDER)
CLIENT_ID_TABLE_FULL = int(Result.CLIENT_ID_TABLE_FULL)
_LOW62 = (1 << 62) - 1
CID_USER = 0
CID_ID = 1
CID_ORDER = 2


@inline
def _start(user: int, cid: int, mask: int) -> int:
    """The ideal row of (user, client id): both words mixed, so that one user's
    consecutive ids spread over the table instead of probing one run."""
    return hashmap.slot_of((hashmap.slot_of(user, _LOW62) ^ cid) & _LOW62, mask)


@inline
def find(table: np.ndarray, user: int, cid: int) -> int:
    """The order id recorded for (user, client id ``cid`` > 0), or 0."""
    mask = table.shape[0] - 1
    i = _start(user, cid, mask)
    while True:
        row_cid = table[i, CID_ID]
        if row_cid == 0:
            return 0
        if row_cid == cid and table[i, CID_USER] == user:
            return table[i, CID_ORDER]
        i = (i + 1) & mask


@inline
def check(accounts, counters, cmd, max_cids: int) -> tuple[int, int]:
    """The client id check of a PUT ``cmd`` whose form passed (docs/engine.md common
    check 3): (OK, 0) without a client id or with a new one and room to record it;
    (REPEAT_ORDER, the order it names); (CLIENT_ID_TABLE_FULL, 0) for a new id when
    the table holds ``max_cids``. Changes nothing."""
    cid = cmd["order_id"]
    if cid <= 0:
        return OK, 0
    oid = find(accounts[A_CIDS], cmd["user"], cid)
    if oid != 0:
        return REPEAT_ORDER, oid
    if counters[COUNTER_CLIENT_IDS] >= max_cids:
        return CLIENT_ID_TABLE_FULL, 0
    return OK, 0


@inline
def record(accounts, counters, user: int, cid: int, oid: int) -> None:
    """Record that (user, client id ``cid``) names order ``oid``; nothing for cid 0.
    The pair is new: ``check`` passed and the user had nothing in flight since."""
    if cid <= 0:
        return
    table = accounts[A_CIDS]
    mask = table.shape[0] - 1
    i = _start(user, cid, mask)
    while table[i, CID_ID] != 0:
        i = (i + 1) & mask
    table[i, CID_USER] = user
    table[i, CID_ID] = cid
    table[i, CID_ORDER] = oid
    counters[COUNTER_CLIENT_IDS] += 1


@kernel
def record_put(accounts, counters, user: int, cid: int, oid: int) -> None:
    """``record`` as a kernel, for the sequencer's settlement (daemon/sequencing.py)."""
    record(accounts, counters, user, cid, oid)
