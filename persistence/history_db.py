"""Connections to the MySQL (MariaDB) history and its schema migrations (docs/history.md).

``connect(config)`` opens a connection (utf8mb4, autocommit off); a server that
cannot be reached or refuses is a ``HistoryUnavailable`` naming the address and the
server's error. ``migrate(config)`` creates the database if it is missing and applies
the migrations of ``persistence.history_schema`` that it has not recorded yet, in
order, under the server-wide lock ``GET_LOCK('matchd_migrate')`` so that two
processes migrating at once take turns. ``schema_version`` and ``database_version``
read what is recorded.

MySQL commits every DDL statement on its own, so a migration can stop half-way (a
crash, a lost connection). Its statements are idempotent (``CREATE TABLE IF NOT
EXISTS``, ``CREATE OR REPLACE VIEW``) and it is recorded only after the last of
them, so the next ``migrate`` completes it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import MySQLdb  # type: ignore[import-untyped]

from core.errors import BrokenError
from persistence.history_config import HistoryConfig
from persistence.history_schema import LATEST_VERSION, MIGRATIONS, MIGRATIONS_TABLE

logger = logging.getLogger(__name__)

#: A ``MySQLdb`` connection (mysqlclient ships no type information).
Connection = Any

#: The server-wide lock ``migrate`` holds, and how long it waits for it.
MIGRATE_LOCK: Final = "matchd_migrate"
MIGRATE_LOCK_TIMEOUT_S: Final = 30

_CREATE_MIGRATIONS_TABLE: Final = f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version INT NOT NULL,
    description VARCHAR(255) NOT NULL,
    applied_at DOUBLE NOT NULL COMMENT 'Unix seconds',
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
_RECORD_MIGRATION: Final = (
    f"INSERT INTO {MIGRATIONS_TABLE} (version, description, applied_at) "  # noqa: S608 - a constant
    "VALUES (%s, %s, %s)"
)
_SELECT_VERSIONS: Final = f"SELECT version FROM {MIGRATIONS_TABLE}"  # noqa: S608 - a constant


class HistoryUnavailable(BrokenError):
    """The history database cannot be used: the server cannot be reached, refuses
    the login or a statement, or holds a schema this matchd does not know. The
    message names the address (never the password); the cause is chained."""


class SchemaTooNew(HistoryUnavailable):
    """The database records a schema version newer than ``LATEST_VERSION``: it was
    migrated by a newer matchd. Nothing was changed."""


def connect(config: HistoryConfig, *, database: bool = True) -> Connection:
    """A new connection to the history server.

    Parameters
    ----------
    config
        Where the server is and how to log in.
    database
        Select ``config.database`` (False: connect without selecting a database).

    Returns
    -------
    MySQLdb.connections.Connection
        Character set utf8mb4, autocommit off, LOAD DATA LOCAL INFILE allowed.

    Raises
    ------
    HistoryUnavailable
        The server cannot be reached within ``config.connect_timeout_s`` or refuses
        the login (or, with ``database``, the database does not exist).
    """
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "user": config.user,
        "password": config.password.reveal(),
        "charset": "utf8mb4",
        "autocommit": False,
        # The drainer loads its rows with LOAD DATA LOCAL INFILE (persistence.drainer).
        "local_infile": 1,
        # The client counts whole seconds.
        "connect_timeout": max(1, math.ceil(config.connect_timeout_s)),
        # A hung server fails the call instead of holding it for ever.
        "read_timeout": max(1, math.ceil(config.io_timeout_s)),
        "write_timeout": max(1, math.ceil(config.io_timeout_s)),
    }
    if database:
        options["database"] = config.database
    try:
        return MySQLdb.connect(**options)
    except MySQLdb.Error as exc:
        where = config.address() if database else f"{config.user}@{config.host}:{config.port}"
        raise HistoryUnavailable(
            f"cannot connect to MySQL at {where}: {server_error(exc)}"
        ) from exc


def server_error(exc: BaseException) -> str:
    """The server's or the client library's message in ``exc``, with its error code."""
    args: tuple[object, ...] = exc.args
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (error {args[0]})"
    return str(exc) or type(exc).__name__


def schema_version(conn: Connection) -> int:
    """The newest migration recorded in the connection's database; 0 when the
    migrations table is absent (nothing applied yet).

    Raises
    ------
    HistoryUnavailable
        The server refused the query or the connection broke.
    """
    try:
        return max(_recorded_versions(conn), default=0)
    except MySQLdb.Error as exc:
        raise HistoryUnavailable(f"cannot read the schema version: {server_error(exc)}") from exc


def database_version(config: HistoryConfig) -> int | None:
    """The schema version of ``config.database``; None when the database does not exist.

    Raises
    ------
    HistoryUnavailable
        The server cannot be reached or refuses.
    """
    conn = connect(config, database=False)
    try:
        if not _database_exists(conn, config.database):
            return None
        conn.select_db(config.database)
        return schema_version(conn)
    except MySQLdb.Error as exc:
        raise HistoryUnavailable(f"{config.address()}: {server_error(exc)}") from exc
    finally:
        conn.close()


def migrate(config: HistoryConfig) -> list[int]:
    """Bring the history database up to ``LATEST_VERSION``.

    Creates the database if it is missing (utf8mb4, binary collation) and the
    migrations table, then applies every migration whose version is not recorded, in
    order, recording each (version, description, time) after its statements. Holds
    ``GET_LOCK('matchd_migrate')`` throughout: a second process waits, then finds
    the work done.

    Parameters
    ----------
    config
        The history server and database.

    Returns
    -------
    list of int
        The versions applied, in order; empty when the database was up to date.

    Raises
    ------
    SchemaTooNew
        The database records a version above ``LATEST_VERSION``; nothing was changed.
    HistoryUnavailable
        The server cannot be reached or refuses a statement, or another process held
        the lock for ``MIGRATE_LOCK_TIMEOUT_S`` seconds. Migrations recorded before
        the failure stay; running ``migrate`` again completes the rest.
    """
    conn = connect(config, database=False)
    try:
        with _migrate_lock(conn, config):
            return _apply_migrations(conn, config)
    except MySQLdb.Error as exc:
        raise HistoryUnavailable(
            f"migrating {config.address()} failed: {server_error(exc)}"
        ) from exc
    finally:
        conn.close()


@contextmanager
def _migrate_lock(conn: Connection, config: HistoryConfig) -> Iterator[None]:
    cursor = conn.cursor()
    cursor.execute("SELECT GET_LOCK(%s, %s)", (MIGRATE_LOCK, MIGRATE_LOCK_TIMEOUT_S))
    (acquired,) = cursor.fetchone()
    if acquired != 1:
        raise HistoryUnavailable(
            f"cannot migrate {config.address()}: another process held the lock "
            f"{MIGRATE_LOCK!r} for {MIGRATE_LOCK_TIMEOUT_S} s; try again when it is done"
        )
    try:
        yield
    finally:
        try:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (MIGRATE_LOCK,))
            cursor.fetchall()
        except MySQLdb.Error:  # the connection broke: the server released the lock
            logger.debug("RELEASE_LOCK failed; the lock ends with the connection")


def _apply_migrations(conn: Connection, config: HistoryConfig) -> list[int]:
    cursor = conn.cursor()
    if not _database_exists(conn, config.database):
        # The name is checked by HistoryConfig: A-Z a-z 0-9 _ only.
        cursor.execute(
            f"CREATE DATABASE IF NOT EXISTS `{config.database}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
        logger.info("created database %s", config.address())
    conn.select_db(config.database)
    conn.commit()  # a fresh snapshot: what an earlier holder of the lock recorded
    recorded = _recorded_versions(conn)
    newest = max(recorded, default=0)
    if newest > LATEST_VERSION:
        raise SchemaTooNew(
            f"the history database {config.address()} is at schema version {newest}, "
            f"newer than this matchd knows ({LATEST_VERSION}): upgrade matchd, or point "
            "[history] at another database; nothing was changed"
        )
    cursor.execute(_CREATE_MIGRATIONS_TABLE)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in recorded:
            continue
        for statement in migration.statements:
            cursor.execute(statement)
        cursor.execute(_RECORD_MIGRATION, (migration.version, migration.description, time.time()))
        conn.commit()
        logger.info(
            "applied migration %d (%s) to %s",
            migration.version,
            migration.description,
            config.address(),
        )
        applied.append(migration.version)
    return applied


def _database_exists(conn: Connection, name: str) -> bool:
    cursor = conn.cursor()
    cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
    return cursor.fetchone() is not None


def _recorded_versions(conn: Connection) -> set[int]:
    """The versions in the migrations table of the selected database (none when the
    table, or the selection, is absent)."""
    cursor = conn.cursor()
    cursor.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
        "AND table_name = %s",
        (MIGRATIONS_TABLE,),
    )
    if cursor.fetchone() is None:
        return set()
    cursor.execute(_SELECT_VERSIONS)
    return {int(version) for (version,) in cursor.fetchall()}
