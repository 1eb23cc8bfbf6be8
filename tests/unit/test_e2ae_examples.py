"""The spec examples are reproduced: 04 -> 05 (offer to the core), then 06 (answer to UE A);
07 -> 08 (offer to UE B), then 09 -> 10 (answer to the core). Byte for byte, except keys and the
gateway's certificate fingerprint (ours is a test value); ports and addresses are the examples'
because the fake reservations use them."""

from __future__ import annotations

import re

from pcscf_alg.e2ae import E2aeFlags, apply_answer, apply_offer, plan_offer
from pcscf_alg.mediaplan import (
    Direction,
    Endpoint,
    MediaKind,
    MsrpMode,
    SetupRole,
    StreamMode,
    StreamReservation,
)
from pcscf_alg.policy import strict_policy
from pcscf_alg.sdp.crypto import parse_crypto
from pcscf_alg.sdp.fingerprint import parse_fingerprint
from tests.spec_examples import spec_example

from .sdp.helpers import AGW_FP, counter_rng, oracle_check

ALL = E2aeFlags(ue_rtp=True, ue_msrp=True, net_rtp=True, net_msrp=True)

def body(n: int) -> bytes:
    head, _, sdp = spec_example(n).read_bytes().partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    assert m is not None and int(m.group(1)) == len(sdp)
    return sdp


def strip_secrets(data: bytes) -> str:
    text = re.sub(r"inline:[A-Za-z0-9+/=]+", "inline:KEY", data.decode())
    return re.sub(r"a=fingerprint:sha-256 [0-9A-F:]+", "a=fingerprint:sha-256 FP", text)


# The core's answer to example 05 is not in the examples; this is the one example 06 implies.
CORE_ANSWER_TO_05 = (
    b"v=0\r\no=- 1200457 1200457 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 96 100\r\nb=AS:41\r\nb=RS:600\r\nb=RR:2000\r\n"
    b"a=rtpmap:96 AMR-WB/16000/1\r\na=fmtp:96 mode-change-capability=2;max-red=220\r\n"
    b"a=rtpmap:100 telephone-event/16000\r\na=fmtp:100 0-15\r\na=ptime:20\r\na=maxptime:240\r\n"
    b"a=sendrecv\r\nm=message 20010 TCP/MSRP *\r\n"
    b"a=accept-types:message/cpim application/im-iscomposing+xml\r\n"
    b"a=accept-wrapped-types:text/plain message/imdn+xml\r\n"
    b"a=path:msrp://192.0.2.99:20010/j38sk2m;tcp\r\na=setup:active\r\na=msrp-cema\r\n"
    b"a=sendrecv\r\n"
)


def reservations(access: int, core: int) -> dict[int, StreamReservation]:
    return {
        0: StreamReservation(0, MediaKind.RTP, Endpoint("203.0.113.20", access, access + 1),
                             Endpoint("192.0.2.20", core, core + 1)),
        1: StreamReservation(1, MediaKind.MSRP, Endpoint("203.0.113.20", access + 10),
                             Endpoint("192.0.2.20", core + 10), AGW_FP),
    }


def test_originating_04_to_05_and_06() -> None:
    rng = counter_rng()
    plan = plan_offer(body(4), Direction.ORIGINATING, ALL, strict_policy(),
                      "sip:+15551230001@ims.example.net")
    assert [d.mode for d in plan.decisions] == [StreamMode.E2AE, StreamMode.E2AE]
    assert [r.want_local_fingerprint for r in plan.requests] == [False, True]
    res = apply_offer(plan, reservations(40000, 30000), rng)
    assert res.sdp == body(5)  # exactly, keys and all: nothing secret goes to the core
    oracle_check(res.sdp)

    ans = apply_answer(res.state, CORE_ANSWER_TO_05, rng)
    assert strip_secrets(ans.sdp) == strip_secrets(body(6))
    oracle_check(ans.sdp)
    audio, msrp = ans.plan.streams
    # K11 is UE A's first line; K12 is ours, tag and suite of K11, no lifetime (7.2.1 step 8)
    k11 = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC")
    assert audio.rx_key == k11.to_srtp_key()
    assert audio.tx_key is not None and audio.tx_key.tag == 1 and audio.tx_key.lifetime is None
    assert audio.tx_key.key_salt != k11.key.key_salt
    assert audio.ue_remote == Endpoint("198.51.100.10", 49170, 49171)
    assert audio.core_remote == Endpoint("192.0.2.99", 20000, 20001)
    assert msrp.ue_fingerprint == (parse_fingerprint(
        "sha-256 20:D8:F4:8A:76:9B:45:C5:BE:FF:D5:C0:3F:45:25:44:E5:BE:C4:25:60:61:1A:39:AC:"
        "26:F1:A1:BD:07:59:18"),)
    assert msrp.msrp_mode is MsrpMode.AGNOSTIC
    assert msrp.access_setup is SetupRole.PASSIVE  # example 06: a=setup:passive
    assert msrp.core_setup is SetupRole.PASSIVE  # the core answered active
    assert f"a=fingerprint:{AGW_FP.to_sdp()}" in ans.sdp.decode()
    assert b"3ge2ae" not in ans.sdp  # docs/e2ae-notes.md §3.1: not added to answers (NOTE 3)


def test_terminating_07_to_08_and_09_to_10() -> None:
    rng = counter_rng()
    plan = plan_offer(body(7), Direction.TERMINATING, ALL, strict_policy(), "tel:+15551230002")
    res = apply_offer(plan, reservations(40100, 30100), rng)
    assert strip_secrets(res.sdp) == strip_secrets(body(8))
    oracle_check(res.sdp)
    k21 = [parse_crypto(line[9:]) for line in res.sdp.decode().split("\r\n")
           if line.startswith("a=crypto:")]
    assert [(c.tag, c.suite) for c in k21] == [(1, "AES_CM_128_HMAC_SHA1_80"),
                                               (2, "AES_CM_128_HMAC_SHA1_32")]

    ans = apply_answer(res.state, body(9), rng)
    assert ans.sdp == body(10)  # exactly
    oracle_check(ans.sdp)
    audio, msrp = ans.plan.streams
    k22 = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:n4PXVAey9GM40ciT3rCNAml9dD+44rWjZl5NhUpF")
    assert audio.rx_key == k22.to_srtp_key()
    assert audio.tx_key == k21[0].to_srtp_key()
    assert msrp.access_setup is SetupRole.PASSIVE  # UE B answered active
    assert msrp.core_setup is SetupRole.PASSIVE  # example 10: a=setup:passive to the core
    assert msrp.ue_fingerprint[0].digest.hex().upper().startswith("AF55F0A3")
    assert msrp.ue_remote == Endpoint("198.51.100.77", 50100)
    assert msrp.core_remote == Endpoint("192.0.2.99", 20010)
