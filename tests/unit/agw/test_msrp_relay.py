"""MSRP over TLS (UE side) <-> TCP (core side) through the gateway, over loopback.

Peers: Python ssl clients/servers holding their own self-signed certificates, the real
`openssl s_client` / `openssl s_server`, and a plain asyncio TCP server as the core peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pcscf_alg.agw import InProcessGateway, MsrpClosed, TlsEstablished, TlsFailed
from pcscf_alg.agw.certs import GatewayCertificate
from pcscf_alg.agw.msrp_relay import MsrpStream
from pcscf_alg.mediaplan import (
    Endpoint,
    MediaKind,
    MediaPlan,
    MsrpMode,
    SetupRole,
    StreamMode,
    StreamPlan,
    StreamRequest,
    StreamReservation,
)

from .helpers import HOST, Events, eventually, make_config, run_async, ue_certificate
from .helpers import started_gateway as start_gw

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")

UE_PATH = "msrps://127.0.0.1:50000/ue1;tcp"
CORE_PATH = "msrp://127.0.0.1:2855/peer9;tcp"


def send(tid: str, to: str, frm: str, body: bytes, flag: str = "$") -> bytes:
    return (
        (
            f"MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\nMessage-ID: m1\r\n"
            f"Byte-Range: 1-{len(body)}/*\r\nContent-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n-------{tid}{flag}\r\n".encode()
    )


def ok(tid: str, to: str, frm: str) -> bytes:
    return f"MSRP {tid} 200 OK\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\n-------{tid}$\r\n".encode()


class CorePeer:
    """Plain TCP MSRP peer on the core side (the S-CSCF's far end)."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self._on, HOST, 0)
        port = self.server.sockets[0].getsockname()[1]
        return Endpoint(HOST, port)

    async def _on(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.conns.append((r, w))

    async def conn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await eventually(lambda: bool(self.conns))
        return self.conns[0]

    async def close(self) -> None:
        for _, w in self.conns:
            w.close()
        if self.server is not None:
            self.server.close()


def ue_client_ctx(cert: GatewayCertificate) -> ssl.SSLContext:
    # The UE's side: its own self-signed certificate; it checks ours by fingerprint, not PKI.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


@dataclass
class MsrpCall:
    gw: InProcessGateway
    events: Events
    res: StreamReservation
    plan: StreamPlan
    ue_cert: GatewayCertificate
    core: CorePeer

    @property
    def access(self) -> tuple[str, int]:
        return (HOST, self.res.access.port)

    def stream(self) -> MsrpStream:
        s = self.gw._contexts["m1"][0]
        assert isinstance(s, MsrpStream)
        return s

    async def ue_connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(*self.access, ssl=ue_client_ctx(self.ue_cert)), 3
        )
        # The UE checks the gateway's certificate against the SDP fingerprint (RFC 8122).
        try:
            der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
        except ValueError:  # the alert arrived right after the client's Finished (TLS 1.3)
            raise ConnectionResetError("TLS session torn down") from None
        assert self.gw.certificate.certificate.public_bytes(Encoding.DER) == der
        return r, w


@contextlib.asynccontextmanager
async def msrp_call(
    tmp_path: Path, *, configure: bool = True, wrong_fingerprint: bool = False, **plan_kw: Any
) -> AsyncIterator[MsrpCall]:
    cfg_kw = plan_kw.pop("cfg", {})
    gw, events = await start_gw(make_config(tmp_path, 1, **cfg_kw))
    core = CorePeer()
    try:
        core_ep = await core.start()
        [res] = await gw.reserve("m1", [StreamRequest(0, MediaKind.MSRP)])
        assert res.local_fingerprint == gw.local_fingerprint
        ue_cert = ue_certificate(tmp_path)
        signalled = ue_certificate(tmp_path, "other") if wrong_fingerprint else ue_cert
        kw: dict[str, Any] = {
            "ue_remote": Endpoint(HOST, 9),
            "core_remote": core_ep,
            "ue_fingerprint": (signalled.fingerprint,),
        }
        kw.update(plan_kw)
        plan = StreamPlan(0, MediaKind.MSRP, StreamMode.E2AE, **kw)
        if configure:
            await gw.configure("m1", MediaPlan((plan,)))
        yield MsrpCall(gw, events, res, plan, ue_cert, core)
    finally:
        await gw.close()
        await core.close()


async def read_exactly(r: asyncio.StreamReader, n: int, timeout: float = 3.0) -> bytes:
    return await asyncio.wait_for(r.readexactly(n), timeout)


# ----------------------------------------------------------------------------- Python peers


@run_async
async def test_python_ue_with_signalled_fingerprint_gets_through(tmp_path: Path) -> None:
    async with msrp_call(tmp_path) as c:
        r, w = await c.ue_connect()
        await c.events.wait_for(lambda e: isinstance(e, TlsEstablished))
        msg = send("t001", UE_PATH, CORE_PATH, b"hello core")
        w.write(msg)
        cr, cw = await c.core.conn()  # opened only after the UE's TLS came up (TS 23.334)
        assert await read_exactly(cr, len(msg)) == msg
        reply = ok("t001", CORE_PATH, UE_PATH)
        cw.write(reply)
        assert await read_exactly(r, len(reply)) == reply
        w.close()
        ev = await c.events.wait_for(lambda e: isinstance(e, MsrpClosed))
        assert isinstance(ev, MsrpClosed) and ev.reason == "eof"
        assert await asyncio.wait_for(cr.read(), 3) == b""  # the core leg follows


@run_async
async def test_python_ue_with_other_fingerprint_fails_handshake(tmp_path: Path) -> None:
    async with msrp_call(
        tmp_path, wrong_fingerprint=True, cfg={"tls_handshake_timeout_s": 1.0}
    ) as c:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            r, w = await c.ue_connect()
            # TLS 1.3: the client finishes first and sees the alert on its next read.
            w.write(send("t002", UE_PATH, CORE_PATH, b"must not pass"))
            await read_exactly(r, 1)
        # Anyone could have presented that certificate: the connection alone is dropped, and
        # the call ends only when no UE session is up by the stream's deadline (issue 11).
        await eventually(lambda: c.stream().failed == 1)
        assert not c.events.of(TlsFailed)
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert ev == TlsFailed("m1", 0, "fingerprint_mismatch")  # the last attempt's reason
        await asyncio.sleep(0.1)
        assert c.core.conns == []  # nothing reached the core
        assert not c.events.of(TlsEstablished)
        assert len(c.events.of(TlsFailed)) == 1


@run_async
async def test_ue_without_certificate_fails(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 1.0}) as c:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            r, _w = await asyncio.open_connection(*c.access, ssl=ctx)
            await read_exactly(r, 1)
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert isinstance(ev, TlsFailed) and ev.reason in ("handshake", "no_certificate")
        assert c.core.conns == []


