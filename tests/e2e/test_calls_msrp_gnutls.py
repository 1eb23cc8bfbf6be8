"""e2ae MSRP through the daemon with GnuTLS on the UE's TLS side.

The gateway's TLS is pyOpenSSL; the other MSRP tests meet it with OpenSSL-based peers only
(`openssl s_client`/`s_server`, Python's ssl), which share its TLS library. Here the UE's TLS
stack is GnuTLS, an independent implementation (Debian's gnutls-bin, installed by
`make system-deps`):

- gnutls-cli is the UE's TLS client (the UE offered a=setup:actpass, the gateway answers passive
  and listens). It presents the UE's self-signed certificate and does no PKI check; the test
  compares the certificate the gateway presented (--save-cert) with the SDP answer's fingerprint.
- gnutls-serv is the UE's TLS server (the UE offered a=setup:passive, the gateway answers active
  and connects out, TS 33.328 7.2.1 with RFC 4145 roles). Its echo mode sends back what the core
  peer's MSRP SEND delivered through the gateway.

Each case runs with TLS 1.3 and TLS 1.2 (GnuTLS priority strings): the client certificate comes
at a different point of the handshake in each. Everything is on 127.0.0.1 and bounded in time;
the GnuTLS processes are killed in `finally`.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pcscf_alg.agw.certs import GatewayCertificate, load_or_create
from tests.e2e.calls_helpers import assert_released, in_dialog, invite, register, ue_hangs_up
from tests.e2e.daemon import Daemon, free_port
from tests.e2e.test_calls_msrp import core_answer, header, media, msrp_offer, read_msrp, send_msrp

GNUTLS_CLI = shutil.which("gnutls-cli")
GNUTLS_SERV = shutil.which("gnutls-serv")
if GNUTLS_CLI is None or GNUTLS_SERV is None:
    pytest.skip(
        "GnuTLS CLI tools (gnutls-cli, gnutls-serv) not installed: run `make system-deps` "
        "(installs Debian's gnutls-bin)",
        allow_module_level=True,
    )

HOST = "127.0.0.1"
TIMEOUT = 5.0  # every wait on a GnuTLS process or socket
# GnuTLS priority strings pinning one protocol version each; the log names the one negotiated.
VERSIONS = {
    "TLS1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3",
    "TLS1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2",
}
PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
BODY = b"Hello over e2ae MSRP"


def sdp_fingerprint(pem: bytes) -> str:
    """'sha-256 AB:CD:...' of a PEM certificate (its DER digest), as RFC 8122 puts it in SDP."""
    cert = x509.load_pem_x509_certificate(pem)
    return "sha-256 " + ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def wait_for_text(path: Path, needle: str, proc: subprocess.Popen[bytes] | None = None) -> str:
    """Poll a log file until it contains `needle` (bounded). Returns the text read so far."""
    deadline = time.monotonic() + TIMEOUT
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        if proc is not None and proc.poll() is not None:
            text = path.read_text(errors="replace") if path.exists() else ""
            break
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in {path.name} within {TIMEOUT}s:\n{text}")


def read_until(stream: IO[bytes], end: bytes, timeout: float = TIMEOUT) -> bytes:
    """Read a pipe until `end` was seen, EOF or the deadline (never blocks past it)."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while end not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return buf


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def gnutls_cli(
    port: int, cert: GatewayCertificate, workdir: Path, priority: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """gnutls-cli as the UE's TLS client: (process, informational log, saved peer cert).
    stdin/stdout carry the application data only (the rest goes to the log, which gnutls-cli
    buffers until it exits; the peer certificate file is written during the handshake)."""
    assert GNUTLS_CLI is not None
    workdir.mkdir(parents=True, exist_ok=True)
    log, peer_pem = workdir / "gnutls-cli.log", workdir / "gateway-cert.pem"
    with open(workdir / "gnutls-cli.stderr", "wb") as err:
        proc = subprocess.Popen(
            [
                GNUTLS_CLI,
                HOST,
                "--port",
                str(port),
                "--x509certfile",
                str(cert.cert_path),
                "--x509keyfile",
                str(cert.key_path),
                "--insecure",  # self-signed: the fingerprint is checked by the test instead
                "--priority",
                priority,
                "--save-cert",
                str(peer_pem),
                "--logfile",
                str(log),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        yield proc, log, peer_pem
    finally:
        stop(proc)


@contextmanager
def gnutls_serv(
    cert: GatewayCertificate, workdir: Path, priority: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, Path]]:
    """gnutls-serv as the UE's TLS server in echo mode, CRLF kept (MSRP framing), asking for
    a client certificate as it does by default: (process, port, stdout log, stderr log).
    gnutls-serv has no bind-address option: it listens on the wildcard addresses."""
    assert GNUTLS_SERV is not None
    workdir.mkdir(parents=True, exist_ok=True)
    out_log, err_log = workdir / "gnutls-serv.out", workdir / "gnutls-serv.err"
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(3):  # the free port may be taken before gnutls-serv binds it
            port = free_port(socket.SOCK_STREAM, also_tcp=False)
            with open(out_log, "wb") as out, open(err_log, "wb") as err:
                proc = subprocess.Popen(
                    [
                        GNUTLS_SERV,
                        "--port",
                        str(port),
                        "--x509certfile",
                        str(cert.cert_path),
                        "--x509keyfile",
                        str(cert.key_path),
                        "--priority",
                        priority,
                        "--echo",
                        "--crlf",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
            try:
                wait_for_text(err_log, f"listening on IPv4 0.0.0.0 port {port}", proc)
            except AssertionError:
                stop(proc)
                proc = None
                continue
            break
        assert proc is not None, f"gnutls-serv did not start:\n{err_log.read_text()}"
        yield proc, port, out_log, err_log
    finally:
        if proc is not None:
            stop(proc)


def ue_offer(port: int, fp: str, *, setup: str, cema: bool) -> str:
    return msrp_offer(port, fp, cema=cema).replace("a=setup:actpass", f"a=setup:{setup}")


def msrp_200(tid: str, got: bytes) -> bytes:
    return (
        f"MSRP {tid} 200 OK\r\nTo-Path: {header(got, 'From-Path')}\r\n"
        f"From-Path: {header(got, 'To-Path')}\r\n-------{tid}$\r\n"
    ).encode()


def msrp_call(
    d: Daemon, ue: Any, core: Any, offer: str, call_id: str, core_port: int, *, cema: bool
) -> tuple[Any, Any]:
    """The UE's MSRP INVITE through the P-CSCF, the core's 200 (its MSRP peer on `core_port`),
    ACK both ways: the INVITE the core got and the 200 the UE got."""
    invite(ue, d, offer, call_id)
    inv = core.expect("INVITE")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=core_answer(core_port, cema=cema))
    ok = ue.expect(200)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    return inv, ok


def torn_down_both_ways(d: Daemon, ue: Any, core: Any, call_id: str) -> None:
    """The gateway reported the TLS failure; the P-CSCF ends the call with BYE both ways.
    (A failed accepted handshake ends the call only at the stream's deadline, 10 s after the
    answer: issue 11.)"""
    bye_ue = ue.expect("BYE", timeout=20)
    bye_core = core.expect("BYE", timeout=10)
    assert bye_ue.call_id == bye_core.call_id == call_id
    ue.reply(bye_ue, 200, "OK", d.access_port, to_tag="")
    core.reply(bye_core, 200, "OK", d.core_port, to_tag="")
    assert_released(d)
    assert f"call {call_id}: TLS failed on stream 0 (fingerprint_mismatch)" in d.log()


def assert_no_connection(listener: socket.socket) -> None:
    listener.settimeout(0.5)
    with pytest.raises(TimeoutError):
        conn, _ = listener.accept()
        conn.close()


# ----------------------------------------------------------------------------- gnutls-cli


@pytest.mark.parametrize("version", list(VERSIONS))
def test_gnutls_cli_ue_msrp_tls_to_tcp(peers: Any, tmp_path: Path, version: str) -> None:
    d, ue, core = peers
    register(d, ue, core)
    cert = load_or_create(tmp_path / "ue")
    listener = socket.create_server((HOST, 0))
    listener.settimeout(TIMEOUT)
    core_port = listener.getsockname()[1]
    try:
        offer = ue_offer(50000, cert.fingerprint.to_sdp(), setup="actpass", cema=False)
        inv, ok = msrp_call(d, ue, core, offer, "gnutls-cli-1", core_port, cema=False)
        agw_core_port, _, _ = media(inv.body)
        agw_access_port, proto, attrs = media(ok.body)
        assert proto == "TCP/TLS/MSRP" and attrs["setup"] == "passive"
        assert attrs["fingerprint"].startswith("sha-256 ")
        ue_path = "msrps://127.0.0.1:50000/uesid77;tcp"
        msg = send_msrp(attrs["path"], ue_path)
        with gnutls_cli(agw_access_port, cert, tmp_path / "cli", VERSIONS[version]) as (
            cli,
            log,
            peer_pem,
        ):
            # No PKI: the certificate the gateway presented must be the one the answer's
            # a=fingerprint names (RFC 8122), computed here from gnutls-cli's copy of it
            # (--save-cert writes it during the handshake, before any data is sent).
            pem = wait_for_text(peer_pem, "-----END CERTIFICATE-----", cli).encode()
            pems = PEM_RE.findall(pem)
            assert len(pems) == 1, pem
            assert sdp_fingerprint(pems[0]) == attrs["fingerprint"]
            assert cli.stdin is not None and cli.stdout is not None
            cli.stdin.write(msg)
            cli.stdin.flush()
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with conn:
                got = read_msrp(conn, "tx1a2b")
                assert got.startswith(b"MSRP tx1a2b SEND\r\n"), got
                assert BODY + b"\r\n-------tx1a2b$\r\n" in got
                assert header(got, "To-Path") == f"msrp://127.0.0.1:{core_port}/coresid9;tcp"
                assert header(got, "From-Path") == f"msrp://127.0.0.1:{agw_core_port}/uesid77;tcp"
                conn.sendall(msrp_200("tx1a2b", got))
                back = read_until(cli.stdout, b"-------tx1a2b$\r\n")
                assert back.startswith(b"MSRP tx1a2b 200 OK\r\n"), back
                assert back.endswith(b"-------tx1a2b$\r\n"), back
                assert header(back, "To-Path") == ue_path
                assert header(back, "From-Path") == attrs["path"]
                # The session is still up. (Checked while the core leg is open: once the test
                # closes that leg, the gateway may close the UE's session too, and gnutls-cli
                # then exits cleanly on its own.)
                assert cli.poll() is None
            # EOF on stdin: gnutls-cli closes the session (close_notify) and exits cleanly;
            # only then is its log (stdio-buffered) complete.
            cli.stdin.close()
            assert cli.wait(timeout=TIMEOUT) == 0, log.read_text()
            text = log.read_text(errors="replace")
            assert "- Handshake was completed" in text, text
            assert f"- Description: ({version}-X.509)" in text, text
            assert "- Successfully sent 1 certificate(s) to server." in text, text
        ue_hangs_up(d, ue, core, ok)
    finally:
        listener.close()


@pytest.mark.parametrize("version", list(VERSIONS))
def test_gnutls_cli_wrong_certificate_fails_handshake_and_ends_call(
    peers: Any, tmp_path: Path, version: str
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    signalled = load_or_create(tmp_path / "ue")
    impostor = load_or_create(tmp_path / "impostor")
    listener = socket.create_server((HOST, 0))
    core_port = listener.getsockname()[1]
    try:
        offer = ue_offer(50002, signalled.fingerprint.to_sdp(), setup="actpass", cema=True)
        _, ok = msrp_call(d, ue, core, offer, "gnutls-cli-bad", core_port, cema=True)
        agw_access_port, _, attrs = media(ok.body)
        with gnutls_cli(agw_access_port, impostor, tmp_path / "cli", VERSIONS[version]) as (
            cli,
            log,
            _,
        ):
            assert cli.stdin is not None and cli.stdout is not None
            try:
                cli.stdin.write(send_msrp(attrs["path"], "msrps://127.0.0.1:50002/uesid77;tcp"))
                cli.stdin.flush()
            except BrokenPipeError:
                pass  # gnutls-cli already gave up
            # The gateway refuses the certificate with an alert: gnutls-cli ends with an error
            # and no application data ever comes back.
            rc = cli.wait(timeout=TIMEOUT)
            text = log.read_text(errors="replace")
            assert rc != 0, text
            assert read_until(cli.stdout, b"\n", timeout=0.5) == b""
            # TLS 1.3: gnutls-cli finishes its side of the handshake before the gateway has
            # seen the client certificate, so the alert arrives afterwards; TLS 1.2: during it.
            assert "*** Received alert [" in text, text
        torn_down_both_ways(d, ue, core, "gnutls-cli-bad")
        assert_no_connection(listener)  # nothing reached the core
    finally:
        listener.close()


# ----------------------------------------------------------------------------- gnutls-serv


@pytest.mark.parametrize("version", list(VERSIONS))
def test_gateway_connects_to_gnutls_serv_ue(peers: Any, tmp_path: Path, version: str) -> None:
    d, ue, core = peers
    register(d, ue, core)
    cert = load_or_create(tmp_path / "ue")
    listener = socket.create_server((HOST, 0))
    listener.settimeout(TIMEOUT)
    core_port = listener.getsockname()[1]
    try:
        with gnutls_serv(cert, tmp_path / "serv", VERSIONS[version]) as (srv, port, out, err):
            # The UE waits (a=setup:passive): the gateway connects to it, as TLS client.
            offer = ue_offer(port, cert.fingerprint.to_sdp(), setup="passive", cema=True)
            _, ok = msrp_call(d, ue, core, offer, "gnutls-serv-1", core_port, cema=True)
            _, proto, attrs = media(ok.body)
            assert proto == "TCP/TLS/MSRP" and attrs["setup"] == "active"
            # The core leg comes up only once the TLS towards gnutls-serv is (fingerprint matched).
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with conn:
                text = wait_for_text(out, "-----END CERTIFICATE-----", srv)
                assert f"- Version: {version}" in text, text
                # gnutls-serv asked for a client certificate: the gateway presented the one
                # whose fingerprint it put in the answer.
                pems = PEM_RE.findall(text.encode())
                assert len(pems) == 1, text
                assert sdp_fingerprint(pems[0]) == attrs["fingerprint"]
                ue_path = f"msrps://127.0.0.1:{port}/uesid77;tcp"
                core_path = f"msrp://127.0.0.1:{core_port}/coresid9;tcp"
                msg = send_msrp(ue_path, core_path, tid="gs9")
                conn.sendall(msg)
                # gnutls-serv decrypted the SEND and echoes it; CEMA: bytes unchanged both ways.
                assert read_msrp(conn, "gs9") == msg
                assert BODY.decode() in wait_for_text(err, BODY.decode(), srv)
            assert srv.poll() is None
        ue_hangs_up(d, ue, core, ok)
    finally:
        listener.close()


@pytest.mark.parametrize("version", list(VERSIONS))
def test_gnutls_serv_wrong_certificate_fails_handshake_and_ends_call(
    peers: Any, tmp_path: Path, version: str
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    signalled = load_or_create(tmp_path / "ue")
    impostor = load_or_create(tmp_path / "impostor")
    listener = socket.create_server((HOST, 0))
    core_port = listener.getsockname()[1]
    try:
        with gnutls_serv(impostor, tmp_path / "serv", VERSIONS[version]) as (srv, port, _, err):
            offer = ue_offer(port, signalled.fingerprint.to_sdp(), setup="passive", cema=True)
            msrp_call(d, ue, core, offer, "gnutls-serv-bad", core_port, cema=True)
            torn_down_both_ways(d, ue, core, "gnutls-serv-bad")
            # gnutls-serv saw the connection and the handshake failed; nothing was echoed.
            text = wait_for_text(err, "Error in handshake", srv)
            assert "Processing" not in text and BODY.decode() not in text, text
            if version == "TLS1.2":
                assert "Error in handshake: A TLS fatal alert has been received." in text, text
            else:
                # OpenSSL as TLS 1.3 client sends this alert unencrypted (it switches its
                # write keys later), which GnuTLS, expecting an encrypted record after its
                # ServerHello, reports as a decryption failure instead of the alert.
                assert (
                    "A TLS fatal alert has been received." in text
                    or "Decryption has failed." in text
                ), text
        assert_no_connection(listener)
    finally:
        listener.close()
