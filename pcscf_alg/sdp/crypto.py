"""RFC 4568 SDP Security Descriptions: the `a=crypto` attribute.

Grammar (RFC 4568 §9.1/§9.2, docs/e2ae-notes.md §4.1):

    a=crypto:<tag> 1*WSP <crypto-suite> 1*WSP <key-params> *(1*WSP <session-param>)
    key-params    = key-param *(";" key-param)          ; several keys need an MKI each
    key-param     = "inline:" key-salt ["|" lifetime] ["|" mki-value ":" mki-length]

We *understand* every suite of the IANA registry (so a UE offering AES_256_CM or F8 lines is
parsed, its key lengths checked, and the line skipped rather than refused), but *select and
offer* only the suites the gateway can run: pylibsrtp 1.0.0 exposes AES_CM_128_HMAC_SHA1_80/_32
and AEAD_AES_128/256_GCM, and no AES-192/256-CM, F8 or SEED profile.

Nothing in this module ever puts key material into an exception text or a `repr`.
"""

from __future__ import annotations

import binascii
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

from ..errors import SdpError
from ..mediaplan import SrtpKey


@dataclass(frozen=True, slots=True)
class Suite:
    """One SRTP crypto suite: sizes in bytes (RFC 3711 §8.2, RFC 6188, RFC 7714, RFC 5669)."""

    name: str
    key_len: int
    salt_len: int
    srtp_tag_len: int
    srtcp_tag_len: int
    rfc: str
    gateway: bool = False  # pylibsrtp 1.0.0 can run it
    aead: bool = False
    strength: int = 0  # rank used by the `strongest` selection rule; higher is stronger

    @property
    def key_salt_len(self) -> int:
        return self.key_len + self.salt_len


def _s(*args: object, **kw: object) -> tuple[str, Suite]:
    suite = Suite(*args, **kw)  # type: ignore[arg-type]
    return suite.name, suite


