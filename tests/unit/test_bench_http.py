"""``matchd-bench http``: its raw HTTP client's framing (partial reads, several
responses in one read, what it refuses), the requests it formats and the replies it
reads, and the tool in its quickest mode with each client against the gateway test
daemon, so the tool keeps working (its figures are not asserted, only the report's
shape)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.gateway_daemon import running_daemon
from tools.bench import main
from tools.bench_http import Connection, Plan, Tally
from tools.raw_http import HttpClientProtocol, HttpFailure, Target, parse_head

_PLAN = Plan("BTC_USDT", "0.0001", "100", "99", 1, 4)


def _response(body: bytes, status: str = "200 OK", headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b"
        b"Server: test\r\n\r\n%b" % (status.encode(), len(body), headers, body)
    )


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    close = abort


class _Listener:
    def __init__(self) -> None:
        self.responses: list[tuple[int, bytes, bool]] = []
        self.failures: list[str] = []

    def response(self, status: int, body: bytes, close: bool) -> None:
        self.responses.append((status, body, close))

    def failed(self, kind: str) -> None:
        self.failures.append(kind)


def _protocol(requests: int) -> tuple[HttpClientProtocol, _Transport, _Listener]:
    listener, transport = _Listener(), _Transport()
    protocol = HttpClientProtocol(listener)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for n in range(requests):
        protocol.send(b"request %d" % n)
    return protocol, transport, listener


def test_parse_head() -> None:
    head = _response(b"{}")[:-6]
    assert parse_head(head) == (200, 2, False)
    assert parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length:  17 ") == (404, 17, False)
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close") == (
        200,
        0,
        True,
    )
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 1") == (200, 1, True)
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive") == (
        200,
        1,
        False,
    )
    for bad, kind in (
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json", "no Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1", "bad Content-Length"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 1", "bad status line"),
        (b"SMTP ready\r\nContent-Length: 1", "bad status line"),
    ):
        with pytest.raises(HttpFailure) as raised:
            parse_head(bad)
        assert raised.value.kind == kind


def test_partial_reads_and_several_responses_in_one_read() -> None:
    protocol, transport, listener = _protocol(4)
    assert transport.written == [b"request 0", b"request 1", b"request 2", b"request 3"]
    big = b"[" + b",".join([b'{"error":null,"result":{"id":1},"id":5}'] * 500) + b"]"
    stream = (
        _response(b'{"a":1}')
        + _response(big)
        + _response(b"{}", "500 Internal Server Error")
        + _response(b"")
    )
    first = len(_response(b'{"a":1}'))
    for i in range(first + 10):  # the first response and a bit of the next, byte by byte
        protocol.data_received(stream[i : i + 1])
    assert listener.responses == [(200, b'{"a":1}', False)]
    rest = stream[first + 10 :]
    for i in range(0, 20_000, 1000):  # the big body in pieces
        protocol.data_received(rest[i : i + 1000])
    assert len(listener.responses) == 1
    protocol.data_received(rest[20_000:])  # the rest of it and two more, in one read
    assert listener.responses[1:] == [
        (200, big, False),
        (500, b"{}", False),
        (200, b"", False),
    ]
    assert listener.failures == []
    assert protocol.closed is None
    assert protocol.unanswered == 0
    assert not transport.aborted


def test_a_response_without_content_length_fails_the_connection() -> None:
    protocol, transport, listener = _protocol(1)
    protocol.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}")
    assert listener.responses == []
    assert listener.failures == ["no Content-Length"]
    assert protocol.closed == "no Content-Length"
    assert transport.aborted
    protocol.connection_lost(None)  # nothing is left to fail twice
    assert listener.failures == ["no Content-Length"]
    with pytest.raises(HttpFailure):
        protocol.send(b"again")


def test_connection_close_ends_the_connection_after_its_response() -> None:
    protocol, transport, listener = _protocol(2)
    protocol.data_received(_response(b"{}", headers=b"Connection: close\r\n"))
    assert listener.responses == [(200, b"{}", True)]
    assert listener.failures == ["Connection: close"]  # the second request's
    assert protocol.closed == "Connection: close"
    assert transport.aborted


def test_a_response_to_nothing_fails_the_connection() -> None:
    protocol, _, listener = _protocol(1)
    protocol.data_received(_response(b"1") + _response(b"2"))
    assert listener.responses == [(200, b"1", False)]
    assert protocol.closed == "unexpected response"
    assert listener.failures == []  # the one request was answered
    protocol, _, listener = _protocol(1)
    protocol.connection_lost(ConnectionResetError())
    assert listener.failures == ["connection lost"]


def test_the_raw_requests_are_the_aiohttp_client_commands() -> None:
    raw, dicts = Connection(_PLAN, 3), Connection(_PLAN, 3)
    target = Target.of("http://127.0.0.1:8080/rpc?x=1")
    for n in (1, 1, 1, 1, 7, 1, 100, 3):
        for conn in (raw, dicts):
            conn.resting.extend((11, 12))
        body, orders = raw.body(n)
        commands = dicts.commands(n)
        assert msgspec.json.decode(body) == (commands if n > 1 else commands[0])
        assert orders == sum(1 for c in commands if c["method"] == "order.put_limit")
        assert raw.resting == dicts.resting
        request = target.request(body)
        head, _, sent = request.partition(b"\r\n\r\n")
        assert sent == body
        assert head.split(b"\r\n") == [
            b"POST /rpc?x=1 HTTP/1.1",
            b"Host: 127.0.0.1:8080",
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
        ]


def _order(oid: int, left: str) -> dict[str, Any]:
    return {"id": oid, "market": "BTC_USDT", "left": left, "price": "99", "ctime": 1.5}


def test_the_raw_client_reads_replies_as_the_aiohttp_client() -> None:
    replies: list[Any] = [
        {"error": None, "result": _order(7, "0.0001"), "id": 6},  # a resting bid
        {"error": None, "result": _order(8, "0"), "id": 10},  # a resting bid, taken
        {"error": None, "result": _order(9, "0.0001"), "id": 5},  # an ask
        {"error": {"code": 10, "message": "order not found"}, "result": None, "id": 7},
        {"error": None, "result": _order(7, "0.0001"), "id": 11},  # a cancel
        [
            {"error": None, "result": _order(21, "0.0001"), "id": 14},
            {"error": {"code": 6, "message": "balance not enough"}, "result": None, "id": 18},
        ],
        {"error": {"code": 3, "message": "service timeout"}, "result": None, "id": None},
        {"error": None, "result": [1, 2], "id": 4},  # not an order: read as it is
    ]
    raw, dicts = Connection(_PLAN, 1), Connection(_PLAN, 1)
    raw_tally, dicts_tally = Tally(), Tally()
    for reply in replies:
        raw.note_body(msgspec.json.encode(reply), raw_tally)
        dicts.note(reply if isinstance(reply, list) else [reply], dicts_tally)
    assert list(raw.resting) == list(dicts.resting) == [7, 21]
    for tally in (raw_tally, dicts_tally):
        assert (tally.ok, tally.accepted) == (6, 5)
        assert tally.errors == {"10": 1, "6": 1, "3": 1}
    raw.note_body(b"<html>busy</html>", raw_tally)
    assert raw_tally.http_errors == {"not JSON": 1}


@pytest.mark.slow
@pytest.mark.integration
def test_http_benchmark_reports_every_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = {}
    with running_daemon(tmp_path, history=False, ws=None) as daemon:
        for client in ("raw", "aiohttp"):
            out = tmp_path / client
            code = main(
                [
                    "http", "--json", "--quick", "--duration", "0.3", "--batch", "10",
                    "--url", daemon.http_url, "--daemon-pid", str(daemon.process.pid),
                    "--out", str(out), *(["--client", client] if client != "raw" else []),
                ]
            )  # fmt: skip
            assert code == 0
            reports[client] = json.loads(capsys.readouterr().out)
            assert json.loads((out / "http.json").read_text()) == reports[client]
            # What the benchmark left: every deposit, and no resting order of its users.
            summary = daemon.ok("market.summary", "BTC_USDT")[0]
            assert (summary["bid_count"], summary["ask_count"]) == (0, 0)
    for client, report in reports.items():
        assert report["benchmark"] == "http"
        assert report["client"] == client
        assert report["market"] == "BTC_USDT"
        assert report["deposits"] == 2 * report["users"]
        cases = report["cases"]
        assert [(c["connections"], c["batch"]) for c in cases] == [
            (1, 1),
            (4, 1),
            (1, 10),
            (4, 10),
        ]
        for case in cases:
            assert case["orders_per_s"] > 0
            assert case["accepted"] <= case["orders"] <= case["commands"]
            assert case["commands"] == case["requests"] * case["batch"]
            assert case["errors"] == {}
            assert case["http_errors"] == {}
            latency = case["latency_us"]
            assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
            assert case["duration_s"] > 0
            cpu = case["cpu_seconds"]
            assert cpu["client"] >= 0
            assert case["client_cpu_us_per_request"] >= 0
            assert cpu["daemon"] is not None
            assert any(role.startswith("http-") for role in cpu["daemon_by_process"])
            assert case["busy"]["client"] >= 0
            assert 0 <= case["machine_busy"] <= 1
            assert isinstance(case["bound"], str)
