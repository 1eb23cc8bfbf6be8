"""Adversarial soak (issue 11, "the front door"): legitimate e2ae calls at a steady rate while an
attacker works on the daemon's edges; reports the calls' success rate and the daemon's memory and
file descriptors before, during and after.

    .venv/bin/python -m bench.soak [--seconds 60] [--rate 2] [--idle-conns 1000] ...   (make soak)

One asyncio process plays everybody except the daemon (started with tests/e2e/daemon.py on free
loopback ports, its own config defaults otherwise: see `daemon_config`):

- a **core stand-in** on the next hop (registrar/S-CSCF): 200 to the legitimate UEs' REGISTERs,
  401 to anybody else's (it cannot authenticate them, as a real S-CSCF would challenge them), 200
  with a plain RTP/AVP answer to INVITE, 200 to BYE;
- **legitimate UEs** (127.0.0.1) that REGISTER with `Security-Client: sdes-srtp;mediasec,
  msrp-tls;mediasec`, then place e2ae calls (RTP/SAVP + a=crypto + a=3ge2ae:requested), send
  SRTP through the gateway and get the core's RTP back as SRTP they decrypt with the key of the
  P-CSCF's answer (K12), then BYE. A call counts only if INVITE got 200, the first and the last
  packet of the call crossed the gateway both ways, nothing the attacker sent reached either end
  (TS 33.328: the attacker must not speak into the call), and BYE got 200 with no BYE from
  anybody else first;
- an **attacker** from other loopback addresses (127.0.0.101...), bounded in count and time:
  (a) idle TCP connections to the access listener, (b) REGISTERs dripped one byte per interval,
  (c) a UDP flood of distinct REGISTERs, (d) UDP junk and RTP-shaped packets sprayed at the
  gateway's RTP range and TCP connections (with junk MSRP) to its MSRP range, half of them aimed
  at the start of each range (where an allocator handing out ports in ascending order, as
  agw/ports.py did before issue 11, puts the next calls; with random ports it is just a denser
  sample of part of the range),
  (e) in-dialog BYEs with guessed identifiers and, with --leak-bye, a BYE with a live call's real
  identifiers sent from another address. It re-opens what the daemon closes, like a real one.

The daemon's RSS (/proc/PID/status VmRSS) and open fds (/proc/PID/fd) are sampled once a second;
"before" is taken after registration and warm-up calls, "after" once the attack has stopped and
`--settle-s` has passed (long enough for the RFC 3261 Timer J of the flood's transactions, 64*T1 =
32 s with the default T1). A few legitimate calls are placed again after that (recovery). The
report is a Markdown table, printed and written with the raw figures (JSON) under --out.

Traffic goes to 127.0.0.0/8 only. The gateway's port ranges are moved below the kernel's ephemeral
range (same sizes as the defaults) so the spray can hit no other process's sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import shutil
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from pcscf_alg.agw.certs import load_or_create
from pcscf_alg.sdp.crypto import parse_crypto
from pcscf_alg.sdp.model import Sdp
from pcscf_alg.sip.message import SipMessage, parse_message
from tests.e2e.calls_helpers import audio_offer, rtp_packet, srtp_session
from tests.e2e.daemon import Daemon, make_daemon
from tests.e2e.sipp_e2ae import MsrpFrame, der_fingerprint, msrp_ok, msrp_send
from tests.e2e.sipua import contact_uri, crlf, route_set

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
T1, T2 = 0.5, 4.0  # RFC 3261 §17.1.1.1 defaults, for the UEs' own retransmissions
SEC_CLIENT = "sdes-srtp;mediasec, msrp-tls;mediasec"
PLAIN_ANSWER = (
    "v=0\no=- 2 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio {port} RTP/AVP 96\na=rtpmap:96 AMR-WB/16000/1\na=sendrecv\n"
)
Addr = tuple[str, int]


@dataclass
class SoakConfig:
    seconds: float = 60.0  # attack (and legitimate load) duration
    rate: float = 2.0  # legitimate calls per second
    ues: int = 10  # legitimate UEs, each on its own SIP socket (its registered flow)
    hold_s: float = 2.0  # media time per call
    media_interval_s: float = 0.1  # one packet each way per interval
    reregister_s: float = 20.0  # legitimate registration refresh period during the attack
    warmup_calls: int = 3
    post_calls: int = 5  # legitimate calls after the attack (recovery)
    settle_s: float = 40.0
    sip_timeout_s: float = 16.0  # a UE gives up on a transaction after this (< Timer B, 32 s)
    # attacker
    attacker_ips: int = 4  # 127.0.0.101 ... : a small botnet, so per-IP limits are exercised
    idle_conns: int = 1000
    drip_conns: int = 200
    tcp_open_rate: float = 200.0  # TCP connections opened per second, idle and drip each
    drip_interval_s: float = 1.0
    flood_rate: float = 400.0  # UDP REGISTERs per second
    spray_pps: float = 2000.0  # UDP datagrams per second at the RTP range
    msrp_probe_rate: float = 20.0  # TCP connections per second at the MSRP range
    bye_rate: float = 5.0  # guessed in-dialog BYEs per second
    leak_bye: float = 0.0  # share of legitimate calls whose real identifiers the attacker uses
    msrp_every_s: float = 5.0  # one of the legitimate calls per interval is MSRP over TLS (0: none)
    rtp_ports: tuple[int, int] = (20000, 29999)
    msrp_ports: tuple[int, int] = (19000, 19999)


class CallFailure(Exception):
    """A legitimate call failed; the message is the reason, grouped in the report."""


# ---------------------------------------------------------------------------------------------
# SIP over UDP endpoints
# ---------------------------------------------------------------------------------------------


class SipUdp(asyncio.DatagramProtocol):
    """A SIP UDP socket: messages for a registered Call-ID go to its queue, others to
    `on_other`."""

    def __init__(self, on_other: Callable[[SipUdp, SipMessage, Addr], None] | None = None) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queues: dict[str, asyncio.Queue[tuple[SipMessage, Addr]]] = {}
        self.on_other = on_other
        self.bad = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's (README, design notes)
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        try:
            msg = parse_message(data)
        except Exception:
            self.bad += 1
            return
        q = self.queues.get(msg.call_id)
        if q is not None:
            q.put_nowait((msg, addr))
        elif self.on_other is not None:
            self.on_other(self, msg, addr)

    def send(self, data: bytes, addr: Addr) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def open(self, call_id: str) -> asyncio.Queue[tuple[SipMessage, Addr]]:
        q: asyncio.Queue[tuple[SipMessage, Addr]] = asyncio.Queue()
        self.queues[call_id] = q
        return q

    def close_call(self, call_id: str) -> None:
        self.queues.pop(call_id, None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def udp_endpoint(
    proto: asyncio.DatagramProtocol, host: str = HOST, port: int = 0
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=(host, port))
    return transport


def reply(
    req: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str,
    contact: str,
    extra: list[str] | None = None,
    body: str = "",
) -> bytes:
    """A response copying Via, Record-Route, From, To(+tag), Call-ID, CSeq (RFC 3261 §8.2.6)."""
    h = req.headers
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in h.values("via")]
    lines += [f"Record-Route: {v}" for v in h.values("record-route")]
    to = h.get("to") or ""
    if to_tag and "tag=" not in to:
        to = f"{to};tag={to_tag}"
    lines += [f"From: {h.get('from')}", f"To: {to}", f"Call-ID: {req.call_id}"]
    lines += [f"CSeq: {h.get('cseq')}", f"Contact: {contact}", *(extra or [])]
    if body:
        lines += ["Content-Type: application/sdp", "", *body.strip("\n").split("\n")]
    return crlf("\n".join(lines)).encode()


async def transact(
    ep: SipUdp,
    q: asyncio.Queue[tuple[SipMessage, Addr]],
    data: bytes,
    dest: Addr,
    method: str,
    timeout: float,
    on_request: Callable[[SipMessage, Addr], None] | None = None,
) -> SipMessage:
    """Send a request and wait for its final response, retransmitting like an RFC 3261 UAC
    (§17.1.1.2 Timer A for INVITE until a provisional, §17.1.2.2 Timer E capped at T2)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    interval, provisional = T1, False
    ep.send(data, dest)
    next_tx = loop.time() + interval
    while True:
        now = loop.time()
        if now >= deadline:
            raise CallFailure(f"{method}: no final response in {timeout:.0f} s")
        retransmitting = not (provisional and method == "INVITE")
        wait = min(deadline, next_tx) - now if retransmitting else deadline - now
        try:
            msg, addr = await asyncio.wait_for(q.get(), max(wait, 0.001))
        except TimeoutError:
            if retransmitting and loop.time() >= next_tx:
                ep.send(data, dest)
                interval = interval * 2 if method == "INVITE" else min(interval * 2, T2)
                next_tx = loop.time() + interval
            continue
        if msg.is_request:
            if on_request is not None:
                on_request(msg, addr)
            continue
        try:
            if msg.cseq[1] != method:
                continue
        except Exception:
            continue
        if msg.status < 200:
            provisional = True
            continue
        return msg


