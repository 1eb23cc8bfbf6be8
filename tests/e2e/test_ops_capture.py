"""Issue 13, deliver 5: HEP capture of every SIP message, both sides, checked by independent
decoders, with no key material in it.

The daemon sends HEPv3 to a UDP socket this test binds. The datagrams go into a pcap file the
test writes itself (Ethernet/IPv4/UDP headers made up around each datagram). `sngrep -E`
(Irontec's HEP/EEP parser, Debian package sngrep) decodes the HEP in it and writes the SIP
messages it finds, with the addresses from the HEP chunks, to a second pcap; Wireshark's `tshark`
dissects that one (IP, UDP, SIP). Debian's tshark 4.0 has no HEP dissector of its own, hence
sngrep in between. What they report must be what crossed the daemon: every message the test's
peers exchanged with it, with the real addresses of each side.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from pcscf_alg.capture import CHUNK_CAPTURE_ID, CHUNK_CORRELATION_ID, CHUNK_PAYLOAD, decode_hep3
from tests.e2e.daemon import Daemon
from tests.e2e.test_ops_logs import assert_no_keys, e2ae_rtp_call

NODE_ID = 2001

Row = tuple[str, int, str, int, str, str, str]  # src, sport, dst, dport, method, status, call-id


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path is not None, f"{tool} is not installed: run `make test` (make system-deps)"
    return path


def collect(sock: socket.socket, quiet: float = 0.7, limit: float = 10.0) -> list[bytes]:
    """Every datagram until none came for `quiet` seconds (bounded by `limit`)."""
    out: list[bytes] = []
    deadline = time.monotonic() + limit
    sock.settimeout(quiet)
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(65535))
        except TimeoutError:
            break
    return out


def write_pcap(path: Path, datagrams: list[bytes], hep_port: int) -> None:
    """A classic pcap (LINKTYPE_ETHERNET) with one made-up Ethernet/IPv4/UDP frame per HEP
    datagram, 127.0.0.1:40000 -> 127.0.0.1:hep_port (checksums 0: not verified by readers)."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t0 = int(time.time())
        for i, d in enumerate(datagrams):
            udp = struct.pack("!HHHH", 40000, hep_port, 8 + len(d), 0) + d
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
            )
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            f.write(struct.pack("<IIII", t0, i, len(frame), len(frame)) + frame)


