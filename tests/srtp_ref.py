"""An independent SRTP/SRTCP implementation for the interop tests, written from RFC 3711 and
RFC 7714 on top of `cryptography`'s AES, HMAC and AES-GCM, sharing no code with libsrtp.

The gateway runs libsrtp (pylibsrtp); so do the other media peers of the test suite. Tests
where both ends are libsrtp cannot see a mistake both ends would make (key/salt order, profile
mapping, IV layout, ROC handling, where the MKI goes): against this one they can.

Scope: the four suites the gateway offers (AES_CM_128_HMAC_SHA1_80/_32, AEAD_AES_128/256_GCM),
KDR 0, optional MKI; SRTCP for the AES-CM suites. Not for production: no replay protection.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field
from hashlib import sha1

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass(frozen=True)
class RefSuite:
    key_len: int
    salt_len: int
    srtp_tag: int  # 0 for AEAD (the GCM tag is part of the ciphertext)
    srtcp_tag: int
    aead: bool


SUITES = {
    "AES_CM_128_HMAC_SHA1_80": RefSuite(16, 14, 10, 10, False),
    # RFC 4568 §6.2.2: the 32-bit tag is for SRTP only, SRTCP keeps 80 bits
    "AES_CM_128_HMAC_SHA1_32": RefSuite(16, 14, 4, 10, False),
    "AEAD_AES_128_GCM": RefSuite(16, 12, 0, 0, True),
    "AEAD_AES_256_GCM": RefSuite(32, 12, 0, 0, True),
}

LABEL_RTP_KEY, LABEL_RTP_AUTH, LABEL_RTP_SALT = 0, 1, 2
LABEL_RTCP_KEY, LABEL_RTCP_AUTH, LABEL_RTCP_SALT = 3, 4, 5


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def kdf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 §4.3.1/§4.3.3 with KDR 0: x = (label || 0^48) XOR master_salt (112 bits, a
    96-bit GCM salt times 2^16: RFC 7714 §11 erratum 4938), keystream of AES-CM at x * 2^16."""
    x = bytearray(master_salt.ljust(14, b"\0"))
    x[7] ^= label  # key_id = label (8 bits) || r (48 bits) aligned to the salt's low end
    return _aes_ctr(master_key, bytes(x) + b"\0\0", b"\0" * length)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _rtp_header_len(packet: bytes) -> int:
    cc = packet[0] & 0x0F
    n = 12 + 4 * cc
    if packet[0] & 0x10:  # header extension (RFC 3550 §5.3.1)
        (words,) = struct.unpack_from("!H", packet, n + 2)
        n += 4 + 4 * words
    return n