# ---------------------------------------------------------------------------------------------
# Media
# ---------------------------------------------------------------------------------------------


class MediaSock(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.packets: list[tuple[bytes, Addr]] = []
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's (README, design notes)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.packets.append((data, addr))
        self.arrived.set()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, addr: Addr) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class MediaTally:
    sent: int = 0
    received: int = 0
    foreign_at_ue: int = 0  # decrypted at the UE but not sent by this call's core
    undecryptable_at_ue: int = 0
    foreign_at_core: int = 0  # reached the core but not the UE's packet from the gateway


# ---------------------------------------------------------------------------------------------
# Legitimate side: core stand-in, UEs, calls
# ---------------------------------------------------------------------------------------------


@dataclass
class Results:
    attempted: int = 0
    succeeded: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    setup_ms: list[float] = field(default_factory=list)
    msrp_attempted: int = 0
    msrp_succeeded: int = 0

    def as_dict(self) -> dict[str, Any]:
        s = sorted(self.setup_ms)
        pct = (lambda p: round(s[min(len(s) - 1, int(p * len(s)))], 1)) if s else (lambda p: None)
        return {
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "success_pct": round(100.0 * self.succeeded / self.attempted, 2)
            if self.attempted
            else None,
            "msrp_attempted": self.msrp_attempted,
            "msrp_succeeded": self.msrp_succeeded,
            "failures": dict(self.failures.most_common()),
            "setup_ms_p50": pct(0.5),
            "setup_ms_p95": pct(0.95),
            "setup_ms_max": round(s[-1], 1) if s else None,
        }


class Core:
    """The S-CSCF stand-in behind the next hop."""

    def __init__(self, legit_users: set[str]) -> None:
        self.legit = legit_users
        self.ep = SipUdp(self._other)
        self.registers: Counter[str] = Counter()
        self.stray: Counter[str] = Counter()

    def _other(self, ep: SipUdp, msg: SipMessage, addr: Addr) -> None:
        if not msg.is_request or msg.method == "ACK":
            return
        contact = f"<sip:core@{HOST}:{ep.port}>"
        if msg.method == "REGISTER":
            user = (msg.headers.get("to") or "").split("sip:", 1)[-1].split("@", 1)[0]
            if user in self.legit:
                c = msg.headers.first_value("contact") or contact
                self.registers["200"] += 1
                ep.send(reply(msg, 200, "OK", to_tag="reg", contact=f"{c};expires=600"), addr)
            else:
                # An S-CSCF challenges what it cannot authenticate (TS 24.229 §5.4.1.2).
                self.registers["401"] += 1
                ch = f'WWW-Authenticate: Digest realm="ims.test", nonce="{secrets.token_hex(8)}"'
                ep.send(
                    reply(msg, 401, "Unauthorized", to_tag="reg", contact=contact, extra=[ch]), addr
                )
            return
        # A request for no call of ours (e.g. a BYE the attacker got forwarded): 481.
        self.stray[msg.method or "?"] += 1
        ep.send(
            reply(msg, 481, "Call/Transaction Does Not Exist", to_tag="x", contact=contact), addr
        )


@dataclass
class Ue:
    user: str
    ep: SipUdp
    cseq: int = 1
    registered_at: float = 0.0

    @property
    def port(self) -> int:
        return self.ep.port

    def on_request(self, msg: SipMessage, addr: Addr) -> None:
        """A UE answers any in-dialog request the network sends it (BYE, re-INVITE...)."""
        if msg.method != "ACK":
            self.ep.send(
                reply(msg, 200, "OK", to_tag="", contact=f"<sip:{self.user}@{HOST}:{self.port}>"),
                addr,
            )

    async def register(self, d: Daemon, timeout: float) -> None:
        call_id = f"reg-{self.user}-{self.port}@soak"
        q = self.ep.open(call_id)
        self.cseq += 1
        text = f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK-{secrets.token_hex(6)};rport
Max-Forwards: 70
From: <sip:{self.user}@ims.test>;tag=r{self.port}
To: <sip:{self.user}@ims.test>
Call-ID: {call_id}
CSeq: {self.cseq} REGISTER
Contact: <sip:{self.user}@{HOST}:{self.port}>
Require: sec-agree
Proxy-Require: sec-agree
Security-Client: {SEC_CLIENT}
Expires: 600
"""
        try:
            r = await transact(
                self.ep, q, crlf(text).encode(), (HOST, d.access_port), "REGISTER", timeout
            )
        finally:
            self.ep.close_call(call_id)
        if r.status != 200:
            raise CallFailure(f"REGISTER: {r.status}")
        self.registered_at = time.monotonic()


def in_dialog(
    method: str, ok: SipMessage, port: int, cseq: int, branch: str, via_host: str = HOST
) -> bytes:
    """A UAC's in-dialog request from the 2xx it got (RFC 3261 §12.2.1.1)."""
    lines = [
        f"{method} {contact_uri(ok)} SIP/2.0",
        f"Via: SIP/2.0/UDP {via_host}:{port};branch=z9hG4bK-{branch};rport",
        "Max-Forwards: 70",
    ]
    lines += [f"Route: {r}" for r in route_set(ok)]
    lines += [
        f"From: {ok.headers.get('from')}",
        f"To: {ok.headers.get('to')}",
        f"Call-ID: {ok.call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:ue@{via_host}:{port}>",
    ]
    return crlf("\n".join(lines)).encode()


