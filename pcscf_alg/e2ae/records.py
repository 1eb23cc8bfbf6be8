"""The e2ae engine's records (flags, decisions, plans, states, results) and constants."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from ..mediaplan import (
    Direction,
    Endpoint,
    Fingerprint,
    MediaKind,
    MediaPlan,
    MsrpMode,
    SetupRole,
    SrtpKey,
    StreamMode,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)
from ..policy.base import Policy
from ..sdp.attrs import E2aeIndicator
from ..sdp.crypto import CryptoAttr
from ..sdp.model import Sdp
from ..sdp.msrp import MsrpUri

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
    """e2ae support indicated at registration (docs/e2ae-notes.md §1.2 item 5), per protocol
    and side.

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
_SO_INDEX: Final = {name: n for n, name in enumerate(StreamOffer._fields)}


def _with(so: StreamOffer, **changes: object) -> StreamOffer:
    """`so._replace(**changes)` without `_replace`: that one is Python code in `collections`
    (a rebuild through `_make` and a keyword dict), interpreted even when this module is
    compiled, and a terminated MSRP stream went through it twice per offer."""
    values: list[object] = list(so)
    for name, value in changes.items():
        values[_SO_INDEX[name]] = value
    return _tuple_new(StreamOffer, values)


def _decision(
    index: int, kind: MediaKind, mode: StreamMode, action: str, rule: str
) -> StreamDecision:
    """`StreamDecision(...)` through `tuple.__new__` (see `_tuple_new`)."""
    return _tuple_new(StreamDecision, (index, kind, mode, action, rule))
