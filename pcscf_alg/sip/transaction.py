"""SIP transactions (RFC 3261 §17, updated by RFC 6026) as sans-IO state machines.

The `TransactionLayer` owns every client and server transaction. It never touches a socket or
a clock: the caller passes messages in with the current time (`now`, float seconds from the
caller's monotonic clock), then drains the layer, aioquic style (docs/design.md §2.1):

    txn = layer.receive_request(msg, source, now)     # or receive_response(...)
    while (ev := layer.next_event()) is not None: ...  # timeouts, strays, terminations
    for data, peer in layer.datagrams_to_send(): ...   # bytes to put on the wire
    deadline = layer.get_timer()                       # re-arm ONE timer; on expiry:
    layer.handle_timer(now)

What the layer does by itself, so that the TU (the proxy core) never has to:
  * absorbs request retransmissions and re-sends the last response (§17.2.1, §17.2.2);
  * sends `100 Trying` for a new INVITE (§16.2 / §17.2.1; `auto_trying=True`);
  * retransmits requests (Timers A/E) and non-2xx INVITE finals (Timer G) on unreliable
    transports, and times transactions out (B/F -> `ClientTimeout`, H -> `ServerTimeout`);
  * generates and re-sends the ACK for a non-2xx final response (§17.1.1.3);
  * absorbs ACKs for non-2xx finals (Completed -> Confirmed, §17.2.1);
  * keeps INVITE transactions in the RFC 6026 "Accepted" state after a 2xx (Timers L/M), so
    INVITE retransmissions are absorbed and 2xx retransmissions reach the TU;
  * builds and sends CANCEL once a provisional has arrived (§9.1);
  * removes terminated transactions from its tables (emits `TransactionTerminated`).

What it hands to the TU:
  * `receive_request` returns a NEW `ServerTransaction` (the TU must handle the request) or
    None (absorbed). ACKs never create a transaction: an ACK that is not absorbed (ACK for a 2xx,
    which is end to end, or an ACK matching nothing) is queued as a `StrayAck` event.
  * A CANCEL gets its own server transaction (§9.2); `txn.cancelled_invite` is the INVITE server
    transaction it matches, or None (the TU then answers 481). The TU answers 200 to the
    CANCEL and, if the INVITE is still Proceeding (§9.2: a CANCEL has no effect once a final
    was sent), 487 to the INVITE (`make_response(invite.request, 487, "Request Terminated",
    to_tag=...)`), and cancels its own client branches with `cancel()`.
  * `receive_response` returns `(client_txn, response)` when the TU should see the response
    (provisionals, the first final, 2xx retransmissions in Accepted) or None (absorbed). A
    response that matches no transaction is queued as a `StrayResponse` event (§16.7 lets the
    TU forward a stray 2xx statelessly).

Matching (§17.1.3, §17.2.3): server transactions are keyed on (top-Via branch, sent-by,
method), with ACK mapped to INVITE. Requests without the RFC 3261 magic cookie (RFC 2543
peers) fall back to a documented simplification of §17.2.3's last paragraph: the key is
(Call-ID, CSeq number, From tag, whitespace-free lower-cased top Via, method), again with ACK
mapped to INVITE. The Request-URI and To tag are left out: for the ACK of a non-2xx final and for
CANCEL they equal the INVITE's anyway (§17.1.1.3, §9.1), and leaving them out lets the same key
match all three. Client transactions are keyed on (top-Via branch, CSeq method).

Memory (issue 11 item 6: a flood of unauthenticated REGISTERs must cost little, and boundedly):
  * `max_server_transactions` caps the live server transactions of a layer; a request that
    would create one more is answered `503 Service Unavailable` with `Retry-After` statelessly
    (RFC 3261 §21.5.4, §20.33; §16.3 lets a proxy that cannot take the request reject it) and
    leaves nothing behind. Retransmissions of live transactions, and a CANCEL of a live INVITE
    (it frees state), are still handled. The ACK to such a 503 (its To tag starts with
    `OVERLOAD_TAG`) is absorbed.
  * once a non-INVITE transaction is Completed it keeps only what §17 still needs: its key,
    peer and timers, and for a server transaction the serialised final response it re-sends
    on retransmissions. The parsed request, the parsed response and `user_data` are released
    (`released` becomes True; reading `request` then raises `TransactionReleased`, and
    `last_response` of a server transaction is re-parsed from the cached bytes). A non-INVITE
    client transaction never keeps the parsed request: it retransmits the serialised bytes.
    INVITE transactions keep theirs (ACK and CANCEL are built from it, §17.1.1.3, §9.1).

Time: every timer is one entry in a heap with lazy deletion (a transaction remembers the sequence
number of its live entries; stale entries are skipped when they surface and the heap is compacted
when they dominate), so `get_timer()` and scheduling are O(log n) at thousands of transactions.
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
import secrets
from collections import deque
from dataclasses import dataclass
from itertools import chain
from typing import TypeAlias

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import MAGIC_COOKIE, Via, header_tag
from pcscf_alg.sip.message import Headers, SipMessage, make_response, parse_message

log = logging.getLogger(__name__)

# Transports on which SIP does not retransmit (RFC 3261 §17.1.1.2, §18; RFC 4168 SCTP; RFC 7118
# WebSocket). Timers A, E, G are not run on them, and D, I, J, K are zero.
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "sctp", "tls-sctp", "ws", "wss"})

# Heap compaction: rebuild the timer heap when more than half of it is stale and it holds more
# than this many entries. Stale entries appear whenever a timer is cancelled before it fires
# (Timer B of every INVITE answered within 32 s, Timer F of every answered non-INVITE...), so
# at 1000 calls/s the heap would otherwise carry ~64*T1*rate dead entries. 4096 keeps small
# layers from ever paying for a rebuild.
HEAP_COMPACT_MIN = 4096

# RFC 3261 §8.1.1.6: Max-Forwards SHOULD be 70 in a request a UAC originates. Used for the ACK and
# CANCEL we generate when the original request carries none (it always should).
DEFAULT_MAX_FORWARDS = "70"

# To-tag prefix of the 503 sent statelessly when the server-transaction cap is reached: the
# ACK to it (§17.1.1.3, hop by hop) is recognised by it and absorbed, not routed as a stray.
OVERLOAD_TAG = "ovl503-"

# Timers that retransmit (at most one per transaction at a time) vs those that end a state.
_RETRANSMIT_TIMERS = frozenset({"A", "E", "G"})


def new_branch() -> str:
    """A fresh Via branch: the RFC 3261 magic cookie plus 64 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 / Table 4 base values (seconds). Configurable so tests can shrink them."""

    T1: float = 0.5  # RTT estimate
    T2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    T4: float = 5.0  # maximum time a message stays in the network
    # Timer D is not a multiple of T1: RFC 3261 Table 4 says "> 32s for UDP".
    D: float = 32.0

    def __post_init__(self) -> None:
        # T1 > 0: every retransmit interval derives from it; 0 would make handle_timer spin.
        if not (self.T1 > 0 and self.T2 >= self.T1 and self.T4 >= 0 and self.D >= 0):
            raise ValueError(f"invalid SIP timers {self!r}")

    @property
    def B(self) -> float:  # INVITE transaction timeout (§17.1.1.2)
        return 64 * self.T1

    @property
    def F(self) -> float:  # non-INVITE transaction timeout (§17.1.2.2)
        return 64 * self.T1

    @property
    def H(self) -> float:  # wait time for ACK receipt (§17.2.1)
        return 64 * self.T1

    @property
    def J(self) -> float:  # wait time for non-INVITE request retransmits (§17.2.2), unreliable
        return 64 * self.T1

    @property
    def L(self) -> float:  # RFC 6026 §8.7: wait time for accepted INVITE retransmits
        return 64 * self.T1

    @property
    def M(self) -> float:  # RFC 6026 §8.4: wait time for retransmissions of 2xx
        return 64 * self.T1


DEFAULT_TIMERS = Timers()


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from / goes to. `conn_id` names the stream connection (TCP/TLS) a
    request arrived on, so that its responses go back on the same one (RFC 3261 §18.2.2)."""

    transport: str  # 'udp' | 'tcp' | 'tls' | ...
    host: str
    port: int
    conn_id: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport.lower() in RELIABLE_TRANSPORTS


