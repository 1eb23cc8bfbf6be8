"""The call layer as a sans-IO state machine (issue 12): SIP in through the proxy core, gateway
operations out as effects, their results fed back by hand, on a fake clock. No sockets, no
asyncio, no gateway.

What is checked here is the gateway API's contract (agw/api.py: "Raises GatewayError (ALG
answers 488)"): an offer waits for its reservation, an answer for its configuration, and a
refusal of either is answered 488 before any 2xx leaves, leaving no call state behind and
releasing what was reserved. The SIP-level golden table (tests/data/sip_golden) covers the
carriers, forks and endings."""

from __future__ import annotations

from pcscf_alg.effects import Configure, ExportKeys, GatewayDone, Release, Reserve
from pcscf_alg.mediaplan import Endpoint, Side, StreamMode, StreamReservation
from pcscf_alg.policy import load_policy
from pcscf_alg.sip.message import SipMessage
from pcscf_alg.sip.transaction import Peer
from tests.unit.test_alg import CORE, UE, Wire, make

K11 = "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC"
E2AE_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 16000 RTP/SAVP 96\r\na=rtpmap:96 AMR-WB/16000/1\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K11}\r\n"
    "a=3ge2ae:requested\r\na=sendrecv\r\n"
)
PLAIN_ANSWER = (
    "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 96\r\na=rtpmap:96 AMR-WB/16000/1\r\na=sendrecv\r\n"
)


def _setup(export_keys: bool = False) -> tuple[object, Wire]:
    p, wire = make()
    p.attach_calls(load_policy({}, "test.yaml"), export_keys=export_keys)
    # A UE registered with mediasec for RTP (TS 24.229 7.2A.7): its offers are e2ae.
    p.receive(
        b"REGISTER sip:ims.test SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-r1;rport\r\n"
        b"From: <sip:alice@ims.test>;tag=r\r\nTo: <sip:alice@ims.test>\r\n"
        b"Call-ID: reg@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:40000>\r\n"
        b"Security-Client: sdes-srtp;mediasec\r\nExpires: 600\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        Side.ACCESS,
        UE,
        0.0,
    )
    ((_, reg, _),) = [x for x in wire.take() if x[0] is Side.CORE]
    p.receive(
        _reply(reg, 200, "Contact: <sip:alice@127.0.0.1:40000>;expires=600\r\n"),
        Side.CORE,
        CORE,
        0.0,
    )
    assert [m.status for s, m, _ in wire.take() if s is Side.ACCESS] == [200]
    return p, wire


