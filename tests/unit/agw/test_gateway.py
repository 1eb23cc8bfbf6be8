"""InProcessGateway control procedures: reserve/configure/release bookkeeping, no leaks,
pass-through MSRP, TLS on the core leg, uvloop."""

from __future__ import annotations

import asyncio
import gc
import os
import ssl
from pathlib import Path

import pylibsrtp
import pytest

from pcscf_alg.agw import InProcessGateway, MsrpClosed, TlsEstablished, TlsFailed
from pcscf_alg.agw.rtp_relay import RtpStream
from pcscf_alg.agw.srtp import SrtpContext
from pcscf_alg.errors import GatewayError
from pcscf_alg.mediaplan import (
    Endpoint,
    MediaKind,
    MediaPlan,
    SetupRole,
    Side,
    StreamMode,
    StreamPlan,
    StreamRequest,
)

from .helpers import (
    HOST,
    UdpPeer,
    eventually,
    make_config,
    rtp,
    run_async,
    srtp_key,
    started_gateway,
    ue_certificate,
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rtp_plan(index: int = 0, **kw: object) -> StreamPlan:
    return StreamPlan(
        index, MediaKind.RTP, StreamMode.E2AE, rx_key=srtp_key(), tx_key=srtp_key(), **kw
    )  # type: ignore[arg-type]


@run_async
async def test_reserve_is_idempotent_and_reports_addresses(tmp_path: Path) -> None:
    gw, _ = await started_gateway(make_config(tmp_path, 2))
    try:
        reqs = [
            StreamRequest(0, MediaKind.RTP, access_rtcp_mux=True),
            StreamRequest(1, MediaKind.MSRP),
            StreamRequest(2, MediaKind.RTP, want_local_fingerprint=True),
        ]
        res = await gw.reserve("c", reqs)
        again = await gw.reserve("c", reqs)
        assert res == again
        a0 = res[0].access
        assert a0.host == HOST and a0.port % 2 == 0 and a0.rtcp_port is None  # mux offered
        assert res[0].core.rtcp_port == res[0].core.port + 1
        assert res[0].local_fingerprint is None
        assert res[1].local_fingerprint == res[2].local_fingerprint == gw.local_fingerprint
        lo, hi = gw.config.rtp_ports
        assert all(lo <= p <= hi for kind, p in gw.active_ports() if kind == "udp")
        assert len(gw.active_ports()) == 2 * 4 + 2
        with pytest.raises(GatewayError, match="already reserved"):
            await gw.reserve("c", [StreamRequest(1, MediaKind.RTP)])
        with pytest.raises(GatewayError, match="not relayed"):
            await gw.reserve("c", [StreamRequest(5, MediaKind.OTHER)])
        assert len(gw.active_ports()) == 2 * 4 + 2  # the failed reserve left nothing behind
    finally:
        await gw.close()
    assert gw.active_ports() == frozenset()


@run_async
async def test_configure_errors(tmp_path: Path) -> None:
    gw, _ = await started_gateway(make_config(tmp_path, 2))
    try:
        with pytest.raises(GatewayError, match="unknown context"):
            await gw.configure("nope", MediaPlan((rtp_plan(),)))
        await gw.reserve("c", [StreamRequest(0, MediaKind.RTP)])
        with pytest.raises(GatewayError, match="not reserved"):
            await gw.configure("c", MediaPlan((rtp_plan(3),)))
        with pytest.raises(GatewayError, match="both SRTP keys"):
            await gw.configure("c", MediaPlan((StreamPlan(0, MediaKind.RTP, StreamMode.E2AE),)))
        with pytest.raises(GatewayError, match="reserved as rtp"):
            await gw.configure("c", MediaPlan((StreamPlan(0, MediaKind.MSRP, StreamMode.PASS),)))
        with pytest.raises(GatewayError, match="no stream"):
            await gw.update_keys("c", 7, None, None)
        with pytest.raises(GatewayError, match="no SRTP"):
            await gw.update_keys("c", 0, srtp_key(), None)  # not configured yet
    finally:
        await gw.close()


@run_async
async def test_bypass_in_a_later_plan_frees_the_stream(tmp_path: Path) -> None:
    gw, _ = await started_gateway(make_config(tmp_path, 2))
    try:
        await gw.reserve("c", [StreamRequest(0, MediaKind.RTP), StreamRequest(1, MediaKind.RTP)])
        await gw.configure("c", MediaPlan((rtp_plan(0), rtp_plan(1))))
        assert len(gw.active_ports()) == 8
        await gw.configure(
            "c", MediaPlan((rtp_plan(0), StreamPlan(1, MediaKind.RTP, StreamMode.REJECTED)))
        )
        assert len(gw.active_ports()) == 4
        assert [s.index for s in gw.stats("c")] == [0]
    finally:
        await gw.close()


@run_async
async def test_no_leak_after_1000_reserve_release_cycles(tmp_path: Path) -> None:
    # A small range makes the pool wrap many times, so every port is reused.
    cfg = make_config(tmp_path, 3)
    gw, _ = await started_gateway(cfg)
    try:
        await gw.reserve(
            "warm", [StreamRequest(0, MediaKind.RTP), StreamRequest(1, MediaKind.MSRP)]
        )
        await gw.release("warm")
        gc.collect()
        fds = open_fds()
        ue = UdpPeer()
        try:
            for i in range(1000):
                cid = f"call-{i}"
                res = await gw.reserve(
                    cid, [StreamRequest(0, MediaKind.RTP), StreamRequest(1, MediaKind.MSRP)]
                )
                plan = rtp_plan(
                    0, ue_remote=Endpoint(HOST, ue.addr[1]), core_remote=Endpoint(HOST, 9)
                )
                await gw.configure(cid, MediaPlan((plan,)))
                if i % 100 == 0:  # some cycles carry media
                    ue.send(b"\x80" * 40, (HOST, res[0].access.port))
                    await asyncio.sleep(0)
                await gw.release(cid)
                assert gw.active_ports() == frozenset()
        finally:
            ue.close()
        await asyncio.sleep(0.05)
        gc.collect()
        assert gw.contexts() == frozenset()
        assert gw._rtp_pool.available == gw._rtp_pool.capacity
        assert gw._msrp_pool.available == gw._msrp_pool.capacity
        assert open_fds() <= fds
        # No SRTP session (and so no key) outlives its call.
        assert not [o for o in gc.get_objects() if isinstance(o, SrtpContext | RtpStream)]
        await gw.release("call-1")  # idempotent
    finally:
        await gw.close()


@run_async
async def test_event_handler_errors_do_not_break_the_gateway(tmp_path: Path) -> None:
    gw, _ = await started_gateway(make_config(tmp_path, 2, media_timeout_s=0.2))
    seen: list[object] = []

    def bad(ev: object) -> None:
        seen.append(ev)
        raise RuntimeError("consumer bug")

    gw.set_event_handler(bad)
    try:
        await gw.reserve("c", [StreamRequest(0, MediaKind.RTP), StreamRequest(1, MediaKind.RTP)])
        await gw.configure("c", MediaPlan((rtp_plan(0), rtp_plan(1))))
        await eventually(lambda: len(seen) >= 2)
    finally:
        await gw.close()


@run_async
async def test_msrp_pass_through_plain_tcp(tmp_path: Path) -> None:
    gw, events = await started_gateway(make_config(tmp_path, 2))
    got: list[bytes] = []

    async def core_peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append(await r.readexactly(10))
        w.write(b"0123456789")

    srv = await asyncio.start_server(core_peer, HOST, 0)
    try:
        [res] = await gw.reserve("c", [StreamRequest(0, MediaKind.MSRP)])
        plan = StreamPlan(
            0,
            MediaKind.MSRP,
            StreamMode.PASS,
            core_remote=Endpoint(HOST, srv.sockets[0].getsockname()[1]),
        )
        await gw.configure("c", MediaPlan((plan,)))
        r, w = await asyncio.open_connection(HOST, res.access.port)
        w.write(b"\x16\x03\x01 e2e TLS bytes"[:10])  # e2e TLS: relayed untouched
        assert await asyncio.wait_for(r.readexactly(10), 3) == b"0123456789"
        assert got == [b"\x16\x03\x01 e2e TL"]
        assert not events.of(TlsEstablished)
        w.close()
        await events.wait_for(lambda e: isinstance(e, MsrpClosed))
    finally:
        srv.close()
        await gw.close()


@pytest.mark.parametrize("match", [True, False])
@run_async
async def test_tls_on_the_core_leg_too(tmp_path: Path, match: bool) -> None:
    """StreamPlan.core_tls: TLS terminated on both legs (TS 33.328 7.3.1, LI by policy)."""
    gw, events = await started_gateway(make_config(tmp_path, 2))
    ue, core = ue_certificate(tmp_path, "ue"), ue_certificate(tmp_path, "core")
    other = ue_certificate(tmp_path, "other")
    got: list[bytes] = []

    def client_ctx(cert: object) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(cert.cert_path, cert.key_path)  # type: ignore[attr-defined]
        return ctx

    try:
        [res] = await gw.reserve("c", [StreamRequest(0, MediaKind.MSRP)])
        plan = StreamPlan(
            0,
            MediaKind.MSRP,
            StreamMode.E2AE,
            ue_fingerprint=(ue.fingerprint,),
            core_tls=True,
            core_setup=SetupRole.PASSIVE,
            core_fingerprint=((core if match else other).fingerprint,),
        )
        await gw.configure("c", MediaPlan((plan,)))
        cr, cw = await asyncio.open_connection(HOST, res.core.port, ssl=client_ctx(core))
        if not match:
            ev = await events.wait_for(lambda e: isinstance(e, TlsFailed))
            assert ev == TlsFailed("c", 0, "fingerprint_mismatch", Side.CORE)
            return
        await events.wait_for(lambda e: isinstance(e, TlsEstablished) and e.side is Side.CORE)
        r, w = await asyncio.open_connection(HOST, res.access.port, ssl=client_ctx(ue))
        await events.wait_for(lambda e: isinstance(e, TlsEstablished) and e.side is Side.ACCESS)
        w.write(b"MSRP up")
        assert await asyncio.wait_for(cr.readexactly(7), 3) == b"MSRP up"
        cw.write(b"MSRP down")
        got.append(await asyncio.wait_for(r.readexactly(9), 3))
        assert got == [b"MSRP down"]
    finally:
        await gw.close()


def test_srtp_relay_under_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        gw = InProcessGateway(make_config(tmp_path, 2))
        await gw.start()
        ue, core = UdpPeer(), UdpPeer()
        try:
            [res] = await gw.reserve("c", [StreamRequest(0, MediaKind.RTP)])
            plan = rtp_plan(
                0, ue_remote=Endpoint(HOST, ue.addr[1]), core_remote=Endpoint(HOST, core.addr[1])
            )
            await gw.configure("c", MediaPlan((plan,)))
            assert plan.rx_key is not None
            out = pylibsrtp.Session(
                pylibsrtp.Policy(
                    key=plan.rx_key.key_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
                )
            )
            for seq in range(50):  # a burst: all read in few wake-ups
                ue.send(out.protect(rtp(seq)), (HOST, res.access.port))
            for seq in range(50):
                assert (await core.recv())[0] == rtp(seq)
        finally:
            ue.close()
            core.close()
            await gw.close()

    uvloop.run(asyncio.wait_for(main(), 10))


@run_async
async def test_release_during_reserve_leaks_nothing(tmp_path: Path) -> None:
    gw, _ = await started_gateway(make_config(tmp_path, 2))
    try:
        task = asyncio.create_task(
            gw.reserve("r", [StreamRequest(0, MediaKind.MSRP), StreamRequest(1, MediaKind.MSRP)])
        )
        await asyncio.sleep(0)  # reserve is now awaiting its first listener
        await gw.release("r")
        with pytest.raises(GatewayError, match="released during reserve"):
            await task
        assert gw.active_ports() == frozenset() and gw.contexts() == frozenset()
    finally:
        await gw.close()
