from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.calls_helpers import MediaPeer, RtpPeers
from tests.e2e.daemon import Daemon, make_daemon
from tests.e2e.redis_server import RedisServer
from tests.e2e.sipp_e2ae import UeMedia
from tests.e2e.sipua import UdpPeer

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[object]:
    """daemon_factory(**config_overrides) -> started Daemon; stopped (SIGTERM) after the test,
    which also asserts a clean shutdown."""
    started: list[Daemon] = []

    def factory(**overrides: object) -> Daemon:
        d = make_daemon(tmp_path, **overrides)
        d.start()
        started.append(d)
        return d

    yield factory
    for d in started:
        alive = d.alive()
        rc = d.stop()
        assert alive, f"daemon died during the test:\n{d.log()}"
        assert rc == 0, f"daemon did not shut down cleanly on SIGTERM (rc={rc}):\n{d.log()}"


@pytest.fixture
def daemon(daemon_factory: object) -> Daemon:
    return daemon_factory()  # type: ignore[operator, no-any-return]


@pytest.fixture(scope="session", autouse=True)
def _need_sipp() -> None:
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed: run `make test` (it installs Debian's sip-tester)")


@pytest.fixture
def peers(daemon: Daemon) -> Iterator[tuple[Daemon, UdpPeer, UdpPeer]]:
    """The daemon, a scripted UE on the access side and an S-CSCF stand-in on the next hop."""
    ue = UdpPeer()
    core = UdpPeer(daemon.next_hop_port)
    try:
        yield daemon, ue, core
    finally:
        ue.close()
        core.close()


@pytest.fixture
def ue_media() -> Iterator[UeMedia]:
    """The media peers of the SIPp e2ae tests: UE and core RTP sockets, the UE's keys, MSRP."""
    m = UeMedia.open()
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def rtp_peers() -> Iterator[RtpPeers]:
    """A UE and a core RTP socket on loopback (the Python-peer call tests), closed after."""
    ue_media, core_media = MediaPeer.bind(), MediaPeer.bind()
    try:
        yield ue_media, core_media
    finally:
        ue_media.close()
        core_media.close()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own on a free loopback port, stopped by PID after."""
    r = RedisServer(tmp_path / "redis")
    r.start()
    try:
        yield r
    finally:
        r.stop()
