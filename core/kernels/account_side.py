"""The account half of the order commands (docs/daemon.md, "Sequencer and pair workers").

The checks of docs/engine.md that come before the book: the form of the command, the
client order id (``client_ids.py``), the market's and the user's status
(``admin.py``), the market's limits and risk limits, the user's funds and the minimum
amount. Each returns OK or the refusal and changes nothing; the book half
(``book_side.py``) follows when it is OK. CANCEL's account half is
``checks.check_target``.
"""

from __future__ import annotations

from core.kernels import client_ids
from core.kernels.admin import check_status
from core.kernels.arith import mul3_le, mul_le
from core.kernels.balance import account_of, available
from core.kernels.checks import check_lots, check_notional, check_order_common, check_target
from core.kernels.codes import (
    AMOUNT_TOO_SMALL,
    ASK,
    BALANCE_NOT_ENOUGH,
    BID,
    CANCEL,
    CANCEL_ALL,
    CANCEL_MARKET,
    FEE_ACCOUNT_CANNOT_TRADE,
    INVALID_ARGUMENT,
    OK,
    PUT_LIMIT,
    PUT_MARKET,
    QUOTE,
    REPLACE,
    UNKNOWN_MARKET,
)
from core.kernels.jit import inline, kernel
from core.kernels.layout import (
    MP_DEAL_SCALE,
    MP_FEE_DEN,
    MP_MAX_AMOUNT,
    MP_MAX_PRICE,
    MP_MIN_AMOUNT,
    MP_MONEY,
    MP_STOCK,
    MP_STOCK_SCALE,
    NIL,
)
from core.kernels.quote import group_levels, pre_quote
from core.kernels.user_limits import check_order_risk, check_user
from core.schema import MAX_SUPPLY_UNITS, MAX_USER_ID, WORK_COMMAND


@inline
def _funds_for(accounts, mp, m: int, acct: int, side: int, price: int, amount: int) -> bool:
    """True if ``acct`` has the reserve of a limit order of ``amount`` lots at ``price``."""
    if side == ASK:
        return mul_le(amount, mp[m, MP_STOCK_SCALE], available(accounts, acct, mp[m, MP_STOCK]))
    avail = available(accounts, acct, mp[m, MP_MONEY])
    return mul3_le(price, amount, mp[m, MP_DEAL_SCALE], avail)


@inline
def pre_put_limit(accounts, counters, mp, cmd, acct: int) -> int:
    """The checks of PUT_LIMIT before the book that follow the client id check:
    limits, funds, minimum amount."""
    m = cmd["market"]
    amount = cmd["amount"]
    price = cmd["price"]
    den = mp[m, MP_FEE_DEN]
    if amount < 1 or amount > mp[m, MP_MAX_AMOUNT] or price < 1 or price > mp[m, MP_MAX_PRICE]:
        return INVALID_ARGUMENT
    if (
        cmd["taker_rate"] < 0
        or cmd["taker_rate"] >= den
        or cmd["maker_rate"] < 0
        or cmd["maker_rate"] >= den
    ):
        return INVALID_ARGUMENT
    code = check_order_risk(accounts, counters, mp, m, cmd["user"], price, amount)
    if code != OK:
        return code
    if not _funds_for(accounts, mp, m, acct, cmd["side"], price, amount):
        return BALANCE_NOT_ENOUGH
    if amount < mp[m, MP_MIN_AMOUNT]:
        return AMOUNT_TOO_SMALL
    return OK


