"""Worker processes (issue 14 deliver 2): `sip.workers: 2` run as users run it (`pcscf-alg run`
as a real process), on a real `redis-server` (the shared registration store).

The peers behave as real SIP peers do, which is what the design rests on (README "Worker
processes"): initial requests go to the shared listeners, responses to the top Via, in-dialog
requests to the first Route, terminating requests along the Path the registrar got. Which
worker handled a message is read from what it named: its own ports in Path, Via and
Record-Route. UEs register from several source ports until the kernel has spread them over
both workers; calls run in both directions, including a terminating e2ae call handled by the
worker that did NOT register the UE; then a worker is SIGKILLed by its PID (from its admin
endpoint) and its replacement takes registrations and calls.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.sip.headers import NameAddr, SipUri, Via
from pcscf_alg.sip.message import SipMessage
from tests.e2e.calls_helpers import (
    BOTH,
    K11,
    PLAIN_ANSWER,
    MediaPeer,
    audio_offer,
    audio_port,
    b64,
    crypto_lines,
    in_dialog,
    invite,
    key_of,
    srtp_both_ways,
)
from tests.e2e.daemon import Daemon, make_daemon
from tests.e2e.redis_server import RedisServer
from tests.e2e.sipua import UdpPeer

K22 = "n4PXVAey9GM40ciT3rCNAml9dD+44rWjZl5NhUpF"
UE_ANSWER = f"""v=0
o=- 3 3 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {{port}} RTP/SAVP 96
a=rtpmap:96 AMR-WB/16000/1
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K22}
a=sendrecv
"""
# Enough fresh source ports that both workers get a UE (each lands on either with p = 1/2).
MAX_UES = 40


def free_run(n: int) -> int:
    """The first of `n` consecutive ports free for UDP and TCP on 127.0.0.1."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + n > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(first, first + n):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    t = socket.socket(socket.AF_INET, kind)
                    held.append(t)
                    t.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
    raise RuntimeError("no free port run")


@dataclass
class Workers:
    """The daemon with its workers' own ports and admin endpoints."""

    d: Daemon
    access_base: int
    core_base: int
    count: int = 2

    def admin(self, i: int, path: str) -> Any:
        import json

        url = f"http://127.0.0.1:{self.d.admin_port + i}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def pid(self, i: int) -> int:
        return int(self.admin(i, "/stats")["process"]["pid"])

    def by_core_port(self, port: int) -> int:
        """The worker whose own core port this is."""
        i = port - self.core_base
        assert 0 <= i < self.count, f"{port} is no worker's own core port"
        return i

    def by_access_port(self, port: int) -> int:
        i = port - self.access_base
        assert 0 <= i < self.count, f"{port} is no worker's own access port"
        return i

    def wait(self, pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if pred():
                    return
            except OSError:
                pass  # an admin endpoint between a worker's death and its replacement
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.d.log()}")
            time.sleep(0.05)

    def released(self) -> None:
        """No worker holds a dialog or a gateway port (release is asynchronous)."""

        def clean() -> bool:
            return all(
                (st["agw_ports"], st["dialogs"]) == (0, 0)
                for st in (self.admin(i, "/stats") for i in range(self.count))
            )

        self.wait(clean, "every worker to release its calls")


@pytest.fixture
def workers(tmp_path: Path, redis: RedisServer) -> Iterator[Workers]:
    access_base, core_base, admin = free_run(2), free_run(2), free_run(2)
    d = make_daemon(
        tmp_path,
        sip={"workers": 2, "worker_ports": {"access": access_base, "core": core_base}},
        registration={
            "require_for_originating": True,
            "sweep_interval_s": 0.5,
            "store": {"backend": "redis", "url": redis.url},
        },
        agw={
            "access_host": "127.0.0.1",
            "core_host": "127.0.0.1",
            "cert_dir": str(tmp_path / "agw"),
            "rtp_ports": [31000, 31999],
            "msrp_ports": [41000, 41099],
        },
    )
    d.admin_port = admin
    d.config["admin"]["port"] = admin
    d.start(timeout=60)
    try:
        yield Workers(d, access_base, core_base)
    finally:
        alive = d.alive()
        rc = d.stop()
        assert alive, f"the supervisor died during the test:\n{d.log()}"
        assert rc == 0, f"no clean shutdown on SIGTERM (rc={rc}):\n{d.log()}"


