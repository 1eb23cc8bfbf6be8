"""`InProcessGateway`: the default `AccessGateway`, running inside the daemon's event loop.

Contexts (TS 23.334 "context", one per call/dialog as the ALG chooses) hold streams keyed by
m-line index. A periodic tick (loop time, so tests can shorten it through the config) raises
the notifications that are not tied to one packet: media timeout, SRTP authentication-failure
reports (rate-limited to one per tick per stream) and MSRP idle timeouts.

Front door (issue 11): a call holds at most `max_streams_per_call` anchored streams (`reserve`
refuses more, reserving nothing), and RTP streams drop media from senders other than the
signalled ones (`strict_source`, see `rtp_relay`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
from collections.abc import Sequence
from typing import Final

from OpenSSL import SSL

from ..errors import GatewayError
from ..mediaplan import (
    Endpoint,
    Fingerprint,
    MediaKind,
    MediaPlan,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)
from .api import AgwEvent, EventHandler, MediaTimeout, SrtpAuthFailure, StreamStats
from .certs import GatewayCertificate, load_or_create
from .config import AgwConfig
from .msrp_relay import MsrpStream
from .ports import PortPool
from .rtp_relay import RtpStream
from .srtp import check_key
from .tls import make_context

log = logging.getLogger(__name__)

Stream = RtpStream | MsrpStream
BIND_ATTEMPTS: Final = 16  # ports taken by other processes are skipped, a few times at most
MAX_TICK: Final = 1.0  # seconds between timeout checks


class InProcessGateway:
    """IMS-AGW in this process. Use `async with InProcessGateway(cfg) as gw:` or start()/close()."""

    def __init__(self, config: AgwConfig) -> None:
        self.config = config
        self._rtp_pool = PortPool(*config.rtp_ports, step=2, name="RTP port pairs")
        self._msrp_pool = PortPool(*config.msrp_ports, step=1, name="MSRP ports")
        self._contexts: dict[str, dict[int, Stream]] = {}
        self._handler: EventHandler | None = None
        self._counters: dict[str, int] = {}
        # Media counters of the streams already released, so `media_totals` covers the whole run.
        self._released_totals: dict[str, int] = {}
        self._cert: GatewayCertificate | None = None
        self._tls_ctx: SSL.Context | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self.tick_interval = min(MAX_TICK, config.media_timeout_s / 4)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # File I/O and key generation happen once, off the loop.
        self._cert = await asyncio.to_thread(load_or_create, self.config.cert_dir)
        self._tls_ctx = make_context(self._cert)
        self._schedule_tick()

    async def close(self) -> None:
        for context_id in list(self._contexts):
            await self.release(context_id)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    async def __aenter__(self) -> InProcessGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def local_fingerprint(self) -> Fingerprint:
        if self._cert is None:
            raise GatewayError("gateway not started")
        return self._cert.fingerprint

    @property
    def certificate(self) -> GatewayCertificate:
        if self._cert is None:
            raise GatewayError("gateway not started")
        return self._cert

    def set_event_handler(self, handler: EventHandler | None) -> None:
        self._handler = handler

    def _emit(self, event: AgwEvent) -> None:
        # Metrics (docs/design.md §5: a counter for every decision), by event and reason.
        name = type(event).__name__
        reason = getattr(event, "reason", None)
        key = f"{name}.{reason}" if reason else name
        self._counters[key] = self._counters.get(key, 0) + 1
        if self._handler is None:
            return
        try:
            self._handler(event)
        except Exception:  # a faulty consumer must not break the media plane
            log.exception("AGW event handler failed on %s", type(event).__name__)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._tls_ctx is None:
            raise GatewayError("gateway not started")
        return self._loop

    # ------------------------------------------------------------------ Iq procedures

    async def reserve(
        self, context_id: str, streams: Sequence[StreamRequest]
    ) -> list[StreamReservation]:
        loop = self._running_loop()
        self._check_stream_cap(context_id, streams)
        ctx = self._contexts.setdefault(context_id, {})
        created: list[Stream] = []
        out: list[StreamReservation] = []
        try:
            for req in streams:
                stream = ctx.get(req.index)
                if stream is not None and stream.kind != req.kind.value:
                    raise GatewayError(f"stream {req.index} already reserved as {stream.kind}")
                if stream is None:
                    stream = await self._new_stream(loop, context_id, req)
                    ctx[req.index] = stream
                    created.append(stream)
                    if self._contexts.get(context_id) is not ctx:
                        # Released (CANCEL, BYE...) while we awaited the listener: do not
                        # resurrect it, and do not leak what this call made.
                        raise GatewayError(f"context {context_id} released during reserve")
                out.append(self._reservation(req, stream))
        except BaseException:
            for stream in created:
                self._drop_stream(ctx, stream)
            if not ctx and self._contexts.get(context_id) is ctx:
                del self._contexts[context_id]
            raise
        return out

    async def configure(self, context_id: str, plan: MediaPlan) -> None:
        ctx = self._context(context_id)
        # Validate everything first so that a refused plan changes nothing (the ALG answers 488
        # and the call keeps its previous media).
        for sp in plan.streams:
            self._validate(ctx, sp)
        for sp in plan.streams:
            stream = ctx.get(sp.index)
            if stream is None:
                continue
            if sp.mode in (StreamMode.BYPASS, StreamMode.REJECTED):
                self._drop_stream(ctx, stream)
                continue
            if isinstance(stream, RtpStream):
                first = not stream.configured
                stream.configure(sp)
                if first:
                    stream.last_activity_time = self._running_loop().time()
            else:
                stream.configure(sp)

    async def update_keys(
        self, context_id: str, index: int, rx_key: SrtpKey | None, tx_key: SrtpKey | None
    ) -> None:
        stream = self._stream(context_id, index)
        if not isinstance(stream, RtpStream):
            raise GatewayError(f"stream {index} is not RTP")
        rx_kept, tx_kept = stream.update_keys(rx_key, tx_key)
        log.info(
            "agw %s/%d re-key: rx context %s, tx context %s",
            context_id,
            index,
            "kept" if rx_kept else "new",
            "kept" if tx_kept else "new",
        )

    async def change_through_connection(
        self, context_id: str, index: int, mode: ThroughConnection
    ) -> None:
        stream = self._stream(context_id, index)
        if isinstance(stream, RtpStream):
            stream.set_through(mode)
        # MSRP is connection-oriented: TS 23.334 gates it by not relaying; an MSRP session on
        # hold simply sends nothing, so the gate is accepted and has no effect.

    async def release(self, context_id: str) -> None:
        ctx = self._contexts.pop(context_id, None)
        if not ctx:
            return
        msrp = [s for s in ctx.values() if isinstance(s, MsrpStream)]
        for stream in list(ctx.values()):
            self._drop_stream(ctx, stream)
        for m in msrp:
            await m.wait_closed()
        log.debug("agw %s released", context_id)

    def stats(self, context_id: str | None = None) -> list[StreamStats]:
        ids = [context_id] if context_id is not None else list(self._contexts)
        return [s.stats() for cid in ids for s in self._contexts.get(cid, {}).values()]

    def active_ports(self) -> frozenset[tuple[str, int]]:
        udp = {("udp", p + i) for p in self._rtp_pool.in_use() for i in (0, 1)}
        tcp = {("tcp", p) for p in self._msrp_pool.in_use()}
        return frozenset(udp | tcp)

    def media_totals(self) -> dict[str, int]:
        """Packet counters (`StreamStats` fields: relayed, dropped, rejected_source...) summed
        over every stream since start, released ones included. For /stats and metrics."""
        out = dict(self._released_totals)
        for ctx in self._contexts.values():
            for stream in ctx.values():
                _add_counters(out, stream.stats())
        return out

    def counters(self) -> dict[str, int]:
        """Events emitted since start, by type and reason ("TlsFailed.fingerprint_mismatch")."""
        return dict(self._counters)

    def contexts(self) -> frozenset[str]:
        return frozenset(self._contexts)

    # ------------------------------------------------------------------ internals

    def _context(self, context_id: str) -> dict[int, Stream]:
        ctx = self._contexts.get(context_id)
        if ctx is None:
            raise GatewayError(f"unknown context {context_id}")
        return ctx

    def _stream(self, context_id: str, index: int) -> Stream:
        stream = self._context(context_id).get(index)
        if stream is None:
            raise GatewayError(f"no stream {index} in context {context_id}")
        return stream

    def _check_stream_cap(self, context_id: str, streams: Sequence[StreamRequest]) -> None:
        """Refuse, before anything is allocated, a reservation that would leave the call with
        more than `max_streams_per_call` streams (issue 11 item 9: one INVITE with 50 m-lines
        took 200 ports). Streams already held count too (a re-INVITE adding m-lines)."""
        limit = self.config.max_streams_per_call
        held = self._contexts.get(context_id, {})
        wanted = len(held.keys() | {req.index for req in streams})
        if wanted > limit:
            raise GatewayError(
                f"too many media streams: {wanted} > {limit} (agw.max_streams_per_call)"
            )

    def _validate(self, ctx: dict[int, Stream], sp: StreamPlan) -> None:
        stream = ctx.get(sp.index)
        if sp.mode in (StreamMode.BYPASS, StreamMode.REJECTED):
            return
        if stream is None:
            raise GatewayError(f"stream {sp.index} was not reserved")
        if stream.kind != sp.kind.value:
            raise GatewayError(f"stream {sp.index} reserved as {stream.kind}, planned {sp.kind}")
        if isinstance(stream, MsrpStream):
            MsrpStream.validate(sp)
        elif sp.mode is StreamMode.E2AE:
            if sp.rx_key is None or sp.tx_key is None:
                raise GatewayError(f"stream {sp.index}: e2ae needs both SRTP keys")
            check_key(sp.rx_key, outbound=False)
            check_key(sp.tx_key, outbound=True)

    async def _new_stream(
        self, loop: asyncio.AbstractEventLoop, context_id: str, req: StreamRequest
    ) -> Stream:
        cfg = self.config
        if req.kind is MediaKind.RTP:
            pool = self._rtp_pool
        elif req.kind is MediaKind.MSRP:
            pool = self._msrp_pool
        else:
            raise GatewayError(f"stream {req.index}: media kind {req.kind.value} not relayed")
        last_error: OSError | None = None
        for _ in range(BIND_ATTEMPTS):
            a = pool.alloc()
            try:
                c = pool.alloc()
            except GatewayError:
                pool.free(a)
                raise
            try:
                if req.kind is MediaKind.RTP:
                    return RtpStream(
                        loop,
                        context_id,
                        req.index,
                        cfg.access_host,
                        a,
                        cfg.core_host,
                        c,
                        strict_source=cfg.strict_source,
                    )
                assert self._tls_ctx is not None
                stream = MsrpStream(
                    loop,
                    context_id,
                    req.index,
                    cfg.access_host,
                    a,
                    cfg.core_host,
                    c,
                    self._tls_ctx,
                    self._emit,
                    cfg.tls_handshake_timeout_s,
                    cfg.msrp_idle_timeout_s,
                    max_pending=cfg.msrp_max_pending_connections,
                    strict_source=cfg.strict_source,
                )
                try:
                    await stream.start()
                except BaseException:
                    stream.close()
                    raise
                return stream
            except OSError as e:
                # Freed ports cool before they are drawn again, so the next try gets others.
                pool.free(a)
                pool.free(c)
                if e.errno != errno.EADDRINUSE:
                    raise GatewayError(f"cannot bind media port: {e.strerror}") from None
                last_error = e
            except BaseException:
                pool.free(a)
                pool.free(c)
                raise
        raise GatewayError(f"no bindable {pool.name}: {last_error}")

    def _reservation(self, req: StreamRequest, stream: Stream) -> StreamReservation:
        cfg = self.config
        fp = None
        if isinstance(stream, RtpStream):
            a, c = stream.access_base, stream.core_base
            access = Endpoint(cfg.access_host, a, None if req.access_rtcp_mux else a + 1)
            core = Endpoint(cfg.core_host, c, None if req.core_rtcp_mux else c + 1)
            if req.want_local_fingerprint:
                fp = self.local_fingerprint
        else:
            access = Endpoint(cfg.access_host, stream.access_port)
            core = Endpoint(cfg.core_host, stream.core_port)
            fp = self.local_fingerprint  # TS 23.334 Local certificate fingerprint
        return StreamReservation(req.index, req.kind, access, core, fp)

    def _drop_stream(self, ctx: dict[int, Stream], stream: Stream) -> None:
        stream.close()
        _add_counters(self._released_totals, stream.stats())
        if ctx.get(stream.index) is stream:
            del ctx[stream.index]
        if isinstance(stream, RtpStream):
            self._rtp_pool.free(stream.access_base)
            self._rtp_pool.free(stream.core_base)
        else:
            self._msrp_pool.free(stream.access_port)
            self._msrp_pool.free(stream.core_port)

    # ------------------------------------------------------------------ periodic checks

    def _schedule_tick(self) -> None:
        loop = self._loop
        if loop is not None:
            self._tick_handle = loop.call_later(self.tick_interval, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            self._check(loop.time())
        finally:
            self._schedule_tick()

    def _check(self, now: float) -> None:
        timeout = self.config.media_timeout_s
        for context_id, ctx in list(self._contexts.items()):
            for stream in list(ctx.values()):
                if isinstance(stream, MsrpStream):
                    stream.tick(now)
                    continue
                if not stream.configured:
                    continue
                rejected = stream.rejected_source
                if rejected != stream.reported_rejected_source:
                    # Logged (rate-limited to one line per tick) rather than an event: a
                    # stray or hostile sender says nothing about the call itself.
                    log.info(
                        "agw %s/%d: %d packets from unexpected sources dropped (%d in all)",
                        context_id,
                        stream.index,
                        rejected - stream.reported_rejected_source,
                        rejected,
                    )
                    stream.reported_rejected_source = rejected
                fails = stream.auth_failures
                if fails != stream.reported_auth_failures:
                    new = fails - stream.reported_auth_failures
                    stream.reported_auth_failures = fails
                    self._emit(SrtpAuthFailure(context_id, stream.index, fails, new))
                act = stream.activity()
                if act != stream.last_activity_count:
                    stream.last_activity_count = act
                    stream.last_activity_time = now
                    stream.timed_out = False
                elif not stream.timed_out and now - stream.last_activity_time >= timeout:
                    stream.timed_out = True
                    log.info("agw %s/%d: media timeout", context_id, stream.index)
                    self._emit(MediaTimeout(context_id, stream.index))


def _add_counters(into: dict[str, int], st: StreamStats) -> None:
    for f in dataclasses.fields(st):
        value = getattr(st, f.name)
        if isinstance(value, int) and f.name != "index":
            into[f.name] = into.get(f.name, 0) + value
