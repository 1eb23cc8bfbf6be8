"""Bencode (BEP 3), the encoding of rtpengine's ng control protocol (docs/ng_control_protocol.md
in the rtpengine sources): byte strings, integers, lists and dictionaries.

Our own ~60 lines rather than a PyPI package: the format is four productions, the packages on
PyPI are either unmaintained, untyped or C extensions, and the decoder must be strict and
bounded because it reads datagrams from the network (a reply may come from anyone who can send
to our ng socket). Strings are encoded as UTF-8; decoded strings stay `bytes` (the caller knows
which values are text).
"""

from __future__ import annotations

from typing import Final, TypeAlias

from ..errors import GatewayError

Value: TypeAlias = "bytes | int | list[Value] | dict[bytes, Value]"
Encodable: TypeAlias = (
    "str | bytes | int | list[Encodable] | tuple[Encodable, ...] | dict[str, Encodable]"
)

MAX_DEPTH: Final = 32  # rtpengine replies nest 4-6 deep; a hostile datagram may not recurse us
MAX_DIGITS: Final = 19  # any int64; also keeps int() far below CPython's digit limit
_DIGITS: Final = frozenset(b"0123456789")


class BencodeError(GatewayError):
    """Malformed bencode (the text names what, never the data)."""


def encode(value: Encodable) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes]) -> None:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        out += (str(len(value)).encode(), b":", value)
    elif isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for v in value:
            _encode(v, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        for k in sorted(value):  # BEP 3: keys as raw strings, sorted
            _encode(k, out)
            _encode(value[k], out)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Value:
    """Decode exactly one value filling `data`; BencodeError on anything else."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError("trailing data after the bencoded value")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("bencode nested too deep")
    if pos >= len(data):
        raise BencodeError("bencode truncated")
    c = data[pos]
    if c == 0x69:  # i<digits>e
        end = data.find(b"e", pos + 1)
        body = data[pos + 1 : end] if end > 0 else b""
        digits = body[1:] if body[:1] == b"-" else body
        if (
            not digits
            or len(digits) > MAX_DIGITS
            or not set(digits) <= _DIGITS
            or (digits[0] == 0x30 and len(body) > 1)
        ):
            raise BencodeError("bad bencode integer")
        return int(body), end + 1
    if c == 0x6C or c == 0x64:  # l...e, d...e
        pos += 1
        items: list[Value] = []
        while True:
            if pos >= len(data):
                raise BencodeError("bencode truncated")
            if data[pos] == 0x65:
                break
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        if c == 0x6C:
            return items, pos + 1
        if len(items) % 2:
            raise BencodeError("bencode dictionary with a key and no value")
        d: dict[bytes, Value] = {}
        for k, v in zip(items[::2], items[1::2], strict=True):
            if not isinstance(k, bytes):
                raise BencodeError("bencode dictionary key is not a string")
            d[k] = v
        return d, pos + 1
    colon = data.find(b":", pos)
    head = data[pos:colon] if colon > 0 else b""
    if (
        not head
        or len(head) > MAX_DIGITS
        or not set(head) <= _DIGITS
        or (head[0] == 0x30 and len(head) > 1)
    ):
        raise BencodeError("bad bencode string length")
    start = colon + 1
    end = start + int(head)
    if end > len(data):
        raise BencodeError("bencode string runs past the end")
    return data[start:end], end
