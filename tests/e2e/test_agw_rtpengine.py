"""rtpengine as the RTP media backend (issue 14 deliver 3, `agw.backend: rtpengine`): each test
starts its own rtpengine (userspace, loopback, stopped by PID) and the daemon controls it over
ng. The UE side speaks SRTP with the independent tests/srtp_ref.py; the key towards the UE is the
one rtpengine made, taken from the SDP it returned."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.calls_helpers import (
    K11,
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
    ue_hangs_up,
)
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer
from tests.e2e.test_calls_carriers import K22, core_invite, plain, ue_answer
from tests.e2e.test_calls_msrp import core_answer, msrp_offer
from tests.rtpengine_proc import Rtpengine, running_rtpengine
from tests.srtp_ref import RefSrtp

SUITE = "AES_CM_128_HMAC_SHA1_80"


@pytest.fixture
def rtpe(tmp_path: Path) -> Iterator[Rtpengine]:
    with running_rtpengine(tmp_path) as r:
        yield r


def _agw(ng: str) -> dict[str, Any]:
    return {"backend": "rtpengine", "rtpengine": {"ng": ng, "timeout_s": 0.3, "retries": 1}}


def _records(df: socket.socket) -> list[dict[str, Any]]:
    out = []
    df.settimeout(0.5)
    while True:
        try:
            out.append(json.loads(df.recv(65536)))
        except TimeoutError:
            return out


def _media_both_ways(
    rtp_peers: RtpPeers, agw_access: int, agw_core: int, from_ue: bytes, to_ue: bytes
) -> None:
    ue_media, core_media = rtp_peers
    tx, rx = RefSrtp(SUITE, from_ue), RefSrtp(SUITE, to_ue)
    for seq in (1, 2, 3):
        pkt = rtp_packet(seq, payload=b"via-rtpengine" * 3)
        ue_media.sock.sendto(tx.protect(pkt), ("127.0.0.1", agw_access))
        assert core_media.recv()[0] == pkt  # SRTP from the UE arrives as the RTP it protected
        back = rtp_packet(seq, ssrc=0x7E57AB1E, payload=b"rtpengine-srtp" * 3)
        core_media.sock.sendto(back, ("127.0.0.1", agw_core))
        got = ue_media.recv()[0]
        assert got != back and rx.unprotect(got) == back


def _no_call_left(d: Daemon, rtpe: Rtpengine) -> None:
    assert_released(d)
    assert rtpe.calls() == []


def test_originating_e2ae_call_through_rtpengine_with_li(
    daemon_factory: Any, rtpe: Rtpengine, rtp_peers: RtpPeers, tmp_path: Path
) -> None:
    path = str(tmp_path / "li.sock")
    df = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    df.bind(path)
    try:
        d: Daemon = daemon_factory(agw=_agw(rtpe.ng), li={"socket": path})
        ue_media, core_media = rtp_peers
        with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
            register(d, ue, core)
            line = f"1 {SUITE} inline:{K11}"
            invite(ue, d, audio_offer(ue_media.port, cryptos=[line]), "rtpe-orig-1")
            inv = core.expect("INVITE")
            _, agw_core, proto = audio_port(inv.body)
            assert proto == "RTP/AVP" and b"a=crypto" not in inv.body and b"3ge2ae" not in inv.body
            assert len(rtpe.calls()) == 1  # the stream lives in rtpengine...
            assert d.stats()["agw_ports"] == 0  # ...not in the embedded relay
            core.reply(inv, 200, "OK", d.core_port, to_tag="r1", body=plain(core_media.port))
            ok = ue.expect(200)
            _, agw_access, proto = audio_port(ok.body)
            assert proto == "RTP/SAVP"
            (answer,) = crypto_lines(ok.body)
            assert answer.startswith(f"a=crypto:1 {SUITE} inline:")
            _, k12 = key_of(answer)
            in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
            core.expect("ACK")

            _media_both_ways(rtp_peers, agw_access, agw_core, b64(K11), k12)

            # LI: the record carries the UE's K11 and rtpengine's K12, the keys in use
            (rec,) = _records(df)
            assert (rec["call_id"], rec["leg"], rec["stream"]) == ("rtpe-orig-1", "originating", 0)
            assert base64.b64decode(rec["from_ue"]["key_salt"]) == b64(K11)
            assert base64.b64decode(rec["to_ue"]["key_salt"]) == k12
            ue_hangs_up(d, ue, core, ok)
            _no_call_left(d, rtpe)
        log = d.log()
        for key in (K11, base64.b64encode(k12).decode()):
            assert key.rstrip("=") not in log
    finally:
        df.close()


def test_terminating_e2ae_call_through_rtpengine(
    daemon_factory: Any, rtpe: Rtpengine, rtp_peers: RtpPeers
) -> None:
    d: Daemon = daemon_factory(agw=_agw(rtpe.ng))
    ue_media, core_media = rtp_peers
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        core_invite(core, d, ue, plain(core_media.port), "rtpe-term-1")
        tinv = ue.expect("INVITE")
        # 7.3.1 step 4: SRTP with one crypto line, K21 made by rtpengine
        _, agw_access, proto = audio_port(tinv.body)
        assert proto == "RTP/SAVP" and b"a=3ge2ae:applied" in tinv.body
        (line,) = crypto_lines(tinv.body)
        assert line.startswith(f"a=crypto:1 {SUITE} inline:")
        _, k21 = key_of(line)
        ue.reply(tinv, 200, "OK", d.access_port, to_tag="u1", body=ue_answer(port=ue_media.port))
        tok = core.expect(200)
        _, agw_core, proto = audio_port(tok.body)
        assert proto == "RTP/AVP" and b"a=crypto" not in tok.body
        in_dialog(core, tok, "ACK", 1, d.core_port, uac=True)
        ue.expect("ACK")

        _media_both_ways(rtp_peers, agw_access, agw_core, b64(K22), k21)
        core_hangs_up(d, ue, core, tok)
        _no_call_left(d, rtpe)


def test_rtpengine_down_gives_488_with_a_warning_and_leaves_nothing(
    daemon_factory: Any, rtpe: Rtpengine, rtp_peers: RtpPeers, tmp_path: Path
) -> None:
    d: Daemon = daemon_factory(agw=_agw(rtpe.ng))
    ue_media, core_media = rtp_peers
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        rtpe.stop()
        invite(ue, d, audio_offer(ue_media.port), "rtpe-down-1")
        resp = ue.expect(488, timeout=10)
        warning = resp.headers.get("warning") or ""
        assert "media gateway" in warning and "rtpengine" in warning, warning
        assert_released(d)
        st = d.wait_stats(lambda s: s["agw_contexts"] == 0)
        assert st["agw_contexts"] == 0 and st["agw_ports"] == 0, st
        assert d.alive()
        # rtpengine back on the same ng port: the next call works, no daemon restart
        with running_rtpengine(tmp_path, rtpe.ng_port) as again:
            line = f"1 {SUITE} inline:{K11}"
            invite(ue, d, audio_offer(ue_media.port, cryptos=[line]), "rtpe-down-2")
            inv = core.expect("INVITE")
            _, agw_core, _ = audio_port(inv.body)
            core.reply(inv, 200, "OK", d.core_port, to_tag="r2", body=plain(core_media.port))
            ok = ue.expect(200)
            _, agw_access, _ = audio_port(ok.body)
            _, k12 = key_of(crypto_lines(ok.body)[0])
            in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
            core.expect("ACK")
            _media_both_ways(rtp_peers, agw_access, agw_core, b64(K11), k12)
            ue_hangs_up(d, ue, core, ok)
            _no_call_left(d, again)


def test_msrp_stays_in_the_embedded_relay(
    daemon_factory: Any, rtpe: Rtpengine, rtp_peers: RtpPeers, tmp_path: Path
) -> None:
    from pcscf_alg.agw.certs import load_or_create

    d: Daemon = daemon_factory(agw=_agw(rtpe.ng))
    ue_media, _ = rtp_peers
    fp = load_or_create(tmp_path / "ue").fingerprint.to_sdp()
    audio = audio_offer(ue_media.port)
    msrp = msrp_offer(50000, fp, cema=True)
    both = audio + msrp[msrp.index("m=message") :]
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        invite(ue, d, both, "rtpe-msrp-1")
        inv = core.expect("INVITE")
        body = inv.body.decode()
        assert "m=audio" in body and "m=message" in body and "TCP/MSRP" in body
        # the audio stream in rtpengine, the MSRP one in the embedded relay (its TCP ports)
        assert len(rtpe.calls()) == 1
        st = d.stats()
        assert st["agw_ports"] == 2, st  # the MSRP access and core ports, no RTP pair
        core.reply(inv, 486, "Busy Here", d.core_port, to_tag="m1")
        ue.expect(486)
        _no_call_left(d, rtpe)

        # answered: each backend is configured with its own streams of the one plan
        invite(ue, d, both, "rtpe-msrp-2")
        inv = core.expect("INVITE")
        answer = plain(40010) + core_answer(40020, cema=True).split("t=0 0\n", 1)[1]
        core.reply(inv, 200, "OK", d.core_port, to_tag="m2", body=answer)
        ok = ue.expect(200)
        text = ok.body.decode()
        assert "RTP/SAVP" in text and "TCP/TLS/MSRP" in text and "a=fingerprint:" in text
        assert len(crypto_lines(ok.body)) == 1
        in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
        core.expect("ACK")
        ue_hangs_up(d, ue, core, ok)
        _no_call_left(d, rtpe)
