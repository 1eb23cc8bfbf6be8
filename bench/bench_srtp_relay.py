"""SRTP->RTP relay benchmark: packets/s per core, loss, added latency.

Many 50 packets/s streams (20 ms voice packetisation, 172-byte RTP packets = 12 header + 160
G.711 payload, the shape of the baselines' media figures) are sent by a load generator to the
relay, which runs in its own process; the generator receives what comes out on the core side.
Every mode runs in the same invocation so the figures compare on the same (noisy, shared)
machine:

  direct      generator -> receiver, no relay: the generator's own latency/loss floor
  rtp         our relay in pass-through mode (RTP->RTP, no crypto), uvloop
  srtp        our relay, SRTP->RTP with libsrtp (e2ae UE->core direction), uvloop
  srtp-stock  the same on the stock asyncio loop
  rtp-srtp    our relay, RTP->SRTP (core->UE direction: protect), uvloop
  rtpengine   rtpengine (userspace) doing SDES SRTP->RTP, if installed

Capacity is CPU per packet in the relay process (user+sys time over the measured window),
expressed as packets/s per core: the load does not need to saturate the relay. Latency is
receive time minus send time (CLOCK_MONOTONIC, same host), reported as percentiles of the
relay mode and as "added" = relay percentile minus the direct percentile.

    .venv/bin/python bench/bench_srtp_relay.py --streams 400 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pylibsrtp

from pcscf_alg.agw import InProcessGateway
from pcscf_alg.agw.config import AgwConfig
from pcscf_alg.mediaplan import (
    Endpoint,
    MediaKind,
    MediaPlan,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
)

HOST = "127.0.0.1"
SUITE = "AES_CM_128_HMAC_SHA1_80"
PAYLOAD = 160
PTIME = 0.020


# ----------------------------------------------------------------------------- relay process


def _pin(cpu: int) -> None:
    """With --pin: generator on CPU 0, relay on CPU 1. Off by default: on a machine shared
    with other work, pinning lets a stranger's process starve the relay on its one core."""
    if (
        os.environ.get("BENCH_PIN")
        and (os.cpu_count() or 1) > 1
        and hasattr(os, "sched_setaffinity")
    ):
        os.sched_setaffinity(0, {cpu})


def relay_main(
    conn: Connection,
    mode: str,
    streams: int,
    ports: tuple[int, int],
    keys: list[tuple[bytes, bytes]],
    gen: tuple[int, int],
) -> None:
    _pin(1)
    use_uvloop = mode != "srtp-stock"
    if use_uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(_relay(conn, mode, streams, ports, keys, gen))


