"""Shared helpers for the AGW tests: loop runner, config, UDP peers, RTP packets, certificates."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pcscf_alg.agw import AgwConfig, AgwEvent, InProcessGateway
from pcscf_alg.agw.certs import GatewayCertificate, load_or_create
from pcscf_alg.mediaplan import SrtpKey

T = TypeVar("T")
TEST_TIMEOUT = 20.0  # whole-test bound inside the loop; each await below has its own shorter one
HOST = "127.0.0.1"


def run_async(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async test function in a fresh event loop, bounded in time."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(fn(*args, **kwargs), TEST_TIMEOUT)

        return asyncio.run(bounded())

    return wrapper


def port_base(offset: int) -> int:
    """Per-test-module port ranges, spread by pid so parallel runs rarely collide."""
    return 31000 + ((os.getpid() * 97 + offset * 400) % 8000)


def make_config(tmp_path: Path, offset: int = 0, **kw: Any) -> AgwConfig:
    base = port_base(offset)
    values: dict[str, Any] = {
        "access_host": HOST,
        "core_host": HOST,
        "rtp_ports": (base, base + 199),
        "msrp_ports": (base + 200, base + 399),
        "cert_dir": tmp_path / "agw",
        "media_timeout_s": 30.0,
        "tls_handshake_timeout_s": 3.0,
        "msrp_idle_timeout_s": 30.0,
    }
    values.update(kw)
    return AgwConfig(**values)


class Events:
    """Collects gateway events; `wait_for` polls for the first event matching a predicate."""

    def __init__(self) -> None:
        self.items: list[AgwEvent] = []

    def __call__(self, ev: AgwEvent) -> None:
        self.items.append(ev)

    async def wait_for(self, pred: Callable[[AgwEvent], bool], timeout: float = 3.0) -> AgwEvent:
        async def find() -> AgwEvent:
            while True:
                for ev in self.items:
                    if pred(ev):
                        return ev
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(find(), timeout)

    def of(self, cls: type) -> list[AgwEvent]:
        return [e for e in self.items if isinstance(e, cls)]


async def started_gateway(cfg: AgwConfig) -> tuple[InProcessGateway, Events]:
    gw = InProcessGateway(cfg)
    await gw.start()
    events = Events()
    gw.set_event_handler(events)
    return gw, events


class UdpPeer:
    def __init__(self, host: str = HOST) -> None:
        # `host`: another loopback address (127.0.0.2) plays a sender on a different IP.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))
        self.addr: tuple[str, int] = self.sock.getsockname()

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]]:
        # add_reader rather than loop.sock_recvfrom, which uvloop does not implement.
        try:
            return self.sock.recvfrom(4096)  # type: ignore[no-any-return]
        except BlockingIOError:
            pass
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            loop.remove_reader(fd)
        return self.sock.recvfrom(4096)  # type: ignore[no-any-return]

    async def nothing(self, wait: float = 0.3) -> bool:
        """True if nothing arrives within `wait` seconds."""
        try:
            await self.recv(wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def rtp(seq: int, payload: bytes = b"", ssrc: int = 0x11223344, pt: int = 0) -> bytes:
    payload = payload or bytes([seq & 0xFF]) * 160
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc) + payload


def rtcp_sr(ssrc: int = 0x11223344, count: int = 1) -> bytes:
    # RFC 3550 §6.4.1 SR without report blocks: 28 bytes, length field 6.
    body = struct.pack("!IIIII", 0xE0000000, count, count * 160, count, count * 172)
    return struct.pack("!BBHI", 0x80, 200, 6, ssrc) + body


def srtp_key(suite: str = "AES_CM_128_HMAC_SHA1_80", **kw: Any) -> SrtpKey:
    sizes = {
        "AES_CM_128_HMAC_SHA1_80": 30,
        "AES_CM_128_HMAC_SHA1_32": 30,
        "AEAD_AES_128_GCM": 28,
        "AEAD_AES_256_GCM": 44,
    }
    return SrtpKey(suite=suite, key_salt=secrets.token_bytes(sizes.get(suite, 30)), **kw)


def ue_certificate(tmp_path: Path, name: str = "ue") -> GatewayCertificate:
    """A self-signed EC certificate for a test UE (same generator as the gateway's)."""
    return load_or_create(tmp_path / name)


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def gather_bounded(*aws: Awaitable[Any], timeout: float = 5.0) -> list[Any]:
    return list(await asyncio.wait_for(asyncio.gather(*aws), timeout))
