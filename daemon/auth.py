"""Who may use the order entry: the CURVE key registry, the start-up checks and key
generation (docs/protocol.md, "Authentication and limits").

The registry is a TOML file (``etc/keys.example.toml``): the server's secret key
file, default rate limits, and one ``[[client]]`` table per client key with its
name, Z85 public key, role and rate limit. ``load_registry(path)`` reads it into a
frozen ``KeyRegistry``; every mistake is a ``ConfigError`` naming the entry. Secret
keys are held in ``SecretKey``, whose ``repr`` and ``str`` never show them.

Roles (``Role``):

- ``admin``: everything: ``balance.update``, ``server.snapshot``, and trading and
  queries for every user.
- ``trade``: order commands and per-user queries (``balance.query``,
  ``order.pending``) for the users it lists (``users = [7, 8]``), or for every user
  (``users = "*"``: a trusted gateway); market queries.
- ``read``: queries only: market queries, and per-user queries for the users it
  lists (none by default, ``"*"`` for all).

The server's own key is registered too, as the client ``server`` with the role
``read`` and no users: whoever holds the server's secret key (the supervisor, for
its health check) may ask ``server.status``. It could impersonate the server anyway.

The runtime side (the ZAP handler, per-frame permissions and the token buckets) is
``daemon.auth_gate``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import msgspec
import zmq

from core.errors import ConfigError
from core.schema import MAX_USER_ID
from ipc.client_common import CurveKeys, check_z85_key, read_key_file, read_secret_key_file

logger = logging.getLogger(__name__)

#: Oldest libzmq allowed: 4.3.2 fixes CVE-2019-13132 (a stack overflow any
#: unauthenticated peer of a CURVE socket could cause).
MIN_LIBZMQ: Final = (4, 3, 2)
#: libzmq 4.3.3 fixes CVE-2020-15166 (memory exhaustion by unauthenticated peers of
#: a public endpoint); older versions start, with a warning.
RECOMMENDED_LIBZMQ: Final = (4, 3, 3)
#: The name the server's own key is registered under (see the module docstring).
SERVER_KEY_NAME: Final = "server"
DEFAULT_RATE_PER_S: Final = 10_000
DEFAULT_BURST: Final = 20_000
#: Upper bound of rates and bursts, so that a typo cannot mean "unlimited".
MAX_RATE: Final = 1_000_000_000
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class Role(StrEnum):
    """What a key may do (the module docstring has the rules)."""

    ADMIN = "admin"
    TRADE = "trade"
    READ = "read"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate_per_s`` commands per second on average, at most
    ``burst`` at once. Each command of a COMMANDS frame and each call of a CALLS
    frame costs one token."""

    rate_per_s: int = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST


class SecretKey:
    """A Z85 CURVE secret key that does not show itself: ``repr`` and ``str`` are
    redacted, and it refuses to be pickled. ``reveal()`` gives the key to libzmq."""

    __slots__ = ("_z85",)

    def __init__(self, z85: bytes) -> None:
        self._z85 = check_z85_key(z85, "secret key")

    def reveal(self) -> bytes:
        return self._z85

    def __repr__(self) -> str:
        return "SecretKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretKey is not pickled")


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One registered client key. ``users`` is None for every user."""

    name: str
    public_key: bytes  #: Z85, 40 bytes
    role: Role
    users: frozenset[int] | None
    limit: RateLimit

    def may_act_for(self, user: int) -> bool:
        """Whether the key may trade (if its role trades) or query for ``user``."""
        return self.users is None or user in self.users

    def describe(self) -> str:
        """``name (role, users)`` for logs; no key material."""
        users = "*" if self.users is None else str(len(self.users))
        return f"{self.name} ({self.role}, users {users}, {self.limit.rate_per_s}/s)"


@dataclass(frozen=True, slots=True)
class KeyRegistry:
    """The server's key pair and the client keys it accepts; ``source`` names the
    file for messages."""

    server_public_key: bytes  #: Z85
    server_secret_key: SecretKey
    clients: tuple[ClientKey, ...]
    source: str = "keys"

    def entries(self) -> tuple[ClientKey, ...]:
        """Every key the server accepts: the clients and the server's own key."""
        own = ClientKey(
            SERVER_KEY_NAME, self.server_public_key, Role.READ, frozenset(), RateLimit()
        )
        return (*self.clients, own)

    def server_keys(self) -> CurveKeys:
        """Client keys that connect as the server's own key (the supervisor's probe)."""
        public = self.server_public_key
        return CurveKeys(public, self.server_secret_key.reveal(), public)

    def describe(self) -> str:
        """One line for the start-up log; no key material."""
        keys = ", ".join(c.describe() for c in self.clients)
        return f"{len(self.clients)} client keys from {self.source}: {keys}"


