"""Issue 11 item 8: a re-offer must not silently take an e2ae stream out of e2ae.

An originating e2ae call is up (SRTP with the UE, plain RTP with the core, real libsrtp media
through the gateway); then the UE re-INVITEs without `a=3ge2ae:requested` (still offering SRTP
with the key it has been using towards the gateway), or with plain RTP/AVP. Policy point
`e2ae_downgrade` (keep by default, reject, allow).
"""

from __future__ import annotations

from typing import Any

from tests.e2e.calls_helpers import (
    K11,
    K11_32,
    RtpPeers,
    assert_released,
    audio_offer,
    audio_port,
    b64,
    crypto_lines,
    e2ae_call,
    in_dialog,
    key_of,
    register,
    rtp_packet,
    srtp_both_ways,
)
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer

SUITE80 = "AES_CM_128_HMAC_SHA1_80"

PLAIN = """v=0
o=- 2 {v} IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {port} RTP/AVP 96
a=rtpmap:96 AMR-WB/16000/1
a=sendrecv
"""


def call_up(
    d: Daemon, ue: UdpPeer, core: UdpPeer, rtp_peers: RtpPeers, call_id: str
) -> tuple[Any, int, int, bytes]:
    """Register, set up an originating e2ae call and check media both ways. Returns the UE's
    200, the gateway's access and core ports and K12."""
    register(d, ue, core)
    call = e2ae_call(d, ue, core, *rtp_peers, call_id)
    assert call.to_ue[0] == SUITE80
    # (sequence numbers below `srtp_both_ways`'s default: the gateway keeps its crypto context
    # across the re-INVITE, and its replay check would drop a repeated packet)
    call.media(*rtp_peers, seq=1)
    return call.ok, call.agw_access, call.agw_core, call.to_ue[1]


def no_ue_key(body: bytes) -> bool:
    return K11.encode() not in body and K11_32.encode() not in body and b"inline:" not in body


def test_default_keep_ue_reinvite_without_indication_stays_e2ae(
    daemon: Daemon, rtp_peers: RtpPeers
) -> None:
    d = daemon
    ue_media, core_media = rtp_peers
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        ok, agw_access, agw_core, k12 = call_up(d, ue, core, rtp_peers, "downgrade-keep")
        # the attack: the same SRTP offer, with the UE's key, but no a=3ge2ae:requested
        in_dialog(ue, ok, "INVITE", 2, d.access_port, uac=True,
                  body=audio_offer(ue_media.port, e2ae=None))
        inv2 = core.expect("INVITE")
        assert no_ue_key(inv2.serialize()), inv2.body
        assert b"a=crypto" not in inv2.body and b"3ge2ae" not in inv2.body
        assert audio_port(inv2.body) == ("127.0.0.1", agw_core, "RTP/AVP")  # still the gateway
        core.reply(inv2, 200, "OK", d.core_port, to_tag="b1",
                   body=PLAIN.format(port=core_media.port, v=3))
        ok2 = ue.expect(200)
        assert audio_port(ok2.body) == ("127.0.0.1", agw_access, "RTP/SAVP")
        (line,) = crypto_lines(ok2.body)
        assert key_of(line) == (SUITE80, k12)  # the UE kept its key, so do we
        in_dialog(ue, ok, "ACK", 2, d.access_port, uac=True)
        # media still crosses the gateway, SRTP on access, plain RTP on core
        srtp_both_ways(ue_media, core_media, agw_access=agw_access, agw_core=agw_core,
                       from_ue=(SUITE80, b64(K11)), to_ue=(SUITE80, k12))
        assert "e2ae_downgrade=keep" in d.log()
        in_dialog(ue, ok, "BYE", 3, d.access_port, uac=True)
        core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
        ue.expect(200)
        assert_released(d)


