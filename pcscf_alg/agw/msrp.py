"""MSRP framing (RFC 4975 §7) and To-Path/From-Path rewriting, sans-IO.

Used only in application-aware mode (TS 23.334 §5.19.5): without a=msrp-cema (RFC 6714) each
endpoint checks that the leftmost To-Path URI is its own and, on the first request, that
From-Path is the peer's a=path (RFC 4975 §7.3). The P-CSCF gives each leg different a=path URIs,
so the gateway rewrites both headers per direction:

    UE -> core:  agw_access_path -> core_path      ue_path   -> agw_core_path
    core -> UE:  agw_core_path   -> ue_path        core_path -> agw_access_path

Every URI in either header is mapped by what it *denotes*, so the same table serves requests
(To-Path = receiver) and responses/REPORTs (To-Path = the original sender).

Framing (RFC 4975 §7.1 ABNF):

    req-start / resp-start CRLF  headers  [ Content-Type ... CRLF CRLF data CRLF ]  end-line
    end-line = "-------" transact-id ( "$" / "+" / "#" ) CRLF

Only the header block is buffered (up to MAX_HEADER_BYTES); the body streams through, holding
back just enough bytes to spot an end-line split across reads. The body never contains its own
end-line (§7.1: the sender picks the transaction id to make sure of it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import GatewayError

# RFC 4975 does not bound the header block. 16 KiB is 4x the largest header set seen from RCS
# clients (a long Use-Path/Byte-Range/Message-ID set is < 1 KiB), like h11's default 16 KiB
# max_incomplete_event_size for HTTP headers.
MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_PORT: Final = 2855  # RFC 4975 §15.5 / msrplib
END_FLAGS: Final = b"$+#"
# RFC 4975 §7.1: transact-id = ident = ALPHANUM 3*31ident-char
_TID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}\Z")
_URI = re.compile(
    r"(?P<scheme>msrps?)://(?:[^@/;]*@)?(?P<host>\[[^\]]+\]|[^:/;]+)(?::(?P<port>\d+))?"
    r"(?:/(?P<sid>[^;]*))?;(?P<transport>[^;]+)(?:;.*)?\Z",
    re.IGNORECASE,
)


class MsrpProtocolError(Exception):
    """Bytes that are not MSRP framing; the relay closes the connection."""


UriKey = tuple[str, str, int, str, str]


def uri_key(uri: str) -> UriKey:
    """RFC 4975 §6.1 comparison key: scheme, host and transport case-insensitive, port (default
    2855), session-id case-sensitive; userinfo and other URI parameters ignored."""
    m = _URI.match(uri.strip())
    if m is None:
        raise ValueError(f"not an MSRP URI: {uri!r}")
    port = int(m["port"]) if m["port"] else DEFAULT_PORT
    return (m["scheme"].lower(), m["host"].lower(), port, m["sid"] or "", m["transport"].lower())


@dataclass(frozen=True)
class PathMap:
    """URI replacements for one direction."""

    table: Mapping[UriKey, str]

    @classmethod
    def build(cls, pairs: Mapping[str, str]) -> PathMap:
        try:
            return cls({uri_key(a): b for a, b in pairs.items()})
        except ValueError as e:
            raise GatewayError(f"MSRP path: {e}") from None

    def rewrite(self, value: str) -> str:
        out = []
        for uri in value.split():
            try:
                out.append(self.table.get(uri_key(uri), uri))
            except ValueError:
                out.append(uri)  # not ours to judge: the endpoint will
        return " ".join(out)


def path_maps(
    ue_path: str, agw_access_path: str, core_path: str, agw_core_path: str
) -> tuple[PathMap, PathMap]:
    """(UE->core, core->UE) maps for the four URIs of an application-aware stream."""
    to_core = PathMap.build({agw_access_path: core_path, ue_path: agw_core_path})
    to_ue = PathMap.build({agw_core_path: ue_path, core_path: agw_access_path})
    return to_core, to_ue


_PATH_HEADERS: Final = (b"to-path", b"from-path")


class MsrpRewriter:
    """Streaming rewriter for one direction of one connection. `feed` returns the bytes to send."""

    __slots__ = ("_buf", "_in_body", "_keep", "_map", "_marker", "messages")

    def __init__(self, path_map: PathMap) -> None:
        self._map = path_map
        self._buf = bytearray()
        self._in_body = False
        self._marker = b""
        self._keep = 0
        self.messages = 0  # complete messages seen (requests and responses)

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while self._buf:
            if self._in_body:
                if not self._body(out):
                    break
            elif not self._headers(out):
                break
        return bytes(out)

    def _headers(self, out: bytearray) -> bool:
        """Consume one header block if complete. False = need more bytes."""
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            self._check_size(len(buf))
            return False
        start = bytes(buf[:end])
        parts = start.split(b" ", 3)
        if len(parts) < 3 or parts[0] != b"MSRP" or not _TID.match(parts[1]):
            raise MsrpProtocolError("bad MSRP start line")
        tid = parts[1]
        end_line = b"-------" + tid
        lines = [start]
        pos = end + 2
        while True:
            nxt = buf.find(b"\r\n", pos)
            if nxt < 0:
                self._check_size(len(buf))
                return False
            line = bytes(buf[pos:nxt])
            pos = nxt + 2
            if line == b"":  # CRLF CRLF: the body follows (content-stuff)
                out += b"\r\n".join(self._rewrite(lines)) + b"\r\n\r\n"
                self._in_body = True
                self._marker = b"\r\n" + end_line
                self._keep = len(self._marker) + 2  # marker + flag + CR, at most, can straddle
                del buf[:pos]
                return True
            if line.startswith(end_line) and len(line) == len(end_line) + 1:
                if line[-1] not in END_FLAGS:
                    raise MsrpProtocolError("bad end-line flag")
                out += b"\r\n".join(self._rewrite(lines)) + b"\r\n" + line + b"\r\n"
                self.messages += 1
                del buf[:pos]
                return True
            lines.append(line)
            self._check_size(pos)

    def _body(self, out: bytearray) -> bool:
        buf, marker = self._buf, self._marker
        search = 0
        while True:
            i = buf.find(marker, search)
            if i < 0:
                # No end-line yet: pass on all but the bytes that might begin one.
                cut = len(buf) - self._keep
                if cut > 0:
                    out += buf[:cut]
                    del buf[:cut]
                return False
            j = i + len(marker)
            if j + 3 > len(buf):  # need flag + CRLF to decide
                out += buf[:i]
                del buf[:i]
                return False
            if buf[j] in END_FLAGS and buf[j + 1 : j + 3] == b"\r\n":
                out += buf[: j + 3]
                del buf[: j + 3]
                self._in_body = False
                self.messages += 1
                return True
            search = i + 1  # "-------tid" followed by something else: still body

    def _rewrite(self, lines: list[bytes]) -> list[bytes]:
        out = [lines[0]]
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower() in _PATH_HEADERS:
                try:
                    text = value.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise MsrpProtocolError("non UTF-8 path header") from None
                line = name + b": " + self._map.rewrite(text).encode("utf-8")
            out.append(line)
        return out

    @staticmethod
    def _check_size(n: int) -> None:
        if n > MAX_HEADER_BYTES:
            raise MsrpProtocolError("MSRP header block too large")
