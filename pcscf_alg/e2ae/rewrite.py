"""SDP rewriting shared by the offer and answer phases: 3ge2ae sanitising, session
fingerprints, capability negotiation, and moving c=/m= to the gateway."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import GatewayError
from ..mediaplan import Endpoint, Fingerprint, SetupRole, StreamReservation
from ..sdp.crypto import CryptoAttr, KeyParam, generate_crypto
from ..sdp.fingerprint import format_fingerprint
from ..sdp.model import Media, Sdp, remove_attrs
from .helpers import _KINDS, _same_key
from .records import _E2AE, _FINGERPRINT, _RTP, Rng, _Prev


def _strip_3ge2ae(sdp: Sdp) -> None:
    """7.3.1: remove any "e2ae-security offered by network" inserted by another party; and
    never forward a UE's indication to the core (docs/e2ae-notes.md §3.2)."""
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
    m.replace_or_insert(
        "setup", f"a=setup:{setup.value}", f"a=fingerprint:{format_fingerprint(fp)}"
    )


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
