"""Connections and schema migrations of the MySQL history, on the real MariaDB."""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from persistence import history_db
from persistence.history_config import HistoryConfig, Secret
from persistence.history_db import (
    HistoryUnavailable,
    SchemaTooNew,
    connect,
    database_version,
    migrate,
    schema_version,
)
from persistence.history_schema import LATEST_VERSION, MIGRATIONS, MIGRATIONS_TABLE
from tests.support.mysql import TestDatabase as Database
from tests.support.mysql import fresh_database, query

pytestmark = pytest.mark.integration

_CREATES = re.compile(r"CREATE (?:OR REPLACE )?(TABLE|VIEW) (?:IF NOT EXISTS )?`?(\w+)`?")
ALL_VERSIONS = [m.version for m in MIGRATIONS]


def _schema_objects() -> dict[str, str]:
    """Every table and view the migrations create: name -> 'BASE TABLE' or 'VIEW'."""
    objects = {MIGRATIONS_TABLE: "BASE TABLE"}
    for migration in MIGRATIONS:
        for statement in migration.statements:
            found = _CREATES.match(statement.strip())
            assert found is not None, statement
            objects[found.group(2)] = "BASE TABLE" if found.group(1) == "TABLE" else "VIEW"
    return objects


@pytest.fixture
def db() -> Iterator[Database]:
    with fresh_database() as database:
        yield database


def _config(db: Database, **overrides: Any) -> HistoryConfig:
    settings: dict[str, Any] = {
        "host": db.host,
        "port": db.port,
        "user": db.user,
        "password": Secret(db.password),
        "database": db.database,
        "connect_timeout_s": 5.0,
    }
    settings.update(overrides)
    return HistoryConfig(**settings)


def _objects(db: Database) -> dict[str, str]:
    rows = query(
        db,
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = %s",
        db.database,
    )
    return {str(name): str(kind) for name, kind in rows}


def _recorded(db: Database) -> list[tuple[int, str]]:
    rows = query(db, f"SELECT version, description FROM {MIGRATIONS_TABLE} ORDER BY version")  # noqa: S608
    return [(int(version), str(description)) for version, description in rows]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------------- migrate


def test_migrate_creates_every_table_and_view_and_records_the_versions(
    db: Database,
) -> None:
    applied = migrate(_config(db))

    assert applied == ALL_VERSIONS
    assert _objects(db) == _schema_objects()
    assert _recorded(db) == [(m.version, m.description) for m in MIGRATIONS]
    collations = query(
        db,
        "SELECT DISTINCT table_collation FROM information_schema.tables "
        "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
        db.database,
    )
    assert collations == [("utf8mb4_bin",)]
    conn = connect(_config(db))
    try:
        assert schema_version(conn) == LATEST_VERSION
    finally:
        conn.close()


def test_a_second_migrate_applies_nothing_and_changes_nothing(db: Database) -> None:
    migrate(_config(db))
    before = query(db, f"SELECT version, applied_at FROM {MIGRATIONS_TABLE}")  # noqa: S608

    assert migrate(_config(db)) == []
    assert query(db, f"SELECT version, applied_at FROM {MIGRATIONS_TABLE}") == before  # noqa: S608
    assert _objects(db) == _schema_objects()


def test_migrate_creates_a_missing_database(db: Database) -> None:
    query(db, f"DROP DATABASE `{db.database}`")

    assert database_version(_config(db)) is None
    assert migrate(_config(db)) == ALL_VERSIONS
    charset = query(
        db,
        "SELECT default_character_set_name, default_collation_name "
        "FROM information_schema.schemata WHERE schema_name = %s",
        db.database,
    )
    assert charset == [("utf8mb4", "utf8mb4_bin")]
    assert _objects(db) == _schema_objects()
    assert database_version(_config(db)) == LATEST_VERSION