# --------------------------------------------------------------------------- the file


class _ServerTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    secret_key_file: str


class _DefaultsTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rate_per_s: int = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST


class _ClientTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: str
    public_key: str | None = None
    public_key_file: str | None = None
    users: list[int] | str | None = None
    rate_per_s: int | None = None
    burst: int | None = None


def load_registry(path: Path) -> KeyRegistry:
    """Read and check the key registry at ``path`` (relative key file paths are
    relative to its directory); ``ConfigError`` says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"keys {path}: cannot read it: {exc}") from exc
    return parse_registry(text, path.parent, source=str(path))


def parse_registry(text: str, base_dir: Path, *, source: str = "keys") -> KeyRegistry:
    """The registry in TOML ``text``; key files are found relative to ``base_dir``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"keys {source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - {"server", "defaults", "client"})
    if unknown:
        raise ConfigError(f"keys {source}: unknown table {unknown[0]!r} (server, defaults, client)")
    if "server" not in raw:
        raise ConfigError(f"keys {source}: [server] with secret_key_file is missing")
    server = _convert(_ServerTable, raw["server"], f"keys {source}: [server]")
    defaults = _convert(_DefaultsTable, raw.get("defaults", {}), f"keys {source}: [defaults]")
    default_limit = _limit(defaults.rate_per_s, defaults.burst, f"keys {source}: [defaults]")
    public, secret = _server_keys(base_dir / server.secret_key_file, f"keys {source}: [server]")
    clients = _clients(raw.get("client", []), public, base_dir, default_limit, f"keys {source}")
    return KeyRegistry(public, SecretKey(secret), clients, source)


def _clients(
    tables: Any, server_key: bytes, base_dir: Path, default_limit: RateLimit, source: str
) -> tuple[ClientKey, ...]:
    """The ``[[client]]`` tables, each checked, with no name or key used twice."""
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: client must be an array of tables ([[client]])")
    clients: list[ClientKey] = []
    by_name: dict[str, str] = {SERVER_KEY_NAME: "the server's own key"}
    by_key: dict[bytes, str] = {server_key: "the server's own key"}
    for i, table in enumerate(tables):
        name = table.get("name") if isinstance(table, dict) else None
        where = f"{source}: [[client]] #{i + 1}" + (f" ({name!r})" if name else "")
        client = _client(_convert(_ClientTable, table, where), base_dir, default_limit, where)
        if client.name in by_name:
            _fail(where, f"the name is already used by {by_name[client.name]}")
        if client.public_key in by_key:
            _fail(where, f"the public key is already used by {by_key[client.public_key]}")
        by_name[client.name] = by_key[client.public_key] = f"[[client]] #{i + 1}"
        clients.append(client)
    return tuple(clients)


def _fail(where: str, message: str) -> NoReturn:
    raise ConfigError(f"{where}: {message}")


_T = TypeVar("_T")


def _convert(cls: type[_T], raw: Any, where: str) -> _T:
    if not isinstance(raw, dict):
        _fail(where, "must be a table")
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        _fail(where, str(exc))


def _limit(rate_per_s: int, burst: int, where: str) -> RateLimit:
    for key, value in (("rate_per_s", rate_per_s), ("burst", burst)):
        if not 1 <= value <= MAX_RATE:
            _fail(where, f"{key} is {value}, must be in 1..{MAX_RATE}")
    return RateLimit(rate_per_s, burst)


def _server_keys(path: Path, where: str) -> tuple[bytes, bytes]:
    try:
        mode = path.stat().st_mode
        public, secret = read_secret_key_file(path)
    except (OSError, ValueError) as exc:
        _fail(where, f"secret_key_file: {exc}")
    if stat.S_IMODE(mode) & 0o077:
        _fail(
            where,
            f"secret_key_file {path} may be read by others (mode {stat.S_IMODE(mode):04o}): "
            "chmod 600 it",
        )
    return public, secret


def _client(table: _ClientTable, base_dir: Path, default_limit: RateLimit, where: str) -> ClientKey:
    if not _NAME_RE.fullmatch(table.name):
        _fail(where, "name must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -")
    try:
        role = Role(table.role)
    except ValueError:
        _fail(where, f"unknown role {table.role!r} (admin, trade, read)")
    return ClientKey(
        table.name,
        _public_key(table, base_dir, where),
        role,
        _users(table.users, role, where),
        _limit(
            default_limit.rate_per_s if table.rate_per_s is None else table.rate_per_s,
            default_limit.burst if table.burst is None else table.burst,
            where,
        ),
    )


