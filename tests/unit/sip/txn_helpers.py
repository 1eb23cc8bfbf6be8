"""Shared builders for the transaction tests: fake clock, messages, peers. No sockets."""

from __future__ import annotations

from pcscf_alg.sip.message import SipMessage, make_response, parse_message
from pcscf_alg.sip.transaction import Event, Peer, TransactionLayer, new_branch

UE_UDP = Peer("udp", "192.0.2.10", 5060)
UE_TCP = Peer("tcp", "192.0.2.10", 40000, conn_id=7)
CORE_UDP = Peer("udp", "198.51.100.1", 5060)
CORE_TCP = Peer("tcp", "198.51.100.1", 5060, conn_id=9)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    via_host: str = "192.0.2.10:5060",
    transport: str = "UDP",
    cseq: int = 1,
    call_id: str = "call-1@ue",
    routes: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    to_tag: str | None = None,
) -> SipMessage:
    b = branch if branch is not None else new_branch()
    lines = [
        f"{method} sip:bob@example.com SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host};branch={b}",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKdownstream",
        "Max-Forwards: 69",
        *[f"Route: {r}" for r in routes],
        'From: "Alice" <sip:alice@example.com>;tag=from1',
        "To: <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@192.0.2.10>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return parse_message("\r\n".join(lines).encode())


def response(
    req: SipMessage, status: int, reason: str = "X", to_tag: str | None = "tt"
) -> SipMessage:
    """A response as the next hop would send it back (wire round trip)."""
    r = make_response(req, status, reason, to_tag=to_tag if status > 100 else None)
    return parse_message(r.serialize())


def events(layer: TransactionLayer) -> list[Event]:
    out: list[Event] = []
    while (ev := layer.next_event()) is not None:
        out.append(ev)
    return out


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, bytes, Peer]]:
    """Advance the fake clock timer by timer up to `until`; collect what was sent and when."""
    sent: list[tuple[float, bytes, Peer]] = []
    while (t := layer.get_timer()) is not None and t <= until:
        layer.handle_timer(t)
        sent.extend((t, data, peer) for data, peer in layer.datagrams_to_send())
    return sent


def drain_all(layer: TransactionLayer, start: float = 0.0) -> float:
    """Fire timers until none is left; returns the last time reached."""
    now = start
    while (t := layer.get_timer()) is not None:
        now = t
        layer.handle_timer(t)
        layer.datagrams_to_send()
        events(layer)
    return now
