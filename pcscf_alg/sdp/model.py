"""A lean, line-based SDP model for a middlebox (RFC 8866 / RFC 4566 syntax).

Why not sdp-transform (the obvious library for it): its Python port parses a VoLTE offer in ~650 µs
against ~20 µs here, and it is lossy (it drops the second session parameter of an `a=crypto`
line, re-orders and re-spells attributes). A P-CSCF must forward everything it does not
understand *byte for byte and in order*: unknown attributes, `a=rtcp-fb`, `a=curr`/`a=des`
preconditions, `b=` lines, RFC 5939 capability negotiation. So the model keeps every line as
its original text and only the lines we edit are regenerated. sdp-transform stays in the tests
as an independent oracle that re-parses what we emit.

Shape:
- `Sdp.session` holds the session-level lines (from `v=` up to the first `m=`), as `str`
  without line terminator;
- `Sdp.media` holds one `Media` per `m=` line; `Media.lines[0]` is the `m=` line itself. A
  `Media` keeps its lines as one "\n"-terminated text (searched, sliced and shared by copies at
  C speed) and builds the `lines` list only when asked for it (see `Media`).
- Bytes come in as UTF-8 and are decoded with `surrogateescape`, so that any byte sequence
  (even invalid UTF-8 in `i=` or an unknown attribute) goes out exactly as it came in.
- The line terminator of the input (CRLF or bare LF) is kept; a body with *mixed* terminators is
  normalised to the style of its first line.

Hot-path rules: no per-line Python loops and no regular expressions beyond the one C-level
validation scan; `str.find`/`count`/`split`/`partition` and slicing only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import SdpError

# RFC 8866 §5: the type letters we accept. Anything else is a syntax error (an SDP parser
# "MUST completely ignore" a description with an unknown type letter; a middlebox refuses it).
_TYPES = frozenset("vosiuepcbtrzkam")
# A newline (after CRLF normalisation) not followed by "<known type letter>=": the first bad
# line, if any.
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


# Direction attribute patterns in the attribute text, built once (not one f-string per lookup).
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

    Kept as text rather than as a list of lines: the `m=` line, and the lines after it as one
    string `_raw` ("\\n" before each line, "\\n" at the end) with a lower-cased twin `_low`.
    Lookups search that text with `str.find` at C speed (attribute names match
    case-insensitively); removing or inserting attribute lines, or replacing one, are slices
    of it that keep it valid for the next lookup; copying a section shares it; output is one
    `join`. A per-line Python loop costs ~0.2 µs a line here and a VoLTE m-line has ~30, and
    keeping a list of lines in step with a searchable text meant rebuilding one from the other
    after every edit (bench/bench_e2ae.py, BENCHMARKS.md "e2ae SDP rewrite").

    `lines` is built on first use; while it is in use, edits that address lines by index
    (`set_line`, `insert_lines`...) work on it and the text is rebuilt from it when needed.
    After editing `lines` directly, call `touch()`.
    """

    __slots__ = ("_ci", "_cline", "_lines", "_low", "_mline", "_raw", "fmts", "media", "nports",
                 "port", "proto")

    media: str
    port: int
    nports: str
    proto: str
    fmts: list[str]

    def __init__(self, lines: list[str], raw: str | None = None) -> None:
        # State: either `_lines` is the truth (and `_raw`/`_low` caches of it, None when
        # stale), or `_lines` is None and `_mline` + `_raw` are the truth. `raw` given: the
        # section straight from `Sdp.parse`, `lines` is just its m= line and `raw` the text
        # of the lines after it. (One constructor for both, not `cls.__new__` for the second:
        # mypyc, which compiles this module, cannot build an instance that way.)
        self._lines: list[str] | None = lines if raw is None else None
        self._raw: str | None = raw
        self._low: str | None = None
        self._ci = -2  # cached connection_index(); -2 = not computed
        self._cline: str | bool | None = False  # cached connection_line(); False = not yet
        self._mline: str | None = lines[0]  # None: set_port/set_proto changed it, not rebuilt
        self._parse_mline(lines[0])

    def _parse_mline(self, line: str) -> None:
        parts = line[2:].split()
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
        # The text is immutable: a copy shares it (and the parsed m= line).
        m = Media([self._mline_text()], "\n")
        lines = self._lines
        m._lines = None if lines is None else lines.copy()
        m._mline, m._raw, m._low, m._ci, m._cline = (
            self._mline, self._raw, self._low, self._ci, self._cline)
        m.media, m.port, m.nports, m.proto, m.fmts = (
            self.media, self.port, self.nports, self.proto, self.fmts)
        return m

    @property
    def lines(self) -> list[str]:
        lines = self._lines
        if lines is None:
            raw = self._raw
            assert raw is not None
            mline = self._mline_text()
            lines = self._lines = [mline, *raw[1:-1].split("\n")] if len(raw) > 1 else [mline]
        return lines

    @lines.setter
    def lines(self, lines: list[str]) -> None:
        self._lines = lines
        self.touch()

    # -- text ------------------------------------------------------------------------------

    def _text(self) -> str:
        """The attribute text (`_raw`), rebuilt from `lines` if they were edited."""
        raw = self._raw
        if raw is None:
            lines = self._lines
            assert lines is not None
            self._mline = lines[0]
            rest = lines[1:]
            raw = self._raw = "\n" + "\n".join(rest) + "\n" if rest else "\n"
        return raw

    def _lower(self) -> str:
        low = self._low
        if low is None:
            low = self._low = _low_same_length(self._text())
        return low

    def _set_text(self, raw: str, low: str) -> None:
        """The text after an edit made on it: it becomes the truth, `lines` is rebuilt on use."""
        if self._lines is not None:
            self._mline = self._lines[0]
        self._raw = raw
        self._low = low
        self._lines = None
        self._ci = -2
        self._cline = False

    def _edit_lines(self) -> list[str]:
        """`lines`, about to be edited in place: the text becomes stale."""
        lines = self.lines
        self._raw = self._low = None
        self._ci = -2
        self._cline = False
        return lines

    def touch(self) -> None:
        """Forget the cached text after `lines` was edited directly."""
        if self._lines is not None:
            self._raw = self._low = None
            self._mline = self._lines[0]
        self._ci = -2
        self._cline = False

    def body(self, eol: str) -> str:
        """The section as it goes out: its lines joined by `eol`."""
        lines = self._lines
        if lines is not None:
            return eol.join(lines)
        raw = self._raw
        assert raw is not None
        text = self._mline_text() + raw[:-1]
        return text if eol == "\n" else text.replace("\n", eol)

    # -- lookups ---------------------------------------------------------------------------

    def _positions(self, name: str) -> list[int]:
        """Offsets (in the text) of the newline before each `a=<name>` line, ascending.

        One `find` pattern ("\\na=<name>") and a check of the character after it (':' or end of
        line), rather than one scan per form of the line and a sort.
        """
        low = self._low
        if low is None:
            low = self._lower()
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

    @staticmethod
    def _first(low: str, name: str) -> int:
        """Offset of the first `a=<name>` line in `low`, or -1: one scan of the text, checking
        the character after each "\\na=<name>" hit (':' or end of line), so that an absent name
        costs one pass and a name that prefixes others (rtcp, rtcp-fb, rtcp-mux) is not
        re-scanned once per longer line."""
        pat = "\na=" + name
        k = len(pat)
        p = low.find(pat)
        while p >= 0:
            c = low[p + k]  # never out of range: the text ends with "\n"
            if c == ":" or c == "\n":
                return p
            p = low.find(pat, p + k)
        return -1

    def indices(self, name: str) -> list[int]:
        """Line indices of every `a=<name>` line (name in lower case)."""
        pos = self._positions(name)
        if not pos:
            return pos
        raw = self._text()
        out = []
        n = 1  # line 0, the m= line, is not in the text
        last = 0
        for p in pos:
            n += raw.count("\n", last, p)
            last = p
            out.append(n)
        return out

    def find(self, name: str, start: int = 1) -> int:
        """Index of the first `a=<name>` line at or after `start`, or -1 (name lower case)."""
        if start <= 1:  # every a= line qualifies
            low = self._low
            if low is None:
                low = self._lower()
            p = self._first(low, name)
            return -1 if p < 0 else self._text().count("\n", 0, p) + 1
        for i in self.indices(name):
            if i >= start:
                return i
        return -1

    def attr(self, name: str) -> str | None:
        """The value of the first `a=<name>` line ('' for a flag), or None."""
        low = self._low
        if low is None:
            low = self._lower()
        p = self._first(low, name)
        if p < 0:
            return None
        raw = self._raw
        if raw is None:
            raw = self._text()
        k = p + len(name) + 3  # the ':' or the end of the line
        return raw[k + 1 : raw.find("\n", k)] if raw[k] == ":" else ""

    def attrs(self, name: str) -> list[str]:
        pos = self._positions(name)
        if not pos:
            return []
        raw = self._raw
        if raw is None:
            raw = self._text()
        n = len(name) + 3
        out = []
        for p in pos:
            end = raw.find("\n", p + 1)
            out.append(raw[p + n + 1 : end] if raw[p + n] == ":" else "")
        return out

    def has_attr(self, name: str) -> bool:
        low = self._low
        if low is None:
            low = self._lower()
        # Two `in` tests (no method call, no argument parsing) cost less than a `find` loop.
        pat = "\na=" + name
        return pat + ":" in low or pat + "\n" in low

    def has_any(self, *names: str) -> bool:
        """Whether any of the attributes is present: `has_attr` for several names in one call
        (the engine's one-pass paths check three or four absent names per section)."""
        low = self._low
        if low is None:
            low = self._lower()
        for name in names:
            pat = "\na=" + name
            if pat + ":" in low or pat + "\n" in low:
                return True
        return False

    # -- edits -----------------------------------------------------------------------------

    def _mline_text(self) -> str:
        line = self._mline
        if line is None:
            port = f"{self.port}/{self.nports}" if self.nports else str(self.port)
            line = self._mline = f"m={self.media} {port} {self.proto} {' '.join(self.fmts)}"
        return line

    def _rebuild(self) -> None:
        # The text holds no m= line: it stays valid. Without `lines` in use, the m= line is
        # rebuilt only when needed (set_proto and set_port often come in pairs).
        self._mline = None
        if self._lines is not None:
            self._lines[0] = self._mline_text()

    def set_port(self, port: int) -> None:
        if port != self.port or self.nports:
            self.port = port
            self.nports = ""  # the gateway reserves exactly one port (pair) per stream
            self._rebuild()

    def set_proto(self, proto: str) -> None:
        if proto != self.proto:
            self.proto = proto
            self._rebuild()

    def _line_offset(self, i: int) -> int:
        """Text offset of the newline before line `i` (1 <= i <= len(lines); len(lines) is the
        end of the section), or -1 if there is no such line. Used to edit a line in the text
        without splitting the section into lines."""
        raw = self._text()
        p = 0
        for _ in range(i - 1):
            p = raw.find("\n", p + 1)
            if p < 0:
                return -1
        return p

    def set_line(self, i: int, line: str) -> None:
        if self._lines is None and i >= 1:
            q = self._line_offset(i)
            raw = self._text()
            if 0 <= q < len(raw) - 1:  # an existing line, not the end
                low = self._lower()
                e = raw.find("\n", q + 1)
                add = "\n" + line
                self._set_text(raw[:q] + add + raw[e:], low[:q] + _low_same_length(add) + low[e:])
                return
        self._edit_lines()[i] = line
        if i == 0:
            self._mline = line

    def insert_lines(self, pos: int, new: list[str]) -> None:
        if self._lines is None and pos >= 1:
            q = self._line_offset(pos)
            if q >= 0:
                raw = self._text()
                low = self._lower()
                add = "".join(["\n" + line for line in new])
                self._set_text(raw[:q] + add + raw[q:], low[:q] + _low_same_length(add) + low[q:])
                return
        self._edit_lines()[pos:pos] = new

    def remove_attrs(self, *names: str) -> int:
        """Remove every `a=<name>` line for the given (lower-case) names; return how many."""
        if len(names) == 1:
            pos = self._positions(names[0])
        else:
            # A line matches one name only (the name must end at ':' or the end of the line),
            # so distinct names give disjoint offsets: concatenate and sort, no set needed.
            pos = []
            for name in names:
                pos += self._positions(name)
            if len(set(names)) != len(names):
                pos = list(set(pos))
            pos.sort()
        if not pos:
            return 0
        # Cut the lines out of the text: a few slices, whatever the length of the section.
        raw = self._text()
        low = self._lower()
        if len(pos) == 1:  # the common case (one a=3ge2ae...): two slices, no lists
            p = pos[0]
            cut = raw.find("\n", p + 1)
            self._set_text(raw[:p] + raw[cut:], low[:p] + low[cut:])
            return 1
        raw_parts: list[str] = []
        low_parts: list[str] = []
        cut = 0
        for p in pos:
            raw_parts.append(raw[cut:p])
            low_parts.append(low[cut:p])
            cut = raw.find("\n", p + 1)
        raw_parts.append(raw[cut:])
        low_parts.append(low[cut:])
        self._set_text("".join(raw_parts), "".join(low_parts))
        return len(pos)

    def remove_where(self, pred: Callable[[str], bool]) -> int:
        """Remove the a= lines (never the m= line) for which `pred(line)` is true."""
        lines = self.lines
        keep = [lines[0]] + [line for line in lines[1:] if not pred(line)]
        removed = len(lines) - len(keep)
        if removed:
            self.lines = keep
        return removed

    # -- structure -------------------------------------------------------------------------

    @property
    def rejected(self) -> bool:
        return self.port == 0

    def _connection_offset(self) -> int:
        """Text offset of the newline before the media-level c= line, or -1. c= precedes every
        a= line (RFC 8866 §5): a c= after the first a= line is not one."""
        raw = self._raw
        if raw is None:
            raw = self._text()
        pa = raw.find("\na")  # near the start: bounds the search for c=
        return raw.find("\nc", 0, pa if pa >= 0 else len(raw))

    def connection_index(self) -> int:
        ci = self._ci
        if ci == -2:
            pc = self._connection_offset()
            ci = self._ci = -1 if pc < 0 else self._text().count("\n", 0, pc) + 1
        return ci

    def connection_line(self) -> str | None:
        """The media-level c= line, or None."""
        line = self._cline
        if line is False:
            pc = self._connection_offset()
            if pc < 0:
                line = None
            else:
                raw = self._text()
                line = raw[pc + 1 : raw.find("\n", pc + 1)]
            self._cline = line
        assert line is not True
        return line

    def connection(self) -> Connection | None:
        line = self.connection_line()
        return None if line is None else Connection.parse(line)

    def direction(self) -> str | None:
        low = self._low
        if low is None:
            low = self._lower()
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
        low = self._low
        if low is None:
            low = self._lower()
        q = low.rfind("\n", 0, len(low) - 1)
        if q >= 0 and low[q:] in _DIR_LINES:
            return q
        best = max(low.rfind(pat) for pat, _ in _DIR_PATS)
        return best if best >= 0 else len(low) - 1

    def insert_point(self) -> int:
        """Where new attributes go: before the last direction attribute, else at the end.

        Examples 06 and 08 of the spec put `a=crypto`/`a=3ge2ae` just before `a=sendrecv`.
        """
        return self._text().count("\n", 0, self._insert_offset()) + 1

    def body_with(self, mline: str, new: list[str]) -> str:
        """The section as `body("\\n")` would give it after `insert_attrs(new)` with its m= line
        replaced by `mline`, without editing it (the engine's one-pass answer rewrite)."""
        q = self._insert_offset()
        raw = self._raw
        if raw is None:
            raw = self._text()
        return mline + raw[:q] + "".join(["\n" + line for line in new]) + raw[q:-1]

    def body_without(self, mline: str, *names: str) -> str:
        """The section as `body("\\n")` would give it after `remove_attrs(*names)` with its m=
        line replaced by `mline`, without editing it (distinct names)."""
        raw = self._raw
        if raw is None:
            raw = self._text()
        pos: list[int] = []
        for name in names:
            pos += self._positions(name)
        if not pos:
            return mline + raw[:-1]
        pos.sort()
        parts = [mline]
        cut = 0
        for p in pos:
            parts.append(raw[cut:p])
            cut = raw.find("\n", p + 1)
        parts.append(raw[cut:-1])
        return "".join(parts)

    def insert_attrs(self, new: list[str], at: int | None = None) -> None:
        if at is not None:
            self.insert_lines(at, new)
            return
        q = self._insert_offset()
        raw = self._text()
        low = self._lower()
        add = "".join(["\n" + line for line in new])  # spliced into the text
        self._set_text(raw[:q] + add + raw[q:], low[:q] + _low_same_length(add) + low[q:])

    def replace_or_insert(self, name: str, line: str, *after: str) -> int:
        """Replace the first `a=<name>` line by `line` (others removed), or insert it; the
        `after` lines go just after it, in the same edit (`a=setup` then our `a=fingerprint`).

        Returns the index of the line."""
        pos = self._positions(name)
        if not pos:
            i = self.insert_point()
            self.insert_attrs([line, *after])  # at the insert point, index i
            return i
        # In the text: the first line replaced, the others cut out.
        raw = self._text()
        low = self._lower()
        first = pos[0]
        add = "\n" + line
        for extra in after:
            add += "\n" + extra
        raw_parts = [raw[:first], add]
        low_parts = [low[:first], _low_same_length(add)]
        cut = raw.find("\n", first + 1)
        for p in pos[1:]:
            raw_parts.append(raw[cut:p])
            low_parts.append(low[cut:p])
            cut = raw.find("\n", p + 1)
        raw_parts.append(raw[cut:])
        low_parts.append(low[cut:])
        i = raw.count("\n", 0, first) + 1
        self._set_text("".join(raw_parts), "".join(low_parts))
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

    __slots__ = ("_sconn", "_sinfo", "eol", "final_eol", "media", "session", "tail")

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
        # From `parse`: (index of the o= line, index of the first c= line or -1, whether any
        # a= line is at session level), so that the engine does not re-scan the session lines
        # for them (~6 scans an exchange); None = not known, scan. Dropped by `touch()`.
        self._sinfo: tuple[int, int, bool] | None = None

    # -- parsing ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str) -> Sdp:
        text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
        nl = text.find("\n")
        # Output uses the terminator of the first line; inside, every line ends in "\n" (a
        # CRLF or mixed body is normalised once, at C speed).
        eol = "\r\n" if nl > 0 and text[nl - 1] == "\r" else "\n"
        if nl < 0:
            text = text.removesuffix("\r")  # one line, no terminator
        elif "\r" in text:
            # A CR left once every CRLF is replaced is a stray one. `in` is a memchr; two
            # `count`s (CR, CRLF) cost more than the replace itself.
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                raise SdpError("SDP syntax error: stray CR inside a line")
        final_eol = text.endswith("\n")
        body = text[:-1] if final_eol else text
        tail = 0  # empty lines after the last one, re-emitted as they came
        while body.endswith("\n"):
            body = body[:-1]
            tail += 1
        # One C-level scan validates the shape of every line (a <type>=<value> line with a
        # known type letter); only a bad body takes the slow path that names the line.
        if _BAD_LF.search(body) is not None or body[1:2] != "=":
            _raise_syntax(body.split("\n"))
        # Sections split at C speed too: everything before the first m= is session level.
        chunks = body.split("\nm=")
        session = chunks[0].split("\n")
        if session[0] != "v=0":
            raise SdpError("SDP syntax error: body must start with v=0")
        oi = sci = -1
        sconn: Connection | None = None
        for n, line in enumerate(session):
            t = line[0]
            if t == "o":
                if len(line[2:].split()) != 6:
                    raise SdpError("SDP syntax error: o= line needs six fields")
                if oi < 0:
                    oi = n
            elif t == "c":
                parts = line[2:].split()
                if len(parts) != 3:
                    raise SdpError("SDP syntax error: c= line needs nettype, addrtype and address")
                if sconn is None:
                    sconn = Connection(parts[0], parts[1], parts[2])
                    sci = n
        if oi < 0:
            raise SdpError("SDP syntax error: no o= line")
        media: list[Media] = []
        for chunk in chunks[1:]:
            # A section is kept as text (see `Media`): its m= line, then the rest. Its c= line
            # is looked up here as `connection_line()` would (c= precedes every a= line, RFC
            # 8866 §5) and cached: a call costs more than the work it wraps, here and in
            # `Media.__init__` (one section at a time, every SDP).
            e = chunk.find("\n")
            if e < 0:
                mline, raw = "m=" + chunk, "\n"
            else:
                mline, raw = "m=" + chunk[:e], chunk[e:] + "\n"
            m = Media([mline], raw)
            pa = raw.find("\na")
            pc = raw.find("\nc", 0, pa if pa >= 0 else len(raw))
            if pc >= 0:
                cline = raw[pc + 1 : raw.find("\n", pc + 1)]
                Connection.parse(cline)  # validates it (a media c= is the rarer case)
                m._cline = cline
            else:
                m._cline = None
                if sconn is None and m.port != 0:
                    raise SdpError("SDP syntax error: media without a c= line")
            media.append(m)
        sdp = cls(session, media, eol, final_eol, tail)
        sdp._sconn = sconn  # the first session c=, already parsed: cache it
        # line 0 is v=0: an a= line is always after a newline
        sdp._sinfo = (oi, sci, "\na=" in chunks[0])
        return sdp

    # -- output ----------------------------------------------------------------------------

    def lines(self) -> list[str]:
        out = self.session.copy()
        for m in self.media:
            out += m.lines
        return out

    def _lf_text(self, session: list[str], bodies: list[str]) -> str:
        """The description with "\\n" terminators (the sections' own): `to_str` and `to_bytes`
        convert it to `eol` in one C-level pass."""
        out = "\n".join([*session, *bodies])
        if self.final_eol:
            out += "\n"
        if self.tail:
            out += "\n" * self.tail
        return out

    def _encode(self, text: str) -> bytes:
        # LF -> CRLF on the encoded bytes: the same result (no UTF-8 or surrogateescape
        # sequence contains the byte 0x0A), and bytes.replace costs ~60 % of str.replace here.
        data = text.encode("utf-8", "surrogateescape")
        eol = self.eol
        if eol == "\n":
            return data
        return data.replace(b"\n", b"\r\n" if eol == "\r\n" else eol.encode())

    def to_str(self) -> str:
        out = self._lf_text(self.session, [m.body("\n") for m in self.media])
        eol = self.eol
        return out if eol == "\n" else out.replace("\n", eol)

    def render(self, bodies: list[str], session: list[str] | None = None) -> bytes:
        """`to_bytes` with section texts built by the caller ("\\n"-joined, as
        `Media.body("\\n")`) and, if given, other session lines."""
        return self._encode(self._lf_text(self.session if session is None else session, bodies))

    def to_bytes(self) -> bytes:
        return self._encode(self._lf_text(self.session, [m.body("\n") for m in self.media]))

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
        c._sinfo = self._sinfo
        return c

    # -- session-level helpers -------------------------------------------------------------

    def session_connection_index(self) -> int:
        info = self._sinfo
        if info is not None:
            return info[1]
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
        self._sinfo = None

    def origin_index(self) -> int:
        info = self._sinfo
        if info is not None:
            return info[0]
        for i, line in enumerate(self.session):
            if line[0] == "o":
                return i
        return -1  # pragma: no cover - parse() guarantees an o= line

    def has_session_attrs(self) -> bool:
        """Whether any a= line is at session level (most VoLTE bodies have none)."""
        info = self._sinfo
        if info is not None:
            return info[2]
        return any(line[0] == "a" for line in self.session)

    def session_attr(self, name: str) -> str | None:
        if not self.has_session_attrs():
            return None
        return get_attr(self.session, name)

    def session_attrs(self, name: str) -> list[str]:
        if not self.has_session_attrs():
            return []
        return get_attrs(self.session, name)

    def media_host(self, m: Media) -> str | None:
        """The connection address (no TTL/count) in effect for `m`, without building a
        `Connection` for a media-level c= (it is read for every live m-line)."""
        line = m._cline
        if line is False:  # not looked up yet (parse() fills it)
            line = m.connection_line()
        if line is not None:
            assert line is not True
            parts = line[2:].split()
            if len(parts) != 3:
                Connection.parse(line)  # raises the syntax error
            return parts[2].partition("/")[0]
        c = self._sconn
        if c is False:
            c = self.session_connection()
        assert c is not True
        return None if c is None else c.address.partition("/")[0]

    def media_connection(self, m: Media) -> Connection | None:
        """The connection data in effect for `m`: media level, else session level."""
        c = m.connection()
        return c if c is not None else self.session_connection()

    def media_attr(self, m: Media, name: str) -> str | None:
        """A media attribute, falling back to the session level (a=setup, a=fingerprint...)."""
        v = m.attr(name)
        return v if v is not None else self.session_attr(name)