@inline
def pre_put_market(accounts, counters, mp, cmd, acct: int) -> int:
    """The checks of PUT_MARKET before the book that follow the client id check:
    limits, funds."""
    m = cmd["market"]
    side = cmd["side"]
    amount = cmd["amount"]
    max_amount = mp[m, MP_MAX_AMOUNT] if side == ASK else MAX_SUPPLY_UNITS
    if amount < 1 or amount > max_amount:
        return INVALID_ARGUMENT
    if cmd["taker_rate"] < 0 or cmd["taker_rate"] >= mp[m, MP_FEE_DEN]:
        return INVALID_ARGUMENT
    if side == ASK:  # held to the limits on lots (its value is not known yet)
        code = check_lots(mp, m, amount)
        if code == OK:
            code = check_user(accounts, counters, cmd["user"], m, amount, 0, 0, 0)
        if code != OK:
            return code
        ok = mul_le(amount, mp[m, MP_STOCK_SCALE], available(accounts, acct, mp[m, MP_STOCK]))
    else:  # a market bid's amount is the money it spends: its value
        code = check_notional(mp, m, amount, 1, 1)
        if code == OK:
            code = check_user(accounts, counters, cmd["user"], m, 0, amount, 1, 1)
        if code != OK:
            return code
        ok = amount <= available(accounts, acct, mp[m, MP_MONEY])
    return OK if ok else BALANCE_NOT_ENOUGH


@inline
def pre_cancel_all(cmd, n_markets: int) -> int:
    """The checks of CANCEL_ALL before the book: market, user and side in range."""
    code = check_target(cmd, n_markets)
    if code != OK:
        return code
    if cmd["side"] < 0 or cmd["side"] > BID:
        return INVALID_ARGUMENT
    return OK


@inline
def pre_cancel_market(cmd, n_markets: int) -> int:
    """The checks of CANCEL_MARKET before the book: market and side in range (the
    ``user`` is not used)."""
    m = cmd["market"]
    if m < 0 or m >= n_markets:
        return UNKNOWN_MARKET
    if cmd["side"] < 0 or cmd["side"] > BID:
        return INVALID_ARGUMENT
    return OK


@inline
def pre_replace(accounts, counters, mp, cmd, acct: int, n_markets: int, fee_user: int) -> int:
    """The checks of REPLACE before the book: market, user, the market's and the
    user's status, new price and left, and the risk limits at them."""
    code = check_target(cmd, n_markets)
    if code != OK:
        return code
    if cmd["user"] == fee_user:
        return FEE_ACCOUNT_CANNOT_TRADE
    m = cmd["market"]
    code = check_status(accounts, m, acct)
    if code != OK:
        return code
    price = cmd["price"]
    new_left = cmd["amount"]
    if price < 1 or price > mp[m, MP_MAX_PRICE] or new_left < 1 or new_left > mp[m, MP_MAX_AMOUNT]:
        return INVALID_ARGUMENT
    return check_order_risk(accounts, counters, mp, m, cmd["user"], price, new_left)


@inline
def pre_put(accounts, counters, mp, cmd, acct, n_markets, fee_user, max_cids) -> tuple[int, int]:
    """The checks of a PUT_LIMIT or PUT_MARKET before the book, in docs/engine.md's
    order: the common checks, the client id, the market's and the user's status,
    then the kind's own; (code, the order a repeated client id names, else 0)."""
    is_limit = cmd["kind"] == PUT_LIMIT
    code = check_order_common(cmd, n_markets, fee_user, is_limit)
    if code != OK:
        return code, 0
    code, named = client_ids.check(accounts, counters, cmd, max_cids)
    if code != OK:
        return code, named
    code = check_status(accounts, cmd["market"], acct)
    if code != OK:
        return code, 0
    if is_limit:
        return pre_put_limit(accounts, counters, mp, cmd, acct), 0
    return pre_put_market(accounts, counters, mp, cmd, acct), 0


@inline
def pre_one(
    accounts, counters, mp, cmd, acct: int, n_markets: int, fee_user: int, max_cids: int
) -> tuple[int, int]:
    """The account half of ``cmd``, by its kind: (OK or the refusal, and for
    REPEAT_ORDER the order its client id names, else 0)."""
    kind = cmd["kind"]
    if kind == PUT_LIMIT or kind == PUT_MARKET:  # noqa: SIM109 -- numba
        return pre_put(accounts, counters, mp, cmd, acct, n_markets, fee_user, max_cids)
    if kind == CANCEL:
        return check_target(cmd, n_markets), 0
    if kind == REPLACE:
        return pre_replace(accounts, counters, mp, cmd, acct, n_markets, fee_user), 0
    if kind == CANCEL_ALL:
        return pre_cancel_all(cmd, n_markets), 0
    if kind == CANCEL_MARKET:
        return pre_cancel_market(cmd, n_markets), 0
    return INVALID_ARGUMENT, 0