def test_default_keep_ue_reinvite_with_plain_rtp_stays_anchored(
    daemon: Daemon, rtp_peers: RtpPeers
) -> None:
    d = daemon
    ue_media, core_media = rtp_peers
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        ok, agw_access, agw_core, _ = call_up(d, ue, core, rtp_peers, "downgrade-plain")
        in_dialog(ue, ok, "INVITE", 2, d.access_port, uac=True,
                  body=audio_offer(ue_media.port, proto="RTP/AVP", e2ae=None))
        inv2 = core.expect("INVITE")
        assert no_ue_key(inv2.serialize())
        assert audio_port(inv2.body) == ("127.0.0.1", agw_core, "RTP/AVP")
        core.reply(inv2, 200, "OK", d.core_port, to_tag="b1",
                   body=PLAIN.format(port=core_media.port, v=3))
        ok2 = ue.expect(200)
        assert audio_port(ok2.body) == ("127.0.0.1", agw_access, "RTP/AVP")
        assert b"a=crypto" not in ok2.body
        in_dialog(ue, ok, "ACK", 2, d.access_port, uac=True)
        # plain on both legs, still through the gateway (its SRTP contexts are gone); the
        # configure is asynchronous, so the first packets may still meet the old e2ae mode
        pkt = rtp_packet(40, payload=b"plain-ue" * 5)
        got = None
        for _ in range(20):
            ue_media.sock.sendto(pkt, ("127.0.0.1", agw_access))
            try:
                got = core_media.recv(timeout=0.5)
                break
            except TimeoutError:
                continue
        assert got is not None and got[0] == pkt and got[1][1] == agw_core
        back = rtp_packet(41, ssrc=0x55667788, payload=b"plain-co" * 5)
        core_media.sock.sendto(back, ("127.0.0.1", agw_core))
        data, src = ue_media.recv()
        assert data == back and src[1] == agw_access
        in_dialog(ue, ok, "BYE", 3, d.access_port, uac=True)
        core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
        ue.expect(200)
        assert_released(d)


def test_reject_policy_answers_488_and_keeps_the_call(
    daemon_factory: Any, rtp_peers: RtpPeers
) -> None:
    d = daemon_factory(policy={"e2ae_downgrade": "reject"})
    ue_media, core_media = rtp_peers
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        ok, agw_access, agw_core, k12 = call_up(d, ue, core, rtp_peers, "downgrade-reject")
        ports = d.stats()["agw_ports"]
        in_dialog(ue, ok, "INVITE", 2, d.access_port, uac=True,
                  body=audio_offer(ue_media.port, e2ae=None))
        resp = ue.expect(488)
        warning = resp.headers.get("warning") or ""
        assert "m-line 0" in warning and "e2ae_downgrade" in warning, warning
        assert no_ue_key(resp.serialize())
        # nothing of the re-INVITE reached the core (only the first call's ACK is queued there)
        got = []
        while True:
            try:
                got.append(core.recv(timeout=1.0)[0])
            except TimeoutError:
                break
        assert [(m.method, m.cseq[0]) for m in got] in ([], [("ACK", 1)]), got
        # the previous media stays in place, with the same keys and ports
        assert d.stats()["agw_ports"] == ports
        srtp_both_ways(ue_media, core_media, agw_access=agw_access, agw_core=agw_core,
                       from_ue=(SUITE80, b64(K11)), to_ue=(SUITE80, k12))
        in_dialog(ue, ok, "BYE", 3, d.access_port, uac=True)
        core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
        ue.expect(200)
        assert_released(d)


def test_allow_policy_is_the_old_behaviour(daemon_factory: Any, rtp_peers: RtpPeers) -> None:
    # What `keep` prevents, shown on the same call: the UE's key goes to the core and the
    # stream leaves the gateway.
    d = daemon_factory(policy={"e2ae_downgrade": "allow"})
    ue_media, _ = rtp_peers
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        ok, _, _, _ = call_up(d, ue, core, rtp_peers, "downgrade-allow")
        in_dialog(ue, ok, "INVITE", 2, d.access_port, uac=True,
                  body=audio_offer(ue_media.port, e2ae=None))
        inv2 = core.expect("INVITE")
        assert not no_ue_key(inv2.body) and K11.encode() in inv2.body
        assert audio_port(inv2.body) == ("127.0.0.1", ue_media.port, "RTP/SAVP")
        assert "e2ae_downgrade=allow" in d.log()
        core.reply(inv2, 488, "Not Acceptable Here", d.core_port, to_tag="b1")
        ue.expect(488)
        in_dialog(ue, ok, "BYE", 3, d.access_port, uac=True)
        core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
        ue.expect(200)
        assert_released(d)
