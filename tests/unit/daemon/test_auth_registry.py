"""The key registry, the token bucket and the per-frame checks, without a server:
parse errors name the entry, secrets never show, limits are exact on a fake clock."""

from __future__ import annotations

import pickle
import shutil
import stat
import typing
from pathlib import Path

import numpy as np
import pytest

from core import commands as C
from core.errors import ConfigError
from core.schema import Result, RiskLimit, Side
from daemon.auth import (
    SERVER_KEY_NAME,
    KeyRegistry,
    Role,
    check_exposure,
    check_libzmq,
    is_local_endpoint,
    load_registry,
    parse_registry,
    write_keypair,
)
from daemon.auth_gate import CALL_ACCESS, Access, Gate, TokenBucket
from ipc import wire
from ipc.client_common import CurveKeys, read_key_file
from tests.support.keys import Entry, Keys

ROOT = Path(__file__).resolve().parents[3]
S = 1_000_000_000  #: ns per second


class FakeClock:
    """A monotonic clock in ns that moves only when told."""

    def __init__(self) -> None:
        self.now_ns = 5 * S

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * S)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    k = Keys(tmp_path)
    k.add("ops", Entry("admin"))
    k.add("alice", Entry("trade", [1]))
    k.add("gateway", Entry("trade", "*", rate_per_s=100, burst=50))
    k.add("monitor", Entry("read"))
    return k


def registry_with(keys: Keys, extra: str) -> str:
    return keys.registry_text() + "\n" + extra


# --------------------------------------------------------------------------- registry


def test_a_registry_loads_keys_roles_users_and_limits(keys: Keys) -> None:
    registry = load_registry(keys.write_registry())

    by_name = {c.name: c for c in registry.clients}
    assert list(by_name) == ["ops", "alice", "gateway", "monitor"]
    assert (by_name["ops"].role, by_name["ops"].users) == (Role.ADMIN, None)
    assert (by_name["alice"].role, by_name["alice"].users) == (Role.TRADE, frozenset({1}))
    assert by_name["gateway"].users is None
    assert (by_name["gateway"].limit.rate_per_s, by_name["gateway"].limit.burst) == (100, 50)
    assert (by_name["monitor"].role, by_name["monitor"].users) == (Role.READ, frozenset())
    assert by_name["alice"].public_key == keys.public("alice").encode()
    assert registry.server_public_key == keys.public("server").encode()
    # The server's own key is accepted as a read key without users (the health probe).
    own = registry.entries()[-1]
    assert (own.name, own.role, own.users) == (SERVER_KEY_NAME, Role.READ, frozenset())
    assert own.public_key == registry.server_public_key


def test_the_example_registry_parses(tmp_path: Path) -> None:
    shutil.copy(ROOT / "etc" / "keys.example.toml", tmp_path / "keys.toml")
    write_keypair(tmp_path / "keys", "server")
    write_keypair(tmp_path / "keys", "gateway-1")

    registry = load_registry(tmp_path / "keys.toml")

    assert [(c.name, c.role) for c in registry.clients] == [
        ("ops", Role.ADMIN), ("gateway-1", Role.TRADE), ("mm-7", Role.TRADE),
        ("monitor", Role.READ),
    ]  # fmt: skip
    assert registry.clients[2].users == frozenset({7, 8})
    assert registry.clients[2].limit.rate_per_s == 10_000  # [defaults]


def test_secret_keys_never_show(keys: Keys) -> None:
    registry = load_registry(keys.write_registry())
    secret = registry.server_secret_key.reveal().decode()

    for text in (repr(registry), str(registry), registry.describe(), repr(keys.curve("alice"))):
        assert secret not in text
        assert keys.curve("alice").secret_key.decode() not in text
    assert "redacted" in repr(registry)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(registry)


