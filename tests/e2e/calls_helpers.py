"""Shared steps for the call tests: registration through the daemon, SDP builders, SRTP peers."""

from __future__ import annotations

import base64
import socket
import struct
import time
from dataclasses import dataclass

import pylibsrtp

from pcscf_alg.sdp.crypto import parse_crypto
from pcscf_alg.sdp.model import Sdp
from pcscf_alg.sip.message import SipMessage
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer, contact_uri, route_set

K11 = "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC"  # example 04's first line
K11_32 = "MoNHDeEa+5SmQUjjM2YlydHnpHWBlyspHpxHnB/h"
BOTH = "sdes-srtp;mediasec, msrp-tls;mediasec"

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def register(
    d: Daemon,
    ue: UdpPeer,
    core: UdpPeer,
    sec_client: str | None = BOTH,
    user: str = "alice",
    expires: int = 600,
) -> SipMessage:
    """REGISTER through the daemon; `core` plays the registrar (200 straight away)."""
    sc = f"Security-Client: {sec_client}\n" if sec_client else ""
    ue.send(
        f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-reg{time.monotonic_ns()};rport
Max-Forwards: 70
From: <sip:{user}@ims.test>;tag=r{ue.port}
To: <sip:{user}@ims.test>
Call-ID: reg-{ue.port}@test
CSeq: {time.monotonic_ns() % 100000 + 1} REGISTER
Contact: <sip:{user}@127.0.0.1:{ue.port}>
Require: sec-agree
Proxy-Require: sec-agree
{sc}Expires: {expires}
""",
        d.access_port,
    )
    r = core.expect("REGISTER")
    core.reply(
        r, 200, "OK", d.core_port, contact=f"sip:{user}@127.0.0.1:{ue.port}>;expires={expires};x=<"
    )
    return ue.expect(200)


def audio_offer(
    port: int,
    proto: str = "RTP/SAVP",
    cryptos: list[str] | None = None,
    e2ae: str | None = "requested",
    extra: str = "",
) -> str:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} {proto} 96",
        "a=rtpmap:96 AMR-WB/16000/1",
    ]
    if cryptos is None and "SAVP" in proto:
        cryptos = [
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{K11}",
            f"2 AES_CM_128_HMAC_SHA1_32 inline:{K11_32}",
        ]
    lines += [f"a=crypto:{c}" for c in cryptos or []]
    if e2ae:
        lines.append(f"a=3ge2ae:{e2ae}")
    if extra:
        lines += extra.strip("\n").split("\n")
    lines.append("a=sendrecv")
    return "\n".join(lines) + "\n"


def invite(
    ue: UdpPeer,
    d: Daemon,
    sdp: str | None,
    call_id: str,
    *,
    to: str = "bob",
    extra: str = "",
    content_type: str = "application/sdp",
) -> None:
    body = f"Content-Type: {content_type}\n\n{sdp}" if sdp is not None else ""
    hdrs = f"{extra.strip()}\n" if extra.strip() else ""
    ue.send(
        f"""INVITE sip:{to}@ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-{call_id}-1;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:{d.access_port};lr>
From: <sip:alice@ims.test>;tag=a-{call_id}
To: <sip:{to}@ims.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:{ue.port}>
{hdrs}{body}""",
        d.access_port,
    )


def in_dialog(
    peer: UdpPeer,
    resp_or_req: SipMessage,
    method: str,
    cseq: int,
    port: int,
    *,
    uac: bool,
    body: str | None = None,
    branch: str = "",
) -> None:
    """Send an in-dialog request. `uac`: we are the caller (route set from the 2xx, reversed)."""
    m = resp_or_req
    if uac:
        routes = route_set(m)
        frm, to = m.headers.get("from"), m.headers.get("to")
    else:
        routes = m.headers.values("record-route")
        frm, to = m.headers.get("to") or "", m.headers.get("from")
        if "tag=" not in frm:
            frm += ";tag=b1"  # the tag our peer answered with

    target = contact_uri(m)
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-{method}{cseq}{branch};rport",
        "Max-Forwards: 70",
    ]
    lines += [f"Route: {r}" for r in routes]
    lines += [
        f"From: {frm}",
        f"To: {to}",
        f"Call-ID: {m.call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:x@127.0.0.1:{peer.port}>",
    ]
    if body is not None:
        lines += ["Content-Type: application/sdp", "", *body.strip("\n").split("\n")]
    peer.send("\n".join(lines), port)


def audio_port(sdp: bytes) -> tuple[str, int, str]:
    s = Sdp.parse(sdp)
    m = s.media[0]
    c = s.media_connection(m)
    assert c is not None
    return c.host, m.port, m.proto


def crypto_lines(sdp: bytes, index: int = 0) -> list[str]:
    s = Sdp.parse(sdp)
    return [ln for ln in s.media[index].lines if ln.startswith("a=crypto:")]


def key_of(crypto_line: str) -> tuple[str, bytes]:
    c = parse_crypto(crypto_line[len("a=crypto:") :])
    return c.suite, c.key.key_salt


def rtp_packet(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xab" * 40) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 320, ssrc) + payload


@dataclass
class MediaPeer:
    """A UDP media socket (RTP on `port`)."""

    sock: socket.socket

    @classmethod
    def bind(cls, port: int = 0) -> MediaPeer:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        s.settimeout(3.0)
        return cls(s)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()

    def recv(self, timeout: float = 3.0) -> tuple[bytes, tuple[str, int]]:
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(2048)
        return data, addr


# (UE, core) RTP sockets of one test: the `rtp_peers` fixture (conftest), closed after the test.
RtpPeers = tuple[MediaPeer, MediaPeer]


def srtp_both_ways(
    ue_media: MediaPeer,
    core_media: MediaPeer,
    *,
    agw_access: int,
    agw_core: int,
    from_ue: tuple[str, bytes],
    to_ue: tuple[str, bytes],
    seq: int = 11,
) -> None:
    """One packet each way through the gateway: the UE's SRTP under `from_ue` (suite, key)
    reaches the core as the RTP packet it protected; the core's RTP reaches the UE as SRTP that
    `to_ue` unprotects. A second check in the same call needs a higher `seq` (the gateway's
    SRTP replay check drops a packet index it has seen)."""
    tx = srtp_session(from_ue[0], from_ue[1], outbound=True)
    pkt = rtp_packet(seq, ssrc=0x0A0B0C0D, payload=b"from-ue!" * 5)
    ue_media.sock.sendto(tx.protect(pkt), ("127.0.0.1", agw_access))
    assert core_media.recv()[0] == pkt
    rx = srtp_session(to_ue[0], to_ue[1], outbound=False)
    pkt2 = rtp_packet(seq + 1, ssrc=0x55667788, payload=b"to-ue!!!" * 5)
    core_media.sock.sendto(pkt2, ("127.0.0.1", agw_core))
    got = ue_media.recv()[0]
    assert got != pkt2 and rx.unprotect(got) == pkt2


# The core's plain answer to an audio offer (`port`: its RTP port).
PLAIN_ANSWER = """v=0
o=- 2 2 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {port} RTP/AVP 96
a=rtpmap:96 AMR-WB/16000/1
a=sendrecv
"""


@dataclass(frozen=True)
class E2aeCall:
    """An answered, ACKed originating e2ae RTP call (`e2ae_call`)."""

    inv: SipMessage  # the INVITE as the core got it
    ok: SipMessage  # the 2xx as the UE got it
    agw_access: int  # the gateway's RTP port towards the UE
    agw_core: int  # the gateway's RTP port towards the core
    to_ue: tuple[str, bytes]  # (suite, K12): the key the P-CSCF gave the UE

    def media(self, ue_media: MediaPeer, core_media: MediaPeer, seq: int = 11) -> None:
        """SRTP under K11 from the UE and RTP from the core cross the gateway (see
        `srtp_both_ways` for `seq`)."""
        srtp_both_ways(
            ue_media,
            core_media,
            agw_access=self.agw_access,
            agw_core=self.agw_core,
            from_ue=("AES_CM_128_HMAC_SHA1_80", b64(K11)),
            to_ue=self.to_ue,
            seq=seq,
        )


def e2ae_call(
    d: Daemon,
    ue: UdpPeer,
    core: UdpPeer,
    ue_media: MediaPeer,
    core_media: MediaPeer,
    call_id: str,
    *,
    to_tag: str = "b1",
) -> E2aeCall:
    """An originating e2ae RTP call (TS 33.328 7.2.1): the UE offers SRTP (K11, `audio_offer`),
    the core gets plain RTP/AVP with no key and no a=3ge2ae and answers `PLAIN_ANSWER`, the UE
    gets RTP/SAVP with exactly one a=crypto (K12); ACK both ways."""
    invite(ue, d, audio_offer(ue_media.port), call_id)
    inv = core.expect("INVITE")
    _, agw_core, proto = audio_port(inv.body)
    assert proto == "RTP/AVP" and b"a=crypto" not in inv.body, inv.body
    assert b"3ge2ae" not in inv.body, inv.body
    answer = PLAIN_ANSWER.format(port=core_media.port)
    core.reply(inv, 200, "OK", d.core_port, to_tag=to_tag, body=answer)
    ok = ue.expect(200)
    _, agw_access, proto = audio_port(ok.body)
    assert proto == "RTP/SAVP", ok.body
    (line,) = crypto_lines(ok.body)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    return E2aeCall(inv, ok, agw_access, agw_core, key_of(line))


def srtp_session(suite: str, key_salt: bytes, outbound: bool) -> pylibsrtp.Session:
    pol = pylibsrtp.Policy(
        key=key_salt,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        if outbound
        else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=PROFILES[suite],
    )
    return pylibsrtp.Session(policy=pol)


def b64(key: str) -> bytes:
    return base64.b64decode(key + "=" * (-len(key) % 4))


def ue_hangs_up(d: Daemon, ue: UdpPeer, core: UdpPeer, ok: SipMessage) -> None:
    """The UE sends BYE in the dialog of `ok` (the 2xx it got, CSeq 2); the core answers 200;
    the call leaves nothing behind."""
    in_dialog(ue, ok, "BYE", 2, d.access_port, uac=True)
    core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
    ue.expect(200)
    assert_released(d)


def core_hangs_up(d: Daemon, ue: UdpPeer, core: UdpPeer, ok: SipMessage) -> None:
    """The mirror image: the core sends BYE in the dialog of `ok` (the 2xx it got)."""
    in_dialog(core, ok, "BYE", 2, d.core_port, uac=True)
    ue.reply(ue.expect("BYE"), 200, "OK", d.access_port, to_tag="")
    core.expect(200)
    assert_released(d)


def assert_released(d: Daemon) -> None:
    """The call left nothing behind: no gateway ports, no dialogs (release is asynchronous)."""
    st = d.wait_stats(lambda s: s["agw_ports"] == 0 and s["dialogs"] == 0, timeout=10)
    assert (st["agw_ports"], st["dialogs"]) == (0, 0), st
