"""The ``[history]`` settings: defaults, every refusal with its message, the hidden
password and ``password_env`` (no MySQL needed)."""

from __future__ import annotations

import pickle
import secrets
from pathlib import Path

import msgspec
import pytest

from core.config import parse_config
from core.errors import ConfigError
from persistence.history_config import (
    MAX_BATCH_RECORDS,
    MAX_QUERY_POOL,
    MAX_QUERY_QUEUE,
    HistoryConfig,
    Secret,
    load_history_config,
)

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = secrets.token_urlsafe(16)
ENV_NAME = "MATCHD_HISTORY_PASSWORD"


def _load(body: str, **environ: str) -> HistoryConfig | None:
    return load_history_config(f"[engine]\nfee_user = 0\n\n[history]\n{body}\n", environ=environ)


def test_an_empty_table_gives_the_documented_defaults() -> None:
    config = _load("")

    assert config is not None
    assert config == HistoryConfig()
    assert (config.host, config.port, config.user, config.database) == (
        "127.0.0.1",
        3306,
        "root",
        "matchd",
    )
    assert config.password.reveal() == ""
    assert config.password_env is None
    assert (config.connect_timeout_s, config.query_timeout_s) == (5.0, 5.0)
    assert (config.batch_records, config.query_pool, config.query_queue) == (4096, 4, 40)
    assert (config.batch_interval_s, config.busy_duty, config.busy_max_lag_s) == (0.2, 0.25, 30)
    assert config.address() == "root@127.0.0.1:3306/matchd"


def test_no_history_table_means_not_configured() -> None:
    assert load_history_config("[engine]\nfee_user = 0\n") is None
    assert load_history_config("") is None


def test_every_setting_is_read() -> None:
    config = _load(
        'host = "db.internal"\nport = 3307\nuser = "matchd"\npassword = "pw"\n'
        'database = "hist_2"\nconnect_timeout_s = 2\nbatch_records = 100\n'
        "query_pool = 64\nquery_queue = 0\nquery_timeout_s = 0.25"
    )

    assert config == HistoryConfig(
        host="db.internal",
        port=3307,
        user="matchd",
        password=Secret("pw"),
        database="hist_2",
        connect_timeout_s=2.0,
        batch_records=100,
        query_pool=64,
        query_queue=0,
        query_timeout_s=0.25,
    )
    assert config.address() == "matchd@db.internal:3307/hist_2"


def test_the_default_config_file_has_the_default_history_and_still_parses() -> None:
    text = (ROOT / "etc" / "matchd.toml").read_text(encoding="utf-8")

    assert load_history_config(text) == HistoryConfig()
    assert parse_config(text).markets  # the engine's parser ignores [history]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("port = 0", "[history] port = 0 is outside 1..65535"),
        ("port = 65536", "[history] port = 65536 is outside 1..65535"),
        ("port = true", "[history] port must be an integer, not True"),
        ("port = 3306.0", "[history] port must be an integer, not 3306.0"),
        ('port = "3306"', "[history] port must be an integer, not '3306'"),
        ('host = ""', "[history] host = '' must be 1 to 255 printable characters"),
        ('host = " db"', "[history] host = ' db' must be 1 to 255 printable characters"),
        ("host = 1", "[history] host must be a string, not 1"),
        ('user = ""', "[history] user = '' must be 1 to 80 printable characters"),
        (f'user = "{"u" * 81}"', "must be 1 to 80 printable characters"),
        ("user = [1]", "[history] user must be a string, not [1]"),
        ("password = 5", "[history] password must be a string, not 5"),
        ("password_env = 5", "[history] password_env must be a string, not 5"),
        (
            'password_env = "1PW"',
            "[history] password_env = '1PW' is not an environment variable name",
        ),
        (
            'password_env = "MY-PW"',
            "[history] password_env = 'MY-PW' is not an environment variable name",
        ),
        (
            'database = "my-db"',
            "[history] database = 'my-db' must be 1 to 64 characters of A-Z a-z 0-9 _",
        ),
        ('database = ""', "[history] database = '' must be 1 to 64 characters"),
        (f'database = "{"d" * 65}"', "must be 1 to 64 characters of A-Z a-z 0-9 _"),
        ('database = "a`b"', "[history] database = 'a`b' must be 1 to 64 characters"),
        (
            "connect_timeout_s = 0",
            "[history] connect_timeout_s = 0.0 must be more than 0 and at most 3600 seconds",
        ),
        ("connect_timeout_s = -1.5", "[history] connect_timeout_s = -1.5 must be more than 0"),
        ("connect_timeout_s = inf", "[history] connect_timeout_s = inf must be more than 0"),
        ("connect_timeout_s = nan", "[history] connect_timeout_s = nan must be more than 0"),
        ("connect_timeout_s = 3601", "[history] connect_timeout_s = 3601.0 must be more"),
        (
            'connect_timeout_s = "5"',
            "[history] connect_timeout_s must be a number of seconds, not '5'",
        ),
        ("connect_timeout_s = false", "[history] connect_timeout_s must be a number of seconds"),
        ("query_timeout_s = 0.0", "[history] query_timeout_s = 0.0 must be more than 0"),
        ("batch_records = 0", f"[history] batch_records = 0 is outside 1..{MAX_BATCH_RECORDS}"),
        (
            f"batch_records = {MAX_BATCH_RECORDS + 1}",
            f"[history] batch_records = {MAX_BATCH_RECORDS + 1} is outside 1..",
        ),
        ("batch_interval_s = -0.1", "[history] batch_interval_s = -0.1 must be 0 to 60"),
        ("batch_interval_s = 61", "[history] batch_interval_s = 61.0 must be 0 to 60 seconds"),
        ("batch_interval_s = nan", "[history] batch_interval_s = nan must be 0 to 60"),
        ("batch_interval_s = true", "[history] batch_interval_s must be a number of seconds"),
        ("busy_duty = 0", "[history] busy_duty = 0.0 must be more than 0 and at most 1"),
        ("busy_duty = 1.5", "[history] busy_duty = 1.5 must be more than 0 and at most 1"),
        ('busy_duty = "half"', "[history] busy_duty must be a number, not 'half'"),
        ("busy_max_lag_s = 0", "[history] busy_max_lag_s = 0.0 must be more than 0"),
        ("query_pool = 0", f"[history] query_pool = 0 is outside 1..{MAX_QUERY_POOL}"),
        (
            f"query_pool = {MAX_QUERY_POOL + 1}",
            f"[history] query_pool = {MAX_QUERY_POOL + 1} is outside 1..{MAX_QUERY_POOL}",
        ),
        ("query_queue = -1", f"[history] query_queue = -1 is outside 0..{MAX_QUERY_QUEUE}"),
        (
            f"query_queue = {MAX_QUERY_QUEUE + 1}",
            f"[history] query_queue = {MAX_QUERY_QUEUE + 1} is outside 0..",
        ),
        ("query_pool = 1.5", "[history] query_pool must be an integer, not 1.5"),
        (
            "connect_timeout = 5",
            "[history] unknown setting 'connect_timeout' (known: host, port, user, password, ",
        ),
        ('password = "x"\npassword_env = "PW"', "[history] give password or password_env"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(body, PW="x")

    assert message in str(info.value)


def test_a_history_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"history must be a table \(\[history\]\)"):
        load_history_config("history = 1\n")


