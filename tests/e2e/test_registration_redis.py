"""Registrations on Redis (issue 14 deliver 1), against a real redis-server started per test on a
free loopback port: bindings survive a daemon restart (and their e2ae flags still apply), two
daemons share one Redis, a Redis outage is served from the cache with REGISTERs refused 503 and
recovers without a restart, expiry holds across restarts; and the sync task in process (other
daemons' changes, malformed pub/sub messages, resynchronisation)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.config import RegistrationStoreConfig
from pcscf_alg.registration import Binding, E2aeIndication, Flow
from pcscf_alg.registration_redis import RedisRegistrationStore, RedisSync
from tests.e2e.calls_helpers import (
    assert_released,
    audio_port,
    crypto_lines,
    in_dialog,
    register,
)
from tests.e2e.daemon import Daemon, make_daemon
from tests.e2e.redis_server import RedisServer
from tests.e2e.sipua import UdpPeer

K22 = "n4PXVAey9GM40ciT3rCNAml9dD+44rWjZl5NhUpF"
PREFIX = "pcscf-alg:b:"


@pytest.fixture
def daemons(tmp_path: Path, redis: RedisServer) -> Iterator[Callable[..., Daemon]]:
    """start(name, like=None) -> a daemon on `redis` (`like`: the ports and config of an earlier
    one, i.e. a restart). Each is stopped after the test, which checks a clean shutdown."""
    started: list[Daemon] = []

    def start(name: str, like: Daemon | None = None, **store: Any) -> Daemon:
        workdir = tmp_path / name
        workdir.mkdir()
        if like is not None:
            d = Daemon(
                like.access_port,
                like.core_port,
                like.next_hop_port,
                like.admin_port,
                workdir,
                like.config,
            )
        else:
            d = make_daemon(
                workdir,
                registration={
                    "require_for_originating": False,
                    "sweep_interval_s": 0.2,
                    "store": {
                        "backend": "redis",
                        "url": redis.url,
                        "reconnect_max_s": 0.5,
                        "timeout_s": 1.0,
                        **store,
                    },
                },
            )
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc is None or d.proc.returncode is not None:
            continue  # stopped by the test already
        alive = d.alive()
        rc = d.stop()
        assert alive, f"daemon died during the test:\n{d.log()}"
        assert rc == 0, f"daemon did not shut down cleanly (rc={rc}):\n{d.log()}"


def wait_for(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def core_invite(core: UdpPeer, d: Daemon, ue: UdpPeer, call_id: str, user: str = "alice") -> None:
    """The S-CSCF sends a terminating INVITE with a plain RTP offer to the UE's contact."""
    core.send(
        f"""INVITE sip:{user}@127.0.0.1:{ue.port} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{core.port};branch=z9hG4bK-{call_id}-t1;rport
Max-Forwards: 70
Route: <sip:term@127.0.0.1:{d.core_port};lr>
From: <sip:carol@other.test>;tag=c-{call_id}
To: <sip:{user}@ims.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:carol@127.0.0.1:{core.port}>
Content-Type: application/sdp

v=0
o=- 2 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40000 RTP/AVP 96
a=rtpmap:96 AMR-WB/16000/1
a=sendrecv
""",
        d.core_port,
    )


def terminating_e2ae_call(d: Daemon, ue: UdpPeer, core: UdpPeer, call_id: str) -> None:
    """A terminating call reaches the UE as e2ae (TS 33.328 7.3.1 step 4: RTP/SAVP, our
    a=crypto, a=3ge2ae:applied), is answered, ACKed and hung up; nothing is left behind."""
    core_invite(core, d, ue, call_id)
    inv = ue.expect("INVITE")
    _, _, proto = audio_port(inv.body)
    assert proto == "RTP/SAVP", inv.body
    assert b"a=3ge2ae:applied" in inv.body, inv.body
    assert crypto_lines(inv.body), inv.body
    answer = f"""v=0
o=- 3 3 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 49200 RTP/SAVP 96
a=rtpmap:96 AMR-WB/16000/1
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K22}
a=sendrecv
"""
    ue.reply(inv, 200, "OK", d.access_port, to_tag="u1", body=answer)
    ok = core.expect(200)
    assert audio_port(ok.body)[2] == "RTP/AVP" and b"a=crypto" not in ok.body
    in_dialog(core, ok, "ACK", 1, d.core_port, uac=True, branch=call_id)
    ue.expect("ACK")
    # the core hangs up (a branch of this call's own: a test may make several calls)
    in_dialog(core, ok, "BYE", 2, d.core_port, uac=True, branch=call_id)
    ue.reply(ue.expect("BYE"), 200, "OK", d.access_port, to_tag="")
    core.expect(200)
    assert_released(d)


