"""RFC 3261 §17 / RFC 6026 transaction state machines, driven with a fake clock and no sockets."""

from __future__ import annotations

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import MAGIC_COOKIE, header_tag
from pcscf_alg.sip.message import make_response, parse_message
from pcscf_alg.sip.transaction import (
    HEAP_COMPACT_MIN,
    ClientTimeout,
    ClientTransaction,
    Peer,
    ServerTimeout,
    ServerTransaction,
    StrayAck,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransportError,
    build_ack,
    build_cancel,
    new_branch,
)

from .txn_helpers import (
    CORE_TCP,
    CORE_UDP,
    UE_TCP,
    UE_UDP,
    drain_all,
    events,
    request,
    response,
    run_timers,
)

S = TransactionState


def times(sent: list[tuple[float, bytes, Peer]]) -> list[float]:
    return [t for t, _, _ in sent]


# --- basics --------------------------------------------------------------------------------------


def test_new_branch_has_magic_cookie_and_is_random() -> None:
    a, b = new_branch(), new_branch()
    assert a.startswith(MAGIC_COOKIE) and b.startswith(MAGIC_COOKIE)
    assert a != b and len(a) == len(MAGIC_COOKIE) + 16


def test_peer_reliable() -> None:
    assert not Peer("udp", "h", 1).reliable
    assert Peer("tcp", "h", 1).reliable
    assert Peer("TLS", "h", 1).reliable


def test_timers_derived_and_validated() -> None:
    t = Timers()
    assert (t.T1, t.T2, t.T4) == (0.5, 4.0, 5.0)
    assert t.B == t.F == t.H == t.J == t.L == t.M == 32.0
    assert Timers(T1=0.1).B == 6.4
    with pytest.raises(ValueError):
        Timers(T1=0)
    with pytest.raises(ValueError):
        Timers(T1=2, T2=1)


# --- INVITE client transaction (§17.1.1) ---------------------------------------------------------


def test_invite_client_udp_timer_a_schedule_and_timer_b() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    assert txn.state is S.CALLING and txn.is_invite
    first = layer.datagrams_to_send()
    assert first == [(inv.serialize(), CORE_UDP)]
    sent = run_timers(layer, 100.0)
    # Timer A: T1, then doubling with no cap (§17.1.1.2); Timer B = 64*T1.
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(data is first[0][0] for _, data, _ in sent)  # serialised once
    evs = events(layer)
    assert [type(e) for e in evs] == [ClientTimeout, TransactionTerminated]
    assert isinstance(evs[0], ClientTimeout) and evs[0].txn is txn
    assert txn.terminated
    assert len(layer) == 0 and layer.get_timer() is None


def test_invite_client_tcp_no_timer_a_but_timer_b() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request("INVITE"), CORE_TCP, 10.0)
    layer.datagrams_to_send()
    assert layer.get_timer() == 42.0
    assert run_timers(layer, 100.0) == []
    assert isinstance(layer.next_event(), ClientTimeout)
    assert txn.state is S.TERMINATED


def test_invite_client_provisional_stops_a_and_b() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    run_timers(layer, 1.0)  # one retransmission at 0.5
    got = layer.receive_response(response(inv, 100, "Trying"), CORE_UDP, 1.0)
    assert got is not None and got[0] is txn
    assert txn.state is S.PROCEEDING
    assert layer.get_timer() is None  # neither A nor B runs in Proceeding
    got = layer.receive_response(response(inv, 180, "Ringing"), CORE_UDP, 2.0)
    assert got is not None and txn.last_response is got[1]
    assert events(layer) == []


def test_invite_client_non2xx_final_generates_ack_and_timer_d() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", routes=("<sip:scscf.example.com;lr>", "<sip:x.example.com;lr>"))
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    layer.datagrams_to_send()
    r486 = response(inv, 486, "Busy Here", to_tag="callee")
    got = layer.receive_response(r486, CORE_UDP, 1.0)
    assert got == (txn, r486)
    assert txn.state is S.COMPLETED
    out = layer.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == CORE_UDP
    ack = parse_message(out[0][0])
    # RFC 3261 §17.1.1.3
    assert ack.method == "ACK" and ack.uri == inv.uri
    assert ack.headers.values("via") == [inv.headers.values("via")[0]]
    assert ack.headers.values("route") == inv.headers.values("route")
    assert ack.call_id == inv.call_id
    assert ack.headers.get("from") == inv.headers.get("from")
    assert header_tag(ack.headers.get("to")) == "callee"
    assert ack.cseq == (1, "ACK")
    assert ack.body == b""
    assert txn.ack is not None
    # A retransmitted final is absorbed and the same ACK bytes re-sent.
    assert layer.receive_response(r486, CORE_UDP, 2.0) is None
    assert layer.datagrams_to_send() == out
    # Timer D = 32 s on UDP.
    assert layer.get_timer() == 33.0
    run_timers(layer, 33.0)
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0


