"""Start the real daemon as a subprocess on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_DGRAM, also_tcp: bool = True) -> int:
    """A port free for UDP (and TCP) on 127.0.0.1."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also_tcp:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port")


@dataclass
class Daemon:
    access_port: int
    core_port: int
    next_hop_port: int
    admin_port: int
    workdir: Path
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "daemon.log"

    def start(self, timeout: float = 15.0) -> None:
        cfg_path = self.workdir / "pcscf.yaml"
        cfg_path.write_text(yaml.safe_dump(self.config))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pcscf_alg", "run", "--config", str(cfg_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited at start:\n{self.log()}")
            if b"pcscf-alg ready" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.admin_port}/stats"
        with urllib.request.urlopen(url, timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    def registrations(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.admin_port}/registrations"
        with urllib.request.urlopen(url, timeout=5) as r:
            data: list[dict[str, Any]] = json.loads(r.read())
        return data

    def wait_stats(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Poll /stats until pred(stats) holds (bounded); returns the last stats."""
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st) and time.monotonic() < deadline:
            time.sleep(0.1)
            st = self.stats()
        return st

    def stop(self) -> int:
        """SIGTERM, wait for a clean exit (bounded), then kill. Returns the exit code."""
        if self.proc is None:
            return 0
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(timeout=5)
                rc = -999 if rc == 0 else rc
        self._log.close()
        return rc


def make_daemon(workdir: Path, *, tcp_next_hop: bool = False, **overrides: Any) -> Daemon:
    """A daemon config on free ports. `overrides` are merged into the top-level sections."""
    access, core, nh, admin = free_port(), free_port(), free_port(), free_port(socket.SOCK_STREAM)
    nh_uri = f"sip:127.0.0.1:{nh};lr" + (";transport=tcp" if tcp_next_hop else "")
    cfg: dict[str, Any] = {
        "sip": {
            "access": {"host": "127.0.0.1", "port": access},
            "core": {"host": "127.0.0.1", "port": core},
            "next_hop": nh_uri,
            "t1": 0.1,  # short timers so timeout paths finish quickly (Timer B = 6.4 s)
            # Loopback only, whatever a test or a fuzzed message asks for.
            "egress_networks": ["127.0.0.0/8"],
        },
        "registration": {"require_for_originating": False, "sweep_interval_s": 0.5},
        "admin": {"enabled": True, "host": "127.0.0.1", "port": admin},
        "agw": {
            "access_host": "127.0.0.1",
            "core_host": "127.0.0.1",
            "cert_dir": str(workdir / "agw"),
        },
        "log": {"level": "INFO"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return Daemon(access, core, nh, admin, workdir, cfg)