@inline
def fill_work(accounts, mp, cmd, acct: int, w) -> None:
    """Work record ``w`` for ``cmd``, whose account half passed: the command, the user's
    account, the available balances of the market's assets, ``op`` WORK_COMMAND.
    ``dispatch`` and ``new_id`` are 0, the caller's to set."""
    copy_command(cmd, w)
    m = cmd["market"]
    w["acct"] = acct
    w["avail_stock"] = available(accounts, acct, mp[m, MP_STOCK])
    w["avail_money"] = available(accounts, acct, mp[m, MP_MONEY])
    w["op"] = WORK_COMMAND
    w["dispatch"] = 0
    w["new_id"] = 0


@kernel
def account_batch(
    accounts, counters, mp, cmds, work, codes, n_markets: int, fee_user: int, max_cids: int
) -> None:
    """The account half of every command of ``cmds`` against the state as it is:
    ``codes[i]`` OK or the refusal, and for OK ``work[i]`` (``fill_work``); for
    REPEAT_ORDER, ``work[i]["new_id"]`` is the order the client id names. A QUOTE
    and its k levels are one command: ``codes[i : i + k + 1]`` all get its code, and
    when it is OK ``work[i : i + k + 1]`` the header (``fill_work``) and the levels
    (``fill_level``).

    The commands are checked independently: the caller decides which may be checked
    before the ones ahead of them are settled (docs/daemon.md).
    """
    i = 0
    while i < cmds.shape[0]:
        cmd = cmds[i]
        user = cmd["user"]
        acct = account_of(accounts, user) if 0 <= user <= MAX_USER_ID else NIL
        if cmd["kind"] == QUOTE:
            k = group_levels(cmds, i)
            code = pre_quote(accounts, counters, mp, cmds, i, k, acct, n_markets, fee_user)
            k = max(k, 0)
            codes[i] = code
            if code == OK:
                fill_work(accounts, mp, cmd, acct, work[i])
            for j in range(i + 1, i + k + 1):
                codes[j] = code
                if code == OK:
                    fill_level(cmds[j], work[j])
            i += k + 1
            continue
        code, named = pre_one(accounts, counters, mp, cmd, acct, n_markets, fee_user, max_cids)
        codes[i] = code
        if code == OK:
            fill_work(accounts, mp, cmd, acct, work[i])
        elif code == client_ids.REPEAT_ORDER:
            work[i]["new_id"] = named
        i += 1


@inline
def fill_level(cmd, w) -> None:
    """Work record ``w`` for a QUOTE_LEVEL record of a quote whose account half passed:
    what the book half reads of a level (``side``, ``price``, ``amount``) and what
    names the record; the rest is the book half's scratch. ``dispatch`` is 0."""
    w["ts_ns"] = cmd["ts_ns"]
    w["user"] = cmd["user"]
    w["market"] = cmd["market"]
    w["kind"] = cmd["kind"]
    w["side"] = cmd["side"]
    w["price"] = cmd["price"]
    w["amount"] = cmd["amount"]
    w["op"] = WORK_COMMAND
    w["dispatch"] = 0


@inline
def copy_command(cmd, w) -> None:
    """The COMMAND_DTYPE fields of ``cmd`` into work record ``w``."""
    w["ts_ns"] = cmd["ts_ns"]
    w["user"] = cmd["user"]
    w["price"] = cmd["price"]
    w["amount"] = cmd["amount"]
    w["order_id"] = cmd["order_id"]
    w["taker_rate"] = cmd["taker_rate"]
    w["maker_rate"] = cmd["maker_rate"]
    w["market"] = cmd["market"]
    w["kind"] = cmd["kind"]
    w["side"] = cmd["side"]
    w["tif"] = cmd["tif"]
    w["stp"] = cmd["stp"]
    w["flags"] = cmd["flags"]
    w["source_len"] = cmd["source_len"]
    for k in range(32):
        w["source"][k] = cmd["source"][k]
