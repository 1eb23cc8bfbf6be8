"""A real rtpengine for the tests (Debian's rtpengine-daemon; `make test` installs it): userspace
only (`--table=-1`, no kernel module), on a free loopback ng port and a media port window of its
own, stopped by PID. Also a tiny synchronous ng client for the tests' own look-ups."""

from __future__ import annotations

import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcscf_alg.agw import bencode
from tests.e2e.daemon import free_port


@dataclass
class Rtpengine:
    proc: subprocess.Popen[bytes]
    ng_port: int
    log_path: Path

    @property
    def ng(self) -> str:
        return f"127.0.0.1:{self.ng_port}"

    def request(self, message: dict[str, Any], timeout: float = 2.0) -> dict[bytes, Any]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            cookie = secrets.token_hex(6).encode()
            s.sendto(cookie + b" " + bencode.encode(message), ("127.0.0.1", self.ng_port))
            while True:
                data = s.recv(65535)
                got, _, body = data.partition(b" ")
                if got == cookie:
                    reply = bencode.decode(body)
                    assert isinstance(reply, dict)
                    return reply

    def calls(self) -> list[bytes]:
        """The call-ids rtpengine holds (ng `list`)."""
        reply = self.request({"command": "list", "limit": 1000})
        calls = reply.get(b"calls", [])
        assert isinstance(calls, list)
        return calls

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextmanager
def running_rtpengine(workdir: Path, ng_port: int | None = None) -> Iterator[Rtpengine]:
    """Start one (on `ng_port`, e.g. the one of an rtpengine stopped before, or a free one)."""
    exe = shutil.which("rtpengine")
    assert exe is not None, "rtpengine is not installed: run `make test` (Debian rtpengine-daemon)"
    ng_port = ng_port or free_port(also_tcp=False)
    # A window of its own, away from the embedded gateway's default 30000-40999.
    lo = random.randrange(50000, 59000, 2)
    log_path = workdir / f"rtpengine-{ng_port}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--log-level=6",
            "--table=-1",
            "--interface=127.0.0.1",
            f"--listen-ng=127.0.0.1:{ng_port}",
            f"--port-min={lo}",
            f"--port-max={lo + 799}",
            "--num-threads=2",
            "--delete-delay=0",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    r = Rtpengine(proc, ng_port, log_path)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"rtpengine exited:\n{r.log()}"
            try:
                if r.request({"command": "ping"}, timeout=0.2).get(b"result") == b"pong":
                    break
            except (TimeoutError, ConnectionRefusedError):
                pass
            assert time.monotonic() < deadline, f"rtpengine not ready:\n{r.log()}"
            time.sleep(0.05)
        yield r
    finally:
        r.stop()
