"""Security mechanism agreement headers: RFC 3329 with the TS 24.229 §7.2A.7 media extension.

`Security-Client`, `Security-Server` and `Security-Verify` share one grammar (RFC 3329 §2.2):

    sec-mechanism   = mechanism-name *(SEMI mech-parameters)
    mech-parameters = preference / digest-algorithm / digest-qop / digest-verify / extension
    extension       = generic-param                  ; RFC 3261: token [ EQUAL gen-value ]
    gen-value       = token / host / quoted-string

TS 24.229 §7.2A.7 adds the mechanism names `sdes-srtp`, `msrp-tls`, `bfcp-tls`, `udptl-dtls`
and the value-less parameter `mediasec`, which marks an entry as a *media-plane* mechanism
(docs/e2ae-notes.md §1.1). We parse any token as a mechanism name: unknown names are kept so
that callers can inspect them (e.g. `dtls-srtp;mediasec`, seen in Asterisk) but only
`sdes-srtp` and `msrp-tls` drive e2ae.

Sans-IO and pure: strings in, values out. Everything that is malformed raises
`SipParseError(reason, 400)`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pcscf_alg.errors import SipParseError

__all__ = [
    "MECH_MSRP_TLS",
    "MECH_SDES_SRTP",
    "PARAM_MEDIASEC",
    "SecMechanism",
    "e2ae_support",
    "format_mechanisms",
    "mediasec_mechanisms",
    "parse_security_header",
    "server_mechanisms",
    "strip_option_tags",
    "verify_matches",
]

# TS 24.229 §7.2A.7 tokens that this P-CSCF acts on.
MECH_SDES_SRTP = "sdes-srtp"
MECH_MSRP_TLS = "msrp-tls"
PARAM_MEDIASEC = "mediasec"

# Bound the work a hostile header can cause: RFC 3329 lists a handful of mechanisms in practice
# (example 01 has three). 64 is far above any real UE and far below anything costly.
MAX_MECHANISMS = 64
MAX_PARAMS_PER_MECHANISM = 32

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
# gen-value = token / host / quoted-string. A host adds ":" and "[...]" (IPv6reference) to the
# token alphabet. quoted-string: qdtext excludes CTLs other than HTAB, '"' and '\'; a quoted-pair
# excludes CR and LF (RFC 3261 §25.1), which also keeps header injection out of what we echo.
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
_VALUE_RE = re.compile(f"{_QUOTED}|[{_TOKEN_CHARS}:\\[\\]]+")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SecMechanism:
    """One `sec-mechanism` entry.

    `name` and parameter names are lower-cased (RFC 3261 §7.3.1: tokens are case-insensitive).
    Parameter values are kept exactly as received, quotes included, so that what we echo is what
    we saw; `verify_matches` does the case folding when comparing.
    """

    name: str
    params: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if not _TOKEN_RE.fullmatch(self.name):
            raise ValueError(f"bad mechanism name {self.name!r}")
        for pname, pvalue in self.params:
            if not _TOKEN_RE.fullmatch(pname):
                raise ValueError(f"bad parameter name {pname!r}")
            if pvalue is not None and not _VALUE_RE.fullmatch(pvalue):
                raise ValueError(f"bad parameter value {pvalue!r}")
        object.__setattr__(self, "name", self.name.lower())
        if any(p != p.lower() for p, _ in self.params):
            object.__setattr__(self, "params", tuple((p.lower(), v) for p, v in self.params))

    @property
    def mediasec(self) -> bool:
        """True for a media-plane mechanism (TS 24.229 §7.2A.7 `mediasec-param`)."""
        # The ABNF makes it a bare flag; a stray value (`mediasec=1`) is still the flag.
        return any(p == PARAM_MEDIASEC for p, _ in self.params)

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(p == lname for p, _ in self.params)

    def param(self, name: str) -> str | None:
        """Value of the first parameter `name` (None when absent or value-less)."""
        lname = name.lower()
        for p, v in self.params:
            if p == lname:
                return v
        return None

    def __str__(self) -> str:
        parts = [self.name]
        parts.extend(p if v is None else f"{p}={v}" for p, v in self.params)
        return ";".join(parts)


_MEDIASEC_ONLY: tuple[tuple[str, str | None], ...] = ((PARAM_MEDIASEC, None),)
# Immutable, shared: `sdes-srtp;mediasec` and `msrp-tls;mediasec` (TS 24.229 §7.2A.7).
_SDES_SRTP_MEDIASEC = SecMechanism(MECH_SDES_SRTP, _MEDIASEC_ONLY)
_MSRP_TLS_MEDIASEC = SecMechanism(MECH_MSRP_TLS, _MEDIASEC_ONLY)

# SWS around SEMI, EQUAL and COMMA (RFC 3261 §25.1). CR/LF are accepted in case the caller did
# not unfold continuation lines.
_LWS_CHARS = " \t\r\n"
_WS = r"[ \t\r\n]*"
_MECH_RE = re.compile(f"{_WS}([{_TOKEN_CHARS}]+){_WS}")
_PARAM_RE = re.compile(
    f";{_WS}([{_TOKEN_CHARS}]+){_WS}(?:={_WS}({_QUOTED}|[{_TOKEN_CHARS}:\\[\\]]+){_WS})?"
)


def _trusted(name: str, params: tuple[tuple[str, str | None], ...]) -> SecMechanism:
    """Build a SecMechanism from parser output that is already validated and lower-cased."""
    if params == _MEDIASEC_ONLY:
        # Every e2ae UE sends these two; sharing one immutable instance keeps them out of the
        # per-binding memory (bench/bench_registration_memory.py).
        if name == MECH_SDES_SRTP:
            return _SDES_SRTP_MEDIASEC
        if name == MECH_MSRP_TLS:
            return _MSRP_TLS_MEDIASEC
    m = object.__new__(SecMechanism)
    object.__setattr__(m, "name", name)
    object.__setattr__(m, "params", params)
    return m


def _parse_one(
    text: str, out: list[SecMechanism], seen: set[_CanonMech] | None = None
) -> None:
    """Parse one header instance (`sec-mechanism *(COMMA sec-mechanism)`) into `out`. With
    `seen`, an exact duplicate of a mechanism already in `out` is skipped (and not counted)."""
    n = len(text)
    if not text.strip(_LWS_CHARS):
        raise SipParseError("empty security mechanism header", 400)
    pos = 0
    while True:
        m = _MECH_RE.match(text, pos)
        if m is None:
            raise SipParseError(f"bad security mechanism at offset {pos}", 400)
        name = m.group(1).lower()
        pos = m.end()
        params: list[tuple[str, str | None]] = []
        while pos < n and text[pos] == ";":
            pm = _PARAM_RE.match(text, pos)
            if pm is None:
                raise SipParseError(f"bad security mechanism parameter at offset {pos}", 400)
            params.append((pm.group(1).lower(), pm.group(2)))
            pos = pm.end()
            if len(params) > MAX_PARAMS_PER_MECHANISM:
                raise SipParseError("too many security mechanism parameters", 400)
        mech = _trusted(name, tuple(params))
        if seen is None:
            out.append(mech)
        else:
            canon = _canon(mech)
            if canon not in seen:
                seen.add(canon)
                out.append(mech)
        if len(out) > MAX_MECHANISMS:
            raise SipParseError("too many security mechanisms", 400)
        if pos == n:
            return
        if text[pos] != ",":
            # e.g. "tls;q=" or "tls digest": the parameter/mechanism regex stopped early.
            raise SipParseError(f"unexpected character at offset {pos} in security header", 400)
        # RFC 3329 §2.2 has no empty list elements: "a,,b" or a trailing comma fails the
        # mechanism-name match on the next turn.
        pos += 1


def parse_security_header(
    values: Sequence[str], *, dedupe: bool = False
) -> list[SecMechanism]:
    """Parse every instance of a Security-Client/-Server/-Verify header, in order.

    `values` are the raw field values, one per header line (RFC 3261 §7.3.1: several lines are
    equivalent to one comma-separated line). An empty sequence gives an empty list.

    `dedupe` drops exact duplicates (same name and parameters, compared as `verify_matches`
    does) before the `MAX_MECHANISMS` count. For Security-Verify: a repeated copy of what the
    server sent carries no downgrade, and Asterisk (without `endpoint=` on its registration)
    appends the whole Security-Server list again on every refresh.
    """
    if isinstance(values, str):  # a common slip: a bare str would be parsed char by char
        values = (values,)
    out: list[SecMechanism] = []
    seen: set[_CanonMech] | None = set() if dedupe else None
    for value in values:
        _parse_one(value, out, seen)
    return out


def format_mechanisms(mechs: Iterable[SecMechanism]) -> str:
    """Serialise mechanisms as one header value (`a;p=1, b;mediasec`)."""
    return ", ".join(str(m) for m in mechs)


def mediasec_mechanisms(mechs: Iterable[SecMechanism]) -> list[SecMechanism]:
    """The media-plane entries only (TS 24.229 §7.2A.7), whatever their mechanism name."""
    return [m for m in mechs if m.mediasec]


def e2ae_support(mechs: Iterable[SecMechanism]) -> tuple[bool, bool]:
    """(rtp, msrp): whether the list indicates e2ae for SDES-SRTP and for MSRP over TLS.

    Only the pair name + `mediasec` counts (TS 24.229 §7.2A.7; docs/e2ae-notes.md §1.2 item 1):
    a bare `sdes-srtp` is not a media-plane indication, and other mediasec names are not acted
    on.
    """
    rtp = msrp = False
    for m in mechs:
        if not m.mediasec:
            continue
        if m.name == MECH_SDES_SRTP:
            rtp = True
        elif m.name == MECH_MSRP_TLS:
            msrp = True
    return rtp, msrp


def server_mechanisms(rtp: bool, msrp: bool) -> list[SecMechanism]:
    """The mediasec entries this P-CSCF puts in Security-Server (401 and 200 to REGISTER)."""
    out: list[SecMechanism] = []
    if rtp:
        out.append(_SDES_SRTP_MEDIASEC)
    if msrp:
        out.append(_MSRP_TLS_MEDIASEC)
    return out


_CanonParam = tuple[str, int, str]
_CanonMech = tuple[str, tuple[_CanonParam, ...]]


def _canon_value(value: str | None) -> tuple[int, str]:
    # RFC 3261 §7.3.1: tokens compare case-insensitively, quoted strings case-sensitively.
    # The kind is part of the key so `None`, token and quoted never collide.
    if value is None:
        return 0, ""
    if value.startswith('"'):
        return 2, _QUOTED_PAIR_RE.sub(r"\1", value[1:-1])
    return 1, value.lower()


def _canon(m: SecMechanism) -> _CanonMech:
    # Parameters are a set for comparison purposes (docs/e2ae-notes.md §1.2 item 3:
    # order-insensitive); sorting keeps duplicates, so a multiset is compared.
    return m.name, tuple(sorted((p, *_canon_value(v)) for p, v in m.params))


def verify_matches(server_sent: Sequence[SecMechanism], verify: Sequence[SecMechanism]) -> bool:
    """True when Security-Verify lists exactly the mechanisms we sent in Security-Server.

    RFC 3329 §2.3.1 / §2.5: the client echoes the server's list and the server checks it to
    detect a downgrade; TS 33.203 does the same for IMS. Order of mechanisms and of parameters,
    case of tokens and whitespace do not matter; quoted values must match exactly.
    """
    if len(server_sent) != len(verify):
        return False
    return Counter(map(_canon, server_sent)) == Counter(map(_canon, verify))


def strip_option_tags(values: Sequence[str], tags: set[str]) -> list[str]:
    """Remove `tags` from Require / Proxy-Require values; return the option tags that remain.

    Used before forwarding to the core: `sec-agree` (docs/e2ae-notes.md §1.2 item 4; TS 24.228's
    registration flows) and the Telekom-flavour `mediasec` (notes §1.3) are consumed by the
    P-CSCF. Option tags are tokens, hence case-insensitive (RFC 3261 §7.3.1); remaining tags
    keep their spelling. Empty list elements are dropped. The caller removes the header when
    the result is empty.
    """
    if isinstance(values, str):
        values = (values,)
    drop = {t.lower() for t in tags}
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            tag = item.strip(" \t\r\n")
            if tag and tag.lower() not in drop:
                out.append(tag)
    return out
