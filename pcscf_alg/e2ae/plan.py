"""Phase 1 of the e2ae engine: `plan_offer` decides, per m-line, what TS 33.328 7.2.1/7.3.1 do."""

from __future__ import annotations

from ..errors import SdpError
from ..mediaplan import Direction, Fingerprint, MediaKind, StreamMode, StreamRequest
from ..policy.base import (
    DowngradeAction,
    MsrpTlsAction,
    Policy,
    PolicyContext,
    UnnegotiatedAction,
    UnregisteredMsrpAction,
)
from ..sdp.attrs import E2aeIndicator
from ..sdp.crypto import CryptoAttr, parse_crypto
from ..sdp.fingerprint import usable
from ..sdp.model import Media, Sdp
from .helpers import (
    _KINDS,
    _SR_FAST,
    _ctx,
    _endpoint,
    _fingerprints,
    _indication,
    _new_object,
    _path,
    _prev_rtp,
    _previous,
    _rule,
    _same_key,
    _session_indication,
    _setup,
)
from .records import (
    _BYPASS,
    _E2AE_MODE,
    _MSRP,
    _ORIGINATING,
    _OTHER,
    _PASS,
    _REJECTED,
    _REQUESTED,
    _RTP,
    _RTP_PLAIN,
    _RTP_SECURE,
    _SO_DEFAULTS,
    _TERMINATING,
    C_ORIG,
    C_TERM,
    MSRP_TCP,
    MSRP_TLS,
    E2aeFlags,
    OfferPlan,
    Previous,
    StreamDecision,
    StreamOffer,
    _decision,
    _Prev,
    _tuple_new,
    _with,
)


def plan_offer(
    sdp: bytes | str | Sdp,
    direction: Direction,
    flags: E2aeFlags,
    policy: Policy,
    subscriber: str | None = None,
    *,
    anchor_all: bool = False,
    previous: Previous | None = None,
    rekey: bool = False,
) -> OfferPlan:
    """Parse an offer and decide, per m-line, what the P-CSCF does (see module docstring).

    `anchor_all`: when True, non-e2ae RTP/MSRP streams are anchored at the gateway in PASS mode
    (addresses rewritten, bytes untouched); when False they BYPASS it (SDP untouched apart from
    3ge2ae sanitising). Raises `SdpError` (488) on a bad offer or a NOTE 2a rejection.
    """
    offer = sdp if isinstance(sdp, Sdp) else Sdp.parse(sdp)
    prev = _previous(previous)
    plain_mode = _PASS if anchor_all else _BYPASS
    # The session-level indication is the same for every m-line: read it once.
    sess_ind = _session_indication(offer) if offer.has_session_attrs() else None
    orig = direction is _ORIGINATING
    streams: list[StreamOffer] = []
    decisions: list[StreamDecision] = []
    requests: list[StreamRequest] = []
    for i, m in enumerate(offer.media):
        if orig:
            so, dec = _plan_originating(
                offer, m, i, flags, policy, subscriber, plain_mode, prev, rekey, sess_ind
            )
        else:
            so, dec = _plan_terminating(
                offer, m, i, flags, policy, subscriber, plain_mode, sess_ind
            )
        mode = so.mode
        if prev and mode is not _E2AE_MODE and mode is not _REJECTED:
            p = prev[i] if i < len(prev) else None
            if p is not None and p.mode is _E2AE_MODE:
                so, dec = _downgrade(
                    offer, m, i, direction, flags, policy, subscriber, prev, rekey, so, dec
                )
                mode = so.mode
        streams.append(so)
        decisions.append(dec)
        if mode is _E2AE_MODE or mode is _PASS:
            kind = so.kind
            mux = so.rtcp_mux
            # The suite towards the UE, for a gateway that makes its own key there
            # (`StreamRequest.ue_suite`, rtpengine): K11's (7.2.1 step 7: K12 takes its suite),
            # else the first one policy offers (7.3.1 step 4).
            ue_suite: str | None = None
            if mode is _E2AE_MODE and kind is _RTP:
                if so.k11 is not None:
                    ue_suite = so.k11.suite
                elif not orig:
                    pctx = _ctx(subscriber, direction, i, kind, so.proto, flags)
                    offered = policy.offer_suites(pctx)
                    ue_suite = offered[0] if offered else None
            # Positional: keyword binding makes this frozen dataclass ~2x dearer to build.
            # (index, kind, access_rtcp_mux, core_rtcp_mux, want_local_fingerprint); RFC 5761
            # mux on each leg mirrors what the peers negotiate (docs/e2ae-notes.md §7.1); at
            # offer time only the offerer's wish is known.
            if _SR_FAST:  # filled like `_new_endpoint`: half the cost of the constructor
                req: StreamRequest = _new_object(StreamRequest)
                d = req.__dict__
                d["index"] = i
                d["kind"] = kind
                d["access_rtcp_mux"] = mux
                d["core_rtcp_mux"] = mux
                d["want_local_fingerprint"] = kind is _MSRP and mode is _E2AE_MODE
                d["ue_suite"] = ue_suite
                requests.append(req)
            else:  # pragma: no cover - StreamRequest changed shape
                requests.append(
                    StreamRequest(
                        i, kind, mux, mux, kind is _MSRP and mode is _E2AE_MODE, ue_suite
                    )
                )
    return _tuple_new(
        OfferPlan,
        (
            direction,
            flags,
            subscriber,
            policy,
            offer,
            tuple(streams),
            tuple(decisions),
            tuple(requests),
            anchor_all,
            rekey,
            prev,
        ),
    )