@run_async
async def test_multichunk_send_cema_bytes_unchanged(tmp_path: Path) -> None:
    async with msrp_call(tmp_path) as c:
        r, w = await c.ue_connect()
        body = bytes(range(256)) * 64  # 16 KiB chunks
        chunks = [
            send(f"ch{i:04d}", UE_PATH, CORE_PATH, body, "+" if i < 4 else "$") for i in range(5)
        ]
        stream = b"".join(chunks)
        for i in range(0, len(stream), 1000):  # many small writes: chunks split across reads
            w.write(stream[i : i + 1000])
        cr, cw = await c.core.conn()
        assert await read_exactly(cr, len(stream)) == stream
        back = b"".join(ok(f"ch{i:04d}", CORE_PATH, UE_PATH) for i in range(5))
        back += send("rev1", CORE_PATH, UE_PATH, body[::-1])
        cw.write(back)
        assert await read_exactly(r, len(back)) == back


@run_async
async def test_non_cema_paths_rewritten_per_leg(tmp_path: Path) -> None:
    async with msrp_call(
        tmp_path,
        msrp_mode=MsrpMode.AWARE,
        ue_path=UE_PATH,
        agw_access_path="msrps://127.0.0.1:40000/agwA;tcp",
        core_path=CORE_PATH,
        agw_core_path="msrp://127.0.0.1:40001/agwC;tcp",
    ) as c:
        agw_a, agw_c = c.plan.agw_access_path, c.plan.agw_core_path
        assert agw_a and agw_c
        r, w = await c.ue_connect()
        body = b"x" * 5000
        parts = [send("aw01", agw_a, UE_PATH, body, "+"), send("aw02", agw_a, UE_PATH, body)]
        data = b"".join(parts)
        for i in range(0, len(data), 777):
            w.write(data[i : i + 777])
            await asyncio.sleep(0)
        want = send("aw01", CORE_PATH, agw_c, body, "+") + send("aw02", CORE_PATH, agw_c, body)
        cr, cw = await c.core.conn()
        assert await read_exactly(cr, len(want)) == want
        cw.write(ok("aw01", agw_c, CORE_PATH) + send("bk01", agw_c, CORE_PATH, b"hi UE"))
        want = ok("aw01", UE_PATH, agw_a) + send("bk01", UE_PATH, agw_a, b"hi UE")
        assert await read_exactly(r, len(want)) == want


