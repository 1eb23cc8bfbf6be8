"""Every SDP carrier through the daemon (issue 6 "Every SDP carrier"): terminating offers,
reliable 18x + PRACK, UPDATE, re-INVITE hold/resume, late offer (2xx/ACK), forking.
Scripted SIP peers on both sides, real SRTP where media matters."""

from __future__ import annotations

from typing import Any

from tests.e2e.calls_helpers import (
    RtpPeers,
    assert_released,
    audio_offer,
    audio_port,
    b64,
    core_hangs_up,
    crypto_lines,
    in_dialog,
    invite,
    key_of,
    register,
    rtp_packet,
    srtp_both_ways,
    srtp_session,
    ue_hangs_up,
)
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer

PLAIN = """v=0
o=- 2 {v} IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {port} RTP/AVP 96
a=rtpmap:96 AMR-WB/16000/1
a={dir}
"""

K22 = "n4PXVAey9GM40ciT3rCNAml9dD+44rWjZl5NhUpF"  # example 09


def plain(port: int, v: int = 1, direction: str = "sendrecv") -> str:
    return PLAIN.format(port=port, v=v, dir=direction)


def core_invite(
    core: UdpPeer,
    d: Daemon,
    ue: UdpPeer,
    sdp: str | None,
    call_id: str,
    extra: str = "",
    content_type: str = "application/sdp",
) -> None:
    """The S-CSCF sends a terminating INVITE to the UE's registered contact via the core side."""
    body = f"Content-Type: {content_type}\n\n{sdp}" if sdp is not None else ""
    hdrs = f"{extra.strip()}\n" if extra.strip() else ""
    core.send(
        f"""INVITE sip:alice@127.0.0.1:{ue.port} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{core.port};branch=z9hG4bK-{call_id}-t1;rport
Max-Forwards: 70
Route: <sip:term@127.0.0.1:{d.core_port};lr>
From: <sip:carol@other.test>;tag=c-{call_id}
To: <sip:alice@ims.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:carol@127.0.0.1:{core.port}>
{hdrs}{body}""",
        d.core_port,
    )


def ue_answer(
    k: str = K22, tag: int = 1, port: int = 49200, suite: str = "AES_CM_128_HMAC_SHA1_80"
) -> str:
    return f"""v=0
o=- 3 3 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {port} RTP/SAVP 96
a=rtpmap:96 AMR-WB/16000/1
a=crypto:{tag} {suite} inline:{k}
a=sendrecv
"""


