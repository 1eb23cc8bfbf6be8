"""A small in-repo SIPp runner (replaces pysipp, which no longer imports with current pluggy).

Every SIPp process started here is bounded in time twice: SIPp's own ``-timeout Ns -timeout_error``
and a subprocess deadline after which we kill it (SIGTERM, then SIGKILL, by PID only). All working
files (error, message, stat, log and screen traces, stdout) go to a caller-supplied directory,
normally pytest's ``tmp_path``.

Typical use::

    uas = SippAgent("uas_basic.xml", role="uas", local_port=p1,
                    keys={"mf": "70", "rr": "0", "via": "1"})
    uac = SippAgent("uac_basic.xml", role="uac", local_port=p2, remote=f"127.0.0.1:{p1}",
                    keys={"rr": "0"})
    pair = run_pair(uas, uac, tmp_path)
    pair.assert_ok()

SIPp exit codes (``SippResult.returncode``): 0 all calls succeeded; 1 at least one call failed
(including a failed ``check_it`` regexp); 97 exit on internal command / timeout without any
successful call; 99 normal exit without calls processed; 253/254/255 (-3/-2/-1) system, bind and
fatal errors (a ``-timeout_error`` expiry is a fatal error: 255). ``None`` = we had to kill it.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = REPO_ROOT / "scenarios"
SIPP_BIN = os.environ.get("SIPP", "sipp")

Role = Literal["uac", "uas"]
Transport = Literal["u1", "t1", "un", "tn"]

EXIT_CODES = {
    0: "all calls successful",
    1: "at least one call failed",
    97: "exit on internal command / no successful call before timeout",
    99: "normal exit without calls processed",
    252: "argument error",
    253: "system error",
    254: "bind error (port in use?)",
    255: "fatal error (scenario error, or -timeout expired with -timeout_error)",
}

# -key values per scenario. "proxy": the agent talks through pcscf-alg (one proxy hop, two
# Record-Route entries); "direct": SIPp against SIPp, no proxy. e2e tests can start from
# scenario_keys(name, "proxy") and override.
_SS_BOTH = "sdes-srtp;mediasec, msrp-tls;mediasec"
SCENARIO_KEYS: dict[str, dict[str, dict[str, str]]] = {
    "uac_basic.xml": {"proxy": {"rr": "2"}, "direct": {"rr": "0"}},
    "uac_wait_bye.xml": {"proxy": {"rr": "2"}, "direct": {"rr": "0"}},
    "uas_basic.xml": {
        "proxy": {"mf": "69", "rr": "2", "via": "2"},
        "direct": {"mf": "70", "rr": "0", "via": "1"},
    },
    "uas_bye.xml": {
        "proxy": {"mf": "69", "rr": "2", "via": "2"},
        "direct": {"mf": "70", "rr": "0", "via": "1"},
    },
    "ue_register_mediasec.xml": {
        "proxy": {"sc": _SS_BOTH, "sschk": "both"},
        "direct": {"sc": _SS_BOTH, "sschk": "both"},
    },
    "ue_register_verify_mismatch.xml": {
        "proxy": {"sc": _SS_BOTH, "sschk": "both", "sv": "sdes-srtp;mediasec"},
        "direct": {"sc": _SS_BOTH, "sschk": "both", "sv": "sdes-srtp;mediasec"},
    },
    "registrar_mediasec.xml": {
        "proxy": {"proxy": "1", "xhdr": "X-Registrar: sipp", "once": "0", "pw": "password"},
        # without a P-CSCF in between, the registrar plays its part and announces mediasec
        "direct": {
            "proxy": "0",
            "xhdr": f"Security-Server: {_SS_BOTH}",
            "once": "0",
            "pw": "password",
        },
    },
}

# The e2ae call scenarios (issue 6): only meaningful through pcscf-alg, so "direct" = "proxy".
# The values are those of each scenario's standalone command line; tests override them.
_K_UE = "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC"
_K_UE2 = "MoNHDeEa+5SmQUjjM2YlydHnpHWBlyspHpxHnB/h"
_FP = (
    "20:D8:F4:8A:76:9B:45:C5:BE:FF:D5:C0:3F:45:25:44:"
    "E5:BE:C4:25:60:61:1A:39:AC:26:F1:A1:BD:07:59:18"
)
_E2AE_KEYS: dict[str, dict[str, str]] = {
    "ue_e2ae_orig.xml": {
        "sc": _SS_BOTH,
        "k1": _K_UE,
        "k2": _K_UE2,
        "rtp_port": "41000",
        "msrp_port": "41010",
        "fp": _FP,
        "xa": "\r\na=3ge2ae:requested",
        "xm": "\r\na=3ge2ae:requested\r\na=msrp-cema",
        "sel": "1 AES_CM_128_HMAC_SHA1_80",
        "rtp_mode": "e2ae",
        "msrp_mode": "e2ae",
        "bye": "send",
        "hold": "2000",
    },
    "scscf_e2ae_orig.xml": {
        "rtp_port": "42000",
        "msrp_port": "42010",
        "ue_rtp_port": "41000",
        "ue_msrp_port": "41010",
        "agw_ip": "127.0.0.1",
        "rtp_mode": "e2ae",
        "msrp_mode": "e2ae",
        "mscheme": "msrp",
        "xa": "",
        "xm": "\r\na=msrp-cema",
        "bye": "recv",
        "hold": "0",
    },
    "scscf_e2ae_term.xml": {
        "rtp_port": "42000",
        "msrp_port": "42010",
        "aproto": "RTP/AVP",
        "mproto": "TCP/MSRP",
        "mscheme": "msrp",
        "msetup": "passive",
        "xa": "",
        "xm": "\r\na=msrp-cema",
        "ue_rtp_port": "41000",
        "ue_msrp_port": "41010",
        "ue_fp": _FP,
        "agw_ip": "127.0.0.1",
        "rtp_mode": "e2ae",
        "msrp_mode": "e2ae",
        "bye": "send",
        "hold": "2000",
    },
    "ue_e2ae_term.xml": {
        "sc": _SS_BOTH,
        "k1": _K_UE,
        "rtp_port": "41000",
        "msrp_port": "41010",
        "fp": _FP,
        "mscheme": "msrps",
        "xa": "",
        "xm": "\r\na=msrp-cema",
        "core_rtp_port": "42000",
        "core_msrp_port": "42010",
        "rtp_mode": "e2ae",
        "msrp_mode": "e2ae",
        "bye": "recv",
        "hold": "0",
    },
    "registrar_e2ae.xml": {"linger": "2000"},
    "ue_e2ae_rejected.xml": {"sc": "msrp-tls;mediasec", "k1": _K_UE, "rtp_port": "41000"},
    "ue_e2ae_prack.xml": {"k1": _K_UE, "rtp_port": "41000", "hold": "1000"},
    "scscf_e2ae_prack.xml": {"rtp_port": "42000", "ue_rtp_port": "41000"},
    "ue_e2ae_late_offer.xml": {"k1": _K_UE, "rtp_port": "41000", "hold": "1000"},
    "scscf_e2ae_late_offer.xml": {"rtp_port": "42000", "ue_rtp_port": "41000"},
    "ue_e2ae_reinvite.xml": {"k1": _K_UE, "rtp_port": "41000", "hold": "1000"},
    "scscf_e2ae_reinvite.xml": {"rtp_port": "42000", "ue_rtp_port": "41000"},
    "ue_e2ae_update.xml": {"k1": _K_UE, "rtp_port": "41000", "hold": "1000"},
    "scscf_e2ae_update.xml": {"rtp_port": "42000", "ue_rtp_port": "41000"},
    "ue_e2ae_fork.xml": {"k1": _K_UE, "rtp_port": "41000", "hold": "1000"},
    "scscf_e2ae_fork.xml": {"rtp_port_a": "42100", "rtp_port": "42000", "ue_rtp_port": "41000"},
    "ue_e2ae_emergency_multipart.xml": {
        "sc": _SS_BOTH,
        "k1": _K_UE,
        "k2": _K_UE2,
        "rtp_port": "41000",
        "hold": "2000",
    },
    "scscf_e2ae_emergency_multipart.xml": {
        "rtp_port": "42000",
        "ue_rtp_port": "41000",
        "agw_ip": "127.0.0.1",
    },
}
for _name, _keys in _E2AE_KEYS.items():
    SCENARIO_KEYS[_name] = {"proxy": _keys, "direct": _keys}


def scenario_path(name: str | os.PathLike[str]) -> Path:
    """Absolute path of a scenario: an existing path as given, else a file name in scenarios/."""
    p = Path(name)
    if p.is_file():
        return p.resolve()
    q = SCENARIO_DIR / p.name
    if q.is_file():
        return q
    raise FileNotFoundError(f"no SIPp scenario {name!s} (looked in {SCENARIO_DIR})")


def scenario_keys(
    name: str, mode: Literal["proxy", "direct"] = "proxy", **overrides: str
) -> dict[str, str]:
    """The -key variables ``name`` needs, for ``mode``, with ``overrides`` applied."""
    keys = dict(SCENARIO_KEYS.get(Path(name).name, {}).get(mode, {}))
    keys.update(overrides)
    return keys


def sipp_available() -> bool:
    return shutil.which(SIPP_BIN) is not None


# ------------------------------------------------------------------------------------------- ports


def _port_free(port: int, *, udp: bool = True, tcp: bool = True, host: str = "127.0.0.1") -> bool:
    kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
    for kind in kinds:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


_rng = random.Random(os.getpid() ^ int(time.time() * 1000))
_handed_out: set[int] = set()


def free_port(*, span: int = 1, host: str = "127.0.0.1", lo: int = 20000, hi: int = 60000) -> int:
    """A port P such that P..P+span-1 are free for both UDP and TCP on ``host``.

    Ports are picked at random in [lo, hi) and never handed out twice by this process, which keeps
    parallel tests (and SIPp's habit of binding media ports mp..mp+3) apart.
    """
    for _ in range(2000):
        p = _rng.randrange(lo, hi - span)
        p -= p % 2  # even: RTP convention, SIPp media ports
        rng = range(p, p + span)
        if any(q in _handed_out for q in rng):
            continue
        if all(_port_free(q, host=host) for q in rng):
            _handed_out.update(rng)
            return p
    raise RuntimeError("no free port found")


def free_ports(n: int, **kw: int | str) -> list[int]:
    return [free_port(**kw) for _ in range(n)]  # type: ignore[arg-type]


def _proc_net_ports(transport: str) -> set[int]:
    """Local ports bound (UDP) or listening (TCP) according to /proc/net."""
    tcp = transport.startswith("t")
    ports: set[int] = set()
    for fname in ("tcp", "tcp6") if tcp else ("udp", "udp6"):
        try:
            lines = Path("/proc/net", fname).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4:
                continue
            if tcp and parts[3] != "0A":  # LISTEN
                continue
            with contextlib.suppress(ValueError):
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def port_bound(port: int, transport: str = "u1", host: str = "127.0.0.1") -> bool:
    if Path("/proc/net/udp").exists():
        return port in _proc_net_ports(transport)
    # no /proc: a bind probe (fails with EADDRINUSE when someone holds the port)
    kind_udp = not transport.startswith("t")
    return not _port_free(port, udp=kind_udp, tcp=not kind_udp, host=host)


# ------------------------------------------------------------------------------------------- agent


@dataclass
class SippAgent:
    """One SIPp instance. ``scenario``: a path, or a file name in scenarios/."""

    scenario: str | os.PathLike[str]
    role: Role = "uac"
    local_ip: str = "127.0.0.1"
    local_port: int = 0  # 0 = pick a free one at build time
    remote: str | None = (
        None  # "host:port": the Request-URI target ([remote_ip]:[remote_port]); uac only
    )
    transport: Transport = "u1"
    rate: float | None = None  # -r calls per -rp period (default: 1 s)
    rate_period_ms: int | None = None  # -rp
    calls: int | None = 1  # -m: stop after this many calls (uas: after this many incoming calls)
    call_limit: int | None = None  # -l: max simultaneous calls
    rsa: str | None = None  # -rsa host:port: send everything there (the proxy) instead of to remote
    keys: Mapping[str, str] = field(default_factory=dict)  # -key name value -> [name]
    sets: Mapping[str, str] = field(
        default_factory=dict
    )  # -set name value -> [$name] (needs <Global>)
    inf: str | os.PathLike[str] | None = None  # -inf CSV injection file -> [field0]...
    service: str | None = (
        None  # -s: user part of the Request-URI ([service]); also the auth username
    )
    auth_username: str | None = None  # -au
    auth_password: str | None = None  # -ap
    media_ip: str | None = None  # -mi (default: local_ip)
    media_port: int | None = None  # -mp (default: a free even port; SIPp binds mp..mp+3)
    timeout: float = 15.0  # -timeout Ns -timeout_error: SIPp's own global deadline, seconds
    recv_timeout_ms: int | None = None  # -recv_timeout: default per-<recv> timeout
    name: str | None = None  # label for the working files; default "<role>_<scenario stem>"
    extra_args: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or f"{self.role}_{Path(self.scenario).stem}"


@dataclass
class SippFiles:
    stdout: Path
    errors: Path
    messages: Path
    stats: Path
    log: Path
    screen: Path

    @classmethod
    def for_agent(cls, agent: SippAgent, workdir: Path) -> SippFiles:
        b = workdir / agent.label
        return cls(
            stdout=Path(f"{b}.stdout.log"),
            errors=Path(f"{b}.errors.log"),
            messages=Path(f"{b}.messages.log"),
            stats=Path(f"{b}.stat.csv"),
            log=Path(f"{b}.actions.log"),
            screen=Path(f"{b}.screen.log"),
        )


def build_command(agent: SippAgent, workdir: str | os.PathLike[str]) -> list[str]:
    """The full sipp command line for ``agent``; trace files go under ``workdir``.

    Fills in ``agent.local_port`` / ``agent.media_port`` when they are 0 / None (free ports).
    """
    workdir = Path(workdir)
    f = SippFiles.for_agent(agent, workdir)
    if agent.role not in ("uac", "uas"):
        raise ValueError(f"role must be uac or uas, not {agent.role!r}")
    if agent.role == "uac" and not agent.remote:
        raise ValueError("a uac needs remote='host:port'")
    if not agent.local_port:
        agent.local_port = free_port()
    if agent.media_port is None:
        agent.media_port = free_port(span=4)
    timeout_s = max(1, int(agent.timeout + 0.999))
    cmd = [
        SIPP_BIN,
        "-sf",
        str(scenario_path(agent.scenario)),
        "-i",
        agent.local_ip,
        "-p",
        str(agent.local_port),
        "-mi",
        agent.media_ip or agent.local_ip,
        "-mp",
        str(agent.media_port),
        "-t",
        agent.transport,
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(f.errors),
        "-trace_msg",
        "-message_file",
        str(f.messages),
        "-trace_stat",
        "-stf",
        str(f.stats),
        "-fd",
        "1",
        "-trace_logs",
        "-log_file",
        str(f.log),
        "-trace_screen",
        "-screen_file",
        str(f.screen),
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
    ]
    if agent.calls is not None:
        cmd += ["-m", str(agent.calls)]
    if agent.rate is not None:
        cmd += ["-r", f"{agent.rate:g}"]
    if agent.rate_period_ms is not None:
        cmd += ["-rp", str(agent.rate_period_ms)]
    if agent.call_limit is not None:
        cmd += ["-l", str(agent.call_limit)]
    if agent.recv_timeout_ms is not None:
        cmd += ["-recv_timeout", str(agent.recv_timeout_ms)]
    if agent.service is not None:
        cmd += ["-s", agent.service]
    if agent.auth_username is not None:
        cmd += ["-au", agent.auth_username]
    if agent.auth_password is not None:
        cmd += ["-ap", agent.auth_password]
    if agent.inf is not None:
        cmd += ["-inf", str(agent.inf)]
    for k, v in agent.keys.items():
        cmd += ["-key", k, str(v)]
    for k, v in agent.sets.items():
        cmd += ["-set", k, str(v)]
    if agent.rsa:
        cmd += ["-rsa", agent.rsa]
    cmd += list(agent.extra_args)
    if agent.role == "uac":
        assert agent.remote
        cmd.append(agent.remote)
    return cmd


# ----------------------------------------------------------------------------------------- results


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


def parse_stat_csv(path: Path) -> dict[str, str]:
    """Last row of a SIPp -trace_stat CSV (';'-separated, header row first) as a dict."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    rows = [r for r in csv.reader(text.splitlines(), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {k: v for k, v in zip(header, last, strict=False) if k}


def _tail(path: Path, max_chars: int) -> str:
    try:
        data = path.read_text(errors="replace")
    except OSError:
        return "<missing>"
    if len(data) > max_chars:
        return f"[... {len(data) - max_chars} chars cut ...]\n" + data[-max_chars:]
    return data or "<empty>"


@dataclass
class SippResult:
    agent: SippAgent
    cmd: list[str]
    returncode: int | None  # None: did not exit by itself, we killed it
    killed: bool
    duration: float
    files: SippFiles
    stats: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.killed

    @property
    def successful_calls(self) -> int | None:
        return _int(self.stats.get("SuccessfulCall(C)"))

    @property
    def failed_calls(self) -> int | None:
        return _int(self.stats.get("FailedCall(C)"))

    @property
    def retransmissions(self) -> int | None:
        return _int(self.stats.get("Retransmissions(C)"))

    @property
    def exit_meaning(self) -> str:
        if self.killed:
            return "killed by the runner (deadline)"
        return EXIT_CODES.get(self.returncode or 0, "?") if self.returncode is not None else "?"

    def errors(self) -> str:
        return _tail(self.files.errors, 1_000_000) if self.files.errors.exists() else ""

    def messages(self) -> str:
        return _tail(self.files.messages, 10_000_000) if self.files.messages.exists() else ""

    def summary(self) -> str:
        return (
            f"{self.agent.label}: rc={self.returncode} ({self.exit_meaning}) "
            f"in {self.duration:.2f}s, success={self.successful_calls} "
            f"failed={self.failed_calls} retrans={self.retransmissions}"
        )

    def dump(self, max_chars: int = 6000) -> str:
        """Diagnostics: command, exit, errors, actions log, screen, stdout, message trace."""
        parts = [
            f"===== SIPp {self.agent.label} =====",
            self.summary(),
            "cmd: " + " ".join(_shell_quote(c) for c in self.cmd),
            f"--- errors ({self.files.errors}):\n{_tail(self.files.errors, max_chars)}",
            f"--- actions log ({self.files.log}):\n{_tail(self.files.log, max_chars // 2)}",
            f"--- screen ({self.files.screen}):\n{_tail(self.files.screen, max_chars // 2)}",
            f"--- stdout ({self.files.stdout}):\n{_tail(self.files.stdout, max_chars // 3)}",
            f"--- messages ({self.files.messages}):\n{_tail(self.files.messages, max_chars)}",
        ]
        return "\n".join(parts)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(self.dump())


def _shell_quote(s: str) -> str:
    return (
        s
        if s and all(c.isalnum() or c in "-_./:=@,+" for c in s)
        else "'" + s.replace("'", "'\\''") + "'"
    )


@dataclass
class PairResult:
    uas: SippResult
    uac: SippResult

    @property
    def ok(self) -> bool:
        return self.uas.ok and self.uac.ok

    def dump(self, max_chars: int = 6000) -> str:
        return self.uac.dump(max_chars) + "\n\n" + self.uas.dump(max_chars)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(f"{self.uac.summary()}\n{self.uas.summary()}\n\n{self.dump()}")


# --------------------------------------------------------------------------------------- processes


class SippProcess:
    """A running SIPp (see start()). Always end it with wait() or stop()."""

    def __init__(
        self,
        agent: SippAgent,
        cmd: list[str],
        files: SippFiles,
        popen: subprocess.Popen[bytes],
        stdout_fh: object,
    ) -> None:
        self.agent = agent
        self.cmd = cmd
        self.files = files
        self.popen = popen
        self._stdout_fh = stdout_fh
        self.started = time.monotonic()
        self.killed = False
        self._result: SippResult | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Poll until SIPp has bound its signalling port (or exited). True if bound."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return False
            if port_bound(self.agent.local_port, self.agent.transport, self.agent.local_ip):
                time.sleep(0.05)  # bound happens just before the main loop starts
                return True
            time.sleep(0.02)
        return False

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM then SIGKILL this one process (by PID). Marks the result as killed."""
        if self.popen.poll() is not None:
            return
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait(timeout=10)

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for exit; after ``timeout`` seconds (default: agent.timeout + 5) kill it."""
        if self._result is not None:
            return self._result
        if timeout is None:
            timeout = self.agent.timeout + 5.0
        remaining = max(0.0, self.started + timeout - time.monotonic()) if timeout > 0 else 0.0
        try:
            self.popen.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.stop()
        finally:
            with contextlib.suppress(Exception):
                self._stdout_fh.close()  # type: ignore[attr-defined]
        self._result = SippResult(
            agent=self.agent,
            cmd=self.cmd,
            returncode=None if self.killed else self.popen.returncode,
            killed=self.killed,
            duration=time.monotonic() - self.started,
            files=self.files,
            stats=parse_stat_csv(self.files.stats),
        )
        return self._result

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.wait(timeout=0)


def start(agent: SippAgent, workdir: str | os.PathLike[str]) -> SippProcess:
    """Start SIPp in the background (own session, stdin closed, stdout/stderr to a file)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = build_command(agent, workdir)
    files = SippFiles.for_agent(agent, workdir)
    for p in (files.errors, files.messages, files.stats, files.log, files.screen):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    fh = open(files.stdout, "wb")  # noqa: SIM115 - closed in wait()
    try:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    except BaseException:
        fh.close()
        raise
    return SippProcess(agent, cmd, files, popen, fh)


def wait(proc: SippProcess, timeout: float | None = None) -> SippResult:
    return proc.wait(timeout)


def run(
    agent: SippAgent, workdir: str | os.PathLike[str], timeout: float | None = None
) -> SippResult:
    """Start one SIPp and wait for it (bounded)."""
    proc = start(agent, workdir)
    try:
        return proc.wait(timeout)
    finally:
        proc.stop()


def run_pair(
    uas: SippAgent,
    uac: SippAgent,
    workdir: str | os.PathLike[str],
    *,
    ready_timeout: float = 5.0,
    uas_grace: float = 5.0,
) -> PairResult:
    """Start ``uas``, wait until its port is bound, run ``uac`` to completion, then collect ``uas``.

    The UAS gets ``uas_grace`` seconds after the UAC ended to finish by itself (-m reached,
    timewait elapsed) before it is killed. Both are always stopped on the way out.
    Raises AssertionError (with the UAS's logs) if the UAS exits before binding its port
    (scenario error, missing -key, port in use); the UAC is then not started.
    """
    uas.role = "uas"
    uac.role = "uac"
    workdir = Path(workdir)
    uas_proc = start(uas, workdir)
    uac_proc: SippProcess | None = None
    try:
        if not uas_proc.wait_ready(ready_timeout) and not uas_proc.running():
            uas_res = uas_proc.wait(timeout=0)
            # uac never ran: report a synthetic "not run" result
            raise AssertionError("UAS did not start:\n" + uas_res.dump())
        uac_proc = start(uac, workdir)
        uac_res = uac_proc.wait()
        uas_res = uas_proc.wait(timeout=(time.monotonic() - uas_proc.started) + uas_grace)
        return PairResult(uas=uas_res, uac=uac_res)
    finally:
        if uac_proc is not None:
            uac_proc.stop()
        uas_proc.stop()
