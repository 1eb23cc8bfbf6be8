"""The front door, signalling (issue 11 items 3, 7 and 9): each attack performed against the
running daemon on loopback, and what it must (not) achieve.

- 3: an offer/answer the P-CSCF cannot read (Content-Encoding) is refused with 415 (requests) or
  ends the call (a 2xx from the core); nothing unread reaches the other side.
- 7: in-dialog requests on the access side from anyone but the dialog's UE get 403 (ACK:
  dropped) and reach nobody; the core listener serves `sip.core_networks` only.
- 9: a Request-URI or header with a control character, a Request-URI without a host: 400,
  nothing forwarded; Security-Server only for a UE that sent Security-Client; a Security-Verify
  with exact duplicates (Asterisk) is accepted; a UE that keeps failing sec-agree gets 503 +
  Retry-After instead of a tight 494 loop.
"""

from __future__ import annotations

import gzip
import time
from typing import Any

import pytest

from pcscf_alg.sip.message import SipMessage
from tests.e2e.calls_helpers import (
    BOTH,
    PLAIN_ANSWER,
    RtpPeers,
    assert_released,
    audio_offer,
    e2ae_call,
    in_dialog,
    invite,
    register,
    ue_hangs_up,
)
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer, crlf


def nothing_arrives(peer: UdpPeer, timeout: float = 1.0) -> None:
    """No message at all reaches `peer` within `timeout` seconds."""
    with pytest.raises(TimeoutError):
        msg, _ = peer.recv(timeout)
        raise AssertionError(f"unexpected message reached the peer: {msg.short()}")


