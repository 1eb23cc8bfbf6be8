"""The SDP inside SIP bodies, multipart ones included (pcscf_alg.sip.body, RFC 5621 / RFC 2046).

Python's `email` package, an independent MIME parser, is the oracle for where the SDP part is.
"""

from __future__ import annotations

import email.parser
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcscf_alg.sip.body import BodyError, is_multipart, locate_sdp, media_type, replace_sdp

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/SAVP 0\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC\r\n"
    b"a=3ge2ae:requested\r\na=sendrecv\r\n"
)
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@ims.test">\r\n'
    b"<tuple id=\"t1\"><status><geopriv/></status></tuple></presence>\r\n"
)

# An emergency INVITE body (RFC 6442): SDP + PIDF-LO, with preamble and epilogue.
EMERGENCY = (
    b"This is a multipart body.\r\n"
    b"--boundary1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + SDP + b"\r\n"
    b"--boundary1\r\n"
    b"Content-Type: application/pidf+xml\r\n"
    b"Content-ID: <target123@ims.test>\r\n"
    b"\r\n" + PIDF + b"\r\n"
    b"--boundary1--\r\n"
    b"epilogue\r\n"
)
EMERGENCY_TYPE = "multipart/mixed;boundary=boundary1"


def _oracle(content_type: str, body: bytes) -> list[bytes]:
    """The payloads of the application/sdp parts, as the stdlib's MIME parser sees them."""
    raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    out = []
    for part in msg.walk():
        if part.get_content_type() == "application/sdp":
            payload = part.get_payload(decode=False)
            out.append(payload.encode("utf-8", "surrogateescape"))
    return out


def test_plain_sdp_body_is_the_whole_body() -> None:
    loc = locate_sdp("application/sdp", SDP)
    assert loc is not None and (loc.start, loc.end) == (0, len(SDP))
    assert locate_sdp("Application/SDP ; charset=utf-8", SDP) is not None


@pytest.mark.parametrize("ctype", [None, "", "text/plain", "application/pidf+xml"])
def test_no_sdp(ctype: str | None) -> None:
    assert locate_sdp(ctype, SDP) is None
    assert locate_sdp("application/sdp", b"") is None


def test_emergency_body_sdp_part_found_and_replaced_keeping_the_rest() -> None:
    loc = locate_sdp(EMERGENCY_TYPE, EMERGENCY)
    assert loc is not None
    assert EMERGENCY[loc.start : loc.end] == SDP
    assert _oracle(EMERGENCY_TYPE, EMERGENCY) == [SDP]
    new = SDP.replace(b"RTP/SAVP", b"RTP/AVP").replace(b"a=3ge2ae:requested\r\n", b"")
    out = replace_sdp(EMERGENCY, loc, new)
    assert out == EMERGENCY.replace(SDP, new)
    # still a valid multipart, SDP and PIDF where they were
    loc2 = locate_sdp(EMERGENCY_TYPE, out)
    assert loc2 is not None and out[loc2.start : loc2.end] == new
    assert PIDF in out and out.startswith(b"This is a multipart body.\r\n")


def test_quoted_boundary_with_semicolon_and_lf_line_ends() -> None:
    body = (
        b"--a;b c\n"
        b"Content-Type: text/plain\n\nhello\n"
        b"--a;b c\n"
        b"content-type: APPLICATION/SDP\n\n" + SDP + b"\n"
        b"--a;b c--\n"
    )
    ctype = 'multipart/mixed; boundary="a;b c"'
    assert media_type(ctype) == ("multipart/mixed", {"boundary": "a;b c"})
    loc = locate_sdp(ctype, body)
    assert loc is not None and body[loc.start : loc.end] == SDP


def test_boundary_prefix_inside_a_part_is_not_a_delimiter() -> None:
    # "--b1x" starts with the delimiter "--b1" but is not one (RFC 2046 §5.1.1)
    body = (
        b"--b1\r\nContent-Type: text/plain\r\n\r\nline\r\n--b1x not a boundary\r\n"
        b"--b1\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b1--"
    )
    loc = locate_sdp("multipart/mixed; boundary=b1", body)
    assert loc is not None and body[loc.start : loc.end] == SDP


def test_nested_multipart_alternative_inside_mixed() -> None:
    inner = (
        b"--in\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--in--\r\n"
    )
    body = (
        b"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n" + inner + b"\r\n"
        b"--out\r\nContent-Type: application/pidf+xml\r\n\r\n" + PIDF + b"\r\n--out--\r\n"
    )
    loc = locate_sdp("multipart/mixed; boundary=out", body)
    assert loc is not None and body[loc.start : loc.end] == SDP
    assert [p.rstrip(b"\r\n") for p in _oracle("multipart/mixed; boundary=out", body)] == [
        SDP.rstrip(b"\r\n")
    ]


