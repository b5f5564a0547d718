"""``matchd-loadgen``: drive a running matchd (or a ViaBTC server) with realistic traffic.

    matchd-loadgen [--transport http|zmq] [--url URL | --config PATH [--engine EP]]
                   [--model NAME|PATH] [--seed N] [--rate N | --closed]
                   [--duration S] [--processes N] [--in-flight N] [--connections N]
                   [--soak] [--json] [--out DIR] [--quiet]

A traffic model (``tools.loadgen_model``: market makers' ladders around a walking mid,
takers, cancels, deposits and withdrawals; ``--list-models``) runs in ``--processes``
generator processes (``tools.loadgen_worker``), each with its own users, seed and
connections, over ViaBTC's HTTP JSON-RPC (``--url``: matchd's gateway or ViaBTC's
accesshttp, the same command for both) or matchd's ZeroMQ order entry (``--config``:
the server's config, for its markets). Open loop at ``--rate`` calls/s in all
(latency from each call's intended send time: coordinated omission corrected) or
``--closed`` loop at the most ``--in-flight`` calls per process allow.

Live progress goes to stderr; at the end a JSON summary (rates, latency percentiles
overall and per method, errors by code, CPU of the generators and of the daemon's
processes when they run on this machine) goes to stdout with ``--json`` and, with
``--out DIR``, to ``DIR/loadgen.json`` beside ``DIR/loadgen.png`` (latency by
percentile, rate over time). ``--soak`` then checks the server's invariants through
its public API (``tools.loadgen_soak``) and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from tools.bench_args import non_negative_float, positive_float, positive_int

DEFAULT_URL = "http://127.0.0.1:8080/"
DEFAULT_CONFIG = Path("etc/matchd.toml")
EXIT_FAILED = 1
EXIT_USAGE = 2


def _rate(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive rate")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="matchd-loadgen",
        description="Drive a running matchd or ViaBTC server with a traffic model.",
    )
    add = p.add_argument
    add(
        "--transport",
        choices=("http", "zmq"),
        default="http",
        help="ViaBTC's HTTP JSON-RPC (default) or matchd's ZeroMQ order entry",
    )
    add("--url", default=DEFAULT_URL, help=f"the JSON-RPC URL (default {DEFAULT_URL})")
    add(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the server's config, for its markets (zmq)",
    )
    add(
        "--engine",
        default=None,
        metavar="ENDPOINT",
        help="the ZeroMQ order entry (default: the config's [http] engine)",
    )
    add(
        "--model",
        default="mm-takers",
        metavar="NAME|PATH",
        help="a named traffic model or a TOML file (default mm-takers)",
    )
    add("--list-models", action="store_true", help="print the named models and exit")
    add("--seed", type=int, default=1, help="the traffic's seed (default 1)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=_rate,
        default=Fraction(1000),
        help="open loop: calls per second in all (default 1000)",
    )
    pace.add_argument(
        "--closed",
        action="store_true",
        help="closed loop: as fast as --in-flight calls per process allow",
    )
    add(
        "--duration",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds of load (default 10)",
    )
    add(
        "--processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="generator processes (default 1)",
    )
    add(
        "--in-flight",
        type=positive_int,
        default=256,
        metavar="N",
        help="calls waiting at once per process (closed loop: senders) (default 256)",
    )
    add(
        "--connections",
        type=positive_int,
        default=32,
        metavar="N",
        help="HTTP keep-alive connections per process (default 32)",
    )
    add(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="a call unanswered this long fails as 'timeout' (default 10)",
    )
    add("--no-fund", action="store_true", help="skip the users' funding deposits")
    add(
        "--business-id-start",
        type=int,
        default=None,
        metavar="N",
        help="first balance.update business id (default: from the clock, unique per run)",
    )
    add(
        "--ws",
        default=None,
        metavar="URL",
        help="also read market data over ViaBTC's WebSocket at URL (e.g. ws://127.0.0.1:8090/)",
    )
    add(
        "--ws-sessions",
        type=positive_int,
        default=8,
        metavar="N",
        help="WebSocket sessions per process, each subscribed and querying (default 8)",
    )
    add(
        "--ws-query-interval",
        type=non_negative_float,
        default=1.0,
        metavar="S",
        help="seconds between a WebSocket session's queries; 0: back to back (default 1)",
    )
    add(
        "--soak",
        action="store_true",
        help="check the server's invariants after the run (it first cancels every order "
        "resting in the model's markets: use a server of your own)",
    )
    add(
        "--settle",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="soak: how long history and depth may take to catch up (default 30)",
    )
    add(
        "--daemon-pid",
        type=int,
        default=None,
        metavar="PID",
        help="the matchd whose CPU to report (default: every matchd process seen)",
    )
    add("--json", action="store_true", help="print the summary as JSON on stdout")
    add(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write DIR/loadgen.json and DIR/loadgen.png",
    )
    add("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.errors import ConfigError
    from tools.loadgen_model import MAX_USER_ID, MODELS, load_model

    if args.list_models:
        for name in sorted(MODELS):
            print(name)
        return 0
    try:
        model = load_model(args.model)
    except (ConfigError, OSError) as exc:
        print(f"matchd-loadgen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    block = model.makers + model.takers
    if model.first_user + args.processes * block - 1 > MAX_USER_ID:
        print(
            f"matchd-loadgen: {args.processes} processes of {block} users from "
            f"{model.first_user} go beyond user id {MAX_USER_ID}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from tools.loadgen_run import Run

    run = Run(args, model)
    summary = run.execute()
    if summary is None:
        return EXIT_FAILED
    text = json.dumps(summary, indent=2)
    if args.out is not None:
        from tools.loadgen_report import plot

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "loadgen.json").write_text(text + "\n", encoding="utf-8")
        plot(run.merged, args.out / "loadgen.png", run.title)
    if args.json:
        print(text)
    elif not args.quiet:
        print(run.closing_line(summary), file=sys.stderr)
    failed = summary["failed_processes"] or (summary["soak"] and not summary["soak"]["ok"])
    return EXIT_FAILED if failed else 0
