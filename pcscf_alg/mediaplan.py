"""Media-plan types shared by the e2ae engine (which makes them) and the IMS-AGW (which runs them).

They mirror the TS 23.334 Iq information elements (TS 23.334 §6.2): per stream
and per termination (access = UE side, core = S-CSCF side) the transport, the remote address, the
SDES crypto attributes (remote = the UE's K11/K22, local = ours K12/K21), the certificate
fingerprints and the TLS setup role. Everything here is a plain, frozen, serialisable dataclass so
that a gateway in another process can sit behind the same control API later.

Key material lives in `SrtpKey.key_salt`. Its `repr` is redacted so that logging a plan can never
leak a key (TS 33.328 / TS 33.107: keys must not be logged).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Side(enum.Enum):
    ACCESS = "access"  # towards the UE (Gm)
    CORE = "core"  # towards the S-CSCF / remote network (Mw)


class Direction(enum.Enum):
    """Which way the *offer* travels. Procedures follow the offer (docs/e2ae-notes.md §3.3)."""

    ORIGINATING = "originating"  # offer from the UE towards the core: TS 33.328 7.2.1
    TERMINATING = "terminating"  # offer from the core towards the UE: TS 33.328 7.3.1


class MediaKind(enum.Enum):
    RTP = "rtp"
    MSRP = "msrp"
    OTHER = "other"


class StreamMode(enum.Enum):
    """What the gateway does with one stream."""

    E2AE = "e2ae"  # anchored, security terminated at the AGW: SRTP<->RTP or TLS<->TCP
    PASS = "pass"  # anchored, bytes relayed untouched (plain, or SRTP/TLS end to end)
    BYPASS = "bypass"  # not anchored: media flows directly, SDP addresses untouched
    REJECTED = "rejected"  # port 0 in offer or answer: nothing to relay


class SetupRole(enum.Enum):
    """RFC 4145 / RFC 6135 a=setup values, from the point of view of whoever sends them."""

    ACTIVE = "active"
    PASSIVE = "passive"
    ACTPASS = "actpass"
    HOLDCONN = "holdconn"


class MsrpMode(enum.Enum):
    AGNOSTIC = "agnostic"  # RFC 6714 CEMA: bytes relayed unchanged (TS 23.334 §5.19)
    AWARE = "aware"  # To-Path/From-Path rewritten per leg (TS 23.334 §5.19.5)


class ThroughConnection(enum.Enum):
    """TS 23.334 Change Through-Connection: which directions the gateway lets media through."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"  # only towards the UE
    RECVONLY = "recvonly"  # only from the UE
    INACTIVE = "inactive"


# RFC 3711 §9.2 default key lifetimes, signalled by omitting the lifetime (TS 33.328 7.2.1 NOTE 1).
DEFAULT_SRTP_LIFETIME = 2**48
DEFAULT_SRTCP_LIFETIME = 2**31


@dataclass(frozen=True)
class SrtpKey:
    """One SDES crypto context for one direction (RFC 4568 §6.1 inline key-param).

    `key_salt` is master key || master salt. `mki` is the MKI *value* as bytes of the signalled
    length (RFC 4568 `mki-value:mki-length`), or None. Session parameters that change the
    transform are carried as flags.
    """

    suite: str
    key_salt: bytes = field(repr=False)
    tag: int = 1
    lifetime: int | None = None  # None = RFC 3711 default
    mki: bytes | None = None
    kdr: int = 0
    unencrypted_srtp: bool = False
    unencrypted_srtcp: bool = False
    unauthenticated_srtp: bool = False

    def __repr__(self) -> str:  # never show key bytes
        mki = f", mki_len={len(self.mki)}" if self.mki is not None else ""
        return f"SrtpKey(tag={self.tag}, suite={self.suite}, key=<redacted>{mki})"


@dataclass(frozen=True)
class Fingerprint:
    """RFC 8122 certificate fingerprint: hash function name (lower case) and digest bytes."""

    hash_func: str
    digest: bytes

    def to_sdp(self) -> str:
        return f"{self.hash_func} " + ":".join(f"{b:02X}" for b in self.digest)


