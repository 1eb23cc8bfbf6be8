"""Lawful-interception key export through the daemon (docs/e2ae-notes.md §3.4, TS 33.107 Annex G):
a DF agent on a Unix datagram socket receives the SDES keys of each e2ae stream, the keys that
really protect the media, and the daemon's log never shows them."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

from tests.e2e.calls_helpers import (
    K11,
    MediaPeer,
    audio_offer,
    b64,
    core_hangs_up,
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
from tests.e2e.test_calls_carriers import K22, core_invite, plain, ue_answer


def _records(df: socket.socket) -> list[dict[str, Any]]:
    out = []
    df.settimeout(0.5)
    while True:
        try:
            out.append(json.loads(df.recv(65536)))
        except TimeoutError:
            return out


def test_keys_of_originating_and_terminating_calls_reach_the_df(
    daemon_factory: Any, tmp_path: Path
) -> None:
    path = str(tmp_path / "li.sock")
    df = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    df.bind(path)
    d: Daemon = daemon_factory(li={"socket": path})
    ue_media, core_media = MediaPeer.bind(), MediaPeer.bind()
    try:
        with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
            register(d, ue, core)
            # originating: K11 from the UE's offer, K12 from our answer
            invite(ue, d, audio_offer(ue_media.port), "li-orig-1")
            inv = core.expect("INVITE")
            core.reply(inv, 200, "OK", d.core_port, to_tag="li1", body=plain(core_media.port))
            ok = ue.expect(200)
            suite, k12 = key_of(crypto_lines(ok.body)[0])
            in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
            (rec,) = _records(df)
            assert (rec["call_id"], rec["leg"], rec["dialog"], rec["stream"]) == (
                "li-orig-1",
                "originating",
                "li1",
                0,
            )
            assert rec["subscriber"] == "sip:alice@ims.test"
            assert base64.b64decode(rec["from_ue"]["key_salt"]) == b64(K11)
            assert base64.b64decode(rec["to_ue"]["key_salt"]) == k12
            assert rec["to_ue"]["suite"] == suite == "AES_CM_128_HMAC_SHA1_80"
            # the exported K11 is what the gateway unprotects the UE's media with
            tx = srtp_session(rec["from_ue"]["suite"], b64(K11), outbound=True)
            pkt = rtp_packet(1, payload=b"li" * 20)
            agw_access = int(ok.body.split(b"m=audio ")[1].split(b" ")[0])
            ue_media.sock.sendto(tx.protect(pkt), ("127.0.0.1", agw_access))
            assert core_media.recv()[0] == pkt
            ue_hangs_up(d, ue, core, ok)

            # terminating: K22 from the UE's answer, K21 from our offer
            core_invite(core, d, ue, plain(core_media.port), "li-term-1")
            tinv = ue.expect("INVITE")
            _, k21 = key_of(crypto_lines(tinv.body)[0])
            ue.reply(tinv, 200, "OK", d.access_port, to_tag="u1", body=ue_answer())
            tok = core.expect(200)
            in_dialog(core, tok, "ACK", 1, d.core_port, uac=True)
            ue.expect("ACK")
            (rec,) = _records(df)
            assert (rec["call_id"], rec["leg"], rec["dialog"]) == ("li-term-1", "terminating", "u1")
            assert base64.b64decode(rec["from_ue"]["key_salt"]) == b64(K22)
            assert base64.b64decode(rec["to_ue"]["key_salt"]) == k21
            core_hangs_up(d, ue, core, tok)
        log = d.log()
        for key in (K11, K22, base64.b64encode(k12).decode(), base64.b64encode(k21).decode()):
            assert key.rstrip("=") not in log
    finally:
        df.close()
        ue_media.close()
        core_media.close()


def test_missing_df_agent_does_not_fail_the_call(daemon_factory: Any, tmp_path: Path) -> None:
    d: Daemon = daemon_factory(li={"socket": str(tmp_path / "nobody.sock")})
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        invite(ue, d, audio_offer(40000), "li-nodf-1")
        inv = core.expect("INVITE")
        core.reply(inv, 200, "OK", d.core_port, to_tag="n1", body=plain(40010))
        ok = ue.expect(200)
        assert crypto_lines(ok.body)
        in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
        ue_hangs_up(d, ue, core, ok)
    assert "not delivered" in d.log() and K11 not in d.log()


FAILING_SINK = '''
class FailingSink:
    """A sink that fails, with the whole record (keys included) in its exception text."""

    def __init__(self, reason):
        self.reason = reason

    def deliver(self, record):
        raise ValueError(f"{self.reason}: {record.to_json()}")
'''


def test_a_failing_sink_neither_fails_the_call_nor_logs_the_keys(
    daemon_factory: Any, tmp_path: Path
) -> None:
    # the daemon runs in tmp_path: a module there is importable as `module:Class`
    (tmp_path / "failing_li_sink.py").write_text(FAILING_SINK)
    d: Daemon = daemon_factory(
        li={"class": "failing_li_sink:FailingSink", "options": {"reason": "df down"}}
    )
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        invite(ue, d, audio_offer(40000), "li-fail-1")
        inv = core.expect("INVITE")
        core.reply(inv, 200, "OK", d.core_port, to_tag="f1", body=plain(40010))
        ok = ue.expect(200)
        _, k12 = key_of(crypto_lines(ok.body)[0])
        in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
        ue_hangs_up(d, ue, core, ok)
    log = d.log()
    assert "LI key sink failed for stream 0 (ValueError)" in log
    assert "df down" not in log  # the exception's text (which holds the record) is not logged
    assert K11 not in log and base64.b64encode(k12).decode().rstrip("=") not in log