def test_invite_client_non2xx_final_tcp_timer_d_zero() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", transport="TCP")
    txn = layer.send_request(inv, CORE_TCP, 0.0)
    layer.datagrams_to_send()
    got = layer.receive_response(response(inv, 503, "Unavailable"), CORE_TCP, 1.0)
    assert got is not None
    assert txn.state is S.TERMINATED
    assert len(layer.datagrams_to_send()) == 1  # the ACK, on the same connection
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0 and layer.get_timer() is None


def test_invite_client_2xx_accepted_timer_m() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    layer.datagrams_to_send()
    ok = response(inv, 200, "OK")
    assert layer.receive_response(ok, CORE_UDP, 1.0) == (txn, ok)
    assert txn.state is S.ACCEPTED
    assert layer.datagrams_to_send() == []  # no ACK for 2xx: that is the TU's (end to end)
    # RFC 6026 §8.4: 2xx retransmissions (and other forks' 2xx) go up to the TU.
    ok2 = response(inv, 200, "OK", to_tag="fork2")
    assert layer.receive_response(ok, CORE_UDP, 2.0) == (txn, ok)
    assert layer.receive_response(ok2, CORE_UDP, 2.0) == (txn, ok2)
    # A late provisional or non-2xx final is absorbed.
    assert layer.receive_response(response(inv, 180), CORE_UDP, 2.0) is None
    assert layer.receive_response(response(inv, 404), CORE_UDP, 2.0) is None
    assert layer.get_timer() == 33.0  # Timer M = 64*T1
    run_timers(layer, 33.0)
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    # After Timer M the 2xx is a stray the TU may forward statelessly.
    assert layer.receive_response(ok, CORE_UDP, 40.0) is None
    ev = layer.next_event()
    assert isinstance(ev, StrayResponse) and ev.msg is ok and ev.source == CORE_UDP


def test_invite_client_2xx_in_calling_stops_retransmissions() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    layer.send_request(inv, CORE_UDP, 0.0)
    layer.receive_response(response(inv, 200), CORE_UDP, 0.2)
    layer.datagrams_to_send()
    assert run_timers(layer, 100.0) == []  # only Timer M was left
    assert [type(e) for e in events(layer)] == [TransactionTerminated]


# --- non-INVITE client transaction (§17.1.2) -----------------------------------------------------


def test_non_invite_client_udp_timer_e_caps_at_t2_and_timer_f() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request("OPTIONS"), CORE_UDP, 0.0)
    assert txn.state is S.TRYING and not txn.is_invite
    layer.datagrams_to_send()
    sent = run_timers(layer, 100.0)
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [type(e) for e in events(layer)] == [ClientTimeout, TransactionTerminated]
    assert len(layer) == 0 and layer.get_timer() is None


