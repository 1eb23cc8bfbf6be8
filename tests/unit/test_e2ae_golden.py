"""Golden offer/answer table for the e2ae engine, in the style of rtpengine's offer/answer tests.

Each case gives the SDP as it arrives and, after the rewrite, as it must leave, for the offer and
(if any) its answer. Keys in our output are replaced by `KEY` and the gateway fingerprint by
`AGWFP` (`helpers.normalise`, which also checks every generated key's length and that it carries
no lifetime or MKI); `$K80`, `$UEFP`... are input tokens (`helpers.TOKENS`). The fake gateway
reserves 203.0.113.20:40000+10i towards the UE and 192.0.2.20:30000+10i towards the core.

Coverage of TS 33.328 7.2.1 (orig_*) and 7.3.1 (term_*): e2ae RTP and MSRP; SRTP without an
indication (e2e); NOTE 2a reject / e2e / apply; MSRP TLS without indication (pass / terminate);
terminating MSRP without registration (none / terminate); TLS from the core (pass / terminate);
several m-lines; rejected m-lines in offer and answer; AVPF and rtcp-fb; rtcp-mux; a=rtcp;
several crypto lines with lifetime / MKI / session parameters; suite selection policies; session
level fingerprint and 3ge2ae; CEMA and non-CEMA MSRP; a=setup roles; foreign a=3ge2ae:applied;
anchor_all; LF line endings; IPv6; error cases.

Every SDP we emit is re-parsed by sdp-transform (`helpers.oracle_check`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pcscf_alg.e2ae import AnswerResult, E2aeFlags, apply_answer, apply_offer, plan_offer
from pcscf_alg.errors import SdpError
from pcscf_alg.mediaplan import Direction, MsrpMode, SetupRole, StreamMode, ThroughConnection
from pcscf_alg.policy import load_policy

from .sdp.helpers import AGW_FP, counter_rng, normalise, oracle_check, reserve, sdp

ORIG = Direction.ORIGINATING
TERM = Direction.TERMINATING


@dataclass(frozen=True)
class Case:
    name: str
    direction: Direction
    flags: str  # "rtp,msrp": support established; "ue_rtp": only the UE indicated RTP
    offer: str
    offer_out: str | None = None
    answer: str | None = None
    answer_out: str | None = None
    policy: dict[str, Any] | None = None
    anchor_all: bool = False
    eol: str = "\r\n"
    modes: str | None = None  # final StreamMode per m-line
    same: bool = False  # offer and answer leave byte for byte as they came
    error: str | None = None
    error_at: str = "offer"
    check: str | None = None


def flags(text: str) -> E2aeFlags:
    s = {x for x in text.split(",") if x}
    return E2aeFlags(
        ue_rtp="rtp" in s or "ue_rtp" in s,
        ue_msrp="msrp" in s,
        net_rtp="rtp" in s,
        net_msrp="msrp" in s,
    )


def _mux_true(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.access_rtcp_mux and s.core_rtcp_mux
    assert s.ue_remote is not None and s.ue_remote.rtcp_port is None


def _mux_false(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert not s.access_rtcp_mux and not s.core_rtcp_mux
    assert s.ue_remote is not None and s.ue_remote.rtcp_port == s.ue_remote.port + 1


def _tag(tag: int, suite: str) -> Callable[[AnswerResult], None]:
    def check(a: AnswerResult) -> None:
        s = a.plan.streams[0]
        assert s.rx_key is not None and s.tx_key is not None
        assert (s.rx_key.tag, s.rx_key.suite) == (tag, suite)
        assert (s.tx_key.tag, s.tx_key.suite) == (tag, suite)
        # never echo the UE's key (docs/e2ae-notes.md §4.5)
        assert s.rx_key.key_salt != s.tx_key.key_salt

    return check


def _tag3_lifetime(a: AnswerResult) -> None:
    # lines 1 (KDR=1) and 2 (UNENCRYPTED_SRTCP) cannot run in the gateway and are skipped; line 3
    # carries a lifetime and an MKI, which the gateway honours (it strips the MKI itself)
    _tag(3, "AES_CM_128_HMAC_SHA1_80")(a)
    s = a.plan.streams[0]
    assert s.rx_key is not None and s.rx_key.lifetime == 2**31
    assert s.rx_key.mki == b"\x00\x00\x00\x01"
    # ours: no lifetime (7.2.1 step 8), never an MKI (docs/e2ae-notes.md §4.4)
    assert s.tx_key is not None and s.tx_key.lifetime is None and s.tx_key.mki is None


def _k22_mki(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.rx_key is not None and s.rx_key.mki == b"\x00\x01"
    assert s.tx_key is not None and s.tx_key.mki is None


def _hold(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.through is ThroughConnection.RECVONLY  # the UE only sends
    assert s.ue_remote is not None and s.ue_remote.rtcp_port == 49175
    assert s.core_remote is not None and s.core_remote.rtcp_port == 20005


def _cema(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.msrp_mode is MsrpMode.AGNOSTIC
    assert s.access_setup is SetupRole.PASSIVE
    assert s.agw_access_path is None and s.agw_core_path is None
    assert len(s.ue_fingerprint) == 1 and s.ue_fingerprint[0].hash_func == "sha-256"


def _aware(orig: bool) -> Callable[[AnswerResult], None]:
    def check(a: AnswerResult) -> None:
        s = a.plan.streams[0]
        assert s.msrp_mode is MsrpMode.AWARE
        ue_sid, core_sid = ("uesid1", "coresid1") if orig else ("uesid2", "coresid1")
        assert s.agw_access_path == f"msrps://203.0.113.20:40000/{core_sid};tcp"
        assert s.agw_core_path == f"msrp://192.0.2.20:30000/{ue_sid};tcp"
        assert s.ue_path is not None and s.ue_path.endswith(f"/{ue_sid};tcp")
        assert s.core_path == f"msrp://192.0.2.99:20010/{core_sid};tcp"

    return check


def _ue_passive(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.access_setup is SetupRole.ACTIVE  # the UE waits, the gateway connects
    assert s.core_setup is SetupRole.PASSIVE  # the core answered active


def _no_setup(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.access_setup is SetupRole.PASSIVE  # RFC 4975: the offerer (UE) connects
    assert s.core_setup is SetupRole.ACTIVE  # RFC 4145: absent in the answer = passive


def _core_active(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.access_setup is SetupRole.PASSIVE and s.core_setup is SetupRole.ACTIVE


def _core_tls(a: AnswerResult) -> None:
    s = a.plan.streams[0]
    assert s.core_tls and len(s.core_fingerprint) == 1
    assert s.mode is StreamMode.E2AE and s.ue_fingerprint


CHECKS: dict[str, Callable[[AnswerResult], None]] = {
    "mux_true": _mux_true,
    "mux_false": _mux_false,
    "tag3_32": _tag(3, "AES_CM_128_HMAC_SHA1_32"),
    "tag3_lifetime": _tag3_lifetime,
    "k22_mki": _k22_mki,
    "tag2_gcm256": _tag(2, "AEAD_AES_256_GCM"),
    "tag2_32": _tag(2, "AES_CM_128_HMAC_SHA1_32"),
    "term_tag1": _tag(1, "AES_CM_128_HMAC_SHA1_80"),
    "term_tag2": _tag(2, "AES_CM_128_HMAC_SHA1_32"),
    "hold": _hold,
    "cema": _cema,
    "aware_orig": _aware(True),
    "aware_term": _aware(False),
    "ue_passive": _ue_passive,
    "no_setup": _no_setup,
    "core_active": _core_active,
    "core_tls": _core_tls,
}


CASES: list[Case] = [
    Case(
        name="orig_rtp_savp_e2ae",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_rtp_savpf_rtcpfb_mux",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=video 49172 RTP/SAVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            a=rtcp-fb:97 ccm fir
            a=rtcp-mux
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=video 30000 RTP/AVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            a=rtcp-fb:97 ccm fir
            a=rtcp-mux
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=video 20000 RTP/AVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            a=rtcp-mux
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=video 40000 RTP/SAVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            a=rtcp-mux
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
        check="mux_true",
    ),
    Case(
        name="orig_rtp_mux_offered_not_answered",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=rtcp-mux
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
            a=rtcp-mux
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
        check="mux_false",
    ),
    Case(
        name="orig_rtp_skip_unsupported_suites",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:$K256CM
            a=crypto:2 F8_128_HMAC_SHA1_80 inline:$K80
            a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:KEY
        """,
        modes="e2ae",
        check="tag3_32",
    ),
    Case(
        name="orig_rtp_lifetime_mki_params",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80|2^20|1:4 KDR=1
            a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:$K80 UNENCRYPTED_SRTCP
            a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:$K80|2^31|1:4 KDR=0 WSH=128
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
        check="tag3_lifetime",
    ),
    Case(
        name="orig_rtp_policy_strongest_gcm",
        direction=ORIG,
        flags="rtp",
        policy={'crypto': {'select': 'strongest'}},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AEAD_AES_256_GCM inline:$KG256
            a=crypto:3 AEAD_AES_128_GCM inline:$KG128
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:2 AEAD_AES_256_GCM inline:KEY
        """,
        modes="e2ae",
        check="tag2_gcm256",
    ),
    Case(
        name="orig_rtp_policy_preferred_order",
        direction=ORIG,
        flags="rtp",
        policy={'crypto': {'select': 'preferred',
                           'allow': ['AES_CM_128_HMAC_SHA1_32', 'AES_CM_128_HMAC_SHA1_80']}},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
        """,
        modes="e2ae",
        check="tag2_32",
    ),
    Case(
        name="orig_rtp_allow_list_leaves_nothing",
        direction=ORIG,
        flags="rtp",
        policy={'crypto': {'allow': ['AEAD_AES_128_GCM']}},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        error='no supported SRTP crypto suite offered on m-line 0',
    ),
    Case(
        name="orig_rtp_unknown_suite_only",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 SUPER_CIPHER_9000 inline:QUJDREVGR0g=
            a=3ge2ae:requested
        """,
        error='no supported SRTP crypto suite',
    ),
    Case(
        name="orig_rtp_wrong_key_length",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$KG128
            a=3ge2ae:requested
        """,
        error='AES_CM_128_HMAC_SHA1_80 needs a 30-byte key||salt, got 28 bytes',
    ),
    Case(
        name="orig_rtp_requested_without_crypto",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=3ge2ae:requested
        """,
        error='e2ae requested on m-line 0 without a=crypto',
    ),
    Case(
        name="orig_srtp_without_indication_is_e2e",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="orig_srtp_e2e_anchored_when_anchor_all",
        direction=ORIG,
        flags="rtp,msrp",
        anchor_all=True,
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=rtcp:49171
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/SAVP 0
            a=rtcp:30001
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="pass",
    ),
    Case(
        name="orig_plain_rtp_bypass",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/AVP 0 8
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/AVP 0 8
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="orig_requested_on_plain_rtp_ignored_and_stripped",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/AVP 0
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/AVP 0
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=sendrecv
        """,
        modes="bypass",
    ),
    Case(
        name="orig_note2a_reject_default",
        direction=ORIG,
        flags="",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
        """,
        error='e2ae requested but not negotiated at registration (TS 33.328 7.2.1 NOTE 2a)',
    ),
    Case(
        name="orig_note2a_ue_only_registered",
        direction=ORIG,
        flags="ue_rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
        """,
        error='NOTE 2a',
    ),
    Case(
        name="orig_note2a_policy_e2e",
        direction=ORIG,
        flags="",
        policy={'e2ae_not_registered': 'e2e'},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 96
            a=rtpmap:96 AMR-WB/16000/1
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K80B
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 96
            a=rtpmap:96 AMR-WB/16000/1
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=sendrecv
        """,
        modes="bypass",
    ),
    Case(
        name="orig_note2a_policy_apply",
        direction=ORIG,
        flags="",
        policy={'e2ae_not_registered': 'apply'},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_note2a_msrp_only_when_only_rtp_registered",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        error='NOTE 2a',
    ),
    Case(
        name="orig_several_mlines_and_rejected",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
            m=video 49172 RTP/SAVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            a=crypto:5 AEAD_AES_128_GCM inline:$KG128
            a=3ge2ae:requested
            m=audio 0 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=video 30010 RTP/AVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            m=audio 0 RTP/SAVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=video 20002 RTP/AVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            m=audio 0 RTP/SAVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=sendrecv
            m=video 40010 RTP/SAVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack
            a=crypto:5 AEAD_AES_128_GCM inline:KEY
            m=audio 0 RTP/SAVP 0
        """,
        modes="e2ae e2ae rejected",
    ),
    Case(
        name="orig_answer_rejects_e2ae_stream",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=message 30010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 0 RTP/AVP 96
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 0 RTP/SAVP 96
            m=message 40010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="rejected e2ae",
    ),
    Case(
        name="orig_rtcp_attr_and_hold",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=rtcp:49175 IN IP4 198.51.100.10
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
            a=sendonly
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
            a=rtcp:30001 IN IP4 192.0.2.20
            a=sendonly
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=rtcp:20005
            a=recvonly
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=rtcp:40001
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=recvonly
        """,
        modes="e2ae",
        check="hold",
    ),
    Case(
        name="orig_untouched_lines_preconditions_bw_capneg",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            b=AS:80
            t=0 0
            a=group:BUNDLE 0
            m=audio 49170 RTP/SAVP 96
            b=AS:41
            b=RS:0
            b=RR:2000
            a=rtpmap:96 EVS/16000
            a=fmtp:96 br=13.2;bw=swb
            a=curr:qos local none
            a=curr:qos remote none
            a=des:qos mandatory local sendrecv
            a=des:qos optional remote sendrecv
            a=tcap:1 RTP/SAVPF
            a=acap:1 crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=acap:2 rtcp-fb:* nack
            a=pcfg:1 t=1 a=1,2
            a=x-unknown-attribute:keep  me   exactly
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            b=AS:80
            t=0 0
            a=group:BUNDLE 0
            m=audio 30000 RTP/AVP 96
            b=AS:41
            b=RS:0
            b=RR:2000
            a=rtpmap:96 EVS/16000
            a=fmtp:96 br=13.2;bw=swb
            a=curr:qos local none
            a=curr:qos remote none
            a=des:qos mandatory local sendrecv
            a=des:qos optional remote sendrecv
            a=tcap:1 RTP/SAVPF
            a=acap:2 rtcp-fb:* nack
            a=pcfg:1 t=1 a=1,2
            a=x-unknown-attribute:keep  me   exactly
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96
            b=AS:41
            a=rtpmap:96 EVS/16000
            a=curr:qos local sendrecv
            a=curr:qos remote none
            a=des:qos mandatory local sendrecv
            a=des:qos mandatory remote sendrecv
            a=conf:qos remote sendrecv
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96
            b=AS:41
            a=rtpmap:96 EVS/16000
            a=curr:qos local sendrecv
            a=curr:qos remote none
            a=des:qos mandatory local sendrecv
            a=des:qos mandatory remote sendrecv
            a=conf:qos remote sendrecv
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_media_level_connection_only",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            t=0 0
            m=audio 49170 RTP/SAVP 0
            c=IN IP4 198.51.100.10
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            t=0 0
            m=audio 30000 RTP/AVP 0
            c=IN IP4 192.0.2.20
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            t=0 0
            m=audio 20000 RTP/AVP 0
            c=IN IP4 192.0.2.99
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            t=0 0
            m=audio 40000 RTP/SAVP 0
            c=IN IP4 203.0.113.20
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_mixed_e2ae_and_bypass_keep_session_c",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            i=voice
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
            m=video 49172 RTP/SAVP 97
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K32
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 30000 RTP/AVP 0
            i=voice
            c=IN IP4 192.0.2.20
            m=video 49172 RTP/SAVP 97
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            m=video 20002 RTP/SAVP 97
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 40000 RTP/SAVP 0
            c=IN IP4 203.0.113.20
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            m=video 20002 RTP/SAVP 97
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae bypass",
    ),
    Case(
        name="orig_ipv6_ue",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP6 2001:db8::10
            s=-
            c=IN IP6 2001:db8::10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_lf_line_endings_kept",
        direction=ORIG,
        flags="rtp",
        eol="\n",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_session_level_3ge2ae",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            a=3ge2ae:requested
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_foreign_applied_in_core_answer",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            a=3ge2ae:applied
            m=audio 20000 RTP/AVP 0
            a=3GE2AE:Applied
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_answer_proto_mismatch",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 0
        """,
        error='answer m-line 0 proto RTP/SAVP does not match offered RTP/AVP',
        error_at="answer",
    ),
    Case(
        name="orig_answer_mline_count",
        direction=ORIG,
        flags="rtp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=3ge2ae:requested
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 0
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            m=video 0 RTP/AVP 0
        """,
        error='answer has 2 m-lines, the offer had 1',
        error_at="answer",
    ),
    Case(
        name="orig_msrp_e2ae_cema",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
        check="cema",
    ),
    Case(
        name="orig_msrp_e2ae_non_cema_aware",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.20:30000/uesid1;tcp
            a=setup:actpass
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://203.0.113.20:40000/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=sendrecv
        """,
        modes="e2ae",
        check="aware_orig",
    ),
    Case(
        name="orig_msrp_cema_offer_non_cema_answer",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://203.0.113.20:40000/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_msrp_ue_setup_passive",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:passive
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
        check="ue_passive",
    ),
    Case(
        name="orig_msrp_no_setup_anywhere",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=msrp-cema
            a=setup:actpass
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=msrp-cema
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=sendrecv
        """,
        modes="e2ae",
        check="no_setup",
    ),
    Case(
        name="orig_msrp_session_level_fingerprint",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            a=fingerprint:$UEFP
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
            m=message 50002 TCP/TLS/MSRP *
            a=accept-types:text/plain
            a=path:msrps://198.51.100.10:50002/other;tcp
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 30000 TCP/MSRP *
            c=IN IP4 192.0.2.20
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
            m=message 50002 TCP/TLS/MSRP *
            a=accept-types:text/plain
            a=path:msrps://198.51.100.10:50002/other;tcp
            a=fingerprint:$UEFP
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
            m=message 20012 TCP/TLS/MSRP *
            a=accept-types:text/plain
            a=fingerprint:$COREFP
            a=path:msrps://192.0.2.99:20012/o2;tcp
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            c=IN IP4 203.0.113.20
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
            m=message 20012 TCP/TLS/MSRP *
            a=accept-types:text/plain
            a=fingerprint:$COREFP
            a=path:msrps://192.0.2.99:20012/o2;tcp
        """,
        modes="e2ae bypass",
    ),
    Case(
        name="orig_msrp_tls_without_indication_pass",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=fingerprint:$COREFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=fingerprint:$COREFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="orig_msrp_tls_without_indication_terminate_rcs",
        direction=ORIG,
        flags="",
        policy={'originating_msrp_tls': 'terminate'},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="orig_msrp_tls_terminate_needs_fingerprint",
        direction=ORIG,
        flags="",
        policy={'originating_msrp_tls': 'terminate'},
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="orig_msrp_requested_bad_fingerprint",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:sha-256 AB:CD
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        error='a=fingerprint: a sha-256 fingerprint has 32 octets, not 2',
    ),
    Case(
        name="orig_msrp_requested_without_fingerprint",
        direction=ORIG,
        flags="msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        error='e2ae MSRP m-line 0 without a usable a=fingerprint',
    ),
    Case(
        name="orig_plain_msrp_bypass",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://198.51.100.10:50000/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://198.51.100.10:50000/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="orig_example_style_audio_and_msrp",
        direction=ORIG,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 1 1 IN IP4 198.51.100.10
            s=-
            c=IN IP4 198.51.100.10
            t=0 0
            m=audio 49170 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=3ge2ae:requested
            a=sendrecv
            m=message 50000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=fingerprint:$UEFP
            a=msrp-cema
            a=3ge2ae:requested
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 1 1 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=message 30010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.10:50000/uesid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=sendrecv
            m=message 40010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae e2ae",
    ),
    Case(
        name="term_rtp_avp_e2ae",
        direction=TERM,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        modes="e2ae",
        check="term_tag1",
    ),
    Case(
        name="term_rtp_ue_picks_second_line",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        modes="e2ae",
        check="term_tag2",
    ),
    Case(
        name="term_rtp_avpf_mux_rtcpfb",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=video 20002 RTP/AVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack pli
            a=rtcp-mux
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=video 40000 RTP/SAVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack pli
            a=rtcp-mux
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=video 49202 RTP/SAVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack pli
            a=rtcp-mux
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=video 30000 RTP/AVPF 97
            a=rtpmap:97 H264/90000
            a=rtcp-fb:* nack pli
            a=rtcp-mux
            a=sendrecv
        """,
        modes="e2ae",
        check="mux_true",
    ),
    Case(
        name="term_rtp_policy_offers_gcm_first",
        direction=TERM,
        flags="rtp",
        policy={'crypto': {'offer': ['AEAD_AES_128_GCM', 'AES_CM_128_HMAC_SHA1_80']}},
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AEAD_AES_128_GCM inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="term_rtp_not_registered_no_security",
        direction=TERM,
        flags="msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="term_srtp_from_core_is_e2e",
        direction=TERM,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="term_best_effort_crypto_on_avp_replaced",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="term_foreign_applied_stripped_without_registration",
        direction=TERM,
        flags="",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=3ge2ae:applied
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 0
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/AVP 0
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/AVP 0
            a=sendrecv
        """,
        modes="bypass",
    ),
    Case(
        name="term_asterisk_answer_with_requested_stripped",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=3ge2ae:requested
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="term_rejected_mline_in_offer",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=video 0 RTP/AVP 97
            a=3ge2ae:applied
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
            m=video 0 RTP/AVP 97
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=sendrecv
            m=video 0 RTP/AVP 97
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=video 0 RTP/AVP 97
        """,
        modes="e2ae rejected",
    ),
    Case(
        name="term_ue_rejects_e2ae_stream",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 0 RTP/SAVP 96
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 0 RTP/AVP 96
        """,
        modes="rejected",
    ),
    Case(
        name="term_answer_tag_never_offered",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=sendrecv
        """,
        error='answer a=crypto tag 7 on m-line 0 was never offered',
        error_at="answer",
    ),
    Case(
        name="term_answer_suite_changed",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:$K80B
            a=sendrecv
        """,
        error='answer a=crypto tag 1 on m-line 0 changes the suite',
        error_at="answer",
    ),
    Case(
        name="term_answer_two_crypto_lines",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
            a=sendrecv
        """,
        error='must carry exactly one a=crypto, has 2',
        error_at="answer",
    ),
    Case(
        name="term_answer_with_mki",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B|1:2
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        modes="e2ae",
        check="k22_mki",
    ),
    Case(
        name="term_anchor_all_plain_rtp",
        direction=TERM,
        flags="",
        anchor_all=True,
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
        """,
        modes="pass",
    ),
    Case(
        name="term_msrp_e2ae_cema",
        direction=TERM,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:passive
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
        check="cema",
    ),
    Case(
        name="term_msrp_e2ae_non_cema_aware",
        direction=TERM,
        flags="msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://203.0.113.20:40000/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.20:30000/uesid2;tcp
            a=setup:passive
            a=sendrecv
        """,
        modes="e2ae",
        check="aware_term",
    ),
    Case(
        name="term_msrp_core_without_setup",
        direction=TERM,
        flags="msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=msrp-cema
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="term_msrp_core_setup_passive",
        direction=TERM,
        flags="msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
        check="core_active",
    ),
    Case(
        name="term_msrp_ue_answer_session_level_fingerprint",
        direction=TERM,
        flags="msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            a=fingerprint:$UEFP
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:passive
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="term_msrp_answer_without_fingerprint",
        direction=TERM,
        flags="msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        error='answer m-line 0 without a usable a=fingerprint',
        error_at="answer",
    ),
    Case(
        name="term_msrp_unregistered_default_none",
        direction=TERM,
        flags="rtp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=msrp-cema
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="term_msrp_unregistered_terminate_rcs",
        direction=TERM,
        flags="",
        policy={'terminating_msrp_unregistered': 'terminate'},
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:passive
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
    ),
    Case(
        name="term_msrp_tls_from_core_pass",
        direction=TERM,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=fingerprint:$COREFP
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=fingerprint:$COREFP
            a=msrp-cema
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="bypass",
        same=True,
    ),
    Case(
        name="term_msrp_tls_from_core_terminate_li",
        direction=TERM,
        flags="rtp,msrp",
        policy={'terminating_msrp_tls': 'terminate'},
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=message 20010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=fingerprint:$COREFP
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=message 40000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=message 30000 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae",
        check="core_tls",
    ),
    Case(
        name="term_example_style_audio_and_msrp",
        direction=TERM,
        flags="rtp,msrp",
        offer="""
            v=0
            o=- 2 2 IN IP4 192.0.2.99
            s=-
            c=IN IP4 192.0.2.99
            t=0 0
            m=audio 20000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=message 20010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:actpass
            a=msrp-cema
            a=sendrecv
        """,
        offer_out="""
            v=0
            o=- 2 2 IN IP4 203.0.113.20
            s=-
            c=IN IP4 203.0.113.20
            t=0 0
            m=audio 40000 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY
            a=3ge2ae:applied
            a=sendrecv
            m=message 40010 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrp://192.0.2.99:20010/coresid1;tcp
            a=setup:passive
            a=fingerprint:sha-256 AGWFP
            a=msrp-cema
            a=3ge2ae:applied
            a=sendrecv
        """,
        answer="""
            v=0
            o=- 3 3 IN IP4 198.51.100.77
            s=-
            c=IN IP4 198.51.100.77
            t=0 0
            m=audio 49200 RTP/SAVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
            a=sendrecv
            m=message 50100 TCP/TLS/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:active
            a=fingerprint:$UEFP
            a=msrp-cema
            a=sendrecv
        """,
        answer_out="""
            v=0
            o=- 3 3 IN IP4 192.0.2.20
            s=-
            c=IN IP4 192.0.2.20
            t=0 0
            m=audio 30000 RTP/AVP 96 100
            a=rtpmap:96 AMR-WB/16000/1
            a=rtpmap:100 telephone-event/16000
            a=sendrecv
            m=message 30010 TCP/MSRP *
            a=accept-types:message/cpim
            a=path:msrps://198.51.100.77:50100/uesid2;tcp
            a=setup:passive
            a=msrp-cema
            a=sendrecv
        """,
        modes="e2ae e2ae",
    ),
]


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.check is None or c.check in CHECKS for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden(case: Case) -> None:
    policy = load_policy(case.policy, "<test>")
    rng = counter_rng()
    offer = sdp(case.offer, case.eol)
    if case.error and case.error_at == "offer":
        with pytest.raises(SdpError) as e:
            plan = plan_offer(offer, case.direction, flags(case.flags), policy, "sip:+1@x",
                              anchor_all=case.anchor_all)
            apply_offer(plan, reserve(plan.requests), rng)
        assert case.error in e.value.reason
        assert e.value.status == 488 and "\n" not in e.value.reason
        assert "inline" not in e.value.reason
        return
    plan = plan_offer(offer, case.direction, flags(case.flags), policy, "sip:+1@x",
                      anchor_all=case.anchor_all)
    res = apply_offer(plan, reserve(plan.requests), rng)
    assert case.offer_out is not None
    assert normalise(res.sdp) == sdp(case.offer_out, case.eol).decode()
    oracle_check(res.sdp)
    if case.same:
        assert res.sdp == offer
    # every stream the plan anchors was reserved, and only those
    anchored = {d.index for d in res.decisions if d.mode in (StreamMode.E2AE, StreamMode.PASS)}
    assert {r.index for r in plan.requests} == anchored
    for r in plan.requests:
        assert r.want_local_fingerprint == (
            r.kind.value == "msrp" and res.decisions[r.index].mode is StreamMode.E2AE
        )
    if case.answer is None:
        if case.modes is not None:
            assert " ".join(d.mode.value for d in res.decisions) == case.modes
        return
    answer = sdp(case.answer, case.eol)
    if case.error:
        with pytest.raises(SdpError) as e:
            apply_answer(res.state, answer, rng)
        assert case.error in e.value.reason
        assert "inline" not in e.value.reason
        return
    ans = apply_answer(res.state, answer, rng)
    assert case.answer_out is not None
    assert normalise(ans.sdp) == sdp(case.answer_out, case.eol).decode()
    oracle_check(ans.sdp)
    if case.same:
        assert ans.sdp == answer
    assert " ".join(s.mode.value for s in ans.plan.streams) == case.modes
    assert [d.mode for d in ans.decisions] == [s.mode for s in ans.plan.streams]
    for s in ans.plan.streams:
        if s.mode is StreamMode.E2AE and s.kind.value == "rtp":
            assert s.rx_key is not None and s.tx_key is not None
        if s.mode is StreamMode.E2AE and s.kind.value == "msrp":
            assert s.ue_fingerprint and AGW_FP not in s.ue_fingerprint
    if case.check:
        CHECKS[case.check](ans)