def audio_of(body: bytes) -> tuple[int, list[str]]:
    s = Sdp.parse(body)
    m = s.media[0]
    return m.port, [ln for ln in m.lines if ln.startswith("a=crypto:")]


def msrp_offer(call_id: str, fingerprint: str) -> str:
    """The UE's e2ae MSRP offer (TS 33.328 7.2.1): TLS, its fingerprint, actpass."""
    return (
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
        "m=message 9 TCP/TLS/MSRP *\na=accept-types:text/plain\n"
        f"a=path:msrps://{HOST}:9/ue-{call_id};tcp\na=setup:actpass\n"
        f"a=fingerprint:{fingerprint}\na=3ge2ae:requested\na=sendrecv\n"
    )


async def read_frame(reader: asyncio.StreamReader, timeout: float) -> MsrpFrame | None:
    """One MSRP frame (RFC 4975 §7), or None on timeout or close."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
        tid = head.split(b" ")[1]
        rest = await asyncio.wait_for(reader.readuntil(b"-------" + tid), timeout)
        await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
    except (
        OSError,
        TimeoutError,
        IndexError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    ):
        return None
    hdrs, _, body = rest[: -len(b"-------" + tid)].partition(b"\r\n\r\n")
    headers = {}
    for ln in hdrs.decode(errors="replace").split("\r\n"):
        k, _, v = ln.partition(":")
        if k:
            headers[k.strip().lower()] = v.strip()
    return MsrpFrame(tid.decode(), head.decode().strip(), headers, body.removesuffix(b"\r\n"))


class MsrpCore:
    """The core's MSRP end of one call: a TCP listener the gateway connects to (the core
    answers setup:passive)."""

    def __init__(self) -> None:
        self.conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )
        self.server: asyncio.Server | None = None
        self.extra: list[asyncio.StreamWriter] = []

    @classmethod
    async def start(cls) -> MsrpCore:
        self = cls()

        async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if self.conn.done():
                self.extra.append(w)  # not expected: a second connection
            else:
                self.conn.set_result((r, w))

        self.server = await asyncio.start_server(accepted, HOST, 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def answer(self, call_id: str) -> str:
        return (
            "v=0\no=- 2 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            f"m=message {self.port} TCP/MSRP *\na=accept-types:text/plain\n"
            f"a=path:msrp://{HOST}:{self.port}/core-{call_id};tcp\na=setup:passive\n"
            "a=sendrecv\n"
        )

    async def read_frame(self, timeout: float) -> MsrpFrame | None:
        try:
            r, _ = await asyncio.wait_for(asyncio.shield(self.conn), timeout)
        except TimeoutError:
            return None
        return await read_frame(r, timeout)

    def write(self, data: bytes) -> None:
        if self.conn.done():
            self.conn.result()[1].write(data)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.conn.done():
            self.conn.result()[1].close()
        for w in self.extra:
            w.close()


class Legit:
    """Places the legitimate calls and keeps the UEs registered."""

    def __init__(
        self, cfg: SoakConfig, d: Daemon, core: Core, ues: list[Ue], attacker: Attacker | None
    ) -> None:
        self.cfg, self.d, self.core, self.ues, self.attacker = cfg, d, core, ues, attacker
        self.media = MediaTally()
        self.refresh: Counter[str] = Counter()
        self._n = 0
        # One certificate for all UEs (each offers its fingerprint, RFC 8122 §5).
        self.ue_cert = load_or_create(d.workdir / "ue-cert")
        self.ue_fingerprint = self.ue_cert.fingerprint.to_sdp()

    async def call(self, ue: Ue, results: Results, leak: bool = False, msrp: bool = False) -> None:
        self._n += 1
        results.attempted += 1
        if msrp:
            results.msrp_attempted += 1
        try:
            await self._call(ue, f"soak-{self._n}-{secrets.token_hex(4)}", results, leak, msrp)
        except CallFailure as e:
            results.failures[("MSRP call: " if msrp else "") + str(e)] += 1
        except Exception as e:  # the harness's own bug must show, not hide as a success
            results.failures[f"harness error: {type(e).__name__}: {e}"] += 1
        else:
            results.succeeded += 1
            if msrp:
                results.msrp_succeeded += 1

    async def _call(self, ue: Ue, call_id: str, results: Results, leak: bool, msrp: bool) -> None:
        cfg, d, loop = self.cfg, self.d, asyncio.get_running_loop()
        ue_q, core_q = ue.ep.open(call_id), self.core.ep.open(call_id)
        ue_rtp, core_rtp = MediaSock(), MediaSock()
        await udp_endpoint(ue_rtp)
        await udp_endpoint(core_rtp)
        core_msrp = await MsrpCore.start() if msrp else None
        core_state: dict[str, Any] = {
            "ack": asyncio.Event(),
            "bye": asyncio.Event(),
            "ue_bye_sent": False,
            "foreign_bye": False,
        }
        k11 = secrets.token_bytes(30)
        if core_msrp is not None:
            offer = msrp_offer(call_id, self.ue_fingerprint)
            answer = core_msrp.answer(call_id)
        else:
            offer = audio_offer(
                ue_rtp.port,
                cryptos=[f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(k11).decode()}"],
            )
            answer = PLAIN_ANSWER.format(port=core_rtp.port)
        core_task = asyncio.create_task(self._core_uas(core_q, answer, core_state))
        invite = f"""INVITE sip:callee@ims.test SIP/2.0
Via: SIP/2.0/UDP {HOST}:{ue.port};branch=z9hG4bK-{call_id}-1;rport
Max-Forwards: 70
Route: <sip:{HOST}:{d.access_port};lr>
From: <sip:{ue.user}@ims.test>;tag=a-{call_id}
To: <sip:callee@ims.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:{ue.user}@{HOST}:{ue.port}>
Content-Type: application/sdp

