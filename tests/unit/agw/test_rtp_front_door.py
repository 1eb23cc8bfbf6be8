"""The RTP gateway's front door (issue 11): who may send on an anchored stream, and how many
streams one call may hold. Real UDP sockets on loopback; 127.0.0.2 plays a sender on another IP.

- Core side, strict source (IP and port): only the core's signalled RTP/RTCP addresses reach
  the UE; nothing before the core's address is known; `strict_source: false` relays anything.
- UE side: in e2ae only authenticated, fresh SRTP/SRTCP latches; in pass-through only the UE's
  signalled IP may latch, and after that only the latched address is relayed.
- `max_streams_per_call`: reserve over the cap raises and reserves nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.agw import MediaTimeout
from pcscf_alg.agw.config import AgwConfig, parse_agw_config
from pcscf_alg.agw.rtp_relay import _ip_text
from pcscf_alg.errors import ConfigError, GatewayError
from pcscf_alg.mediaplan import Endpoint, MediaKind, MediaPlan, StreamMode, StreamRequest

from .helpers import (
    HOST,
    UdpPeer,
    eventually,
    make_config,
    rtcp_sr,
    rtp,
    run_async,
    started_gateway,
)
from .test_rtp_relay import rtp_call

OTHER_IP = "127.0.0.2"  # another address of the loopback network: a sender on a foreign IP


# ------------------------------------------------------------------ core side: strict source


@run_async
async def test_core_side_injection_dropped_and_counted(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        same_ip, other_ip = UdpPeer(), UdpPeer(OTHER_IP)
        try:
            for seq in range(1, 4):
                evil = rtp(seq, payload=b"injected" * 5, ssrc=0xBAD)
                same_ip.send(evil, c.core_rtp)
                other_ip.send(evil, c.core_rtp)
            same_ip.send(rtcp_sr(0xBAD), c.core_rtcp_addr)
            other_ip.send(rtcp_sr(0xBAD), c.core_rtcp_addr)
            # IP *and* port: the core's own RTCP socket may not send on the RTP port, nor its
            # RTP socket on the RTCP port.
            c.core_rtcp.send(rtp(20, ssrc=0xBAD), c.core_rtp)
            c.core.send(rtcp_sr(0xBAD), c.core_rtcp_addr)
            await eventually(lambda: c.stats().rejected_source == 10)
            # The legitimate core's packets get through, and are the first the UE sees.
            legit = rtp(100, payload=b"the core" * 5, ssrc=0x600D)
            c.core.send(legit, c.core_rtp)
            got, _ = await c.ue.recv()
            assert c.ue_in.unprotect(got) == legit
            c.core_rtcp.send(rtcp_sr(0x600D, 7), c.core_rtcp_addr)
            got, _ = await c.ue_rtcp.recv()
            assert c.ue_in.unprotect_rtcp(got) == rtcp_sr(0x600D, 7)
            assert await c.ue.nothing(0.1) and await c.ue_rtcp.nothing(0.05)
            st = c.stats()
            assert (st.to_ue_packets, st.rejected_source, st.dropped) == (2, 10, 0)
        finally:
            same_ip.close()
            other_ip.close()


@run_async
async def test_core_rtcp_mux_accepts_only_the_core_rtp_address(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, core_mux=True) as c:
        attacker = UdpPeer(OTHER_IP)
        try:
            attacker.send(rtcp_sr(0xBAD), c.core_rtp)
            c.core_rtcp.send(rtcp_sr(0xBAD), c.core_rtp)  # not the core's (muxed) address
            attacker.send(rtp(1, ssrc=0xBAD), c.core_rtp)
            await eventually(lambda: c.stats().rejected_source == 3)
            c.core.send(rtcp_sr(0x600D, 3), c.core_rtp)  # muxed RTCP from the core: relayed
            got, _ = await c.ue_rtcp.recv()
            assert c.ue_in.unprotect_rtcp(got) == rtcp_sr(0x600D, 3)
            assert await c.ue.nothing(0.1)
        finally:
            attacker.close()


@run_async
async def test_nothing_from_the_core_side_before_its_address_is_known(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        # An originating call whose answer is not in yet: no core address in the plan.
        await c.gw.configure("c1", MediaPlan((replace(c.plan, core_remote=None),)))
        c.core.send(rtp(1), c.core_rtp)
        c.core_rtcp.send(rtcp_sr(), c.core_rtcp_addr)
        await eventually(lambda: c.stats().rejected_source == 2)
        assert await c.ue.nothing(0.1) and await c.ue_rtcp.nothing(0.05)
        # The answer names the core: from then on its packets flow.
        await c.gw.configure("c1", MediaPlan((c.plan,)))
        c.core.send(rtp(2), c.core_rtp)
        assert c.ue_in.unprotect((await c.ue.recv())[0]) == rtp(2)


@run_async
async def test_strict_source_off_relays_from_anyone(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, strict_source=False) as c:
        attacker = UdpPeer(OTHER_IP)
        try:
            evil = rtp(1, payload=b"injected" * 5, ssrc=0xBAD)
            attacker.send(evil, c.core_rtp)
            # What issue 11 reproduced: under K12, indistinguishable from the core's media.
            assert c.ue_in.unprotect((await c.ue.recv())[0]) == evil
            assert c.stats().rejected_source == 0
        finally:
            attacker.close()


@run_async
async def test_rejected_packets_do_not_keep_a_dead_call_alive(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, media_timeout_s=0.3) as c:
        attacker = UdpPeer(OTHER_IP)
        try:

            async def spray() -> None:
                seq = 0
                while True:
                    seq += 1
                    attacker.send(rtp(seq, ssrc=0xBAD), c.core_rtp)
                    await asyncio.sleep(0.03)

            task = asyncio.create_task(spray())
            try:
                await c.events.wait_for(lambda e: isinstance(e, MediaTimeout), timeout=5)
            finally:
                task.cancel()
            assert c.stats().rejected_source > 0 and c.stats().to_ue_packets == 0
        finally:
            attacker.close()


# ------------------------------------------------------------------ UE side: latching


@run_async
async def test_e2ae_replayed_packets_from_elsewhere_do_not_latch(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        attacker = UdpPeer(OTHER_IP)
        try:
            # The attacker captured an authentic SRTP and SRTCP packet of the UE and replays
            # them from its own address: replay protection drops them before any latching.
            pkt = c.ue_out.protect(rtp(1))
            ctl = c.ue_out.protect_rtcp(rtcp_sr())
            c.ue.send(pkt, c.access_rtp)
            c.ue_rtcp.send(ctl, c.access_rtcp)
            await c.core.recv()
            await c.core_rtcp.recv()
            attacker.send(pkt, c.access_rtp)
            attacker.send(ctl, c.access_rtcp)
            await eventually(lambda: c.stats().auth_failures == 2)
            c.core.send(rtp(5), c.core_rtp)
            c.core_rtcp.send(rtcp_sr(count=2), c.core_rtcp_addr)
            assert c.ue_in.unprotect((await c.ue.recv())[0]) == rtp(5)
            assert c.ue_in.unprotect_rtcp((await c.ue_rtcp.recv())[0]) == rtcp_sr(count=2)
            assert await attacker.nothing(0.1)
            assert await c.core.nothing(0.05)
        finally:
            attacker.close()


@run_async
async def test_pass_through_latch_cannot_be_stolen(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, mode=StreamMode.PASS) as c:
        thief, moved, neighbour = UdpPeer(OTHER_IP), UdpPeer(), UdpPeer()
        try:
            # First to send, from a foreign IP: neither latched nor relayed.
            thief.send(b"\x80\x00steal-rtp", c.access_rtp)
            thief.send(rtcp_sr(0xBAD), c.access_rtcp)
            await eventually(lambda: c.stats().rejected_source == 2)
            assert await c.core.nothing(0.1) and await c.core_rtcp.nothing(0.05)
            c.core.send(b"\x80\x00for-the-ue-1", c.core_rtp)
            c.core_rtcp.send(rtcp_sr(0x600D), c.core_rtcp_addr)
            assert (await c.ue.recv())[0] == b"\x80\x00for-the-ue-1"  # the SDP address
            assert (await c.ue_rtcp.recv())[0] == rtcp_sr(0x600D)
            # The UE itself, from its signalled IP but another port (NAT), latches.
            moved.send(b"\x80\x00from-the-ue", c.access_rtp)
            assert (await c.core.recv())[0] == b"\x80\x00from-the-ue"
            # Once latched, another sender on the UE's own IP can neither speak through the
            # stream nor move it.
            neighbour.send(b"\x80\x00injected", c.access_rtp)
            await eventually(lambda: c.stats().rejected_source == 3)
            assert await c.core.nothing(0.1)
            c.core.send(b"\x80\x00for-the-ue-2", c.core_rtp)
            assert (await moved.recv())[0] == b"\x80\x00for-the-ue-2"
            for p in (thief, neighbour, c.ue):
                assert await p.nothing(0.05)
            moved.send(b"\x80\x00from-the-ue-2", c.access_rtp)
            assert (await c.core.recv())[0] == b"\x80\x00from-the-ue-2"
        finally:
            for p in (thief, moved, neighbour):
                p.close()


@run_async
async def test_pass_through_without_strict_source_latches_on_anyone(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, mode=StreamMode.PASS, strict_source=False) as c:
        thief = UdpPeer(OTHER_IP)
        try:
            thief.send(b"\x80\x00steal", c.access_rtp)
            assert (await c.core.recv())[0] == b"\x80\x00steal"
            c.core.send(b"\x80\x00for-the-ue", c.core_rtp)
            assert (await thief.recv())[0] == b"\x80\x00for-the-ue"  # the old behaviour
        finally:
            thief.close()


@run_async
async def test_a_new_ue_address_unlatches(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, mode=StreamMode.PASS) as c:
        handed_over = UdpPeer()
        try:
            c.ue.send(b"\x80\x00a", c.access_rtp)
            assert (await c.core.recv())[0] == b"\x80\x00a"
            # re-INVITE after a handover: the UE signals a new address.
            port = handed_over.addr[1]
            new = replace(c.plan, ue_remote=Endpoint(HOST, port, port + 1))
            await c.gw.configure("c1", MediaPlan((new,)))
            c.core.send(b"\x80\x00b", c.core_rtp)
            assert (await handed_over.recv())[0] == b"\x80\x00b"
            assert await c.ue.nothing(0.05)
            # The same plan again (a fork's answer, a 2xx after a 18x) keeps the latch.
            handed_over.send(b"\x80\x00c", c.access_rtp)
            assert (await c.core.recv())[0] == b"\x80\x00c"
            await c.gw.configure("c1", MediaPlan((new,)))
            c.core.send(b"\x80\x00d", c.core_rtp)
            assert (await handed_over.recv())[0] == b"\x80\x00d"
        finally:
            handed_over.close()


@run_async
async def test_hold_with_an_unspecified_address_keeps_the_latch(tmp_path: Path) -> None:
    async with rtp_call(tmp_path, mode=StreamMode.PASS) as c:
        moved = UdpPeer()
        try:
            moved.send(b"\x80\x00a", c.access_rtp)
            assert (await c.core.recv())[0] == b"\x80\x00a"
            hold = replace(c.plan, ue_remote=Endpoint("0.0.0.0", 9, 10))
            await c.gw.configure("c1", MediaPlan((hold,)))
            c.core.send(b"\x80\x00b", c.core_rtp)
            assert (await moved.recv())[0] == b"\x80\x00b"
            moved.send(b"\x80\x00c", c.access_rtp)  # still the UE's IP and latched port
            assert (await c.core.recv())[0] == b"\x80\x00c"
        finally:
            moved.close()


def test_signalled_hosts_compare_as_recvfrom_spells_them() -> None:
    assert _ip_text("2001:DB8:0:0::1") == "2001:db8::1"
    assert _ip_text("127.0.0.1") == "127.0.0.1"
    assert _ip_text("media.example.net") == "media.example.net"  # never a source address


# ------------------------------------------------------------------ streams per call


@run_async
async def test_reserve_over_the_cap_raises_and_reserves_nothing(tmp_path: Path) -> None:
    gw, _ = await started_gateway(make_config(tmp_path, 6, max_streams_per_call=4))
    try:
        rtp5 = [StreamRequest(i, MediaKind.RTP) for i in range(5)]
        with pytest.raises(GatewayError, match=r"5 > 4 \(agw\.max_streams_per_call\)"):
            await gw.reserve("big", rtp5)
        assert gw.active_ports() == frozenset() and gw.contexts() == frozenset()
        # MSRP legs count as well.
        mixed = [StreamRequest(i, MediaKind.MSRP if i % 2 else MediaKind.RTP) for i in range(5)]
        with pytest.raises(GatewayError, match="max_streams_per_call"):
            await gw.reserve("big", mixed)
        assert gw.active_ports() == frozenset() and gw.contexts() == frozenset()
        # A call at the cap is fine; a re-INVITE adding more is refused and keeps what it had.
        await gw.reserve("ok", rtp5[:3])
        held = gw.active_ports()
        assert len(held) == 3 * 4
        with pytest.raises(GatewayError, match="max_streams_per_call"):
            await gw.reserve("ok", [StreamRequest(7, MediaKind.RTP), *rtp5[3:]])
        assert gw.active_ports() == held and gw.contexts() == {"ok"}
        await gw.reserve("ok", rtp5[:4])  # same indices again + one new: 4, at the cap
        assert len(gw.active_ports()) == 4 * 4
        await gw.release("ok")
        assert gw.active_ports() == frozenset()
    finally:
        await gw.close()


@run_async
async def test_media_totals_cover_released_streams(tmp_path: Path) -> None:
    async with rtp_call(tmp_path) as c:
        attacker = UdpPeer(OTHER_IP)
        try:
            attacker.send(rtp(1), c.core_rtp)
            c.core.send(rtp(2), c.core_rtp)
            await c.ue.recv()
            await eventually(lambda: c.gw.media_totals().get("rejected_source") == 1)
            await c.gw.release("c1")
            totals = c.gw.media_totals()
            assert totals["rejected_source"] == 1 and totals["to_ue_packets"] == 1
        finally:
            attacker.close()


# ------------------------------------------------------------------ configuration


def test_front_door_defaults() -> None:
    cfg = parse_agw_config(None, "pcscf.yaml")
    assert cfg.strict_source is True and cfg.max_streams_per_call == 16
    assert cfg == AgwConfig()
    cfg = parse_agw_config({"strict_source": False, "max_streams_per_call": 6}, "f.yaml")
    assert cfg.strict_source is False and cfg.max_streams_per_call == 6


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [
        ({"strict_source": "yes"}, "agw.strict_source", "true or false"),
        ({"strict_source": 1}, "agw.strict_source", "true or false"),
        ({"strict_source": None}, "agw.strict_source", "true or false"),
        ({"max_streams_per_call": 0}, "agw.max_streams_per_call", "between 1 and 1024"),
        ({"max_streams_per_call": -3}, "agw.max_streams_per_call", "between 1 and 1024"),
        ({"max_streams_per_call": 1025}, "agw.max_streams_per_call", "between 1 and 1024"),
        ({"max_streams_per_call": True}, "agw.max_streams_per_call", "integer"),
        ({"max_streams_per_call": "16"}, "agw.max_streams_per_call", "integer"),
        ({"max_streams_per_call": 2.5}, "agw.max_streams_per_call", "integer"),
    ],
)
def test_front_door_config_errors_name_file_key_and_reason(
    section: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_agw_config(section, "pcscf.yaml")
    assert ei.value.file == "pcscf.yaml" and ei.value.key == key
    assert reason in ei.value.reason
    assert str(ei.value).startswith(f"pcscf.yaml: {key}: ")