async def _relay(
    conn: Connection,
    mode: str,
    streams: int,
    ports: tuple[int, int],
    keys: list[tuple[bytes, bytes]],
    gen: tuple[int, int],
) -> None:
    cfg = AgwConfig(
        rtp_ports=ports,
        msrp_ports=(ports[1] + 1, ports[1] + 2),
        cert_dir=Path(tempfile.mkdtemp(prefix="agw-bench-")),
        media_timeout_s=3600,
    )
    gw = InProcessGateway(cfg)
    await gw.start()
    ue_port, core_port = gen
    access_ports, core_ports = [], []
    e2ae = mode != "rtp"
    for i in range(streams):
        cid = f"b{i}"
        [res] = await gw.reserve(cid, [StreamRequest(0, MediaKind.RTP)])
        rx, tx = keys[i]
        plan = StreamPlan(
            0,
            MediaKind.RTP,
            StreamMode.E2AE if e2ae else StreamMode.PASS,
            ue_remote=Endpoint(HOST, ue_port),
            core_remote=Endpoint(HOST, core_port),
            rx_key=SrtpKey(SUITE, rx) if e2ae else None,
            tx_key=SrtpKey(SUITE, tx) if e2ae else None,
        )
        await gw.configure(cid, MediaPlan((plan,)))
        access_ports.append(res.access.port)
        core_ports.append(res.core.port)
    conn.send((access_ports, core_ports))
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    def probe(due: float) -> None:
        # Event-loop lag: how late a 2 ms timer fires. Separates relay stalls from the network.
        now = loop.time()
        lags.append(now - due)
        loop.call_at(now + 0.002, probe, now + 0.002)

    loop.call_at(loop.time() + 0.002, probe, loop.time() + 0.002)
    done = loop.create_future()
    mark: dict[str, Any] = {}

    def on_cmd() -> None:
        cmd = conn.recv()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru.ru_utime + ru.ru_stime
        stats = gw.stats()
        relayed = sum(s.to_core_packets + s.to_ue_packets for s in stats)
        fails = sum(s.auth_failures + s.dropped for s in stats)
        if cmd == "start":
            mark.update(cpu=cpu, relayed=relayed, fails=fails)
        elif cmd == "stop":
            lags.sort()
            conn.send(
                {
                    "cpu": cpu - mark["cpu"],
                    "relayed": relayed - mark["relayed"],
                    "fails": fails - mark["fails"],
                    "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1e3 if lags else None,
                    "lag_max_ms": lags[-1] * 1e3 if lags else None,
                }
            )
            done.set_result(None)

    loop.add_reader(conn.fileno(), on_cmd)
    await done
    loop.remove_reader(conn.fileno())
    await gw.close()


# ----------------------------------------------------------------------------- rtpengine


