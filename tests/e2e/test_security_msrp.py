"""The MSRP front door against the running daemon (issue 11 items 1 and 4).

(a) An attacker reaches the UE-side MSRP port of an e2ae call before the UE (with a certificate
    that is not the signalled one, or holding a bare TCP connection): the UE still gets through,
    MSRP flows both ways, nobody is sent a BYE, and hanging up leaves nothing behind.
(b) MSRP e2ae calls whose UE never connects are released (BYE both ways, no ports, no dialogs)
    once `agw.tls_handshake_timeout_s` has passed since the answer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.agw.certs import load_or_create
from tests.e2e.calls_helpers import assert_released, in_dialog, invite, register, ue_hangs_up
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer
from tests.e2e.test_calls_msrp import (
    core_answer,
    header,
    media,
    msrp_offer,
    read_msrp,
    send_msrp,
    tls_client,
)

HOST = "127.0.0.1"
UE_PATH = "msrps://127.0.0.1:50000/uesid77;tcp"


@contextlib.contextmanager
def attacker(kind: str, port: int, tmp_path: Path) -> Iterator[list[socket.socket]]:
    """Connections to the gateway's UE-side port that are not the UE; closed afterwards."""
    held: list[socket.socket] = []
    try:
        if kind in ("bare_tcp", "both"):
            # Connects and says nothing: on main this held the port until its timeout, then
            # ended the call.
            held.append(socket.create_connection((HOST, port), timeout=5))
        if kind in ("wrong_certificate", "both"):
            impostor = load_or_create(tmp_path / "impostor")
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                tls = tls_client(port, impostor)
                try:
                    tls.settimeout(5)
                    tls.sendall(b"MSRP x SEND\r\n")
                    if not tls.recv(100):  # TLS 1.3: the alert comes after our Finished
                        raise ConnectionError("closed by the gateway")
                finally:
                    tls.close()
        yield held
    finally:
        for s in held:
            s.close()


def msrp_e2ae_call(d: Daemon, ue: Any, core: Any, fp: str, call_id: str, core_port: int) -> Any:
    """UE INVITE (MSRP over TLS, e2ae), the core's 200, ACK both ways; the UE's 200."""
    invite(ue, d, msrp_offer(50000, fp, cema=True), call_id)
    inv = core.expect("INVITE")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=core_answer(core_port, cema=True))
    ok = ue.expect(200)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    return ok


@pytest.mark.parametrize("kind", ["wrong_certificate", "bare_tcp", "both"])
def test_attacker_first_on_the_msrp_port_does_not_end_the_call(
    peers: Any, tmp_path: Path, kind: str
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    cert = load_or_create(tmp_path / "ue")
    listener = socket.create_server((HOST, 0))
    listener.settimeout(5)
    core_port = listener.getsockname()[1]
    try:
        ok = msrp_e2ae_call(d, ue, core, cert.fingerprint.to_sdp(), f"msrp-sec-{kind}", core_port)
        agw_access_port, proto, attrs = media(ok.body)
        assert proto == "TCP/TLS/MSRP"
        with attacker(kind, agw_access_port, tmp_path):
            # The real UE connects while the attacker's connection is still open.
            tls = tls_client(agw_access_port, cert)
            tls.settimeout(5)
            try:
                msg = send_msrp(attrs["path"], UE_PATH)
                tls.sendall(msg)
                conn, _ = listener.accept()
                conn.settimeout(5)
                with conn:
                    assert read_msrp(conn, "tx1a2b") == msg  # CEMA: bytes unchanged
                    resp = (
                        f"MSRP tx1a2b 200 OK\r\nTo-Path: {header(msg, 'From-Path')}\r\n"
                        f"From-Path: {header(msg, 'To-Path')}\r\n-------tx1a2b$\r\n"
                    ).encode()
                    conn.sendall(resp)
                    assert read_msrp(tls, "tx1a2b") == resp
            finally:
                tls.close()
        st = d.stats()
        assert st["calls"]["teardown_bye"] == 0, st  # nobody was sent a BYE
        assert st["dialogs"] == 1 and st["agw_ports"] > 0, st
        # The dropped connection is logged with its address (and no key material).
        assert "connection from 127.0.0.1:" in d.log()
        ue_hangs_up(d, ue, core, ok)
        assert d.stats()["calls"]["teardown_bye"] == 0
        assert d.alive()
    finally:
        listener.close()


def answer_byes(peer: UdpPeer, port: int, n: int) -> set[str]:
    """Answer 200 to every BYE (retransmissions included) until `n` calls have had one."""
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while len(seen) < n:
        bye = peer.expect("BYE", timeout=max(0.1, deadline - time.monotonic()))
        peer.reply(bye, 200, "OK", port, to_tag="")
        seen.add(bye.call_id or "")
    return seen


def test_msrp_calls_whose_ue_never_connects_are_released(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = daemon_factory(agw={"tls_handshake_timeout_s": 1.0})
    ue, core = UdpPeer(), UdpPeer(d.next_hop_port)
    try:
        register(d, ue, core)
        cert = load_or_create(tmp_path / "ue")
        calls = [f"msrp-silent-{i}" for i in range(4)]
        for call_id in calls:
            msrp_e2ae_call(d, ue, core, cert.fingerprint.to_sdp(), call_id, 50100)
        st = d.stats()
        assert st["dialogs"] == len(calls) and st["agw_ports"] == 2 * len(calls), st
        # Nobody connects to any of the four MSRP ports: each call gets BYE both ways.
        assert answer_byes(ue, d.access_port, len(calls)) == set(calls)
        assert answer_byes(core, d.core_port, len(calls)) == set(calls)
        assert_released(d)
        assert d.stats()["calls"]["teardown_bye"] == 2 * len(calls)
        assert "no UE session within the handshake timeout: handshake_timeout" in d.log()
        assert d.alive()
    finally:
        ue.close()
        core.close()
