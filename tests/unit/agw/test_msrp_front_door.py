"""The MSRP access port against an adversary (issue 11 items 1 and 4), over loopback.

Anyone can reach the UE-side MSRP port. A connection that is not the UE's verified session
(wrong certificate, none, a bare TCP connection held open, garbage, too many at once) is dropped
on its own and must neither end the call nor keep the real UE out; the call ends only when the
UE's own session fails or is not up by the stream's deadline (one TlsFailed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.agw import AgwConfig, MsrpClosed, TlsEstablished, TlsFailed
from pcscf_alg.agw.certs import GatewayCertificate
from pcscf_alg.agw.config import parse_agw_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.mediaplan import (
    Endpoint,
    MediaKind,
    MediaPlan,
    SetupRole,
    StreamMode,
    StreamPlan,
    StreamRequest,
)

from .helpers import HOST, eventually, make_config, run_async, started_gateway, ue_certificate
from .test_msrp_relay import (
    CORE_PATH,
    UE_PATH,
    CorePeer,
    MsrpCall,
    msrp_call,
    ok,
    read_exactly,
    send,
    ue_client_ctx,
)

OTHER_HOST = "127.0.0.2"  # a second loopback source address (Linux routes all of 127/8 to lo)


async def intruder_tls(c: MsrpCall, cert: GatewayCertificate | None) -> None:
    """Connect with a certificate that is not the signalled one (or none) and fail."""
    if cert is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    else:
        ctx = ue_client_ctx(cert)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        r, w = await asyncio.wait_for(asyncio.open_connection(*c.access, ssl=ctx), 3)
        try:
            # TLS 1.3: the client finishes first and sees the alert on its next read.
            w.write(send("ix01", UE_PATH, CORE_PATH, b"intruder"))
            await read_exactly(r, 1)
        finally:
            w.close()


async def bare_tcp(
    c: MsrpCall, local: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kw: dict[str, Any] = {"local_addr": (local, 0)} if local else {}
    return await asyncio.wait_for(asyncio.open_connection(*c.access, **kw), 3)


async def closed_by_gateway(r: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    """True once the gateway has closed (FIN or RST) the connection read by `r`."""
    try:
        return await asyncio.wait_for(r.read(), timeout) == b""
    except ConnectionError:
        return True


async def relays_both_ways(c: MsrpCall, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    msg = send("ok01", UE_PATH, CORE_PATH, b"hello core")
    w.write(msg)
    cr, cw = await c.core.conn()
    assert await read_exactly(cr, len(msg)) == msg
    reply = ok("ok01", CORE_PATH, UE_PATH)
    cw.write(reply)
    assert await read_exactly(r, len(reply)) == reply


def no_failure_events(c: MsrpCall) -> bool:
    return not c.events.of(TlsFailed) and not c.events.of(MsrpClosed)


# ----------------------------------------------------------------------------- e2ae (TLS)


@run_async
async def test_intruder_with_wrong_certificate_then_ue(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 1.0}) as c:
        await intruder_tls(c, ue_certificate(tmp_path, "intruder"))
        await eventually(lambda: c.stream().failed == 1)
        assert no_failure_events(c)
        r, w = await c.ue_connect()
        await c.events.wait_for(lambda e: isinstance(e, TlsEstablished))
        await relays_both_ways(c, r, w)
        # Past the stream's deadline: the UE's session is up, nothing more is reported.
        await asyncio.sleep(1.2)
        assert no_failure_events(c)
        assert len(c.events.of(TlsEstablished)) == 1
        assert c.gw.stats("m1")[0].dropped == 1


@run_async
async def test_intruder_holding_bare_tcp_does_not_block_the_ue(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 2.0}) as c:
        ir, iw = await bare_tcp(c)  # connects first, says nothing, holds the connection
        await eventually(lambda: len(c.stream().candidates) == 1)
        r, w = await c.ue_connect()  # handshakes alongside, not behind it
        await relays_both_ways(c, r, w)
        # Once the UE authenticated, the other pending connection is closed.
        assert await closed_by_gateway(ir)
        assert c.stream().candidates == []
        assert no_failure_events(c)
        iw.close()


@run_async
async def test_intruder_and_ue_before_configure(tmp_path: Path) -> None:
    """Both connect before the answer configured the stream: both are held, then both
    handshake; the one with the signalled certificate wins."""
    async with msrp_call(tmp_path, configure=False) as c:
        ir, iw = await bare_tcp(c)
        bad = asyncio.create_task(intruder_tls(c, ue_certificate(tmp_path, "intruder")))
        ue = asyncio.create_task(c.ue_connect())
        await eventually(lambda: len(c.stream().candidates) == 3)
        await asyncio.sleep(0.1)
        assert not ue.done() and not bad.done()  # held until configure
        await c.gw.configure("m1", MediaPlan((c.plan,)))
        r, w = await asyncio.wait_for(ue, 3)
        await asyncio.wait_for(bad, 3)
        await relays_both_ways(c, r, w)
        assert await closed_by_gateway(ir)
        assert no_failure_events(c)
        iw.close()


@run_async
async def test_several_intruders_at_once_then_ue(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 2.0}) as c:
        held = [await bare_tcp(c) for _ in range(3)]
        garbage_r, garbage_w = await bare_tcp(c)
        garbage_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not TLS at all
        await asyncio.gather(
            intruder_tls(c, ue_certificate(tmp_path, "i1")),
            intruder_tls(c, ue_certificate(tmp_path, "i2")),
            intruder_tls(c, None),  # no certificate
        )
        assert await closed_by_gateway(garbage_r)
        assert no_failure_events(c)
        r, w = await c.ue_connect()
        await relays_both_ways(c, r, w)
        for hr, hw in held:
            assert await closed_by_gateway(hr)
            hw.close()
        garbage_w.close()
        await eventually(lambda: c.gw.stats("m1")[0].dropped == 7)
        assert no_failure_events(c)
        assert len(c.events.of(TlsEstablished)) == 1


@run_async
async def test_pending_connections_are_bounded(tmp_path: Path) -> None:
    cfg = {"tls_handshake_timeout_s": 1.0, "msrp_max_pending_connections": 2}
    async with msrp_call(tmp_path, cfg=cfg) as c:
        held = [await bare_tcp(c) for _ in range(2)]
        await eventually(lambda: len(c.stream().candidates) == 2)
        r3, w3 = await bare_tcp(c)  # one too many: refused at once
        assert await closed_by_gateway(r3, 1.0)
        assert c.stream().refused == 1 and len(c.stream().candidates) == 2
        # Each pending one has its own deadline: they go, and take nothing with them.
        for hr, hw in held:
            assert await closed_by_gateway(hr)
            hw.close()
        await eventually(lambda: c.stream().candidates == [])
        w3.close()
        assert c.stream().failed == 2
        # The stream's own deadline (from configure) then ends the call: no UE came.
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert ev == TlsFailed("m1", 0, "handshake_timeout")


@run_async
async def test_no_ue_connection_one_tls_failed_after_the_deadline(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 0.5}) as c:
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert ev == TlsFailed("m1", 0, "handshake_timeout")
        await asyncio.sleep(1.0)  # two more deadlines' worth: still the one event
        assert c.events.of(TlsFailed) == [ev]
        assert c.core.conns == []
        await c.gw.release("m1")
        assert c.gw.active_ports() == frozenset()


@run_async
async def test_holdconn_stream_has_no_deadline(tmp_path: Path) -> None:
    async with msrp_call(
        tmp_path, access_setup=SetupRole.HOLDCONN, cfg={"tls_handshake_timeout_s": 0.3}
    ) as c:
        await asyncio.sleep(0.8)  # a=setup:holdconn: nobody is expected to connect yet
        assert not c.events.of(TlsFailed)


@run_async
async def test_connection_while_ue_session_up_is_refused(tmp_path: Path) -> None:
    async with msrp_call(tmp_path) as c:
        r, w = await c.ue_connect()
        await relays_both_ways(c, r, w)
        ir, iw = await bare_tcp(c)
        assert await closed_by_gateway(ir)
        iw.close()
        await intruder_tls(c, c.ue_cert)  # even with the UE's own certificate (a replay)
        assert c.stream().refused == 2
        msg = send("ok02", UE_PATH, CORE_PATH, b"still up")
        w.write(msg)
        cr, _ = await c.core.conn()
        assert await read_exactly(cr, len(msg)) == msg
        assert no_failure_events(c)


@run_async
async def test_ue_session_closing_is_msrp_closed_not_tls_failed(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, cfg={"tls_handshake_timeout_s": 0.5}) as c:
        r, w = await c.ue_connect()
        await relays_both_ways(c, r, w)
        w.close()
        ev = await c.events.wait_for(lambda e: isinstance(e, MsrpClosed))
        assert isinstance(ev, MsrpClosed) and ev.reason == "eof"
        await asyncio.sleep(0.8)  # past the deadline: the UE's session did come up
        assert not c.events.of(TlsFailed)


@run_async
async def test_gateway_active_connect_failure_reported_once(tmp_path: Path) -> None:
    # Where the gateway connects to the UE, the failure is the UE's own session: at once.
    async with msrp_call(
        tmp_path,
        access_setup=SetupRole.ACTIVE,
        ue_remote=Endpoint(HOST, 9),  # discard port: nothing listens, connection refused
        cfg={"tls_handshake_timeout_s": 0.5},
    ) as c:
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert ev == TlsFailed("m1", 0, "connect_failed")
        await asyncio.sleep(0.8)
        assert c.events.of(TlsFailed) == [ev]
        # and nobody else may take the access port meanwhile
        ir, iw = await bare_tcp(c)
        assert await closed_by_gateway(ir)
        iw.close()


# ----------------------------------------------------------------------------- pass-through


@contextlib.asynccontextmanager
async def pass_call(tmp_path: Path, **cfg: Any) -> Any:
    gw, events = await started_gateway(make_config(tmp_path, 3, **cfg))
    core = CorePeer()
    try:
        core_ep = await core.start()
        [res] = await gw.reserve("m1", [StreamRequest(0, MediaKind.MSRP)])
        plan = StreamPlan(
            0, MediaKind.MSRP, StreamMode.PASS, ue_remote=Endpoint(HOST, 9), core_remote=core_ep
        )
        await gw.configure("m1", MediaPlan((plan,)))
        yield MsrpCall(gw, events, res, plan, ue_certificate(tmp_path), core)
    finally:
        await gw.close()
        await core.close()


@run_async
async def test_pass_through_takes_only_the_ues_address(tmp_path: Path) -> None:
    async with pass_call(tmp_path) as c:
        ir, iw = await bare_tcp(c, OTHER_HOST)  # not the IP the UE signalled
        iw.write(b"MSRP inject SEND\r\n")
        assert await closed_by_gateway(ir)
        iw.close()
        assert c.gw.stats("m1")[0].rejected_source == 1
        r, w = await bare_tcp(c, HOST)
        await relays_both_ways(c, r, w)
        assert no_failure_events(c)
        await asyncio.sleep(0.1)
        assert len(c.core.conns) == 1  # the intruder's bytes never opened a core leg


@run_async
async def test_pass_through_without_strict_source_takes_the_first(tmp_path: Path) -> None:
    async with pass_call(tmp_path, strict_source=False) as c:
        r, w = await bare_tcp(c, OTHER_HOST)  # e.g. a UE behind a NAT
        await relays_both_ways(c, r, w)
        ir, iw = await bare_tcp(c, HOST)  # the slot is taken
        assert await closed_by_gateway(ir)
        iw.close()
        assert c.gw.stats("m1")[0].dropped == 1


@run_async
async def test_pass_through_without_ue_connection_ends_after_the_deadline(
    tmp_path: Path,
) -> None:
    async with pass_call(tmp_path, tls_handshake_timeout_s=0.5) as c:
        ir, iw = await bare_tcp(c, OTHER_HOST)
        assert await closed_by_gateway(ir)
        iw.close()
        ev = await c.events.wait_for(lambda e: isinstance(e, TlsFailed))
        assert ev == TlsFailed("m1", 0, "handshake_timeout")


@run_async
async def test_core_port_takes_only_the_cores_address(tmp_path: Path) -> None:
    async with msrp_call(tmp_path, core_setup=SetupRole.PASSIVE) as c:
        ir, iw = await asyncio.wait_for(
            asyncio.open_connection(HOST, c.res.core.port, local_addr=(OTHER_HOST, 0)), 3
        )
        assert await closed_by_gateway(ir)
        iw.close()
        assert c.gw.stats("m1")[0].rejected_source == 1
        cr, cw = await asyncio.open_connection(HOST, c.res.core.port)
        _r, w = await c.ue_connect()
        msg = send("cp01", UE_PATH, CORE_PATH, b"up")
        w.write(msg)
        assert await read_exactly(cr, len(msg)) == msg
        cw.close()


# ----------------------------------------------------------------------------- config


def test_max_pending_default_and_validation() -> None:
    assert parse_agw_config(None, "f.yaml").msrp_max_pending_connections == 8
    assert AgwConfig().msrp_max_pending_connections == 8
    cfg = parse_agw_config({"msrp_max_pending_connections": 3}, "f.yaml")
    assert cfg.msrp_max_pending_connections == 3
    for bad in (0, -1, 1025, "8", True, 2.5):
        with pytest.raises(ConfigError) as e:
            parse_agw_config({"msrp_max_pending_connections": bad}, "f.yaml")
        assert "f.yaml" in str(e.value) and "agw.msrp_max_pending_connections" in str(e.value)
