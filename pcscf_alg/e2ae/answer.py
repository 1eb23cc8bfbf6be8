"""Phase 3 of the e2ae engine: `apply_answer` rewrites the answer and builds the MediaPlan."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from ..errors import GatewayError, SdpError
from ..mediaplan import (
    Endpoint,
    Fingerprint,
    MediaKind,
    MediaPlan,
    SetupRole,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamReservation,
    ThroughConnection,
)
from ..sdp.crypto import CryptoAttr, KeyParam
from ..sdp.fingerprint import usable
from ..sdp.model import Media, Sdp
from ..sdp.msrp import MsrpUri, answer_role, peer_role
from .helpers import (
    _KINDS,
    _endpoint,
    _fingerprints,
    _new_endpoint,
    _new_object,
    _path,
    _prev_rtp,
    _setup,
)
from .plan import _parse_cryptos
from .records import (
    _ACTIVE,
    _ACTPASS,
    _AGNOSTIC,
    _AWARE,
    _BYPASS,
    _DIRECTIONS,
    _E2AE_MODE,
    _MSRP,
    _ORIGINATING,
    _PASS,
    _PASSIVE,
    _REJECTED,
    _RTP,
    _TC_INACTIVE,
    _TC_RECVONLY,
    _TC_SENDONLY,
    _TC_SENDRECV,
    C_ORIG,
    C_TERM,
    AnswerResult,
    OfferState,
    Rng,
    StreamDecision,
    StreamOffer,
    _decision,
    _tuple_new,
)
from .rewrite import (
    _detach_session_fingerprints,
    _new_tx_key,
    _relocate,
    _relocate_session,
    _reservation,
    _set_fingerprint,
    _set_path,
    _strip_3ge2ae,
)

# `StreamPlan` (mediaplan, shared with the gateway) is a frozen dataclass of 20 fields: its
# generated __init__ runs one `object.__setattr__` per field, ~4 µs here, the dearest object of
# an exchange. `_stream_plan` builds the same object the way `copy.copy` does, filling the new
# instance's __dict__ in one go (~1.5 µs): same class, fields, equality, hash and repr. Only
# valid for a dataclass without __post_init__ or __slots__ whose fields all have defaults after
# the first three, which is checked here; otherwise it falls back to the constructor.
_SP_DEFAULTS: Final[dict[str, object]] = {
    f.name: f.default for f in dataclasses.fields(StreamPlan)[3:]
}
_SP_FAST: Final = (
    not hasattr(StreamPlan, "__post_init__")
    and not hasattr(StreamPlan, "__slots__")
    and [f.name for f in dataclasses.fields(StreamPlan)[:3]] == ["index", "kind", "mode"]
    and all(f.default is not dataclasses.MISSING for f in dataclasses.fields(StreamPlan)[3:])
)


# Every field in order, the first three to be set: copying a dict of the final size costs less
# than growing the instance's own dict one key at a time (it was resized twice).
_SP_TEMPLATE: Final[dict[str, object]] = {"index": 0, "kind": None, "mode": None, **_SP_DEFAULTS}
_set_attr: Final = object.__setattr__  # bypasses the frozen dataclass's __setattr__


def _stream_plan(index: int, kind: MediaKind, mode: StreamMode, **fields: Any) -> StreamPlan:
    if not _SP_FAST:  # pragma: no cover - StreamPlan changed shape: use its constructor
        return StreamPlan(index, kind, mode, **fields)
    d = _SP_TEMPLATE.copy()
    d["index"] = index
    d["kind"] = kind
    d["mode"] = mode
    d.update(fields)
    if len(d) != len(_SP_TEMPLATE):  # a misspelt field: what __init__ raises
        raise TypeError(f"StreamPlan has no field {sorted(d.keys() - _SP_TEMPLATE.keys())}")
    sp: StreamPlan = _new_object(StreamPlan)
    _set_attr(sp, "__dict__", d)
    return sp


def _remotes(
    offerer: Endpoint | None, answerer: Endpoint | None, mux: bool, orig: bool
) -> tuple[Endpoint | None, Endpoint | None]:
    """(UE, core) remote addresses of a stream; no separate RTCP port when RTCP is muxed."""
    ue_ep, core_ep = (offerer, answerer) if orig else (answerer, offerer)
    if mux:
        if ue_ep is not None:
            ue_ep = _new_endpoint(ue_ep.host, ue_ep.port, None)
        if core_ep is not None:
            core_ep = _new_endpoint(core_ep.host, core_ep.port, None)
    return ue_ep, core_ep


def _e2ae_rtp_plan(
    i: int,
    ue_ep: Endpoint | None,
    core_ep: Endpoint | None,
    mux: bool,
    keys: tuple[SrtpKey, SrtpKey],
    through: ThroughConnection,
) -> StreamPlan:
    """The gateway's plan for an e2ae RTP stream: keys (from UE, to UE), addresses, mux."""
    return _stream_plan(
        i,
        _RTP,
        _E2AE_MODE,
        ue_remote=ue_ep,
        core_remote=core_ep,
        access_rtcp_mux=mux,
        core_rtcp_mux=mux,
        rx_key=keys[0],
        tx_key=keys[1],
        through=through,
    )


