"""Property tests: random interleavings of messages, TU actions and time never raise, keep the
tables consistent, and always drain to empty tables and an empty timer heap."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pcscf_alg.sip.message import SipMessage, make_response
from pcscf_alg.sip.transaction import (
    ClientTransaction,
    Peer,
    ServerTransaction,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    new_branch,
)

from .txn_helpers import CORE_TCP, CORE_UDP, UE_TCP, UE_UDP, drain_all, request, response

STATUSES = [100, 180, 183, 200, 202, 302, 404, 486, 487, 500, 503, 603]
SERVER_METHODS = ["INVITE", "OPTIONS", "REGISTER", "BYE"]
CLIENT_METHODS = ["INVITE", "MESSAGE", "SUBSCRIBE"]

op = st.one_of(
    st.tuples(st.just("new_server"), st.sampled_from(SERVER_METHODS), st.booleans()),
    st.tuples(st.just("retransmit"), st.integers(0, 20)),
    st.tuples(st.just("cancel_in"), st.integers(0, 20)),
    st.tuples(st.just("ack_in"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("respond"), st.integers(0, 20), st.sampled_from(STATUSES)),
    st.tuples(st.just("new_client"), st.sampled_from(CLIENT_METHODS), st.booleans()),
    st.tuples(st.just("response_in"), st.integers(0, 20), st.sampled_from(STATUSES)),
    st.tuples(st.just("cancel_out"), st.integers(0, 20)),
    st.tuples(st.just("transport_error"), st.integers(0, 20)),
    st.tuples(st.just("peer_error"), st.sampled_from([UE_TCP, CORE_UDP])),
    st.tuples(st.just("stray"), st.booleans()),
    st.tuples(st.just("advance"), st.floats(0.0, 40.0, allow_nan=False)),
)


def _check_consistent(layer: TransactionLayer) -> None:
    for t in list(layer._server.values()) + list(layer._client.values()):
        assert t.state is not TransactionState.TERMINATED


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=60))
def test_random_interleavings_drain(ops: list[tuple[Any, ...]]) -> None:
    layer = TransactionLayer()
    now = 0.0
    servers: list[tuple[ServerTransaction, SipMessage, Peer]] = []
    clients: list[tuple[ClientTransaction, SipMessage]] = []
    created: list[ClientTransaction | ServerTransaction] = []
    terminated: set[int] = set()

    def drain() -> None:
        layer.datagrams_to_send(now)
        while (ev := layer.next_event()) is not None:
            if isinstance(ev, TransactionTerminated):
                assert id(ev.txn) not in terminated  # terminated once only
                terminated.add(id(ev.txn))

    for item in ops:
        kind = item[0]
        if kind == "new_server":
            method, tcp = item[1], item[2]
            peer = UE_TCP if tcp else UE_UDP
            req = request(str(method), transport="TCP" if tcp else "UDP", branch=new_branch())
            txn = layer.receive_request(req, peer, now)
            assert txn is not None
            servers.append((txn, req, peer))
            created.append(txn)
        elif kind == "retransmit" and servers:
            txn, req, peer = servers[int(item[1]) % len(servers)]
            again = layer.receive_request(req, peer, now)
            if again is not None:  # only once the original is gone
                assert txn.state is TransactionState.TERMINATED
                servers.append((again, req, peer))
                created.append(again)
        elif kind == "cancel_in" and servers:
            _, req, peer = servers[int(item[1]) % len(servers)]
            c = req.copy()
            c.method = "CANCEL"
            c.headers.set("CSeq", f"{req.cseq[0]} CANCEL")
            c.invalidate()
            ct = layer.receive_request(c, peer, now)
            if ct is not None:
                servers.append((ct, c, peer))
                created.append(ct)
        elif kind == "ack_in" and servers:
            _, req, peer = servers[int(item[1]) % len(servers)]
            a = req.copy()
            a.method = "ACK"
            a.headers.set("CSeq", f"{req.cseq[0]} ACK")
            if not item[2]:
                a.headers.set("Via", f"SIP/2.0/UDP 192.0.2.10;branch={new_branch()}")
            a.invalidate()
            assert layer.receive_request(a, peer, now) is None
        elif kind == "respond" and servers:
            txn, req, _ = servers[int(item[1]) % len(servers)]
            layer.send_response(txn, make_response(req, int(item[2]), "X", to_tag="t"), now)
        elif kind == "new_client":
            method, tcp = item[1], item[2]
            req = request(str(method), transport="TCP" if tcp else "UDP")
            ctxn = layer.send_request(req, CORE_TCP if tcp else CORE_UDP, now)
            clients.append((ctxn, req))
            created.append(ctxn)
        elif kind == "response_in" and clients:
            ctxn, req = clients[int(item[1]) % len(clients)]
            layer.receive_response(response(req, int(item[2])), ctxn.peer, now)
        elif kind == "cancel_out" and clients:
            ctxn, _ = clients[int(item[1]) % len(clients)]
            sent = layer.cancel(ctxn, now)
            assert sent is None or sent.method == "CANCEL"
        elif kind == "transport_error" and (servers or clients):
            pool: list[ClientTransaction | ServerTransaction] = [s[0] for s in servers] + [
                c[0] for c in clients
            ]
            layer.transport_error(pool[int(item[1]) % len(pool)], now)
        elif kind == "peer_error":
            layer.transport_error(item[1], now)
        elif kind == "stray":
            r = response(request("INVITE"), 200)
            if item[1]:
                assert layer.receive_response(r, CORE_UDP, now) is None
            else:
                assert layer.receive_request(request("ACK", to_tag="x"), UE_UDP, now) is None
        elif kind == "advance":
            now += float(item[1])
            layer.handle_timer(now)
        drain()
        _check_consistent(layer)
        deadline = layer.get_timer()
        assert deadline is None or deadline > now

    # Let every pending INVITE finish (Proceeding has no timer on its own: TU decides).
    for txn, req, _ in servers:
        if txn.state is TransactionState.PROCEEDING or txn.state is TransactionState.TRYING:
            layer.send_response(txn, make_response(req, 500, "X", to_tag="t"), now)
    for ctxn, req in clients:
        if ctxn.state is TransactionState.PROCEEDING:
            layer.receive_response(response(req, 408), ctxn.peer, now)
    # CANCEL client transactions created by the layer are drained by their own timers.
    drain()
    now = drain_all(layer, now)
    assert layer.server_count == 0 and layer.client_count == 0
    assert layer.pending_timers == 0 and layer.get_timer() is None
    assert all(t.terminated for t in created)
