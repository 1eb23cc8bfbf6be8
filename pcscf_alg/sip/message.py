"""SIP message model, parser and serializer (RFC 3261 §7, §18.3, §25), sans-IO.

Built for a proxy: a message is parsed into a start line plus an *ordered* list of header fields
kept with the name spelling they arrived with, so that unknown headers, their order and their
values pass through untouched. Only what the proxy needs is interpreted (lazily, via helpers in
`headers.py`). Folded header lines (RFC 3261 §7.3.1) are unfolded to one space, which the RFC
defines as equivalent. Compact forms (`v`, `f`, `t`, `i`, ...) are recognised for lookups and
kept as they came on the wire.

Why our own parser and not the `sipmessage` package: see README "Design notes" and
bench/bench_sip_parse.py (it normalises header names and values, so a proxy built on it cannot
pass messages through untouched, and it was several times slower per INVITE with SDP).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pcscf_alg.errors import SipParseError

# --- Limits (named, in the manner of h11). -------------------------------------------------------
# 65,535 bytes: the largest UDP payload, and the limit Kamailio (BUF_SIZE) and OpenSIPS use for
# one SIP message. A larger message on a stream transport is refused with 413 (RFC 3261 §21.4.11
# is for bodies; we apply it to the whole message as those proxies do).
MAX_MESSAGE_SIZE = 65_535
# Header fields per message. RFC 3261 sets no limit; real INVITEs carry 20-40 (example 04 has 19).
# 256 leaves room for long Via/Record-Route chains while capping the work an attacker can cause.
MAX_HEADER_COUNT = 256
# Largest header block we buffer on a stream before giving up (h11's max_incomplete_event_size
# idea): with no blank line after this many bytes the peer is not speaking SIP.
MAX_HEADER_BLOCK = 32_768

# RFC 3261 §7.3.3 compact forms, plus RFC 3841/3515/3892/4028/6665 ones seen in IMS.
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1): only these are split by
# `Headers.values()`. Others (Authorization, WWW-Authenticate, Date, ...) contain commas that
# are not list separators.
LIST_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "path",
        "service-route",
        "require",
        "proxy-require",
        "supported",
        "unsupported",
        "allow",
        "security-client",
        "security-server",
        "security-verify",
        "p-asserted-identity",
        "p-preferred-identity",
        "p-associated-uri",
        "accept-contact",
        "allow-events",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "in-reply-to",
    }
)

SIP_VERSION = "SIP/2.0"

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def canonical(name: str) -> str:
    """Lower-case lookup key of a header name, with compact forms expanded."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and <...> (RFC 3261 §7.3.1)."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


