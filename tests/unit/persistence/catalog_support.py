"""A journal whose catalog grows at run time (ADD_ASSET, ADD_MARKET), for the tests of
the log, the replay and the history of the catalog commands (not a test module).

The config is the streams' (``tests.support.world``: BTC, ETH, USDT; BTC_USDT and
ETH_USDT) with room for two more assets and two more markets. ``populate`` adds SOL
and SOL_USDT, funds two users with them and trades on SOL_USDT, with refused adds
among them; ``trade`` trades on SOL_USDT again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from core import commands as C
from core.config import AssetConfig, EngineConfig, MarketConfig, parse_config
from core.schema import Result, Side
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.support.world import Limits, stream_config_text

T0_NS = 1_700_000_000_000_000_000
BTC, ETH, USDT = 0, 1, 2
#: The added asset's and market's indexes (the next free ones).
SOL, SOL_USDT = 3, 2
SELLER, BUYER = 1, 2
#: SOL prec 8; SOL_USDT: 10**4 SOL units a lot, 10 USDT units a tick x lot.
SOL_ASSET = AssetConfig(name="SOL", prec=8)
SOL_MARKET = MarketConfig(
    name="SOL_USDT",
    stock="SOL",
    money="USDT",
    stock_prec=4,
    money_prec=3,
    fee_prec=4,
    min_amount="0.001",
    max_orders=64,
    max_levels=16,
    price_step="0.005",
)
#: A second market, added after a restart.
SOL_ETH = MarketConfig(
    name="SOL_ETH", stock="SOL", money="ETH", stock_prec=4, money_prec=4, max_orders=8,
    max_levels=4,
)  # fmt: skip
ROOM = "max_assets = 5\nmax_markets = 4\nadded_market_orders = 64\nadded_market_levels = 16\n"


def catalog_config_text() -> str:
    """The TOML of ``catalog_config``."""
    return stream_config_text(Limits()).replace("[engine]\n", "[engine]\n" + ROOM, 1)


@lru_cache(maxsize=1)
def catalog_config() -> EngineConfig:
    """The streams' config with room for 2 more assets and 2 more markets."""
    return parse_config(catalog_config_text())


def jconfig(data_dir: Path) -> JournalConfig:
    """Small segments, so that the log has several."""
    return JournalConfig(data_dir=data_dir, log=journal_log_config(segment_bytes=16 << 10))


def open_journal(data_dir: Path, config: EngineConfig | None = None) -> Journal:
    """The journal of ``data_dir`` (recovered), under ``catalog_config`` unless given."""
    return Journal.open(config or catalog_config(), jconfig(data_dir))


@dataclass
class Populated:
    """What ``populate`` did: the sequences of its accepted adds, and how many it saw
    refused (each checked not logged)."""

    add_seqs: list[int] = field(default_factory=list)
    refused: int = 0


def ok(out: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The results of an accepted command (all OK)."""
    results, _ = out
    assert (results["code"] == Result.OK).all(), results["code"]
    return results


def refuse(journal: Journal, raw: object, code: Result) -> None:
    """An add that ``journal`` must refuse with ``code``: no seq, nothing logged."""
    before = (journal.writer.last_seq, journal.engine.counters()[0], journal.config)
    results, events = journal.add_catalog(raw, T0_NS)  # type: ignore[arg-type]
    assert (int(results[0]["code"]), int(results[0]["seq"]), events.shape[0]) == (code, 0, 0)
    assert (journal.writer.last_seq, journal.engine.counters()[0], journal.config) == before


def populate(journal: Journal) -> Populated:
    """Deposits, the adds (and refused ones), deposits of SOL, trades on SOL_USDT."""
    done = Populated()
    ok(journal.balance_update(SELLER, USDT, b"deposit", 1, 10**12, T0_NS, b'{"k":1}'))
    for raw, index in ((SOL_ASSET, SOL), (SOL_MARKET, SOL_USDT)):
        results = ok(journal.add_catalog(raw, T0_NS + index))
        assert int(results[0]["value"]) == index
        done.add_seqs.append(int(results[0]["seq"]))
    refusals: tuple[tuple[object, Result], ...] = (
        (SOL_ASSET, Result.ASSET_EXISTS),
        (SOL_MARKET, Result.MARKET_EXISTS),
        (MarketConfig("DOGE_USDT", "DOGE", "USDT", 2, 2), Result.UNKNOWN_ASSET),
        (MarketConfig("BIG", "SOL", "USDT", 4, 3, max_orders=65), Result.INVALID_ARGUMENT),
        (AssetConfig("bad name", 8), Result.INVALID_ARGUMENT),
        ("SOL", Result.INVALID_ARGUMENT),  # not a config table: no record
        (AssetConfig("X", np.int64(8)), Result.INVALID_ARGUMENT),  # type: ignore[arg-type]
    )
    for refused, code in refusals:
        refuse(journal, refused, code)
        done.refused += 1
    ok(journal.balance_update(SELLER, SOL, b"deposit", 2, 10**10, T0_NS, b"{}"))
    ok(journal.balance_update(BUYER, USDT, b"deposit", 3, 10**12, T0_NS, b"{}"))
    trade(journal, T0_NS + 10_000)
    return done


def trade(journal: Journal, ts: int) -> None:
    """SELLER asks 200 lots at 100.000 and BUYER takes 150 of them, then a bid rests."""
    journal.submit(
        C.batch(
            C.put_limit(SELLER, SOL_USDT, Side.ASK, 200, 100_000, 20, 10, ts_ns=ts),
            C.put_limit(BUYER, SOL_USDT, Side.BID, 150, 100_005, 20, 10, ts_ns=ts + 1),
            C.put_limit(BUYER, SOL_USDT, Side.BID, 30, 99_000, 20, 10, ts_ns=ts + 2),
        )
    )