class TransactionState(enum.Enum):
    """States of RFC 3261 Figures 5-8 plus RFC 6026 "Accepted"."""

    CALLING = "Calling"  # INVITE client
    TRYING = "Trying"  # non-INVITE client and server
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"  # INVITE server, after ACK
    ACCEPTED = "Accepted"  # RFC 6026, INVITE client and server after a 2xx
    TERMINATED = "Terminated"


State = TransactionState
_S = TransactionState

TxKey: TypeAlias = tuple[str, ...]


class TransactionReleased(RuntimeError):
    """The parsed request of a transaction was read after the layer released it (see the
    module docstring, "Memory")."""


class Transaction:
    """Fields shared by client and server transactions. `user_data` belongs to the TU (the
    layer drops its reference when it releases a Completed non-INVITE transaction)."""

    __slots__ = (
        "_interval",
        "_last",
        "_life",
        "_out",
        "_request",
        "_rtx",
        "branch",
        "is_invite",
        "key",
        "method",
        "peer",
        "released",
        "state",
        "user_data",
    )

    def __init__(
        self, key: TxKey, request: SipMessage, peer: Peer, state: TransactionState, branch: str
    ) -> None:
        self.key = key
        self._request: SipMessage | None = request
        self.method: str = request.method or ""
        self.is_invite = self.method == "INVITE"
        self.peer = peer
        self.state = state
        self.branch = branch
        self._last: SipMessage | None = None
        self.user_data: object | None = None
        # True once the layer dropped the parsed messages (Completed non-INVITE).
        self.released = False
        # Internal: wire bytes to retransmit (request for a client, last response for a server),
        # current retransmit interval, heap sequence numbers of the live retransmit / lifetime
        # timers (0 = none).
        self._out = b""
        self._interval = 0.0
        self._rtx = 0
        self._life = 0

    @property
    def request(self) -> SipMessage:
        """The request that created the transaction (for a server transaction: as received)."""
        req = self._request
        if req is None:
            raise TransactionReleased(f"{self!r}: request released")
        return req

    @property
    def last_response(self) -> SipMessage | None:
        """The last response sent (server) or received (client); None when none, or when a
        client transaction was released."""
        return self._last

    def _release(self) -> None:
        """Keep only what absorbing retransmissions needs (see the module docstring)."""
        self._request = None
        self._last = None
        self.user_data = None
        self.released = True

    @property
    def terminated(self) -> bool:
        return self.state is _S.TERMINATED

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.branch} {self.state.value}>"


