"""SIPp drives an emergency-style e2ae call whose offer sits in a multipart body (RFC 5621:
SDP + PIDF-LO, RFC 6442) through the daemon: scenarios/ue_e2ae_emergency_multipart.xml (UE)
and scenarios/scscf_e2ae_emergency_multipart.xml (core side).

The scenarios check what they receive (a failed <ereg check_it> makes SIPp exit 1). On top of
that this test reads both sides' message traces and parses the multipart bodies with Python's
`email` package, a MIME parser independent of the P-CSCF's: the SDP part reaching the core is
plain RTP without keys, the PIDF-LO part is the UE's byte for byte. Real SRTP/RTP then crosses
the gateway with the K11 the UE offered and the K12 it got, and the call ends leaving nothing.
"""

from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

from pcscf_alg.sdp.model import Sdp
from pcscf_alg.sip.message import SipMessage
from tests.e2e.daemon import Daemon
from tests.e2e.sipp_e2ae import (
    HOST,
    SUITE80,
    UeMedia,
    addr,
    answered_k12,
    assert_released,
    exchange_srtp,
    media,
    received,
    sdp_of,
    sipp_pair,
    wait_traced,
)

UE_SCENARIO = "ue_e2ae_emergency_multipart.xml"
CORE_SCENARIO = "scscf_e2ae_emergency_multipart.xml"
HOLD_MS = 2500


def mime_parts(msg: SipMessage) -> dict[str, bytes]:
    """Content type -> payload of each leaf part, as the stdlib's MIME parser reads the body."""
    ctype = msg.headers.get("content-type") or ""
    assert ctype.lower().startswith("multipart/mixed"), ctype
    raw = b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + msg.body
    mime = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    assert not mime.defects, mime.defects
    out: dict[str, bytes] = {}
    for part in mime.walk():
        if part.is_multipart():
            continue
        ptype = part.get_content_type()
        assert ptype not in out, f"two {ptype} parts"
        payload = part.get_payload(decode=False)
        assert isinstance(payload, str)
        out[ptype] = payload.encode("utf-8", "surrogateescape")
    return out


def test_emergency_invite_sdp_plus_pidf_lo(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    ue_rtp_port = str(ue_media.rtp.getsockname()[1])
    ue_keys = {
        "sc": "sdes-srtp;mediasec, msrp-tls;mediasec",
        "k1": ue_media.k1,
        "k2": ue_media.k2,
        "rtp_port": ue_rtp_port,
        "hold": str(HOLD_MS),
    }
    core_keys = {
        "rtp_port": str(ue_media.core_rtp.getsockname()[1]),
        "ue_rtp_port": ue_rtp_port,
        "agw_ip": HOST,
    }
    with sipp_pair(
        daemon,
        tmp_path,
        ue_keys=ue_keys,
        core_keys=core_keys,
        ue_scenario=UE_SCENARIO,
        core_scenario=CORE_SCENARIO,
    ) as pair:
        ue_inv = wait_traced(pair.ue, received("INVITE", sent=True), "INVITE sent by the UE")
        core_inv = wait_traced(pair.core, received("INVITE"), "INVITE at the core")
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 to the INVITE at the UE")

        # what the UE sent: SDP (with its keys) + PIDF-LO, as the independent parser sees it
        assert ue_inv.uri == "urn:service:sos"
        ue_parts = mime_parts(ue_inv)
        assert set(ue_parts) == {"application/sdp", "application/pidf+xml"}, ue_parts
        assert ue_inv.body.endswith(b"\r\n--boundary1--\r\n"), ue_inv.body[-40:]
        assert b"<gml:pos>48.2082 16.3738</gml:pos>" in ue_parts["application/pidf+xml"]

        # what the core got: still multipart; the SDP part is plain RTP without keys or
        # indications (TS 33.328 7.2.1 step 3); the PIDF-LO part is byte-identical
        core_parts = mime_parts(core_inv)
        assert set(core_parts) == set(ue_parts), core_parts
        core_sdp = Sdp.parse(core_parts["application/sdp"])
        core_audio = media(core_sdp, "audio")
        assert core_audio.proto == "RTP/AVP"
        assert core_audio.attrs("crypto") == [] and core_audio.attrs("3ge2ae") == []
        assert b"a=crypto" not in core_inv.body and b"3ge2ae" not in core_inv.body
        for k in (ue_media.k1, ue_media.k2):
            assert k.encode() not in core_inv.body
        assert addr(core_sdp, "audio") != (HOST, int(ue_rtp_port))
        assert core_parts["application/pidf+xml"] == ue_parts["application/pidf+xml"]
        # and at the byte level: everything from the second delimiter on is untouched
        pidf_delim = b"\r\n--boundary1\r\nContent-Type: application/pidf+xml"
        assert ue_inv.body.count(pidf_delim) == 1
        tail = ue_inv.body[ue_inv.body.index(pidf_delim) :]
        assert core_inv.body.endswith(tail)
        assert core_inv.body.startswith(b"--boundary1\r\nContent-Type: application/sdp\r\n\r\n")
        assert core_inv.headers.get("geolocation") == ue_inv.headers.get("geolocation")
        assert core_inv.uri == "urn:service:sos"

        # the answer at the UE: one crypto line, tag 1, 80-bit suite, a new key (K12)
        ue_sdp = sdp_of(ok)
        assert media(ue_sdp, "audio").proto == "RTP/SAVP"
        k12_b64 = answered_k12(ue_sdp, (ue_media.k1, ue_media.k2))

        # media through the gateway while SIPp holds the call: SRTP (K11) -> RTP, RTP -> SRTP (K12)
        exchange_srtp(
            ue=ue_media.rtp,
            ue_tx_key=ue_media.k1,
            ue_rx_key=k12_b64,
            suite=SUITE80,
            agw_access=addr(ue_sdp, "audio"),
            core=ue_media.core_rtp,
            agw_core=addr(core_sdp, "audio"),
        )
        pair.finish()  # both SIPp exit codes 0 (every scenario check passed)
        assert pair.ue.wait().returncode == 0
        assert pair.core.wait().returncode == 0
    assert_released(daemon)
