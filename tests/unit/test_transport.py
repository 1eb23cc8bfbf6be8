"""The asyncio edge: UDP and TCP listeners, framing over a real socket, responses on the same
connection, keep-alive pongs, connection reuse and idle cleanup. Loopback only, bounded."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pcscf_alg.transport import SideTransport

MSG = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _with_transport(idle: float = 300.0) -> tuple[SideTransport, list[Any]]:
    got: list[Any] = []
    t = SideTransport("test", "127.0.0.1", free_port(), lambda *a: got.append(a), idle_timeout=idle)
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
