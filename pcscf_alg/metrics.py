"""Prometheus metrics of the daemon (`GET /metrics` on the admin endpoint, issue 13).

Two halves:

- *Counting* (sans-IO, called from the call layer): `count_decisions`, `count_refused_offer`,
  `count_fast_path`, `OfferLatency`. They update plain dicts and lists; the hot path pays a dict
  increment, never a `prometheus_client` lock or a label look-up.
- *Exporting*: `DaemonCollector` reads every counter the daemon already keeps (`Pcscf.counters`,
  the transport counters, `CallManager.counters`, the gateway's event counters and media totals,
  the registration store, the transaction layers, `App.reloads`) **at scrape time**, and
  `new_registry` puts it in a `CollectorRegistry` of its own: each `App` has one, so several
  daemons in one process (the tests) never share or collide on the global registry.

Every metric name starts with `pcscf_alg_`. Nothing here reads or exports key material: the
collector sees counters and decision outcomes only.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from pcscf_alg.app import App
    from pcscf_alg.e2ae import StreamDecision

log = logging.getLogger(__name__)

PREFIX: Final = "pcscf_alg_"

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


# ---------------------------------------------------------------------------------------------
# export


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def _int_fields(obj: Any) -> Iterator[tuple[str, int]]:
    """The integer fields of a counters dataclass (new fields appear as metrics by themselves)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, int) and not isinstance(v, bool):
            yield f.name, v


