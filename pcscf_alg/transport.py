"""asyncio UDP and TCP listeners for one side (access or core): the thin IO edge.

Everything protocol-shaped happens in the sans-IO core; this module only moves bytes:
- UDP: one socket per side; every datagram goes to `on_message` (the core refuses one over
  `sip.max_message_bytes` with 513). A worker process (`sip.workers` > 1) has two per side
  and a second TCP listener: the shared listener (SO_REUSEPORT) and its own port.
- TCP: a listening socket per side; each connection gets an id and a `StreamFramer` that cuts
  the stream by Content-Length. Responses and in-dialog requests reuse the connection a peer
  opened (RFC 3261 §18.2.2, §18.1.1), looked up by id or by the peer's address; otherwise an
  outgoing connection is opened and reused. RFC 5626 §4.4.1 CRLF keep-alive pings get a CRLF
  pong.

The TCP front door (issue 11) holds against a peer that is not playing fair, because every
accepted connection costs a file descriptor the gateway's media ports and the admin endpoint
need too:
- Caps: at most `max_connections` accepted connections per listener, `max_connections_per_ip`
  from one source address; over either, a new connection is closed at once (counted; logged
  at most every LOG_INTERVAL_S). Outgoing connections (ours) are not capped: they follow from
  registrations and routing, not from a stranger's connect(). `fd_budget` sizes the caps to
  RLIMIT_NOFILE.
- Deadlines, not an idle timer any byte resets (Slowloris): a message must be complete within
  `message_timeout` of its first byte; only a complete message or a CRLF keep-alive restarts
  the `idle_timeout`. A new accepted connection that has sent nothing complete yet gets the
  short `message_timeout`, not the idle timeout. Outgoing connections keep the idle rule (our
  writes count as use too).
- Size: a message over `max_message_bytes` is refused by the framer; the head goes to
  `on_too_large` (the core answers 513, RFC 3261 §21.5.14) and the connection is closed after
  a short drain so that the 513 is not lost to a reset.
Deadlines are enforced by one sweep per listener (a pass over the connections every fraction of
the shorter timeout), which costs less than a timer handle per connection re-armed per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.message import StreamFramer

log = logging.getLogger(__name__)

# on_message(data, transport, host, port, conn_id)
MessageHandler = Callable[[bytes, str, str, int, "int | None"], None]
# on_send_failure(transport, host, port): an outgoing connection could not be opened
FailureHandler = Callable[[str, str, int], None]

# Bytes we hold for one TCP connection whose peer is not reading (queued while connecting, or
# in the transport's write buffer). Beyond this the peer is not keeping up; we drop rather than
# buffer without bound.
MAX_PENDING_BYTES = 1_048_576
# Upper bound on the deadline sweep period; it runs at a quarter of the shorter timeout when
# that is smaller, so a deadline is enforced within 25 % of its length.
IDLE_SWEEP_INTERVAL_S = 5.0
# After a 513 on a stream: how long we keep reading (and discarding) while the response
# leaves. Closing a socket with unread input makes the kernel send a reset, which can destroy
# the response in flight (RFC 7230 §6.6 calls the same thing "lingering close").
LINGER_S = 2.0
# Refused connections and similar floods are logged at most this often (with a count).
LOG_INTERVAL_S = 10.0

# Defaults of the sip.* keys (pcscf_alg/config.py documents them).
DEFAULT_MAX_CONNECTIONS = 2048
DEFAULT_MAX_CONNECTIONS_PER_IP = 32
DEFAULT_MESSAGE_TIMEOUT_S = 10.0
DEFAULT_MAX_MESSAGE_BYTES = 32_768

# Worker processes (pcscf_alg/workers.py): a side with an own port has two UDP sockets, the
# shared listener and the worker's own. The `conn_id` of a datagram (None for UDP otherwise)
# then names the socket it arrived on, so that its responses leave from it (RFC 3581 §4: from
# the address and port the request was received on). Negative: never a TCP connection's id.
UDP_SHARED = -1
UDP_OWN = -2

# File descriptors kept for everything that is neither a SIP TCP connection nor a media port:
# the UDP and listening sockets, the admin endpoint and its clients, outgoing SIP TCP
# connections, the LI socket, logs, the TLS certificate files, the event loop's own.
FD_RESERVE = 256


def fd_budget(fd_limit: int, per_side_cap: int, sides: int, media_ports: int) -> tuple[int, int]:
    """(file descriptors wanted, effective per-side TCP connection cap) for `fd_limit`.

    Wanted: `sides` listeners at the configured cap, two descriptors per media port (a port
    number may be bound on the access and on the core address), and FD_RESERVE. When the limit
    is lower, SIP TCP gets what the media ports and the reserve leave, but never more than that
    and never less than a quarter of what is above the reserve: with a limit too small even for
    the media ranges, stranger-opened connections still cannot take more than a quarter.
    """
    media = 2 * media_ports
    want = sides * per_side_cap + media + FD_RESERVE
    if fd_limit >= want or sides == 0:
        return want, per_side_cap
    above = max(0, fd_limit - FD_RESERVE)
    tcp = max(fd_limit - FD_RESERVE - media, above // 4)
    return want, max(1, min(per_side_cap, tcp // sides))


@dataclass
class TransportCounters:
    """What the front door did, per listener (exposed in /stats under "transport")."""

    tcp_accepted: int = 0
    tcp_refused_max_connections: int = 0  # over max_connections
    tcp_refused_per_ip: int = 0  # over max_connections_per_ip
    tcp_closed_message_timeout: int = 0  # a message not complete within message_timeout
    tcp_closed_idle: int = 0  # no complete message / keep-alive within idle_timeout
    tcp_closed_framing: int = 0  # a stream we could not frame (bad Content-Length...)
    tcp_closed_write_backlog: int = 0  # the peer did not read what we sent
    tcp_too_large: int = 0  # a message over max_message_bytes (513, then closed)


@dataclass
class _Throttle:
    """At most one log line per `interval`; counts what it held back."""

    interval: float
    next_at: float = float("-inf")
    held: int = 0

    def allow(self, now: float) -> int | None:
        """None: stay quiet. Else the number of events held back since the last line."""
        if now < self.next_at:
            self.held += 1
            return None
        held, self.held = self.held, 0
        self.next_at = now + self.interval
        return held


@dataclass
class _ConnState:
    conn_id: int
    peer: tuple[str, int]
    incoming: bool
    # The connection is closed at `msg_deadline` while a message is in progress, else at
    # `idle_deadline`.
    idle_deadline: float
    msg_deadline: float | None = None
    # Has sent a complete message or keep-alive (or is ours): our writes then count as use.
    established: bool = False
    # Being closed (after a 513 or a deadline): input is discarded from now on.
    closing: bool = False
    closed_at: float | None = None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SideTransport, conn_id: int | None = None) -> None:
        self.owner = owner
        self.conn_id = conn_id  # UDP_SHARED / UDP_OWN with worker processes, else None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.owner.on_message(data, "udp", str(addr[0]), int(addr[1]), self.conn_id)
        except Exception:  # the daemon must survive anything a peer sends
            log.exception("error handling UDP datagram from %s:%s", addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on loopback shows up here; transactions time out on their own.
        log.debug("UDP error on %s: %s", self.owner.name, exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SideTransport, outgoing_peer: tuple[str, int] | None = None) -> None:
        self.owner = owner
        self.framer = StreamFramer(owner.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.state: _ConnState | None = None
        self.pending: list[bytes] = []
        self.outgoing_peer = outgoing_peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        peer = (str(peername[0]), int(peername[1])) if peername else ("0.0.0.0", 0)
        if self.outgoing_peer is None and not self.owner._admit(peer):
            # Over a cap: closed before it costs more than the accept. abort(): nothing of
            # ours to flush, and no FIN handshake to wait for.
            self.transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state = self.owner._register(self, peer)
        for chunk in self.pending:
            self.transport.write(chunk)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        st = self.state
        if st is None or self.transport is None or st.closing:
            return  # refused, or draining after a 513: input is discarded
        owner = self.owner
        now = owner.loop.time()
        framer = self.framer
        was_partial = framer.partial
        try:
            frames = framer.feed(data)
        except SipParseError as e:
            owner.counters.tcp_closed_framing += 1
            held = owner._framing_log.allow(now)
            if held is not None:
                log.info(
                    "%s: closing TCP connection from %s:%s: %s%s",
                    owner.name,
                    st.peer[0],
                    st.peer[1],
                    e.reason,
                    f" ({held} more since the last report)" if held else "",
                )
            self.close(now)
            return
        pings = framer.pings
        if pings:
            # RFC 5626 §4.4.1: answer each double-CRLF ping with a single CRLF pong.
            self.transport.write(b"\r\n" * pings)
            framer.pings = 0
        if frames or pings:
            # Only a complete message or a keep-alive proves the peer is speaking SIP: the idle
            # deadline restarts here and nowhere else on input (not on every byte).
            st.idle_deadline = now + owner.idle_timeout
            st.established = True
        if not framer.partial:
            st.msg_deadline = None
        elif frames or not was_partial:
            # A new message began in this read: its deadline counts from now.
            st.msg_deadline = now + owner.message_timeout
        for frame in frames:
            try:
                owner.on_message(frame, "tcp", st.peer[0], st.peer[1], st.conn_id)
            except Exception:
                log.exception("error handling TCP message from %s:%s", st.peer[0], st.peer[1])
        head = framer.too_large
        if head is not None and not st.closing:
            owner._too_large(self, st, head, now)

    def eof_received(self) -> bool | None:
        # The peer is done sending: a message it left incomplete will never end, so close now
        # rather than at its deadline (returning None closes the transport).
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not None:
            self.owner._unregister(self.state)

    def write(self, data: bytes) -> None:
        tr = self.transport
        if tr is None:
            if sum(map(len, self.pending)) + len(data) <= MAX_PENDING_BYTES:
                self.pending.append(data)
            return
        st = self.state
        if st is None or st.closing or tr.is_closing():
            return  # refused, or being closed (after a 513 nothing may follow its FIN)
        if tr.get_write_buffer_size() + len(data) > MAX_PENDING_BYTES:
            # The peer does not read what we send (a slow reader holding our memory).
            self.owner.counters.tcp_closed_write_backlog += 1
            log.info("%s: peer %s:%s does not read; aborting", self.owner.name, *st.peer)
            tr.abort()
            return
        if st.established:
            st.idle_deadline = max(
                st.idle_deadline, self.owner.loop.time() + self.owner.idle_timeout
            )
        tr.write(data)

    def close(self, now: float) -> None:
        st = self.state
        if st is not None:
            st.closing = True
            if st.closed_at is None:
                st.closed_at = now
        if self.transport is not None:
            self.transport.close()


class SideTransport:
    """The UDP and TCP listeners of one side, and its outgoing TCP connections."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        udp: bool = True,
        tcp: bool = True,
        idle_timeout: float = 300.0,
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_send_failure: FailureHandler | None = None,
        on_too_large: MessageHandler | None = None,
        conn_ids: itertools.count[int] | None = None,
        reuse_port: bool = False,
        own_port: int | None = None,
        udp_send_own: bool = False,
    ) -> None:
        # Worker processes: `reuse_port` binds `port` with SO_REUSEPORT (the listener shared by
        # every worker; the kernel spreads datagrams and connections over them by a hash of
        # the addresses); `own_port` is this worker's own UDP socket and TCP listener. UDP
        # sends that name no socket (requests: conn_id None) leave from the own socket when
        # `udp_send_own`, else from the shared one.
        self.reuse_port = reuse_port
        self.own_port = own_port
        self.udp_send_own = udp_send_own
        self._own_udp: asyncio.DatagramTransport | None = None
        self._own_server: asyncio.AbstractServer | None = None
        self.name = name
        self.host = host
        self.port = port
        self.on_message = on_message
        self.on_send_failure = on_send_failure
        # on_too_large(head, "tcp", host, port, conn_id): answer 513 on that connection if the
        # head is a request that can be answered (the core decides); the connection closes after.
        self.on_too_large = on_too_large
        self.use_udp = udp
        self.use_tcp = tcp
        self.idle_timeout = idle_timeout
        self.message_timeout = message_timeout
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.max_message_bytes = max_message_bytes
        self.counters = TransportCounters()
        self.loop = asyncio.get_running_loop()
        self._ids = conn_ids if conn_ids is not None else itertools.count(1)
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[int, _TcpProtocol] = {}
        self._by_peer: dict[tuple[str, int], _TcpProtocol] = {}
        # Accepted connections: in total and per source address (the caps).
        self._incoming = 0
        self._per_ip: dict[str, int] = {}
        self._refusals = _Throttle(LOG_INTERVAL_S)
        self._oversize_log = _Throttle(LOG_INTERVAL_S)
        self._framing_log = _Throttle(LOG_INTERVAL_S)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        own = self.own_port is not None
        if self.use_udp:
            tr, _ = await self.loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, UDP_SHARED if own else None),
                local_addr=(self.host, self.port),
                reuse_port=self.reuse_port or None,
            )
            self._udp = tr
            if self.own_port is not None:
                tr, _ = await self.loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self, UDP_OWN), local_addr=(self.host, self.own_port)
                )
                self._own_udp = tr
            for udp in (self._udp, self._own_udp):
                sock = udp.get_extra_info("socket") if udp is not None else None
                if sock is not None:
                    # Bursts of 1000 calls/s: a larger receive buffer avoids kernel drops.
                    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        if self.use_tcp:
            self._server = await self.loop.create_server(
                lambda: _TcpProtocol(self),
                host=self.host,
                port=self.port,
                reuse_address=True,
                reuse_port=self.reuse_port or None,
            )
            if self.own_port is not None:
                self._own_server = await self.loop.create_server(
                    lambda: _TcpProtocol(self),
                    host=self.host,
                    port=self.own_port,
                    reuse_address=True,
                )
        self._sweeper = self.loop.create_task(self._sweep())

    def local_port(self, transport: str, conn_id: int | None) -> int:
        """The local port a UDP send with `conn_id` leaves from (TCP: the shared listener's,
        which names the side; an outgoing connection's own port is not tracked)."""
        own = conn_id == UDP_OWN or (conn_id is None and self.udp_send_own)
        if transport == "udp" and self.own_port is not None and own:
            return self.own_port
        return self.port

    # -- connection registry --
    def _admit(self, peer: tuple[str, int]) -> bool:
        """May a connection accepted from `peer` stay? Counts it when it may."""
        ip = peer[0]
        if self._incoming >= self.max_connections:
            self.counters.tcp_refused_max_connections += 1
            self._log_refusal(peer, f"{self.max_connections} connections (sip.tcp_max_connections)")
            return False
        if self._per_ip.get(ip, 0) >= self.max_connections_per_ip:
            self.counters.tcp_refused_per_ip += 1
            self._log_refusal(
                peer,
                f"{self.max_connections_per_ip} connections from {ip} "
                "(sip.tcp_max_connections_per_ip)",
            )
            return False
        self._incoming += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.counters.tcp_accepted += 1
        return True

    def _log_refusal(self, peer: tuple[str, int], what: str) -> None:
        held = self._refusals.allow(self.loop.time())
        if held is not None:
            log.warning(
                "%s: refused TCP connection from %s:%s: at the cap of %s%s",
                self.name,
                peer[0],
                peer[1],
                what,
                f" ({held} more refused since the last report)" if held else "",
            )

    def _register(self, proto: _TcpProtocol, peer: tuple[str, int]) -> _ConnState:
        now = self.loop.time()
        incoming = proto.outgoing_peer is None
        # A stranger's new connection gets the short message deadline until it has sent a
        # complete message; our own connections start on the idle rule.
        timeout = self.message_timeout if incoming else self.idle_timeout
        st = _ConnState(next(self._ids), peer, incoming, now + timeout, established=not incoming)
        self._conns[st.conn_id] = proto
        key = proto.outgoing_peer or peer
        self._by_peer[key] = proto
        if proto.outgoing_peer is not None and proto.outgoing_peer != peer:
            self._by_peer[peer] = proto
        return st

    def _unregister(self, st: _ConnState) -> None:
        proto = self._conns.pop(st.conn_id, None)
        if proto is None:
            return
        for key in [k for k, p in self._by_peer.items() if p is proto]:
            del self._by_peer[key]
        if st.incoming:
            self._incoming -= 1
            ip = st.peer[0]
            left = self._per_ip.get(ip, 0) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)

    def _too_large(self, proto: _TcpProtocol, st: _ConnState, head: bytes, now: float) -> None:
        """The framer refused a message over max_message_bytes: 513 from its head, then close."""
        self.counters.tcp_too_large += 1
        held = self._oversize_log.allow(now)
        if held is not None:
            log.info(
                "%s: message over %d bytes on TCP from %s:%s; closing%s",
                self.name,
                self.max_message_bytes,
                st.peer[0],
                st.peer[1],
                f" ({held} more since the last report)" if held else "",
            )
        if self.on_too_large is not None:
            try:
                self.on_too_large(head, "tcp", st.peer[0], st.peer[1], st.conn_id)
            except Exception:
                log.exception("error answering an oversize message from %s:%s", *st.peer)
        st.closing = True
        st.closed_at = now
        # Our 513 (if any) is queued; FIN after it, and keep reading until the peer closes or
        # the linger ends, so that the kernel does not reset the connection under the response.
        st.msg_deadline = now + min(LINGER_S, self.message_timeout)
        tr = proto.transport
        if tr is not None and tr.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                tr.write_eof()

    def has_connection(self, conn_id: int) -> bool:
        return conn_id in self._conns

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    @property
    def incoming_count(self) -> int:
        """Accepted connections (the ones the caps count)."""
        return self._incoming

    # -- sending --
    def send(self, data: bytes, transport: str, host: str, port: int, conn_id: int | None) -> None:
        if transport == "udp":
            udp = self._udp
            if self._own_udp is not None and (
                conn_id == UDP_OWN or (conn_id is None and self.udp_send_own)
            ):
                udp = self._own_udp
            if udp is None:
                log.warning("%s: no UDP listener to send to %s:%s", self.name, host, port)
                return
            udp.sendto(data, (host, port))
            return
        proto = self._conns.get(conn_id) if conn_id is not None else None
        if proto is None:
            proto = self._by_peer.get((host, port))
        if proto is None:
            proto = self._connect(host, port)
        proto.write(data)

    def _connect(self, host: str, port: int) -> _TcpProtocol:
        proto = _TcpProtocol(self, outgoing_peer=(host, port))
        # Registered by peer now so that back-to-back sends share the connection being opened.
        self._by_peer[(host, port)] = proto

        async def connect() -> None:
            try:
                await self.loop.create_connection(lambda: proto, host, port)
            except OSError as e:
                log.info("%s: TCP connect to %s:%s failed: %s", self.name, host, port, e)
                if self._by_peer.get((host, port)) is proto:
                    del self._by_peer[(host, port)]
                if self.on_send_failure is not None:
                    self.on_send_failure("tcp", host, port)

        self.loop.create_task(connect())
        return proto

    @property
    def sweep_interval(self) -> float:
        return max(
            0.05, min(IDLE_SWEEP_INTERVAL_S, self.message_timeout / 4, self.idle_timeout / 4)
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.sweep(self.loop.time())
            except Exception:
                log.exception("%s: error in the TCP deadline sweep", self.name)

    def sweep(self, now: float) -> None:
        """Close the connections past their deadline (called by the periodic sweep)."""
        for proto in list(self._conns.values()):
            st = proto.state
            if st is None or proto.transport is None:
                continue
            if st.closed_at is not None and now - st.closed_at > LINGER_S + self.sweep_interval:
                # close() is waiting for a write buffer the peer does not read: give up on it.
                proto.transport.abort()
                continue
            deadline = st.msg_deadline if st.msg_deadline is not None else st.idle_deadline
            if now < deadline:
                continue
            if st.closing:
                proto.close(now)  # the linger after a 513 is over
            elif st.msg_deadline is not None or not st.established:
                self.counters.tcp_closed_message_timeout += 1
                log.debug(
                    "%s: closing TCP connection from %s:%s: no complete message within %ss",
                    self.name,
                    st.peer[0],
                    st.peer[1],
                    self.message_timeout,
                )
                proto.close(now)
            else:
                self.counters.tcp_closed_idle += 1
                log.debug("%s: closing idle TCP connection to %s:%s", self.name, *st.peer)
                proto.close(now)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for udp in (self._udp, self._own_udp):
            if udp is not None:
                udp.close()
        for server in (self._server, self._own_server):
            if server is not None:
                server.close()
        for proto in list(self._conns.values()):
            if proto.transport is not None:
                proto.transport.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
