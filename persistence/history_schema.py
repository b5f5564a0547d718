"""The MySQL (MariaDB) history schema, as numbered migrations (docs/history.md).

ViaBTC keeps its history in 100 hand-made shards of each table, keyed by user id or
order id modulo 100. matchd keeps one table of each with the keys its queries need,
and keeps ViaBTC's column meanings so that ViaBTC's queries map onto them:

* ``order_history``: every finished order, once (ViaBTC's ``order_history_N``, and,
  through the view ``order_detail``, its ``order_detail_N``). Unlike ViaBTC, an order
  cancelled with nothing filled is recorded too, with its ``status``, and ``source``
  survives restarts (it is in the log).
* ``deal_history``: two rows per deal, one for each order, with its role (ViaBTC's
  ``deal_history_N``, and through the view ``user_deal_history`` its
  ``user_deal_history_N``: the same rows carry ``market`` and ``side``).
* ``balance_history``: one row per change of a balance's total (available + frozen):
  balance.update, the legs and fees of trades, and the fee account's income.
  Freezing and unfreezing change no total and write no row, as in ViaBTC.
* ``operation_log``: every log record, raw and as JSON, for audit and to rebuild the
  log if the local disk is lost.
* ``drain_position``: how far each drainer has applied the log, written in the same
  transaction as the rows, so that every record lands exactly once.
* ``catalog_history`` (migration 2): the assets and markets added at run time
  (ADD_ASSET, ADD_MARKET), one row each besides its ``operation_log`` row: a drainer
  that starts again reads the catalog its rows need back from it (the records before
  its position are not read again), a few rows by primary key rather than a scan of
  the whole ``operation_log``.

Money columns are ``DECIMAL(38,18)``: every int64 fixed-point value at any scale the
config allows is exact there (no rounding by MySQL, unlike ViaBTC's fixed scales).
Times are Unix seconds as ``DOUBLE``, as ViaBTC's. Every row carries the log
sequence that produced it (DESIGN.md rule 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...) and the statements that make it."""

    version: int
    description: str
    statements: tuple[str, ...]


_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
_MONEY = "DECIMAL(38,18) NOT NULL"

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "order, deal and balance history, operation log, drain positions",
        (
            f"""CREATE TABLE IF NOT EXISTS order_history (
    id BIGINT NOT NULL COMMENT 'order id',
    seq BIGINT NOT NULL COMMENT 'log sequence of the command that finished it',
    create_time DOUBLE NOT NULL,
    finish_time DOUBLE NOT NULL,
    user_id BIGINT NOT NULL,
    market VARCHAR(30) NOT NULL,
    source VARCHAR(32) NOT NULL,
    t TINYINT NOT NULL COMMENT '1 limit, 2 market',
    side TINYINT NOT NULL COMMENT '1 ask (sell), 2 bid (buy)',
    price {_MONEY},
    amount {_MONEY} COMMENT 'stock; money for a market bid',
    taker_fee {_MONEY} COMMENT 'taker fee rate',
    maker_fee {_MONEY} COMMENT 'maker fee rate',
    deal_stock {_MONEY},
    deal_money {_MONEY},
    deal_fee {_MONEY},
    status TINYINT NOT NULL COMMENT '1 filled, 2 cancelled, 3 expired, 4 self-trade',
    PRIMARY KEY (id),
    KEY user_market_id (user_id, market, id),
    KEY user_id_id (user_id, id)
) {_TABLE_OPTIONS}""",
            "CREATE OR REPLACE VIEW order_detail AS SELECT * FROM order_history",
            f"""CREATE TABLE IF NOT EXISTS deal_history (
    deal_id BIGINT NOT NULL,
    role TINYINT NOT NULL COMMENT '1 maker, 2 taker',
    seq BIGINT NOT NULL,
    time DOUBLE NOT NULL,
    user_id BIGINT NOT NULL,
    market VARCHAR(30) NOT NULL,
    order_id BIGINT NOT NULL,
    deal_order_id BIGINT NOT NULL COMMENT 'the other order',
    side TINYINT NOT NULL COMMENT 'this order''s side',
    price {_MONEY},
    amount {_MONEY} COMMENT 'stock',
    deal {_MONEY} COMMENT 'money',
    fee {_MONEY} COMMENT 'this order''s fee: money for a seller, stock for a buyer',
    deal_fee {_MONEY} COMMENT 'the other order''s fee',
    PRIMARY KEY (deal_id, role),
    KEY order_deal (order_id, deal_id),
    KEY user_market_deal (user_id, market, deal_id),
    KEY user_deal (user_id, deal_id)
) {_TABLE_OPTIONS}""",
            "CREATE OR REPLACE VIEW user_deal_history AS SELECT * FROM deal_history",
            f"""CREATE TABLE IF NOT EXISTS balance_history (
    seq BIGINT NOT NULL,
    idx INT NOT NULL COMMENT 'the change''s place among its record''s events',
    time DOUBLE NOT NULL,
    user_id BIGINT NOT NULL,
    asset VARCHAR(30) NOT NULL,
    business VARCHAR(255) NOT NULL,
    `change` {_MONEY},
    balance {_MONEY} COMMENT 'available + frozen after the change',
    detail TEXT NOT NULL COMMENT 'JSON object',
    PRIMARY KEY (seq, idx),
    KEY user_seq (user_id, seq, idx),
    KEY user_asset_seq (user_id, asset, seq, idx),
    KEY user_asset_business_seq (user_id, asset, business, seq, idx)
) {_TABLE_OPTIONS}""",
            f"""CREATE TABLE IF NOT EXISTS operation_log (
    seq BIGINT NOT NULL,
    time DOUBLE NOT NULL,
    rtype SMALLINT NOT NULL COMMENT 'the log record type',
    method VARCHAR(32) NOT NULL,
    user_id BIGINT NOT NULL,
    detail TEXT NOT NULL COMMENT 'JSON: method and params',
    record LONGBLOB NOT NULL COMMENT 'the log record payload, byte for byte',
    PRIMARY KEY (seq)
) {_TABLE_OPTIONS}""",
            f"""CREATE TABLE IF NOT EXISTS drain_position (
    name VARCHAR(64) NOT NULL,
    seq BIGINT NOT NULL COMMENT 'every record up to this one is applied',
    time DOUBLE NOT NULL COMMENT 'when it was written',
    PRIMARY KEY (name)
) {_TABLE_OPTIONS}""",
        ),
    ),
    Migration(
        2,
        "catalog history: the assets and markets added at run time",
        (
            f"""CREATE TABLE IF NOT EXISTS catalog_history (
    seq BIGINT NOT NULL COMMENT 'log sequence of the ADD_ASSET or ADD_MARKET',
    time DOUBLE NOT NULL,
    kind VARCHAR(8) NOT NULL COMMENT 'asset or market',
    name VARCHAR(32) NOT NULL,
    detail TEXT NOT NULL COMMENT 'JSON: the config table of the command',
    PRIMARY KEY (seq),
    UNIQUE KEY kind_name (kind, name)
) {_TABLE_OPTIONS}""",
        ),
    ),
)

#: The table that records which migrations were applied (created by the runner).
MIGRATIONS_TABLE: Final = "schema_migrations"
LATEST_VERSION: Final = MIGRATIONS[-1].version