@run_async
async def test_large_transfer_with_backpressure(tmp_path: Path) -> None:
    async with msrp_call(tmp_path) as c:
        _r, w = await c.ue_connect()
        body = bytes(range(256)) * 4096  # 1 MiB
        msg = b"".join(send(f"bp{i:03d}", UE_PATH, CORE_PATH, body, "+") for i in range(8))
        w.write(msg)
        cr, _ = await c.core.conn()
        # The core peer does not read: the gateway must stop reading the UE, not buffer 8 MiB.
        await eventually(
            lambda: c.stream().access is not None and "peer_full" in c.stream().access._pause, 5
        )
        assert await read_exactly(cr, len(msg), 10) == msg
        await asyncio.wait_for(w.drain(), 5)
        await eventually(lambda: c.stream().access is not None and not c.stream().access._pause, 5)


# ----------------------------------------------------------------------------- timeouts, roles


@run_async
async def test_handshake_timeout(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 0.3}) as c:
        r, w = await asyncio.open_connection(*c.access)  # TCP only, never says hello
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert ev == TlsFailed("m1", 0, "handshake_timeout")
        assert await asyncio.wait_for(r.read(), 3) == b""
        w.close()


@run_async
async def test_idle_timeout(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"msrp_idle_timeout_s": 0.3, "media_timeout_s": 0.4}) as c:
        r, w = await c.ue_connect()
        await c.core.conn()
        ev = await c.events.wait_for(lambda e: isinstance(e, MsrpClosed), 3)
        assert isinstance(ev, MsrpClosed) and ev.reason == "idle"
        assert await asyncio.wait_for(r.read(), 3) == b""
        w.close()


@run_async
async def test_connection_before_configure_is_held(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, configure=False) as c:
        task = asyncio.create_task(c.ue_connect())  # the UE races the signalling
        await asyncio.sleep(0.2)
        assert not task.done()
        await c.gw.configure("m1", MediaPlan((c.plan,)))
        _r, w = await asyncio.wait_for(task, 3)
        await c.events.wait_for(lambda e: isinstance(e, TlsEstablished))
        w.write(b"MSRP abcd SEND\r\nTo-Path: a\r\nFrom-Path: b\r\n-------abcd$\r\n")
        cr, _ = await c.core.conn()
        assert (await read_exactly(cr, 10)).startswith(b"MSRP abcd")


@run_async
async def test_core_passive_waits_for_ue(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, core_setup=SetupRole.PASSIVE) as c:
        # The core peer connects first (it was told we are passive) and speaks at once.
        cr, cw = await asyncio.open_connection(HOST, c.res.core.port)
        early = send("cp01", CORE_PATH, UE_PATH, b"early")
        cw.write(early)
        await asyncio.sleep(0.2)
        r, w = await c.ue_connect()
        assert await read_exactly(r, len(early)) == early  # delivered once the UE is up
        msg = send("cp02", UE_PATH, CORE_PATH, b"up")
        w.write(msg)
        assert await read_exactly(cr, len(msg)) == msg
        assert c.core.conns == []  # the gateway did not dial out
        cw.close()


@run_async
async def test_gateway_as_tls_client_towards_python_ue(tmp_path: Path) -> None:
    ue_cert = ue_certificate(tmp_path, "ue-srv")
    got: list[bytes] = []
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(ue_cert.cert_path, ue_cert.key_path)
    # Python's ssl cannot accept an unknown self-signed client certificate, so this UE does not
    # ask for ours; the openssl s_server test below does (-Verify).
    sctx.verify_mode = ssl.CERT_NONE

    async def on_ue(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"from-ue")
        got.append(await r.read(100))

    srv = await asyncio.start_server(on_ue, HOST, 0, ssl=sctx)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with msrp_call(
            tmp_path,
            access_setup=SetupRole.ACTIVE,
            ue_remote=Endpoint(HOST, port),
            ue_fingerprint=(ue_cert.fingerprint,),
        ) as c:
            await c.events.wait_for(lambda e: isinstance(e, TlsEstablished))
            cr, cw = await c.core.conn()
            assert await read_exactly(cr, 7) == b"from-ue"
            cw.write(b"from-core")
            await eventually(lambda: bool(got))
            assert got == [b"from-core"]
    finally:
        srv.close()