def _through(answer_dir: str | None, orig: bool) -> ThroughConnection:
    """Which way media may flow at the gateway, from the answerer's direction attribute."""
    if answer_dir in (None, "sendrecv"):
        return _TC_SENDRECV
    if answer_dir == "inactive":
        return _TC_INACTIVE
    answerer_sends = answer_dir == "sendonly"
    # originating: the answerer is the core (its sending = towards the UE)
    towards_ue = answerer_sends if orig else not answerer_sends
    return _TC_SENDONLY if towards_ue else _TC_RECVONLY


def apply_answer(state: OfferState, answer_sdp: bytes | str | Sdp, rng: Rng) -> AnswerResult:
    """Validate and rewrite the answer for the offerer's side; build the gateway's MediaPlan."""
    orig = state.direction is _ORIGINATING
    ans = Sdp.parse(answer_sdp) if not isinstance(answer_sdp, Sdp) else answer_sdp.copy()
    if len(ans.media) != len(state.streams):
        raise SdpError(f"answer has {len(ans.media)} m-lines, the offer had {len(state.streams)}")
    if orig and not ans.has_session_attrs():
        for so in state.streams:  # the one-pass rewrite is for all-e2ae-RTP answers only
            if so.mode is not _E2AE_MODE or so.kind is not _RTP:
                break
        else:
            fast = _answer_orig_rtp(state, ans, rng)
            if fast is not None:
                return fast
    # Gather what we need from the answer before editing it.
    sess_dir: str | None = None
    if ans.has_session_attrs():
        for line in ans.session:
            if line[2:] in _DIRECTIONS:
                sess_dir = line[2:]
                break
    gathered = []
    for so, m in zip(state.streams, ans.media, strict=True):
        if m.media != so.media:
            raise SdpError(f"answer m-line {so.index} is {m.media}, the offer's is {so.media}")
        live = m.port != 0
        mux = so.rtcp_mux and live and m.has_attr("rtcp-mux")
        msrp = live and so.kind is _MSRP and so.mode is not _BYPASS
        gathered.append(
            (
                _endpoint(ans, m, mux) if live else None,
                mux,
                _fingerprints(ans, m) if msrp and not orig and so.mode is _E2AE_MODE else (),
                _setup(ans, m) if msrp else None,
                (m.direction() or sess_dir) if live else None,
            )
        )
    _strip_3ge2ae(ans)
    targets: dict[int, Endpoint] = {}
    decisions: list[StreamDecision] = []
    plans: list[StreamPlan] = []
    e2ae: set[int] = set()
    for so, m, (ans_ep, mux, fps_a, setup_a, direction) in zip(
        state.streams, ans.media, gathered, strict=True
    ):
        i = so.index
        kind = so.kind
        through = _through(direction, orig)
        ue_ep, core_ep = _remotes(so.offerer, ans_ep, mux, orig)
        if so.mode is _REJECTED or m.port == 0:
            action = "rejected m-line (port 0)"
            rule = "RFC 3264 §6"
            if so.mode is _E2AE_MODE:
                # Answer must mirror the offered proto; a rejected stream carries no keys.
                m.set_proto(so.proto)
                m.remove_attrs("crypto", "fingerprint")
                action += f" by the answerer; proto restored to {so.proto}, no keys"
                rule = f"{C_ORIG if orig else C_TERM}; RFC 3264 §6"
            decisions.append(_decision(i, kind, _REJECTED, action, rule))
            plans.append(StreamPlan(i, kind, _REJECTED))
            continue
        if so.mode is _BYPASS:
            decisions.append(state.decisions[i])
            plans.append(
                _stream_plan(
                    i, kind, _BYPASS, ue_remote=ue_ep, core_remote=core_ep, through=through
                )
            )
            continue
        res = state.reservations.get(i)
        if res is None:
            res = _reservation(state.reservations, i)  # raises GatewayError
        targets[i] = res.access if orig else res.core
        if so.mode is _PASS:
            access_setup, core_setup = _PASSIVE, _ACTIVE
            if kind is _MSRP:
                # A TCP relay: each leg's role follows the answer passed through unchanged.
                role = setup_a if setup_a is not None else _PASSIVE
                if orig:
                    access_setup, core_setup = role, peer_role(role)
                else:
                    access_setup, core_setup = peer_role(role), role
            decisions.append(
                _decision(
                    i,
                    kind,
                    _PASS,
                    state.decisions[i].action + "; anchored, relayed untouched",
                    state.decisions[i].rule,
                )
            )
            plans.append(
                _stream_plan(
                    i,
                    kind,
                    _PASS,
                    ue_remote=ue_ep,
                    core_remote=core_ep,
                    access_rtcp_mux=mux,
                    core_rtcp_mux=mux,
                    access_setup=access_setup,
                    core_setup=core_setup,
                    through=through,
                )
            )
            continue
        e2ae.add(i)
        if m.proto.upper() != so.proto_out.upper():
            raise SdpError(
                f"answer m-line {i} proto {m.proto} does not match offered {so.proto_out}"
            )
        if kind is _RTP:
            plan, dec = _answer_rtp(state, so, m, orig, rng)
            plans.append(_e2ae_rtp_plan(i, ue_ep, core_ep, mux, plan, through))
            decisions.append(dec)
            continue
        sp, dec = _answer_msrp(so, m, orig, res, fps_a, setup_a, ue_ep, core_ep, through)
        plans.append(sp)
        decisions.append(dec)
    if e2ae:
        _detach_session_fingerprints(ans, e2ae)
    _relocate(ans, targets)
    return _tuple_new(
        AnswerResult, (ans.to_bytes(), tuple(decisions), MediaPlan(tuple(plans)), state)
    )


