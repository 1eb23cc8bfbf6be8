"""MSRP relay for one stream: TLS towards the UE, plain TCP towards the core.

Connection order (TS 23.334 §6.2.18, "incoming TCP bearer establishment triggers an outgoing TCP
bearer establishment"): the access leg comes up first (TCP, then TLS with the fingerprint check);
only then does the gateway open the core leg, or, when it is passive on the core leg, start
reading the connection the core peer opened. Data the UE sends meanwhile waits in the kernel
(the access transport is paused).

Roles (RFC 4145 / RFC 6135): the plan gives the gateway's own a=setup per leg. On the access leg
PASSIVE/ACTPASS = listen and be TLS server, ACTIVE = connect to the UE and be TLS client,
HOLDCONN = do nothing. On the core leg ACTIVE = connect, otherwise listen.

A connection accepted before the stream is configured (the UE may connect as soon as it has sent
its answer, racing the signalling) is held, unread, until configure() supplies the fingerprint.

The front door (issue 11; the UE side listens on a port anyone can reach). Nothing but the UE's
own session may end the call:
- Every connection accepted on the access port is a *candidate* until it proves to be the UE.
  Candidates handshake concurrently, each against its own deadline (`tls_handshake_timeout_s`
  from accept); the first whose certificate matches the signalled a=fingerprint (RFC 8122 §6.2,
  checked inside the handshake) becomes the access leg and the others are closed. A candidate
  that fails its handshake, times out or hangs up is dropped on its own: counted, logged (peer
  address only), no event. At most `msrp_max_pending_connections` candidates per port; further
  connections, and any while the UE's session is up, are refused at once (so a flood holds
  neither file descriptors nor TLS state beyond that bound).
- Pass-through streams (StreamMode.PASS, plain TCP both ways) have no certificate to check: with
  `agw.strict_source` (default on) the access port takes connections only from the IP
  address the UE signalled (`plan.ue_remote`, when it is a usable IP literal), and the first one
  from there is the UE. A UE behind a NAT that rewrites its source needs the check off.
- The UE's own failures still end the call: one TlsFailed per stream when no verified session
  is up `tls_handshake_timeout_s` after the first configure() (the answer; TS 33.328 7.2.1 step
  9 requires the call to be released when the UE cannot be authenticated), with the reason of
  the last failed candidate or "handshake_timeout"; and, where the gateway is the active party
  towards the UE, the failure of its own connect or handshake, at once. A verified session that
  closes later is reported as MsrpClosed.
- `StreamStats.dropped` counts, for MSRP, the access connections refused or dropped before
  authentication (foreign or failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Final, cast

from OpenSSL import SSL

from ..errors import GatewayError
from ..mediaplan import MsrpMode, SetupRole, Side, StreamMode, StreamPlan
from .api import AgwEvent, MsrpClosed, StreamStats, TlsEstablished, TlsFailed
from .certs import select_fingerprints
from .msrp import MsrpProtocolError, MsrpRewriter, PathMap, path_maps
from .tls import TlsEngine, TlsError

log = logging.getLogger(__name__)

# Flow control (asyncio write-buffer limits): stop reading one leg while the other leg's send
# buffer holds more than HIGH_WATER bytes, resume below LOW_WATER. 256 KiB covers the
# bandwidth-delay product of a 100 Mbit/s x 20 ms path; large MSRP chunks (RFC 4975 §7.1.1
# suggests 2048-byte chunks, RCS uses up to ~10 KiB) never stall on it.
HIGH_WATER: Final = 256 * 1024
LOW_WATER: Final = 64 * 1024
LISTEN_BACKLOG: Final = 4  # one UE (and its retries) per stream port; at least this many
# Foreign-connection logs per stream: every one up to this many, then at powers of two, so that a
# connection flood cannot flood the log too.
LOG_EVERY_UP_TO: Final = 8


def listen_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Re-binding a port whose previous call left connections in TIME_WAIT must work.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((host, port))
        sock.listen(max(backlog, LISTEN_BACKLOG))
    except OSError:
        sock.close()
        raise
    return sock


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address to compare sources with; None when `host` is not a usable IP literal."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # an FQDN in the SDP: we do no DNS on the event loop, so no check
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_unspecified else ip


class Leg(asyncio.Protocol):
    """One TCP connection of the relay, with a TlsEngine when that leg is TLS."""

    def __init__(self, relay: MsrpStream, side: Side, accepted: bool) -> None:
        self.relay = relay
        self.side = side
        self.accepted = accepted  # we are the TCP (and TLS) server on this connection
        self.transport: asyncio.Transport | None = None
        self.peer = "?"  # "host:port" of the other end, for logs
        self.engine: TlsEngine | None = None
        self.started = False  # configured and allowed to run
        self.up = False  # TCP (and TLS if any) established
        self.closed = False
        self.last_activity = relay.loop.time()
        self._pause: set[str] = set()
        self._early: list[bytes] = []
        self._hs_timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        self.relay.leg_made(self)

    def peer_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        peer = None if self.transport is None else self.transport.get_extra_info("peername")
        if not isinstance(peer, tuple) or not peer:
            return None
        return _ip(str(peer[0]))

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.relay.loop.time()
        if not self.started:
            self._early.append(data)  # at most one read before pause_reading took effect
            return
        engine = self.engine
        if engine is None:
            self.relay.leg_data(self, data)
            return
        engine.receive(data)
        if not engine.established:
            try:
                done = engine.handshake()
            except TlsError as e:
                self._flush()  # the alert
                self.relay.tls_failed(self, e)
                return
            self._flush()
            if not done:
                return
            self.cancel_timer()
            self.relay.leg_up(self)
            if self.closed:
                return
        try:
            plain = engine.read()
        except TlsError as e:
            self.relay.leg_closed(self, "error", str(e))
            return
        self._flush()
        if plain:
            self.relay.leg_data(self, plain)
        if engine.eof and not self.closed:
            self.relay.leg_closed(self, "eof", "close_notify")

    def eof_received(self) -> bool | None:
        return False  # half-close ends the relay: MSRP has no use for it

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timer()
        if not self.closed:
            self.relay.leg_closed(self, "eof" if exc is None else "error", str(exc or ""))

    def pause_writing(self) -> None:
        self.relay.backpressure(self, True)

    def resume_writing(self) -> None:
        self.relay.backpressure(self, False)

    # -- used by the relay

    def start(self, engine: TlsEngine | None, handshake_timeout: float) -> None:
        self.started = True
        self.engine = engine
        if engine is None:
            self.up = True
        else:
            if self._hs_timer is None:  # an accepted leg has had its deadline since accept
                self.arm_timer(handshake_timeout)
            if not engine.server:
                engine.handshake()  # produces the ClientHello
                self._flush()
        early, self._early = self._early, []
        for data in early:
            if self.closed:
                break
            self.data_received(data)

    def send(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.engine is not None:
            self.engine.write(data)
            self._flush()
        else:
            self.transport.write(data)

    def pause(self, why: str) -> None:
        if not self._pause and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pause.add(why)

    def resume(self, why: str) -> None:
        self._pause.discard(why)
        if not self._pause and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def buffered(self) -> int:
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def close(self, *, abort: bool = False, reset: bool = False) -> None:
        """Close the connection. `abort`: no close_notify (a session that never was). `reset`:
        drop whatever is still buffered and send RST, for a peer that had its chance (a
        handshake deadline, a refused connection) and must not keep our buffers waiting."""
        if self.closed:
            return
        self.closed = True
        self.cancel_timer()
        self._early.clear()
        if self.engine is not None:
            if not abort and not reset and self.transport is not None:
                with contextlib.suppress(Exception):
                    self.transport.write(self.engine.close())
            self.engine = None  # drops the SSL object and with it the session keys
        if self.transport is not None:
            if reset:
                self.transport.abort()
            else:
                self.transport.close()  # flushes what is buffered, then closes

    def _flush(self) -> None:
        if self.engine is not None and self.transport is not None and not self.closed:
            out = self.engine.outgoing()
            if out:
                self.transport.write(out)

    def arm_timer(self, timeout: float) -> None:
        self.cancel_timer()
        self._hs_timer = self.relay.loop.call_later(timeout, self._hs_timeout)

    def _hs_timeout(self) -> None:
        self._hs_timer = None
        if not self.up and not self.closed:
            self.relay.tls_failed(self, TlsError("handshake_timeout"))

    def cancel_timer(self) -> None:
        if self._hs_timer is not None:
            self._hs_timer.cancel()
            self._hs_timer = None


class MsrpStream:
    """One anchored MSRP stream (e2ae TLS<->TCP, or pass-through TCP<->TCP).

    Legs move through: candidate (accepted on the access port: held until configure, then
    handshaking) -> up (the UE's verified session, `access`) -> paired (both legs up, bytes
    flow). The core leg waits, paused, until the access leg is up.
    """

    kind = "msrp"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        context_id: str,
        index: int,
        access_host: str,
        access_port: int,
        core_host: str,
        core_port: int,
        tls_ctx: SSL.Context,
        emit: Callable[[AgwEvent], None],
        handshake_timeout: float,
        idle_timeout: float,
        *,
        max_pending: int = 8,
        strict_source: bool = True,
    ) -> None:
        self.loop = loop
        self.context_id = context_id
        self.index = index
        self.access_port = access_port
        self.core_port = core_port
        self._tls_ctx = tls_ctx
        self._emit = emit
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_pending = max_pending
        self.strict_source = strict_source
        a = listen_socket(access_host, access_port, max_pending)
        try:
            c = listen_socket(core_host, core_port)
        except OSError:
            a.close()
            raise
        self._socks: list[socket.socket] = [a, c]
        self._servers: list[asyncio.Server] = []
        self.plan: StreamPlan | None = None
        self.closed = False
        self.access: Leg | None = None  # the UE's session (verified) or our connection to it
        self.core: Leg | None = None  # the core connection once paired with the access leg
        self.core_pending: Leg | None = None  # core connection not yet paired
        # Accepted access connections that have not proved to be the UE (module docstring).
        self.candidates: list[Leg] = []
        self._access_task: asyncio.Task[None] | None = None
        self._core_task: asyncio.Task[None] | None = None
        self._up_map: PathMap | None = None
        self._down_map: PathMap | None = None
        self._up_rw: MsrpRewriter | None = None
        self._down_rw: MsrpRewriter | None = None
        self._pending_up: list[bytes] = []
        self._pending_down: list[bytes] = []
        # The per-stream deadline: a verified UE session within handshake_timeout of the first
        # configure(), else one TlsFailed (item 4 of issue 11: a call whose UE never connects
        # must not hold its ports and dialog forever).
        self._deadline: asyncio.TimerHandle | None = None
        self.session_seen = False  # the UE's session came up at least once
        self.failure_reported = False  # the one TlsFailed for the UE's session was emitted
        self._last_candidate_failure: str | None = None
        self.to_core_bytes = 0
        self.to_ue_bytes = 0
        self.to_core_chunks = 0
        self.to_ue_chunks = 0
        self.refused = 0  # connections refused at once (over the bound, busy, wrong role)
        self.failed = 0  # candidates dropped: failed or unfinished handshake, hung up
        self.rejected_source = 0  # connections from an address other than the signalled one

    async def start(self) -> None:
        a, c = self._socks
        self._servers = [
            await self.loop.create_server(lambda: Leg(self, Side.ACCESS, True), sock=a),
            await self.loop.create_server(lambda: Leg(self, Side.CORE, True), sock=c),
        ]

    # ------------------------------------------------------------------ control

    @staticmethod
    def validate(plan: StreamPlan) -> None:
        """Raise GatewayError for a plan this relay cannot honour (before anything changes)."""
        if plan.mode is StreamMode.E2AE:
            select_fingerprints(plan.ue_fingerprint)  # raises if none is usable
        elif plan.mode is not StreamMode.PASS:
            raise GatewayError(f"stream {plan.index}: mode {plan.mode.value} is not relayed")
        if plan.core_tls:
            select_fingerprints(plan.core_fingerprint)
        if plan.msrp_mode is MsrpMode.AWARE:
            paths = (plan.ue_path, plan.agw_access_path, plan.core_path, plan.agw_core_path)
            if any(p is None for p in paths):
                raise GatewayError(f"stream {plan.index}: application-aware MSRP needs 4 paths")
            ue, agw_a, core, agw_c = (p for p in paths if p is not None)
            path_maps(ue, agw_a, core, agw_c)

    def configure(self, plan: StreamPlan) -> None:
        if self.closed:
            raise GatewayError(f"stream {self.index} is released")
        self.validate(plan)
        if plan.msrp_mode is MsrpMode.AWARE:
            assert plan.ue_path and plan.agw_access_path and plan.core_path
            assert plan.agw_core_path
            # New maps apply to the next pairing; a running transfer keeps its parser state.
            self._up_map, self._down_map = path_maps(
                plan.ue_path, plan.agw_access_path, plan.core_path, plan.agw_core_path
            )
        else:
            self._up_map = self._down_map = None
        first = self.plan is None
        self.plan = plan  # fingerprints in a re-offer apply to the next handshake
        if first:
            if plan.access_setup is not SetupRole.HOLDCONN:
                # RFC 4975 §5.4 / RFC 4145: the active party connects once it has the answer,
                # so a UE that has not come up within the handshake timeout will not.
                self._deadline = self.loop.call_later(self.handshake_timeout, self._no_session)
            self._start_access(connect=True)
            held = self.core_pending
            if held is not None and not held.started:
                if plan.core_setup is SetupRole.ACTIVE:  # nobody should have called us
                    self.core_pending = None
                    held.close(abort=True)
                elif not self._source_ok(held, plan):
                    self.core_pending = None
                    self._refuse(held, "not from the core's signalled address", source=True)
                else:
                    self._begin(held)
        else:
            self._start_access(connect=False)

    def _start_access(self, *, connect: bool) -> None:
        plan = self.plan
        if plan is None or self.closed or self.access is not None:
            return
        role = plan.access_setup
        if role is SetupRole.ACTIVE:
            for leg in self.candidates:
                self._refuse(leg, "we are the active party towards the UE", count=False)
            self.candidates.clear()
            # Connect once per configured session: after the UE hangs up or fails the
            # handshake it is up to the ALG (a new offer) to try again.
            if connect and self._access_task is None and plan.ue_remote is not None:
                self._access_task = self.loop.create_task(self._connect(Side.ACCESS))
        elif role is not SetupRole.HOLDCONN:
            for leg in list(self.candidates):
                if self.access is not None:
                    break  # pass-through: the first one from the UE's address took the slot
                if leg in self.candidates and not leg.started and not leg.closed:
                    self._begin_candidate(leg)

    def _begin_candidate(self, leg: Leg) -> None:
        """Let a held access connection run: TLS server handshake (e2ae), or in pass-through
        the source check and, if it passes, the access leg at once."""
        plan = self.plan
        assert plan is not None
        if plan.mode is StreamMode.E2AE:
            engine = TlsEngine(
                self._tls_ctx, server=True, expected=select_fingerprints(plan.ue_fingerprint)
            )
            leg.start(engine, self.handshake_timeout)  # its deadline runs since accept
            leg.resume("configure")
            return
        if not self._source_ok(leg, plan):
            self.candidates.remove(leg)
            self._refuse(leg, "not from the UE's signalled address", source=True)
            return
        self._begin(leg)  # up at once: leg_up makes it the access leg and closes the others

    def _source_ok(self, leg: Leg, plan: StreamPlan) -> bool:
        """Pass-through access legs and every core leg: without a certificate to check, the
        source IP is all we have (rtpengine's strict-source, applied to TCP). E2AE access legs
        are authenticated by their certificate instead, from wherever they come (NAT)."""
        if not self.strict_source:
            return True
        if leg.side is Side.ACCESS and plan.mode is StreamMode.E2AE:
            return True
        remote = plan.ue_remote if leg.side is Side.ACCESS else plan.core_remote
        want = None if remote is None else _ip(remote.host)
        return want is None or leg.peer_ip() == want

    def _begin(self, leg: Leg) -> None:
        """Start a configured leg: TLS engine (if that leg is TLS) and handshake deadline."""
        plan = self.plan
        assert plan is not None
        if leg.side is Side.ACCESS:
            self.access = leg
            tls = plan.mode is StreamMode.E2AE
            fps = plan.ue_fingerprint
        else:
            self.core_pending = leg
            tls = plan.core_tls
            fps = plan.core_fingerprint
        engine = None
        if tls:
            engine = TlsEngine(
                self._tls_ctx, server=leg.accepted, expected=select_fingerprints(fps)
            )
        leg.start(engine, self.handshake_timeout)
        if engine is None and not leg.closed:
            self.leg_up(leg)
        leg.resume("configure")

    async def _connect(self, side: Side) -> None:
        plan = self.plan
        assert plan is not None
        remote = plan.ue_remote if side is Side.ACCESS else plan.core_remote
        try:
            if remote is None:
                raise OSError("no remote address")
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Leg(self, side, False), remote.host, remote.port
                ),
                self.handshake_timeout,
            )
        except (TimeoutError, OSError) as e:
            if self.closed:
                return
            log.info(
                "msrp %s/%d: %s connect failed: %s", self.context_id, self.index, side.value, e
            )
            if side is Side.ACCESS:
                self._ue_failed("connect_failed")
            else:
                self._emit(MsrpClosed(self.context_id, self.index, Side.CORE, "connect_failed"))
                self._reset()
        finally:
            if side is Side.ACCESS:
                self._access_task = None
            else:
                self._core_task = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_deadline()
        for task in (self._access_task, self._core_task):
            if task is not None:
                task.cancel()
        self._access_task = self._core_task = None
        for leg in [self.access, self.core, self.core_pending]:
            if leg is not None:
                leg.close()
        for leg in self.candidates:
            leg.close(reset=True)
        self.access = self.core = self.core_pending = None
        self.candidates.clear()
        for srv in self._servers:
            srv.close()
        for s in self._socks:
            s.close()  # no-op if the server already closed it
        self.plan = None  # drops the fingerprints and paths
        self._up_rw = self._down_rw = None
        self._pending_up.clear()
        self._pending_down.clear()

    async def wait_closed(self) -> None:
        servers, self._servers = self._servers, []
        for srv in servers:
            await srv.wait_closed()

    # ------------------------------------------------------------------ the UE's session

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _no_session(self) -> None:
        self._deadline = None
        if self.closed or self.session_seen:
            return
        self._ue_failed(self._last_candidate_failure or "handshake_timeout", deadline=True)

    def _ue_failed(self, reason: str, *, deadline: bool = False) -> None:
        """The UE's own session could not be established: TS 23.334 "Notify (D)TLS session
        establishment failure", once per stream (the ALG then releases the call)."""
        self._cancel_deadline()
        if self.failure_reported or self.session_seen:
            return
        self.failure_reported = True
        log.info(
            "msrp %s/%d: %s: %s",
            self.context_id,
            self.index,
            "no UE session within the handshake timeout" if deadline else "UE session failed",
            reason,
        )
        self._emit(TlsFailed(self.context_id, self.index, reason, Side.ACCESS))

    def _log_foreign(self, leg: Leg, what: str) -> None:
        n = self.refused + self.failed + self.rejected_source
        if n <= LOG_EVERY_UP_TO or n & (n - 1) == 0:
            log.info(
                "msrp %s/%d: %s connection from %s %s (%d so far on this stream)",
                self.context_id,
                self.index,
                leg.side.value,
                leg.peer,
                what,
                n,
            )

    def _refuse(self, leg: Leg, why: str, *, source: bool = False, count: bool = True) -> None:
        """Close a connection that may not be the UE's (or the core's) at once, with RST."""
        if source:
            self.rejected_source += 1
        elif count:
            self.refused += 1
        self._log_foreign(leg, f"refused: {why}")
        leg.close(abort=True, reset=True)

    def _drop_candidate(self, leg: Leg, reason: str) -> None:
        """A candidate failed (bad certificate, no certificate, deadline, hang-up): it was not
        the UE, or was a UE attempt that did not work; either way not the end of the call."""
        if leg in self.candidates:
            self.candidates.remove(leg)
        self.failed += 1
        if reason != "closed":
            self._last_candidate_failure = reason
        self._log_foreign(leg, f"dropped before authentication: {reason}")
        leg.close(abort=True, reset=reason == "handshake_timeout")

    # ------------------------------------------------------------------ leg events

    def leg_made(self, leg: Leg) -> None:
        plan = self.plan
        if self.closed:
            leg.close(abort=True, reset=True)
            return
        if not leg.accepted:  # one of our outgoing connections
            self._begin(leg)
            return
        if leg.side is Side.ACCESS:
            if plan is not None and plan.access_setup is SetupRole.ACTIVE:
                self._refuse(leg, "we are the active party towards the UE")
            elif self.access is not None:
                self._refuse(leg, "the UE's session is up")
            elif len(self.candidates) >= self.max_pending:
                self._refuse(leg, f"{self.max_pending} connections already pending")
            else:
                # Its own deadline from accept, whether configured yet or not.
                leg.pause("configure")
                leg.arm_timer(self.handshake_timeout)
                self.candidates.append(leg)
                if plan is not None and plan.access_setup is not SetupRole.HOLDCONN:
                    self._begin_candidate(leg)
            return
        if (
            self.core is not None
            or self.core_pending is not None
            or (plan is not None and plan.core_setup is SetupRole.ACTIVE)
        ):
            self._refuse(leg, "core leg busy or we are active towards the core")
            return
        if plan is None:
            leg.pause("configure")
            self.core_pending = leg
        elif not self._source_ok(leg, plan):
            self._refuse(leg, "not from the core's signalled address", source=True)
        else:
            self._begin(leg)

    def leg_up(self, leg: Leg) -> None:
        """A leg is up: TCP connected and, if it is a TLS leg, the peer fingerprint matched."""
        if leg in self.candidates:
            # The first candidate to prove it is the UE takes the access leg; the others are
            # closed (RFC 4975 has one connection per session).
            self.candidates.remove(leg)
            self.access = leg
            for other in self.candidates:
                self._refuse(other, "another connection authenticated as the UE")
            self.candidates.clear()
        leg.up = True
        leg.cancel_timer()
        if leg.side is Side.ACCESS:
            self.session_seen = True
            self._cancel_deadline()
        if leg.engine is not None:
            log.info(
                "msrp %s/%d: %s TLS up with %s, fingerprint matched",
                self.context_id,
                self.index,
                leg.side.value,
                leg.peer,
            )
            self._emit(TlsEstablished(self.context_id, self.index, leg.side))
        access, pending = self.access, self.core_pending
        if access is not None and access.up and pending is not None and pending.up:
            self._pair()
            return
        leg.pause("waiting")
        plan = self.plan
        assert plan is not None
        if (
            leg.side is Side.ACCESS
            and pending is None
            and plan.core_setup is SetupRole.ACTIVE
            and self._core_task is None
        ):
            # TS 23.334: the incoming (UE) bearer triggers the outgoing (core) one.
            self._core_task = self.loop.create_task(self._connect(Side.CORE))

    def _pair(self) -> None:
        access, core = self.access, self.core_pending
        assert access is not None and core is not None
        self.core, self.core_pending = core, None
        self._up_rw = MsrpRewriter(self._up_map) if self._up_map is not None else None
        self._down_rw = MsrpRewriter(self._down_map) if self._down_map is not None else None
        up, self._pending_up = self._pending_up, []
        down, self._pending_down = self._pending_down, []
        for data in up:
            self._relay(access, core, data)
        for data in down:
            self._relay(core, access, data)
        core.resume("waiting")
        access.resume("waiting")

    def leg_data(self, leg: Leg, data: bytes) -> None:
        if leg is self.access:
            core = self.core
            if core is None:
                self._pending_up.append(data)  # bounded: the access leg is paused
            else:
                self._relay(leg, core, data)
        elif leg is self.core and self.access is not None:
            self._relay(leg, self.access, data)
        elif leg is self.core_pending:
            self._pending_down.append(data)  # bounded: the core leg is paused
        # else: a leg already let go of (its last read raced the close); nothing to relay to

    def _relay(self, src: Leg, dst: Leg, data: bytes) -> None:
        up = src.side is Side.ACCESS
        rw = self._up_rw if up else self._down_rw
        if rw is not None:
            try:
                data = rw.feed(data)
            except MsrpProtocolError as e:
                log.info("msrp %s/%d: %s", self.context_id, self.index, e)
                self._emit(MsrpClosed(self.context_id, self.index, src.side, "protocol_error"))
                self._reset()
                return
        if not data:
            return
        dst.send(data)
        dst.last_activity = src.last_activity
        if up:
            self.to_core_bytes += len(data)
            self.to_core_chunks += 1
        else:
            self.to_ue_bytes += len(data)
            self.to_ue_chunks += 1

    def backpressure(self, leg: Leg, full: bool) -> None:
        other = self.core if leg is self.access else self.access if leg is self.core else None
        if other is None:
            return
        if full:
            other.pause("peer_full")
        else:
            other.resume("peer_full")

    def tls_failed(self, leg: Leg, error: TlsError) -> None:
        if leg in self.candidates:
            self._drop_candidate(leg, error.reason)
            return
        log.info(
            "msrp %s/%d: %s TLS with %s failed: %s",
            self.context_id,
            self.index,
            leg.side.value,
            leg.peer,
            error,
        )
        if leg.side is Side.ACCESS:
            # Our own connection to the UE (we are active): the UE's session failed.
            self._ue_failed(error.reason)
        else:
            self._emit(TlsFailed(self.context_id, self.index, error.reason, leg.side))
        leg.close(abort=True, reset=error.reason == "handshake_timeout")
        self._forget(leg)

    def _forget(self, leg: Leg) -> None:
        """Drop a leg that never got paired (failed handshake, hung up early)."""
        if leg in self.candidates:
            self.candidates.remove(leg)
        if leg is self.core_pending:
            self.core_pending = None
            self._pending_down.clear()
        if leg is self.access:
            self.access = None
            self._pending_up.clear()

    def leg_closed(self, leg: Leg, reason: str, detail: str) -> None:
        if self.closed:
            leg.close()
            return
        if leg in self.candidates:
            self._drop_candidate(leg, "closed")
            return
        if (leg is self.access or leg is self.core) and leg.up:
            log.info(
                "msrp %s/%d: %s leg closed (%s %s)",
                self.context_id,
                self.index,
                leg.side.value,
                reason,
                detail,
            )
            self._emit(MsrpClosed(self.context_id, self.index, leg.side, reason))
            self._reset()
            return
        if not leg.up and leg.started and leg.engine is not None:
            if leg.side is Side.ACCESS:
                self._ue_failed("handshake")
            else:
                self._emit(TlsFailed(self.context_id, self.index, "handshake", leg.side))
        leg.close()
        self._forget(leg)

    def _reset(self) -> None:
        """Close both legs; the listeners stay so that the UE may reconnect."""
        if self._core_task is not None:
            self._core_task.cancel()
            self._core_task = None
        for leg in (self.access, self.core, self.core_pending):
            if leg is not None:
                leg.close()
        self.access = self.core = self.core_pending = None
        self._up_rw = self._down_rw = None
        self._pending_up.clear()
        self._pending_down.clear()
        self._start_access(connect=False)

    # ------------------------------------------------------------------ gateway hooks

    def tick(self, now: float) -> None:
        # Candidates are not looked at: each has its handshake deadline, far shorter.
        for leg in (self.access, self.core, self.core_pending):
            if leg is not None and not leg.closed and now - leg.last_activity > self.idle_timeout:
                log.info("msrp %s/%d: idle timeout", self.context_id, self.index)
                self._emit(MsrpClosed(self.context_id, self.index, leg.side, "idle"))
                if leg is self.access or leg is self.core:
                    self._reset()
                else:
                    leg.close()
                    self._forget(leg)
                return

    def stats(self) -> StreamStats:
        return StreamStats(
            self.context_id,
            self.index,
            self.kind,
            to_core_packets=self.to_core_chunks,
            to_ue_packets=self.to_ue_chunks,
            to_core_bytes=self.to_core_bytes,
            to_ue_bytes=self.to_ue_bytes,
            # For MSRP: connections refused or dropped before authentication (module docstring).
            dropped=self.refused + self.failed,
            rejected_source=self.rejected_source,
        )

    def ports(self) -> list[tuple[str, int]]:
        return [("tcp", self.access_port), ("tcp", self.core_port)]