def _error(keys: Keys, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_registry(text, keys.directory, source="k.toml")
    return str(info.value)


BOB, READ, KEY = 'name = "bob"', 'role = "read"', 'public_key = "{k}"'


def client(*lines: str) -> str:
    return "[[client]]\n" + "\n".join(lines)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (client(BOB, 'role = "root"', KEY), "#5 ('bob'): unknown role 'root'"),
        (client(BOB, READ, KEY, "colour = 1"), "#5 ('bob'): Object contains unknown field"),
        (client('name = "alice"', READ, KEY), "#5 ('alice'): the name is already used by [[c"),
        (client(BOB, READ, 'public_key = "{alice}"'), "the public key is already used by [[c"),
        (client(BOB, READ, 'public_key = "{server}"'), "key is already used by the server's own"),
        (client('name = "server"', READ, KEY), "the name is already used by the server's own"),
        (client(BOB, READ, 'public_key = "not a key"'), "public_key is not a CURVE key"),
        (client(BOB, READ), "give exactly one of public_key"),
        (client(BOB, READ, KEY, 'public_key_file = "bob.key"'), "give exactly one of public_key"),
        (client(BOB, READ, 'public_key_file = "absent.key"'), "Invalid certificate file"),
        (client(BOB, 'role = "trade"', KEY), "a trade key needs users"),
        (client(BOB, 'role = "trade"', KEY, "users = []"), "a trade key needs at least one user"),
        (client(BOB, 'role = "admin"', KEY, "users = [1]"), "an admin key acts for every user"),
        (client(BOB, READ, KEY, 'users = "all"'), 'users must be a list of user ids or "*"'),
        (client(BOB, READ, KEY, "users = [-1]"), "user -1 is not a user id"),
        (client(BOB, READ, KEY, "users = [true]"), "Expected `int`, got `bool`"),
        (client(BOB, READ, KEY, "rate_per_s = 0"), "rate_per_s is 0, must be in 1.."),
        (client('name = "bob smith"', READ, KEY), "name must be 1 to 64 characters"),
        ("[defaults]\nburst = 0", "[defaults]: burst is 0"),
        ("[limits]\nburst = 1", "unknown table 'limits'"),
    ],
)
def test_registry_errors_name_the_entry(keys: Keys, extra: str, message: str) -> None:
    keys.add("bob")
    text = extra.format(
        k=keys.public("bob"), alice=keys.public("alice"), server=keys.public("server")
    )

    error = _error(keys, registry_with(keys, text))

    assert error.startswith("keys k.toml")
    assert message in error


def test_registry_errors_of_the_file_and_the_server_key(keys: Keys) -> None:
    assert "not valid TOML" in _error(keys, "[server\n")
    assert "[server] with secret_key_file is missing" in _error(keys, "")
    assert "[server]: secret_key_file: [Errno 2] No such file" in _error(
        keys, '[server]\nsecret_key_file = "absent"\n'
    )
    server_only = '[server]\nsecret_key_file = "server.key_secret"\n'
    assert "client must be an array of tables" in _error(keys, "client = 3\n" + server_only)
    assert "holds no secret key" in _error(keys, '[server]\nsecret_key_file = "server.key"\n')
    (keys.directory / "server.key_secret").chmod(0o640)
    assert "may be read by others (mode 0640): chmod 600 it" in _error(keys, keys.registry_text())
    with pytest.raises(ConfigError, match="cannot read it"):
        load_registry(keys.directory / "absent.toml")


def test_a_key_file_whose_keys_do_not_match_is_refused(keys: Keys) -> None:
    path = keys.directory / "server.key_secret"
    other = read_key_file(keys.directory / "alice.key")[0].decode()
    text = path.read_text().replace(keys.public("server"), other)
    path.write_text(text)

    assert "does not match its secret key" in _error(keys, keys.registry_text())


# --------------------------------------------------------------------------- keygen and client keys


def test_keygen_writes_a_pair_a_client_can_use(tmp_path: Path) -> None:
    public_path, secret_path = write_keypair(tmp_path / "k", "gw-1")

    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    public, secret = read_key_file(secret_path)
    assert read_key_file(public_path) == (public, None)
    keys = CurveKeys.from_files(secret_path, public_path)
    assert (keys.public_key, keys.secret_key, keys.server_key) == (public, secret, public)
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_keypair(tmp_path / "k", "gw-1")
    with pytest.raises(ValueError, match="key name"):
        write_keypair(tmp_path / "k", "../x")


