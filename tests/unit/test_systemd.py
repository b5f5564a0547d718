"""The systemd unit renders into a unit systemd accepts, and its command line is one
``matchd`` accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon import cli

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "matchd.service.in"
ENV = ROOT / "systemd" / "matchd.env"


def rendered() -> str:
    return UNIT.read_text(encoding="utf-8").replace("@PREFIX@", str(ROOT))


def test_the_unit_is_a_notify_service_that_restarts_and_has_a_watchdog() -> None:
    lines = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in rendered().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["Restart"] == "always"
    assert lines["RestartSec"] == "1"
    assert int(lines["WatchdogSec"]) > 0
    assert lines["NoNewPrivileges"] == "yes"


def test_its_command_line_is_one_matchd_accepts() -> None:
    settings = dict(
        line.split("=", 1) for line in ENV.read_text().splitlines() if line and line[0] != "#"
    )
    exec_start = next(line for line in rendered().splitlines() if line.startswith("ExecStart="))
    command = exec_start.split("=", 1)[1]
    for name, value in settings.items():
        command = command.replace("${" + name + "}", value)
    # $MATCHD_OPTS (unbraced) is split into words; unset, it is none.
    example = "--workers per-market --snapshot-on-stop"
    assert f"#MATCHD_OPTS={example}" in ENV.read_text()
    for opts in ("", example):
        argv = shlex.split(command.replace("$MATCHD_OPTS", opts))
        assert argv[0] == str(ROOT / ".venv" / "bin" / "matchd")
        args = cli.build_parser().parse_args(argv[1:])
        assert args.command == "run"
        assert args.fsync == "batch"
        assert args.snapshot_on_stop == bool(opts)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "matchd.service"
    unit.write_text(rendered(), encoding="utf-8")
    done = subprocess.run(  # noqa: S603 -- a fixed command on our own file
        ["systemd-analyze", "verify", str(unit)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
