"""What the call layer (`calls.CallLayer`) asks for, and what comes back to it.

The call layer is sans-IO (issue 12, in the manner of aioquic's `QuicConnection`): it is told of
SIP messages, gateway results and gateway events with the current time, and queues *effects*.

- Proxy effects (`Forward`, `Relay`, `ForwardAck`, `Answer`, `SendRequest`) are carried out by
  the proxy core (`alg.Pcscf`) at once: they are SIP it sends, through its transaction layers.
- Media effects (`Reserve`, `Configure`, `Release`: the TS 23.334 Iq procedures, and
  `ExportKeys` for LI) leave the core through `Pcscf.media_effects()`; the edge
  (`agw.driver.GatewayDriver`) runs them against an `AccessGateway` and reports each result
  back with `Pcscf.gateway_done(GatewayDone(op, ...), now)`. Operations of one context must be
  run in the order they were queued (reserve before configure before release).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcscf_alg.li import KeyRecord
from pcscf_alg.mediaplan import MediaPlan, Side, StreamRequest, StreamReservation
from pcscf_alg.proxyctx import Peer, ProxyCtx
from pcscf_alg.sip.message import SipMessage

# ------------------------------------------------------------------ proxy effects


@dataclass(frozen=True, slots=True)
class Forward:
    """Send `ctx.request` downstream now (an offer held until its reservation was done)."""

    ctx: ProxyCtx


@dataclass(frozen=True, slots=True)
class Relay:
    """Send `resp` upstream on `ctx`'s server transaction (a response held for the gateway)."""

    ctx: ProxyCtx
    resp: SipMessage


@dataclass(frozen=True, slots=True)
class ForwardAck:
    """Forward an ACK for a 2xx (held until its answer was applied) to `dest` on `side`."""

    msg: SipMessage
    side: Side
    dest: Peer


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer `ctx`'s request ourselves (488 for an offer we cannot take, 415, 400...)."""

    ctx: ProxyCtx
    status: int
    reason: str
    warning: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A request the P-CSCF sends as a UA (BYE when it ends a call, RFC 3261 §12.2.1.1), or
    with `ack` an ACK for a 2xx it will not forward (§13.2.2.4), sent statelessly. The proxy
    resolves `next_uri` (first Route or the remote target) to a flow."""

    msg: SipMessage
    side: Side
    next_uri: str
    ack: bool = False


ProxyEffect = Forward | Relay | ForwardAck | Answer | SendRequest

# ------------------------------------------------------------------ media effects


@dataclass(frozen=True, slots=True)
class Reserve:
    """TS 23.334 Reserve AGW Connection Point, for the streams of one offer."""

    op: int
    context_id: str
    streams: tuple[StreamRequest, ...]


@dataclass(frozen=True, slots=True)
class Configure:
    """TS 23.334 Configure AGW Connection Point: the media plan of an answer."""

    op: int
    context_id: str
    plan: MediaPlan


@dataclass(frozen=True, slots=True)
class Release:
    """TS 23.334 Release AGW Connection Point: every port, socket and key of the context."""

    op: int
    context_id: str


@dataclass(frozen=True, slots=True)
class ExportKeys:
    """One LI key record (TS 33.107 Annex G) for the configured `li.KeySink`. Its `time` is
    stamped by the edge (wall clock), which the sans-IO core does not read."""

    record: KeyRecord


GatewayOp = Reserve | Configure | Release
MediaEffect = Reserve | Configure | Release | ExportKeys


@dataclass(frozen=True, slots=True)
class GatewayDone:
    """The result of gateway operation `op`: the reservations of a `Reserve`, or `error` (the
    text of the gateway's refusal: a `GatewayError`) for any operation."""

    op: int
    reservations: tuple[StreamReservation, ...] = ()
    error: str | None = None
