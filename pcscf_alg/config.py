"""Configuration: one YAML file, validated at load; every error names the file, key and reason.

The keys under `sip:` are a contract (tests and outside harnesses write configs with them):

    sip:
      access: {host: 127.0.0.1, port: 5060}   # UE-facing (Gm), UDP and TCP
      core:   {host: 127.0.0.1, port: 5070}   # core-facing (Mw), UDP and TCP
      next_hop: "sip:127.0.0.1:5080;lr"       # I-/S-CSCF for REGISTER and originating requests

Other sections: `registration:`, `e2ae:`, `agw:` (pcscf_alg.agw.config), `policy:`
(pcscf_alg.policy), `admin:` and `log:`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pcscf_alg.errors import ConfigError, SipParseError
from pcscf_alg.sip.headers import SipUri

# sip.max_message_bytes at most: 65,507 (the largest IPv4 UDP payload) less 4 KiB for what a
# forwarded message gains on its way (our Via and Record-Route, a rewritten SDP), so that
# nothing we accept is too large to forward over UDP.
MAX_MESSAGE_BYTES_LIMIT = 61_440


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


@dataclass(frozen=True)
class SipConfig:
    access: Listener
    core: Listener
    next_hop: str
    next_hop_host: str
    next_hop_port: int
    next_hop_transport: str
    udp: bool = True
    tcp: bool = True
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    tcp_idle_timeout_s: float = 300.0
    # The TCP front door (pcscf_alg/transport.py): accepted connections per listener, in total
    # and per source address (over either a new one is closed at once); the time a message may
    # take from its first byte to its last (Slowloris); the largest message we accept, on any
    # transport (513 beyond, RFC 3261 §21.5.14). The total is lowered at start when
    # RLIMIT_NOFILE cannot hold it next to the gateway's media ports (logged).
    tcp_max_connections: int = 2048
    tcp_max_connections_per_ip: int = 32
    tcp_message_timeout_s: float = 10.0
    max_message_bytes: int = 32_768
    # Live server transactions per listener (access, core) before new requests get a stateless
    # 503 + Retry-After (RFC 3261 §21.5.4): what a flood of unauthenticated requests (REGISTERs
    # answered 401, held for Timer J = 64*T1) may cost is capped. Per side, so a flood on the
    # access side cannot refuse terminating calls from the core. Retry-After defaults to
    # Timer J rounded up (None), the time a completed transaction holds its slot. Sizing:
    # legitimate UDP traffic holds about 2 x calls/s x 64*T1 (the INVITE in Accepted, RFC 6026
    # Timer L, and the BYE in Completed, Timer J): 32,000 at 500 calls/s with T1 = 0.5 s.
    # 50,000 leaves room for that; a completed REGISTER costs ~1.6 kB (bench_register_flood).
    max_transactions: int = 50000
    overload_retry_after_s: int | None = None
    # Static name -> IP map: the daemon never blocks its loop on DNS (lab peers are named here).
    hosts: tuple[tuple[str, str], ...] = ()
    # Where SIP may be sent (requests and stateless responses); anything else is refused with
    # 403. An operator guard-rail, and what keeps loopback-only tests on 127.0.0.0/8.
    egress_networks: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    # Where requests and responses on the core listener may come from (the I-/S-CSCFs and the
    # rest of the operator's core). Anything else is refused (403) or dropped: the core side
    # is trusted with terminating calls and in-dialog requests, so it must not be open to all.
    core_networks: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    # Worker processes (pcscf_alg/workers.py, README "Worker processes"): N processes share the
    # access and core listeners (SO_REUSEPORT); worker i also listens on its own ports
    # `worker_ports.access + i` and `worker_ports.core + i` and names them in its Via,
    # Record-Route and Path, so that what follows an initial request comes back to it.
    # None: each listener's port + 1 (resolved at load).
    workers: int = 1
    worker_ports: WorkerPorts | None = None

    def worker_port_bases(self) -> WorkerPorts:
        """The first own port of each side (worker 0's); worker i has base + i."""
        if self.worker_ports is not None:
            return self.worker_ports
        return WorkerPorts(self.access.port + 1, self.core.port + 1)


# sip.workers at most: more processes than this machine has cores only adds context switches;
# the cap bounds the ports each worker takes (own SIP ports, admin ports, gateway slices).
MAX_WORKERS = 64


@dataclass(frozen=True)
class WorkerPorts:
    access: int
    core: int


@dataclass(frozen=True)
class RegistrationStoreConfig:
    # Where bindings live (pcscf_alg/registration_redis.py, README "Registrations on Redis"):
    # `memory` (this process only, lost on restart) or `redis` (a local cache written through
    # to Redis and kept fresh by pub/sub: shared by several daemons, kept across restarts).
    # Every key here needs a restart.
    backend: str = "memory"
    # redis://, rediss:// or unix://; out of repr: it may hold a password.
    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    prefix: str = "pcscf-alg:"  # of every key and of the pub/sub channel
    # Binding changes waiting for Redis, one per binding (its latest state); past this the
    # oldest is dropped and counted (`outbox_dropped`).
    outbox_max: int = 100_000
    timeout_s: float = 2.0  # connect and each Redis command
    start_timeout_s: float = 5.0  # the initial load at start; after it the daemon starts anyway
    reconnect_max_s: float = 5.0  # the reconnection backoff doubles up to this
    retry_after_s: int = 10  # Retry-After of the 503 to a REGISTER while Redis cannot be written


@dataclass(frozen=True)
class RegistrationConfig:
    # TS 24.229 5.2.6.3.1: a P-CSCF only accepts originating requests from registered UEs.
    # Tests of the bare SIP core turn this off to drive plain SIPp calls through.
    require_for_originating: bool = True
    default_expires: int = 600000
    sweep_interval_s: float = 5.0
    # A UE (source address) whose REGISTERs fail security agreement (RFC 3329 494, or a
    # malformed Security-* header) this many times within the window gets 503 + Retry-After
    # for the rest of the window instead of another 494: a misconfigured or hostile UE that
    # retries at once must not keep the P-CSCF in a tight loop.
    secagree_max_failures: int = 5
    secagree_window_s: float = 60.0
    store: RegistrationStoreConfig = field(default_factory=RegistrationStoreConfig)


@dataclass(frozen=True)
class DialogConfig:
    # A call whose media does not cross the gateway has no media timeout to end it: if its BYE
    # is lost, its state is dropped after this long without any signalling (RFC 4028 session
    # timers would refresh well within it). Anchored calls end on the gateway's media timeout.
    idle_timeout_s: float = 7200.0


@dataclass(frozen=True)
class E2aeConfig:
    rtp: bool = True
    msrp: bool = True
    # Anchor streams without e2ae at the gateway too (PASS mode: relayed untouched). Off by
    # default: TS 33.328 inserts the AGW "for the purposes of e2ae security".
    anchor_all: bool = False


@dataclass(frozen=True)
class AdminConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5090


@dataclass(frozen=True)
class CaptureConfig:
    # HEP capture (pcscf_alg/capture.py): every SIP message, both sides, as HEPv3 over UDP to
    # a Homer/heplify collector. IP literal only (no DNS on the loop).
    hep_host: str
    hep_port: int
    node_id: int = 2001
    # SRTP master keys (`inline:`) are redacted in what is captured unless the operator opts
    # in with `unredacted: true`: the collector then stores every e2ae call's keys.
    redact: bool = True


@dataclass(frozen=True)
class Config:
    file: str
    sip: SipConfig
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    dialogs: DialogConfig = field(default_factory=DialogConfig)
    e2ae: E2aeConfig = field(default_factory=E2aeConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (pcscf_alg/logs.py)
    capture: CaptureConfig | None = None  # HEP capture, off when the section is absent
    # Raw sections owned by other layers, validated by their own loaders.
    agw: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    li: dict[str, Any] | None = None  # lawful-interception key export (pcscf_alg.li)


_TOP_KEYS = {
    "sip", "registration", "dialogs", "e2ae", "agw", "policy", "admin", "log", "li", "capture"
}


class _Reader:
    """Typed access to one mapping with errors that carry file and dotted key."""

    def __init__(self, file: str, data: Any, path: str, allowed: set[str]) -> None:
        self.file = file
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(file, path or "<top>", "must be a mapping")
        for k in data:
            if not isinstance(k, str) or k not in allowed:
                raise ConfigError(
                    file, self.key(str(k)), f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )
        self.data: dict[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get_bool(self, name: str, default: bool) -> bool:
        v = self.data.get(name, default)
        if not isinstance(v, bool):
            raise ConfigError(self.file, self.key(name), f"must be true or false, got {v!r}")
        return v

    def get_int(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.data.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(self.file, self.key(name), f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(self.file, self.key(name), f"must be between {lo} and {hi}, got {v}")
        return v

    def get_float(self, name: str, default: float, lo: float, hi: float) -> float:
        v = self.data.get(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(self.file, self.key(name), f"must be a number, got {v!r}")
        if not lo <= float(v) <= hi:
            raise ConfigError(self.file, self.key(name), f"must be between {lo} and {hi}, got {v}")
        return float(v)

    def get_str(self, name: str, default: str | None) -> str:
        v = self.data.get(name, default)
        if not isinstance(v, str) or not v:
            raise ConfigError(self.file, self.key(name), f"must be a non-empty string, got {v!r}")
        return v

    def sub(self, name: str, allowed: set[str], required: bool = False) -> _Reader:
        if required and name not in self.data:
            raise ConfigError(self.file, self.key(name), "is required")
        return _Reader(self.file, self.data.get(name), self.key(name), allowed)


def _ip(file: str, key: str, value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(file, key, f"must be an IP address literal, got {value!r}") from None
    return value


def _hosts(file: str, data: Any) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ConfigError(file, "sip.hosts", "must be a mapping of host name to IP address")
    out = []
    for name, ip in data.items():
        if not isinstance(name, str) or not isinstance(ip, str):
            raise ConfigError(file, f"sip.hosts.{name}", "must map a name to an IP address string")
        out.append((name.lower(), _ip(file, f"sip.hosts.{name}", ip)))
    return tuple(out)


def _networks(file: str, key: str, data: Any) -> tuple[str, ...]:
    if data is None:
        return ("0.0.0.0/0", "::/0")
    if not isinstance(data, list) or not data:
        raise ConfigError(file, key, "must be a non-empty list of networks (CIDR)")
    out = []
    for i, net in enumerate(data):
        try:
            out.append(str(ipaddress.ip_network(str(net), strict=False)))
        except ValueError:
            raise ConfigError(file, f"{key}[{i}]", f"not a network: {net!r}") from None
    return tuple(out)


def _listener(r: _Reader, name: str) -> Listener:
    sub = r.sub(name, {"host", "port"}, required=True)
    host = _ip(r.file, sub.key("host"), sub.get_str("host", None))
    port = sub.get_int("port", 0, 1, 65535) if "port" in sub.data else None
    if port is None:
        raise ConfigError(r.file, sub.key("port"), "is required")
    return Listener(host, port)


def _next_hop(file: str, key: str, value: str) -> tuple[str, int, str]:
    try:
        uri = SipUri.parse(value)
    except SipParseError as e:
        raise ConfigError(file, key, f"not a SIP URI: {e.reason}") from None
    if uri.scheme not in ("sip", "sips"):
        raise ConfigError(file, key, f"must be a sip: URI, got {value!r}")
    host = uri.host.strip("[]")
    _ip(file, key, host)
    transport = uri.transport
    if transport not in ("udp", "tcp"):
        raise ConfigError(file, key, f"transport must be udp or tcp, got {transport!r}")
    return host, uri.port or 5060, transport


def _capture(top: _Reader) -> CaptureConfig:
    from pcscf_alg.capture import parse_hep_address

    c = top.sub("capture", {"hep", "node_id", "redact", "unredacted"})
    try:
        host, port = parse_hep_address(c.get_str("hep", None))
    except ValueError as e:
        raise ConfigError(c.file, c.key("hep"), str(e)) from None
    unredacted = c.get_bool("unredacted", False)
    redact = c.get_bool("redact", not unredacted)
    # Sending keys to the collector takes an explicit, unambiguous opt-in: `redact: false`
    # alone could be a typo'd template, so it must come with `unredacted: true`.
    if not redact and not unredacted:
        raise ConfigError(
            c.file,
            c.key("redact"),
            "false sends every e2ae call's SRTP keys to the collector: "
            "also set capture.unredacted: true to confirm",
        )
    if redact and unredacted:
        raise ConfigError(c.file, c.key("unredacted"), "true contradicts capture.redact: true")
    return CaptureConfig(
        hep_host=host,
        hep_port=port,
        node_id=c.get_int("node_id", 2001, 0, 2**32 - 1),
        redact=redact,
    )


_STORE_PREFIX_BAD = set("*?[]\\") | {chr(c) for c in range(33)} | {"\x7f"}


def _redis_url(file: str, key: str, url: str) -> str:
    """A Redis URL as redis-py reads it; the error never repeats it (it may hold a password)."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        port, db = u.port, u.path.strip("/")
    except ValueError as e:
        raise ConfigError(file, key, f"not a Redis URL: {e}") from None
    if u.scheme in ("redis", "rediss"):
        if not u.hostname:
            raise ConfigError(file, key, "a redis:// or rediss:// URL needs a host")
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(file, key, f"port must be between 1 and 65535, got {port}")
        if db and not db.isdigit():
            raise ConfigError(file, key, f"the path must be a database number, got {db!r}")
    elif u.scheme == "unix":
        if not u.path:
            raise ConfigError(file, key, "a unix:// URL needs a socket path")
    else:
        raise ConfigError(file, key, "must be a redis://, rediss:// or unix:// URL")
    return url


def _registration_store(rg: _Reader) -> RegistrationStoreConfig:
    st = rg.sub(
        "store",
        {
            "backend",
            "url",
            "prefix",
            "outbox_max",
            "timeout_s",
            "start_timeout_s",
            "reconnect_max_s",
            "retry_after_s",
        },
    )
    backend = st.get_str("backend", "memory")
    if backend not in ("memory", "redis"):
        raise ConfigError(st.file, st.key("backend"), f"must be memory or redis, got {backend!r}")
    prefix = st.get_str("prefix", "pcscf-alg:")
    # The prefix is matched by SCAN (a glob): no glob characters, no spaces or controls.
    if len(prefix) > 64 or any(c in _STORE_PREFIX_BAD for c in prefix):
        raise ConfigError(
            st.file,
            st.key("prefix"),
            f"must be at most 64 printable characters without spaces or * ? [ ] \\, got {prefix!r}",
        )
    return RegistrationStoreConfig(
        backend=backend,
        url=_redis_url(st.file, st.key("url"), st.get_str("url", "redis://127.0.0.1:6379/0")),
        prefix=prefix,
        outbox_max=st.get_int("outbox_max", 100_000, 1, 10_000_000),
        timeout_s=st.get_float("timeout_s", 2.0, 0.05, 60.0),
        start_timeout_s=st.get_float("start_timeout_s", 5.0, 0.0, 600.0),
        reconnect_max_s=st.get_float("reconnect_max_s", 5.0, 0.05, 300.0),
        retry_after_s=st.get_int("retry_after_s", 10, 1, 86400),
    )


def same_host(a: str, b: str) -> bool:
    """Whether sockets bound on `a` and `b` can clash: the same address, or a wildcard."""
    wild = ("0.0.0.0", "::")
    return a == b or a in wild or b in wild


def _worker_ports(s: _Reader, sip: SipConfig) -> SipConfig:
    """`sip.worker_ports: {access, core}`: validated, resolved (default: listener port + 1).
    Worker i's own ports are base + i on each side; they must not hit a listener or each
    other (the gateway's ranges are checked by pcscf_alg.workers.check_config)."""
    n = sip.workers
    w = s.sub("worker_ports", {"access", "core"})
    bases = {}
    for side, lst in (("access", sip.access), ("core", sip.core)):
        bases[side] = w.get_int(side, lst.port + 1, 1, 65535) if side in w.data else lst.port + 1
        if bases[side] + n - 1 > 65535:
            raise ConfigError(
                s.file,
                w.key(side) if side in w.data else "sip.workers",
                f"worker ports {bases[side]}..{bases[side] + n - 1} go past 65535",
            )
    ports = WorkerPorts(bases["access"], bases["core"])
    # Kept as written (None: derived from the listeners by `worker_port_bases`), so that a
    # reload that moves a listener does not report an untouched worker_ports as changed.
    given = ports if w.data else None
    if n == 1:
        return replace(sip, worker_ports=given)
    own = {
        "access": (sip.access.host, range(ports.access, ports.access + n)),
        "core": (sip.core.host, range(ports.core, ports.core + n)),
    }
    listeners = {"sip.access": sip.access, "sip.core": sip.core}
    for side, (host, rng) in own.items():
        key = w.key(side) if side in w.data else "sip.workers"
        for name, lst in listeners.items():
            if same_host(host, lst.host) and lst.port in rng:
                raise ConfigError(
                    s.file,
                    key,
                    f"worker {side} ports {rng.start}..{rng.stop - 1} include {name}.port "
                    f"{lst.port}: choose sip.worker_ports.{side} clear of the listeners",
                )
    (ah, ar), (ch, cr) = own["access"], own["core"]
    if same_host(ah, ch) and set(ar) & set(cr):
        raise ConfigError(
            s.file,
            "sip.worker_ports.core" if "core" in w.data else "sip.workers",
            f"worker core ports {cr.start}..{cr.stop - 1} overlap the worker access ports "
            f"{ar.start}..{ar.stop - 1}",
        )
    return replace(sip, worker_ports=given)


def _check_workers(
    file: str, sip: SipConfig, registration: RegistrationConfig, admin: AdminConfig
) -> None:
    """What `sip.workers` > 1 asks of the other sections."""
    n = sip.workers
    # Any worker may receive a UE's originating request or the core's terminating one for a
    # UE another worker registered: every worker must see every binding.
    if registration.store.backend != "redis":
        raise ConfigError(
            file,
            "sip.workers",
            f"{n} workers need a shared registration store: set registration.store.backend: "
            f"redis (got {registration.store.backend!r})",
        )
    if admin.enabled:
        # Worker i serves its own admin endpoint on admin.port + i.
        last = admin.port + n - 1
        if last > 65535:
            raise ConfigError(
                file, "admin.port", f"workers' admin ports {admin.port}..{last} go past 65535"
            )
        bases = sip.worker_port_bases()
        taken = [
            (sip.access.host, range(sip.access.port, sip.access.port + 1)),
            (sip.core.host, range(sip.core.port, sip.core.port + 1)),
            (sip.access.host, range(bases.access, bases.access + n)),
            (sip.core.host, range(bases.core, bases.core + n)),
        ]
        mine = range(admin.port, last + 1)
        for host, rng in taken:
            if sip.tcp and same_host(admin.host, host) and set(rng) & set(mine):
                raise ConfigError(
                    file,
                    "admin.port",
                    f"workers' admin ports {admin.port}..{last} overlap SIP ports "
                    f"{rng.start}..{rng.stop - 1}",
                )


def parse_config(data: Any, file: str) -> Config:
    """Validate a parsed YAML document. Sections owned by other layers are checked by them."""
    top = _Reader(file, data, "", _TOP_KEYS)
    s = top.sub(
        "sip",
        {
            "access",
            "core",
            "next_hop",
            "udp",
            "tcp",
            "t1",
            "t2",
            "t4",
            "tcp_idle_timeout_s",
            "tcp_max_connections",
            "tcp_max_connections_per_ip",
            "tcp_message_timeout_s",
            "max_message_bytes",
            "max_transactions",
            "overload_retry_after_s",
            "hosts",
            "egress_networks",
            "core_networks",
            "workers",
            "worker_ports",
        },
        required=True,
    )
    access = _listener(s, "access")
    core = _listener(s, "core")
    if (access.host, access.port) == (core.host, core.port):
        raise ConfigError(file, "sip.core", "must differ from sip.access (host and port)")
    nh = s.get_str("next_hop", None)
    nh_host, nh_port, nh_tr = _next_hop(file, "sip.next_hop", nh)
    t1 = s.get_float("t1", 0.5, 0.01, 10.0)
    idle_timeout = s.get_float("tcp_idle_timeout_s", 300.0, 1.0, 86400.0)
    sip = SipConfig(
        access=access,
        core=core,
        next_hop=nh,
        next_hop_host=nh_host,
        next_hop_port=nh_port,
        next_hop_transport=nh_tr,
        udp=s.get_bool("udp", True),
        tcp=s.get_bool("tcp", True),
        t1=t1,
        t2=s.get_float("t2", 4.0, t1, 60.0),
        t4=s.get_float("t4", 5.0, 0.0, 60.0),
        tcp_idle_timeout_s=idle_timeout,
        tcp_max_connections=s.get_int("tcp_max_connections", 2048, 1, 1_000_000),
        tcp_max_connections_per_ip=s.get_int("tcp_max_connections_per_ip", 32, 1, 1_000_000),
        # Default: 10 s, or the idle timeout when that is shorter (a config setting only that
        # stays valid).
        tcp_message_timeout_s=s.get_float(
            "tcp_message_timeout_s", min(10.0, idle_timeout), 0.1, 600.0
        ),
        max_message_bytes=s.get_int("max_message_bytes", 32_768, 1024, MAX_MESSAGE_BYTES_LIMIT),
        max_transactions=s.get_int("max_transactions", 50000, 1, 10_000_000),
        overload_retry_after_s=(
            s.get_int("overload_retry_after_s", 0, 1, 86400)
            if s.data.get("overload_retry_after_s") is not None
            else None
        ),
        hosts=_hosts(file, s.data.get("hosts")),
        egress_networks=_networks(file, "sip.egress_networks", s.data.get("egress_networks")),
        core_networks=_networks(file, "sip.core_networks", s.data.get("core_networks")),
        workers=s.get_int("workers", 1, 1, MAX_WORKERS),
    )
    sip = _worker_ports(s, sip)
    if not (sip.udp or sip.tcp):
        raise ConfigError(file, "sip.udp", "at least one of sip.udp and sip.tcp must be true")
    if sip.tcp_max_connections_per_ip > sip.tcp_max_connections:
        raise ConfigError(
            file,
            "sip.tcp_max_connections_per_ip",
            f"must not exceed sip.tcp_max_connections ({sip.tcp_max_connections}), "
            f"got {sip.tcp_max_connections_per_ip}",
        )
    if sip.tcp_message_timeout_s > sip.tcp_idle_timeout_s:
        raise ConfigError(
            file,
            "sip.tcp_message_timeout_s",
            f"must not exceed sip.tcp_idle_timeout_s ({sip.tcp_idle_timeout_s}), "
            f"got {sip.tcp_message_timeout_s}",
        )
    rg = top.sub(
        "registration",
        {
            "require_for_originating",
            "default_expires",
            "sweep_interval_s",
            "secagree_max_failures",
            "secagree_window_s",
            "store",
        },
    )
    registration = RegistrationConfig(
        require_for_originating=rg.get_bool("require_for_originating", True),
        default_expires=rg.get_int("default_expires", 600000, 1, 2**31 - 1),
        sweep_interval_s=rg.get_float("sweep_interval_s", 5.0, 0.05, 3600.0),
        secagree_max_failures=rg.get_int("secagree_max_failures", 5, 1, 1000),
        secagree_window_s=rg.get_float("secagree_window_s", 60.0, 1.0, 86400.0),
        store=_registration_store(rg),
    )
    dg = top.sub("dialogs", {"idle_timeout_s"})
    dialogs = DialogConfig(idle_timeout_s=dg.get_float("idle_timeout_s", 7200.0, 1.0, 7 * 86400.0))
    e = top.sub("e2ae", {"rtp", "msrp", "anchor_all"})
    e2ae = E2aeConfig(
        rtp=e.get_bool("rtp", True),
        msrp=e.get_bool("msrp", True),
        anchor_all=e.get_bool("anchor_all", False),
    )
    a = top.sub("admin", {"enabled", "host", "port"})
    admin = AdminConfig(
        enabled=a.get_bool("enabled", False),
        host=_ip(file, "admin.host", a.get_str("host", "127.0.0.1")),
        port=a.get_int("port", 5090, 1, 65535),
    )
    if sip.workers > 1:
        _check_workers(file, sip, registration, admin)
    lg = top.sub("log", {"level", "format"})
    level = lg.get_str("level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(file, "log.level", f"must be DEBUG, INFO, WARNING or ERROR, got {level}")
    log_format = lg.get_str("format", "text")
    if log_format not in ("text", "json"):
        raise ConfigError(file, "log.format", f"must be text or json, got {log_format!r}")
    capture = _capture(top) if top.data.get("capture") is not None else None
    for name in ("agw", "policy", "li"):
        if name in top.data and top.data[name] is not None and not isinstance(top.data[name], dict):
            raise ConfigError(file, name, "must be a mapping")
    return Config(
        file=file,
        sip=sip,
        registration=registration,
        dialogs=dialogs,
        e2ae=e2ae,
        admin=admin,
        log_level=level,
        log_format=log_format,
        capture=capture,
        agw=top.data.get("agw"),
        policy=top.data.get("policy"),
        li=top.data.get("li"),
    )


def load_yaml(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(path, "<file>", f"cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise ConfigError(path, where, f"invalid YAML: {getattr(e, 'problem', e)}") from None


def load_config(path: str | None) -> Config:
    """Load and validate `path`, or the embedded default config when None."""
    if path is None:
        text = resources.files("pcscf_alg").joinpath("default.yaml").read_text(encoding="utf-8")
        return parse_config(yaml.safe_load(text), "<embedded default.yaml>")
    return parse_config(load_yaml(path), path)