class ClientTransaction(Transaction):
    """RFC 3261 §17.1. `ack` is the ACK we generated for a non-2xx final (INVITE only);
    `cancelled_invite` is set on a CANCEL transaction the layer created via `cancel()`."""

    __slots__ = ("_ack_out", "_cancel_pending", "ack", "cancel_requested", "cancelled_invite")

    def __init__(
        self, key: TxKey, request: SipMessage, peer: Peer, state: TransactionState, branch: str
    ) -> None:
        super().__init__(key, request, peer, state, branch)
        self.ack: SipMessage | None = None
        self._ack_out = b""
        self.cancel_requested = False
        self._cancel_pending = False
        self.cancelled_invite: ClientTransaction | None = None

    def _release(self) -> None:
        super()._release()
        # Completed: the request is never retransmitted again (§17.1.2.2). `cancelled_invite`
        # stays: the TU reads it with the CANCEL's response, and the INVITE is alive anyway.
        self._out = b""


class ServerTransaction(Transaction):
    """RFC 3261 §17.2. For a CANCEL, `cancelled_invite` is the INVITE server transaction it
    matched (§9.2) or None (answer 481); on that INVITE transaction `cancelled` becomes True."""

    __slots__ = ("cancelled", "cancelled_invite")

    def __init__(
        self, key: TxKey, request: SipMessage, peer: Peer, state: TransactionState, branch: str
    ) -> None:
        super().__init__(key, request, peer, state, branch)
        self.cancelled = False
        self.cancelled_invite: ServerTransaction | None = None

    @property
    def last_response(self) -> SipMessage | None:
        # Released: the final response survives as the bytes re-sent on retransmissions; a
        # reader (rare: logs, tests) gets it parsed again rather than every transaction
        # keeping both forms.
        if self._last is None and self.released and self._out:
            return parse_message(self._out)
        return self._last

    def _release(self) -> None:
        super()._release()
        self.cancelled_invite = None


AnyTransaction: TypeAlias = ClientTransaction | ServerTransaction


# --- Events ---------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class ClientTimeout:
    """Timer B or F fired (§17.1.1.2, §17.1.2.2): the TU acts as if a 408 was received."""

    txn: ClientTransaction


@dataclass(slots=True, eq=False)
class ServerTimeout:
    """Timer H fired (§17.2.1): the ACK for our non-2xx final never came."""

    txn: ServerTransaction


@dataclass(slots=True, eq=False)
class TransactionTerminated:
    """The transaction reached Terminated and left the layer's tables (cleanup hook)."""

    txn: AnyTransaction


@dataclass(slots=True, eq=False)
class TransportError:
    """The adapter reported a send failure (§17.1.4, §17.2.4): a client TU answers 503."""

    txn: AnyTransaction


@dataclass(slots=True, eq=False)
class StrayAck:
    """An ACK that no transaction absorbed: the ACK for a 2xx (end to end, §17.2.3/§13.2.2.4),
    or one matching nothing. The TU routes or drops it."""

    msg: SipMessage
    source: Peer


@dataclass(slots=True, eq=False)
class StrayResponse:
    """A response matching no client transaction (§16.7: a proxy forwards a stray 2xx
    statelessly; other strays are normally dropped)."""

    msg: SipMessage
    source: Peer


Event: TypeAlias = (
    ClientTimeout
    | ServerTimeout
    | TransactionTerminated
    | TransportError
    | StrayAck
    | StrayResponse
)


# --- Message builders --------------------------------------------------------------------------


def _copy_fields(src: SipMessage, dst: Headers, key: str) -> None:
    for name, k, value in src.headers._fields:
        if k == key:
            dst._fields.append([name, k, value])


