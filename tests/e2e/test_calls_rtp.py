"""e2ae for RTP end to end with real SRTP (libsrtp) media peers (issue 6), scripted SIP peers.

UE (access) <-> daemon <-> S-CSCF stand-in (core, on the next hop port). Keys and addresses are
read from the SDP the daemon produced, media goes through the in-process gateway.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.calls_helpers import (
    K11,
    PLAIN_ANSWER,
    MediaPeer,
    RtpPeers,
    assert_released,
    audio_offer,
    audio_port,
    b64,
    crypto_lines,
    in_dialog,
    invite,
    key_of,
    register,
    rtp_packet,
    srtp_session,
    ue_hangs_up,
)
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer


def test_originating_rtp_srtp_to_rtp_and_back(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    invite(ue, d, audio_offer(ue_media.port), "orig-rtp-1")
    inv = core.expect("INVITE")
    _, agw_core_port, proto = audio_port(inv.body)
    # TS 33.328 7.2.1 step 3: plain RTP, no crypto, no 3ge2ae, gateway core address
    assert proto == "RTP/AVP"
    assert b"a=crypto" not in inv.body and b"3ge2ae" not in inv.body
    assert agw_core_port != ue_media.port
    core.reply(
        inv, 200, "OK", d.core_port, to_tag="b1", body=PLAIN_ANSWER.format(port=core_media.port)
    )
    ok = ue.expect(200)
    _, agw_access_port, proto = audio_port(ok.body)
    assert proto == "RTP/SAVP"
    lines = crypto_lines(ok.body)
    # exactly one a=crypto, tag and suite of the selected line (K11 = tag 1), new key,
    # no lifetime, no MKI (7.2.1 step 8)
    assert len(lines) == 1, ok.body
    assert lines[0].startswith("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
    assert "|" not in lines[0]
    suite, k12 = key_of(lines[0])
    assert k12 != b64(K11)
    assert b"3ge2ae" not in ok.body
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)

    # UE A -> core: SRTP with K11 arrives as RTP, payload byte-identical
    tx = srtp_session("AES_CM_128_HMAC_SHA1_80", b64(K11), outbound=True)
    for seq in range(1, 6):
        pkt = rtp_packet(seq, payload=bytes([seq]) * 40)
        ue_media.sock.sendto(tx.protect(pkt), ("127.0.0.1", agw_access_port))
        got, src = core_media.recv()
        assert got == pkt
        assert src[1] == agw_core_port
    # core -> UE A: RTP arrives as SRTP that decrypts with K12
    rx = srtp_session(suite, k12, outbound=False)
    for seq in range(100, 105):
        pkt = rtp_packet(seq, ssrc=0x55667788, payload=b"core" * 10)
        core_media.sock.sendto(pkt, ("127.0.0.1", agw_core_port))
        got, src = ue_media.recv()
        assert got != pkt
        assert rx.unprotect(got) == pkt
        assert src[1] == agw_access_port
    # a tampered packet is dropped (and counted by the gateway)
    bad = bytearray(tx.protect(rtp_packet(6)))
    bad[20] ^= 0xFF
    ue_media.sock.sendto(bytes(bad), ("127.0.0.1", agw_access_port))
    with pytest.raises(TimeoutError):
        core_media.recv(timeout=0.3)

    ue_hangs_up(d, ue, core, ok)


def test_unregistered_e2ae_request_is_rejected_488_and_leaves_nothing(peers: Any) -> None:
    d, ue, _ = peers
    # no registration: e2ae requested without established support = NOTE 2a -> strict reject
    invite(ue, d, audio_offer(40000), "note2a-1")
    resp = ue.expect(488)
    warning = resp.headers.get("warning") or ""
    assert "NOTE 2a" in warning or "not negotiated" in warning, warning
    st = d.stats()
    assert st["agw_ports"] == 0 and st["dialogs"] == 0, st


def test_bad_sdp_gets_488_with_warning(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    bad = audio_offer(40000, cryptos=["1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="])
    invite(ue, d, bad, "bad-sdp-1")
    resp = ue.expect(488)
    assert resp.headers.get("warning"), resp.serialize()
    st = d.stats()
    assert st["agw_ports"] == 0 and st["dialogs"] == 0, st


def test_savp_without_indication_passes_end_to_end(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    offer = audio_offer(40000, e2ae=None)
    invite(ue, d, offer, "e2e-1")
    inv = core.expect("INVITE")
    # TS 33.328 7.2.1 step 2: no indication -> e2e (7.2.2): proto and crypto untouched
    assert b"RTP/SAVP" in inv.body and inv.body.count(b"a=crypto") == 2
    assert b"m=audio 40000" in inv.body
    core.reply(inv, 486, "Busy Here", d.core_port)
    ue.expect(486)
    assert_released(d)


def test_cancel_releases_the_gateway(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40002), "cancel-1")
    inv = core.expect("INVITE")
    core.reply(inv, 180, "Ringing", d.core_port, to_tag="b1")
    ue.expect(180)
    assert d.stats()["agw_ports"] > 0
    ue.send(
        f"""CANCEL sip:bob@ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-cancel-1-1;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:{d.access_port};lr>
