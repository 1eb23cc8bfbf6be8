"""The admin endpoint (`admin: {enabled, host, port}`, loopback by default), served by aiohttp
on the daemon's own event loop (README, design notes: why aiohttp).

| route                 | what                                                                |
|-----------------------|---------------------------------------------------------------------|
| `GET /metrics`        | Prometheus text format (`pcscf_alg/metrics.py`, a registry per daemon) |
| `GET /stats`          | JSON counters (the tests and older scripts read it)                 |
| `GET /registrations`  | JSON list of bindings with their e2ae flags and expiry              |
| `GET /calls`          | JSON list of active call legs, per stream mode, decision, ports     |
| `POST /reload`        | re-read the config file (`App.reload`); loopback clients only       |

Nothing served here carries key material: bindings hold none, and `/calls` is built from the
decision records, the gateway's reservations (addresses) and its packet counters, never from
a key, an SDP body or a media plan's key fields.

Bounds (README "Security model"): at most `MAX_CONNECTIONS` open connections (more are
answered 503 and closed), idle and half-sent requests closed after `KEEPALIVE_TIMEOUT_S`
(aiohttp arms it from the connection's start), request bodies of at most `MAX_BODY_BYTES`,
header lines of at most 8 kB (aiohttp's default), one reload at a time. When bound to a
loopback address, a request whose Host is a DNS name other than `localhost` is refused (421):
a web page cannot reach the endpoint through DNS rebinding. `POST /reload` with an `Origin`
header (what a browser sends on a cross-site POST) is refused (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pcscf_alg.metrics import DaemonView, new_registry

if TYPE_CHECKING:
    from pcscf_alg.dialogs import Call

log = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 16
KEEPALIVE_TIMEOUT_S: Final = 5.0
MAX_BODY_BYTES: Final = 4096
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b'Content-Length: 27\r\nConnection: close\r\n\r\n{"error": "too many conns"}'
)


# ------------------------------------------------------------------------------ JSON views
def stats(app: DaemonView) -> dict[str, Any]:
    p = app.pcscf
    out: dict[str, Any] = {
        "counters": asdict(p.counters),
        "registrations": len(app.registrations),
        "transactions": {side.value: len(layer) for side, layer in p.layers.items()},
        "client_transactions": {side.value: la.client_count for side, la in p.layers.items()},
        "tcp_connections": {s.value: t.connection_count for s, t in app.transports.items()},
        # the TCP front door per listener: caps, deadlines, oversize (pcscf_alg/transport.py)
        "transport": {s.value: asdict(t.counters) for s, t in app.transports.items()},
    }
    if p.calls is not None:
        out.update(p.calls.stats())
        gw = app.gateway
        if gw is not None:
            out["agw_ports"] = len(gw.active_ports())
            out["agw_contexts"] = len(getattr(gw, "contexts", lambda: ())())
            # Packet counters summed over all streams (relayed, dropped, rejected_source...).
            out["agw_media"] = getattr(gw, "media_totals", dict)()
    reloads = getattr(app, "reloads", None)
    if reloads is not None:
        out.setdefault("reloads", dict(reloads))
    # Which process answers: with `sip.workers` > 1 each worker serves admin.port + index and
    # counts only what it handles (README "Worker processes").
    worker = getattr(app, "worker", None)
    out["process"] = {
        "pid": os.getpid(),
        "worker": worker.index if worker is not None else None,
        "workers": worker.count if worker is not None else 1,
    }
    # The registration store's back end; Redis adds connected 0/1, its outbox and counters.
    store_stats = getattr(app.registrations, "stats", None)
    out["store"] = store_stats() if callable(store_stats) else {"backend": "memory"}
    return out


def registrations(app: DaemonView, now: float) -> list[dict[str, Any]]:
    """Bindings with their e2ae flags (no secrets are held in a binding). `now`: the loop
    time the bindings' `expires_at` is on."""
    out = []
    for b in getattr(app.registrations, "bindings", list)():
        f = b.flags
        out.append(
            {
                "impu": b.impu,
                "contact": b.contact,
                "flow": f"{b.flow.transport}:{b.flow.host}:{b.flow.port}",
                "ue_rtp": f.ue_rtp,
                "ue_msrp": f.ue_msrp,
                "net_rtp": f.net_rtp,
                "net_msrp": f.net_msrp,
                "rtp": f.rtp,
                "msrp": f.msrp,
                # established = indicated by the UE and by us (TS 33.328 7.2.1 step 2)
                "e2ae": {"rtp": f.rtp, "msrp": f.msrp},
                "other_mediasec": list(f.other_mediasec),
                "path": list(b.path),
                "service_route": list(b.service_route),
                "expires_at": b.expires_at,
                "expires_in": max(0, round(b.expires_at - now)),
                "calls": sorted(b.call_ids),
            }
        )
    return out


def _stream_mode(mode: str, proto: str) -> str:
    """e2ae: security terminated at the gateway; pass: anchored, relayed untouched; e2e: not
    anchored, with its own security end to end; plain: not anchored, no security."""
    if mode == "bypass":
        up = proto.upper()
        return "e2e" if ("SAVP" in up or "TLS" in up) else "plain"
    return mode  # e2ae, pass, rejected


def _endpoint(ep: Any) -> dict[str, Any] | None:
    if ep is None:
        return None
    return {"host": ep.host, "port": ep.port, "rtcp_port": ep.rtcp_port}


