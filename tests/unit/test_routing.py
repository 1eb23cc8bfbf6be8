"""Routing refusals (errors.RoutingError): answered 403/404/503 with a Warning, counted as
`routing_refused` and never as parse errors; the route cache keeps the refusal."""

from __future__ import annotations

from typing import Any

import pytest

from pcscf_alg.alg import Pcscf
from pcscf_alg.config import parse_config
from pcscf_alg.errors import RoutingError
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore
from pcscf_alg.sip.message import SipMessage, parse_message
from pcscf_alg.sip.transaction import Peer

CORE = Peer("udp", "127.0.0.1", 5080)


def make(**sip: Any) -> tuple[Pcscf, list[tuple[Side, SipMessage, Peer]]]:
    cfg = parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5070},
                "next_hop": "sip:127.0.0.1:5080;lr",
                **sip,
            },
            "registration": {"require_for_originating": False},
        },
        "test.yaml",
    )
    sent: list[tuple[Side, SipMessage, Peer]] = []
    p = Pcscf(
        cfg,
        InMemoryRegistrationStore(),
        lambda side, data, peer: sent.append((side, parse_message(data), peer)),
    )
    return p, sent


def options(ruri: str, n: int = 1, method: str = "OPTIONS") -> bytes:
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-rt{n}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:scscf@ims.test>;tag=s1\r\nTo: <sip:bob@ims.test>\r\n"
        f"Call-ID: rt{n}@test\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("ruri", "sip", "status", "warning"),
    [
        ("sip:bob@nowhere.invalid", {}, 503, "cannot resolve nowhere.invalid"),
        ("tel:+15550100", {}, 404, "cannot route a tel: URI without a Route"),
        (
            "sip:bob@203.0.113.5",
            {"egress_networks": ["127.0.0.0/8"]},
            403,
            "destination 203.0.113.5 not allowed",
        ),
    ],
)
def test_a_refused_route_is_answered_and_counted_apart(
    ruri: str, sip: dict[str, Any], status: int, warning: str
) -> None:
    p, sent = make(**sip)
    for n in (1, 2):  # the second one is refused from the route cache
        p.receive(options(ruri, n), Side.CORE, CORE, now=float(n))
        ((side, resp, dest),) = sent
        sent.clear()
        assert (side, resp.status, dest) == (Side.CORE, status, CORE)
        assert f'"{warning}"' in (resp.headers.get("warning") or "")
    assert p.counters.routing_refused == 2
    assert p.counters.parse_errors == 0 and p.counters.responses_400 == 0
    if status != 404:  # tel: is refused before any host is resolved
        assert [type(v) for v in p._route_cache.values()] == [RoutingError]


def test_a_malformed_target_is_still_a_parse_error() -> None:
    p, sent = make()
    p.receive(options("sip:bob@[2001:db8::zz]"), Side.CORE, CORE, now=0.0)
    ((_, resp, _),) = sent
    assert resp.status == 400
    assert (p.counters.parse_errors, p.counters.routing_refused) == (1, 0)


def test_an_ack_that_cannot_be_routed_is_dropped() -> None:
    """An ACK is never answered (RFC 3261 §17.2.1): a refused route drops it, and the
    refusal raised while the transaction layer's events are handled does not escape."""
    p, sent = make()
    ack = options("sip:bob@nowhere.invalid", method="ACK").replace(
        b"To: <sip:bob@ims.test>", b"To: <sip:bob@ims.test>;tag=b1"
    )
    p.receive(ack, Side.CORE, CORE, now=0.0)
    assert sent == []