def test_invalid_toml_is_refused() -> None:
    with pytest.raises(ConfigError, match="config is not valid TOML"):
        load_history_config("[history\n")


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"\[history\] port = 0 is outside 1\.\.65535"):
        HistoryConfig(port=0)
    with pytest.raises(ConfigError, match=r"query_pool = 0 is outside"):
        msgspec.structs.replace(HistoryConfig(), query_pool=0)


def test_the_password_never_shows() -> None:
    config = _load(f'password = "{PASSWORD}"')

    assert config is not None
    assert config.password.reveal() == PASSWORD
    for text in (repr(config), str(config), repr(config.password), str(config.password)):
        assert PASSWORD not in text
    assert "password=Secret(<redacted>)" in repr(config)
    assert PASSWORD not in f"{config.password}"
    assert PASSWORD not in config.address()
    assert PASSWORD not in repr(msgspec.structs.asdict(config))
    with pytest.raises(TypeError, match="Secret"):
        msgspec.json.encode(config)
    with pytest.raises(TypeError, match="a Secret is not pickled"):
        pickle.dumps(config)


def test_a_plain_string_password_given_in_code_is_hidden_too() -> None:
    config = HistoryConfig(password=PASSWORD)  # type: ignore[arg-type]

    assert isinstance(config.password, Secret)
    assert config.password.reveal() == PASSWORD
    assert PASSWORD not in repr(config)
    assert config == HistoryConfig(password=Secret(PASSWORD))
    assert config != HistoryConfig(password=Secret(PASSWORD + "!"))


def test_password_env_supplies_the_password() -> None:
    config = _load(f'password_env = "{ENV_NAME}"', **{ENV_NAME: PASSWORD})

    assert config is not None
    assert config.password.reveal() == PASSWORD
    assert config.password_env == ENV_NAME
    assert PASSWORD not in repr(config)


def test_password_env_may_hold_an_empty_password() -> None:
    config = _load('password_env = "PW"\npassword = ""', PW="")

    assert config is not None
    assert config.password.reveal() == ""


def test_password_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MATCHD_TEST_HISTORY_PW", PASSWORD)

    config = load_history_config('[history]\npassword_env = "MATCHD_TEST_HISTORY_PW"\n')

    assert config is not None
    assert config.password.reveal() == PASSWORD


def test_password_env_naming_an_unset_variable_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        _load('password_env = "MATCHD_NO_SUCH_VARIABLE"')

    assert str(info.value) == (
        "[history] password_env names MATCHD_NO_SUCH_VARIABLE, which is not set in the environment"
    )