# ----------------------------------------------------------------------------- openssl CLI


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 3)


@needs_openssl
@pytest.mark.parametrize("match", [True, False])
@run_async
async def test_openssl_s_client(tmp_path: Path, match: bool) -> None:
    cfg = {"tls_handshake_timeout_s": 3.0 if match else 1.0}
    async with msrp_call(tmp_path, wrong_fingerprint=not match, cfg=cfg) as c:
        assert OPENSSL is not None
        proc = await asyncio.create_subprocess_exec(
            OPENSSL,
            "s_client",
            "-connect",
            f"{HOST}:{c.res.access.port}",
            "-cert",
            str(c.ue_cert.cert_path),
            "-key",
            str(c.ue_cert.key_path),
            "-quiet",
            "-ign_eof",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            msg = send("os01", UE_PATH, CORE_PATH, b"via openssl")
            proc.stdin.write(msg)
            if match:
                await c.events.wait_for(lambda e: isinstance(e, TlsEstablished))
                cr, cw = await c.core.conn()
                assert await read_exactly(cr, len(msg)) == msg
                cw.write(b"reply-from-core\n")
                line = await asyncio.wait_for(proc.stdout.readline(), 3)
                assert line == b"reply-from-core\n"
            else:
                # s_client saw the alert; the call ends on the stream's deadline, not on it.
                assert await asyncio.wait_for(proc.wait(), 3) != 0
                ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
                assert ev == TlsFailed("m1", 0, "fingerprint_mismatch")
                await asyncio.sleep(0.1)
                assert c.core.conns == []
        finally:
            await _kill(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@needs_openssl
@pytest.mark.parametrize("match", [True, False])
@run_async
async def test_gateway_as_client_towards_openssl_s_server(tmp_path: Path, match: bool) -> None:
    assert OPENSSL is not None
    ue_cert = ue_certificate(tmp_path, "ue-srv")
    other = ue_certificate(tmp_path, "other-srv")
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        OPENSSL,
        "s_server",
        "-accept",
        f"{HOST}:{port}",
        "-naccept",
        "1",
        "-cert",
        str(ue_cert.cert_path),
        "-key",
        str(ue_cert.key_path),
        "-Verify",
        "1",  # the gateway must present a certificate
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        while b"ACCEPT" not in await asyncio.wait_for(proc.stdout.readline(), 5):
            pass
        fp = ue_cert.fingerprint if match else other.fingerprint
        async with msrp_call(
            tmp_path,
            access_setup=SetupRole.ACTIVE,
            ue_remote=Endpoint(HOST, port),
            ue_fingerprint=(fp,),
        ) as c:
            if match:
                await c.events.wait_for(lambda e: isinstance(e, TlsEstablished))
                cr, cw = await c.core.conn()
                proc.stdin.write(b"from-s_server\n")
                assert await read_exactly(cr, 14) == b"from-s_server\n"
                cw.write(b"MARK-from-core\n")
                while b"MARK-from-core" not in await asyncio.wait_for(proc.stdout.readline(), 3):
                    pass
            else:
                ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
                assert ev == TlsFailed("m1", 0, "fingerprint_mismatch")
                await asyncio.sleep(0.1)
                assert c.core.conns == []
    finally:
        await _kill(proc)


@run_async
async def test_release_closes_connections_and_ports(tmp_path: Path) -> None:
    async with msrp_call(tmp_path) as c:
        r, w = await c.ue_connect()
        await c.core.conn()
        ports = c.gw.active_ports()
        assert ("tcp", c.res.access.port) in ports and ("tcp", c.res.core.port) in ports
        await c.gw.release("m1")
        assert c.gw.active_ports() == frozenset()
        assert await asyncio.wait_for(r.read(), 3) == b""
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(*c.access), 2)
        w.close()


@run_async
async def test_configure_refuses_unusable_fingerprint(tmp_path: Path) -> None:
    from pcscf_alg.errors import GatewayError
    from pcscf_alg.mediaplan import Fingerprint

    async with msrp_call(tmp_path) as c:
        bad = replace(c.plan, ue_fingerprint=(Fingerprint("md5", b"\x00" * 16),))
        with pytest.raises(GatewayError, match="fingerprint"):
            await c.gw.configure("m1", MediaPlan((bad,)))
        aware = replace(c.plan, msrp_mode=MsrpMode.AWARE)
        with pytest.raises(GatewayError, match="paths"):
            await c.gw.configure("m1", MediaPlan((aware,)))
