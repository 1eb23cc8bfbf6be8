"""The SIP front door against the running daemon (issue 11 items 2 and 9): TCP connection caps,
the per-message deadline (Slowloris), and the message size limit on TCP and UDP.

Small limits: 5 connections per source address, 20 per listener, 1 s for a message. The
attacker is 127.0.0.1 (or several 127.x addresses); the legitimate UE is 127.0.0.2, loopback
too. Every socket is bounded by a timeout and closed by the test.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pcscf_alg.sip.message import SipMessage, StreamFramer, parse_message
from tests.e2e.calls_helpers import audio_offer, crypto_lines
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer, crlf

LIMITS = {
    "tcp_max_connections": 20,
    "tcp_max_connections_per_ip": 5,
    "tcp_message_timeout_s": 1.0,
}
UE_HOST = "127.0.0.2"
PLAIN_ANSWER = (
    "v=0\no=- 2 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio 41700 RTP/AVP 96\na=rtpmap:96 AMR-WB/16000/1\na=sendrecv\n"
)


class TcpClient:
    """A SIP peer on one TCP connection from `src`, with a framer for what comes back."""

    def __init__(self, port: int, src: str = UE_HOST) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=(src, 0)
        )
        self.host, self.port = self.sock.getsockname()[:2]
        self.framer = StreamFramer()
        self.pending: list[bytes] = []

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(crlf(data).encode() if isinstance(data, str) else data)

    def expect(self, what: str | int, timeout: float = 5.0) -> SipMessage:
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                m = parse_message(self.pending.pop(0), datagram=False)
                if m.status == what or m.method == what:
                    return m
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            data = self.sock.recv(65535)
            assert data, "connection closed"
            self.pending += self.framer.feed(data)

    def closed_by_daemon(self, timeout: float = 10.0) -> bytes:
        """Read until the daemon closes (EOF or reset); what came before. Bounded."""
        out = b""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionResetError):
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = self.sock.recv(65535)
                if not chunk:
                    return out
                out += chunk
            raise AssertionError(f"connection still open after {timeout}s")
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def guarded(daemon_factory: Any) -> Iterator[tuple[Daemon, UdpPeer]]:
    """The daemon with small front-door limits, and the S-CSCF stand-in on its next hop."""
    d: Daemon = daemon_factory(sip=LIMITS)
    core = UdpPeer(d.next_hop_port)
    try:
        yield d, core
    finally:
        core.close()


def _register_msg(host: str, port: int, transport: str, user: str) -> str:
    tp = ";transport=tcp" if transport == "TCP" else ""
    return f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-reg{time.monotonic_ns()};rport
Max-Forwards: 70
From: <sip:{user}@ims.test>;tag=r{port}
To: <sip:{user}@ims.test>
Call-ID: reg-{user}-{port}@test
CSeq: 1 REGISTER
Contact: <sip:{user}@{host}:{port}{tp}>
Security-Client: sdes-srtp;mediasec
Expires: 600
"""


def _invite_msg(host: str, port: int, transport: str, user: str, call_id: str) -> str:
    tp = ";transport=tcp" if transport == "TCP" else ""
    return f"""INVITE sip:bob@ims.test SIP/2.0
Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-{call_id};rport
Max-Forwards: 70
From: <sip:{user}@ims.test>;tag=a-{call_id}
To: <sip:bob@ims.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:{user}@{host}:{port}{tp}>
Content-Type: application/sdp

{audio_offer(41600)}"""


def _cancel_msg(inv: SipMessage) -> str:
    h = inv.headers
    return "\n".join(
        [
            f"CANCEL {inv.uri} SIP/2.0",
            f"Via: {h.values('via')[0]}",
            "Max-Forwards: 70",
            f"From: {h.get('from')}",
            f"To: {h.get('to')}",
            f"Call-ID: {inv.call_id}",
            "CSeq: 1 CANCEL",
        ]
    )


def _registrar_ok(d: Daemon, core: UdpPeer, contact: str) -> None:
    """The registrar stand-in accepts the REGISTER it gets, echoing the UE's contact."""
    core.reply(
        core.expect("REGISTER"), 200, "OK", d.core_port, contact=f"{contact}>;expires=600;x=<"
    )


def _legit_udp_call(d: Daemon, core: UdpPeer, user: str) -> None:
    """A UE on 127.0.0.2 over UDP: REGISTER, then an e2ae call whose media ports the gateway
    binds (the descriptors a connection flood used to take), then the call is cancelled."""
    with UdpPeer(host=UE_HOST) as ue:
        ue.send(_register_msg(UE_HOST, ue.port, "UDP", user), d.access_port)
        _registrar_ok(d, core, f"sip:{user}@{UE_HOST}:{ue.port}")
        ue.expect(200)
        call_id = f"call-{user}-{time.monotonic_ns()}@test"
        ue.send(_invite_msg(UE_HOST, ue.port, "UDP", user, call_id), d.access_port)
        inv = core.expect("INVITE")
        assert b"RTP/AVP" in inv.body and b"a=crypto" not in inv.body
        core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=PLAIN_ANSWER)
        ok = ue.expect(200)
        assert len(crypto_lines(ok.body)) == 1, ok.body  # SRTP towards the UE: ports bound
        _hang_up(d, ue, core, ok)