def _bencode(x: Any) -> bytes:
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(_bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(_bencode(k) + _bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(x)


def _bdecode(b: bytes, i: int = 0) -> tuple[Any, int]:
    c = b[i : i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1 : j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while b[i : i + 1] != b"e":
            v, i = _bdecode(b, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        return {items[k].decode(): items[k + 1] for k in range(0, len(items), 2)}, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1 : j + 1 + n], j + 1 + n


class RtpEngine:
    """rtpengine in userspace (no kernel forwarding), driven over its ng control protocol."""

    def __init__(self, ports: tuple[int, int]) -> None:
        self.ng = ("127.0.0.1", 22299)
        exe = shutil.which("rtpengine")
        assert exe
        self.proc = subprocess.Popen(
            [
                exe,
                "--foreground",
                "--interface=127.0.0.1",
                f"--listen-ng={self.ng[0]}:{self.ng[1]}",
                "--table=-1",
                "--no-fallback",
                f"--port-min={ports[0]}",
                f"--port-max={ports[1]}",
                "--log-stderr",
                "--log-level=3",
                "--num-threads=1",
                "--delete-delay=0",
                "--timeout=3600",
                "--silent-timeout=3600",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _pin(1),
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)
        for _ in range(50):
            try:
                self.cmd({"command": "ping"})
                break
            except OSError:
                time.sleep(0.1)

    def cmd(self, d: dict[str, Any]) -> dict[str, Any]:
        cookie = secrets.token_hex(4).encode()
        self.sock.sendto(cookie + b" " + _bencode(d), self.ng)
        data, _ = self.sock.recvfrom(65536)
        return _bdecode(data.split(b" ", 1)[1])[0]  # type: ignore[no-any-return]

    def add_stream(self, i: int, rx_key: bytes, ue_port: int, core_port: int) -> tuple[int, int]:
        import base64
        import re

        call, ft, tt = f"call{i}", f"ue{i}", f"core{i}"
        k = base64.b64encode(rx_key).decode()
        offer = (
            f"v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {ue_port} RTP/SAVP 0\r\na=crypto:1 {SUITE} inline:{k}\r\n"
            "a=sendrecv\r\na=rtcp-mux\r\n"
        )
        r = self.cmd(
            {
                "command": "offer",
                "call-id": call,
                "from-tag": ft,
                "sdp": offer,
                "transport-protocol": "RTP/AVP",
                "flags": ["asymmetric"],
                "ICE": "remove",
                "rtcp-mux": ["demux"],
                "replace": ["origin"],
            }
        )
        assert r.get("result") == b"ok", r
        # The offer's rewritten SDP goes to the answerer: it names rtpengine's core-side port.
        core_side = int(re.search(rb"m=audio (\d+)", r["sdp"]).group(1))  # type: ignore[union-attr]
        answer = (
            f"v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {core_port} RTP/AVP 0\r\na=sendrecv\r\n"
        )
        r = self.cmd(
            {
                "command": "answer",
                "call-id": call,
                "from-tag": ft,
                "to-tag": tt,
                "sdp": answer,
                "ICE": "remove",
                "replace": ["origin"],
            }
        )
        assert r.get("result") == b"ok", r
        # The answer's rewritten SDP goes back to the UE: rtpengine's access-side port.
        access = int(re.search(rb"m=audio (\d+)", r["sdp"]).group(1))  # type: ignore[union-attr]
        return access, core_side

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(3)
        except Exception:
            self.proc.kill()
        self.sock.close()


# ----------------------------------------------------------------------------- generator


@dataclass
class Result:
    mode: str
    sent: int
    received: int
    cpu_s: float | None
    relayed: int | None
    fails: int | None
    lat_us: list[float]  # sorted
    out_size: int = 0  # size of a received packet: 172 = plain RTP, 182 = SRTP (80-bit tag)

    def pct(self, p: float) -> float:
        if not self.lat_us:
            return float("nan")
        return self.lat_us[min(len(self.lat_us) - 1, int(p / 100 * len(self.lat_us)))]

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else float("nan")

    @property
    def pps_per_core(self) -> float | None:
        if self.cpu_s is None or not self.relayed or self.cpu_s <= 0:
            return None
        return self.relayed / self.cpu_s


def build_packets(
    streams: int, count: int, keys: list[tuple[bytes, bytes]] | None, direction_up: bool
) -> list[list[bytes]]:
    out = []
    for s in range(streams):
        sess = None
        if keys is not None:
            key = keys[s][0] if direction_up else None
            if key is not None:
                sess = pylibsrtp.Session(
                    pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
                )
        pk = []
        for i in range(count):
            p = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * 160, s + 1) + bytes(PAYLOAD)
            pk.append(sess.protect(p) if sess is not None else p)
        out.append(pk)
    return out


# Linux constants (not exported by the socket module): kernel receive timestamps, so the
# generator's own lag in draining its socket does not count as relay latency.
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
_TS = struct.Struct("@qq")


def generate(
    packets: list[list[bytes]],
    dests: list[tuple[str, int]],
    send_sock: socket.socket,
    recv_sock: socket.socket,
    warmup: float,
    seconds: float,
    on_start: Any,
    on_stop: Any,
) -> tuple[int, int, list[float], int]:
    streams = len(packets)
    count = len(packets[0])
    sent_at = [[0] * count for _ in range(streams)]
    rx: list[tuple[int, int, int]] = []  # (stream, seq, kernel rx ns)
    sent = 0
    t0 = time.monotonic() + 0.2
    started = False
    start_index = 0
    end = t0 + warmup + seconds
    offsets = [s * PTIME / streams for s in range(streams)]
    nxt = [0] * streams
    recvmsg = recv_sock.recvmsg
    unpack_from = struct.unpack_from
    sendto = send_sock.sendto
    wall_ns = time.time_ns  # same clock as SO_TIMESTAMPNS (CLOCK_REALTIME)
    poller = select.epoll()
    poller.register(recv_sock.fileno(), select.EPOLLIN)
    size = 0
    s_cursor = 0  # streams are sent in phase order: a moving cursor over a sorted schedule

    def drain() -> None:
        nonlocal size
        while True:
            try:
                data, anc, _, _ = recvmsg(2048, 64)
            except BlockingIOError:
                return
            t = _TS.unpack(anc[0][2])
            (seq,) = unpack_from("!H", data, 2)
            (ssrc,) = unpack_from("!I", data, 8)
            rx.append((ssrc - 1, seq, t[0] * 1_000_000_000 + t[1]))
            size = len(data)

    while True:
        now = time.monotonic()
        if not started and now >= t0 + warmup:
            on_start()
            started = True
            start_index = s_cursor
            sent = 0
            first_seq = list(nxt)
        if now >= end:
            break
        drain()
        while True:
            s = s_cursor
            i = nxt[s]
            due = t0 + offsets[s] + i * PTIME
            if due > now or i >= count:
                break
            sent_at[s][i] = wall_ns()  # before: on loopback delivery happens inside sendto
            sendto(packets[s][i], dests[s])
            nxt[s] = i + 1
            s_cursor = (s + 1) % streams
            if started:
                sent += 1
        poller.poll(0.0005)
    on_stop()
    last_seq = list(nxt)
    deadline = time.monotonic() + 0.5  # packets in flight at the end still count
    while time.monotonic() < deadline:
        drain()
        time.sleep(0.005)
    drain()
    poller.close()
    del start_index
    lat = []
    received = 0
    for s, seq, t in rx:
        if 0 <= s < streams and first_seq[s] <= seq < last_seq[s]:
            received += 1
            lat.append((t - sent_at[s][seq]) / 1000)
    return sent, received, sorted(lat), size


def udp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # root may exceed net.core.rmem_max: room for seconds of load, no generator loss
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((HOST, port))
    s.setblocking(False)
    return s


def run_mode(mode: str, streams: int, warmup: float, seconds: float, port_base: int) -> Result:
    count = int((warmup + seconds + 1) / PTIME) + 10
    keys = [(secrets.token_bytes(30), secrets.token_bytes(30)) for _ in range(streams)]
    ue, core = udp(), udp()
    try:
        ports = (port_base, port_base + 4 * streams + 100)
        up = mode != "rtp-srtp"
        cpu_mark: dict[str, float] = {}
        if mode == "direct":
            pk = build_packets(streams, count, None, True)
            sent, got, lat, size = generate(
                pk,
                [core.getsockname()] * streams,
                ue,
                core,
                warmup,
                seconds,
                lambda: None,
                lambda: None,
            )
            return Result(mode, sent, got, None, None, None, lat, size)
        if mode == "rtpengine":
            eng = RtpEngine(ports)
            try:
                access = [
                    eng.add_stream(i, keys[i][0], ue.getsockname()[1], core.getsockname()[1])[0]
                    for i in range(streams)
                ]
                pk = build_packets(streams, count, keys, True)
                res: dict[str, Any] = {}

                def start() -> None:
                    cpu_mark["cpu"] = eng.cpu()

                def stop() -> None:
                    res["cpu"] = eng.cpu() - cpu_mark["cpu"]

                sent, got, lat, size = generate(
                    pk, [(HOST, p) for p in access], ue, core, warmup, seconds, start, stop
                )
                return Result(mode, sent, got, res["cpu"], got, None, lat, size)
            finally:
                eng.close()
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(
            target=relay_main,
            args=(child, mode, streams, ports, keys, (ue.getsockname()[1], core.getsockname()[1])),
        )
        proc.start()
        try:
            if not parent.poll(60):
                raise RuntimeError("relay did not start")
            access_ports, core_ports = parent.recv()
            if up:
                pk = build_packets(streams, count, keys, True)
                dests = [(HOST, p) for p in access_ports]
                src, dst = ue, core
            else:
                pk = build_packets(streams, count, None, False)
                dests = [(HOST, p) for p in core_ports]
                src, dst = core, ue
                # The UE side must be known: the relay sends to the UE's SDP address (ue).
            out: dict[str, Any] = {}

            def stop() -> None:
                parent.send("stop")
                out.update(parent.recv())

            sent, got, lat, size = generate(
                pk, dests, src, dst, warmup, seconds, lambda: parent.send("start"), stop
            )
            if not up:
                # Received packets are SRTP: seq/SSRC are in the clear header, so the
                # generator's bookkeeping works unchanged.
                pass
            print(
                f"# {mode}: relay loop lag p99 {out['lag_p99_ms']:.2f} ms, "
                f"max {out['lag_max_ms']:.2f} ms",
                file=sys.stderr,
            )
            return Result(mode, sent, got, out["cpu"], out["relayed"], out["fails"], lat, size)
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    finally:
        ue.close()
        core.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=4.0, help="measured time per round")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="direct,rtp,srtp,srtp-stock,rtp-srtp,rtpengine")
    ap.add_argument("--port-base", type=int, default=32000)
    ap.add_argument("--pin", action="store_true", help="generator on CPU 0, relay on CPU 1")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if args.pin:
        os.environ["BENCH_PIN"] = "1"
        _pin(0)
    if "rtpengine" in modes and shutil.which("rtpengine") is None:
        print("# rtpengine not installed: skipping that mode", file=sys.stderr)
        modes.remove("rtpengine")
    # Rounds interleave the modes, so a burst of load from other processes on this shared
    # machine hits all of them alike rather than one mode's whole run.
    results: dict[str, list[Result]] = {m: [] for m in modes}
    for rnd in range(args.rounds):
        for m in modes:
            r = run_mode(m, args.streams, args.warmup, args.seconds, args.port_base)
            results[m].append(r)
            print(
                f"# round {rnd} {m}: sent {r.sent} received {r.received} cpu {r.cpu_s} "
                f"out {r.out_size} B pps/core {r.pps_per_core}",
                file=sys.stderr,
            )
    report(results, args)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def report(results: dict[str, list[Result]], args: argparse.Namespace) -> None:
    """Capacity: the best round (other processes only ever add CPU time, as in the SIP parser
    bench); latency: the median over rounds of each percentile; loss: over all rounds."""
    offered = args.streams * 50
    print(
        f"offered load: {args.streams} streams x 50 pps = {offered} pps; {args.rounds} rounds "
        f"x {args.seconds:.0f} s per mode, interleaved; loop-back, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| mode | pkts/s per core (best) | vs rtp relay | loss | p50 µs | p99 µs | p99.9 µs "
        "| added p50 µs | added p99 µs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def best(m: str) -> float | None:
        vals = [r.pps_per_core for r in results.get(m, []) if r.pps_per_core]
        return max(vals) if vals else None

    def pct(m: str, p: float) -> float | None:
        rs = results.get(m)
        return _median([r.pct(p) for r in rs]) if rs else None

    def f(x: float | None, spec: str = ",.0f") -> str:
        return "—" if x is None else format(x, spec)

    rows = {}
    base = best("rtp")
    for m, rs in results.items():
        ppc = best(m)
        ratio = ppc / base if ppc and base else None
        sent = sum(r.sent for r in rs)
        loss = 1 - sum(r.received for r in rs) / sent if sent else float("nan")
        p50, p99, p999 = pct(m, 50), pct(m, 99), pct(m, 99.9)
        d50, d99 = pct("direct", 50), pct("direct", 99)
        add50 = p50 - d50 if m != "direct" and p50 is not None and d50 is not None else None
        add99 = p99 - d99 if m != "direct" and p99 is not None and d99 is not None else None
        rows[m] = {
            "pps_per_core": ppc,
            "ratio_vs_rtp": ratio,
            "loss": loss,
            "p50": p50,
            "p99": p99,
            "p999": p999,
            "added_p50": add50,
            "added_p99": add99,
            "all_pps_per_core": [r.pps_per_core for r in rs],
        }
        print(
            f"| {m} | {f(ppc)} | {f(ratio, '.2f')} | {loss:.3%} | {f(p50)} | "
            f"{f(p99)} | {f(p999)} | {f(add50)} | {f(add99)} |"
        )
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
