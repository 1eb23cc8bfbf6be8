"""MSRP framing and To-Path/From-Path rewriting (RFC 4975 §7), sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcscf_alg.agw.msrp import (
    MAX_HEADER_BYTES,
    MsrpProtocolError,
    MsrpRewriter,
    path_maps,
    uri_key,
)

UE = "msrps://198.51.100.10:50000/ue1;tcp"
AGW_A = "msrps://203.0.113.20:40000/agwA;tcp"
CORE = "msrp://192.0.2.99:2855/peer9;tcp"
AGW_C = "msrp://192.0.2.20:40001/agwC;tcp"
UP, DOWN = path_maps(UE, AGW_A, CORE, AGW_C)


def send(tid: str, to: str, frm: str, body: bytes, flag: str = "$") -> bytes:
    return (
        (
            f"MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\nMessage-ID: m1\r\n"
            f"Byte-Range: 1-{len(body)}/{len(body)}\r\nContent-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n-------{tid}{flag}\r\n".encode()
    )


def response(tid: str, to: str, frm: str) -> bytes:
    return f"MSRP {tid} 200 OK\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\n-------{tid}$\r\n".encode()


def test_uri_key_rfc4975_comparison() -> None:
    assert uri_key("MSRPS://Host.Example:50000/abc;TCP") == uri_key(
        "msrps://host.example:50000/abc;tcp"
    )
    assert uri_key("msrp://h/abc;tcp") == uri_key("msrp://user@h:2855/abc;tcp;x=1")
    assert uri_key("msrp://h:1/abc;tcp") != uri_key("msrp://h:1/ABC;tcp")  # session-id is exact
    assert uri_key("msrp://h:1/abc;tcp") != uri_key("msrps://h:1/abc;tcp")  # scheme matters
    with pytest.raises(ValueError):
        uri_key("sip:alice@example.com")


def test_up_and_down_mapping() -> None:
    # UE -> core: a SEND addressed to the gateway (what the UE was told) and the core's reply.
    up = MsrpRewriter(UP).feed(send("a1b2c3", AGW_A, UE, b"hello"))
    assert up == send("a1b2c3", CORE, AGW_C, b"hello")
    down = MsrpRewriter(DOWN).feed(response("a1b2c3", AGW_C, CORE))
    assert down == response("a1b2c3", UE, AGW_A)
    # core -> UE SEND and the UE's reply.
    assert MsrpRewriter(DOWN).feed(send("zz99", AGW_C, CORE, b"x")) == send("zz99", UE, AGW_A, b"x")
    assert MsrpRewriter(UP).feed(response("zz99", AGW_A, UE)) == response("zz99", CORE, AGW_C)


def test_unknown_uris_and_other_headers_untouched() -> None:
    other = "msrp://10.0.0.1:1/elsewhere;tcp"
    msg = send("tid0001", other, UE, b"b")
    out = MsrpRewriter(UP).feed(msg)
    assert out == send("tid0001", other, AGW_C, b"b")


def test_chunked_transaction_and_continuation_flags() -> None:
    rw = MsrpRewriter(UP)
    msgs = [
        send("c001", AGW_A, UE, b"part1", "+"),
        send("c002", AGW_A, UE, b"part2", "$"),
        send("c003", AGW_A, UE, b"", "#"),
    ]
    out = rw.feed(b"".join(msgs))
    assert out == b"".join(
        [
            send("c001", CORE, AGW_C, b"part1", "+"),
            send("c002", CORE, AGW_C, b"part2", "$"),
            send("c003", CORE, AGW_C, b"", "#"),
        ]
    )
    assert rw.messages == 3


def test_body_with_near_end_lines_streams_through() -> None:
    body = b"-------c001 not the end\r\n-------c00\r\n-------c001x\r\n" * 10
    msg = send("c001", AGW_A, UE, body)
    assert MsrpRewriter(UP).feed(msg) == send("c001", CORE, AGW_C, body)


def test_large_body_is_not_buffered() -> None:
    rw = MsrpRewriter(UP)
    full = send("big1", AGW_A, UE, b"A" * 65536 * 64)
    head = full[: full.index(b"\r\n\r\n") + 4]
    out = rw.feed(head)
    chunk = b"A" * 65536
    total = len(out)
    for _ in range(64):  # 4 MiB of body
        piece = rw.feed(chunk)
        assert len(piece) >= 65536 - 64  # passes straight through, minus the held-back tail
        total += len(piece)
        assert len(rw._buf) < 64
    total += len(rw.feed(b"\r\n-------big1$\r\n"))
    assert rw.messages == 1
    assert total == len(send("big1", CORE, AGW_C, b"A" * 65536 * 64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12), st.binary(max_size=300))
def test_any_split_gives_same_bytes(cuts: list[int], body: bytes) -> None:
    body = body.replace(b"-------", b"")  # RFC 4975 §7.1: the sender keeps its end-line out
    stream = (
        send("s1x9", AGW_A, UE, body, "+")
        + response("r2y8", AGW_A, UE)
        + send("s3z7", AGW_A, UE, body[::-1])
    )
    expected = MsrpRewriter(UP).feed(stream)
    rw = MsrpRewriter(UP)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    out, prev = b"", 0
    for p in [*points, len(stream)]:
        out += rw.feed(stream[prev:p])
        prev = p
    assert out == expected
    assert rw.messages == 3


def test_every_single_byte_split() -> None:
    stream = send("abcd", AGW_A, UE, b"payload\r\n---") + response("efgh", AGW_A, UE)
    rw = MsrpRewriter(UP)
    out = b"".join(rw.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert out == send("abcd", CORE, AGW_C, b"payload\r\n---") + response("efgh", CORE, AGW_C)


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"MSRP x SEND\r\n",  # transaction id too short
        b"MSRP abcd SEND\r\nTo-Path: x\r\n-------abcd!\r\n",  # bad flag
    ],
)
def test_protocol_errors(junk: bytes) -> None:
    with pytest.raises(MsrpProtocolError):
        MsrpRewriter(UP).feed(junk)


def test_header_block_is_bounded() -> None:
    rw = MsrpRewriter(UP)
    rw.feed(b"MSRP abcd SEND\r\n")
    with pytest.raises(MsrpProtocolError, match="too large"):
        for _ in range(MAX_HEADER_BYTES // 100 + 2):
            rw.feed(b"X-Junk: " + b"y" * 90 + b"\r\n")