def _answer_orig_rtp(state: OfferState, ans: Sdp, rng: Rng) -> AnswerResult | None:
    """`apply_answer` in one pass for the common originating answer, or None (nothing read from
    `rng`, nothing edited) when it is not that case: every stream e2ae RTP and live, no
    session-level attribute, the session c= used by every stream and all of them anchored at
    one access address, no a=crypto, a=3ge2ae or a=rtcp in the answer, no media c=.

    The general path would then: strip nothing, add K12 (`_orig_k12`) at the insert point,
    swap the proto, move the session c= (and o=) to the gateway (`_relocate_session`), set the
    gateway port; here each section's output text is built directly (`Media.body_with`) and the
    answer's model is left as parsed. Checked equal to the general path (BENCHMARKS.md, "e2ae SDP
    rewrite", round 3): keep them in step."""
    sci = ans.session_connection_index()
    if sci < 0:
        return None
    reservations = state.reservations
    host: str | None = None
    gathered = []
    for pos, (so, m) in enumerate(zip(state.streams, ans.media, strict=True)):
        if (
            so.index != pos
            or so.mode is not _E2AE_MODE
            or so.kind is not _RTP
            or m.port == 0
            or m.media != so.media
            or m.proto == so.proto
            or m.proto.upper() != so.proto_out.upper()
            or m.connection_line() is not None
        ):
            return None
        res = reservations.get(pos)
        if res is None:
            return None
        if host is None:
            host = res.access.host
        elif res.access.host != host:
            return None
        if m.has_any("3ge2ae", "crypto", "rtcp"):
            return None
        mux = so.rtcp_mux and m.has_attr("rtcp-mux")
        # `_endpoint` without its a=rtcp lookup (there is none)
        port = m.port
        ans_host = ans.media_host(m)
        ep = (
            None
            if ans_host is None
            else _new_endpoint(
                ans_host,
                port,
                port + 1 if not mux and _KINDS.get(m.proto.upper()) is _RTP else None,
            )
        )
        gathered.append((res.access.port, ep, mux, m.direction()))
    if host is None:
        return None
    decisions: list[StreamDecision] = []
    plans: list[StreamPlan] = []
    bodies: list[str] = []
    for so, m, (port, ans_ep, mux, direction) in zip(
        state.streams, ans.media, gathered, strict=True
    ):
        i = so.index
        through = _through(direction, True)
        ue_ep, core_ep = _remotes(so.offerer, ans_ep, mux, True)
        k12, keys, dec = _orig_k12(state, so, rng)
        bodies.append(
            m.body_with(f"m={m.media} {port} {so.proto} {' '.join(m.fmts)}", [k12.line()])
        )
        plans.append(_e2ae_rtp_plan(i, ue_ep, core_ep, mux, keys, through))
        decisions.append(dec)
    session = ans.session.copy()
    _relocate_session(ans, session, sci, host)
    return _tuple_new(
        AnswerResult,
        (
            ans.render(bodies, session),
            tuple(decisions),
            MediaPlan(tuple(plans)),
            state,
        ),
    )


