"""The book half's batch loop: what a pair worker runs (docs/daemon.md).

``book_batch`` takes WORK_DTYPE records in dispatch order: commands whose account
checks the sequencer made, renames (the real id of an order that rests under a
provisional id) and changes of a market's risk limits (``limits.py``). It writes one
DONE_DTYPE record per work and the commands' events, which the sequencer completes
with ``ledger.settle``. It reads no balance.
"""

from __future__ import annotations

from core.kernels import book as bk
from core.kernels.book_side import book_one
from core.kernels.bounds import events_bound
from core.kernels.codes import OK, QUOTE
from core.kernels.jit import inline, kernel
from core.kernels.layout import B_MPARAMS, B_ORDERS, NIL
from core.kernels.limits import apply_limit
from core.kernels.quote import book_quote
from core.schema import WORK_LIMIT, WORK_RENAME


@inline
def rename(book, provisional: int, real: int) -> bool:
    """Give the order resting under ``provisional`` its real id; False if it no longer
    rests (it was filled or cancelled before the rename came)."""
    slot = bk.index_find(book, provisional)
    if slot == NIL:
        return False
    bk.index_remove(book, provisional)
    book[B_ORDERS][slot]["id"] = real
    bk.index_put(book, real, slot)
    return True


@kernel
def book_batch(
    book, work, start, done, ev, ne0, n_markets, fee_acct, scratch, max_matches
) -> tuple[int, int]:
    """Run ``work[start:]`` on the book, writing events from ``ev[ne0]`` on, until done
    or the event buffer might overflow; returns (next work index, events in the buffer).

    ``done[i]`` is written for every work run; a rename's has code OK, value 1 if the
    order was renamed and 0 if it no longer rests. A QUOTE's k levels follow it: its
    DONE has the group's events, each level's its order id and action (value) and no
    events; a group that ``work`` does not hold whole is left for the next call.
    """
    ne = ne0
    cap = ev.shape[0]
    i = start
    while i < work.shape[0]:
        w = work[i]
        d = done[i]
        d["dispatch"] = w["dispatch"]
        if w["op"] == WORK_RENAME:
            d["order_id"] = w["new_id"]
            d["value"] = 1 if rename(book, w["order_id"], w["new_id"]) else 0
            d["code"] = OK
            d["event_count"] = 0
            i += 1
            continue
        if w["op"] == WORK_LIMIT:  # the sequencer checked it and wrote the event
            apply_limit(book[B_MPARAMS], w["market"], w["side"], w["amount"])
            d["order_id"] = 0
            d["value"] = 0
            d["code"] = OK
            d["event_count"] = 0
            i += 1
            continue
        if ne + events_bound(book, w["acct"], w, n_markets, cap - ne, max_matches) > cap:
            break
        if w["kind"] == QUOTE:  # the account half passed it: its k levels follow
            k = w["amount"]
            if i + k >= work.shape[0]:
                break  # the rest of the group is not here yet: the caller brings it
            first = ne
            code, value, ne = book_quote(book, ev, ne, work, i, k, done, i)
            d["order_id"] = 0
            d["value"] = value
            d["code"] = code
            d["event_count"] = ne - first
            for j in range(i + 1, i + k + 1):
                done[j]["dispatch"] = work[j]["dispatch"]
                done[j]["code"] = code
                done[j]["event_count"] = 0
            i += k + 1
            continue
        first = ne
        code, oid, value, ne = book_one(book, ev, ne, w, fee_acct, scratch, max_matches)
        d["order_id"] = oid
        d["value"] = value
        d["code"] = code
        d["event_count"] = ne - first
        i += 1
    return i, ne
