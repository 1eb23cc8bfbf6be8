"""e2ae for MSRP end to end (issue 6): a UE TLS client with its own self-signed certificate, the
daemon's gateway terminating TLS, a plain TCP MSRP peer on the core side."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.agw.certs import GatewayCertificate, load_or_create
from pcscf_alg.sdp.model import Sdp
from tests.e2e.calls_helpers import assert_released, in_dialog, invite, register, ue_hangs_up


def msrp_offer(port: int, fp: str, *, cema: bool, e2ae: bool = True) -> str:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=message {port} TCP/TLS/MSRP *",
        "a=accept-types:message/cpim text/plain",
        f"a=path:msrps://127.0.0.1:{port}/uesid77;tcp",
        "a=setup:actpass",
        f"a=fingerprint:{fp}",
    ]
    if cema:
        lines.append("a=msrp-cema")
    if e2ae:
        lines.append("a=3ge2ae:requested")
    lines.append("a=sendrecv")
    return "\n".join(lines) + "\n"


def core_answer(port: int, *, cema: bool) -> str:
    lines = [
        "v=0",
        "o=- 2 2 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=message {port} TCP/MSRP *",
        "a=accept-types:message/cpim text/plain",
        f"a=path:msrp://127.0.0.1:{port}/coresid9;tcp",
        "a=setup:passive",
    ]
    if cema:
        lines.append("a=msrp-cema")
    lines.append("a=sendrecv")
    return "\n".join(lines) + "\n"


def media(sdp: bytes) -> tuple[int, str, dict[str, str]]:
    s = Sdp.parse(sdp)
    m = s.media[0]
    attrs = {}
    for ln in m.lines[1:]:
        if ln.startswith("a="):
            name, _, value = ln[2:].partition(":")
            attrs[name] = value
    return m.port, m.proto, attrs


def tls_client(port: int, cert: GatewayCertificate) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed: the gateway's fingerprint is checked below
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw)


def send_msrp(to_path: str, from_path: str, tid: str = "tx1a2b") -> bytes:
    body = b"Hello over e2ae MSRP"
    return (
        (
            f"MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {from_path}\r\n"
            f"Message-ID: m1\r\nByte-Range: 1-{len(body)}/{len(body)}\r\n"
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n-------{tid}$\r\n".encode()
    )


def read_msrp(sock: socket.socket, tid: str) -> bytes:
    buf = b""
    end = f"-------{tid}$".encode()
    while end not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def header(msg: bytes, name: str) -> str:
    for line in msg.split(b"\r\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


@pytest.mark.parametrize("cema", [True, False], ids=["cema", "non-cema"])
def test_originating_msrp_tls_to_tcp(peers: Any, tmp_path: Path, cema: bool) -> None:
    d, ue, core = peers
    register(d, ue, core)
    cert = load_or_create(tmp_path / "ue")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    core_port = listener.getsockname()[1]
    try:
        invite(ue, d, msrp_offer(50000, cert.fingerprint.to_sdp(), cema=cema), f"msrp-o-{cema}")
        inv = core.expect("INVITE")
        agw_core_port, proto, attrs = media(inv.body)
        # 7.2.1 step 3: TCP/MSRP towards the core, no fingerprint, no 3ge2ae
        assert proto == "TCP/MSRP" and "fingerprint" not in attrs and "3ge2ae" not in attrs
        if cema:
            assert attrs["path"] == "msrps://127.0.0.1:50000/uesid77;tcp"  # untouched (RFC 6714)
        else:
            assert attrs["path"] == f"msrp://127.0.0.1:{agw_core_port}/uesid77;tcp"
        core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=core_answer(core_port, cema=cema))
        ok = ue.expect(200)
        agw_access_port, proto, attrs = media(ok.body)
        # step 8: TLS towards the UE with the gateway's fingerprint; the UE connects (passive)
        assert proto == "TCP/TLS/MSRP"
        assert attrs["fingerprint"].startswith("sha-256 ")
        assert attrs["setup"] == "passive"
        in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
        core.expect("ACK")
        to_path = attrs["path"]
        tls = tls_client(agw_access_port, cert)
        try:
            # the gateway's certificate matches the fingerprint in the answer
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes

            der = tls.getpeercert(binary_form=True)
            assert der is not None
            digest = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())
            assert attrs["fingerprint"].split(" ", 1)[1] == ":".join(f"{b:02X}" for b in digest)
            ue_path = "msrps://127.0.0.1:50000/uesid77;tcp"
            tls.sendall(send_msrp(to_path, ue_path))
            conn, _ = listener.accept()
            conn.settimeout(5)
            with conn:
                got = read_msrp(conn, "tx1a2b")
                assert b"Hello over e2ae MSRP" in got
                assert header(got, "To-Path") == f"msrp://127.0.0.1:{core_port}/coresid9;tcp"
                if cema:
                    assert got == send_msrp(to_path, ue_path)  # bytes unchanged
                else:
                    # the core peer sees the URIs its SDP promised (our core-side path)
                    assert (
                        header(got, "From-Path") == f"msrp://127.0.0.1:{agw_core_port}/uesid77;tcp"
                    )
                resp = (
                    f"MSRP tx1a2b 200 OK\r\nTo-Path: {header(got, 'From-Path')}\r\n"
                    f"From-Path: {header(got, 'To-Path')}\r\n-------tx1a2b$\r\n"
                ).encode()
                conn.sendall(resp)
                back = read_msrp(tls, "tx1a2b")
                assert back.startswith(b"MSRP tx1a2b 200 OK")
                assert header(back, "To-Path") == ue_path
        finally:
            tls.close()
        ue_hangs_up(d, ue, core, ok)
    finally:
        listener.close()


def test_wrong_certificate_fails_handshake_and_ends_call_both_ways(
    peers: Any, tmp_path: Path
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    signalled = load_or_create(tmp_path / "ue")
    other = load_or_create(tmp_path / "impostor")
    invite(ue, d, msrp_offer(50002, signalled.fingerprint.to_sdp(), cema=True), "msrp-bad-1")
    inv = core.expect("INVITE")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=core_answer(50100, cema=True))
    ok = ue.expect(200)
    agw_access_port, _, _ = media(ok.body)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls = tls_client(agw_access_port, other)
        try:
            tls.sendall(b"MSRP x SEND\r\n")
            if not tls.recv(100):
                raise ConnectionError("closed by the gateway")
        finally:
            tls.close()
    # no UE session by the stream's deadline (agw.tls_handshake_timeout_s, 10 s after the
    # answer; a failed handshake alone ends nothing, issue 11): BYE both ways
    bye_ue = ue.expect("BYE", timeout=20)
    bye_core = core.expect("BYE", timeout=10)
    assert bye_ue.call_id == bye_core.call_id == "msrp-bad-1"
    ue.reply(bye_ue, 200, "OK", d.access_port, to_tag="")
    core.reply(bye_core, 200, "OK", d.core_port, to_tag="")
    assert_released(d)
