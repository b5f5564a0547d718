"""``matchd``: the daemon's command line.

``matchd run --config etc/matchd.toml`` reads the config file and hands its text to
the daemon. Until the multi-process daemon lands (issue 4) that is ``daemon.demo``,
which runs the in-process engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

#: Exit code for a usage or config error (argparse uses 2 too).
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``matchd`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="matchd", description="matchd: matching engine for a cryptocurrency exchange"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the engine with a config file")
    run.add_argument("--config", type=Path, required=True, metavar="PATH", help="TOML config file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``matchd`` with ``argv`` (default: the process arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


def _run(config_path: Path) -> int:
    try:
        config_text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"matchd: cannot read config {config_path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Imported here so that `matchd --help` stays fast and does not compile kernels.
    from daemon.demo import run

    return run(config_text)


if __name__ == "__main__":
    raise SystemExit(main())
