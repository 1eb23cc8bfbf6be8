"""SRTP<->RTP relay over loopback: a UE peer with libsrtp on one side, a plain RTP peer on the
other, the gateway in between (TS 33.328 7.2.1 step 9)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest

from pcscf_alg.agw import InProcessGateway, MediaTimeout, SrtpAuthFailure
from pcscf_alg.agw.srtp import SUITES
from pcscf_alg.errors import GatewayError
from pcscf_alg.mediaplan import (
    Endpoint,
    MediaKind,
    MediaPlan,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)

from .helpers import (
    HOST,
    Events,
    UdpPeer,
    eventually,
    make_config,
    rtcp_sr,
    rtp,
    run_async,
    srtp_key,
)
from .helpers import started_gateway as start_gw


def session(key: SrtpKey, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(
        pylibsrtp.Policy(key=key.key_salt, ssrc_type=kind, srtp_profile=SUITES[key.suite].profile)
    )


@dataclass
class Call:
    gw: InProcessGateway
    events: Events
    res: StreamReservation
    plan: StreamPlan
    ue: UdpPeer
    ue_rtcp: UdpPeer
    core: UdpPeer
    core_rtcp: UdpPeer
    k_rx: SrtpKey  # the UE's key (K11): the gateway unprotects with it
    k_tx: SrtpKey  # ours (K12): the gateway protects with it
    ue_out: pylibsrtp.Session
    ue_in: pylibsrtp.Session

    @property
    def access_rtp(self) -> tuple[str, int]:
        return (HOST, self.res.access.port)

    @property
    def access_rtcp(self) -> tuple[str, int]:
        return (HOST, self.res.access.rtcp_port or self.res.access.port)

    @property
    def core_rtp(self) -> tuple[str, int]:
        return (HOST, self.res.core.port)

    @property
    def core_rtcp_addr(self) -> tuple[str, int]:
        return (HOST, self.res.core.rtcp_port or self.res.core.port)

    def stats(self) -> Any:
        return self.gw.stats("c1")[0]


@contextlib.asynccontextmanager
async def rtp_call(
    tmp_path: Path,
    *,
    mode: StreamMode = StreamMode.E2AE,
    suite: str = "AES_CM_128_HMAC_SHA1_80",
    access_mux: bool = False,
    core_mux: bool = False,
    k_rx: SrtpKey | None = None,
    **cfg: Any,
) -> AsyncIterator[Call]:
    gw, events = await start_gw(make_config(tmp_path, 0, **cfg))
    peers = [UdpPeer() for _ in range(4)]
    ue, ue_rtcp, core, core_rtcp = peers
    try:
        [res] = await gw.reserve(
            "c1",
            [StreamRequest(0, MediaKind.RTP, access_rtcp_mux=access_mux, core_rtcp_mux=core_mux)],
        )
        k_rx = k_rx or srtp_key(suite)
        k_tx = srtp_key(suite)
        e2ae = mode is StreamMode.E2AE
        plan = StreamPlan(
            0,
            MediaKind.RTP,
            mode,
            ue_remote=Endpoint(HOST, ue.addr[1], None if access_mux else ue_rtcp.addr[1]),
            core_remote=Endpoint(HOST, core.addr[1], None if core_mux else core_rtcp.addr[1]),
            access_rtcp_mux=access_mux,
            core_rtcp_mux=core_mux,
            rx_key=k_rx if e2ae else None,
            tx_key=k_tx if e2ae else None,
        )
        await gw.configure("c1", MediaPlan((plan,)))
        yield Call(
            gw,
            events,
            res,
            plan,
            ue,
            ue_rtcp,
            core,
            core_rtcp,
            k_rx,
            k_tx,
            session(k_rx, True),
            session(k_tx, False),
        )
    finally:
        await gw.close()
        for p in peers:
            p.close()


@pytest.mark.parametrize("suite", sorted(SUITES))
@run_async
async def test_srtp_to_rtp_and_back(tmp_path: Path, suite: str) -> None:
    async with rtp_call(tmp_path, suite=suite) as c:
        for seq in range(1, 6):
            plain = rtp(seq)
            c.ue.send(c.ue_out.protect(plain), c.access_rtp)
            got, src = await c.core.recv()
            assert got == plain  # header and payload byte-identical
            assert src == c.core_rtp
        for seq in range(100, 105):
            plain = rtp(seq, ssrc=0x55667788)
            c.core.send(plain, c.core_rtp)
            got, src = await c.ue.recv()
            assert got != plain and src == c.access_rtp
            assert c.ue_in.unprotect(got) == plain
        st = c.stats()
        assert (st.to_core_packets, st.to_ue_packets, st.auth_failures) == (5, 5, 0)


@run_async
async def test_srtcp_both_ways(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        sr = rtcp_sr()
        c.ue_rtcp.send(c.ue_out.protect_rtcp(sr), c.access_rtcp)
        got, src = await c.core_rtcp.recv()
        assert got == sr and src == (HOST, c.res.core.port + 1)
        sr2 = rtcp_sr(0x55667788, 7)
        c.core_rtcp.send(sr2, c.core_rtcp_addr)
        got, src = await c.ue_rtcp.recv()
        assert src == (HOST, c.res.access.port + 1)
        assert c.ue_in.unprotect_rtcp(got) == sr2


@run_async
async def test_tampered_and_replayed_dropped_and_counted(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, media_timeout_s=0.4) as c:
        good = c.ue_out.protect(rtp(1))
        c.ue.send(good, c.access_rtp)
        assert (await c.core.recv())[0] == rtp(1)
        c.ue.send(good, c.access_rtp)  # replay
        bad = bytearray(c.ue_out.protect(rtp(2)))
        bad[20] ^= 0x01  # flip a payload bit
        c.ue.send(bytes(bad), c.access_rtp)
        srtcp = bytearray(c.ue_out.protect_rtcp(rtcp_sr()))
        srtcp[-1] ^= 0x80  # break the SRTCP tag
        c.ue_rtcp.send(bytes(srtcp), c.access_rtcp)
        assert await c.core.nothing()
        assert await c.core_rtcp.nothing(0.05)
        assert c.stats().auth_failures == 3
        assert c.stats().to_core_packets == 1
        ev = await c.events.wait_for(lambda e: isinstance(e, SrtpAuthFailure))
        assert isinstance(ev, SrtpAuthFailure) and ev.count == 3 and ev.index == 0


@run_async
async def test_rtcp_mux_on_access_only(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, access_mux=True) as c:
        assert c.res.access.rtcp_port is None and c.res.core.rtcp_port == c.res.core.port + 1
        c.ue.send(c.ue_out.protect(rtp(1)), c.access_rtp)
        c.ue.send(c.ue_out.protect_rtcp(rtcp_sr()), c.access_rtp)  # same port: muxed
        assert (await c.core.recv())[0] == rtp(1)
        got, src = await c.core_rtcp.recv()  # demuxed to the core RTCP port pair
        assert got == rtcp_sr() and src == (HOST, c.res.core.port + 1)
        c.core_rtcp.send(rtcp_sr(9), c.core_rtcp_addr)
        c.core.send(rtp(50), c.core_rtp)
        got1, src1 = await c.ue.recv()
        got2, src2 = await c.ue.recv()
        assert src1 == src2 == c.access_rtp  # both arrive muxed on the UE's one port
        got = {len(got1): got1, len(got2): got2}
        assert c.ue_in.unprotect_rtcp(got[len(rtcp_sr()) + 14]) == rtcp_sr(9)
        assert c.ue_in.unprotect(got[len(rtp(50)) + 10]) == rtp(50)
        assert await c.ue_rtcp.nothing(0.05)


@run_async
async def test_rtcp_mux_on_core_only(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, core_mux=True) as c:
        c.ue_rtcp.send(c.ue_out.protect_rtcp(rtcp_sr()), c.access_rtcp)
        got, src = await c.core.recv()  # on the core peer's single port
        assert got == rtcp_sr() and src == c.core_rtp
        c.core.send(rtcp_sr(3), c.core_rtp)  # muxed from the core
        got, src = await c.ue_rtcp.recv()  # separate RTCP port towards the UE
        assert src == (HOST, c.res.access.port + 1)
        assert c.ue_in.unprotect_rtcp(got) == rtcp_sr(3)


@run_async
async def test_rekey_same_key_keeps_context(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        # Reach the sequence-number wrap; after it the ROC is 1 on both ends.
        for seq in (65534, 65535):
            c.ue.send(c.ue_out.protect(rtp(seq)), c.access_rtp)
            await c.core.recv()
            c.core.send(rtp(seq, ssrc=9), c.core_rtp)
            c.ue_in.unprotect((await c.ue.recv())[0])
        old = c.ue_out.protect(rtp(65536))  # seq 0, ROC 1
        c.ue.send(old, c.access_rtp)
        assert (await c.core.recv())[0] == rtp(65536)
        # Re-offer with the same keys (RFC 4568 §7.1.4): the context must carry over.
        await c.gw.update_keys("c1", 0, replace(c.k_rx, tag=2), c.k_tx)
        await c.gw.configure("c1", MediaPlan((c.plan,)))
        c.ue.send(old, c.access_rtp)  # the replay window survived
        assert await c.core.nothing(0.2)
        c.ue.send(c.ue_out.protect(rtp(65537)), c.access_rtp)  # ROC 1 kept on receive
        assert (await c.core.recv())[0] == rtp(65537)
        c.core.send(rtp(65536, ssrc=9), c.core_rtp)  # ROC 1 kept on send: the UE can decrypt
        assert c.ue_in.unprotect((await c.ue.recv())[0]) == rtp(65536, ssrc=9)
        assert c.stats().auth_failures == 1


@run_async
async def test_rekey_new_key_fresh_context(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        for seq in (65535, 65536):
            c.ue.send(c.ue_out.protect(rtp(seq)), c.access_rtp)
            await c.core.recv()
        new_rx, new_tx = srtp_key(), srtp_key()
        await c.gw.update_keys("c1", 0, new_rx, new_tx)
        ue_out, ue_in = session(new_rx, True), session(new_tx, False)
        c.ue.send(ue_out.protect(rtp(10)), c.access_rtp)  # ROC 0, new key: accepted
        assert (await c.core.recv())[0] == rtp(10)
        c.ue.send(c.ue_out.protect(rtp(65537)), c.access_rtp)  # old key: refused
        assert await c.core.nothing(0.2)
        c.core.send(rtp(5, ssrc=9), c.core_rtp)
        assert ue_in.unprotect((await c.ue.recv())[0]) == rtp(5, ssrc=9)
        # Only one direction re-keyed: the other keeps its context.
        await c.gw.update_keys("c1", 0, None, srtp_key())
        c.ue.send(ue_out.protect(rtp(11)), c.access_rtp)
        assert (await c.core.recv())[0] == rtp(11)


@run_async
async def test_mki_checked_and_stripped(tmp_path: Path) -> None:
    mki = b"\x00\x00\x00\x01"
    k_rx = replace(srtp_key(), mki=mki)
    async with rtp_call(tmp_path, k_rx=k_rx) as c:

        def with_mki(pkt: bytes, tag: int, value: bytes = mki) -> bytes:
            return pkt[:-tag] + value + pkt[-tag:]  # RFC 3711 §3.1: MKI before the tag

        c.ue.send(with_mki(c.ue_out.protect(rtp(1)), 10), c.access_rtp)
        assert (await c.core.recv())[0] == rtp(1)
        c.ue_rtcp.send(with_mki(c.ue_out.protect_rtcp(rtcp_sr()), 10), c.access_rtcp)
        assert (await c.core_rtcp.recv())[0] == rtcp_sr()
        c.ue.send(with_mki(c.ue_out.protect(rtp(2)), 10, b"\x00\x00\x00\x02"), c.access_rtp)
        c.ue.send(c.ue_out.protect(rtp(3)), c.access_rtp)  # MKI missing
        assert await c.core.nothing()
        # Without the MKI the bytes where it belongs do not match either.
        assert c.stats().mki_mismatches == 2
        assert c.stats().auth_failures == 2
        # Towards the UE our packets carry no MKI.
        c.core.send(rtp(7), c.core_rtp)
        assert c.ue_in.unprotect((await c.ue.recv())[0]) == rtp(7)


@run_async
async def test_pass_through_untouched_and_latching(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, mode=StreamMode.PASS) as c:
        blob = c.ue_out.protect(rtp(1))  # e2e SRTP: the gateway cannot and must not touch it
        moved = UdpPeer()  # the UE behind a NAT: it sends from another address than its SDP
        try:
            moved.send(blob, c.access_rtp)
            assert (await c.core.recv())[0] == blob
            c.core.send(b"\x80\x00opaque-srtp", c.core_rtp)
            got, src = await moved.recv()
            assert got == b"\x80\x00opaque-srtp" and src == c.access_rtp
            assert await c.ue.nothing(0.05)
        finally:
            moved.close()


@run_async
async def test_latching_needs_authentication(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        attacker, nat = UdpPeer(), UdpPeer()
        try:
            attacker.send(rtp(1), c.access_rtp)  # not SRTP: dropped, no latch
            nat.send(c.ue_out.protect(rtp(2)), c.access_rtp)  # authenticated: latches
            assert (await c.core.recv())[0] == rtp(2)
            forged = bytearray(c.ue_out.protect(rtp(3)))
            forged[-1] ^= 0xFF  # broken tag: must not move the latch
            attacker.send(bytes(forged), c.access_rtp)
            await c.core.nothing(0.1)
            c.core.send(rtp(9), c.core_rtp)
            got, _ = await nat.recv()
            assert c.ue_in.unprotect(got) == rtp(9)
            assert await attacker.nothing(0.05) and await c.ue.nothing(0.05)
        finally:
            attacker.close()
            nat.close()


@run_async
async def test_through_connection_gates(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        seq = iter(range(1, 100))

        async def up() -> bool:
            pkt = rtp(next(seq))
            c.ue.send(c.ue_out.protect(pkt), c.access_rtp)
            return not await c.core.nothing(0.15)

        async def down() -> bool:
            c.core.send(rtp(next(seq), ssrc=5), c.core_rtp)
            return not await c.ue.nothing(0.15)

        for mode, expect in (
            (ThroughConnection.INACTIVE, (False, False)),
            (ThroughConnection.SENDONLY, (False, True)),
            (ThroughConnection.RECVONLY, (True, False)),
            (ThroughConnection.SENDRECV, (True, True)),
        ):
            await c.gw.change_through_connection("c1", 0, mode)
            assert (await up(), await down()) == expect, mode
        assert c.stats().gated == 4
        await c.gw.change_through_connection("c1", 0, ThroughConnection.INACTIVE)
        c.ue_rtcp.send(c.ue_out.protect_rtcp(rtcp_sr()), c.access_rtcp)  # RTCP still flows
        assert (await c.core_rtcp.recv())[0] == rtcp_sr()


@run_async
async def test_media_timeout_once(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, media_timeout_s=0.3) as c:
        ev = await c.events.wait_for(lambda e: isinstance(e, MediaTimeout))
        assert ev == MediaTimeout("c1", 0)
        await asyncio.sleep(0.5)
        assert len(c.events.of(MediaTimeout)) == 1
        # Traffic resets it; silence again reports again.
        c.ue.send(c.ue_out.protect(rtp(1)), c.access_rtp)
        await c.core.recv()
        await eventually(lambda: len(c.events.of(MediaTimeout)) == 2)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"suite": "F8_128_HMAC_SHA1_80"}, "F8_128_HMAC_SHA1_80"),
        ({"suite": "AES_256_CM_HMAC_SHA1_80"}, "AES_256_CM_HMAC_SHA1_80"),
        ({"kdr": 10}, "KDR"),
        ({"unencrypted_srtp": True}, "UNENCRYPTED_SRTP"),
        ({"unencrypted_srtcp": True}, "UNENCRYPTED_SRTCP"),
        ({"unauthenticated_srtp": True}, "UNAUTHENTICATED_SRTP"),
        ({"key_salt": b"short"}, "key||salt"),
        ({"lifetime": 2**49}, "lifetime"),
    ],
)
@run_async
async def test_unsupported_parameters_refused_by_name(
    tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    async with rtp_call(tmp_path) as c:
        bad = replace(c.plan, rx_key=replace(c.k_rx, **change))
        with pytest.raises(GatewayError, match=needle):
            await c.gw.configure("c1", MediaPlan((bad,)))
        # The refused plan changed nothing.
        c.ue.send(c.ue_out.protect(rtp(1)), c.access_rtp)
        assert (await c.core.recv())[0] == rtp(1)


@run_async
async def test_mki_on_our_key_refused(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        bad = replace(c.plan, tx_key=replace(c.k_tx, mki=b"\x01"))
        with pytest.raises(GatewayError, match="MKI"):
            await c.gw.configure("c1", MediaPlan((bad,)))


@run_async
async def test_short_lifetime_enforced(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, k_rx=replace(srtp_key(), lifetime=3)) as c:
        for seq in range(1, 6):
            c.ue.send(c.ue_out.protect(rtp(seq)), c.access_rtp)
        for seq in range(1, 4):
            assert (await c.core.recv())[0] == rtp(seq)
        assert await c.core.nothing(0.2)
        assert c.stats().dropped == 2
