"""pcscf_alg/metrics.py: the e2ae decision outcomes (classified from the engine's own decision
records), the offer latency histogram, and the collector read through prometheus_client's own
text parser, one registry per App."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pcscf_alg import e2ae
from pcscf_alg.app import App
from pcscf_alg.callstats import (
    OUTCOMES,
    DecisionCounts,
    OfferLatency,
    count_decisions,
    count_fast_path,
    count_refused_offer,
    decision_outcome,
    offer_protocols,
)
from pcscf_alg.config import parse_config
from pcscf_alg.mediaplan import Direction, Side
from pcscf_alg.metrics import new_registry
from pcscf_alg.policy import load_policy
from pcscf_alg.sip.transaction import Peer

K = "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC"


def sdp(*media: str) -> bytes:
    head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    return (head + "".join(media)).encode()


SRTP_REQ = (
    "m=audio 4000 RTP/SAVP 96\r\na=rtpmap:96 AMR-WB/16000\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K}\r\na=3ge2ae:requested\r\n"
)
SRTP_PLAIN_E2E = (
    f"m=audio 4002 RTP/SAVP 96\r\na=rtpmap:96 AMR-WB/16000\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K}\r\n"
)
MSRP_TLS = (
    "m=message 4004 TCP/TLS/MSRP *\r\na=accept-types:text/plain\r\n"
    "a=path:msrps://10.0.0.1:4004/abc;tcp\r\na=setup:actpass\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
)
REJECTED = "m=video 0 RTP/AVP 97\r\n"
T38 = "m=image 4006 udptl t38\r\n"


def outcomes(
    body: bytes, direction: Direction, flags: e2ae.E2aeFlags, policy: Any
) -> DecisionCounts:
    plan = e2ae.plan_offer(body, direction, flags, policy, "sip:alice@ims.test")
    counts: DecisionCounts = {}
    count_decisions(counts, direction.value, plan.decisions)
    return counts


def test_outcomes_of_the_engines_own_decisions() -> None:
    strict = load_policy(None, "t")
    both = e2ae.E2aeFlags(True, True, True, True)
    got = outcomes(
        sdp(SRTP_REQ, SRTP_PLAIN_E2E, MSRP_TLS, REJECTED, T38), Direction.ORIGINATING, both, strict
    )
    assert got == {
        ("rtp", "originating", "e2ae"): 1,  # requested + established: 7.2.1 steps 2-3
        ("rtp", "originating", "e2e"): 1,  # SRTP without indication: end to end
        # MSRP over TLS without indication: strict policy passes it (7.2.3)
        ("msrp", "originating", "e2e"): 1,
        ("rtp", "originating", "rejected"): 1,  # port 0
    }  # and the T.38 stream carries no e2ae procedure: not counted


def test_policy_decided_termination_is_policy_terminated() -> None:
    # 7.2.1 NOTE 2a "apply": e2ae requested without registered support
    apply = load_policy({"e2ae_not_registered": "apply"}, "t")
    got = outcomes(sdp(SRTP_REQ), Direction.ORIGINATING, e2ae.NO_E2AE, apply)
    assert got == {("rtp", "originating", "policy-terminated"): 1}
    # MSRP over TLS without an indication, terminated by policy (7.2.1 step 2 NOTE x)
    both = e2ae.E2aeFlags(True, True, True, True)
    terminate = load_policy({"originating_msrp_tls": "terminate"}, "t")
    got = outcomes(sdp(MSRP_TLS), Direction.ORIGINATING, both, terminate)
    assert got == {("msrp", "originating", "policy-terminated"): 1}


def test_terminating_plain_rtp_to_an_e2ae_ue_is_e2ae() -> None:
    both = e2ae.E2aeFlags(True, True, True, True)
    plain = "m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 AMR-WB/16000\r\n"
    got = outcomes(sdp(plain), Direction.TERMINATING, both, load_policy(None, "t"))
    assert got == {("rtp", "terminating", "e2ae"): 1}


@pytest.mark.parametrize(
    ("mode", "rule", "want"),
    [
        ("e2ae", "TS 33.328 7.2.1 steps 2-3", "e2ae"),
        (
            "e2ae",
            "TS 33.328 7.2.1 NOTE 2a, step 3; policy e2ae_not_registered=apply (x)",
            "policy-terminated",
        ),
        ("e2ae", "TS 33.328 7.2.1 / local policy e2ae_downgrade=keep (x)", "downgrade"),
        ("pass", "TS 33.328 7.2.1 / local policy e2ae_downgrade=keep (x)", "downgrade"),
        ("bypass", "TS 33.328 7.2.1 step 2 (7.2.2/7.2.3)", "e2e"),
        ("pass", "anchor_all", "e2e"),
        ("rejected", "RFC 3264 §6", "rejected"),
    ],
)
def test_decision_outcome(mode: str, rule: str, want: str) -> None:
    assert decision_outcome(mode, rule) == want
    assert want in OUTCOMES


def test_refused_and_fast_path_offers_are_counted_per_stream() -> None:
    counts: DecisionCounts = {}
    body = sdp(SRTP_REQ, MSRP_TLS, T38)
    assert offer_protocols(body) == ["rtp", "msrp"]
    count_refused_offer(counts, "originating", body)
    assert counts == {("rtp", "originating", "rejected"): 1, ("msrp", "originating", "rejected"): 1}
    counts.clear()
    plain = sdp("m=audio 5000 RTP/AVP 0\r\n", "m=video 5002 RTP/AVPF 96\r\n", T38)
    assert e2ae.untouched(plain, Direction.ORIGINATING, e2ae.NO_E2AE)
    count_fast_path(counts, "originating", plain)
    assert counts == {("rtp", "originating", "e2e"): 2}
    count_fast_path(counts, "terminating", sdp(T38))
    assert ("rtp", "terminating", "e2e") not in counts


def test_offer_latency_buckets_are_cumulative_with_inf_last() -> None:
    h = OfferLatency()
    h.observe_zero()
    h.observe(0.003)
    h.observe(7.0)
    h.observe(-1.0)  # a clock step backwards counts as 0, never as a negative sample
    cum = dict(h.cumulative())
    assert cum["0.0005"] == 2 and cum["0.005"] == 3 and cum["2.5"] == 3 and cum["+Inf"] == 4
    assert list(cum)[-1] == "+Inf"
    assert h.total == pytest.approx(7.003)


def _app(**extra: Any) -> App:
    cfg = parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5070},
                "next_hop": "sip:127.0.0.1:5080;lr",
            },
            "registration": {"require_for_originating": False},
            **extra,
        },
        "test.yaml",
    )
    return App(cfg)


def _parse(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        assert fam.name.startswith("pcscf_alg_"), fam.name
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_reads_the_proxy_counters_at_scrape_time() -> None:
    async def run() -> tuple[bytes, bytes, bytes]:
        app = _app()
        reg = new_registry(app)
        before = generate_latest(reg)
        options = (
            b"OPTIONS sip:bob@ims.test SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-o1;rport\r\nMax-Forwards: 70\r\n"
            b"From: <sip:a@ims.test>;tag=1\r\nTo: <sip:bob@ims.test>\r\nCall-ID: o1@t\r\n"
            b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        odd = options.replace(b"OPTIONS", b"FROBNICATE")
        app.pcscf.receive(options, Side.ACCESS, Peer("udp", "127.0.0.1", 40000), 1.0)
        app.pcscf.receive(odd, Side.ACCESS, Peer("udp", "127.0.0.1", 40000), 1.0)
        app.reloads["ok"] = 2
        other = generate_latest(new_registry(_app()))
        return before, generate_latest(reg), other

    before, after, other = asyncio.run(run())
    b, a, o = _parse(before), _parse(after), _parse(other)
    key = (
        "pcscf_alg_sip_messages_received_total",
        (("method", "OPTIONS"), ("side", "access"), ("status", "0")),
    )
    assert key not in b and a[key] == 1
    # an invented method is counted as "other", so senders cannot grow the label set
    assert a[(key[0], (("method", "other"), ("side", "access"), ("status", "0")))] == 1
    assert a[("pcscf_alg_sip_received_total", ())] == 2
    assert a[("pcscf_alg_config_reloads_total", (("outcome", "ok"),))] == 2
    assert a[("pcscf_alg_bindings", ())] == 0
    assert ("pcscf_alg_transactions", (("kind", "server"), ("side", "access"))) in a
    # each App has its own registry: another daemon in the process sees none of this one's
    # counts, and nothing went to the process-wide default registry
    assert key not in o
    assert b"pcscf_alg_" not in generate_latest(REGISTRY)
