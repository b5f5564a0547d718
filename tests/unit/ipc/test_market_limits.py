"""A market's risk limits as decimal text and as engine units (ipc/market_limits.py):
the names and ``RiskLimit``s, exact conversion at the market's precisions, "none",
and a precise ``ParseError`` for text that is not exact, negative or out of range
(docs/protocol.md, "Market operations"; docs/operations.md, "Changing risk limits
at run time"); the two a user may have of their own (``user_limit_name``)."""

from __future__ import annotations

import msgspec
import pytest

from core.config import LIMIT_NAMES as CONFIG_LIMIT_NAMES
from core.config import MAX_ORDERS_PER_MARKET
from core.errors import ParseError
from core.schema import MAX_SUPPLY_UNITS, RiskLimit
from ipc import wire
from ipc.market_limits import (
    LIMIT_NAMES,
    NONE_VALUES,
    RISK_LIMITS,
    USER_LIMIT_NAMES,
    check_notionals,
    limit_name,
    limit_text,
    limit_texts,
    limit_value,
    risk_limit,
    user_limit_name,
)
from tests.support.scenario import make_config

# BTC_USDT: stock_prec 6, money_prec 2, USDT prec 8 (deal_scale 1, stock_scale 10**4).
CONFIG = make_config()
BTC_USDT = wire.MarketInfo.from_market(CONFIG.markets[0])
USDT_PREC = CONFIG.markets[0].money.prec
MAX_ORDERS = CONFIG.markets[0].max_orders


def value(limit: str, text: str, market: wire.MarketInfo = BTC_USDT) -> int:
    return limit_value(market, limit, text, notional_prec=USDT_PREC, max_orders=MAX_ORDERS)


def test_the_names_are_the_configs_in_risk_limit_order() -> None:
    assert LIMIT_NAMES == CONFIG_LIMIT_NAMES
    assert [RISK_LIMITS[name] for name in LIMIT_NAMES] == list(RiskLimit)
    assert [int(limit) for limit in RiskLimit] == [1, 2, 3, 4, 5, 6, 7]
    assert LIMIT_NAMES[-1] == "max_order_amount"
    assert NONE_VALUES == {1: 1, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0}
    # what MarketInfo and the config say when a market has none
    plain = wire.MarketInfo.from_market(CONFIG.markets[1])
    assert [getattr(plain, name) for name in LIMIT_NAMES] == list(NONE_VALUES.values())


def test_a_limit_by_name_or_risk_limit() -> None:
    assert [limit_name(limit) for limit in RiskLimit] == list(LIMIT_NAMES)
    assert limit_name(5) == "max_open_orders"
    assert limit_name("price_band") == "price_band"
    assert risk_limit("min_notional") is RiskLimit.MIN_NOTIONAL
    assert risk_limit(RiskLimit.PRICE_STEP) is RiskLimit.PRICE_STEP
    assert limit_name(7) == "max_order_amount"
    assert risk_limit("max_order_amount") is RiskLimit.MAX_ORDER_AMOUNT
    for bad in (0, 8, -1, True, "PRICE_STEP", "step", "", None, 1.0):
        with pytest.raises(ParseError, match="is none of price_step, amount_step, min_notional"):
            limit_name(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limit", "text", "units"),
    [
        ("price_step", "0.05", 5),  # ticks of 0.01
        ("price_step", "5", 500),
        ("price_step", "0.050", 5),  # trailing zeros are exact
        ("price_step", "5e-2", 5),
        ("price_step", "0.01", 1),  # one tick: the same as none
        ("amount_step", "0.001", 1000),  # lots of 0.000001
        ("amount_step", "1", 10**6),
        ("min_notional", "10", 10 * 10**8),  # USDT units (prec 8)
        ("min_notional", "0.00000001", 1),
        ("min_notional", "0", 0),  # 0 is none too
        ("max_notional", "1000.5", 100_050_000_000),
        ("max_open_orders", "7", 7),
        ("max_open_orders", "7.0", 7),
        ("max_open_orders", str(MAX_ORDERS), MAX_ORDERS),
        ("max_open_orders", "0", 0),
        ("price_band", "0.1", 100_000),  # millionths
        ("price_band", "0.000001", 1),
        ("price_band", "0.999999", 999_999),
        ("price_band", "0", 0),
        ("max_order_amount", "0.5", 500_000),  # lots of 0.000001, as amount_step
        ("max_order_amount", "0.000001", 1),
        ("max_order_amount", "2.50", 2_500_000),
        ("max_order_amount", "0", 0),  # 0 is none too
    ],
)
def test_decimal_text_to_engine_units(limit: str, text: str, units: int) -> None:
    assert value(limit, text) == units


