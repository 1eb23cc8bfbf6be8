"""pcscf_alg/admin.py: the aiohttp admin endpoint of an App (not started: no SIP listeners),
served on a free loopback port, and its guards (reload from loopback only and never
cross-origin, DNS-rebinding Host refused, the connection cap)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from pcscf_alg.admin import MAX_CONNECTIONS, AdminServer, _host_ok, _stream_mode
from pcscf_alg.app import App
from pcscf_alg.config import parse_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app() -> App:
    cfg = parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5070},
                "next_hop": "sip:127.0.0.1:5080;lr",
            }
        },
        "test.yaml",
    )
    return App(cfg)


def serve(test: Callable[[App, AdminServer, str], Awaitable[None]]) -> None:
    """Run `test(app, server, base_url)` against a started AdminServer; always stopped."""

    async def run() -> None:
        app = _app()
        port = _free_port()
        server = AdminServer(app, "127.0.0.1", port)
        await server.start()
        try:
            await asyncio.wait_for(test(app, server, f"http://127.0.0.1:{port}"), 20)
        finally:
            await server.stop()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:5090", True),
        ("localhost:5090", True),
        ("[::1]:5090", True),
        ("10.0.0.7", True),
        ("evil.example:5090", False),
        ("127.0.0.1.nip.io:5090", False),
        ("", False),
    ],
)
def test_host_header_check(host: str, ok: bool) -> None:
    assert _host_ok(host) is ok


@pytest.mark.parametrize(
    ("mode", "proto", "want"),
    [
        ("e2ae", "RTP/SAVP", "e2ae"),
        ("pass", "RTP/AVP", "pass"),
        ("bypass", "RTP/SAVP", "e2e"),
        ("bypass", "TCP/TLS/MSRP", "e2e"),
        ("bypass", "RTP/AVP", "plain"),
        ("rejected", "RTP/AVP", "rejected"),
    ],
)
def test_stream_mode(mode: str, proto: str, want: str) -> None:
    assert _stream_mode(mode, proto) == want


def test_routes_serve_json_and_prometheus_text() -> None:
    async def test(app: App, server: AdminServer, base: str) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                names = {f.name for f in text_string_to_metric_families(await r.text())}
            assert {"pcscf_alg_sip_messages_received", "pcscf_alg_bindings"} <= names
            async with s.get(base + "/stats") as r:
                st = await r.json()
            assert st["registrations"] == 0 and "counters" in st and "transport" in st
            for path in ("/registrations", "/calls"):
                async with s.get(base + path) as r:
                    assert r.status == 200 and await r.json() == []
            async with s.get(base + "/nothing") as r:
                assert r.status == 404

    serve(test)


def test_reload_returns_the_apps_answer_200_or_400() -> None:
    answers = [
        {
            "ok": True,
            "error": None,
            "applied": ["policy.e2ae_not_registered"],
            "restart_needed": [],
        },
        {
            "ok": False,
            "error": "f.yaml: sip.t1: must be a number",
            "applied": [],
            "restart_needed": [],
        },
    ]

    async def test(app: App, server: AdminServer, base: str) -> None:
        async def fake_reload() -> dict[str, Any]:
            return answers.pop(0)

        app.reload = fake_reload  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as s:
            async with s.post(base + "/reload") as r:
                assert r.status == 200
                assert (await r.json())["applied"] == ["policy.e2ae_not_registered"]
            async with s.post(base + "/reload") as r:
                assert r.status == 400
                assert "sip.t1" in (await r.json())["error"]
            # what a browser sends on a cross-site form POST: refused, reload not called
            async with s.post(base + "/reload", headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403
            async with s.get(base + "/reload") as r:
                assert r.status == 405
        assert answers == []

    serve(test)


def test_dns_rebinding_host_is_refused_on_a_loopback_endpoint() -> None:
    async def test(app: App, server: AdminServer, base: str) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/calls", headers={"Host": "rebind.evil.example"}) as r:
                assert r.status == 421
            async with s.get(base + "/calls", headers={"Host": "localhost"}) as r:
                assert r.status == 200

    serve(test)


def test_reload_from_a_non_loopback_client_is_403() -> None:
    async def run() -> None:
        app = _app()
        called: list[int] = []

        async def fake_reload() -> dict[str, Any]:
            called.append(1)
            return {"ok": True}

        app.reload = fake_reload  # type: ignore[method-assign]
        server = AdminServer(app, "0.0.0.0", 5090)  # not started: the handler alone
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (
            ("192.0.2.7", 40000) if name == "peername" else default
        )
        req = make_mocked_request("POST", "/reload", transport=transport)
        resp = await server._reload(req)
        assert resp.status == 403 and not called
        assert json.loads(resp.body)["error"] == "reload is allowed from loopback only"  # type: ignore[arg-type]

    asyncio.run(run())


def test_connections_over_the_cap_get_503_and_the_endpoint_recovers() -> None:
    async def test(app: App, server: AdminServer, base: str) -> None:
        port = int(base.rsplit(":", 1)[1])
        held = []
        try:
            for _ in range(MAX_CONNECTIONS):
                held.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.1)  # let the server accept them all
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert data.startswith(b"HTTP/1.1 503"), data
        finally:
            for _, w in held:
                w.close()
        # the idle ones are gone (closed by us here; by the keep-alive deadline otherwise)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if (
                not server._runner
                or not server._runner.server
                or not server._runner.server.connections
            ):
                break
        async with aiohttp.ClientSession() as s, s.get(base + "/stats") as r:
            assert r.status == 200

    serve(test)


def test_a_half_sent_request_is_closed_by_the_keepalive_deadline() -> None:
    async def test(app: App, server: AdminServer, base: str) -> None:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never ends
            await writer.drain()
            # closed by the server (KEEPALIVE_TIMEOUT_S), not answered
            assert await asyncio.wait_for(reader.read(), 15) == b""
        finally:
            writer.close()

    serve(test)
