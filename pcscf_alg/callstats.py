"""Counters of the call layer's decisions, kept by the sans-IO core and exported by
`pcscf_alg.metrics` at scrape time (issue 13's `pcscf_alg_e2ae_decisions_total` and the
offer-latency histogram). Pure: no prometheus_client here, so that the call layer does not
depend on the exporter."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pcscf_alg.e2ae import StreamDecision

# Label values of pcscf_alg_e2ae_decisions_total (the contract of issue 13).
PROTOCOLS: Final = ("rtp", "msrp")
DIRECTIONS: Final = ("originating", "terminating")
OUTCOMES: Final = ("e2ae", "e2e", "rejected", "policy-terminated", "downgrade")

# (protocol, direction, outcome) -> count
DecisionCounts = dict[tuple[str, str, str], int]


def decision_outcome(mode: str, rule: str) -> str:
    """The outcome of one stream decision of the e2ae engine (`StreamDecision.mode.value`,
    `.rule`):

    - `downgrade`: a re-offer that would take an e2ae stream out of e2ae, decided by the
      `e2ae_downgrade` policy (kept, kept anchored plain, or allowed out);
    - `policy-terminated`: e2ae applied because local policy said so where the spec leaves it
      to policy (TS 33.328 7.2.1 NOTE 2a "apply", MSRP over TLS terminated without an
      indication (NOTE x), 7.3.1 terminating MSRP without registered support...): the rule
      names a `policy` verdict;
    - `e2ae`: e2ae by the procedure itself (indication and support established);
    - `e2e`: not terminated: media end to end, plain or with its own security (bypass or
      anchored pass-through);
    - `rejected`: the m-line is rejected (port 0).
    """
    if "e2ae_downgrade" in rule:
        return "downgrade"
    if mode == "e2ae":
        return "policy-terminated" if "policy " in rule else "e2ae"
    if mode == "rejected":
        return "rejected"
    return "e2e"


def count_decisions(
    counts: DecisionCounts, direction: str, decisions: Iterable[StreamDecision]
) -> None:
    """Count the per-stream decisions of one forwarded offer. Streams of other protocols
    (T.38, BFCP...) carry no e2ae procedure and are not counted."""
    for dec in decisions:
        kind = dec.kind.value
        if kind == "other":
            continue
        key = (kind, direction, decision_outcome(dec.mode.value, dec.rule))
        counts[key] = counts.get(key, 0) + 1


def offer_protocols(body: bytes) -> list[str]:
    """The protocol (rtp/msrp) of each m-line of an SDP body that has one, in order. Read from
    the raw bytes: used only for offers the engine refused, whose plan does not exist."""
    out: list[str] = []
    for line in body.split(b"\n"):
        if not line.startswith(b"m="):
            continue
        parts = line.split()
        proto = parts[2].upper() if len(parts) > 2 else b""
        if b"MSRP" in proto:
            out.append("msrp")
        elif b"RTP/" in proto:
            out.append("rtp")
    return out


def count_refused_offer(counts: DecisionCounts, direction: str, body: bytes) -> None:
    """An offer refused with 488 (NOTE 2a reject, `e2ae_downgrade: reject`, no acceptable
    crypto, the gateway refusing...): one `rejected` per RTP/MSRP m-line it offered."""
    for proto in offer_protocols(body):
        key = (proto, direction, "rejected")
        counts[key] = counts.get(key, 0) + 1


def count_fast_path(counts: DecisionCounts, direction: str, body: bytes) -> None:
    """An offer the fast path forwarded untouched (`e2ae.untouched`: no MSRP, no indication,
    no procedure can apply): each RTP m-line is end to end. One C-level scan of the body; an
    `a=tcap` line naming an RTP profile would be counted too (rare, and only in this count)."""
    n = body.count(b" RTP/")
    if n:
        key = ("rtp", direction, "e2e")
        counts[key] = counts.get(key, 0) + n


# Seconds from an offer's arrival to its forwarding: 0 when no gateway reservation is needed,
# else the reservation (ports, sockets; a few ms) plus whatever is queued before it in the call.
OFFER_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(slots=True)
class OfferLatency:
    """A cumulative-on-export histogram kept as plain per-bucket counts (the last slot is
    +Inf), so that observing costs a bisect and two additions."""

    bounds: tuple[float, ...] = OFFER_LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(OFFER_LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def observe_zero(self) -> None:
        """An offer forwarded in the same step it arrived (no gateway round trip)."""
        self.counts[0] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as Prometheus wants them, +Inf last."""
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            out.append((_fmt(bound), float(acc)))
        acc += self.counts[-1]
        out.append(("+Inf", float(acc)))
        return out


def _fmt(v: float) -> str:
    return repr(float(v))