{offer}"""
        try:
            t0 = loop.time()
            ok = await transact(
                ue.ep,
                ue_q,
                crlf(invite).encode(),
                (HOST, d.access_port),
                "INVITE",
                cfg.sip_timeout_s,
                ue.on_request,
            )
            if ok.status != 200:
                raise CallFailure(f"INVITE: {ok.status}")
            results.setup_ms.append((loop.time() - t0) * 1000)
            ue.ep.send(in_dialog("ACK", ok, ue.port, 1, f"{call_id}-ack"), (HOST, d.access_port))
            if leak and self.attacker is not None:
                self.attacker.leaked_bye(ok, d.access_port)
            if core_msrp is not None:
                await self._msrp_media(call_id, ok.body, core_msrp)
            else:
                agw_access, cryptos = audio_of(ok.body)
                if len(cryptos) != 1:
                    raise CallFailure("answer to the UE without exactly one a=crypto")
                c = parse_crypto(cryptos[0][len("a=crypto:") :])
                agw_core = core_state["agw_core"]
                await self._media(
                    call_id, ue_rtp, core_rtp, k11, c.suite, c.key.key_salt, agw_access, agw_core
                )
            await self._ack_reached_core(ue, ue_q, ok, call_id, core_state["ack"])
            core_state["ue_bye_sent"] = True
            bye_ok = await transact(
                ue.ep,
                ue_q,
                in_dialog("BYE", ok, ue.port, 2, f"{call_id}-bye"),
                (HOST, d.access_port),
                "BYE",
                cfg.sip_timeout_s,
                ue.on_request,
            )
            if core_state["foreign_bye"]:
                raise CallFailure(
                    "the core got a BYE the UE did not send (call ended by someone else)"
                )
            if bye_ok.status != 200:
                raise CallFailure(f"BYE: {bye_ok.status}")
            if not core_state["bye"].is_set():
                raise CallFailure("BYE answered but never reached the core")
        finally:
            core_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await core_task
            ue.ep.close_call(call_id)
            self.core.ep.close_call(call_id)
            ue_rtp.close()
            core_rtp.close()
            if core_msrp is not None:
                core_msrp.close()

    async def _msrp_media(self, call_id: str, answer: bytes, core: MsrpCore) -> None:
        """MSRP over TLS from the UE (its certificate is the one of its a=fingerprint; it
        checks the gateway's against the answer's, RFC 8122), plain TCP MSRP at the core: one
        SEND each way, answered 200, at the start and again after the hold time."""
        m = Sdp.parse(answer).media[0]
        attrs = dict(ln[2:].partition(":")[::2] for ln in m.lines if ln.startswith("a="))
        if m.proto != "TCP/TLS/MSRP" or "fingerprint" not in attrs or "path" not in attrs:
            raise CallFailure("MSRP answer to the UE without TLS, fingerprint or path")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # self-signed: checked against the SDP fingerprint below
        ctx.load_cert_chain(self.ue_cert.cert_path, self.ue_cert.key_path)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, m.port, ssl=ctx, server_hostname=""), 5.0
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise CallFailure(f"MSRP: UE's TLS to the gateway failed ({type(e).__name__})") from e
        try:
            sslobj = writer.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
            if der is None or der_fingerprint(der) != attrs["fingerprint"].split(" ", 1)[1]:
                raise CallFailure("MSRP: the gateway's certificate is not the answer's")
            ue_path = f"msrps://{HOST}:9/ue-{call_id};tcp"
            for rnd in range(2):
                if rnd:
                    await asyncio.sleep(self.cfg.hold_s)
                tid = f"u{rnd}{secrets.token_hex(4)}"
                writer.write(msrp_send(tid, attrs["path"], ue_path, f"{call_id}/u{rnd}".encode()))
                got = await core.read_frame(5.0)
                if got is None or got.tid != tid or got.body != f"{call_id}/u{rnd}".encode():
                    raise CallFailure("MSRP: the UE's SEND did not reach the core")
                core.write(msrp_ok(tid, got.headers["from-path"], got.headers["to-path"]))
                back = await read_frame(reader, 5.0)
                if back is None or back.tid != tid or not back.first.endswith("200 OK"):
                    raise CallFailure("MSRP: the core's 200 did not reach the UE")
                tid2 = f"c{rnd}{secrets.token_hex(4)}"
                core.write(
                    msrp_send(
                        tid2,
                        got.headers["from-path"],
                        got.headers["to-path"],
                        f"{call_id}/c{rnd}".encode(),
                    )
                )
                frame = await read_frame(reader, 5.0)
                if frame is None or frame.tid != tid2 or frame.body != f"{call_id}/c{rnd}".encode():
                    raise CallFailure("MSRP: the core's SEND did not reach the UE")
                writer.write(msrp_ok(tid2, frame.headers["from-path"], frame.headers["to-path"]))
                ok2 = await core.read_frame(5.0)
                if ok2 is None or ok2.tid != tid2:
                    raise CallFailure("MSRP: the UE's 200 did not reach the core")
        finally:
            writer.close()

    async def _ack_reached_core(
        self,
        ue: Ue,
        q: asyncio.Queue[tuple[SipMessage, Addr]],
        ok: SipMessage,
        call_id: str,
        ack: asyncio.Event,
    ) -> None:
        """Wait (bounded) for the core's ACK; a 2xx the core retransmitted meanwhile (its ACK
        was lost) is ACKed again, as a UAC does (RFC 3261 §13.2.2.4)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4.0
        while not ack.is_set():
            left = deadline - loop.time()
            if left <= 0:
                raise CallFailure("ACK never reached the core")
            with contextlib.suppress(TimeoutError):
                msg, addr = await asyncio.wait_for(q.get(), min(left, 0.1))
                if msg.is_request:
                    ue.on_request(msg, addr)
                elif msg.status == 200 and (msg.headers.get("cseq") or "").endswith("INVITE"):
                    ue.ep.send(
                        in_dialog("ACK", ok, ue.port, 1, f"{call_id}-ack"),
                        (HOST, self.d.access_port),
                    )

    async def _core_uas(
        self, q: asyncio.Queue[tuple[SipMessage, Addr]], answer: str, st: dict[str, Any]
    ) -> None:
        """The core's side of one call: 200 to INVITE (kept retransmitted until ACK, RFC 3261
        §13.3.1.4), 200 to BYE; notes a BYE that came before the UE sent its own."""
        ep = self.core.ep
        contact = f"<sip:core@{HOST}:{ep.port}>"
        ok: bytes | None = None
        ok_to: Addr | None = None
        interval = T1
        loop = asyncio.get_running_loop()
        next_tx = loop.time() + 1e9
        while True:
            try:
                msg, addr = await asyncio.wait_for(q.get(), max(0.001, next_tx - loop.time()))
            except TimeoutError:
                if ok is not None and ok_to is not None and not st["ack"].is_set():
                    ep.send(ok, ok_to)
                    interval = min(interval * 2, T2)
                    next_tx = loop.time() + interval
                else:
                    next_tx = loop.time() + 1e9
                continue
            if not msg.is_request:
                continue
            if msg.method == "INVITE":
                if ok is None:
                    st["agw_core"] = Sdp.parse(msg.body).media[0].port
                    ok = reply(
                        msg,
                        200,
                        "OK",
                        to_tag=f"b-{msg.call_id}",
                        contact=contact,
                        body=answer,
                    )
                    ok_to = addr
                    next_tx = loop.time() + interval
                ep.send(ok, addr)
            elif msg.method == "ACK":
                st["ack"].set()
            elif msg.method == "BYE":
                if not st["ue_bye_sent"]:
                    st["foreign_bye"] = True
                st["bye"].set()
                ep.send(reply(msg, 200, "OK", to_tag="", contact=contact), addr)
            else:
                ep.send(reply(msg, 200, "OK", to_tag="", contact=contact), addr)

    async def _media(
        self,
        call_id: str,
        ue_rtp: MediaSock,
        core_rtp: MediaSock,
        k11: bytes,
        suite: str,
        k12: bytes,
        agw_access: int,
        agw_core: int,
    ) -> None:
        """UE -> core as SRTP under K11 (arrives as RTP), core -> UE as RTP (arrives as SRTP
        under K12). Each side checks origin and content of every packet it gets."""
        cfg = self.cfg
        tag = call_id.encode()
        tx = srtp_session("AES_CM_128_HMAC_SHA1_80", k11, outbound=True)
        rx = srtp_session(suite, k12, outbound=False)
        n = max(2, int(cfg.hold_s / cfg.media_interval_s))
        got_core: set[int] = set()
        got_ue: set[int] = set()
        foreign = [0]  # the attacker's packets delivered to this call's UE or core

        def drain() -> None:
            for data, addr in core_rtp.packets:
                seq = struct.unpack_from("!H", data, 2)[0] if len(data) >= 12 else -1
                if addr == (HOST, agw_core) and data[12:].startswith(tag + b"/u"):
                    got_core.add(seq)
                else:
                    self.media.foreign_at_core += 1
                    foreign[0] += 1
            core_rtp.packets.clear()
            for data, _ in ue_rtp.packets:
                try:
                    plain = rx.unprotect(data)
                except Exception:
                    self.media.undecryptable_at_ue += 1
                    continue
                if plain[12:].startswith(tag + b"/c"):
                    got_ue.add(struct.unpack_from("!H", plain, 2)[0])
                else:
                    self.media.foreign_at_ue += 1
                    foreign[0] += 1
            ue_rtp.packets.clear()

        async def wait_for(seq: int, got: set[int], sock: MediaSock) -> bool:
            deadline = asyncio.get_running_loop().time() + 2.0
            while True:
                drain()
                if seq in got:
                    return True
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return False
                sock.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sock.arrived.wait(), left)

        def send(seq: int) -> None:
            ue_rtp.send(
                tx.protect(rtp_packet(seq, 0x0A0B0C0D, tag + b"/u" + b"\xab" * 20)),
                (HOST, agw_access),
            )
            core_rtp.send(rtp_packet(seq, 0x55667788, tag + b"/c" + b"\xcd" * 20), (HOST, agw_core))
            self.media.sent += 2

        # The UE speaks first: the gateway latches on its authenticated SRTP (RFC 4961).
        ue_rtp.send(
            tx.protect(rtp_packet(1, 0x0A0B0C0D, tag + b"/u" + b"\xab" * 20)), (HOST, agw_access)
        )
        self.media.sent += 1
        if not await wait_for(1, got_core, core_rtp):
            raise CallFailure("no media UE -> core")
        core_rtp.send(rtp_packet(1, 0x55667788, tag + b"/c" + b"\xcd" * 20), (HOST, agw_core))
        self.media.sent += 1
        if not await wait_for(1, got_ue, ue_rtp):
            raise CallFailure("no media core -> UE")
        for seq in range(2, n + 1):
            await asyncio.sleep(cfg.media_interval_s)
            send(seq)
        ok_core = await wait_for(n, got_core, core_rtp)
        ok_ue = await wait_for(n, got_ue, ue_rtp)
        drain()
        self.media.received += len(got_core) + len(got_ue)
        if not ok_core:
            raise CallFailure("media UE -> core stopped during the call")
        if not ok_ue:
            raise CallFailure("media core -> UE stopped during the call")
        if foreign[0]:
            raise CallFailure("attacker media reached the UE or the core")

    async def refresher(self, stop: asyncio.Event) -> None:
        """Re-REGISTER every UE each `reregister_s` while the attack runs (the bindings stay
        valid meanwhile, so a failed refresh is counted apart, not as a failed call)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.reregister_s / len(self.ues))
            if stop.is_set():
                return
            ue = min(self.ues, key=lambda u: u.registered_at)
            self.refresh["attempted"] += 1
            try:
                await ue.register(self.d, self.cfg.sip_timeout_s)
                self.refresh["ok"] += 1
            except CallFailure as e:
                self.refresh[str(e)] += 1

    async def run_calls(
        self, count: int | None, duration: float | None, results: Results, leak_share: float = 0.0
    ) -> None:
        """Start calls at `rate` per second (bounded by count or duration); wait for them all.
        `leak_share` of them have their dialog identifiers handed to the attacker."""
        loop = asyncio.get_running_loop()
        t0, i, tasks = loop.time(), 0, []
        rng = random.Random(7)
        while (count is None or i < count) and (duration is None or loop.time() - t0 < duration):
            ue = self.ues[i % len(self.ues)]
            leak = rng.random() < leak_share
            every = max(1, round(self.cfg.msrp_every_s * self.cfg.rate))
            msrp = self.cfg.msrp_every_s > 0 and i % every == every - 1
            tasks.append(asyncio.create_task(self.call(ue, results, leak, msrp)))
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / self.cfg.rate - loop.time()))
        await asyncio.gather(*tasks)


# ---------------------------------------------------------------------------------------------
# The attacker
# ---------------------------------------------------------------------------------------------


def _bump(c: Counter[str], e: BaseException) -> None:
    c[type(e).__name__] += 1


class CountingUdp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.statuses: Counter[str] = Counter()
        self.packets = 0
        self.bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's (README, design notes)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.packets += 1
        self.bytes += len(data)
        if data.startswith(b"SIP/2.0 "):
            self.statuses[data[8:11].decode(errors="replace")] += 1

    def error_received(self, exc: Exception) -> None:
        self.statuses[f"error {type(exc).__name__}"] += 1


@dataclass
class TcpTally:
    opened: int = 0
    connect_failed: Counter[str] = field(default_factory=Counter)
    closed_by_daemon: int = 0
    held_now: int = 0
    held_max: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    held_s_before_close: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        h = sorted(self.held_s_before_close)
        return {
            "opened": self.opened,
            "connect_failed": dict(self.connect_failed),
            "closed_by_daemon": self.closed_by_daemon,
            "held_max": self.held_max,
            "held_at_end": self.held_now,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "held_s_before_close_p50": round(h[len(h) // 2], 1) if h else None,
        }


class Attacker:
    def __init__(self, cfg: SoakConfig, d: Daemon) -> None:
        self.cfg, self.d = cfg, d
        self.ips = [f"127.0.0.{101 + i}" for i in range(max(1, cfg.attacker_ips))]
        self.rng = random.Random(11)
        self.idle, self.drip, self.msrp = TcpTally(), TcpTally(), TcpTally()
        self.flood = CountingUdp()
        self.flood_sent = 0
        self.spray_sent = 0
        self.spray_back: list[CountingUdp] = []
        self.bye = CountingUdp()
        self.bye_sent = 0
        self.leaked = CountingUdp()
        self.leaked_sent = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: list[asyncio.DatagramTransport] = []

    def ip(self) -> str:
        return self.rng.choice(self.ips)

    async def run(self, stop: asyncio.Event) -> None:
        for p in (self.flood, self.bye, self.leaked):
            self._transports.append(await udp_endpoint(p, self.ips[0]))
        jobs = [
            self._tcp_opener(stop, drip=False),
            self._tcp_opener(stop, drip=True),
            self._flood(stop),
            self._spray(stop),
            self._msrp_probe(stop),
            self._bye_guess(stop),
        ]
        await asyncio.gather(*jobs)
        await stop.wait()
        # Stop by itself: every connection is closed, every socket released.
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for tr in self._transports:
            tr.close()

    def _spawn(self, coro: Any) -> None:
        t: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _paced(
        self, rate: float, stop: asyncio.Event, tick: float, action: Callable[[int], None]
    ) -> None:
        """Call action(n) every `tick` with n such that `rate` per second is kept on average."""
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        t0, done = loop.time(), 0
        while not stop.is_set():
            due = int((loop.time() - t0) * rate) - done
            if due > 0:
                action(due)
                done += due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    # (a) idle TCP connections and (b) slow drip, both re-opened when the daemon closes them
    async def _tcp_opener(self, stop: asyncio.Event, drip: bool) -> None:
        """Keeps `idle_conns` (or `drip_conns`) open, each kind with its own opening rate so
        that one kind being closed fast does not starve the other."""
        cfg = self.cfg
        payload = crlf("""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/TCP 127.0.0.101:5099;branch=z9hG4bK-drip
