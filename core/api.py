"""The interface both engines implement (``Engine`` and ``ReferenceEngine``).

See docs/engine.md for the semantics. Every method takes and returns integer units
and indexes (market and asset indexes follow the catalog's order: ``config``, the
genesis catalog plus what ADD_ASSET and ADD_MARKET appended).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from core.config import AssetConfig, EngineConfig, Market, MarketConfig
from core.schema import MarketStatus, UserStatus
from core.views import AssetSummary, MarketSummary, OrderView


class EngineAPI(Protocol):
    """What a matching engine offers; the test suite runs against this."""

    #: The catalog as it is now (genesis plus added), in index order, and the
    #: engine's settings.
    config: EngineConfig

    def execute(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply a batch of ``COMMAND_DTYPE`` records in order.

        Returns ``(results, events)``: one ``RESULT_DTYPE`` per command and the
        ``EVENT_DTYPE`` records of the whole batch (each result's ``event_start`` and
        ``event_count`` index into them). Both are new arrays owned by the caller.
        """
        ...

    def balance_update(
        self, user: int, asset: int, business: bytes, business_id: int, change: int, ts_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """ViaBTC's balance.update in units of the asset; returns ``(results[1], events)``."""
        ...

    def add_asset(self, raw: AssetConfig) -> tuple[np.ndarray, np.ndarray]:
        """ADD_ASSET (docs/engine.md, "Adding assets and markets"): ``raw`` as the
        catalog's next asset, checked by ``core.catalog.new_asset``.

        Returns ``(results[1], events)`` with no events. Accepted: OK, the next
        ``seq``, ``value`` = the new asset's index; ``config`` has it at that index,
        its supply and every balance of it are 0. Refused (INVALID_ARGUMENT,
        ASSET_EXISTS, ASSET_TABLE_FULL): that code, no seq, nothing changed.
        """
        ...

    def add_market(self, raw: MarketConfig) -> tuple[np.ndarray, np.ndarray]:
        """ADD_MARKET (docs/engine.md, "Adding assets and markets"): ``raw``, a whole
        ``[[markets]]`` table, as the catalog's next market, checked by
        ``core.catalog.new_market``.

        Returns ``(results[1], events)`` with no events. Accepted: OK, the next
        ``seq``, ``value`` = the new market's index; ``config`` has it at that index,
        and the market is OPEN with empty books, no last price and the risk limits of
        its table. Refused (INVALID_ARGUMENT, MARKET_EXISTS, UNKNOWN_ASSET,
        MARKET_TABLE_FULL): that code, no seq, nothing changed.
        """
        ...

    def counters(self) -> tuple[int, int, int]:
        """``(seq, last order id, last deal id)``."""
        ...

    def balance(self, user: int, asset: int) -> tuple[int, int]:
        """``(available, frozen)`` in units."""
        ...

    def market_status(self, market: int) -> MarketStatus:
        """The market's status (OPEN for a market that is not configured)."""
        ...

    def current_market(self, market: int) -> Market | None:
        """The configured market with the risk limits it has now (MARKET_LIMIT changes
        them); None for a market that is not configured."""
        ...

    def user_status(self, user: int) -> UserStatus:
        """The user's status (ACTIVE for a user without an account)."""
        ...

    def user_limits(self, user: int, market: int) -> tuple[int, int]:
        """``(max_order_amount lots, max_notional money units)``: the user's own risk
        limits in the market (USER_LIMIT sets them; 0: none); (0, 0) for a user or
        market out of range."""
        ...

    def order(self, market: int, order_id: int) -> OrderView | None:
        """The resting order, or None."""
        ...

    def pending(
        self, user: int, market: int, offset: int, limit: int
    ) -> tuple[int, list[OrderView]]:
        """``(total, orders)``: the user's resting orders, newest first."""
        ...

    def book(self, market: int, side: int, offset: int, limit: int) -> tuple[int, list[OrderView]]:
        """``(total, orders)`` of one side in priority order."""
        ...

    def depth(
        self, market: int, limit: int, interval: int
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(asks, bids)`` as (price ticks, lots), merged to ``interval`` ticks if > 0."""
        ...

    def market_summary(self, market: int) -> MarketSummary:
        """Counts and summed ``left`` of both sides."""
        ...

    def asset_summary(self, asset: int) -> AssetSummary:
        """Totals and counts of non-zero entries over all accounts."""
        ...

    def state_hash(self) -> str:
        """BLAKE2b-128 of the canonical state (core/statehash.py)."""
        ...

    def check_invariants(self) -> list[str]:
        """Violations of the engine's invariants; empty when sound."""
        ...