def build_ack(request: SipMessage, response: SipMessage) -> SipMessage:
    """The ACK for a non-2xx final response to `request` (RFC 3261 §17.1.1.3).

    Same Request-URI, Call-ID, From and CSeq number as the INVITE; To from the response (it
    carries the tag); one Via equal to the INVITE's top Via (so the branch matches the server
    transaction); the INVITE's Route headers (so the ACK follows the INVITE's path).
    """
    h = Headers()
    top_via = request.headers.first_value("via") or ""
    h.add(_name_of(request, "via", "Via"), top_via)
    h.add("Max-Forwards", request.headers.get("max-forwards") or DEFAULT_MAX_FORWARDS)
    _copy_fields(request, h, "route")
    _copy_fields(request, h, "from")
    _copy_fields(response, h, "to")
    _copy_fields(request, h, "call-id")
    h.add("CSeq", f"{request.cseq[0]} ACK")
    h.add("Content-Length", "0")
    return SipMessage(headers=h, method="ACK", uri=request.uri)


def build_cancel(request: SipMessage) -> SipMessage:
    """The CANCEL for `request` (RFC 3261 §9.1): same Request-URI, Call-ID, To (no tag), From,
    CSeq number with method CANCEL, a single Via equal to the request's top Via (same branch, so
    the next hop matches it to the INVITE, §9.2), and the request's Route headers."""
    h = Headers()
    h.add(_name_of(request, "via", "Via"), request.headers.first_value("via") or "")
    h.add("Max-Forwards", request.headers.get("max-forwards") or DEFAULT_MAX_FORWARDS)
    _copy_fields(request, h, "route")
    _copy_fields(request, h, "from")
    _copy_fields(request, h, "to")
    _copy_fields(request, h, "call-id")
    h.add("CSeq", f"{request.cseq[0]} CANCEL")
    h.add("Content-Length", "0")
    return SipMessage(headers=h, method="CANCEL", uri=request.uri)


def _name_of(msg: SipMessage, key: str, default: str) -> str:
    for name, k, _ in msg.headers._fields:
        if k == key:
            return "Via" if name in ("v", "V") else name
    return default


def server_key(msg: SipMessage) -> TxKey:
    """Server transaction key of a request (RFC 3261 §17.2.3); ACK maps to INVITE.

    Raises SipParseError if the top Via is missing or malformed.
    """
    via_raw = msg.headers.first_value("via")
    if not via_raw:
        raise SipParseError("Missing Via header")
    via = Via.parse(via_raw)
    method = msg.method or ""
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        # §17.2.3: branch + sent-by (host and port) + method. A missing port is the transport's
        # default (§18.2.1 / §19.1.2) so "host" and "host:5060" are the same sent-by.
        port = via.port if via.port is not None else (5061 if via.transport == "TLS" else 5060)
        return (branch, via.host.lower(), str(port), method)
    # RFC 2543 peer (no magic cookie): simplified §17.2.3 last paragraph, see module docstring.
    # The leading "" cannot collide with a cookie branch.
    return (
        "",
        msg.call_id,
        str(msg.cseq[0]),
        header_tag(msg.headers.get("from")) or "",
        "".join(via_raw.split()).lower(),
        method,
    )


# --- The layer ----------------------------------------------------------------------------------