def test_terminating_rtp_k21_k22_and_media(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    core_invite(core, d, ue, plain(core_media.port), "term-1")
    inv = ue.expect("INVITE")
    # TS 33.328 7.3.1 step 4: SRTP, our crypto lines (K21), 3ge2ae:applied, gateway address
    _, agw_access, proto = audio_port(inv.body)
    assert proto == "RTP/SAVP"
    lines = crypto_lines(inv.body)
    assert lines and lines[0].startswith("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
    assert all("|" not in ln for ln in lines)  # no lifetime, no MKI
    assert b"a=3ge2ae:applied" in inv.body
    suite, k21 = key_of(lines[0])
    ue.reply(inv, 200, "OK", d.access_port, to_tag="u1", body=ue_answer(port=ue_media.port))
    ok = core.expect(200)
    _, agw_core, proto = audio_port(ok.body)
    # step 7: RTP towards the core, UE crypto removed
    assert proto == "RTP/AVP" and b"a=crypto" not in ok.body and b"3ge2ae" not in ok.body
    in_dialog(core, ok, "ACK", 1, d.core_port, uac=True)
    ue.expect("ACK")
    # UE SRTP with K22 -> core as RTP; core RTP -> UE as SRTP protected with K21
    srtp_both_ways(
        ue_media,
        core_media,
        agw_access=agw_access,
        agw_core=agw_core,
        from_ue=("AES_CM_128_HMAC_SHA1_80", b64(K22)),
        to_ue=(suite, k21),
    )
    core_hangs_up(d, ue, core, ok)


def test_terminating_strips_foreign_3ge2ae_and_passes_savp(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    # SAVP from the core: e2e (7.3.1 NOTE 2), passed through; the foreign 'applied' is removed
    core_invite(core, d, ue, audio_offer(40200, e2ae="applied"), "term-e2e-1")
    inv = ue.expect("INVITE")
    assert b"RTP/SAVP" in inv.body and inv.body.count(b"a=crypto") == 2
    assert b"3ge2ae" not in inv.body
    assert b"m=audio 40200" in inv.body
    ue.reply(inv, 486, "Busy Here", d.access_port, to_tag="u1")
    core.expect(486)
    assert_released(d)


def test_reliable_183_answer_then_prack_and_200(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40300), "prack-1", extra="Supported: 100rel")
    inv = core.expect("INVITE")
    core.reply(
        inv,
        183,
        "Session Progress",
        d.core_port,
        to_tag="b1",
        extra="Require: 100rel\nRSeq: 1",
        body=plain(40400),
    )
    p183 = ue.expect(183)
    assert b"RTP/SAVP" in p183.body
    (line,) = crypto_lines(p183.body)
    _, k12 = key_of(line)
    in_dialog(ue, p183, "PRACK", 2, d.access_port, uac=True)
    prack = core.expect("PRACK")
    core.reply(prack, 200, "OK", d.core_port, to_tag="b1")
    ue.expect(200)
    # the 200 to the INVITE repeats the same answer: the UE must see the same K12
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=plain(40400))
    ok = ue.expect(200)
    (line2,) = crypto_lines(ok.body)
    assert key_of(line2)[1] == k12
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    in_dialog(ue, ok, "BYE", 3, d.access_port, uac=True)
    bye = core.expect("BYE")
    core.reply(bye, 200, "OK", d.core_port, to_tag="")
    ue.expect(200)
    assert_released(d)


def test_reinvite_hold_resume_keeps_the_key(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40500), "reinv-1")
    inv = core.expect("INVITE")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=plain(40600))
    ok = ue.expect(200)
    (line,) = crypto_lines(ok.body)
    _, k12 = key_of(line)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    ports_before = d.stats()["agw_ports"]
    # hold from the core: a re-offer towards the UE = terminating-style procedure
    in_dialog(core, inv, "INVITE", 2, d.core_port, uac=False, body=plain(40600, 2, "sendonly"))
    re_inv = ue.expect("INVITE")
    assert b"RTP/SAVP" in re_inv.body and b"a=sendonly" in re_inv.body
    assert b"a=3ge2ae:applied" in re_inv.body
    k21_lines = crypto_lines(re_inv.body)
    ue.reply(
        re_inv,
        200,
        "OK",
        d.access_port,
        to_tag="",
        body=ue_answer(port=40500).replace("sendrecv", "recvonly"),
    )
    ok2 = core.expect(200)
    assert b"RTP/AVP" in ok2.body and b"a=crypto" not in ok2.body
    in_dialog(core, ok2, "ACK", 2, d.core_port, uac=True)
    # resume from the core again: the same K21 lines are re-offered (same tag, suite, key)
    in_dialog(core, inv, "INVITE", 3, d.core_port, uac=False, body=plain(40600, 3))
    re_inv2 = ue.expect("INVITE")
    assert crypto_lines(re_inv2.body) == k21_lines
    ue.reply(re_inv2, 200, "OK", d.access_port, to_tag="", body=ue_answer(port=40500))
    core.expect(200)
    # A UE re-INVITE that keeps its current key (K22 since the last exchange) gets our current
    # key (K21) back: same tag, suite and key, so no crypto context is reset (RFC 4568 §7.1.4).
    in_dialog(
        ue,
        ok,
        "INVITE",
        4,
        d.access_port,
        uac=True,
        body=audio_offer(40500, cryptos=[f"1 AES_CM_128_HMAC_SHA1_80 inline:{K22}"]),
    )
    inv3 = core.expect("INVITE")
    core.reply(inv3, 200, "OK", d.core_port, to_tag="b1", body=plain(40600, 4))
    ok3 = ue.expect(200)
    (line3,) = crypto_lines(ok3.body)
    assert key_of(line3) == key_of(k21_lines[0])
    # our key towards the UE never changed: K12 of the first answer = K21 of the re-offers
    assert key_of(line3)[1] == k12
    assert d.stats()["agw_ports"] == ports_before
    in_dialog(ue, ok, "BYE", 5, d.access_port, uac=True)
    bye = core.expect("BYE")
    core.reply(bye, 200, "OK", d.core_port, to_tag="")
    ue.expect(200)
    assert_released(d)


