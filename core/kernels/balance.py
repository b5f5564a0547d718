"""Accounts and balance.update: a user's account and available balance, a new
account, one balance.update."""

from __future__ import annotations

import numpy as np

from core.kernels import events as evw
from core.kernels import hashmap
from core.kernels.jit import inline, kernel
from core.kernels.layout import A_BALANCES, A_KEYS, A_USERS, A_VALS, AVAILABLE, FROZEN, NIL
from core.schema import (
    COUNTER_ACCOUNTS,
    COUNTER_KEYS,
    COUNTER_SEQ,
    MAX_SUPPLY_UNITS,
    Result,
)

OK = int(Result.OK)
REPEAT_UPDATE = int(Result.REPEAT_UPDATE)
BALANCE_NOT_ENOUGH = int(Result.BALANCE_NOT_ENOUGH)
SUPPLY_LIMIT = int(Result.SUPPLY_LIMIT)
USER_TABLE_FULL = int(Result.USER_TABLE_FULL)
KEY_TABLE_FULL = int(Result.KEY_TABLE_FULL)


@inline
def account_of(accounts, user: int) -> int:
    """Account index of ``user``, or NIL if the user never held anything."""
    i = hashmap.find(accounts[A_KEYS], user)
    if i < 0:
        return NIL
    return accounts[A_VALS][i]


@inline
def available(accounts, acct: int, asset: int) -> int:
    """Available balance of account ``acct`` in ``asset``; 0 for NIL (no account)."""
    if acct == NIL:
        return 0
    return accounts[A_BALANCES][acct, asset, AVAILABLE]


@kernel
def add_account(accounts, counters, user: int) -> int:
    """Create the account of ``user`` (absent; the caller checked capacity)."""
    acct = counters[COUNTER_ACCOUNTS]
    counters[COUNTER_ACCOUNTS] += 1
    i = hashmap.insert_slot(accounts[A_KEYS], user)
    accounts[A_VALS][i] = acct
    accounts[A_USERS][acct] = user
    return acct


@kernel
def balance_update(
    accounts,
    counters: np.ndarray,
    supply: np.ndarray,
    keys: np.ndarray,
    ev: np.ndarray,
    user: int,
    asset: int,
    k0: int,
    k1: int,
    business_id: int,
    change: int,
    ts: int,
    max_users: int,
    max_keys: int,
) -> tuple[int, int]:
    """Apply one balance.update (user and asset already validated); returns (code, events)."""
    if hashmap.pair_contains(keys, k0, k1):
        return REPEAT_UPDATE, 0
    acct = account_of(accounts, user)
    bal = accounts[A_BALANCES]
    avail = 0 if acct == NIL else bal[acct, asset, AVAILABLE]
    if change < 0 and avail + change < 0:  # (a positive change could overflow here)
        return BALANCE_NOT_ENOUGH, 0
    if change > MAX_SUPPLY_UNITS - supply[asset]:
        return SUPPLY_LIMIT, 0
    if acct == NIL and counters[COUNTER_ACCOUNTS] >= max_users:
        return USER_TABLE_FULL, 0
    if counters[COUNTER_KEYS] >= max_keys:
        return KEY_TABLE_FULL, 0
    counters[COUNTER_SEQ] += 1
    seq = counters[COUNTER_SEQ]
    if acct == NIL:
        acct = add_account(accounts, counters, user)
    hashmap.pair_find_or_insert(keys, k0, k1)
    counters[COUNTER_KEYS] += 1
    bal[acct, asset, AVAILABLE] += change
    supply[asset] += change
    evw.emit_balance(
        ev,
        0,
        seq,
        ts,
        -1,
        user,
        asset,
        evw.UPDATE,
        change,
        0,
        bal[acct, asset, AVAILABLE],
        bal[acct, asset, FROZEN],
        0,
        0,
        business_id,
    )
    return OK, 1