def send_register(d: Daemon, ue: UdpPeer, user: str) -> None:
    ue.send(
        f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{ue.port};branch=z9hG4bK-reg{time.monotonic_ns()};rport
Max-Forwards: 70
From: <sip:{user}@ims.test>;tag=r{ue.port}
To: <sip:{user}@ims.test>
Call-ID: reg-{ue.port}@test
CSeq: 1 REGISTER
Contact: <sip:{user}@127.0.0.1:{ue.port}>
Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec
Expires: 600
""",
        d.access_port,
    )


def store(d: Daemon) -> dict[str, Any]:
    st: dict[str, Any] = d.stats()["store"]
    return st


# ------------------------------------------------------------------------------ the daemon


def test_registrations_survive_a_daemon_restart_with_their_e2ae_flags(
    daemons: Callable[..., Daemon], redis: RedisServer
) -> None:
    d1 = daemons("first")
    with UdpPeer() as ue, UdpPeer(d1.next_hop_port) as core:
        register(d1, ue, core)  # sdes-srtp;mediasec and msrp-tls;mediasec
        wait_for(lambda: len(redis.keys(PREFIX + "*")) == 1, "the binding in Redis")
        before = d1.registrations()
        assert d1.stop() == 0
        d2 = daemons("second", like=d1)  # a new process: a new loop clock, an empty cache
        (b,) = d2.registrations()
        (was,) = before
        for k in ("impu", "contact", "flow", "path", "service_route", "other_mediasec"):
            assert b[k] == was[k], k
        assert b["e2ae"] == {"rtp": True, "msrp": True} and b["ue_rtp"] and b["net_msrp"]
        assert 0 < b["expires_in"] <= 600
        assert store(d2)["loaded"] == 1 and store(d2)["connected"] == 1
        # the e2ae flags still apply: the terminating offer to the UE is e2ae
        terminating_e2ae_call(d2, ue, core, "after-restart-1")


def test_two_daemons_on_one_redis_see_each_others_bindings(
    daemons: Callable[..., Daemon], redis: RedisServer
) -> None:
    a, b = daemons("a"), daemons("b")
    with UdpPeer() as ue, UdpPeer() as ue2, UdpPeer(a.next_hop_port) as core_a:
        register(a, ue, core_a)
        wait_for(lambda: len(b.registrations()) == 1, "A's binding at B")
        (seen,) = b.registrations()
        assert seen["impu"] == "sip:alice@ims.test" and seen["e2ae"]["rtp"]
        assert seen["calls"] == []  # call_ids stay local
        with UdpPeer(b.next_hop_port) as core_b:
            # B routes a terminating call to the UE that registered through A, as e2ae
            terminating_e2ae_call(b, ue, core_b, "via-b-1")
            register(b, ue2, core_b, user="bob")
        wait_for(lambda: len(a.registrations()) == 2, "B's binding at A")
        # a de-registration at A disappears at B
        register(a, ue, core_a, expires=0)
        wait_for(lambda: [r["impu"] for r in b.registrations()] == ["sip:bob@ims.test"], "removal")
        assert redis.keys(PREFIX + "*") == [
            f"{PREFIX}sip:bob@ims.test|sip:bob@127.0.0.1:{ue2.port};transport=udp"
        ]
        assert store(a)["remote_applied"] >= 1 and store(b)["remote_applied"] >= 2


def test_a_redis_outage_is_served_from_the_cache_and_recovers_without_a_restart(
    daemons: Callable[..., Daemon], redis: RedisServer
) -> None:
    d = daemons("d")
    with UdpPeer() as ue, UdpPeer() as ue2, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        wait_for(lambda: len(redis.keys(PREFIX + "*")) == 1, "the binding in Redis")
        redis.stop()  # by PID; no persistence: it comes back empty
        wait_for(lambda: store(d)["connected"] == 0, "the daemon to notice")
        # a new REGISTER is refused: 503 + Retry-After + Warning, nothing goes to the core
        send_register(d, ue2, "bob")
        refused = ue2.expect(503)
        assert refused.headers.get("retry-after") == "10"
        assert "registration store unavailable" in (refused.headers.get("warning") or "")
        with pytest.raises(TimeoutError):
            core.expect("REGISTER", timeout=0.5)
        # calls to a UE registered before go on, from the cache
        terminating_e2ae_call(d, ue, core, "during-outage-1")
        # the same redis-server comes back on its port, empty: no daemon restart
        redis.start()
        wait_for(lambda: store(d)["connected"] == 1, "the reconnection")
        # the binding Redis lost is written back, and REGISTERs work again
        wait_for(lambda: len(redis.keys(PREFIX + "*")) == 1, "the binding pushed back")
        assert store(d)["pushed"] == 1 and store(d)["failures"] >= 1
        register(d, ue2, core, user="bob")
        wait_for(lambda: len(redis.keys(PREFIX + "*")) == 2, "the new binding in Redis")
        assert len(d.registrations()) == 2
        terminating_e2ae_call(d, ue, core, "after-outage-1")


def test_a_daemon_starts_without_redis_and_catches_up_when_it_comes(
    daemons: Callable[..., Daemon], redis: RedisServer
) -> None:
    redis.stop()
    d = daemons("d", start_timeout_s=0.5)  # starts anyway, empty, and keeps trying
    assert "not reachable within 0.5 s" in d.log()
    assert store(d)["connected"] == 0
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{d.admin_port}/metrics", timeout=5)
    assert "pcscf_alg_store_connected 0.0" in metrics.read().decode()
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        send_register(d, ue, "alice")
        assert ue.expect(503).headers.get("retry-after") == "10"
        redis.start()
        wait_for(lambda: store(d)["connected"] == 1, "the connection")
        register(d, ue, core)
        wait_for(lambda: len(redis.keys(PREFIX + "*")) == 1, "the binding in Redis")
    text = urllib.request.urlopen(f"http://127.0.0.1:{d.admin_port}/metrics", timeout=5)
    body = text.read().decode()
    assert "pcscf_alg_store_connected 1.0" in body and "pcscf_alg_store_writes_total 1.0" in body


def test_expiry_holds_across_a_restart(daemons: Callable[..., Daemon], redis: RedisServer) -> None:
    d1 = daemons("first")
    with UdpPeer() as ue, UdpPeer(d1.next_hop_port) as core:
        register(d1, ue, core, expires=6)
        (key,) = redis.keys(PREFIX + "*")
        with redis.client() as c:
            assert 0 < c.pttl(key) <= 6000  # Redis expires the key at the binding's expiry
        assert d1.stop() == 0
        d2 = daemons("second", like=d1)
        regs = d2.registrations()
        # the time left carried over on the wall clock, not restarted at 6 s
        assert all(r["expires_in"] <= 6 for r in regs), regs
        wait_for(lambda: d2.registrations() == [], "expiry at the new daemon", timeout=15)
        wait_for(lambda: redis.keys(PREFIX + "*") == [], "expiry in Redis", timeout=15)
        send_register(d2, ue, "alice")  # and the store still takes new registrations
        core.expect("REGISTER")


# ------------------------------------------------------------------------- the task, in process


def _binding(port: int, now: float, expires: float = 60.0) -> Binding:
    return Binding(
        impu=f"sip:u{port}@ims.test",
        contact=f"sip:u{port}@127.0.0.1:{port}",
        flow=Flow("udp", "127.0.0.1", port),
        flags=E2aeIndication(True, False, True, True),
        expires_at=now + expires,
        registered_at=now,
    )


async def _until(pred: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_sync_tasks_share_changes_and_drop_malformed_messages(redis: RedisServer) -> None:
    cfg = RegistrationStoreConfig(backend="redis", url=redis.url, timeout_s=1.0)

    async def scenario() -> None:
        a, b = RedisRegistrationStore(), RedisRegistrationStore()
        sa, sb = RedisSync(a, cfg), RedisSync(b, cfg)
        assert await sa.start() and await sb.start()
        try:
            now = asyncio.get_running_loop().time()
            a.upsert(_binding(5000, now))
            await _until(lambda: len(b) == 1, "the set at B")
            got = b.by_flow(Flow("udp", "127.0.0.1", 5000))
            want = _binding(5000, now)
            assert got is not None and (got.impu, got.contact, got.flags) == (
                want.impu,
                want.contact,
                want.flags,
            )
            assert got.expires_at == pytest.approx(want.expires_at, abs=0.01)
            # whoever can publish on the channel is heard: malformed messages are dropped, counted
            with redis.client() as c:
                for junk in (b"x", b"{}", json.dumps({"v": 1, "n": "z", "op": "set", "b": {}})):
                    c.publish("pcscf-alg:events", junk)
                c.publish("pcscf-alg:events", b"[" * 200_000)
            await _until(lambda: b.counters.remote_rejected == 4, "the rejections")
            assert len(b) == 1 and b.writable()
            b.remove("sip:u5000@ims.test", "sip:u5000@127.0.0.1:5000")
            await _until(lambda: len(a) == 0, "the del at A")
            assert a.counters.writes == 1 and b.counters.writes == 1
        finally:
            await sa.stop()
            await sb.stop()

    asyncio.run(scenario())


def test_a_resync_with_the_same_redis_drops_what_others_removed_meanwhile(
    redis: RedisServer,
) -> None:
    cfg = RegistrationStoreConfig(
        backend="redis", url=redis.url, timeout_s=1.0, reconnect_max_s=0.2
    )

    async def scenario() -> None:
        s = RedisRegistrationStore()
        sync = RedisSync(s, cfg)
        assert await sync.start()
        try:
            now = asyncio.get_running_loop().time()
            s.upsert(_binding(5000, now))
            s.upsert(_binding(6000, now))
            await _until(lambda: not s.outbox and s.counters.writes == 2, "the writes")
            with redis.client() as c:
                # someone removes one binding without a message reaching us; then our
                # connection drops (killed) and we resynchronise with the same instance
                (k,) = list(c.scan_iter(match=PREFIX + "*6000*"))
                c.delete(k)
                c.client_kill_filter(_type="pubsub")
            await _until(lambda: s.counters.resyncs >= 2, "the resync")
            await _until(lambda: len(s) == 1, "the removal applied")
            assert s.by_flow(Flow("udp", "127.0.0.1", 5000)) is not None
            assert s.counters.pushed == 0  # the same instance: nothing pushed back
        finally:
            await sync.stop()

    asyncio.run(scenario())
