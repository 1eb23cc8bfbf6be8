"""Where the session description sits in a SIP body: the whole body (`application/sdp`), or one
part of a MIME multipart body (RFC 5621, RFC 2046 §5.1).

Why the ALG needs this: IMS requests carry SDP inside multipart bodies in ordinary cases, e.g.
an emergency INVITE with SDP + PIDF-LO location (RFC 6442, TS 24.229 §5.2.10), a conference
INVITE with SDP + resource-list (RFC 5366), MCPTT with SDP + mcptt-info. A P-CSCF that only looks
at `Content-Type: application/sdp` would forward the UE's `a=crypto` keys, meant for our gateway
(TS 33.328 7.2.1 step 3), to the core untouched, and take the core's answer for a new offer.

So the SDP part is located, handed to the e2ae engine like any SDP, and spliced back in; every
other byte of the body (other parts, their headers, preamble, epilogue, boundaries) is kept. A
part's own Content-Length header, rare in MIME but seen in SIP, is kept in step.

Pure functions over bytes (sans-IO). The session description is the `application/sdp` part
whose Content-Disposition is absent or `session` (RFC 5621 §3.1, RFC 3261 §20.11); parts with
another disposition (e.g. `early-session`, RFC 3959) are left alone. Nested multiparts (e.g.
multipart/mixed holding a multipart/alternative) are searched up to `MAX_DEPTH` levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_DEPTH: Final = 4  # nesting of multiparts we look into; deeper is refused, not ignored
# Transfer encodings under which the part's bytes *are* the SDP (RFC 2045 §6.1).
_IDENTITY_CTE: Final = frozenset(("7bit", "8bit", "binary"))


class BodyError(ValueError):
    """A body we cannot safely process. `status` is the SIP answer to a request carrying it:
    400 for a malformed multipart body, 488 for one we cannot rewrite (the UE's keys must not
    pass through unseen). `reason` is fit for a Warning header."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SdpLocation:
    """The SDP inside a body: `body[start:end]`; `length_span`, when the part carries its own
    Content-Length header, is the (start, end) of that header's value."""

    start: int
    end: int
    length_span: tuple[int, int] | None = None


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """`type/subtype` (lower case) and the parameters (names lower case, values unquoted) of a
    Content-Type value. None or empty gives ("", {})."""
    if not value:
        return "", {}
    # Quoted parameter values (boundary="...") may hold ';': split outside quotes only.
    parts = value.split(";") if '"' not in value else _split_unquoted(value, ";")
    mtype = parts[0].strip().lower()
    params: dict[str, str] = {}
    for p in parts[1:]:
        name, eq, v = p.partition("=")
        if not eq:
            continue
        v = v.strip()
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.strip().lower()] = v
    return mtype, params


def _split_unquoted(text: str, sep: str) -> list[str]:
    out: list[str] = []
    start = 0
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def check_readable(content_encoding: str | None, content_type: str | None, body: bytes) -> None:
    """Raise `BodyError` when a non-empty body cannot be read as sent: a Content-Encoding other
    than `identity` (415: RFC 3261 §20.12 lets a UAS refuse one it does not support with 415
    and Accept-Encoding, §21.4.13), or no Content-Type at all (400: RFC 3261 §20.15 makes it
    mandatory for a non-empty body). A middlebox that rewrites SDP must refuse both: it cannot
    tell whether the bytes hold an offer, and passing them on unseen would leak the UE's keys
    to the core and leave the gateway out of the media path."""
    if not body:
        return
    if content_encoding is not None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        bad = [c for c in codings if c and c != "identity"]
        if bad:
            raise BodyError(415, f"Content-Encoding {', '.join(bad)[:40]} not supported")
    if content_type is None or not content_type.strip():
        raise BodyError(400, "body without Content-Type")


def is_multipart(content_type: str | None) -> bool:
    return media_type(content_type)[0].startswith("multipart/")


def locate_sdp(content_type: str | None, body: bytes) -> SdpLocation | None:
    """Where the session SDP is in `body`, or None when there is none. Raises `BodyError` for
    a malformed multipart body, several session SDP parts, or an SDP part we cannot read
    (a transfer encoding other than 7bit/8bit/binary)."""
    if not body:
        return None
    mtype, params = media_type(content_type)
    if mtype == "application/sdp":
        return SdpLocation(0, len(body))
    if not mtype.startswith("multipart/"):
        return None
    found = _search(body, 0, len(body), params, 1)
    if len(found) > 1:
        raise BodyError(488, "multipart body with several SDP session descriptions")
    return found[0] if found else None


def replace_sdp(body: bytes, loc: SdpLocation, sdp: bytes) -> bytes:
    """`body` with the SDP at `loc` replaced by `sdp` (and the part's Content-Length, if any)."""
    out = body[: loc.start] + sdp + body[loc.end :]
    if loc.length_span is not None:
        a, b = loc.length_span
        out = out[:a] + b" " + str(len(sdp)).encode() + out[b:]
    return out


