"""The TS 33.328 e2ae procedures (7.2.1 originating, 7.3.1 terminating) as pure functions.

Two phases, because the gateway must reserve ports between deciding and rewriting:

1. `plan_offer(sdp, direction, flags, policy, subscriber)` parses the offer (raising `SdpError`
   on bad SDP, or on the NOTE 2a error case when policy says reject), decides per m-line what to
   do (`StreamDecision`) and lists the streams that need a gateway reservation
   (`OfferPlan.requests`, `mediaplan.StreamRequest`).
2. The ALG asks the gateway to reserve those streams (`agw.reserve`), then calls
   `apply_offer(plan, reservations, rng)`: it generates our keys (K21 on the terminating side),
   rewrites the offer (towards the core for ORIGINATING, towards the UE for TERMINATING) and
   returns an `OfferState` that the ALG keeps with the dialog (per early dialog when forking).
3. When the answer comes back: `apply_answer(state, answer, rng)` validates it, generates K12 on
   the originating side, rewrites it towards the offerer and returns the complete
   `mediaplan.MediaPlan` for `agw.configure`.

Keys: `rx_key` unprotects what comes FROM the UE (K11 originating, K22 terminating), `tx_key`
protects what goes TO the UE (K12 originating, K21 terminating). Keys come from the injected
`rng(n) -> n random bytes` (callers pass `secrets.token_bytes`), so tests are deterministic.

Re-offers (re-INVITE, UPDATE, late offers): pass the last `AnswerResult` (or the pending
`OfferState`) as `previous=`. A re-offer towards the UE keeps tag, suite and key K21; a re-offer
from the UE that keeps its key K11 gets the same K12 back. New m-lines get new keys; `rekey=True`
forces fresh keys everywhere (RFC 4568 §7.1.4: a new key means a new crypto context).

SDP sanitising (7.3.1 last paragraph, spec README §3.2): every `a=3ge2ae` is removed from every
SDP we forward, in both directions; `a=3ge2ae:applied` is added only to e2ae streams of an offer
towards the UE. Nothing is added to answers towards the UE (NOTE 3, example 06).

Addresses: c=/m= of anchored streams move to the reservation's `core` endpoint in an offer or
answer sent towards the core, to its `access` endpoint towards the UE. The session-level c=
(and o=, when it mirrored c=) moves only when every live stream that uses it is anchored;
otherwise anchored streams get a media-level c=. MSRP: CEMA (a=msrp-cema in offer and answer)
runs application-agnostic with a=path untouched; otherwise application-aware, with a=path set to
`msrps://<access>/<sid>;tcp` towards the UE and `msrp://<core>/<sid>;tcp` towards the core
(spec README §5.5). a=setup: towards the UE we offer `passive` and answer `passive` to an
`actpass`/`active` UE, `active` to a `passive` one; towards the core we offer `actpass` and
answer what RFC 4145 gives for the core's offer (spec README §5.3).

Errors: `SdpError` (status 488, a one-line reason fit for `Warning: 399 <host> "<reason>"`,
never containing key material); `GatewayError` if a reservation the plan asked for is missing.

Use `redact_sdp()` before logging any SDP: `a=crypto` lines carry keys in clear.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from .errors import GatewayError, SdpError
from .mediaplan import (
    Direction,
    Endpoint,
    Fingerprint,
    MediaKind,
    MediaPlan,
    MsrpMode,
    SetupRole,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)
from .policy.base import (
    MsrpTlsAction,
    Policy,
    PolicyContext,
    UnnegotiatedAction,
    UnregisteredMsrpAction,
)
from .sdp.attrs import APPLIED_LINE, E2aeIndicator, parse_3ge2ae
from .sdp.crypto import CryptoAttr, KeyParam, generate_crypto, parse_crypto, redact
from .sdp.fingerprint import format_fingerprint, parse_fingerprint, usable
from .sdp.model import Media, Sdp, remove_attrs
from .sdp.msrp import MsrpUri, answer_role, parse_path, parse_setup, peer_role

log = logging.getLogger(__name__)

Rng = Callable[[int], bytes]

_RTP_SECURE: Final = {"RTP/AVP": "RTP/SAVP", "RTP/AVPF": "RTP/SAVPF"}
_RTP_PLAIN: Final = {v: k for k, v in _RTP_SECURE.items()}
MSRP_TLS: Final = "TCP/TLS/MSRP"
MSRP_TCP: Final = "TCP/MSRP"

_E2AE: Final = frozenset(("3ge2ae",))
_DIRECTIONS: Final = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))
_FINGERPRINT: Final = frozenset(("fingerprint",))

# Enum members as module constants, for the hot paths: on Python 3.11 `EnumType.__getattr__`
# keeps a lookup on an enum class (`StreamMode.E2AE`) from being specialised, ~130 ns each on the
# bench machine against ~10 ns for a global, and an exchange reads ~100 of them.
_E2AE_MODE: Final = StreamMode.E2AE
_REJECTED: Final = StreamMode.REJECTED
_PASS: Final = StreamMode.PASS
_BYPASS: Final = StreamMode.BYPASS
_RTP: Final = MediaKind.RTP
_MSRP: Final = MediaKind.MSRP
_OTHER: Final = MediaKind.OTHER
_ORIGINATING: Final = Direction.ORIGINATING
_TERMINATING: Final = Direction.TERMINATING
_PASSIVE: Final = SetupRole.PASSIVE
_ACTIVE: Final = SetupRole.ACTIVE
_ACTPASS: Final = SetupRole.ACTPASS
_REQUESTED: Final = E2aeIndicator.REQUESTED
_IND_OTHER: Final = E2aeIndicator.OTHER
_AWARE: Final = MsrpMode.AWARE
_AGNOSTIC: Final = MsrpMode.AGNOSTIC
_TC_SENDRECV: Final = ThroughConnection.SENDRECV
_TC_SENDONLY: Final = ThroughConnection.SENDONLY
_TC_RECVONLY: Final = ThroughConnection.RECVONLY
_TC_INACTIVE: Final = ThroughConnection.INACTIVE

# Clause references for the decision records.
C_ORIG: Final = "TS 33.328 7.2.1"
C_TERM: Final = "TS 33.328 7.3.1"


@dataclass(frozen=True, slots=True)
class E2aeFlags:
    """e2ae support indicated at registration (spec README §1.2 step 5), per protocol and side.

    Support is *established* for a protocol when both the UE and the network indicated it
    (7.2.1 step 2, 7.3.1 step 3). No registration (unknown UE) = all False.
    """

    ue_rtp: bool = False
    ue_msrp: bool = False
    net_rtp: bool = False
    net_msrp: bool = False

    @property
    def rtp(self) -> bool:
        return self.ue_rtp and self.net_rtp

    @property
    def msrp(self) -> bool:
        return self.ue_msrp and self.net_msrp


NO_E2AE: Final = E2aeFlags()


class StreamDecision(NamedTuple):
    """What was done to one m-line and which clause or policy rule made it so."""

    index: int  # type: ignore[assignment]
    kind: MediaKind
    mode: StreamMode
    action: str
    rule: str

    def __str__(self) -> str:
        return f"m[{self.index}] {self.kind.value} {self.mode.value}: {self.action} [{self.rule}]"


class StreamOffer(NamedTuple):
    """What the engine learnt about one offered m-line, and what it will do with it.

    Immutable; a NamedTuple because it is built for every m-line of every offer (a frozen
    dataclass of this size costs ~5 µs to build here, this ~0.5 µs).
    """

    index: int  # type: ignore[assignment]
    kind: MediaKind
    mode: StreamMode
    media: str  # m= media type ("audio", "message"...)
    proto: str  # as offered
    proto_out: str  # as forwarded to the answerer
    offerer: Endpoint | None  # the offerer's address for this stream (None if rejected)
    rtcp_mux: bool = False
    k11: CryptoAttr | None = None  # originating: the UE line we selected (TS 33.328 step 3)
    k21: tuple[CryptoAttr, ...] = ()  # terminating: the lines we offered (step 4)
    ue_fingerprints: tuple[Fingerprint, ...] = ()  # originating: the UE's certificate
    core_fingerprints: tuple[Fingerprint, ...] = ()  # terminating TLS from the core
    core_tls: bool = False  # TLS terminated on the core leg too (7.3.1 policy, LI use case)
    setup: SetupRole | None = None  # a=setup in the offer
    cema: bool = False  # a=msrp-cema in the offer
    path: tuple[MsrpUri, ...] = ()  # the offerer's a=path
    sent_path: str | None = None  # our a=path in the forwarded offer (aware MSRP)


class _Prev(NamedTuple):
    kind: MediaKind
    mode: StreamMode
    rx: SrtpKey | None
    tx: SrtpKey | None
    offered: tuple[CryptoAttr, ...]


# The records below are NamedTuples, not frozen dataclasses: both are immutable, but a frozen
# dataclass costs ~0.15 µs per field to build on this hardware, and a full e2ae exchange builds
# a dozen of them (bench/bench_e2ae.py).


class OfferPlan(NamedTuple):
    """Result of `plan_offer`: decisions and the reservations the gateway must make."""

    direction: Direction
    flags: E2aeFlags
    subscriber: str | None
    policy: Policy
    offer: Sdp  # the parsed offer as received (never mutated)
    streams: tuple[StreamOffer, ...]
    decisions: tuple[StreamDecision, ...]
    requests: tuple[StreamRequest, ...]
    anchor_all: bool = False
    rekey: bool = False
    previous: tuple[_Prev | None, ...] = ()


class OfferState(NamedTuple):
    """Kept by the ALG between the offer and its answer (one per early dialog when forking)."""

    direction: Direction
    flags: E2aeFlags
    subscriber: str | None
    policy: Policy
    offer: Sdp
    streams: tuple[StreamOffer, ...]
    decisions: tuple[StreamDecision, ...]
    reservations: Mapping[int, StreamReservation]
    rekey: bool = False
    previous: tuple[_Prev | None, ...] = ()


class OfferResult(NamedTuple):
    sdp: bytes
    decisions: tuple[StreamDecision, ...]
    state: OfferState


class AnswerResult(NamedTuple):
    sdp: bytes
    decisions: tuple[StreamDecision, ...]
    plan: MediaPlan
    state: OfferState


Previous = AnswerResult | OfferState


# The hot paths build these records (and PolicyContext) with `tuple.__new__` and every field
# given, as NamedTuple._make does: a NamedTuple's generated `__new__` is a Python-level function
# (~0.47 µs a call here, against ~0.11 µs), and an exchange builds about a dozen records.
_tuple_new: Final = tuple.__new__
# StreamOffer's fields after the nine that `_base_stream` gives, at their defaults.
_SO_DEFAULTS: Final = tuple(StreamOffer._field_defaults[f] for f in StreamOffer._fields[9:])


# ---------------------------------------------------------------------------------------------
# helpers


def redact_sdp(text: str | bytes) -> str:
    """The SDP with every `inline:` key replaced by `inline:<redacted>`, for logging."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return redact(text)