def _base_stream(
    offer: Sdp,
    m: Media,
    i: int,
    kind: MediaKind,
    mode: StreamMode,
    proto_out: str | None = None,
    k11: CryptoAttr | None = None,
) -> StreamOffer:
    mux = kind is _RTP and m.has_attr("rtcp-mux")
    proto = m.proto
    # Positional (index, kind, mode, media, proto, proto_out, offerer, rtcp_mux, k11), and
    # proto_out/k11 given here rather than by a later `_replace` (which costs a whole rebuild).
    return _tuple_new(
        StreamOffer,
        (
            i,
            kind,
            mode,
            m.media,
            proto,
            proto if proto_out is None else proto_out,
            # RTCP port as if not muxed: whether mux is used is only known from the answer
            _endpoint(offer, m, False),
            mux,
            k11,
            *_SO_DEFAULTS,
        ),
    )


def _passthrough(
    offer: Sdp, m: Media, i: int, kind: MediaKind, plain_mode: StreamMode, action: str, rule: str
) -> tuple[StreamOffer, StreamDecision]:
    mode = plain_mode if kind is not _OTHER else _BYPASS
    if kind is _OTHER:
        action += "; not anchored (no gateway support for this proto)"
    # Nothing else is read from a stream we do not terminate: its attributes are the
    # endpoints' business, and a quirk in them must not fail the call.
    return _base_stream(offer, m, i, kind, mode), _decision(i, kind, mode, action, rule)


def _msrp_info(offer: Sdp, m: Media, so: StreamOffer, **more: object) -> StreamOffer:
    """What e2ae needs from an MSRP m-line we terminate: a=path, a=setup, a=msrp-cema (and
    `more` fields, set in the same rebuild)."""
    return _with(
        so, setup=_setup(offer, m), cema=m.has_attr("msrp-cema"), path=_path(m, so.index), **more
    )