@dataclass(frozen=True)
class Endpoint:
    """A transport address. For RTP, `rtcp_port` is None when RTCP is muxed (RFC 5761)."""

    host: str
    port: int
    rtcp_port: int | None = None


@dataclass(frozen=True)
class StreamRequest:
    """Reserve one stream at the gateway (TS 23.334 Reserve AGW Connection Point)."""

    index: int  # m-line index in the SDP
    kind: MediaKind
    access_rtcp_mux: bool = False
    core_rtcp_mux: bool = False
    want_local_fingerprint: bool = False  # TS 23.334 "Local certificate fingerprint Request"
    # SRTP towards the UE terminated at the gateway (an e2ae RTP stream): the crypto suite the
    # ALG will use there (K11's for an originating offer, the first one policy offers for a
    # terminating one). A gateway that supplies its own local SDES crypto (TS 23.334
    # "Local SDES crypto", rtpengine) makes its key for this suite; None = plain on both sides.
    ue_suite: str | None = None


@dataclass(frozen=True)
class StreamReservation:
    """What the gateway reserved for a stream: its local addresses on each side."""

    index: int
    kind: MediaKind
    access: Endpoint
    core: Endpoint
    local_fingerprint: Fingerprint | None = None
    # Local SDES crypto supplied by the IMS-AGW (TS 23.334 §6.2.10: the AGW may generate its
    # own key towards the UE): when set, the e2ae engine uses it as K12 (originating) or as the
    # single K21 it offers (terminating) instead of generating one. None: the ALG generates it
    # (the embedded gateway).
    local_key: SrtpKey | None = None


@dataclass(frozen=True)
class StreamPlan:
    """The full configuration of one stream (TS 23.334 Configure AGW Connection Point).

    `ue_remote`/`core_remote` are the peers' addresses from the SDP (None until known, e.g. the
    answerer's address before the answer arrives). For RTP in E2AE mode, `rx_key` unprotects what
    arrives from the UE (K11 originating / K22 terminating) and `tx_key` protects what goes to the
    UE (K12 / K21). For MSRP in E2AE mode, `ue_fingerprint` is what the UE's certificate must match
    during the TLS handshake, and `access_setup` is the gateway's own role on the access leg
    (PASSIVE = TLS server, ACTIVE = TLS client). The core leg is plain TCP and the gateway opens it
    once the UE's connection is up (TS 23.334). In AWARE MSRP mode the four `*_path` URIs are the
    MSRP URIs each leg's endpoint was promised, for To-Path/From-Path rewriting.
    """

    index: int
    kind: MediaKind
    mode: StreamMode
    ue_remote: Endpoint | None = None
    core_remote: Endpoint | None = None
    access_rtcp_mux: bool = False
    core_rtcp_mux: bool = False
    rx_key: SrtpKey | None = None
    tx_key: SrtpKey | None = None
    ue_fingerprint: tuple[Fingerprint, ...] = ()
    access_setup: SetupRole = SetupRole.PASSIVE
    core_setup: SetupRole = SetupRole.ACTIVE
    msrp_mode: MsrpMode = MsrpMode.AGNOSTIC
    ue_path: str | None = None  # the UE's own a=path URI
    agw_access_path: str | None = None  # our URI as the UE sees it
    core_path: str | None = None  # the core peer's a=path URI
    agw_core_path: str | None = None  # our URI as the core peer sees it
    through: ThroughConnection = ThroughConnection.SENDRECV
    # TLS terminated on the core leg as well (TS 33.328 7.3.1 step 3: TCP/TLS/MSRP offered by
    # the core and terminated by local policy, e.g. for LI). The gateway then presents its
    # `local_fingerprint` certificate on the core leg too, and the core peer's certificate must
    # match `core_fingerprint`; `core_setup` is its TCP/TLS role there.
    core_tls: bool = False
    core_fingerprint: tuple[Fingerprint, ...] = ()


@dataclass(frozen=True)
class MediaPlan:
    streams: tuple[StreamPlan, ...]

    def anchored(self) -> tuple[StreamPlan, ...]:
        return tuple(s for s in self.streams if s.mode in (StreamMode.E2AE, StreamMode.PASS))
