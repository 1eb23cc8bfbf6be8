"""The gateway's SRTP contexts (libsrtp) against an independent SRTP implementation
(tests/srtp_ref.py, written from RFC 3711 / RFC 7714 on `cryptography`): every suite the
gateway offers, both directions, across a sequence-number wrap (ROC), SRTCP, MKI, tampering."""

from __future__ import annotations

import os
import struct

import pytest

from pcscf_alg.agw.srtp import SrtpContext
from pcscf_alg.mediaplan import SrtpKey
from tests.srtp_ref import SUITES, RefSrtp, kdf

SUITE_NAMES = sorted(SUITES)


def rtp(seq: int, ssrc: int = 0x1234ABCD, payload: bytes = b"", csrc: int = 0) -> bytes:
    first = 0x80 | csrc
    head = struct.pack("!BBHII", first, 96, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc)
    head += b"".join(struct.pack("!I", 0x100 + n) for n in range(csrc))
    return head + (payload or bytes([seq & 0xFF]) * 33)


def rtcp_sr(ssrc: int = 0x1234ABCD) -> bytes:
    # RFC 3550 sender report, no report blocks
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 1, 2, 3, 4, 5)


def key_for(suite: str) -> bytes:
    s = SUITES[suite]
    return os.urandom(s.key_len + s.salt_len)


def test_kdf_matches_rfc3711_appendix_b3() -> None:
    # RFC 3711 B.3 test vectors (AES-CM PRF, master key and salt given, KDR 0)
    mk = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
    ms = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
    assert kdf(mk, ms, 0, 16) == bytes.fromhex("C61E7A93744F39EE10734AFE3FF7A087")
    assert kdf(mk, ms, 2, 14) == bytes.fromhex("30CBBC08863D8C85D49DB34A9AE1")
    assert kdf(mk, ms, 1, 20)[:20] == bytes.fromhex(
        "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"
    )


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_independent_sender_to_gateway_across_a_rollover(suite: str) -> None:
    ks = key_for(suite)
    ue = RefSrtp(suite, ks)
    gw = SrtpContext(SrtpKey(suite, ks), outbound=False)
    for seq in (65530, 65531, 65533, 65535, 0, 1, 2, 3, 70000 & 0xFFFF):
        pkt = rtp(seq, csrc=1 if seq % 2 else 0)
        assert gw.rtp(ue.protect(pkt)) == pkt
    assert ue.roc == 1


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_gateway_sender_to_independent_receiver_across_a_rollover(suite: str) -> None:
    ks = key_for(suite)
    gw = SrtpContext(SrtpKey(suite, ks), outbound=True)
    ue = RefSrtp(suite, ks)
    for seq in (65532, 65534, 65535, 0, 2, 5):
        pkt = rtp(seq, ssrc=0x0BADCAFE)
        protected = gw.rtp(pkt)
        assert protected != pkt
        assert len(protected) == len(pkt) + (16 if SUITES[suite].aead else SUITES[suite].srtp_tag)
        assert ue.unprotect(protected) == pkt
    assert ue.roc == 1


@pytest.mark.parametrize("suite", [s for s in SUITE_NAMES if not SUITES[s].aead])
def test_srtcp_both_ways(suite: str) -> None:
    ks = key_for(suite)
    ue_tx, gw_rx = RefSrtp(suite, ks), SrtpContext(SrtpKey(suite, ks), outbound=False)
    for _ in range(3):
        assert gw_rx.rtcp(ue_tx.protect_rtcp(rtcp_sr())) == rtcp_sr()
    ks2 = key_for(suite)
    gw_tx, ue_rx = SrtpContext(SrtpKey(suite, ks2), outbound=True), RefSrtp(suite, ks2)
    for n in range(3):
        out = gw_tx.rtcp(rtcp_sr(0xFEED0000 + n))
        # 80-bit SRTCP tag for both AES-CM suites (RFC 4568 §6.2.2) after E||index
        assert len(out) == len(rtcp_sr()) + 4 + 10
        assert ue_rx.unprotect_rtcp(out) == rtcp_sr(0xFEED0000 + n)


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_ue_key_with_mki_is_checked_and_stripped(suite: str) -> None:
    ks = key_for(suite)
    mki = b"\x00\x07"
    ue = RefSrtp(suite, ks, mki=mki)
    gw = SrtpContext(SrtpKey(suite, ks, mki=mki), outbound=False)
    pkt = rtp(10)
    assert gw.rtp(ue.protect(pkt)) == pkt
    wrong = RefSrtp(suite, ks, mki=b"\x00\x08")
    with pytest.raises(Exception, match="MKI"):
        gw.rtp(wrong.protect(rtp(11)))


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_tampered_or_wrong_key_packets_are_refused(suite: str) -> None:
    ks = key_for(suite)
    ue = RefSrtp(suite, ks)
    gw = SrtpContext(SrtpKey(suite, ks), outbound=False)
    bad = bytearray(ue.protect(rtp(100)))
    bad[15] ^= 0x01  # a payload bit
    with pytest.raises(Exception):  # noqa: B017 - libsrtp's error type is not ours to pin
        gw.rtp(bytes(bad))
    other = RefSrtp(suite, key_for(suite))
    with pytest.raises(Exception):  # noqa: B017
        gw.rtp(other.protect(rtp(101)))
    # the context is intact: the genuine next packet still passes
    assert gw.rtp(ue.protect(rtp(102))) == rtp(102)
