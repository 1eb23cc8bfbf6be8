"""RFC 8122 `a=fingerprint` (which obsoletes RFC 4572).

    fingerprint-attribute = "fingerprint" ":" hash-func SP fingerprint
    hash-func   = "sha-1" / "sha-224" / "sha-256" / "sha-384" / "sha-512" / "md5" / "md2" / token
    fingerprint = 2UHEX *(":" 2UHEX)

ABNF literals are case-insensitive, so `SHA-256` is accepted (RCS clients send it) and lower-case
hex too; fingerprints are compared as (hash, digest bytes), never as text. We emit sha-256 with
upper-case hex ("SHA-256 preferred", RFC 8122 §5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from ..errors import SdpError
from ..mediaplan import Fingerprint

# Digest sizes of the registered hash functions (RFC 8122 §5, IANA "Hash Function Textual Names").
HASH_LENGTHS: Final = {
    "md2": 16,
    "md5": 16,
    "sha-1": 20,
    "sha-224": 28,
    "sha-256": 32,
    "sha-384": 48,
    "sha-512": 64,
}
# Strongest first: which of several fingerprints to verify against (docs/e2ae-notes.md §5.2).
_PREFERENCE: Final = ("sha-512", "sha-384", "sha-256", "sha-224", "sha-1")
_HASHLIB: Final = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256",
                   "sha-384": "sha384", "sha-512": "sha512"}


def parse_fingerprint(value: str) -> Fingerprint:
    """Parse the value of `a=fingerprint`; raise `SdpError` on a malformed or mis-sized digest."""
    hash_func, _, digest = value.strip().partition(" ")
    hash_func = hash_func.lower()
    digest = digest.strip()
    if not hash_func or not digest:
        raise SdpError("a=fingerprint: needs hash function and fingerprint")
    # 2UHEX *(":" 2UHEX), checked by shape (a ':' at every third position) then by fromhex,
    # which is much cheaper than a per-character test on the hot path (a 32-octet digest is 64
    # set lookups). fromhex takes ASCII hex digits of either case and skips ASCII whitespace:
    # a space in place of a digit leaves fewer than 2n digits, hence an error or < n octets.
    n = (len(digest) + 1) // 3
    if len(digest) != 3 * n - 1 or digest[2::3] != ":" * (n - 1):
        raise SdpError("a=fingerprint: fingerprint must be hex octets separated by ':'")
    try:
        raw = bytes.fromhex(digest.replace(":", ""))
    except ValueError:
        raw = b""
    if len(raw) != n:
        raise SdpError("a=fingerprint: fingerprint must be hex octets separated by ':'")
    want = HASH_LENGTHS.get(hash_func)
    if want is not None and len(raw) != want:
        raise SdpError(
            f"a=fingerprint: a {hash_func} fingerprint has {want} octets, not {len(raw)}"
        )
    return Fingerprint(hash_func, raw)


def format_fingerprint(fp: Fingerprint) -> str:
    """`<hash> AA:BB:...` as RFC 8122 writes it (same text as `Fingerprint.to_sdp()`, built
    with `bytes.hex` at C speed rather than one f-string per octet)."""
    return f"{fp.hash_func} {fp.digest.hex(':').upper()}"


def fingerprint_of(der: bytes, hash_func: str = "sha-256") -> Fingerprint:
    """The fingerprint of a DER certificate."""
    name = _HASHLIB.get(hash_func)
    if name is None:
        raise ValueError(f"unsupported hash function {hash_func}")
    return Fingerprint(hash_func, hashlib.new(name, der).digest())


def usable(fps: Iterable[Fingerprint]) -> tuple[Fingerprint, ...]:
    """The fingerprints we can verify (md2/md5 and unknown tokens are not acceptable)."""
    return tuple(fp for fp in fps if fp.hash_func in _HASHLIB)


def matches(expected: Iterable[Fingerprint], der: bytes) -> bool:
    """Does the certificate match? Checked against the set that uses the strongest hash."""
    fps = usable(expected)
    for h in _PREFERENCE:
        group = [fp.digest for fp in fps if fp.hash_func == h]
        if group:
            return fingerprint_of(der, h).digest in group
    return False