Max-Forwards: 70
From: <sip:drip@ims.test>;tag=drip
To: <sip:drip@ims.test>
Call-ID: drip@attacker
CSeq: 1 REGISTER
Contact: <sip:drip@127.0.0.101:5099;transport=tcp>
Expires: 600
""").encode()

        def open_some(n: int) -> None:
            for _ in range(n):
                if drip and self.drip.held_now + self._pending_drip < cfg.drip_conns:
                    self._pending_drip += 1
                    self._spawn(self._tcp_conn(self.drip, payload, stop))
                elif not drip and self.idle.held_now + self._pending_idle < cfg.idle_conns:
                    self._pending_idle += 1
                    self._spawn(self._tcp_conn(self.idle, None, stop))

        await self._paced(cfg.tcp_open_rate, stop, 0.05, open_some)

    _pending_drip = 0
    _pending_idle = 0

    async def _tcp_conn(self, tally: TcpTally, drip: bytes | None, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.d.access_port, local_addr=(self.ip(), 0)),
                    5.0,
                )
            except (OSError, TimeoutError) as e:
                _bump(tally.connect_failed, e)
                return
        finally:
            if drip is None:
                self._pending_idle -= 1
            else:
                self._pending_drip -= 1
        tally.opened += 1
        tally.held_now += 1
        tally.held_max = max(tally.held_max, tally.held_now)
        t0 = loop.time()
        read = asyncio.ensure_future(reader.read(65536))
        stopped = asyncio.ensure_future(stop.wait())
        pos = 0
        try:
            while True:
                if drip is not None and pos < len(drip):
                    try:
                        writer.write(drip[pos : pos + 1])
                        pos += 1
                        tally.bytes_sent += 1
                    except (OSError, RuntimeError):
                        break
                timeout = self.cfg.drip_interval_s if drip is not None else None
                done, _ = await asyncio.wait(
                    {read, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stopped in done:
                    return
                if read in done:
                    try:
                        data = read.result()
                    except OSError:
                        data = b""
                    if not data:
                        tally.closed_by_daemon += 1
                        tally.held_s_before_close.append(loop.time() - t0)
                        return
                    tally.bytes_received += len(data)
                    read = asyncio.ensure_future(reader.read(65536))
        finally:
            tally.held_now -= 1
            for f in (read, stopped):
                f.cancel()
            writer.close()

    # (c) a UDP flood of distinct REGISTERs
    async def _flood(self, stop: asyncio.Event) -> None:
        ip = self.ips[0]

        def send(n: int) -> None:
            assert self.flood.transport is not None
            port = self.flood.transport.get_extra_info("sockname")[1]
            for _ in range(n):
                self.flood_sent += 1
                i = self.flood_sent
                text = f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-fl{i}x{secrets.token_hex(4)};rport
Max-Forwards: 70
From: <sip:flood{i}@ims.test>;tag=f{i}
To: <sip:flood{i}@ims.test>
Call-ID: flood-{i}-{secrets.token_hex(6)}@attacker
CSeq: 1 REGISTER
Contact: <sip:flood{i}@{ip}:5099>
Require: sec-agree
Proxy-Require: sec-agree
Security-Client: {SEC_CLIENT}
Expires: 600
"""
                self.flood.transport.sendto(crlf(text).encode(), (HOST, self.d.access_port))

        await self._paced(self.cfg.flood_rate, stop, 0.02, send)

    # (d) UDP at the RTP range, TCP at the MSRP range (both gateway sides share the ranges)
    def _port(self, lo: int, hi: int, focus: int) -> int:
        if self.rng.random() < 0.5:
            return self.rng.randint(lo, min(hi, lo + focus - 1))
        return self.rng.randint(lo, hi)

    async def _spray(self, stop: asyncio.Event) -> None:
        lo, hi = self.cfg.rtp_ports
        socks = []
        for ip in self.ips:
            p = CountingUdp()
            self._transports.append(await udp_endpoint(p, ip))
            self.spray_back.append(p)
            socks.append(p)

        def send(n: int) -> None:
            for _ in range(n):
                self.spray_sent += 1
                p = self.rng.choice(socks)
                if self.rng.random() < 0.75:  # RTP-shaped: what a relay without checks forwards
                    pkt = (
                        struct.pack(
                            "!BBHII",
                            0x80,
                            96,
                            self.spray_sent & 0xFFFF,
                            self.spray_sent * 160,
                            0xBAD0BAD0,
                        )
                        + b"ATTACK"
                        + os.urandom(34)
                    )
                else:
                    pkt = os.urandom(self.rng.randint(1, 200))
                assert p.transport is not None
                p.transport.sendto(pkt, (HOST, self._port(lo, hi, 1024)))

        await self._paced(self.cfg.spray_pps, stop, 0.01, send)

    async def _msrp_probe(self, stop: asyncio.Event) -> None:
        lo, hi = self.cfg.msrp_ports

        def probe(n: int) -> None:
            for _ in range(n):
                self._spawn(self._msrp_conn(self._port(lo, hi, 64)))

        await self._paced(self.cfg.msrp_probe_rate, stop, 0.05, probe)

    async def _msrp_conn(self, port: int) -> None:
        t = self.msrp
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, local_addr=(self.ip(), 0)), 2.0
            )
        except (OSError, TimeoutError) as e:
            _bump(t.connect_failed, e)
            return
        t.opened += 1
        t.held_now += 1
        t.held_max = max(t.held_max, t.held_now)
        junk = (
            b"MSRP a1 SEND\r\nTo-Path: msrp://127.0.0.1/x;tcp\r\n"
            b"From-Path: msrp://127.0.0.101/evil;tcp\r\nMessage-ID: 1\r\n"
            b"Byte-Range: 1-6/6\r\nContent-Type: text/plain\r\n\r\nATTACK\r\n-------a1$\r\n"
        )
        try:
            writer.write(junk)
            t.bytes_sent += len(junk)
            while True:
                data = await asyncio.wait_for(reader.read(65536), 2.0)
                if not data:
                    t.closed_by_daemon += 1
                    return
                t.bytes_received += len(data)
        except (OSError, TimeoutError):
            return
        finally:
            t.held_now -= 1
            writer.close()

    # (e) in-dialog BYEs: guessed identifiers, and (--leak-bye) a live call's real ones
    async def _bye_guess(self, stop: asyncio.Event) -> None:
        ip = self.ips[0]

        def send(n: int) -> None:
            assert self.bye.transport is not None
            port = self.bye.transport.get_extra_info("sockname")[1]
            for _ in range(n):
                self.bye_sent += 1
                g = secrets.token_hex(6)
                text = f"""BYE sip:ue@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-bye{g};rport
Max-Forwards: 70
Route: <sip:{HOST}:{self.d.access_port};lr>
From: <sip:ue{self.rng.randint(0, 9)}@ims.test>;tag=a-{g}
To: <sip:callee@ims.test>;tag=b-{g}
Call-ID: soak-{self.rng.randint(1, 200)}-{g[:8]}
CSeq: 2 BYE
"""
                self.bye.transport.sendto(crlf(text).encode(), (HOST, self.d.access_port))

        await self._paced(self.cfg.bye_rate, stop, 0.1, send)

    def leaked_bye(self, ok: SipMessage, access_port: int) -> None:
        """The dialog's real Call-ID, tags and route set, sent from the attacker's address."""
        if self.leaked.transport is None or self.leaked.transport.is_closing():
            return  # the attack is not running (yet, or any more)
        port = self.leaked.transport.get_extra_info("sockname")[1]
        self.leaked_sent += 1
        self.leaked.transport.sendto(
            in_dialog("BYE", ok, port, 2, f"leak{secrets.token_hex(4)}", via_host=self.ips[0]),
            (HOST, access_port),
        )

    def as_dict(self) -> dict[str, Any]:
        back_pkts = sum(p.packets for p in self.spray_back)
        return {
            "ips": self.ips,
            "idle_tcp": self.idle.as_dict(),
            "drip_tcp": self.drip.as_dict(),
            "register_flood": {"sent": self.flood_sent, "responses": dict(self.flood.statuses)},
            "rtp_spray": {
                "sent": self.spray_sent,
                "packets_back": back_pkts,
                "bytes_back": sum(p.bytes for p in self.spray_back),
            },
            "msrp_probe": self.msrp.as_dict(),
            "bye_guess": {"sent": self.bye_sent, "responses": dict(self.bye.statuses)},
            "bye_leaked": {"sent": self.leaked_sent, "responses": dict(self.leaked.statuses)},
        }


