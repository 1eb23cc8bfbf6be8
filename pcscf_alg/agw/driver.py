"""The edge between the sans-IO call layer and an `AccessGateway`: runs the gateway operations
the core queued (`Pcscf.media_effects()`) and reports each result back (`Pcscf.gateway_done`).

The only asyncio in the call path's media control (issue 12): the call layer decides, this runs.
Operations of one context run one after another in the order they were queued (the core relies
on it: reserve before configure before release); contexts run concurrently. LI key records go to
the configured `KeySink` here, stamped with the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pcscf_alg.agw.api import AccessGateway
from pcscf_alg.effects import Configure, ExportKeys, GatewayDone, MediaEffect, Reserve
from pcscf_alg.errors import GatewayError, SdpError
from pcscf_alg.li import KeySink

log = logging.getLogger(__name__)


class Core(Protocol):
    """What the driver reports to (`alg.Pcscf`)."""

    def gateway_done(self, done: GatewayDone, now: float) -> None: ...


class GatewayDriver:
    def __init__(
        self,
        gateway: AccessGateway,
        core: Core,
        *,
        sink: KeySink | None = None,
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self.gateway = gateway
        self.core = core
        self.sink = sink
        # Called after each result was fed back: the daemon sends what it caused and re-arms
        # its timer (and runs the effects that result queued).
        self.after = after
        self._chains: dict[str, asyncio.Future[Any]] = {}

    def run(self, effects: Iterable[MediaEffect]) -> None:
        for eff in effects:
            if isinstance(eff, ExportKeys):
                self._export(eff)
            else:
                self._chain(eff.context_id, eff)

    def _export(self, eff: ExportKeys) -> None:
        if self.sink is None:
            return  # LI switched off by a reload since the record was queued
        record = dataclasses.replace(eff.record, time=time.time())
        try:
            self.sink.deliver(record)
        except Exception as e:  # a sink's failure must not fail the call
            # Only the exception's type: its text or traceback could carry the record.
            log.error(
                "call %s: LI key sink failed for stream %d (%s)",
                record.call_id,
                record.stream,
                type(e).__name__,
            )

    def _chain(self, context_id: str, eff: MediaEffect) -> None:
        prev = self._chains.get(context_id)
        fut = asyncio.ensure_future(self._do(prev, eff))
        self._chains[context_id] = fut
        fut.add_done_callback(lambda f: self._chain_done(context_id, f))

    def _chain_done(self, context_id: str, fut: asyncio.Future[Any]) -> None:
        if self._chains.get(context_id) is fut:
            del self._chains[context_id]

    async def _do(self, prev: asyncio.Future[Any] | None, eff: MediaEffect) -> None:
        if prev is not None and not prev.done():
            with contextlib.suppress(Exception):  # its own result was reported already
                await prev
        assert not isinstance(eff, ExportKeys)
        gw = self.gateway
        try:
            if isinstance(eff, Reserve):
                got = await gw.reserve(eff.context_id, eff.streams)
                done = GatewayDone(eff.op, tuple(got))
            elif isinstance(eff, Configure):
                await gw.configure(eff.context_id, eff.plan)
                done = GatewayDone(eff.op)
            else:
                await gw.release(eff.context_id)
                done = GatewayDone(eff.op)
        except (GatewayError, SdpError) as e:
            done = GatewayDone(eff.op, error=getattr(e, "reason", str(e)))
        except Exception as e:
            # A bug in the gateway: the call layer handles it as a refusal (488, release).
            log.exception("gateway %s failed for %s", type(eff).__name__, eff.context_id)
            done = GatewayDone(eff.op, error=f"internal error ({type(e).__name__})")
        try:
            self.core.gateway_done(done, asyncio.get_running_loop().time())
        except Exception:
            log.exception("call layer failed on a gateway result")
        self.after()

    def pending(self) -> int:
        """Contexts with operations still running."""
        return len(self._chains)

    async def close(self) -> None:
        for fut in list(self._chains.values()):
            fut.cancel()
        self._chains.clear()