# proto (upper case) -> kind: one dict lookup, called for every m-line in every phase.
_KINDS: Final = {
    **{p: _RTP for p in (*_RTP_SECURE, *_RTP_PLAIN)},
    MSRP_TCP: _MSRP,
    MSRP_TLS: _MSRP,
}


def _kind(proto: str) -> MediaKind:
    return _KINDS.get(proto.upper(), _OTHER)


def _strongest(values: list[str]) -> E2aeIndicator | None:
    found: E2aeIndicator | None = None
    for v in values:
        ind = parse_3ge2ae(v)
        if ind is not _IND_OTHER:  # other values shall be ignored (TS 24.229 §7.5.2)
            return ind
        found = ind
    return found


def _session_indication(sdp: Sdp) -> E2aeIndicator | None:
    if not sdp.has_session_attrs() or "3ge2ae" not in "".join(sdp.session).lower():
        return None
    return _strongest(sdp.session_attrs("3ge2ae"))


def _indication(m: Media, session: E2aeIndicator | None) -> E2aeIndicator | None:
    """The 3ge2ae indicator of a stream. A session-level one (a broken UE, spec README §7.9)
    applies to every m-line that has none of its own."""
    values = m.attrs("3ge2ae")
    return _strongest(values) if values else session


_new_object = object.__new__