def _hang_up(d: Daemon, ue: UdpPeer, core: UdpPeer, ok: SipMessage) -> None:
    rr = list(reversed(ok.headers.values("record-route")))
    lines = [
        f"BYE sip:peer@127.0.0.1:{core.port} SIP/2.0",
        f"Via: SIP/2.0/UDP {UE_HOST}:{ue.port};branch=z9hG4bK-bye{time.monotonic_ns()};rport",
        "Max-Forwards: 70",
        *[f"Route: {r}" for r in rr],
        f"From: {ok.headers.get('from')}",
        f"To: {ok.headers.get('to')}",
        f"Call-ID: {ok.call_id}",
        "CSeq: 2 BYE",
    ]
    ue.send("\n".join(lines), d.access_port)
    core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
    ue.expect(200)
    st = d.wait_stats(lambda s: s["agw_ports"] == 0 and s["dialogs"] == 0)
    assert (st["agw_ports"], st["dialogs"]) == (0, 0), st


def _legit_tcp_register(d: Daemon, core: UdpPeer, user: str) -> None:
    ue = TcpClient(d.access_port)
    try:
        ue.send(_register_msg(ue.host, ue.port, "TCP", user))
        _registrar_ok(d, core, f"sip:{user}@{ue.host}:{ue.port};transport=tcp")
        ue.expect(200)
        # and a call set up over the same connection (the gateway still binds its ports)
        call_id = f"tcp-{user}-{time.monotonic_ns()}@test"
        invite_text = _invite_msg(ue.host, ue.port, "TCP", user, call_id)
        ue.send(invite_text)
        inv = core.expect("INVITE")
        assert b"RTP/AVP" in inv.body and b"a=crypto" not in inv.body
        core.reply(inv, 180, "Ringing", d.core_port, to_tag="b2")
        ue.expect(180)
        ue.send(_cancel_msg(parse_message(crlf(invite_text).encode())))
        cancel = core.expect("CANCEL")
        core.reply(cancel, 200, "OK", d.core_port, to_tag="b2")
        core.reply(inv, 487, "Request Terminated", d.core_port, to_tag="b2")
        ue.expect(487)
    finally:
        ue.close()


