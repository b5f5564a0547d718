"""Hostile queries: indexes out of range, huge pages, huge depth intervals.

The engine starts in the ``steps.held()`` state; a query never raises and never
changes the state. Every test runs on both engines (``engine_cls``,
tests/property/conftest.py).
"""

from __future__ import annotations

import pytest

from core.views import AssetSummary, MarketSummary
from tests.support.engines import EngineClass
from tests.support.steps import held
from tests.support.world import INT64_MAX, INT64_MIN

pytestmark = pytest.mark.kernel

_NO_ASSET = AssetSummary(0, 0, 0, 0, 0)
_NO_MARKET = MarketSummary(0, 0, 0, 0)


def _same_as(*args: object) -> tuple[str, tuple[object, ...]]:
    """Expect the answer the engine gives to ``args`` (a clamped offset or limit)."""
    return ("same as", args)


#: (query, hostile arguments, the answer). docs/engine.md does not define answers to
#: arguments out of range; these are the reference's (core/reference_state.py, "SPEC: queries
#: never raise"): nothing for what does not exist, offsets and limits clamped to 0.
#: In the holding state, market 0 has user 1's ask 20 @ 1005 and user 2's bid 20 @ 995.
QUERY_CASES: list[tuple[str, tuple[object, ...], object]] = [
    *[("balance", args, (0, 0)) for args in ((1, -1), (1, 3), (1, 2**63), (-1, 0), (2**64, 0))],
    *[("asset_summary", (a,), _NO_ASSET) for a in (-1, 3, 2**40)],
    *[("market_summary", (m,), _NO_MARKET) for m in (-1, 2, 2**40)],
    *[("order", (m, 1), None) for m in (-1, 2, 2**40, 1)],  # order 1 rests in market 0
    *[("order", (0, i), None) for i in (0, -1, INT64_MIN, INT64_MAX, 2**64)],
    *[("pending", args, (0, [])) for args in ((1, -1, 0, 10), (1, 2, 0, 10), (-1, 0, 0, 10))],
    ("pending", (2**64, 0, 0, 10), (0, [])),
    ("pending", (1, 0, -5, 10), _same_as(1, 0, 0, 10)),
    ("pending", (1, 0, 0, 2**40), _same_as(1, 0, 0, 10)),
    *[
        ("pending", (1, 0, off, lim), (1, []))
        for off, lim in ((0, -1), (INT64_MAX, 10), (2**64, 10))
    ],
    *[("book", args, (0, [])) for args in ((0, 3, 0, 10), (0, 0, 0, 10), (-1, 1, 0, 10))],
    ("book", (0, 1, -3, 10), _same_as(0, 1, 0, 10)),
    ("book", (0, 1, 0, 2**40), _same_as(0, 1, 0, 10)),
    *[("book", (0, 1, off, lim), (1, [])) for off, lim in ((0, -1), (INT64_MAX, 10))],
    *[("depth", args, ([], [])) for args in ((-1, 10, 0), (2, 10, 0), (0, 0, 0), (0, -1, 0))],
    ("depth", (0, 10, -5), _same_as(0, 10, 0)),
    ("depth", (0, 2**40, 0), _same_as(0, 10, 0)),
    # An ask rounds up to a multiple of the interval, a bid down (docs/engine.md).
    ("depth", (0, 10, INT64_MAX), ([(INT64_MAX, 20)], [(0, 20)])),
]


@pytest.mark.parametrize(
    ("query", "args", "expected"),
    QUERY_CASES,
    ids=[f"{q}{a}" for q, a, _ in QUERY_CASES],
)
def test_hostile_query(
    engine_cls: EngineClass, query: str, args: tuple[object, ...], expected: object
) -> None:
    engine = held(engine_cls)
    before = engine.state_hash()
    answer = getattr(engine, query)(*args)
    if isinstance(expected, tuple) and expected[:1] == ("same as",):
        expected = getattr(engine, query)(*expected[1])
    assert answer == expected
    assert engine.state_hash() == before