def _plain_frozen(cls: type, names: tuple[str, ...]) -> bool:
    """Whether a frozen dataclass of `mediaplan` can be built by filling the new instance's
    __dict__ (no __post_init__, no __slots__, exactly these fields in this order): what
    `_endpoint` and `plan_offer` do for `Endpoint` and `StreamRequest`, ~2x cheaper than their
    generated __init__ (one `object.__setattr__` per field). Otherwise they use the constructor."""
    return (
        not hasattr(cls, "__post_init__")
        and not hasattr(cls, "__slots__")
        and tuple(f.name for f in dataclasses.fields(cls)) == names
    )


_EP_FAST: Final = _plain_frozen(Endpoint, ("host", "port", "rtcp_port"))
_SR_FAST: Final = _plain_frozen(
    StreamRequest, ("index", "kind", "access_rtcp_mux", "core_rtcp_mux", "want_local_fingerprint")
)


def _new_endpoint(host: str, port: int, rtcp_port: int | None) -> Endpoint:
    if not _EP_FAST:  # pragma: no cover - Endpoint changed shape: use its constructor
        return Endpoint(host, port, rtcp_port)
    ep: Endpoint = _new_object(Endpoint)
    d = ep.__dict__
    d["host"] = host
    d["port"] = port
    d["rtcp_port"] = rtcp_port
    return ep


def _endpoint(sdp: Sdp, m: Media, mux: bool) -> Endpoint | None:
    """The peer's address for a stream."""
    port = m.port
    if port == 0:
        return None
    host = sdp.media_host(m)
    if host is None:  # pragma: no cover - Sdp.parse guarantees c= for live m-lines
        return None
    rtcp_port: int | None = None
    if not mux and _KINDS.get(m.proto.upper()) is _RTP:
        rtcp_port = port + 1
        rtcp = m.attr("rtcp")  # RFC 3605
        if rtcp is not None:
            first = rtcp.split(" ", 1)[0]
            if first.isdigit():
                rtcp_port = int(first)
    if not _EP_FAST:  # pragma: no cover - Endpoint changed shape
        return Endpoint(host, port, rtcp_port)
    ep: Endpoint = _new_object(Endpoint)  # `_new_endpoint` inlined: once per stream and SDP
    d = ep.__dict__
    d["host"] = host
    d["port"] = port
    d["rtcp_port"] = rtcp_port
    return ep


