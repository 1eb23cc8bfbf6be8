"""HEP capture (issue 13): every SIP message received and sent, on both sides, as HEPv3 over UDP
to a Homer/heplify collector (`capture: {hep: "127.0.0.1:9060", node_id: 2001}`).

Two parts, in the sans-IO manner of the rest of the daemon:

- `encode_hep3()` is pure (bytes in, bytes out), written from the HEP3 Network Protocol
  Specification (sipcapture.org, "HEP3 Network Protocol Specification", generic chunks of vendor
  0x0000): a 6-byte header (`"HEP3"`, total length u16, network order) followed by chunks, each
  `vendor id u16, type id u16, chunk length u16 (header included), value`. We send chunk types
  1 (IP family), 2 (IP protocol id: 17 UDP, 6 TCP), 3/4 or 5/6 (IPv4 or IPv6 source and
  destination), 7/8 (ports), 9/10 (timestamp seconds and microseconds), 11 (protocol type,
  1 = SIP), 12 (capture agent id = `node_id`), 15 (the captured payload) and 17 (correlation id:
  the Call-ID, as Homer correlates with it).
- `HepSender` is the thin IO edge: one non-blocking UDP socket, one datagram per message, no
  queue. A full socket buffer (EAGAIN) or any other error drops the datagram and counts it; it
  never raises into the call path, and never blocks the loop.

Key material: the SDP of an e2ae call carries SRTP master keys in clear (`a=crypto` ...
`inline:<key>`, RFC 4568 §6.1). By default they are redacted in what is captured, with the same
helper as the logs (`sdp.crypto.redact`), and Content-Length is fixed to the redacted body so
that the captured message still parses. `capture.unredacted: true` sends them as they crossed:
an operator's decision (README, Security model).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass

from pcscf_alg.sdp.crypto import redact

log = logging.getLogger(__name__)

# HEP3 generic chunk types (vendor 0x0000).
CHUNK_IP_FAMILY = 1
CHUNK_IP_PROTO = 2
CHUNK_IPV4_SRC = 3
CHUNK_IPV4_DST = 4
CHUNK_IPV6_SRC = 5
CHUNK_IPV6_DST = 6
CHUNK_SRC_PORT = 7
CHUNK_DST_PORT = 8
CHUNK_TS_SEC = 9
CHUNK_TS_USEC = 10
CHUNK_PROTO_TYPE = 11
CHUNK_CAPTURE_ID = 12
CHUNK_PAYLOAD = 15
CHUNK_CORRELATION_ID = 17

PROTO_TYPE_SIP = 1
# IP protocol numbers (IANA): what the captured message travelled over. TLS is over TCP.
IPPROTO_BY_TRANSPORT = {"udp": 17, "tcp": 6, "tls": 6}
# The IP family chunk carries the socket address family values the spec's reference senders
# use (AF_INET = 2, AF_INET6 = 10 on Linux), not the IP version.
FAMILY_INET = 2
FAMILY_INET6 = 10

HEP3_MAGIC = b"HEP3"
HEP3_MAX = 0xFFFF  # the total length is a u16: a larger packet cannot be expressed


class HepTooLarge(ValueError):
    """The message does not fit in one HEP3 packet (total length is 16 bits)."""


def _chunk(type_id: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, type_id, 6 + len(value)) + value


def encode_hep3(
    *,
    src: tuple[str, int],
    dst: tuple[str, int],
    transport: str,
    ts_sec: int,
    ts_usec: int,
    node_id: int,
    payload: bytes,
    correlation_id: bytes | None = None,
) -> bytes:
    """One HEP3 packet for one captured SIP message. `src`/`dst` are (IP literal, port), both of
    the same family. Raises `ValueError` on mixed families or a non-IP host, `HepTooLarge` when
    the packet would exceed 65535 bytes."""
    if 12 + len(payload) + len(correlation_id or b"") > HEP3_MAX:
        # Checked first: a chunk's own u16 length could not hold it either.
        raise HepTooLarge(f"a {len(payload)}-byte payload does not fit in a HEP3 packet")
    s_ip = ipaddress.ip_address(src[0])
    d_ip = ipaddress.ip_address(dst[0])
    if s_ip.version != d_ip.version:
        raise ValueError(f"source {src[0]} and destination {dst[0]} are of different families")
    proto = IPPROTO_BY_TRANSPORT.get(transport.lower(), 17)
    if s_ip.version == 4:
        family, t_src, t_dst = FAMILY_INET, CHUNK_IPV4_SRC, CHUNK_IPV4_DST
    else:
        family, t_src, t_dst = FAMILY_INET6, CHUNK_IPV6_SRC, CHUNK_IPV6_DST
    parts = [
        _chunk(CHUNK_IP_FAMILY, struct.pack("!B", family)),
        _chunk(CHUNK_IP_PROTO, struct.pack("!B", proto)),
        _chunk(t_src, s_ip.packed),
        _chunk(t_dst, d_ip.packed),
        _chunk(CHUNK_SRC_PORT, struct.pack("!H", src[1])),
        _chunk(CHUNK_DST_PORT, struct.pack("!H", dst[1])),
        _chunk(CHUNK_TS_SEC, struct.pack("!I", ts_sec & 0xFFFFFFFF)),
        _chunk(CHUNK_TS_USEC, struct.pack("!I", ts_usec)),
        _chunk(CHUNK_PROTO_TYPE, struct.pack("!B", PROTO_TYPE_SIP)),
        _chunk(CHUNK_CAPTURE_ID, struct.pack("!I", node_id)),
    ]
    if correlation_id:
        parts.append(_chunk(CHUNK_CORRELATION_ID, correlation_id))
    parts.append(_chunk(CHUNK_PAYLOAD, payload))
    body = b"".join(parts)
    total = 6 + len(body)
    if total > HEP3_MAX:
        raise HepTooLarge(f"HEP3 packet of {total} bytes exceeds {HEP3_MAX}")
    return HEP3_MAGIC + struct.pack("!H", total) + body


def decode_hep3(packet: bytes) -> dict[int, bytes]:
    """The chunks of a HEP3 packet by type id (vendor 0x0000 only), for tests and tools.
    Raises ValueError on anything malformed."""
    if len(packet) < 6 or packet[:4] != HEP3_MAGIC:
        raise ValueError("not a HEP3 packet")
    (total,) = struct.unpack_from("!H", packet, 4)
    if total != len(packet):
        raise ValueError(f"HEP3 length {total} != {len(packet)}")
    out: dict[int, bytes] = {}
    pos = 6
    while pos < total:
        if pos + 6 > total:
            raise ValueError("truncated chunk header")
        vendor, type_id, length = struct.unpack_from("!HHH", packet, pos)
        if length < 6 or pos + length > total:
            raise ValueError(f"bad chunk length {length} at {pos}")
        if vendor == 0:
            out[type_id] = packet[pos + 6 : pos + length]
        pos += length
    return out


def call_id_of(data: bytes) -> bytes | None:
    """The Call-ID of a raw SIP message (long or compact form `i`, RFC 3261 §7.3.3, §20.8),
    without parsing the message; None when absent. Only the header section is read."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    for line in head.split(b"\r\n")[1:]:
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].strip().lower()
        if name in (b"call-id", b"i"):
            value = line[colon + 1 :].strip()
            return value or None
    return None


