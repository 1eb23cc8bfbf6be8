"""The `agw:` section of the daemon's YAML: validated once at start, every error names its key.

```yaml
agw:
  access_host: 127.0.0.1      # local address towards the UEs (Gm side)
  core_host: 127.0.0.1        # local address towards the core (Mw side)
  rtp_ports: [30000, 39999]   # UDP range; RTP takes even/odd pairs (RFC 3550 §11)
  msrp_ports: [40000, 40999]  # TCP range; one port per MSRP leg
  cert_dir: var/agw           # where the gateway's self-signed certificate lives
  media_timeout_s: 60         # no packet either way for this long => MediaTimeout event
  # optional, with defaults:
  tls_handshake_timeout_s: 10
  msrp_idle_timeout_s: 3600
  msrp_max_pending_connections: 8  # unauthenticated connections per MSRP access port
  strict_source: true         # core-side media only from the core's signalled address (below)
  max_streams_per_call: 16    # anchored streams one call may hold; more => 488
  backend: embedded           # or rtpengine: RTP streams in rtpengine, MSRP stays embedded
  rtpengine:                  # only read with backend: rtpengine
    ng: "127.0.0.1:2223"      # rtpengine's --listen-ng (UDP), an IP:port (no DNS on a call)
    timeout_s: 1.0            # wait for one reply
    retries: 2                # resends of an unanswered request (same cookie)
    max_pending: 256          # ng requests awaiting a reply; more => 488
```
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "access_host": "127.0.0.1",
    "core_host": "127.0.0.1",
    "rtp_ports": [30000, 39999],
    "msrp_ports": [40000, 40999],
    "cert_dir": "var/agw",
    "media_timeout_s": 60,
    # A TLS handshake on a mobile link takes a few RTTs; 10 s is generous and still bounds the
    # resources an unauthenticated peer can hold (same order as nginx's ssl_handshake_timeout 60 s
    # / HAProxy's 5 s).
    "tls_handshake_timeout_s": 10,
    # MSRP sessions are long-lived and may be silent (chat); RFC 4975 has no keep-alive, so the
    # idle limit must be long. One hour, like common SBC defaults for TCP media.
    "msrp_idle_timeout_s": 3600,
    # Connections to one MSRP access port that have not yet authenticated as the UE (TLS
    # handshake under way, or held until the answer configures the stream). One UE needs one,
    # plus a retry or two; 8 leaves room for those while an intruder's connections are around,
    # and bounds the TLS state and file descriptors anyone can hold per port (issue 11).
    "msrp_max_pending_connections": 8,
    # Strict source (rtpengine's strict-source, IP *and* port): RTP/RTCP reaching a core-side
    # port is relayed only from the address the core signalled for that stream, so nobody else
    # can speak into a call (issue 11: media injection under K12). In pass-through the UE side
    # latches only on packets from the IP the UE signalled. `false` relays from anyone.
    "strict_source": True,
    # Anchored streams (port pairs / MSRP legs) one call may hold. A VoLTE/ViLTE call with
    # audio + video + MSRP + T.140 has <= 6; one INVITE must not be able to take hundreds of
    # ports (issue 11 item 9).
    "max_streams_per_call": 16,
    # `embedded`: every stream in this process (no external part). `rtpengine`: RTP/SRTP streams
    # in an rtpengine reached over its ng protocol (docs/design.md §3), MSRP still embedded.
    "backend": "embedded",
    "rtpengine": None,
}

BACKENDS = ("embedded", "rtpengine")

RTPENGINE_DEFAULTS: dict[str, Any] = {
    # rtpengine's usual --listen-ng (the Kamailio module's example and docker_open5gs use 2223).
    "ng": "127.0.0.1:2223",
    # One reply on loopback or a LAN takes well under a millisecond; Kamailio's rtpengine module
    # waits 1 s (rtpengine_tout_ms) and retries. A call set-up sends 4 requests, so rtpengine
    # being down costs (1 + retries) * timeout_s before the 488.
    "timeout_s": 1.0,
    "retries": 2,
    # Requests in flight at once: a set-up holds one per call being set up; 256 is far above
    # what one process sets up per reply time, and bounds the table a flood of offers can fill.
    "max_pending": 256,
}


@dataclass(frozen=True)
class RtpengineConfig:
    ng_host: str = "127.0.0.1"
    ng_port: int = 2223
    timeout_s: float = 1.0
    retries: int = 2
    max_pending: int = 256


@dataclass(frozen=True)
class AgwConfig:
    access_host: str = "127.0.0.1"
    core_host: str = "127.0.0.1"
    rtp_ports: tuple[int, int] = (30000, 39999)
    msrp_ports: tuple[int, int] = (40000, 40999)
    cert_dir: Path = Path("var/agw")
    media_timeout_s: float = 60.0
    tls_handshake_timeout_s: float = 10.0
    msrp_idle_timeout_s: float = 3600.0
    msrp_max_pending_connections: int = 8
    strict_source: bool = True
    max_streams_per_call: int = 16
    backend: str = "embedded"
    rtpengine: RtpengineConfig = RtpengineConfig()


def _rtpengine(file: str, section: object) -> RtpengineConfig:
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(file, "agw.rtpengine", "must be a mapping")
    for key in section:
        if key not in RTPENGINE_DEFAULTS:
            raise ConfigError(file, f"agw.rtpengine.{key}", "unknown key")
    raw = {**RTPENGINE_DEFAULTS, **section}
    ng = raw["ng"]
    where = "agw.rtpengine.ng"
    if not isinstance(ng, str):
        raise ConfigError(file, where, 'must be a string "IP:port" ("[IPv6]:port")')
    host, sep, port_text = ng.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(file, where, f"not an IP:port: {ng!r}") from None
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(file, where, f"port missing or outside 1..65535 in {ng!r}")
    timeout = raw["timeout_s"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigError(file, "agw.rtpengine.timeout_s", "must be a number of seconds")
    # Below 10 ms a loaded rtpengine answers late and every request is retried; above 10 s a
    # dead rtpengine holds the caller's INVITE past its own patience.
    if not 0.01 <= timeout <= 10:
        raise ConfigError(file, "agw.rtpengine.timeout_s", "must be between 0.01 and 10")
    retries = raw["retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 5:
        raise ConfigError(file, "agw.rtpengine.retries", "must be an integer between 0 and 5")
    pending = raw["max_pending"]
    if isinstance(pending, bool) or not isinstance(pending, int) or not 1 <= pending <= 65536:
        raise ConfigError(
            file, "agw.rtpengine.max_pending", "must be an integer between 1 and 65536"
        )
    return RtpengineConfig(host, int(port_text), float(timeout), retries, pending)


def _host(file: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(file, f"agw.{key}", "must be an IP address string")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(file, f"agw.{key}", f"not an IP address: {value!r}") from None
    return value


def _port_range(file: str, key: str, value: object, *, pairs: bool) -> tuple[int, int]:
    where = f"agw.{key}"
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(file, where, "must be a list [first, last]")
    lo, hi = value
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(file, where, "ports must be integers")
        if not 1024 <= v <= 65535:
            raise ConfigError(file, where, f"port {v} outside 1024..65535")
    if lo > hi:
        raise ConfigError(file, where, "first port is above last port")
    if pairs:
        first_even = lo + (lo & 1)
        if first_even + 1 > hi:
            raise ConfigError(file, where, "range holds no even/odd RTP port pair")
    return lo, hi


def _seconds(file: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(file, f"agw.{key}", "must be a number of seconds")
    if not value > 0:
        raise ConfigError(file, f"agw.{key}", "must be > 0")
    return float(value)


def _flag(file: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(file, f"agw.{key}", "must be true or false")
    return value


def _count(file: str, key: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(file, f"agw.{key}", "must be an integer")
    if not lo <= value <= hi:
        raise ConfigError(file, f"agw.{key}", f"must be between {lo} and {hi}")
    return value


def parse_agw_config(section: Mapping[str, Any] | None, file: str) -> AgwConfig:
    """Validate the `agw:` mapping (None = all defaults) and build an `AgwConfig`."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(file, "agw", "must be a mapping")
    for key in section:
        if key not in DEFAULTS:
            raise ConfigError(file, f"agw.{key}", "unknown key")
    raw = {**DEFAULTS, **section}
    cert_dir = raw["cert_dir"]
    if not isinstance(cert_dir, str) or not cert_dir:
        raise ConfigError(file, "agw.cert_dir", "must be a non-empty path string")
    rtp = _port_range(file, "rtp_ports", raw["rtp_ports"], pairs=True)
    msrp = _port_range(file, "msrp_ports", raw["msrp_ports"], pairs=False)
    backend = raw["backend"]
    if backend not in BACKENDS:
        raise ConfigError(file, "agw.backend", f"must be one of {', '.join(BACKENDS)}")
    return AgwConfig(
        backend=backend,
        rtpengine=_rtpengine(file, raw["rtpengine"]),
        access_host=_host(file, "access_host", raw["access_host"]),
        core_host=_host(file, "core_host", raw["core_host"]),
        rtp_ports=rtp,
        msrp_ports=msrp,
        cert_dir=Path(cert_dir),
        media_timeout_s=_seconds(file, "media_timeout_s", raw["media_timeout_s"]),
        tls_handshake_timeout_s=_seconds(
            file, "tls_handshake_timeout_s", raw["tls_handshake_timeout_s"]
        ),
        msrp_idle_timeout_s=_seconds(file, "msrp_idle_timeout_s", raw["msrp_idle_timeout_s"]),
        # 0 would refuse even the UE; above 1024 it bounds nothing (one process's fd limit).
        msrp_max_pending_connections=_count(
            file, "msrp_max_pending_connections", raw["msrp_max_pending_connections"], 1, 1024
        ),
        strict_source=_flag(file, "strict_source", raw["strict_source"]),
        # 0 would refuse every anchored call; beyond 1024 one INVITE could again take
        # thousands of ports, which is what the cap is for.
        max_streams_per_call=_count(
            file, "max_streams_per_call", raw["max_streams_per_call"], 1, 1024
        ),
    )
