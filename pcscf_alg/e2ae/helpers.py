"""Helpers shared by the e2ae phases: indications, endpoints, fingerprints, policy context;
and the byte-level checks for offers no procedure can touch."""

from __future__ import annotations

import dataclasses
from typing import Final

from ..errors import SdpError
from ..mediaplan import (
    Direction,
    Endpoint,
    Fingerprint,
    MediaKind,
    SetupRole,
    SrtpKey,
    StreamRequest,
)
from ..policy.base import Policy, PolicyContext
from ..sdp.attrs import E2aeIndicator, parse_3ge2ae
from ..sdp.crypto import CryptoAttr, redact
from ..sdp.fingerprint import parse_fingerprint
from ..sdp.model import Media, Sdp
from ..sdp.msrp import MsrpUri, parse_path, parse_setup
from .records import (
    _E2AE_MODE,
    _IND_OTHER,
    _MSRP,
    _OTHER,
    _RTP,
    _RTP_PLAIN,
    _RTP_SECURE,
    MSRP_TCP,
    MSRP_TLS,
    AnswerResult,
    E2aeFlags,
    Previous,
    _Prev,
    _tuple_new,
)


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
    """The 3ge2ae indicator of a stream. A session-level one (a broken UE, docs/e2ae-notes.md §7.9)
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
    StreamRequest,
    ("index", "kind", "access_rtcp_mux", "core_rtcp_mux", "want_local_fingerprint", "ue_suite"),
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
