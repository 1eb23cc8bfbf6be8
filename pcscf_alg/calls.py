"""The call layer of the IMS-ALG: every SDP offer/answer, wherever it travels, through the e2ae
engine and the IMS-AGW (TS 33.328 7.2.1 and 7.3.1, docs/e2ae-notes.md §3.3).

- Which procedure applies follows the side the *offer* arrives from: from access = originating
  (7.2.1), from core = terminating (7.3.1), whatever the carrier: INVITE/2xx/ACK (late offer),
  reliable 18x/PRACK, UPDATE, re-INVITE.
- The gateway is reserved before an offer is forwarded (its addresses go into the offer), and
  configured from the answer's media plan *before the answer is forwarded*: a reserve or
  configure the gateway refuses is answered 488 (for an answer in a 2xx: 488 upstream, ACK +
  BYE to the answerer) before any 2xx leaves (the contract of `agw.api.AccessGateway.configure`).
- Forking: each early dialog (callee tag) gets its own answer rewrite and state; the gateway
  context is shared and follows the latest answer, and collapses to the confirmed dialog.
- Every ending releases the gateway context: BYE either way, CANCEL, final errors, 488,
  transaction timeouts, gateway events (TLS failure, media timeout: BYE both ways), expiry of the
  UE's registration.

Sans-IO (issue 12, in the manner of aioquic's `QuicConnection`): `CallLayer` is told of SIP
messages (by the proxy core, with the request's `ProxyCtx` and the side it came from), of
gateway results (`on_gateway_done`), gateway events and timers, always with the current time.
It answers "forward this message now" or not, and queues everything else it wants done as
effects (`pcscf_alg.effects`), drained with `take_effects()`. No asyncio, no sockets, no gateway
calls and no clock in here: the proxy core carries out the SIP effects, and the edge
(`agw.driver.GatewayDriver`) runs the gateway operations and reports their results back.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pcscf_alg import e2ae
from pcscf_alg.agw.api import AgwEvent, MediaTimeout, TlsEstablished, TlsFailed
from pcscf_alg.callstats import (
    DecisionCounts,
    OfferLatency,
    count_decisions,
    count_fast_path,
    count_refused_offer,
)
from pcscf_alg.dialogs import (
    Call,
    Dialog,
    PendingOffer,
    Phase,
    build_bye,
    callee_tag_of,
    learn_from_response,
)
from pcscf_alg.e2ae import AnswerResult, E2aeFlags, OfferPlan, OfferState
from pcscf_alg.effects import (
    Answer,
    Configure,
    ExportKeys,
    Forward,
    ForwardAck,
    GatewayDone,
    Relay,
    Release,
    Reserve,
    SendRequest,
)
from pcscf_alg.errors import SdpError, SipParseError
from pcscf_alg.li import KeyRecord
from pcscf_alg.mediaplan import Direction, MediaPlan, Side, StreamMode
from pcscf_alg.policy.base import Policy
from pcscf_alg.proxyctx import Peer, ProxyCtx
from pcscf_alg.registration import Binding, Flow, RegistrationStore, terminating_binding
from pcscf_alg.sip.body import BodyError, check_readable, is_multipart, locate_sdp, replace_sdp
from pcscf_alg.sip.headers import NameAddr, header_tag
from pcscf_alg.sip.message import SipMessage

log = logging.getLogger(__name__)

Rng = Callable[[int], bytes]
Effect = (
    Forward | Relay | ForwardAck | Answer | SendRequest | Reserve | Configure | Release | ExportKeys
)


def _sdp_body(msg: SipMessage, *, strict: bool = False) -> bytes | None:
    """The session SDP of a message: the body (application/sdp) or its SDP part (multipart,
    RFC 5621; see `sip.body`), or None. A body we cannot read raises `BodyError` when `strict`
    (messages that can carry an offer or answer: the caller refuses them), else counts as none.

    Unreadable: a `Content-Encoding` other than identity (RFC 3261 §20.12; issue 11: a gzip
    SDP passed the e2ae engine unseen, the UE's keys with it), a body without Content-Type
    (RFC 3261 §20.15 makes it mandatory), a multipart body we cannot delimit. What we have not
    read is never forwarded as if it held no SDP."""
    body = msg.body
    if not body:
        return None
    ctype = msg.headers.get("content-type")
    try:
        check_readable(msg.headers.get("content-encoding"), ctype, body)
        loc = locate_sdp(ctype, body)
    except BodyError:
        if strict:
            raise
        return None
    if loc is None:
        return None
    return body if loc.start == 0 and loc.end == len(body) else body[loc.start : loc.end]


def _leg_name(call: Call) -> str:
    """The leg as logs and LI records name it: by the side its initial INVITE came from."""
    return "originating" if call.caller_side is Side.ACCESS else "terminating"


def _log_decision(call: Call, dialog: str | None, phase: str, dec: e2ae.StreamDecision) -> None:
    """One line per e2ae decision (TS 33.328 7.2.1/7.3.1 step or policy rule), with Call-ID,
    leg and stream in the text and as structured fields (JSON logs, pcscf_alg/logs.py)."""
    leg = _leg_name(call)
    log.info(
        "call %s leg=%s%s stream=%d %s: %s",
        call.call_id,
        leg,
        f" dialog={dialog}" if dialog else "",
        dec.index,
        phase,
        dec,
        extra={
            "call_id": call.call_id,
            "leg": leg,
            "dialog": dialog,
            "stream": dec.index,
            "kind": dec.kind.value,
            "mode": dec.mode.value,
            "rule": dec.rule,
        },
    )


def _set_body(msg: SipMessage, sdp: bytes) -> None:
    """Put the rewritten SDP where `_sdp_body` found it; the rest of a multipart body is kept
    byte for byte (Content-Length is recomputed when the message is serialised)."""
    ctype = msg.headers.get("content-type")
    loc = locate_sdp(ctype, msg.body) if is_multipart(ctype) else None
    msg.body = sdp if loc is None else replace_sdp(msg.body, loc, sdp)
    msg.invalidate()


@dataclasses.dataclass
class CallCounters:
    offers: int = 0
    answers: int = 0
    rejected_488: int = 0
    released: int = 0
    teardown_bye: int = 0
    e2ae_streams: int = 0
    gateway_events: int = 0
    # gateway operations refused (reserve: 488 to the offer; configure: 488 to the answer, or
    # the call ended when nothing is left to answer)
    gateway_errors: int = 0


# ------------------------------------------------------------------ what a gateway op awaits


@dataclass(slots=True)
class _ReserveWait:
    """An offer held until the gateway has reserved its streams (their addresses go in it)."""

    call: Call
    dialog: Dialog | None
    ctx: ProxyCtx
    resp: SipMessage | None  # the response carrying the offer; None: the request does
    side: Side
    plan: OfferPlan
    cache_key: tuple[str, bytes]
    carrier: str
    cseq: int
    direction: Direction
    body: bytes
    arrived: float


@dataclass(slots=True)
class _Hold:
    """A message carrying an answer, held until the gateway has applied the answer's plan."""

    call: Call
    dialog: Dialog
    ops: set[int]
    release: Forward | Relay | ForwardAck  # what goes out once every op is done
    ctx: ProxyCtx | None  # the request to answer 488 on failure (None: an ACK)
    resp: SipMessage | None  # a response: on failure 488 upstream, ACK + BYE to its sender
    # retransmissions of a held response are dropped while it waits: (context, dialog, carrier)
    key: tuple[str, str, str] | None
    error: str | None = None


@dataclass(slots=True)
class _ConfigureWait:
    """A configure queued while handling a message; it becomes a `_Hold` when that message
    goes on (the message waits for it). One that stays is waited for by nothing (its message was
    dropped or answered by us): its refusal ends the call, BYE both ways, since the media the
    call signalled is then not what the gateway runs."""

    call: Call
    dialog: Dialog


@dataclass(slots=True)
class _ReleaseWait:
    call: Call


_Wait = _ReserveWait | _ConfigureWait | _Hold | _ReleaseWait


class CallLayer:
    """The call layer's state machine. The proxy core calls `on_request`, `on_response`,
    `on_ack` (each returns True to forward the message now, False when it answered itself or
    holds the message for the gateway), `on_cancelled`, `on_failed`; the edge feeds
    `on_gateway_done` and `on_gateway_event`; timers reach it as `sweep` and
    `on_bindings_removed`. After each, `take_effects()` returns what it asked for, in order."""

    def __init__(
        self,
        registrations: RegistrationStore,
        policy: Policy,
        *,
        ours: Iterable[tuple[str, int]],
        egress_allowed: Callable[[str], bool],
        rng: Rng = secrets.token_bytes,
        anchor_all: bool = False,
        export_keys: bool = False,
    ) -> None:
        self.reg = registrations
        self.policy = policy
        # Our listeners' addresses: the Record-Route entries that are ours (BYE route sets).
        self.ours = set(ours)
        self.egress_allowed = egress_allowed
        self.rng = rng
        self.anchor_all = anchor_all
        # LI (TS 33.107 Annex G): queue `ExportKeys` for the edge's key sink.
        self.export_keys = export_keys
        # Keyed by Call-ID *and leg*: when both UEs are behind this P-CSCF the same Call-ID
        # crosses it twice (originating leg access->core, terminating leg core->access). A leg
        # is named by the side its initial INVITE came from.
        self.calls: dict[tuple[str, Side], Call] = {}
        self.by_context: dict[str, Call] = {}
        self.counters = CallCounters()
        # For /metrics (pcscf_alg/metrics.py), read at scrape time: e2ae decisions by
        # (protocol, direction, outcome), TLS handshakes by (outcome, reason, side), and the
        # time from an offer's arrival to its forwarding.
        self.decisions: DecisionCounts = {}
        self.tls: dict[tuple[str, str, str], int] = {}
        self.offer_latency = OfferLatency()
        self._effects: list[Effect] = []
        self._next_op = 0
        self._waits: dict[int, _Wait] = {}
        self._holds: dict[tuple[str, str, str], _Hold] = {}
        # Configure ops queued while one message is handled (that message waits for them).
        self._configuring: list[int] | None = None

    # ------------------------------------------------------------------ effects
    def take_effects(self) -> list[Effect]:
        """What the layer asked for since the last call, in order."""
        out = self._effects
        if out:  # most calls find nothing: no new list for them (the proxy's hot path)
            self._effects = []
        return out

    def _op(self, wait: _Wait) -> int:
        self._next_op += 1
        self._waits[self._next_op] = wait
        return self._next_op

    def pending_ops(self) -> int:
        """Gateway operations queued and not yet reported done."""
        return len(self._waits)

    # ------------------------------------------------------------------ live reload
    def set_policy(self, policy: Policy, *, anchor_all: bool) -> None:
        """Live reload (issue 13): offers from now on are planned with `policy`. Calls in
        progress keep the decisions already made: an offer already planned carries its policy
        in its OfferState and its answer is processed against it, and an established stream
        changes only when a new offer is planned (then under the new policy, as any re-offer)."""
        self.policy = policy
        self.anchor_all = anchor_all

    # ------------------------------------------------------------------ identity and flags
    @staticmethod
    def _flags_for(binding: Binding | None) -> E2aeFlags:
        if binding is None:
            return e2ae.NO_E2AE
        f = binding.flags
        return E2aeFlags(f.ue_rtp, f.ue_msrp, f.net_rtp, f.net_msrp)

    def _terminating_binding(self, ruri: str) -> Binding | None:
        try:
            return terminating_binding(self.reg, ruri)
        except (ValueError, SipParseError):
            return None

    def _new_call(self, ctx: ProxyCtx, msg: SipMessage, now: float) -> Call:
        binding: Binding | None
        if ctx.in_side is Side.ACCESS:
            peer = ctx.server.peer
            try:
                binding = self.reg.by_flow(Flow(peer.transport, peer.host, peer.port))
            except ValueError:
                binding = None
        else:
            binding = self._terminating_binding(msg.uri or "")
        ue_peer = ctx.server.peer if ctx.in_side is Side.ACCESS else ctx.dest
        try:
            ue_flow = (
                Flow(ue_peer.transport, ue_peer.host, ue_peer.port) if ue_peer is not None else None
            )
        except ValueError:
            ue_flow = None
        subscriber = binding.impu if binding is not None else None
        if subscriber is None:
            hdr = msg.headers.get("from" if ctx.in_side is Side.ACCESS else "to") or ""
            try:
                subscriber = NameAddr.parse(hdr).uri
            except Exception:
                subscriber = None
        contact = msg.headers.first_value("contact")
        call = Call(
            call_id=msg.call_id,
            caller_side=ctx.in_side,
            caller_from=msg.headers.get("from") or "",
            caller_to=msg.headers.get("to") or "",
            caller_contact=NameAddr.parse(contact).uri if contact else None,
            caller_uri=msg.uri or "",
            flags=self._flags_for(binding),
            subscriber=subscriber,
            ue_binding_key=(binding.impu, binding.contact) if binding is not None else None,
            context_id=f"{msg.call_id}/{ctx.in_side.value}",
            ue_flow=ue_flow,
            caller_cseq=msg.cseq[0],
            last_activity=now,
            started_at=now,
        )
        if binding is not None:
            binding.call_ids.add(call.call_id)
        self.calls[(call.call_id, call.caller_side)] = call
        ctx.call_leg = call.caller_side
        self.by_context[call.context_id] = call
        return call

    # ------------------------------------------------------------------ requests
    def _leg(self, msg: SipMessage, side: Side) -> Call | None:
        """The call leg an in-dialog request arriving on `side` belongs to: the leg whose
        caller sent it (its From tag is the caller's tag, leg named by `side`), or the leg whose
        callee sent it (arriving on the side opposite that leg's caller)."""
        from_tag = header_tag(msg.headers.get("from"))
        mine = self.calls.get((msg.call_id, side))
        if mine is not None and mine.caller_tag == from_tag:
            return mine
        other = self.calls.get((msg.call_id, _other(side)))
        if other is not None and other.caller_tag != from_tag:
            return other
        return None

    def from_dialog_ue(self, msg: SipMessage, side: Side, peer: Peer) -> bool | None:
        """Whether an in-dialog request arriving on `side` comes from the UE of the call leg it
        belongs to: None when it belongs to no leg we hold. The UE's flow of the leg matches,
        and so does the flow that UE's binding is registered on now (a re-registration over a
        new TCP connection or after a NAT rebinding moves it)."""
        call = self._leg(msg, side)
        if call is None or call.ue_flow is None:
            return None
        try:
            flow = Flow(peer.transport, peer.host, peer.port)
        except ValueError:
            return False
        if flow == call.ue_flow:
            return True
        key = call.ue_binding_key
        if key is not None:
            b = self.reg.by_flow(flow, key[0])
            return b is not None and (b.impu, b.contact) == key
        return False

    def on_request(self, ctx: ProxyCtx, msg: SipMessage, now: float) -> bool:
        self._configuring = []
        try:
            forward = self._on_request(ctx, msg, now)
            return self._hold_if_configuring(forward, ctx, None, Forward(ctx))
        finally:
            self._configuring = None

    def _on_request(self, ctx: ProxyCtx, msg: SipMessage, now: float) -> bool:
        method = msg.method or ""
        initial = self._is_initial(msg)
        call = None if initial else self._leg(msg, ctx.in_side)
        if call is not None:
            ctx.call_leg = call.caller_side
            call.last_activity = now
        if call is not None and ctx.in_side is call.caller_side and method != "ACK":
            call.caller_cseq = max(call.caller_cseq, msg.cseq[0])
        if method == "BYE":
            if call is not None:
                self._end(call, "BYE")
            return True
        try:
            body = _sdp_body(msg, strict=method in ("INVITE", "UPDATE", "PRACK"))
        except BodyError as e:
            # An offer we cannot see must not pass: it may carry the UE's keys (TS 33.328 7.2.1
            # step 3) or leave the gateway out of the media path.
            log.info("%s refused: %s", method, e.reason)
            if e.status == 415:
                # RFC 3261 §21.4.13 / §20.2: name what we accept.
                self._effects.append(
                    Answer(
                        ctx,
                        415,
                        "Unsupported Media Type",
                        e.reason,
                        (("Accept-Encoding", "identity"),),
                    )
                )
            else:
                reason = "Bad Request" if e.status == 400 else "Not Acceptable Here"
                self._effects.append(Answer(ctx, e.status, reason, e.reason))
            return False  # before any call state: nothing to release
        if method == "INVITE" and initial and body is None:
            # Late offer: remember the call; the offer will come in a response.
            self._new_call(ctx, msg, now)
            return True
        if body is None or method not in ("INVITE", "UPDATE", "PRACK"):
            return True
        if call is None:
            if method != "INVITE" or not initial:
                return True  # not a call we anchor (e.g. a dialog we never saw): pass through
            call = self._new_call(ctx, msg, now)
        tag = callee_tag_of(call, msg, ctx.in_side, is_response=False)
        dialog = call.dialogs.get(tag) if tag else None
        pending = dialog.pending if dialog is not None else call.pending
        if method == "PRACK" and pending is not None and pending.offer_side is not ctx.in_side:
            # PRACK answering an offer made in a reliable 18x (RFC 3262 §5)
            if dialog is None:
                return True  # a dialog we never saw an 18x for: nothing to pair it with
            return self._answer_in_request(call, dialog, pending, msg, ctx.in_side)
        previous = dialog.answer if dialog is not None else None
        return self._offer(
            call, dialog, ctx, msg, None, ctx.in_side, method, msg.cseq[0], previous, now
        )

    @staticmethod
    def _is_initial(msg: SipMessage) -> bool:
        return header_tag(msg.headers.get("to")) is None

    def on_ack(self, msg: SipMessage, side: Side, dest: Peer, now: float) -> bool:
        """ACK for a 2xx, going to `dest` on the other side: carries the answer to a late offer
        made in that 2xx."""
        self._configuring = []
        try:
            forward = self._on_ack(msg, side, now)
            return self._hold_if_configuring(
                forward, None, None, ForwardAck(msg, _other(side), dest)
            )
        finally:
            self._configuring = None

    def _on_ack(self, msg: SipMessage, side: Side, now: float) -> bool:
        call = self._leg(msg, side)
        if call is not None:
            call.last_activity = now
        try:
            body = _sdp_body(msg, strict=True)
        except BodyError as e:
            if call is None:
                return True  # not a call of ours: nothing of ours in it
            tag = callee_tag_of(call, msg, side, is_response=False)
            d = call.dialogs.get(tag) if tag else None
            if d is not None and d.pending is not None and d.pending.offer_side is not side:
                # The answer to our late offer, unreadable: it cannot be forwarded (it may hold
                # the UE's keys) and the offer has no other answer (RFC 3264 §4): end the call.
                log.info("call %s: unreadable answer in ACK: %s", call.call_id, e.reason)
                self.teardown(call, f"unreadable answer in ACK: {e.reason}")
                return False
            # No answer expected: an ACK body is meaningless (RFC 3264), so it goes without it.
            msg.body = b""
            for name in ("Content-Type", "Content-Encoding", "Content-Disposition"):
                msg.headers.remove(name)
            msg.invalidate()
            return True
        if call is None or body is None:
            return True
        tag = callee_tag_of(call, msg, side, is_response=False)
        d = call.dialogs.get(tag) if tag else None
        if d is None or d.pending is None or d.pending.offer_side is side:
            return True
        return self._answer_in_request(call, d, d.pending, msg, side)

    def _answer_in_request(
        self, call: Call, d: Dialog, pending: PendingOffer, msg: SipMessage, side: Side
    ) -> bool:
        body = _sdp_body(msg)
        assert body is not None
        if pending.state is None:
            d.pending = None
            _set_body(msg, e2ae.strip_indications(body))
            return True
        try:
            res = self._apply_answer(pending.state, body, d.answer)
        except SdpError as e:
            log.info("call %s: bad answer in %s: %s", call.call_id, msg.method, e)
            self.teardown(call, f"bad SDP answer: {e}")
            return False
        d.pending = None
        self._answered(call, d, res)
        _set_body(msg, res.sdp)
        return True

    def _hold_if_configuring(
        self,
        forward: bool,
        ctx: ProxyCtx | None,
        resp: SipMessage | None,
        release: Forward | Relay | ForwardAck,
        key: tuple[str, str, str] | None = None,
    ) -> bool:
        """A message that would go on now but made the call layer configure the gateway waits
        for it (the gateway API's contract: a configure failure is answered 488 before any
        2xx leaves, and no answer goes out for media the gateway does not run)."""
        ops = self._configuring
        if not forward or not ops:
            return forward
        first = self._waits[ops[0]]
        assert isinstance(first, _ConfigureWait)
        hold = _Hold(first.call, first.dialog, set(ops), release, ctx, resp, key)
        for op in ops:
            self._waits[op] = hold
        if key is not None:
            self._holds[key] = hold
        return False

    # ------------------------------------------------------------------ offers
    def _offer(
        self,
        call: Call,
        dialog: Dialog | None,
        ctx: ProxyCtx,
        msg: SipMessage,
        resp: SipMessage | None,
        side: Side,
        carrier: str,
        cseq: int,
        previous: AnswerResult | None,
        now: float,
    ) -> bool:
        """An offer in `msg` (the request of `ctx`, or its response `resp`) from `side`."""
        body = _sdp_body(msg)
        assert body is not None
        cache_key = (f"offer:{carrier}:{cseq}:{side.value}", body)
        if dialog is not None and cache_key in dialog.rewritten:
            _set_body(msg, dialog.rewritten[cache_key])  # a retransmission of the same offer
            return True
        direction = Direction.ORIGINATING if side is Side.ACCESS else Direction.TERMINATING
        self.counters.offers += 1
        if (
            not self.anchor_all
            and previous is None
            and not call.reserved
            and e2ae.untouched(body, direction, call.flags)
        ):
            # Fast path: the offer goes on as it came; its answer is only sanitised.
            pending_plain = PendingOffer(None, side, carrier, cseq)
            if dialog is None:
                call.pending = pending_plain
            else:
                dialog.pending = pending_plain
            count_fast_path(self.decisions, direction.value, body)
            self.offer_latency.observe_zero()
            return True
        try:
            plan = e2ae.plan_offer(
                body,
                direction,
                call.flags,
                self.policy,
                call.subscriber,
                anchor_all=self.anchor_all,
                previous=previous,
            )
            self._check_addresses(plan)
        except SdpError as e:
            self.counters.rejected_488 += 1
            count_refused_offer(self.decisions, direction.value, body)
            log.info("call %s: 488 on %s offer: %s", call.call_id, carrier, e.reason)
            self._reject_offer(call, dialog, ctx, resp, e.reason)
            if not call.reserved and not call.dialogs:
                self._forget(call)
            return False
        wait = _ReserveWait(
            call, dialog, ctx, resp, side, plan, cache_key, carrier, cseq, direction, body, now
        )
        if not plan.requests:
            self._finish_offer(wait, {})
            self.offer_latency.observe_zero()  # forwarded in the step it arrived
            return True
        # The context exists for the gateway from this operation on (operations of a context
        # run in order): an ending before the result releases it after the reservation.
        call.reserved = True
        self._effects.append(Reserve(self._op(wait), call.context_id, tuple(plan.requests)))
        return False

    def _finish_offer(self, w: _ReserveWait, reservations: dict[int, Any]) -> None:
        res = e2ae.apply_offer(w.plan, reservations, self.rng)
        pending = PendingOffer(res.state, w.side, w.carrier, w.cseq)
        msg = w.resp if w.resp is not None else w.ctx.request
        if w.dialog is None:
            w.call.pending = pending
        else:
            w.dialog.pending = pending
            w.dialog.rewritten[w.cache_key] = res.sdp
        for dec in res.decisions:
            _log_decision(w.call, None, "offer", dec)
        count_decisions(self.decisions, w.direction.value, res.decisions)
        _set_body(msg, res.sdp)

    def _reject_offer(
        self,
        call: Call,
        dialog: Dialog | None,
        ctx: ProxyCtx,
        resp: SipMessage | None,
        warning: str,
    ) -> None:
        """488 for an offer we cannot take. An offer in a request: its sender gets the 488. An
        offer in a response (late offer): a provisional is dropped; a 2xx gets the offerer's
        peer 488 and its sender ACK + BYE."""
        if resp is None:
            self._effects.append(Answer(ctx, 488, "Not Acceptable Here", warning))
        elif resp.status >= 200 and dialog is not None:
            self._effects.append(Answer(ctx, 488, "Not Acceptable Here", warning))
            self._send_ack_and_bye(call, dialog, ctx, resp)
            self._end(call, "bad offer in response")

    def _check_addresses(self, plan: OfferPlan) -> None:
        """Media addresses must be ones we may send to (the SIP egress allow-list)."""
        for so in plan.streams:
            ep = so.offerer
            anchored = so.mode.value in ("e2ae", "pass")
            if ep is not None and anchored and not self.egress_allowed(ep.host):
                raise SdpError(f"media address {ep.host} not allowed")

    def _apply_answer(
        self, state: OfferState, body: bytes, prior: AnswerResult | None
    ) -> AnswerResult:
        if prior is not None:
            # Same dialog answering again (unreliable 18x then 2xx, or a fork's re-answer): keep
            # the keys we gave the UE so that its crypto context stays valid (RFC 4568 §7.1.4).
            state = state._replace(previous=e2ae._previous(prior))  # OfferState: a NamedTuple
        res = e2ae.apply_answer(state, body, self.rng)
        self.counters.answers += 1
        return res

    def _answered(self, call: Call, d: Dialog, res: AnswerResult) -> None:
        d.answer = res
        for dec in res.decisions:
            _log_decision(call, d.callee_tag, "answer", dec)
        self.counters.e2ae_streams += sum(1 for s in res.plan.streams if s.mode.value == "e2ae")
        if self.export_keys:
            self._export_keys(call, d, res.plan)
        if call.reserved:
            self._configure(call, d, res)

    def _export_keys(self, call: Call, d: Dialog, plan: MediaPlan) -> None:
        """TS 33.107 Annex G (docs/e2ae-notes.md §3.4): the SDES keys of this dialog's e2ae RTP
        streams to the LI functions, once per new key pair (re-answers that keep the keys send
        none)."""
        for s in plan.streams:
            if s.mode is not StreamMode.E2AE or s.rx_key is None or s.tx_key is None:
                continue
            pair = (s.rx_key.key_salt, s.tx_key.key_salt)
            if d.li_delivered.get(s.index) == pair:
                continue
            d.li_delivered[s.index] = pair
            record = KeyRecord(
                call.call_id,
                _leg_name(call),
                d.callee_tag,
                call.subscriber,
                s.index,
                s.rx_key,
                s.tx_key,
                0.0,  # wall clock: stamped by the edge (effects.ExportKeys)
            )
            self._effects.append(ExportKeys(record))

    def _configure(self, call: Call, d: Dialog, res: AnswerResult) -> None:
        call.active_tag = d.callee_tag
        plan = res.plan
        if log.isEnabledFor(logging.DEBUG):
            # Modes only: a StreamPlan's keys stay out of logs.
            log.debug(
                "call %s leg=%s: gateway configure (dialog %s) %s",
                call.call_id,
                _leg_name(call),
                d.callee_tag,
                ", ".join(f"m[{sp.index}] {sp.kind.value} {sp.mode.value}" for sp in plan.streams),
                extra={"call_id": call.call_id, "leg": _leg_name(call), "dialog": d.callee_tag},
            )
        op = self._op(_ConfigureWait(call, d))
        if self._configuring is not None:
            self._configuring.append(op)  # the message being handled waits for it
        self._effects.append(Configure(op, call.context_id, plan))

    # ------------------------------------------------------------------ responses
    def on_response(self, ctx: ProxyCtx, resp: SipMessage, now: float) -> bool:
        call = self._ctx_call(ctx)
        if call is None:
            return True
        # the response arrives from where the request went
        tag = callee_tag_of(call, resp, ctx.out_side, is_response=True)
        # The exact status: a retransmission of a response held for the gateway is absorbed
        # (the held one follows), another response of the same request (a 180 after a held
        # 183) is not.
        key = None
        if tag is not None:
            key = (call.context_id, tag, f"{ctx.request.method}:{resp.cseq[0]}:{resp.status}")
            if key in self._holds:
                return False
        self._configuring = []
        try:
            forward = self._on_response(ctx, call, resp, tag, now)
            return self._hold_if_configuring(forward, ctx, resp, Relay(ctx, resp), key)
        finally:
            self._configuring = None

    def _on_response(
        self, ctx: ProxyCtx, call: Call, resp: SipMessage, tag: str | None, now: float
    ) -> bool:
        method = ctx.request.method or ""
        call.last_activity = now
        status = resp.status
        if method not in ("INVITE", "UPDATE", "PRACK"):
            return True
        from_side = ctx.out_side
        initial = method == "INVITE" and self._is_initial(ctx.request)
        if status >= 300:
            if initial:
                if not any(d.phase is Phase.CONFIRMED for d in call.dialogs.values()):
                    self._end(call, f"final {status}")
            else:
                d = call.dialogs.get(tag) if tag else None
                if d is not None:
                    d.pending = None  # a failed re-offer leaves the previous media in place
            return True
        if tag is None:
            return True
        d = call.dialog(tag)
        if initial and (status >= 200 or resp.headers.get("rseq") is not None or _sdp_body(resp)):
            learn_from_response(d, resp)
        confirm = initial and 200 <= status < 300
        forward = self._response_sdp(ctx, call, d, resp, method, status, from_side, initial, now)
        if confirm and not call.ended:
            self._confirm(call, d)
        return forward

    def _response_sdp(
        self,
        ctx: ProxyCtx,
        call: Call,
        d: Dialog,
        resp: SipMessage,
        method: str,
        status: int,
        from_side: Side,
        initial: bool,
        now: float,
    ) -> bool:
        try:
            body = _sdp_body(resp, strict=True)
        except BodyError as e:
            # An answer or offer we cannot read is not forwarded (issue 11 item 3): a
            # provisional is dropped, a 2xx gets the offerer 488 and the answerer ACK + BYE.
            return self._bad_answer(ctx, call, d, resp, e.reason)
        if body is None:
            return True
        pending = d.pending if (d.pending is not None and not initial) else None
        if initial:
            pending = d.pending if d.pending is not None else call.pending
        if pending is not None and pending.offer_side is not from_side and pending.state is None:
            if pending is d.pending:
                d.pending = None
            _set_body(resp, e2ae.strip_indications(body))  # forwarded untouched: only sanitised
            return True
        if pending is not None and pending.offer_side is not from_side:
            assert pending.state is not None
            # CSeq in the key: the same SDP answering a later offer (resume, session refresh)
            # is a new exchange, not a retransmission.
            cache_key = (f"answer:{method}:{resp.cseq[0]}:{status // 100}", body)
            cached = d.rewritten.get(cache_key)
            if cached is not None:
                _set_body(resp, cached)  # 2xx retransmission, or 18x then 2xx with the same SDP
                return True
            try:
                res = self._apply_answer(pending.state, body, d.answer)
            except SdpError as e:
                return self._bad_answer(ctx, call, d, resp, e.reason)
            if pending is d.pending:
                d.pending = None
            self._answered(call, d, res)
            d.rewritten[cache_key] = res.sdp
            _set_body(resp, res.sdp)
            return True
        # An offer in a response (late offer: INVITE without SDP, offer in 18x/2xx)
        carrier = f"{method}-{status}"
        return self._offer(
            call, d, ctx, resp, resp, from_side, carrier, resp.cseq[0], d.answer, now
        )

    def _confirm(self, call: Call, d: Dialog) -> None:
        """A 2xx confirmed dialog `d`: the other early dialogs end (RFC 3261 §13.2.2.4); the
        gateway follows the confirmed dialog's media."""
        if call.confirmed == d.callee_tag:
            return
        call.confirmed = d.callee_tag
        d.phase = Phase.CONFIRMED
        for tag in [t for t in call.dialogs if t != d.callee_tag]:
            del call.dialogs[tag]
        if call.reserved and d.answer is not None and call.active_tag != d.callee_tag:
            # another fork's answer was the last one applied: back to the confirmed dialog's
            self._configure(call, d, d.answer)
        call.pending = None

    def _bad_answer(
        self, ctx: ProxyCtx, call: Call, d: Dialog, resp: SipMessage, reason: str
    ) -> bool:
        log.info("call %s: bad SDP answer in %d: %s", call.call_id, resp.status, reason)
        if resp.status < 200:
            return False  # drop the provisional; the final answer may still be good
        # A 2xx with an unusable answer: the offerer gets 488, the answerer ACK + BYE.
        self._effects.append(Answer(ctx, 488, "Not Acceptable Here", f"bad SDP answer: {reason}"))
        self._send_ack_and_bye(call, d, ctx, resp)
        self._end(call, "bad answer")
        return False

    # ------------------------------------------------------------------ gateway results
    def on_gateway_done(self, done: GatewayDone, now: float) -> None:
        """The result of an operation this layer queued (`effects.Reserve/Configure/Release`)."""
        wait = self._waits.pop(done.op, None)
        if wait is None:
            return  # not ours, or reported twice
        if done.error is not None:
            self.counters.gateway_errors += 1
        if isinstance(wait, _ReserveWait):
            self._reserved(wait, done, now)
        elif isinstance(wait, _Hold):
            self._configured(wait, done)
        elif isinstance(wait, _ConfigureWait):
            if done.error is not None and not wait.call.ended:
                # No message waits: the media the call signalled is not what the gateway runs.
                log.info("call %s: gateway configure failed: %s", wait.call.call_id, done.error)
                self.teardown(wait.call, f"media gateway: {done.error}")
        else:
            self.counters.released += 1

    def _reserved(self, w: _ReserveWait, done: GatewayDone, now: float) -> None:
        call = w.call
        if done.error is not None:
            log.info("call %s: gateway refused the offer: %s", call.call_id, done.error)
            self.counters.rejected_488 += 1
            count_refused_offer(self.decisions, w.direction.value, w.body)
            if not call.ended:
                self._reject_offer(call, w.dialog, w.ctx, w.resp, f"media gateway: {done.error}")
            if not call.ended and not call.dialogs:
                self._end(call, "gateway refused the offer")  # releases what it may hold
            return
        if call.ended:
            return  # ended meanwhile: its release is queued after this reservation
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "call %s leg=%s: gateway reserved %s",
                call.call_id,
                _leg_name(call),
                ", ".join(
                    f"m[{r.index}] {r.kind.value} access {r.access.host}:{r.access.port}"
                    f" core {r.core.host}:{r.core.port}"
                    for r in done.reservations
                ),
                extra={"call_id": call.call_id, "leg": _leg_name(call)},
            )
        self._finish_offer(w, {r.index: r for r in done.reservations})
        self._effects.append(Forward(w.ctx) if w.resp is None else Relay(w.ctx, w.resp))
        self.offer_latency.observe(now - w.arrived)

    def _configured(self, hold: _Hold, done: GatewayDone) -> None:
        if done.error is not None and hold.error is None:
            hold.error = done.error
        hold.ops.discard(done.op)
        if hold.ops:
            return
        if hold.key is not None and self._holds.get(hold.key) is hold:
            del self._holds[hold.key]
        call = hold.call
        if call.ended:
            return  # ended while the gateway worked: nothing of it goes on
        if hold.error is None:
            self._effects.append(hold.release)
            return
        log.info("call %s: gateway configure failed: %s", call.call_id, hold.error)
        warning = f"media gateway: {hold.error}"
        if hold.resp is not None and hold.ctx is not None:
            if hold.resp.status >= 200:
                # The answer in a 2xx cannot be honoured: 488 upstream before any 2xx, ACK +
                # BYE to the answerer, the call ends (gateway API: configure -> 488).
                self._effects.append(Answer(hold.ctx, 488, "Not Acceptable Here", warning))
                self._send_ack_and_bye(call, hold.dialog, hold.ctx, hold.resp)
                self._end(call, "gateway refused the answer")
            # a provisional is dropped; the final answer may still be good
            return
        if hold.ctx is not None:
            self._effects.append(Answer(hold.ctx, 488, "Not Acceptable Here", warning))
        self.teardown(call, f"media gateway: {hold.error}")

    # ------------------------------------------------------------------ endings
    def on_cancelled(self, ctx: ProxyCtx, now: float) -> None:
        call = self._ctx_call(ctx)
        if call is not None and call.confirmed is None:
            self._end(call, "CANCEL")

    def on_failed(self, ctx: ProxyCtx, now: float) -> None:
        call = self._ctx_call(ctx)
        if call is None:
            return
        if ctx.request.method == "INVITE" and call.confirmed is None:
            self._end(call, "transaction failure")
        elif ctx.request.method == "BYE":
            self._end(call, "BYE timeout")

    def on_bindings_removed(self, bindings: list[Binding], now: float) -> None:
        for b in bindings:
            for call_id in list(b.call_ids):
                for leg in (Side.ACCESS, Side.CORE):
                    call = self.calls.get((call_id, leg))
                    if call is not None:
                        self.teardown(call, "registration ended")

    def on_gateway_event(self, ev: AgwEvent, now: float) -> None:
        self.counters.gateway_events += 1
        if isinstance(ev, TlsEstablished | TlsFailed):
            # /metrics: TLS handshakes by outcome and reason (reasons: agw.api.TlsFailed)
            key = (
                ("established", "ok", ev.side.value)
                if isinstance(ev, TlsEstablished)
                else ("failed", ev.reason, ev.side.value)
            )
            self.tls[key] = self.tls.get(key, 0) + 1
        call = self.by_context.get(ev.context_id)
        if call is None:
            return
        if isinstance(ev, TlsFailed):
            log.info(
                "call %s: TLS failed on stream %d (%s): ending the call",
                call.call_id,
                ev.index,
                ev.reason,
            )
            self.teardown(call, f"TLS failure: {ev.reason}")
        elif isinstance(ev, MediaTimeout):
            log.info("call %s: media timeout on stream %d: ending the call", call.call_id, ev.index)
            self.teardown(call, "media timeout")

    def sweep(self, now: float, idle_timeout: float) -> int:
        """Drop the state of un-anchored calls with no signalling for `idle_timeout` seconds
        (their BYE was lost; nothing else would ever end them). Returns how many."""
        stale = [
            c
            for c in self.calls.values()
            if not c.reserved and now - c.last_activity > idle_timeout
        ]
        for call in stale:
            self._end(call, f"no signalling for {idle_timeout:.0f} s")
        return len(stale)

    def teardown(self, call: Call, why: str) -> None:
        """End a call from the middle: BYE both ways for a confirmed dialog (docs/design.md §1)."""
        if call.ended:
            return
        d = call.dialogs.get(call.confirmed) if call.confirmed else None
        if d is not None:
            self._send_bye(call, d, towards_callee=True)
            self._send_bye(call, d, towards_callee=False)
        self._end(call, why)

    def _send_bye(self, call: Call, d: Dialog, towards_callee: bool) -> None:
        cseq = (call.caller_cseq if towards_callee else d.callee_cseq) + 1
        if towards_callee:
            call.caller_cseq = cseq
        else:
            d.callee_cseq = cseq
        bye, next_uri = build_bye(call, d, towards_callee, self.ours, cseq)
        side = call.caller_side if not towards_callee else _other(call.caller_side)
        self.counters.teardown_bye += 1
        self._effects.append(SendRequest(bye, side, next_uri))

    def _send_ack_and_bye(self, call: Call, d: Dialog, ctx: ProxyCtx, resp: SipMessage) -> None:
        """ACK then BYE to the party that sent a 2xx we cannot forward (RFC 3261 §13.2.2.4)."""
        learn_from_response(d, resp)
        bye, next_uri = build_bye(call, d, towards_callee=True, ours=self.ours, cseq=resp.cseq[0])
        ack = bye.copy()
        ack.method = "ACK"
        ack.headers.set("CSeq", f"{resp.cseq[0]} ACK")
        ack.headers.remove("Reason")
        self._effects.append(SendRequest(ack, ctx.out_side, next_uri, ack=True))
        bye.headers.set("CSeq", f"{resp.cseq[0] + 1} BYE")
        self._effects.append(SendRequest(bye, ctx.out_side, next_uri))

    def _end(self, call: Call, why: str) -> None:
        if call.ended:
            return
        call.ended = True
        log.info("call %s ended (%s)", call.call_id, why)
        self._forget(call)
        if call.reserved:
            log.debug(
                "call %s leg=%s: gateway release",
                call.call_id,
                _leg_name(call),
                extra={"call_id": call.call_id, "leg": _leg_name(call)},
            )
            call.reserved = False
            self._effects.append(Release(self._op(_ReleaseWait(call)), call.context_id))

    def _forget(self, call: Call) -> None:
        call.ended = True
        key = (call.call_id, call.caller_side)
        if self.calls.get(key) is call:
            del self.calls[key]
        if self.by_context.get(call.context_id) is call:
            del self.by_context[call.context_id]
        call.pending = None
        for d in call.dialogs.values():
            d.pending = None
            d.answer = None  # drop key material with the call
            d.rewritten.clear()
        if call.ue_binding_key is not None:
            b = self.reg.get(*call.ue_binding_key)
            # The binding keeps the Call-ID while another leg of it serves the same UE. In a
            # hairpin (both UEs behind us) the other leg belongs to the other UE: it must not
            # keep this UE's entry (one stale Call-ID per hairpin call, found by the golden
            # table).
            if b is not None and not any(
                other.ue_binding_key == call.ue_binding_key
                for leg in (Side.ACCESS, Side.CORE)
                if (other := self.calls.get((call.call_id, leg))) is not None
            ):
                b.call_ids.discard(call.call_id)

    def _ctx_call(self, ctx: ProxyCtx) -> Call | None:
        if ctx.call_leg is None:
            return None
        return self.calls.get((ctx.request.call_id, ctx.call_leg))

    # ------------------------------------------------------------------ introspection
    def stats(self) -> dict[str, Any]:
        return {
            "dialogs": len(self.calls),
            "calls": dataclasses.asdict(self.counters),
        }


def _other(side: Side) -> Side:
    return Side.CORE if side is Side.ACCESS else Side.ACCESS


__all__ = ["CallCounters", "CallLayer", "Effect"]
