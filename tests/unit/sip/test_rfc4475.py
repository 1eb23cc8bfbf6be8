"""RFC 4475 "SIP Torture Test Messages", run through the proxy's parser.

The 49 messages live in data/rfc4475/<name>.dat, transcribed from the RFC text with CRLF line
ends and its <hex>, <allOneLine> and <repeat> notations expanded (see data/rfc4475/README.md).

Each case says what a PROXY's parser does with it:

* VALID: `parse_message` accepts it, serialising gives back the very same bytes (Content-Length
  aside, which is always rewritten to the real body length), and the fields a proxy routes on
  (method, Request-URI, top Via sent-by/branch, Call-ID, CSeq, From/To tags) read correctly.
  Some are marked "accepted": the RFC allows either a 400 or a liberal reading, or the problem
  is for a layer above parsing to act on; the comment says which and why.
* INVALID: `parse_message` raises SipParseError carrying the response status. For a request the
  daemon answers with that status (when it can: it needs a usable top Via); for a response it
  drops the message. Nothing else is ever raised, so the daemon stays up.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import NameAddr, SipUri, Via, header_tag
from pcscf_alg.sip.message import SipMessage, StreamFramer, parse_message

DATA = Path(__file__).parent / "data" / "rfc4475"


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


@dataclass
class Valid:
    """Expected key fields of a message the proxy's parser accepts."""

    method: str | None = None  # None for a response
    uri: str | None = None
    status: int = 0
    via: tuple[str, str, int | None, str | None] = ("UDP", "", None, None)  # top Via
    call_id: str = ""
    cseq: tuple[int, str] = (0, "")
    from_tag: str | None = None
    to_tag: str | None = None
    body_len: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Invalid:
    status: int
    reason: str  # a regex the SipParseError reason must match


LONG_BRANCH = "very" + "long" * 50 + "branchvalue"

