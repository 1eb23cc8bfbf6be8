"""e2ae engine behaviour beyond the golden table: re-offers, key handling, API contracts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcscf_alg.e2ae import (
    NO_E2AE,
    E2aeFlags,
    StreamDecision,
    apply_answer,
    apply_offer,
    plan_offer,
    redact_sdp,
)
from pcscf_alg.errors import GatewayError, SdpError
from pcscf_alg.mediaplan import (
    Direction,
    MediaKind,
    SetupRole,
    StreamMode,
    ThroughConnection,
)
from pcscf_alg.policy import PolicyContext, YamlPolicy, load_policy, strict_policy
from pcscf_alg.sdp.crypto import CryptoAttr, parse_crypto
from pcscf_alg.sdp.model import Sdp

from .sdp.helpers import TOKENS, counter_rng, oracle_check, reserve, sdp

ALL = E2aeFlags(True, True, True, True)
ORIG, TERM = Direction.ORIGINATING, Direction.TERMINATING

UE_OFFER = sdp("""
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
""")
CORE_ANSWER = sdp("""
    v=0
    o=- 2 2 IN IP4 192.0.2.99
    s=-
    c=IN IP4 192.0.2.99
    t=0 0
    m=audio 20000 RTP/AVP 0
    a=sendrecv
""")
CORE_OFFER = sdp("""
    v=0
    o=- 2 2 IN IP4 192.0.2.99
    s=-
    c=IN IP4 192.0.2.99
    t=0 0
    m=audio 20000 RTP/AVP 0
    a=sendrecv