def _plan_originating(
    offer: Sdp,
    m: Media,
    i: int,
    flags: E2aeFlags,
    policy: Policy,
    subscriber: str | None,
    plain_mode: StreamMode,
    prev: tuple[_Prev | None, ...],
    rekey: bool,
    sess_ind: E2aeIndicator | None,
) -> tuple[StreamOffer, StreamDecision]:
    proto = m.proto.upper()
    kind = _KINDS.get(proto, _OTHER)
    if m.port == 0:
        so = _base_stream(offer, m, i, kind, _REJECTED)
        return so, _decision(
            i, kind, _REJECTED, "rejected m-line (port 0) forwarded as is", "RFC 3264 §6"
        )
    ind = _indication(m, sess_ind)
    requested = ind is _REQUESTED
    secure = proto in _RTP_PLAIN or proto == MSRP_TLS
    if not secure:
        note = "; 3ge2ae on a non-secure proto ignored" if ind is not None else ""
        return _passthrough(
            offer,
            m,
            i,
            kind,
            plain_mode,
            f"{m.proto}: no media security{note}",
            f"{C_ORIG} step 2 (applies to RTP/SAVP(F) and TCP/TLS/MSRP only)",
        )
    established = flags.rtp if kind is _RTP else flags.msrp
    ctx = _ctx(subscriber, _ORIGINATING, i, kind, m.proto, flags)
    rule: str
    if requested and established:
        rule = f"{C_ORIG} steps 2-3"
        action = "e2ae requested and support established"
    elif requested:
        verdict = policy.e2ae_not_registered(ctx)
        prule = _rule(policy, subscriber, "e2ae_not_registered", verdict.value)
        if verdict is UnnegotiatedAction.REJECT:
            raise SdpError(
                "e2ae requested but not negotiated at registration (TS 33.328 7.2.1 NOTE 2a)"
            )
        if verdict is UnnegotiatedAction.E2E:
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "e2ae requested without registered support: indication dropped, end to end",
                f"{C_ORIG} NOTE 2a; {prule}",
            )
        rule = f"{C_ORIG} NOTE 2a, step 3; {prule}"
        action = "e2ae requested without registered support: applied anyway"
    elif kind is _RTP:
        return _passthrough(
            offer,
            m,
            i,
            kind,
            plain_mode,
            "SRTP without e2ae indication: end to end, crypto untouched",
            f"{C_ORIG} step 2 (7.2.2/7.2.3)",
        )
    else:
        verdict2 = policy.originating_msrp_tls(ctx)
        prule = _rule(policy, subscriber, "originating_msrp_tls", verdict2.value)
        if verdict2 is MsrpTlsAction.PASS:
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "MSRP over TLS without e2ae indication: end to end",
                f"{C_ORIG} step 2 (7.2.3); {prule}",
            )
        if not (m.has_attr("fingerprint") or offer.session_attr("fingerprint") is not None):
            # NOTE x: terminate "streams signalled with TCP/TLS/MSRP and a fingerprint".
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "MSRP over TLS without fingerprint: cannot terminate, end to end",
                f"{C_ORIG} NOTE x; {prule}",
            )
        rule = f"{C_ORIG} step 2 NOTE x, step 3; {prule}"
        action = "MSRP TLS terminated without e2ae indication"
    return _originating_e2ae(
        offer, m, i, kind, proto, ctx, policy, subscriber, prev, rekey, action, rule
    )


