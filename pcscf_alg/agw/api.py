"""Control API of the IMS Access Gateway: the Iq procedures of TS 23.334 as async calls.

| TS 23.334 procedure (§6.2, §8)              | method                        |
|---------------------------------------------|-------------------------------|
| Reserve AGW Connection Point                | `reserve`                     |
| Configure AGW Connection Point              | `configure`                   |
| Configure with new SDES crypto (§6.2.10.2)  | `update_keys`                 |
| Change Through-Connection                   | `change_through_connection`   |
| Release AGW Connection Point                | `release`                     |
| Notify (D)TLS establishment failure, etc.   | events via `set_event_handler`|

Arguments and results are plain, frozen dataclasses (the `mediaplan` types plus the events and
stats below) so that a gateway in another process can sit behind the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..mediaplan import (
    Fingerprint,
    MediaPlan,
    Side,
    SrtpKey,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)

# ---------------------------------------------------------------------------------------------
# Events (TS 23.334 notifications). Every event names the context and the stream (m-line index).


@dataclass(frozen=True)
class TlsEstablished:
    """A TLS session is up and the peer certificate matched the signalled fingerprint.

    `side` is ACCESS for the UE's session; CORE when TLS is terminated on the core leg too
    (`StreamPlan.core_tls`)."""

    context_id: str
    index: int
    side: Side = Side.ACCESS


@dataclass(frozen=True)
class TlsFailed:
    """TS 23.334 "Notify (D)TLS session establishment failure".

    `reason` is one of "fingerprint_mismatch", "no_certificate", "handshake",
    "handshake_timeout", "connect_failed".
    """

    context_id: str
    index: int
    reason: str
    side: Side = Side.ACCESS


@dataclass(frozen=True)
class SrtpAuthFailure:
    """SRTP/SRTCP packets from the UE failed authentication or replay checks (H.248.77 stats).

    Reported at most once per check interval: `count` is the running total for the stream,
    `new` how many since the previous report.
    """

    context_id: str
    index: int
    count: int
    new: int


@dataclass(frozen=True)
class MediaTimeout:
    """No packet in either direction for `media_timeout_s` (reported once per silence)."""

    context_id: str
    index: int


@dataclass(frozen=True)
class MsrpClosed:
    """An MSRP leg closed after being established: `side` and why ("eof", "idle", "error",
    "protocol_error", "connect_failed"). The ALG may end the session (docs/design.md: BYE both
    ways)."""

    context_id: str
    index: int
    side: Side
    reason: str


AgwEvent = TlsEstablished | TlsFailed | SrtpAuthFailure | MediaTimeout | MsrpClosed
EventHandler = Callable[[AgwEvent], None]


# ---------------------------------------------------------------------------------------------
# Statistics (for tests, metrics, H.248.77-style auditing).


@dataclass(frozen=True)
class StreamStats:
    context_id: str
    index: int
    kind: str  # "rtp" | "msrp"
    to_core_packets: int = 0  # RTP+RTCP packets (or MSRP bytes) relayed UE -> core
    to_ue_packets: int = 0  # relayed core -> UE
    to_core_bytes: int = 0
    to_ue_bytes: int = 0
    auth_failures: int = 0  # SRTP/SRTCP auth or replay failures (dropped)
    mki_mismatches: int = 0  # packets whose MKI did not match the signalled one (dropped)
    gated: int = 0  # dropped by Change Through-Connection
    dropped: int = 0  # other drops: malformed, send errors, key lifetime exhausted
    # Dropped because they came from an address that may not send on this stream (agw
    # strict_source): not the core's signalled address, or not the UE's IP in pass-through.
    rejected_source: int = 0


# ---------------------------------------------------------------------------------------------


class AccessGateway(Protocol):
    """What the ALG needs from an IMS-AGW. `InProcessGateway` is the default implementation."""

    @property
    def local_fingerprint(self) -> Fingerprint:
        """sha-256 fingerprint of the gateway certificate, for `a=fingerprint` (RFC 8122)."""
        ...

    def set_event_handler(self, handler: EventHandler | None) -> None:
        """Receive notifications. The handler runs in the event loop and must not block."""
        ...

    async def reserve(
        self, context_id: str, streams: Sequence[StreamRequest]
    ) -> list[StreamReservation]:
        """Reserve local addresses for each stream (idempotent per index)."""
        ...

    async def configure(self, context_id: str, plan: MediaPlan) -> None:
        """Apply (or re-apply) the plan: remote addresses, keys, fingerprints, roles, gates.

        Streams in the plan that are BYPASS/REJECTED are torn down. Raises GatewayError (ALG
        answers 488) for anything the gateway cannot honour, naming it.
        """
        ...

    async def update_keys(
        self, context_id: str, index: int, rx_key: SrtpKey | None, tx_key: SrtpKey | None
    ) -> None:
        """Re-key one SRTP stream; None keeps that direction's key. An unchanged key keeps the
        crypto context (ROC, replay window); a new key starts a fresh one (RFC 4568 §7.1.4)."""
        ...

    async def change_through_connection(
        self, context_id: str, index: int, mode: ThroughConnection
    ) -> None: ...

    async def release(self, context_id: str) -> None:
        """Free every port, socket, connection and key of the context. Idempotent."""
        ...

    def stats(self, context_id: str | None = None) -> list[StreamStats]: ...

    def active_ports(self) -> frozenset[tuple[str, int]]:
        """("udp"|"tcp", port) of every port currently allocated."""
        ...
