"""The daemon: wires config, transports, the proxy core, registrations and the gateway.

The asyncio edge in the aioquic manner (DESIGN.md): each received message goes to
`Pcscf.receive(..., now=loop.time())`; the core's single next deadline (`get_timer()`) is kept
armed on the loop, and its callback calls `handle_timer(now)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from pcscf_alg import _accel
from pcscf_alg.alg import Pcscf
from pcscf_alg.config import Config
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore, RegistrationStore
from pcscf_alg.sip.transaction import Peer
from pcscf_alg.transport import SideTransport

log = logging.getLogger(__name__)


class App:
    def __init__(self, cfg: Config, registrations: RegistrationStore | None = None) -> None:
        self.cfg = cfg
        self.registrations = registrations or InMemoryRegistrationStore()
        self.pcscf = Pcscf(cfg, self.registrations, self._send)
        self.transports: dict[Side, SideTransport] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.gateway: Any = None
        self.admin: Any = None
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.cfg.sip
        await self._start_media()
        for side, lst in ((Side.ACCESS, s.access), (Side.CORE, s.core)):
            t = SideTransport(
                side.value,
                lst.host,
                lst.port,
                self._handler(side),
                udp=s.udp,
                tcp=s.tcp,
                idle_timeout=s.tcp_idle_timeout_s,
                on_send_failure=self._failure_handler(side),
            )
            await t.start()
            self.transports[side] = t
        self._tasks.append(loop.create_task(self._sweep_registrations()))
        if self.cfg.admin.enabled:
            from pcscf_alg.admin import AdminServer

            self.admin = AdminServer(self, self.cfg.admin.host, self.cfg.admin.port)
            await self.admin.start()
        compiled = len(_accel.active())
        log.info(
            "pcscf-alg up: access %s:%d, core %s:%d (%s), next hop %s; SIP/SDP/e2ae core %s",
            s.access.host,
            s.access.port,
            s.core.host,
            s.core.port,
            "+".join(t for t, on in (("udp", s.udp), ("tcp", s.tcp)) if on),
            s.next_hop,
            "compiled (mypyc)" if compiled == len(_accel.MODULES) else "pure Python",
        )

    async def _start_media(self) -> None:
        """Start the in-process IMS-AGW and the call layer (e2ae), when they are available."""
        try:
            from pcscf_alg.calls import setup_calls
        except ImportError:
            return
        self.gateway = await setup_calls(self)

    # ---- IO glue ----
    def _handler(self, side: Side):  # type: ignore[no-untyped-def]
        pcscf = self.pcscf
        loop = asyncio.get_running_loop()

        def on_message(
            data: bytes, transport: str, host: str, port: int, conn_id: int | None
        ) -> None:
            pcscf.receive(data, side, Peer(transport, host, port, conn_id), loop.time())
            self.arm_timer()

        return on_message

    def _failure_handler(self, side: Side):  # type: ignore[no-untyped-def]
        def on_failure(transport: str, host: str, port: int) -> None:
            self.pcscf.transport_failure(side, transport, host, port)
            self.arm_timer()

        return on_failure

    def _send(self, side: Side, data: bytes, peer: Peer) -> None:
        t = self.transports.get(side)
        if t is None:
            return
        t.send(data, peer.transport, peer.host, peer.port, peer.conn_id)

    def arm_timer(self) -> None:
        """Keep one loop timer armed at the core's earliest deadline."""
        deadline = self.pcscf.get_timer()
        if deadline is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return  # an earlier (or equal) wake-up is armed; it re-arms after firing
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        loop = asyncio.get_running_loop()
        try:
            self.pcscf.handle_timer(loop.time())
        except Exception:
            log.exception("error in transaction timers")
        self.arm_timer()

    async def _sweep_registrations(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.cfg.registration.sweep_interval_s)
            try:
                now = loop.time()
                gone = self.pcscf.sweep_registrations(now)
                if gone:
                    log.info("registration expiry removed %d binding(s)", len(gone))
                if self.pcscf.calls is not None:
                    self.pcscf.calls.sweep(now, self.cfg.dialogs.idle_timeout_s)
                self.arm_timer()
            except Exception:
                log.exception("error sweeping registrations")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.admin is not None:
            await self.admin.stop()
        for t in self.transports.values():
            await t.close()
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.close()
        self.stopped.set()


async def serve(cfg: Config) -> None:
    """Run until SIGTERM/SIGINT, then shut down cleanly."""
    app = App(cfg)
    await app.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("pcscf-alg ready", flush=True)
    await stop.wait()
    log.info("shutting down")
    await app.stop()


def run(cfg: Config) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(cfg))
        return
    # uvloop: measured 3-4x faster than the stock loop for UDP work on this machine.
    uvloop.run(serve(cfg))