def _originating_e2ae(
    offer: Sdp,
    m: Media,
    i: int,
    kind: MediaKind,
    proto: str,
    ctx: PolicyContext,
    policy: Policy,
    subscriber: str | None,
    prev: tuple[_Prev | None, ...],
    rekey: bool,
    action: str,
    rule: str,
) -> tuple[StreamOffer, StreamDecision]:
    """7.2.1 step 3 on a secure stream from the UE: SRTP (K11 selected) or TLS terminated."""
    if kind is _RTP:
        k11, how = _select_k11(
            m, i, ctx, policy, subscriber, _prev_rtp(prev, i) if prev else None, rekey
        )
        out = _RTP_PLAIN[proto]
        so = _base_stream(offer, m, i, kind, _E2AE_MODE, out, k11)
        action += (
            f"; {m.proto}->{out}; K11 = crypto tag {k11.tag} {k11.suite} "
            f"({how}); crypto and 3ge2ae stripped towards the core"
        )
        return so, _decision(i, kind, _E2AE_MODE, action, rule)
    so = _base_stream(offer, m, i, kind, _E2AE_MODE)
    fps = usable(_fingerprints(offer, m))
    if not fps:
        raise SdpError(f"e2ae MSRP m-line {i} without a usable a=fingerprint (RFC 8122)")
    so = _msrp_info(offer, m, so, proto_out=MSRP_TCP, ue_fingerprints=fps)
    action += "; TCP/TLS/MSRP->TCP/MSRP; UE fingerprint stored, fingerprint and 3ge2ae stripped"
    return so, _decision(i, kind, _E2AE_MODE, action, rule)


def _downgrade(
    offer: Sdp,
    m: Media,
    i: int,
    direction: Direction,
    flags: E2aeFlags,
    policy: Policy,
    subscriber: str | None,
    prev: tuple[_Prev | None, ...],
    rekey: bool,
    so: StreamOffer,
    dec: StreamDecision,
) -> tuple[StreamOffer, StreamDecision]:
    """A re-offer would take stream `i`, anchored as e2ae, out of e2ae (`so`/`dec`: what the
    offer alone gives). 7.2.1/7.3.1 decide each offer on its own; read that way, a UE re-offer
    without a=3ge2ae:requested would carry the SDES key the UE has been using towards the
    gateway to the core, and anchoring would stop mid-call. Local policy `e2ae_downgrade`:

    - keep: the stream stays e2ae if the offer still allows it (SRTP with a=crypto or TLS with a
      fingerprint from the UE; plain RTP or TCP/MSRP from the core). If the UE itself re-offers
      plain RTP/AVP or TCP/MSRP there is no key to protect: the stream stays anchored at the
      gateway, plain on both legs (PASS; the gateway drops the SRTP contexts). What cannot stay
      e2ae (SRTP from the core, TLS from the core without a fingerprint, a proto the gateway
      does not relay) is refused as with `reject`.
    - reject: SdpError (488 + Warning naming the stream); the previous media stays in place.
    - allow: the offer's own decision, marked in the decision record.
    """
    orig = direction is _ORIGINATING
    clause = C_ORIG if orig else C_TERM
    kind = so.kind
    ctx = _ctx(subscriber, direction, i, kind, m.proto, flags)
    verdict = policy.e2ae_downgrade(ctx)
    prule = _rule(policy, subscriber, "e2ae_downgrade", verdict.value)
    stream = f"e2ae stream m-line {i} ({m.media} {m.proto})"
    if verdict is DowngradeAction.ALLOW:
        return so, _decision(
            i,
            kind,
            so.mode,
            dec.action + "; the stream was e2ae and leaves e2ae on this re-offer",
            f"{dec.rule}; {clause} / local {prule}",
        )
    if verdict is DowngradeAction.REJECT:
        raise SdpError(
            f"re-offer would take {stream} out of e2ae ({clause}; local policy e2ae_downgrade)"
        )
    rule = f"{clause} / local {prule}"
    proto = m.proto.upper()
    if orig:
        if proto in _RTP_PLAIN or proto == MSRP_TLS:
            why = (
                "without a=3ge2ae:requested"
                if _indication(m, _session_indication(offer)) is not _REQUESTED
                else "with e2ae requested, which policy alone would not apply"
            )
            return _originating_e2ae(
                offer,
                m,
                i,
                kind,
                proto,
                ctx,
                policy,
                subscriber,
                prev,
                rekey,
                f"e2ae stream re-offered by the UE {why}: kept e2ae",
                rule,
            )
        if kind is not _OTHER:
            # The UE chose plain media itself: no key of it to protect; the gateway stays in
            # the path so that the core never learns the UE's address mid-call.
            return _base_stream(offer, m, i, kind, _PASS), _decision(
                i,
                kind,
                _PASS,
                f"e2ae stream re-offered by the UE as {m.proto}: kept anchored at the gateway, "
                "plain on both legs, "
                + ("SRTP keys dropped" if kind is _RTP else "TLS no longer terminated"),
                rule,
            )
    elif kind is _RTP and proto in _RTP_SECURE:
        return _terminating_rtp_e2ae(
            offer, m, i, proto, "; e2ae stream kept towards the UE", rule
        )
    elif kind is _MSRP:
        if proto == MSRP_TCP:
            return _terminating_msrp_e2ae(
                offer,
                m,
                i,
                (),
                False,
                "e2ae stream kept towards the UE: TCP/MSRP->TCP/TLS/MSRP, gateway fingerprint "
                "and 3ge2ae:applied added",
                rule,
            )
        core_fps = usable(_fingerprints(offer, m))
        if core_fps:
            return _terminating_msrp_e2ae(
                offer,
                m,
                i,
                core_fps,
                True,
                "e2ae stream kept towards the UE: TLS from the core terminated on both legs",
                rule,
            )
    raise SdpError(
        f"re-offer would take {stream} out of e2ae and the gateway cannot keep it "
        f"({clause}; local policy e2ae_downgrade)"
    )