def test_part_content_length_is_kept_in_step() -> None:
    body = (
        b"--b\r\nContent-Type: application/sdp\r\nContent-Length: "
        + str(len(SDP)).encode()
        + b"\r\n\r\n" + SDP + b"\r\n--b--\r\n"
    )
    loc = locate_sdp("multipart/mixed;boundary=b", body)
    assert loc is not None and loc.length_span is not None
    out = replace_sdp(body, loc, b"v=0\r\n")
    assert b"Content-Length: 5\r\n\r\nv=0\r\n\r\n--b--" in out


def test_early_session_part_is_not_the_session_description() -> None:
    body = (
        b"--b\r\nContent-Type: application/sdp\r\nContent-Disposition: early-session\r\n\r\n"
        + SDP + b"\r\n--b\r\nContent-Type: application/sdp\r\n"
        b"Content-Disposition: session;handling=required\r\n\r\n" + SDP + b"\r\n--b--\r\n"
    )
    loc = locate_sdp("multipart/mixed;boundary=b", body)
    assert loc is not None
    assert body.index(b"session;handling") < loc.start


@pytest.mark.parametrize(
    ("ctype", "body", "status", "words"),
    [
        ("multipart/mixed", b"--b\r\n\r\nx\r\n--b--", 400, "boundary parameter"),
        ("multipart/mixed;boundary=b", b"no delimiter at all", 400, "without its boundary"),
        (
            "multipart/mixed;boundary=b",
            b"--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP,
            400,
            "closing boundary",
        ),
        (
            "multipart/mixed;boundary=b",
            b"--b\r\nContent-Type application/sdp\r\n\r\nv=0\r\n--b--",
            400,
            "malformed header",
        ),
        (
            "multipart/mixed;boundary=b",
            b"--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP
            + b"\r\n--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b--",
            488,
            "several SDP",
        ),
        (
            "multipart/mixed;boundary=b",
            b"--b\r\nContent-Type: application/sdp\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"dj0w\r\n--b--",
            488,
            "Content-Transfer-Encoding base64",
        ),
    ],
)
def test_bodies_we_refuse(ctype: str, body: bytes, status: int, words: str) -> None:
    with pytest.raises(BodyError) as exc:
        locate_sdp(ctype, body)
    assert exc.value.status == status
    assert words in exc.value.reason
    assert "inline" not in exc.value.reason  # never key material in a Warning


def test_nesting_is_bounded() -> None:
    body = b"v=0\r\n"
    for level in range(6):
        b = f"n{level}".encode()
        inner = f"multipart/mixed;boundary=n{level - 1}".encode()
        ctype = b"application/sdp" if level == 0 else inner
        head = b"--" + b + b"\r\nContent-Type: " + ctype + b"\r\n\r\n"
        body = head + body + b"\r\n--" + b + b"--"
    with pytest.raises(BodyError, match="nested too deeply"):
        locate_sdp("multipart/mixed;boundary=n5", body)


def test_is_multipart() -> None:
    assert is_multipart("Multipart/Mixed; boundary=x")
    assert not is_multipart("application/sdp")
    assert not is_multipart(None)


_PART_TYPES = ["text/plain", "application/pidf+xml", "application/resource-lists+xml"]


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(st.sampled_from(_PART_TYPES), max_size=3),
    after=st.lists(st.sampled_from(_PART_TYPES), max_size=3),
    boundary=st.text(alphabet="abcXYZ0123456789'()+_,-./:=?", min_size=1, max_size=40),
    crlf=st.booleans(),
    preamble=st.booleans(),
)
def test_sdp_part_located_as_the_stdlib_mime_parser_does(
    before: list[str], after: list[str], boundary: str, crlf: bool, preamble: bool
) -> None:
    eol = b"\r\n" if crlf else b"\n"
    sdp = SDP if crlf else SDP.replace(b"\r\n", b"\n")
    dash = b"--" + boundary.encode()

    def part(ctype: str, payload: bytes) -> bytes:
        return dash + eol + b"Content-Type: " + ctype.encode() + eol + eol + payload + eol

    body = b"preamble" + eol if preamble else b""
    for t in before:
        body += part(t, b"<x/>" + eol + b"--" + boundary.encode() + b"0 (not a delimiter)")
    body += part("application/sdp", sdp)
    for t in after:
        body += part(t, b"payload of " + t.encode())
    body += dash + b"--" + eol
    ctype = f'multipart/mixed; boundary="{boundary}"'
    loc = locate_sdp(ctype, body)
    assert loc is not None
    assert body[loc.start : loc.end] == sdp
    (oracle,) = _oracle(ctype, body)
    assert oracle.replace(b"\r\n", b"\n") == sdp.replace(b"\r\n", b"\n")
    # the splice keeps every other byte
    new = b"v=0" + eol
    out = replace_sdp(body, loc, new)
    assert out[: loc.start] == body[: loc.start]
    assert out[loc.start + len(new) :] == body[loc.end :]
