"""Prometheus metrics of the daemon (`GET /metrics` on the admin endpoint, issue 13).

The counting half lives in the sans-IO core (`pcscf_alg.callstats`, the counters of `alg.Pcscf`
and `calls.CallLayer`): plain dicts and lists, so the hot path pays a dict increment, never a
`prometheus_client` lock or a label look-up. This module is the exporting half:
`DaemonCollector` reads every counter the daemon already keeps (`Pcscf.counters`, the transport
counters, `CallLayer.counters`, the gateway's event counters and media totals, the registration
store, the transaction layers, `App.reloads`) **at scrape time**, and `new_registry` puts it in a
`CollectorRegistry` of its own: each daemon has one, so several daemons in one process (the
tests) never share or collide on the global registry.

It reads the daemon through `DaemonView` (what `app.App` offers), not `App` itself, so that the
edge modules do not import one another in a circle (issue 12).

Every metric name starts with `pcscf_alg_`. Nothing here reads or exports key material: the
collector sees counters and decision outcomes only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from pcscf_alg.callstats import (
    DIRECTIONS,
    OUTCOMES,
    PROTOCOLS,
    DecisionCounts,
    OfferLatency,
    count_decisions,
    count_fast_path,
    count_refused_offer,
    decision_outcome,
    offer_protocols,
)

if TYPE_CHECKING:
    from pcscf_alg.alg import Pcscf
    from pcscf_alg.config import Config
    from pcscf_alg.mediaplan import Side
    from pcscf_alg.registration import RegistrationStore
    from pcscf_alg.transport import SideTransport

log = logging.getLogger(__name__)

PREFIX: Final = "pcscf_alg_"


class DaemonView(Protocol):
    """What the admin endpoint and the collector read of a running daemon (`app.App`)."""

    @property
    def cfg(self) -> Config: ...
    @property
    def pcscf(self) -> Pcscf: ...
    @property
    def registrations(self) -> RegistrationStore: ...
    @property
    def transports(self) -> Mapping[Side, SideTransport]: ...
    @property
    def gateway(self) -> Any:  # the AccessGateway, or None before the media plane started
        ...
    @property
    def reloads(self) -> Mapping[str, int]: ...


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


def _field_counters(obj: Any, prefix: str, source: str, stats_key: str) -> Iterator[Metric]:
    """One counter per integer field of a counters dataclass, named `prefix` + field."""
    for name, v in _int_fields(obj):
        c = _counter(prefix + name, f"{source}.{name} (see /stats '{stats_key}').")
        c.add_metric([], v)
        yield c


class DaemonCollector(Collector):
    """Reads the daemon's counters when Prometheus scrapes; holds no state of its own."""

    def __init__(self, app: DaemonView) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        app = self.app
        out: list[Metric] = [self._info()]
        # Each group on its own: a source another engineer is changing must not take the
        # whole scrape down with it.
        for group in (
            self._sip,
            self._transport,
            self._registrations,
            self._store,
            self._calls,
            self._reloads,
        ):
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
    def _sip(app: DaemonView) -> Iterator[Metric]:
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
        yield from _field_counters(p.counters, "sip_", "Pcscf.counters", "counters")
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
    def _transport(app: DaemonView) -> Iterator[Metric]:
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
    def _registrations(app: DaemonView) -> Iterator[Metric]:
        bindings = getattr(app.registrations, "bindings", None)
        total = _gauge("bindings", "Registered bindings.")
        total.add_metric([], len(app.registrations))
        yield total
        e2ae = _gauge(
            "bindings_e2ae",
            "Bindings with e2ae support established at registration (UE and P-CSCF), by protocol.",
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
    def _store(app: DaemonView) -> Iterator[Metric]:
        """The shared registration store (`registration.store.backend: redis`); nothing for the
        in-memory one."""
        stats = getattr(app.registrations, "stats", None)
        if not callable(stats):
            return
        st: dict[str, Any] = stats()
        gauges = {
            "connected": "1 while the registration store can write to Redis (REGISTERs are "
            "answered 503 while 0).",
            "outbox": "Binding changes waiting to be written to Redis.",
        }
        for name, v in st.items():
            if isinstance(v, bool) or not isinstance(v, int):
                continue
            if name in gauges:
                g = _gauge(f"store_{name}", gauges[name])
                g.add_metric([], v)
                yield g
            else:
                c = _counter(f"store_{name}", f"Registration store: {name} (see /stats 'store').")
                c.add_metric([], v)
                yield c

    @staticmethod
    def _calls(app: DaemonView) -> Iterator[Metric]:
        cm = app.pcscf.calls
        if cm is None:
            return
        active = _gauge("calls_active", "Call legs held by the call layer.")
        active.add_metric([], len(cm.calls))
        yield active
        yield from _field_counters(cm.counters, "calls_", "CallLayer.counters", "calls")
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
        if app.gateway is not None:
            yield from DaemonCollector._gateway(app.gateway)

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
    def _reloads(app: DaemonView) -> Iterator[Metric]:
        c = _counter("config_reloads", "Configuration reloads, by outcome.", ("outcome",))
        for outcome, n in sorted(getattr(app, "reloads", {}).items()):
            c.add_metric([str(outcome)], n)
        yield c


def new_registry(app: DaemonView) -> CollectorRegistry:
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