class DaemonCollector(Collector):
    """Reads the daemon's counters when Prometheus scrapes; holds no state of its own."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        app = self.app
        out: list[Metric] = [self._info()]
        # Each group on its own: a source another engineer is changing must not take the
        # whole scrape down with it.
        for group in (self._sip, self._transport, self._registrations, self._calls, self._reloads):
            try:
                out.extend(group(app))
            except Exception:
                log.exception("metrics: %s failed", group.__name__)
        return out

    @staticmethod
    def _info() -> Metric:
        from pcscf_alg import __version__

        g = _gauge("info", "Build information (value 1).", ("version",))
        g.add_metric([__version__], 1)
        return g

    @staticmethod
    def _sip(app: App) -> Iterator[Metric]:
        p = app.pcscf
        msgs = _counter(
            "sip_messages_received",
            "SIP messages received and parsed, by side (access/core), method (of the CSeq for "
            "responses; 'other' for unknown methods) and status (0 for requests).",
            ("side", "method", "status"),
        )
        for (side, method, status), n in sorted(getattr(p, "messages", {}).items()):
            msgs.add_metric([side, method, str(status)], n)
        yield msgs
        for name, v in _int_fields(p.counters):
            c = _counter(f"sip_{name}", f"Pcscf.counters.{name} (see /stats 'counters').")
            c.add_metric([], v)
            yield c
        local = _counter(
            "sip_local_responses",
            "Responses the P-CSCF generated itself, by status.",
            ("status",),
        )
        for status, n in sorted(p.counters.by_status.items()):
            local.add_metric([str(status)], n)
        yield local
        txn = _gauge(
            "transactions",
            "Live SIP transactions, by side and kind (server/client).",
            ("side", "kind"),
        )
        for side, layer in p.layers.items():
            client = layer.client_count
            txn.add_metric([side.value, "server"], len(layer) - client)
            txn.add_metric([side.value, "client"], client)
        yield txn

    @staticmethod
    def _transport(app: App) -> Iterator[Metric]:
        conns = _gauge("tcp_connections", "Open SIP TCP connections, by side.", ("side",))
        fams: dict[str, CounterMetricFamily] = {}
        for side, t in app.transports.items():
            conns.add_metric([side.value], t.connection_count)
            for name, v in _int_fields(t.counters):
                fam = fams.get(name)
                if fam is None:
                    fam = fams[name] = _counter(
                        f"transport_{name}",
                        f"SIP transport front door: {name} (see /stats 'transport').",
                        ("side",),
                    )
                fam.add_metric([side.value], v)
        yield conns
        yield from fams.values()

    @staticmethod
    def _registrations(app: App) -> Iterator[Metric]:
        bindings = getattr(app.registrations, "bindings", None)
        total = _gauge("bindings", "Registered bindings.")
        total.add_metric([], len(app.registrations))
        yield total
        e2ae = _gauge(
            "bindings_e2ae",
            "Bindings with e2ae support established at registration (UE and P-CSCF), by "
            "protocol.",
            ("protocol",),
        )
        rtp = msrp = 0
        if callable(bindings):
            # One pass over the store per scrape (~20 ms at 100,000 bindings), never per call.
            for b in bindings():
                rtp += b.flags.rtp
                msrp += b.flags.msrp
        e2ae.add_metric(["rtp"], rtp)
        e2ae.add_metric(["msrp"], msrp)
        yield e2ae

    @staticmethod
    def _calls(app: App) -> Iterator[Metric]:
        cm = app.pcscf.calls
        if cm is None:
            return
        active = _gauge("calls_active", "Call legs held by the call layer.")
        active.add_metric([], len(cm.calls))
        yield active
        for name, v in _int_fields(cm.counters):
            c = _counter(f"calls_{name}", f"CallManager.counters.{name} (see /stats 'calls').")
            c.add_metric([], v)
            yield c
        dec = _counter(
            "e2ae_decisions",
            "e2ae decisions per offered RTP/MSRP stream, by protocol, direction and outcome "
            "(e2ae, e2e, rejected, policy-terminated, downgrade).",
            ("protocol", "direction", "outcome"),
        )
        counts: DecisionCounts = getattr(cm, "decisions", {})
        for proto in PROTOCOLS:
            for direction in DIRECTIONS:
                for outcome in OUTCOMES:
                    n = counts.get((proto, direction, outcome), 0)
                    dec.add_metric([proto, direction, outcome], n)
        yield dec
        tls = _counter(
            "tls_handshakes",
            "TLS handshakes of MSRP streams at the gateway, by outcome (established/failed), "
            "reason (ok, fingerprint_mismatch, no_certificate, handshake, handshake_timeout, "
            "connect_failed) and side.",
            ("outcome", "reason", "side"),
        )
        for (outcome, reason, side), n in sorted(getattr(cm, "tls", {}).items()):
            tls.add_metric([outcome, reason, side], n)
        yield tls
        hist: OfferLatency | None = getattr(cm, "offer_latency", None)
        if hist is not None:
            h = HistogramMetricFamily(
                PREFIX + "offer_forward_seconds",
                "Time from an SDP offer's arrival to its forwarding (0 when no gateway "
                "reservation is needed).",
            )
            h.add_metric([], hist.cumulative(), hist.total)
            yield h
        yield from DaemonCollector._gateway(cm.gateway)

    @staticmethod
    def _gateway(gw: Any) -> Iterator[Metric]:
        ports = _gauge(
            "gateway_ports_in_use", "Gateway ports allocated, by transport.", ("transport",)
        )
        by_transport = {"udp": 0, "tcp": 0}
        for transport, _port in gw.active_ports():
            by_transport[transport] = by_transport.get(transport, 0) + 1
        for transport, n in sorted(by_transport.items()):
            ports.add_metric([transport], n)
        yield ports
        contexts = getattr(gw, "contexts", None)
        if callable(contexts):
            g = _gauge("gateway_contexts", "Gateway contexts (one per anchored call leg).")
            g.add_metric([], len(contexts()))
            yield g
        totals: dict[str, int] = getattr(gw, "media_totals", dict)()
        srtp = _counter(
            "srtp_auth_failures",
            "SRTP/SRTCP packets from the UE dropped for failing authentication or the replay "
            "check (RFC 3711 §3.3), all streams since start.",
        )
        srtp.add_metric([], totals.get("auth_failures", 0))
        yield srtp
        mki = _counter(
            "srtp_mki_mismatches",
            "SRTP packets dropped because their MKI did not match the signalled one.",
        )
        mki.add_metric([], totals.get("mki_mismatches", 0))
        yield mki
        pkts = _counter(
            "media_packets",
            "Media relayed by the gateway, by direction (RTP/RTCP packets; MSRP counts bytes).",
            ("direction",),
        )
        octets = _counter("media_bytes", "Media bytes relayed, by direction.", ("direction",))
        for d in ("to_core", "to_ue"):
            pkts.add_metric([d], totals.get(f"{d}_packets", 0))
            octets.add_metric([d], totals.get(f"{d}_bytes", 0))
        yield pkts
        yield octets
        dropped = _counter(
            "media_dropped",
            "Media packets the gateway dropped, by reason (gated: through-connection; "
            "rejected_source: agw.strict_source; other: malformed, send errors...).",
            ("reason",),
        )
        for reason, key in (
            ("gated", "gated"),
            ("rejected_source", "rejected_source"),
            ("other", "dropped"),
        ):
            dropped.add_metric([reason], totals.get(key, 0))
        yield dropped
        counters = getattr(gw, "counters", None)
        if callable(counters):
            ev = _counter(
                "gateway_events",
                "Gateway notifications (TS 23.334), by event and reason.",
                ("event", "reason"),
            )
            for key, n in sorted(counters().items()):
                event, _, reason = key.partition(".")
                ev.add_metric([event, reason], n)
            yield ev

    @staticmethod
    def _reloads(app: App) -> Iterator[Metric]:
        c = _counter("config_reloads", "Configuration reloads, by outcome.", ("outcome",))
        for outcome, n in sorted(getattr(app, "reloads", {}).items()):
            c.add_metric([str(outcome)], n)
        yield c


def new_registry(app: App) -> CollectorRegistry:
    """A registry of this daemon alone (never the process-wide default one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DaemonCollector(app))
    return reg


__all__ = [
    "DIRECTIONS",
    "OUTCOMES",
    "PROTOCOLS",
    "DaemonCollector",
    "DecisionCounts",
    "OfferLatency",
    "count_decisions",
    "count_fast_path",
    "count_refused_offer",
    "decision_outcome",
    "new_registry",
    "offer_protocols",
]