@pytest.mark.parametrize("limit", LIMIT_NAMES)
@pytest.mark.parametrize("text", ["none", "off"])
def test_none_is_the_none_value(limit: str, text: str) -> None:
    assert value(limit, text) == NONE_VALUES[RISK_LIMITS[limit]]


def test_the_ranges_reach_the_markets_maxima() -> None:
    max_price, max_amount = BTC_USDT.max_price, BTC_USDT.max_amount
    assert value("price_step", f"{max_price // 100}.{max_price % 100:02d}") == max_price
    assert value("amount_step", f"{max_amount // 10**6}.{max_amount % 10**6:06d}") == max_amount
    most = f"{max_amount // 10**6}.{max_amount % 10**6:06d}"
    assert value("max_order_amount", most) == max_amount
    assert (
        value("max_notional", str(MAX_SUPPLY_UNITS // 10**8)) == MAX_SUPPLY_UNITS // 10**8 * 10**8
    )
    # without the market's max_orders, the engine's hard bound
    assert limit_value(BTC_USDT, "max_open_orders", "5000", notional_prec=8) == 5000
    assert limit_value(
        BTC_USDT, "max_open_orders", str(MAX_ORDERS_PER_MARKET), notional_prec=8
    ) == MAX_ORDERS_PER_MARKET  # fmt: skip


@pytest.mark.parametrize(
    ("limit", "text", "message"),
    [
        ("price_step", "0.001", "price_step '0.001' has more decimal places than the 2 of "
         "market BTC_USDT's prices (money_prec), so it cannot be represented exactly"),
        ("amount_step", "0.0000001", "amount_step '0.0000001' has more decimal places than "
         "the 6 of market BTC_USDT's amounts (stock_prec)"),
        ("min_notional", "0.000000001", "min_notional '0.000000001' has more decimal places "
         "than the 8 of market BTC_USDT's money asset (prec)"),
        ("price_band", "0.0000001", "price_band '0.0000001' has more decimal places than "
         "the 6 of a price band"),
        ("max_open_orders", "2.5", "max_open_orders '2.5' is not a whole number"),
        ("price_step", "-0.05", "price_step '-0.05' is negative"),
        ("max_notional", "-1", "max_notional '-1' is negative"),
        ("max_open_orders", "-1", "max_open_orders '-1' is negative"),
        ("price_step", "0", "price_step '0' is out of range: 0.01..46116860184273879.04, "
         "or none"),
        ("amount_step", "0", "amount_step '0' is out of range: 0.000001.."),
        ("amount_step", "1e20", "amount_step '1e20' is out of range"),
        ("min_notional", "46116860184.27387905", "min_notional '46116860184.27387905' is out "
         "of range: 0..46116860184.27387904, or none"),
        ("max_open_orders", "1001", "max_open_orders '1001' is out of range: 0..1000, or none"),
        ("price_band", "1", "price_band '1' is out of range: 0..0.999999, or none"),
        ("price_band", "1.5", "price_band '1.5' is out of range"),
        ("price_step", "abc", "price_step 'abc': not a decimal number: 'abc' (or none)"),
        ("price_step", "", "price_step '': not a decimal number: '' (or none)"),
        ("price_step", " 1", "not a decimal number"),
        ("price_step", "NaN", "not a decimal number"),
        ("price_step", "None", "not a decimal number"),  # "none" is lower case only
        ("price_band", "1e999", "decimal out of range"),
        ("price_band", "0x1", "not a decimal number"),
        ("max_order_amount", "0.0000001", "max_order_amount '0.0000001' has more decimal "
         "places than the 6 of market BTC_USDT's amounts (stock_prec), so it cannot be "
         "represented exactly"),
        ("max_order_amount", "-0.5", "max_order_amount '-0.5' is negative"),
        ("max_order_amount", "1e20", "max_order_amount '1e20' is out of range: 0.."),
        ("max_order_amount", "lots", "max_order_amount 'lots': not a decimal number"),
    ],
)  # fmt: skip
def test_text_that_cannot_be_a_limit_is_a_precise_error(
    limit: str, text: str, message: str
) -> None:
    with pytest.raises(ParseError) as info:
        value(limit, text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_only_text_is_converted() -> None:
    with pytest.raises(ParseError, match="price_step: expected decimal text or none, got int"):
        value("price_step", 5)  # type: ignore[arg-type]


def test_a_notional_may_not_cross_the_other_one_the_market_has() -> None:
    risky = msgspec.structs.replace(BTC_USDT, min_notional=10 * 10**8, max_notional=1000 * 10**8)
    check_notionals(risky, "min_notional", 1000 * 10**8, notional_prec=8)  # equal: fine
    check_notionals(risky, "max_notional", 10 * 10**8, notional_prec=8)
    check_notionals(risky, "max_notional", 0, notional_prec=8)  # none
    check_notionals(risky, "min_notional", 0, notional_prec=8)
    check_notionals(risky, "price_step", 10**12, notional_prec=8)  # not a notional
    check_notionals(BTC_USDT, "min_notional", 10**15, notional_prec=8)  # no max set
    with pytest.raises(
        ParseError, match=r"min_notional 1000\.5 is above market BTC_USDT's max_notional 1000"
    ):
        check_notionals(risky, RiskLimit.MIN_NOTIONAL, 100_050_000_000, notional_prec=8)
    with pytest.raises(
        ParseError, match=r"max_notional 9\.99 is below market BTC_USDT's min_notional 10"
    ):
        check_notionals(risky, "max_notional", 999_000_000, notional_prec=8)


def test_engine_units_back_to_text() -> None:
    config = make_config(
        btc_usdt='price_step = "0.05"\namount_step = "0.001"\nmin_notional = "10"\n'
        'max_open_orders = 7\nprice_band = "0.1"\nmax_order_amount = "2.5"\n'
    )
    risky = wire.MarketInfo.from_market(config.markets[0])
    assert risky.max_order_amount == 2_500_000
    texts = limit_texts(risky, notional_prec=8)
    assert texts == {
        "price_step": "0.05",
        "amount_step": "0.001",
        "min_notional": "10",
        "max_notional": "none",
        "max_open_orders": "7",
        "price_band": "0.1",
        "max_order_amount": "2.5",
    }
    # and they read back as the same units
    for name, text in texts.items():
        assert value(name, text, risky) == getattr(risky, name)
    assert limit_texts(BTC_USDT, notional_prec=8) == dict.fromkeys(LIMIT_NAMES, "none")
    assert limit_text(BTC_USDT, RiskLimit.MAX_NOTIONAL, 100_050_000_000, notional_prec=8) == (
        "1000.5"
    )
    assert limit_text(BTC_USDT, "price_step", 1, notional_prec=8) == "none"  # one tick


def test_the_limits_a_user_may_have_of_their_own() -> None:
    assert USER_LIMIT_NAMES == ("max_order_amount", "max_notional")
    assert user_limit_name("max_notional") == "max_notional"
    assert user_limit_name(RiskLimit.MAX_ORDER_AMOUNT) == "max_order_amount"
    assert user_limit_name(4) == "max_notional"
    for bad in ("price_step", "min_notional", RiskLimit.PRICE_BAND, 0, 8, True, "", None):
        with pytest.raises(ParseError, match="is none of max_order_amount, max_notional"):
            user_limit_name(bad)  # type: ignore[arg-type]
    # converted as the market's limits of the same names; none is 0 for both
    assert value("max_order_amount", "0.25") == 250_000
    assert value("max_notional", "1000") == 1000 * 10**8
    assert [value(name, "none") for name in USER_LIMIT_NAMES] == [0, 0]
    assert [limit_text(BTC_USDT, name, 0, notional_prec=8) for name in USER_LIMIT_NAMES] == [
        "none", "none",
    ]  # fmt: skip