""")


def ue_answer(tag: int = 1, suite: str = "AES_CM_128_HMAC_SHA1_80", key: str = "$K80B",
              direction: str = "sendrecv") -> bytes:
    return sdp(f"""
        v=0
        o=- 3 3 IN IP4 198.51.100.77
        s=-
        c=IN IP4 198.51.100.77
        t=0 0
        m=audio 49200 RTP/SAVP 0
        a=crypto:{tag} {suite} inline:{key}
        a={direction}
    """)


def cryptos(data: bytes) -> list[CryptoAttr]:
    return [parse_crypto(line[9:]) for line in data.decode().split("\r\n")
            if line.startswith("a=crypto:")]


def orig_call(offer: bytes = UE_OFFER, **kw: object):  # type: ignore[no-untyped-def]
    rng = counter_rng()
    plan = plan_offer(offer, ORIG, ALL, strict_policy(), **kw)  # type: ignore[arg-type]
    res = apply_offer(plan, reserve(plan.requests), rng)
    return apply_answer(res.state, CORE_ANSWER, rng)


def term_call(**kw: object):  # type: ignore[no-untyped-def]
    rng = counter_rng()
    plan = plan_offer(CORE_OFFER, TERM, ALL, strict_policy(), **kw)  # type: ignore[arg-type]
    res = apply_offer(plan, reserve(plan.requests), rng)
    return res, apply_answer(res.state, ue_answer(), rng)


def shifted_rng():  # type: ignore[no-untyped-def]
    """A counter rng that does not repeat the keys of a fresh `counter_rng()`."""
    rng = counter_rng()
    rng(1)
    return rng


# -- re-offers ---------------------------------------------------------------------------------


def test_reoffer_towards_ue_keeps_tag_suite_and_k21() -> None:
    _, first = term_call()
    k21 = first.plan.streams[0].tx_key
    assert k21 is not None
    # hold from the core: a new, complete offer; the UE must see the same crypto again
    hold = CORE_OFFER.replace(b"a=sendrecv", b"a=sendonly")
    plan = plan_offer(hold, TERM, ALL, strict_policy(), previous=first)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    (line,) = cryptos(res.sdp)
    assert (line.tag, line.suite, line.key.key_salt) == (k21.tag, k21.suite, k21.key_salt)
    assert b"a=3ge2ae:applied" in res.sdp and b"RTP/SAVP" in res.sdp
    again = apply_answer(res.state, ue_answer(direction="recvonly"), counter_rng())
    assert again.plan.streams[0].tx_key == k21
    assert again.plan.streams[0].through is ThroughConnection.SENDONLY


def test_reoffer_while_pending_repeats_the_offer() -> None:
    first, _ = term_call()
    plan = plan_offer(CORE_OFFER, TERM, ALL, strict_policy(), previous=first.state)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    assert cryptos(res.sdp) == cryptos(first.sdp)


def test_reoffer_rekey_and_new_mlines_get_new_keys() -> None:
    _, first = term_call()
    k21 = first.plan.streams[0].tx_key
    assert k21 is not None
    plan = plan_offer(CORE_OFFER, TERM, ALL, strict_policy(), previous=first, rekey=True)
    res = apply_offer(plan, reserve(plan.requests), shifted_rng())
    assert all(c.key.key_salt != k21.key_salt for c in cryptos(res.sdp))
    assert len(cryptos(res.sdp)) == 2
    # adding video: audio keeps its key, video gets fresh ones
    two = CORE_OFFER + b"m=video 20002 RTP/AVP 97\r\n"
    plan = plan_offer(two, TERM, ALL, strict_policy(), previous=first)
    res = apply_offer(plan, reserve(plan.requests), shifted_rng())
    lines = cryptos(res.sdp)
    assert lines[0].key.key_salt == k21.key_salt
    assert len(lines) == 3 and all(c.key.key_salt != k21.key_salt for c in lines[1:])


def test_reoffer_from_ue_with_same_key_keeps_k12() -> None:
    first = orig_call()
    k12 = first.plan.streams[0].tx_key
    again = orig_call(previous=first)
    assert again.plan.streams[0].tx_key == k12
    assert "kept from the last exchange" in again.decisions[0].action


def test_reoffer_from_ue_prefers_its_unchanged_line() -> None:
    first = orig_call()
    # the UE re-offers with its lines swapped: the one in use is still selected
    swapped = UE_OFFER.replace(b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" +
                               TOKENS["$K80"].encode() + b"\r\n", b"") + b""
    swapped = swapped.replace(b"a=sendrecv", b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" +
                              TOKENS["$K80"].encode() + b"\r\na=sendrecv")
    swapped = swapped.replace(b"a=crypto:2", b"a=crypto:3")
    again = orig_call(swapped, previous=first)
    assert again.plan.streams[0].rx_key == first.plan.streams[0].rx_key
    assert again.plan.streams[0].tx_key == first.plan.streams[0].tx_key


def test_reoffer_from_ue_with_new_key_or_rekey_gets_new_k12() -> None:
    first = orig_call()
    k12 = first.plan.streams[0].tx_key
    assert k12 is not None
    changed = UE_OFFER.replace(TOKENS["$K80"].encode(), TOKENS["$K80B"].encode())
    rng = counter_rng()
    rng(30)  # a different key stream than the first call
    plan = plan_offer(changed, ORIG, ALL, strict_policy(), previous=first)
    res = apply_offer(plan, reserve(plan.requests), rng)
    again = apply_answer(res.state, CORE_ANSWER, rng)
    assert again.plan.streams[0].tx_key != k12
    plan = plan_offer(UE_OFFER, ORIG, ALL, strict_policy(), previous=first, rekey=True)
    res = apply_offer(plan, reserve(plan.requests), rng)
    assert apply_answer(res.state, CORE_ANSWER, rng).plan.streams[0].tx_key != k12


def test_reoffer_towards_ue_after_an_originating_call_offers_k12() -> None:
    first = orig_call()
    k12 = first.plan.streams[0].tx_key
    assert k12 is not None
    plan = plan_offer(CORE_OFFER, TERM, ALL, strict_policy(), previous=first)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    (line,) = cryptos(res.sdp)
    assert line.to_srtp_key() == k12


# -- API contracts -----------------------------------------------------------------------------


def test_deterministic_with_the_same_rng() -> None:
    a, b = term_call(), term_call()
    assert a[0].sdp == b[0].sdp and a[1].plan == b[1].plan


def test_missing_reservation_or_fingerprint_is_a_gateway_error() -> None:
    plan = plan_offer(UE_OFFER, ORIG, ALL, strict_policy())
    with pytest.raises(GatewayError, match="m-line 0"):
        apply_offer(plan, {}, counter_rng())
    msrp = sdp("""
        v=0
        o=- 2 2 IN IP4 192.0.2.99
        s=-
        c=IN IP4 192.0.2.99
        t=0 0
        m=message 20010 TCP/MSRP *
        a=path:msrp://192.0.2.99:20010/s;tcp
    """)
    plan = plan_offer(msrp, TERM, ALL, strict_policy())
    res = reserve(plan.requests)
    res[0] = res[0].__class__(0, MediaKind.MSRP, res[0].access, res[0].core, None)
    with pytest.raises(GatewayError, match="fingerprint"):
        apply_offer(plan, res, counter_rng())


def test_msrp_without_path_is_refused_for_e2ae() -> None:
    msrp = sdp("""
        v=0
        o=- 2 2 IN IP4 192.0.2.99
        s=-
        c=IN IP4 192.0.2.99
        t=0 0
        m=message 20010 TCP/MSRP *
    """)
    with pytest.raises(SdpError, match="a=path"):
        plan_offer(msrp, TERM, ALL, strict_policy())
    assert plan_offer(msrp, TERM, NO_E2AE, strict_policy()).decisions[0].mode is StreamMode.BYPASS


def test_requests_carry_rtcp_mux_and_fingerprint_request() -> None:
    offer = UE_OFFER.replace(b"a=sendrecv", b"a=rtcp-mux\r\na=sendrecv")
    plan = plan_offer(offer, ORIG, ALL, strict_policy())
    (req,) = plan.requests
    assert req.access_rtcp_mux and req.core_rtcp_mux and not req.want_local_fingerprint


def test_other_protos_are_never_anchored() -> None:
    t38 = sdp("""
        v=0
        o=- 2 2 IN IP4 192.0.2.99
        s=-
        c=IN IP4 192.0.2.99
        t=0 0
        m=image 20010 udptl t38
        a=3ge2ae:applied
    """)
    plan = plan_offer(t38, TERM, ALL, strict_policy(), anchor_all=True)
    assert plan.requests == ()
    assert plan.decisions[0].mode is StreamMode.BYPASS and plan.decisions[0].kind is MediaKind.OTHER
    res = apply_offer(plan, {}, counter_rng())
    assert b"3ge2ae" not in res.sdp


def test_anchor_all_msrp_pass_roles_follow_the_answer() -> None:
    offer = sdp("""
        v=0
        o=- 1 1 IN IP4 198.51.100.10
        s=-
        c=IN IP4 198.51.100.10
        t=0 0
        m=message 50000 TCP/MSRP *
        a=path:msrp://198.51.100.10:50000/s;tcp
        a=setup:actpass
    """)
    answer = sdp("""
        v=0
        o=- 2 2 IN IP4 192.0.2.99
        s=-
        c=IN IP4 192.0.2.99
        t=0 0
        m=message 20010 TCP/MSRP *
        a=path:msrp://192.0.2.99:20010/c;tcp
        a=setup:active
    """)
    rng = counter_rng()
    plan = plan_offer(offer, ORIG, NO_E2AE, strict_policy(), anchor_all=True)
    res = apply_offer(plan, reserve(plan.requests), rng)
    ans = apply_answer(res.state, answer, rng)
    s = ans.plan.streams[0]
    assert s.mode is StreamMode.PASS
    # the UE reads "answerer active": the gateway connects to the UE, the core connects to us
    assert (s.access_setup, s.core_setup) == (SetupRole.ACTIVE, SetupRole.PASSIVE)
    assert b"a=path:msrp://198.51.100.10:50000/s;tcp" in res.sdp  # bytes relayed: path kept
    assert b"c=IN IP4 192.0.2.20" in res.sdp


def test_terminating_through_connection_follows_ue_answer() -> None:
    rng = counter_rng()
    plan = plan_offer(CORE_OFFER, TERM, ALL, strict_policy())
    res = apply_offer(plan, reserve(plan.requests), rng)
    ans = apply_answer(res.state, ue_answer(direction="sendonly"), rng)
    assert ans.plan.streams[0].through is ThroughConnection.RECVONLY
    ans = apply_answer(res.state, ue_answer(direction="inactive"), rng)
    assert ans.plan.streams[0].through is ThroughConnection.INACTIVE


def test_str_input_and_parsed_input() -> None:
    text = UE_OFFER.decode().replace("\r\n", "\n")
    plan = plan_offer(text, ORIG, ALL, strict_policy())
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    assert b"\r\n" not in res.sdp
    plan2 = plan_offer(Sdp.parse(UE_OFFER), ORIG, ALL, strict_policy())
    assert plan2.decisions == plan_offer(UE_OFFER, ORIG, ALL, strict_policy()).decisions


def test_decision_text_names_clause_and_policy_override() -> None:
    policy = load_policy({"subscribers": [{"match": "sip:+1555*", "e2ae_not_registered": "e2e"}]},
                         "f")
    plan = plan_offer(UE_OFFER, ORIG, NO_E2AE, policy, "sip:+15550001@x")
    d = plan.decisions[0]
    assert isinstance(d, StreamDecision)
    assert "7.2.1 NOTE 2a" in d.rule and "policy.subscribers[0]" in d.rule
    assert str(d).startswith("m[0] rtp bypass: ")
    with pytest.raises(SdpError, match="NOTE 2a"):
        plan_offer(UE_OFFER, ORIG, NO_E2AE, policy, "sip:+4930@x")


class Spy(YamlPolicy):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, PolicyContext]] = []

    def originating_msrp_tls(self, ctx):  # type: ignore[no-untyped-def]
        self.seen.append(("originating_msrp_tls", ctx))
        return super().originating_msrp_tls(ctx)

    def select_crypto(self, ctx, candidates: Sequence[CryptoAttr]):  # type: ignore[no-untyped-def]
        self.seen.append(("select_crypto", ctx))
        assert [c.tag for c in candidates] == [1, 2]
        return candidates[1]


def test_policy_sees_the_stream_context() -> None:
    spy = Spy()
    offer = UE_OFFER + sdp("""
        m=message 50000 TCP/TLS/MSRP *
        a=path:msrps://198.51.100.10:50000/s;tcp
        a=fingerprint:$UEFP
    """).split(b"\r\n", 0)[0]
    plan = plan_offer(offer, ORIG, E2aeFlags(ue_rtp=True, net_rtp=True, net_msrp=True), spy,
                      "sip:me@x")
    names = [n for n, _ in spy.seen]
    assert names == ["select_crypto", "originating_msrp_tls"]
    ctx = spy.seen[1][1]
    assert (ctx.subscriber, ctx.direction, ctx.index, ctx.kind, ctx.proto) == (
        "sip:me@x", ORIG, 1, MediaKind.MSRP, "TCP/TLS/MSRP")
    assert (ctx.ue_supports, ctx.net_supports) == (False, True)
    assert plan.streams[0].k11 is not None and plan.streams[0].k11.tag == 2


def test_redact_sdp() -> None:
    out = redact_sdp(UE_OFFER)
    assert TOKENS["$K80"] not in out and "inline:<redacted>" in out
    assert redact_sdp("a=crypto:1 X inline:abc|2^20") == "a=crypto:1 X inline:<redacted>|2^20"


def test_flags_need_both_sides() -> None:
    assert not E2aeFlags(ue_rtp=True).rtp and E2aeFlags(ue_rtp=True, net_rtp=True).rtp
    assert not E2aeFlags(ue_msrp=True, net_rtp=True).msrp and E2aeFlags() == NO_E2AE


# -- properties --------------------------------------------------------------------------------

_extra = st.lists(
    st.sampled_from([
        "a=3ge2ae:requested", "a=3GE2AE:applied", "a=3ge2ae:whatever", "a=rtcp-mux",
        "a=rtcp-fb:* nack", "a=ptime:20", "a=curr:qos local none", "a=foo:bar baz",
        "a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:" + TOKENS["$K32"] + "|2^20",
    ]),
    max_size=6,
    unique=True,
)


@settings(max_examples=60, deadline=None)
@given(_extra, st.sampled_from(["RTP/SAVP", "RTP/SAVPF", "RTP/AVP"]), st.booleans(),
       st.booleans())
def test_no_ue_key_and_no_3ge2ae_ever_reaches_the_core(
    extra: list[str], proto: str, registered: bool, session_level: bool
) -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0"]
    if session_level:
        lines.append("a=3ge2ae:requested")
    lines += [f"m=audio 4000 {proto} 0",
              "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + TOKENS["$K80"], *extra]
    offer = ("\r\n".join(lines) + "\r\n").encode()
    flags = ALL if registered else E2aeFlags()
    policy = load_policy({"e2ae_not_registered": "apply"}, "f")
    plan = plan_offer(offer, ORIG, flags, policy)
    res = apply_offer(plan, reserve(plan.requests), counter_rng())
    assert b"3ge2ae" not in res.sdp.lower()
    oracle_check(res.sdp)
    if plan.decisions[0].mode is StreamMode.E2AE:
        assert b"inline:" not in res.sdp
        assert b"RTP/AVP" in res.sdp
    else:  # bypass: untouched apart from 3ge2ae sanitising
        kept = [x for x in lines if not x.lower().startswith("a=3ge2ae")]
        assert res.sdp == ("\r\n".join(kept) + "\r\n").encode()


def test_untouched_fast_path_is_conservative() -> None:
    from pcscf_alg.e2ae import E2aeFlags, strip_indications, untouched
    from pcscf_alg.mediaplan import Direction

    plain = b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=sendrecv\r\n"
    orig, term = Direction.ORIGINATING, Direction.TERMINATING
    assert untouched(plain, orig, E2aeFlags())
    assert not untouched(plain.replace(b"AVP", b"SAVP"), orig, E2aeFlags())
    assert not untouched(plain + b"a=3ge2ae:requested\r\n", orig, E2aeFlags())
    assert not untouched(plain + b"m=message 2 TCP/MSRP *\r\n", orig, E2aeFlags())
    assert untouched(plain, term, E2aeFlags(ue_msrp=True, net_msrp=True))
    assert not untouched(plain, term, E2aeFlags(ue_rtp=True, net_rtp=True))
    assert not untouched(plain + b"m=message 2 TCP/MSRP *\r\n", term, E2aeFlags())
    body = plain + b"a=3ge2ae:applied\r\n"
    assert strip_indications(body) == plain
    assert strip_indications(plain) is plain


def test_stream_plans_built_by_the_engine_equal_the_constructors() -> None:
    # `_stream_plan` fills a bare instance's __dict__ instead of running StreamPlan.__init__:
    # same fields in the same order, equality, hash, repr, frozenness; a misspelt field fails.
    from pcscf_alg.e2ae.answer import _stream_plan
    from pcscf_alg.mediaplan import Endpoint, MediaKind, StreamMode, StreamPlan, ThroughConnection

    kw = {"ue_remote": Endpoint("192.0.2.1", 4000), "through": ThroughConnection.SENDONLY,
          "core_rtcp_mux": True}
    ours = _stream_plan(2, MediaKind.RTP, StreamMode.E2AE, **kw)
    ref = StreamPlan(2, MediaKind.RTP, StreamMode.E2AE, **kw)  # type: ignore[arg-type]
    assert ours == ref and hash(ours) == hash(ref) and repr(ours) == repr(ref)
    assert list(vars(ours).items()) == list(vars(ref).items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        ours.index = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field"):
        _stream_plan(2, MediaKind.RTP, StreamMode.E2AE, ue_remote_typo=None)