From: <sip:alice@ims.test>;tag=a-cancel-1
To: <sip:bob@ims.test>
Call-ID: cancel-1
CSeq: 1 CANCEL
""",
        d.access_port,
    )
    ue.expect(200)
    cancel = core.expect("CANCEL")
    core.reply(cancel, 200, "OK", d.core_port, to_tag="b1")
    core.reply(inv, 487, "Request Terminated", d.core_port, to_tag="b1")
    ue.expect(487)
    assert_released(d)


def test_error_response_releases_the_gateway(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40004), "err-1")
    inv = core.expect("INVITE")
    assert d.stats()["agw_ports"] > 0
    core.reply(inv, 503, "Service Unavailable", d.core_port, to_tag="b1")
    ue.expect(503)
    assert_released(d)


def test_bye_from_core_releases(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, audio_offer(40006), "bye-core-1")
    inv = core.expect("INVITE")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=PLAIN_ANSWER.format(port=40100))
    ok = ue.expect(200)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    in_dialog(core, inv, "BYE", 1, d.core_port, uac=False)
    bye = ue.expect("BYE")
    ue.reply(bye, 200, "OK", d.access_port, to_tag="")
    core.expect(200)
    assert_released(d)


def test_anchor_all_relays_e2e_srtp_untouched(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(e2ae={"rtp": True, "msrp": True, "anchor_all": True})
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        ue_media, core_media = MediaPeer.bind(), MediaPeer.bind()
        try:
            # SRTP without an indication: e2e (7.2.2), but anchored: the gateway relays the
            # packets untouched and only the addresses change
            invite(ue, d, audio_offer(ue_media.port, e2ae=None), "anchor-1")
            inv = core.expect("INVITE")
            _, agw_core, proto = audio_port(inv.body)
            assert proto == "RTP/SAVP" and inv.body.count(b"a=crypto") == 2
            assert agw_core != ue_media.port
            answer = audio_offer(
                core_media.port, cryptos=[f"1 AES_CM_128_HMAC_SHA1_80 inline:{K11}"], e2ae=None
            )
            core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=answer)
            ok = ue.expect(200)
            _, agw_access, proto = audio_port(ok.body)
            assert proto == "RTP/SAVP" and crypto_lines(ok.body) == [
                f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K11}"
            ]
            in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
            opaque = rtp_packet(1, payload=b"opaque-srtp" * 4)
            ue_media.sock.sendto(opaque, ("127.0.0.1", agw_access))
            assert core_media.recv()[0] == opaque
            core_media.sock.sendto(opaque, ("127.0.0.1", agw_core))
            assert ue_media.recv()[0] == opaque
            ue_hangs_up(d, ue, core, ok)
        finally:
            ue_media.close()
            core_media.close()


def test_plain_offer_passes_untouched_and_foreign_indication_is_stripped(peers: Any) -> None:
    d, ue, core = peers
    register(d, ue, core)
    offer = audio_offer(40020, proto="RTP/AVP", e2ae=None)
    invite(ue, d, offer, "plain-1")
    inv = core.expect("INVITE")
    assert inv.body.replace(b"\r\n", b"\n") == offer.encode()  # byte for byte
    answer = PLAIN_ANSWER.format(port=40120).replace("a=sendrecv", "a=3ge2ae:applied\na=sendrecv")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=answer)
    ok = ue.expect(200)
    # TS 33.328 7.3.1: an indication inserted by another party is removed
    assert b"3ge2ae" not in ok.body and b"m=audio 40120 RTP/AVP" in ok.body
    assert d.stats()["agw_ports"] == 0
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    ue_hangs_up(d, ue, core, ok)