class Headers:
    """Ordered header fields: a list of [name-as-received, canonical-key, value]."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[list[str]] | None = None) -> None:
        self._fields: list[list[str]] = fields if fields is not None else []

    # -- reading --
    def __iter__(self) -> Iterator[tuple[str, str]]:
        for f in self._fields:
            yield f[0], f[2]

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: str) -> bool:
        key = canonical(name)
        return any(f[1] == key for f in self._fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The raw value of the first header field with this name."""
        key = canonical(name)
        for f in self._fields:
            if f[1] == key:
                return f[2]
        return default

    def get_raw_all(self, name: str) -> list[str]:
        """Raw values of every field with this name (not split on commas)."""
        key = canonical(name)
        return [f[2] for f in self._fields if f[1] == key]

    def values(self, name: str) -> list[str]:
        """Every value of a header, comma-joined lists split, in order across instances."""
        key = canonical(name)
        out: list[str] = []
        for f in self._fields:
            if f[1] == key:
                if key in LIST_HEADERS:
                    out.extend(split_list(f[2]))
                else:
                    out.append(f[2].strip())
        return out

    def first_value(self, name: str) -> str | None:
        """The first element of a (possibly comma-joined) list header."""
        key = canonical(name)
        for f in self._fields:
            if f[1] == key:
                if key in LIST_HEADERS:
                    parts = split_list(f[2])
                    if parts:
                        return parts[0]
                    continue
                return f[2].strip()
        return None

    def count(self, name: str) -> int:
        key = canonical(name)
        return sum(1 for f in self._fields if f[1] == key)

    # -- writing --
    def add(self, name: str, value: str) -> None:
        """Append a header field at the end."""
        self._fields.append([name, canonical(name), value])

    def add_after_last(self, name: str, value: str, anchor: str) -> None:
        """Insert after the last field named `anchor` (or at the end if there is none)."""
        key = canonical(anchor)
        idx = -1
        for i, f in enumerate(self._fields):
            if f[1] == key:
                idx = i
        entry = [name, canonical(name), value]
        if idx < 0:
            self._fields.append(entry)
        else:
            self._fields.insert(idx + 1, entry)

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first field of the same name (or at the top if none)."""
        key = canonical(name)
        for i, f in enumerate(self._fields):
            if f[1] == key:
                self._fields.insert(i, [name, key, value])
                return
        self._fields.insert(0, [name, key, value])

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one, kept at the first one's position."""
        key = canonical(name)
        for i, f in enumerate(self._fields):
            if f[1] == key:
                f[2] = value
                self._fields[i + 1 :] = [g for g in self._fields[i + 1 :] if g[1] != key]
                return
        self._fields.append([name, key, value])

    def remove(self, name: str) -> int:
        """Remove every field of this name; returns how many were removed."""
        key = canonical(name)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f[1] != key]
        return before - len(self._fields)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first element of a list header (Via, Route)."""
        key = canonical(name)
        for i, f in enumerate(self._fields):
            if f[1] != key:
                continue
            parts = split_list(f[2])
            if not parts:
                del self._fields[i]
                continue
            first = parts[0]
            if len(parts) == 1:
                del self._fields[i]
            else:
                f[2] = ", ".join(parts[1:])
            return first
        return None

    def replace_values(self, name: str, values: list[str]) -> None:
        """Set a list header to exactly `values` (one field, comma-joined) or remove it if empty."""
        if not values:
            self.remove(name)
            return
        self.set(self._name_for(name), ", ".join(values))

    def _name_for(self, name: str) -> str:
        key = canonical(name)
        for f in self._fields:
            if f[1] == key:
                return f[0]
        return name

    def copy(self) -> Headers:
        return Headers([list(f) for f in self._fields])


@dataclass(slots=True)
class SipMessage:
    """A SIP request (method/uri set) or response (status/reason set)."""

    headers: Headers
    body: bytes = b""
    method: str | None = None
    uri: str | None = None
    status: int = 0
    reason: str = ""
    version: str = SIP_VERSION
    # Content-Length as received; None if absent. Serialisation always writes the real length.
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def is_request(self) -> bool:
        return self.method is not None

    # -- frequently used fields, parsed once --
    @property
    def call_id(self) -> str:
        return self.headers.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        c = self._cache.get("cseq")
        if c is None:
            raw = (self.headers.get("cseq") or "").split()
            if len(raw) != 2 or not raw[0].isdigit():
                raise SipParseError("Bad CSeq")
            c = (int(raw[0]), raw[1].upper())
            self._cache["cseq"] = c
        return c  # type: ignore[return-value]

    def invalidate(self) -> None:
        """Forget cached parses after a header was edited."""
        self._cache.clear()

    def copy(self) -> SipMessage:
        return SipMessage(
            headers=self.headers.copy(),
            body=self.body,
            method=self.method,
            uri=self.uri,
            status=self.status,
            reason=self.reason,
            version=self.version,
        )

    def serialize(self) -> bytes:
        """Wire form. Content-Length is always (re)written to the real body length."""
        if self.method is not None:
            start = f"{self.method} {self.uri} {self.version}"
        else:
            start = f"{self.version} {self.status} {self.reason}"
        lines = [start]
        have_cl = False
        blen = len(self.body)
        for name, key, value in self.headers._fields:
            if key == "content-length":
                if have_cl:
                    continue
                have_cl = True
                lines.append(f"{name}: {blen}")
            else:
                lines.append(f"{name}: {value}")
        if not have_cl:
            lines.append(f"Content-Length: {blen}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def short(self) -> str:
        """One-line description for logs."""
        if self.method is not None:
            return f"{self.method} {self.uri}"
        return f"{self.status} {self.reason}"


# --- Parsing ----------------------------------------------------------------------------------


def _parse_start_line(line: str) -> tuple[str | None, str | None, int, str, str]:
    if line.startswith("SIP/"):
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §7.2)
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError("Bad status line")
        version = parts[0]
        if version.upper() != SIP_VERSION:
            raise SipParseError("Unsupported SIP version", 505)
        code = parts[1]
        if len(code) != 3 or not code.isdigit():
            raise SipParseError("Bad status code")
        status = int(code)
        if status < 100 or status > 699:
            raise SipParseError("Bad status code")
        return None, None, status, parts[2] if len(parts) == 3 else "", version
    # Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §7.1): exactly single SPs.
    parts = line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise SipParseError("Bad request line")
    method, uri, version = parts
    if not all(c in _TOKEN_CHARS for c in method):
        raise SipParseError("Bad method")
    if not version.upper().startswith("SIP/"):
        raise SipParseError("Bad request line")
    if version.upper() != SIP_VERSION:
        raise SipParseError("Unsupported SIP version", 505)
    if ":" not in uri:
        raise SipParseError("Bad Request-URI")
    return method, uri, 0, "", version


def _parse_header_block(text: str) -> tuple[str, Headers]:
    """Split a header block (no trailing blank line) into start line and headers."""
    if "\r\n" in text:
        raw_lines = text.split("\r\n")
    else:
        raw_lines = text.split("\n")
    # Tolerate stray bare LF in a CRLF message (RFC 4475 §3.1.1.1 is liberal about LWS).
    start = raw_lines[0].rstrip("\r")
    fields: list[list[str]] = []
    for raw in raw_lines[1:]:
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            # Folded continuation (RFC 3261 §7.3.1): joins the previous field with one SP.
            if not fields:
                raise SipParseError("Continuation line before any header")
            fields[-1][2] = f"{fields[-1][2]} {line.strip()}" if fields[-1][2] else line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError("Header line without colon")
        name = name.rstrip(" \t")
        if not name or not all(c in _TOKEN_CHARS for c in name):
            raise SipParseError("Bad header name")
        fields.append([name, canonical(name), value.strip(" \t")])
        if len(fields) > MAX_HEADER_COUNT:
            raise SipParseError("Too many header fields", 513)
    return start, Headers(fields)


_REQUIRED = ("via", "from", "to", "call-id", "cseq")


def _validate(msg: SipMessage) -> None:
    """Check the fields every proxy needs (RFC 3261 §8.1.1, §16.3)."""
    h = msg.headers
    present = {f[1] for f in h._fields}
    for key in _REQUIRED:
        if key not in present:
            raise SipParseError(f"Missing {key.title()} header")
    for key in ("call-id", "cseq", "from", "to", "max-forwards", "content-length"):
        if key in present and h.count(key) > 1:
            raise SipParseError(f"Duplicate {key.title()} header")
    num, method = msg.cseq
    if num > 2**31 - 1:
        raise SipParseError("CSeq number out of range")
    if msg.method is not None and method != msg.method.upper() and msg.method != "ACK":
        raise SipParseError("CSeq method does not match request method")
    if msg.method == "ACK" and method != "ACK":
        raise SipParseError("CSeq method does not match request method")
    mf = h.get("max-forwards")
    if mf is not None and (not mf.isdigit() or len(mf) > 3):
        raise SipParseError("Bad Max-Forwards")


def _content_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit():
        raise SipParseError("Bad Content-Length")
    return int(raw)


def _find_header_end(data: bytes) -> tuple[int, int]:
    """Index where the header block ends and where the body starts, or (-1, -1)."""
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n")
    if i >= 0 and (j < 0 or i < j):
        return i, i + 4
    if j >= 0:
        return j, j + 2
    return -1, -1


def parse_message(data: bytes, *, datagram: bool = True) -> SipMessage:
    """Parse one complete message (a UDP datagram, or a frame cut by `StreamFramer`).

    Raises SipParseError. For datagrams, RFC 3261 §18.3: a body longer than Content-Length is
    truncated, a shorter one is an error; with no Content-Length the body is the rest.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message too large", 513)
    # RFC 3261 §7.5: implementations SHOULD ignore CRLFs before the start line.
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    hend, bstart = _find_header_end(data)
    if hend < 0:
        # A message with no body may end right after its last header line.
        if data.endswith(b"\r\n") or data.endswith(b"\n"):
            hend, bstart = len(data), len(data)
        else:
            raise SipParseError("Incomplete header block")
    text = data[:hend].decode("utf-8", "surrogateescape")
    start, headers = _parse_header_block(text)
    method, uri, status, reason, version = _parse_start_line(start)
    body = data[bstart:]
    clen = _content_length(headers)
    if clen is not None:
        if len(body) < clen:
            raise SipParseError("Body shorter than Content-Length")
        body = body[:clen]
    elif not datagram:
        raise SipParseError("Missing Content-Length on a stream transport")
    msg = SipMessage(
        headers=headers,
        body=body,
        method=method,
        uri=uri,
        status=status,
        reason=reason,
        version=version,
    )
    _validate(msg)
    return msg


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3), sans-IO.

    `feed(data)` returns complete frames (bytes). CRLF keep-alives (RFC 5626 §4.4.1: "\\r\\n\\r\\n"
    ping, "\\r\\n" pong) between messages are reported via `pings` so the adapter can answer.
    Raises SipParseError when the stream cannot be framed any more (the caller closes it).
    """

    __slots__ = ("_buf", "pings")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.pings = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while buf:
            # Leading CRLFs: keep-alive pings (double CRLF) or padding.
            if buf[0] in (13, 10):
                if buf.startswith(b"\r\n\r\n"):
                    self.pings += 1
                    del buf[:4]
                    continue
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    break  # maybe the start of a ping: wait for more
                del buf[:1]
                continue
            hend, bstart = _find_header_end(bytes(buf[: MAX_HEADER_BLOCK + 4]))
            if hend < 0:
                if len(buf) > MAX_HEADER_BLOCK:
                    raise SipParseError("Header block too large", 513)
                break
            head = bytes(buf[:hend]).decode("utf-8", "surrogateescape")
            clen = None
            for line in head.splitlines()[1:]:
                name, sep, value = line.partition(":")
                if sep and canonical(name.strip()) == "content-length":
                    v = value.strip()
                    if not v.isdigit():
                        raise SipParseError("Bad Content-Length")
                    clen = int(v)
                    break
            if clen is None:
                raise SipParseError("Missing Content-Length on a stream transport")
            total = bstart + clen
            if total > MAX_MESSAGE_SIZE:
                raise SipParseError("Message too large", 513)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def make_response(
    request: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipMessage:
    """Build a response to `request` (RFC 3261 §8.2.6.2): copy Via, From, To, Call-ID, CSeq.

    Record-Route is copied for 2xx/18x to dialog-creating requests by the caller if needed;
    a proxy's own responses (100, 4xx/5xx) do not need it.
    """
    h = Headers()
    for name, key, value in request.headers._fields:
        if key in ("via", "from", "call-id", "cseq"):
            h._fields.append([name, key, value])
        elif key == "to":
            if to_tag and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            h._fields.append([name, key, value])
    for name, value in extra or []:
        h.add(name, value)
    h.add("Content-Length", str(len(body)))
    return SipMessage(headers=h, body=body, status=status, reason=reason)
