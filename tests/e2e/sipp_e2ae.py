"""Helpers for the SIPp e2ae end-to-end tests (issue 6 deliverable 5): read what SIPp sent and
received from its -trace_msg file while it holds a call, and play the media peers (SRTP/RTP over
UDP, MSRP over TLS and TCP) in Python.

Everything is bounded: every socket has a timeout, every poll a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pylibsrtp

from pcscf_alg.agw.certs import GatewayCertificate, load_or_create
from pcscf_alg.sdp.crypto import CryptoAttr, parse_crypto
from pcscf_alg.sdp.model import Media, Sdp
from pcscf_alg.sip.message import SipMessage, parse_message
from tests.e2e.daemon import Daemon
from tests.sipp import SippAgent, SippProcess, start

HOST = "127.0.0.1"

# ------------------------------------------------------------------------------------ SIPp traces

# SIPp 3.6 heads a sent message "UDP message sent (N bytes):" and a received one
# "UDP message received [N] bytes :".
_HEAD = re.compile(
    rb"^(UDP|TCP|TLS) message (sent|received) (?:\((\d+) bytes\)|\[(\d+)\] bytes ):\n\n", re.M
)


@dataclass
class Traced:
    sent: bool
    msg: SipMessage
    raw: bytes


def traced_messages(path: Path) -> list[Traced]:
    """Every message in a SIPp -trace_msg file (each block gives its exact byte length)."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    out: list[Traced] = []
    for m in _HEAD.finditer(data):
        n = int(m.group(3) or m.group(4))
        raw = data[m.end() : m.end() + n]
        if len(raw) < n:
            break  # still being written
        with contextlib.suppress(Exception):
            out.append(Traced(m.group(2) == b"sent", parse_message(raw), raw))
    return out


