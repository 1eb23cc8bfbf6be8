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

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import VIA_RE, header_tag

# --- Limits (named, in the manner of h11). -------------------------------------------------------
# 65,535 bytes: the largest UDP payload, and the limit Kamailio (BUF_SIZE) and OpenSIPS use for
# one SIP message. A larger message is refused with 513 Message Too Large (RFC 3261 §21.5.14).
MAX_MESSAGE_SIZE = 65_535
# Header fields per message (folded continuation lines do not count). RFC 3261 sets no limit;
# real INVITEs carry 20-40 (example 04 has 16). 256 leaves room for long Via/Record-Route chains
# while capping the work an attacker can cause. More is refused with 513.
MAX_HEADER_COUNT = 256
# Largest header block we buffer on a stream before giving up (h11's max_incomplete_event_size
# idea): with no blank line after this many bytes the peer is not speaking SIP.
MAX_HEADER_BLOCK = 32_768

# Control characters a proxy must not forward in a start line or header field (RFC 3261 §25.1:
# TEXT-UTF8 and every token exclude CTL; HTAB is LWS; CR and LF only end lines). A NUL in a
# Request-URI or header is also what truncates strings in C-based peers downstream.
_CTL_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every other octet: `head.translate(None, _NOT_CTL)` leaves only the control characters. That
# is one C pass (about 1 us for a 1.2 kB header block, a third of the regex search above).
_NOT_CTL = bytes(c for c in range(256) if not _CTL_RE.match(bytes((c,))))

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


