"""One engine from the halves the daemon runs apart (docs/daemon.md, "The server with
pair workers"): the sequencer's accounts and each market's book from its worker."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.config import EngineConfig
from core.engine import BOOK_ARRAYS, Engine, copy_nonzero
from core.kernels import compose as kcompose

_MERGE_PROBLEMS = {
    kcompose.MERGE_BAD_LAYOUT: "the books' arrays or the market's parameters differ",
    kcompose.MERGE_NOT_EMPTY: "the destination's market is not empty",
    kcompose.MERGE_DUPLICATE_ID: "an order id of the market already rests in another market",
}


def compose_engine(
    config: EngineConfig, ledger: Engine, books: Sequence[Engine], owner: Sequence[int]
) -> Engine:
    """One engine of the halves run apart (docs/daemon.md, "Sequencer and pair workers").

    A new heap engine holding copies of ``ledger``'s (the sequencer's) accounts,
    client order ids, counters, supply and update keys, and every market ``m``'s book as
    ``books[owner[m]]`` (its pair worker's) holds it, renames delivered; a book's other
    markets are not read, and nothing given is written. Its state hash is the
    in-process engine's, and it runs on as one. Every engine given is of ``config``;
    ``ValueError`` if ``owner`` does not name a book for every market, or a market
    cannot be merged (``core.kernels.compose.merge_market``).
    """
    if len(owner) != len(config.markets) or not all(0 <= o < len(books) for o in owner):
        raise ValueError(
            f"owner {list(owner)} must name one of the {len(books)} books for each of the "
            f"{len(config.markets)} markets"
        )
    arrays = {}
    for name, src in ledger.state_arrays().items():
        dst = np.zeros(src.shape, dtype=src.dtype)
        if name not in BOOK_ARRAYS or name == "mparams":
            copy_nonzero(dst, src)
        arrays[name] = dst
    engine = Engine.from_arrays(config, arrays)
    engine._init_books()
    into = engine.kernel_state().book
    for m in config.markets:
        w = int(owner[m.index])
        code = kcompose.merge_market(into, books[w].kernel_state().book, m.index)
        if code != kcompose.MERGE_OK:
            problem = _MERGE_PROBLEMS.get(code, str(code))
            raise ValueError(f"market {m.name}: cannot merge its book from book {w}: {problem}")
    return engine