def test_curve_keys_check_their_keys(tmp_path: Path) -> None:
    public_path, secret_path = write_keypair(tmp_path, "c")
    public, secret = read_key_file(secret_path)
    assert secret is not None
    with pytest.raises(ValueError, match="secret_key is not a CURVE key"):
        CurveKeys(public, b"short", public)
    with pytest.raises(ValueError, match="not the public key of secret_key"):
        CurveKeys(public[::-1], secret, public)
    with pytest.raises(ValueError, match="holds no secret key"):
        CurveKeys.from_files(public_path, public_path)


# --------------------------------------------------------------------------- start-up checks


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:7316", True),
        ("tcp://127.1.2.3:0", True),
        ("tcp://[::1]:7316", True),
        ("tcp://localhost:7316", True),
        ("ipc:///tmp/x.sock", True),
        ("inproc://orders", True),
        ("tcp://0.0.0.0:7316", False),
        ("tcp://*:7316", False),
        ("tcp://[::]:7316", False),
        ("tcp://10.0.0.5:7316", False),
        ("tcp://eth0:7316", False),
        ("ws://127.0.0.1:7316", False),
        ("127.0.0.1:7316", False),
    ],
)
def test_only_local_endpoints_bind_without_curve(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local
    check_exposure(endpoint, curve=True)
    if local:
        check_exposure(endpoint, curve=False)
    else:
        with pytest.raises(ConfigError, match="reachable from other machines"):
            check_exposure(endpoint, curve=False)


def test_libzmq_must_be_recent_and_have_curve() -> None:
    check_libzmq(curve=True)  # the libzmq under test
    check_libzmq(curve=True, version="4.3.2", has_curve=True)
    check_libzmq(curve=False, version="4.3.5", has_curve=False)
    with pytest.raises(ConfigError, match=r"libzmq 4\.3\.1 is too old: matchd needs 4\.3\.2"):
        check_libzmq(curve=False, version="4.3.1")
    with pytest.raises(ConfigError, match="too old"):
        check_libzmq(curve=True, version="4.2.5")
    with pytest.raises(ConfigError, match="built without CURVE"):
        check_libzmq(curve=True, version="4.3.5", has_curve=False)


# --------------------------------------------------------------------------- token bucket


def test_a_token_bucket_is_exact_on_a_fake_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, burst=5, now_ns=clock())

    assert bucket.take(5, clock())  # starts full
    assert not bucket.take(1, clock())
    clock.advance(0.099_999_999)
    assert not bucket.take(1, clock())  # one token takes exactly 0.1 s
    assert bucket.wait_s(1, clock()) == pytest.approx(1e-9)
    clock.advance(1e-9)
    assert bucket.take(1, clock())
    clock.advance(3600)
    assert bucket.available(clock()) == 5  # capped at the burst
    assert not bucket.take(6, clock())  # more than the burst never fits
    assert bucket.wait_s(6, clock()) == float("inf")
    assert bucket.available(clock()) == 5  # a refused take takes nothing
    clock.now_ns -= 10 * S  # a clock that goes back stands still
    assert bucket.take(5, clock())
    assert not bucket.take(1, clock())
    with pytest.raises(ValueError, match="must be >= 1"):
        TokenBucket(0, 1, 0)


# --------------------------------------------------------------------------- gate


def gate_for(keys: Keys, clock: FakeClock) -> tuple[Gate, KeyRegistry]:
    registry = load_registry(keys.write_registry())
    return Gate(registry, clock), registry


def commands_frame(cmds: np.ndarray) -> wire.CommandsFrame:
    return typing.cast(wire.CommandsFrame, wire.decode_request(wire.encode_commands(cmds, 1)))


def calls_frame(*calls: wire.Call) -> wire.CallsFrame:
    return typing.cast(wire.CallsFrame, wire.decode_request(wire.encode_calls(list(calls), 1)))


