"""A real `redis-server` for the tests: its own process on a free 127.0.0.1 port, no persistence,
stopped by its PID. Restartable on the same port (an outage and its recovery).

    with redis_server(tmp_path) as r:      # or RedisServer(...).start() / .stop()
        cfg = {"backend": "redis", "url": r.url}
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.daemon import free_port


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM, also_tcp=False))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start redis-server (no RDB, no AOF: a restart comes back empty) and wait for PONG."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError(
                "redis-server is not installed: run `make test` (Debian's redis-server)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = self.workdir / f"redis-{self.starts}.log"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start:\n{_tail(log)}")
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server not ready in {timeout}s:\n{_tail(log)}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM by PID, bounded wait, then SIGKILL."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    def client(self) -> Any:
        """A synchronous redis-py client on this server (the test's view of Redis)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def keys(self, pattern: str = "*") -> list[str]:
        with contextlib.closing(self.client()) as c:
            return sorted(k.decode() for k in c.scan_iter(match=pattern, count=1000))


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    r = RedisServer(workdir)
    r.start()
    try:
        yield r
    finally:
        r.stop()
