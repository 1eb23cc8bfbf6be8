"""HEPv3 encoder (sans-IO), the capture's redaction, the non-blocking sender and the `capture:`
config section (issue 13)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from pcscf_alg import capture
from pcscf_alg.capture import (
    HepSender,
    HepTooLarge,
    call_id_of,
    decode_hep3,
    encode_hep3,
    parse_hep_address,
    redact_message,
)
from pcscf_alg.config import parse_config
from pcscf_alg.errors import ConfigError

KEY = "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC"
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/SAVP 96\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4\r\n"
)
INVITE = (
    "INVITE sip:bob@ims.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n"
    "Call-ID: abc@test\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
).encode()


def _hep(**kw: Any) -> bytes:
    args: dict[str, Any] = dict(
        src=("127.0.0.2", 5061),
        dst=("127.0.0.1", 5060),
        transport="udp",
        ts_sec=1_700_000_000,
        ts_usec=123456,
        node_id=2001,
        payload=b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        correlation_id=b"abc@test",
    )
    args.update(kw)
    return encode_hep3(**args)


def test_hep3_header_and_chunks_byte_exact() -> None:
    pkt = _hep()
    assert pkt[:4] == b"HEP3"
    assert struct.unpack("!H", pkt[4:6])[0] == len(pkt)
    # First chunk: vendor 0, type 1 (IP family), length 7, AF_INET (2).
    assert pkt[6:13] == bytes.fromhex("0000" "0001" "0007" "02")
    # Second: type 2 (IP protocol), UDP = 17.
    assert pkt[13:20] == bytes.fromhex("0000" "0002" "0007" "11")
    c = decode_hep3(pkt)
    assert c[3] == bytes([127, 0, 0, 2]) and c[4] == bytes([127, 0, 0, 1])
    assert struct.unpack("!H", c[7])[0] == 5061 and struct.unpack("!H", c[8])[0] == 5060
    assert struct.unpack("!I", c[9])[0] == 1_700_000_000
    assert struct.unpack("!I", c[10])[0] == 123456
    assert c[11] == b"\x01"  # SIP
    assert struct.unpack("!I", c[12])[0] == 2001
    assert c[15] == b"OPTIONS sip:x SIP/2.0\r\n\r\n"
    assert c[17] == b"abc@test"


def test_hep3_ipv6_tcp_and_no_correlation() -> None:
    c = decode_hep3(_hep(src=("::1", 5061), dst=("2001:db8::1", 5060), transport="tcp",
                         correlation_id=None))
    assert c[1] == bytes([10]) and c[2] == bytes([6])
    assert c[5] == socket.inet_pton(socket.AF_INET6, "::1")
    assert c[6] == socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    assert 3 not in c and 17 not in c
    assert decode_hep3(_hep(transport="tls"))[2] == bytes([6])


def test_hep3_refuses_what_it_cannot_express() -> None:
    with pytest.raises(HepTooLarge):
        _hep(payload=b"x" * 65535)
    with pytest.raises(ValueError):
        _hep(src=("::1", 1), dst=("127.0.0.1", 2))
    with pytest.raises(ValueError):
        decode_hep3(b"HEP3\x00\x09abc")


@pytest.mark.parametrize(
    ("msg", "want"),
    [
        (b"BYE sip:x SIP/2.0\r\nCall-ID: a b\r\n\r\n", b"a b"),
        (b"SIP/2.0 200 OK\r\ni:  compact@x \r\nContent-Length: 0\r\n\r\n", b"compact@x"),
        (b"BYE sip:x SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n", None),
    ],
)
def test_call_id_of(msg: bytes, want: bytes | None) -> None:
    assert call_id_of(msg) == want


def test_redact_message_keeps_sip_consistent() -> None:
    red = redact_message(INVITE)
    assert KEY.encode() not in red and b"inline:<redacted>|2^20|1:4" in red
    head, body = red.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    plain = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    assert redact_message(plain) is plain


class _FullSocket:
    """A socket whose buffer is always full."""

    def setblocking(self, flag: bool) -> None:
        pass

    def sendto(self, data: bytes, addr: Any) -> int:
        raise BlockingIOError(11, "EAGAIN")

    def close(self) -> None:
        pass


def test_sender_sends_redacted_and_drops_without_raising() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(3)
    s = HepSender(rx.getsockname(), 7)
    try:
        s.capture(INVITE, "udp", ("127.0.0.2", 5061), ("127.0.0.1", 5060), 1.5)
        c = decode_hep3(rx.recv(65535))
        assert KEY.encode() not in c[15] and c[17] == b"abc@test"
        assert struct.unpack("!I", c[10])[0] == 500000
        s.capture(b"x" * 65535, "udp", ("127.0.0.2", 1), ("127.0.0.1", 2), 0.0)
        s.capture(INVITE, "udp", ("::1", 1), ("127.0.0.1", 2), 0.0)  # mixed families
        assert (s.counters.sent, s.counters.too_large, s.counters.dropped) == (1, 1, 1)
    finally:
        s.close()
        rx.close()
    full = HepSender(("127.0.0.1", 9), 1, sock=_FullSocket())  # type: ignore[arg-type]
    full.capture(INVITE, "udp", ("127.0.0.2", 5061), ("127.0.0.1", 5060), 0.0)
    assert full.counters.dropped == 1 and full.counters.sent == 0


def test_sender_unredacted_is_explicit() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(3)
    s = HepSender(rx.getsockname(), 7, redact_keys=False)
    try:
        s.capture(INVITE, "udp", ("127.0.0.2", 5061), ("127.0.0.1", 5060), 0.0)
        assert decode_hep3(rx.recv(65535))[15] == INVITE
    finally:
        s.close()
        rx.close()


@pytest.mark.parametrize(
    ("value", "want"),
    [("127.0.0.1:9060", ("127.0.0.1", 9060)), ("[::1]:9061", ("::1", 9061))],
)
def test_parse_hep_address(value: str, want: tuple[str, int]) -> None:
    assert parse_hep_address(value) == want


@pytest.mark.parametrize("value", ["homer:9060", "127.0.0.1", "127.0.0.1:0", "::1:9060", "[::1]"])
def test_parse_hep_address_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_hep_address(value)


BASE: dict[str, Any] = {
    "sip": {
        "access": {"host": "127.0.0.1", "port": 5060},
        "core": {"host": "127.0.0.1", "port": 5070},
        "next_hop": "sip:127.0.0.1:5080;lr",
    }
}


def test_capture_config() -> None:
    assert parse_config(BASE, "f.yaml").capture is None
    cfg = parse_config({**BASE, "capture": {"hep": "127.0.0.1:9060", "node_id": 2001}}, "f.yaml")
    assert cfg.capture is not None
    assert (cfg.capture.hep_host, cfg.capture.hep_port, cfg.capture.node_id) == (
        "127.0.0.1", 9060, 2001)
    assert cfg.capture.redact
    cfg = parse_config({**BASE, "capture": {"hep": "127.0.0.1:9060", "unredacted": True}}, "f")
    assert cfg.capture is not None and not cfg.capture.redact


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"hep": "homer.lab:9060"}, "capture.hep"),
        ({}, "capture.hep"),
        ({"hep": "127.0.0.1:9060", "redact": False}, "capture.redact"),
        ({"hep": "127.0.0.1:9060", "redact": True, "unredacted": True}, "capture.unredacted"),
        ({"hep": "127.0.0.1:9060", "node_id": -1}, "capture.node_id"),
        ({"hep": "127.0.0.1:9060", "nodeid": 1}, "capture.nodeid"),
    ],
)
def test_capture_config_errors_name_file_and_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "capture": section}, "lab.yaml")
    assert "lab.yaml" in str(e.value) and key in str(e.value)


def test_capture_module_names_spec_chunk_ids() -> None:
    # The HEP3 generic chunk ids the encoder uses (spec, vendor 0x0000).
    assert (capture.CHUNK_PAYLOAD, capture.CHUNK_CORRELATION_ID, capture.CHUNK_CAPTURE_ID) == (
        15, 17, 12)
