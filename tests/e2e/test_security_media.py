"""Issue 11, the media front door, against the running daemon (items 5 and 9).

- An e2ae SRTP call is up; an attacker sends RTP/RTCP to the gateway's core-side ports from
  its own sockets (another port on the core's IP, and another IP). With `agw.strict_source`
  (the default) the UE receives only the legitimate core's packets, under K12, and /stats shows
  the attacker's packets rejected, none relayed.
- An INVITE with 50 anchored m-lines gets 488 with a Warning naming agw.max_streams_per_call;
  nothing reaches the core, no gateway port is held, and the daemon goes on serving calls.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.calls_helpers import (
    K11,
    RtpPeers,
    assert_released,
    audio_offer,
    b64,
    e2ae_call,
    invite,
    register,
    rtp_packet,
    srtp_session,
    ue_hangs_up,
)


@pytest.fixture
def attackers() -> Iterator[list[socket.socket]]:
    """Two attacker sockets: one on the core's IP (another port), one on another IP."""
    socks: list[socket.socket] = []
    try:
        for host in ("127.0.0.1", "127.0.0.2"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((host, 0))
        yield socks
    finally:
        for s in socks:
            s.close()


def _media(st: dict[str, Any]) -> dict[str, int]:
    media: dict[str, int] = st.get("agw_media", {})
    return media


def test_core_side_injection_never_reaches_the_ue(
    peers: Any, rtp_peers: RtpPeers, attackers: list[socket.socket]
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ue_media, core_media = rtp_peers
    call = e2ae_call(d, ue, core, ue_media, core_media, "inject-1")
    ok, agw_access, agw_core, (suite, k12) = call.ok, call.agw_access, call.agw_core, call.to_ue
    # The call works both ways (and the gateway is configured with the core's address).
    tx = srtp_session("AES_CM_128_HMAC_SHA1_80", b64(K11), outbound=True)
    up = rtp_packet(1, payload=b"ue-voice" * 5)
    ue_media.sock.sendto(tx.protect(up), ("127.0.0.1", agw_access))
    assert core_media.recv()[0] == up

    # The attack: RTP to the core-side RTP port, RTCP to its RTCP port, from both sockets.
    sent = 0
    for seq in range(1, 6):
        for s in attackers:
            evil = rtp_packet(seq, ssrc=0xBAD0BAD0, payload=b"INJECTED" * 5)
            s.sendto(evil, ("127.0.0.1", agw_core))
            sr = b"\x80\xc8\x00\x06" + (0xBAD0BAD0).to_bytes(4, "big") + bytes(20)
            s.sendto(sr, ("127.0.0.1", agw_core + 1))
            sent += 2
    st = d.wait_stats(lambda s: _media(s).get("rejected_source", 0) >= sent)
    assert _media(st).get("rejected_source") == sent, st
    assert _media(st).get("to_ue_packets") == 0, st  # nothing of the attacker's relayed

    # The legitimate core's packets get through, and are all the UE receives.
    rx = srtp_session(suite, k12, outbound=False)
    legit = [rtp_packet(100 + i, ssrc=0x600D600D, payload=b"core-%02d!" % i * 5) for i in range(3)]
    for pkt in legit:
        core_media.sock.sendto(pkt, ("127.0.0.1", agw_core))
    got = [rx.unprotect(ue_media.recv()[0]) for _ in legit]
    assert got == legit
    with pytest.raises(TimeoutError):
        ue_media.recv(timeout=0.3)
    st = d.stats()
    assert _media(st).get("to_ue_packets") == len(legit), st
    assert _media(st).get("rejected_source") == sent, st

    ue_hangs_up(d, ue, core, ok)


def many_lines_offer(port: int, count: int) -> str:
    """An e2ae offer with `count` audio m-lines, each asking for e2ae with its own crypto."""
    sdp = audio_offer(port)
    for i in range(1, count):
        sdp += "\n".join(
            [
                f"m=audio {port + 2 * i} RTP/SAVP 96",
                "a=rtpmap:96 AMR-WB/16000/1",
                f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K11}",
                "a=3ge2ae:requested",
                "",
            ]
        )
    return sdp


def test_fifty_m_lines_get_488_and_hold_nothing(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    invite(ue, d, many_lines_offer(40000, 50), "fifty-1")
    resp = ue.expect(488)
    warning = resp.headers.get("warning") or ""
    assert "max_streams_per_call" in warning and "50 > 16" in warning, warning
    # Nothing reached the core, nothing is held.
    with pytest.raises(TimeoutError):
        core.recv(timeout=0.5)
    st = d.stats()
    assert (st["agw_ports"], st["agw_contexts"], st["dialogs"]) == (0, 0, 0), st
    assert st["calls"]["rejected_488"] == 1, st

    # The daemon goes on: an ordinary call right after is anchored and released as usual.
    invite(ue, d, audio_offer(rtp_peers[0].port), "after-fifty-1")
    inv = core.expect("INVITE")
    assert inv.body.count(b"m=audio") == 1 and d.stats()["agw_ports"] == 4
    core.reply(inv, 486, "Busy Here", d.core_port, to_tag="b2")
    ue.expect(486)
    assert_released(d)
