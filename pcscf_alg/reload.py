"""Live reload (issue 13): what a re-read config changes in a running daemon, and what it cannot.

Sans-IO: `plan_reload(old, new)` compares two validated `Config`s and returns the config the
daemon runs with from now on (the new value of every key that can change live, the old value of
every other key), the dotted keys that changed and apply, and those that changed but need a
restart (they stay as they were). `App.reload` (pcscf_alg/app.py) reads the file, calls this and
applies the plan; SIGHUP and the admin endpoint's `POST /reload` call it.

A key is live when a new value can take effect for *new* transactions, offers and streams while
what is in progress keeps what it was set up with:

- `policy:` (new offers; an offer already planned keeps the policy it was planned with and its
  answer is processed against it, established streams keep their decisions), `li:` (the key
  sink: records from now on go to the new one, the old one is closed), `log:`.
- `sip.t1`/`t2`/`t4` (RFC 3261 §17 timers started from now on), `sip.max_transactions` and
  `sip.overload_retry_after_s` (the cap new requests meet).
- `registration:` (every key is read per request or per sweep, except `registration.store.*`:
  the store's back end is chosen and connected at start), `dialogs:` (read per sweep),
  `e2ae.anchor_all` (new offers).
- `agw.strict_source`, `agw.tls_handshake_timeout_s`, `agw.msrp_idle_timeout_s`,
  `agw.msrp_max_pending_connections`, `agw.max_streams_per_call` (streams reserved from now on).

Everything else needs a restart, for these reasons: the listeners (`sip.access`, `sip.core`,
`sip.udp`, `sip.tcp`, `admin:`), the TCP front door sized against the open-file limit at start
(`sip.tcp_*`, `sip.max_message_bytes`, enforced by the transports), the network topology and the
trust placed in it (`sip.next_hop`, `sip.hosts`, `sip.egress_networks`, `sip.core_networks`),
what UEs registered against (`e2ae.rtp`/`msrp` in Security-Server, TS 33.328 7.1), the gateway's
sockets and identity (`agw.access_host`/`core_host`, port ranges, `cert_dir`) and
`agw.media_timeout_s` (it would change the timeout of calls in progress). So would any section
this module does not know (a key added later is not live until it is listed here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pcscf_alg.agw.config import AgwConfig, parse_agw_config
from pcscf_alg.config import Config

# Sections whose every key is live (top-level YAML names).
LIVE_SECTIONS = frozenset({"policy", "li", "log", "registration", "dialogs"})
# Single live keys of the other sections (dotted YAML names).
LIVE_KEYS = frozenset(
    {
        "sip.t1",
        "sip.t2",
        "sip.t4",
        "sip.max_transactions",
        "sip.overload_retry_after_s",
        "e2ae.anchor_all",
        "agw.strict_source",
        "agw.tls_handshake_timeout_s",
        "agw.msrp_idle_timeout_s",
        "agw.msrp_max_pending_connections",
        "agw.max_streams_per_call",
    }
)
# SipConfig fields derived from `sip.next_hop` (compared through it).
_DERIVED = frozenset({"sip.next_hop_host", "sip.next_hop_port", "sip.next_hop_transport"})


@dataclass(frozen=True)
class ReloadPlan:
    config: Config  # what the daemon runs with after the reload
    applied: tuple[str, ...]  # changed keys that take effect (sorted dotted names)
    restart_needed: tuple[str, ...]  # changed keys left as they were until a restart


# Sub-sections of a live section that need a restart all the same (dotted YAML names):
# `registration.store` chooses and connects the registration store's back end at start.
RESTART_SUBSECTIONS = frozenset({"registration.store"})


def is_live(key: str) -> bool:
    if any(key == s or key.startswith(s + ".") for s in RESTART_SUBSECTIONS):
        return False
    return key.split(".", 1)[0] in LIVE_SECTIONS or key in LIVE_KEYS


def _yaml_name(field_name: str) -> str:
    # Config keeps `log: {level}` as the flat field `log_level` (and `log_<x>` alike).
    if field_name.startswith("log_"):
        return "log." + field_name[len("log_") :]
    return field_name


def _agw(section: Mapping[str, Any] | None, file: str) -> AgwConfig:
    # The section was validated when the config was loaded; parsing it again gives the values
    # with their defaults, so `{}` and `{strict_source: true}` compare equal.
    return parse_agw_config(section, file)


def _flatten(cfg: Config) -> dict[str, object]:
    """Every key of `cfg` as dotted YAML name -> value (raw sections one level deep)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cfg):
        if f.name == "file":
            continue
        value = getattr(cfg, f.name)
        name = _yaml_name(f.name)
        if f.name == "agw":
            value = _agw(value, cfg.file)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for g in dataclasses.fields(value):
                v = getattr(value, g.name)
                sub = f"{name}.{g.name}"
                if sub in RESTART_SUBSECTIONS and dataclasses.is_dataclass(v):
                    # a sub-section (`registration.store`): named by its keys
                    for h in dataclasses.fields(v):
                        out[f"{name}.{g.name}.{h.name}"] = getattr(v, h.name)
                else:
                    out[f"{name}.{g.name}"] = v
        elif isinstance(value, Mapping) or value is None:
            # A section (raw, or an optional one such as `capture:`) is named by its keys: an
            # absent section and an empty one mean the same (defaults).
            for k, v in (value or {}).items():
                out[f"{name}.{k}"] = v
        else:
            out[name] = value
    return {k: v for k, v in out.items() if k not in _DERIVED}


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose value differs between `old` and `new` (a raw section appearing or
    disappearing is named by its keys)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def _merge_agw(old: Config, new: Config) -> dict[str, Any] | None:
    """The `agw:` section to run with: the old one with the live keys as the new file has them."""
    live = {k.split(".", 1)[1] for k in LIVE_KEYS if k.startswith("agw.")}
    merged = {k: v for k, v in (old.agw or {}).items() if k not in live}
    merged.update({k: v for k, v in (new.agw or {}).items() if k in live})
    if old.agw is None and not merged:
        return None
    return merged


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """What reloading `new` over the running `old` does (both already validated)."""
    keys = changed_keys(old, new)
    applied = tuple(k for k in keys if is_live(k))
    restart = tuple(k for k in keys if not is_live(k))
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(old):
        name = f.name
        section = _yaml_name(name).split(".", 1)[0]
        if name == "file":
            changes[name] = new.file
        elif section in LIVE_SECTIONS:
            changes[name] = getattr(new, name)
            for sub in RESTART_SUBSECTIONS:
                sec, _, field_name = sub.partition(".")
                if sec == section:  # keeps what it was started with
                    changes[name] = dataclasses.replace(
                        changes[name], **{field_name: getattr(getattr(old, name), field_name)}
                    )
        elif name == "agw":
            changes[name] = _merge_agw(old, new)
        else:
            cur, nxt = getattr(old, name), getattr(new, name)
            live = [
                g.name
                for g in (dataclasses.fields(cur) if dataclasses.is_dataclass(cur) else ())
                if f"{section}.{g.name}" in LIVE_KEYS
            ]
            if live:
                changes[name] = dataclasses.replace(cur, **{n: getattr(nxt, n) for n in live})
            # any other field (a listener, a section this module does not know) stays as it was
    return ReloadPlan(dataclasses.replace(old, **changes), applied, restart)


__all__ = [
    "LIVE_KEYS",
    "LIVE_SECTIONS",
    "RESTART_SUBSECTIONS",
    "ReloadPlan",
    "changed_keys",
    "is_live",
    "plan_reload",
]