def canonical(name: str) -> str:
    """Lower-case lookup key of a header name, with compact forms expanded."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


# One list element: a run of anything but a comma, where quoted strings and <...> may contain
# commas (RFC 3261 §7.3.1). Unterminated quotes or brackets run to the end of the value, as a
# scanner would. Done by the regex engine in C: this runs several times per message.
_LIST_ITEM = re.compile(r'(?:[^,"<]|"(?:[^"\\]|\\.)*(?:"|$)|<[^>]*(?:>|$))+', re.S)


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and <...> (RFC 3261 §7.3.1)."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    if '"' not in value and "<" not in value:
        return [p for p in (x.strip() for x in value.split(",")) if p]
    return [p for p in (x.strip() for x in _LIST_ITEM.findall(value)) if p]


def first_of_list(value: str) -> str | None:
    """The first element of a list header value, without splitting the rest."""
    if "," not in value:
        v = value.strip()
        return v or None
    for m in _LIST_ITEM.finditer(value):
        v = m.group().strip()
        if v:
            return v
    return None


class Headers:
    """Ordered header fields: a list of [name-as-received, canonical-key, value].

    `value` is the field value with folding replaced by one SP and the ends trimmed. For a
    field that arrived in another form than "Name: value" (folded, "TO :", "l:0", tabs), the
    wire text is remembered in `_raw` and written back by `SipMessage.serialize` for as long
    as the field's name and value are unchanged, so untouched fields pass through byte-exact.
    """

    __slots__ = ("_fields", "_raw")

    def __init__(self, fields: list[list[str]] | None = None) -> None:
        self._fields: list[list[str]] = fields if fields is not None else []
        # id(field) -> (name, value, wire text); used only while name and value still match
        self._raw: dict[int, tuple[str, str, str]] = {}

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
                    first = first_of_list(f[2])
                    if first is not None:
                        return first
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
        fields = [list(f) for f in self._fields]
        h = Headers(fields)
        if self._raw:
            raw = self._raw
            for old, new in zip(self._fields, fields, strict=True):
                r = raw.get(id(old))
                if r is not None:
                    h._raw[id(new)] = r
        return h

    def _wire_lines(self, content_length: int | None = None) -> list[str]:
        """Header lines as they go on the wire (no CRLFs). With `content_length`, the first
        Content-Length field is rewritten to it, later ones dropped, and one is added if none."""
        raw = self._raw
        out: list[str] = []
        have_cl = content_length is None
        for f in self._fields:
            name, key, value = f[0], f[1], f[2]
            if key == "content-length" and content_length is not None:
                if have_cl:
                    continue
                have_cl = True
                value = str(content_length)
            if raw:
                r = raw.get(id(f))
                if r is not None and r[1] == value and r[0] == name:
                    out.append(r[2])
                    continue
            out.append(f"{name}: {value}")
        if not have_cl:
            out.append(f"Content-Length: {content_length}")
        return out


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
    # Parsed values of frequently used fields ("cseq"); see `invalidate`.
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
            if len(raw) != 2:
                raise SipParseError("Bad CSeq")
            c = (_uint(raw[0], "CSeq number", 10), raw[1].upper())
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
        lines = self.headers._wire_lines(len(self.body))
        lines.insert(0, start)
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
#
# Speed notes (bench/bench_sip_parse.py): the header block is decoded once and split once; a
# header name is validated and canonicalised once per distinct spelling (`_KEY_CACHE`), not per
# character per message; the few checks a proxy needs on From/To/Via/Request-URI are compiled
# regexes. Every input either parses or raises SipParseError (tests/unit/sip/test_fuzz_parser.py).

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
# Request-URI = SIP-URI / SIPS-URI / absoluteURI: all start with a scheme (RFC 3261 §25.1).
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# name-addr with a quoted display name, or with a (possibly empty) run of tokens; addr-spec.
# RFC 4475 §3.1.1.6 (lwsdisp): no LWS is needed between a token display name and "<".
_NA_QUOTED_RE = re.compile(r'[ \t]*"(?:[^"\\]|\\[\s\S])*"[ \t]*<[^>]*>')
_NA_TOKENS_RE = re.compile(r"[ \t]*(?:" + _TOKEN + r"[ \t]*)*<[^<>]*>")

# Names of header fields whose value the parser itself looks at.
_SINGLE = frozenset({"call-id", "cseq", "from", "to", "max-forwards", "content-length"})
_LOOKED_AT = _SINGLE | {"via"}
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_DISPLAY = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "from": "From",
    "to": "To",
    "max-forwards": "Max-Forwards",
    "content-length": "Content-Length",
    "via": "Via",
}

# Header name as received -> canonical key, for names already validated as tokens. Bounded so
# that a peer inventing names cannot grow it without limit (past the bound names are checked
# each time, which is still correct, only slower).
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_MAX = 2048


def _key_for(name: str) -> str:
    key = _KEY_CACHE.get(name)
    if key is None:
        if _TOKEN_RE.fullmatch(name) is None:
            raise SipParseError("Bad header name")
        key = canonical(name)
        if len(_KEY_CACHE) < _KEY_CACHE_MAX:
            _KEY_CACHE[name] = key
    return key


def _uint(text: str, what: str, max_digits: int) -> int:
    """An unsigned decimal of ASCII digits (leading zeros allowed, RFC 4475 §3.1.1.1)."""
    if not text.isascii() or not text.isdigit():
        raise SipParseError(f"Bad {what}")
    if len(text) <= max_digits:
        return int(text)
    digits = text.lstrip("0")
    if len(digits) > max_digits:
        # also keeps int() away from huge strings (Python caps int(str) at 4300 digits)
        raise SipParseError(f"{what} out of range")
    return int(digits) if digits else 0


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
        if len(code) != 3 or not code.isascii() or not code.isdigit():
            raise SipParseError("Bad status code")
        status = int(code)
        if status < 100 or status > 699:
            raise SipParseError("Bad status code")
        return None, None, status, parts[2] if len(parts) == 3 else "", version
    # Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §7.1): exactly single SPs
    # (RFC 4475 §3.1.2.8-10: LWS in the URI, extra SPs, trailing SPs are rejected).
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("Bad request line")
    method, uri, version = parts
    if _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError("Bad method")
    uversion = version.upper()
    if uversion != SIP_VERSION:
        if uversion.startswith("SIP/"):
            raise SipParseError("Unsupported SIP version", 505)
        raise SipParseError("Bad request line")
    m = _SCHEME_RE.match(uri)
    if m is None or m.end() == len(uri):
        # e.g. "<sip:user@example.com>" (RFC 4475 §3.1.2.7)
        raise SipParseError("Bad Request-URI")
    scheme = uri[: m.end() - 1].lower()
    if scheme == "sip" or scheme == "sips":
        if "?" in uri[uri.rfind("@") + 1 :]:
            # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI (RFC 4475
            # §3.1.2.11). The '?' search starts after the userinfo, where '?' is legal.
            raise SipParseError("Request-URI with headers")
        # RFC 3261 §19.1.1/§25.1: hostport is mandatory (`sip:@@@`, `sip:alice@` have none) and
        # userinfo holds no raw '@'. A proxy must not pass such a target on to the core.
        if not _hostport_ok(uri[m.end() :]):
            raise SipParseError("Bad Request-URI")
    return method, uri, 0, "", version


def _ctl_escaped(head: bytes) -> bool:
    """Whether every control character in a header block is a quoted-pair inside a quoted
    string, the one place RFC 3261 §25.1 admits one (`quoted-pair = "\\" (%x00-09 / %x0B-0C /
    %x0E-7F)`; RFC 4475 §3.1.1.2 intmeth quotes NUL, BEL and DEL). The start line admits none.
    Only called when `_CTL_RE` found one, so the byte loop costs nothing on ordinary traffic."""
    eol = head.find(b"\n")
    if _CTL_RE.search(head, 0, eol if eol >= 0 else len(head)) is not None:
        return False
    quoted = False
    i = eol + 1 if eol >= 0 else len(head)
    n = len(head)
    while i < n:
        c = head[i]
        if c == 0x0A:
            quoted = False  # each line starts unquoted: the safe reading of a folded one
        elif quoted and c == 0x5C:  # backslash: the next octet is taken literally
            i += 1
            if i < n and head[i] in (0x0A, 0x0D):
                return False
        elif c == 0x22:
            quoted = not quoted
        elif (c < 0x20 and c not in (0x09, 0x0D)) or c == 0x7F:
            return False
        i += 1
    return True


def _hostport_ok(rest: str) -> bool:
    """Whether a sip:/sips: URI after its scheme has one '@' at most and a non-empty host with
    a numeric port, if any (the shape `SipUri.parse` reads, checked without building one: this
    runs for every request)."""
    at = rest.rfind("@")
    if at >= 0:
        if "@" in rest[:at]:
            return False
        rest = rest[at + 1 :]
    semi = rest.find(";")
    hostport = rest if semi < 0 else rest[:semi]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 2:
            return False
        tail = hostport[end + 1 :]
        port = tail[1:] if tail.startswith(":") else None
        if tail and port is None:
            return False
    else:
        host, sep, port_text = hostport.partition(":")
        if not host:
            return False
        port = port_text if sep else None
    return port is None or (0 < len(port) <= 5 and port.isascii() and port.isdigit())


def _split_lines(text: str) -> list[str]:
    """Lines of a header block. Bare LF is accepted as a line end; a bare CR is not."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.endswith("\r"):
            line = line[:-1]
            lines[i] = line
        if "\r" in line:
            raise SipParseError("Bare CR in header")
    return lines


