"""RTP/RTCP relay for one stream: SRTP<->RTP (e2ae) or untouched (pass-through).

Each side has an even/odd UDP port pair (RFC 3550 §11); with a=rtcp-mux (RFC 5761) on a side,
RTP and RTCP share that side's even port and are told apart by the payload-type byte
(RFC 5761 §4: 192..223 is RTCP). Mux may differ per side; packets are mapped across.

Hot path: raw non-blocking sockets read with `loop.add_reader`, draining every ready datagram per
wake-up (bounded by a budget for fairness: the reader is level-triggered and fires again on the
next loop iteration). Nothing is allocated per packet beyond the received bytes, libsrtp's output
and the addresses the socket module returns.

Who may send (issue 11, "an attacker who is not the UE of a call can neither end it, hear it,
speak into it"):

- Core side, `strict_source` (the default; rtpengine's strict-source): packets are relayed only
  from the address the core signalled for the stream, IP *and* port: its RTP address on our RTP
  port, its RTCP address (RFC 3605 a=rtcp, else RTP + 1; the RTP address with rtcp-mux) on our
  RTCP port. The core peer is expected to use symmetric RTP (RFC 4961), as IMS media gateways
  and SBCs do. Until the core's address is known (originating call, answer not yet in) nothing
  from the core side is relayed. Anything else is dropped and counted (`rejected_source`),
  which also keeps it from counting as media activity. Without strict_source anything that
  reaches the core-side ports is relayed to the UE (under K12 in e2ae: injection).
- UE side: symmetric RTP (RFC 4961) latching. The UE's SDP address is the first destination;
  once a packet arrives from the UE, replies go to its source address. In e2ae only a packet that
  passes SRTP/SRTCP authentication and replay checks (RFC 3711 §3.3, §3.4) can latch, and each
  such packet may move the latch (NAT rebinding); forged or replayed packets are dropped before.
  In pass-through nothing can be authenticated: under strict_source only a packet from the IP
  the UE signalled may latch, only the first one does, and afterwards only the latched address
  is relayed (a third party can neither pull the UE's media towards itself nor speak through
  the stream). A new UE address in a later plan (re-INVITE after a handover) unlatches.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Final

from ..errors import GatewayError
from ..mediaplan import Endpoint, SrtpKey, StreamMode, StreamPlan, ThroughConnection
from .api import StreamStats
from .srtp import SrtpContext, SrtpDrop, classify

log = logging.getLogger(__name__)

RECV_MAX: Final = 2048  # > any RTP packet on a 1500-byte MTU path plus SRTP trailer
# Datagrams read per wake-up per socket. Enough to drain any normal backlog in one go (40k pps
# spread over many streams is a handful per socket per iteration) while one flooded socket cannot
# starve the loop; the reader is level-triggered so the rest is read on the next iteration.
READ_BUDGET: Final = 256
# Kernel socket buffers: room for ~1 s of a 50 pps stream on each socket; the default is fine but
# be explicit so a loaded gateway does not drop bursts.
SOCK_BUF: Final = 256 * 1024

Addr = tuple[str, int]


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _ip_text(host: str) -> str:
    """A signalled host in the form recvfrom() reports source IPs in (IPv6 compressed, lower
    case), so that the strict-source checks can compare strings."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        # Not an IP literal (an FQDN in c=): no source address ever equals it, so under
        # strict_source nothing from that side is relayed. We do no DNS on the event loop.
        return host


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _is_rtcp(data: bytes) -> bool:
    # RFC 5761 §4: with mux, the second octet of RTCP (packet type) is 192..223 (200-204 SR/RR/..).
    return len(data) > 1 and 191 < data[1] < 224


