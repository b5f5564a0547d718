"""Many one-command frames at once (ipc/wire_batch.py): exactly the ordinary decoder's
verdicts and records, and byte for byte the ordinary encoder's replies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.schema import EVENT_DTYPE, RESULT_DTYPE
from ipc import wire
from ipc.wire import WireError, WireLimits
from ipc.wire_batch import (
    REPLY_PREFIX_DTYPE,
    REPLY_PREFIX_LENGTH,
    SINGLE_DTYPE,
    SINGLE_LENGTH,
    decode_singles,
    encode_single_results,
    encode_singles,
)
from tests.unit.ipc.test_wire import sample_commands


def test_layouts() -> None:
    assert SINGLE_DTYPE.itemsize == SINGLE_LENGTH == 120
    assert REPLY_PREFIX_DTYPE.itemsize == REPLY_PREFIX_LENGTH == 72


def reference_single(payload: bytes) -> wire.CommandsFrame | None:
    """The ordinary decoder's verdict: the frame if it is a one-command frame."""
    try:
        request = wire.decode_request(payload)
    except WireError:
        return None
    if isinstance(request, wire.CommandsFrame) and len(request.commands) == 1:
        return request
    return None


def single_frames(n: int) -> list[bytes]:
    cmds = sample_commands(n)
    return [
        wire.encode_commands(cmds[i : i + 1], 2**64 - 1 - i, events=bool(i % 2)) for i in range(n)
    ]


@pytest.mark.parametrize("events", [False, True])
def test_encode_singles_is_the_ordinary_encoder_byte_for_byte(events: bool) -> None:
    cmds = sample_commands(7)
    rids = np.array([0, 1, 5, 2**63, 2**64 - 1, 77, 3], dtype=np.uint64)
    frames = encode_singles(cmds, rids, events=events)
    assert frames.shape == (7, SINGLE_LENGTH)
    for i in range(7):
        expected = wire.encode_commands(cmds[i : i + 1], int(rids[i]), events=events)
        assert frames[i].tobytes() == expected


@st.composite
def request_mix(draw: st.DrawFn) -> list[bytes]:
    """Valid single frames, some with one byte changed or cut, and other frames."""
    frames = single_frames(draw(st.integers(1, 12)))
    out: list[bytes] = []
    for frame in frames:
        how = draw(st.sampled_from(["keep", "keep", "flip", "cut", "extend", "calls", "two"]))
        if how == "flip":
            at = draw(st.integers(0, SINGLE_LENGTH - 1))
            data = bytearray(frame)
            data[at] = draw(st.integers(0, 255))
            frame = bytes(data)
        elif how == "cut":
            frame = frame[: draw(st.integers(0, SINGLE_LENGTH - 1))]
        elif how == "extend":
            frame += bytes(draw(st.integers(1, 100)))
        elif how == "calls":
            frame = wire.encode_calls([wire.ServerStatus()], 7)
        elif how == "two":
            frame = wire.encode_commands(sample_commands(2), 9)
        out.append(frame)
    return out


@settings(max_examples=400, deadline=None)
@given(request_mix())
def test_decode_singles_agrees_with_the_ordinary_decoder(payloads: list[bytes]) -> None:
    singles = decode_singles(payloads)
    assert len(singles) == len(payloads)
    for i, payload in enumerate(payloads):
        expected = reference_single(payload)
        assert bool(singles.ok[i]) == (expected is not None), payload.hex()
        if expected is None:
            continue
        assert int(singles.request_ids[i]) == expected.request_id
        assert bool(singles.want_events[i]) == expected.want_events
        assert singles.commands[i].tobytes() == expected.commands.tobytes()
    assert singles.commands.flags.c_contiguous
    assert singles.commands.flags.writeable