@dataclass
class RefSrtp:
    """One direction's context: `protect` on the sending side, `unprotect` on the receiving
    one (each keeps its own rollover counter, RFC 3711 §3.3.1 and appendix A)."""

    suite_name: str
    key_salt: bytes
    mki: bytes | None = None
    roc: int = 0
    s_l: int | None = None  # highest sequence number seen (receiver) or sent (sender)
    srtcp_index: int = 0
    suite: RefSuite = field(init=False)

    def __post_init__(self) -> None:
        s = self.suite = SUITES[self.suite_name]
        mk, ms = self.key_salt[: s.key_len], self.key_salt[s.key_len :]
        assert len(ms) == s.salt_len, "key||salt of the wrong length"
        self.k_e = kdf(mk, ms, LABEL_RTP_KEY, s.key_len)
        self.k_s = kdf(mk, ms, LABEL_RTP_SALT, s.salt_len)
        self.k_a = kdf(mk, ms, LABEL_RTP_AUTH, 20)
        self.kc_e = kdf(mk, ms, LABEL_RTCP_KEY, s.key_len)
        self.kc_s = kdf(mk, ms, LABEL_RTCP_SALT, s.salt_len)
        self.kc_a = kdf(mk, ms, LABEL_RTCP_AUTH, 20)

    # -- SRTP -------------------------------------------------------------------------------

    def _cm_iv(self, salt: bytes, ssrc: int, index: int) -> bytes:
        # RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
        block = struct.pack("!4xI", ssrc) + index.to_bytes(6, "big") + b"\0\0"
        return _xor(salt + b"\0\0", block)

    def _gcm_iv(self, ssrc: int, roc: int, seq: int) -> bytes:
        # RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt (96 bits)
        return _xor(struct.pack("!HIIH", 0, ssrc, roc, seq), self.k_s)

    def protect(self, packet: bytes) -> bytes:
        seq, _, ssrc = struct.unpack_from("!HII", packet, 2)
        if self.s_l is not None and seq < self.s_l and self.s_l - seq > 0x8000:
            self.roc += 1  # the sequence number wrapped
        self.s_l = seq
        h = _rtp_header_len(packet)
        header, payload = packet[:h], packet[h:]
        mki = self.mki or b""
        if self.suite.aead:
            sealed = AESGCM(self.k_e).encrypt(self._gcm_iv(ssrc, self.roc, seq), payload, header)
            return header + sealed + mki  # RFC 7714 §8.1: the MKI is the last field
        index = (self.roc << 16) | seq
        body = header + _aes_ctr(self.k_e, self._cm_iv(self.k_s, ssrc, index), payload)
        tag = hmac.new(self.k_a, body + struct.pack("!I", self.roc), sha1).digest()
        return body + mki + tag[: self.suite.srtp_tag]

    def _guess_roc(self, seq: int) -> int:
        # RFC 3711 appendix A
        if self.s_l is None:
            return self.roc
        if self.s_l < 0x8000:
            return self.roc - 1 if seq - self.s_l > 0x8000 else self.roc
        return self.roc + 1 if self.s_l - 0x8000 > seq else self.roc

    def unprotect(self, packet: bytes) -> bytes:
        seq, _, ssrc = struct.unpack_from("!HII", packet, 2)
        h = _rtp_header_len(packet)
        mki_len = len(self.mki or b"")
        v = self._guess_roc(seq)
        if self.suite.aead:
            end = len(packet) - mki_len
            if mki_len and packet[end:] != self.mki:
                raise ValueError("MKI mismatch")
            header = packet[:h]
            plain = AESGCM(self.k_e).decrypt(self._gcm_iv(ssrc, v, seq), packet[h:end], header)
        else:
            tag_len = self.suite.srtp_tag
            body = packet[: len(packet) - tag_len - mki_len]
            tag = packet[len(packet) - tag_len :]
            if mki_len and packet[len(body) : len(body) + mki_len] != self.mki:
                raise ValueError("MKI mismatch")
            want = hmac.new(self.k_a, body + struct.pack("!I", v), sha1).digest()[:tag_len]
            if not hmac.compare_digest(want, tag):
                raise ValueError("authentication failure")
            index = (v << 16) | seq
            plain = body[h:]
            plain = _aes_ctr(self.k_e, self._cm_iv(self.k_s, ssrc, index), plain)
            header = body[:h]
        if v > self.roc or self.s_l is None or (v == self.roc and seq > self.s_l):
            self.roc, self.s_l = v, seq
        return header + plain

    # -- SRTCP (AES-CM suites) --------------------------------------------------------------

    def protect_rtcp(self, packet: bytes) -> bytes:
        assert not self.suite.aead, "SRTCP for AEAD suites is not implemented here"
        (ssrc,) = struct.unpack_from("!I", packet, 4)
        index = self.srtcp_index
        self.srtcp_index += 1
        enc = _aes_ctr(self.kc_e, self._cm_iv(self.kc_s, ssrc, index), packet[8:])
        body = packet[:8] + enc + struct.pack("!I", 0x80000000 | index)  # E flag: encrypted
        tag = hmac.new(self.kc_a, body, sha1).digest()[: self.suite.srtcp_tag]
        return body + (self.mki or b"") + tag

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        assert not self.suite.aead, "SRTCP for AEAD suites is not implemented here"
        tag_len, mki_len = self.suite.srtcp_tag, len(self.mki or b"")
        body = packet[: len(packet) - tag_len - mki_len]
        want = hmac.new(self.kc_a, body, sha1).digest()[:tag_len]
        if not hmac.compare_digest(want, packet[len(packet) - tag_len :]):
            raise ValueError("authentication failure")
        (e_index,) = struct.unpack_from("!I", body, len(body) - 4)
        (ssrc,) = struct.unpack_from("!I", body, 4)
        enc = body[8:-4]
        if not e_index & 0x80000000:
            return body[:-4]
        iv = self._cm_iv(self.kc_s, ssrc, e_index & 0x7FFFFFFF)
        return body[:8] + _aes_ctr(self.kc_e, iv, enc)