def test_non_invite_client_after_provisional_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    txn = layer.send_request(req, CORE_UDP, 0.0)
    layer.datagrams_to_send()
    sent = run_timers(layer, 1.0)  # 0.5
    got = layer.receive_response(response(req, 100, "Trying"), CORE_UDP, 1.0)
    assert got is not None and txn.state is S.PROCEEDING
    sent += run_timers(layer, 100.0)
    # §17.1.2.2: the pending E (due 1.5) fires in Proceeding and is reset to T2 from then on.
    assert times(sent) == [0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert isinstance(layer.next_event(), ClientTimeout)


def test_non_invite_client_tcp_no_timer_e() -> None:
    layer = TransactionLayer()
    layer.send_request(request("MESSAGE", transport="TCP"), CORE_TCP, 0.0)
    layer.datagrams_to_send()
    assert run_timers(layer, 100.0) == []
    assert [type(e) for e in events(layer)] == [ClientTimeout, TransactionTerminated]


def test_non_invite_client_final_timer_k_udp() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    txn = layer.send_request(req, CORE_UDP, 0.0)
    layer.datagrams_to_send()
    ok = response(req, 200)
    assert layer.receive_response(ok, CORE_UDP, 0.7) == (txn, ok)
    assert txn.state is S.COMPLETED
    assert layer.receive_response(ok, CORE_UDP, 1.0) is None  # absorbed
    assert layer.datagrams_to_send() == []  # and no retransmission any more
    assert layer.get_timer() == pytest.approx(5.7)  # Timer K = T4
    run_timers(layer, 10.0)
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0


def test_non_invite_client_final_tcp_timer_k_zero() -> None:
    layer = TransactionLayer()
    req = request("BYE", transport="TCP")
    txn = layer.send_request(req, CORE_TCP, 0.0)
    assert layer.receive_response(response(req, 200), CORE_TCP, 0.1) is not None
    assert txn.state is S.TERMINATED and len(layer) == 0 and layer.get_timer() is None


def test_send_request_rejects_ack_and_missing_branch_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(request("ACK"), CORE_UDP, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request("INVITE", branch="old2543"), CORE_UDP, 0.0)
    b = new_branch()
    layer.send_request(request("INVITE", branch=b), CORE_UDP, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request("INVITE", branch=b), CORE_UDP, 0.0)
    # Same branch, other method (CANCEL, §9.1) is a different transaction.
    layer.send_request(request("CANCEL", branch=b), CORE_UDP, 0.0)
    assert layer.client_count == 2


def test_response_matching_uses_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    b = new_branch()
    inv = request("INVITE", branch=b)
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    # Same branch but CSeq method CANCEL: not this transaction (§17.1.3) -> stray.
    cancel_resp = response(request("CANCEL", branch=b), 200)
    assert layer.receive_response(cancel_resp, CORE_UDP, 0.1) is None
    assert isinstance(layer.next_event(), StrayResponse)
    assert txn.state is S.CALLING
    # Other branch: stray.
    assert layer.receive_response(response(request("INVITE"), 180), CORE_UDP, 0.1) is None
    assert isinstance(layer.next_event(), StrayResponse)


# --- INVITE server transaction (§17.2.1) ---------------------------------------------------------


def test_invite_server_sends_100_trying_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", extra=("Timestamp: 54",))
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert isinstance(txn, ServerTransaction)
    assert txn.state is S.PROCEEDING and txn.peer == UE_UDP and txn.request is inv
    out = layer.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == UE_UDP
    trying = parse_message(out[0][0])
    assert trying.status == 100 and trying.cseq == (1, "INVITE")
    assert header_tag(trying.headers.get("to")) is None
    assert trying.headers.get("timestamp") == "54"  # §8.2.6.1
    assert trying.headers.values("via") == inv.headers.values("via")
    # Retransmission: absorbed, the 100 re-sent (same bytes), the TU does not see it.
    assert layer.receive_request(inv, UE_UDP, 0.5) is None
    assert layer.datagrams_to_send() == out
    ringing = make_response(inv, 180, "Ringing", to_tag="b2b")
    assert layer.send_response(txn, ringing, 1.0)
    r180 = layer.datagrams_to_send()
    assert layer.receive_request(inv, UE_UDP, 1.5) is None
    assert layer.datagrams_to_send() == r180
    assert txn.last_response is ringing
    assert events(layer) == []
    assert layer.server_count == 1


def test_invite_server_without_auto_trying() -> None:
    layer = TransactionLayer(auto_trying=False)
    inv = request("INVITE")
    assert layer.receive_request(inv, UE_UDP, 0.0) is not None
    assert layer.datagrams_to_send() == []
    assert layer.receive_request(inv, UE_UDP, 0.5) is None  # absorbed, nothing to re-send
    assert layer.datagrams_to_send() == []


def test_invite_server_non2xx_udp_timer_g_and_timer_h() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    layer.datagrams_to_send()
    busy = make_response(inv, 486, "Busy Here", to_tag="b2b")
    assert layer.send_response(txn, busy, 0.0)
    assert txn.state is S.COMPLETED
    first = layer.datagrams_to_send()
    sent = run_timers(layer, 100.0)
    # Timer G: T1 doubling, capped at T2 (§17.2.1); Timer H = 64*T1.
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(data is first[0][0] and peer == UE_UDP for _, data, peer in sent)
    evs = events(layer)
    assert [type(e) for e in evs] == [ServerTimeout, TransactionTerminated]
    assert isinstance(evs[0], ServerTimeout) and evs[0].txn is txn
    assert len(layer) == 0 and layer.get_timer() is None


def test_invite_server_non2xx_tcp_no_timer_g_timer_h_still_runs() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", transport="TCP", via_host="192.0.2.10:40000")
    txn = layer.receive_request(inv, UE_TCP, 0.0)
    assert txn is not None
    layer.send_response(txn, make_response(inv, 404, "Not Found", to_tag="x"), 0.0)
    out = layer.datagrams_to_send()
    assert all(peer == UE_TCP and peer.conn_id == 7 for _, peer in out)  # same connection
    assert layer.get_timer() == 32.0
    assert run_timers(layer, 100.0) == []
    assert isinstance(layer.next_event(), ServerTimeout)


def test_invite_server_ack_confirms_and_timer_i_udp() -> None:
    layer = TransactionLayer()
    b = new_branch()
    inv = request("INVITE", branch=b)
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    layer.send_response(txn, make_response(inv, 486, "Busy", to_tag="b2b"), 0.0)
    layer.datagrams_to_send()
    run_timers(layer, 0.6)  # one G retransmission
    layer.datagrams_to_send()
    ack = request("ACK", branch=b, to_tag="b2b")
    assert layer.receive_request(ack, UE_UDP, 1.0) is None
    assert txn.state is S.CONFIRMED
    assert events(layer) == []  # absorbed: the TU never sees the ACK
    # ACK and INVITE retransmissions in Confirmed: absorbed silently.
    assert layer.receive_request(ack, UE_UDP, 2.0) is None
    assert layer.receive_request(inv, UE_UDP, 2.0) is None
    assert layer.datagrams_to_send() == []
    assert layer.get_timer() == 6.0  # Timer I = T4 (G and H stopped)
    assert run_timers(layer, 100.0) == []
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0


def test_invite_server_ack_tcp_timer_i_zero() -> None:
    layer = TransactionLayer()
    b = new_branch()
    inv = request("INVITE", branch=b, transport="TCP")
    txn = layer.receive_request(inv, UE_TCP, 0.0)
    assert txn is not None
    layer.send_response(txn, make_response(inv, 486, "Busy", to_tag="b2b"), 0.0)
    layer.receive_request(request("ACK", branch=b, transport="TCP", to_tag="b2b"), UE_TCP, 0.1)
    assert txn.state is S.TERMINATED
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0 and layer.get_timer() is None


def test_invite_server_2xx_accepted_timer_l_and_stray_ack() -> None:
    layer = TransactionLayer()
    b = new_branch()
    inv = request("INVITE", branch=b)
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    layer.datagrams_to_send()
    ok = make_response(inv, 200, "OK", to_tag="b2b")
    assert layer.send_response(txn, ok, 1.0)
    assert txn.state is S.ACCEPTED
    assert len(layer.datagrams_to_send()) == 1
    # RFC 6026 §8.7: INVITE retransmissions absorbed without re-sending anything...
    assert layer.receive_request(inv, UE_UDP, 1.5) is None
    assert layer.datagrams_to_send() == []
    # ...2xx retransmissions from the TU are sent; non-2xx are discarded.
    assert layer.send_response(txn, ok, 2.0)
    assert len(layer.datagrams_to_send()) == 1
    assert not layer.send_response(txn, make_response(inv, 500, "Oops", to_tag="b2b"), 2.0)
    # The ACK for the 2xx has its own branch (§13.2.2.4): handed to the TU as StrayAck.
    ack = request("ACK", to_tag="b2b")
    assert layer.receive_request(ack, UE_UDP, 2.5) is None
    ev = layer.next_event()
    assert isinstance(ev, StrayAck) and ev.msg is ack and ev.source == UE_UDP
    # An ACK with the INVITE's branch in Accepted also goes to the TU.
    layer.receive_request(request("ACK", branch=b, to_tag="b2b"), UE_UDP, 2.5)
    assert isinstance(layer.next_event(), StrayAck)
    assert layer.get_timer() == 33.0  # Timer L = 64*T1 from the 2xx
    run_timers(layer, 100.0)
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert not layer.send_response(txn, ok, 40.0)  # terminated: use send_stateless
    assert len(layer) == 0


def test_invite_server_final_after_final_is_discarded() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    assert layer.send_response(txn, make_response(inv, 486, "Busy", to_tag="a"), 0.0)
    assert not layer.send_response(txn, make_response(inv, 200, "OK", to_tag="a"), 0.0)
    assert not layer.send_response(txn, make_response(inv, 180, "R", to_tag="a"), 0.0)
    assert txn.state is S.COMPLETED


def test_invite_server_retransmission_in_completed_resends_final() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    layer.send_response(txn, make_response(inv, 603, "Decline", to_tag="a"), 0.0)
    final = layer.datagrams_to_send()[-1]
    assert layer.receive_request(inv, UE_UDP, 0.2) is None
    assert layer.datagrams_to_send() == [final]


def test_response_dest_override() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    layer.datagrams_to_send()
    other = Peer("udp", "192.0.2.10", 5062)
    layer.send_response(txn, make_response(inv, 486, "Busy", to_tag="a"), 0.0, dest=other)
    assert layer.datagrams_to_send()[0][1] == other
    assert [p for _, _, p in run_timers(layer, 0.6)] == [other]  # Timer G follows it


# --- non-INVITE server transaction (§17.2.2) -----------------------------------------------------


def test_non_invite_server_trying_proceeding_completed_timer_j_udp() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    txn = layer.receive_request(req, UE_UDP, 0.0)
    assert txn is not None and txn.state.value == "Trying"
    assert layer.datagrams_to_send() == []  # no 100 for non-INVITE
    # Trying: retransmission discarded, nothing sent.
    assert layer.receive_request(req, UE_UDP, 0.5) is None
    assert layer.datagrams_to_send() == []
    assert layer.send_response(txn, make_response(req, 100, "Trying"), 0.6)
    assert txn.state.value == "Proceeding"
    p = layer.datagrams_to_send()
    assert layer.receive_request(req, UE_UDP, 1.5) is None
    assert layer.datagrams_to_send() == p
    ok = make_response(req, 200, "OK", to_tag="r")
    assert layer.send_response(txn, ok, 2.0)
    assert txn.state is S.COMPLETED
    f = layer.datagrams_to_send()
    assert layer.receive_request(req, UE_UDP, 3.5) is None
    assert layer.datagrams_to_send() == f
    assert not layer.send_response(txn, make_response(req, 500, "x", to_tag="r"), 3.6)
    assert layer.get_timer() == 34.0  # Timer J = 64*T1
    assert run_timers(layer, 100.0) == []  # no retransmission timer on the server side
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0


def test_non_invite_server_tcp_timer_j_zero() -> None:
    layer = TransactionLayer()
    req = request("MESSAGE", transport="TCP")
    txn = layer.receive_request(req, UE_TCP, 0.0)
    assert txn is not None
    layer.send_response(txn, make_response(req, 202, "Accepted", to_tag="r"), 0.1)
    assert txn.state is S.TERMINATED and len(layer) == 0 and layer.get_timer() is None
    # A late retransmission now starts a new transaction (nothing left to absorb it).
    assert layer.receive_request(req, UE_TCP, 0.2) is not None


def test_server_matching_sent_by_and_method() -> None:
    layer = TransactionLayer()
    b = new_branch()
    assert layer.receive_request(request("INVITE", branch=b), UE_UDP, 0.0) is not None
    # Default port equals explicit 5060 (same sent-by).
    assert (
        layer.receive_request(request("INVITE", branch=b, via_host="192.0.2.10"), UE_UDP, 0.0)
        is None
    )
    # Other sent-by, same branch: another transaction (§17.2.3).
    assert (
        layer.receive_request(request("INVITE", branch=b, via_host="192.0.2.99"), UE_UDP, 0.0)
        is not None
    )
    # Same branch, other method: another transaction.
    assert layer.receive_request(request("OPTIONS", branch=b), UE_UDP, 0.0) is not None
    assert layer.server_count == 3


def test_bad_via_raises_parse_error() -> None:
    layer = TransactionLayer()
    msg = request("OPTIONS")
    msg.headers.set("Via", "garbage")
    with pytest.raises(SipParseError):
        layer.receive_request(msg, UE_UDP, 0.0)


def test_rfc2543_requests_without_magic_cookie() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", branch="1234")
    txn = layer.receive_request(inv, UE_UDP, 0.0)
    assert txn is not None
    assert layer.receive_request(inv, UE_UDP, 0.5) is None  # retransmission
    cancel = request("CANCEL", branch="1234")
    ctxn = layer.receive_request(cancel, UE_UDP, 1.0)
    assert ctxn is not None and ctxn.cancelled_invite is txn
    layer.send_response(txn, make_response(inv, 487, "Request Terminated", to_tag="t"), 1.0)
    ack = request("ACK", branch="1234", to_tag="t")
    assert layer.receive_request(ack, UE_UDP, 1.1) is None
    assert txn.state is S.CONFIRMED
    # Another CSeq: another transaction.
    assert layer.receive_request(request("INVITE", branch="1234", cseq=2), UE_UDP, 2) is not None


# --- CANCEL --------------------------------------------------------------------------------------


def test_server_cancel_matches_invite_and_487_flow() -> None:
    layer = TransactionLayer()
    b = new_branch()
    inv = request("INVITE", branch=b)
    itxn = layer.receive_request(inv, UE_UDP, 0.0)
    assert itxn is not None
    layer.datagrams_to_send()
    cancel = request("CANCEL", branch=b)
    ctxn = layer.receive_request(cancel, UE_UDP, 1.0)
    # The CANCEL is its own (non-INVITE) transaction, handed to the TU (§9.2).
    assert ctxn is not None and ctxn is not itxn and ctxn.method == "CANCEL"
    assert ctxn.state is S.TRYING
    assert ctxn.cancelled_invite is itxn and itxn.cancelled
    assert layer.find_invite_for_cancel(cancel, UE_UDP) is itxn
    assert layer.datagrams_to_send() == []
    # TU: 200 to the CANCEL, 487 to the INVITE.
    layer.send_response(ctxn, make_response(cancel, 200, "OK", to_tag="b2b"), 1.0)
    r487 = make_response(inv, 487, "Request Terminated", to_tag="b2b")
    layer.send_response(itxn, r487, 1.0)
    out = [parse_message(d) for d, _ in layer.datagrams_to_send()]
    assert [(m.status, m.cseq[1]) for m in out] == [(200, "CANCEL"), (487, "INVITE")]
    # A CANCEL retransmission is absorbed with the 200 re-sent.
    assert layer.receive_request(cancel, UE_UDP, 1.2) is None
    assert parse_message(layer.datagrams_to_send()[0][0]).status == 200
    layer.receive_request(request("ACK", branch=b, to_tag="b2b"), UE_UDP, 1.3)
    assert itxn.state is S.CONFIRMED
    drain_all(layer, 1.3)
    assert len(layer) == 0


def test_server_cancel_without_invite() -> None:
    layer = TransactionLayer()
    cancel = request("CANCEL")
    ctxn = layer.receive_request(cancel, UE_UDP, 0.0)
    assert ctxn is not None and ctxn.cancelled_invite is None  # TU answers 481
    assert layer.find_invite_for_cancel(cancel) is None


def test_build_cancel_headers() -> None:
    inv = request("INVITE", routes=("<sip:a;lr>",))
    c = build_cancel(inv)
    c2 = parse_message(c.serialize())
    assert c2.method == "CANCEL" and c2.uri == inv.uri
    assert c2.headers.values("via") == [inv.headers.values("via")[0]]
    assert c2.headers.values("route") == ["<sip:a;lr>"]
    assert c2.headers.get("to") == inv.headers.get("to")
    assert c2.headers.get("from") == inv.headers.get("from")
    assert c2.call_id == inv.call_id and c2.cseq == (1, "CANCEL")
    assert c2.headers.get("max-forwards") == "69"


def test_build_ack_uses_response_to() -> None:
    inv = request("INVITE")
    ack = build_ack(inv, response(inv, 404, to_tag="zz"))
    assert header_tag(ack.headers.get("to")) == "zz"
    assert ack.cseq == (1, "ACK")


def test_client_cancel_deferred_until_provisional() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", routes=("<sip:scscf;lr>",))
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    layer.datagrams_to_send()
    # §9.1: no provisional yet -> the CANCEL waits.
    assert layer.cancel(txn, 0.1) is None
    assert txn.cancel_requested
    assert layer.datagrams_to_send() == [] and layer.client_count == 1
    assert layer.cancel(txn, 0.2) is None  # idempotent
    got = layer.receive_response(response(inv, 100, "Trying"), CORE_UDP, 0.3)
    assert got is not None and got[0] is txn
    out = layer.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == CORE_UDP
    cancel = parse_message(out[0][0])
    assert cancel.method == "CANCEL"
    assert cancel.headers.values("via") == [inv.headers.values("via")[0]]
    assert layer.client_count == 2
    # The CANCEL's own client transaction: 200 reaches the TU marked as such.
    got = layer.receive_response(response(cancel, 200), CORE_UDP, 0.4)
    assert got is not None
    ctxn = got[0]
    assert isinstance(ctxn, ClientTransaction)
    assert ctxn.method == "CANCEL" and ctxn.cancelled_invite is txn
    # Then the 487, which the layer ACKs.
    got = layer.receive_response(response(inv, 487, "Request Terminated"), CORE_UDP, 0.5)
    assert got is not None and got[1].status == 487
    assert parse_message(layer.datagrams_to_send()[0][0]).method == "ACK"
    drain_all(layer, 0.5)
    assert len(layer) == 0


def test_client_cancel_in_proceeding_is_immediate_and_not_after_final() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    layer.receive_response(response(inv, 180), CORE_UDP, 0.1)
    layer.datagrams_to_send()
    c = layer.cancel(txn, 0.2)
    assert c is not None and c.method == "CANCEL"
    assert layer.datagrams_to_send() == [(c.serialize(), CORE_UDP)]
    assert layer.cancel(txn, 0.3) is None
    # After a final response, no CANCEL (§9.1).
    inv2 = request("INVITE")
    t2 = layer.send_request(inv2, CORE_UDP, 0.0)
    layer.receive_response(response(inv2, 486), CORE_UDP, 0.1)
    assert layer.cancel(t2, 0.2) is None
    # Non-INVITE transactions are not cancelled by the layer.
    t3 = layer.send_request(request("OPTIONS"), CORE_UDP, 0.0)
    assert layer.cancel(t3, 0.1) is None


def test_client_cancel_pending_dropped_on_final() -> None:
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.send_request(inv, CORE_UDP, 0.0)
    layer.cancel(txn, 0.1)
    layer.receive_response(response(inv, 486), CORE_UDP, 0.2)
    out = [parse_message(d).method for d, _ in layer.datagrams_to_send()]
    assert out == ["INVITE", "ACK"]  # no CANCEL
    assert layer.client_count == 1


# --- strays, transport errors --------------------------------------------------------------------


def test_stray_ack_without_any_transaction() -> None:
    layer = TransactionLayer()
    ack = request("ACK", to_tag="x")
    assert layer.receive_request(ack, UE_UDP, 0.0) is None
    ev = layer.next_event()
    assert isinstance(ev, StrayAck) and ev.msg is ack
    assert len(layer) == 0


def test_stray_response_with_garbage_via() -> None:
    layer = TransactionLayer()
    r = response(request("INVITE"), 200)
    r.headers.set("Via", "garbage")
    assert layer.receive_response(r, CORE_UDP, 0.0) is None
    assert isinstance(layer.next_event(), StrayResponse)


def test_send_stateless() -> None:
    layer = TransactionLayer()
    ack = request("ACK", to_tag="x")
    layer.send_stateless(ack, CORE_UDP)
    assert layer.datagrams_to_send() == [(ack.serialize(), CORE_UDP)]
    assert len(layer) == 0 and layer.get_timer() is None


def test_transport_error_on_client_transaction() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request("INVITE"), CORE_UDP, 0.0)
    layer.transport_error(txn, 0.1)
    evs = events(layer)
    assert [type(e) for e in evs] == [TransportError, TransactionTerminated]
    assert isinstance(evs[0], TransportError) and evs[0].txn is txn
    assert txn.terminated
    assert len(layer) == 0 and layer.get_timer() is None
    layer.transport_error(txn, 0.2)  # idempotent
    assert events(layer) == []