def _invite_bytes(ue: UdpPeer, d: Daemon, call_id: str, body: bytes, extra: str) -> bytes:
    head = (
        f"INVITE sip:bob@ims.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-{call_id};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:alice@ims.test>;tag=a-{call_id}\r\n"
        f"To: <sip:bob@ims.test>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@127.0.0.1:{ue.port}>\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# ------------------------------------------------------------------------------------ item 3


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip-sdp", "plain-sdp-labelled-gzip"])
def test_encoded_offer_gets_415_and_nothing_reaches_the_core(
    peers: Any, rtp_peers: RtpPeers, compressed: bool
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, _ = rtp_peers
    sdp = audio_offer(ue_media.port).replace("\n", "\r\n").encode()
    body = gzip.compress(sdp) if compressed else sdp
    extra = "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n"
    ue.send(_invite_bytes(ue, d, f"enc-{compressed}", body, extra), d.access_port)
    resp = ue.expect(415)
    # RFC 3261 §21.4.13: the refusal names what we accept
    assert resp.headers.get("accept-encoding") == "identity"
    assert "Content-Encoding" in (resp.headers.get("warning") or "")
    nothing_arrives(core)  # the UE's key (K11) never left the access side
    assert_released(d)
    assert d.stats()["counters"]["rejected_encoding"] >= 1


def test_encoded_answer_from_the_core_ends_the_call(peers: Any, rtp_peers: RtpPeers) -> None:
    """A 2xx whose SDP is gzip: the UE gets 488 (not an answer we never read), the core gets
    ACK + BYE, and nothing is left behind."""
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    invite(ue, d, audio_offer(ue_media.port), "enc-answer")
    inv = core.expect("INVITE")
    answer = crlf("x\n\n" + PLAIN_ANSWER.format(port=core_media.port)).split("\r\n\r\n", 1)[1]
    h = inv.headers
    resp = (
        "SIP/2.0 200 OK\r\n"
        + "".join(f"Via: {v}\r\n" for v in h.values("via"))
        + "".join(f"Record-Route: {v}\r\n" for v in h.values("record-route"))
        + f"From: {h.get('from')}\r\nTo: {h.get('to')};tag=b1\r\nCall-ID: {inv.call_id}\r\n"
        + f"CSeq: {h.get('cseq')}\r\nContact: <sip:bob@127.0.0.1:{core.port}>\r\n"
        + "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n"
    )
    zbody = gzip.compress(answer.encode())
    core.send(resp.encode() + f"Content-Length: {len(zbody)}\r\n\r\n".encode() + zbody, d.core_port)
    assert ue.expect(488).status == 488
    assert core.expect("ACK").method == "ACK"
    bye = core.expect("BYE")
    core.reply(bye, 200, "OK", d.core_port, to_tag="")
    assert_released(d)


# ------------------------------------------------------------------------------------ item 7


def test_in_dialog_requests_from_a_third_party_are_refused(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    call = e2ae_call(d, ue, core, *rtp_peers, "steal-1")
    ok = call.ok
    with UdpPeer() as attacker:
        # BYE, re-INVITE and CANCEL-free in-dialog requests with the dialog's exact identifiers
        in_dialog(attacker, ok, "BYE", 5, d.access_port, uac=True)
        r = attacker.expect(403)
        assert "not from the UE of this dialog" in (r.headers.get("warning") or "")
        in_dialog(
            attacker,
            ok,
            "INVITE",
            6,
            d.access_port,
            uac=True,
            body=audio_offer(4000, "RTP/AVP", e2ae=None),
        )
        attacker.expect(403)
        in_dialog(attacker, ok, "ACK", 6, d.access_port, uac=True)
        nothing_arrives(core)  # none of it reached the core
    # the call is untouched: media both ways through the gateway, then a normal hang-up
    call.media(*rtp_peers)
    st = d.stats()
    assert st["dialogs"] == 1 and st["counters"]["rejected_source"] >= 3
    ue_hangs_up(d, ue, core, ok)


def test_cancel_from_a_third_party_is_refused(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, _ = rtp_peers
    invite(ue, d, audio_offer(ue_media.port), "cancel-steal")
    inv = core.expect("INVITE")
    core.reply(inv, 180, "Ringing", d.core_port, to_tag="b1")
    ue.expect(180)
    with UdpPeer() as attacker:
        attacker.send(
            f"""CANCEL sip:bob@ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-cancel-steal-1;rport
Max-Forwards: 70
From: <sip:alice@ims.test>;tag=a-cancel-steal
To: <sip:bob@ims.test>
Call-ID: cancel-steal
CSeq: 1 CANCEL
""",
            d.access_port,
        )
        # rport/received send the refusal back to the attacker, whatever Via it copied
        resp = attacker.expect(403)
        assert resp.cseq[1] == "CANCEL"
        nothing_arrives(core)  # the INVITE was not cancelled downstream
    assert d.stats()["dialogs"] == 1
    core.reply(inv, 486, "Busy Here", d.core_port, to_tag="b1")
    ue.expect(486)
    assert_released(d)


def test_core_listener_serves_the_core_network_only(daemon_factory: Any) -> None:
    # The next hop lives on 127.0.0.1; the core network is 127.0.0.2/32 only.
    d = daemon_factory(sip={"core_networks": ["127.0.0.2/32"]})
    with UdpPeer() as outsider, UdpPeer(host="127.0.0.2") as core, UdpPeer() as ue:
        msg = f"""INVITE sip:bob@127.0.0.1:{ue.port} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{outsider.port};branch=z9hG4bK-out1;rport
Max-Forwards: 70
From: <sip:mallory@evil.test>;tag=m1
To: <sip:bob@ims.test>
Call-ID: outsider-1
CSeq: 1 OPTIONS
"""
        outsider.send(msg.replace("INVITE", "OPTIONS", 1), d.core_port)
        r = outsider.expect(403)
        assert "core network" in (r.headers.get("warning") or "")
        nothing_arrives(ue)
        # the core itself is served
        core.send(
            msg.replace("INVITE", "OPTIONS", 1)
            .replace(f"127.0.0.1:{outsider.port}", f"127.0.0.2:{core.port}")
            .replace("out1", "in1"),
            d.core_port,
        )
        got = ue.expect("OPTIONS")
        ue.reply(got, 200, "OK", d.access_port)
        assert core.expect(200).status == 200
    assert d.stats()["counters"]["rejected_source"] == 1


# ------------------------------------------------------------------------------------ item 9


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("sip:bob\x00@ims.test", ""),
        ("sip:@@@", ""),
        ("sip:bob@", ""),
        ("sip:bob@ims.test", "Subject: hi\x00there\r\n"),
        ("sip:bob@ims.test", "X-Bell: \x07\r\n"),
    ],
    ids=["nul-in-ruri", "no-host", "empty-host", "nul-in-header", "bel-in-header"],
)
def test_bad_request_uri_or_header_gets_400_and_is_not_forwarded(
    peers: Any, uri: str, extra: str
) -> None:
    d, ue, core = peers
    data = (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-bad;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@ims.test>;tag=x\r\nTo: <sip:bob@ims.test>\r\n"
        f"Call-ID: bad-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    ue.send(data, d.access_port)
    assert ue.expect(400).status == 400
    nothing_arrives(core)
    assert d.alive()


def _register(ue: UdpPeer, d: Daemon, cseq: int, headers: str, call_id: str = "reg-sec") -> None:
    ue.send(
        f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-{call_id}-{cseq};rport
Max-Forwards: 70
From: <sip:alice@ims.test>;tag=r1
To: <sip:alice@ims.test>
Call-ID: {call_id}@test
CSeq: {cseq} REGISTER
Contact: <sip:alice@127.0.0.1:{ue.port}>
{headers.strip()}
Expires: 600
""",
        d.access_port,
    )


def _challenge(core: UdpPeer, d: Daemon) -> SipMessage:
    r = core.expect("REGISTER")
    core.reply(
        r,
        401,
        "Unauthorized",
        d.core_port,
        extra='WWW-Authenticate: Digest realm="ims.test", nonce="n1"',
    )
    return r


def test_security_server_only_for_a_ue_that_sent_security_client(peers: Any) -> None:
    d, ue, core = peers
    _register(ue, d, 1, "Supported: path")
    _challenge(core, d)
    r401 = ue.expect(401)
    assert r401.headers.get("security-server") is None  # RFC 3329 §2.3.1
    _register(ue, d, 2, f"Require: sec-agree\nProxy-Require: sec-agree\nSecurity-Client: {BOTH}")
    _challenge(core, d)
    assert "mediasec" in (ue.expect(401).headers.get_raw_all("security-server") or [""])[0]


def test_security_verify_with_exact_duplicates_is_accepted(peers: Any) -> None:
    """Asterisk 22 without `endpoint=` repeats the whole Security-Server list in Security-Verify
    on each refresh: no downgrade, so the REGISTER goes on (no 494 loop)."""
    d, ue, core = peers
    _register(ue, d, 1, f"Security-Client: {BOTH}")
    _challenge(core, d)
    server = ue.expect(401).headers.get_raw_all("security-server")
    verify = ", ".join(server * 3)
    _register(ue, d, 2, f"Security-Client: {BOTH}\nSecurity-Verify: {verify}")
    r = core.expect("REGISTER")
    assert r.headers.get("security-verify") is None  # consumed by the P-CSCF
    core.reply(r, 200, "OK", d.core_port, contact=f"sip:alice@127.0.0.1:{ue.port}>;expires=600;x=<")
    assert ue.expect(200).status == 200


def test_a_ue_failing_sec_agree_is_throttled(daemon_factory: Any) -> None:
    d = daemon_factory(registration={"secagree_max_failures": 3, "secagree_window_s": 30})
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        bad = "Security-Client: sdes-srtp;mediasec\nSecurity-Verify: sdes-srtp;mediasec;x=1"
        statuses = []
        for cseq in range(1, 7):
            _register(ue, d, cseq, bad)
            statuses.append(ue.recv(5.0)[0])
        codes = [m.status for m in statuses]
        assert codes == [494, 494, 494, 503, 503, 503], codes
        retry = statuses[3].headers.get("retry-after")
        assert retry is not None and 1 <= int(retry) <= 30
        nothing_arrives(core, 0.5)  # none of them reached the registrar
        # another UE (another address) is not affected
        with UdpPeer(host="127.0.0.3") as other:
            _register(other, d, 1, f"Security-Client: {BOTH}", call_id="other")
            r = core.expect("REGISTER")
            core.reply(r, 200, "OK", d.core_port)
            assert other.expect(200).status == 200
    assert d.stats()["counters"]["secagree_throttled"] == 3