def redact_message(data: bytes) -> bytes:
    """The message with every `inline:` key replaced by `<redacted>` (the logs' helper) and its
    Content-Length fixed to the shortened body, so that the capture still parses as SIP.
    Unchanged (same object) when it holds no `inline:`."""
    if b"inline:" not in data:
        return data
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        return redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    head, body = data[: sep + 4], data[sep + 4 :]
    new_body = redact(body.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    # The head holds no key (a=crypto is SDP), but redact it too: defence in depth.
    new_head = redact(head.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    if len(new_body) != len(body):
        new_head = _set_content_length(new_head, len(new_body))
    return new_head + new_body


def _set_content_length(head: bytes, n: int) -> bytes:
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines[1:], start=1):
        colon = line.find(b":")
        if colon > 0 and line[:colon].strip().lower() in (b"content-length", b"l"):
            lines[i] = line[: colon + 1] + b" " + str(n).encode()
    return b"\r\n".join(lines)


def parse_hep_address(value: str) -> tuple[str, int]:
    """`"127.0.0.1:9060"` or `"[::1]:9060"` -> (IP literal, port). Raises ValueError with a
    reason. IP literals only: the daemon never resolves names on its loop."""
    if value.startswith("["):
        host, sep, port_s = value[1:].partition("]:")
        if not sep:
            raise ValueError("IPv6 must be written [address]:port")
    else:
        host, sep, port_s = value.rpartition(":")
        if not sep:
            raise ValueError("must be IP:port")
        if ":" in host:
            raise ValueError("IPv6 must be written [address]:port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address literal") from None
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise ValueError(f"port must be 1..65535, got {port_s!r}")
    return str(ip), int(port_s)


@dataclass
class CaptureCounters:
    sent: int = 0
    dropped: int = 0  # socket buffer full (EAGAIN) or send error
    too_large: int = 0  # would not fit in one HEP3 packet


class HepSender:
    """Sends one HEP3 datagram per SIP message to the collector. Bounded: one UDP socket, no
    queue; never raises, never blocks (`send` is called on the event loop, in the call path)."""

    def __init__(
        self,
        collector: tuple[str, int],
        node_id: int,
        *,
        redact_keys: bool = True,
        sock: socket.socket | None = None,
    ) -> None:
        self.collector = collector
        self.node_id = node_id
        self.redact_keys = redact_keys
        self.counters = CaptureCounters()
        family = socket.AF_INET6 if ":" in collector[0] else socket.AF_INET
        self._sock = sock or socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._warned = False

    def capture(
        self,
        data: bytes,
        transport: str,
        src: tuple[str, int],
        dst: tuple[str, int],
        now: float,
    ) -> None:
        """Capture one message that crossed from `src` to `dst` at wall-clock time `now`."""
        try:
            payload = redact_message(data) if self.redact_keys else data
            sec = int(now)
            pkt = encode_hep3(
                src=src,
                dst=dst,
                transport=transport,
                ts_sec=sec,
                ts_usec=min(int((now - sec) * 1_000_000), 999_999),
                node_id=self.node_id,
                payload=payload,
                correlation_id=call_id_of(data),
            )
        except HepTooLarge:
            self.counters.too_large += 1
            return
        except Exception as e:  # a capture problem must never cost the call
            self._drop(e)
            return
        try:
            self._sock.sendto(pkt, self.collector)
        except OSError as e:  # BlockingIOError (EAGAIN) included: drop, do not queue
            self._drop(e)
            return
        self.counters.sent += 1

    def _drop(self, e: Exception) -> None:
        self.counters.dropped += 1
        if not self._warned:
            # Once: a collector that is down would otherwise log per message.
            self._warned = True
            log.warning(
                "HEP capture to %s:%d: dropping (%s); counted in capture.dropped",
                self.collector[0],
                self.collector[1],
                type(e).__name__,
            )

    def close(self) -> None:
        self._sock.close()