def test_transport_error_by_connection_and_by_address() -> None:
    layer = TransactionLayer()
    s1 = layer.receive_request(request("INVITE", transport="TCP"), UE_TCP, 0.0)
    s2 = layer.receive_request(request("OPTIONS"), UE_UDP, 0.0)
    c1 = layer.send_request(request("INVITE"), CORE_TCP, 0.0)
    c2 = layer.send_request(request("OPTIONS"), CORE_UDP, 0.0)
    layer.transport_error(Peer("tcp", "ignored", 0, conn_id=7), 0.1)
    errs = [e.txn for e in events(layer) if isinstance(e, TransportError)]
    assert errs == [s1]
    layer.transport_error(Peer("udp", "198.51.100.1", 5060), 0.1)
    errs = [e.txn for e in events(layer) if isinstance(e, TransportError)]
    assert errs == [c2]
    assert s2 is not None and s2.state is S.TRYING
    assert c1.state is S.CALLING
    assert layer.server_count == 1 and layer.client_count == 1


# --- leaks and the timer heap --------------------------------------------------------------------


def test_no_leaks_after_many_transactions() -> None:
    layer = TransactionLayer()
    now = 0.0
    for i in range(500):
        now = i * 0.01
        peer_in, peer_out = (UE_UDP, CORE_UDP) if i % 2 else (UE_TCP, CORE_TCP)
        tr = "UDP" if i % 2 else "TCP"
        # server INVITE answered 486 and ACKed, or answered 200
        b = new_branch()
        inv = request("INVITE", branch=b, transport=tr, call_id=f"c{i}")
        st = layer.receive_request(inv, peer_in, now)
        assert st is not None
        if i % 3:
            layer.send_response(st, make_response(inv, 486, "Busy", to_tag="t"), now)
            layer.receive_request(
                request("ACK", branch=b, transport=tr, call_id=f"c{i}", to_tag="t"), peer_in, now
            )
        else:
            layer.send_response(st, make_response(inv, 200, "OK", to_tag="t"), now)
        # client INVITE answered 180 then 200/487, a client OPTIONS answered or timing out
        cinv = request("INVITE", call_id=f"d{i}")
        ct = layer.send_request(cinv, peer_out, now)
        layer.receive_response(response(cinv, 180), peer_out, now)
        if i % 4 == 0:
            layer.cancel(ct, now)
        layer.receive_response(response(cinv, 200 if i % 2 else 487), peer_out, now)
        opt = request("OPTIONS", call_id=f"e{i}")
        layer.send_request(opt, peer_out, now)
        if i % 5:
            layer.receive_response(response(opt, 200), peer_out, now)
        # server non-INVITE
        reg = request("REGISTER", transport=tr, call_id=f"f{i}")
        sr = layer.receive_request(reg, peer_in, now)
        assert sr is not None
        layer.send_response(sr, make_response(reg, 200, "OK", to_tag="t"), now)
        layer.datagrams_to_send()
        events(layer)
    assert len(layer) > 0
    drain_all(layer, now)
    assert layer.server_count == 0 and layer.client_count == 0
    assert layer.pending_timers == 0 and layer.get_timer() is None