# ------------------------------------------------------------------------------ SIP peers
def via_port(msg: SipMessage) -> int:
    """Where a response to `msg` goes (RFC 3261 §18.2.2): the top Via's sent-by port."""
    top = msg.headers.first_value("via")
    assert top is not None
    port = Via.parse(top).port
    assert port is not None
    return port


def route_port(uris: list[str]) -> int:
    """Where an in-dialog request goes: its first Route (RFC 3261 §12.2.1.1, loose routing)."""
    return SipUri.parse(NameAddr.parse(uris[0]).uri).port or 5060


def expect_from(peer: UdpPeer, what: str | int, timeout: float = 5.0) -> tuple[SipMessage, int]:
    """Like UdpPeer.expect, with the source port of what arrived."""
    deadline = time.monotonic() + timeout
    while True:
        msg, addr = peer.recv(max(0.01, deadline - time.monotonic()))
        if (isinstance(what, int) and msg.status == what) or msg.method == what:
            return msg, addr[1]


def register(w: Workers, ue: UdpPeer, core: UdpPeer, user: str) -> int:
    """REGISTER through the shared access port; the registrar answers to the Via. Returns the
    worker that handled it: the one whose own core port its Path names."""
    d = w.d
    ue.send(
        f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-reg{time.monotonic_ns()};rport
Max-Forwards: 70
From: <sip:{user}@ims.test>;tag=r{ue.port}
To: <sip:{user}@ims.test>
Call-ID: reg-{ue.port}@test
CSeq: 1 REGISTER
Contact: <sip:{user}@127.0.0.1:{ue.port}>
Require: sec-agree
Proxy-Require: sec-agree
Security-Client: {BOTH}
Expires: 600
""",
        d.access_port,
    )
    r, src = expect_from(core, "REGISTER")
    path = r.headers.first_value("path")
    assert path is not None, r
    worker = w.by_core_port(SipUri.parse(NameAddr.parse(path).uri).port or 0)
    # Sent from the worker's own core port, which its Via names too.
    assert src == via_port(r) == w.core_base + worker
    core.reply(
        r, 200, "OK", via_port(r), contact=f"sip:{user}@127.0.0.1:{ue.port}>;expires=600;x=<"
    )
    _, src = expect_from(ue, 200)
    # The response leaves from the socket the REGISTER arrived on: the shared access port.
    assert src == d.access_port
    return worker


def registered_everywhere(w: Workers, users: list[str]) -> bool:
    for i in range(w.count):
        have = {b["impu"] for b in w.admin(i, "/registrations")}
        if not {f"sip:{u}@ims.test" for u in users} <= have:
            return False
    return True


def originating_e2ae_call(
    w: Workers, ue: UdpPeer, core: UdpPeer, call_id: str, media: tuple[MediaPeer, MediaPeer]
) -> int:
    """A UE's e2ae call to the core through the shared access port: SRTP (K11) from the UE
    reaches the core as RTP and back; the UE hangs up. Returns the worker that carried it."""
    d = w.d
    ue_media, core_media = media
    invite(ue, d, audio_offer(ue_media.port), call_id)
    inv, src = expect_from(core, "INVITE")
    worker = w.by_core_port(src)
    assert via_port(inv) == src
    _, agw_core, proto = audio_port(inv.body)
    assert proto == "RTP/AVP" and b"a=crypto" not in inv.body, inv.body
    core.reply(inv, 200, "OK", via_port(inv), body=PLAIN_ANSWER.format(port=core_media.port))
    ok = ue.expect(200)
    _, agw_access, proto = audio_port(ok.body)
    assert proto == "RTP/SAVP", ok.body
    (line,) = crypto_lines(ok.body)
    routes = list(reversed(ok.headers.values("record-route")))
    # The UE's route set starts at the worker's own access port.
    assert w.by_access_port(route_port(routes)) == worker
    in_dialog(ue, ok, "ACK", 1, route_port(routes), uac=True)
    core.expect("ACK")
    srtp_both_ways(
        ue_media,
        core_media,
        agw_access=agw_access,
        agw_core=agw_core,
        from_ue=("AES_CM_128_HMAC_SHA1_80", b64(K11)),
        to_ue=key_of(line),
        seq=11,
    )
    in_dialog(ue, ok, "BYE", 2, route_port(routes), uac=True)
    bye = core.expect("BYE")
    core.reply(bye, 200, "OK", via_port(bye), to_tag="")
    ue.expect(200)
    return worker


def terminating_e2ae_call(
    w: Workers,
    ue: UdpPeer,
    user: str,
    icscf: UdpPeer,
    to_port: int,
    call_id: str,
    media: tuple[MediaPeer, MediaPeer],
    route: str = "",
) -> int:
    """The core sends a plain-RTP INVITE to `to_port` (a worker's own core port from the
    UE's Path, or the shared core port); the UE gets the e2ae offer (TS 33.328 7.3.1 step 4)
    from the shared access port, answers with SRTP (K22); media both ways; the core hangs
    up. Returns the worker that carried it."""
    d = w.d
    ue_media, core_media = media
    route_hdr = f"Route: {route}\n" if route else ""
    icscf.send(
        f"""INVITE sip:{user}@127.0.0.1:{ue.port} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{icscf.port};branch=z9hG4bK-{call_id}-t1;rport
Max-Forwards: 70
{route_hdr}From: <sip:carol@other.test>;tag=c-{call_id}
To: <sip:{user}@ims.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:carol@127.0.0.1:{icscf.port}>
Content-Type: application/sdp

{PLAIN_ANSWER.format(port=core_media.port)}""",
        to_port,
    )
    inv, src = expect_from(ue, "INVITE")
    # Towards the UE: from the shared access port, the address it registered with.
    assert src == d.access_port
    worker = w.by_access_port(via_port(inv))
    _, agw_access, proto = audio_port(inv.body)
    assert proto == "RTP/SAVP" and b"a=3ge2ae:applied" in inv.body, inv.body
    suite, k21 = key_of(crypto_lines(inv.body)[0])
    ue.reply(inv, 200, "OK", via_port(inv), to_tag="u1", body=UE_ANSWER.format(port=ue_media.port))
    ok, src = expect_from(icscf, 200)
    # From the socket the INVITE arrived on (RFC 3581 §4): shared or the worker's own.
    assert src == to_port
    _, agw_core, proto = audio_port(ok.body)
    assert proto == "RTP/AVP" and b"a=crypto" not in ok.body, ok.body
    routes = list(reversed(ok.headers.values("record-route")))
    assert w.by_core_port(route_port(routes)) == worker
    in_dialog(icscf, ok, "ACK", 1, route_port(routes), uac=True, branch=call_id)
    ue.expect("ACK")
    srtp_both_ways(
        ue_media,
        core_media,
        agw_access=agw_access,
        agw_core=agw_core,
        from_ue=("AES_CM_128_HMAC_SHA1_80", b64(K22)),
        to_ue=(suite, k21),
        seq=21,
    )
    in_dialog(icscf, ok, "BYE", 2, route_port(routes), uac=True, branch=call_id)
    bye = ue.expect("BYE")
    ue.reply(bye, 200, "OK", via_port(bye), to_tag="")
    icscf.expect(200)
    return worker


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`pcscf-alg ARGS` as the operator runs it (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "pcscf_alg", *args], capture_output=True, text=True, timeout=60
    )


def path_route(w: Workers, worker: int) -> str:
    """The Route the S-CSCF puts on a terminating request: the Path of the registration."""
    return f"<sip:term@127.0.0.1:{w.core_base + worker};lr>"


# ------------------------------------------------------------------------------ the test
def test_two_workers_share_the_load_and_survive_a_killed_worker(workers: Workers) -> None:
    w = workers
    d = w.d
    pids = [w.pid(0), w.pid(1)]
    assert len(set(pids)) == 2 and d.proc is not None and d.proc.pid not in pids
    core = UdpPeer(d.next_hop_port)
    ues: list[tuple[UdpPeer, str, int]] = []
    opened: list[UdpPeer | MediaPeer] = [core]
    try:
        # -- registrations from several source ports, until both workers have some
        n = 0
        while {i for _, _, i in ues} != {0, 1}:
            assert n < MAX_UES, f"{MAX_UES} UEs and the kernel never used both workers"
            ue = UdpPeer()
            opened.append(ue)
            user = f"ue{n}"
            ues.append((ue, user, register(w, ue, core, user)))
            n += 1
        w.wait(lambda: registered_everywhere(w, [u for _, u, _ in ues]), "shared bindings")
        ue_a, user_a, _ = next(u for u in ues if u[2] == 0)
        ue_b, user_b, _ = next(u for u in ues if u[2] == 1)
        media = (MediaPeer.bind(), MediaPeer.bind())
        opened += list(media)

        # -- originating e2ae calls from a UE of each worker
        for ue, _, _ in ((ue_a, user_a, 0), (ue_b, user_b, 1)):
            originating_e2ae_call(w, ue, core, f"orig-{ue.port}", media)
        w.released()

        # -- terminating e2ae call along the Path: the worker that registered the UE
        icscf = UdpPeer()
        opened.append(icscf)
        got = terminating_e2ae_call(
            w, ue_b, user_b, icscf, w.core_base + 1, "term-path", media, path_route(w, 1)
        )
        assert got == 1
        w.released()

        # -- terminating e2ae call to the shared core port, landing on the OTHER worker (0)
        # than the one that registered ue_b (1): it finds the binding and its e2ae flags in
        # the shared store. The kernel picks the worker by the sender's address: try senders.
        other = None
        for attempt in range(MAX_UES):
            sender = UdpPeer()
            opened.append(sender)
            shared = f"<sip:term@127.0.0.1:{d.core_port};lr>"
            got = terminating_e2ae_call(
                w, ue_b, user_b, sender, d.core_port, f"term-shared-{attempt}", media, shared
            )
            w.released()
            if got == 0:
                other = got
                break
        assert other == 0, "no sender's INVITE to the shared core port reached worker 0"

        # -- SIGKILL worker 1 by its PID; the supervisor starts a replacement
        os.kill(pids[1], signal.SIGKILL)
        w.wait(lambda: w.pid(1) != pids[1], "the replacement of worker 1", timeout=30)
        assert w.pid(0) == pids[0]
        assert f"worker 1 (pid {pids[1]}) died (killed by signal 9)" in d.log()
        assert d.alive()

        # ue_b, registered through worker 1 before it died: the replacement (same own ports,
        # the same Path) reaches it, with its e2ae flags, from the shared store.
        got = terminating_e2ae_call(
            w, ue_b, user_b, icscf, w.core_base + 1, "term-after-kill", media, path_route(w, 1)
        )
        assert got == 1
        # New registrations reach the replacement too (again: until the kernel picks it).
        fresh: list[tuple[UdpPeer, str]] = []
        for m in range(MAX_UES):
            ue = UdpPeer()
            opened.append(ue)
            user = f"new{m}"
            fresh.append((ue, user))
            if register(w, ue, core, user) == 1:
                break
        else:
            raise AssertionError("no new registration reached the replacement worker")
        ue_new, user_new = fresh[-1]
        w.wait(lambda: registered_everywhere(w, [user_new]), "the new binding everywhere")
        # ... and it calls, and is called, through it.
        originating_e2ae_call(w, ue_new, core, "orig-after-kill", media)
        got = terminating_e2ae_call(
            w, ue_new, user_new, icscf, w.core_base + 1, "term-new", media, path_route(w, 1)
        )
        assert got == 1
        w.released()

        # -- the operator's tools see every worker: status lists the shared bindings, reload
        # reaches each worker (README "Worker processes")
        n_bindings = len(ues) + len(fresh)
        status = run_cli("status", "--admin", f"http://127.0.0.1:{d.admin_port + 1}")
        assert status.returncode == 0, status.stderr
        assert f"Bindings: {n_bindings}" in status.stdout, status.stdout
        reload = run_cli("reload", "--admin", f"http://127.0.0.1:{d.admin_port}")
        assert reload.returncode == 0, reload.stderr
        assert reload.stdout.count("reloaded") == 2, reload.stdout
        w.wait(lambda: all(w.admin(i, "/stats")["reloads"]["ok"] == 1 for i in (0, 1)), "reloads")
    finally:
        for s in opened:
            s.close()


def test_a_tcp_ue_stays_with_the_worker_that_holds_its_connection(workers: Workers) -> None:
    """A UE over TCP: its connection to the shared access port lands on one worker, whose
    Path and Record-Route name its own ports; a terminating request along that Path reaches
    the UE over the same connection, and the UE's response goes back over it."""
    from tests.e2e.test_calls_tcp import TcpUe

    w = workers
    d = w.d
    with UdpPeer(d.next_hop_port) as core, UdpPeer() as icscf:
        ue = TcpUe(d.access_port)
        try:
            ue.send(f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:{ue.port};branch=z9hG4bK-tcpreg
Max-Forwards: 70
From: <sip:tina@ims.test>;tag=t1
To: <sip:tina@ims.test>
Call-ID: tcpreg@test
CSeq: 1 REGISTER
Contact: <sip:tina@127.0.0.1:{ue.port};transport=tcp>
Security-Client: sdes-srtp;mediasec
Expires: 600
""")
            r = core.expect("REGISTER")
            path = r.headers.first_value("path")
            assert path is not None
            worker = w.by_core_port(SipUri.parse(NameAddr.parse(path).uri).port or 0)
            contact = f"sip:tina@127.0.0.1:{ue.port};transport=tcp"
            core.reply(r, 200, "OK", via_port(r), contact=f"{contact}>;expires=600;x=<")
            ue.expect(200)
            w.wait(lambda: registered_everywhere(w, ["tina"]), "the TCP binding everywhere")
            icscf.send(
                f"""INVITE {contact} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{icscf.port};branch=z9hG4bK-tcp-term;rport
Max-Forwards: 70
Route: {path_route(w, worker)}
From: <sip:carol@other.test>;tag=c-tcp
To: <sip:tina@ims.test>
Call-ID: tcp-term@test
CSeq: 1 INVITE
Contact: <sip:carol@127.0.0.1:{icscf.port}>
Content-Type: application/sdp

{PLAIN_ANSWER.format(port=40500)}""",
                w.core_base + worker,
            )
            inv = ue.expect("INVITE")
            assert w.by_access_port(via_port(inv)) == worker
            assert Via.parse(inv.headers.first_value("via") or "").transport == "TCP"
            ue.send(
                "\n".join(
                    [
                        "SIP/2.0 486 Busy Here",
                        *[f"Via: {v}" for v in inv.headers.values("via")],
                        f"From: {inv.headers.get('from')}",
                        f"To: {inv.headers.get('to')};tag=u1",
                        "Call-ID: tcp-term@test",
                        "CSeq: 1 INVITE",
                    ]
                )
            )
            icscf.expect(486)
            w.released()
        finally:
            ue.sock.close()
