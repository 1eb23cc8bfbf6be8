"""StreamFramer limits (issue 11): a configurable message size, the oversize message reported
with its head (not raised) so the adapter can answer 513, and `partial` for the per-message
deadline."""

from __future__ import annotations

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.message import (
    MAX_HEADER_BLOCK,
    MAX_MESSAGE_SIZE,
    StreamFramer,
    parse_message,
    salvage_response,
)

HEAD = (
    "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-1\r\n"
    "From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
)


def message(body_len: int, head: str = HEAD) -> bytes:
    return (head + f"Content-Length: {body_len}\r\n\r\n").encode() + b"x" * body_len


def test_default_limit_is_the_old_one() -> None:
    f = StreamFramer()
    assert f.max_message == MAX_MESSAGE_SIZE and f.max_header == MAX_HEADER_BLOCK


def test_message_at_the_limit_frames_one_byte_over_is_reported() -> None:
    ok = message(100)
    limit = len(ok)
    f = StreamFramer(limit)
    assert f.max_header == min(MAX_HEADER_BLOCK, limit)
    assert f.feed(ok) == [ok] and f.too_large is None
    big = message(101)
    head = big[: big.index(b"\r\n\r\n") + 4]
    # the frames before the oversize one in the same read are still delivered
    assert f.feed(ok + big) == [ok]
    assert f.too_large == head
    assert f.buffered == 0 and not f.partial
    # the stream is over: whatever follows is discarded, not framed
    assert f.feed(ok) == [] and f.buffered == 0


def test_content_length_alone_decides_before_the_body_arrives() -> None:
    f = StreamFramer(4096)
    big = message(100_000)
    head = big[: big.index(b"\r\n\r\n") + 4]
    assert f.feed(head) == []  # no need to wait for (or buffer) 100 kB
    assert f.too_large == head
    resp = salvage_response(f.too_large, 513, "t")
    assert resp is not None and resp.status == 513 and resp.reason == "Message Too Large"
    assert parse_message(resp.serialize()).call_id == "c"


def test_endless_header_block_reports_whole_lines_only() -> None:
    f = StreamFramer(2048)
    assert f.feed(HEAD.encode()) == []
    assert f.partial
    pad = b"X-Pad: " + b"a" * 100 + b"\r\n"
    while f.too_large is None:
        assert f.feed(pad) == []
    head = f.too_large
    assert len(head) <= 2048 and head.endswith(b"\r\n") and head.startswith(HEAD.encode())
    # answerable: Via, From, To, Call-ID and CSeq came before the padding
    resp = salvage_response(head, 513, "t")
    assert resp is not None and resp.status == 513


def test_header_cut_mid_line_is_not_salvaged_as_complete() -> None:
    # The limit falls inside the Call-ID line: it must not be copied half into a response.
    head = "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK-2\r\nCall-ID: "
    limit = 1024
    f = StreamFramer(limit)
    f.feed((head + "c" * (limit * 2)).encode())
    assert f.too_large is not None
    assert b"Call-ID" not in f.too_large
    assert salvage_response(f.too_large, 513, "t") is None


def test_oversize_response_is_reported_too_and_never_answered() -> None:
    resp = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK-3\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:b@b>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 5000\r\n\r\n"
    )
    f = StreamFramer(2048)
    assert f.feed(resp) == []
    assert f.too_large == resp
    assert salvage_response(f.too_large, 513, "t") is None


def test_partial_tracks_a_message_in_progress() -> None:
    f = StreamFramer()
    assert not f.partial
    assert f.feed(b"\r\n") == [] and not f.partial  # half a keep-alive is not a message
    assert f.feed(b"\r\n") == [] and f.pings == 1 and not f.partial
    ok = message(3)
    assert f.feed(ok[:1]) == [] and f.partial
    assert f.feed(ok[1:]) == [ok] and not f.partial
    assert f.feed(ok + ok[:5]) == [ok] and f.partial  # the next one has begun


def test_framing_errors_still_raise() -> None:
    with pytest.raises(SipParseError, match="Conflicting"):
        StreamFramer(4096).feed(HEAD.encode() + b"Content-Length: 1\r\nl: 2\r\n\r\n")