class RtpStream:
    """One anchored RTP stream: four sockets (two per side), two SRTP contexts, counters."""

    kind = "rtp"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        context_id: str,
        index: int,
        access_host: str,
        access_base: int,
        core_host: str,
        core_base: int,
        *,
        strict_source: bool = True,
    ) -> None:
        self.loop = loop
        self.strict_source = strict_source
        self.context_id = context_id
        self.index = index
        self.access_base = access_base
        self.core_base = core_base
        socks: list[socket.socket] = []
        try:
            for host, port in (
                (access_host, access_base),
                (access_host, access_base + 1),
                (core_host, core_base),
                (core_host, core_base + 1),
            ):
                socks.append(_udp_socket(host, port))
        except OSError:
            for s in socks:
                s.close()
            raise
        self._a_rtp, self._a_rtcp, self._c_rtp, self._c_rtcp = socks
        self._readers = False
        self.configured = False
        self.closed = False
        self.mode = StreamMode.PASS
        # Per-side mux and destinations.
        self._a_mux = False
        self._c_mux = False
        self._ue_rtp: Addr | None = None
        self._ue_rtcp: Addr | None = None
        self._ue_signalled: Endpoint | None = None  # the UE's address in the current plan
        self._ue_ip: str | None = None  # its host, as recvfrom() spells a source IP
        self._latched = False
        self._rtcp_latched = False
        self._core_rtp: Addr | None = None
        self._core_rtcp: Addr | None = None
        self._rx: SrtpContext | None = None  # unprotects what the UE sends
        self._tx: SrtpContext | None = None  # protects what goes to the UE
        self._up_open = True  # UE -> core
        self._down_open = True  # core -> UE
        # Counters (H.248.77-style statistics).
        self.to_core_packets = 0
        self.to_ue_packets = 0
        self.to_core_bytes = 0
        self.to_ue_bytes = 0
        self.auth_failures = 0
        self.mki_mismatches = 0
        self.gated = 0
        self.dropped = 0
        self.rejected_source = 0
        self.reported_rejected_source = 0
        # Media-timeout and event bookkeeping (driven by the gateway's tick).
        self.last_activity_count = 0
        self.last_activity_time = loop.time()
        self.timed_out = False
        self.reported_auth_failures = 0

    # ------------------------------------------------------------------ control

    def configure(self, plan: StreamPlan) -> None:
        if self.closed:
            raise GatewayError(f"stream {self.index} is released")
        if plan.mode is StreamMode.E2AE:
            if plan.rx_key is None or plan.tx_key is None:
                raise GatewayError(f"stream {self.index}: e2ae needs both SRTP keys")
            self._set_keys(plan.rx_key, plan.tx_key)
        elif plan.mode is StreamMode.PASS:
            self._drop_keys()
        else:
            raise GatewayError(f"stream {self.index}: mode {plan.mode.value} is not relayed")
        self.mode = plan.mode
        self._a_mux = plan.access_rtcp_mux
        self._c_mux = plan.core_rtcp_mux
        ue = plan.ue_remote
        if ue is not None and _is_unspecified(ue.host):
            # c=0.0.0.0 puts the stream on hold (RFC 3264 §8.4, the RFC 2543 way): not a new
            # address to send to or unlatch for; keep the current one for when the call resumes.
            ue = self._ue_signalled
        if ue != self._ue_signalled:
            # A new UE address (re-INVITE after a handover, or the first plan): what was latched
            # belonged to the old one, and in pass-through it is the IP allowed to latch.
            self._ue_signalled = ue
            self._latched = self._rtcp_latched = False
            self._ue_ip = _ip_text(ue.host) if ue is not None else None
        if ue is not None and self._ue_ip is not None:
            # The SDP address is only the first guess; a latched source address wins.
            if not self._latched:
                self._ue_rtp = (self._ue_ip, ue.port)
            if not self._rtcp_latched:
                self._ue_rtcp = (self._ue_ip, ue.rtcp_port or ue.port + 1)
        if plan.core_remote is not None:
            cr = plan.core_remote
            core_ip = _ip_text(cr.host)
            self._core_rtp = (core_ip, cr.port)
            # RFC 3605: without a=rtcp the RTCP port is RTP + 1.
            if self._c_mux:
                self._core_rtcp = self._core_rtp
            else:
                self._core_rtcp = (core_ip, cr.rtcp_port or cr.port + 1)
        else:
            self._core_rtp = self._core_rtcp = None
        self.set_through(plan.through)
        self.configured = True
        self._start_readers()

    def update_keys(self, rx_key: SrtpKey | None, tx_key: SrtpKey | None) -> tuple[bool, bool]:
        """Returns (rx kept, tx kept): whether each direction kept its crypto context."""
        if self.mode is not StreamMode.E2AE or self._rx is None or self._tx is None:
            raise GatewayError(f"stream {self.index} has no SRTP to re-key")
        return self._set_keys(rx_key or self._rx.key, tx_key or self._tx.key)

    def _set_keys(self, rx_key: SrtpKey, tx_key: SrtpKey) -> tuple[bool, bool]:
        # Build both new contexts before touching the old ones, so a bad key changes nothing.
        new_rx = new_tx = None
        if self._rx is None or not self._rx.rekey(rx_key):
            new_rx = SrtpContext(rx_key, outbound=False)
        if self._tx is None or not self._tx.rekey(tx_key):
            new_tx = SrtpContext(tx_key, outbound=True)
        if new_rx is not None:
            if self._rx is not None:
                self._rx.close()
            self._rx = new_rx
        if new_tx is not None:
            if self._tx is not None:
                self._tx.close()
            self._tx = new_tx
        return new_rx is None, new_tx is None

    def _drop_keys(self) -> None:
        for ctx in (self._rx, self._tx):
            if ctx is not None:
                ctx.close()
        self._rx = self._tx = None

    def set_through(self, mode: ThroughConnection) -> None:
        # TS 23.334 Change Through-Connection gates RTP. RTCP keeps flowing, as RFC 3264 §5.1
        # keeps RTCP alive on held (inactive) streams; it also keeps the media timeout quiet.
        self._up_open = mode in (ThroughConnection.SENDRECV, ThroughConnection.RECVONLY)
        self._down_open = mode in (ThroughConnection.SENDRECV, ThroughConnection.SENDONLY)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._readers:
            for s in (self._a_rtp, self._a_rtcp, self._c_rtp, self._c_rtcp):
                self.loop.remove_reader(s.fileno())
            self._readers = False
        for s in (self._a_rtp, self._a_rtcp, self._c_rtp, self._c_rtcp):
            s.close()
        self._drop_keys()

    def _start_readers(self) -> None:
        if self._readers:
            return
        add = self.loop.add_reader
        add(self._a_rtp.fileno(), self._read_access, self._a_rtp, False)
        add(self._a_rtcp.fileno(), self._read_access, self._a_rtcp, True)
        add(self._c_rtp.fileno(), self._read_core, self._c_rtp, False)
        add(self._c_rtcp.fileno(), self._read_core, self._c_rtcp, True)
        self._readers = True

    # ------------------------------------------------------------------ state for the gateway

    def activity(self) -> int:
        return self.to_core_packets + self.to_ue_packets + self.gated

    def stats(self) -> StreamStats:
        return StreamStats(
            self.context_id,
            self.index,
            self.kind,
            to_core_packets=self.to_core_packets,
            to_ue_packets=self.to_ue_packets,
            to_core_bytes=self.to_core_bytes,
            to_ue_bytes=self.to_ue_bytes,
            auth_failures=self.auth_failures,
            mki_mismatches=self.mki_mismatches,
            gated=self.gated,
            dropped=self.dropped,
            rejected_source=self.rejected_source,
        )

    def ports(self) -> list[tuple[str, int]]:
        return [("udp", self.access_base), ("udp", self.core_base)]

    # ------------------------------------------------------------------ hot path

    def _read_access(self, sock: socket.socket, rtcp_port: bool) -> None:
        recv = sock.recvfrom
        mux = self._a_mux and not rtcp_port
        for _ in range(READ_BUDGET):
            try:
                data, addr = recv(RECV_MAX)
            except BlockingIOError:
                return
            except OSError:
                self.dropped += 1
                continue
            if rtcp_port or (mux and _is_rtcp(data)):
                self._from_ue(data, addr, True)
            else:
                self._from_ue(data, addr, False)

    def _read_core(self, sock: socket.socket, rtcp_port: bool) -> None:
        recv = sock.recvfrom
        mux = self._c_mux and not rtcp_port
        # Strict source: the one address allowed on this port (None: none yet, drop all). With
        # rtcp-mux `_core_rtcp` is the RTP address. Compared field by field: an IPv6 source is
        # a 4-tuple (host, port, flowinfo, scope_id).
        strict = self.strict_source
        allowed = self._core_rtcp if rtcp_port else self._core_rtp
        for _ in range(READ_BUDGET):
            try:
                data, addr = recv(RECV_MAX)
            except BlockingIOError:
                return
            except OSError:
                self.dropped += 1
                continue
            if strict and (allowed is None or addr[1] != allowed[1] or addr[0] != allowed[0]):
                self.rejected_source += 1
                continue
            if rtcp_port or (mux and _is_rtcp(data)):
                self._from_core(data, True)
            else:
                self._from_core(data, False)

    def _from_ue(self, data: bytes, addr: Addr, rtcp: bool) -> None:
        rx = self._rx
        if rx is not None:
            try:
                data = rx.rtcp(data) if rtcp else rx.rtp(data)
            except Exception as e:  # SrtpDrop, pylibsrtp.Error, ValueError (too long)
                self._count_drop(classify(e))
                return
        elif self.strict_source and not self._may_send_plain(addr, rtcp):
            self.rejected_source += 1
            return
        # Latch (RFC 4961): in e2ae every authenticated packet may move us (NAT rebinding); in
        # pass-through only the first one does. With mux both share the RTP address.
        if rtcp and not self._a_mux:
            if addr != self._ue_rtcp and (rx is not None or not self._rtcp_latched):
                self._ue_rtcp = addr
            self._rtcp_latched = True
        else:
            if addr != self._ue_rtp and (rx is not None or not self._latched):
                self._ue_rtp = addr
            self._latched = True
        if rtcp:
            sock = self._c_rtp if self._c_mux else self._c_rtcp
            dest = self._core_rtcp
        else:
            if not self._up_open:
                self.gated += 1
                return
            sock, dest = self._c_rtp, self._core_rtp
        if dest is None:
            self.dropped += 1
            return
        try:
            sock.sendto(data, dest)
        except OSError:  # BlockingIOError included: UDP, so drop rather than queue
            self.dropped += 1
            return
        self.to_core_packets += 1
        self.to_core_bytes += len(data)

    def _may_send_plain(self, addr: Addr, rtcp: bool) -> bool:
        """Pass-through under strict_source: nothing authenticates a packet, so the source
        address is all there is. Only the UE's signalled IP may latch, and once latched only the
        latched address (IP and port) is relayed: the first packet from the UE's IP wins."""
        if addr[0] != self._ue_ip:
            return False
        if rtcp and not self._a_mux:
            latched, dest = self._rtcp_latched, self._ue_rtcp
        else:
            latched, dest = self._latched, self._ue_rtp
        return not latched or (dest is not None and addr[1] == dest[1])

    def _from_core(self, data: bytes, rtcp: bool) -> None:
        if not rtcp and not self._down_open:
            self.gated += 1
            return
        tx = self._tx
        if tx is not None:
            try:
                data = tx.rtcp(data) if rtcp else tx.rtp(data)
            except Exception as e:  # pylibsrtp.Error: malformed RTP, repeated index, too long
                self._count_drop(classify(e))
                return
        if rtcp and not self._a_mux:
            sock, dest = self._a_rtcp, self._ue_rtcp
        else:
            sock, dest = self._a_rtp, self._ue_rtp
        if dest is None:
            self.dropped += 1
            return
        try:
            sock.sendto(data, dest)
        except OSError:
            self.dropped += 1
            return
        self.to_ue_packets += 1
        self.to_ue_bytes += len(data)

    def _count_drop(self, drop: SrtpDrop) -> None:
        if drop.mki:
            # A wrong MKI cannot be authenticated either: it counts as both.
            self.mki_mismatches += 1
            self.auth_failures += 1
        elif drop.auth:
            self.auth_failures += 1
        else:
            self.dropped += 1