def _parse_fields(
    lines: list[str],
) -> tuple[list[list[str]], dict[int, tuple[str, str, str]], dict[str, list[str]]]:
    """Header fields from the lines after the start line, plus the first field of each name
    the parser checks (`_LOOKED_AT`). Raises on a malformed line or a duplicated `_SINGLE`."""
    if len(lines) > MAX_HEADER_COUNT + 1:
        # Continuation lines do not count as fields; only count when it may matter.
        n = sum(1 for line in lines[1:] if line and line[0] != " " and line[0] != "\t")
        if n > MAX_HEADER_COUNT:
            raise SipParseError("Too many header fields", 513)
    fields: list[list[str]] = []
    raw: dict[int, tuple[str, str, str]] = {}
    found: dict[str, list[str]] = {}
    append = fields.append
    cache_get = _KEY_CACHE.get
    looked_at = _LOOKED_AT
    for idx in range(1, len(lines)):
        line = lines[idx]
        name, sep, value = line.partition(":")
        key = cache_get(name)
        if key is not None:
            name_canonical = True
        else:
            if not line:
                continue
            first = line[0]
            if first == " " or first == "\t":
                # Folded continuation (RFC 3261 §7.3.1): joins the previous field with one SP.
                # The wire form is kept so that an untouched field is forwarded as it came.
                if not fields:
                    raise SipParseError("Continuation line before any header")
                f = fields[-1]
                prev = raw.get(id(f))
                wire = prev[2] if prev is not None else f"{f[0]}: {f[2]}"
                cont = line.strip(" \t")
                if cont:
                    f[2] = f"{f[2]} {cont}" if f[2] else cont
                raw[id(f)] = (f[0], f[2], f"{wire}\r\n{line}")
                continue
            if not sep:
                raise SipParseError("Header line without colon")
            stripped = name.rstrip(" \t")
            key = _key_for(stripped if stripped else name)
            name_canonical = stripped == name
            name = stripped
        v = value.strip(" \t")
        f = [name, key, v]
        append(f)
        if not name_canonical or len(value) != len(v) + 1 or value[0] != " ":
            # Not in "Name: value" form ("TO :", "l:0", tabs, extra spaces): keep the wire form.
            if not sep:
                raise SipParseError("Header line without colon")
            raw[id(f)] = (name, v, line)
        if key in looked_at:
            if key not in found:
                found[key] = f
            elif key in _SINGLE:
                raise SipParseError(f"Duplicate {_DISPLAY[key]} header")
    return fields, raw, found