# The IANA "SRTP Crypto Suite Registrations" (sdp-security-descriptions), docs/e2ae-notes.md §4.2.
SUITES: Final[Mapping[str, Suite]] = MappingProxyType(
    dict(
        (
            _s("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, 10, "RFC 4568", gateway=True, strength=20),
            # RFC 4568 §6.2.2: a 32-bit tag on SRTP but the 80-bit tag on SRTCP.
            _s("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, 10, "RFC 4568", gateway=True, strength=10),
            _s("F8_128_HMAC_SHA1_80", 16, 14, 10, 10, "RFC 4568", strength=15),
            # Not in the registry, but some stacks mis-spell F8 with _32 (docs/e2ae-notes.md §4.2):
            # understand it so that such a line is skipped, not refused.
            _s("F8_128_HMAC_SHA1_32", 16, 14, 4, 10, "RFC 4568 (mis-spelt)", strength=5),
            _s("SEED_CTR_128_HMAC_SHA1_80", 16, 14, 10, 10, "RFC 5669", strength=15),
            _s("SEED_128_CCM_80", 16, 12, 10, 10, "RFC 5669", aead=True, strength=15),
            _s("SEED_128_GCM_96", 16, 12, 12, 12, "RFC 5669", aead=True, strength=15),
            _s("AES_192_CM_HMAC_SHA1_80", 24, 14, 10, 10, "RFC 6188", strength=30),
            _s("AES_192_CM_HMAC_SHA1_32", 24, 14, 4, 10, "RFC 6188", strength=25),
            _s("AES_256_CM_HMAC_SHA1_80", 32, 14, 10, 10, "RFC 6188", strength=40),
            _s("AES_256_CM_HMAC_SHA1_32", 32, 14, 4, 10, "RFC 6188", strength=35),
            _s("AEAD_AES_128_GCM", 16, 12, 16, 16, "RFC 7714", gateway=True, aead=True,
               strength=50),
            _s("AEAD_AES_256_GCM", 32, 12, 16, 16, "RFC 7714", gateway=True, aead=True,
               strength=60),
        )
    )
)

# What the gateway can run, in our default preference order. TS 33.328 makes
# AES_CM_128_HMAC_SHA1_80 the transform every UE supports, so it is offered first.
GATEWAY_SUITES: Final[tuple[str, ...]] = (
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
)

# RFC 4568 §6.3 session parameters we understand (name part before '=').
_FLAG_PARAMS: Final = frozenset(("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP"))
_VALUE_PARAMS: Final = frozenset(("KDR", "FEC_ORDER", "FEC_KEY", "WSH"))


def b64decode_lenient(text: str) -> bytes:
    """Base64 with or without its trailing padding (docs/e2ae-notes.md §4.5: padding is often
    lost)."""
    body = text.rstrip("=")
    if not body or len(body) % 4 == 1:
        raise SdpError("a=crypto: key is not valid base64")
    try:
        # strict mode refuses any character outside the alphabet and misplaced padding
        return binascii.a2b_base64(body + "=" * (-len(body) % 4), strict_mode=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise SdpError("a=crypto: key is not valid base64") from None


class KeyParam(NamedTuple):
    """One key-param. `key_salt` is empty for a key method other than `inline`.

    A NamedTuple rather than a frozen dataclass: both are immutable values, but on the hot path
    a frozen dataclass costs ~2 µs to build against ~0.3 µs here.
    """

    method: str
    key_salt: bytes
    lifetime: int | None = None
    mki_value: int | None = None
    mki_length: int | None = None

    def __repr__(self) -> str:
        mki = f", mki={self.mki_value}:{self.mki_length}" if self.mki_length else ""
        return f"KeyParam({self.method}:<redacted>, lifetime={self.lifetime}{mki})"

    @property
    def mki(self) -> bytes | None:
        if self.mki_value is None or self.mki_length is None:
            return None
        return self.mki_value.to_bytes(self.mki_length, "big")

    def to_sdp(self) -> str:
        # binascii directly: base64.b64encode is a Python wrapper around the same call.
        out = f"{self.method}:{binascii.b2a_base64(self.key_salt, newline=False).decode()}"
        if self.lifetime is not None:
            lt = self.lifetime
            out += f"|2^{lt.bit_length() - 1}" if lt & (lt - 1) == 0 else f"|{lt}"
        if self.mki_length is not None:
            out += f"|{self.mki_value}:{self.mki_length}"
        return out


class CryptoAttr(NamedTuple):
    """A parsed `a=crypto` line. `known` is False for a suite outside the IANA registry.

    Immutable (NamedTuple, for the same hot-path reason as `KeyParam`); its repr hides keys.
    """

    tag: int
    suite: str
    keys: tuple[KeyParam, ...]
    params: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return self.suite in SUITES

    @property
    def key(self) -> KeyParam:
        return self.keys[0]

    def to_sdp(self) -> str:
        """The attribute value (what follows `a=crypto:`)."""
        if len(self.keys) == 1 and not self.params:  # our own lines: skip the joins
            return f"{self.tag} {self.suite} {self.keys[0].to_sdp()}"
        keys = ";".join(k.to_sdp() for k in self.keys)
        params = "".join(" " + p for p in self.params)
        return f"{self.tag} {self.suite} {keys}{params}"

    def line(self) -> str:
        return "a=crypto:" + self.to_sdp()

    def param(self, name: str) -> str | None:
        """The value of session parameter `name` ('' for a flag), or None when absent."""
        for p in self.params:
            k, eq, v = p.partition("=")
            if k == name:
                return v if eq else ""
        return None

    def gateway_problem(self) -> str | None:
        """Why the gateway cannot run this line, or None when it can.

        RFC 4568 §6.3 (and docs/e2ae-notes.md §4.3): a line with a session parameter the
        receiver does not support is unusable as a whole, so such lines are skipped, not
        "fixed".
        """
        info = SUITES.get(self.suite)
        if info is None:
            return f"unknown crypto suite {self.suite}"
        if not info.gateway:
            return f"suite {self.suite} not supported by the gateway"
        if len(self.keys) != 1:
            return "several master keys (MKI) not supported"
        k = self.keys[0]
        if k.method != "inline":
            return f"key method {k.method} not supported"
        # A single key with an MKI is runnable: the gateway checks and strips the MKI of what the
        # UE sends (pylibsrtp has no MKI support; issue 5). We never *generate* an MKI
        # (docs/e2ae-notes.md §4.4: pjsip drops it), so only the UE's own lines (K11/K22) can
        # carry one.
        for p in self.params:
            name, _, value = p.partition("=")
            if name == "KDR":
                if value != "0":
                    return "KDR other than 0 not supported"
            elif name == "WSH":
                continue  # a replay-window hint: harmless
            elif name in _FLAG_PARAMS or name in _VALUE_PARAMS:
                return f"session parameter {name} not supported"
            else:
                return "unknown session parameter"
        return None

    def to_srtp_key(self) -> SrtpKey:
        k = self.keys[0]
        if not self.params:  # the common case: no session parameter to look up
            mki = k.mki if k.mki_length is not None else None
            if _SRTP_FAST:
                # The frozen dataclass's generated __init__ runs one `object.__setattr__` per
                # field (~2.3 µs for nine); filling the new instance's __dict__ builds the same
                # object (class, fields, equality, hash, repr) in ~0.6 µs. Two per exchange.
                sk: SrtpKey = _new_object(SrtpKey)
                d = sk.__dict__
                d["suite"] = self.suite
                d["key_salt"] = k.key_salt
                d["tag"] = self.tag
                d["lifetime"] = k.lifetime
                d["mki"] = mki
                d["kdr"] = 0
                d["unencrypted_srtp"] = False
                d["unencrypted_srtcp"] = False
                d["unauthenticated_srtp"] = False
                return sk
            # positional: (suite, key_salt, tag, lifetime, mki, kdr, unencrypted_srtp,
            # unencrypted_srtcp, unauthenticated_srtp); keywords cost more on this dataclass
            return SrtpKey(self.suite, k.key_salt, self.tag, k.lifetime, mki, 0, False, False,
                           False)  # pragma: no cover - SrtpKey changed shape
        kdr = self.param("KDR")
        return SrtpKey(
            suite=self.suite,
            key_salt=k.key_salt,
            tag=self.tag,
            lifetime=k.lifetime,
            mki=k.mki,
            kdr=int(kdr) if kdr else 0,
            unencrypted_srtp=self.param("UNENCRYPTED_SRTP") is not None,
            unencrypted_srtcp=self.param("UNENCRYPTED_SRTCP") is not None,
            unauthenticated_srtp=self.param("UNAUTHENTICATED_SRTP") is not None,
        )

    @classmethod
    def from_srtp_key(cls, key: SrtpKey) -> CryptoAttr:
        """Our own line for a key we generated earlier (re-offers keep tag, suite and key)."""
        return cls(key.tag, key.suite, (KeyParam("inline", key.key_salt),))


# The hot paths build KeyParam/CryptoAttr with `tuple.__new__` and every field given, as
# NamedTuple._make does: the generated `__new__` is a Python-level function (~0.47 µs a call
# here, against ~0.11 µs), and an exchange builds several of them.
_tuple_new: Final = tuple.__new__

# `to_srtp_key` fills a new SrtpKey's __dict__ only while SrtpKey is a plain frozen dataclass
# with exactly these fields (no __post_init__, no __slots__); otherwise it uses the constructor.
_new_object = object.__new__
_SRTP_FAST: Final = (
    not hasattr(SrtpKey, "__post_init__") and not hasattr(SrtpKey, "__slots__")
    and tuple(f.name for f in dataclasses.fields(SrtpKey)) == (
        "suite", "key_salt", "tag", "lifetime", "mki", "kdr", "unencrypted_srtp",
        "unencrypted_srtcp", "unauthenticated_srtp")
)


def _parse_lifetime(text: str) -> int:
    if text.startswith("2^"):
        exp = text[2:]
        if not exp.isdigit() or not 0 < int(exp) <= 64:
            raise SdpError("a=crypto: bad key lifetime")
        return 1 << int(exp)
    if not text.isdigit() or int(text) == 0:
        raise SdpError("a=crypto: bad key lifetime")
    return int(text)


def _parse_key_param(text: str, suite: Suite | None) -> KeyParam:
    method, colon, info = text.partition(":")
    if not colon or not method or not info:
        raise SdpError("a=crypto: key-param must be <method>:<key-info>")
    if method != "inline":
        # RFC 4568 allows extension key methods; we keep the line, the gateway cannot use it.
        return KeyParam(method, b"")
    if "|" not in info:  # the common case: no lifetime, no MKI
        key_salt = b64decode_lenient(info)
        if suite is not None and len(key_salt) != suite.key_salt_len:
            raise SdpError(
                f"a=crypto: {suite.name} needs a {suite.key_salt_len}-byte key||salt, "
                f"got {len(key_salt)} bytes"
            )
        return KeyParam("inline", key_salt)
    parts = info.split("|")
    if len(parts) > 3:
        raise SdpError("a=crypto: too many '|' fields in key-info")
    key_salt = b64decode_lenient(parts[0])
    if suite is not None and len(key_salt) != suite.key_salt_len:
        raise SdpError(
            f"a=crypto: {suite.name} needs a {suite.key_salt_len}-byte key||salt, "
            f"got {len(key_salt)} bytes"
        )
    lifetime = mki_value = mki_length = None
    for part in parts[1:]:
        if ":" in part:
            if mki_length is not None:
                raise SdpError("a=crypto: two MKI fields")
            v, _, ln = part.partition(":")
            if not v.isdigit() or not ln.isdigit() or len(ln) > 3 or not 1 <= int(ln) <= 128:
                raise SdpError("a=crypto: bad MKI (value:length, length 1..128)")
            mki_value, mki_length = int(v), int(ln)
            if mki_value.bit_length() > 8 * mki_length:
                raise SdpError("a=crypto: MKI value does not fit its length")
        else:
            if lifetime is not None or mki_length is not None:
                raise SdpError("a=crypto: lifetime must precede MKI and appear once")
            lifetime = _parse_lifetime(part)
    return KeyParam("inline", key_salt, lifetime, mki_value, mki_length)


def parse_crypto(value: str) -> CryptoAttr:
    """Parse the value of an `a=crypto` attribute; raise `SdpError` with a key-free reason."""
    parts = value.split()
    if len(parts) < 3:
        raise SdpError("a=crypto: needs tag, suite and key-params")
    tag_s, suite_name, key_params = parts[0], parts[1], parts[2]
    if len(tag_s) > 9 or not tag_s.isdigit() or not tag_s.isascii():
        raise SdpError("a=crypto: tag must be 1 to 9 digits")
    suite = SUITES.get(suite_name)
    if suite is None and (not suite_name.replace("_", "").isalnum() or not suite_name.isascii()):
        raise SdpError("a=crypto: bad crypto-suite name")
    if (suite is not None and key_params.startswith("inline:") and "|" not in key_params
            and ";" not in key_params and len(key_params) % 4 == 3 and len(key_params) > 7
            and key_params[-1] != "="):
        # The common case, inlined: one inline key, no lifetime or MKI, unpadded base64 whose
        # length needs no padding (what `_parse_key_param` + `b64decode_lenient` would do).
        try:
            key_salt = binascii.a2b_base64(key_params[7:], strict_mode=True)
        except ValueError:
            raise SdpError("a=crypto: key is not valid base64") from None
        if len(key_salt) != suite.key_len + suite.salt_len:
            raise SdpError(
                f"a=crypto: {suite.name} needs a {suite.key_salt_len}-byte key||salt, "
                f"got {len(key_salt)} bytes"
            )
        keys: tuple[KeyParam, ...] = (_tuple_new(KeyParam, ("inline", key_salt, None, None, None)),)
    elif ";" not in key_params:  # one key
        keys = (_parse_key_param(key_params, suite),)
    else:
        keys = tuple(_parse_key_param(k, suite) for k in key_params.split(";"))
        if any(k.method == "inline" and k.mki_length is None for k in keys):
            raise SdpError("a=crypto: several keys need an MKI each (RFC 4568 §6.1)")
    if len(parts) == 3:
        return _tuple_new(CryptoAttr, (int(tag_s), suite_name, keys, ()))
    params = tuple(parts[3:])
    for p in params:
        name, eq, v = p.partition("=")
        if name == "KDR" and (not eq or not v.isdigit() or int(v) > 24):
            raise SdpError("a=crypto: KDR must be 0..24")
        if name == "WSH" and (not eq or not v.isdigit() or int(v) < 64):
            raise SdpError("a=crypto: WSH must be at least 64")
        if name in _FLAG_PARAMS and eq:
            raise SdpError(f"a=crypto: {name} takes no value")
    return CryptoAttr(int(tag_s), suite_name, keys, params)


def generate_crypto(tag: int, suite: str, rng: Callable[[int], bytes]) -> CryptoAttr:
    """A fresh master key and salt for `suite`, with no lifetime and no MKI.

    TS 33.328 7.2.1 step 8 / 7.3.1 step 4: "The optional key lifetime field shall be omitted";
    docs/e2ae-notes.md §4.4: never generate an MKI.
    """
    info = SUITES.get(suite)
    if info is None or not info.gateway:
        raise ValueError(f"cannot generate keys for suite {suite}")
    n = info.key_len + info.salt_len  # not the `key_salt_len` property: a call saved per key
    key_salt = rng(n)
    if len(key_salt) != n:
        raise ValueError("random source returned the wrong number of bytes")
    return _tuple_new(CryptoAttr, (tag, suite, (_tuple_new(KeyParam, ("inline", key_salt, None,
                                                                     None, None)),), ()))


def redact(text: str) -> str:
    """Replace every `inline:` key (up to `|`, `;`, space or end of line) by `<redacted>`."""
    out: list[str] = []
    pos = 0
    while True:
        i = text.find("inline:", pos)
        if i < 0:
            out.append(text[pos:])
            return "".join(out)
        j = i + 7
        out.append(text[pos:j])
        out.append("<redacted>")
        n = len(text)
        while j < n and text[j] not in "|; \t\r\n":
            j += 1
        pos = j
