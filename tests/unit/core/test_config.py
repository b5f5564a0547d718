"""Configuration: typed, strict, and every unrepresentable market refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import parse_config
from core.errors import ConfigError
from core.schema import MAX_SUPPLY_UNITS

ROOT = Path(__file__).resolve().parents[3]

ASSETS = """
[[assets]]
name = "BTC"
prec = 10
[[assets]]
name = "USDT"
prec = 8
"""


def market(**overrides: object) -> str:
    fields: dict[str, object] = {
        "name": "BTC_USDT",
        "stock": "BTC",
        "money": "USDT",
        "stock_prec": 6,
        "money_prec": 2,
        "fee_prec": 4,
        "min_amount": "0.001",
    }
    fields.update(overrides)

    def toml(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')

    lines = [f"{k} = {toml(v)}" for k, v in fields.items() if v is not None]
    return ASSETS + "[[markets]]\n" + "\n".join(lines) + "\n"


def test_default_config_loads() -> None:
    config = parse_config((ROOT / "etc" / "matchd.toml").read_text())
    names = [m.name for m in config.markets]
    assert names == ["BTC_USDT", "ETH_USDT", "ETH_BTC"]
    btc_usdt = config.markets[0]
    assert btc_usdt.stock_scale == 10**4  # BTC prec 10, stock_prec 6
    assert btc_usdt.deal_scale == 1  # USDT prec 8 = money_prec 2 + stock_prec 6
    assert btc_usdt.fee_den == 10**4
    assert btc_usdt.min_amount == 100  # 0.0001 BTC in lots of 1e-6


def test_derived_limits_fit_the_supply_limit() -> None:
    m = parse_config(market()).markets[0]
    assert m.max_amount * m.stock_scale <= MAX_SUPPLY_UNITS
    assert m.max_price * m.deal_scale <= MAX_SUPPLY_UNITS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"money_prec": 4}, "stock_prec \\+ money_prec = 10 but USDT keeps 8"),
        ({"fee_prec": 5}, "stock_prec \\+ fee_prec = 11 but BTC keeps 10"),
        ({"min_amount": "0.0000001"}, "min_amount .* more decimal places than the 6"),
        ({"min_amount": "0"}, "min_amount '0' must be positive"),
        ({"min_amount": "abc"}, "min_amount 'abc'"),
        ({"max_amount": "1e12"}, "max_amount 1e12 is .* beyond the int64 supply limit"),
        ({"max_price": "1e17"}, "max_price 1e17 .* beyond the int64 supply limit"),
        ({"max_amount": "0.0001", "min_amount": "0.001"}, "min_amount 0.001 is above max_amount"),
        ({"stock": "XRP"}, "asset 'XRP' is not defined"),
        ({"money": "BTC"}, "stock and money are the same asset"),
        ({"fee_prec": 10}, "fee_prec = 10 is outside 0..9"),
        ({"max_orders": 0}, "max_orders = 0 is outside"),
        ({"name": "BTC USDT"}, "market name 'BTC USDT'"),
        ({"stock_prec": True}, "stock_prec must be int"),
        ({"tick": 1}, "unknown setting 'tick'"),
    ],
)
def test_unrepresentable_or_malformed_market_is_refused(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(market(**overrides))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[assets]]\nname = 'A'\nprec = 19\n", "prec = 19 is outside 0..18"),
        ("[[assets]]\nname = 'A'\nprec = 8\nprec_show = 9\n", "prec_show = 9 is outside 0..8"),
        ("[[assets]]\nname = 'ABCDEFGHIJKLMNOP'\nprec = 8\n", "longer than 15 bytes"),
        ("[[assets]]\nname = 'A'\nprec = 8\n[[assets]]\nname = 'A'\nprec = 8\n", "defined twice"),
        ("", "no \\[\\[assets\\]\\]"),
        ("[engine]\nmax_users = 0\n" + ASSETS, "engine.max_users = 0"),
        ("[engine]\nfee_user = -1\n" + ASSETS, "fee_user -1 is not a user id"),
        ("not toml = = 1", "not valid TOML"),
        ("assets = 3", "must be an array of tables"),
    ],
)
def test_bad_assets_and_engine_settings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_other_tables_are_left_for_the_daemon() -> None:
    config = parse_config("[http]\nbind = '127.0.0.1:8080'\n" + ASSETS)
    assert [a.name for a in config.assets] == ["BTC", "USDT"]


def test_catalog_room_defaults_to_what_is_configured() -> None:
    config = parse_config(market())
    assert (config.asset_slots, config.market_slots) == (2, 1)
    assert config.slot_capacity(0) == (1_000_000, 65_536)  # the market's own


def test_catalog_room_for_added_assets_and_markets() -> None:
    engine = (
        "[engine]\nmax_assets = 5\nmax_markets = 3\n"
        "added_market_orders = 64\nadded_market_levels = 16\n"
    )
    config = parse_config(engine + market(max_orders=100, max_levels=10))
    assert (config.asset_slots, config.market_slots) == (5, 3)
    assert config.slot_capacity(0) == (100, 10)
    assert config.slot_capacity(1) == config.slot_capacity(2) == (64, 16)
    assert config.genesis() == config


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("max_assets = 1", r"engine.max_assets = 1 is outside 2..1024"),
        ("max_markets = 0", r"engine.max_markets = 0 is outside 1..32767"),
        ("max_assets = 1025", r"engine.max_assets = 1025 is outside 2..1024"),
        ("added_market_orders = 0", r"engine.added_market_orders = 0 is outside"),
        ("added_market_levels = 0", r"engine.added_market_levels = 0 is outside"),
    ],
)
def test_catalog_room_out_of_range_is_refused(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"[engine]\n{setting}\n" + market())