def test_decode_singles_of_a_flipped_header_byte_is_never_ok() -> None:
    """Every header byte matters except the request id and the EVENTS flag bit."""
    (frame,) = single_frames(1)
    free = set(range(16, 24)) | {6}  # request id; flags byte 6 (bit 0 only, below)
    for at in range(32):
        for value in (0x00, 0x02, 0x80, 0xFF):
            data = bytearray(frame)
            if data[at] == value:
                continue
            data[at] = value
            verdict = bool(decode_singles([bytes(data)]).ok[0])
            expected = reference_single(bytes(data)) is not None
            assert verdict == expected, (at, value)
            if at not in free:
                assert not verdict, (at, value)


def sample_batch(counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Results of a batch whose command ``i`` made ``counts[i]`` events."""
    results = np.zeros(len(counts), dtype=RESULT_DTYPE)
    results["seq"] = np.arange(1, len(counts) + 1) * 11
    results["order_id"] = np.arange(len(counts)) * 7 + 3
    results["value"] = -np.arange(len(counts))
    results["code"] = [i % 3 for i in range(len(counts))]
    results["event_count"] = counts
    results["event_start"] = np.cumsum(counts) - counts
    events = np.zeros(sum(counts), dtype=EVENT_DTYPE)
    events["seq"] = np.arange(len(events)) + 100
    events["deal_id"] = np.arange(len(events)) * 5
    events["kind"] = np.arange(len(events)) % 5
    return results, events


def reference_reply(
    request_id: int, want: bool, result: np.ndarray, events: np.ndarray, limits: WireLimits
) -> bytes:
    """The reply the ordinary encoder makes for one command of a batch."""
    res = result.reshape(1).copy()
    first, n = int(res["event_start"][0]), int(res["event_count"][0])
    res["event_start"] = 0
    ev = events[first : first + n] if want else None
    return wire.encode_results(request_id, res, ev, limits=limits)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans(), st.integers(0, 2**64 - 1)), max_size=20),
    st.sampled_from([wire.DEFAULT_LIMITS, WireLimits(max_commands=1, max_reply_bytes=500)]),
)
def test_encode_single_results_is_the_ordinary_encoder_byte_for_byte(
    frames: list[tuple[int, bool, int]], limits: WireLimits
) -> None:
    counts = [c for c, _, _ in frames]
    want = np.array([w for _, w, _ in frames], dtype=bool)
    rids = np.array([r for _, _, r in frames], dtype=np.uint64)
    results, events = sample_batch(counts)
    buffer, offsets = encode_single_results(rids, want, results, events, limits)
    assert len(offsets) == len(frames) + 1
    assert offsets[0] == 0
    assert offsets[-1] == len(buffer)
    for i in range(len(frames)):
        got = buffer[offsets[i] : offsets[i + 1]].tobytes()
        expected = reference_reply(int(rids[i]), bool(want[i]), results[i], events, limits)
        assert got == expected, i


def test_encode_single_results_drops_events_beyond_the_reply_limit() -> None:
    results, events = sample_batch([1, 3])
    limits = WireLimits(max_commands=1, max_reply_bytes=72 + 2 * 184)
    buffer, offsets = encode_single_results(
        np.array([1, 2], dtype=np.uint64), np.array([True, True]), results, events, limits
    )
    first = wire.decode_reply(buffer[offsets[0] : offsets[1]].tobytes())
    second = wire.decode_reply(buffer[offsets[1] : offsets[2]].tobytes())
    assert isinstance(first, wire.ResultsFrame)
    assert isinstance(second, wire.ResultsFrame)
    assert len(first.events) == 1
    assert not first.events_dropped
    assert len(second.events) == 0
    assert second.events_dropped


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_sizes(n: int) -> None:
    payloads = single_frames(n) if n else []
    singles = decode_singles(payloads)
    assert int(singles.ok.sum()) == n
    results, events = sample_batch([2] * n)
    buffer, offsets = encode_single_results(
        singles.request_ids, singles.want_events, results, events, wire.DEFAULT_LIMITS
    )
    assert len(offsets) == n + 1
    assert offsets[-1] == len(buffer)
