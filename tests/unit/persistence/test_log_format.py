"""The on-disk layout of the log, pinned byte for byte (persistence/log_format.py)."""

from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from persistence.log_format import (
    COMMITTED_MAGIC,
    COMMITTED_SYNCED,
    CONSUMER_MAGIC,
    FRAME_HEADER_LENGTH,
    SEGMENT_HEADER_LENGTH,
    FormatError,
    append_frame,
    decode_frame_header,
    decode_segment_header,
    decode_seq_file,
    encode_segment_header,
    encode_seq_file,
    frame_crc,
    frame_length,
    frame_problem,
    parse_segment_name,
    segment_name,
)


def test_crc32c_is_the_castagnoli_polynomial() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value


def test_segment_names_are_twenty_digits() -> None:
    assert segment_name(1) == "00000000000000000001.log"
    assert parse_segment_name("00000000000000000042.log") == 42
    for other in (
        "42.log",
        "00000000000000000042.log.tmp",
        "committed",
        "0000000000000000004x.log",
    ):
        assert parse_segment_name(other) is None


def test_segment_header_layout() -> None:
    header = encode_segment_header(first_seq=5, max_record_bytes=4096)
    assert len(header) == SEGMENT_HEADER_LENGTH == 32
    magic, version, length, max_record, first_seq, crc, reserved = struct.unpack(
        "<8sHHIQII", header
    )
    assert (magic, version, length, max_record, first_seq, reserved) == (
        b"MATCHDLG",
        1,
        32,
        4096,
        5,
        0,
    )
    assert crc == crc32c(header[:24])
    assert decode_segment_header(header) == (5, 4096)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (0, "magic"),
        (8, "checksum"),
        (16, "checksum"),
        (24, "checksum"),
    ],
)
def test_segment_header_damage_is_refused(offset: int, message: str) -> None:
    header = bytearray(encode_segment_header(first_seq=5, max_record_bytes=4096))
    header[offset] ^= 0x10
    with pytest.raises(FormatError, match=message):
        decode_segment_header(header)


def test_segment_header_cut_short_is_refused() -> None:
    with pytest.raises(FormatError, match="truncated: 31 of 32"):
        decode_segment_header(encode_segment_header(1, 1)[:31])


def test_frame_layout_and_checksum_cover_the_length() -> None:
    buffer = bytearray()
    written = append_frame(buffer, seq=9, rtype=3, batch_index=2, payload=b"hello")
    assert written == len(buffer) == frame_length(5) == 32  # 24 + 5, padded to 8
    length, crc, seq, rtype, flags, batch_index = struct.unpack_from("<IIQHHI", buffer)
    assert (length, seq, rtype, flags, batch_index) == (5, 9, 3, 0, 2)
    assert buffer[FRAME_HEADER_LENGTH : FRAME_HEADER_LENGTH + 5] == b"hello"
    assert buffer[29:] == bytes(3)
    assert crc == crc32c(bytes(buffer[8:]), crc32c(bytes(buffer[:4])))
    assert frame_crc(memoryview(buffer), 0, 32) == crc
    header = decode_frame_header(buffer, 0)
    assert frame_problem(memoryview(buffer), 0, header, 9, 1) is None


@pytest.mark.parametrize("payload_length", [0, 1, 7, 8, 9, 100])
def test_frames_are_eight_byte_aligned(payload_length: int) -> None:
    buffer = bytearray()
    append_frame(buffer, 1, 1, 0, bytes(payload_length))
    assert len(buffer) % 8 == 0
    assert len(buffer) == frame_length(payload_length) >= FRAME_HEADER_LENGTH + payload_length


def test_a_checksummed_frame_can_still_be_invalid() -> None:
    buffer = bytearray()
    append_frame(buffer, 9, 3, 2, b"x")
    view = memoryview(buffer)
    header = decode_frame_header(buffer, 0)
    assert frame_problem(view, 0, header, 10, 1) == "sequence 9 where 10 was expected"
    assert frame_problem(view, 0, header, 9, 5) == "batch_index 2 follows batch_index 5"
    zero_type = bytearray()
    append_frame(zero_type, 9, 0, 0, b"x")
    assert frame_problem(memoryview(zero_type), 0, decode_frame_header(zero_type, 0), 9, -1) == (
        "record type 0"
    )


def test_seq_files_round_trip_and_refuse_damage() -> None:
    data = encode_seq_file(COMMITTED_MAGIC, 123, COMMITTED_SYNCED)
    assert len(data) == 24
    assert struct.unpack("<8sQII", data) == (b"MATCHDCM", 123, 1, crc32c(data[:20]))
    assert decode_seq_file(COMMITTED_MAGIC, data) == (123, COMMITTED_SYNCED)
    with pytest.raises(FormatError, match="magic"):
        decode_seq_file(CONSUMER_MAGIC, data)
    for offset in (9, 16):
        damaged = bytearray(data)
        damaged[offset] ^= 1
        with pytest.raises(FormatError, match="checksum"):
            decode_seq_file(COMMITTED_MAGIC, bytes(damaged))
    with pytest.raises(FormatError, match="23 bytes"):
        decode_seq_file(COMMITTED_MAGIC, data[:23])