def _call_view(app: DaemonView, call: Call, now: float) -> dict[str, Any]:
    """One call leg, from the decision records: what was done to each stream and why (clause
    or policy rule), the gateway's addresses and packet counters. Keys never enter here."""
    # The dialog whose media the gateway runs, else the confirmed one, else the latest early
    # dialog with an answer (forking: each has its own decisions).
    d = call.dialogs.get(call.active_tag or call.confirmed or "")
    if d is None or d.answer is None:
        d = next((x for x in reversed(call.dialogs.values()) if x.answer is not None), d)
    answered = d.answer if d is not None else None
    pending = None
    if answered is None:
        for p in (call.pending, *(x.pending for x in call.dialogs.values())):
            if p is not None and p.state is not None:
                pending = p.state
                break
    state = answered.state if answered is not None else pending
    decisions = (
        answered.decisions
        if answered is not None
        else pending.decisions
        if pending is not None
        else ()
    )
    counters: dict[int, dict[str, int]] = {}
    if call.reserved and app.gateway is not None:
        for st in app.gateway.stats(call.context_id):
            row = asdict(st)
            for k in ("context_id", "index", "kind"):
                row.pop(k, None)
            counters[st.index] = row
    offered = {s.index: s for s in state.streams} if state is not None else {}
    streams = []
    for dec in decisions:
        so = offered.get(dec.index)
        res = state.reservations.get(dec.index) if state is not None else None
        streams.append(
            {
                "index": dec.index,
                "kind": dec.kind.value,
                "proto": so.proto if so is not None else None,
                "mode": _stream_mode(dec.mode.value, so.proto if so is not None else ""),
                "decision": dec.action,
                "clause": dec.rule,
                "gateway": (
                    {"access": _endpoint(res.access), "core": _endpoint(res.core)}
                    if res is not None
                    else None
                ),
                "counters": counters.get(dec.index),
            }
        )
    if call.confirmed is not None:
        phase = "confirmed"
    elif call.dialogs:
        phase = "early"
    else:
        phase = "trying"
    return {
        "call_id": call.call_id,
        "leg": "originating" if call.caller_side.value == "access" else "terminating",
        "subscriber": call.subscriber,
        "age": round(max(0.0, now - call.started_at), 1),
        "phase": phase,
        "e2ae": {"rtp": call.flags.rtp, "msrp": call.flags.msrp},
        "anchored": call.reserved,
        "offer_answer": (
            "answered"
            if answered is not None
            else "offered"
            if pending is not None
            else "untouched"
        ),
        "streams": streams,
    }


def calls(app: DaemonView, now: float) -> list[dict[str, Any]]:
    cm = app.pcscf.calls
    if cm is None:
        return []
    out = []
    for call in list(cm.calls.values()):
        try:
            out.append(_call_view(app, call, now))
        except Exception:  # one odd call must not hide the others
            log.exception("admin: cannot describe call %s", call.call_id)
    return out


# ------------------------------------------------------------------------------ the server
def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _host_ok(host_header: str) -> bool:
    """A Host that cannot come from DNS rebinding: an IP literal or `localhost`."""
    h = host_header.strip().lower()
    if h.startswith("["):  # [v6]:port
        h = h[1 : h.find("]")] if "]" in h else h
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    if h in ("localhost", ""):
        return h == "localhost"
    try:
        ipaddress.ip_address(h)
    except ValueError:
        return False
    return True


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, default=str).encode(),
        status=status,
        content_type="application/json",
    )


class _Busy:
    """Answers a connection over the cap with a fixed 503 and closes it (asyncio.Protocol)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with contextlib.suppress(Exception):
            transport.write(_BUSY)  # type: ignore[attr-defined]
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class AdminServer:
    def __init__(self, app: DaemonView, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.registry = new_registry(app)
        self._loopback = _is_loopback(host)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        webapp = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self._guard], handler_args=None
        )
        webapp.router.add_get("/metrics", self._metrics)
        webapp.router.add_get("/stats", self._stats)
        webapp.router.add_get("/registrations", self._registrations)
        webapp.router.add_get("/calls", self._calls)
        webapp.router.add_post("/reload", self._reload)
        self._runner = web.AppRunner(
            webapp,
            handle_signals=False,  # the daemon owns SIGTERM/SIGINT/SIGHUP
            access_log=None,
            keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None

        def factory() -> asyncio.BaseProtocol:
            # The connection cap: aiohttp has none of its own.
            if len(server.connections) >= MAX_CONNECTIONS:
                return _Busy()  # type: ignore[return-value]
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self.host, self.port, backlog=MAX_CONNECTIONS, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 2.0)

    # ---- handlers ----
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._loopback and not _host_ok(request.host):
            return _json({"error": "Host must be an IP address or localhost"}, 421)
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPException:
            raise
        except Exception as e:  # a failing view must not hurt the daemon
            log.exception("admin %s %s failed", request.method, request.path)
            return _json({"error": f"internal error: {type(e).__name__}"}, 500)
        return resp

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(stats(self.app))

    async def _registrations(self, request: web.Request) -> web.Response:
        return _json(registrations(self.app, asyncio.get_running_loop().time()))

    async def _calls(self, request: web.Request) -> web.Response:
        return _json(calls(self.app, asyncio.get_running_loop().time()))

    async def _reload(self, request: web.Request) -> web.Response:
        # Loopback only, whatever admin.host is: a reload changes what the daemon does.
        if not _is_loopback(request.remote):
            return _json({"ok": False, "error": "reload is allowed from loopback only"}, 403)
        if "Origin" in request.headers:
            return _json({"ok": False, "error": "cross-origin reload refused"}, 403)
        reload = getattr(self.app, "reload", None)
        if not callable(reload):
            return _json({"ok": False, "error": "this daemon cannot reload its config"}, 501)
        async with self._reload_lock:
            result: dict[str, Any] = await reload()
        return _json(result, 200 if result.get("ok") else 400)