def _open_idle(port: int, n: int, src: str) -> list[socket.socket]:
    """n connections from `src` that send nothing (refused ones are closed by the daemon)."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
        out.append(s)
    return out


def _ping(socks: list[socket.socket]) -> None:
    """An RFC 5626 keep-alive on each connection still open: what keeps an idle connection
    past the message deadline (the attacker playing by the rules)."""
    for s in socks:
        with contextlib.suppress(OSError):
            s.sendall(b"\r\n\r\n")


def _transport(st: dict[str, Any], side: str = "access") -> dict[str, int]:
    out: dict[str, int] = st["transport"][side]
    return out


def test_connection_flood_from_one_address_leaves_the_daemon_serving(
    guarded: tuple[Daemon, UdpPeer],
) -> None:
    d, core = guarded
    base = d.stats()["tcp_connections"]["access"]
    flood = _open_idle(d.access_port, 40, "127.0.0.1")
    try:
        _ping(flood)
        st = d.wait_stats(
            lambda s: (
                _transport(s)["tcp_accepted"] == 5 and _transport(s)["tcp_refused_per_ip"] == 35
            )
        )
        assert _transport(st)["tcp_accepted"] == 5, st
        assert _transport(st)["tcp_refused_per_ip"] == 35, st
        assert st["tcp_connections"]["access"] == base + 5
        # the admin endpoint answered all along (the stats above); a legitimate UE on another
        # address registers and calls over UDP and over TCP
        _legit_udp_call(d, core, "alice")
        _ping(flood)
        _legit_tcp_register(d, core, "tina")
        assert d.alive()
    finally:
        for s in flood:
            s.close()
    st = d.wait_stats(lambda s: s["tcp_connections"]["access"] == base)
    assert st["tcp_connections"]["access"] == base, st


def test_total_cap_full_still_serves_udp_and_admin_then_recovers(
    guarded: tuple[Daemon, UdpPeer],
) -> None:
    d, core = guarded
    base = d.stats()["tcp_connections"]["access"]
    flood: list[socket.socket] = []
    try:
        for i in range(3, 8):  # 5 addresses x 5 = 25 tries against a total of 20
            flood += _open_idle(d.access_port, 5, f"127.0.0.{i}")
        _ping(flood)
        st = d.wait_stats(lambda s: _transport(s)["tcp_refused_max_connections"] == 5)
        assert _transport(st)["tcp_refused_max_connections"] == 5, st
        assert st["tcp_connections"]["access"] == base + 20
        # TCP is full (that is what a total cap means), UDP and the admin endpoint are not
        _legit_udp_call(d, core, "bob")
    finally:
        for s in flood:
            s.close()
    st = d.wait_stats(lambda s: s["tcp_connections"]["access"] == base)
    assert st["tcp_connections"]["access"] == base, st
    _legit_tcp_register(d, core, "carol")  # room again once the flood is gone


def test_drip_fed_register_is_closed_after_the_message_deadline(
    guarded: tuple[Daemon, UdpPeer],
) -> None:
    d, core = guarded
    base = d.stats()["tcp_connections"]["access"]
    c = TcpClient(d.access_port, "127.0.0.1")
    data = crlf(_register_msg(c.host, c.port, "TCP", "slow")).encode()
    closed_at = None
    try:
        for i in range(len(data) - 1):  # the last byte never goes
            try:
                c.sock.sendall(data[i : i + 1])
                c.sock.settimeout(0.2)
                if c.sock.recv(1) == b"":
                    closed_at = i
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed_at = i
                break
    finally:
        c.close()
    # one byte per 0.2 s: a per-byte idle timer would never fire; the 1 s deadline did
    assert closed_at is not None, "the drip-fed REGISTER kept its connection"
    assert closed_at < len(data) - 1
    with pytest.raises(TimeoutError):
        core.recv(timeout=0.5)  # nothing of it reached the next hop
    st = d.wait_stats(lambda s: s["tcp_connections"]["access"] == base)
    assert _transport(st)["tcp_closed_message_timeout"] == 1, st
    assert st["tcp_connections"]["access"] == base


def test_100kb_message_over_tcp_gets_513_then_close(guarded: tuple[Daemon, UdpPeer]) -> None:
    d, core = guarded
    base = d.stats()["tcp_connections"]["access"]
    for kind in ("body", "header"):
        c = TcpClient(d.access_port, "127.0.0.1")
        try:
            call_id = f"big-{kind}@test"
            if kind == "body":
                msg = _invite_msg(c.host, c.port, "TCP", "big", call_id).replace(
                    "Content-Type: application/sdp\n\n",
                    "Content-Type: text/plain\n\n" + "x" * 100_000 + "\n",
                )
                raw = crlf(msg).encode()
            else:  # a 100 kB header block (no blank line within the limit)
                head = crlf(_invite_msg(c.host, c.port, "TCP", "big", call_id)).split("\r\n\r\n")[0]
                raw = (head + "\r\n" + "X-Pad: " + "y" * 100_000 + "\r\n\r\n").encode()
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                c.sock.sendall(raw)
            got = c.closed_by_daemon()
            frames = StreamFramer().feed(got)
            assert len(frames) == 1, got[:300]
            resp = parse_message(frames[0], datagram=False)
            assert resp.status == 513 and resp.call_id == call_id
        finally:
            c.close()
    with pytest.raises(TimeoutError):
        core.recv(timeout=0.5)
    st = d.wait_stats(lambda s: s["tcp_connections"]["access"] == base)
    assert _transport(st)["tcp_too_large"] == 2, st
    assert st["counters"]["too_large"] == 2
    assert st["tcp_connections"]["access"] == base
    assert d.alive()


def test_oversize_udp_invite_gets_513_and_nothing_reaches_the_next_hop(
    guarded: tuple[Daemon, UdpPeer],
) -> None:
    d, core = guarded
    with UdpPeer(host=UE_HOST) as ue:
        call_id = "big-udp@test"
        head = crlf(_invite_msg(UE_HOST, ue.port, "UDP", "big", call_id)).split("\r\n\r\n")[0]
        # 64 kB of header: under the largest datagram, over sip.max_message_bytes (32768)
        raw = (head + "\r\nX-Pad: " + "z" * 64_000 + "\r\nContent-Length: 0\r\n\r\n").encode()
        assert 32_768 < len(raw) < 65_507
        ue.send(raw, d.access_port)
        resp = ue.expect(513)
        assert resp.call_id == call_id and resp.reason == "Message Too Large"
        with pytest.raises(TimeoutError):
            core.recv(timeout=0.5)
        # an oversize response is dropped, never answered nor forwarded
        resp_raw = raw.replace(b"INVITE sip:bob@ims.test SIP/2.0", b"SIP/2.0 200 OK", 1)
        core.send(resp_raw, d.core_port)
        with pytest.raises(TimeoutError):
            ue.recv(timeout=0.5)
        with pytest.raises(TimeoutError):
            core.recv(timeout=0.2)
    st = d.stats()
    assert st["counters"]["too_large"] == 2, st
    assert st["counters"]["by_status"].get("513") == 1 or st["counters"]["by_status"].get(513) == 1
    _legit_udp_call(d, core, "dave")  # and normal service goes on