def _parse_header_block(text: str) -> tuple[str, Headers]:
    """Split a header block (no trailing blank line) into start line and headers."""
    lines = text.split("\r\n")
    nl = len(lines) - 1
    if text.count("\n") != nl or text.count("\r") != nl:
        lines = _split_lines(text)
    fields, raw, _ = _parse_fields(lines)
    headers = Headers(fields)
    if raw:
        headers._raw = raw
    return lines[0], headers


def _name_addr_ok(value: str) -> bool:
    """Cheap syntax check of a From/To value (RFC 3261 §20.20, §20.39; RFC 4475 §3.1.2)."""
    if value[:1] == "<":  # the usual "<uri>;tag=x": no display name to look at
        gt = value.find(">")
        return gt > 0 and "<" not in value[1:gt]
    if "<" in value:
        if value.lstrip(" \t").startswith('"'):
            return _NA_QUOTED_RE.match(value) is not None  # quotbal: unterminated quote
        return _NA_TOKENS_RE.match(value) is not None  # baddn: unquoted "Bell, Alexander"
    return _SCHEME_RE.match(value) is not None and ">" not in value


def _validate(msg: SipMessage, found: dict[str, list[str]]) -> None:
    """Check the fields every proxy needs (RFC 3261 §8.1.1, §16.3). `found` maps each name in
    `_LOOKED_AT` to its first field; duplicates of `_SINGLE` names were refused already."""
    for key in _REQUIRED:
        if key not in found:
            raise SipParseError(f"Missing {_DISPLAY[key]} header")
    if not found["call-id"][2]:
        raise SipParseError("Empty Call-ID")
    parts = found["cseq"][2].split()
    if len(parts) != 2:
        raise SipParseError("Bad CSeq")
    # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31.
    num = _uint(parts[0], "CSeq number", 10)
    if num > 2**31 - 1:
        raise SipParseError("CSeq number out of range")
    cmethod = parts[1]
    if msg.method is not None:
        # Method names are case-sensitive (RFC 3261 §7.1); RFC 4475 §3.1.2.17-18.
        if cmethod != msg.method:
            raise SipParseError("CSeq method does not match request method")
    elif _TOKEN_RE.fullmatch(cmethod) is None:
        raise SipParseError("Bad CSeq")
    msg._cache["cseq"] = (num, cmethod.upper())
    mf = found.get("max-forwards")
    if mf is not None and _uint(mf[2], "Max-Forwards", 3) > 255:
        raise SipParseError("Max-Forwards out of range")  # RFC 3261 §20.22: 0-255
    if not _name_addr_ok(found["from"][2]):
        raise SipParseError("Bad From header")
    if not _name_addr_ok(found["to"][2]):
        raise SipParseError("Bad To header")
    top = found["via"][2]
    if "," in top:
        vias = split_list(top)
        top = vias[0] if vias else ""
    if VIA_RE.fullmatch(top) is None:
        raise SipParseError("Bad Via header")  # RFC 4475 §3.1.2.1 (badinv01)