def _public_key(table: _ClientTable, base_dir: Path, where: str) -> bytes:
    key, file = table.public_key, table.public_key_file
    try:
        if key is not None and file is None:
            return check_z85_key(key, "public_key")
        if file is not None and key is None:
            return read_key_file(base_dir / file)[0]
    except (OSError, ValueError) as exc:
        _fail(where, str(exc))
    _fail(where, "give exactly one of public_key (Z85 text) and public_key_file")


def _users(users: list[int] | str | None, role: Role, where: str) -> frozenset[int] | None:
    if role == Role.ADMIN:
        if users not in (None, "*"):
            _fail(where, "an admin key acts for every user: leave users out")
        return None
    if users is None:
        if role == Role.TRADE:
            _fail(where, 'a trade key needs users: a list of user ids, or "*" for every user')
        return frozenset()
    if isinstance(users, str):
        if users != "*":
            _fail(where, f'users must be a list of user ids or "*", not {users!r}')
        return None
    if role == Role.TRADE and not users:
        _fail(where, 'a trade key needs at least one user (or "*" for every user)')
    for user in users:
        if not 0 <= user <= MAX_USER_ID:
            _fail(where, f"user {user} is not a user id (0..{MAX_USER_ID})")
    return frozenset(users)


# --------------------------------------------------------------------------- start-up checks


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_libzmq(*, curve: bool, version: str | None = None, has_curve: bool | None = None) -> None:
    """Refuse to start on a libzmq older than ``MIN_LIBZMQ``, or without CURVE when
    ``curve`` is wanted (``ConfigError``). ``version`` and ``has_curve`` default to
    the loaded libzmq's."""
    text = zmq.zmq_version() if version is None else version
    found = _version(text)
    if found < MIN_LIBZMQ:
        need = ".".join(map(str, MIN_LIBZMQ))
        raise ConfigError(
            f"libzmq {text} is too old: matchd needs {need} or newer (CVE-2019-13132)"
        )
    if curve and not (zmq.has("curve") if has_curve is None else has_curve):
        raise ConfigError(f"libzmq {text} was built without CURVE, which the key registry needs")
    if curve and found < RECOMMENDED_LIBZMQ:
        logger.warning("libzmq %s: 4.3.3 or newer is recommended (CVE-2020-15166)", text)


def is_local_endpoint(endpoint: str) -> bool:
    """Whether ``endpoint`` is reachable from this machine only: ``ipc://``,
    ``inproc://``, or ``tcp://`` on a loopback address (127.0.0.0/8, ::1, localhost)."""
    transport, sep, address = endpoint.partition("://")
    if not sep:
        return False
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rpartition(":")[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or "*"
        return False


def check_exposure(endpoint: str, *, curve: bool) -> None:
    """Without CURVE the order entry binds local endpoints only (``ConfigError``)."""
    if not curve and not is_local_endpoint(endpoint):
        raise ConfigError(
            f"endpoint {endpoint} is reachable from other machines: without a key registry "
            "(--keys) the order entry binds only ipc://, inproc:// or tcp:// on loopback"
        )


# --------------------------------------------------------------------------- keygen

_BANNER: Final = """#   ****  Generated by matchd keygen  ****
#   ZeroMQ CURVE {kind} Certificate
#   {advice}

metadata
    name = "{name}"
curve
"""


def write_keypair(out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair as ``out_dir/NAME.key`` (public, mode 0644) and
    ``out_dir/NAME.key_secret`` (both keys, mode 0600), in ZeroMQ's certificate
    format; returns their paths. Never overwrites (``FileExistsError``)."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"key name {name!r}: 1 to 64 characters of A-Z a-z 0-9 _ . @ -")
    public, secret = zmq.curve_keypair()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    public_path, secret_path = out_dir / f"{name}.key", out_dir / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; matchd keygen never overwrites a key")
    public_line = f'    public-key = "{public.decode()}"\n'
    secret_line = f'    secret-key = "{secret.decode()}"\n'
    head = _BANNER.format(kind="Public", name=name, advice="Give this file to the server.")
    _write_new(public_path, head + public_line, 0o644)
    head = _BANNER.format(kind="**Secret**", name=name, advice="DO NOT share this file.")
    try:
        _write_new(secret_path, head + public_line + secret_line, 0o600)
    except BaseException:
        public_path.unlink(missing_ok=True)
        raise
    return public_path, secret_path


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (no window with wider rights)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            os.fchmod(file.fileno(), mode)  # exactly ``mode``, whatever the umask
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