@pytest.mark.parametrize("done", [1, len(MIGRATIONS[0].statements) - 1])
def test_migrate_completes_a_half_applied_migration(db: Database, done: int) -> None:
    first = MIGRATIONS[0]
    conn = db.connect()
    try:
        cursor = conn.cursor()
        for statement in first.statements[:done]:  # DDL commits itself; no record
            cursor.execute(statement)
    finally:
        conn.close()
    assert MIGRATIONS_TABLE not in _objects(db)

    applied = migrate(_config(db))

    assert applied == ALL_VERSIONS
    assert _objects(db) == _schema_objects()
    assert _recorded(db) == [(m.version, m.description) for m in MIGRATIONS]


def test_a_schema_newer_than_this_matchd_is_refused_and_left_alone(db: Database) -> None:
    newer = LATEST_VERSION + 1
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(history_db._CREATE_MIGRATIONS_TABLE)
        cursor.execute(history_db._RECORD_MIGRATION, (newer, "from the future", 1.0))
        conn.commit()
    finally:
        conn.close()
    before = _objects(db), _recorded(db)

    with pytest.raises(SchemaTooNew) as info:
        migrate(_config(db))

    assert isinstance(info.value, HistoryUnavailable)
    message = str(info.value)
    assert f"{db.user}@{db.host}:{db.port}/{db.database}" in message
    assert f"at schema version {newer}, newer than this matchd knows ({LATEST_VERSION})" in message
    assert "nothing was changed" in message
    assert (_objects(db), _recorded(db)) == before
    assert database_version(_config(db)) == newer


def test_two_processes_migrating_at_once_take_turns(db: Database) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(_config(db)))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(results) == [[], ALL_VERSIONS]
    assert _recorded(db) == [(m.version, m.description) for m in MIGRATIONS]
    assert _objects(db) == _schema_objects()


def test_migrate_gives_up_when_another_process_holds_the_lock(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_db, "MIGRATE_LOCK_TIMEOUT_S", 1)
    holder = db.connect()
    try:
        cursor = holder.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 10)", (history_db.MIGRATE_LOCK,))
        assert cursor.fetchone() == (1,)

        with pytest.raises(HistoryUnavailable, match="another process held the lock"):
            migrate(_config(db))
    finally:
        holder.close()  # releases the lock
    assert MIGRATIONS_TABLE not in _objects(db)
    assert migrate(_config(db)) == ALL_VERSIONS


# --------------------------------------------------------------------------- versions


def test_schema_version_is_zero_without_the_migrations_table(db: Database) -> None:
    conn = connect(_config(db))
    try:
        assert schema_version(conn) == 0
    finally:
        conn.close()
    assert database_version(_config(db)) == 0


# --------------------------------------------------------------------------- connect


def test_connect_gives_utf8mb4_and_no_autocommit(db: Database) -> None:
    conn = connect(_config(db))
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT DATABASE(), @@autocommit, @@character_set_client")
        assert cursor.fetchone() == (db.database, 0, "utf8mb4")
    finally:
        conn.close()
    conn = connect(_config(db), database=False)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT DATABASE()")
        assert cursor.fetchone() == (None,)
    finally:
        conn.close()


def test_an_unreachable_server_is_reported_within_the_timeout() -> None:
    port = _closed_port()
    config = HistoryConfig(host="127.0.0.1", port=port, connect_timeout_s=2.0)

    for attempt in (lambda: connect(config), lambda: migrate(config)):
        started = time.monotonic()
        with pytest.raises(HistoryUnavailable) as info:
            attempt()
        elapsed = time.monotonic() - started

        assert elapsed < config.connect_timeout_s + 1.0
        assert f"cannot connect to MySQL at root@127.0.0.1:{port}" in str(info.value)
        assert "(error 2002)" in str(info.value)


def test_a_refused_login_is_reported_without_the_password(db: Database) -> None:
    password = secrets.token_urlsafe(16)
    config = _config(db, password=Secret(password))

    with pytest.raises(HistoryUnavailable) as info:
        migrate(config)

    message = str(info.value)
    assert f"cannot connect to MySQL at {db.user}@{db.host}:{db.port}" in message
    assert "Access denied" in message
    assert password not in message


def test_an_absent_database_is_reported_by_connect(db: Database) -> None:
    config = _config(db, database=db.database + "_absent")

    with pytest.raises(HistoryUnavailable) as info:
        connect(config)

    assert config.address() in str(info.value)
    assert "Unknown database" in str(info.value)