def _fingerprints(sdp: Sdp, m: Media) -> tuple[Fingerprint, ...]:
    """Media-level fingerprints, else the session-level ones (RFC 8122 §5)."""
    values = m.attrs("fingerprint") or sdp.session_attrs("fingerprint")
    return tuple(parse_fingerprint(v) for v in values)


def _setup(sdp: Sdp, m: Media) -> SetupRole | None:
    v = sdp.media_attr(m, "setup")
    return None if v is None else parse_setup(v)


def _path(m: Media, index: int) -> tuple[MsrpUri, ...]:
    v = m.attr("path")
    if v is None:
        raise SdpError(f"MSRP m-line {index} without a=path (RFC 4975)")
    return parse_path(v)


def _previous(previous: Previous | None) -> tuple[_Prev | None, ...]:
    if previous is None:
        return ()
    if isinstance(previous, AnswerResult):
        return tuple(_Prev(s.kind, s.mode, s.rx_key, s.tx_key, ()) for s in previous.plan.streams)
    return tuple(
        _Prev(
            s.kind,
            s.mode,
            s.k11.to_srtp_key() if s.k11 is not None else None,
            None,
            s.k21,
        )
        for s in previous.streams
    )


def _prev_rtp(prev: tuple[_Prev | None, ...], i: int) -> _Prev | None:
    p = prev[i] if i < len(prev) else None
    if p is None or p.kind is not _RTP or p.mode is not _E2AE_MODE:
        return None
    return p


def _same_key(a: CryptoAttr, b: SrtpKey | None) -> bool:
    return b is not None and a.suite == b.suite and a.key.key_salt == b.key_salt


def _ctx(
    subscriber: str | None,
    direction: Direction,
    i: int,
    kind: MediaKind,
    proto: str,
    flags: E2aeFlags,
) -> PolicyContext:
    if kind is _MSRP:
        ue, net = flags.ue_msrp, flags.net_msrp
    else:
        ue, net = flags.ue_rtp, flags.net_rtp
    return _tuple_new(PolicyContext, (subscriber, direction, i, kind, proto, ue, net))


def _rule(policy: Policy, subscriber: str | None, key: str, value: str) -> str:
    return f"policy {key}={value} ({policy.describe(subscriber)})"


# ---------------------------------------------------------------------------------------------
# fast path: offers no procedure can touch


def strip_indications(body: bytes) -> bytes:
    """Remove every a=3ge2ae line from a body the engine did not plan (TS 33.328 7.3.1: an
    indication inserted by another party is removed)."""
    if b"3ge2ae" not in body:
        return body
    lines = body.split(b"\n")
    return b"\n".join(ln for ln in lines if not ln.lstrip().startswith(b"a=3ge2ae"))


def untouched(body: bytes, direction: Direction, flags: E2aeFlags) -> bool:
    """True when no procedure of 7.2.1/7.3.1 can apply to this offer (with anchor_all off), so
    the ALG may forward it, and its answer, without planning: originating without SRTP,
    TLS-MSRP or an indication (every stream BYPASS, nothing to strip); terminating towards a UE
    without established RTP support and without MSRP (the one stream policy could still
    terminate) or an indication to strip. Checked on raw bytes: a false "not untouched" only
    costs the full engine run, never a wrong rewrite."""
    if b"3ge2ae" in body or b"MSRP" in body:
        return False
    if direction is Direction.ORIGINATING:
        return b"SAVP" not in body
    return not flags.rtp


