"""Where the MySQL (MariaDB) history lives and how it is used: the ``[history]`` table.

The table sits beside ``[engine]`` in the daemon's TOML config (the engine's parser,
``core.config``, ignores tables it does not know). Without it there is no history:
matchd runs, and the history methods answer "not configured" (docs/history.md).

``load_history_config(text)`` reads the table into a frozen ``HistoryConfig``; every
mistake is a ``ConfigError`` naming the key. The password is held in a ``Secret``,
whose ``repr`` and ``str`` never show it; ``password_env`` names an environment
variable to read it from instead, when the loader runs.
"""

from __future__ import annotations

import hmac
import math
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any, Final, NoReturn, TypeVar

import msgspec

from core.errors import ConfigError

#: The table of the config file that holds these settings.
TABLE: Final = "history"
#: Upper bound of both timeouts, so that a typo cannot mean "wait forever".
MAX_TIMEOUT_S: Final = 3600.0
MAX_BATCH_RECORDS: Final = 1_000_000
MAX_BATCH_INTERVAL_S: Final = 60.0
MAX_QUERY_POOL: Final = 64
#: Upper bound of ``query_queue``, so that a typo cannot mean "unbounded".
MAX_QUERY_QUEUE: Final = 1_000_000
#: MariaDB allows user names of up to 80 characters (MySQL: 32).
MAX_USER_LENGTH: Final = 80
MAX_HOST_LENGTH: Final = 255
_DATABASE_RE: Final = re.compile(r"[A-Za-z0-9_]{1,64}")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHERE: Final = f"[{TABLE}]"


class Secret:
    """A password that does not show itself: ``repr`` and ``str`` are redacted, it
    is not encoded by msgspec and refuses to be pickled. ``reveal()`` gives it to the
    MySQL client."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled")


class HistoryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[history]`` settings; checked on construction (``ConfigError`` if bad).

    Parameters
    ----------
    host, port, user
        The MySQL (MariaDB) server and the account matchd logs in as. As for every
        libmysqlclient program, host ``localhost`` means the Unix socket; use
        ``127.0.0.1`` for TCP.
    password
        The account's password (a ``Secret``; a ``str`` given here is wrapped).
        ``load_history_config`` puts the value of ``$password_env`` here.
    password_env
        The name of the environment variable that holds the password, read by
        ``load_history_config``; a config file gives it or a non-empty ``password``,
        not both.
    database
        The database (1 to 64 characters of ``A-Z a-z 0-9 _``).
    connect_timeout_s
        Seconds to wait for the server when connecting (the MySQL client counts whole
        seconds: 0.2 waits 1 s).
    io_timeout_s
        Seconds a connection waits for the server to read or answer before it gives
        up (a hung or unreachable server: the drainer then reconnects with backoff).
    batch_records
        Most log records the drainer writes in one transaction.
    batch_interval_s
        While the drainer keeps up, the least time between the starts of two batches
        that are not full (0: none), so that MySQL commits a few times a second rather
        than for every few records.
    busy_duty
        While the engine is busy (its log grows by 1,000 records a second or more) and
        the drainer less than ``busy_max_lag_s`` behind, the share of the time the
        drainer and MySQL work (more than 0, at most 1: no limit); it catches up when
        trading calms down.
    busy_max_lag_s
        The lag beyond which the drainer works at full speed even while the engine is
        busy.
    query_pool
        Connections that answer history queries.
    query_queue
        Queries that may wait for a connection; beyond, a query is refused with code 3
        (service unavailable).
    query_timeout_s
        Longest a history query may take.
    """

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: Secret = Secret("")
    password_env: str | None = None
    database: str = "matchd"
    connect_timeout_s: float = 5.0
    io_timeout_s: float = 30.0
    batch_records: int = 4096
    batch_interval_s: float = 0.2
    busy_duty: float = 0.25
    busy_max_lag_s: float = 30.0
    query_pool: int = 4
    query_queue: int = 40
    query_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.password, str):  # a caller's plain str: hide it too
            msgspec.structs.force_setattr(self, "password", Secret(self.password))
        _check_text("host", self.host, MAX_HOST_LENGTH)
        _check_int("port", self.port, 1, 65535)
        _check_text("user", self.user, MAX_USER_LENGTH)
        if not isinstance(self.password, Secret):
            _fail(f"password must be a string, not {type(self.password).__name__}")
        if self.password_env is not None and not _ENV_NAME_RE.fullmatch(self.password_env):
            _fail(
                f"password_env = {self.password_env!r} is not an environment variable name "
                "(A-Z a-z 0-9 _, not starting with a digit)"
            )
        if not isinstance(self.database, str) or not _DATABASE_RE.fullmatch(self.database):
            _fail(f"database = {self.database!r} must be 1 to 64 characters of A-Z a-z 0-9 _")
        _check_seconds("connect_timeout_s", self.connect_timeout_s)
        _check_seconds("io_timeout_s", self.io_timeout_s)
        _check_int("batch_records", self.batch_records, 1, MAX_BATCH_RECORDS)
        _check_interval("batch_interval_s", self.batch_interval_s)
        if isinstance(self.busy_duty, bool) or not isinstance(self.busy_duty, int | float):
            _fail(f"busy_duty must be a number, not {self.busy_duty!r}")
        if not (math.isfinite(self.busy_duty) and 0 < self.busy_duty <= 1):
            _fail(f"busy_duty = {self.busy_duty} must be more than 0 and at most 1")
        _check_seconds("busy_max_lag_s", self.busy_max_lag_s)
        _check_int("query_pool", self.query_pool, 1, MAX_QUERY_POOL)
        _check_int("query_queue", self.query_queue, 0, MAX_QUERY_QUEUE)
        _check_seconds("query_timeout_s", self.query_timeout_s)

    def address(self) -> str:
        """``user@host:port/database``, for messages and logs (never the password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"{_WHERE} {message}")


def _check_text(key: str, value: object, max_length: int) -> None:
    if not isinstance(value, str):
        _fail(f"{key} must be a string, not {value!r}")
    if not 1 <= len(value) <= max_length or not value.isprintable() or value != value.strip():
        _fail(
            f"{key} = {value!r} must be 1 to {max_length} printable characters, "
            "without leading or trailing spaces"
        )


def _check_int(key: str, value: object, low: int, high: int) -> None:
    if type(value) is not int:
        _fail(f"{key} must be an integer, not {value!r}")
    if not low <= value <= high:
        _fail(f"{key} = {value} is outside {low}..{high}")


def _check_seconds(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{key} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        _fail(f"{key} = {value} must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds")


def _check_interval(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{key} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and 0 <= value <= MAX_BATCH_INTERVAL_S):
        _fail(f"{key} = {value} must be 0 to {MAX_BATCH_INTERVAL_S:g} seconds")


# --------------------------------------------------------------------------- loading

_KINDS: Final = {
    "host": "a string",
    "port": "an integer",
    "user": "a string",
    "password": "a string",
    "password_env": "a string",
    "database": "a string",
    "connect_timeout_s": "a number of seconds",
    "io_timeout_s": "a number of seconds",
    "batch_records": "an integer",
    "batch_interval_s": "a number of seconds",
    "busy_duty": "a number",
    "busy_max_lag_s": "a number of seconds",
    "query_pool": "an integer",
    "query_queue": "an integer",
    "query_timeout_s": "a number of seconds",
}
_UNKNOWN_RE: Final = re.compile(r"Object contains unknown field `(.+)`")
_AT_KEY_RE: Final = re.compile(r".* - at `\$\.(\w+)`")


def load_history_config(
    text: str, *, environ: Mapping[str, str] | None = None
) -> HistoryConfig | None:
    """The ``[history]`` table of the TOML config ``text``.

    Parameters
    ----------
    text
        The whole config file (the other tables are not looked at).
    environ
        Where ``password_env`` is looked up (default ``os.environ``).

    Returns
    -------
    HistoryConfig or None
        The settings, with the password read from ``$password_env`` when that is
        given; None when the file has no ``[history]`` table (history is not
        configured).

    Raises
    ------
    ConfigError
        The text is not TOML, or a setting is unknown, of the wrong type or out of
        range (the message names the key), or ``password_env`` names a variable that
        is not set.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    if TABLE not in raw:
        return None
    table = raw[TABLE]
    if not isinstance(table, dict):
        raise ConfigError(f"config: {TABLE} must be a table ({_WHERE})")
    return read_password_env(_convert(table), _WHERE, environ)


