"""MSRP bits of SDP: `a=path` URIs (RFC 4975), `a=setup` (RFC 4145 / RFC 6135), `a=msrp-cema`.

    MSRP-URI   = msrp-scheme "://" authority ["/" session-id] ";" transport *(";" URI-parameter)
    msrp-scheme= "msrp" / "msrps"
    path       = "path:" MSRP-URI *(SP MSRP-URI)      ; relays first, endpoint last

Equality follows RFC 4975 §6.1 (as msrplib does it): scheme, host (case-insensitive), port,
session-id (case-sensitive) and transport (case-insensitive); userinfo and other parameters are
ignored. An absent port is the MSRP default, 2855.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import SdpError
from ..mediaplan import SetupRole

MSRP_DEFAULT_PORT: Final = 2855
CEMA: Final = "msrp-cema"  # RFC 6714


@dataclass(slots=True, eq=False)
class MsrpUri:
    """An MSRP URI. Treat it as immutable (not a frozen dataclass only because building one
    is on the hot path, and frozen dataclasses are several times slower to build)."""

    scheme: str  # "msrp" or "msrps", lower case
    host: str  # as written, IPv6 without brackets
    port: int | None
    session_id: str
    transport: str
    userinfo: str | None = None
    params: tuple[str, ...] = ()

    def _key(self) -> tuple[str, str, int, str, str]:
        return (
            self.scheme,
            self.host.lower(),
            self.port if self.port is not None else MSRP_DEFAULT_PORT,
            self.session_id,
            self.transport.lower(),
        )

    def __eq__(self, other: object) -> bool:  # RFC 4975 §6.1
        if not isinstance(other, MsrpUri):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = f"{self.userinfo}@{host}" if self.userinfo is not None else host
        if self.port is not None:
            auth += f":{self.port}"
        sid = f"/{self.session_id}" if self.session_id else ""
        params = "".join(";" + p for p in self.params)
        return f"{self.scheme}://{auth}{sid};{self.transport}{params}"

    @classmethod
    def build(cls, scheme: str, host: str, port: int, session_id: str) -> MsrpUri:
        """The gateway's own URI on one leg (docs/e2ae-notes.md §5.5, application-aware mode)."""
        return cls(scheme, host, port, session_id, "tcp")


def parse_msrp_uri(text: str) -> MsrpUri:
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("msrp", "msrps"):
        raise SdpError("a=path: MSRP URI must start with msrp:// or msrps://")
    head, semi, tail = rest.partition(";")
    if not semi:
        raise SdpError("a=path: MSRP URI needs a ;transport parameter")
    params = tail.split(";")
    transport = params[0]
    if not transport or not transport.isalnum():
        raise SdpError("a=path: bad MSRP transport")
    authority, slash, session_id = head.partition("/")
    if slash and not session_id:
        raise SdpError("a=path: empty MSRP session-id")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        hostport = authority
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SdpError("a=path: unterminated IPv6 reference")
        host, after = hostport[1:end], hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise SdpError("a=path: bad MSRP authority")
        port_s = after[1:] if after else None
    else:
        host, colon, port_s_ = hostport.partition(":")
        port_s = port_s_ if colon else None
    if not host:
        raise SdpError("a=path: MSRP URI without host")
    port: int | None = None
    if port_s is not None:
        if not port_s.isdigit() or not 0 < int(port_s) <= 65535:
            raise SdpError("a=path: bad MSRP port")
        port = int(port_s)
    return MsrpUri(scheme, host, port, session_id, transport,
                   userinfo if at else None, tuple(params[1:]))


def parse_path(value: str) -> tuple[MsrpUri, ...]:
    uris = tuple(parse_msrp_uri(u) for u in value.split())
    if not uris:
        raise SdpError("a=path: empty")
    return uris


_ROLES: Final = {r.value: r for r in SetupRole}
# Members as module constants: on Python 3.11 a lookup on an enum class (`SetupRole.ACTIVE`) is
# not specialised (`EnumType.__getattr__`) and costs ~10x a global.
_ACTIVE: Final = SetupRole.ACTIVE
_PASSIVE: Final = SetupRole.PASSIVE
_ACTPASS: Final = SetupRole.ACTPASS
_HOLDCONN: Final = SetupRole.HOLDCONN


def parse_setup(value: str) -> SetupRole:
    role = _ROLES.get(value) or _ROLES.get(value.strip().lower())
    if role is None:
        raise SdpError("a=setup: must be active, passive, actpass or holdconn")
    return role


def peer_role(role: SetupRole) -> SetupRole:
    """The role of the other end of one TCP connection: active <-> passive."""
    if role is _ACTIVE:
        return _PASSIVE
    if role is _PASSIVE:
        return _ACTIVE
    return role


def answer_role(offered: SetupRole | None) -> SetupRole:
    """The role we (the gateway) take when answering an offer with `offered` (RFC 4145 §4.1).

    We prefer passive, so that the UE (behind NAT) connects out (docs/e2ae-notes.md §5.3). An absent
    a=setup in the offer means the offerer is active (RFC 4145 default; RFC 4975/6135: the MSRP
    offerer connects).
    """
    if offered is None or offered in (_ACTPASS, _ACTIVE):
        return _PASSIVE
    if offered is _PASSIVE:
        return _ACTIVE
    return _HOLDCONN
