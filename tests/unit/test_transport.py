"""The asyncio edge: UDP and TCP listeners, framing over a real socket, responses on the same
connection, keep-alive pongs, connection reuse and idle cleanup. Loopback only, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from importlib import resources
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from pcscf_alg.config import parse_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.transport import FD_RESERVE, SideTransport, fd_budget

MSG = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _with_transport(idle: float = 300.0, **kw: Any) -> tuple[SideTransport, list[Any]]:
    got: list[Any] = []
    t = SideTransport(
        "test", "127.0.0.1", free_port(), lambda *a: got.append(a), idle_timeout=idle, **kw
    )
    await t.start()
    return t, got


async def _until(pred: Any, timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def test_tcp_framing_split_reads_and_response_on_same_connection() -> None:
    async def run() -> None:
        t, got = await _with_transport()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", t.port)
            # two messages, cut at awkward places, plus a keep-alive ping in between
            data = MSG + b"\r\n\r\n" + MSG
            for i in range(0, len(data), 7):
                w.write(data[i : i + 7])
                await w.drain()
            await _until(lambda: len(got) == 2)
            assert all(g[0] == MSG and g[1] == "tcp" for g in got)
            conn_id = got[0][4]
            assert conn_id is not None and t.has_connection(conn_id)
            # RFC 5626 §4.4.1: a CRLF pong answers the double-CRLF ping
            assert await asyncio.wait_for(r.readexactly(2), 3) == b"\r\n"
            # a response goes back on the connection the request came in on
            t.send(b"SIP/2.0 200 OK\r\n\r\n", "tcp", "127.0.0.1", 1, conn_id)
            ok = b"SIP/2.0 200 OK\r\n\r\n"
            assert await asyncio.wait_for(r.readexactly(len(ok)), 3) == ok
            w.close()
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 15))


def test_garbage_on_tcp_closes_that_connection_only() -> None:
    async def run() -> None:
        t, got = await _with_transport()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", t.port)
            w.write(b"INVITE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n")
            await w.drain()
            assert await asyncio.wait_for(r.read(), 3) == b""  # closed by us
            _, w2 = await asyncio.open_connection("127.0.0.1", t.port)
            w2.write(MSG)
            await _until(lambda: len(got) == 1)
            w2.close()
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 15))


def test_outgoing_connection_is_reused_and_idle_ones_are_closed() -> None:
    async def run() -> None:
        accepted: list[asyncio.StreamReader] = []

        async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(r)

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t, _ = await _with_transport(idle=1.0)
        try:
            t.send(MSG, "tcp", "127.0.0.1", port, None)
            t.send(MSG, "tcp", "127.0.0.1", port, None)  # while the first is still connecting
            await _until(lambda: len(accepted) == 1 and t.connection_count == 1)
            data = await asyncio.wait_for(accepted[0].readexactly(2 * len(MSG)), 3)
            assert data == MSG + MSG
            t.send(MSG, "tcp", "127.0.0.1", port, None)
            await asyncio.wait_for(accepted[0].readexactly(len(MSG)), 3)
            assert len(accepted) == 1  # reused
            # idle for longer than idle_timeout: closed by the sweeper
            assert await asyncio.wait_for(accepted[0].read(), 8) == b""
            await _until(lambda: t.connection_count == 0)
        finally:
            await t.close()
            server.close()

    asyncio.run(asyncio.wait_for(run(), 20))


def test_udp_datagrams_reach_the_handler() -> None:
    async def run() -> None:
        t, got = await _with_transport()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(MSG, ("127.0.0.1", t.port))
                await _until(lambda: len(got) == 1)
            assert got[0][0] == MSG and got[0][1] == "udp" and got[0][4] is None
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 10))


# ---- the front door (issue 11): caps, deadlines, size ------------------------------------------


async def _closed_by_peer(r: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until the daemon side closes (EOF or reset); bounded."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(r.read(65536), timeout):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def _connect(port: int, src: str = "127.0.0.1") -> tuple[Any, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))


def test_per_ip_cap_refuses_at_once_and_other_addresses_still_get_in() -> None:
    async def run() -> None:
        t, got = await _with_transport(max_connections=10, max_connections_per_ip=3)
        conns: list[Any] = []
        try:
            for _ in range(3):
                conns.append(await _connect(t.port))
            await _until(lambda: t.incoming_count == 3)
            r, w = await _connect(t.port)  # the fourth from 127.0.0.1
            assert await _closed_by_peer(r) == b""
            w.close()
            assert t.counters.tcp_refused_per_ip == 1 and t.incoming_count == 3
            # another loopback address is not affected, and is served
            r2, w2 = await _connect(t.port, "127.0.0.2")
            conns.append((r2, w2))
            w2.write(MSG)
            await _until(lambda: len(got) == 1)
            assert got[0][2] == "127.0.0.2"
            # a slot freed is a slot available again
            conns[0][1].close()
            await _until(lambda: t.incoming_count == 3)
            conns.append(await _connect(t.port))
            await _until(lambda: t.incoming_count == 4)
            assert t.counters.tcp_accepted == 5 and t.counters.tcp_refused_per_ip == 1
        finally:
            for _, w in conns:
                w.close()
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 20))


def test_total_cap_counts_every_source() -> None:
    async def run() -> None:
        t, _ = await _with_transport(max_connections=4, max_connections_per_ip=2)
        conns: list[Any] = []
        try:
            for src in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"):
                conns.append(await _connect(t.port, src))
            await _until(lambda: t.incoming_count == 4)
            r, w = await _connect(t.port, "127.0.0.3")
            assert await _closed_by_peer(r) == b""
            w.close()
            assert t.counters.tcp_refused_max_connections == 1
            assert t.counters.tcp_refused_per_ip == 0
        finally:
            for _, w in conns:
                w.close()
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 20))


def test_outgoing_connections_are_not_capped() -> None:
    async def run() -> None:
        accepted: list[Any] = []

        async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(w)

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t, _ = await _with_transport(max_connections=1, max_connections_per_ip=1)
        try:
            held = await _connect(t.port)
            await _until(lambda: t.incoming_count == 1)
            t.send(MSG, "tcp", "127.0.0.1", port, None)  # ours: not refused by the full cap
            await _until(lambda: len(accepted) == 1 and t.connection_count == 2)
            assert t.incoming_count == 1
            held[1].close()
        finally:
            await t.close()
            server.close()

    asyncio.run(asyncio.wait_for(run(), 20))


def test_drip_fed_message_is_closed_at_the_message_deadline() -> None:
    """Slowloris: one byte at a time resets no timer; the message must be complete within
    message_timeout of its first byte, however long the idle timeout."""

    async def run() -> None:
        t, got = await _with_transport(idle=300.0, message_timeout=0.5)
        try:
            r, w = await _connect(t.port)
            closed = False
            for i in range(len(MSG) - 1):  # never the last byte
                try:
                    w.write(MSG[i : i + 1])
                    await w.drain()
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                    break
                try:
                    if await asyncio.wait_for(r.read(1), 0.1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    closed = True
                    break
            assert closed, "a drip-fed message kept its connection open"
            assert got == []
            await _until(lambda: t.connection_count == 0)
            assert t.counters.tcp_closed_message_timeout == 1
            assert t.counters.tcp_closed_idle == 0
            w.close()
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_silent_new_connection_gets_the_message_deadline_not_the_idle_timeout() -> None:
    async def run() -> None:
        t, _ = await _with_transport(idle=300.0, message_timeout=0.3)
        try:
            r, w = await _connect(t.port)
            assert await _closed_by_peer(r, 10) == b""
            await _until(lambda: t.connection_count == 0)
            assert t.counters.tcp_closed_message_timeout == 1
            w.close()
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 20))


def test_complete_messages_and_keepalives_restart_the_idle_timeout() -> None:
    async def run() -> None:
        t, got = await _with_transport(idle=1.0, message_timeout=0.3)
        try:
            r, w = await _connect(t.port)
            w.write(MSG)
            await _until(lambda: len(got) == 1)
            # RFC 5626 keep-alives, each well within the idle timeout, for several idle periods
            for _ in range(8):
                w.write(b"\r\n\r\n")
                assert await asyncio.wait_for(r.readexactly(2), 3) == b"\r\n"
                await asyncio.sleep(0.4)
            assert t.connection_count == 1 and t.counters.tcp_closed_idle == 0
            # then silence: closed on the idle rule (the peer has proven itself)
            assert await _closed_by_peer(r, 10) == b""
            await _until(lambda: t.connection_count == 0)
            assert t.counters.tcp_closed_idle == 1
            assert t.counters.tcp_closed_message_timeout == 0
            w.close()
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_oversize_message_gets_the_answer_then_close() -> None:
    async def run() -> None:
        heads: list[Any] = []
        t: SideTransport | None = None

        def on_too_large(head: bytes, tr: str, host: str, port: int, conn_id: int | None) -> None:
            heads.append((head, tr, host, conn_id))
            assert t is not None
            t.send(
                b"SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n",
                tr,
                host,
                port,
                conn_id,
            )

        t, got = await _with_transport(max_message_bytes=1024, on_too_large=on_too_large)
        try:
            r, w = await _connect(t.port)
            big = MSG.replace(b"Content-Length: 4", b"Content-Length: 100000")
            head = big[: big.index(b"\r\n\r\n") + 4]
            w.write(MSG + head)  # one good message, then the oversize one
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                for _ in range(10):  # the body keeps coming while we answer
                    w.write(b"x" * 10_000)
                    await w.drain()
            data = await _closed_by_peer(r)
            assert data == b"SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n"
            assert len(got) == 1 and got[0][0] == MSG  # the message before it was delivered
            assert len(heads) == 1 and heads[0][0] == head and heads[0][3] == got[0][4]
            await _until(lambda: t is not None and t.connection_count == 0)
            assert t.counters.tcp_too_large == 1
            w.close()
        finally:
            await t.close()

    asyncio.run(asyncio.wait_for(run(), 20))


def test_fd_budget() -> None:
    # enough: the configured cap stands
    want, cap = fd_budget(100_000, 2048, 2, 11_000)
    assert want == 2 * 2048 + 2 * 11_000 + FD_RESERVE and cap == 2048
    # a 1,024 limit with no media: what is above the reserve, shared by both listeners
    assert fd_budget(1024, 2048, 2, 0)[1] == (1024 - FD_RESERVE) // 2
    # media ranges larger than the limit: SIP TCP still gets no more than a quarter
    assert fd_budget(1024, 2048, 2, 11_000)[1] == (1024 - FD_RESERVE) // 4 // 2
    # TCP off: nothing to cap
    assert fd_budget(1024, 2048, 0, 11_000)[1] == 2048


# ---- config keys and the file-descriptor budget at start --------------------------------------


def _cfg(**sip: Any) -> Any:
    data = yaml.safe_load(resources.files("pcscf_alg").joinpath("default.yaml").read_text())
    data["sip"].update(sip)
    return parse_config(data, "t.yaml")


def test_front_door_config_defaults_and_validation() -> None:
    s = _cfg().sip
    assert (s.tcp_max_connections, s.tcp_max_connections_per_ip) == (2048, 32)
    assert (s.tcp_message_timeout_s, s.max_message_bytes) == (10.0, 32_768)
    # a short idle timeout alone keeps a valid config: the message deadline follows it
    assert _cfg(tcp_idle_timeout_s=5).sip.tcp_message_timeout_s == 5.0
    bad: list[tuple[dict[str, Any], str, str]] = [
        ({"tcp_max_connections": 0}, "sip.tcp_max_connections", "between"),
        ({"tcp_max_connections_per_ip": "x"}, "sip.tcp_max_connections_per_ip", "integer"),
        (
            {"tcp_max_connections": 10, "tcp_max_connections_per_ip": 11},
            "sip.tcp_max_connections_per_ip",
            "must not exceed sip.tcp_max_connections",
        ),
        ({"tcp_message_timeout_s": 0}, "sip.tcp_message_timeout_s", "between"),
        (
            {"tcp_idle_timeout_s": 5, "tcp_message_timeout_s": 6},
            "sip.tcp_message_timeout_s",
            "must not exceed sip.tcp_idle_timeout_s",
        ),
        ({"max_message_bytes": 65_507}, "sip.max_message_bytes", "between 1024 and 61440"),
        ({"max_message_bytes": 100}, "sip.max_message_bytes", "between"),
    ]
    for sip, key, reason in bad:
        with pytest.raises(ConfigError) as ei:
            _cfg(**sip)
        assert ei.value.file == "t.yaml" and ei.value.key == key, sip
        assert reason in ei.value.reason, (sip, ei.value.reason)


def _app_with_limits(monkeypatch: Any, soft: int, hard: int) -> tuple[Any, list[Any]]:
    from pcscf_alg import app as app_mod

    calls: list[Any] = []
    # the module app.py calls (patched where it is looked up: resource.getrlimit at call time)
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", lambda _which, v: calls.append(v))
    a = app_mod.App(_cfg())
    a.gateway = SimpleNamespace(
        config=SimpleNamespace(rtp_ports=(30000, 39999), msrp_ports=(40000, 40999))
    )
    return a, calls


def test_start_raises_the_open_file_limit_for_caps_and_media(monkeypatch: Any) -> None:
    a, calls = _app_with_limits(monkeypatch, 1024, 1_048_576)
    assert a._fit_fd_limit() == 2048
    want = 2 * 2048 + 2 * (10_000 + 1_000) + FD_RESERVE
    assert calls == [(want, 1_048_576)]


def test_start_lowers_the_tcp_cap_when_the_limit_cannot_hold_it(
    monkeypatch: Any, caplog: Any
) -> None:
    # the reproduced attack's setting: a 1,024 hard limit
    a, calls = _app_with_limits(monkeypatch, 1024, 1024)
    with caplog.at_level(logging.WARNING, logger="pcscf_alg.app"):
        cap = a._fit_fd_limit()
    assert calls == []  # nothing to raise
    assert cap == (1024 - FD_RESERVE) // 4 // 2
    assert "capped at" in caplog.text and "sip.tcp_max_connections=2048" in caplog.text
