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
}


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
    return AgwConfig(
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