def test_update_in_early_dialog(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40700), "update-1", extra="Supported: 100rel")
    inv = core.expect("INVITE")
    core.reply(
        inv,
        183,
        "Session Progress",
        d.core_port,
        to_tag="b1",
        extra="Require: 100rel\nRSeq: 1",
        body=plain(40800),
    )
    p183 = ue.expect(183)
    in_dialog(ue, p183, "PRACK", 2, d.access_port, uac=True)
    core.reply(core.expect("PRACK"), 200, "OK", d.core_port, to_tag="b1")
    ue.expect(200)
    # UPDATE from the UE with a new offer (e.g. preconditions met): originating procedure
    in_dialog(ue, p183, "UPDATE", 3, d.access_port, uac=True, body=audio_offer(40700))
    upd = core.expect("UPDATE")
    assert b"RTP/AVP" in upd.body and b"a=crypto" not in upd.body
    core.reply(upd, 200, "OK", d.core_port, to_tag="b1", body=plain(40800, 2))
    ok_upd = ue.expect(200)
    assert len(crypto_lines(ok_upd.body)) == 1
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=plain(40800, 2))
    ok = ue.expect(200)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    in_dialog(ue, ok, "BYE", 4, d.access_port, uac=True)
    core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
    ue.expect(200)
    assert_released(d)


def test_late_offer_in_200_answer_in_ack(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    # INVITE without SDP from the UE; the core's 200 carries the offer (towards the UE:
    # terminating-style, 3ge2ae:applied + K21); the UE's ACK carries the answer (K22).
    invite(ue, d, None, "late-1")
    inv = core.expect("INVITE")
    assert not inv.body
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=plain(core_media.port))
    ok = ue.expect(200)
    assert b"RTP/SAVP" in ok.body and b"a=3ge2ae:applied" in ok.body
    _, agw_access, _ = audio_port(ok.body)
    suite, k21 = key_of(crypto_lines(ok.body)[0])
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True, body=ue_answer(port=ue_media.port))
    ack = core.expect("ACK")
    assert b"RTP/AVP" in ack.body and b"a=crypto" not in ack.body
    _, agw_core, _ = audio_port(ack.body)
    tx = srtp_session("AES_CM_128_HMAC_SHA1_80", b64(K22), outbound=True)
    pkt = rtp_packet(1)
    ue_media.sock.sendto(tx.protect(pkt), ("127.0.0.1", agw_access))
    assert core_media.recv()[0] == pkt
    rx = srtp_session(suite, k21, outbound=False)
    core_media.sock.sendto(pkt, ("127.0.0.1", agw_core))
    assert rx.unprotect(ue_media.recv()[0]) == pkt
    ue_hangs_up(d, ue, core, ok)


def test_forking_two_early_dialogs_collapse_to_the_confirmed_one(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40900), "fork-1")
    inv = core.expect("INVITE")
    # two forks answer in early dialogs with different SDP
    core.reply(inv, 183, "Session Progress", d.core_port, to_tag="fa", body=plain(41000))
    a = ue.expect(183)
    core.reply(inv, 183, "Session Progress", d.core_port, to_tag="fb", body=plain(41100))
    b = ue.expect(183)
    assert "tag=fa" in (a.headers.get("to") or "") and "tag=fb" in (b.headers.get("to") or "")
    assert len(crypto_lines(a.body)) == 1 and len(crypto_lines(b.body)) == 1
    st = d.stats()
    assert st["dialogs"] == 1  # one call...
    # ...confirmed by fork b
    core.reply(inv, 200, "OK", d.core_port, to_tag="fb", body=plain(41100))
    ok = ue.expect(200)
    assert "tag=fb" in (ok.headers.get("to") or "")
    assert key_of(crypto_lines(ok.body)[0]) == key_of(crypto_lines(b.body)[0])
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    ue_hangs_up(d, ue, core, ok)
