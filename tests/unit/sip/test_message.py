"""Unit tests of the SIP message model, parser, serializer, stream framer and header helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import (
    NameAddr,
    SipUri,
    Via,
    format_params,
    get_param,
    header_tag,
    parse_params,
)
from pcscf_alg.sip.message import (
    MAX_HEADER_BLOCK,
    MAX_HEADER_COUNT,
    MAX_MESSAGE_SIZE,
    Headers,
    SipMessage,
    StreamFramer,
    canonical,
    make_response,
    parse_message,
    split_list,
)
from tests.spec_examples import spec_examples

EXAMPLES = spec_examples()
INVITE = next(p for p in EXAMPLES if p.name.startswith("04_")).read_bytes()


def msg(
    *headers: str, start: str = "OPTIONS sip:bob@example.com SIP/2.0", body: str | None = None
) -> bytes:
    """A small valid message; with `body` (even "") it gets a Content-Length."""
    base = [
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:bob@example.com>",
        "Call-ID: c1@192.0.2.1",
        "CSeq: 1 " + start.split(" ")[0],
        "Max-Forwards: 70",
    ]
    lines = [start, *base, *headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode()


# ---- spec examples: byte-exact round trip ---------------------------------------------------


def test_there_are_ten_spec_examples() -> None:
    assert len(EXAMPLES) == 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_spec_example_round_trips_byte_exact(path: Path) -> None:
    data = path.read_bytes()
    m = parse_message(data)
    assert m.serialize() == data
    assert bytes(m) == data
    assert m.copy().serialize() == data
    # unknown headers and their order pass through: names in wire order, as spelled
    head = data[: data.index(b"\r\n\r\n")].decode().split("\r\n")[1:]
    assert [n for n, _ in m.headers] == [line.split(":", 1)[0] for line in head]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_spec_example_on_a_stream(path: Path) -> None:
    data = path.read_bytes()
    assert StreamFramer().feed(data) == [data]
    assert parse_message(data, datagram=False).serialize() == data


def test_invite_with_sdp_fields() -> None:
    m = parse_message(INVITE)
    assert m.is_request and m.method == "INVITE" and m.uri == "tel:+15551230002"
    assert m.cseq == (1, "INVITE")
    assert m.call_id == "8d2c61e0a3@198.51.100.10"
    assert len(m.body) == int(m.headers.get("content-length") or 0)
    assert m.body.startswith(b"v=0\r\n")
    assert m.short() == "INVITE tel:+15551230002"
    assert header_tag(m.headers.get("from")) == "a-77e1"
    assert header_tag(m.headers.get("to")) is None


# ---- compact forms -----------------------------------------------------------------------------


COMPACT = [
    ("v", "via"),
    ("i", "call-id"),
    ("f", "from"),
    ("t", "to"),
    ("m", "contact"),
    ("l", "content-length"),
    ("k", "supported"),
    ("c", "content-type"),
    ("s", "subject"),
    ("e", "content-encoding"),
    ("o", "event"),
    ("r", "refer-to"),
    ("b", "referred-by"),
    ("u", "allow-events"),
    ("x", "session-expires"),
]


@pytest.mark.parametrize(("short", "long"), COMPACT)
def test_compact_forms_canonicalise(short: str, long: str) -> None:
    assert canonical(short) == long
    assert canonical(short.upper()) == long
    assert canonical(long.upper()) == long


def test_compact_forms_are_found_by_long_name_and_kept_on_output() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"f: <sip:alice@example.com>;tag=1\r\n"
        b"t: <sip:bob@example.com>\r\n"
        b"i: abc@192.0.2.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"m: <sip:alice@192.0.2.1>\r\n"
        b"k: 100rel, timer\r\n"
        b"c: application/sdp\r\n"
        b"l: 4\r\n\r\nv=0\n"
    )
    m = parse_message(data)
    assert m.headers.get("Call-ID") == "abc@192.0.2.1"
    assert m.headers.get("VIA") == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"
    assert header_tag(m.headers.get("From")) == "1"
    assert m.headers.values("Supported") == ["100rel", "timer"]
    assert "content-type" in m.headers and "Contact" in m.headers
    assert m.body == b"v=0\n"
    assert m.serialize() == data
    # a new field added by its long name sits next to the compact ones
    m.headers.add_after_last("Contact", "<sip:x@y>", anchor="contact")
    assert m.headers.values("m") == ["<sip:alice@192.0.2.1>", "<sip:x@y>"]


# ---- multi-value headers -----------------------------------------------------------------


def test_values_split_list_headers_only() -> None:
    m = parse_message(
        msg(
            'Contact: "Doe, John" <sip:j@a.example.com>;q=0.5, <sip:k@b.example.com>',
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            "Route: <sip:p3.example.com;lr>",
            'Authorization: Digest username="a", realm="b"',
            "Date: Sat, 13 Nov 2010 23:29:00 GMT",
        )
    )
    h = m.headers
    assert h.values("contact") == [
        '"Doe, John" <sip:j@a.example.com>;q=0.5',
        "<sip:k@b.example.com>",
    ]
    assert h.values("route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]
    assert h.first_value("route") == "<sip:p1.example.com;lr>"
    assert h.count("route") == 2
    assert h.get_raw_all("route")[0] == "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"
    # not list headers: commas are part of the value
    assert h.values("authorization") == ['Digest username="a", realm="b"']
    assert h.values("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_split_list_honours_quotes_and_brackets() -> None:
    assert split_list('"a,\\"b" <sip:x;p=1,2>, c') == ['"a,\\"b" <sip:x;p=1,2>', "c"]
    assert split_list(" , a ,, b , ") == ["a", "b"]
    assert split_list("") == []
    assert split_list(">,<") == [">", "<"]


def test_pop_first_value_across_fields() -> None:
    h = parse_message(msg("Route: <sip:p1;lr>, <sip:p2;lr>", "Route: <sip:p3;lr>")).headers
    assert h.pop_first_value("route") == "<sip:p1;lr>"
    assert h.get_raw_all("route") == ["<sip:p2;lr>", "<sip:p3;lr>"]
    assert h.pop_first_value("route") == "<sip:p2;lr>"
    assert h.get_raw_all("route") == ["<sip:p3;lr>"]
    assert h.pop_first_value("route") == "<sip:p3;lr>"
    assert "route" not in h
    assert h.pop_first_value("route") is None


def test_replace_values_and_prepend() -> None:
    m = parse_message(msg("Record-Route: <sip:a;lr>", "X-Foo: 1", "Record-Route: <sip:b;lr>"))
    h = m.headers
    h.replace_values("record-route", ["<sip:c;lr>", "<sip:d;lr>"])
    assert h.get_raw_all("record-route") == ["<sip:c;lr>, <sip:d;lr>"]
    names = [n for n, _ in h]
    assert names.index("Record-Route") < names.index("X-Foo")  # kept at the first position
    h.replace_values("record-route", [])
    assert "record-route" not in h
    h.prepend("Via", "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKp")
    assert h.values("via")[0] == "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKp"
    assert next(iter(h))[0] == "Via"
    h.prepend("Route", "<sip:new;lr>")  # none yet: goes to the top
    assert next(iter(h))[0] == "Route"
    out = parse_message(m.serialize())
    assert out.headers.values("via")[1] == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776"


def test_set_remove_count_get_default() -> None:
    h = Headers()
    h.add("X-A", "1")
    h.add("x-a", "2")
    h.add("X-B", "3")
    assert h.count("X-A") == 2 and len(h) == 3
    h.set("X-A", "9")
    assert list(h) == [("X-A", "9"), ("X-B", "3")]
    h.set("X-C", "4")
    assert list(h)[-1] == ("X-C", "4")
    assert h.remove("x-b") == 1 and h.remove("x-b") == 0
    assert h.get("nope", "d") == "d"
    assert h.first_value("nope") is None
    c = h.copy()
    c.add("X-D", "5")
    assert "X-D" not in h


# ---- folding, whitespace, line ends ------------------------------------------------------


def test_folded_header_is_unfolded_and_forwarded_as_received() -> None:
    data = msg("Subject: first\r\n  second\r\n\tthird", "X-Empty:", "X-Tab:\tv ", body="")
    m = parse_message(data)
    assert m.headers.get("subject") == "first second third"
    assert m.headers.get("x-empty") == ""
    assert m.headers.get("x-tab") == "v"
    assert m.serialize() == data
    m.headers.set("subject", "new")
    assert b"Subject: new\r\n" in m.serialize()
    assert b"second" not in m.serialize()


def test_folded_value_of_a_parsed_field() -> None:
    m = parse_message(msg().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1\r\n OPTIONS"))
    assert m.cseq == (1, "OPTIONS")
    assert m.headers.get("cseq") == "1 OPTIONS"


def test_bare_lf_line_ends_are_accepted_and_written_as_crlf() -> None:
    data = msg(body="v=0")
    lf = data.replace(b"\r\n", b"\n")
    m = parse_message(lf)
    assert m.method == "OPTIONS" and m.body == b"v=0"
    assert b"\n" not in m.serialize().replace(b"\r\n", b"")[:-1]


def test_bare_cr_in_a_header_is_refused() -> None:
    with pytest.raises(SipParseError, match="Bare CR"):
        parse_message(msg("X-Evil: a\rVia: SIP/2.0/UDP evil"))


def test_leading_crlfs_are_ignored_and_body_less_message_without_blank_line() -> None:
    data = msg()
    assert parse_message(b"\r\n\r\n" + data).method == "OPTIONS"
    assert parse_message(data[:-2]).method == "OPTIONS"  # ends after the last header line
    with pytest.raises(SipParseError, match="Incomplete"):
        parse_message(data[:-4])


def test_continuation_before_any_header_is_refused() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n")


@pytest.mark.parametrize(
    "line", ["Bad Name: x", "Via", ": x", "X(y): z", "Na\x00me: v", "Na\u00e9me: v"]
)
def test_bad_header_lines(line: str) -> None:
    with pytest.raises(SipParseError):
        parse_message(msg(line))


# ---- start line, required fields, scalar checks ------------------------------------------------


@pytest.mark.parametrize(
    ("start", "status"),
    [
        ("OPTIONS sip:a@b SIP/3.0", 505),
        ("OPTIONS sip:a@b HTTP/1.1", 400),
        ("OPTIONS sip:a@b", 400),
        ("OPT<IONS sip:a@b SIP/2.0", 400),
        ("OPTIONS a@b SIP/2.0", 400),
        ("OPTIONS sip: SIP/2.0", 400),
        ("OPTIONS sips:a@b?x=y SIP/2.0", 400),
        ("SIP/2.0 99 Low", 400),
        ("SIP/2.0 700 High", 400),
        ("SIP/2.0 2x0 OK", 400),
        ("SIP/2.0 ²00 OK", 400),
        ("SIP/3.0 200 OK", 505),
        ("SIP/2.0", 400),
    ],
)
def test_bad_start_lines(start: str, status: int) -> None:
    data = msg().replace(msg().split(b"\r\n")[0], start.encode())
    with pytest.raises(SipParseError) as ei:
        parse_message(data)
    assert ei.value.status == status


def test_response_parses() -> None:
    data = msg(start="SIP/2.0 180 Ringing", body="").replace(b"CSeq: 1 SIP/2.0", b"CSeq: 1 INVITE")
    m = parse_message(data)
    assert not m.is_request and m.status == 180 and m.reason == "Ringing"
    assert m.cseq == (1, "INVITE") and m.short() == "180 Ringing"
    assert m.serialize() == data


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"CSeq: 1 OPTIONS", b"CSeq: 1 options", "CSeq method"),
        (b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS", "CSeq"),
        (b"CSeq: 1 OPTIONS", b"CSeq: 2147483648 OPTIONS", "out of range"),
        (b"CSeq: 1 OPTIONS", b"CSeq: " + b"9" * 5000 + b" OPTIONS", "out of range"),
        (b"CSeq: 1 OPTIONS", b"CSeq: \xc2\xb2 OPTIONS", "CSeq"),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", "Max-Forwards"),
        (b"Max-Forwards: 70", b"Max-Forwards: -1", "Max-Forwards"),
        (b"Call-ID: c1@192.0.2.1", b"Call-ID: ", "Call-ID"),
        (b"Call-ID: c1@192.0.2.1\r\n", b"", "Missing Call-ID"),
        (b"To: <sip:bob@example.com>", b'To: "Bob <sip:bob@example.com>', "Bad To"),
        (b"To: <sip:bob@example.com>", b"To: Bob, Jr <sip:bob@example.com>", "Bad To"),
        (b"To: <sip:bob@example.com>", b"To: bob@example.com", "Bad To"),
        (b"From: <sip:alice@example.com>;tag=a1", b"From: <sip:alice@example.com", "Bad From"),
        (b"Via: SIP/2.0/UDP 192.0.2.1:5060;", b"Via: SIP/2.0/UDP 192.0.2.1:99999999;", "Via"),
        (b"Via: SIP/2.0/UDP 192.0.2.1:5060;", b"Via: SIP/2.0 192.0.2.1:5060;", "Via"),
    ],
)
def test_checked_fields(old: bytes, new: bytes, reason: str) -> None:
    data = msg()
    assert old in data
    with pytest.raises(SipParseError, match=reason) as ei:
        parse_message(data.replace(old, new))
    assert ei.value.status == 400


def test_leading_zeros_and_tolerated_forms() -> None:
    data = msg().replace(b"Max-Forwards: 70", b"Max-Forwards: 0070")
    data = data.replace(b"CSeq: 1 OPTIONS", b"CSeq: 007 OPTIONS")
    m = parse_message(data)
    assert m.cseq == (7, "OPTIONS")
    # no Max-Forwards at all (RFC 2543 peers) is the forwarding logic's business
    assert parse_message(msg().replace(b"Max-Forwards: 70\r\n", b"")).method == "OPTIONS"


def test_cseq_property_raises_on_a_broken_edit() -> None:
    m = parse_message(msg())
    m.headers.set("cseq", "garbage")
    m.invalidate()
    with pytest.raises(SipParseError):
        _ = m.cseq


# ---- Content-Length on datagrams -------------------------------------------------------------


def test_datagram_body_cut_at_content_length_and_rewritten_on_output() -> None:
    data = msg(body="hello")
    m = parse_message(data + b"trailing junk")
    assert m.body == b"hello"
    m.body = b"hi"
    assert m.serialize().endswith(b"Content-Length: 2\r\n\r\nhi")
    m2 = parse_message(msg())  # no Content-Length on UDP: body is the rest, one is added
    assert m2.serialize().endswith(b"Content-Length: 0\r\n\r\n")
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        parse_message(msg(), datagram=False)


@pytest.mark.parametrize("value", [b"five", b"-1", b"1 2", b"\xd9\xa3", b"9" * 5000])
def test_bad_content_length(value: bytes) -> None:
    data = msg(body="x").replace(b"Content-Length: 1", b"Content-Length: " + value)
    with pytest.raises(SipParseError):
        parse_message(data)


# ---- limits ------------------------------------------------------------------------------------


def test_too_many_headers() -> None:
    room = MAX_HEADER_COUNT - 6
    ok = msg(*[f"X-H{i}: {i}" for i in range(room)])
    assert len(parse_message(ok).headers) == MAX_HEADER_COUNT
    with pytest.raises(SipParseError) as ei:
        parse_message(msg(*[f"X-H{i}: {i}" for i in range(room + 1)]))
    assert ei.value.status == 513
    # folded continuation lines do not count as fields
    folded = msg(*[f"X-H{i}: {i}\r\n more" for i in range(room)])
    assert len(parse_message(folded).headers) == MAX_HEADER_COUNT


def test_too_large_message() -> None:
    big = msg(body="x" * (MAX_MESSAGE_SIZE - len(msg(body="x")) - 5))
    assert len(big) <= MAX_MESSAGE_SIZE
    assert parse_message(big).body.startswith(b"x")
    with pytest.raises(SipParseError) as ei:
        parse_message(msg(body="x" * MAX_MESSAGE_SIZE))
    assert ei.value.status == 513


# ---- stream framing ----------------------------------------------------------------------------


TWO = EXAMPLES[0].read_bytes() + INVITE


def test_framer_split_at_every_byte_boundary() -> None:
    for cut in range(len(TWO) + 1):
        f = StreamFramer()
        frames = f.feed(TWO[:cut]) + f.feed(TWO[cut:])
        assert frames == [EXAMPLES[0].read_bytes(), INVITE], cut
        assert f.buffered == 0


def test_framer_byte_by_byte_and_all_at_once() -> None:
    f = StreamFramer()
    frames: list[bytes] = []
    for b in TWO * 2:
        frames += f.feed(bytes([b]))
    assert len(frames) == 4 and frames[1] == INVITE
    everything = b"".join(p.read_bytes() for p in EXAMPLES)
    assert StreamFramer().feed(everything) == [p.read_bytes() for p in EXAMPLES]


def test_framer_keepalive_pings_and_pongs() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == []
    assert f.pings == 1
    assert f.feed(b"\r\n") == []  # a pong, or the first half of a ping
    assert f.feed(b"\r\n") == []
    assert f.pings == 2
    assert f.feed(b"\r\n" + INVITE + b"\r\n\r\n") == [INVITE]  # pong before, ping after
    assert f.pings == 3 and f.buffered == 0


def test_framer_missing_or_conflicting_content_length_is_fatal() -> None:
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        StreamFramer().feed(msg())
    with pytest.raises(SipParseError, match="Conflicting"):
        StreamFramer().feed(msg("Content-Length: 1", "l: 2"))
    with pytest.raises(SipParseError):
        StreamFramer().feed(msg("Content-Length: x"))
    # the same value twice frames (parse_message then refuses the duplicate)
    frame = StreamFramer().feed(msg("Content-Length: 0", "l: 0"))
    with pytest.raises(SipParseError, match="Duplicate"):
        parse_message(frame[0], datagram=False)


def test_framer_folded_content_length() -> None:
    data = msg("Content-Length:\r\n 3") + b"abc"
    assert StreamFramer().feed(data) == [data]


def test_framer_oversize() -> None:
    # Reported, not raised (the adapter answers 513 from the head): tests/unit/sip/test_framer.py
    head = msg(f"Content-Length: {MAX_MESSAGE_SIZE}")
    f = StreamFramer()
    assert f.feed(head) == [] and f.too_large == head
    f = StreamFramer()
    f.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    for _ in range(MAX_HEADER_BLOCK // 1000 + 2):
        assert f.feed(b"X-Pad: " + b"a" * 991 + b"\r\n") == []
    assert f.too_large is not None and f.too_large.startswith(b"INVITE sip:a@b SIP/2.0\r\n")
    assert len(f.too_large) <= MAX_HEADER_BLOCK and f.buffered == 0


def test_framer_waits_for_the_body() -> None:
    data = msg(body="x" * 100)
    f = StreamFramer()
    assert f.feed(data[:-1]) == []
    assert f.buffered == len(data) - 1
    assert f.feed(data[-1:]) == [data]


# ---- make_response -------------------------------------------------------------------------------


def test_make_response_copies_the_right_fields() -> None:
    req = parse_message(INVITE)
    r = make_response(req, 100, "Trying")
    assert r.status == 100 and r.reason == "Trying" and not r.is_request
    assert [n for n, _ in r.headers] == ["Via", "From", "To", "Call-ID", "CSeq", "Content-Length"]
    assert r.headers.get("via") == req.headers.get("via")
    assert header_tag(r.headers.get("to")) is None
    out = parse_message(r.serialize())
    assert out.cseq == (1, "INVITE") and out.call_id == req.call_id


def test_make_response_with_tag_extra_and_body() -> None:
    req = parse_message(INVITE)
    r = make_response(
        req, 488, "Not Acceptable Here", to_tag="t-1", extra=[("Warning", '399 p "x"')], body=b"b"
    )
    assert header_tag(r.headers.get("to")) == "t-1"
    assert r.headers.get("warning") == '399 p "x"'
    assert r.serialize().endswith(b"Content-Length: 1\r\n\r\nb")
    tagged = make_response(
        parse_message(
            r.serialize()
            .replace(b"SIP/2.0 488 Not Acceptable Here", b"BYE sip:a@b SIP/2.0")
            .replace(b"1 INVITE", b"1 BYE")
        ),
        200,
        "OK",
        to_tag="other",
    )
    assert header_tag(tagged.headers.get("to")) == "t-1"  # an existing tag is kept


# ---- header helpers ------------------------------------------------------------------------------


def test_sip_uri_full() -> None:
    u = SipUri.parse("sip:alice:secret@Example.COM:5070;transport=TCP;lr?subject=hi&x=y")
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sip",
        "alice",
        "secret",
        "Example.COM",
        5070,
    )
    assert u.params == [("transport", "TCP"), ("lr", None)]
    assert u.headers == "?subject=hi&x=y"
    assert u.transport == "tcp" and u.has_param("LR") and u.param("lr") == ""
    assert str(u) == "sip:alice:secret@Example.COM:5070;transport=TCP;lr?subject=hi&x=y"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sips:[2001:db8::1]:5061;maddr=239.255.255.1", "[2001:db8::1]", 5061),
        ("sip:bob@[::1]", "[::1]", None),
        ("sip:192.0.2.4", "192.0.2.4", None),
        ("SIP:host.example.com:1", "host.example.com", 1),
    ],
)
def test_sip_uri_hosts(text: str, host: str, port: int | None) -> None:
    u = SipUri.parse(text)
    assert (u.host, u.port) == (host, port)
    assert SipUri.parse(str(u)) == u


def test_sip_uri_sips_and_tel() -> None:
    assert SipUri.parse("sips:bob@example.com").transport == "tls"
    t = SipUri.parse("tel:+15551230002;phone-context=ims.example.net")
    assert (t.scheme, t.user, t.host) == ("tel", "+15551230002", "")
    assert t.param("phone-context") == "ims.example.net"
    assert str(t) == "tel:+15551230002;phone-context=ims.example.net"


def test_sip_uri_userinfo_with_reserved_characters() -> None:
    u = SipUri.parse("sip:a?b;c=d:pw@host.example.com;p=1?h=v")
    assert (u.user, u.password, u.host, u.headers) == ("a?b;c=d", "pw", "host.example.com", "?h=v")


@pytest.mark.parametrize(
    "text",
    ["sip", ":x", "sip:", "sip:a@", "sip:h:0", "sip:h:65536", "sip:h:x", "sip:[::1", "sip:h:²"],
)
def test_sip_uri_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_name_addr_forms() -> None:
    n = NameAddr.parse('"Doe, John" <sip:j@example.com;lr>;tag=1;q=0.7')
    assert (n.display, n.uri, n.tag, n.param("Q")) == (
        '"Doe, John"',
        "sip:j@example.com;lr",
        "1",
        "0.7",
    )
    assert str(n) == '"Doe, John" <sip:j@example.com;lr>;tag=1;q=0.7'
    bare = NameAddr.parse("sip:j@example.com;tag=2")
    assert (bare.uri, bare.tag, bare.bracketed) == ("sip:j@example.com", "2", False)
    assert str(bare) == "<sip:j@example.com>;tag=2"
    tokens = NameAddr.parse("John Doe<tel:+1555>")
    assert (tokens.display, tokens.uri) == ("John Doe", "tel:+1555")
    quoted_lt = NameAddr.parse('"a <b>" <sip:c@d>')
    assert (quoted_lt.display, quoted_lt.uri) == ('"a <b>"', "sip:c@d")
    star = NameAddr.parse("*")
    assert star.uri == "*"


@pytest.mark.parametrize("text", ["", "<sip:a@b", "sip:a@b?h=1", ";tag=1"])
def test_name_addr_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_via_forms() -> None:
    v = Via.parse("SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKx;rport;received=2001:db8::1")
    assert (v.transport, v.host, v.port, v.branch) == ("TCP", "[2001:db8::9]", 5061, "z9hG4bKx")
    assert v.param("rport") == "" and v.param("received") == "2001:db8::1"
    v.set_param("rport", "5062")
    v.set_param("received", "192.0.2.9")
    v.set_param("alias", None)
    assert str(v) == (
        "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKx;rport=5062;received=192.0.2.9;alias"
    )
    lws = Via.parse(" sip / 2.0 / udp  host.example.com : 5060 ; branch = z9hG4bK1 ; ttl=1 ")
    assert (lws.transport, lws.host, lws.port, lws.branch) == (
        "UDP",
        "host.example.com",
        5060,
        "z9hG4bK1",
    )
    first = Via.parse('SIP/2.0/UDP a.example.com;x="1,2", SIP/2.0/TCP b.example.com')
    assert (first.host, first.param("x")) == ("a.example.com", '"1,2"')
    assert Via.parse("SIP/2.0/WSS h.invalid;branch=z9hG4bK").transport == "WSS"
    assert Via.parse(str(lws)) == lws


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 host",
        "HTTP/1.1/TCP host",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host:0",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP a b",
    ],
)
def test_via_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (None, None),
        ("", None),
        ("<sip:a@b>", None),
        ("<sip:a@b>;tag=x1", "x1"),
        ("<sip:a@b;tag=inuri>", None),
        ("<sip:a@b;tag=inuri>;tag=out", "out"),
        ("sip:a@b;TAG=Up", "Up"),
        ("<sip:a@b> ; tag = sp ; x=1", "sp"),
        ("<sip:a@b>;xtag=1", None),
        ("<sip:a@b>;foo=1;tag=2", "2"),
        ("<sip:a@b>;tag=", ""),
        ('"x>y" <sip:a@b>;tag=q', "q"),
    ],
)
def test_header_tag(value: str | None, tag: str | None) -> None:
    assert header_tag(value) == tag


def test_params_helpers() -> None:
    p = parse_params(';a=1; b ;c="x;y";D = 4')
    assert p == [("a", "1"), ("b", None), ("c", '"x;y"'), ("D", "4")]
    assert get_param(p, "d") == "4" and get_param(p, "b") == "" and get_param(p, "z") is None
    assert format_params(p) == ';a=1;b;c="x;y";D=4'
    assert parse_params("") == []


def test_message_object_api() -> None:
    m = SipMessage(headers=Headers(), method="OPTIONS", uri="sip:a@b")
    m.headers.add("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")
    m.headers.add("From", "<sip:x@y>;tag=1")
    m.headers.add("To", "<sip:a@b>")
    m.headers.add("Call-ID", "k")
    m.headers.add("CSeq", "3 OPTIONS")
    out = parse_message(m.serialize())
    assert out.cseq == (3, "OPTIONS") and out.headers.get("content-length") == "0"


def test_make_response_adds_to_tag_despite_a_tag_uri_parameter() -> None:
    # RFC 3261 §8.2.6.2: the response's To carries a tag; a `tag` URI parameter inside <...>
    # is not one (found by the transaction-layer review)
    from pcscf_alg.sip.message import make_response, parse_message

    req = parse_message(
        b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h;tag=urlparam>\r\nCall-ID: c\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert make_response(req, 486, "Busy", to_tag="xyz").headers.get("to") == (
        "<sip:b@h;tag=urlparam>;tag=xyz"
    )


def test_salvage_response_for_a_request_that_does_not_parse() -> None:
    from pcscf_alg.sip.message import salvage_response

    bad = (
        b"INVITE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nf: <sip:a@h>;tag=1\r\n"
        b"t: <sip:b@h>\r\ni: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: many\r\n\r\n"
    )
    resp = salvage_response(bad, 400, "t9")
    assert resp is not None and resp.status == 400
    assert resp.headers.get("to") == "<sip:b@h>;tag=t9" and resp.headers.get("call-id") == "c"
    assert salvage_response(b"SIP/2.0 200 OK\r\n\r\n", 400, "t") is None  # never answer responses
    assert salvage_response(bad.replace(b"i: c\r\n", b""), 400, "t") is None  # no Call-ID


# Issue 11 item 9: what a proxy must not forward (RFC 3261 §25.1): control characters outside
# a quoted-pair, a SIP Request-URI without a host or with a raw '@' in its user part.
_REQ = (
    "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
    "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x{cid}\r\nCSeq: 1 OPTIONS\r\n"
    "{extra}Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("uri", "cid", "extra", "reason"),
    [
        ("sip:@@@", "", "", "Bad Request-URI"),
        ("sip:bob@", "", "", "Bad Request-URI"),
        ("sip:a@b@c", "", "", "Bad Request-URI"),
        ("sip:h:abc", "", "", "Bad Request-URI"),
        ("sips:h:123456", "", "", "Bad Request-URI"),
        ("sip:[]", "", "", "Bad Request-URI"),
        ("sip:[::1]x", "", "", "Bad Request-URI"),
        ("sip:bob\x00@h", "", "", "Control character"),
        ("sip:bob@h", "\x00", "", "Control character"),
        ("sip:bob@h", "", "Subject: a\x07b\r\n", "Control character"),
        ("sip:bob@h", "", "Subject: a\x7fb\r\n", "Control character"),
        ("sip:bob@h", "", 'X-Q: "a\\"\x00\r\n', "Control character"),  # escaped quote, then NUL
    ],
)
def test_what_a_proxy_must_not_forward_is_refused(
    uri: str, cid: str, extra: str, reason: str
) -> None:
    data = _REQ.format(uri=uri, cid=cid, extra=extra).encode("utf-8", "surrogateescape")
    with pytest.raises(SipParseError) as ei:
        parse_message(data)
    assert ei.value.status == 400 and reason in ei.value.reason


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("sip:bob@h", ""),
        ("sip:a:pw@h:5060;transport=tcp", ""),
        ("sip:[2001:db8::1]:5060", ""),
        ("sips:[::1]", ""),
        ("tel:+4930123", ""),
        ("urn:service:sos", ""),
        ("sip:bob@h", 'X-Q: "a\\\x00b\\\x07"\tx\r\n'),  # quoted-pairs and HTAB are legal
    ],
)
def test_legal_targets_and_quoted_pairs_pass(uri: str, extra: str) -> None:
    msg = parse_message(_REQ.format(uri=uri, cid="", extra=extra).encode())
    assert msg.uri == uri