def _parse_cryptos(m: Media, i: int) -> list[CryptoAttr]:
    out = [parse_crypto(v) for v in m.attrs("crypto")]
    tags = {c.tag for c in out}
    if len(tags) != len(out):
        raise SdpError(f"a=crypto: duplicate tag on m-line {i}")
    return out


def _select_k11(
    m: Media,
    i: int,
    ctx: PolicyContext,
    policy: Policy,
    subscriber: str | None,
    prev: _Prev | None,
    rekey: bool,
) -> tuple[CryptoAttr, str]:
    """TS 33.328 7.2.1 step 3: "selects one SDES crypto attribute" (K11)."""
    offered = _parse_cryptos(m, i)
    if not offered:
        raise SdpError(f"e2ae requested on m-line {i} without a=crypto")
    allowed = policy.allowed_suites(ctx)
    candidates = [c for c in offered if c.suite in allowed and c.gateway_problem() is None]
    if not candidates:
        raise SdpError(f"no supported SRTP crypto suite offered on m-line {i}")
    if prev is not None and not rekey:
        for c in candidates:
            if _same_key(c, prev.rx):
                return c, "re-offer: the UE kept its key"
    chosen = policy.select_crypto(ctx, candidates)
    if chosen is None:
        raise SdpError(f"no acceptable SRTP crypto suite offered on m-line {i}")
    return chosen, f"selected by {policy.describe(subscriber)}"