_T = TypeVar("_T", bound=msgspec.Struct)


def read_password_env(config: _T, where: str, environ: Mapping[str, str] | None) -> _T:
    """``config`` (a struct with ``password`` and ``password_env``) with its password
    read from ``$password_env`` when that names a variable (``environ``, default
    ``os.environ``); ``ConfigError`` prefixed with ``where`` if it also has a
    password or the variable is not set."""
    name = getattr(config, "password_env", None)
    if name is None:
        return config
    if config.password.reveal():  # type: ignore[attr-defined]  # the caller's struct has it
        raise ConfigError(f"{where} give password or password_env, not both")
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is None:
        raise ConfigError(f"{where} password_env names {name}, which is not set in the environment")
    return msgspec.structs.replace(config, password=Secret(value))


def _convert(table: dict[str, Any]) -> HistoryConfig:
    return convert_table(table, HistoryConfig, _WHERE, _KINDS)


def convert_table(
    table: dict[str, Any], kind: type[_T], where: str, kinds: Mapping[str, str]
) -> _T:
    """``kind`` from a TOML table: msgspec checks names and types, the struct's
    ``__post_init__`` the values; msgspec's messages are rewritten to name the key
    (``kinds`` says what each key must be), prefixed with ``where`` (``[history]``)."""
    try:
        return msgspec.convert(table, kind, dec_hook=_decode_secret)
    except msgspec.ValidationError as exc:
        message = str(exc)
    unknown = _UNKNOWN_RE.fullmatch(message)
    if unknown is not None:
        known = ", ".join(kind.__struct_fields__)
        raise ConfigError(f"{where} unknown setting {unknown.group(1)!r} (known: {known})")
    at_key = _AT_KEY_RE.fullmatch(message)
    if at_key is not None and at_key.group(1) in table:
        key = at_key.group(1)
        what = kinds.get(key, "something else")
        raise ConfigError(f"{where} {key} must be {what}, not {table[key]!r}")
    raise ConfigError(f"{where} {message}")  # pragma: no cover - msgspec names a key


def optional_table(
    raw: dict[str, Any], name: str, kind: type[_T], kinds: Mapping[str, str]
) -> _T | None:
    """``kind`` from the table ``[name]`` of the parsed config ``raw`` (as
    ``convert_table``), or None when the config has no such table."""
    if name not in raw:
        return None
    table = raw[name]
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    return convert_table(table, kind, f"[{name}]", kinds)


def _decode_secret(type_: type, value: object) -> object:
    if type_ is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ValueError("password must be a string")
    raise NotImplementedError  # pragma: no cover - no other custom type
