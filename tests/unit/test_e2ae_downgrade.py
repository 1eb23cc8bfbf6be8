"""A re-offer must not silently take an e2ae stream out of e2ae (issue 11 item 8).

Policy point `e2ae_downgrade: keep | reject | allow` (default keep), on both directions:

- originating call, the UE re-offers without a=3ge2ae:requested (SRTP kept, or plain RTP/AVP);
- terminating call, the UE re-offers (it never sent the indication on that call);
- the core re-offers on a stream that is e2ae towards the UE (SRTP from the core, or plain RTP
  when e2ae was applied without registered support);
- the same for MSRP (TLS without indication from the UE, TLS from the core).

The table gives, like the golden table (`test_e2ae_golden.py`), the re-offer as it arrives and
as it must leave (keys as `KEY`, the gateway fingerprint as `AGWFP`), or the 488 reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pcscf_alg.e2ae import (
    NO_E2AE,
    AnswerResult,
    E2aeFlags,
    apply_answer,
    apply_offer,
    plan_offer,
)
from pcscf_alg.errors import ConfigError, SdpError
from pcscf_alg.mediaplan import Direction, StreamMode
from pcscf_alg.policy import DowngradeAction, PolicyContext, YamlPolicy, load_policy
from pcscf_alg.sdp.crypto import parse_crypto

from .sdp.helpers import AGW_CORE, TOKENS, counter_rng, normalise, oracle_check, reserve, sdp

ALL = E2aeFlags(True, True, True, True)
ORIG, TERM = Direction.ORIGINATING, Direction.TERMINATING
SUB = "sip:+15550001@ims.example.net"

# -- the first exchange of each call -----------------------------------------------------------

UE_OFFER = """
    v=0
    o=- 1 1 IN IP4 198.51.100.10
    s=-
    c=IN IP4 198.51.100.10
    t=0 0
    m=audio 49170 RTP/SAVP 0
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
    a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:$K32
    a=3ge2ae:requested
    a=sendrecv
"""
CORE_ANSWER = """
    v=0
    o=- 2 2 IN IP4 192.0.2.99
    s=-
    c=IN IP4 192.0.2.99
    t=0 0
    m=audio 20000 RTP/AVP 0
    a=sendrecv
"""
CORE_OFFER = CORE_ANSWER
UE_ANSWER = """
    v=0
    o=- 3 3 IN IP4 198.51.100.77
    s=-
    c=IN IP4 198.51.100.77
    t=0 0
    m=audio 49200 RTP/SAVP 0
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80B
    a=sendrecv
"""
UE_MSRP_OFFER = """
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
"""
CORE_MSRP_ANSWER = """
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
"""
CORE_MSRP_OFFER = CORE_MSRP_ANSWER.replace("setup:active", "setup:actpass")
UE_MSRP_ANSWER = """
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
"""

# (first offer, its direction, its answer, registration flags, extra policy for the first call)
FIRST = {
    "orig_rtp": (UE_OFFER, ORIG, CORE_ANSWER, ALL, {}),
    "term_rtp": (CORE_OFFER, TERM, UE_ANSWER, ALL, {}),
    # NOTE 2a applied: e2ae without registered support, so a core re-offer of plain RTP would
    # (on its own) get no media plane security
    "orig_rtp_unregistered": (UE_OFFER, ORIG, CORE_ANSWER, NO_E2AE,
                              {"e2ae_not_registered": "apply"}),
    "orig_msrp": (UE_MSRP_OFFER, ORIG, CORE_MSRP_ANSWER, ALL, {}),
    "term_msrp": (CORE_MSRP_OFFER, TERM, UE_MSRP_ANSWER, ALL, {}),
}


def first_call(name: str, policy: dict[str, object] | None = None) -> AnswerResult:
    offer, direction, answer, flags, extra = FIRST[name]
    pol = load_policy({**extra, **(policy or {})}, "<test>")
    rng = counter_rng()
    plan = plan_offer(sdp(offer), direction, flags, pol, SUB)
    res = apply_offer(plan, reserve(plan.requests), rng)
    ans = apply_answer(res.state, sdp(answer), rng)
    assert [s.mode for s in ans.plan.streams] == [StreamMode.E2AE]
    return ans


# -- re-offers ---------------------------------------------------------------------------------

UE_REOFFER_SAVP = UE_OFFER.replace("o=- 1 1", "o=- 1 2").replace("a=3ge2ae:requested\n", "")
UE_REOFFER_AVP = """
    v=0
    o=- 1 2 IN IP4 198.51.100.10
    s=-
    c=IN IP4 198.51.100.10
    t=0 0
    m=audio 49170 RTP/AVP 0
    a=sendrecv