def test_the_gate_checks_every_command_of_a_frame(keys: Keys) -> None:
    gate, _ = gate_for(keys, FakeClock())
    mine = C.batch(*(C.put_limit(1, 0, Side.BID, 10, 100) for _ in range(40)), C.cancel(1, 0, 7))
    theirs = mine.copy()
    theirs["user"][37] = 2

    assert gate.admit("alice", commands_frame(mine)) is None
    refusal = gate.admit("alice", commands_frame(theirs))
    assert refusal is not None
    assert refusal.code == Result.FORBIDDEN
    assert refusal.message == (
        "forbidden: key 'alice' (trade) may not act for user 2 (command 37, PUT_LIMIT)"
    )
    assert gate.admit("gateway", commands_frame(theirs)) is None  # users = "*"
    assert gate.admit("ops", commands_frame(theirs)) is None
    monitor = gate.admit("monitor", commands_frame(mine))
    assert monitor is not None
    assert monitor.message == "forbidden: key 'monitor' (read) may not send order commands"
    odd = mine.copy()
    odd["kind"][3] = 6  # BALANCE_UPDATE is not an order command
    refusal = gate.admit("alice", commands_frame(odd))
    assert refusal is not None
    assert "may not send command kind 6 (command 3)" in refusal.message
    for who in (None, "", "stranger"):
        refusal = gate.admit(who, commands_frame(mine))
        assert refusal is not None
        assert refusal.code == Result.FORBIDDEN
    stats = gate.statistics()
    assert (stats["alice"].admitted, stats["alice"].forbidden) == (1, 2)


@pytest.mark.parametrize("size", [1, 2, 300])
@pytest.mark.parametrize(
    ("user", "kind", "allowed"),
    [
        (1, 1, True), (3, 5, True), (8, 3, True),  # alice's key: users 1, 3, 8
        (0, 1, False), (2, 1, False), (9, 1, False), (2**32 - 1, 1, False), (-5, 1, False),
        (1, 0, False), (1, 6, False), (1, -3, False), (1, 127, False),
    ],
)  # fmt: skip
def test_the_command_check_agrees_with_the_rule_at_every_size(
    tmp_path: Path, size: int, user: int, kind: int, allowed: bool
) -> None:
    keys = Keys(tmp_path)
    keys.add("alice", Entry("trade", [8, 1, 3]))
    gate, _ = gate_for(keys, FakeClock())
    cmds = C.batch(*(C.cancel(1, 0, 5) for _ in range(size)))
    cmds["user"][-1] = user
    cmds["kind"][-1] = kind

    refusal = gate.admit("alice", commands_frame(cmds))

    assert (refusal is None) is allowed
    if refusal is not None:
        assert f"(command {size - 1}" in refusal.message


@pytest.mark.parametrize(
    ("who", "call", "allowed"),
    [
        ("alice", wire.PutLimit(1, 0, Side.BID, 10, 100), True),
        ("alice", wire.PutLimit(2, 0, Side.BID, 10, 100), False),
        ("alice", wire.Cancel(2, 0, 5), False),
        ("alice", wire.Replace(2, 0, 5, 100, 1), False),
        ("alice", wire.CancelAll(2, 0), False),
        ("alice", wire.PutMarket(2, 0, Side.BID, 10), False),
        ("alice", wire.BalanceQuery(1), True),
        ("alice", wire.BalanceQuery(2), False),
        ("alice", wire.OrderPending(2, 0), False),
        ("alice", wire.BalanceUpdate(1, 0, "deposit", 1, 10), False),
        ("alice", wire.ServerSnapshot(), False),
        ("alice", wire.ServerPromote(), False),
        ("alice", wire.OrderBook(0, Side.ASK), True),
        ("alice", wire.ServerStatus(), True),
        ("monitor", wire.PutLimit(1, 0, Side.BID, 10, 100), False),
        ("monitor", wire.BalanceQuery(1), False),
        ("monitor", wire.OrderDepth(0), True),
        ("monitor", wire.MarketList(), True),
        ("gateway", wire.Cancel(2, 0, 5), True),
        ("gateway", wire.BalanceUpdate(1, 0, "deposit", 1, 10), False),
        ("gateway", wire.ServerSnapshot(), False),
        ("ops", wire.BalanceUpdate(1, 0, "deposit", 1, 10), True),
        ("ops", wire.ServerSnapshot(), True),
        ("ops", wire.ServerPromote(), True),
        ("server", wire.ServerStatus(), True),
        ("server", wire.BalanceQuery(1), False),
        # a user's own risk limits: set by an admin key, read by a key of the user
        ("alice", wire.UserSetLimit(1, 0, "max_notional", 10), False),
        ("gateway", wire.UserSetLimit(1, 0, "max_order_amount", 10), False),
        ("ops", wire.UserSetLimit(1, 0, "max_order_amount", 10), True),
        ("alice", wire.UserLimitsCall(1, 0), True),
        ("alice", wire.UserLimitsCall(2, 0), False),
        ("gateway", wire.UserLimitsCall(2, 0), True),
        ("monitor", wire.UserLimitsCall(1, 0), False),
        ("ops", wire.UserLimitsCall(1, 0), True),
    ],
)
def test_the_gate_checks_every_call(keys: Keys, who: str, call: wire.Call, allowed: bool) -> None:
    gate, _ = gate_for(keys, FakeClock())

    refusal = gate.admit(who, calls_frame(wire.MarketList(), call))

    assert (refusal is None) is allowed
    if refusal is not None:
        assert refusal.code == Result.FORBIDDEN
        assert f"(call 1, {wire.op_of(call)})" in refusal.message or "(call 1)" in refusal.message