CASES: dict[str, Valid | Invalid] = {
    # ---- 3.1.1 Valid messages: "parsers must accept" --------------------------------------
    # 3.1.1.1 wsinv. Folding everywhere (one fold starts with a TAB), LWS around ':' ';' '=',
    # empty Subject, compact and long forms of Via mixed, unknown headers, leading zeros.
    # RFC: all elements treat it as well formed; proxies forward the odd headers unchanged.
    "wsinv": Valid(
        "INVITE",
        "sip:vivekg@chair-dnrc.example.com;unknownparam",
        via=("UDP", "192.0.2.2", None, "390skdjuw"),
        call_id="wsinv.ndaksdj@192.0.2.1",
        cseq=(9, "INVITE"),
        from_tag="98asjd8",
        to_tag="1918181833n",
        body_len=150,
    ),
    # 3.1.1.2 intmeth. Method and tag/branch with every token character, quoted NUL/BEL/DEL in
    # the To display name, UTF-8 in a param and an unknown header. RFC: proxy forwards (or 404).
    "intmeth": Valid(
        "!interesting-Method0123456789_*+`.%indeed'~",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com",
        via=("TCP", "host1.example.com", None, "z9hG4bK-.!%66*_+`'~"),
        call_id="intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        cseq=(139122385, "!INTERESTING-METHOD0123456789_*+`.%INDEED'~"),
        from_tag="_token~1'+`*%!-.",
        to_tag=None,
    ),
    # 3.1.1.3 esc01. %-escapes in Request-URI, From/To userinfo and Contact params. RFC: parser
    # accepts; escapes are not ours to decode (a proxy forwards the URIs as they are).
    "esc01": Valid(
        "INVITE",
        "sip:sips%3Auser%40example.com@example.net",
        via=("UDP", "host5.example.net", None, "z9hG4bKkdjuw"),
        call_id="esc01.239409asdfakjkn23onasd0-3234",
        cseq=(234234, "INVITE"),
        from_tag="938",
        body_len=150,
    ),
    # 3.1.1.4 escnull. %00 in userinfo, two Contacts. RFC: parsers must accept.
    "escnull": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "host5.example.com", None, "z9hG4bKkdjuw"),
        call_id="escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        cseq=(14398234, "REGISTER"),
        from_tag="839923423",
    ),
    # 3.1.1.5 esc02. '%' is not an escape in a method or header name: RE%47IST%45R is an
    # unknown method and C%6Fntact an unknown header. RFC: parser accepts; proxy forwards.
    "esc02": Valid(
        "RE%47IST%45R",
        "sip:registrar.example.com",
        via=("TCP", "host.example.com", None, "z9hG4bK209%fzsnel234"),
        call_id="esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        cseq=(29344, "RE%47IST%45R"),
        from_tag="f232jadfj23",
    ),
    # 3.1.1.6 lwsdisp. No LWS between display name and '<'. RFC: accept (RFC 3261 erratum).
    "lwsdisp": Valid(
        "OPTIONS",
        "sip:user@example.com",
        via=("UDP", "funky.example.com", None, "z9hG4bKkdjuw"),
        call_id="lwsdisp.1234abcd@funky.example.com",
        cseq=(60, "OPTIONS"),
        from_tag="323",
    ),
    # 3.1.1.7 longreq. Very long values and 34 Via fields in mixed-case long/compact names.
    "longreq": Valid(
        "INVITE",
        "sip:user@example.com",
        via=("TCP", "sip33.example.com", None, None),
        call_id="longreq.one" + "really" * 20 + "longcallid",
        cseq=(3882340, "INVITE"),
        from_tag="1" + "298" * 50 + "2424",
        body_len=150,
    ),
    # 3.1.1.8 dblreq. A datagram holding a REGISTER (Content-Length 0) followed by bytes that
    # look like an INVITE. RFC 3261 §18.3: the extra octets are ignored and not forwarded.
    "dblreq": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "192.0.2.125", None, "z9hG4bKkdjuw23492"),
        call_id="dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        cseq=(8, "REGISTER"),
        from_tag="43251j3j324",
    ),
    # 3.1.1.9 semiuri. ';' inside the Request-URI user part. RFC: user is "user;par=u@...".
    "semiuri": Valid(
        "OPTIONS",
        "sip:user;par=u%40example.net@example.com",
        via=("UDP", "192.0.2.1", None, "z9hG4bKkdjuw"),
        call_id="semiuri.0ha0isndaksdj",
        cseq=(8, "OPTIONS"),
        from_tag="33242",
    ),
    # 3.1.1.10 transports. Via transports UDP, SCTP, TLS, UNKNOWN, TCP. RFC: accept.
    "transports": Valid(
        "OPTIONS",
        "sip:user@example.com",
        via=("UDP", "t1.example.com", None, "z9hG4bKkdjuw"),
        call_id="transports.kijh4akdnaqjkwendsasfdj",
        cseq=(60, "OPTIONS"),
        from_tag="323",
    ),
    # 3.1.1.11 mpart01. multipart body with a binary part holding NUL bytes: framing is by
    # Content-Length only. RFC: parsers must accept.
    "mpart01": Valid(
        "MESSAGE",
        "sip:kumiko@example.org",
        via=("UDP", "127.0.0.1", 5070, "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"),
        call_id="3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        cseq=(1, "MESSAGE"),
        from_tag="2fb0dcc9",
        body_len=553,
    ),
    # 3.1.1.12 unreason. Reason phrase with UTF-8. RFC: parser must accept.
    "unreason": Valid(
        status=200,
        via=("UDP", "192.0.2.198", None, "z9hG4bK1324923"),
        call_id="unreason.1234ksdfak3j2erwedfsASdf",
        cseq=(35, "INVITE"),
        from_tag="11141343",
        to_tag="2229",
        body_len=154,
    ),
    # 3.1.1.13 noreason. Empty reason phrase (the SP after the code is there). RFC: accept.
    "noreason": Valid(
        status=100,
        via=("UDP", "192.0.2.105", None, "z9hG4bK2398ndaoe"),
        call_id="noreason.asndj203insdf99223ndf",
        cseq=(35, "INVITE"),
        from_tag="39ansfi3",
        to_tag="902jndnke3",
    ),
    # ---- 3.1.2 Invalid messages ------------------------------------------------------------
    # 3.1.2.1 badinv01. Via "192.0.2.15;;,;,,": empty params and empty values. RFC: 400.
    # (The Contact ";;;;" is not the proxy's to check; the broken top Via is.)
    "badinv01": Invalid(400, "Via"),
    # 3.1.2.2 clerr. Content-Length 9999 > body. RFC: over UDP 400; on a stream, wait for more
    # (see test_clerr_on_a_stream_waits_for_more).
    "clerr": Invalid(400, "shorter than Content-Length"),
    # 3.1.2.3 ncl. Content-Length -999. RFC: respond with an error; over TCP close.
    "ncl": Invalid(400, "Content-Length"),
    # 3.1.2.4 scalar02. CSeq > 2**32-1, Max-Forwards 300, huge Expires. RFC: 400 for the CSeq.
    # We also refuse Max-Forwards > 255 (allowed: "could process as if absent"); Expires is
    # not looked at by the parser.
    "scalar02": Invalid(400, "CSeq number out of range"),
    # 3.1.2.5 scalarlg. A response with CSeq > 2**32-1. RFC: discard. (Dropped by the daemon.)
    "scalarlg": Invalid(400, "CSeq number out of range"),
    # 3.1.2.6 quotbal. Unterminated quote in To. RFC: 400 (inferring the quote is risky).
    "quotbal": Invalid(400, "Bad To"),
    # 3.1.2.7 ltgtruri. Request-URI in <>. RFC: "reasonable always to reject" with 400.
    "ltgtruri": Invalid(400, "Request-URI"),
    # 3.1.2.8 lwsruri. LWS inside the Request-URI. RFC: 400 (or ignore for unambiguous schemes);
    # we stay strict: the request line must be exactly three SP-separated parts.
    "lwsruri": Invalid(400, "request line"),
    # 3.1.2.9 lwsstart. Several SPs between start-line elements. RFC: acceptable to reject.
    "lwsstart": Invalid(400, "request line"),
    # 3.1.2.10 trws. SPs after SIP-Version. RFC: acceptable to reject.
    "trws": Invalid(400, "request line"),
    # 3.1.2.11 escruri. Escaped headers in a sip: Request-URI. RFC: acceptable to reject; a
    # proxy that does not must not forward them. We reject (no headers in a Request-URI).
    "escruri": Invalid(400, "Request-URI with headers"),
    # 3.1.2.15 baddn. Unquoted display names with ',' in From/To. RFC: reasonable to reject.
    "baddn": Invalid(400, "Bad From"),
    # 3.1.2.16 badvers. SIP/7.0. RFC: 505 Version Not Supported.
    "badvers": Invalid(505, "version"),
    # 3.1.2.17 mismatch01. OPTIONS with "CSeq: 8 INVITE". RFC: 400.
    "mismatch01": Invalid(400, "CSeq method"),
    # 3.1.2.18 mismatch02. Unknown method NEWMETHOD with "CSeq: 8 INVITE". RFC: 501 preferred,
    # 400 acceptable. The parser cannot tell "unknown" from "mismatched" without a method
    # list (a proxy forwards unknown methods, RFC 3261 §16.6), so it says 400 for any mismatch.
    "mismatch02": Invalid(400, "CSeq method"),
    # 3.1.2.19 bigcode. Status code 4294967301. RFC: drop the response. (Dropped.)
    "bigcode": Invalid(400, "status code"),
    # 3.1.2.12 baddate: "Date: ... EST" (only GMT is legal). RFC: do not reject unless the Date
    # matters to processing. It does not to a proxy: accepted and forwarded as is.
    "baddate": Valid(
        "INVITE",
        "sip:user@example.com",
        via=("UDP", "host.example.com", None, "z9hG4bKkdjuw"),
        call_id="baddate.239423mnsadf3j23lj42--sedfnm234",
        cseq=(1392934, "INVITE"),
        from_tag="2234923",
        body_len=150,
    ),
    # 3.1.2.13 regbadct: Contact URI with escaped headers but no <>. RFC: reasonable to 400.
    # Accepted by the parser (Contact is not routed on); the registration layer parses the
    # Contact with NameAddr.parse, which refuses it (test_regbadct_contact_is_refused...).
    "regbadct": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "135.180.130.133", 5060, "z9hG4bKkdjuw"),
        call_id="regbadct.k345asrl3fdbv@10.0.0.1",
        cseq=(1, "REGISTER"),
        from_tag="998332",
    ),
    # 3.1.2.14 badaspec: spaces inside <> in To. RFC: must not break; 400 reasonable, liberal
    # elements may ignore the spaces. Accepted (liberal): To is forwarded untouched and
    # NameAddr.parse trims the spaces.
    "badaspec": Valid(
        "OPTIONS",
        "sip:user@example.org",
        via=("UDP", "host4.example.com", 5060, "z9hG4bKkdju43234"),
        call_id="badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
        cseq=(3923239, "OPTIONS"),
        from_tag="433423",
    ),
    # ---- 3.2 Transaction layer semantics ---------------------------------------------------
    # 3.2.1 badbranch: branch is just the magic cookie. RFC: a parser must not break; the
    # transaction layer may 400 or fall back to RFC 2543 matching. Syntactically valid here.
    "badbranch": Valid(
        "OPTIONS",
        "sip:user@example.com",
        via=("UDP", "192.0.2.1", None, "z9hG4bK"),
        call_id="badbranch.sadonfo23i420jv0as0derf3j3n",
        cseq=(8, "OPTIONS"),
        from_tag="33242",
    ),
    # ---- 3.3 Application-layer semantics ---------------------------------------------------
    # 3.3.1 insuf: no Call-ID, From, Max-Forwards or To. RFC: 400. The proxy needs them all but
    # Max-Forwards (tolerated for RFC 2543 peers, see inv2543) at parse time.
    "insuf": Invalid(400, "Missing"),
    # 3.3.2 unkscm: unknown Request-URI scheme. RFC: parser must accept; an element answers
    # 416. That is the routing layer's call (it knows which schemes it can route), not the
    # parser's.
    "unkscm": Valid(
        "OPTIONS",
        "nobodyKnowsThisScheme:totallyopaquecontent",
        via=("TCP", "host9.example.com", None, "z9hG4bKkdjuw39234"),
        call_id="unkscm.nasdfasser0q239nwsdfasdkl34",
        cseq=(3923423, "OPTIONS"),
        from_tag="384",
    ),
    # 3.3.3 novelsc: registered but unusual scheme (soap.beep). RFC: accept; 416 or 404 above.
    "novelsc": Valid(
        "OPTIONS",
        "soap.beep://192.0.2.103:3002",
        via=("TCP", "host9.example.com", None, "z9hG4bKkdjuw39234"),
        call_id="novelsc.asdfasser0q239nwsdfasdkl34",
        cseq=(3923423, "OPTIONS"),
        from_tag="384",
    ),
    # 3.3.4 unksm2: isbn:/http:/name: URIs in To/From/Contact. RFC: parsers must not fail;
    # proxies treat it as any request; a registrar says 400 (AOR must be sip/sips).
    "unksm2": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "192.0.2.21", 5060, "z9hG4bKkdjuw"),
        call_id="unksm2.daksdj@hyphenated-host.example.com",
        cseq=(234902, "REGISTER"),
        from_tag="3234233",
    ),
    # 3.3.5 bext01: unknown Require and Proxy-Require options. RFC: a proxy answers 420 for
    # Proxy-Require (RFC 3261 §16.3 step 5), above the parser.
    "bext01": Valid(
        "OPTIONS",
        "sip:user@example.com",
        via=("TLS", "fold-and-staple.example.com", None, "z9hG4bKkdjuw"),
        call_id="bext01.0ha0isndaksdj",
        cseq=(8, "OPTIONS"),
        from_tag="242etr",
    ),
    # 3.3.6 invut: body of unknown type. RFC: a proxy processes it like any INVITE; an
    # endpoint answers 415. (The P-CSCF's SDP layer decides; the parser just frames it.)
    "invut": Valid(
        "INVITE",
        "sip:user@example.com",
        via=("UDP", "somehost.example.com", None, "z9hG4bKkdjuw"),
        call_id="invut.0ha0isndaksdjadsfij34n23d",
        cseq=(235448, "INVITE"),
        from_tag="8392034",
        body_len=40,
    ),
    # 3.3.7 regaut01: Authorization with an unknown scheme. RFC: a proxy forwards it unchanged.
    "regaut01": Valid(
        "REGISTER",
        "sip:example.com",
        via=("TCP", "192.0.2.253", None, "z9hG4bKkdjuw"),
        call_id="regaut01.0ha0isndaksdj",
        cseq=(9338, "REGISTER"),
        from_tag="87321hj23128",
    ),
    # 3.3.8 multi01: several Call-ID, CSeq, From, To, Max-Forwards. RFC: 400.
    "multi01": Invalid(400, "Duplicate"),
    # 3.3.9 mcl01: two different Content-Lengths. RFC: error (UDP: discard; TCP: close).
    "mcl01": Invalid(400, "Duplicate Content-Length"),
    # 3.3.10 bcast: a response whose 2nd Via sent-by is 255.255.255.255. RFC: well formed;
    # a proxy should drop it rather than forward to broadcast: the response-routing layer's
    # job (it resolves the next Via), not the parser's.
    "bcast": Valid(
        status=200,
        via=("UDP", "192.0.2.198", None, "z9hG4bK1324923"),
        call_id="bcast.0384840201234ksdfak3j2erwedfsASdf",
        cseq=(35, "INVITE"),
        from_tag="11141343",
        to_tag="2229",
        body_len=154,
    ),
    # 3.3.11 zeromf: Max-Forwards 0. RFC: legal; a proxy answers 483 (above the parser).
    "zeromf": Valid(
        "OPTIONS",
        "sip:user@example.com",
        via=("UDP", "host1.example.com", None, "z9hG4bKkdjuw2349i"),
        call_id="zeromf.jfasdlfnm2o2l43r5u0asdfas",
        cseq=(39234321, "OPTIONS"),
        from_tag="3ghsd41",
    ),
    # 3.3.12 cparam01: addr-spec Contact: ";unknownparam" is a contact-param, not a URI param.
    "cparam01": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "saturn.example.com", 5060, "z9hG4bKkdjuw"),
        call_id="cparam01.70710@saturn.example.com",
        cseq=(2, "REGISTER"),
        from_tag="DkfVgjkrtMwaerKKpe",
    ),
    # 3.3.13 cparam02: the same parameter inside <>: a URI param.
    "cparam02": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "saturn.example.com", 5060, "z9hG4bKkdjuw"),
        call_id="cparam02.70710@saturn.example.com",
        cseq=(3, "REGISTER"),
        from_tag="838293",
    ),
    # 3.3.14 regescrt: Contact URI with escaped Route header, properly in <>. RFC: valid.
    "regescrt": Valid(
        "REGISTER",
        "sip:example.com",
        via=("UDP", "host5.example.com", None, "z9hG4bKkdjuw"),
        call_id="regescrt.k345asrl3fdbv@192.0.2.1",
        cseq=(14398234, "REGISTER"),
        from_tag="8",
    ),
    # 3.3.15 sdp01: Accept lists only an unknown type but the body is SDP. RFC: the UAS
    # answers 406/415; a proxy forwards.
    "sdp01": Valid(
        "INVITE",
        "sip:user@example.com",
        via=("UDP", "192.0.2.15", None, "z9hG4bKkdjuw"),
        call_id="sdp01.ndaksdj9342dasdd",
        cseq=(8, "INVITE"),
        from_tag="234",
        body_len=150,
    ),
    # ---- 3.4 Backward compatibility --------------------------------------------------------
    # 3.4.1 inv2543: RFC 2543 INVITE: no branch, no From tag, no Content-Length (datagram: the
    # body is the rest), no Max-Forwards. RFC: accept for backward compatibility.
    "inv2543": Valid(
        "INVITE",
        "sip:UserB@example.com",
        via=("UDP", "iftgw.example.com", None, None),
        call_id="inv2543.1717@ift.client.example.com",
        cseq=(56, "INVITE"),
        from_tag=None,
        body_len=105,
    ),
}


