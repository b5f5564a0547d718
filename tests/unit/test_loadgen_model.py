"""The traffic models of matchd-loadgen, run through the in-process engine
(core.viabtc.Exchange with etc/matchd.toml): every operation passes ViaBTC's parameter
checks, cancels target live orders, the makers keep the book two-sided, funds add up,
and the stream is a function of the seed and the answers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import count
from pathlib import Path

import pytest

from core.arguments import ArgumentError
from core.config import parse_config
from core.engine import Engine
from core.errors import ConfigError
from core.fixed import is_exact, parse_decimal
from core.schema import OrderFlag, Result
from core.viabtc import Exchange, Reply
from core.viabtc_codec import CommandOutcome, fail
from daemon.viabtc_quote import quote_reply, quote_request
from tools.loadgen_model import (
    MODELS,
    MarketModel,
    Op,
    TrafficGenerator,
    TrafficModel,
    load_model,
    model_to_toml,
    parse_model,
)

CONFIG_TEXT = (Path(__file__).parents[2] / "etc" / "matchd.toml").read_text()
METHODS = {
    "balance.update": "balance_update",
    "order.put_limit": "put_limit",
    "order.put_market": "put_market",
    "order.cancel": "cancel",
}
OPS = 3000


def new_exchange() -> Exchange:
    ticks = count(1_700_000_000_000_000_000, 1_000)
    return Exchange(Engine(parse_config(CONFIG_TEXT)), lambda: next(ticks))


def call(ex: Exchange, op: Op) -> Reply:
    if op.method == "order.quote":
        return quote(ex, op)
    reply: Reply = getattr(ex, METHODS[op.method])(*op.params)
    return reply


def quote(ex: Exchange, op: Op) -> Reply:
    """order.quote as the HTTP gateway runs it (daemon/viabtc_quote.py), on the
    exchange's engine."""
    try:
        request = quote_request(ex.codec, list(op.params))
    except ArgumentError as exc:
        return fail("order.quote", Result.INVALID_ARGUMENT, str(exc))
    results, _ = ex.engine.execute(request.records)
    outcomes = [
        CommandOutcome(int(r["code"]), int(r["value"]), None, int(r["order_id"])) for r in results
    ]
    return quote_reply(request.market, request.records, outcomes)


@dataclass
class Run:
    """What one model did on one exchange."""

    ex: Exchange
    ops: list[Op] = field(default_factory=list)
    codes: Counter[tuple[str, int]] = field(default_factory=Counter)
    net_change: dict[str, Decimal] = field(default_factory=dict)  # accepted balance.update
    one_sided: int = 0  # checks where a market had no bid or no ask


def run(gen: TrafficGenerator, n: int = OPS, *, feedback: bool = True) -> Run:
    """Funding, then ``n`` operations, each answered; the book checked every 100."""
    r = Run(new_exchange())
    funding = gen.funding_ops()
    for i in range(len(funding) + n):
        op = funding[i] if i < len(funding) else gen.next_op()
        reply = call(r.ex, op)
        r.ops.append(op)
        # order.quote is matchd's own: its refusals are counted by the engine's code
        # (ViaBTC's generic 1 would hide which), the other methods by ViaBTC's.
        quoted = op.method == "order.quote" and reply.code
        r.codes[(op.method, int(reply.result_code) if quoted else reply.code)] += 1
        if op.method == "balance.update" and reply.ok:
            asset = str(op.params[1])
            r.net_change[asset] = r.net_change.get(asset, Decimal(0)) + Decimal(str(op.params[4]))
        if feedback:
            gen.on_answer(op, reply.result if reply.ok else None)
        if gen.model.makers and i % 100 == 0 and i >= len(funding) + 200:
            summary = r.ex.market_summary(*(m.name for m in gen.model.markets)).result
            r.one_sided += sum(not (s["ask_count"] and s["bid_count"]) for s in summary)
    return r


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_run(request: pytest.FixtureRequest) -> tuple[str, Run]:
    name: str = request.param
    return name, run(TrafficGenerator(MODELS[name], seed=7))


# ------------------------------------------------------------ through the engine


