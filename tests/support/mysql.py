"""A fresh MariaDB database per test, on the server that ``make test`` starts (or finds).

The server is ``MATCHD_TEST_MYSQL`` (``host:port``, default ``127.0.0.1:3306``), user
``MATCHD_TEST_MYSQL_USER`` (default root) with password
``MATCHD_TEST_MYSQL_PASSWORD`` (default empty). Each database is named
``matchd_test_<pid>_<n>`` and dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import MySQLdb

_COUNTER = itertools.count()


@dataclass(frozen=True)
class TestDatabase:
    """Where a test database lives."""

    __test__ = False  # not a test class, whatever its name

    host: str
    port: int
    user: str
    password: str
    database: str

    def history_toml(self, **settings: object) -> str:
        """A ``[history]`` table naming this database (and ``settings``)."""
        lines = [
            "[history]",
            f'host = "{self.host}"',
            f"port = {self.port}",
            f'user = "{self.user}"',
            f'password = "{self.password}"',
            f'database = "{self.database}"',
            *(f"{k} = {v!r}" for k, v in settings.items()),
        ]
        return "\n" + "\n".join(lines) + "\n"

    def connect(self, **options: Any) -> Any:
        """A new connection to the database (autocommit off; LOAD DATA LOCAL allowed
        unless ``local_infile=0``)."""
        options.setdefault("local_infile", 1)
        return MySQLdb.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            passwd=self.password,
            db=self.database,
            charset="utf8mb4",
            **options,
        )


def server_address() -> tuple[str, int, str, str]:
    host, _, port = os.environ.get("MATCHD_TEST_MYSQL", "127.0.0.1:3306").rpartition(":")
    user = os.environ.get("MATCHD_TEST_MYSQL_USER", "root")
    password = os.environ.get("MATCHD_TEST_MYSQL_PASSWORD", "")
    return host or "127.0.0.1", int(port), user, password


@contextmanager
def fresh_database() -> Iterator[TestDatabase]:
    """Create an empty database, yield it, drop it."""
    host, port, user, password = server_address()
    name = f"matchd_test_{os.getpid()}_{next(_COUNTER)}"
    admin = MySQLdb.connect(host=host, port=port, user=user, passwd=password)
    try:
        cursor = admin.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        yield TestDatabase(host, port, user, password, name)
    finally:
        cursor = admin.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def apply_schema(db: TestDatabase) -> None:
    """Create the history schema in ``db`` by running every migration's statements
    (``matchd db migrate`` also records them; the tests of the rows need only the
    tables)."""
    from persistence.history_schema import MIGRATIONS

    conn = db.connect()
    try:
        cursor = conn.cursor()
        for migration in MIGRATIONS:
            for statement in migration.statements:
                cursor.execute(statement)
        conn.commit()
    finally:
        conn.close()


@contextmanager
def schema_database() -> Iterator[TestDatabase]:
    """A fresh database holding the history schema (``apply_schema``); dropped after."""
    with fresh_database() as db:
        apply_schema(db)
        yield db


def query(db: TestDatabase, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Every row ``sql`` selects in ``db``, on a connection of its own."""
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, params or None)
        return list(cursor.fetchall())
    finally:
        conn.close()