def test_every_rfc_message_is_in_the_table() -> None:
    names = {p.stem for p in DATA.glob("*.dat")}
    assert len(names) == 49  # 13 + 19 + 1 + 15 + 1 test cases in RFC 4475 §3
    assert names == set(CASES)


def _expected_wire(name: str, data: bytes, msg: SipMessage) -> bytes:
    """What a byte-exact serialiser gives for `data`: the message cut at Content-Length
    (dblreq), with a Content-Length line appended where there was none (inv2543)."""
    head_end = data.index(b"\r\n\r\n")
    end = head_end + 4 + len(msg.body)
    wire = data[:end]
    if msg.headers.get("content-length") is None:
        wire = wire[:head_end] + f"\r\nContent-Length: {len(msg.body)}".encode() + wire[head_end:]
    return wire


VALID = sorted(k for k, v in CASES.items() if isinstance(v, Valid))
INVALID = sorted(k for k, v in CASES.items() if isinstance(v, Invalid))


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    exp = CASES[name]
    assert isinstance(exp, Valid)
    data = load(name)
    msg = parse_message(data)
    # round trip: identical bytes (folding, odd spacing, compact forms, order all kept)
    assert msg.serialize() == _expected_wire(name, data, msg)
    # and the re-serialised form parses to the same thing
    again = parse_message(msg.serialize())

    def no_cl(m: SipMessage) -> list[tuple[str, str]]:
        return [(n, v) for n, v in m.headers if n.lower() not in ("content-length", "l")]

    assert no_cl(again) == no_cl(msg)
    assert again.body == msg.body
    # key fields
    assert msg.method == exp.method
    assert msg.uri == exp.uri
    assert msg.status == exp.status
    top = Via.parse(msg.headers.first_value("via") or "")
    assert (top.transport, top.host, top.port, top.branch) == exp.via
    assert msg.call_id == exp.call_id
    assert msg.cseq == exp.cseq
    assert header_tag(msg.headers.get("from")) == exp.from_tag
    assert header_tag(msg.headers.get("to")) == exp.to_tag
    assert len(msg.body) == exp.body_len