"""
TO_CORE_PLAIN = """
    v=0
    o=- 1 2 IN IP4 192.0.2.20
    s=-
    c=IN IP4 192.0.2.20
    t=0 0
    m=audio 30000 RTP/AVP 0
    a=sendrecv
"""
# the UE of a terminating call re-offers with the key it answered with (K22), no indication
UE_TERM_REOFFER = UE_ANSWER.replace("o=- 3 3", "o=- 3 4")
TO_CORE_PLAIN_TERM = TO_CORE_PLAIN.replace("o=- 1 2", "o=- 3 4")
CORE_REOFFER_SAVP = """
    v=0
    o=- 2 3 IN IP4 192.0.2.99
    s=-
    c=IN IP4 192.0.2.99
    t=0 0
    m=audio 20000 RTP/SAVP 0
    a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:$K32
    a=sendrecv
"""
CORE_REOFFER_AVP = CORE_REOFFER_SAVP.replace("RTP/SAVP", "RTP/AVP").replace(
    "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:$K32\n", "")
TO_UE_SRTP = """
    v=0
    o=- 2 3 IN IP4 203.0.113.20
    s=-
    c=IN IP4 203.0.113.20
    t=0 0
    m=audio 40000 RTP/SAVP 0
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY
    a=3ge2ae:applied
    a=sendrecv
"""
UE_MSRP_REOFFER_TLS = UE_MSRP_OFFER.replace("o=- 1 1", "o=- 1 2").replace(
    "a=3ge2ae:requested\n", "")
UE_MSRP_REOFFER_TCP = UE_MSRP_REOFFER_TLS.replace("TCP/TLS/MSRP", "TCP/MSRP").replace(
    "msrps://", "msrp://").replace("a=fingerprint:$UEFP\n", "")
TO_CORE_MSRP = """
    v=0
    o=- 1 2 IN IP4 192.0.2.20
    s=-
    c=IN IP4 192.0.2.20
    t=0 0
    m=message 30000 TCP/MSRP *
    a=accept-types:message/cpim
    a=path:msrps://198.51.100.10:50000/uesid1;tcp
    a=setup:actpass
    a=msrp-cema
    a=sendrecv
