"""A lean, line-based SDP model for a middlebox (RFC 8866 / RFC 4566 syntax).

Why not sdp-transform (DESIGN.md names it): its Python port parses a VoLTE offer in ~650 µs
against ~20 µs here, and it is lossy (it drops the second session parameter of an `a=crypto`
line, re-orders and re-spells attributes). A P-CSCF must forward everything it does not
understand *byte for byte and in order*: unknown attributes, `a=rtcp-fb`, `a=curr`/`a=des`
preconditions, `b=` lines, RFC 5939 capability negotiation. So the model keeps every line as
its original text and only the lines we edit are regenerated. sdp-transform stays in the tests
as an independent oracle that re-parses what we emit.

Shape:
- `Sdp.session` holds the session-level lines (from `v=` up to the first `m=`), as `str`
  without line terminator;
- `Sdp.media` holds one `Media` per `m=` line; `Media.lines[0]` is the `m=` line itself.
- Bytes come in as UTF-8 and are decoded with `surrogateescape`, so that any byte sequence
  (even invalid UTF-8 in `i=` or an unknown attribute) goes out exactly as it came in.
- The line terminator of the input (CRLF or bare LF) is kept; a body with *mixed* terminators is
  normalised to the style of its first line.

Hot-path rules: no regular expressions, only `str.split`/`partition`/`startswith`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import SdpError

# RFC 8866 §5: the type letters we accept. Anything else is a syntax error (an SDP parser
# "MUST completely ignore" a description with an unknown type letter; a middlebox refuses it).
_TYPES = frozenset("vosiuepcbtrzkam")
# A line terminator not followed by "<known type letter>=": the first bad line, if any.
_BAD_CRLF = re.compile("\r\n(?![vosiuepcbtrzkam]=)")
_BAD_LF = re.compile("\n(?![vosiuepcbtrzkam]=)")

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def attr_name(line: str) -> str:
    """The attribute name of an `a=` line, lower-cased (`a=Crypto:1 ...` -> `crypto`)."""
    colon = line.find(":", 2)
    return (line[2:colon] if colon >= 0 else line[2:]).lower()


def attr_value(line: str) -> str:
    """The value of an `a=name:value` line ('' for a property attribute such as `a=sendrecv`)."""
    colon = line.find(":", 2)
    return line[colon + 1 :] if colon >= 0 else ""


def _is_attr(line: str, name: str) -> bool:
    """Case-insensitive attribute-name test without building a new string in the common case."""
    n = len(name) + 2
    if len(line) < n or line[0] != "a":
        return False
    if len(line) > n and line[n] != ":":
        return False
    return line[2:n].lower() == name


def find_attr(lines: list[str], name: str, start: int = 0) -> int:
    """Index of the first `a=<name>` line at or after `start`, or -1."""
    for i in range(start, len(lines)):
        if _is_attr(lines[i], name):
            return i
    return -1


def get_attr(lines: list[str], name: str) -> str | None:
    """The value of the first `a=<name>` line, or None."""
    i = find_attr(lines, name)
    return None if i < 0 else attr_value(lines[i])


def get_attrs(lines: list[str], name: str) -> list[str]:
    """The values of every `a=<name>` line, in order."""
    return [attr_value(line) for line in lines if _is_attr(line, name)]


def remove_attrs(lines: list[str], names: frozenset[str] | set[str], start: int = 0) -> int:
    """Remove every attribute line whose (lower-cased) name is in `names`; return how many."""
    keep = lines[:start]
    removed = 0
    for line in lines[start:]:
        if line[0] == "a" and attr_name(line) in names:
            removed += 1
        else:
            keep.append(line)
    if removed:
        lines[:] = keep
    return removed


class Connection:
    """A parsed `c=` line: `c=<nettype> <addrtype> <address>[/ttl][/count]`."""

    __slots__ = ("address", "addrtype", "nettype")

    def __init__(self, nettype: str, addrtype: str, address: str) -> None:
        self.nettype = nettype
        self.addrtype = addrtype
        self.address = address

    @property
    def host(self) -> str:
        """The address without a multicast TTL / count suffix."""
        return self.address.partition("/")[0]

    @classmethod
    def parse(cls, line: str) -> Connection:
        parts = line[2:].split()
        if len(parts) != 3:
            raise SdpError("SDP syntax error: c= line needs nettype, addrtype and address")
        return cls(parts[0], parts[1], parts[2])

    @staticmethod
    def line_for(host: str) -> str:
        return f"c=IN {addrtype_of(host)} {host}"


def addrtype_of(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


# Direction attribute patterns in the cached text, built once (not one f-string per lookup).
_DIR_PATS = tuple(("\na=" + d + "\n", d) for d in DIRECTIONS)
_DIR_LINES = frozenset(p for p, _ in _DIR_PATS)


def _low_same_length(raw: str) -> str:
    """`raw.lower()`, except that a character whose lower case has another length is kept as
    is, so that offsets in the lowered text are offsets in `raw` (non-ASCII only)."""
    low = raw.lower()
    if len(low) != len(raw):
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in raw)
    return low


class Media:
    """One media description: `lines[0]` is the `m=` line, then i=, c=, b=, k=, a= lines.

    Attribute lookups search a cached text of the section ("\n" + lines joined by "\n" +
    "\n", and its lower-cased twin) with `str.find`, at C speed: a per-line Python loop costs
    ~0.2 µs a line here, and a VoLTE m-line has ~30. Attribute names match case-insensitively.
    The edits below keep that text up to date by slicing (removing or inserting attribute
    lines), so a rewrite that looks up, edits and looks up again does not rebuild it; the m=
    line in it may be stale (only a= lines are ever searched for); `set_line` drops it. Edit
    the lines only through these methods (or call `touch()` after editing `lines` directly).
    """

    __slots__ = ("_ci", "_text", "fmts", "lines", "media", "nports", "port", "proto")

    media: str
    port: int
    nports: str
    proto: str
    fmts: list[str]

    def __init__(self, lines: list[str], _copy_of: Media | None = None) -> None:
        self.lines = lines
        self._text: tuple[str, str] | None = None
        self._ci = -2  # cached connection_index(); -2 = not computed
        if _copy_of is not None:  # copy(): the m= line is already parsed
            o = _copy_of
            self._text, self._ci = o._text, o._ci
            self.media, self.port, self.nports, self.proto, self.fmts = (
                o.media, o.port, o.nports, o.proto, o.fmts)
            return
        parts = lines[0][2:].split()
        if len(parts) < 4:
            raise SdpError("SDP syntax error: m= line needs media, port, proto and formats")
        self.media = parts[0]
        port = parts[1]
        if port.isdigit():  # the common case: no port count
            self.nports = ""
        else:
            port, _, nports = port.partition("/")
            if not port.isdigit() or not nports.isdigit():
                raise SdpError("SDP syntax error: bad port in m= line")
            self.nports = nports
        p = self.port = int(port)
        if p > 65535:
            raise SdpError("SDP syntax error: m= port out of range")
        self.proto = parts[2]
        self.fmts = parts[3:]

    def copy(self) -> Media:
        return Media(self.lines.copy(), self)

    # -- lookups ---------------------------------------------------------------------------

    def _texts(self) -> tuple[str, str]:
        t = self._text
        if t is None:
            raw = "\n" + "\n".join(self.lines) + "\n"
            t = self._text = (raw, _low_same_length(raw))
        return t

    def touch(self) -> None:
        """Forget the cached text after `lines` was edited directly."""
        self._text = None
        self._ci = -2

    def _positions(self, name: str) -> list[int]:
        """Offsets (in the cached text) of the newline before each `a=<name>` line, ascending.

        One `find` pattern ("\na=<name>") and a check of the character after it (':' or end of
        line), rather than one scan per form of the line and a sort.
        """
        t = self._text
        low = (t if t is not None else self._texts())[1]
        pat = "\na=" + name
        p = low.find(pat)
        if p < 0:
            return []
        k = len(pat)
        out: list[int] = []
        while p >= 0:
            c = low[p + k]  # never out of range: the text ends with "\n"
            if c == ":" or c == "\n":
                out.append(p)
            p = low.find(pat, p + k)
        return out

    def indices(self, name: str) -> list[int]:
        """Line indices of every `a=<name>` line (name in lower case)."""
        pos = self._positions(name)
        if not pos:
            return pos
        raw = self._texts()[0]
        return [raw.count("\n", 0, p) for p in pos]

    def find(self, name: str, start: int = 1) -> int:
        """Index of the first `a=<name>` line at or after `start`, or -1 (name lower case)."""
        # The scan of `_positions`, inlined (a call layer costs as much as the search here).
        t = self._text
        if t is None:
            t = self._texts()
        low = t[1]
        pat = "\na=" + name
        k = len(pat)
        p = low.find(pat)
        while p >= 0:
            c = low[p + k]
            if c == ":" or c == "\n":
                i = t[0].count("\n", 0, p)
                if i >= start:
                    return i
            p = low.find(pat, p + k)
        return -1

    def attr(self, name: str) -> str | None:
        """The value of the first `a=<name>` line ('' for a flag), or None."""
        t = self._text
        if t is None:
            t = self._texts()
        low = t[1]
        pat = "\na=" + name
        k = len(pat)
        p = low.find(pat)
        while p >= 0:
            c = low[p + k]
            if c == ":":
                raw = t[0]
                return raw[p + k + 1 : raw.find("\n", p + k)]
            if c == "\n":
                return ""
            p = low.find(pat, p + k)
        return None

    def attrs(self, name: str) -> list[str]:
        pos = self._positions(name)
        if not pos:
            return []
        raw = self._texts()[0]
        n = len(name) + 3
        out = []
        for p in pos:
            end = raw.find("\n", p + 1)
            out.append(raw[p + n + 1 : end] if raw[p + n] == ":" else "")
        return out

    def has_attr(self, name: str) -> bool:
        t = self._text
        low = (t if t is not None else self._texts())[1]
        pat = "\na=" + name
        k = len(pat)
        p = low.find(pat)
        while p >= 0:
            c = low[p + k]
            if c == ":" or c == "\n":
                return True
            p = low.find(pat, p + k)
        return False

    # -- edits -----------------------------------------------------------------------------

    def _rebuild(self) -> None:
        port = f"{self.port}/{self.nports}" if self.nports else str(self.port)
        self.lines[0] = f"m={self.media} {port} {self.proto} {' '.join(self.fmts)}"
        # The cached text is kept: it is only ever searched for "\na=" lines and counted for
        # newlines, so a stale m= line in it changes no lookup (and no line index).

    def set_port(self, port: int) -> None:
        if port != self.port or self.nports:
            self.port = port
            self.nports = ""  # the gateway reserves exactly one port (pair) per stream
            self._rebuild()

    def set_proto(self, proto: str) -> None:
        if proto != self.proto:
            self.proto = proto
            self._rebuild()

    def set_line(self, i: int, line: str) -> None:
        self.lines[i] = line
        self._text = None

    def insert_lines(self, pos: int, new: list[str]) -> None:
        self.lines[pos:pos] = new
        self._text = None
        self._ci = -2

    def remove_attrs(self, *names: str) -> int:
        """Remove every `a=<name>` line for the given (lower-case) names; return how many."""
        if len(names) == 1:
            pos = self._positions(names[0])
        else:
            found: set[int] = set()
            for name in names:
                found.update(self._positions(name))
            pos = sorted(found)
        if not pos:
            return 0
        # Delete the few lines in place (not a comprehension over all ~30 lines) and cut
        # them out of the cached text, which stays valid for the next lookup.
        raw, low = self._texts()
        lines = self.lines
        raw_parts: list[str] = []
        low_parts: list[str] = []
        cut = 0
        for p in reversed([raw.count("\n", 0, p) for p in pos]):
            del lines[p]
        for p in pos:
            raw_parts.append(raw[cut:p])
            low_parts.append(low[cut:p])
            cut = raw.find("\n", p + 1)
        raw_parts.append(raw[cut:])
        low_parts.append(low[cut:])
        self._text = ("".join(raw_parts), "".join(low_parts))
        self._ci = -2
        return len(pos)

    def remove_where(self, pred: Callable[[str], bool]) -> int:
        """Remove the a= lines (never the m= line) for which `pred(line)` is true."""
        keep = [self.lines[0]] + [line for line in self.lines[1:] if not pred(line)]
        removed = len(self.lines) - len(keep)
        if removed:
            self.lines = keep
            self._text = None
            self._ci = -2
        return removed

    # -- structure -------------------------------------------------------------------------

    @property
    def rejected(self) -> bool:
        return self.port == 0

    def connection_index(self) -> int:
        ci = self._ci
        if ci != -2:
            return ci
        ci = -1
        lines = self.lines
        for i in range(1, len(lines)):
            c = lines[i][0]
            if c == "c":
                ci = i
                break
            if c == "a":  # c= precedes every a= line (RFC 8866 §5)
                break
        self._ci = ci
        return ci

    def connection(self) -> Connection | None:
        i = self.connection_index()
        return None if i < 0 else Connection.parse(self.lines[i])

    def direction(self) -> str | None:
        t = self._text
        low = (t if t is not None else self._texts())[1]
        best = -1
        found = None
        for pat, d in _DIR_PATS:
            p = low.find(pat)
            if p >= 0 and (found is None or p < best):
                best, found = p, d
        return found

    def _insert_offset(self) -> int:
        """Text offset of the newline before the last direction attribute, else of the final
        newline (the end of the section). The last line is checked first: it is the direction
        attribute in nearly every SDP."""
        low = self._texts()[1]
        q = low.rfind("\n", 0, len(low) - 1)
        if low[q:] in _DIR_LINES:
            return q
        best = max(low.rfind(pat) for pat, _ in _DIR_PATS)
        return best if best > 0 else len(low) - 1

    def insert_point(self) -> int:
        """Where new attributes go: before the last direction attribute, else at the end.

        Examples 06 and 08 of the spec put `a=crypto`/`a=3ge2ae` just before `a=sendrecv`.
        """
        q = self._insert_offset()
        return self._texts()[0].count("\n", 0, q)

    def insert_attrs(self, new: list[str], at: int | None = None) -> None:
        if at is not None:
            self.insert_lines(at, new)
            return
        q = self._insert_offset()
        raw, low = self._texts()
        i = raw.count("\n", 0, q)
        self.lines[i:i] = new
        # Splice the new lines into the cached text (valid for the next lookup).
        add = "".join("\n" + line for line in new)
        if add.isascii():
            self._text = (raw[:q] + add + raw[q:], low[:q] + add.lower() + low[q:])
        else:
            self._text = None
        self._ci = -2

    def replace_or_insert(self, name: str, line: str) -> int:
        """Replace the first `a=<name>` line by `line` (others removed), or insert it.

        Returns the index of the line."""
        found = self.indices(name)
        if not found:
            i = self.insert_point()
            self.insert_lines(i, [line])
            return i
        i = found[0]
        for j in reversed(found[1:]):
            del self.lines[j]
        self.set_line(i, line)
        self._ci = -2
        return i


def _raise_syntax(lines: list[str]) -> None:
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP syntax error: body must start with v=0")
    for n, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or line[0] not in _TYPES or "\r" in line:
            raise SdpError(f"SDP syntax error at line {n}: not a <type>=<value> line")
    raise SdpError("SDP syntax error")  # pragma: no cover - the regex and the loop agree


class Sdp:
    """A whole session description. See the module docstring."""

    __slots__ = ("_sconn", "eol", "final_eol", "media", "session", "tail")

    def __init__(
        self,
        session: list[str],
        media: list[Media],
        eol: str = "\r\n",
        final_eol: bool = True,
        tail: int = 0,
    ) -> None:
        self.session = session
        self.media = media
        self.eol = eol
        self.final_eol = final_eol
        self.tail = tail  # count of empty lines after the last one, re-emitted as they came
        self._sconn: Connection | bool | None = False  # cached session c= (False: not yet)

    # -- parsing ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str) -> Sdp:
        text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
        nl = text.find("\n")
        eol = "\r\n" if nl > 0 and text[nl - 1] == "\r" else "\n"
        sep = eol
        n_cr = text.count("\r")
        if nl < 0:
            text = text.removesuffix("\r")  # one line, no terminator
        elif n_cr:
            n_crlf = text.count("\r\n")
            if n_crlf and n_crlf != text.count("\n"):
                # mixed terminators: split on LF, output in the style of the first line
                text = text.replace("\r\n", "\n")
                sep = "\n"
                n_cr -= n_crlf
            elif eol == "\r\n":
                n_cr -= n_crlf
        if n_cr and nl >= 0:
            raise SdpError("SDP syntax error: stray CR inside a line")
        final_eol = text.endswith(sep)
        body = text[: -len(sep)] if final_eol else text
        tail = 0  # empty lines after the last one, re-emitted as they came
        while body.endswith(sep):
            body = body[: -len(sep)]
            tail += 1
        # One C-level scan validates the shape of every line (a <type>=<value> line with a
        # known type letter); only a bad body takes the slow path that names the line.
        if (
            (_BAD_CRLF if sep == "\r\n" else _BAD_LF).search(body) is not None
            or body[1:2] != "="
        ):
            _raise_syntax(body.split(sep))
        # Sections split at C speed too: everything before the first m= is session level.
        chunks = body.split(sep + "m=")
        session = chunks[0].split(sep)
        if session[0] != "v=0":
            raise SdpError("SDP syntax error: body must start with v=0")
        seen_o = False
        sconn: Connection | None = None
        for line in session:
            t = line[0]
            if t == "o":
                if len(line[2:].split()) != 6:
                    raise SdpError("SDP syntax error: o= line needs six fields")
                seen_o = True
            elif t == "c":
                c = Connection.parse(line)
                if sconn is None:
                    sconn = c
        if not seen_o:
            raise SdpError("SDP syntax error: no o= line")
        media: list[Media] = []
        for chunk in chunks[1:]:
            m = Media(("m=" + chunk).split(sep))
            ci = m.connection_index()
            if ci >= 0:
                Connection.parse(m.lines[ci])
            elif sconn is None and m.port != 0:
                raise SdpError("SDP syntax error: media without a c= line")
            media.append(m)
        sdp = cls(session, media, eol, final_eol, tail)
        sdp._sconn = sconn  # the first session c=, already parsed: cache it
        return sdp

    # -- output ----------------------------------------------------------------------------

    def lines(self) -> list[str]:
        out = self.session.copy()
        for m in self.media:
            out += m.lines
        return out

    def to_str(self) -> str:
        eol = self.eol
        out = eol.join(self.lines())
        if self.final_eol:
            out += eol
        if self.tail:
            out += eol * self.tail
        return out

    def to_bytes(self) -> bytes:
        return self.to_str().encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return self.to_str()

    def copy(self) -> Sdp:
        c = Sdp(
            self.session.copy(),
            [m.copy() for m in self.media],
            self.eol,
            self.final_eol,
            self.tail,
        )
        c._sconn = self._sconn  # same session lines: the cached c= holds for the copy
        return c

    # -- session-level helpers -------------------------------------------------------------

    def session_connection_index(self) -> int:
        for i, line in enumerate(self.session):
            if line[0] == "c":
                return i
        return -1

    def session_connection(self) -> Connection | None:
        c = self._sconn
        if c is False:
            i = self.session_connection_index()
            c = self._sconn = None if i < 0 else Connection.parse(self.session[i])
        assert c is not True
        return c

    def touch(self) -> None:
        """Forget cached session-level data after `session` was edited directly."""
        self._sconn = False

    def origin_index(self) -> int:
        for i, line in enumerate(self.session):
            if line[0] == "o":
                return i
        return -1  # pragma: no cover - parse() guarantees an o= line

    def session_attr(self, name: str) -> str | None:
        return get_attr(self.session, name)

    def session_attrs(self, name: str) -> list[str]:
        return get_attrs(self.session, name)

    def media_host(self, m: Media) -> str | None:
        """The connection address (no TTL/count) in effect for `m`, without building a
        `Connection` for a media-level c= (it is read for every live m-line)."""
        ci = m.connection_index()
        if ci >= 0:
            line = m.lines[ci]
            parts = line[2:].split()
            if len(parts) != 3:
                Connection.parse(line)  # raises the syntax error
            return parts[2].partition("/")[0]
        c = self.session_connection()
        return None if c is None else c.host

    def media_connection(self, m: Media) -> Connection | None:
        """The connection data in effect for `m`: media level, else session level."""
        c = m.connection()
        return c if c is not None else self.session_connection()

    def media_attr(self, m: Media, name: str) -> str | None:
        """A media attribute, falling back to the session level (a=setup, a=fingerprint...)."""
        v = m.attr(name)
        return v if v is not None else self.session_attr(name)
