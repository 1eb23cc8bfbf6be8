"""Issue 11 item 6 end to end: a flood of distinct unauthenticated REGISTERs over UDP against the
real daemon with a small `sip.max_transactions`. Beyond the cap each REGISTER gets a stateless
503 + Retry-After; the daemon's memory grows by a bounded amount; once the flood's transactions
have expired a legitimate UE registers normally."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from pcscf_alg.sip.message import parse_message
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer

CAP = 500
FLOOD = 4000
CHUNK = 50
# What one pending REGISTER costs the daemon (bench/bench_register_flood.py, tracemalloc:
# ~8 kB for the server and client transactions while the registrar has not answered, ~1.6 kB
# once answered), doubled for allocator overhead; plus fixed slack for the code paths the flood
# runs for the first time, pymalloc arenas and socket buffers. The flood without the cap holds
# FLOOD pending REGISTERs, ~40 MB: this bound fails on it.
PER_PENDING = 16 * 1024
SLACK = 12 * 2**20
RETRY_AFTER = 2


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _register(i: int, port: int) -> bytes:
    return (
        "REGISTER sip:ims.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKflood{i};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood{i}@ims.test>;tag=f{i}\r\nTo: <sip:flood{i}@ims.test>\r\n"
        f"Call-ID: flood-{i}@attacker\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:flood{i}@127.0.0.1:{port}>\r\n"
        "Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec\r\n"
        "Require: sec-agree\r\nProxy-Require: sec-agree\r\n"
        'Authorization: Digest username="flood@ims.test",realm="ims.test",nonce="",'
        'uri="sip:ims.test",response=""\r\n'
        "Expires: 600000\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _drain(peer: UdpPeer, quiet: float = 0.05) -> list[bytes]:
    """Everything already queued on `peer`, until `quiet` s pass without a datagram."""
    out: list[bytes] = []
    peer.sock.settimeout(quiet)
    while True:
        try:
            data, _ = peer.sock.recvfrom(65535)
        except TimeoutError:
            return out
        out.append(data)


def test_register_flood_is_capped_with_503_and_bounded_memory(daemon_factory: object) -> None:
    d: Daemon = daemon_factory(  # type: ignore[operator]
        sip={"max_transactions": CAP, "overload_retry_after_s": RETRY_AFTER, "t1": 0.1}
    )
    assert d.proc is not None
    pid = d.proc.pid
    attacker, registrar, ue = UdpPeer(), UdpPeer(d.next_hop_port), UdpPeer()
    try:
        for p in (attacker, registrar):
            p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
        base_kb = _status_kb(pid, "VmRSS")

        # The flood: the registrar stand-in stays silent meanwhile (the costliest case: every
        # forwarded REGISTER stays pending, retransmitted by Timer E).
        answers: list[bytes] = []
        forwarded: dict[bytes, bytes] = {}  # branch-free key (Call-ID line) -> request
        peak_txns = 0
        for start in range(0, FLOOD, CHUNK):
            for i in range(start, min(start + CHUNK, FLOOD)):
                attacker.send(_register(i, attacker.port), d.access_port)
            answers += _drain(attacker)
            for data in _drain(registrar, 0.01):
                call_id = next(ln for ln in data.split(b"\r\n") if ln.startswith(b"Call-ID"))
                forwarded.setdefault(call_id, data)
            peak_txns = max(peak_txns, d.stats()["transactions"]["access"])
        answers += _drain(attacker, 0.3)
        peak_kb = _status_kb(pid, "VmHWM")

        statuses = [a.split(b" ", 2)[1] for a in answers]
        n503 = statuses.count(b"503")
        assert n503 > 0, f"no 503 in {len(answers)} answers to {FLOOD} REGISTERs"
        assert all(b"\r\nRetry-After: 2\r\n" in a for a in answers if a.split(b" ")[1] == b"503")
        # Never more live server transactions on the access side than the cap.
        assert 0 < peak_txns <= CAP, peak_txns
        # What was not refused was forwarded: at most one slot per REGISTER.
        assert len(forwarded) + n503 <= FLOOD
        grown = (peak_kb - base_kb) * 1024
        bound = CAP * PER_PENDING + SLACK
        print(
            f"flood: {FLOOD} sent, {n503} x 503, {len(forwarded)} forwarded, peak "
            f"{peak_txns} transactions, RSS +{grown / 2**20:.1f} MiB (bound {bound / 2**20:.1f})"
        )
        assert grown < bound, f"RSS grew {grown} bytes, bound {bound}"

        # The registrar now challenges what it got: each pending REGISTER completes with 401.
        for data in forwarded.values():
            req = parse_message(data)
            registrar.reply(req, 401, "Unauthorized", d.core_port, extra=_challenge())
        # Every flood transaction ends (Timer J / Timer F, 64*T1): nothing left behind.
        st = d.wait_stats(
            lambda s: s["transactions"]["access"] == 0 and s["transactions"]["core"] == 0,
            timeout=60,
        )
        assert st["transactions"] == {"access": 0, "core": 0}, st["transactions"]

        # A legitimate UE registers normally now (honouring Retry-After if it still got a 503).
        got = _legit_register(d, ue, registrar)
        assert got == 200
        assert any(r.get("impu") == "sip:alice@ims.test" for r in d.registrations())
    finally:
        attacker.close()
        registrar.close()
        ue.close()


def _challenge() -> str:
    return 'WWW-Authenticate: Digest realm="ims.test",nonce="0123456789abcdef",algorithm=MD5'


def _legit_register(d: Daemon, ue: UdpPeer, registrar: UdpPeer) -> int:
    deadline = time.monotonic() + 30
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        ue.send(
            "REGISTER sip:ims.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-legit{attempt};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:alice@ims.test>;tag=a{attempt}\r\nTo: <sip:alice@ims.test>\r\n"
            f"Call-ID: legit@ue\r\nCSeq: {attempt} REGISTER\r\n"
            f"Contact: <sip:alice@127.0.0.1:{ue.port}>\r\n"
            "Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec\r\n"
            "Require: sec-agree\r\nProxy-Require: sec-agree\r\n"
            "Expires: 600\r\nContent-Length: 0\r\n\r\n",
            d.access_port,
        )
        # The registrar answers the legitimate REGISTER (skipping stray flood retransmissions).
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            try:
                msg, _ = registrar.recv(max(0.01, t_end - time.monotonic()))
            except TimeoutError:
                break
            if msg.method == "REGISTER" and msg.call_id == "legit@ue":
                registrar.reply(
                    msg,
                    200,
                    "OK",
                    d.core_port,
                    contact=f"sip:alice@127.0.0.1:{ue.port}>;expires=600;x=<",
                )
                break
        resp, _ = ue.recv(5)
        if resp.status == 503:
            time.sleep(float(resp.headers.get("retry-after") or RETRY_AFTER))
            continue
        return resp.status
    raise AssertionError("legitimate REGISTER not answered in time")
