"""Dialog bookkeeping for the ALG, pure: who is caller and callee, their tags, targets, route sets
and CSeqs, and the per-dialog offer/answer state. Enough to act as a UA when a P-CSCF must
(docs/design.md §1: BYE both ways when the gateway reports a failed TLS handshake or a media
timeout).

A call (one Call-ID) has one dialog per callee tag; forking (RFC 3261 §16.7 / §12.1) gives
several early dialogs until a 2xx confirms one of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pcscf_alg.e2ae import AnswerResult, E2aeFlags, OfferState
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import Flow
from pcscf_alg.sip.headers import NameAddr, SipUri, header_tag
from pcscf_alg.sip.message import Headers, SipMessage


class Phase(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass(slots=True)
class PendingOffer:
    """An offer we forwarded and whose answer has not come back yet."""

    state: OfferState | None  # None: forwarded untouched (nothing anchored, see e2ae.untouched)
    offer_side: Side  # where the offer came from (its direction: access = originating)
    method: (
        str  # carrier: INVITE, UPDATE, PRACK, or the response (e.g. "INVITE-2xx") for late offers
    )
    cseq: int


@dataclass(slots=True)
class Dialog:
    """One (early) dialog: the callee's tag, its target and route set, its media state."""

    callee_tag: str
    phase: Phase = Phase.EARLY
    callee_contact: str | None = None
    # Record-Route values of the 2xx/18x as received, top first (RFC 3261 §12.1.2)
    record_route: list[str] = field(default_factory=list)
    answer: AnswerResult | None = None  # the last completed offer/answer
    pending: PendingOffer | None = None  # an in-dialog offer awaiting its answer
    # retransmission cache: body as received -> body as forwarded, per (carrier, direction)
    rewritten: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    callee_cseq: int = 0
    # LI key export: per stream, the (from UE, to UE) keys last delivered (pcscf_alg.li)
    li_delivered: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)


@dataclass(slots=True)
class Call:
    call_id: str
    caller_side: Side  # the side the initial INVITE came from
    caller_from: str  # From header value (with tag) of the initial INVITE
    caller_to: str  # To header value of the initial INVITE (no tag)
    caller_contact: str | None
    caller_uri: str  # Request-URI of the initial INVITE
    flags: E2aeFlags
    subscriber: str | None
    ue_binding_key: tuple[str, str] | None  # (impu, contact) of the UE's binding, if any
    context_id: str
    # Where the UE of this leg sends from: the flow of its initial INVITE (originating), or the
    # flow the INVITE was sent to (terminating). In-dialog requests on the access side must
    # come over it (or the UE's current registered flow), else 403.
    ue_flow: Flow | None = None
    caller_cseq: int = 1
    dialogs: dict[str, Dialog] = field(default_factory=dict)
    pending: PendingOffer | None = None  # the initial INVITE's offer, answered per early dialog
    confirmed: str | None = None  # callee tag of the confirmed dialog
    active_tag: str | None = None  # the dialog whose media plan the gateway runs now
    reserved: bool = False  # the gateway holds a context for this call
    last_activity: float = 0.0  # loop time of the last message of this call leg
    started_at: float = 0.0  # loop time of the initial INVITE (admin `GET /calls`: age)
    ended: bool = False

    @property
    def caller_tag(self) -> str | None:
        return header_tag(self.caller_from)

    def dialog(self, callee_tag: str) -> Dialog:
        d = self.dialogs.get(callee_tag)
        if d is None:
            d = Dialog(callee_tag)
            self.dialogs[callee_tag] = d
        return d


def callee_tag_of(call: Call, msg: SipMessage, from_side: Side, is_response: bool) -> str | None:
    """The callee's tag of the dialog a message belongs to. Requests from the caller and
    responses to them carry it in To; requests from the callee (and responses to those) in From."""
    caller_dir = from_side is call.caller_side
    if is_response:
        # a response travels opposite to its request
        caller_dir = not caller_dir
    header = msg.headers.get("to") if caller_dir else msg.headers.get("from")
    return header_tag(header)


def learn_from_response(d: Dialog, resp: SipMessage) -> None:
    """Remember the callee's Contact and the route set from a dialog-creating response."""
    contact = resp.headers.first_value("contact")
    if contact:
        d.callee_contact = NameAddr.parse(contact).uri
    rr = resp.headers.values("record-route")
    if rr:
        d.record_route = rr


def _split_route_set(
    record_route: list[str], ours: set[tuple[str, int]]
) -> tuple[list[str], list[str]]:
    """Split a Record-Route list (top first) around our own entries: (callee side, caller side)."""
    idx = []
    for i, v in enumerate(record_route):
        try:
            uri = SipUri.parse(NameAddr.parse(v).uri)
        except Exception:
            continue
        if (uri.host.strip("[]"), uri.port or 5060) in ours:
            idx.append(i)
    if not idx:
        return [], list(record_route)
    return record_route[: idx[0]], record_route[idx[-1] + 1 :]


def build_bye(
    call: Call,
    d: Dialog,
    towards_callee: bool,
    ours: set[tuple[str, int]],
    cseq: int,
) -> tuple[SipMessage, str]:
    """A BYE the ALG sends itself (as each party's peer) to end a confirmed dialog.

    Returns the message and the URI to send it to (first Route or the remote target). Via is
    added by the transaction layer's caller. RFC 3261 §12.2.1.1 for the request construction.
    """
    callee_side_rr, caller_side_rr = _split_route_set(d.record_route, ours)
    h = Headers()
    callee_to = _with_tag(call.caller_to, d.callee_tag)
    if towards_callee:
        # route from us to the callee: the entries above ours, nearest to us first
        routes = list(reversed(callee_side_rr))
        target = d.callee_contact or call.caller_uri
        h.add("From", call.caller_from)
        h.add("To", callee_to)
    else:
        routes = list(caller_side_rr)
        target = call.caller_contact or ""
        h.add("From", callee_to)
        h.add("To", call.caller_from)
    h.add("Call-ID", call.call_id)
    h.add("CSeq", f"{cseq} BYE")
    h.add("Max-Forwards", "70")
    for r in routes:
        h.add("Route", r)
    h.add("Reason", 'SIP;cause=503;text="media path failure at the P-CSCF"')
    h.add("Content-Length", "0")
    msg = SipMessage(headers=h, method="BYE", uri=target)
    next_uri = NameAddr.parse(routes[0]).uri if routes else target
    return msg, next_uri


def _with_tag(value: str, tag: str) -> str:
    if header_tag(value) is not None:
        return value
    return f"{value};tag={tag}"
