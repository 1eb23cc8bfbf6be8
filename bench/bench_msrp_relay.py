"""MSRP relay benchmark: TLS<->TCP throughput and relay CPU per byte, with baselines.

A "UE" sends MSRP SEND requests (16 KiB chunks, RFC 4975 §7.1) through the gateway to a "core"
TCP peer (upload), then the core peer sends the same volume back (download). The relay runs
in its own process (pinned to CPU 1 when there are two; the peers share CPU 0). All modes run
in the same invocation:

  direct       UE -> core peer over plain TCP, no relay: the peers' own ceiling
  relay-tcp    our relay in pass-through mode, TCP <-> TCP (the plain-relay baseline)
  relay-tls    our relay, e2ae: TLS (pyOpenSSL, memory BIOs) <-> TCP, CEMA (bytes unchanged)
  relay-aware  the same plus MSRP parsing and To-Path/From-Path rewriting (non-CEMA)

Reported: wall-clock MB/s per direction, and relay MB per CPU-second (user+sys of the relay
process) = "MB/s per core".

    .venv/bin/python bench/bench_msrp_relay.py --mbytes 128
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcscf_alg.agw import InProcessGateway
from pcscf_alg.agw.certs import GatewayCertificate, load_or_create
from pcscf_alg.agw.config import AgwConfig
from pcscf_alg.mediaplan import (
    Endpoint,
    MediaKind,
    MediaPlan,
    MsrpMode,
    StreamMode,
    StreamPlan,
    StreamRequest,
)

HOST = "127.0.0.1"
CHUNK = 16 * 1024
UE_PATH = "msrps://127.0.0.1:50000/ue1;tcp"
AGW_A = "msrps://127.0.0.1:40000/agwA;tcp"
CORE_PATH = "msrp://127.0.0.1:2855/peer9;tcp"
AGW_C = "msrp://127.0.0.1:40001/agwC;tcp"


def _pin(cpu: int) -> None:
    """With --pin: peers on CPU 0, relay on CPU 1 (off by default on a shared machine)."""
    if (
        os.environ.get("BENCH_PIN")
        and (os.cpu_count() or 1) > 1
        and hasattr(os, "sched_setaffinity")
    ):
        os.sched_setaffinity(0, {cpu})


def message(i: int, to: str, frm: str) -> bytes:
    body = bytes((i + k) & 0xFF for k in range(256)) * (CHUNK // 256)
    tid = f"t{i:07d}"
    return (
        (
            f"MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\nMessage-ID: m{i}\r\n"
            f"Byte-Range: {i * CHUNK + 1}-{(i + 1) * CHUNK}/*\r\nContent-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n-------{tid}+\r\n".encode()
    )


# ----------------------------------------------------------------------------- relay process


def relay_main(
    conn: Connection, mode: str, ports: tuple[int, int], ue_cert_dir: str, core_port: int
) -> None:
    _pin(1)
    import uvloop

    uvloop.install()
    asyncio.run(_relay(conn, mode, ports, ue_cert_dir, core_port))


async def _relay(
    conn: Connection, mode: str, ports: tuple[int, int], ue_cert_dir: str, core_port: int
) -> None:
    cfg = AgwConfig(
        rtp_ports=(ports[0], ports[0] + 1),
        msrp_ports=(ports[0] + 2, ports[1]),
        cert_dir=Path(tempfile.mkdtemp(prefix="agw-bench-")),
    )
    gw = InProcessGateway(cfg)
    await gw.start()
    [res] = await gw.reserve("m", [StreamRequest(0, MediaKind.MSRP)])
    ue = load_or_create(Path(ue_cert_dir))
    aware = mode == "relay-aware"
    plan = StreamPlan(
        0,
        MediaKind.MSRP,
        StreamMode.PASS if mode == "relay-tcp" else StreamMode.E2AE,
        core_remote=Endpoint(HOST, core_port),
        ue_fingerprint=(ue.fingerprint,),
        msrp_mode=MsrpMode.AWARE if aware else MsrpMode.AGNOSTIC,
        ue_path=UE_PATH if aware else None,
        agw_access_path=AGW_A if aware else None,
        core_path=CORE_PATH if aware else None,
        agw_core_path=AGW_C if aware else None,
    )
    await gw.configure("m", MediaPlan((plan,)))
    conn.send(res.access.port)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    mark = [0.0]

    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    def on_cmd() -> None:
        cmd = conn.recv()
        now = cpu()
        if cmd == "mark":
            conn.send(now - mark[0])
            mark[0] = now
        elif cmd == "start":
            mark[0] = now
        elif cmd == "stop":
            done.set_result(None)

    loop.add_reader(conn.fileno(), on_cmd)
    await done
    loop.remove_reader(conn.fileno())
    await gw.close()


# ----------------------------------------------------------------------------- peers


@dataclass
class Result:
    mode: str
    up_mb_s: float
    down_mb_s: float
    up_mb_per_cpu_s: float | None
    down_mb_per_cpu_s: float | None


async def transfer(
    mode: str,
    port: int,
    core_conn: asyncio.Future[Any],
    ue_cert: GatewayCertificate,
    total: int,
    cmd: Any,
) -> tuple[float, float, float | None, float | None]:
    tls = mode in ("relay-tls", "relay-aware")
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(ue_cert.cert_path, ue_cert.key_path)
    r, w = await asyncio.open_connection(HOST, port, ssl=ctx)
    aware = mode == "relay-aware"
    up_msg = b"".join(message(i, AGW_A if aware else CORE_PATH, UE_PATH) for i in range(64))
    down_msg = b"".join(message(i, AGW_C if aware else UE_PATH, CORE_PATH) for i in range(64))
    # What arrives after the rewrite (application-aware mode changes the path headers).
    up_out = b"".join(message(i, CORE_PATH, AGW_C if aware else UE_PATH) for i in range(64))
    down_out = b"".join(message(i, UE_PATH, AGW_A if aware else CORE_PATH) for i in range(64))
    n = max(1, total // len(up_msg))
    # Warm up: the core connection exists only after the UE's TLS is up (TS 23.334 order).
    w.write(up_msg)
    cr, cw = await asyncio.wait_for(core_conn, 10)
    assert await cr.readexactly(len(up_out)) == up_out
    cmd("start")

    async def pump(writer: asyncio.StreamWriter, msg: bytes) -> None:
        for _ in range(n):
            writer.write(msg)
            await writer.drain()

    async def sink(reader: asyncio.StreamReader, size: int) -> None:
        left = size
        while left:
            data = await reader.read(min(left, 1 << 20))
            if not data:
                raise ConnectionError("closed early")
            left -= len(data)

    t = time.perf_counter()
    await asyncio.gather(pump(w, up_msg), sink(cr, n * len(up_out)))
    up_s = time.perf_counter() - t
    up_cpu = cmd("mark")
    t = time.perf_counter()
    await asyncio.gather(pump(cw, down_msg), sink(r, n * len(down_out)))
    down_s = time.perf_counter() - t
    down_cpu = cmd("mark")
    w.close()
    cw.close()
    mb = n * len(up_msg) / 1e6
    return (
        mb / up_s,
        mb / down_s,
        (mb / up_cpu if up_cpu else None),
        (mb / down_cpu if down_cpu else None),
    )


async def run_mode(mode: str, total: int, port_base: int, ue_cert: GatewayCertificate) -> Result:
    loop = asyncio.get_running_loop()
    core_conn: asyncio.Future[Any] = loop.create_future()

    async def on_core(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not core_conn.done():
            core_conn.set_result((r, w))

    srv = await asyncio.start_server(on_core, HOST, 0)
    core_port = srv.sockets[0].getsockname()[1]
    try:
        if mode == "direct":
            up, down, _, _ = await transfer(
                mode, core_port, core_conn, ue_cert, total, lambda c: None
            )
            return Result(mode, up, down, None, None)
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(
            target=relay_main,
            args=(
                child,
                mode,
                (port_base, port_base + 20),
                str(ue_cert.cert_path.parent),
                core_port,
            ),
        )
        proc.start()
        try:
            port = await loop.run_in_executor(
                None, lambda: parent.recv() if parent.poll(60) else None
            )
            if port is None:
                raise RuntimeError("relay did not start")

            def cmd(c: str) -> Any:
                parent.send(c)
                return parent.recv() if c == "mark" else None

            up, down, upc, downc = await transfer(mode, port, core_conn, ue_cert, total, cmd)
            parent.send("stop")
            return Result(mode, up, down, upc, downc)
        finally:
            await loop.run_in_executor(None, proc.join, 10)
            if proc.is_alive():
                proc.kill()
    finally:
        srv.close()


async def amain(args: argparse.Namespace) -> dict[str, Result]:
    ue_cert = load_or_create(Path(tempfile.mkdtemp(prefix="ue-bench-")))
    out: dict[str, Result] = {}
    # Interleaved rounds; per mode and figure the best round is kept (other processes on this
    # shared machine only ever slow a run down).
    for _ in range(args.rounds):
        for m in args.modes.split(","):
            r = await asyncio.wait_for(
                run_mode(m, args.mbytes * 1_000_000, args.port_base, ue_cert), 300
            )
            print(f"# {m}: {r}", file=sys.stderr)
            prev = out.get(m)
            out[m] = (
                r
                if prev is None
                else Result(
                    m,
                    max(prev.up_mb_s, r.up_mb_s),
                    max(prev.down_mb_s, r.down_mb_s),
                    _max(prev.up_mb_per_cpu_s, r.up_mb_per_cpu_s),
                    _max(prev.down_mb_per_cpu_s, r.down_mb_per_cpu_s),
                )
            )
    return out


def _max(a: float | None, b: float | None) -> float | None:
    vals = [x for x in (a, b) if x is not None]
    return max(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mbytes", type=int, default=128, help="MB per direction per mode")
    ap.add_argument("--modes", default="direct,relay-tcp,relay-tls,relay-aware")
    ap.add_argument("--port-base", type=int, default=36000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pin", action="store_true", help="peers on CPU 0, relay on CPU 1")
    args = ap.parse_args()
    if args.pin:
        os.environ["BENCH_PIN"] = "1"
        _pin(0)
    import uvloop

    results = uvloop.run(amain(args))
    base = results.get("relay-tcp")
    print(
        f"{args.mbytes} MB each way per mode, 16 KiB MSRP chunks, best of {args.rounds} "
        f"interleaved rounds, loop-back, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| mode | up MB/s | down MB/s | relay up MB per CPU-s | relay down MB per CPU-s "
        "| CPU-s ratio vs relay-tcp (up / down) |"
    )
    print("|---|---:|---:|---:|---:|---:|")

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:,.0f}"

    for m, r in results.items():
        ratio = "—"
        if (
            base
            and base.up_mb_per_cpu_s
            and r.up_mb_per_cpu_s
            and base.down_mb_per_cpu_s
            and r.down_mb_per_cpu_s
        ):
            ratio = (
                f"{base.up_mb_per_cpu_s / r.up_mb_per_cpu_s:.2f} / "
                f"{base.down_mb_per_cpu_s / r.down_mb_per_cpu_s:.2f}"
            )
        print(
            f"| {m} | {f(r.up_mb_s)} | {f(r.down_mb_s)} | {f(r.up_mb_per_cpu_s)} | "
            f"{f(r.down_mb_per_cpu_s)} | {ratio} |"
        )


if __name__ == "__main__":
    main()