def test_every_call_type_has_an_access_rule() -> None:
    assert set(CALL_ACCESS) == set(typing.get_args(wire.AnyCall))
    assert CALL_ACCESS[wire.BalanceUpdate] == Access.ADMIN
    assert CALL_ACCESS[wire.UserSetLimit] == Access.ADMIN
    assert CALL_ACCESS[wire.UserLimitsCall] == Access.USER


def test_a_user_limit_record_needs_an_admin_key(keys: Keys) -> None:
    gate, _ = gate_for(keys, FakeClock())
    cmds = C.batch(C.cancel(1, 0, 7), C.user_limit(1, 0, RiskLimit.MAX_NOTIONAL, 10))
    for who in ("alice", "gateway"):
        refusal = gate.admit(who, commands_frame(cmds))
        assert refusal is not None
        assert refusal.message == (
            f"forbidden: key '{who}' (trade) may not send command kind 13 (command 1, "
            "USER_LIMIT): it needs an admin key"
        )
    assert gate.admit("ops", commands_frame(cmds)) is None


def test_a_call_that_did_not_decode_needs_no_permission(keys: Keys) -> None:
    gate, _ = gate_for(keys, FakeClock())
    frame = wire.CallsFrame(1, wire.FrameFlag(0), [wire.WireError("call 0: bad")])

    assert gate.admit("monitor", frame) is None


def test_the_gate_limits_each_key_on_its_own(keys: Keys) -> None:
    clock = FakeClock()
    gate, _ = gate_for(keys, clock)
    status = calls_frame(wire.ServerStatus())
    forty = calls_frame(*[wire.ServerStatus()] * 40)

    assert gate.admit("gateway", forty) is None  # 40 of the burst of 50
    assert gate.admit("gateway", forty) is not None
    refusal = gate.admit("gateway", calls_frame(*[wire.ServerStatus()] * 11))
    assert refusal is not None
    assert refusal.code == Result.TOO_MANY_REQUESTS
    assert refusal.message == (
        "too many requests: key 'gateway' (trade) may send 100 commands/s with bursts of "
        "50; retry in 0.010 s"
    )
    assert gate.admit("gateway", calls_frame(*[wire.ServerStatus()] * 10)) is None
    assert gate.admit("ops", status) is None  # another key's bucket
    clock.advance(0.05)  # 5 tokens
    assert gate.admit("gateway", calls_frame(*[wire.ServerStatus()] * 5)) is None
    assert gate.admit("gateway", status) is not None
    big = calls_frame(*[wire.ServerStatus()] * 51)
    clock.advance(10)
    refusal = gate.admit("gateway", big)
    assert refusal is not None
    assert "a frame of 51 exceeds the burst and is never accepted: split it" in refusal.message
    # A forbidden frame is charged too: probing costs tokens.
    assert gate.admit("gateway", calls_frame(*[wire.ServerSnapshot()] * 50)) is not None
    limited = gate.admit("gateway", status)
    assert limited is not None
    assert limited.code == Result.TOO_MANY_REQUESTS
    stats = gate.statistics()["gateway"]
    assert (stats.admitted, stats.forbidden, stats.limited, stats.tokens) == (3, 1, 5, 0)
    # An unreadable frame costs one token.
    clock.advance(0.01)
    assert gate.charge("gateway") is None
    assert gate.charge("gateway") is not None
    assert gate.charge("stranger") is not None
