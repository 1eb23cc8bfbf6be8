"""The proxy core driven as pure code: bytes in, bytes out, a fake clock, no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pcscf_alg.alg import TIMER_C, Pcscf
from pcscf_alg.config import parse_config
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore
from pcscf_alg.sip.message import SipMessage, parse_message
from pcscf_alg.sip.transaction import Peer

UE = Peer("udp", "127.0.0.1", 40000)
CORE = Peer("udp", "127.0.0.1", 5080)


@dataclass
class Wire:
    sent: list[tuple[Side, SipMessage, Peer]] = field(default_factory=list)

    def __call__(self, side: Side, data: bytes, peer: Peer) -> None:
        self.sent.append((side, parse_message(data), peer))

    def take(self) -> list[tuple[Side, SipMessage, Peer]]:
        out, self.sent = self.sent, []
        return out


def make(**reg: object) -> tuple[Pcscf, Wire]:
    cfg = parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5070},
                "next_hop": "sip:127.0.0.1:5080;lr",
            },
            "registration": {"require_for_originating": False, **reg},
        },
        "test.yaml",
    )
    wire = Wire()
    return Pcscf(cfg, InMemoryRegistrationStore(), wire), wire


def invite(extra: str = "", mf: int = 70) -> bytes:
    return (
        "INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.9.9.9:40000;branch=z9hG4bK-1;rport\r\n"
        f"Max-Forwards: {mf}\r\n"
        "From: <sip:alice@ims.test>;tag=a1\r\nTo: <sip:bob@ims.test>\r\n"
        "Call-ID: c1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:40000>\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def response(req: SipMessage, status: int, reason: str) -> bytes:
    h = req.headers
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in h.values("via")]
    lines += [f"Record-Route: {v}" for v in h.values("record-route")]
    lines += [
        f"From: {h.get('from')}",
        f"To: {h.get('to')};tag=b1",
        f"Call-ID: {h.get('call-id')}",
        f"CSeq: {h.get('cseq')}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def test_forwarding_adds_via_double_record_route_and_decrements_max_forwards() -> None:
    p, wire = make()
    p.receive(invite(), Side.ACCESS, UE, now=0.0)
    sent = wire.take()
    trying = [m for s, m, _ in sent if s is Side.ACCESS]
    assert [m.status for m in trying] == [100]
    ((_, fwd, dest),) = [(s, m, d) for s, m, d in sent if s is Side.CORE]
    assert dest == CORE
    vias = fwd.headers.values("via")
    assert vias[0].startswith("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK")
    # RFC 3261 §18.2.1 received= and RFC 3581 rport= stamped on the UE's Via
    assert "received=127.0.0.1" in vias[1] and "rport=40000" in vias[1]
    assert fwd.headers.get("max-forwards") == "69"
    # RFC 5658 double Record-Route: the core-facing entry on top
    assert fwd.headers.values("record-route") == [
        "<sip:127.0.0.1:5070;lr>",
        "<sip:127.0.0.1:5060;lr>",
    ]


def test_max_forwards_zero_gets_483() -> None:
    p, wire = make()
    p.receive(invite(mf=0), Side.ACCESS, UE, now=0.0)
    statuses = [m.status for _, m, _ in wire.take()]
    assert 483 in statuses


def test_unknown_proxy_require_gets_420_but_mediasec_and_sec_agree_pass() -> None:
    p, wire = make()
    p.receive(invite("Proxy-Require: foo-ext\r\n"), Side.ACCESS, UE, now=0.0)
    (resp,) = [m for _, m, _ in wire.take() if m.status >= 200]
    assert resp.status == 420 and resp.headers.get("unsupported") == "foo-ext"
    p2, wire2 = make()
    p2.receive(invite("Proxy-Require: sec-agree, mediasec\r\n"), Side.ACCESS, UE, now=0.0)
    assert any(s is Side.CORE for s, _, _ in wire2.take())


def test_unregistered_flow_gets_403_with_warning() -> None:
    p, wire = make(require_for_originating=True)
    p.receive(invite(), Side.ACCESS, UE, now=0.0)
    (resp,) = [m for _, m, _ in wire.take() if m.status >= 200]
    assert resp.status == 403 and "not registered" in (resp.headers.get("warning") or "")


def test_malformed_request_gets_400_and_garbage_is_dropped() -> None:
    p, wire = make()
    bad = invite().replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
    p.receive(bad, Side.ACCESS, UE, now=0.0)
    (resp,) = [m for _, m, _ in wire.take()]
    assert resp.status == 400 and resp.headers.get("warning")
    assert resp.headers.get("cseq") == "1 INVITE"
    p.receive(b"\x00\xffnot sip at all", Side.ACCESS, UE, now=0.0)
    assert wire.take() == []
    assert p.counters.dropped == 1


def test_400_even_when_the_cseq_itself_is_malformed() -> None:
    raw: list[bytes] = []
    p, _ = make()
    p._send = lambda side, data, peer: raw.append(data)  # the response copies the bad CSeq
    p.receive(invite().replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"), Side.ACCESS, UE, now=0.0)
    (data,) = raw
    assert data.startswith(b"SIP/2.0 400 Bad Request\r\n") and b"Warning: 399" in data


def test_timer_c_cancels_downstream_and_answers_408() -> None:
    p, wire = make()
    p.receive(invite(), Side.ACCESS, UE, now=0.0)
    fwd = next(m for s, m, _ in wire.take() if s is Side.CORE)
    p.receive(response(fwd, 180, "Ringing"), Side.CORE, CORE, now=1.0)
    assert [m.status for _, m, _ in wire.take()] == [180]
    deadline = p.get_timer()
    assert deadline is not None
    # nothing happens before Timer C
    p.handle_timer(TIMER_C - 1.0)
    assert not [m for _, m, _ in wire.take() if m.method == "CANCEL" or m.status == 408]
    p.handle_timer(1.0 + TIMER_C + 0.01)
    sent = wire.take()
    assert any(s is Side.CORE and m.method == "CANCEL" for s, m, _ in sent)
    assert any(s is Side.ACCESS and m.status == 408 for s, m, _ in sent)


def test_timer_c_is_reset_by_each_provisional() -> None:
    p, wire = make()
    p.receive(invite(), Side.ACCESS, UE, now=0.0)
    fwd = next(m for s, m, _ in wire.take() if s is Side.CORE)
    p.receive(response(fwd, 180, "Ringing"), Side.CORE, CORE, now=1.0)
    p.receive(response(fwd, 183, "Session Progress"), Side.CORE, CORE, now=100.0)
    wire.take()
    p.handle_timer(1.0 + TIMER_C + 0.01)
    assert not any(m.status == 408 for _, m, _ in wire.take())
    p.handle_timer(100.0 + TIMER_C + 0.01)
    assert any(m.status == 408 for _, m, _ in wire.take())


@pytest.mark.parametrize("side", [Side.ACCESS, Side.CORE])
def test_register_on_core_side_is_refused(side: Side) -> None:
    p, wire = make()
    reg = (
        b"REGISTER sip:ims.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-r\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: <sip:a@ims.test>\r\n"
        b"Call-ID: r@t\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@127.0.0.1:40000>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    p.receive(reg, side, UE, now=0.0)
    sent = wire.take()
    if side is Side.CORE:
        assert [m.status for _, m, _ in sent] == [403]
    else:
        (fwd,) = [m for s, m, _ in sent if s is Side.CORE]
        assert fwd.headers.get("path") == "<sip:term@127.0.0.1:5070;lr>"


def test_options_for_the_pcscf_itself_is_answered_not_routed() -> None:
    p, wire = make(require_for_originating=True)
    ping = (
        b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-o\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: <sip:127.0.0.1:5060>\r\n"
        b"Call-ID: o@t\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    p.receive(ping, Side.ACCESS, UE, now=0.0)
    ((side, resp, dest),) = wire.take()
    assert (side, resp.status, dest) == (Side.ACCESS, 200, UE)
    assert "INVITE" in (resp.headers.get("allow") or "")


def test_timeout_answer_leaves_in_the_same_flush_over_tcp() -> None:
    # Timer B fires on the core side; the 408 is queued on the access side and must be sent
    # in the same handle_timer call (over TCP there is no Timer G to send it later).
    p, wire = make()
    ue_tcp = Peer("tcp", "127.0.0.1", 40000, conn_id=7)
    p.receive(invite(), Side.ACCESS, ue_tcp, now=0.0)
    wire.take()
    p.handle_timer(64 * 0.5 + 0.01)
    sent = wire.take()
    assert [(s, m.status, d) for s, m, d in sent if m.status == 408] == [
        (Side.ACCESS, 408, ue_tcp)
    ]


def test_originating_goes_to_next_hop_even_with_a_ue_route() -> None:
    p, wire = make()
    p.receive(invite("Route: <sip:10.1.2.3:5099;lr>\r\n"), Side.ACCESS, UE, now=0.0)
    ((_, fwd, dest),) = [(s, m, d) for s, m, d in wire.take() if s is Side.CORE]
    assert dest == CORE  # the configured next hop, not the UE's choice
    assert fwd.headers.values("route") == ["<sip:10.1.2.3:5099;lr>"]


def test_2xx_after_487_is_still_forwarded() -> None:
    p, wire = make()
    p.receive(invite(), Side.ACCESS, UE, now=0.0)
    fwd = next(m for s, m, _ in wire.take() if s is Side.CORE)
    p.receive(response(fwd, 180, "Ringing"), Side.CORE, CORE, now=0.1)
    wire.take()
    cancel = invite().replace(b"INVITE sip:", b"CANCEL sip:").replace(b"1 INVITE", b"1 CANCEL")
    p.receive(cancel, Side.ACCESS, UE, now=0.2)
    assert sorted(m.status for s, m, _ in wire.take() if s is Side.ACCESS) == [200, 487]
    # the callee had already answered: its 200 crosses the CANCEL
    p.receive(response(fwd, 200, "OK"), Side.CORE, CORE, now=0.3)
    assert [m.status for s, m, _ in wire.take() if s is Side.ACCESS] == [200]


def test_a_failing_call_layer_answers_500_instead_of_leaking_the_transaction() -> None:
    class Broken:
        def on_request(self, ctx: object, msg: object, now: float) -> bool:
            raise RuntimeError("bug")

        def take_effects(self) -> list[object]:
            return []

    p, wire = make()
    p.calls = Broken()  # type: ignore[assignment]
    p.receive(invite(), Side.ACCESS, UE, now=0.0)
    finals = [m.status for s, m, _ in wire.take() if s is Side.ACCESS and m.status >= 200]
    assert finals == [500]


def test_telekom_style_invite_loses_its_sec_agree_material_towards_the_core() -> None:
    # docs/e2ae-notes.md §1.3: a 1TR114 UE puts Security-Verify and Require/Proxy-Require:
    # mediasec on INVITE as well; none of it may reach the core (§1.2 item 4), other tags stay
    p, wire = make()
    extra = (
        "Security-Verify: ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1;spi-s=2;port-c=3;port-s=4, "
        "sdes-srtp;mediasec\r\n"
        "Security-Client: sdes-srtp;mediasec\r\n"
        "Require: mediasec, 100rel\r\n"
        "Proxy-Require: mediasec, sec-agree\r\n"
        "Supported: timer\r\n"
    )
    p.receive(invite(extra), Side.ACCESS, UE, now=0.0)
    ((fwd,),) = [[m for s, m, _ in wire.take() if s is Side.CORE]]
    h = fwd.headers
    assert h.get("security-verify") is None and h.get("security-client") is None
    assert h.values("require") == ["100rel"]
    assert "proxy-require" not in h
    assert h.get("supported") == "timer"


def test_sec_agree_material_from_the_core_side_is_left_alone() -> None:
    # only the UE's first hop consumes it; a request from the core is not ours to clean
    p, wire = make()
    msg = invite("Require: mediasec\r\n").replace(b"10.9.9.9:40000", b"127.0.0.1:5080")
    p.receive(msg, Side.CORE, CORE, now=0.0)
    fwd = [m for s, m, _ in wire.take() if s is Side.ACCESS and m.method == "INVITE"]
    assert fwd and fwd[0].headers.values("require") == ["mediasec"]