# ---------------------------------------------------------------------------------------------
# Daemon measurement and the run
# ---------------------------------------------------------------------------------------------


def proc_sample(pid: int) -> dict[str, int]:
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"rss_kb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def fd_limit(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3]
    return "?"


def stats_summary(d: Daemon) -> dict[str, Any]:
    try:
        s = d.stats()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {
        "registrations": s.get("registrations"),
        "transactions": s.get("transactions"),
        "tcp_connections": s.get("tcp_connections"),
        "dialogs": s.get("dialogs"),
        "agw_ports": s.get("agw_ports"),
        # packet counters of the live streams (relayed, dropped, rejected source...), if any
        "agw_media": s.get("agw_media") or {},
    }


def daemon_config(workdir: Path, cfg: SoakConfig) -> Daemon:
    """The daemon on free loopback ports with its own defaults, except: the gateway's ranges
    (moved off the ephemeral range, same sizes), the admin endpoint (for /stats) and the
    loopback-only egress guard of the test daemon. make_daemon's test shortcuts (T1 0.1 s,
    registration not required, 0.5 s sweeps) are taken out so the soak measures the defaults."""
    d = make_daemon(
        workdir, agw={"rtp_ports": list(cfg.rtp_ports), "msrp_ports": list(cfg.msrp_ports)}
    )
    d.config["sip"].pop("t1", None)
    d.config.pop("registration", None)
    return d


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "pcscf_alg"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + (
            " + uncommitted changes in pcscf_alg/" if dirty.stdout.strip() else ""
        )
    except (OSError, subprocess.SubprocessError):
        return "?"


