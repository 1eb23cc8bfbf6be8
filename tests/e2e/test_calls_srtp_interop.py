"""A call through the daemon whose UE side speaks SRTP with an independent implementation
(tests/srtp_ref.py, RFC 3711 / RFC 7714 on `cryptography`), for each suite the gateway offers:
the suite the UE offers is selected, K12 comes back in it, and media crosses both ways."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from tests.e2e.calls_helpers import (
    RtpPeers,
    audio_offer,
    audio_port,
    crypto_lines,
    in_dialog,
    invite,
    key_of,
    register,
    rtp_packet,
    ue_hangs_up,
)
from tests.e2e.test_calls_carriers import plain
from tests.srtp_ref import SUITES, RefSrtp


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_originating_call_with_an_independent_srtp_ue(
    peers: Any, suite: str, rtp_peers: RtpPeers
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    s = SUITES[suite]
    k11 = os.urandom(s.key_len + s.salt_len)
    line = f"1 {suite} inline:{base64.b64encode(k11).decode()}"
    ue_media, core_media = rtp_peers
    invite(ue, d, audio_offer(ue_media.port, cryptos=[line]), f"interop-{suite}")
    inv = core.expect("INVITE")
    _, agw_core, proto = audio_port(inv.body)
    assert proto == "RTP/AVP" and b"a=crypto" not in inv.body
    core.reply(inv, 200, "OK", d.core_port, to_tag="i1", body=plain(core_media.port))
    ok = ue.expect(200)
    _, agw_access, _ = audio_port(ok.body)
    (answer,) = crypto_lines(ok.body)
    got_suite, k12 = key_of(answer)
    assert got_suite == suite and answer.startswith(f"a=crypto:1 {suite} inline:")
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)

    tx, rx = RefSrtp(suite, k11), RefSrtp(suite, k12)
    for seq in (1, 2, 3):
        pkt = rtp_packet(seq, payload=b"independent" * 3)
        ue_media.sock.sendto(tx.protect(pkt), ("127.0.0.1", agw_access))
        assert core_media.recv()[0] == pkt
        back = rtp_packet(seq, ssrc=0x7E57AB1E, payload=b"gateway-srtp" * 3)
        core_media.sock.sendto(back, ("127.0.0.1", agw_core))
        assert rx.unprotect(ue_media.recv()[0]) == back

    ue_hangs_up(d, ue, core, ok)