def independent_rows(hep_pcap: Path, tmp: Path) -> list[Row]:
    sip_pcap = tmp / "sip.pcap"
    subprocess.run(
        [need("sngrep"), "-N", "-q", "-F", "-E", "-I", str(hep_pcap), "-O", str(sip_pcap)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    out = subprocess.run(
        [
            need("tshark"), "-r", str(sip_pcap), "-T", "fields",
            "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
            "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.Call-ID",
        ],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    rows: list[Row] = []
    for line in out.splitlines():
        src, sport, dst, dport, method, status, cid = line.split("\t")
        rows.append((src, int(sport), dst, int(dport), method, status, cid))
    return _collapse(rows)


def _collapse(rows: list[Row]) -> list[Row]:
    """sngrep 1.6 writes each message it extracts twice in a row; one of each."""
    out: list[Row] = []
    for r in rows:
        if not out or out[-1] != r:
            out.append(r)
    return out


def own_rows(datagrams: list[bytes]) -> list[Row]:
    """The same rows from our decoder, to compare with the independent one."""
    import ipaddress

    rows: list[Row] = []
    for d in datagrams:
        c = decode_hep3(d)
        payload = c[CHUNK_PAYLOAD]
        first = payload.split(b"\r\n", 1)[0].decode()
        if first.startswith("SIP/2.0 "):
            method, status = "", first.split()[1]
        else:
            method, status = first.split()[0], ""
        rows.append(
            (
                str(ipaddress.ip_address(c[3])),
                struct.unpack("!H", c[7])[0],
                str(ipaddress.ip_address(c[4])),
                struct.unpack("!H", c[8])[0],
                method,
                status,
                c[CHUNK_CORRELATION_ID].decode(),
            )
        )
    return _collapse(rows)


def test_hep_capture_decodes_to_what_crossed_without_keys(
    daemon_factory: Any, tmp_path: Path
) -> None:
    need("sngrep")
    need("tshark")
    hep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hep.bind(("127.0.0.1", 0))
    hep.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        hep_port = hep.getsockname()[1]
        d: Daemon = daemon_factory(
            capture={"hep": f"127.0.0.1:{hep_port}", "node_id": NODE_ID},
            log={"level": "DEBUG", "format": "text"},
        )
        call_id = "ops-hep-1@test"
        forms = e2ae_rtp_call(d, call_id)
        datagrams = collect(hep)
    finally:
        hep.close()
    assert datagrams, "no HEP datagram arrived"

    # No key material in what was captured (redacted by default), in any form.
    blob = b"".join(datagrams).decode("latin-1")
    assert_no_keys(blob, forms, "the HEP capture")
    assert "inline:<redacted>" in blob  # the crypto lines themselves are there
    for dg in datagrams:
        chunks = decode_hep3(dg)
        assert struct.unpack("!I", chunks[CHUNK_CAPTURE_ID])[0] == NODE_ID

    # An independent decoder sees the same messages, addresses and Call-IDs as ours ...
    theirs = independent_rows(_pcap(tmp_path, datagrams, hep_port), tmp_path)
    ours = own_rows(datagrams)
    assert theirs == ours, (theirs, ours)

    # ... and they are the messages that crossed, with the real addresses of each side.
    ue_addr = _ue_address(ours, d, call_id)
    acc = ("127.0.0.1", d.access_port)
    cor = ("127.0.0.1", d.core_port)
    nh = ("127.0.0.1", d.next_hop_port)

    def row(src: tuple[str, int], dst: tuple[str, int], method: str, status: str) -> Row:
        return (*src, *dst, method, status, call_id)  # type: ignore[return-value]

    expected = [
        row(ue_addr, acc, "INVITE", ""),  # UE -> access listener
        row(cor, nh, "INVITE", ""),  # core listener -> S-CSCF (next hop)
        row(nh, cor, "", "200"),
        row(acc, ue_addr, "", "200"),
        row(ue_addr, acc, "ACK", ""),
        row(cor, nh, "ACK", ""),
        row(ue_addr, acc, "BYE", ""),
        row(cor, nh, "BYE", ""),
        row(nh, cor, "", "200"),
        row(acc, ue_addr, "", "200"),
    ]
    call_rows = [r for r in theirs if r[6] == call_id and r[5] not in ("100",)]
    assert call_rows == expected, call_rows
    # The registration crossed too (REGISTER both sides, its 200 both sides).
    reg = [r for r in theirs if r[6].startswith("reg-")]
    assert [r[4] or r[5] for r in reg] == ["REGISTER", "REGISTER", "200", "200"], reg


def _pcap(tmp: Path, datagrams: list[bytes], hep_port: int) -> Path:
    p = tmp / "hep.pcap"
    write_pcap(p, datagrams, hep_port)
    return p


def _ue_address(rows: list[Row], d: Daemon, call_id: str) -> tuple[str, int]:
    for r in rows:
        if r[6] == call_id and r[4] == "INVITE" and r[3] == d.access_port:
            return r[0], r[1]
    raise AssertionError(f"no INVITE to the access side in {rows}")


def test_capture_redact_false_needs_explicit_opt_in(daemon_factory: Any, tmp_path: Path) -> None:
    """`unredacted: true` is the operator's decision; then the keys do go to the collector."""
    hep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hep.bind(("127.0.0.1", 0))
    try:
        d: Daemon = daemon_factory(
            capture={"hep": f"127.0.0.1:{hep.getsockname()[1]}", "unredacted": True}
        )
        forms = e2ae_rtp_call(d, "ops-hep-2@test")
        blob = b"".join(collect(hep)).decode("latin-1")
    finally:
        hep.close()
    assert "inline:<redacted>" not in blob
    assert forms[-2] in blob  # K11 as the UE offered it