def test_heap_is_compacted_when_mostly_stale() -> None:
    layer = TransactionLayer()
    n = HEAP_COMPACT_MIN * 3
    for i in range(n):
        req = request("OPTIONS", call_id=f"x{i}")
        layer.send_request(req, CORE_UDP, 0.0)
        layer.receive_response(response(req, 200), CORE_UDP, 0.0)  # cancels E and F
    # Each transaction now holds only Timer K; the dead E/F entries were compacted away.
    assert layer.pending_timers < 2 * n
    assert layer.get_timer() == 5.0
    drain_all(layer)
    assert len(layer) == 0 and layer.pending_timers == 0


def test_handle_timer_late_fires_everything_due_in_order() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request("INVITE"), CORE_UDP, 0.0)
    layer.datagrams_to_send()
    layer.handle_timer(1000.0)  # a very late loop: A once, then B
    assert len(layer.datagrams_to_send()) == 1
    assert [type(e) for e in events(layer)] == [ClientTimeout, TransactionTerminated]
    assert txn.state is S.TERMINATED and layer.get_timer() is None


def test_user_data_slot_and_repr() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request("INVITE"), CORE_UDP, 0.0)
    txn.user_data = {"ctx": 1}
    assert txn.user_data == {"ctx": 1}
    assert "INVITE" in repr(txn)
    with pytest.raises(AttributeError):
        txn.nonexistent = 1  # type: ignore[attr-defined]


def test_small_t1_scales_schedules() -> None:
    layer = TransactionLayer(Timers(T1=0.125, T2=1.0, T4=1.25, D=8.0))
    layer.send_request(request("INVITE"), CORE_UDP, 0.0)
    layer.datagrams_to_send()
    sent = run_timers(layer, 100.0)
    assert times(sent) == [0.125, 0.375, 0.875, 1.875, 3.875, 7.875]
    assert isinstance(layer.next_event(), ClientTimeout)


def test_make_response_487_for_cancelled_invite_helper() -> None:
    inv = request("INVITE")
    r = make_response(inv, 487, "Request Terminated", to_tag="abc")
    assert r.status == 487 and header_tag(r.headers.get("to")) == "abc"
    assert r.cseq == (1, "INVITE")
