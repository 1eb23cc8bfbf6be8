"""Phase 2 of the e2ae engine: `apply_offer` rewrites the offer for the answerer's side."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..errors import GatewayError, SdpError
from ..mediaplan import Endpoint, SrtpKey, StreamReservation
from ..sdp.attrs import APPLIED_LINE
from ..sdp.crypto import CryptoAttr, generate_crypto
from ..sdp.msrp import MsrpUri
from .helpers import _ctx, _indication, _prev_rtp, _session_indication
from .records import (
    _ACTPASS,
    _E2AE_MODE,
    _ORIGINATING,
    _PASS,
    _PASSIVE,
    _REJECTED,
    _REQUESTED,
    _RTP,
    OfferPlan,
    OfferResult,
    OfferState,
    Rng,
    StreamDecision,
    StreamOffer,
    _decision,
    _tuple_new,
    _with,
)
from .rewrite import (
    _detach_session_fingerprints,
    _relocate,
    _relocate_session,
    _reservation,
    _set_fingerprint,
    _set_path,
    _strip_3ge2ae,
    _strip_capneg_crypto,
    _strip_session_3ge2ae,
)


def apply_offer(
    plan: OfferPlan,
    reservations: Mapping[int, StreamReservation],
    rng: Rng,
) -> OfferResult:
    """Rewrite the offer for the answerer's side (core if ORIGINATING, UE if TERMINATING)."""
    orig = plan.direction is _ORIGINATING
    if orig and not plan.offer.has_session_attrs():
        for so in plan.streams:  # the one-pass rewrite is for all-e2ae-RTP offers only
            if so.mode is not _E2AE_MODE or so.kind is not _RTP:
                break
        else:
            fast = _offer_orig_rtp(plan, reservations)
            if fast is not None:
                return fast
    sdp = plan.offer.copy()
    # 3ge2ae sanitising (`_strip_3ge2ae`) is done per m-line in the loop below, together with
    # the removal of the crypto lines of an e2ae RTP stream: one splice of the section's text
    # instead of two. The whole-SDP pass remains for a plan whose streams do not cover every
    # m-line (never the case for a plan from `plan_offer`).
    if len(plan.streams) != len(sdp.media):
        _strip_3ge2ae(sdp)
    else:
        _strip_session_3ge2ae(sdp)
    targets: dict[int, Endpoint] = {}
    streams: list[StreamOffer] = []
    decisions = list(plan.decisions)
    e2ae: set[int] = set()
    for so in plan.streams:
        i = so.index
        m = sdp.media[i]
        if so.mode is _E2AE_MODE and so.kind is _RTP:
            m.remove_attrs("crypto", "3ge2ae")  # the crypto lines go (7.2.1 step 3, 7.3.1 step 4)
        else:
            m.remove_attrs("3ge2ae")
        if so.mode not in (_E2AE_MODE, _PASS):
            if (
                orig
                and so.mode is _REJECTED
                and so.kind is _RTP
                and _indication(plan.offer.media[i], _session_indication(plan.offer)) is _REQUESTED
                and m.remove_attrs("crypto")
            ):
                # keys meant for the gateway never go to the core, even on a disabled stream
                d = decisions[i]
                decisions[i] = _decision(
                    i, d.kind, d.mode, d.action + "; UE crypto removed (e2ae was requested)", d.rule
                )
            streams.append(so)
            continue
        res = reservations.get(i)
        if res is None:
            res = _reservation(reservations, i)  # raises GatewayError
        ep = res.core if orig else res.access
        targets[i] = ep
        if so.mode is _PASS:
            streams.append(so)
            continue
        e2ae.add(i)
        m.set_proto(so.proto_out)
        if so.kind is _RTP:  # its crypto lines were removed above
            if orig:
                # 7.2.1 step 3: SRTP->RTP, all crypto and the indication removed.
                if _strip_capneg_crypto(m):
                    d = decisions[i]
                    decisions[i] = _decision(
                        i, d.kind, d.mode, d.action + "; a=acap crypto removed", d.rule
                    )
                streams.append(so)
                continue
            # 7.3.1 step 4: RTP->SRTP, one or more crypto lines (K21) + "offered by network".
            k21 = _offer_k21(plan, so, rng, res.local_key)
            m.insert_attrs([c.line() for c in k21] + [APPLIED_LINE])
            streams.append(_with(so, k21=k21))
            continue
        # MSRP
        sid = so.path[-1].session_id if so.path else ""
        if orig:
            # 7.2.1 step 3: TLS->TCP, UE fingerprint removed; the gateway is the core offerer.
            m.remove_attrs("fingerprint")
            if so.setup is not _ACTPASS or m.attr("setup") is None:
                m.replace_or_insert("setup", "a=setup:actpass")
            sent: str | None = None
            if not so.cema:
                sent = str(MsrpUri.build("msrp", ep.host, ep.port, sid))
                _set_path(m, sent)
            streams.append(_with(so, sent_path=sent))
            continue
        # 7.3.1 step 4: TCP->TLS, fingerprints replaced by ours, "offered by network" added.
        fp = res.local_fingerprint
        if fp is None:
            raise GatewayError(f"no local certificate fingerprint reserved for m-line {i}")
        # docs/e2ae-notes.md §5.3: offer passive so that the UE connects out through its NAT.
        _set_fingerprint(m, fp, _PASSIVE)
        m.insert_attrs([APPLIED_LINE])
        sent = None
        if not so.cema:
            sent = str(MsrpUri.build("msrps", ep.host, ep.port, sid))
            _set_path(m, sent)
        streams.append(_with(so, sent_path=sent))
    if e2ae:
        _detach_session_fingerprints(sdp, e2ae)
    _relocate(sdp, targets)
    state = _offer_state(plan, tuple(streams), tuple(decisions), reservations)
    return _tuple_new(OfferResult, (sdp.to_bytes(), tuple(decisions), state))


