"""`make demo`: what pcscf-alg does, in one minute, on loopback.

1. Starts the daemon on the default config (config/pcscf.yaml) and an S-CSCF stand-in on the
   next hop (127.0.0.1:5080).
2. Registers two scripted UEs, alice and bob, with `Security-Client: sdes-srtp;mediasec,
   msrp-tls;mediasec`.
3. alice calls bob with an audio (SRTP) and an MSRP (TLS) stream, both "e2ae requested". The call
   crosses the P-CSCF twice: originating leg (alice -> core) and terminating leg (core -> bob).
4. Prints the SDP at each hop side by side, with the P-CSCF's decision per stream. Keys redacted.
5. Sends a few seconds of SRTP from alice (decrypted at the gateway, plain RTP on the core side,
   re-encrypted with bob's key towards bob) and back, and one MSRP message over TLS -> TCP -> TLS.

Run from the repository root: `python -m examples.demo` (what `make demo` does).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pylibsrtp

from examples.scscf import ScscfStub
from pcscf_alg.agw.certs import GatewayCertificate, load_or_create
from pcscf_alg.config import load_config
from pcscf_alg.e2ae import redact_sdp
from pcscf_alg.sdp.crypto import parse_crypto
from pcscf_alg.sdp.model import Sdp
from pcscf_alg.sip.headers import NameAddr
from pcscf_alg.sip.message import SipMessage, parse_message

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 62


def _via(port: int) -> str:
    return f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport"


def _crlf(lines: list[str], body: str = "") -> bytes:
    if body:
        body = body.replace("\n", "\r\n")
    head = [*lines, f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


@dataclass
class Ue:
    name: str
    pcscf: tuple[str, int]
    sock: socket.socket = field(init=False)
    rtp: socket.socket = field(init=False)
    msrp_port: int = field(init=False)
    cert: GatewayCertificate | None = None
    k_tx: bytes = field(default_factory=lambda: secrets.token_bytes(30))

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.msrp_port = s.getsockname()[1]

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@ims.test"

    @property
    def contact(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.port}"

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.pcscf)

    def recv(self, want: str | int, timeout: float = 5.0) -> SipMessage:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                raise SystemExit(f"demo: {self.name} did not receive {want}") from None
            msg = parse_message(data)
            if (isinstance(want, int) and msg.status == want) or msg.method == want:
                return msg

    def register(self) -> None:
        self.send(
            _crlf(
                [
                    "REGISTER sip:ims.test SIP/2.0",
                    _via(self.port),
                    "Max-Forwards: 70",
                    f"From: <{self.uri}>;tag={secrets.token_hex(4)}",
                    f"To: <{self.uri}>",
                    f"Call-ID: reg-{self.name}-{secrets.token_hex(4)}@demo",
                    "CSeq: 1 REGISTER",
                    f"Contact: <{self.contact}>",
                    "Supported: path, sec-agree",
                    "Require: sec-agree",
                    "Proxy-Require: sec-agree",
                    "Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec",
                    "Expires: 600",
                ]
            )
        )
        ok = self.recv(200)
        print(
            f"  {self.name:5} registered; P-CSCF answered Security-Server: "
            f"{ok.headers.get('security-server')}"
        )

    def sdp(self, *, offer: bool, setup: str, crypto_tag: int = 1) -> str:
        assert self.cert is not None
        key = base64.b64encode(self.k_tx).decode()
        lines = [
            "v=0",
            f"o=- {int(time.time())} 1 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            f"m=audio {self.rtp.getsockname()[1]} RTP/SAVP 96",
            "a=rtpmap:96 AMR-WB/16000/1",
            f"a=crypto:{crypto_tag} AES_CM_128_HMAC_SHA1_80 inline:{key}",
        ]
        if offer:
            lines.append("a=3ge2ae:requested")
        lines += [
            "a=sendrecv",
            f"m=message {self.msrp_port} TCP/TLS/MSRP *",
            "a=accept-types:text/plain",
            f"a=path:msrps://127.0.0.1:{self.msrp_port}/{self.name}sess;tcp",
            f"a=setup:{setup}",
            f"a=fingerprint:{self.cert.fingerprint.to_sdp()}",
            "a=msrp-cema",
        ]
        if offer:
            lines.append("a=3ge2ae:requested")
        lines.append("a=sendrecv")
        return "\n".join(lines) + "\n"


def _column(title: str, sdp: bytes | str) -> list[str]:
    text = redact_sdp(sdp if isinstance(sdp, str) else sdp.decode())
    out = [title, "-" * len(title)]
    for line in text.splitlines():
        out += textwrap.wrap(line, WIDTH, subsequent_indent="    ") or [""]
    return out


def side_by_side(left: tuple[str, bytes | str], right: tuple[str, bytes | str]) -> None:
    a, b = _column(*left), _column(*right)
    for i in range(max(len(a), len(b))):
        la = a[i] if i < len(a) else ""
        lb = b[i] if i < len(b) else ""
        print(f"  {la:<{WIDTH}} | {lb}")
    print()


def _media(sdp: bytes, kind: str) -> tuple[int, list[str]]:
    s = Sdp.parse(sdp)
    for m in s.media:
        if m.media == kind:
            return m.port, m.lines
    raise SystemExit(f"demo: no {kind} stream in SDP")


def _key(lines: list[str]) -> bytes:
    line = next(ln for ln in lines if ln.startswith("a=crypto:"))
    return parse_crypto(line[len("a=crypto:") :]).key.key_salt


def _session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    return pylibsrtp.Session(
        policy=pylibsrtp.Policy(
            key=key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
            if outbound
            else pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )


def _decisions(log_path: Path, since: int) -> list[str]:
    text = log_path.read_text(errors="replace")[since:]
    return [m.group(1) for m in re.finditer(r"pcscf_alg\.calls: (call .*)", text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default=str(ROOT / "config" / "pcscf.yaml"))
    ap.add_argument("--seconds", type=float, default=3.0, help="how long to send media")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    access = (cfg.sip.access.host, cfg.sip.access.port)
    work = Path(tempfile.mkdtemp(prefix="pcscf-demo-"))
    log_path = work / "daemon.log"
    print(f"pcscf-alg demo (daemon log: {log_path})\n")
    for port in (cfg.sip.access.port, cfg.sip.core.port, cfg.sip.next_hop_port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                print(f"127.0.0.1:{port} is in use: stop `make run` (or whatever holds it) first.")
                return 1
    hops: dict[str, bytes] = {}

    def tap(direction: str, msg: SipMessage) -> None:
        if msg.body and direction == "in":
            label = f"{msg.method or msg.status}"
            key = "core-offer-in" if msg.method == "INVITE" else f"core-{label}-in"
            hops.setdefault(key, msg.body)
        if msg.body and direction == "out" and msg.method == "INVITE":
            hops.setdefault("core-offer-out", msg.body)
        if msg.body and direction == "out" and msg.status == 200:
            hops.setdefault("core-answer-out", msg.body)

    with open(log_path, "wb") as logf:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "pcscf_alg", "run", "--config", args.config],
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=str(work),
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        scscf = ScscfStub(host=cfg.sip.next_hop_host, port=cfg.sip.next_hop_port, tap=tap).start()
        try:
            deadline = time.monotonic() + 15
            while b"pcscf-alg ready" not in log_path.read_bytes():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    print(log_path.read_text())
                    return 1
                time.sleep(0.1)
            return _run(args, work, log_path, hops, access)
        finally:
            scscf.stop()
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()


def _run(
    args: argparse.Namespace,
    work: Path,
    log_path: Path,
    hops: dict[str, bytes],
    pcscf: tuple[str, int],
) -> int:
    alice, bob = Ue("alice", pcscf), Ue("bob", pcscf)
    alice.cert, bob.cert = load_or_create(work / "alice"), load_or_create(work / "bob")
    print("1. Registration with e2ae indications (TS 33.328 7.1.1, 7.1.2)")
    alice.register()
    bob.register()
    log_mark = len(log_path.read_bytes())

    print("\n2. alice calls bob: audio (SRTP) + chat (MSRP over TLS), e2ae requested\n")
    call_id = f"demo-{secrets.token_hex(4)}@alice"
    offer = alice.sdp(offer=True, setup="actpass")
    alice.send(
        _crlf(
            [
                f"INVITE {bob.uri} SIP/2.0",
                _via(alice.port),
                "Max-Forwards: 70",
                f"Route: <sip:{pcscf[0]}:{pcscf[1]};lr>",
                f"From: <{alice.uri}>;tag=alice1",
                f"To: <{bob.uri}>",
                f"Call-ID: {call_id}",
                "CSeq: 1 INVITE",
                f"Contact: <{alice.contact}>",
                "Content-Type: application/sdp",
            ],
            offer,
        )
    )
    inv_b = bob.recv("INVITE")
    answer = bob.sdp(offer=False, setup="active")
    h = inv_b.headers
    bob.send(
        _crlf(
            ["SIP/2.0 200 OK"]
            + [f"Via: {v}" for v in h.values("via")]
            + [f"Record-Route: {v}" for v in h.values("record-route")]
            + [
                f"From: {h.get('from')}",
                f"To: {h.get('to')};tag=bob1",
                f"Call-ID: {call_id}",
                f"CSeq: {h.get('cseq')}",
                f"Contact: <{bob.contact}>",
                "Content-Type: application/sdp",
            ],
            answer,
        )
    )
    ok_a = alice.recv(200)
    routes = list(reversed(ok_a.headers.values("record-route")))
    target = NameAddr.parse(ok_a.headers.first_value("contact") or "").uri

    def in_dialog(method: str, cseq: int) -> bytes:
        return _crlf(
            [
                f"{method} {target} SIP/2.0",
                _via(alice.port),
                "Max-Forwards: 70",
                *[f"Route: {r}" for r in routes],
                f"From: <{alice.uri}>;tag=alice1",
                f"To: {ok_a.headers.get('to')}",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} {method}",
                f"Contact: <{alice.contact}>",
            ]
        )

    alice.send(in_dialog("ACK", 1))
    bob.recv("ACK")

    print("   The offer, hop by hop (originating leg | terminating leg):\n")
    side_by_side(
        ("alice -> P-CSCF (access)", offer),
        ("S-CSCF -> P-CSCF (core, terminating)", hops.get("core-offer-out", b"")),
    )
    side_by_side(
        ("P-CSCF -> S-CSCF (core, originating)", hops.get("core-offer-in", b"")),
        ("P-CSCF -> bob (access)", inv_b.body),
    )
    print("   The answer, hop by hop:\n")
    side_by_side(
        ("bob -> P-CSCF (access)", answer),
        ("P-CSCF -> S-CSCF (core)", hops.get("core-200-in", b"")),
    )
    side_by_side(
        ("S-CSCF -> P-CSCF (core)", hops.get("core-answer-out", b"")),
        ("P-CSCF -> alice (access)", ok_a.body),
    )
    time.sleep(0.3)
    print("   The P-CSCF's decision per stream:")
    for d in _decisions(log_path, log_mark):
        print("   - " + "\n     ".join(textwrap.wrap(d, 110)))

    print(f"\n3. Media for {args.seconds:.0f} s: SRTP -> (gateway) RTP -> (gateway) SRTP\n")
    a_agw_port, a_audio = _media(ok_a.body, "audio")
    b_agw_port, b_audio = _media(inv_b.body, "audio")
    k12, k21 = _key(a_audio), _key(b_audio)
    a_tx, a_rx = _session(alice.k_tx, True), _session(k12, False)
    b_tx, b_rx = _session(bob.k_tx, True), _session(k21, False)
    sent = got_b = got_a = 0
    alice.rtp.settimeout(0.002)
    bob.rtp.settimeout(0.002)
    end = time.monotonic() + args.seconds
    seq = 0
    while time.monotonic() < end:
        seq += 1
        for ue, tx, port, ssrc in (
            (alice, a_tx, a_agw_port, 0xA11CE),
            (bob, b_tx, b_agw_port, 0xB0B),
        ):
            pkt = struct.pack("!BBHII", 0x80, 96, seq, seq * 320, ssrc) + b"\x00" * 60
            ue.rtp.sendto(tx.protect(pkt), ("127.0.0.1", port))
        sent += 1
        for ue, rx in ((bob, b_rx), (alice, a_rx)):
            try:
                data, _ = ue.rtp.recvfrom(2048)
                rx.unprotect(data)
                if ue is bob:
                    got_b += 1
                else:
                    got_a += 1
            except (TimeoutError, pylibsrtp.Error):
                pass
        time.sleep(0.02)
    print(
        f"   alice -> bob: {sent} SRTP packets sent with alice's key (K11), {got_b} arrived at "
        f"bob and decrypted with the network's key K21"
    )
    print(
        f"   bob -> alice: {sent} SRTP packets sent with bob's key (K22), {got_a} arrived at "
        f"alice and decrypted with the network's key K12"
    )
    print(
        "   (between the two gateway legs, on the core side, the same packets travel as plain "
        "RTP/AVP)"
    )

    print("\n4. MSRP: alice (TLS) -> gateway -> core (TCP) -> gateway -> bob (TLS)\n")
    a_msrp_port, a_msrp = _media(ok_a.body, "message")
    b_msrp_port, b_msrp = _media(inv_b.body, "message")
    ok = _msrp(alice, bob, a_msrp_port, b_msrp_port, a_msrp, b_msrp)
    print(
        "   "
        + (
            "an MSRP SEND and its 200 OK crossed TLS -> TCP -> TLS, certificates checked "
            "against the SDP fingerprints"
            if ok
            else "MSRP did not get through"
        )
    )

    alice.send(in_dialog("BYE", 2))
    bye = bob.recv("BYE")
    hb = bye.headers
    bob.send(
        _crlf(
            ["SIP/2.0 200 OK"]
            + [f"Via: {v}" for v in hb.values("via")]
            + [
                f"From: {hb.get('from')}",
                f"To: {hb.get('to')}",
                f"Call-ID: {call_id}",
                f"CSeq: {hb.get('cseq')}",
            ]
        )
    )
    alice.recv(200)
    time.sleep(0.3)
    ended = log_path.read_text(errors="replace").count(f"call {call_id} ended (BYE)")
    print(
        f"\n5. alice hung up: BYE crossed both legs; {ended} of 2 call legs ended and released "
        "their gateway ports and keys."
    )
    return 0 if ended == 2 and got_a and got_b and ok else 1


def _msrp(
    alice: Ue, bob: Ue, a_port: int, b_port: int, a_lines: list[str], b_lines: list[str]
) -> bool:
    def ctx(cert: GatewayCertificate) -> ssl.SSLContext:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname, c.verify_mode = False, ssl.CERT_NONE
        c.load_cert_chain(cert.cert_path, cert.key_path)
        return c

    assert alice.cert is not None and bob.cert is not None
    try:
        # bob was offered a=setup:passive by the network, so bob connects too (TLS client)
        tb = ctx(bob.cert).wrap_socket(socket.create_connection(("127.0.0.1", b_port), timeout=5))
        ta = ctx(alice.cert).wrap_socket(socket.create_connection(("127.0.0.1", a_port), timeout=5))
    except OSError as e:
        print(f"   TLS connect failed: {e}")
        return False
    with ta, tb:
        to_path = next(ln for ln in a_lines if ln.startswith("a=path:"))[7:]
        frm = f"msrps://127.0.0.1:{alice.msrp_port}/alicesess;tcp"
        body = b"Hi bob, e2ae all the way to the edge"
        ta.sendall(
            f"MSRP d3m0tx SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {frm}\r\nMessage-ID: m1\r\n"
            f"Byte-Range: 1-{len(body)}/{len(body)}\r\nContent-Type: text/plain\r\n\r\n".encode()
            + body
            + b"\r\n-------d3m0tx$\r\n"
        )
        tb.settimeout(5)
        got = b""
        while b"-------d3m0tx$" not in got:
            chunk = tb.recv(4096)
            if not chunk:
                return False
            got += chunk
        text = got.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[0].decode()
        print(f"   bob received: {text!r}")
        tb.sendall(
            f"MSRP d3m0tx 200 OK\r\nTo-Path: {frm}\r\nFrom-Path: {to_path}\r\n"
            "-------d3m0tx$\r\n".encode()
        )
        ta.settimeout(5)
        back = ta.recv(4096)
        return back.startswith(b"MSRP d3m0tx 200 OK")


if __name__ == "__main__":
    sys.exit(main())