"""
TO_CORE_MSRP_PLAIN = TO_CORE_MSRP.replace("msrps://", "msrp://")
CORE_MSRP_REOFFER_TLS = CORE_MSRP_OFFER.replace("o=- 2 2", "o=- 2 3").replace(
    "TCP/MSRP", "TCP/TLS/MSRP").replace("msrp://", "msrps://").replace(
    "a=msrp-cema\n", "a=fingerprint:$COREFP\na=msrp-cema\n")
CORE_MSRP_REOFFER_TLS_NO_FP = CORE_MSRP_REOFFER_TLS.replace("a=fingerprint:$COREFP\n", "")
TO_UE_MSRP_TLS = """
    v=0
    o=- 2 3 IN IP4 203.0.113.20
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
"""


@dataclass(frozen=True)
class Re:
    name: str
    first: str  # key of FIRST
    direction: Direction  # of the re-offer
    offer: str
    policy: str  # e2ae_downgrade
    out: str | None = None  # the re-offer as forwarded (None: as it came)
    mode: StreamMode | None = None
    error: str | None = None  # 488 reason (substring)
    rule: str = ""  # substring of the decision's rule


KEEP_RULE = "policy e2ae_downgrade=keep (policy default)"
CANNOT = "out of e2ae and the gateway cannot keep it"
REFUSED = "re-offer would take e2ae stream m-line 0 ("

CASES: list[Re] = [
    # originating call, the UE drops a=3ge2ae:requested but keeps SRTP and its key
    Re("orig_ue_savp_keep", "orig_rtp", ORIG, UE_REOFFER_SAVP, "keep", TO_CORE_PLAIN,
       StreamMode.E2AE, rule="TS 33.328 7.2.1 / local " + KEEP_RULE),
    Re("orig_ue_savp_reject", "orig_rtp", ORIG, UE_REOFFER_SAVP, "reject",
       error=REFUSED + "audio RTP/SAVP) out of e2ae (TS 33.328 7.2.1; local policy "
       "e2ae_downgrade)"),
    Re("orig_ue_savp_allow", "orig_rtp", ORIG, UE_REOFFER_SAVP, "allow", None,
       StreamMode.BYPASS, rule="policy e2ae_downgrade=allow"),
    # originating call, the UE turns RTP/SAVP into RTP/AVP
    Re("orig_ue_avp_keep", "orig_rtp", ORIG, UE_REOFFER_AVP, "keep", TO_CORE_PLAIN,
       StreamMode.PASS, rule=KEEP_RULE),
    Re("orig_ue_avp_reject", "orig_rtp", ORIG, UE_REOFFER_AVP, "reject",
       error=REFUSED + "audio RTP/AVP)"),
    Re("orig_ue_avp_allow", "orig_rtp", ORIG, UE_REOFFER_AVP, "allow", None, StreamMode.BYPASS,
       rule="e2ae_downgrade=allow"),
    # terminating call, the UE re-offers (with its K22) without the indication
    Re("term_ue_savp_keep", "term_rtp", ORIG, UE_TERM_REOFFER, "keep", TO_CORE_PLAIN_TERM,
       StreamMode.E2AE, rule=KEEP_RULE),
    Re("term_ue_savp_reject", "term_rtp", ORIG, UE_TERM_REOFFER, "reject", error=REFUSED),
    Re("term_ue_savp_allow", "term_rtp", ORIG, UE_TERM_REOFFER, "allow", None, StreamMode.BYPASS),
    # the core re-offers SRTP on a stream that is e2ae towards the UE (terminating call, and the
    # mirror: the core's re-offer on an originating call)
    Re("term_core_savp_keep", "term_rtp", TERM, CORE_REOFFER_SAVP, "keep", error=CANNOT),
    Re("term_core_savp_reject", "term_rtp", TERM, CORE_REOFFER_SAVP, "reject", error=REFUSED),
    Re("term_core_savp_allow", "term_rtp", TERM, CORE_REOFFER_SAVP, "allow", None,
       StreamMode.BYPASS, rule="TS 33.328 7.3.1 / local policy e2ae_downgrade=allow"),
    Re("orig_core_savp_keep", "orig_rtp", TERM, CORE_REOFFER_SAVP, "keep", error=CANNOT),
    Re("orig_core_savp_allow", "orig_rtp", TERM, CORE_REOFFER_SAVP, "allow", None,
       StreamMode.BYPASS),
    # the core re-offers plain RTP where e2ae was applied without registered support
    Re("unreg_core_avp_keep", "orig_rtp_unregistered", TERM, CORE_REOFFER_AVP, "keep",
       TO_UE_SRTP, StreamMode.E2AE, rule="TS 33.328 7.3.1 / local " + KEEP_RULE),
    Re("unreg_core_avp_reject", "orig_rtp_unregistered", TERM, CORE_REOFFER_AVP, "reject",
       error=REFUSED + "audio RTP/AVP) out of e2ae (TS 33.328 7.3.1"),
    Re("unreg_core_avp_allow", "orig_rtp_unregistered", TERM, CORE_REOFFER_AVP, "allow", None,
       StreamMode.BYPASS),
    # MSRP: the UE re-offers TLS without the indication, or plain TCP/MSRP
    Re("orig_ue_msrp_tls_keep", "orig_msrp", ORIG, UE_MSRP_REOFFER_TLS, "keep", TO_CORE_MSRP,
       StreamMode.E2AE, rule=KEEP_RULE),
    Re("orig_ue_msrp_tls_reject", "orig_msrp", ORIG, UE_MSRP_REOFFER_TLS, "reject",
       error=REFUSED + "message TCP/TLS/MSRP)"),
    Re("orig_ue_msrp_tls_allow", "orig_msrp", ORIG, UE_MSRP_REOFFER_TLS, "allow", None,
       StreamMode.BYPASS),
    Re("orig_ue_msrp_tcp_keep", "orig_msrp", ORIG, UE_MSRP_REOFFER_TCP, "keep",
       TO_CORE_MSRP_PLAIN, StreamMode.PASS),
    # MSRP: the core re-offers TLS on a stream that is e2ae towards the UE
    Re("term_core_msrp_tls_keep", "term_msrp", TERM, CORE_MSRP_REOFFER_TLS, "keep",
       TO_UE_MSRP_TLS, StreamMode.E2AE, rule=KEEP_RULE),
    Re("term_core_msrp_tls_no_fp_keep", "term_msrp", TERM, CORE_MSRP_REOFFER_TLS_NO_FP, "keep",
       error=CANNOT),
    Re("term_core_msrp_tls_reject", "term_msrp", TERM, CORE_MSRP_REOFFER_TLS, "reject",
       error=REFUSED + "message TCP/TLS/MSRP)"),
    Re("term_core_msrp_tls_allow", "term_msrp", TERM, CORE_MSRP_REOFFER_TLS, "allow", None,
       StreamMode.BYPASS),
]


def test_table_covers_every_policy_value_and_both_directions() -> None:
    assert len({c.name for c in CASES}) == len(CASES)
    seen = {(c.direction, c.policy) for c in CASES}
    assert seen == {(d, p) for d in (ORIG, TERM) for p in ("keep", "reject", "allow")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reoffer(case: Re) -> None:
    first = first_call(case.first)
    extra = FIRST[case.first][4]
    flags = FIRST[case.first][3]
    policy = load_policy({**extra, "e2ae_downgrade": case.policy}, "<test>")
    offer = sdp(case.offer)
    if case.error is not None:
        with pytest.raises(SdpError) as e:
            plan_offer(offer, case.direction, flags, policy, SUB, previous=first)
        assert case.error in e.value.reason
        assert e.value.status == 488 and "\n" not in e.value.reason
        assert "inline" not in e.value.reason
        return
    plan = plan_offer(offer, case.direction, flags, policy, SUB, previous=first)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    oracle_check(res.sdp)
    if case.out is None:
        assert res.sdp == offer  # today's behaviour: end to end, untouched
    else:
        assert normalise(res.sdp) == sdp(case.out).decode()
    (dec,) = res.decisions
    assert dec.mode is case.mode
    assert case.rule in dec.rule
    # what the gateway is asked to reserve follows the decision
    assert [r.index for r in plan.requests] == (
        [0] if dec.mode in (StreamMode.E2AE, StreamMode.PASS) else [])
    if case.policy == "keep":
        # the UE's keys never leave the access leg
        towards_core = res.sdp if case.direction is ORIG else b""
        for token in ("$K80", "$K80B", "$K32"):
            assert TOKENS[token].encode() not in towards_core
        assert b"3ge2ae" not in towards_core


# -- what happens after a kept re-offer --------------------------------------------------------


def test_keep_reuses_the_ue_key_as_k11_and_gives_the_same_k12_back() -> None:
    first = first_call("orig_rtp")
    policy = load_policy(None, "<test>")
    plan = plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, policy, SUB, previous=first)
    assert "re-offer: the UE kept its key" in plan.decisions[0].action
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    again = apply_answer(res.state, sdp(CORE_ANSWER), counter_rng())
    s0, s1 = first.plan.streams[0], again.plan.streams[0]
    assert s1.mode is StreamMode.E2AE
    assert s1.rx_key == s0.rx_key and s1.tx_key == s0.tx_key  # the UE's crypto context stays


def test_keep_on_a_terminating_call_takes_k22_as_k11() -> None:
    first = first_call("term_rtp")
    plan = plan_offer(sdp(UE_TERM_REOFFER), ORIG, ALL, load_policy(None, "t"), SUB,
                      previous=first)
    k11 = plan.streams[0].k11
    assert k11 is not None and k11.key.key_salt == parse_crypto(
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + TOKENS["$K80B"]).key.key_salt
    assert "the UE kept its key" in plan.decisions[0].action


def test_keep_plain_reoffer_stays_anchored_without_keys() -> None:
    first = first_call("orig_rtp")
    plan = plan_offer(sdp(UE_REOFFER_AVP), ORIG, ALL, load_policy(None, "t"), SUB,
                      previous=first)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    ans = apply_answer(res.state, sdp(CORE_ANSWER), counter_rng())
    (s,) = ans.plan.streams
    assert s.mode is StreamMode.PASS and s.rx_key is None and s.tx_key is None
    assert s.core_remote is not None and s.core_remote.port == 20000
    assert b"c=IN IP4 203.0.113.20" in ans.sdp and b"RTP/AVP" in ans.sdp  # gateway, plain
    assert b"crypto" not in ans.sdp
    assert "SRTP keys dropped" in ans.decisions[0].action


def test_keep_core_reoffer_repeats_k21() -> None:
    first = first_call("orig_rtp_unregistered")
    k12 = first.plan.streams[0].tx_key
    assert k12 is not None
    plan = plan_offer(sdp(CORE_REOFFER_AVP), TERM, NO_E2AE, load_policy(None, "t"), SUB,
                      previous=first)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    (line,) = [parse_crypto(x[9:]) for x in res.sdp.decode().split("\r\n")
               if x.startswith("a=crypto:")]
    assert line.key.key_salt == k12.key_salt  # the UE's crypto context stays valid


def test_keep_core_msrp_tls_terminates_both_legs() -> None:
    first = first_call("term_msrp")
    plan = plan_offer(sdp(CORE_MSRP_REOFFER_TLS), TERM, ALL, load_policy(None, "t"), SUB,
                      previous=first)
    so = plan.streams[0]
    assert so.mode is StreamMode.E2AE and so.core_tls and so.core_fingerprints


def test_anchor_all_allow_relays_the_downgraded_stream_in_pass_mode() -> None:
    first = first_call("orig_rtp")
    plan = plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, load_policy({"e2ae_downgrade": "allow"},
                      "t"), SUB, anchor_all=True, previous=first)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    assert res.decisions[0].mode is StreamMode.PASS
    assert AGW_CORE.encode() in res.sdp and TOKENS["$K80"].encode() in res.sdp


@pytest.mark.parametrize("value", ["keep", "reject", "allow"])
def test_removing_a_stream_or_keeping_e2ae_is_no_downgrade(value: str) -> None:
    first = first_call("orig_rtp")
    policy = load_policy({"e2ae_downgrade": value}, "t")
    gone = sdp(UE_OFFER.replace("m=audio 49170", "m=audio 0"))
    plan = plan_offer(gone, ORIG, ALL, policy, SUB, previous=first)
    assert plan.decisions[0].mode is StreamMode.REJECTED
    plan = plan_offer(sdp(UE_OFFER), ORIG, ALL, policy, SUB, previous=first)
    assert plan.decisions[0].mode is StreamMode.E2AE and "e2ae_downgrade" not in (
        plan.decisions[0].rule)


def test_a_pending_offer_counts_as_previous() -> None:
    rng = counter_rng()
    policy = load_policy(None, "t")
    plan = plan_offer(sdp(UE_OFFER), ORIG, ALL, policy, SUB)
    pending = apply_offer(plan, reserve(plan.requests), rng).state
    with pytest.raises(SdpError, match="m-line 0"):
        plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, load_policy({"e2ae_downgrade": "reject"},
                   "t"), SUB, previous=pending)
    again = plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, policy, SUB, previous=pending)
    assert again.decisions[0].mode is StreamMode.E2AE


class Spy(YamlPolicy):
    def __init__(self, verdict: DowngradeAction) -> None:
        super().__init__()
        self.verdict = verdict
        self.seen: list[PolicyContext] = []

    def e2ae_downgrade(self, ctx: PolicyContext) -> DowngradeAction:
        self.seen.append(ctx)
        return self.verdict


def test_policy_is_asked_only_for_a_downgrade_with_the_stream_context() -> None:
    first = first_call("orig_rtp")
    spy = Spy(DowngradeAction.KEEP)
    plan_offer(sdp(UE_OFFER), ORIG, ALL, spy, SUB, previous=first)
    plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, spy, SUB)  # no previous: an initial offer
    assert spy.seen == []
    plan = plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, spy, SUB, previous=first)
    (ctx,) = spy.seen
    assert (ctx.subscriber, ctx.direction, ctx.index, ctx.proto) == (SUB, ORIG, 0, "RTP/SAVP")
    assert "e2ae_downgrade=keep (policy default)" in plan.decisions[0].rule


def test_per_subscriber_override() -> None:
    policy = load_policy({"subscribers": [{"match": "sip:+1555*", "e2ae_downgrade": "reject"}]},
                         "t")
    first = first_call("orig_rtp")
    with pytest.raises(SdpError, match="e2ae_downgrade"):
        plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, policy, SUB, previous=first)
    plan = plan_offer(sdp(UE_REOFFER_SAVP), ORIG, ALL, policy, "sip:+4930@x", previous=first)
    assert plan.decisions[0].mode is StreamMode.E2AE


def test_bad_value_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        load_policy({"e2ae_downgrade": "sometimes"}, "f.yaml")
    assert "policy.e2ae_downgrade" in str(e.value) and "keep, reject, allow" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_policy({"subscribers": [{"match": "x", "e2ae_downgrade": True}]}, "f.yaml")
    assert "policy.subscribers[0].e2ae_downgrade" in str(e.value)


# -- the dry run shows the decision --------------------------------------------------------------


def test_sdp_dry_run_shows_the_downgrade_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pcscf_alg import sdp_cli

    for name, text in (("o", UE_OFFER), ("a", CORE_ANSWER), ("r", UE_REOFFER_SAVP)):
        (tmp_path / name).write_bytes(sdp(text))
    base = ["sdp", "--offer", str(tmp_path / "o"), "--answer", str(tmp_path / "a"),
            "--reoffer", str(tmp_path / "r"), "-d", "orig", "--ue", "rtp"]
    assert sdp_cli.main(base) == 0
    out = capsys.readouterr().out
    section = out.split("## re-offer (originating) P-CSCF -> core\n", 1)[1]
    assert "m=audio 30000 RTP/AVP 0" in section and "a=crypto" not in section
    assert ("m[0] rtp e2ae: e2ae stream re-offered by the UE without a=3ge2ae:requested: "
            "kept e2ae") in section
    assert "[TS 33.328 7.2.1 / local policy e2ae_downgrade=keep (policy default)]" in section
    (tmp_path / "c.yaml").write_text("policy: {e2ae_downgrade: reject}\n")
    assert sdp_cli.main([*base, "-c", str(tmp_path / "c.yaml")]) == 1
    out = capsys.readouterr().out
    assert "## re-offer refused: 488 Not Acceptable Here" in out
    assert 'Warning: 399 pcscf-alg "re-offer would take e2ae stream m-line 0 (audio' in out
    no_answer = ["sdp", "--offer", str(tmp_path / "o"), "--reoffer", str(tmp_path / "r"),
                 "-d", "orig"]
    assert sdp_cli.main(no_answer) == 2
    assert "--reoffer needs --answer" in capsys.readouterr().err


def test_keep_overrides_a_note_2a_e2e_verdict_on_a_stream_that_is_e2ae() -> None:
    # e2ae was applied without registered support; the policy now says e2e for NOTE 2a (the
    # indication would be dropped and the UE's key relayed to the core): the stream stays e2ae
    first = first_call("orig_rtp_unregistered")
    policy = load_policy({"e2ae_not_registered": "e2e"}, "t")
    plan = plan_offer(sdp(UE_OFFER), ORIG, NO_E2AE, policy, SUB, previous=first)
    dec = plan.decisions[0]
    assert dec.mode is StreamMode.E2AE
    assert "with e2ae requested, which policy alone would not apply" in dec.action
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    assert b"inline:" not in res.sdp and b"RTP/AVP" in res.sdp
    first = first_call("orig_msrp")
    plan = plan_offer(sdp(UE_MSRP_REOFFER_TCP), ORIG, ALL, policy, SUB, previous=first)
    assert plan.decisions[0].action.endswith("plain on both legs, TLS no longer terminated")