# ---------------------------------------------------------------------------------------------
# phase 1: plan


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
        streams.append(so)
        decisions.append(dec)
        mode = so.mode
        if mode is _E2AE_MODE or mode is _PASS:
            kind = so.kind
            mux = so.rtcp_mux
            # Positional: keyword binding makes this frozen dataclass ~2x dearer to build.
            # (index, kind, access_rtcp_mux, core_rtcp_mux, want_local_fingerprint); RFC 5761
            # mux on each leg mirrors what the peers negotiate (README §7.1); at offer time
            # only the offerer's wish is known.
            if _SR_FAST:  # filled like `_new_endpoint`: half the cost of the constructor
                req: StreamRequest = _new_object(StreamRequest)
                d = req.__dict__
                d["index"] = i
                d["kind"] = kind
                d["access_rtcp_mux"] = mux
                d["core_rtcp_mux"] = mux
                d["want_local_fingerprint"] = kind is _MSRP and mode is _E2AE_MODE
                requests.append(req)
            else:  # pragma: no cover - StreamRequest changed shape
                requests.append(
                    StreamRequest(i, kind, mux, mux, kind is _MSRP and mode is _E2AE_MODE)
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
    return _base_stream(offer, m, i, kind, mode), StreamDecision(i, kind, mode, action, rule)


def _msrp_info(offer: Sdp, m: Media, so: StreamOffer) -> StreamOffer:
    """What e2ae needs from an MSRP m-line we terminate: a=path, a=setup, a=msrp-cema."""
    return so._replace(
        setup=_setup(offer, m), cema=m.has_attr("msrp-cema"), path=_path(m, so.index)
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
        return so, StreamDecision(
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
        return so, _tuple_new(StreamDecision, (i, kind, _E2AE_MODE, action, rule))
    so = _base_stream(offer, m, i, kind, _E2AE_MODE)
    fps = usable(_fingerprints(offer, m))
    if not fps:
        raise SdpError(f"e2ae MSRP m-line {i} without a usable a=fingerprint (RFC 8122)")
    so = _msrp_info(offer, m, so._replace(proto_out=MSRP_TCP, ue_fingerprints=fps))
    action += "; TCP/TLS/MSRP->TCP/MSRP; UE fingerprint stored, fingerprint and 3ge2ae stripped"
    return so, StreamDecision(i, kind, _E2AE_MODE, action, rule)


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
        return so, StreamDecision(
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
        so = _base_stream(offer, m, i, kind, _E2AE_MODE, _RTP_SECURE[proto])
        stripped = "; core crypto lines dropped" if m.has_attr("crypto") else ""
        return so, StreamDecision(
            i,
            kind,
            _E2AE_MODE,
            f"{m.proto}->{_RTP_SECURE[proto]}, K21 offered, 3ge2ae:applied added"
            + stripped
            + foreign,
            f"{C_TERM} steps 3-4",
        )
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
    so = _base_stream(offer, m, i, kind, _E2AE_MODE)
    so = so._replace(proto_out=MSRP_TLS, core_fingerprints=core_fps, core_tls=core_tls)
    so = _msrp_info(offer, m, so)
    return so, StreamDecision(i, kind, _E2AE_MODE, action + foreign, rule)


# ---------------------------------------------------------------------------------------------
# rewriting helpers


def _strip_3ge2ae(sdp: Sdp) -> None:
    """7.3.1: remove any "e2ae-security offered by network" inserted by another party; and
    never forward a UE's indication to the core (spec README §3.2)."""
    _strip_session_3ge2ae(sdp)
    for m in sdp.media:
        m.remove_attrs("3ge2ae")


def _strip_session_3ge2ae(sdp: Sdp) -> None:
    if (
        sdp.has_session_attrs()
        and "3ge2ae" in "".join(sdp.session).lower()
        and remove_attrs(sdp.session, _E2AE)
    ):
        sdp.touch()  # line indices moved


def _detach_session_fingerprints(sdp: Sdp, e2ae: set[int]) -> None:
    """A session-level a=fingerprint also applies to our e2ae streams, where it must go.
    Push it down to the other live TLS/DTLS streams that relied on it, then drop it."""
    if not sdp.has_session_attrs():
        return
    values = [
        line
        for line in sdp.session
        if line.startswith("a=") and line[2:].lower().startswith("fingerprint:")
    ]
    if not values:
        return
    remove_attrs(sdp.session, _FINGERPRINT)
    sdp.touch()  # line indices moved
    for i, m in enumerate(sdp.media):
        if i in e2ae or m.port == 0 or "TLS" not in m.proto.upper():
            continue
        if not m.has_attr("fingerprint"):
            m.insert_attrs(list(values))


def _set_fingerprint(m: Media, fp: Fingerprint, setup: SetupRole | None) -> None:
    """Our fingerprint goes just after a=setup (examples 06 and 08)."""
    m.remove_attrs("fingerprint")
    if setup is None:
        m.insert_attrs([f"a=fingerprint:{format_fingerprint(fp)}"])
        return
    i = m.replace_or_insert("setup", f"a=setup:{setup.value}")
    m.insert_lines(i + 1, [f"a=fingerprint:{format_fingerprint(fp)}"])


def _set_path(m: Media, uri: str) -> None:
    i = m.find("path")
    if i >= 0:
        m.set_line(i, f"a=path:{uri}")
    else:
        m.insert_attrs([f"a=path:{uri}"])


def _strip_capneg_crypto(m: Media) -> bool:
    """RFC 5939 `a=acap:<n> crypto:...` carries UE keys too: they must never reach the core."""
    if not m.has_attr("acap"):
        return False
    return (
        m.remove_where(
            lambda line: (
                line.startswith("a=acap:") and line.partition(" ")[2].lower().startswith("crypto:")
            )
        )
        > 0
    )


def _relocate_session(sdp: Sdp, session: list[str], sci: int, host: str) -> None:
    """Move the session-level c= (line `sci`) to `host`, and o= with it when it mirrored c=, in
    `session`: `sdp.session` itself (then `touch()` it) or a copy of it."""
    sc = sdp.session_connection()
    old = sc.address.partition("/")[0] if sc is not None else ""
    addrtype = "IP6" if ":" in host else "IP4"  # Connection.line_for/addrtype_of, inlined
    session[sci] = f"c=IN {addrtype} {host}"
    oi = sdp.origin_index()
    parts = session[oi][2:].split()
    if parts[5] == old:
        parts[4] = addrtype
        parts[5] = host
        session[oi] = "o=" + " ".join(parts)


def _relocate(sdp: Sdp, targets: Mapping[int, Endpoint]) -> None:
    """Move c=/m= of anchored streams to the gateway (TS 33.328 7.2.1 step 3, 7.3.1 step 4).

    The session-level c= (and o=, when it mirrored c=, as in examples 05/06/08/10) is rewritten
    only when every live stream that relies on it is anchored at one gateway address; otherwise
    anchored streams get their own media-level c= and bypassed ones keep the original address.
    """
    if not targets:
        return
    media = sdp.media
    sci = sdp.session_connection_index()  # known from the parse
    session_host: str | None = None
    if sci >= 0:
        hosts: set[str] = set()
        for i, m in enumerate(media):
            if m.port != 0 and m.connection_index() < 0:
                ep = targets.get(i)
                if ep is None:
                    hosts.clear()
                    break
                hosts.add(ep.host)
        if len(hosts) == 1:
            session_host = hosts.pop()
    if session_host is not None:
        _relocate_session(sdp, sdp.session, sci, session_host)
        sdp.touch()
    for i, ep in targets.items():
        m = media[i]
        if m.port == 0:
            continue
        host = ep.host
        # c= text built inline (not Connection.line_for + addrtype_of: two calls per stream)
        addrtype = "IP6" if ":" in host else "IP4"
        # look up a=rtcp (RFC 3605) before editing: the edits below drop the lookup cache
        ri = m.find("rtcp") if _KINDS.get(m.proto.upper()) is _RTP else -1
        ci = m.connection_index()
        if ci >= 0:
            m.set_line(ci, f"c=IN {addrtype} {host}")
        elif session_host != host:
            lines = m.lines
            pos = 1
            while pos < len(lines) and lines[pos][0] == "i":
                pos += 1
            m.insert_lines(pos, [f"c=IN {addrtype} {host}"])
            if 0 <= pos <= ri:
                ri += 1
        if ri >= 0:
            port = ep.rtcp_port if ep.rtcp_port is not None else ep.port
            has_addr = " " in m.lines[ri].partition(":")[2].strip()
            m.set_line(ri, f"a=rtcp:{port} IN {addrtype} {host}" if has_addr else f"a=rtcp:{port}")
        m.set_port(ep.port)


def _new_tx_key(
    k11: CryptoAttr, prev: _Prev | None, rekey: bool, rng: Rng
) -> tuple[CryptoAttr, bool]:
    """K12 (7.2.1 step 7): kept from the last exchange when the UE kept its key, else fresh."""
    if (
        prev is not None
        and not rekey
        and prev.tx is not None
        and _same_key(k11, prev.rx)
        and prev.tx.suite == k11.suite
    ):
        return CryptoAttr(k11.tag, k11.suite, (KeyParam("inline", prev.tx.key_salt),)), True
    return generate_crypto(k11.tag, k11.suite, rng), False


def _reservation(reservations: Mapping[int, StreamReservation], i: int) -> StreamReservation:
    try:
        return reservations[i]
    except KeyError:
        raise GatewayError(f"no gateway reservation for m-line {i}") from None


# ---------------------------------------------------------------------------------------------
# phase 2: the offer


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
                decisions[i] = StreamDecision(
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
                    decisions[i] = StreamDecision(
                        i, d.kind, d.mode, d.action + "; a=acap crypto removed", d.rule
                    )
                streams.append(so)
                continue
            # 7.3.1 step 4: RTP->SRTP, one or more crypto lines (K21) + "offered by network".
            k21 = _offer_k21(plan, so, rng)
            m.insert_attrs([c.line() for c in k21] + [APPLIED_LINE])
            streams.append(so._replace(k21=k21))
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
            streams.append(so._replace(sent_path=sent))
            continue
        # 7.3.1 step 4: TCP->TLS, fingerprints replaced by ours, "offered by network" added.
        fp = res.local_fingerprint
        if fp is None:
            raise GatewayError(f"no local certificate fingerprint reserved for m-line {i}")
        # spec README §5.3: offer passive so that the UE connects out through its NAT.
        _set_fingerprint(m, fp, _PASSIVE)
        m.insert_attrs([APPLIED_LINE])
        sent = None
        if not so.cema:
            sent = str(MsrpUri.build("msrps", ep.host, ep.port, sid))
            _set_path(m, sent)
        streams.append(so._replace(sent_path=sent))
    if e2ae:
        _detach_session_fingerprints(sdp, e2ae)
    _relocate(sdp, targets)
    state = _tuple_new(
        OfferState,
        (
            plan.direction,
            plan.flags,
            plan.subscriber,
            plan.policy,
            plan.offer,
            tuple(streams),
            tuple(decisions),
            MappingProxyType(dict(reservations)),
            plan.rekey,
            plan.previous,
        ),
    )
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
    state = _tuple_new(
        OfferState,
        (
            plan.direction,
            plan.flags,
            plan.subscriber,
            plan.policy,
            offer,
            streams,
            decisions,
            MappingProxyType(dict(reservations)),
            plan.rekey,
            plan.previous,
        ),
    )
    text = offer.render(bodies, session)
    return _tuple_new(OfferResult, (text.encode("utf-8", "surrogateescape"), decisions, state))


def _offer_k21(plan: OfferPlan, so: StreamOffer, rng: Rng) -> tuple[CryptoAttr, ...]:
    ctx = _ctx(plan.subscriber, plan.direction, so.index, so.kind, so.proto, plan.flags)
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


# ---------------------------------------------------------------------------------------------
# phase 3: the answer


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


def _stream_plan(index: int, kind: MediaKind, mode: StreamMode, **fields: Any) -> StreamPlan:
    if not _SP_FAST:  # pragma: no cover - StreamPlan changed shape: use its constructor
        return StreamPlan(index, kind, mode, **fields)
    if not _SP_DEFAULTS.keys() >= fields.keys():  # a misspelt field: what __init__ raises
        raise TypeError(f"StreamPlan has no field {sorted(fields.keys() - _SP_DEFAULTS.keys())}")
    sp: StreamPlan = _new_object(StreamPlan)
    d = sp.__dict__
    d["index"] = index
    d["kind"] = kind
    d["mode"] = mode
    d.update(_SP_DEFAULTS)
    d.update(fields)
    return sp


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
        ue_ep, core_ep = (so.offerer, ans_ep) if orig else (ans_ep, so.offerer)
        if ue_ep is not None and mux:
            ue_ep = _new_endpoint(ue_ep.host, ue_ep.port, None)
        if core_ep is not None and mux:
            core_ep = _new_endpoint(core_ep.host, core_ep.port, None)
        if so.mode is _REJECTED or m.port == 0:
            action = "rejected m-line (port 0)"
            rule = "RFC 3264 §6"
            if so.mode is _E2AE_MODE:
                # Answer must mirror the offered proto; a rejected stream carries no keys.
                m.set_proto(so.proto)
                m.remove_attrs("crypto", "fingerprint")
                action += f" by the answerer; proto restored to {so.proto}, no keys"
                rule = f"{C_ORIG if orig else C_TERM}; spec README §7.2"
            decisions.append(StreamDecision(i, kind, _REJECTED, action, rule))
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
                StreamDecision(
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
            plans.append(
                _stream_plan(
                    i,
                    kind,
                    _E2AE_MODE,
                    ue_remote=ue_ep,
                    core_remote=core_ep,
                    access_rtcp_mux=mux,
                    core_rtcp_mux=mux,
                    rx_key=plan[0],
                    tx_key=plan[1],
                    through=through,
                )
            )
            decisions.append(dec)
            continue
        sp, dec = _answer_msrp(state, so, m, ans, orig, res, fps_a, setup_a)
        plans.append(
            _stream_plan(
                i,
                kind,
                _E2AE_MODE,
                ue_remote=ue_ep,
                core_remote=core_ep,
                ue_fingerprint=sp.ue_fingerprint,
                access_setup=sp.access_setup,
                core_setup=sp.core_setup,
                msrp_mode=sp.msrp_mode,
                ue_path=sp.ue_path,
                agw_access_path=sp.agw_access_path,
                core_path=sp.core_path,
                agw_core_path=sp.agw_core_path,
                core_tls=sp.core_tls,
                core_fingerprint=sp.core_fingerprint,
                through=through,
            )
        )
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
        ue_ep, core_ep = so.offerer, ans_ep
        if ue_ep is not None and mux:
            ue_ep = _new_endpoint(ue_ep.host, ue_ep.port, None)
        if core_ep is not None and mux:
            core_ep = _new_endpoint(core_ep.host, core_ep.port, None)
        k12, keys, dec = _orig_k12(state, so, rng)
        bodies.append(
            m.body_with(f"m={m.media} {port} {so.proto} {' '.join(m.fmts)}", [k12.line()])
        )
        plans.append(
            _stream_plan(
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
        )
        decisions.append(dec)
    session = ans.session.copy()
    _relocate_session(ans, session, sci, host)
    return _tuple_new(
        AnswerResult,
        (
            ans.render(bodies, session).encode("utf-8", "surrogateescape"),
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
    prev = _prev_rtp(state.previous, i) if state.previous else None
    k12, kept = _new_tx_key(k11, prev, state.rekey, rng)
    action = (
        f"{so.proto_out}->{so.proto}; K12 tag {k12.tag} {k12.suite} "
        f"{'kept from the last exchange' if kept else 'generated'}"
    )
    return (
        k12,
        (k11.to_srtp_key(), k12.to_srtp_key()),
        _tuple_new(StreamDecision, (i, so.kind, _E2AE_MODE, action, f"{C_ORIG} steps 7-8")),
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
    return (k22.to_srtp_key(), ours.to_srtp_key()), _tuple_new(
        StreamDecision, (i, so.kind, _E2AE_MODE, action, f"{C_TERM} steps 5-7")
    )


class _MsrpPlan(NamedTuple):
    ue_fingerprint: tuple[Fingerprint, ...]
    access_setup: SetupRole
    core_setup: SetupRole
    msrp_mode: MsrpMode
    ue_path: str | None
    agw_access_path: str | None
    core_path: str | None
    agw_core_path: str | None
    core_tls: bool = False
    core_fingerprint: tuple[Fingerprint, ...] = ()


def _answer_msrp(
    state: OfferState,
    so: StreamOffer,
    m: Media,
    ans: Sdp,
    orig: bool,
    res: StreamReservation,
    ans_fps: tuple[Fingerprint, ...],
    ans_setup: SetupRole | None,
) -> tuple[_MsrpPlan, StreamDecision]:
    i = so.index
    fp = res.local_fingerprint
    if fp is None:
        raise GatewayError(f"no local certificate fingerprint reserved for m-line {i}")
    ans_path = _path(m, i)
    cema = so.cema and m.has_attr("msrp-cema")
    mode = _AGNOSTIC if cema else _AWARE
    if ans_setup is _ACTPASS:
        raise SdpError(f"answer m-line {i}: a=setup:actpass is not allowed in an answer")
    if orig:
        # 7.2.1 step 8: TCP->TLS, fingerprints from the core removed, ours added.
        # Gateway roles: core leg = the opposite of the core's answer (absent: the answerer is
        # passive, RFC 4145 §4.1); access leg = our answer to the UE's offer (README §5.3).
        core_setup = peer_role(ans_setup) if ans_setup is not None else _ACTIVE
        access_setup = answer_role(so.setup)
        m.set_proto(so.proto)
        _set_fingerprint(m, fp, access_setup)
        ue_uri, core_uri = so.path[-1], ans_path[-1]
        agw_access = agw_core = None
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
        return _MsrpPlan(
            so.ue_fingerprints,
            access_setup,
            core_setup,
            mode,
            str(ue_uri),
            agw_access,
            str(core_uri),
            agw_core,
        ), StreamDecision(i, so.kind, _E2AE_MODE, action, f"{C_ORIG} steps 7-8")
    # 7.3.1 steps 5-7: the UE's fingerprint goes to the gateway, TLS->TCP towards the core.
    ue_fps = usable(ans_fps)
    if not ue_fps:
        raise SdpError(f"answer m-line {i} without a usable a=fingerprint (RFC 8122)")
    m.remove_attrs("fingerprint")
    m.set_proto(so.proto)
    # We offered passive; a UE that ignores a=setup follows RFC 4975 (the offerer connects).
    access_setup = peer_role(ans_setup) if ans_setup is not None else _ACTIVE
    if so.setup is None:
        # the core relied on the RFC 4145 default (offerer active): answer with the default too
        m.remove_attrs("setup")
        core_setup = _PASSIVE
    else:
        core_setup = answer_role(so.setup)
        m.replace_or_insert("setup", f"a=setup:{core_setup.value}")
    if so.core_tls:
        # TLS from the core terminated too: our certificate towards the core peer as well.
        _set_fingerprint(m, fp, core_setup if so.setup is not None else None)
    ue_uri, core_uri = ans_path[-1], so.path[-1]
    agw_access = agw_core = None
    if mode is _AWARE:
        agw_access = so.sent_path or str(
            MsrpUri.build("msrps", res.access.host, res.access.port, core_uri.session_id)
        )
        agw_core = str(
            MsrpUri.build(
                "msrps" if so.core_tls else "msrp", res.core.host, res.core.port, ue_uri.session_id
            )
        )
        _set_path(m, agw_core)
    action = (
        f"TCP/TLS/MSRP->{so.proto}; UE fingerprint stored and stripped; gateway "
        f"{access_setup.value} towards the UE; {mode.value} MSRP"
    )
    return _MsrpPlan(
        ue_fps,
        access_setup,
        core_setup,
        mode,
        str(ue_uri),
        agw_access,
        str(core_uri),
        agw_core,
        so.core_tls,
        so.core_fingerprints,
    ), StreamDecision(i, so.kind, _E2AE_MODE, action, f"{C_TERM} steps 5-7")


__all__ = [
    "NO_E2AE",
    "AnswerResult",
    "E2aeFlags",
    "OfferPlan",
    "OfferResult",
    "OfferState",
    "Previous",
    "Rng",
    "StreamDecision",
    "StreamOffer",
    "apply_answer",
    "apply_offer",
    "plan_offer",
    "redact_sdp",
]