def _invite(body: str = E2AE_OFFER) -> bytes:
    return (
        "INVITE sip:bob@ims.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-i1;rport\r\nMax-Forwards: 70\r\n"
        "From: <sip:alice@ims.test>;tag=a1\r\nTo: <sip:bob@ims.test>\r\n"
        "Call-ID: call1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:40000>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _reply(req: SipMessage, status: int, extra: str = "", body: str = "") -> bytes:
    h = req.headers
    lines = [f"SIP/2.0 {status} X"]
    lines += [f"Via: {v}" for v in h.values("via")]
    lines += [f"Record-Route: {v}" for v in h.values("record-route")]
    lines += [f"From: {h.get('from')}", f"To: {h.get('to')};tag=b1"]
    lines += [f"Call-ID: {h.get('call-id')}", f"CSeq: {h.get('cseq')}"]
    head = "\r\n".join(lines) + "\r\nContact: <sip:bob@127.0.0.1:5080>\r\n" + extra
    if body:
        head += f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    else:
        head += "Content-Length: 0\r\n\r\n"
    return head.encode()


def _reservations(eff: Reserve) -> tuple[StreamReservation, ...]:
    return tuple(
        StreamReservation(
            r.index,
            r.kind,
            Endpoint("127.0.0.1", 20000, 20001),
            Endpoint("127.0.0.1", 20002, 20003),
        )
        for r in eff.streams
    )


def _offer_forwarded(p, wire: Wire) -> SipMessage:  # type: ignore[no-untyped-def]
    """INVITE in; its Reserve out, answered; the INVITE reaches the core only then."""
    p.receive(_invite(), Side.ACCESS, UE, 1.0)
    assert [m.status for s, m, _ in wire.take()] == [100]  # held: nothing towards the core
    (reserve,) = p.media_effects()
    assert isinstance(reserve, Reserve) and reserve.context_id == "call1@test/access"
    p.gateway_done(GatewayDone(reserve.op, _reservations(reserve)), 1.01)
    ((side, fwd, _),) = wire.take()
    assert side is Side.CORE and b"RTP/AVP" in fwd.body and b"inline:" not in fwd.body
    return fwd


def test_the_answer_waits_for_the_configuration_then_goes_with_our_key() -> None:
    p, wire = _setup()
    fwd = _offer_forwarded(p, wire)
    p.receive(_reply(fwd, 200, body=PLAIN_ANSWER), Side.CORE, CORE, 1.1)
    assert wire.take() == []  # the 2xx waits for the gateway
    (configure,) = p.media_effects()
    assert isinstance(configure, Configure)
    (stream,) = configure.plan.streams
    assert stream.mode is StreamMode.E2AE and stream.core_remote == Endpoint(
        "127.0.0.1", 30000, 30001
    )
    # a retransmission of the 2xx while it waits is absorbed (the held one goes)
    p.receive(_reply(fwd, 200, body=PLAIN_ANSWER), Side.CORE, CORE, 1.15)
    assert wire.take() == [] and p.media_effects() == []
    p.gateway_done(GatewayDone(configure.op), 1.2)
    ((side, ok, _),) = wire.take()
    assert side is Side.ACCESS and ok.status == 200
    assert b"RTP/SAVP" in ok.body and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in ok.body
    assert K11.encode() not in ok.body  # our key, not the UE's (TS 33.328 7.2.1 step 5)
    assert p.calls is not None and p.calls.pending_ops() == 0


def test_a_configure_refusal_is_answered_488_before_any_2xx_and_leaves_nothing() -> None:
    p, wire = _setup()
    fwd = _offer_forwarded(p, wire)
    p.receive(_reply(fwd, 200, body=PLAIN_ANSWER), Side.CORE, CORE, 1.1)
    (configure,) = p.media_effects()
    p.gateway_done(GatewayDone(configure.op, error="no such codec"), 1.2)
    out = wire.take()
    to_ue = [m for s, m, _ in out if s is Side.ACCESS]
    to_core = [m for s, m, _ in out if s is Side.CORE]
    assert [m.status for m in to_ue] == [488]  # never the 200
    assert "media gateway: no such codec" in (to_ue[0].headers.get("warning") or "")
    assert [m.method for m in to_core] == ["ACK", "BYE"]  # RFC 3261 §13.2.2.4
    (release,) = p.media_effects()
    assert isinstance(release, Release) and release.context_id == "call1@test/access"
    p.gateway_done(GatewayDone(release.op), 1.3)
    assert p.calls is not None and p.calls.calls == {} and p.calls.pending_ops() == 0
    assert p.calls.counters.gateway_errors == 1


def test_a_reserve_refusal_is_answered_488_and_nothing_reaches_the_core() -> None:
    p, wire = _setup()
    p.receive(_invite(), Side.ACCESS, UE, 1.0)
    wire.take()
    (reserve,) = p.media_effects()
    p.gateway_done(GatewayDone(reserve.op, error="no ports left"), 1.01)
    out = wire.take()
    assert [(s, m.status) for s, m, _ in out] == [(Side.ACCESS, 488)]
    assert "media gateway: no ports left" in (out[0][1].headers.get("warning") or "")
    # what the refused reservation may hold is released; no call state is kept
    (release,) = p.media_effects()
    assert isinstance(release, Release)
    assert p.calls is not None and p.calls.calls == {} and p.calls.by_context == {}


def test_a_call_cancelled_while_the_gateway_reserves_is_released_after_it() -> None:
    p, wire = _setup()
    p.receive(_invite(), Side.ACCESS, UE, 1.0)
    wire.take()
    (reserve,) = p.media_effects()
    cancel = (
        _invite()
        .split(b"\r\nContent-Type")[0]
        .replace(b"INVITE sip:", b"CANCEL sip:")
        .replace(b"1 INVITE", b"1 CANCEL")
        + b"\r\nContent-Length: 0\r\n\r\n"
    )
    p.receive(cancel, Side.ACCESS, UE, 1.005)
    assert sorted(m.status for s, m, _ in wire.take() if s is Side.ACCESS) == [200, 487]
    # queued after the reservation, so that it frees what the reservation takes
    (release,) = p.media_effects()
    assert isinstance(release, Release) and release.op > reserve.op
    p.gateway_done(GatewayDone(reserve.op, _reservations(reserve)), 1.01)
    p.gateway_done(GatewayDone(release.op), 1.02)
    assert [m for s, m, _ in wire.take() if s is Side.CORE] == []  # the offer never left
    assert p.calls is not None and p.calls.calls == {} and p.calls.pending_ops() == 0


def test_li_key_records_are_effects_stamped_by_the_edge() -> None:
    p, wire = _setup(export_keys=True)
    fwd = _offer_forwarded(p, wire)
    p.receive(_reply(fwd, 200, body=PLAIN_ANSWER), Side.CORE, CORE, 1.1)
    effects = p.media_effects()
    (record,) = [e.record for e in effects if isinstance(e, ExportKeys)]
    assert (record.call_id, record.leg, record.stream) == ("call1@test", "originating", 0)
    assert record.time == 0.0  # the core reads no wall clock
    assert record.from_ue.key_salt != record.to_ue.key_salt
    assert "inline" not in repr(record) and K11 not in repr(record)


def test_a_plain_call_needs_no_gateway() -> None:
    p, wire = make()
    p.attach_calls(load_policy({}, "test.yaml"))
    plain = E2AE_OFFER.replace("RTP/SAVP", "RTP/AVP").replace("a=3ge2ae:requested\r\n", "")
    plain = "\r\n".join(x for x in plain.split("\r\n") if not x.startswith("a=crypto"))
    p.receive(_invite(plain), Side.ACCESS, Peer("udp", "127.0.0.1", 40000), 1.0)
    assert [s for s, _, _ in wire.take()] == [Side.ACCESS, Side.CORE]  # 100, then forwarded
    assert p.media_effects() == []


def test_a_provisional_without_answer_is_not_held_behind_one_with_an_answer() -> None:
    p, wire = _setup()
    fwd = _offer_forwarded(p, wire)
    p.receive(_reply(fwd, 183, body=PLAIN_ANSWER), Side.CORE, CORE, 1.1)
    assert wire.take() == []  # the 183 with the answer waits for the configuration
    (configure,) = p.media_effects()
    p.receive(_reply(fwd, 180), Side.CORE, CORE, 1.15)  # Ringing: nothing for the gateway
    assert [m.status for s, m, _ in wire.take() if s is Side.ACCESS] == [180]
    p.receive(_reply(fwd, 183, body=PLAIN_ANSWER), Side.CORE, CORE, 1.16)  # retransmission
    assert wire.take() == [] and p.media_effects() == []
    p.gateway_done(GatewayDone(configure.op), 1.2)
    ((side, early, _),) = wire.take()
    assert side is Side.ACCESS and early.status == 183 and b"RTP/SAVP" in early.body
