"""Header value helpers: SIP URIs, name-addr, Via, generic parameters (RFC 3261 §19, §20, §25).

Small, typed and allocation-light: the proxy parses only the few values it routes on (top Via,
Route, To/From tags, Contact), and re-serialises only what it changes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from pcscf_alg.errors import SipParseError

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# One Via value (RFC 3261 §20.42, §25.1) with SWS wherever the grammar allows it (RFC 4475
# §3.1.1.1 folds "SIP  /   2.0 /UDP"): groups are version, transport, host, port, params.
# Used by the parser to reject a malformed top Via (RFC 4475 §3.1.2.1) and by `Via.parse`.
VIA_RE = re.compile(
    r"[ \t]*[Ss][Ii][Pp][ \t]*/[ \t]*(" + _TOKEN + r")[ \t]*/[ \t]*(" + _TOKEN + r")[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[^\s;:\[\]\"<>,/]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
    r"((?:[ \t]*;[ \t]*" + _TOKEN + r"(?:[ \t]*=[ \t]*(?:\"(?:[^\"\\]|\\[\s\S])*\"|[^\s;,\"]+))?)*)"
    r"[ \t]*"
)
# What a hostname or IPv4address (RFC 3261 §25.1) never holds: a second '@' (userinfo ends at
# the first), whitespace, brackets or the delimiters of a name-addr.
_BAD_HOST_RE = re.compile(r'[@\s<>\[\]"]')
# `;tag=` header parameter, LWS allowed around "=" (RFC 4475 §3.1.1.1: "tag    = 1918181833n").
_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=[ \t]*([^; \t,]*)", re.IGNORECASE)


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """Parse `;a=b;c` into [(a, b), (c, None)], honouring quoted strings."""
    out: list[tuple[str, str | None]] = []
    if not text:
        return out
    i = 0
    n = len(text)
    while i < n:
        if text[i] in "; \t":
            i += 1
            continue
        j = i
        quoted = False
        while j < n:
            ch = text[j]
            if quoted:
                if ch == "\\":
                    j += 1
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == ";":
                break
            j += 1
        part = text[i:j].strip()
        if part:
            k, sep, v = part.partition("=")
            out.append((k.strip(), v.strip() if sep else None))
        i = j + 1
    return out


def format_params(params: list[tuple[str, str | None]]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def get_param(params: list[tuple[str, str | None]], name: str) -> str | None:
    low = name.lower()
    for k, v in params:
        if k.lower() == low:
            return v if v is not None else ""
    return None


@dataclass(slots=True)
class SipUri:
    """sip:/sips:/tel: URI. Host is kept as written (IPv6 with brackets).

    The one SIP URI parser of the package: routing, the dialog layer and the registration keys
    (`registration.contact_key`, `aor_key`, `flow_of_uri`) all read URIs through it. Where
    parsers disagree, RFC 3261 §19.1.1 and the §25.1 grammar decide:

    * userinfo holds no unescaped '@' (`user`, `password` exclude it; an '@' in a user name
      travels as `%40`), so the *first* '@' ends it. What follows must be a host: `sip:a@b@c`
      is malformed, not user `a@b` at `c`. A user part, when present, is not empty.
    * an IPv6reference is "[" IPv6address "]" and nothing but ":" port may follow it.
    * `sips:` means TLS on every hop (§26.2.2): `secure` is true whatever `transport=` says
      (`sips:...;transport=tcp` is TLS over TCP), and the default port is 5061 (§19.1.2).
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: list[tuple[str, str | None]] = field(default_factory=list)
    headers: str = ""  # "?..." part kept verbatim
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        if not sep or not scheme:
            raise SipParseError(f"Bad URI {text[:60]!r}")
        scheme = scheme.lower()
        if scheme == "tel":
            num, _, p = rest.partition(";")
            return cls(scheme="tel", user=num, host="", params=parse_params(p))
        user: str | None = None
        password: str | None = None
        # userinfo may hold '?', ';' and ':' (RFC 4475 §3.1.1.2, §3.1.1.9) but no raw '@'
        # (RFC 3261 §25.1): the first '@' ends it. A raw '@' after that one is either in the
        # headers (`sip:b@h?Replaces=id@host`, cut off with them: lenient, as peers write it)
        # or in the host, which is refused below.
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, _, pw = userinfo.partition(":")
            password = pw or None
            if not user:
                raise SipParseError(f"Empty URI user {text[:60]!r}")  # user = 1*( ... )
        hdrs = ""
        q = rest.find("?")
        if q >= 0:
            rest, hdrs = rest[:q], rest[q:]
        hostport, _, p = rest.partition(";")
        port: int | None = None
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise SipParseError("Bad IPv6 reference")
            host = hostport[: end + 1]
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise SipParseError("Bad IPv6 reference") from None
            tail = hostport[end + 1 :]
            if tail.startswith(":"):
                port = _port(tail[1:])
            elif tail:
                raise SipParseError("Bad IPv6 reference")
        else:
            host, psep, ps = hostport.partition(":")
            if psep:
                port = _port(ps)
            if _BAD_HOST_RE.search(host) is not None:
                raise SipParseError(f"Bad URI host {text[:60]!r}")
        if not host:
            raise SipParseError(f"Bad URI host {text[:60]!r}")
        return cls(scheme, user, host, port, parse_params(p), hdrs, password)

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return get_param(self.params, name) is not None

    @property
    def transport(self) -> str:
        """The `transport` parameter lower-cased, else the scheme's default: tls for sips:
        (RFC 3261 §26.2.2), udp otherwise."""
        t = self.param("transport")
        return (t or ("tls" if self.scheme == "sips" else "udp")).lower()

    @property
    def secure(self) -> bool:
        """Whether the URI asks for TLS: any sips: URI (RFC 3261 §26.2.2, whatever its
        `transport`), or a sip: one with the deprecated `transport=tls` (same clause)."""
        return self.scheme == "sips" or self.transport == "tls"

    @property
    def default_port(self) -> int:
        """The port an omitted one stands for: 5061 for sips:, else 5060 (RFC 3261 §19.1.2)."""
        return 5061 if self.scheme == "sips" else 5060

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        ui = ""
        if self.user is not None:
            ui = self.user + (f":{self.password}" if self.password else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}:{ui}{self.host}{port}{format_params(self.params)}{self.headers}"


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise SipParseError("Bad port")
    return int(text)