def _content_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    return _uint(raw, "Content-Length", 10)


def _find_header_end(data: bytes) -> tuple[int, int]:
    """Index where the header block ends and where the body starts, or (-1, -1)."""
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n", 0, i if i >= 0 else len(data))
    if j >= 0:
        return j, j + 2
    if i >= 0:
        return i, i + 4
    return -1, -1


def parse_message(data: bytes, *, datagram: bool = True) -> SipMessage:
    """Parse one complete message (a UDP datagram, or a frame cut by `StreamFramer`).

    Raises SipParseError (and nothing else). For datagrams, RFC 3261 §18.3: a body longer than
    Content-Length is truncated, a shorter one is an error; with no Content-Length the body is
    the rest.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message too large", 513)
    # RFC 3261 §7.5: implementations SHOULD ignore CRLFs before the start line.
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    # Fast path: a CRLF-only header block ended by CRLFCRLF (found with one scan). Anything else
    # (bare LF, bare CR, no blank line) takes the careful path.
    hend = data.find(b"\r\n\r\n")
    lines: list[str] | None = None
    if hend >= 0:
        bstart = hend + 4
        text = data[:hend].decode("utf-8", "surrogateescape")
        lines = text.split("\r\n")
        nl = len(lines) - 1
        if text.count("\n") != nl or text.count("\r") != nl:
            lines = None
    if lines is None:
        hend, bstart = _find_header_end(data)
        if hend < 0:
            # A message with no body may end right after its last header line.
            if data.endswith(b"\n"):
                hend = bstart = len(data)
            else:
                raise SipParseError("Incomplete header block")
        lines = _split_lines(data[:hend].decode("utf-8", "surrogateescape"))
    if data[:hend].translate(None, _NOT_CTL) and not _ctl_escaped(data[:hend]):
        raise SipParseError("Control character in start line or header")
    method, uri, status, reason, version = _parse_start_line(lines[0])
    fields, raw, found = _parse_fields(lines)
    headers = Headers(fields)
    if raw:
        headers._raw = raw
    body = data[bstart:]
    cl = found.get("content-length")
    if cl is not None:
        clen = _uint(cl[2], "Content-Length", 10)
        if len(body) < clen:
            raise SipParseError("Body shorter than Content-Length")
        if len(body) > clen:
            body = body[:clen]
    elif not datagram:
        raise SipParseError("Missing Content-Length on a stream transport")
    msg = SipMessage(headers, body, method, uri, status, reason, version)
    _validate(msg, found)
    return msg


# Content-Length fields in a raw header block (name, optional folding in the value).
_CL_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:((?:[^\r\n]|\r?\n[ \t])*)", re.I)
_WS_RE = re.compile(rb"\s+")


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3), sans-IO.

    `feed(data)` returns complete frames (bytes). CRLF keep-alives (RFC 5626 §4.4.1: "\\r\\n\\r\\n"
    ping, "\\r\\n" pong) between messages are reported via `pings` so the adapter can answer.
    Raises SipParseError when the stream cannot be framed any more (the caller closes it):
    no or conflicting Content-Length, or a malformed one.

    A message over `max_message` bytes (a header block with no end within the limit, or a
    Content-Length that takes it over) is not an exception: `feed` returns the frames completed
    before it and sets `too_large` to its head (the header block, or the complete lines of it
    received so far), so that the adapter can answer 513 Message Too Large (RFC 3261 §21.5.14)
    from it and then close. From then on the framer discards everything it is fed (the adapter
    may drain the peer's remaining bytes while its 513 leaves).

    `partial` says whether a message has begun and not ended (the adapter's Slowloris deadline
    counts from the feed that made it true).
    """

    __slots__ = ("_buf", "_scanned", "max_header", "max_message", "pings", "too_large")

    def __init__(self, max_message: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of the current header block already searched for its end
        self.pings = 0
        self.max_message = max_message
        # The head alone may not take more than the whole message may.
        self.max_header = min(MAX_HEADER_BLOCK, max_message)
        self.too_large: bytes | None = None

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self.too_large is not None:
            return out  # the stream is over; what follows the oversize message is discarded
        self._buf += data
        buf = self._buf
        while buf:
            # Leading CRLFs: keep-alive pings (double CRLF) or padding.
            if buf[0] in (13, 10):
                self._scanned = 0
                if buf.startswith(b"\r\n\r\n"):
                    self.pings += 1
                    del buf[:4]
                    continue
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    break  # maybe the start of a ping: wait for more
                del buf[:1]
                continue
            limit = self.max_header + 4
            frm = max(0, self._scanned - 3)
            i = buf.find(b"\r\n\r\n", frm, limit)
            j = buf.find(b"\n\n", frm, i if i >= 0 else limit)
            if j >= 0:
                hend, bstart = j, j + 2
            elif i >= 0:
                hend, bstart = i, i + 4
            else:
                if len(buf) > self.max_header:
                    # Keep whole lines only: a header cut in the middle must not be salvaged
                    # into a response as if it were complete.
                    cut = buf.rfind(b"\n", 0, self.max_header)
                    self._oversize(bytes(buf[: cut + 1]) if cut >= 0 else b"")
                    break
                self._scanned = len(buf)
                break
            self._scanned = hend
            lengths = {_WS_RE.sub(b"", m.group(1)) for m in _CL_RE.finditer(bytes(buf[:hend]))}
            if not lengths:
                raise SipParseError("Missing Content-Length on a stream transport")
            if len(lengths) > 1:
                raise SipParseError("Conflicting Content-Length headers")
            clen = _uint(lengths.pop().decode("latin-1"), "Content-Length", 10)
            total = bstart + clen
            if total > self.max_message:
                self._oversize(bytes(buf[:bstart]))
                break
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scanned = 0
        return out

    def _oversize(self, head: bytes) -> None:
        self.too_large = head
        self._buf.clear()
        self._scanned = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def partial(self) -> bool:
        """A message has begun (a byte other than CR/LF) and is not complete yet."""
        return bool(self._buf) and self._buf[0] not in (13, 10)


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
            if to_tag and header_tag(value) is None:
                value = f"{value};tag={to_tag}"
            h._fields.append([name, key, value])
    for name, value in extra or []:
        h.add(name, value)
    h.add("Content-Length", str(len(body)))
    return SipMessage(headers=h, body=body, status=status, reason=reason)


# Reason phrases of the error responses the proxy itself generates (RFC 3261 §21).
REASON_PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    413: "Request Entity Too Large",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}

