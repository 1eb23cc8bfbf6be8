"""The rtpengine backend's pure parts (issue 14): bencode, the ng requests and the SDP we hand
rtpengine, the e2ae engine taking the gateway's own key, the `agw.backend` config keys; and the
gateway against a real rtpengine (started here, on loopback, stopped by PID)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcscf_alg.agw import bencode
from pcscf_alg.agw.config import AgwConfig, parse_agw_config
from pcscf_alg.agw.rtpengine import (
    CORE_TAG,
    UE_TAG,
    RtpengineGateway,
    _Context,
    _Leg,
    _Stream,
    answer_request,
    delete_request,
    offer_request,
    parse_reply_sdp,
    party_sdp,
)
from pcscf_alg.e2ae import E2aeFlags, apply_answer, apply_offer, plan_offer
from pcscf_alg.errors import ConfigError, GatewayError
from pcscf_alg.mediaplan import (
    Direction,
    Endpoint,
    MediaKind,
    MediaPlan,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
)
from pcscf_alg.policy import strict_policy
from pcscf_alg.sdp.crypto import parse_crypto
from tests.rtpengine_proc import Rtpengine, running_rtpengine
from tests.srtp_ref import RefSrtp

from ..sdp.helpers import counter_rng, reserve
from ..test_e2ae_engine import CORE_ANSWER, CORE_OFFER, UE_OFFER, cryptos, ue_answer

ALL = E2aeFlags(True, True, True, True)
SUITE = "AES_CM_128_HMAC_SHA1_80"
GW_KEY = SrtpKey(SUITE, bytes(range(100, 130)), tag=1)

# -- bencode -----------------------------------------------------------------------------------


def test_bencode_known_encodings() -> None:
    assert bencode.encode({"command": "ping"}) == b"d7:command4:pinge"
    assert bencode.encode(["a", 0, -3, b"\x00"]) == b"l1:ai0ei-3e1:\x00e"
    # keys sorted as raw strings (BEP 3), whatever order they were given in
    assert bencode.encode({"b": 1, "a": {"z": [], "y": ""}}) == b"d1:ad1:y0:1:zlee1:bi1ee"
    assert bencode.decode(b"d6:result4:ponge") == {b"result": b"pong"}


values = st.recursive(
    st.binary(max_size=20) | st.integers(-(2**62), 2**62),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(values)
def test_bencode_round_trip(value: bencode.Value) -> None:
    def encodable(v: bencode.Value) -> bencode.Encodable:
        if isinstance(v, dict):
            return {k.decode("latin-1"): encodable(x) for k, x in v.items()}
        if isinstance(v, list):
            return [encodable(x) for x in v]
        return v

    def as_bytes_keys(v: bencode.Value) -> bencode.Value:
        if isinstance(v, dict):
            return {k.decode("latin-1").encode(): as_bytes_keys(x) for k, x in v.items()}
        if isinstance(v, list):
            return [as_bytes_keys(x) for x in v]
        return v

    assert bencode.decode(bencode.encode(encodable(value))) == as_bytes_keys(value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i12",  # unterminated integer
        b"i-0e",  # negative zero
        b"i03e",  # leading zero
        b"ie",
        b"i1x2e",
        b"i" + b"9" * 30 + b"e",  # beyond any int64: refused before int() sees it
        b"5:abc",  # string runs past the end
        b"03:abc",
        b"-1:a",
        b"99999999999999999999:a",
        b"l1:a",  # unterminated list
        b"d1:ae",  # key without value
        b"di1e1:ae",  # integer key
        b"d1:a1:be1:c",  # trailing data
        b"x",
        b"l" * 100 + b"e" * 100,  # nested too deep
    ],
)
def test_bencode_refuses_malformed_input(data: bytes) -> None:
    with pytest.raises(bencode.BencodeError):
        bencode.decode(data)


def test_bencode_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(bencode.BencodeError):
        bencode.encode(True)
    with pytest.raises(bencode.BencodeError):
        bencode.encode(1.5)  # type: ignore[arg-type]


# -- the ng requests and the SDP of each party --------------------------------------------------


def _ctx() -> _Context:
    ctx = _Context("pcscf-x-c1", version=3)
    e2ae = _Stream(0, SUITE)
    e2ae.ue = _Leg(Endpoint("198.51.100.10", 49170, 49171), False, f"1 {SUITE} inline:QUJD")
    e2ae.core = _Leg(Endpoint("192.0.2.99", 20000, 20005), False)
    plain = _Stream(1, None)
    plain.ue = _Leg(Endpoint("198.51.100.10", 49180, None), True)
    plain.core = _Leg(None, True)  # not known yet: the placeholder
    gone = _Stream(2, None, rejected=True)
    ctx.streams = {0: e2ae, 1: plain, 2: gone}
    return ctx


def test_party_sdp_of_the_ue_and_the_core() -> None:
    ctx = _ctx()
    ue = party_sdp(ctx, UE_TAG, "127.0.0.1").split("\r\n")
    assert ue[:4] == ["v=0", ue[1], "s=pcscf-alg", "t=0 0"] and " 3 IN IP4 127.0.0.1" in ue[1]
    i0, i1, i2 = (ue.index(x) for x in ue if x.startswith("m="))
    # e2ae: SRTP with the UE's key towards the UE, its own address
    assert ue[i0:i1] == [
        "m=audio 49170 RTP/SAVP 0 8 96",
        "c=IN IP4 198.51.100.10",
        f"a=crypto:1 {SUITE} inline:QUJD",
        "a=sendrecv",
    ]
    assert ue[i1:i2] == [
        "m=audio 49180 RTP/AVP 0 8 96",
        "c=IN IP4 198.51.100.10",
        "a=rtcp-mux",
        "a=sendrecv",
    ]
    assert ue[i2:] == ["m=audio 0 RTP/AVP 0 8 96", "c=IN IP4 127.0.0.1", ""]
    core = party_sdp(ctx, CORE_TAG, "127.0.0.1").split("\r\n")
    j0, j1, _ = (core.index(x) for x in core if x.startswith("m="))
    # the core always plain RTP, a=rtcp when RTCP is not on port+1
    assert core[j0:j1] == [
        "m=audio 20000 RTP/AVP 0 8 96",
        "c=IN IP4 192.0.2.99",
        "a=rtcp:20005",
        "a=sendrecv",
    ]
    # a placeholder: rtpengine's own host, the discard port
    assert core[j1 : j1 + 3] == ["m=audio 9 RTP/AVP 0 8 96", "c=IN IP4 127.0.0.1", "a=rtcp-mux"]


def test_party_sdp_placeholder_key_is_of_the_suite() -> None:
    ctx = _Context("c")
    ctx.streams = {0: _Stream(0, "AEAD_AES_256_GCM")}
    text = party_sdp(ctx, UE_TAG, "::1")
    assert "c=IN IP6 ::1" in text and "m=audio 9 RTP/SAVP" in text
    (line,) = [x for x in text.split("\r\n") if x.startswith("a=crypto:")]
    c = parse_crypto(line[9:])
    assert (c.tag, c.suite, len(c.key.key_salt)) == (1, "AEAD_AES_256_GCM", 44)


def test_ng_requests() -> None:
    assert offer_request("c1", "SDP", strict_source=True) == {
        "command": "offer",
        "call-id": "c1",
        "from-tag": "ue",
        "sdp": "SDP",
        "transport-protocol": "RTP/AVP",
        "ICE": "remove",
        "DTLS": "off",
        "flags": ["trust-address", "port-latching", "strict-source"],
    }
    assert answer_request("c1", "SDP", strict_source=False) == {
        "command": "answer",
        "call-id": "c1",
        "from-tag": "ue",
        "to-tag": "core",
        "sdp": "SDP",
        "ICE": "remove",
        "DTLS": "off",
        "flags": ["trust-address", "port-latching"],
    }
    assert delete_request("c1") == {
        "command": "delete",
        "call-id": "c1",
        "from-tag": "ue",
        "delete delay": 0,
    }


def test_reply_sdp_gives_addresses_and_key() -> None:
    reply = {
        b"result": b"ok",
        b"sdp": (
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 52014 RTP/SAVP 0\r\na=rtcp:52015\r\n"
            b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
            b"inline:lRaTXQQ46W9RD1eFYEnWwrhWE2drjgaIaygmf5Ol\r\n"
            b"m=audio 52020 RTP/AVP 0\r\na=rtcp-mux\r\nm=audio 0 RTP/AVP 0\r\n"
        ),
    }
    (a, ka), (b, kb), (c, kc) = parse_reply_sdp(reply, 3)  # type: ignore[arg-type]
    assert a == Endpoint("127.0.0.1", 52014, 52015) and ka is not None and ka.suite == SUITE
    assert b == Endpoint("127.0.0.1", 52020, None) and kb is None
    assert c is None and kc is None
    with pytest.raises(GatewayError, match="3 m-lines, we sent 1"):
        parse_reply_sdp(reply, 1)  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="cannot parse"):
        parse_reply_sdp({b"sdp": b"m=audio 1 RTP/AVP 0\r\n"}, 1)
    with pytest.raises(GatewayError, match="no SDP"):
        parse_reply_sdp({b"result": b"ok"}, 1)


# -- the e2ae engine uses the gateway's own key ------------------------------------------------


def _with_key(reservations: dict[int, object], key: SrtpKey) -> dict[int, object]:
    return {i: dataclasses.replace(r, local_key=key) for i, r in reservations.items()}  # type: ignore[type-var]


def test_requests_name_the_suite_towards_the_ue() -> None:
    plan = plan_offer(UE_OFFER, Direction.ORIGINATING, ALL, strict_policy())
    assert [r.ue_suite for r in plan.requests] == [SUITE]  # K11's, the line selected
    plan = plan_offer(CORE_OFFER, Direction.TERMINATING, ALL, strict_policy())
    assert [r.ue_suite for r in plan.requests] == [SUITE]  # the first suite policy offers


def test_originating_k12_is_the_gateways_key() -> None:
    rng = counter_rng()
    plan = plan_offer(UE_OFFER, Direction.ORIGINATING, ALL, strict_policy())
    res = apply_offer(plan, _with_key(reserve(plan.requests), GW_KEY), rng)  # type: ignore[arg-type]
    ans = apply_answer(res.state, CORE_ANSWER, rng)
    (k12,) = cryptos(ans.sdp)
    # K11's tag and suite (7.2.1 step 7), the gateway's key
    assert (k12.tag, k12.suite, k12.key.key_salt) == (1, SUITE, GW_KEY.key_salt)
    (sp,) = ans.plan.streams
    assert sp.tx_key is not None and sp.tx_key.key_salt == GW_KEY.key_salt
    assert sp.rx_key is not None and sp.rx_key.suite == SUITE
    assert "supplied by the gateway" in ans.decisions[0].action
    # a key of another suite than K11's cannot be K12
    other = dataclasses.replace(GW_KEY, suite="AES_CM_128_HMAC_SHA1_32")
    res = apply_offer(plan, _with_key(reserve(plan.requests), other), rng)  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="K11 has"):
        apply_answer(res.state, CORE_ANSWER, rng)


def test_terminating_k21_is_the_gateways_key_alone() -> None:
    rng = counter_rng()
    plan = plan_offer(CORE_OFFER, Direction.TERMINATING, ALL, strict_policy())
    res = apply_offer(plan, _with_key(reserve(plan.requests), GW_KEY), rng)  # type: ignore[arg-type]
    (k21,) = cryptos(res.sdp)  # one line: the key the gateway protects with
    assert (k21.tag, k21.suite, k21.key.key_salt) == (1, SUITE, GW_KEY.key_salt)
    ans = apply_answer(res.state, ue_answer(), rng)
    (sp,) = ans.plan.streams
    assert sp.tx_key is not None and sp.tx_key.key_salt == GW_KEY.key_salt


def test_without_a_gateway_key_nothing_changes() -> None:
    plan = plan_offer(CORE_OFFER, Direction.TERMINATING, ALL, strict_policy())
    a = apply_offer(plan, reserve(plan.requests), counter_rng())
    assert len(cryptos(a.sdp)) > 1  # every suite policy offers, our own keys


# -- config ------------------------------------------------------------------------------------


def test_backend_config_keys() -> None:
    assert parse_agw_config(None, "f").backend == "embedded"
    cfg = parse_agw_config(
        {"backend": "rtpengine", "rtpengine": {"ng": "[::1]:2300", "timeout_s": 0.5}}, "f"
    )
    assert (cfg.backend, cfg.rtpengine.ng_host, cfg.rtpengine.ng_port) == ("rtpengine", "::1", 2300)
    assert (cfg.rtpengine.timeout_s, cfg.rtpengine.retries, cfg.rtpengine.max_pending) == (
        0.5,
        2,
        256,
    )
    for section, key in [
        ({"backend": "kernel"}, "agw.backend"),
        ({"rtpengine": {"ng": "localhost:2223"}}, "agw.rtpengine.ng"),
        ({"rtpengine": {"ng": "127.0.0.1"}}, "agw.rtpengine.ng"),
        ({"rtpengine": {"ng": "127.0.0.1:0"}}, "agw.rtpengine.ng"),
        ({"rtpengine": {"timeout_s": 0}}, "agw.rtpengine.timeout_s"),
        ({"rtpengine": {"retries": 9}}, "agw.rtpengine.retries"),
        ({"rtpengine": {"max_pending": 0}}, "agw.rtpengine.max_pending"),
        ({"rtpengine": {"bogus": 1}}, "agw.rtpengine.bogus"),
        ({"rtpengine": []}, "agw.rtpengine"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse_agw_config(section, "pcscf.yaml")
        assert key in str(e.value) and "pcscf.yaml" in str(e.value)


# -- against a real rtpengine ------------------------------------------------------------------


@pytest.fixture
def rtpe(tmp_path: Path) -> Iterator[Rtpengine]:
    with running_rtpengine(tmp_path) as r:
        yield r


def _config(r: Rtpengine, **kw: object) -> AgwConfig:
    section = {"backend": "rtpengine", "rtpengine": {"ng": r.ng, "timeout_s": 0.3, **kw}}
    return parse_agw_config(section, "test")


def test_gateway_reserve_configure_release(rtpe: Rtpengine) -> None:
    async def run() -> None:
        gw = RtpengineGateway(_config(rtpe))
        await gw.start()
        try:
            req = StreamRequest(0, MediaKind.RTP, ue_suite=SUITE)
            (res,) = await gw.reserve("c1", [req])
            assert res.local_key is not None and res.local_key.suite == SUITE
            assert [res] == await gw.reserve("c1", [req])  # idempotent: no new exchange
            k11 = SrtpKey(SUITE, bytes(30), tag=1)
            plan = MediaPlan(
                (
                    StreamPlan(
                        0,
                        MediaKind.RTP,
                        StreamMode.E2AE,
                        ue_remote=Endpoint("127.0.0.1", 41000, 41001),
                        core_remote=Endpoint("127.0.0.1", 42000, 42001),
                        rx_key=k11,
                        tx_key=res.local_key,
                    ),
                )
            )
            await gw.configure("c1", plan)  # ports and key kept: checked inside
            # a plan whose key towards the UE is not rtpengine's is refused, nothing sent
            bad = dataclasses.replace(plan.streams[0], tx_key=k11)
            with pytest.raises(GatewayError, match="not the gateway's own"):
                await gw.configure("c1", MediaPlan((bad,)))
            with pytest.raises(GatewayError, match="RTP only"):
                await gw.reserve("c1", [StreamRequest(1, MediaKind.MSRP)])
            assert len(rtpe.calls()) == 1
            await gw.release("c1")
            await gw.release("c1")  # idempotent
            assert rtpe.calls() == []
        finally:
            await gw.close()

    asyncio.run(run())


def test_an_answer_declining_rtcp_mux_keeps_the_reservation(rtpe: Rtpengine) -> None:
    """The UE offered a=rtcp-mux, the core's answer declines it (RFC 5761 §5.1.1): rtpengine
    opens RTCP on port+1 where it had named the RTP port. Found by bench_cps.sh (SIPp's UE offers
    mux, its UAS does not); before, every such call got 488 "rtpengine changed the ports"."""

    async def run() -> None:
        gw = RtpengineGateway(_config(rtpe))
        await gw.start()
        try:
            req = StreamRequest(
                0, MediaKind.RTP, access_rtcp_mux=True, core_rtcp_mux=True, ue_suite=SUITE
            )
            (res,) = await gw.reserve("x1", [req])
            assert res.access.rtcp_port is None  # muxed at reservation (mediaplan.Endpoint)
            assert res.local_key is not None
            plan = MediaPlan(
                (
                    StreamPlan(
                        0,
                        MediaKind.RTP,
                        StreamMode.E2AE,
                        ue_remote=Endpoint("127.0.0.1", 41000, 41001),
                        core_remote=Endpoint("127.0.0.1", 42000, 42001),
                        rx_key=SrtpKey(SUITE, bytes(30), tag=1, lifetime=2**20, mki=b"\0\0\0\1"),
                        tx_key=res.local_key,
                    ),
                )
            )
            await gw.configure("x1", plan)  # mux declined: accepted, RTP ports and key kept
            await gw.configure("x1", plan)  # the 2xx after a 183 with the same answer
            await gw.release("x1")
            assert rtpe.calls() == []
        finally:
            await gw.close()

    asyncio.run(run())


def test_gateway_media_with_the_reference_srtp(rtpe: Rtpengine) -> None:
    """What rtpengine does with the keys it was given: K11 unprotects, its own key protects."""
    import socket

    async def run() -> None:
        gw = RtpengineGateway(_config(rtpe))
        await gw.start()
        ue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        core = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for s in (ue, core):
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            loop = asyncio.get_running_loop()
            (res,) = await gw.reserve("m1", [StreamRequest(0, MediaKind.RTP, ue_suite=SUITE)])
            assert res.local_key is not None
            k11 = SrtpKey(SUITE, bytes(range(30)), tag=1)
            sp = StreamPlan(
                0,
                MediaKind.RTP,
                StreamMode.E2AE,
                ue_remote=Endpoint("127.0.0.1", ue.getsockname()[1], ue.getsockname()[1] + 1),
                core_remote=Endpoint("127.0.0.1", core.getsockname()[1], core.getsockname()[1] + 1),
                rx_key=k11,
                tx_key=res.local_key,
            )
            await gw.configure("m1", MediaPlan((sp,)))
            from tests.e2e.calls_helpers import rtp_packet

            pkt = rtp_packet(5)
            ue.sendto(RefSrtp(SUITE, k11.key_salt).protect(pkt), ("127.0.0.1", res.access.port))
            got = await asyncio.wait_for(loop.sock_recv(core, 2048), 3)
            assert got == pkt
            core.sendto(pkt, ("127.0.0.1", res.core.port))
            back = await asyncio.wait_for(loop.sock_recv(ue, 2048), 3)
            assert RefSrtp(SUITE, res.local_key.key_salt).unprotect(back) == pkt
            await gw.release("m1")
        finally:
            ue.close()
            core.close()
            await gw.close()

    asyncio.run(run())


def test_gateway_with_rtpengine_down_fails_and_keeps_nothing(tmp_path: Path) -> None:
    async def run(ng: str) -> None:
        cfg = parse_agw_config(
            {"backend": "rtpengine", "rtpengine": {"ng": ng, "timeout_s": 0.05, "retries": 1}},
            "test",
        )
        gw = RtpengineGateway(cfg)
        await gw.start()
        try:
            with pytest.raises(GatewayError, match="media gateway"):
                await gw.reserve("d1", [StreamRequest(0, MediaKind.RTP, ue_suite=SUITE)])
            assert gw.contexts() == [] and gw.client.pending() == 0
        finally:
            await gw.close()

    from tests.e2e.daemon import free_port

    asyncio.run(run(f"127.0.0.1:{free_port(also_tcp=False)}"))


def test_client_bounds_pending_and_drops_stray_replies(rtpe: Rtpengine) -> None:
    async def run() -> None:
        gw = RtpengineGateway(_config(rtpe, max_pending=1))
        await gw.start()
        try:
            c = gw.client
            c.datagram_received(b"nobody d6:result2:oke", None)
            c.datagram_received(b"garbage", None)
            assert c.counters["stray"] == 2
            first = asyncio.ensure_future(c.request({"command": "ping"}))
            await asyncio.sleep(0)
            with pytest.raises(GatewayError, match="overloaded"):
                await c.request({"command": "ping"})
            # a delete is never refused by the cap: it frees what rtpengine holds for a call
            # (it reaches rtpengine, which answers for a call it does not know)
            reply = await c.request(delete_request("never-offered"), release=True)
            assert reply[b"result"] == b"ok"
            assert (await first)[b"result"] == b"pong"
        finally:
            await gw.close()

    asyncio.run(run())
