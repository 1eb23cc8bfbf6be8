"""Read-only admin endpoint: `GET /stats` returns JSON counters (HTTP/1.0, loopback by default).

Operators and the end-to-end tests use it to see registrations, dialogs, transactions and
gateway ports; it never exposes key material.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcscf_alg.app import App

log = logging.getLogger(__name__)


def stats(app: App) -> dict[str, Any]:
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
    return out


def registrations(app: App) -> list[dict[str, Any]]:
    """Bindings with their e2ae flags (no secrets are held in a binding)."""
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
                "other_mediasec": list(f.other_mediasec),
                "path": list(b.path),
                "service_route": list(b.service_route),
                "expires_at": b.expires_at,
                "calls": sorted(b.call_ids),
            }
        )
    return out


class AdminServer:
    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else "/"
            if path.startswith("/stats"):
                body = json.dumps(stats(self.app), default=str).encode()
                status = "200 OK"
            elif path.startswith("/registrations"):
                body = json.dumps(registrations(self.app), default=str).encode()
                status = "200 OK"
            else:
                body = b'{"error": "not found"}'
                status = "404 Not Found"
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except Exception as e:  # a bad admin client must not hurt the daemon
            log.debug("admin request failed: %s", e)
        finally:
            writer.close()