def _orig_k12(
    state: OfferState, so: StreamOffer, rng: Rng
) -> tuple[CryptoAttr, tuple[SrtpKey, SrtpKey], StreamDecision]:
    """7.2.1 steps 7-8 for an e2ae RTP stream: K12 (kept or fresh), the keys, the decision."""
    i = so.index
    k11 = so.k11
    assert k11 is not None
    res = state.reservations.get(i)
    local = res.local_key if res is not None else None
    if local is not None:
        # The gateway made K12 itself (`StreamReservation.local_key`, TS 23.334 §6.2.10): it
        # must fit step 7 (K11's suite); it goes out with K11's tag, as rtpengine answers it.
        if local.suite != k11.suite:
            raise GatewayError(
                f"gateway key for m-line {i} has suite {local.suite}, K11 has {k11.suite}"
            )
        k12 = CryptoAttr(k11.tag, local.suite, (KeyParam("inline", local.key_salt),))
        how = "supplied by the gateway"
    else:
        prev = _prev_rtp(state.previous, i) if state.previous else None
        k12, kept = _new_tx_key(k11, prev, state.rekey, rng)
        how = "kept from the last exchange" if kept else "generated"
    action = f"{so.proto_out}->{so.proto}; K12 tag {k12.tag} {k12.suite} {how}"
    return (
        k12,
        (k11.to_srtp_key(), k12.to_srtp_key()),
        _decision(i, so.kind, _E2AE_MODE, action, f"{C_ORIG} steps 7-8"),
    )


def _answer_rtp(
    state: OfferState, so: StreamOffer, m: Media, orig: bool, rng: Rng
) -> tuple[tuple[SrtpKey, SrtpKey], StreamDecision]:
    i = so.index
    if orig:
        # 7.2.1 steps 7-8: RTP->SRTP, exactly one crypto line with the tag and suite of K11,
        # carrying the fresh K12, no lifetime.
        m.remove_attrs("crypto")
        k12, keys, dec = _orig_k12(state, so, rng)
        m.set_proto(so.proto)
        m.insert_attrs([k12.line()])
        return keys, dec
    # 7.3.1 steps 5-7: the UE answers one of our lines with its K22; SRTP->RTP towards the core.
    answers = _parse_cryptos(m, i)
    if len(answers) != 1:
        raise SdpError(f"answer m-line {i} must carry exactly one a=crypto, has {len(answers)}")
    k22 = answers[0]
    ours = next((c for c in so.k21 if c.tag == k22.tag), None)
    if ours is None:
        raise SdpError(f"answer a=crypto tag {k22.tag} on m-line {i} was never offered")
    if ours.suite != k22.suite:
        raise SdpError(f"answer a=crypto tag {k22.tag} on m-line {i} changes the suite")
    problem = k22.gateway_problem()
    if problem is not None:
        raise SdpError(f"answer a=crypto on m-line {i}: {problem}")
    m.remove_attrs("crypto")
    m.set_proto(so.proto)
    action = (
        f"{so.proto_out}->{so.proto}; K22 = UE line tag {k22.tag} {k22.suite}, "
        f"K21 = our tag {ours.tag}; crypto stripped towards the core"
    )
    return (k22.to_srtp_key(), ours.to_srtp_key()), _decision(
        i, so.kind, _E2AE_MODE, action, f"{C_TERM} steps 5-7"
    )


