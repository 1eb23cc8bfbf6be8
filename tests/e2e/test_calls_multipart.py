"""e2ae on SDP carried in multipart bodies (RFC 5621), through the daemon with real SRTP media.

An emergency INVITE carries SDP + PIDF-LO (RFC 6442), a conference INVITE SDP + resource-list:
the UE's keys in such a body must reach our gateway and never the core (TS 33.328 7.2.1
step 3), and the other parts must cross the P-CSCF byte for byte. Python's `email` package,
an independent MIME parser, reads what the peers receive.
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any

from pcscf_alg.sip.message import SipMessage
from tests.e2e.calls_helpers import (
    K11,
    RtpPeers,
    assert_released,
    audio_offer,
    b64,
    core_hangs_up,
    crypto_lines,
    in_dialog,
    invite,
    key_of,
    register,
    srtp_both_ways,
    ue_hangs_up,
)
from tests.e2e.test_calls_carriers import K22, core_invite, plain, ue_answer

PIDF = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@ims.test">
<tuple id="loc1"><status><geopriv>inline:not-a-key-but-kept</geopriv></status></tuple>
</presence>"""

RLS = """<?xml version="1.0" encoding="UTF-8"?>
<resource-list xmlns="urn:ietf:params:xml:ns:resource-lists">
<list><entry uri="sip:bob@ims.test"/><entry uri="sip:carol@ims.test"/></list>
</resource-list>"""


def multipart(boundary: str, sdp: str, other_type: str, other: str) -> str:
    """A two-part body, SDP first; `crlf()` of the UDP peer turns its line ends into CRLF."""
    return (
        f"--{boundary}\nContent-Type: application/sdp\n\n{sdp.rstrip()}\n"
        f"--{boundary}\nContent-Type: {other_type}\nContent-ID: <part2@ims.test>\n\n{other}\n"
        f"--{boundary}--\n"
    )


def parts(msg: SipMessage) -> dict[str, bytes]:
    """Content type -> payload of each part, as the stdlib's MIME parser reads the body."""
    ctype = msg.headers.get("content-type") or ""
    assert ctype.lower().startswith("multipart/mixed"), ctype
    raw = b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + msg.body
    mime = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    out = {}
    for part in mime.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=False)
            out[part.get_content_type()] = payload.encode("utf-8", "surrogateescape")
    return out


def sdp_port(sdp: bytes) -> tuple[int, str]:
    for line in sdp.decode().splitlines():
        if line.startswith("m=audio"):
            f = line.split()
            return int(f[1]), f[2]
    raise AssertionError(sdp)


def test_originating_emergency_style_sdp_plus_pidf(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    body = multipart("loc-boundary", audio_offer(ue_media.port), "application/pidf+xml", PIDF)
    invite(
        ue, d, body, "mp-orig-1", content_type="multipart/mixed;boundary=loc-boundary",
        extra="Geolocation: <cid:part2@ims.test>",
    )
    inv = core.expect("INVITE")
    got = parts(inv)
    sdp = got["application/sdp"]
    agw_core, proto = sdp_port(sdp)
    # TS 33.328 7.2.1 step 3 inside the multipart: plain RTP, no keys, no indication
    assert proto == "RTP/AVP"
    assert b"a=crypto" not in inv.body and b"3ge2ae" not in inv.body
    assert K11.encode() not in inv.body
    # the location part crossed byte for byte, boundary and Geolocation untouched
    assert got["application/pidf+xml"] == PIDF.replace("\n", "\r\n").encode()
    assert inv.headers.get("geolocation") == "<cid:part2@ims.test>"
    core.reply(inv, 200, "OK", d.core_port, to_tag="mp1", body=plain(core_media.port))
    ok = ue.expect(200)
    agw_access, proto = sdp_port(ok.body)
    assert proto == "RTP/SAVP"
    (line,) = crypto_lines(ok.body)
    suite, k12 = key_of(line)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    # media through the gateway: SRTP (K11) -> RTP, RTP -> SRTP (K12)
    srtp_both_ways(
        ue_media,
        core_media,
        agw_access=agw_access,
        agw_core=agw_core,
        from_ue=("AES_CM_128_HMAC_SHA1_80", b64(K11)),
        to_ue=(suite, k12),
    )
    ue_hangs_up(d, ue, core, ok)


def test_terminating_offer_and_answer_in_multipart_bodies(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    body = multipart("rl", plain(core_media.port), "application/resource-lists+xml", RLS)
    core_invite(
        core, d, ue, body, "mp-term-1", content_type='multipart/mixed; boundary="rl"'
    )
    inv = ue.expect("INVITE")
    got = parts(inv)
    # TS 33.328 7.3.1 step 4 inside the multipart: SRTP with K21 and 3ge2ae:applied
    agw_access, proto = sdp_port(got["application/sdp"])
    assert proto == "RTP/SAVP"
    assert b"a=3ge2ae:applied" in got["application/sdp"]
    suite, k21 = key_of(crypto_lines(got["application/sdp"])[0])
    assert got["application/resource-lists+xml"] == RLS.replace("\n", "\r\n").encode()
    # the UE answers in a multipart body as well
    answer = multipart("ans", ue_answer(port=ue_media.port), "text/plain", "hello")
    ue.reply(
        inv, 200, "OK", d.access_port, to_tag="u-mp", body=answer,
        content_type="multipart/mixed;boundary=ans",
    )
    ok = core.expect(200)
    got = parts(ok)
    agw_core, proto = sdp_port(got["application/sdp"])
    assert proto == "RTP/AVP" and b"a=crypto" not in ok.body and K22.encode() not in ok.body
    assert got["text/plain"] == b"hello"
    in_dialog(core, ok, "ACK", 1, d.core_port, uac=True)
    ue.expect("ACK")
    srtp_both_ways(
        ue_media,
        core_media,
        agw_access=agw_access,
        agw_core=agw_core,
        from_ue=("AES_CM_128_HMAC_SHA1_80", b64(K22)),
        to_ue=(suite, k21),
    )
    core_hangs_up(d, ue, core, ok)


def test_malformed_multipart_offer_is_refused_400_and_leaves_nothing(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    # no closing boundary: the SDP (with the UE's keys) cannot be delimited
    body = f"--b\nContent-Type: application/sdp\n\n{audio_offer(40000)}"
    invite(ue, d, body, "mp-bad-1", content_type="multipart/mixed;boundary=b")
    resp = ue.expect(400)
    assert "closing boundary" in (resp.headers.get("warning") or ""), resp.serialize()
    assert_released(d)
    core.sock.settimeout(0.3)
    try:
        data = core.sock.recv(65535)
    except TimeoutError:
        data = b""
    assert b"INVITE" not in data  # nothing went to the core


def test_two_session_descriptions_get_488(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    sdp = audio_offer(40000)
    body = (
        f"--b\nContent-Type: application/sdp\n\n{sdp}"
        f"--b\nContent-Type: application/sdp\n\n{sdp}--b--\n"
    )
    invite(ue, d, body, "mp-two-1", content_type="multipart/mixed;boundary=b")
    resp = ue.expect(488)
    assert "several SDP" in (resp.headers.get("warning") or "")
    assert_released(d)