@pytest.mark.parametrize("name", INVALID)
def test_invalid_message_is_refused_with_a_status(name: str) -> None:
    exp = CASES[name]
    assert isinstance(exp, Invalid)
    with pytest.raises(SipParseError) as ei:
        parse_message(load(name))
    assert ei.value.status == exp.status
    assert re.search(exp.reason, ei.value.reason, re.IGNORECASE), ei.value.reason


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_message_survives_a_stream_byte_by_byte(name: str) -> None:
    """On TCP the framer never raises anything but SipParseError, whatever the message."""
    framer = StreamFramer()
    frames: list[bytes] = []
    try:
        for b in load(name):
            frames += framer.feed(bytes([b]))
    except SipParseError:
        return
    for frame in frames:
        with contextlib.suppress(SipParseError):
            parse_message(frame, datagram=False)


# ---- details of particular cases ---------------------------------------------------------


def test_wsinv_details() -> None:
    msg = parse_message(load("wsinv"))
    h = msg.headers
    # three Via values across a long-form and a compact-form field, in order
    vias = [Via.parse(v) for v in h.values("via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert [name for name, _ in h][-2] == "v"  # compact name kept as received
    assert h.get("subject") == ""  # "s :" is an empty Subject
    assert h.get("newfangledheader") == "newfangled value continued newfangled value"
    assert h.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert h.get("max-forwards") == "0068"
    contact = NameAddr.parse(h.values("contact")[0])
    assert contact.display == '"Quoted string \\"\\""'
    assert contact.params == [("newparam", "newvalue"), ("secondparam", None), ("q", "0.33")]
    assert NameAddr.parse(h.get("from") or "").display == '"J Rosenberg \\\\\\""'
    assert SipUri.parse(msg.uri or "").params == [("unknownparam", None)]


def test_wsinv_edited_fields_are_rewritten_the_others_kept() -> None:
    msg = parse_message(load("wsinv"))
    msg.headers.set("cseq", "10 INVITE")
    out = msg.serialize()
    assert b"cseq: 10 INVITE\r\n" in out
    assert b"TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n" in out
    assert b"Content-Length   : 150\r\n" in out


def test_intmeth_details() -> None:
    msg = parse_message(load("intmeth"))
    uri = SipUri.parse(msg.uri or "")
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    to = NameAddr.parse(msg.headers.get("to") or "")
    assert to.display == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'
    ext = msg.headers.get("extensionHeader-!.%*+_`'~") or ""
    assert ext.encode("utf-8", "surrogateescape") == bytes.fromhex("EFBBBFE5A4A7E5819CE99BBB")
    frm = NameAddr.parse(msg.headers.get("from") or "")
    assert frm.display == "token1~` token2'+_ token3*%!.-"
    assert frm.param("fromParam''~+*_!.-%") == '"работающий"'


def test_escapes_are_kept_verbatim() -> None:
    msg = parse_message(load("esc01"))
    assert SipUri.parse(msg.uri or "").user == "sips%3Auser%40example.com"
    contact = SipUri.parse(NameAddr.parse(msg.headers.get("m") or "").uri)
    assert contact.user == "cal%6Cer"
    assert contact.params == [("%6C%72", None), ("n%61me", "v%61lue%25%34%31")]
    esc02 = parse_message(load("esc02"))
    assert len(esc02.headers.values("contact")) == 2  # C%6Fntact is another header
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    escnull = parse_message(load("escnull"))
    assert [SipUri.parse(NameAddr.parse(c).uri).user for c in escnull.headers.values("m")] == [
        "%00",
        "%00%00",
    ]


def test_longreq_details() -> None:
    msg = parse_message(load("longreq"))
    vias = [Via.parse(v) for v in msg.headers.values("via")]
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{i}.example.com" for i in range(33, 0, -1)]
    assert vias[-1].branch == LONG_BRANCH
    assert vias[-1].param("received") == "192.0.2.5"
    to = NameAddr.parse(msg.headers.get("to") or "")
    assert SipUri.parse(to.uri).port == 6000


def test_dblreq_drops_the_trailing_octets_on_udp_but_frames_two_on_tcp() -> None:
    data = load("dblreq")
    msg = parse_message(data)
    assert msg.body == b""
    assert b"INVITE" not in msg.serialize()
    frames = StreamFramer().feed(data)
    assert [parse_message(f, datagram=False).method for f in frames] == ["REGISTER", "INVITE"]


def test_semiuri_and_accept_list() -> None:
    msg = parse_message(load("semiuri"))
    uri = SipUri.parse(msg.uri or "")
    assert (uri.user, uri.host) == ("user;par=u%40example.net", "example.com")
    assert msg.headers.values("accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports() -> None:
    msg = parse_message(load("transports"))
    assert [Via.parse(v).transport for v in msg.headers.values("via")] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]


def test_mpart01_binary_body_is_framed_by_content_length() -> None:
    data = load("mpart01")
    msg = parse_message(data)
    assert b"\x00" in msg.body and msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert StreamFramer().feed(data) == [data]
    assert Via.parse(msg.headers.get("via") or "").param("rport") == ""


def test_reason_phrases() -> None:
    msg = parse_message(load("unreason"))
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert parse_message(load("noreason")).reason == ""


def test_regbadct_contact_is_refused_by_the_name_addr_helper() -> None:
    msg = parse_message(load("regbadct"))
    with pytest.raises(SipParseError):
        NameAddr.parse(msg.headers.get("contact") or "")
    # the bracketed form (regescrt) is fine
    ok = parse_message(load("regescrt"))
    assert NameAddr.parse(ok.headers.get("m") or "").uri == (
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    )


def test_badaspec_liberal_reading() -> None:
    msg = parse_message(load("badaspec"))
    assert NameAddr.parse(msg.headers.get("to") or "").uri == "sip:t.watson@example.org"


def test_contact_params_cparam01_vs_cparam02() -> None:
    c1 = NameAddr.parse(parse_message(load("cparam01")).headers.get("contact") or "")
    assert (c1.uri, c1.params) == ("sip:+19725552222@gw1.example.net", [("unknownparam", None)])
    c2 = NameAddr.parse(parse_message(load("cparam02")).headers.get("contact") or "")
    assert (c2.uri, c2.params) == ("sip:+19725552222@gw1.example.net;unknownparam", [])


def test_unknown_schemes_parse() -> None:
    assert SipUri.parse(parse_message(load("unkscm")).uri or "").scheme == "nobodyknowsthisscheme"
    msg = parse_message(load("unksm2"))
    assert msg.headers.get("to") == "isbn:2983792873"
    assert NameAddr.parse(msg.headers.get("from") or "").uri == "http://www.example.com"


def test_bcast_second_via_is_visible_to_the_routing_layer() -> None:
    msg = parse_message(load("bcast"))
    assert Via.parse(msg.headers.values("via")[1]).host == "255.255.255.255"


def test_headers_forwarded_unchanged() -> None:
    regaut = parse_message(load("regaut01"))
    assert regaut.headers.get("authorization") == "NoOneKnowsThisScheme opaque-data=here"
    bext = parse_message(load("bext01"))
    assert bext.headers.values("proxy-require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    assert parse_message(load("zeromf")).headers.get("max-forwards") == "0"


def test_clerr_on_a_stream_waits_for_more() -> None:
    framer = StreamFramer()
    assert framer.feed(load("clerr")) == []
    assert framer.buffered == len(load("clerr"))


def test_ncl_and_mcl01_close_a_stream() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(load("ncl"))
    with pytest.raises(SipParseError, match="Conflicting"):
        StreamFramer().feed(load("mcl01"))


def test_inv2543_needs_content_length_on_a_stream() -> None:
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        parse_message(load("inv2543"), datagram=False)
