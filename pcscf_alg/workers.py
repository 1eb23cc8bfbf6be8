"""Worker processes: `sip.workers: N` (README "Worker processes", docs/design.md §2.4).

The daemon is one Python process on one event loop; N of them share the load. The parent
(`Supervisor`) binds nothing itself: it starts N workers (`pcscf-alg run --config FILE
--worker-index i`, a fresh interpreter each, not a fork of a process holding a loop), restarts
one that dies, forwards SIGTERM/SIGINT (stop) and SIGHUP (reload) to them and exits when they
have stopped.

How every message reaches the process that holds its state:

- **Shared listeners** for initial requests: every worker binds the access and the core
  listener (UDP and TCP) with SO_REUSEPORT; the kernel hands each datagram and each new
  connection to one of them by a hash of the addresses. A UE's datagrams from one source
  port therefore keep reaching the same worker while the set of workers does not change.
- **Own ports** for everything that follows: worker i also listens on `worker_ports.access +
  i` and `worker_ports.core + i` and names those in its Via (responses), its Record-Route
  (in-dialog requests, both ways) and its Path (terminating requests for the UEs it
  registered: the S-CSCF routes them to the worker's own core port).
- **Registrations are shared** (`registration.store.backend: redis`, required with N > 1): a
  worker the kernel hands an originating or terminating request for a UE another worker
  registered finds the binding all the same.
- Towards UEs, UDP leaves from the shared access port (the address the UE registered with, so
  NAT bindings and the UE's idea of its P-CSCF hold); a response leaves from the socket its
  request arrived on (RFC 3581 §4). Towards the core, requests leave from the own core port.

Each worker gets a disjoint slice of `agw.rtp_ports` and `agw.msrp_ports` (the range cut in
N equal parts) and, with `admin.enabled`, its own admin endpoint on `admin.port + i`.

What a worker's death loses (its memory): the transactions and calls it was handling (their
gateway ports close with the process; the peers' retransmissions and the media timeout end
them), its TCP connections (a UE registered over one must register again), its counters. Not
the registrations: they are in Redis. The replacement binds the same own ports, so the Path
and Record-Route entries it named stay valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pcscf_alg import sdnotify
from pcscf_alg.config import Config, SipConfig, load_config, load_yaml, parse_config, same_host
from pcscf_alg.errors import ConfigError
from pcscf_alg.mediaplan import Side

if TYPE_CHECKING:
    from pcscf_alg.agw.config import AgwConfig

log = logging.getLogger(__name__)

# Environment of a worker started by the supervisor: its private directory (the config
# snapshot and the notification socket) and the supervisor's PID.
ENV_DIR = "PCSCF_ALG_WORKER_DIR"
ENV_PARENT = "PCSCF_ALG_SUPERVISOR_PID"
SNAPSHOT = "config.yaml"
NOTIFY = "notify"

# Restart backoff against crash loops: the first restart after BACKOFF_FIRST_S (systemd's
# RestartSec default is 100 ms; a little more lets a port the dead worker held be released),
# doubling per consecutive failure up to BACKOFF_MAX_S. A worker that stayed up STABLE_S after
# it was ready ends the streak.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 30.0
STABLE_S = 30.0
# The first start: every worker must be ready within this (the Redis load is bounded by
# registration.store.start_timeout_s, the gateway's certificate takes a moment) or the daemon
# gives up and exits.
START_TIMEOUT_S = 60.0
# SIGTERM to the workers, then SIGKILL to what is left after this long.
STOP_TIMEOUT_S = 15.0
# Worker side: how often the parent is checked for (backs up PR_SET_PDEATHSIG).
PARENT_POLL_S = 1.0
# sd_notify datagrams from the workers are short ("READY=1\nSTATUS=serving").
NOTIFY_MAX_BYTES = 4096


# ------------------------------------------------------------------------------ one worker
@dataclass(frozen=True)
class WorkerSlot:
    """Worker `index` of `count`: what it binds and names."""

    index: int
    count: int

    def own(self, sip: SipConfig) -> dict[Side, tuple[str, int]]:
        """This worker's own address per side: named in its Via, Record-Route and Path."""
        b = sip.worker_port_bases()
        return {
            Side.ACCESS: (sip.access.host, b.access + self.index),
            Side.CORE: (sip.core.host, b.core + self.index),
        }

    def all_own(self, sip: SipConfig) -> list[tuple[str, int]]:
        """Every worker's own addresses: all of them are ours (Route, Request-URI)."""
        return [a for i in range(self.count) for a in WorkerSlot(i, self.count).own(sip).values()]

    def admin_port(self, port: int) -> int:
        return port + self.index