def test_no_operation_is_an_invalid_argument(model_run: tuple[str, Run]) -> None:
    _, r = model_run
    assert not [key for key in r.codes if key[1] in (1, Result.INVALID_ARGUMENT)], r.codes
    assert r.ex.engine.check_invariants() == []


def test_operations_are_exact_at_the_market_precisions(model_run: tuple[str, Run]) -> None:
    _, r = model_run
    markets = {m.name: m for m in MODELS["multi-market"].markets}
    for op in r.ops:
        if op.method == "order.put_market":  # a buy spends money, also cut to stock_prec
            _, market, side, amount, *_ = op.params
            assert side in (1, 2)
            assert is_exact(parse_decimal(str(amount)), markets[str(market)].stock_prec)
        if op.method != "order.put_limit":
            continue
        _, market, side, amount, price, *_ = op.params
        m = markets[str(market)]
        assert side in (1, 2)
        assert is_exact(parse_decimal(str(amount)), m.stock_prec)
        assert is_exact(parse_decimal(str(price)), m.money_prec)
        assert parse_decimal(str(amount)) >= parse_decimal(m.min_amount)
        assert "e" not in f"{amount}{price}".lower()


def test_funds_are_conserved(model_run: tuple[str, Run]) -> None:
    """Per asset, all balances (fees included) add up to the accepted changes."""
    _, r = model_run
    totals = {a["name"]: Decimal(a["total_balance"]) for a in r.ex.asset_summary().result}
    assert totals == {asset: r.net_change.get(asset, Decimal(0)) for asset in totals}


def test_orders_mostly_succeed_and_cancels_find_live_orders(model_run: tuple[str, Run]) -> None:
    name, r = model_run
    for method in ("order.put_limit", "order.cancel"):  # fills seen in answers: ids are live
        sent = sum(n for (m, _), n in r.codes.items() if m == method)
        if sent:
            assert r.codes[(method, 0)] / sent >= 0.99, (name, r.codes)
    assert r.codes[("balance.update", 11)] <= r.codes[("balance.update", 0)] // 50


def test_makers_keep_the_book_two_sided(model_run: tuple[str, Run]) -> None:
    name, r = model_run
    assert r.one_sided == 0
    if MODELS[name].makers:
        summary = r.ex.market_summary(*(m.name for m in MODELS[name].markets)).result
        assert all(s["ask_count"] and s["bid_count"] for s in summary), summary


def test_business_ids_are_unique(model_run: tuple[str, Run]) -> None:
    _, r = model_run
    ids = [op.params[3] for op in r.ops if op.method == "balance.update"]
    assert len(set(ids)) == len(ids)
    assert Counter(op.params[2] for op in r.ops if op.method == "balance.update").keys() <= {
        "fund",
        "deposit",
        "withdraw",
    }


def test_mm_takers_mixes_every_kind() -> None:
    r = run(TrafficGenerator(MODELS["mm-takers"], seed=3), 2000)
    methods = Counter(op.method for op in r.ops)
    assert {"order.put_limit", "order.put_market", "order.cancel"} <= methods.keys()
    changes = [str(op.params[4]) for op in r.ops if op.params[2] == "withdraw"]
    assert changes
    assert all(c.startswith("-") for c in changes)
    assert r.codes[("order.put_market", 0)] > 0
    prices = {op.params[4] for op in r.ops if op.method == "order.put_limit"}
    assert len(prices) > 10  # the mid moved and the makers followed


def test_mass_quotes_set_the_ladder_in_one_call() -> None:
    r = run(TrafficGenerator(MODELS["mass-quotes"], seed=3), 2000)
    methods = Counter(op.method for op in r.ops)
    assert methods["order.quote"] > 500
    # A taker's limit order left resting inside the next ladder refuses it (the quote
    # would take): a market's answer, and the only one.
    refused = r.codes[("order.quote", Result.POST_ONLY_WOULD_TAKE)]
    assert r.codes[("order.quote", 0)] + refused == methods["order.quote"], r.codes
    assert r.codes[("order.quote", 0)] / methods["order.quote"] >= 0.9, r.codes
    bids, asks = next(op.params[2:4] for op in r.ops if op.method == "order.quote")
    assert len(bids) == len(asks) == MODELS["mass-quotes"].levels
    # Takers fill the quotes: the makers' ladders are met like any orders.
    assert r.codes[("order.put_market", 0)] > 0
    assert any(o.flags & OrderFlag.QUOTE for o in r.ex.engine.book(0, 1, 0, 1000)[1])


