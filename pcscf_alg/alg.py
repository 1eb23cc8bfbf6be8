"""The P-CSCF (IMS-ALG) proxy core: routes SIP between the access and the core listeners.

Role (docs/design.md §1, RFC 7092 "media-relay B2BUA" in proxy form): transaction-stateful, it
Record-Routes twice when a request crosses from one listener to the other (RFC 5658), keeps
Call-ID, tags and CSeq end to end, and hooks every SDP offer/answer into the e2ae engine
(`pcscf_alg.calls`). Direction comes from the listener: a request arriving on *access* is
originating (from a UE), one arriving on *core* is terminating (to a UE).

IO-free: bytes and addresses come in through `receive()`, out through the `send` callback given
at construction; time is passed in. One `TransactionLayer` per side so every datagram a layer
emits leaves through that side's sockets.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pcscf_alg.calls import CallLayer, Rng
from pcscf_alg.config import Config
from pcscf_alg.effects import (
    Answer,
    Forward,
    ForwardAck,
    GatewayDone,
    MediaEffect,
    Relay,
    SendRequest,
)
from pcscf_alg.errors import RoutingError, SipParseError
from pcscf_alg.mediaplan import Side
from pcscf_alg.proxyctx import ProxyCtx
from pcscf_alg.registrar import Refusal, RegisterCtx, Registrar
from pcscf_alg.registration import (
    Binding,
    Flow,
    RegistrationStore,
    terminating_binding,
)
from pcscf_alg.sip import transaction as tx
from pcscf_alg.sip.headers import NameAddr, SipUri, Via, header_tag
from pcscf_alg.sip.message import (
    REASON_PHRASES,
    SipMessage,
    make_response,
    parse_message,
    salvage_response,
)
from pcscf_alg.sip.secagree import strip_option_tags

if TYPE_CHECKING:
    from pcscf_alg.agw.api import AgwEvent
    from pcscf_alg.policy.base import Policy

log = logging.getLogger(__name__)

Peer = tx.Peer
# send(side, data, peer)
Sender = Callable[[Side, bytes, "tx.Peer"], None]

# Methods that create a dialog and therefore get Record-Route (RFC 3261 §16.6 step 4).
DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
# Methods counted by name in `Pcscf.messages` (RFC 3261 and its extensions in IMS use).
COUNTED_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO"}
    | {"SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
# Option tags we understand in Proxy-Require (RFC 3261 §16.3 step 5): sec-agree (RFC 3329) and
# mediasec (TS 24.229 §7.2A.7, docs/e2ae-notes.md §1.3: never answer 420 for it).
SUPPORTED_PROXY_EXTENSIONS = frozenset({"sec-agree", "mediasec"})
# Removed towards the core on REGISTER (docs/e2ae-notes.md §1.2 item 4).
SEC_OPTION_TAGS = {"sec-agree", "mediasec"}
DEFAULT_MAX_FORWARDS = 70
# RFC 3261 §16.6 step 11 / §16.8: Timer C bounds an INVITE after its first provisional, which
# stops Timer B. "MUST be set for each client transaction ... greater than 3 minutes".
TIMER_C = 181.0
# Distinct Route/Request-URI hosts whose resolution we remember (they come from peers).
ROUTE_CACHE_SIZE = 4096
ALLOW = "INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, OPTIONS, MESSAGE, REFER, NOTIFY, SUBSCRIBE, INFO"


def new_tag() -> str:
    """A To/From tag for responses we generate (RFC 3261 §19.3: at least 32 random bits)."""
    return secrets.token_hex(6)


def _strip_sec_agree(msg: SipMessage) -> None:
    """What the UE says to its P-CSCF about security agreement stops here (RFC 3329 §2.3.1,
    docs/e2ae-notes.md §1.2 item 4): Security-Client/-Verify and the sec-agree and mediasec option
    tags, from REGISTER and from every other request. The 1TR114 ("Telekom") UE sends
    Security-Verify and Require/Proxy-Require: mediasec on INVITE and OPTIONS too (notes §1.3); a
    `Require: mediasec` forwarded to the far end would get the call a 420 there."""
    h = msg.headers
    h.remove("Security-Client")
    h.remove("Security-Verify")
    for name in ("Require", "Proxy-Require"):
        if name in h:
            h.replace_values(name, strip_option_tags(h.get_raw_all(name), SEC_OPTION_TAGS))


def _other(side: Side) -> Side:
    return Side.CORE if side is Side.ACCESS else Side.ACCESS


@dataclass
class Counters:
    """Metrics counters (docs/design.md §5: a counter for every decision)."""

    received: int = 0
    parse_errors: int = 0
    dropped: int = 0
    responses_400: int = 0
    forwarded_requests: int = 0
    forwarded_responses: int = 0
    timeouts: int = 0
    registrations: int = 0
    rejected_unregistered: int = 0
    too_large: int = 0  # over sip.max_message_bytes (513 to requests, responses dropped)
    # requests refused / responses dropped because of where they came from (issue 11: core
    # side outside `sip.core_networks`, in-dialog requests not from the dialog's UE)
    rejected_source: int = 0
    rejected_encoding: int = 0  # 415: a Content-Encoding on an offer/answer carrier
    secagree_throttled: int = 0  # 503: too many failed security agreements from one address
    # requests answered 403/404/503 because their target cannot or may not be routed
    # (errors.RoutingError: unresolvable host, egress not allowed, tel: without a Route)
    routing_refused: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class Pcscf:
    """The proxy. `calls` (set later by the app) handles SDP and media; None = pure proxy."""

    def __init__(
        self,
        cfg: Config,
        registrations: RegistrationStore,
        send: Sender,
        *,
        timers: tx.Timers | None = None,
        addr: dict[Side, tuple[str, int]] | None = None,
        also_ours: Iterable[tuple[str, int]] = (),
    ) -> None:
        """`addr`: the address per side we name in Via, Record-Route, Path and Warning
        (default: the listeners; a worker process names its own ports, pcscf_alg/workers.py).
        `also_ours`: more addresses that are ours (every worker's own ports), recognised with
        the listeners and `addr` in Route and Request-URI."""
        self.cfg = cfg
        self.reg = registrations
        self._send = send
        t = timers or tx.Timers(T1=cfg.sip.t1, T2=cfg.sip.t2, T4=cfg.sip.t4)
        self.layers: dict[Side, tx.TransactionLayer] = {
            side: tx.TransactionLayer(
                t,
                max_server_transactions=cfg.sip.max_transactions,
                retry_after=cfg.sip.overload_retry_after_s,
            )
            for side in (Side.ACCESS, Side.CORE)
        }
        listeners = {
            Side.ACCESS: (cfg.sip.access.host, cfg.sip.access.port),
            Side.CORE: (cfg.sip.core.host, cfg.sip.core.port),
        }
        self.addr: dict[Side, tuple[str, int]] = dict(addr) if addr is not None else listeners
        self.ours: frozenset[tuple[str, int]] = frozenset(
            {*listeners.values(), *self.addr.values(), *also_ours}
        )
        self.counters = Counters()
        # Messages received, by (side, method, status) for /metrics: a response is named by
        # its CSeq method, a request has status 0; unknown methods count as "other" so that
        # a sender inventing methods cannot grow this without bound.
        self.messages: dict[tuple[str, str, int], int] = {}
        self.calls: CallLayer | None = None
        # Gateway operations and key records the call layer queued, for the edge to run.
        self._media_out: list[MediaEffect] = []
        # REGISTER handling; it reads `self.cfg` per request, so a reload reaches it at once.
        self.registrar = Registrar(registrations, lambda: self.cfg, self.addr[Side.CORE])
        self._hosts: dict[str, str] = {"localhost": "127.0.0.1", **dict(cfg.sip.hosts)}
        self._egress = [ipaddress.ip_network(n) for n in cfg.sip.egress_networks]
        self._core_nets = [ipaddress.ip_network(n) for n in cfg.sip.core_networks]
        self._core_any = all(n.prefixlen == 0 for n in self._core_nets) and len(
            {n.version for n in self._core_nets}
        ) == 2
        self._core_src_cache: dict[str, bool] = {}
        self._route_cache: dict[str, str | RoutingError] = {}
        self._route_us: dict[str, bool] = {}
        self.now = 0.0
        # Timer C deadlines, lazily deleted: (deadline, seq, ctx)
        self._timer_c: list[tuple[float, int, ProxyCtx]] = []
        self._timer_c_seq = 0

    def set_config(self, cfg: Config) -> None:
        """Live reload (pcscf_alg/reload.py): run with `cfg` from now on. Keys read per request
        (`registration:`) follow at once; the RFC 3261 §17 timers and the transaction cap apply
        to transactions and timers started from now on (a running timer keeps its deadline).
        What __init__ derived from keys that need a restart (addresses, hosts, networks,
        Security-Server) is not recomputed: the plan keeps those keys as they were."""
        self.cfg = cfg
        s = cfg.sip
        for layer in self.layers.values():
            old = layer.timers
            if (s.t1, s.t2, s.t4) != (old.T1, old.T2, old.T4):
                layer.timers = tx.Timers(T1=s.t1, T2=s.t2, T4=s.t4, D=old.D)
            layer.max_server_transactions = s.max_transactions
            # As TransactionLayer does: by default the time a completed transaction holds its
            # slot (Timer J, RFC 3261 §17.2.2).
            layer.retry_after = (
                s.overload_retry_after_s
                if s.overload_retry_after_s is not None
                else math.ceil(layer.timers.J)
            )

    # ------------------------------------------------------------------ entry points
    def receive(self, data: bytes, side: Side, peer: Peer, now: float) -> None:
        """A message arrived on `side` from `peer`."""
        self.now = now
        self.counters.received += 1
        if len(data) > self.cfg.sip.max_message_bytes:
            # A datagram over sip.max_message_bytes (TCP frames are held to it by the framer).
            self.reject_too_large(data, side, peer)
            return
        try:
            msg = parse_message(data, datagram=peer.transport == "udp")
        except SipParseError as e:
            self.counters.parse_errors += 1
            self._answer_unparseable(data, side, peer, e)
            return
        try:
            method = msg.cseq[1]  # parsed and checked against the request method already
            mkey = (side.value, method if method in COUNTED_METHODS else "other", msg.status)
            self.messages[mkey] = self.messages.get(mkey, 0) + 1
            if msg.is_request:
                self._on_request(msg, side, peer, now)
            else:
                self._on_response(msg, side, peer, now)
        except SipParseError as e:
            # A header we route on was malformed (e.g. Via, Route, a URI): answer requests
            # (400 or the status the error names), drop responses.
            self.counters.parse_errors += 1
            if msg.is_request and msg.method != "ACK":
                self._reply_error(msg, side, peer, e)
        except RoutingError as e:
            # A well-formed request whose target we cannot or may not use (RFC 3261 §16.5):
            # answered 403/404/503 with a Warning, as the error says; not a parse error.
            self.counters.routing_refused += 1
            if msg.is_request and msg.method != "ACK":
                self._reply_error(msg, side, peer, e)
        self.flush()

    def handle_timer(self, now: float) -> None:
        self.now = now
        for layer in self.layers.values():
            layer.handle_timer(now)
        self._fire_timer_c(now)
        self.flush()

    def get_timer(self) -> float | None:
        ts = [t for t in (la.get_timer() for la in self.layers.values()) if t is not None]
        while self._timer_c and self._timer_c[0][2].timer_c != self._timer_c[0][0]:
            heapq.heappop(self._timer_c)  # stale: reset by a later provisional, or final
        if self._timer_c:
            ts.append(self._timer_c[0][0])
        return min(ts) if ts else None

    def _arm_timer_c(self, ctx: ProxyCtx, now: float) -> None:
        ctx.timer_c = now + TIMER_C
        self._timer_c_seq += 1
        heapq.heappush(self._timer_c, (ctx.timer_c, self._timer_c_seq, ctx))

    def _fire_timer_c(self, now: float) -> None:
        """RFC 3261 §16.8: the INVITE got a provisional but no final in time: CANCEL it
        downstream and answer 408 upstream."""
        while self._timer_c and self._timer_c[0][0] <= now:
            deadline, _, ctx = heapq.heappop(self._timer_c)
            if ctx.timer_c != deadline or ctx.final_sent:
                continue
            ctx.timer_c = None
            self.counters.timeouts += 1
            if ctx.client is not None:
                self.layers[ctx.out_side].cancel(ctx.client, now)
            self.answer(ctx, 408, "Request Timeout", warning="no final response (Timer C)")
            if self.calls is not None:
                self.calls.on_failed(ctx, now)
                self._run_call_effects()

    def transport_failure(self, side: Side, transport: str, host: str, port: int) -> None:
        """An outgoing connection could not be opened: fail the transactions waiting on it."""
        self.layers[side].transport_error(Peer(transport, host, port), self.now)
        self.flush()

    def reject_too_large(self, head: bytes, side: Side, peer: Peer) -> None:
        """A message over `sip.max_message_bytes`: a UDP datagram, or the head of a TCP message
        the framer refused. RFC 3261 §21.5.14: 513 to a request we can still address (from
        its head: nothing else is parsed); a response or an ACK is dropped. Nothing of it is
        forwarded, so nothing we send over UDP exceeds a datagram. Never raises."""
        self.counters.too_large += 1
        limit = self.cfg.sip.max_message_bytes
        if self._salvage_reply(head, side, peer, 513, f"message over {limit} bytes"):
            self.counters.by_status[513] = self.counters.by_status.get(513, 0) + 1

    # ------------------------------------------------------------------ the call layer
    def attach_calls(
        self,
        policy: Policy,
        *,
        rng: Rng | None = None,
        anchor_all: bool = False,
        export_keys: bool = False,
    ) -> CallLayer:
        """Hook the call layer in (SDP through the e2ae engine, media through the gateway).
        Without it the P-CSCF is a pure proxy. `export_keys`: queue LI key records."""
        kw = {"rng": rng} if rng is not None else {}
        self.calls = CallLayer(
            self.reg,
            policy,
            ours=self.ours,
            egress_allowed=self.egress_allowed,
            anchor_all=anchor_all,
            export_keys=export_keys,
            **kw,
        )
        return self.calls

    def media_effects(self) -> list[MediaEffect]:
        """Gateway operations and key records the call layer queued since the last call, in
        order (`effects.Reserve/Configure/Release/ExportKeys`). The edge runs them and reports
        each gateway operation's result with `gateway_done`."""
        out, self._media_out = self._media_out, []
        return out

    def gateway_done(self, done: GatewayDone, now: float) -> None:
        """The result of a gateway operation from `media_effects`."""
        self.now = now
        if self.calls is not None:
            self.calls.on_gateway_done(done, now)
        self.flush()

    def gateway_event(self, ev: AgwEvent, now: float) -> None:
        """A gateway notification (TLS failure, media timeout...): may end a call."""
        self.now = now
        if self.calls is not None:
            self.calls.on_gateway_event(ev, now)
        self.flush()

    def sweep_calls(self, now: float) -> int:
        """End un-anchored calls with no signalling for `dialogs.idle_timeout_s`."""
        self.now = now
        if self.calls is None:
            return 0
        n = self.calls.sweep(now, self.cfg.dialogs.idle_timeout_s)
        self.flush()
        return n

    def _run_call_effects(self) -> bool:
        """Carry out what the call layer asked for: SIP now, gateway work queued for the edge.
        Returns whether there was anything."""
        calls = self.calls
        if calls is None:
            return False
        effects = calls.take_effects()
        for eff in effects:
            if isinstance(eff, Forward):
                self.send_downstream(eff.ctx, self.now)
            elif isinstance(eff, Relay):
                self._send_upstream(eff.ctx, eff.resp, self.now)
            elif isinstance(eff, ForwardAck):
                self._prepare_forward(eff.msg, eff.side, eff.dest.transport)
                self.counters.forwarded_requests += 1
                self._send(eff.side, eff.msg.serialize(), eff.dest)
            elif isinstance(eff, Answer):
                self.answer(eff.ctx, eff.status, eff.reason, eff.warning, list(eff.extra) or None)
            elif isinstance(eff, SendRequest):
                self._send_own(eff)
            else:
                self._media_out.append(eff)
        return bool(effects)

    def _send_own(self, eff: SendRequest) -> None:
        try:
            dest = self.peer_for(eff.next_uri, to_ue=eff.side is Side.ACCESS)
        except (SipParseError, RoutingError, ValueError) as e:
            log.info("%s %s: cannot route it: %s", eff.msg.method, eff.msg.call_id, e)
            return
        if eff.ack:
            self.send_own_ack(eff.msg, eff.side, dest)
        else:
            self.send_own_request(eff.msg, eff.side, dest)

    def flush(self) -> None:
        """Handle the transaction layers' events, then send what every layer produced.

        Events first, on both sides, until none is left: handling one side's event often queues
        output on the other side (Timer B on the core side answers 408 on the access side), and
        that output must leave now, not with the next message."""
        progressed = True
        while progressed:
            progressed = self._run_call_effects()
            for side, layer in self.layers.items():
                ev = layer.next_event()
                while ev is not None:
                    progressed = True
                    self._on_event(side, ev)
                    ev = layer.next_event()
        for side, layer in self.layers.items():
            for data, peer in layer.datagrams_to_send():
                self._send(side, data, peer)

    # ------------------------------------------------------------------ requests
    def _on_request(self, msg: SipMessage, side: Side, peer: Peer, now: float) -> None:
        if side is Side.CORE and not self._from_core_network(peer.host):
            # The core listener trusts its peers with terminating and in-dialog requests:
            # only the core network (`sip.core_networks`) may use it. Stateless: no state is
            # created for a sender we do not serve.
            self.counters.rejected_source += 1
            if msg.method != "ACK":
                self._reply_stateless(msg, side, peer, 403, "sender not in the core network")
            return
        self._stamp_via(msg, peer)
        layer = self.layers[side]
        if msg.method == "ACK":
            # An ACK for a non-2xx final is absorbed by the INVITE server transaction; the rest
            # (ACK for 2xx) is end to end and comes back as StrayAck.
            layer.receive_request(msg, peer, now)
            return
        txn = layer.receive_request(msg, peer, now)
        if txn is None:
            return  # retransmission, absorbed
        if msg.method == "CANCEL":
            self._on_cancel(txn, msg, side, now)
            return
        ctx_err = self._check_request(msg)
        if ctx_err is not None:
            status, reason, warning, extra = ctx_err
            self._reply(txn, side, status, reason, warning=warning, extra=extra)
            return
        if header_tag(msg.headers.get("to")) is not None:
            self._forward_in_dialog(txn, msg, side, peer, now)
        elif msg.method == "REGISTER":
            self._on_register(txn, msg, side, peer, now)
        else:
            self._forward_initial(txn, msg, side, peer, now)

    def _check_request(
        self, msg: SipMessage
    ) -> tuple[int, str, str | None, list[tuple[str, str]] | None] | None:
        """RFC 3261 §16.3 request validation: Max-Forwards and Proxy-Require."""
        mf = msg.headers.get("max-forwards")
        if mf is not None and int(mf) <= 0:
            return 483, "Too Many Hops", None, None
        unsupported = [
            t
            for v in msg.headers.values("proxy-require")
            for t in [v.strip().lower()]
            if t and t not in SUPPORTED_PROXY_EXTENSIONS
        ]
        if unsupported:
            return 420, "Bad Extension", None, [("Unsupported", ", ".join(unsupported))]
        return None

    def _stamp_via(self, msg: SipMessage, peer: Peer) -> None:
        """RFC 3261 §18.2.1 received= and RFC 3581 rport= on the top Via."""
        top = msg.headers.first_value("via")
        if top is None:
            return
        via = Via.parse(top)
        changed = False
        if via.host.strip("[]") != peer.host:
            via.set_param("received", peer.host)
            changed = True
        if via.param("rport") is not None:
            via.set_param("rport", str(peer.port))
            via.set_param("received", peer.host)
            changed = True
        if changed:
            msg.headers.pop_first_value("via")
            msg.headers.prepend("Via", str(via))

    def _is_us(self, uri: SipUri) -> bool:
        # The listeners and, with worker processes, every worker's own ports (a Route or
        # Request-URI naming a sibling worker is ours too).
        return (uri.host.strip("[]"), uri.port or 5060) in self.ours

    def _for_us(self, msg: SipMessage) -> bool:
        """No Route left and the Request-URI names one of our listeners."""
        if msg.headers.first_value("route") is not None:
            return False
        try:
            return self._is_us(SipUri.parse(msg.uri or ""))
        except SipParseError:
            return False

    def _pop_our_routes(self, msg: SipMessage) -> None:
        """Loose routing (RFC 3261 §16.4): remove Route entries that name us."""
        while True:
            top = msg.headers.first_value("route")
            if top is None or not self._route_is_us(top):
                return
            msg.headers.pop_first_value("route")

    def _route_is_us(self, value: str) -> bool:
        """Whether a Route value names one of our listeners; cached, since every in-dialog
        request carries the same two values of ours (bounded: the values come from peers)."""
        hit = self._route_us.get(value)
        if hit is None:
            try:
                hit = self._is_us(SipUri.parse(NameAddr.parse(value).uri))
            except SipParseError:
                hit = False
            if len(self._route_us) >= ROUTE_CACHE_SIZE:
                self._route_us.clear()
            self._route_us[value] = hit
        return hit

    def _prepare_forward(self, msg: SipMessage, out_side: Side, out_transport: str) -> str:
        """Max-Forwards, our Via on the outgoing side, and towards the core no sec-agree material
        (every request going there came from a UE or is our own). Returns the new branch."""
        if out_side is Side.CORE:
            _strip_sec_agree(msg)
        mf = msg.headers.get("max-forwards")
        msg.headers.set(
            "Max-Forwards", str(int(mf) - 1 if mf is not None else DEFAULT_MAX_FORWARDS)
        )
        branch = tx.new_branch()
        host, port = self.addr[out_side]
        tr = out_transport.upper()
        rport = ";rport" if tr == "UDP" else ""
        msg.headers.prepend("Via", f"SIP/2.0/{tr} {host}:{port};branch={branch}{rport}")
        msg.invalidate()
        return branch

    def _record_route(
        self, msg: SipMessage, in_side: Side, in_tr: str, out_side: Side, out_tr: str
    ) -> None:
        """Double Record-Route (RFC 5658): the incoming side first, the outgoing side on top, so
        each peer's route set starts at the listener that faces it."""
        for side, tr in ((in_side, in_tr), (out_side, out_tr)):
            host, port = self.addr[side]
            t = ";transport=tcp" if tr == "tcp" else ""
            msg.headers.prepend("Record-Route", f"<sip:{host}:{port};lr{t}>")

    def _resolve(self, host: str) -> str:
        """IP literal, `localhost`, or a name from `sip.hosts`. Never DNS: a blocking lookup
        would stall every call on the loop (RFC 3263 resolution belongs in an async resolver).
        Results (and refusals, as RoutingError) are cached: this runs for every routed
        request."""
        hit = self._route_cache.get(host)
        if hit is None:
            hit = self._resolve_uncached(host)
            if len(self._route_cache) >= ROUTE_CACHE_SIZE:
                self._route_cache.clear()  # hosts come from peers: keep the cache bounded
            self._route_cache[host] = hit
        if isinstance(hit, RoutingError):
            # A fresh instance per request: raising the cached one would chain every
            # request's traceback onto it.
            raise RoutingError(hit.reason, hit.status)
        return hit

    def _resolve_uncached(self, host: str) -> str | RoutingError:
        h = host.strip("[]").lower()
        ip = self._hosts.get(h)
        if ip is None:
            try:
                ip = str(ipaddress.ip_address(h))
            except ValueError:
                return RoutingError(f"cannot resolve {h}", 503)
        if not self.egress_allowed(ip):
            return RoutingError(f"destination {ip} not allowed", 403)
        return ip

    def _from_core_network(self, host: str) -> bool:
        """Whether a sender on the core listener is inside `sip.core_networks` (cached, bounded:
        source addresses come from the network)."""
        if self._core_any:
            return True
        hit = self._core_src_cache.get(host)
        if hit is None:
            try:
                addr = ipaddress.ip_address(host.strip("[]"))
                hit = any(addr in net for net in self._core_nets)
            except ValueError:
                hit = False
            if len(self._core_src_cache) >= ROUTE_CACHE_SIZE:
                self._core_src_cache.clear()
            self._core_src_cache[host] = hit
        return hit

    def egress_allowed(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(addr in net for net in self._egress)

    def _peer_for_uri(self, uri_text: str) -> Peer:
        uri = SipUri.parse(NameAddr.parse(uri_text).uri if "<" in uri_text else uri_text)
        if uri.scheme == "tel":
            raise RoutingError("cannot route a tel: URI without a Route", 404)
        tr = uri.transport
        if tr not in ("udp", "tcp"):
            tr = "tcp"
        return Peer(tr, self._resolve(uri.host), uri.port or uri.default_port)

    def _next_hop_peer(self) -> Peer:
        s = self.cfg.sip
        return Peer(s.next_hop_transport, s.next_hop_host, s.next_hop_port)

    def _target(self, msg: SipMessage, to_ue: bool) -> Peer:
        """Where a request goes after our Route entries are popped."""
        route = msg.headers.first_value("route")
        if route is not None:
            return self._peer_for_uri(route)
        return self.peer_for(msg.uri or "", to_ue=to_ue)

    def _terminating_binding(self, ruri: str) -> Binding | None:
        try:
            return terminating_binding(self.reg, ruri)
        except (ValueError, SipParseError):
            return None

    def _forward_initial(
        self, txn: tx.ServerTransaction, msg: SipMessage, side: Side, peer: Peer, now: float
    ) -> None:
        self._pop_our_routes(msg)
        out_side = _other(side)
        if msg.method == "OPTIONS" and self._for_us(msg):
            # A ping addressed to the P-CSCF itself (RFC 3261 §11): answer it, do not route it.
            self._reply(
                txn, side, 200, "OK", extra=[("Allow", ALLOW), ("Accept", "application/sdp")]
            )
            return
        if side is Side.ACCESS:
            # Originating (TS 24.229 5.2.6.3): the UE must be registered over this flow.
            binding = self._originating_binding(msg, peer)
            if binding is None and self.cfg.registration.require_for_originating:
                self.counters.rejected_unregistered += 1
                self._reply(
                    txn, side, 403, "Forbidden", warning="UE not registered from this address"
                )
                return
            if binding is not None:
                self._assert_identity(msg, binding)
            if binding is not None and binding.service_route:
                # TS 24.229 5.2.6.3.3: the preloaded route is the stored Service-Route.
                msg.headers.replace_values("Route", list(binding.service_route))
                dest = self._peer_for_uri(binding.service_route[0])
            else:
                # Always the configured I-/S-CSCF: a UE's own Route entries travel on to it but
                # never choose where we send (no open relay towards arbitrary hosts).
                dest = self._next_hop_peer()
        else:
            if msg.method == "REGISTER":
                self._reply(txn, side, 403, "Forbidden", warning="REGISTER only on the access side")
                return
            dest = self._target(msg, to_ue=True)
        if msg.method in DIALOG_METHODS:
            self._record_route(msg, side, peer.transport, out_side, dest.transport)
        self._forward(txn, msg, side, out_side, dest, now)

    def _forward_in_dialog(
        self, txn: tx.ServerTransaction, msg: SipMessage, side: Side, peer: Peer, now: float
    ) -> None:
        if side is Side.ACCESS and not self._dialog_source_ok(msg, peer):
            self.counters.rejected_source += 1
            log.info(
                "%s %s from %s:%s refused: not the UE of this dialog",
                msg.method,
                msg.call_id,
                peer.host,
                peer.port,
            )
            self._reply(txn, side, 403, "Forbidden", warning="not from the UE of this dialog")
            return
        self._pop_our_routes(msg)
        out_side = _other(side)
        dest = self._target(msg, to_ue=side is Side.CORE)
        self._forward(txn, msg, side, out_side, dest, now)

    def _forward(
        self,
        txn: tx.ServerTransaction,
        msg: SipMessage,
        in_side: Side,
        out_side: Side,
        dest: Peer,
        now: float,
        reg: RegisterCtx | None = None,
    ) -> None:
        ctx = ProxyCtx(server=txn, in_side=in_side, out_side=out_side, request=msg, dest=dest)
        ctx.reg = reg
        txn.user_data = ctx
        if self.calls is not None:
            try:
                forward = self.calls.on_request(ctx, msg, now)
            except Exception:
                # A bug must not leave the transaction unanswered (it would never end).
                log.exception("call layer failed on %s", msg.short())
                self._run_call_effects()
                self.answer(ctx, 500, "Server Internal Error", warning="media handling failed")
                return
            self._run_call_effects()
            if not forward:
                return  # the call layer answered (e.g. 488) or holds it for the gateway
        self.send_downstream(ctx, now)

    def send_downstream(self, ctx: ProxyCtx, now: float) -> None:
        """Create the client transaction for `ctx.request` and send it."""
        assert ctx.dest is not None
        if ctx.final_sent:
            return
        # A copy: the server transaction keeps the request as received (its responses copy its
        # Via), the copy gets our Via and goes downstream.
        out = ctx.request.copy()
        self._prepare_forward(out, ctx.out_side, ctx.dest.transport)
        client = self.layers[ctx.out_side].send_request(out, ctx.dest, now)
        client.user_data = ctx
        ctx.client = client
        self.counters.forwarded_requests += 1

    def _dialog_source_ok(self, msg: SipMessage, peer: Peer) -> bool:
        """Whether an in-dialog request on the access side comes from the UE the dialog belongs
        to (issue 11: whoever learns Call-ID and tags must not end or re-negotiate a call).

        A call leg we hold knows its UE's flow (`CallManager.from_dialog_ue`): the request must
        come over it, or over the flow that UE is registered on now. A dialog we hold no call
        for (SUBSCRIBE, REFER, a call already ended) gets the rule of initial requests: a
        registered flow, when `registration.require_for_originating` (TS 24.229 5.2.6.3)."""
        if self.calls is not None:
            verdict = self.calls.from_dialog_ue(msg, Side.ACCESS, peer)
            if verdict is not None:
                return verdict
        if not self.cfg.registration.require_for_originating:
            return True
        try:
            return self.reg.by_flow(Flow(peer.transport, peer.host, peer.port)) is not None
        except ValueError:
            return False

    def _originating_binding(self, msg: SipMessage, peer: Peer) -> Binding | None:
        """The binding of the flow a request came over; when the UE prefers an identity
        (P-Preferred-Identity), the binding registered for it on that flow (several IMPUs can
        share one flow)."""
        try:
            flow = Flow(peer.transport, peer.host, peer.port)
        except ValueError:
            return None
        for ppi in msg.headers.values("p-preferred-identity"):
            try:
                b = self.reg.by_flow(flow, NameAddr.parse(ppi).uri)
            except (ValueError, SipParseError):
                continue
            if b is not None:
                return b
        return self.reg.by_flow(flow)

    def _assert_identity(self, msg: SipMessage, binding: Binding) -> None:
        """TS 24.229 5.2.6.3.1: P-Asserted-Identity from the registered identity; the UE's
        P-Preferred-Identity is honoured only when it names one of its registered identities."""
        asserted = None
        for ppi in msg.headers.values("p-preferred-identity"):
            try:
                uri = NameAddr.parse(ppi).uri
            except SipParseError:
                continue
            if binding.has_identity(uri):
                asserted = uri
                break
        msg.headers.remove("P-Preferred-Identity")
        msg.headers.remove("P-Asserted-Identity")
        msg.headers.add_after_last(
            "P-Asserted-Identity", f"<{asserted or binding.impu}>", "call-id"
        )

    # ------------------------------------------------------------------ REGISTER
    def _on_register(
        self, txn: tx.ServerTransaction, msg: SipMessage, side: Side, peer: Peer, now: float
    ) -> None:
        if side is not Side.ACCESS:
            self._reply(txn, side, 403, "Forbidden", warning="REGISTER only on the access side")
            return
        dest = self._next_hop_peer()
        # The registrar decides (sec-agree, Path, what to remember until the response); a
        # malformed Security-Client/-Verify, To or Contact raises SipParseError: 400 by `receive`.
        got = self.registrar.on_register(msg, peer, dest.transport, now)
        if isinstance(got, Refusal):
            if got.throttled:
                self.counters.secagree_throttled += 1
            self._reply(txn, side, got.status, got.reason, warning=got.warning, extra=got.extra)
            return
        # Towards the core (docs/e2ae-notes.md §1.2 item 4): with our Path; the sec-agree
        # material goes in `_prepare_forward`, as for every request towards the core.
        self._pop_our_routes(msg)
        self._forward(txn, msg, side, Side.CORE, dest, now, got)

    def _register_response(self, ctx: ProxyCtx, resp: SipMessage, now: float) -> None:
        """A response to a forwarded REGISTER, before it goes upstream: the registrar adds
        Security-Server and, on a 2xx, writes the bindings (each one counted)."""
        assert ctx.reg is not None
        self.counters.registrations += self.registrar.on_response(ctx.reg, resp, now)

    def sweep_registrations(self, now: float) -> list[Binding]:
        gone = self.reg.sweep(now)
        if gone and self.calls is not None:
            self.calls.on_bindings_removed(gone, now)
            self.flush()
        return gone

    # ------------------------------------------------------------------ CANCEL
    def _on_cancel(
        self, txn: tx.ServerTransaction, msg: SipMessage, side: Side, now: float
    ) -> None:
        layer = self.layers[side]
        invite = layer.find_invite_for_cancel(msg, txn.peer)
        if invite is None:
            self._reply(txn, side, 481, "Call/Transaction Does Not Exist")
            return
        src, orig = txn.peer, invite.peer
        if side is Side.ACCESS and (src.host, src.port) != (orig.host, orig.port):
            # RFC 3261 §9.1: the CANCEL comes from the INVITE's client. On the access side only
            # that UE may cancel its call; anyone else who learnt the branch gets 403.
            self.counters.rejected_source += 1
            self._reply(txn, side, 403, "Forbidden", warning="not from the sender of the INVITE")
            return
        # RFC 3261 §16.10: answer the CANCEL, then cancel the pending client transactions.
        layer.send_response(txn, make_response(msg, 200, "OK", to_tag=new_tag()), now)
        ictx = invite.user_data
        if isinstance(ictx, ProxyCtx):
            ictx.cancelled = True
            if not ictx.final_sent:
                self._reply(invite, side, 487, "Request Terminated")
            if ictx.client is not None:
                self.layers[ictx.out_side].cancel(ictx.client, now)
            if self.calls is not None:
                self.calls.on_cancelled(ictx, now)
                self._run_call_effects()
        else:
            self._reply(invite, side, 487, "Request Terminated")

    # ------------------------------------------------------------------ responses
    def _on_response(self, msg: SipMessage, side: Side, peer: Peer, now: float) -> None:
        if side is Side.CORE and not self._from_core_network(peer.host):
            self.counters.rejected_source += 1
            return
        got = self.layers[side].receive_response(msg, peer, now)
        if got is None:
            return
        client, resp = got
        ctx = client.user_data
        if not isinstance(ctx, ProxyCtx):
            return
        self.relay_response(ctx, resp, now)

    def relay_response(self, ctx: ProxyCtx, resp: SipMessage, now: float) -> None:
        if resp.status == 100:
            return  # hop by hop (RFC 3261 §16.7 step 3... a proxy does not forward 100)
        if ctx.request.method == "INVITE":
            if resp.status < 200:
                self._arm_timer_c(ctx, now)  # §16.7 step 2: reset on every provisional
            else:
                ctx.timer_c = None
        resp.headers.pop_first_value("via")
        resp.invalidate()
        if ctx.reg is not None:
            self._register_response(ctx, resp, now)
        if self.calls is not None:
            try:
                forward = self.calls.on_response(ctx, resp, now)
            except Exception:
                log.exception("call layer failed on %s", resp.short())
                forward = True  # relay it as received rather than lose it
            self._run_call_effects()
            if not forward:
                return
        self._send_upstream(ctx, resp, now)

    def _send_upstream(self, ctx: ProxyCtx, resp: SipMessage, now: float) -> None:
        if ctx.final_sent and not (200 <= resp.status < 300 and ctx.request.method == "INVITE"):
            return  # already answered (e.g. 487 after CANCEL): a late final is not forwarded
        if resp.status >= 200:
            ctx.final_sent = True
            if ctx.client is not None and ctx.request.method != "INVITE":
                # Nothing downstream can change a non-INVITE once answered: let the completed
                # client transaction (Timer K) stop holding this context (issue 11 item 6).
                ctx.client.user_data = None
        self.counters.forwarded_responses += 1
        layer = self.layers[ctx.in_side]
        if not layer.send_response(ctx.server, resp, now) and 200 <= resp.status < 300:
            # RFC 3261 §16.7 step 10 / RFC 6026: a 2xx is always forwarded, even after the
            # transaction sent another final (a 487 when CANCEL raced the answer): statelessly.
            layer.send_stateless(resp, ctx.server.peer)

    def peer_for(self, uri: str, *, to_ue: bool) -> Peer:
        """Where to send a request for `uri`: towards a UE, over its registered flow (its TCP
        connection, its NAT binding) when the URI is a registered contact."""
        if to_ue:
            b = self._terminating_binding(uri)
            if b is not None:
                return Peer(b.flow.transport, b.flow.host, b.flow.port)
        return self._peer_for_uri(uri)

    def send_own_request(self, msg: SipMessage, side: Side, dest: Peer) -> None:
        """A request the P-CSCF originates as a UA (e.g. BYE on a gateway failure). Its
        responses are absorbed by its client transaction (no ProxyCtx)."""
        self._prepare_forward(msg, side, dest.transport)
        self.layers[side].send_request(msg, dest, self.now)

    def send_own_ack(self, msg: SipMessage, side: Side, dest: Peer) -> None:
        """An ACK for a 2xx we will not forward (RFC 3261 §13.2.2.4), sent statelessly."""
        self._prepare_forward(msg, side, dest.transport)
        self._send(side, msg.serialize(), dest)

    def answer(
        self,
        ctx: ProxyCtx,
        status: int,
        reason: str,
        warning: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """Answer the upstream side ourselves (used by the call layer, e.g. 488)."""
        if ctx.final_sent:
            return
        ctx.final_sent = True
        if status == 415:
            self.counters.rejected_encoding += 1
        self._reply(ctx.server, ctx.in_side, status, reason, warning=warning, extra=extra)

    # ------------------------------------------------------------------ events
    def _on_event(self, side: Side, ev: object) -> None:
        if isinstance(ev, tx.StrayAck):
            self._forward_ack(ev.msg, side, ev.source)
        elif isinstance(ev, tx.StrayResponse):
            self._forward_stray_response(ev.msg, side)
        elif isinstance(ev, (tx.ClientTimeout, tx.TransportError)):
            ctx = ev.txn.user_data
            self.counters.timeouts += 1
            if isinstance(ctx, ProxyCtx) and not ctx.final_sent:
                if isinstance(ev, tx.ClientTimeout):
                    self.answer(ctx, 408, "Request Timeout")
                else:
                    self.answer(ctx, 503, "Service Unavailable", warning="next hop unreachable")
                if self.calls is not None:
                    self.calls.on_failed(ctx, self.now)
                    self._run_call_effects()
        elif isinstance(ev, tx.ServerTimeout):
            ctx = ev.txn.user_data
            if isinstance(ctx, ProxyCtx) and self.calls is not None:
                self.calls.on_failed(ctx, self.now)
                self._run_call_effects()
        elif isinstance(ev, tx.TransactionTerminated):
            ev.txn.user_data = None

    def _forward_ack(self, msg: SipMessage, side: Side, source: Peer) -> None:
        """ACK for a 2xx: end to end, forwarded statelessly on the route set (RFC 3261 §16.11)."""
        mf = msg.headers.get("max-forwards")
        if mf is not None and int(mf) <= 0:
            return
        if side is Side.ACCESS and not self._dialog_source_ok(msg, source):
            self.counters.rejected_source += 1  # an ACK is never answered: dropped
            return
        self._pop_our_routes(msg)
        out_side = _other(side)
        try:
            dest = self._target(msg, to_ue=side is Side.CORE)
        except (SipParseError, RoutingError):
            return  # an ACK is never answered: one we cannot route is dropped
        if self.calls is not None:
            forward = self.calls.on_ack(msg, side, dest, self.now)
            self._run_call_effects()
            if not forward:
                return  # dropped, or held until the gateway runs the answer it carries
        self._prepare_forward(msg, out_side, dest.transport)
        self.counters.forwarded_requests += 1
        self._send(out_side, msg.serialize(), dest)

    def _forward_stray_response(self, msg: SipMessage, side: Side) -> None:
        """A response matching no transaction, typically a 2xx retransmission: forward it
        statelessly by its second Via (RFC 3261 §16.11), if the top Via is ours."""
        top = msg.headers.first_value("via")
        if top is None:
            return
        via = Via.parse(top)
        host, port = self.addr[side]
        if via.host != host or (via.port or 5060) != port:
            return
        msg.headers.pop_first_value("via")
        nxt = msg.headers.first_value("via")
        if nxt is None:
            return
        v2 = Via.parse(nxt)
        rport = v2.param("rport")
        dest = Peer(
            v2.transport.lower(),
            v2.param("received") or v2.host.strip("[]"),
            int(rport) if rport and rport.isdigit() else (v2.port or 5060),
        )
        out_side = _other(side)
        self._send(out_side, msg.serialize(), dest)

    # ------------------------------------------------------------------ replies
    def _reply(
        self,
        txn: tx.ServerTransaction,
        side: Side,
        status: int,
        reason: str,
        *,
        warning: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        if txn.released:
            return  # a final was sent already; the layer has dropped the request (issue 11)
        hdrs = list(extra or [])
        if warning:
            hdrs.append(("Warning", self.warning(side, warning)))
        resp = make_response(txn.request, status, reason, to_tag=new_tag(), extra=hdrs)
        self.counters.by_status[status] = self.counters.by_status.get(status, 0) + 1
        ctx = txn.user_data
        if isinstance(ctx, ProxyCtx):
            ctx.final_sent = True
        self.layers[side].send_response(txn, resp, self.now)

    def warning(self, side: Side, text: str) -> str:
        """RFC 3261 §20.43 Warning value: code 399 (miscellaneous), our host, quoted text."""
        host, port = self.addr[side]
        safe = text.replace("\\", "").replace('"', "'").replace("\r", " ").replace("\n", " ")
        return f'399 {host}:{port} "{safe}"'

    def _reply_error(
        self, msg: SipMessage, side: Side, peer: Peer, err: SipParseError | RoutingError
    ) -> None:
        """Answer a request that failed while being routed. Inside its server transaction when
        it has one (so retransmissions are absorbed), statelessly otherwise."""
        status = err.status if err.status in REASON_PHRASES else 400
        if status == 400:
            self.counters.responses_400 += 1
        for txn in self.layers[side].server_transactions_for(msg):
            ctx = txn.user_data
            if isinstance(ctx, ProxyCtx) and ctx.final_sent:
                return
            self._reply(txn, side, status, REASON_PHRASES[status], warning=err.reason)
            return
        hdrs = [("Warning", self.warning(side, err.reason))]
        resp = make_response(msg, status, REASON_PHRASES[status], to_tag=new_tag(), extra=hdrs)
        self._send(side, resp.serialize(), peer)

    def _reply_stateless(
        self,
        msg: SipMessage,
        side: Side,
        peer: Peer,
        status: int,
        warning: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """Answer without creating a transaction (a refusal that must cost us nothing)."""
        hdrs = [*(extra or []), ("Warning", self.warning(side, warning))]
        reason = REASON_PHRASES.get(status, "Service Unavailable" if status == 503 else "Error")
        resp = make_response(msg, status, reason, to_tag=new_tag(), extra=hdrs)
        self.counters.by_status[status] = self.counters.by_status.get(status, 0) + 1
        self._send(side, resp.serialize(), peer)

    def _answer_unparseable(self, data: bytes, side: Side, peer: Peer, err: SipParseError) -> None:
        """A malformed request gets 400 when we can still address a response (RFC 3261 §16.3 /
        RFC 4475 §3.1.2); anything else is dropped. Never raises."""
        if self._salvage_reply(data, side, peer, err.status, err.reason):
            self.counters.responses_400 += 1

    def _salvage_reply(self, data: bytes, side: Side, peer: Peer, status: int, why: str) -> bool:
        """`status` + Warning to a request known only by its bytes (`salvage_response`);
        False (counted as dropped) when they hold no addressable request."""
        resp = salvage_response(data, status, new_tag())
        if resp is None:
            self.counters.dropped += 1
            return False
        resp.headers.add("Warning", self.warning(side, why))
        self._send(side, resp.serialize(), peer)
        return True
