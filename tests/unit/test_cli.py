"""The command lines: matchctl, matchd and matchd-bench, called in-process."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest

from core.config import parse_config
from daemon import cli
from tools import bench, matchctl

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "etc" / "matchd.toml"

BROKEN_CONFIG = """\
[[assets]]
name = "BTC"
prec = 8

[[markets]]
name = "BTC_DOGE"
stock = "BTC"
money = "DOGE"
stock_prec = 4
money_prec = 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matchd.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- config-check


def test_config_check_accepts_the_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_config(DEFAULT_CONFIG.read_text(encoding="utf-8"))

    code = matchctl.main(["config-check", "--config", str(DEFAULT_CONFIG)])

    out, err = capsys.readouterr()
    assert code == 0
    assert out == f"config OK: {len(config.assets)} assets, {len(config.markets)} markets\n"
    assert err == ""


def test_config_check_reports_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, BROKEN_CONFIG)

    code = matchctl.main(["config-check", "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == matchctl.EXIT_USAGE == 2
    assert out == ""
    assert "market BTC_DOGE: asset 'DOGE' is not defined in [[assets]]" in err
    assert str(path) in err


def test_config_check_reports_invalid_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "[[assets]\nname = \n")

    code = matchctl.main(["config-check", "--config", str(path)])

    assert code == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_config_check_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.toml"

    code = matchctl.main(["config-check", "--config", str(path)])

    assert code == 2
    assert f"cannot read config {path}" in capsys.readouterr().err


def test_matchctl_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        matchctl.main([])

    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


# --------------------------------------------------------------------------- markets


def test_markets_lists_every_market_of_the_default_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = matchctl.main(["markets", "--config", str(DEFAULT_CONFIG)])

    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert code == 0
    assert err == ""
    assert rows[0] == list(matchctl.MARKET_COLUMNS)
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["BTC_USDT"] == ["BTC_USDT", "BTC", "USDT", "6", "2", "4", "0.0001"]
    assert by_name["ETH_BTC"] == ["ETH_BTC", "ETH", "BTC", "4", "6", "4", "0.001"]
    config = parse_config(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    assert list(by_name) == [market.name for market in config.markets]


def test_markets_aligns_its_columns(capsys: pytest.CaptureFixture[str]) -> None:
    matchctl.main(["markets", "--config", str(DEFAULT_CONFIG)])

    header, *rows = capsys.readouterr().out.splitlines()
    starts = [header.index(column) for column in matchctl.MARKET_COLUMNS]
    for row in rows:
        ends = [*starts[1:], None]
        cells = [row[start:end].strip() for start, end in zip(starts, ends, strict=True)]
        assert cells == row.split()


def test_markets_refuses_a_broken_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, BROKEN_CONFIG)

    code = matchctl.main(["markets", "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "asset 'DOGE' is not defined" in err


# --------------------------------------------------------------------------- matchd run


def test_matchd_demo_hands_the_config_text_to_the_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[str] = []

    def fake_run(config_text: str) -> int:
        received.append(config_text)
        return 7

    monkeypatch.setitem(sys.modules, "daemon.demo", types.SimpleNamespace(run=fake_run))

    code = cli.main(["demo", "--config", str(DEFAULT_CONFIG)])

    assert code == 7
    assert received == [DEFAULT_CONFIG.read_text(encoding="utf-8")]


def test_matchd_run_reports_a_missing_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.toml"

    code = cli.main(["demo", "--config", str(path)])

    assert code == 2
    assert f"cannot read config {path}" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(path)]) == 2
    assert f"config {path}" in capsys.readouterr().err


# --------------------------------------------------------------------------- matchd-bench


def test_bench_core_hands_its_arguments_to_bench_core(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    received: list[argparse.Namespace] = []

    def fake_main(args: argparse.Namespace) -> int:
        received.append(args)
        return 0

    monkeypatch.setitem(sys.modules, "tools.bench_core", types.SimpleNamespace(main=fake_main))

    argv = ["core", "--json", "--commands", "5000", "--seed", "9", "--out", str(tmp_path)]
    code = bench.main(argv)

    assert code == 0
    (args,) = received
    assert (args.json, args.commands, args.seed, args.out) == (True, 5000, 9, tmp_path)


@pytest.mark.parametrize("argv", [["core", "--commands", "0"], ["core", "--seed", "x"], []])
def test_bench_refuses_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)

    assert exit_info.value.code == 2
    assert "usage: matchd-bench" in capsys.readouterr().err


# --------------------------------------------------------------------------- matchd keygen, --keys


def test_matchd_keygen_writes_a_key_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ipc.client_common import read_key_file

    code = cli.main(["keygen", "--out", str(tmp_path / "keys"), "gw-1"])

    out = capsys.readouterr().out
    public, secret = read_key_file(tmp_path / "keys" / "gw-1.key_secret")
    assert code == 0
    assert secret is not None
    assert f'public_key = "{public.decode()}"' in out
    assert secret.decode() not in out
    assert (tmp_path / "keys" / "gw-1.key_secret").stat().st_mode & 0o777 == 0o600
    assert cli.main(["keygen", "--out", str(tmp_path / "keys"), "gw-1"]) == 2
    assert "never overwrites" in capsys.readouterr().err


def test_matchd_serve_refuses_bad_keys_and_open_endpoints_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    serve = ["serve", "--config", str(DEFAULT_CONFIG), "--data-dir", str(data), "--metrics", ""]
    keys = tmp_path / "keys.toml"
    keys.write_text('[server]\nsecret_key_file = "absent"\n', encoding="utf-8")

    assert cli.main([*serve, "--keys", str(keys)]) == 2
    assert f"keys {keys}: [server]: secret_key_file" in capsys.readouterr().err
    monkeypatch.setenv(cli.KEYS_ENV, str(tmp_path / "absent.toml"))
    assert cli.main(serve) == 2
    assert "absent.toml: cannot read it" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(DEFAULT_CONFIG), "--data-dir", str(data)]) == 2
    assert "absent.toml: cannot read it" in capsys.readouterr().err
    monkeypatch.delenv(cli.KEYS_ENV)
    assert cli.main([*serve, "--endpoint", "tcp://0.0.0.0:7316"]) == 2
    assert "without a key registry (--keys)" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(DEFAULT_CONFIG), "--endpoint", "tcp://*:1"]) == 2
    assert "reachable from other machines" in capsys.readouterr().err
    assert not data.exists()  # refused before anything was created


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "banana"], "--workers must be 'per-market' or a number; got 'banana'"),
        (["--workers", "4"], "workers must be 1..3 for 3 markets; got 4"),
        (["--workers", "per-market", "--cpus", "0,x"], "--cpus must be numbers"),
        (["--workers", "1", "--cpus", "4096"], "--cpus 4096: this machine lets us use"),
    ],
)
def test_matchd_refuses_bad_worker_settings_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    data = tmp_path / "data"
    for command in ("serve", "run"):
        argv = [command, "--config", str(DEFAULT_CONFIG), "--data-dir", str(data)]
        assert cli.main([*argv, "--metrics", "", *flags]) == 2
        assert message in capsys.readouterr().err
    assert not data.exists()