def test_a_mass_quote_ladder_is_refused_beyond_32_levels() -> None:
    with pytest.raises(ValueError, match="at most 32"):
        TrafficModel(mass_quotes=True, levels=33)


def test_without_answers_the_ops_stay_valid() -> None:
    """Answers not (yet) back: no cancel is invented, nothing is an invalid argument."""
    for name in sorted(MODELS):
        r = run(TrafficGenerator(MODELS[name], seed=5), 1000, feedback=False)
        invalid = [key for key in r.codes if key[1] in (1, Result.INVALID_ARGUMENT)]
        assert not invalid, (name, r.codes)
        assert not any(op.method == "order.cancel" for op in r.ops)
        assert r.ex.engine.check_invariants() == []


# ------------------------------------------------------------ determinism


def test_same_seed_and_answers_give_the_same_ops() -> None:
    model = MODELS["multi-market"]
    first = run(TrafficGenerator(model, seed=11), 1500).ops
    assert run(TrafficGenerator(model, seed=11), 1500).ops == first
    assert run(TrafficGenerator(model, seed=12), 1500).ops != first


def test_same_seed_without_answers_gives_the_same_ops() -> None:
    def ops(seed: int) -> list[Op]:
        gen = TrafficGenerator(MODELS["mm-takers"], seed=seed, business_id_start=1000)
        return [gen.next_op() for _ in range(500)]

    assert ops(1) == ops(1)
    assert ops(1) != ops(2)
    first_update = next(op for op in ops(1) if op.method == "balance.update")
    assert int(first_update.params[3]) >= 1000  # type: ignore[call-overload]


def test_users_start_at_first_user() -> None:
    gen = TrafficGenerator(TrafficModel(first_user=500, makers=2, takers=3), seed=1)
    assert gen.users == range(500, 505)
    assert {op.params[0] for op in gen.funding_ops()} == set(range(500, 505))
    assert {op.params[0] for op in (gen.next_op() for _ in range(300))} <= set(range(500, 505))


# ------------------------------------------------------------ TOML


@pytest.mark.parametrize("name", sorted(MODELS))
def test_toml_round_trip(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(model_to_toml(MODELS[name]))
    assert load_model(str(path)) == MODELS[name]
    assert load_model(name) is MODELS[name]


def test_a_partial_toml_takes_the_defaults() -> None:
    model = parse_model('makers = 2\n[[markets]]\nname = "ETH_USDT"\nstock = "ETH"\n')
    assert model.makers == 2
    assert model.takers == TrafficModel().takers
    assert model.markets == (MarketModel(name="ETH_USDT", stock="ETH"),)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus = 1", "'bogus'"),
        ('[[markets]]\n[[markets]]\nname = "X"\nbogus = 1', "'markets[1].bogus'"),
        ("makers = -1", "makers = -1"),
        ('makers = "4"', "makers:"),
        ("takers = true", "takers:"),
        ('[[markets]]\nmin_amount = "0.0000001"', "markets[0]: min_amount"),
        ('[[markets]]\nstart_price = "abc"', "markets[0]: start_price"),
        ("[[markets]]\nstock_prec = 19", "markets[0]: stock_prec"),
        ('[[markets]]\nstart_price = "0.5"', "markets[0].start_price"),
        ("makers = 0", "maker_weight"),
        ('taker_fee = "1"', "taker_fee"),
        ("fund_lots = 10", "fund_lots"),
        ("markets = []", "markets"),
        ("makers = ", "not valid TOML"),
    ],
)
def test_bad_toml_is_refused_naming_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=r"^model\.toml: ") as info:
        parse_model(text, "model.toml")
    assert named in str(info.value)


def test_load_model_refuses_an_unknown_name() -> None:
    with pytest.raises(ConfigError, match="no traffic model 'nope'"):
        load_model("nope")


def test_direct_construction_checks_too() -> None:
    with pytest.raises(ValueError, match="band_pct = 0"):
        TrafficModel(band_pct=0)
    with pytest.raises(ValueError, match="source"):
        TrafficModel(source="x" * 31)