def _answer_msrp(
    so: StreamOffer,
    m: Media,
    orig: bool,
    res: StreamReservation,
    ans_fps: tuple[Fingerprint, ...],
    ans_setup: SetupRole | None,
    ue_ep: Endpoint | None,
    core_ep: Endpoint | None,
    through: ThroughConnection,
) -> tuple[StreamPlan, StreamDecision]:
    """7.2.1 steps 7-8 / 7.3.1 steps 5-7 for a terminated MSRP stream: the answer's rewrite, and
    the gateway's plan for it (TLS roles, fingerprints, MSRP paths)."""
    i = so.index
    fp = res.local_fingerprint
    if fp is None:
        raise GatewayError(f"no local certificate fingerprint reserved for m-line {i}")
    ans_path = _path(m, i)
    cema = so.cema and m.has_attr("msrp-cema")
    mode = _AGNOSTIC if cema else _AWARE
    if ans_setup is _ACTPASS:
        raise SdpError(f"answer m-line {i}: a=setup:actpass is not allowed in an answer")
    agw_access = agw_core = None
    core_fps: tuple[Fingerprint, ...] = ()
    core_tls = False
    if orig:
        # 7.2.1 step 8: TCP->TLS, fingerprints from the core removed, ours added.
        # Gateway roles: core leg = the opposite of the core's answer (absent: the answerer is
        # passive, RFC 4145 §4.1); access leg = our answer to the UE's offer
        # (docs/e2ae-notes.md §5.3).
        core_setup = peer_role(ans_setup) if ans_setup is not None else _ACTIVE
        access_setup = answer_role(so.setup)
        m.set_proto(so.proto)
        _set_fingerprint(m, fp, access_setup)
        ue_fps = so.ue_fingerprints
        ue_uri, core_uri = so.path[-1], ans_path[-1]
        if mode is _AWARE:
            agw_access = str(
                MsrpUri.build("msrps", res.access.host, res.access.port, core_uri.session_id)
            )
            agw_core = so.sent_path or str(
                MsrpUri.build("msrp", res.core.host, res.core.port, ue_uri.session_id)
            )
            _set_path(m, agw_access)
        action = (
            f"TCP/MSRP->TCP/TLS/MSRP; gateway fingerprint, a=setup:"
            f"{access_setup.value}; {mode.value} MSRP"
        )
        rule = f"{C_ORIG} steps 7-8"
    else:
        # 7.3.1 steps 5-7: the UE's fingerprint goes to the gateway, TLS->TCP towards the core.
        ue_fps = usable(ans_fps)
        if not ue_fps:
            raise SdpError(f"answer m-line {i} without a usable a=fingerprint (RFC 8122)")
        core_tls, core_fps = so.core_tls, so.core_fingerprints
        m.remove_attrs("fingerprint")
        m.set_proto(so.proto)
        # We offered passive; a UE that ignores a=setup follows RFC 4975 (the offerer connects).
        access_setup = peer_role(ans_setup) if ans_setup is not None else _ACTIVE
        if so.setup is None:
            # the core relied on the RFC 4145 default (offerer active): answer with it too
            m.remove_attrs("setup")
            core_setup = _PASSIVE
        else:
            core_setup = answer_role(so.setup)
            m.replace_or_insert("setup", f"a=setup:{core_setup.value}")
        if core_tls:
            # TLS from the core terminated too: our certificate towards the core peer as well.
            _set_fingerprint(m, fp, core_setup if so.setup is not None else None)
        ue_uri, core_uri = ans_path[-1], so.path[-1]
        if mode is _AWARE:
            agw_access = so.sent_path or str(
                MsrpUri.build("msrps", res.access.host, res.access.port, core_uri.session_id)
            )
            scheme = "msrps" if core_tls else "msrp"
            agw_core = str(
                MsrpUri.build(scheme, res.core.host, res.core.port, ue_uri.session_id)
            )
            _set_path(m, agw_core)
        action = (
            f"TCP/TLS/MSRP->{so.proto}; UE fingerprint stored and stripped; gateway "
            f"{access_setup.value} towards the UE; {mode.value} MSRP"
        )
        rule = f"{C_TERM} steps 5-7"
    plan = _stream_plan(
        i,
        so.kind,
        _E2AE_MODE,
        ue_remote=ue_ep,
        core_remote=core_ep,
        ue_fingerprint=ue_fps,
        access_setup=access_setup,
        core_setup=core_setup,
        msrp_mode=mode,
        ue_path=str(ue_uri),
        agw_access_path=agw_access,
        core_path=str(core_uri),
        agw_core_path=agw_core,
        core_tls=core_tls,
        core_fingerprint=core_fps,
        through=through,
    )
    return plan, _decision(i, so.kind, _E2AE_MODE, action, rule)