def split_range(lo: int, hi: int, index: int, count: int, *, pairs: bool) -> tuple[int, int] | None:
    """Slice `index` of `count` equal, disjoint slices of [lo, hi]; with `pairs` each slice
    starts even and holds whole even/odd RTP pairs (RFC 3550 §11). None: too small a range."""
    if pairs:
        first = lo + (lo & 1)
        per = ((hi - first + 1) // 2) // count
        if per < 1:
            return None
        start = first + 2 * per * index
        return start, start + 2 * per - 1
    per = (hi - lo + 1) // count
    if per < 1:
        return None
    start = lo + per * index
    return start, start + per - 1


def agw_slice(agw: AgwConfig, slot: WorkerSlot, file: str) -> AgwConfig:
    """The gateway config of worker `slot`: its own slice of the RTP and MSRP ranges, so that
    two workers never draw the same media port."""
    rtp = split_range(*agw.rtp_ports, slot.index, slot.count, pairs=True)
    msrp = split_range(*agw.msrp_ports, slot.index, slot.count, pairs=False)
    if rtp is None:
        raise ConfigError(
            file,
            "sip.workers",
            f"agw.rtp_ports {agw.rtp_ports[0]}..{agw.rtp_ports[1]} holds fewer RTP port pairs "
            f"than the {slot.count} workers (one slice each)",
        )
    if msrp is None:
        raise ConfigError(
            file,
            "sip.workers",
            f"agw.msrp_ports {agw.msrp_ports[0]}..{agw.msrp_ports[1]} holds fewer ports than "
            f"the {slot.count} workers (one slice each)",
        )
    return dataclasses.replace(agw, rtp_ports=rtp, msrp_ports=msrp)


def check_config(cfg: Config) -> None:
    """What `sip.workers` > 1 asks of the `agw:` section (config.py checks the rest): each
    worker's slice of the media ranges is not empty, and no worker's own SIP port lies in a
    media range on the same address. `check-config` and `run` call it."""
    sip = cfg.sip
    if sip.workers <= 1:
        return
    from pcscf_alg.agw.config import parse_agw_config

    agw = parse_agw_config(cfg.agw, cfg.file)
    agw_slice(agw, WorkerSlot(0, sip.workers), cfg.file)
    b = sip.worker_port_bases()
    n = sip.workers
    own = {
        "access": (sip.access.host, range(b.access, b.access + n), agw.access_host),
        "core": (sip.core.host, range(b.core, b.core + n), agw.core_host),
    }
    for side, (host, ports, agw_host) in own.items():
        if not same_host(host, agw_host):
            continue
        for name, (lo, hi) in (("rtp_ports", agw.rtp_ports), ("msrp_ports", agw.msrp_ports)):
            if ports.start <= hi and lo <= ports.stop - 1:
                raise ConfigError(
                    cfg.file,
                    f"sip.worker_ports.{side}",
                    f"worker {side} ports {ports.start}..{ports.stop - 1} overlap "
                    f"agw.{name} {lo}..{hi}",
                )


def worker_config(path: str, slot: WorkerSlot) -> Config:
    """The config a worker runs with. Started by the supervisor: the snapshot it took at start
    (so that a replacement binds and names what its siblings do, even if the file changed),
    with the live keys of the file as it is now applied as a reload would (pcscf_alg/reload.py);
    an unreadable or invalid file leaves the snapshot. Started by hand: the file."""
    from pcscf_alg.reload import plan_reload

    folder = os.environ.get(ENV_DIR)
    if not folder:
        cfg = load_config(path)
    else:
        snap = parse_config(load_yaml(str(Path(folder) / SNAPSHOT)), path)
        try:
            cfg = plan_reload(snap, load_config(path)).config
        except ConfigError as e:
            log.warning(
                "worker %d: %s; running with the config the daemon started with", slot.index, e
            )
            cfg = snap
    if cfg.sip.workers != slot.count or not 0 <= slot.index < slot.count or slot.count < 2:
        raise ConfigError(
            path,
            "sip.workers",
            f"worker index {slot.index} does not fit {cfg.sip.workers} workers",
        )
    return cfg


def watch_parent(stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Worker side: stop when the supervisor is gone (SIGKILLed, crashed), so that no orphan
    keeps the shared ports. PR_SET_PDEATHSIG delivers SIGTERM at once on Linux; a poll of the
    parent PID backs it up."""
    parent = os.environ.get(ENV_PARENT)
    if not parent or not parent.isdigit():
        return None
    ppid = int(parent)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != ppid:
        stop.set()  # the parent died before the prctl took effect
        return None

    async def poll() -> None:
        while not stop.is_set():
            await asyncio.sleep(PARENT_POLL_S)
            if os.getppid() != ppid:
                log.warning("the supervisor (pid %d) is gone: stopping", ppid)
                stop.set()

    return asyncio.get_running_loop().create_task(poll())


# ------------------------------------------------------------------------------ supervisor
def restart_delay(failures: int, up: float | None) -> tuple[float, int]:
    """(seconds before restarting a worker that died, its new failure streak). `failures`:
    deaths in a row so far; `up`: how long it served after it was ready (None: never ready).
    A worker that served STABLE_S ends the streak: one crash an hour restarts at once, a
    crash loop backs off up to BACKOFF_MAX_S."""
    if up is not None and up >= STABLE_S:
        failures = 0
    delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * (2 ** min(failures, 16)))
    return delay, failures + 1


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_at: float | None = None
    failures: int = 0  # consecutive deaths without STABLE_S of service
    restarts: int = 0
    reloading: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """Starts, watches and stops the worker processes (module docstring)."""

    def __init__(self, cfg: Config, log_level: str | None = None) -> None:
        self.path = cfg.file
        self.count = cfg.sip.workers
        self.log_level = log_level
        self.workers = [_Worker(i) for i in range(self.count)]
        self.dir = Path(tempfile.mkdtemp(prefix="pcscf-alg-"))  # mode 0700
        self.stopping = asyncio.Event()
        self._notify: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cfg = cfg  # replaced by the snapshot's, read once more at start

    # -- set-up --
    def _snapshot(self) -> None:
        """The config every worker starts from, read and validated once (module docstring of
        `worker_config`)."""
        text = Path(self.path).read_text(encoding="utf-8")
        cfg = parse_config(yaml.safe_load(text), self.path)
        if cfg.sip.workers != self.count:
            raise ConfigError(self.path, "sip.workers", "changed while the daemon was starting")
        snap = self.dir / SNAPSHOT
        snap.write_text(text, encoding="utf-8")  # in the 0700 directory
        snap.chmod(0o600)
        self.cfg = cfg

    def _probe_ports(self) -> None:
        """The shared listeners must be free: bound here once *without* SO_REUSEPORT (and
        released), which fails if anything holds them, even a socket with SO_REUSEPORT.
        Without this, a second daemon of the same user with the same ports would silently
        join the first one's SO_REUSEPORT group and take part of its traffic."""
        s = self.cfg.sip
        for key, lst in (("sip.access", s.access), ("sip.core", s.core)):
            family = socket.AF_INET6 if ":" in lst.host else socket.AF_INET
            kinds = [k for k, on in ((socket.SOCK_DGRAM, s.udp), (socket.SOCK_STREAM, s.tcp)) if on]
            for kind in kinds:
                with socket.socket(family, kind) as probe:
                    try:
                        probe.bind((lst.host, lst.port))
                    except OSError as e:
                        what = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                        raise ConfigError(
                            self.path, key, f"{what} {lst.host}:{lst.port}: {e.strerror}"
                        ) from None

    async def _prepare_gateway(self) -> None:
        """Create (or renew) the gateway's certificate once, before the workers start: they
        share it (one fingerprint in every SDP), and N workers creating it at once could mix
        one's key with another's certificate."""
        from pcscf_alg.agw.certs import load_or_create
        from pcscf_alg.agw.config import parse_agw_config

        await asyncio.to_thread(load_or_create, parse_agw_config(self.cfg.agw, self.path).cert_dir)

    def _open_notify(self) -> None:
        """An AF_UNIX datagram socket in the private directory: each worker's sd_notify
        messages (READY=1, RELOADING=1, STOPPING=1) reach it, with the sender's PID from the
        kernel (SO_PASSCRED), so that no other process can pose as a worker."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        s.bind(str(self.dir / NOTIFY))
        s.setblocking(False)
        self._notify = s
        asyncio.get_running_loop().add_reader(s.fileno(), self._on_notify)

    def _on_notify(self) -> None:
        assert self._notify is not None
        creds = struct.calcsize("3i")
        while True:
            try:
                data, anc, _, _ = self._notify.recvmsg(NOTIFY_MAX_BYTES, socket.CMSG_SPACE(creds))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("worker notification socket: %s", e)
                return
            pid = None
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", value[:creds])[0]
            w = next((w for w in self.workers if pid is not None and w.pid == pid), None)
            if w is None:
                continue  # not one of our workers: ignored
            fields = dict(
                line.split("=", 1)
                for line in data.decode("utf-8", "replace").split("\n")
                if "=" in line
            )
            if fields.get("READY") == "1":
                if not w.ready.is_set():
                    w.ready_at = time.monotonic()
                    w.ready.set()
                if w.reloading:
                    w.reloading = False
                    self._reload_done()

    # -- workers --
    async def _spawn(self, w: _Worker) -> None:
        env = dict(os.environ)
        env[ENV_DIR] = str(self.dir)
        env[ENV_PARENT] = str(os.getpid())
        env["NOTIFY_SOCKET"] = str(self.dir / NOTIFY)
        args = [sys.executable, "-m", "pcscf_alg", "run", "--config", self.path]
        args += ["--worker-index", str(w.index)]
        if self.log_level:
            args += ["--log-level", self.log_level.lower()]
        w.ready = asyncio.Event()
        w.ready_at = None
        w.reloading = False
        w.proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdin=asyncio.subprocess.DEVNULL
        )
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    def _watch(self, w: _Worker) -> None:
        task = asyncio.get_running_loop().create_task(self._watch_one(w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_one(self, w: _Worker) -> None:
        """Wait for the worker to exit; unless stopping, start its replacement after the
        backoff."""
        while True:
            proc = w.proc
            assert proc is not None
            rc = await proc.wait()
            if self.stopping.is_set():
                return
            up = time.monotonic() - w.ready_at if w.ready_at is not None else None
            delay, w.failures = restart_delay(w.failures, up)
            how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
            log.error(
                "worker %d (pid %d) died (%s): its calls and transactions are lost; "
                "restarting it in %.1fs",
                w.index,
                proc.pid,
                how,
                delay,
            )
            if w.reloading:
                w.reloading = False
                self._reload_done()
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return  # asked to stop during the backoff
            except TimeoutError:
                pass
            try:
                await self._spawn(w)
            except OSError as e:
                log.error("worker %d: cannot start: %s", w.index, e)
                continue
            w.restarts += 1

    # -- signals --
    def reload(self) -> None:
        """SIGHUP: every worker re-reads the config file (App.reload); systemd hears
        RELOADING=1 now and READY=1 once every worker has reported its reload done."""
        sdnotify.reloading()
        live = [w for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for w in live:
            w.reloading = True
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        log.info("reload: SIGHUP forwarded to %d worker(s)", len(live))
        self._reload_done()

    def _reload_done(self) -> None:
        if not any(w.reloading for w in self.workers):
            sdnotify.notify("READY=1")

    async def _stop_workers(self) -> bool:
        """SIGTERM to every worker, SIGKILL after STOP_TIMEOUT_S. True: all exited 0."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in procs:
            try:
                rc = await asyncio.wait_for(p.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.error("worker pid %d did not stop in %.0fs: killed", p.pid, STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
                clean = False
                continue
            clean = clean and rc == 0
        return clean

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        # Until every worker is up, a reload would reach only some: held back (logged).
        loop.add_signal_handler(signal.SIGHUP, lambda: log.warning("SIGHUP before ready: ignored"))
        try:
            self._snapshot()
            self._probe_ports()
            await self._prepare_gateway()
            self._open_notify()
            for w in self.workers:
                await self._spawn(w)
            if not await self._wait_ready():
                await self._stop_workers()
                return 0 if self.stopping.is_set() else 1  # asked to stop, or failed
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            for w in self.workers:
                self._watch(w)
            log.info(
                "pcscf-alg up with %d workers (pids %s)",
                self.count,
                ", ".join(str(w.pid) for w in self.workers),
            )
            print("pcscf-alg ready", flush=True)
            sdnotify.notify(f"READY=1\nSTATUS=serving with {self.count} workers")
            await self.stopping.wait()
            log.info("shutting down %d workers", self.count)
            sdnotify.notify("STOPPING=1")
            for task in list(self._tasks):
                task.cancel()
            return 0 if await self._stop_workers() else 1
        finally:
            if self._notify is not None:
                loop.remove_reader(self._notify.fileno())
                self._notify.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    async def _wait_ready(self) -> bool:
        """Every worker ready within START_TIMEOUT_S; False (logged) when one exits first or
        the time is up, or when asked to stop."""
        waits = {asyncio.ensure_future(w.ready.wait()): w for w in self.workers}
        exits = {
            asyncio.ensure_future(w.proc.wait()): w  # type: ignore[union-attr]
            for w in self.workers
        }
        stop = asyncio.ensure_future(self.stopping.wait())
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while waits:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error(
                        "worker(s) %s not ready in %.0fs: stopping",
                        ", ".join(str(w.index) for w in waits.values()),
                        START_TIMEOUT_S,
                    )
                    return False
                done, _ = await asyncio.wait(
                    [*waits, *exits, stop], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done:
                    return False
                for f in done:
                    if f in exits:
                        w = exits[f]
                        log.error(
                            "worker %d exited at start (status %s): stopping",
                            w.index,
                            f.result(),
                        )
                        return False
                    waits.pop(f, None)
            return True
        finally:
            for f in [*waits, *exits, stop]:
                f.cancel()


def supervise(cfg: Config, log_level: str | None = None) -> int:
    """`pcscf-alg run` with `sip.workers` > 1: run the supervisor until SIGTERM/SIGINT."""
    from pcscf_alg.errors import GatewayError

    try:
        return asyncio.run(Supervisor(cfg, log_level).run())
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (GatewayError, OSError) as e:
        print(f"pcscf-alg: cannot start: {e}", file=sys.stderr)
        return 1


__all__ = [
    "Supervisor",
    "WorkerSlot",
    "agw_slice",
    "check_config",
    "restart_delay",
    "split_range",
    "supervise",
    "watch_parent",
    "worker_config",
]
