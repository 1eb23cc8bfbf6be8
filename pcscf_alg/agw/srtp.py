"""SRTP/SRTCP contexts over libsrtp (pylibsrtp), one per direction of a stream.

- Inbound (from the UE): unprotect with the UE's key, K11 originating / K22 terminating.
- Outbound (to the UE): protect with ours, K12 / K21 (TS 33.328 7.2.1 step 7, 7.3.1).

What pylibsrtp/libsrtp 2 cannot do is either done here (MKI) or refused with a GatewayError that
names the parameter, so that the ALG answers 488 instead of mis-handling media:
- MKI (RFC 3711 §3.1): pylibsrtp has no MKI API. The MKI sits right before the authentication
  tag and is *not* covered by it, so it is checked and cut out before unprotecting. For AEAD
  suites (RFC 7714 §8.1, §9.1) there is no separate tag and the MKI is the last field.
- Lifetime (RFC 4568 §6.1): libsrtp always applies the RFC 3711 maximum, 2^48 packets (SRTCP
  wraps at 2^31 by its index size). A shorter signalled lifetime is enforced by counting packets
  here; a longer one is invalid.
- KDR != 0, UNENCRYPTED_SRTP, UNENCRYPTED_SRTCP, UNAUTHENTICATED_SRTP: refused. libsrtp 2
  removed key re-derivation, and pylibsrtp only builds policies from the standard profiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pylibsrtp

from ..errors import GatewayError
from ..mediaplan import DEFAULT_SRTP_LIFETIME, SrtpKey

AUTH_ERRORS = frozenset(
    {
        "authentication failure",
        "replay check failed (bad index)",
        "replay check failed (index too old)",
    }
)


@dataclass(frozen=True)
class Suite:
    profile: int
    key_salt_len: int
    srtp_tag: int  # bytes after the MKI in an SRTP packet
    srtcp_tag: int  # bytes after the MKI in an SRTCP packet


# RFC 4568 §6.2 / RFC 7714 §12 suite names -> libsrtp profiles. HMAC_SHA1_32 shortens only the
# SRTP tag; SRTCP keeps 80 bits (RFC 4568 §6.2.2), and libsrtp's profile does the same.
SUITES: dict[str, Suite] = {
    "AES_CM_128_HMAC_SHA1_80": Suite(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30, 10, 10),
    "AES_CM_128_HMAC_SHA1_32": Suite(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30, 4, 10),
    "AEAD_AES_128_GCM": Suite(pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28, 0, 0),
    "AEAD_AES_256_GCM": Suite(pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44, 0, 0),
}

RTP_HEADER_LEN = 12
RTCP_HEADER_LEN = 8


class SrtpDrop(Exception):
    """A packet to drop. `auth` tells whether it counts as an authentication/replay failure."""

    def __init__(self, reason: str, *, auth: bool = False, mki: bool = False) -> None:
        super().__init__(reason)
        self.auth = auth
        self.mki = mki


def check_key(key: SrtpKey, *, outbound: bool) -> Suite:
    """Validate a key against what the gateway can honour; raise GatewayError naming the issue."""
    suite = SUITES.get(key.suite)
    if suite is None:
        raise GatewayError(f"SRTP crypto-suite {key.suite} not supported")
    if len(key.key_salt) != suite.key_salt_len:
        raise GatewayError(f"{key.suite}: key||salt must be {suite.key_salt_len} bytes")
    if key.kdr:
        raise GatewayError("SRTP session parameter KDR not supported (libsrtp 2 derives once)")
    for flag, name in (
        (key.unencrypted_srtp, "UNENCRYPTED_SRTP"),
        (key.unencrypted_srtcp, "UNENCRYPTED_SRTCP"),
        (key.unauthenticated_srtp, "UNAUTHENTICATED_SRTP"),
    ):
        if flag:
            raise GatewayError(f"SRTP session parameter {name} not supported")
    if key.lifetime is not None and not 0 < key.lifetime <= DEFAULT_SRTP_LIFETIME:
        raise GatewayError("SRTP key lifetime must be in 1..2^48 (RFC 3711 §9.2)")
    if key.mki is not None:
        if outbound:
            # Our own crypto lines never carry an MKI (pjsip-based UEs ignore it:
            # docs/e2ae-notes.md §4.4).
            raise GatewayError("MKI on the gateway's own (outbound) key not supported")
        if not 1 <= len(key.mki) <= 128:
            raise GatewayError("MKI length must be 1..128 bytes (RFC 4568 §9.2)")
    return suite


def same_key(a: SrtpKey, b: SrtpKey) -> bool:
    """Same master key and transform: the crypto context (ROC, replay window) carries over."""
    return a.suite == b.suite and a.key_salt == b.key_salt


class SrtpContext:
    """One direction's libsrtp session plus what libsrtp does not handle (MKI, short lifetime).

    `rtp` and `rtcp` are the per-packet callables chosen once at construction, so the common
    case (no MKI, default lifetime) is a direct call into pylibsrtp.
    """

    __slots__ = ("_remaining", "_session", "key", "outbound", "rtcp", "rtp", "suite")

    def __init__(self, key: SrtpKey, *, outbound: bool) -> None:
        self.suite = check_key(key, outbound=outbound)
        self.outbound = outbound
        policy = pylibsrtp.Policy(
            key=key.key_salt,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
            if outbound
            else pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=self.suite.profile,
        )
        # Replay window: libsrtp's default 128 (window_size 0), above RFC 3711 §9.3's minimum 64.
        # allow_repeat_tx stays off: re-protecting an index with different payload would reuse
        # keystream (RFC 3711 §9.1); a duplicate from the core is dropped instead.
        self._session = pylibsrtp.Session(policy)
        del policy  # the policy holds a copy of the key; the session has its own
        self.key = key
        self._remaining: int | None = None
        self.rtp: Callable[[bytes], bytes]
        self.rtcp: Callable[[bytes], bytes]
        self._bind(key)

    def _bind(self, key: SrtpKey) -> None:
        s = self._session
        self.key = key
        if key.lifetime is not None and key.lifetime < DEFAULT_SRTP_LIFETIME:
            if self._remaining is None:
                self._remaining = key.lifetime
        else:
            self._remaining = None
        rtp: Callable[[bytes], bytes]
        rtcp: Callable[[bytes], bytes]
        if self.outbound:
            rtp, rtcp = s.protect, s.protect_rtcp
        else:
            rtp, rtcp = s.unprotect, s.unprotect_rtcp
            if key.mki is not None:
                rtp = self._strip_mki(rtp, self.suite.srtp_tag, key.mki, RTP_HEADER_LEN)
                rtcp = self._strip_mki(rtcp, self.suite.srtcp_tag, key.mki, RTCP_HEADER_LEN)
        if self._remaining is not None:
            rtp, rtcp = self._counted(rtp), self._counted(rtcp)
        self.rtp, self.rtcp = rtp, rtcp

    def rekey(self, key: SrtpKey) -> bool:
        """Apply a re-signalled key. Returns True if the context (ROC, replay) was kept."""
        check_key(key, outbound=self.outbound)
        if not same_key(self.key, key):
            return False
        self._bind(key)  # the MKI or lifetime may have changed; the libsrtp session stays
        return True

    def close(self) -> None:
        """Drop the libsrtp session (libsrtp zeroises its key schedule on dealloc) and the key."""
        del self._session
        del self.key

    @staticmethod
    def _strip_mki(
        inner: Callable[[bytes], bytes], tag: int, mki: bytes, header: int
    ) -> Callable[[bytes], bytes]:
        n = len(mki)

        def unprotect(data: bytes) -> bytes:
            end = len(data) - tag
            start = end - n
            if start < header:
                raise SrtpDrop("too short for MKI", mki=True)
            if data[start:end] != mki:
                raise SrtpDrop("unknown MKI", mki=True)
            return inner(data[:start] + data[end:])

        return unprotect

    def _counted(self, inner: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        def process(data: bytes) -> bytes:
            remaining = self._remaining
            if remaining is not None:
                if remaining <= 0:
                    raise SrtpDrop("key lifetime exhausted")
                out = inner(data)
                self._remaining = remaining - 1
                return out
            return inner(data)

        return process


def classify(error: Exception) -> SrtpDrop:
    """Map a pylibsrtp error to a drop reason (authentication/replay vs anything else)."""
    if isinstance(error, SrtpDrop):
        return error
    reason = str(error)
    return SrtpDrop(reason, auth=reason in AUTH_ERRORS)