class TransactionLayer:
    """Owns every transaction; see the module docstring for the calling pattern."""

    def __init__(
        self,
        timers: Timers = DEFAULT_TIMERS,
        *,
        auto_trying: bool = True,
        max_server_transactions: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """`max_server_transactions`: the cap of live server transactions (None: no cap);
        `retry_after`: the Retry-After seconds of the 503 beyond it (default: Timer J rounded
        up, the longest a Completed non-INVITE server transaction holds its slot)."""
        if max_server_transactions is not None and max_server_transactions < 1:
            raise ValueError("max_server_transactions must be at least 1")
        self.timers = timers
        self.auto_trying = auto_trying
        self.max_server_transactions = max_server_transactions
        self.retry_after = retry_after if retry_after is not None else math.ceil(timers.J)
        # Requests answered 503 because of the cap (metrics).
        self.rejected_overload = 0
        self._server: dict[TxKey, ServerTransaction] = {}
        self._client: dict[TxKey, ClientTransaction] = {}
        self._heap: list[tuple[float, int, AnyTransaction, str]] = []
        self._seq = 0
        self._stale = 0
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Peer]] = []

    # -- introspection --
    @property
    def server_count(self) -> int:
        return len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    @property
    def pending_timers(self) -> int:
        """Heap entries, live and stale (for leak tests and metrics)."""
        return len(self._heap)

    def __len__(self) -> int:
        return len(self._server) + len(self._client)

    # -- output draining --
    def datagrams_to_send(self, now: float | None = None) -> list[tuple[bytes, Peer]]:
        """Messages to send, in order. Retransmissions reuse the first serialisation's bytes.
        `now` is accepted for symmetry with aioquic and ignored."""
        out = self._out
        self._out = []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def send_stateless(self, msg: SipMessage, dest: Peer) -> None:
        """Send outside any transaction: the ACK for a 2xx, a forwarded 2xx retransmission."""
        self._out.append((msg.serialize(), dest))

    # -- server side (§17.2) --
    def receive_request(
        self, msg: SipMessage, source: Peer, now: float
    ) -> ServerTransaction | None:
        """Match a request to a server transaction (§17.2.3).

        Returns the NEW transaction the TU must handle, or None when the layer dealt with the
        request (a retransmission, an ACK for a non-2xx final, or an ACK queued as `StrayAck`).
        Raises SipParseError when the top Via is unusable (the caller drops or answers 400).
        """
        if msg.method is None:
            raise ValueError("receive_request needs a request")
        key = server_key(msg)
        txn = self._server.get(key)
        if msg.method == "ACK":
            if txn is None and (header_tag(msg.headers.get("to")) or "").startswith(OVERLOAD_TAG):
                return None  # §17.1.1.3: the ACK to our stateless 503 ends here (hop by hop)
            if txn is not None and txn.is_invite:
                if txn.state is _S.COMPLETED:
                    # §17.2.1: ACK in Completed -> Confirmed; stop G and H; Timer I absorbs
                    # ACK retransmissions (T4 unreliable, zero on reliable transports).
                    txn.state = _S.CONFIRMED
                    self._cancel_timers(txn)
                    if txn.peer.reliable:
                        self._terminate(txn)
                    else:
                        self._schedule(txn, "I", self.timers.T4, now)
                    return None
                if txn.state is _S.CONFIRMED:
                    return None  # §17.2.1: ACK retransmission absorbed in Confirmed
            # ACK for a 2xx (RFC 6026 §8.7: passed to the TU in Accepted) or matching nothing.
            self._events.append(StrayAck(msg, source))
            return None
        if txn is not None:
            self._absorb(txn, source)
            return None
        cap = self.max_server_transactions
        if cap is not None and len(self._server) >= cap and not self._cancels_live_invite(key):
            self._reject_overload(msg, source)
            return None
        branch = key[0]
        if msg.method == "INVITE":
            # §17.2.1: a new INVITE server transaction starts in Proceeding.
            txn = ServerTransaction(key, msg, source, _S.PROCEEDING, branch)
            self._server[key] = txn
            if self.auto_trying:
                # §16.2/§17.2.1: 100 Trying at once quenches the upstream Timer A; §8.2.6.1 says
                # it copies Timestamp.
                ts = msg.headers.get("timestamp")
                extra = [("Timestamp", ts)] if ts is not None else None
                trying = make_response(msg, 100, "Trying", extra=extra)
                txn._last = trying
                txn._out = trying.serialize()
                self._out.append((txn._out, source))
        else:
            # §17.2.2: a new non-INVITE server transaction starts in Trying.
            txn = ServerTransaction(key, msg, source, _S.TRYING, branch)
            self._server[key] = txn
            if msg.method == "CANCEL":
                invite = self._server.get((*key[:-1], "INVITE"))
                if invite is not None:
                    txn.cancelled_invite = invite
                    invite.cancelled = True
        return txn

    def _cancels_live_invite(self, key: TxKey) -> bool:
        # A CANCEL of a live INVITE passes the cap: it ends state rather than adding any, and
        # there is at most one per INVITE (same key but the method).
        return key[-1] == "CANCEL" and (*key[:-1], "INVITE") in self._server

    def _reject_overload(self, msg: SipMessage, source: Peer) -> None:
        """503 + Retry-After, sent statelessly (RFC 3261 §21.5.4, §20.33): no transaction, no
        timer, no reference to `msg` survives; a retransmission of the request gets another."""
        self.rejected_overload += 1
        resp = make_response(
            msg,
            503,
            "Service Unavailable",
            # §8.2.6.2: a response from a UAS role carries a To tag; ours is recognisable so that
            # the ACK to a 503 for an INVITE is absorbed (see receive_request).
            to_tag=OVERLOAD_TAG + secrets.token_hex(4),
            extra=[("Retry-After", str(self.retry_after))],
        )
        self._out.append((resp.serialize(), source))

    def server_transactions_for(self, msg: SipMessage) -> list[ServerTransaction]:
        """The live server transaction this request belongs to, as a 0- or 1-element list."""
        try:
            key = server_key(msg)
        except SipParseError:
            return []
        txn = self._server.get(key)
        return [txn] if txn is not None else []

    def find_invite_for_cancel(
        self, cancel: SipMessage, source: Peer | None = None
    ) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL matches (§9.2), or None (answer 481)."""
        key = server_key(cancel)
        return self._server.get((*key[:-1], "INVITE"))

    def _absorb(self, txn: ServerTransaction, source: Peer) -> None:
        """A request retransmission (§17.2.1, §17.2.2): re-send the last response, if the
        state calls for it; the TU does not see the request again."""
        # Both kinds re-send in Proceeding (last provisional) and Completed (the final). INVITE
        # in Confirmed, and in Accepted (RFC 6026 §8.7: the 2xx is retransmitted end to end by
        # the TU/UAS), and non-INVITE in Trying (no response yet): absorbed silently.
        st = txn.state
        if (st is _S.PROCEEDING or st is _S.COMPLETED) and txn._out:
            self._out.append((txn._out, source))

    def send_response(
        self, txn: ServerTransaction, response: SipMessage, now: float, dest: Peer | None = None
    ) -> bool:
        """Send a response in a server transaction (§17.2.1, §17.2.2, RFC 6026 §8.7).

        Returns False when the state machine discards it (a final after a final, anything
        after Terminated: a proxy then forwards a late 2xx with `send_stateless`). `dest`
        overrides where this and later responses go (default: the request's source).
        """
        if txn.state is _S.TERMINATED:
            return False
        if dest is not None:
            txn.peer = dest
        status = response.status
        st = txn.state
        if txn.is_invite:
            if st is _S.PROCEEDING:
                self._send_response(txn, response)
                if status < 200:
                    return True
                if status < 300:
                    # RFC 6026 §8.7: 2xx -> Accepted, Timer L absorbs INVITE retransmissions.
                    txn.state = _S.ACCEPTED
                    self._schedule(txn, "L", self.timers.L, now)
                    return True
                # §17.2.1: 3xx-6xx -> Completed; Timer G retransmits it on unreliable
                # transports until the ACK comes, Timer H gives up waiting for the ACK.
                txn.state = _S.COMPLETED
                if not txn.peer.reliable:
                    txn._interval = self.timers.T1
                    self._schedule(txn, "G", self.timers.T1, now)
                self._schedule(txn, "H", self.timers.H, now)
                return True
            if st is _S.ACCEPTED and 200 <= status < 300:
                # RFC 6026 §8.7: further 2xx from the TU are sent (forwarded retransmissions).
                self._send_response(txn, response)
                return True
        elif st is _S.TRYING or st is _S.PROCEEDING:
            self._send_response(txn, response)
            if status < 200:
                txn.state = _S.PROCEEDING  # §17.2.2
                return True
            # §17.2.2: final -> Completed; Timer J absorbs request retransmissions (64*T1
            # unreliable, zero reliable: nothing will be retransmitted). Absorbing needs only
            # the key and the response bytes: the rest is released (module docstring, Memory).
            txn.state = _S.COMPLETED
            txn._release()
            if txn.peer.reliable:
                self._terminate(txn)
            else:
                self._schedule(txn, "J", self.timers.J, now)
            return True
        log.debug("discarding %s in %r", response.short(), txn)
        return False

    def _send_response(self, txn: ServerTransaction, response: SipMessage) -> None:
        txn._last = response
        txn._out = response.serialize()
        self._out.append((txn._out, txn.peer))

    # -- client side (§17.1) --
    def send_request(self, msg: SipMessage, dest: Peer, now: float) -> ClientTransaction:
        """Create a client transaction and send `msg` to `dest`.

        The top Via must carry a branch with the magic cookie (use `new_branch()`), unique among
        live client transactions of this method. ACK is never a transaction (§17.1.1.3: the ACK
        for a 2xx is the TU's; use `send_stateless`).
        """
        method = msg.method
        if method is None or method == "ACK":
            raise ValueError("send_request needs a non-ACK request; send ACK with send_stateless")
        via_raw = msg.headers.first_value("via")
        branch = Via.parse(via_raw).branch if via_raw else None
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise ValueError("client request needs a top Via branch with the magic cookie")
        # §17.1.3: responses match on branch + CSeq method; SipMessage.cseq upper-cases.
        key: TxKey = (branch, method.upper())
        if key in self._client:
            raise ValueError(f"client transaction {key!r} already exists")
        invite = method == "INVITE"
        txn = ClientTransaction(key, msg, dest, _S.CALLING if invite else _S.TRYING, branch)
        self._client[key] = txn
        txn._out = msg.serialize()
        if not invite:
            # Retransmissions (Timer E) re-send these bytes; nothing is ever built from the
            # parsed request of a non-INVITE (no ACK, no CANCEL), so it is not kept.
            txn._request = None
        self._out.append((txn._out, dest))
        t = self.timers
        if not dest.reliable:
            # §17.1.1.2 Timer A / §17.1.2.2 Timer E: first retransmission after T1, unreliable
            # transports only.
            txn._interval = t.T1
            self._schedule(txn, "A" if invite else "E", t.T1, now)
        # Timer B / F: the transaction timeout, on every transport.
        self._schedule(txn, "B" if invite else "F", t.B if invite else t.F, now)
        return txn

    def receive_response(
        self, msg: SipMessage, source: Peer, now: float
    ) -> tuple[ClientTransaction, SipMessage] | None:
        """Match a response to a client transaction (§17.1.3) and run its state machine.

        Returns (txn, response) when the TU should see it, None when absorbed (retransmitted
        final) or stray (then a `StrayResponse` event is queued).
        """
        txn: ClientTransaction | None = None
        via_raw = msg.headers.first_value("via")
        try:
            branch = Via.parse(via_raw).branch if via_raw else None
            if branch:
                txn = self._client.get((branch, msg.cseq[1]))
        except SipParseError:
            txn = None
        if txn is None:
            self._events.append(StrayResponse(msg, source))
            return None
        status = msg.status
        st = txn.state
        if txn.is_invite:
            if st is _S.CALLING or st is _S.PROCEEDING:
                if status < 200:
                    if st is _S.CALLING:
                        # §17.1.1.2: a provisional stops retransmissions; Timer B only guards
                        # the Calling state (a proxy runs Timer C instead, §16.8).
                        txn.state = _S.PROCEEDING
                        self._cancel_timers(txn)
                    txn._last = msg
                    if txn._cancel_pending:
                        # §9.1: the CANCEL waited for the first provisional.
                        txn._cancel_pending = False
                        self._send_cancel(txn, now)
                    return txn, msg
                self._cancel_timers(txn)
                txn._last = msg
                txn._cancel_pending = False
                if status < 300:
                    # RFC 6026 §8.4: 2xx -> Accepted; Timer M lets 2xx retransmissions (and
                    # 2xx from other forks) reach the TU.
                    txn.state = _S.ACCEPTED
                    self._schedule(txn, "M", self.timers.M, now)
                    return txn, msg
                # §17.1.1.2/§17.1.1.3: non-2xx final -> Completed; we ACK it ourselves, and
                # Timer D absorbs final retransmissions (zero on reliable transports).
                txn.state = _S.COMPLETED
                ack = build_ack(txn.request, msg)
                txn.ack = ack
                txn._ack_out = ack.serialize()
                self._out.append((txn._ack_out, txn.peer))
                if txn.peer.reliable:
                    self._terminate(txn)
                else:
                    self._schedule(txn, "D", self.timers.D, now)
                return txn, msg
            if st is _S.COMPLETED and status >= 300:
                # §17.1.1.2: a retransmitted final: re-send the ACK, not passed to the TU.
                self._out.append((txn._ack_out, txn.peer))
                return None
            if st is _S.ACCEPTED and 200 <= status < 300:
                return txn, msg  # RFC 6026 §8.4: every 2xx goes up to the TU
            log.debug("absorbing %s in %r", msg.short(), txn)
            return None
        if st is _S.TRYING or st is _S.PROCEEDING:
            txn._last = msg
            if status < 200:
                # §17.1.2.2: Proceeding; Timer E keeps running and becomes T2 when it fires.
                txn.state = _S.PROCEEDING
                return txn, msg
            # §17.1.2.2: final -> Completed; Timer K absorbs response retransmissions. Only the
            # key matters from now on: the TU gets the response here, later ones are absorbed.
            # `user_data` stays until Terminated, since the TU reads it on this very return.
            txn.state = _S.COMPLETED
            self._cancel_timers(txn)
            user_data = txn.user_data
            txn._release()
            txn.user_data = user_data
            if txn.peer.reliable:
                self._terminate(txn)
            else:
                self._schedule(txn, "K", self.timers.T4, now)
            return txn, msg
        return None  # Completed: retransmission absorbed

    def cancel(self, txn: ClientTransaction, now: float) -> SipMessage | None:
        """Cancel a client INVITE transaction (§9.1).

        Returns the CANCEL sent now (its own non-INVITE client transaction, whose responses and
        timeout reach the TU with `txn.method == "CANCEL"` and `txn.cancelled_invite` set), or
        None: when no provisional has arrived yet the CANCEL is deferred and sent by the layer
        with the first provisional (§9.1 "MUST wait"); after a final response, or for a second
        call, nothing is sent (§9.1 "SHOULD NOT").
        """
        if not txn.is_invite or txn.cancel_requested:
            return None
        if txn.state is _S.CALLING:
            txn.cancel_requested = True
            txn._cancel_pending = True
            return None
        if txn.state is _S.PROCEEDING:
            txn.cancel_requested = True
            return self._send_cancel(txn, now)
        return None

    def _send_cancel(self, txn: ClientTransaction, now: float) -> SipMessage:
        msg = build_cancel(txn.request)
        ctxn = self.send_request(msg, txn.peer, now)  # §9.1: same destination as the INVITE
        ctxn.cancelled_invite = txn
        return msg

    # -- transport failures (§17.1.4, §17.2.4) --
    def transport_error(self, target: AnyTransaction | Peer, now: float) -> None:
        """The adapter could not send for a transaction, or lost a connection / destination
        (`Peer`: every live transaction on that conn_id, or that address when conn_id is None).
        Each one gets a `TransportError` event and goes straight to Terminated."""
        hits: list[AnyTransaction]
        live: chain[AnyTransaction] = chain(self._client.values(), self._server.values())
        if isinstance(target, Peer):
            if target.conn_id is not None:
                cid = target.conn_id
                hits = [t for t in live if t.peer.conn_id == cid]
            else:
                addr = (target.transport.lower(), target.host, target.port)
                hits = [
                    t for t in live if (t.peer.transport.lower(), t.peer.host, t.peer.port) == addr
                ]
        else:
            hits = [target]
        for t in hits:
            if t.state is not _S.TERMINATED:
                self._events.append(TransportError(t))
                self._terminate(t)

    # -- timers --
    def get_timer(self) -> float | None:
        """The earliest live deadline, or None. Stale heap tops are discarded here."""
        heap = self._heap
        while heap:
            _, seq, txn, _ = heap[0]
            if seq == txn._rtx or seq == txn._life:
                return heap[0][0]
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now` (in deadline order)."""
        # self._heap is re-read each turn: firing may compact it into a new list.
        while self._heap and self._heap[0][0] <= now:
            _, seq, txn, name = heapq.heappop(self._heap)
            if seq == txn._rtx:
                txn._rtx = 0
            elif seq == txn._life:
                txn._life = 0
            else:
                self._stale -= 1
                continue
            if isinstance(txn, ClientTransaction):
                self._fire_client(txn, name, now)
            else:
                self._fire_server(txn, name, now)

    def _fire_client(self, txn: ClientTransaction, name: str, now: float) -> None:
        t = self.timers
        if name == "A":
            # §17.1.1.2: retransmit, double the interval (no T2 cap for INVITE requests).
            self._out.append((txn._out, txn.peer))
            txn._interval *= 2
            self._schedule(txn, "A", txn._interval, now)
        elif name == "E":
            # §17.1.2.2: Trying doubles up to T2; Proceeding retransmits every T2.
            self._out.append((txn._out, txn.peer))
            if txn.state is _S.TRYING:
                txn._interval = min(2 * txn._interval, t.T2)
            else:
                txn._interval = t.T2
            self._schedule(txn, "E", txn._interval, now)
        elif name in ("B", "F"):
            # §17.1.1.2 / §17.1.2.2: the TU is told of the timeout (it answers 408 upstream).
            self._events.append(ClientTimeout(txn))
            self._terminate(txn)
        else:  # D, K, M: end of the absorbing wait
            self._terminate(txn)

    def _fire_server(self, txn: ServerTransaction, name: str, now: float) -> None:
        if name == "G":
            # §17.2.1: retransmit the final, interval doubling up to T2.
            self._out.append((txn._out, txn.peer))
            txn._interval = min(2 * txn._interval, self.timers.T2)
            self._schedule(txn, "G", txn._interval, now)
        elif name == "H":
            # §17.2.1: no ACK came; the TU is told (§17.2.1 "transaction failure").
            self._events.append(ServerTimeout(txn))
            self._terminate(txn)
        else:  # I, J, L
            self._terminate(txn)

    def _schedule(self, txn: AnyTransaction, name: str, delay: float, now: float) -> None:
        self._seq += 1
        seq = self._seq
        if name in _RETRANSMIT_TIMERS:
            if txn._rtx:
                self._stale += 1
            txn._rtx = seq
        else:
            if txn._life:
                self._stale += 1
            txn._life = seq
        heapq.heappush(self._heap, (now + delay, seq, txn, name))

    def _cancel_timers(self, txn: AnyTransaction) -> None:
        if txn._rtx:
            txn._rtx = 0
            self._stale += 1
        if txn._life:
            txn._life = 0
            self._stale += 1
        heap = self._heap
        if self._stale > HEAP_COMPACT_MIN and self._stale * 2 > len(heap):
            # Lazy deletion left mostly dead entries: rebuild in O(n), amortised O(1).
            self._heap = [e for e in heap if e[1] == e[2]._rtx or e[1] == e[2]._life]
            heapq.heapify(self._heap)
            self._stale = 0

    def _terminate(self, txn: AnyTransaction) -> None:
        if txn.state is _S.TERMINATED:
            return
        self._cancel_timers(txn)
        txn.state = _S.TERMINATED
        if isinstance(txn, ClientTransaction):
            txn._cancel_pending = False
            if self._client.get(txn.key) is txn:
                del self._client[txn.key]
        elif self._server.get(txn.key) is txn:
            del self._server[txn.key]
        self._events.append(TransactionTerminated(txn))