def _search(
    body: bytes, start: int, end: int, params: dict[str, str], depth: int
) -> list[SdpLocation]:
    """The session SDP parts of the multipart `body[start:end]` (and of multiparts inside)."""
    if depth > MAX_DEPTH:
        raise BodyError(488, "multipart body nested too deeply")
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 70:  # RFC 2046 §5.1.1: 1 to 70 characters
        raise BodyError(400, "multipart body without a valid boundary parameter")
    found: list[SdpLocation] = []
    for pstart, pend in _parts(body, start, end, boundary.encode("utf-8", "surrogateescape")):
        hstart, hend, bstart = _part_headers(body, pstart, pend)
        headers = _header_fields(body, hstart, hend)
        ptype, pparams = media_type(_value(body, headers.get("content-type")))
        if ptype.startswith("multipart/"):
            found += _search(body, bstart, pend, pparams, depth + 1)
            continue
        if ptype != "application/sdp":
            continue
        disposition = _value(body, headers.get("content-disposition"))
        if disposition and media_type(disposition)[0] not in ("", "session"):
            continue  # e.g. early-session: not the session description (RFC 5621 §3.1)
        cte = _value(body, headers.get("content-transfer-encoding"))
        if cte and cte.strip().lower() not in _IDENTITY_CTE:
            raise BodyError(488, f"SDP part with Content-Transfer-Encoding {cte.strip()}")
        found.append(SdpLocation(bstart, pend, headers.get("content-length")))
    return found


def _parts(body: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """(start, end) of each body part between the delimiters of `boundary` (RFC 2046 §5.1.1):
    a delimiter is "--boundary" at the start of a line, then optional white space and the end
    of the line ("--" after it closes the multipart). The line break before a delimiter belongs
    to it, not to the part. Bare LF line ends are accepted as well as CRLF."""
    dash = b"--" + boundary
    found = _delimiter(body, start, end, dash)
    if found is None:
        raise BodyError(400, "multipart body without its boundary")
    pos = found[1]
    parts: list[tuple[int, int]] = []
    while True:
        after = pos + len(dash)
        if body.startswith(b"--", after):
            return parts  # close delimiter; what follows is the epilogue
        eol = body.find(b"\n", after, end)
        if eol < 0:
            raise BodyError(400, "multipart body ends inside a boundary line")
        found = _delimiter(body, eol + 1, end, dash)
        if found is None:
            raise BodyError(400, "multipart body without its closing boundary")
        parts.append((eol + 1, found[0]))
        pos = found[1]


def _delimiter(body: bytes, start: int, end: int, dash: bytes) -> tuple[int, int] | None:
    """The next delimiter line at or after `start` (a line start): (offset of the line break
    before it, or of the delimiter itself when it is at `start`; offset of its "--")."""
    if body.startswith(dash, start) and _ends_delimiter(body, start + len(dash), end):
        return start, start
    i = start
    while True:
        i = body.find(b"\n" + dash, i, end)
        if i < 0:
            return None
        if _ends_delimiter(body, i + 1 + len(dash), end):
            brk = i - 1 if i > start and body[i - 1] == 0x0D else i
            return brk, i + 1
        i += 1


def _ends_delimiter(body: bytes, k: int, end: int) -> bool:
    """Whether a "--boundary" ending at `k` is a delimiter (and not a longer string that
    starts with it): followed by "--", or by white space up to the end of the line."""
    if body.startswith(b"--", k):
        return True
    eol = body.find(b"\n", k, end)
    rest = body[k:eol] if eol >= 0 else body[k:end]
    return not rest.strip(b" \t\r")


def _part_headers(body: bytes, start: int, end: int) -> tuple[int, int, int]:
    """(headers start, headers end, body start) of one part. A part that starts with an empty
    line has no headers (RFC 2046 §5.1.1: text/plain by default)."""
    for blank in (b"\r\n", b"\n"):
        if body.startswith(blank, start):
            return start, start, start + len(blank)
    crlf = body.find(b"\r\n\r\n", start, end)
    lf = body.find(b"\n\n", start, end)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return start, crlf + 2, crlf + 4
    if lf >= 0:
        return start, lf + 1, lf + 2
    raise BodyError(400, "multipart body part without the blank line after its headers")


def _header_fields(body: bytes, start: int, end: int) -> dict[str, tuple[int, int]]:
    """Header name (lower case) -> (start, end) of its value in `body`, first occurrence; folded
    continuation lines are part of the value."""
    out: dict[str, tuple[int, int]] = {}
    name: str | None = None
    pos = start
    while pos < end:
        eol = body.find(b"\n", pos, end)
        line_end = end if eol < 0 else eol
        stop = line_end - 1 if line_end > pos and body[line_end - 1] == 0x0D else line_end
        if body[pos : pos + 1] in (b" ", b"\t") and name is not None:
            if name in out:  # a folded line continues the value
                out[name] = (out[name][0], stop)
        else:
            colon = body.find(b":", pos, stop)
            if colon < 0:
                raise BodyError(400, "malformed header in a multipart body part")
            name = body[pos:colon].strip().decode("ascii", "replace").lower()
            if name not in out:
                out[name] = (colon + 1, stop)
            else:
                name = None  # a repeated header: its folds must not extend the first one
        pos = line_end + 1
    return out


def _value(body: bytes, span: tuple[int, int] | None) -> str | None:
    if span is None:
        return None
    raw = body[span[0] : span[1]].decode("utf-8", "replace")
    return " ".join(raw.split())  # unfold