# Header names (and compact forms) a response must copy from its request (RFC 3261 §8.2.6.2).
_SALVAGE = {
    "via": "Via",
    "v": "Via",
    "from": "From",
    "f": "From",
    "to": "To",
    "t": "To",
    "call-id": "Call-ID",
    "i": "Call-ID",
    "cseq": "CSeq",
}


def salvage_response(data: bytes, status: int, to_tag: str) -> SipMessage | None:
    """An error response to a request that failed full parsing, when the bytes still hold what a
    response must copy (Via, From, To, Call-ID, CSeq), else None (drop it). Responses and ACKs
    are never answered (RFC 3261 §17.2.1, RFC 4475 §3.1.2: invalid requests get 400)."""
    text = data[:MAX_HEADER_BLOCK].decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[0].startswith("SIP/") or lines[0].startswith("ACK ") or " " not in lines[0]:
        return None
    h = Headers()
    seen: set[str] = set()
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        key = _SALVAGE.get(name.strip().lower())
        if not sep or key is None or (key != "Via" and key in seen):
            continue
        seen.add(key)
        h.add(key, value.strip())
    if not {"Via", "From", "To", "Call-ID", "CSeq"} <= seen:
        return None
    if status not in REASON_PHRASES:
        status = 400
    to = h.get("to") or ""
    if header_tag(to) is None:
        h.set("To", f"{to};tag={to_tag}")
    h.add("Content-Length", "0")
    return SipMessage(headers=h, status=status, reason=REASON_PHRASES[status])
