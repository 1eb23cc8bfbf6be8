"""The daemon: wires config, transports, the proxy core, registrations and the gateway.

The asyncio edge in the aioquic manner (DESIGN.md): each received message goes to
`Pcscf.receive(..., now=loop.time())`; the core's single next deadline (`get_timer()`) is kept
armed on the loop, and its callback calls `handle_timer(now)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
from typing import Any

from pcscf_alg import _accel
from pcscf_alg.alg import Pcscf
from pcscf_alg.config import Config
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore, RegistrationStore
from pcscf_alg.sip.transaction import Peer
from pcscf_alg.transport import SideTransport, fd_budget

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
        max_conns = self._fit_fd_limit()
        for side, lst in ((Side.ACCESS, s.access), (Side.CORE, s.core)):
            t = SideTransport(
                side.value,
                lst.host,
                lst.port,
                self._handler(side),
                udp=s.udp,
                tcp=s.tcp,
                idle_timeout=s.tcp_idle_timeout_s,
                message_timeout=s.tcp_message_timeout_s,
                max_connections=max_conns,
                max_connections_per_ip=min(s.tcp_max_connections_per_ip, max_conns),
                max_message_bytes=s.max_message_bytes,
                on_send_failure=self._failure_handler(side),
                on_too_large=self._too_large_handler(side),
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

    def _fit_fd_limit(self) -> int:
        """Raise the soft RLIMIT_NOFILE towards the hard limit so that both listeners' TCP caps,
        the gateway's media ports and the rest (admin, outgoing connections) fit; when they
        cannot, lower the TCP cap instead (logged): an accepted stranger's connection must never
        take the descriptor a media port or the admin endpoint needs. Returns the per-listener
        cap to use."""
        s = self.cfg.sip
        sides = 2 if s.tcp else 0
        gw_cfg = getattr(self.gateway, "config", None)
        media = 0
        for rng in (getattr(gw_cfg, "rtp_ports", None), getattr(gw_cfg, "msrp_ports", None)):
            if rng is not None:
                media += rng[1] - rng[0] + 1
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want, _ = fd_budget(soft, s.tcp_max_connections, sides, media)
        if want > soft:
            target = want if hard == resource.RLIM_INFINITY else min(want, hard)
            if target > soft:
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                    soft = target
                except (ValueError, OSError) as e:
                    log.warning("cannot raise the open-file limit to %d: %s", target, e)
        _, cap = fd_budget(soft, s.tcp_max_connections, sides, media)
        if cap < s.tcp_max_connections:
            log.warning(
                "open-file limit %d (hard %s) cannot hold sip.tcp_max_connections=%d per listener "
                "next to %d media ports: TCP connections capped at %d per listener",
                soft,
                "unlimited" if hard == resource.RLIM_INFINITY else hard,
                s.tcp_max_connections,
                media,
                cap,
            )
        else:
            log.info("open-file limit %d; TCP connections capped at %d per listener", soft, cap)
        return cap

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

    def _too_large_handler(self, side: Side):  # type: ignore[no-untyped-def]
        pcscf = self.pcscf

        def on_too_large(
            head: bytes, transport: str, host: str, port: int, conn_id: int | None
        ) -> None:
            pcscf.reject_too_large(head, side, Peer(transport, host, port, conn_id))

        return on_too_large

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