@dataclass(slots=True)
class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec (RFC 3261 §20.10, §25.1)."""

    uri: str
    display: str = ""
    params: list[tuple[str, str | None]] = field(default_factory=list)
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("Unterminated <")
            return cls(
                uri=text[lt + 1 : gt].strip(),
                display=text[:lt].strip(),
                params=parse_params(text[gt + 1 :]),
            )
        # addr-spec without brackets: header params follow the URI's first ';' (RFC 3261 §20)
        uri, _, p = text.partition(";")
        if not uri:
            raise SipParseError("Empty name-addr")
        if "?" in uri or "," in uri:
            # RFC 3261 §20: such a URI MUST be in <> (RFC 4475 §3.1.2.13, regbadct)
            raise SipParseError("URI with headers or comma must be in <>")
        return cls(uri=uri.strip(), params=parse_params(p), bracketed=False)

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def __str__(self) -> str:
        d = f"{self.display} " if self.display else ""
        return f"{d}<{self.uri}>{format_params(self.params)}"


def _find_unquoted(text: str, ch: str) -> int:
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ch:
            return i
        i += 1
    return -1


def header_tag(value: str | None) -> str | None:
    """The `tag` parameter of a From/To value, cheaply (hot path).

    Looks only after the closing '>' of a name-addr (a `tag` URI parameter inside <> is not the
    header's tag); "" for an empty `tag=`, None if there is no tag.
    """
    if not value:
        return None
    gt = value.rfind(">")
    m = _TAG_RE.search(value, gt + 1 if gt >= 0 else 0)
    return m.group(1) if m is not None else None


@dataclass(slots=True)
class Via:
    """One Via value: `SIP/2.0/UDP host:port;params` (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None
    params: list[tuple[str, str | None]]

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse one Via value; a comma-joined field value is cut at its first element."""
        if "," in value:
            comma = _find_unquoted(value, ",")
            if comma >= 0:
                value = value[:comma]
        m = VIA_RE.fullmatch(value)
        if m is None:
            raise SipParseError("Bad Via")
        _version, transport, host, port, params = m.groups()
        return cls(
            transport.upper(),
            host,
            _port(port) if port is not None else None,
            parse_params(params),
        )

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    def set_param(self, name: str, value: str | None) -> None:
        low = name.lower()
        for i, (k, _) in enumerate(self.params):
            if k.lower() == low:
                self.params[i] = (k, value)
                return
        self.params.append((name, value))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"