def wait_traced(
    proc: SippProcess, pred: Callable[[Traced], bool], what: str, timeout: float = 8.0
) -> SipMessage:
    """Poll `proc`'s message trace until a message matches `pred` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        for t in traced_messages(proc.files.messages):
            if pred(t):
                return t.msg
        if time.monotonic() > deadline or not proc.running():
            res = proc.wait(timeout=0.5) if not proc.running() else None
            dump = (
                res.dump() if res is not None else proc.files.messages.read_text(errors="replace")
            )
            raise AssertionError(f"{proc.agent.label}: no {what} within {timeout}s\n{dump}")
        time.sleep(0.03)


def received(
    method_or_status: str | int, cseq_method: str | None = None, *, sent: bool = False
) -> Callable[[Traced], bool]:
    """A message the SIPp agent received (or, with `sent=True`, sent)."""

    def pred(t: Traced) -> bool:
        if t.sent is not sent:
            return False
        m = t.msg
        if isinstance(method_or_status, int):
            if m.status != method_or_status:
                return False
        elif m.method != method_or_status:
            return False
        return cseq_method is None or m.cseq[1] == cseq_method

    return pred


def all_received(proc: SippProcess, pred: Callable[[Traced], bool]) -> list[SipMessage]:
    return [t.msg for t in traced_messages(proc.files.messages) if pred(t)]


def sdp_of(msg: SipMessage) -> Sdp:
    assert msg.body, f"no SDP in {msg.short()}"
    return Sdp.parse(msg.body)


def media(sdp: Sdp, kind: str) -> Media:
    for m in sdp.media:
        if m.media == kind:
            return m
    raise AssertionError(f"no m={kind} in\n{sdp}")


def addr(sdp: Sdp, kind: str) -> tuple[str, int]:
    m = media(sdp, kind)
    c = sdp.media_connection(m)
    assert c is not None
    return c.host, m.port


def cryptos(sdp: Sdp, kind: str = "audio") -> list[CryptoAttr]:
    return [parse_crypto(v) for v in media(sdp, kind).attrs("crypto")]


SUITE80 = "AES_CM_128_HMAC_SHA1_80"


def answered_k12(ue_sdp: Sdp, ue_keys: tuple[str, str]) -> str:
    """TS 33.328 7.2.1 steps 7-8 as the UE sees the answer: one a=crypto with the tag and suite
    of the UE's first line (tag 1, AES_CM_128_HMAC_SHA1_80), no lifetime or MKI, and a key of
    the gateway's (K12), not one of the UE's own; returned as base64."""
    (k12,) = cryptos(ue_sdp)
    assert (k12.tag, k12.suite) == (1, SUITE80)
    assert k12.key.lifetime is None and k12.key.mki_value is None
    line = media(ue_sdp, "audio").attr("crypto")
    assert line is not None
    k12_b64 = line.split("inline:", 1)[1]
    assert k12_b64 not in ue_keys
    return k12_b64


# ---------------------------------------------------------------------------------- keys, certs


def new_key() -> str:
    """An AES_CM_128 master key || salt (30 bytes) in base64: 40 characters, no padding."""
    return base64.b64encode(secrets.token_bytes(30)).decode()


def fingerprint(cert: GatewayCertificate) -> str:
    return cert.fingerprint.to_sdp().split(" ", 1)[1]


def ue_certificate(tmp_path: Path, name: str = "ue") -> tuple[GatewayCertificate, str]:
    """A self-signed certificate for a test UE and its sha-256 fingerprint (AB:CD:...)."""
    cert = load_or_create(tmp_path / name)
    return cert, fingerprint(cert)


def der_fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


# ------------------------------------------------------------------------------------- RTP/SRTP

_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def srtp_session(key_b64: str, suite: str, outbound: bool) -> pylibsrtp.Session:
    key = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4))
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=(
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        ),
        srtp_profile=_PROFILES[suite],
    )
    return pylibsrtp.Session(policy)


def rtp_packet(seq: int, payload: bytes, ssrc: int = 0x1234ABCD, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 320, ssrc) + payload


def rtp_payload(pkt: bytes) -> bytes:
    cc = pkt[0] & 0x0F
    return pkt[12 + 4 * cc :]


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.settimeout(0.1)
    return s


def _recv_until(sock: socket.socket, deadline: float) -> bytes | None:
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(4096)
            return data
        except TimeoutError:
            return None
        except OSError:
            return None
    return None


def relay_once(
    src: socket.socket,
    dst_addr: tuple[str, int],
    make: Callable[[int], bytes],
    rcv: socket.socket,
    check: Callable[[bytes], bool],
    timeout: float = 3.0,
) -> bytes:
    """Send packets made by make(seq) from `src` to `dst_addr` every 50 ms until `rcv` gets one
    that `check` accepts (the gateway may still be configuring when the first ones arrive)."""
    deadline = time.monotonic() + timeout
    seq = 1
    got: list[bytes] = []
    while time.monotonic() < deadline:
        src.sendto(make(seq), dst_addr)
        seq += 1
        t_end = min(deadline, time.monotonic() + 0.05)
        while time.monotonic() < t_end:
            data = _recv_until(rcv, t_end)
            if data is None:
                break
            got.append(data)
            if check(data):
                return data
    raise AssertionError(f"nothing acceptable arrived in {timeout}s (got {len(got)} packets)")


def exchange_srtp(
    *,
    ue: socket.socket,
    ue_tx_key: str,
    ue_rx_key: str,
    suite: str,
    agw_access: tuple[str, int],
    core: socket.socket,
    agw_core: tuple[str, int],
) -> None:
    """SRTP sent by the UE with `ue_tx_key` arrives at the core as RTP; RTP from the core
    arrives at the UE as SRTP that decrypts with `ue_rx_key`."""
    tx = srtp_session(ue_tx_key, suite, outbound=True)
    up = b"UE-to-core voice " + os.urandom(8)
    pkt = relay_once(
        ue,
        agw_access,
        lambda s: tx.protect(rtp_packet(s, up)),
        core,
        lambda d: rtp_payload(d) == up,
    )
    assert len(pkt) == 12 + len(up), "the core must get plain RTP (no SRTP auth tag)"
    rx = srtp_session(ue_rx_key, suite, outbound=False)
    down = b"core-to-UE voice " + os.urandom(8)
    plain_len = 12 + len(down)

    def ok(d: bytes) -> bool:
        if len(d) <= plain_len:
            return False  # plain RTP towards the UE would be a failure: keep waiting
        try:
            return rtp_payload(rx.unprotect(d)) == down
        except Exception:
            return False

    relay_once(core, agw_core, lambda s: rtp_packet(s, down, ssrc=0x5EED0001), ue, ok)


def exchange_plain_rtp(
    a: socket.socket, a_to: tuple[str, int], b: socket.socket, b_to: tuple[str, int]
) -> None:
    """Bytes go through unchanged both ways (pass-through: SRTP end to end)."""
    p1 = b"opaque-srtp-1 " + os.urandom(20)
    relay_once(a, a_to, lambda s: rtp_packet(s, p1), b, lambda d: rtp_payload(d) == p1)
    p2 = b"opaque-srtp-2 " + os.urandom(20)
    relay_once(b, b_to, lambda s: rtp_packet(s, p2), a, lambda d: rtp_payload(d) == p2)


# ------------------------------------------------------------------------------------------ MSRP


def msrp_send(tid: str, to_path: str, from_path: str, body: bytes) -> bytes:
    return (
        (
            f"MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {from_path}\r\n"
            f"Message-ID: m-{tid}\r\nByte-Range: 1-{len(body)}/{len(body)}\r\n"
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n-------{tid}$\r\n".encode()
    )


def msrp_ok(tid: str, to_path: str, from_path: str) -> bytes:
    return (
        f"MSRP {tid} 200 OK\r\nTo-Path: {to_path}\r\nFrom-Path: {from_path}\r\n-------{tid}$\r\n"
    ).encode()


@dataclass
class MsrpFrame:
    tid: str
    first: str
    headers: dict[str, str]
    body: bytes


def read_msrp(recv: Callable[[int], bytes], timeout: float = 3.0) -> MsrpFrame:
    """Read one MSRP frame (RFC 4975 §7: ends with -------<tid><flag>)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        m = re.match(rb"MSRP (\S+) ", buf)
        if m is not None:
            end = b"\r\n-------" + m.group(1)
            i = buf.find(end)
            if i >= 0 and len(buf) >= i + len(end) + 3:
                head, _, body = buf[:i].partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                hdrs = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                return MsrpFrame(m.group(1).decode(), lines[0], hdrs, body)
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete MSRP frame in {timeout}s: {buf[:300]!r}")
        chunk = recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed; got {buf[:300]!r}")
        buf += chunk