def _offer_orig_rtp(
    plan: OfferPlan, reservations: Mapping[int, StreamReservation]
) -> OfferResult | None:
    """`apply_offer` in one pass for the common originating offer, or None (nothing done) when
    it is not that case: every stream e2ae RTP, no session-level attribute, the session c=
    used by every stream and all of them anchored at one core address, no a=rtcp or a=acap,
    no media c=.

    The general path would then: remove a=crypto and a=3ge2ae, swap the proto, move the session
    c= (and o=) to the gateway (`_relocate_session`), set the gateway port; here each section's
    output text is built directly (`Media.body_without`) and the offer is not copied. Checked
    equal to the general path (BENCHMARKS.md, "e2ae SDP rewrite", round 3): keep them in step."""
    offer = plan.offer
    media = offer.media
    streams = plan.streams
    if len(streams) != len(media):
        return None
    sci = offer.session_connection_index()
    if sci < 0:
        return None
    host: str | None = None
    bodies: list[str] = []
    for pos, (so, m) in enumerate(zip(streams, media, strict=True)):
        if (
            so.index != pos
            or so.mode is not _E2AE_MODE
            or so.kind is not _RTP
            or m.port == 0
            or m.proto == so.proto_out
            or m.connection_line() is not None
        ):
            return None
        res = reservations.get(pos)
        if res is None:
            return None
        ep = res.core
        if host is None:
            host = ep.host
        elif ep.host != host:
            return None
        if m.has_any("rtcp", "acap"):
            return None
        bodies.append(
            m.body_without(
                f"m={m.media} {ep.port} {so.proto_out} {' '.join(m.fmts)}", "crypto", "3ge2ae"
            )
        )
    if host is None:
        return None
    session = offer.session.copy()
    _relocate_session(offer, session, sci, host)
    decisions = plan.decisions
    state = _offer_state(plan, streams, decisions, reservations)
    return _tuple_new(OfferResult, (offer.render(bodies, session), decisions, state))


def _offer_state(
    plan: OfferPlan,
    streams: tuple[StreamOffer, ...],
    decisions: tuple[StreamDecision, ...],
    reservations: Mapping[int, StreamReservation],
) -> OfferState:
    """What the ALG keeps until the answer: the plan's context with the streams as sent."""
    return _tuple_new(
        OfferState,
        (
            plan.direction,
            plan.flags,
            plan.subscriber,
            plan.policy,
            plan.offer,
            streams,
            decisions,
            MappingProxyType(dict(reservations)),
            plan.rekey,
            plan.previous,
        ),
    )


def _offer_k21(
    plan: OfferPlan, so: StreamOffer, rng: Rng, local: SrtpKey | None = None
) -> tuple[CryptoAttr, ...]:
    ctx = _ctx(plan.subscriber, plan.direction, so.index, so.kind, so.proto, plan.flags)
    if local is not None:
        # The gateway made its own key towards the UE (`StreamReservation.local_key`, TS 23.334
        # §6.2.10): it is the one line we offer (7.3.1 step 4 allows one or more), whatever a
        # previous exchange used, since it is the key the gateway protects with.
        if local.suite not in plan.policy.allowed_suites(ctx):
            raise GatewayError(
                f"gateway key for m-line {so.index} has suite {local.suite}, not allowed"
            )
        return (CryptoAttr.from_srtp_key(local),)
    prev = _prev_rtp(plan.previous, so.index)
    if prev is not None and not plan.rekey:
        allowed = set(plan.policy.allowed_suites(ctx))
        # re-offer after a completed exchange: keep tag, suite and key of what is in use
        if prev.tx is not None and prev.tx.suite in allowed:
            return (CryptoAttr.from_srtp_key(prev.tx),)
        # re-offer while the previous offer is pending: repeat it
        if prev.offered and all(c.suite in allowed for c in prev.offered):
            return prev.offered
    suites = plan.policy.offer_suites(ctx)
    if not suites:
        raise SdpError("policy offers no crypto suite")
    return tuple(generate_crypto(n, s, rng) for n, s in enumerate(suites, 1))