async def soak(
    cfg: SoakConfig, workdir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    d = daemon_config(workdir, cfg)
    await asyncio.to_thread(d.start)
    assert d.proc is not None
    pid = d.proc.pid
    users = [f"ue{i}" for i in range(cfg.ues)]
    core = Core(set(users))
    transports = [await udp_endpoint(core.ep, HOST, d.next_hop_port)]
    ues = []
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "config": asdict(cfg),
        "daemon_config": d.config,
        "fd_limit": fd_limit(pid),
    }
    samples: list[dict[str, Any]] = []
    try:
        for u in users:
            ue = Ue(u, SipUdp())
            ue.ep.on_other = lambda ep, m, a, ue=ue: ue.on_request(m, a)
            transports.append(await udp_endpoint(ue.ep))
            ues.append(ue)
        await asyncio.gather(*(ue.register(d, cfg.sip_timeout_s) for ue in ues))
        attacker = Attacker(cfg, d)
        legit = Legit(cfg, d, core, ues, attacker)
        warm = Results()
        await legit.run_calls(cfg.warmup_calls, None, warm)
        await asyncio.sleep(1.0)
        before: dict[str, Any] = {**proc_sample(pid)}
        before["stats"] = await asyncio.to_thread(stats_summary, d)
        log(f"soak: before the attack {before}; warm-up calls {warm.as_dict()}")

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        t_start = loop.time()

        async def sampler() -> None:
            while not stop.is_set():
                s: dict[str, Any] = {**proc_sample(pid), "t": round(loop.time() - t_start, 1)}
                s["stats"] = await asyncio.to_thread(stats_summary, d)
                samples.append(s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        async def stopper() -> None:
            await asyncio.sleep(cfg.seconds)
            stop.set()

        main = Results()
        log(f"soak: attack and {cfg.rate}/s legitimate calls for {cfg.seconds} s")
        await asyncio.gather(
            attacker.run(stop),
            sampler(),
            stopper(),
            legit.refresher(stop),
            legit.run_calls(None, cfg.seconds, main, cfg.leak_bye),
        )
        during = proc_sample(pid)
        samples.append(during | {"t": round(loop.time() - t_start, 1)})
        log(f"soak: attack over; settling {cfg.settle_s} s")
        await asyncio.sleep(cfg.settle_s)
        after: dict[str, Any] = {**proc_sample(pid)}
        after["stats"] = await asyncio.to_thread(stats_summary, d)
        post = Results()
        await legit.run_calls(cfg.post_calls, None, post)
        report.update(
            {
                "legit": main.as_dict(),
                "warmup": warm.as_dict(),
                "post_attack": post.as_dict(),
                "reregister": dict(legit.refresh),
                "media": asdict(legit.media),
                "core": {"registers": dict(core.registers), "stray_requests": dict(core.stray)},
                "daemon": {
                    "rss_kb": {
                        "before": before["rss_kb"],
                        "peak": max(s["rss_kb"] for s in samples),
                        "after": after["rss_kb"],
                    },
                    "fds": {
                        "before": before["fds"],
                        "peak": max(s["fds"] for s in samples),
                        "after": after["fds"],
                    },
                    "stats_before": before["stats"],
                    "stats_peak": _peak_stats(samples),
                    "stats_after": after["stats"],
                },
                "attacker": attacker.as_dict(),
                "samples": samples,
            }
        )
    finally:
        for tr in transports:
            tr.close()
        alive = d.alive()
        rc = await asyncio.to_thread(d.stop)
        report["daemon_alive_at_end"] = alive
        report["daemon_exit_code"] = rc
    return report


def _peak_stats(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest value seen of each /stats figure during the attack."""
    peak: dict[str, Any] = {}
    for s in samples:
        st = s.get("stats") or {}
        for k, v in st.items():
            if isinstance(v, int):
                peak[k] = max(peak.get(k, 0), v)
            elif isinstance(v, dict):
                sub = peak.setdefault(k, {})
                for kk, vv in v.items():
                    if isinstance(vv, int):
                        sub[kk] = max(sub.get(kk, 0), vv)
    return peak


def markdown(r: dict[str, Any]) -> str:
    c, lg, dm, at = r["config"], r.get("legit", {}), r.get("daemon", {}), r.get("attacker", {})

    def mb(kb: int) -> str:
        return f"{kb / 1024:.1f} MB"

    lines = [
        f"Adversarial soak, {r['date']}, commit {r['commit']}: {c['seconds']:.0f} s, "
        f"{c['rate']} legitimate e2ae calls/s ({c['hold_s']} s of SRTP each), attacker from "
        f"{len(at.get('ips', []))} loopback addresses.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| legitimate calls during the attack: succeeded / attempted | "
        f"**{lg.get('succeeded')} / {lg.get('attempted')} ({lg.get('success_pct')} %)** |",
        f"| of which MSRP over TLS (one per {c['msrp_every_s']:g} s): succeeded / attempted | "
        f"{lg.get('msrp_succeeded')} / {lg.get('msrp_attempted')} |",
        f"| failures by reason | {_fmt(lg.get('failures'))} |",
        f"| call setup (INVITE → 200 at the UE) p50 / p95 / max | {lg.get('setup_ms_p50')} / "
        f"{lg.get('setup_ms_p95')} / {lg.get('setup_ms_max')} ms |",
        f"| legitimate calls after the attack (recovery) | {r['post_attack']['succeeded']} / "
        f"{r['post_attack']['attempted']} {_fmt(r['post_attack']['failures'])} |",
        f"| legitimate re-REGISTERs during the attack | {_fmt(r.get('reregister'))} |",
        f"| media packets sent / received; attacker's packets delivered to UE / core | "
        f"{r['media']['sent']} / {r['media']['received']}; {r['media']['foreign_at_ue']} / "
        f"{r['media']['foreign_at_core']} (undecryptable at UE: "
        f"{r['media']['undecryptable_at_ue']}) |",
    ]
    if dm:
        rss, fds = dm["rss_kb"], dm["fds"]
        lines += [
            f"| daemon RSS before / peak / after | {mb(rss['before'])} / {mb(rss['peak'])} / "
            f"{mb(rss['after'])} |",
            f"| daemon open fds before / peak / after (limit {r['fd_limit']}) | {fds['before']} / "
            f"{fds['peak']} / {fds['after']} |",
            f"| daemon /stats before | {_fmt(dm['stats_before'])} |",
            f"| daemon /stats peak | {_fmt(dm['stats_peak'])} |",
            f"| daemon /stats after {c['settle_s']:.0f} s | {_fmt(dm['stats_after'])} |",
        ]
    lines.append(
        f"| daemon alive at the end; exit code on SIGTERM | "
        f"{r['daemon_alive_at_end']}; {r['daemon_exit_code']} |"
    )
    if at:
        idle, drip, msrp = at["idle_tcp"], at["drip_tcp"], at["msrp_probe"]
        lines += [
            f"| (a) idle TCP (target {c['idle_conns']}): opened, held max, closed by the daemon "
            f"(median hold), connect failures | {idle['opened']}, {idle['held_max']}, "
            f"{idle['closed_by_daemon']} ({idle['held_s_before_close_p50']} s), "
            f"{_fmt(idle['connect_failed'])} |",
            f"| (b) drip TCP (target {c['drip_conns']}, 1 byte / {c['drip_interval_s']} s): "
            f"opened, held max, closed by the daemon (median hold), bytes dripped | "
            f"{drip['opened']}, {drip['held_max']}, {drip['closed_by_daemon']} "
            f"({drip['held_s_before_close_p50']} s), {drip['bytes_sent']} |",
            f"| (c) UDP REGISTER flood: sent, responses by status | "
            f"{at['register_flood']['sent']}, {_fmt(at['register_flood']['responses'])} |",
            f"| (d) RTP-range spray: datagrams sent, datagrams the gateway sent back | "
            f"{at['rtp_spray']['sent']}, {at['rtp_spray']['packets_back']} |",
            f"| (d) MSRP-range probe: connections accepted, refused/failed, closed by the daemon, "
            f"bytes back | {msrp['opened']}, {_fmt(msrp['connect_failed'])}, "
            f"{msrp['closed_by_daemon']}, {msrp['bytes_received']} |",
            f"| (e) guessed in-dialog BYEs: sent, responses | {at['bye_guess']['sent']}, "
            f"{_fmt(at['bye_guess']['responses'])} |",
        ]
        if at["bye_leaked"]["sent"]:
            lines.append(
                f"| (e) BYEs with a live call's real identifiers from another "
                f"address: sent, responses | {at['bye_leaked']['sent']}, "
                f"{_fmt(at['bye_leaked']['responses'])} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if not v:
        return "none" if isinstance(v, dict | list) or v is None else str(v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def main(argv: list[str] | None = None) -> int:
    d = SoakConfig()
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for f in d.__dataclass_fields__.values():
        default = getattr(d, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple):
            ap.add_argument(
                flag, type=int, nargs=2, default=list(default), metavar=("FIRST", "LAST")
            )
        else:
            ap.add_argument(flag, type=type(default), default=default)
    ap.add_argument("--out", default=str(ROOT / "var" / "soak"), help="directory for the report")
    ap.add_argument("--keep", action="store_true", help="keep the daemon's workdir (log, config)")
    args = ap.parse_args(argv)
    fields: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in vars(args).items()
        if k in d.__dataclass_fields__
    }
    cfg = SoakConfig(**fields)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    workdir = Path(tempfile.mkdtemp(prefix="pcscf-soak-"))
    try:
        report = asyncio.run(soak(cfg, workdir, lambda s: print(s, flush=True)))
    finally:
        if args.keep:
            print(f"soak: daemon workdir kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = markdown(report)
    (out / f"soak-{stamp}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"soak-{stamp}.md").write_text(md)
    print()
    print(md)
    print(f"soak: report in {out}/soak-{stamp}.md and .json")
    lg = report.get("legit", {})
    return 0 if lg.get("attempted") and lg.get("succeeded") == lg.get("attempted") else 1


if __name__ == "__main__":
    sys.exit(main())