def tcp_listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen(2)
    s.settimeout(5.0)
    return s


def ue_tls_connect(
    cert: GatewayCertificate, to: tuple[str, int], expect_fp: str, timeout: float = 5.0
) -> ssl.SSLSocket:
    """The UE's TLS client: its own self-signed certificate; it authenticates the gateway by
    the SDP fingerprint (RFC 8122), not by PKI."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    raw = socket.create_connection(to, timeout=timeout)
    tls = ctx.wrap_socket(raw, server_hostname=None)
    der = tls.getpeercert(binary_form=True)
    assert der is not None and der_fingerprint(der) == expect_fp.upper(), (
        "the gateway's certificate does not match the fingerprint in the SDP"
    )
    return tls


@contextlib.contextmanager
def closing_all(*socks: socket.socket) -> Iterator[None]:
    try:
        yield
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()


# ------------------------------------------------------------------------------ SIPp call pairs


def assert_released(d: Daemon) -> None:
    """After each call: the gateway holds zero ports and the ALG zero calls (release is async)."""
    st = d.wait_stats(lambda s: s["agw_ports"] == 0 and s["dialogs"] == 0, timeout=10)
    assert st["agw_ports"] == 0, st
    assert st["dialogs"] == 0, st
    assert st["agw_contexts"] == 0, st


@dataclass
class Pair:
    """A core-side SIPp (UAS on the daemon's next hop) and a UE SIPp (UAC via the access port)."""

    core: SippProcess
    ue: SippProcess

    def finish(self) -> None:
        ue = self.ue.wait()
        core = self.core.wait(timeout=ue.duration + 8)
        problems = [r for r in (ue, core) if not r.ok]
        assert not problems, "\n\n".join(r.dump(12000) for r in problems)


@contextlib.contextmanager
def sipp_pair(
    d: Daemon,
    tmp_path: Path,
    *,
    ue_keys: dict[str, str],
    core_keys: dict[str, str],
    ue_scenario: str = "ue_e2ae_orig.xml",
    core_scenario: str = "scscf_e2ae_orig.xml",
    timeout: float = 20.0,
) -> Iterator[Pair]:
    core = SippAgent(
        core_scenario,
        role="uas",
        local_port=d.next_hop_port,
        keys=core_keys,
        timeout=timeout,
        name="core",
    )
    ue = SippAgent(
        ue_scenario,
        role="uac",
        remote=f"{HOST}:{d.next_hop_port}",
        rsa=f"{HOST}:{d.access_port}",
        service="alice",
        keys=ue_keys,
        timeout=timeout,
        name="ue",
    )
    cp = start(core, tmp_path)
    up: SippProcess | None = None
    try:
        assert cp.wait_ready(5), cp.wait(timeout=0).dump()
        up = start(ue, tmp_path)
        yield Pair(cp, up)
    finally:
        if up is not None:
            up.stop()
        cp.stop()


@dataclass
class UeMedia:
    rtp: socket.socket
    core_rtp: socket.socket
    core_msrp: socket.socket  # listening: the far end answers a=setup:passive
    k1: str
    k2: str

    @classmethod
    def open(cls) -> UeMedia:
        return cls(udp_socket(), udp_socket(), tcp_listener(), new_key(), new_key())

    def close(self) -> None:
        for s in (self.rtp, self.core_rtp, self.core_msrp):
            with contextlib.suppress(OSError):
                s.close()
