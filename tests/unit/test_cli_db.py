"""``matchd db migrate`` and ``matchd db status``, called in-process, on the real MariaDB."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import MySQLdb
import pytest

from daemon import cli
from persistence.history_schema import LATEST_VERSION, MIGRATIONS, MIGRATIONS_TABLE
from tests.support.mysql import TestDatabase as Database
from tests.support.mysql import fresh_database

pytestmark = pytest.mark.integration

ENGINE = '[engine]\nfee_user = 0\n\n[[assets]]\nname = "BTC"\nprec = 8\n'
_USERS = itertools.count()
#: The environment variable the tests hand a password in.
ENV_NAME = "MATCHD_TEST_DB_PASSWORD"


@pytest.fixture
def db() -> Iterator[Database]:
    with fresh_database() as database:
        yield database


def _history(db: Database, **settings: object) -> str:
    values: dict[str, object] = {
        "host": db.host,
        "port": db.port,
        "user": db.user,
        "password": db.password,
        "database": db.database,
    }
    values.update(settings)
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "[history]\n" + "\n".join(lines) + "\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matchd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _db(*argv: str) -> int:
    return cli.main(["db", *argv])


def _admin(db: Database, *statements: str) -> None:
    conn = MySQLdb.connect(host=db.host, port=db.port, user=db.user, passwd=db.password)
    try:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def account(db: Database) -> Iterator[tuple[str, str]]:
    """A MariaDB account with a password, allowed everything on the test database."""
    name = f"mt_{os.getpid()}_{next(_USERS)}"
    password = secrets.token_urlsafe(16)
    _admin(
        db,
        f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT ALL ON `{db.database}`.* TO '{name}'@'%'",
    )
    try:
        yield name, password
    finally:
        _admin(db, f"DROP USER IF EXISTS '{name}'@'%'")


# --------------------------------------------------------------------------- migrate


def test_migrate_applies_every_migration_then_is_up_to_date(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, ENGINE + _history(db))
    address = f"{db.user}@{db.host}:{db.port}/{db.database}"

    assert _db("migrate", "--config", str(path)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"matchd: history {address}: applied migration {m.version} ({m.description})"
        for m in MIGRATIONS
    ]
    assert err == ""

    assert _db("migrate", "--config", str(path)) == 0
    out, err = capsys.readouterr()
    assert out == f"matchd: history {address}: up to date (schema version {LATEST_VERSION})\n"
    assert err == ""


def test_status_shows_the_address_and_the_versions(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, ENGINE + _history(db))
    address = f"{db.user}@{db.host}:{db.port}/{db.database}"

    assert _db("status", "--config", str(path)) == 0
    assert capsys.readouterr().out == (
        f"history: {address}\nschema version: 0\nlatest version: {LATEST_VERSION}\n"
        "state: migrations pending: run matchd db migrate\n"
    )
    assert _db("migrate", "--config", str(path)) == 0
    capsys.readouterr()

    assert _db("status", "--config", str(path)) == 0
    assert capsys.readouterr().out == (
        f"history: {address}\nschema version: {LATEST_VERSION}\n"
        f"latest version: {LATEST_VERSION}\nstate: up to date\n"
    )


def test_status_of_a_database_that_does_not_exist(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = db.database + "_absent"
    path = _write(tmp_path, _history(db, database=absent))

    assert _db("status", "--config", str(path)) == 0
    out = capsys.readouterr().out
    assert "schema version: 0\n" in out
    assert f"state: database {absent} does not exist: run matchd db migrate\n" in out


def test_a_password_from_password_env_logs_in_and_is_never_printed(
    db: Database,
    account: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = account
    monkeypatch.setenv(ENV_NAME, password)
    config = _history(db, user=user, password_env=ENV_NAME)
    config = config.replace(f'password = "{db.password}"\n', "")
    path = _write(tmp_path, config)

    assert _db("migrate", "--config", str(path)) == 0
    assert _db("status", "--config", str(path)) == 0
    out, err = capsys.readouterr()
    assert f"history: {user}@{db.host}:{db.port}/{db.database}\n" in out
    assert "state: up to date\n" in out
    assert password not in out + err


def test_a_wrong_password_exits_1_without_printing_it(
    db: Database,
    account: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user, password = account
    wrong = password + "-wrong"
    path = _write(tmp_path, _history(db, user=user, password=wrong))

    for action in ("migrate", "status"):
        assert _db(action, "--config", str(path)) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert f"matchd: history: cannot connect to MySQL at {user}@{db.host}:{db.port}" in err
        assert "Access denied" in err
        assert wrong not in err
        assert password not in err


def test_a_schema_too_new_exits_1(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _history(db))
    assert _db("migrate", "--config", str(path)) == 0
    newer = LATEST_VERSION + 1
    _admin(
        db,
        f"INSERT INTO `{db.database}`.{MIGRATIONS_TABLE} VALUES ({newer}, 'future', 0)",  # noqa: S608
    )
    capsys.readouterr()

    assert _db("migrate", "--config", str(path)) == 1
    assert f"newer than this matchd knows ({LATEST_VERSION})" in capsys.readouterr().err
    assert _db("status", "--config", str(path)) == 0
    out = capsys.readouterr().out
    assert f"schema version: {newer}\n" in out
    assert "state: newer than this matchd: upgrade matchd\n" in out


def test_an_unreachable_server_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = _write(
        tmp_path, f'[history]\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 2\n'
    )

    for action in ("migrate", "status"):
        assert _db(action, "--config", str(path)) == 1
        err = capsys.readouterr().err
        assert f"cannot connect to MySQL at root@127.0.0.1:{port}" in err


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("action", ["migrate", "status"])
def test_a_config_without_history_is_a_usage_error(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, ENGINE)

    assert _db(action, "--config", str(path)) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"matchd: config {path}: history is not configured (no [history] table)\n"


def test_migrate_if_configured_skips_a_config_without_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, ENGINE)

    assert _db("migrate", "--if-configured", "--config", str(path)) == 0
    assert capsys.readouterr().out == (
        f"matchd: history is not configured in {path}: nothing to migrate\n"
    )


@pytest.mark.parametrize("action", ["migrate", "status"])
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[history]\nport = 0\n", "[history] port = 0 is outside 1..65535"),
        ("[history]\ndatabase = 'x;y'\n", "[history] database = 'x;y' must be 1 to 64"),
        ("[history]\nsocket = '/tmp/s'\n", "[history] unknown setting 'socket'"),
        ("[history]\npassword_env = 'MATCHD_NO_SUCH_VAR'\n", "MATCHD_NO_SUCH_VAR, which is not"),
        ("[history\n", "config is not valid TOML"),
    ],
)
def test_a_bad_history_table_is_a_usage_error(
    action: str, table: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, ENGINE + table)

    assert _db(action, "--config", str(path)) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"matchd: config {path}: ")
    assert message in err


def test_a_missing_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.toml"

    assert _db("status", "--config", str(path)) == cli.EXIT_USAGE
    assert f"matchd: cannot read config {path}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["db"], ["db", "migrate"], ["db", "drop", "--config", "x"]])
def test_db_refuses_incomplete_commands(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)

    assert exit_info.value.code == cli.EXIT_USAGE
    assert "usage: matchd db" in capsys.readouterr().err
