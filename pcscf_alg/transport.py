"""asyncio UDP and TCP listeners for one side (access or core): the thin IO edge.

Everything protocol-shaped happens in the sans-IO core; this module only moves bytes:
- UDP: one socket per side; every datagram goes to `on_message`.
- TCP: a listening socket per side; each connection gets an id and a `StreamFramer` that cuts
  the stream by Content-Length. Responses and in-dialog requests reuse the connection a peer
  opened (RFC 3261 §18.2.2, §18.1.1), looked up by id or by the peer's address; otherwise an
  outgoing connection is opened and reused. Idle connections are closed after
  `idle_timeout` (RFC 5923 style reuse without leaking file descriptors). RFC 5626 §4.4.1
  CRLF keep-alive pings get a CRLF pong.
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

# Writes queued on a TCP connection still connecting, per connection. Beyond this the peer is
# not keeping up; we drop rather than buffer without bound.
MAX_PENDING_BYTES = 1_048_576
# How often the idle sweep runs.
IDLE_SWEEP_INTERVAL_S = 5.0


@dataclass
class _ConnState:
    conn_id: int
    peer: tuple[str, int]
    last_used: float


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SideTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.owner.on_message(data, "udp", str(addr[0]), int(addr[1]), None)
        except Exception:  # the daemon must survive anything a peer sends
            log.exception("error handling UDP datagram from %s:%s", addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on loopback shows up here; transactions time out on their own.
        log.debug("UDP error on %s: %s", self.owner.name, exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SideTransport, outgoing_peer: tuple[str, int] | None = None) -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.state: _ConnState | None = None
        self.pending: list[bytes] = []
        self.outgoing_peer = outgoing_peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peername = transport.get_extra_info("peername")
        peer = (str(peername[0]), int(peername[1])) if peername else ("0.0.0.0", 0)
        self.state = self.owner._register(self, peer)
        for chunk in self.pending:
            self.transport.write(chunk)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        st = self.state
        assert st is not None and self.transport is not None
        st.last_used = self.owner.loop.time()
        try:
            frames = self.framer.feed(data)
        except SipParseError as e:
            log.info("closing TCP connection from %s:%s: %s", st.peer[0], st.peer[1], e.reason)
            self.transport.close()
            return
        if self.framer.pings:
            # RFC 5626 §4.4.1: answer each double-CRLF ping with a single CRLF pong.
            self.transport.write(b"\r\n" * self.framer.pings)
            self.framer.pings = 0
        for frame in frames:
            try:
                self.owner.on_message(frame, "tcp", st.peer[0], st.peer[1], st.conn_id)
            except Exception:
                log.exception("error handling TCP message from %s:%s", st.peer[0], st.peer[1])

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not None:
            self.owner._unregister(self.state)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            if sum(map(len, self.pending)) + len(data) <= MAX_PENDING_BYTES:
                self.pending.append(data)
            return
        if self.state is not None:
            self.state.last_used = self.owner.loop.time()
        self.transport.write(data)


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
        on_send_failure: FailureHandler | None = None,
        conn_ids: itertools.count[int] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.on_message = on_message
        self.on_send_failure = on_send_failure
        self.use_udp = udp
        self.use_tcp = tcp
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self._ids = conn_ids if conn_ids is not None else itertools.count(1)
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[int, _TcpProtocol] = {}
        self._by_peer: dict[tuple[str, int], _TcpProtocol] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.use_udp:
            tr, _ = await self.loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            self._udp = tr
            sock = tr.get_extra_info("socket")
            if sock is not None:
                # Bursts of 1000 calls/s: a larger receive buffer avoids kernel drops.
                for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        if self.use_tcp:
            self._server = await self.loop.create_server(
                lambda: _TcpProtocol(self), host=self.host, port=self.port, reuse_address=True
            )
        self._sweeper = self.loop.create_task(self._sweep_idle())

    # -- connection registry --
    def _register(self, proto: _TcpProtocol, peer: tuple[str, int]) -> _ConnState:
        st = _ConnState(next(self._ids), peer, self.loop.time())
        self._conns[st.conn_id] = proto
        key = proto.outgoing_peer or peer
        self._by_peer[key] = proto
        if proto.outgoing_peer is not None and proto.outgoing_peer != peer:
            self._by_peer[peer] = proto
        return st

    def _unregister(self, st: _ConnState) -> None:
        proto = self._conns.pop(st.conn_id, None)
        for key in [k for k, p in self._by_peer.items() if p is proto]:
            del self._by_peer[key]

    def has_connection(self, conn_id: int) -> bool:
        return conn_id in self._conns

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # -- sending --
    def send(self, data: bytes, transport: str, host: str, port: int, conn_id: int | None) -> None:
        if transport == "udp":
            if self._udp is None:
                log.warning("%s: no UDP listener to send to %s:%s", self.name, host, port)
                return
            self._udp.sendto(data, (host, port))
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

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(min(IDLE_SWEEP_INTERVAL_S, self.idle_timeout))
            now = self.loop.time()
            for proto in list(self._conns.values()):
                st = proto.state
                if st is not None and now - st.last_used > self.idle_timeout:
                    log.debug("%s: closing idle TCP connection to %s:%s", self.name, *st.peer)
                    if proto.transport is not None:
                        proto.transport.close()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for proto in list(self._conns.values()):
            if proto.transport is not None:
                proto.transport.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