def _plan_terminating(
    offer: Sdp,
    m: Media,
    i: int,
    flags: E2aeFlags,
    policy: Policy,
    subscriber: str | None,
    plain_mode: StreamMode,
    sess_ind: E2aeIndicator | None,
) -> tuple[StreamOffer, StreamDecision]:
    proto = m.proto.upper()
    kind = _KINDS.get(proto, _OTHER)
    foreign = " (foreign a=3ge2ae stripped)" if _indication(m, sess_ind) is not None else ""
    if m.port == 0:
        so = _base_stream(offer, m, i, kind, _REJECTED)
        return so, _decision(
            i, kind, _REJECTED, "rejected m-line (port 0) forwarded as is" + foreign, "RFC 3264 §6"
        )
    ctx = _ctx(subscriber, _TERMINATING, i, kind, m.proto, flags)
    if kind is _RTP:
        if proto in _RTP_PLAIN:
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "SRTP from the core: end to end, crypto untouched" + foreign,
                f"{C_TERM} step 3, NOTE 2 (7.3.2/7.3.3)",
            )
        if not flags.rtp:
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "e2ae support for RTP not established: no media plane security" + foreign,
                f"{C_TERM} step 3",
            )
        return _terminating_rtp_e2ae(offer, m, i, proto, foreign, f"{C_TERM} steps 3-4")
    if kind is _OTHER:
        return _passthrough(
            offer, m, i, kind, plain_mode, f"{m.proto}: not e2ae" + foreign, f"{C_TERM} step 3"
        )
    core_fps: tuple[Fingerprint, ...] = ()
    core_tls = False
    if proto == MSRP_TCP:
        if flags.msrp:
            rule = f"{C_TERM} steps 3-4"
            action = "TCP/MSRP->TCP/TLS/MSRP, gateway fingerprint and 3ge2ae:applied added"
        else:
            v = policy.terminating_msrp_unregistered(ctx)
            prule = _rule(policy, subscriber, "terminating_msrp_unregistered", v.value)
            if v is UnregisteredMsrpAction.NONE:
                return _passthrough(
                    offer,
                    m,
                    i,
                    kind,
                    plain_mode,
                    "e2ae support for MSRP not established: no media plane security" + foreign,
                    f"{C_TERM} step 3; {prule}",
                )
            rule = f"{C_TERM} step 3 NOTE x, step 4; {prule}"
            action = (
                "e2ae without registered support: TCP/MSRP->TCP/TLS/MSRP, gateway "
                "fingerprint and 3ge2ae:applied added"
            )
    else:
        v2 = policy.terminating_msrp_tls(ctx)
        prule = _rule(policy, subscriber, "terminating_msrp_tls", v2.value)
        if v2 is MsrpTlsAction.PASS:
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "MSRP over TLS from the core: end to end" + foreign,
                f"{C_TERM} step 3 (7.3.3); {prule}",
            )
        core_fps = usable(_fingerprints(offer, m))
        if not core_fps:
            return _passthrough(
                offer,
                m,
                i,
                kind,
                plain_mode,
                "MSRP over TLS from the core without fingerprint: cannot "
                "terminate, end to end" + foreign,
                f"{C_TERM} step 3; {prule}",
            )
        core_tls = True
        rule = f"{C_TERM} step 3 NOTE x, step 4; {prule}"
        action = (
            "TLS from the core terminated on both legs: gateway fingerprint towards UE and "
            "core, 3ge2ae:applied added"
        )
    return _terminating_msrp_e2ae(offer, m, i, core_fps, core_tls, action + foreign, rule)


def _terminating_rtp_e2ae(
    offer: Sdp, m: Media, i: int, proto: str, note: str, rule: str
) -> tuple[StreamOffer, StreamDecision]:
    """7.3.1 steps 3-4 on plain RTP from the core: SRTP with our K21 towards the UE."""
    so = _base_stream(offer, m, i, _RTP, _E2AE_MODE, _RTP_SECURE[proto])
    stripped = "; core crypto lines dropped" if m.has_attr("crypto") else ""
    return so, _decision(
        i,
        _RTP,
        _E2AE_MODE,
        f"{m.proto}->{_RTP_SECURE[proto]}, K21 offered, 3ge2ae:applied added" + stripped + note,
        rule,
    )


def _terminating_msrp_e2ae(
    offer: Sdp,
    m: Media,
    i: int,
    core_fps: tuple[Fingerprint, ...],
    core_tls: bool,
    action: str,
    rule: str,
) -> tuple[StreamOffer, StreamDecision]:
    """7.3.1 step 4 on MSRP from the core: TLS with the gateway's certificate towards the UE
    (and towards the core too when `core_tls`)."""
    so = _msrp_info(
        offer,
        m,
        _base_stream(offer, m, i, _MSRP, _E2AE_MODE),
        proto_out=MSRP_TLS,
        core_fingerprints=core_fps,
        core_tls=core_tls,
    )
    return so, _decision(i, _MSRP, _E2AE_MODE, action, rule)
