"""Command line: `pcscf-alg run --config FILE [--log-level LEVEL]`, `check-config FILE`,
`status [--admin URL]`, `reload [--admin URL]`, `sdp ...`.

`status` and `reload` are clients of the running daemon's admin endpoint (`admin:` in its
config; stdlib urllib, no extra dependency)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pcscf_alg import __version__
from pcscf_alg.config import Config, load_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.logs import setup_logging


def _validate_all(cfg: Config) -> None:
    """Validate the sections owned by other layers too, so check-config catches every error."""
    try:
        from pcscf_alg.agw.config import parse_agw_config
    except ImportError:  # pragma: no cover
        pass
    else:
        parse_agw_config(cfg.agw, cfg.file)
    try:
        from pcscf_alg.policy import load_policy
    except ImportError:  # pragma: no cover
        pass
    else:
        load_policy(cfg.policy, cfg.file)
    from pcscf_alg.workers import check_config

    check_config(cfg)  # what sip.workers > 1 asks of agw: (per-worker port slices)
    from pcscf_alg.li import load_sink

    sink = load_sink(cfg.li, cfg.file)
    close = getattr(sink, "close", None)
    if callable(close):
        close()


def _load(path: str | None) -> Config:
    cfg = load_config(path)
    _validate_all(cfg)
    return cfg


DEFAULT_ADMIN = "http://127.0.0.1:5090"
LOG_LEVELS = ("debug", "info", "warning", "error")


class AdminError(Exception):
    """The admin endpoint could not be reached or gave no usable answer."""


def _admin_request(base: str, path: str, *, post: bool = False, timeout: float = 10.0) -> Any:
    """GET (or POST, no body) `base + path` and decode its JSON. An HTTP error status whose
    body is JSON (a failed reload: 400) is returned as that JSON, not raised."""
    url = base.rstrip("/") + path
    req = urllib.request.Request(url, data=b"" if post else None, method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise AdminError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise AdminError(f"cannot reach the admin endpoint {url}: {reason}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise AdminError(f"{url}: not JSON") from None


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*row).rstrip() for row in rows]


def _ports(gw: dict[str, Any] | None) -> str:
    if not gw:
        return "-"
    access, core = gw.get("access"), gw.get("core")
    a = str(access["port"]) if access else "?"
    c = str(core["port"]) if core else "?"
    return f"{a}/{c}"


def _traffic(counters: dict[str, int] | None) -> str:
    if not counters:
        return "-"
    out = f"to core {counters.get('to_core_packets', 0)}, to UE {counters.get('to_ue_packets', 0)}"
    bad = counters.get("auth_failures", 0)
    return out + (f", auth failures {bad}" if bad else "")


def format_status(bindings: list[dict[str, Any]], calls: list[dict[str, Any]]) -> str:
    """The `status` tables: one row per binding, one per call leg and one per stream under it
    (gateway ports access/core, packets relayed each way). No key is ever in the input."""
    lines = [f"Bindings: {len(bindings)}"]
    if bindings:
        rows = []
        for b in sorted(bindings, key=lambda b: (b.get("impu", ""), b.get("contact", ""))):
            e2ae = b.get("e2ae") or {}
            flags = ",".join(p for p in ("rtp", "msrp") if e2ae.get(p)) or "-"
            rows.append(
                [
                    str(b.get("impu", "")),
                    str(b.get("contact", "")),
                    str(b.get("flow", "")),
                    flags,
                    f"{b.get('expires_in', '?')}s",
                    str(len(b.get("calls", []))),
                ]
            )
        lines += _table(["IMPU", "CONTACT", "FLOW", "E2AE", "EXPIRES", "CALLS"], rows)
    lines += ["", f"Calls: {len(calls)}"]
    ordered = sorted(calls, key=lambda c: (c.get("call_id", ""), c.get("leg", "")))
    if ordered:
        rows = [
            [
                str(c.get("call_id", "")),
                str(c.get("leg", "")),
                str(c.get("subscriber") or "-"),
                f"{c.get('age', 0):.0f}s",
                str(c.get("phase", "")),
                "yes" if c.get("anchored") else "no",
                str(len(c.get("streams", []))),
            ]
            for c in ordered
        ]
        lines += _table(
            ["CALL-ID", "LEG", "SUBSCRIBER", "AGE", "PHASE", "ANCHORED", "STREAMS"], rows
        )
    streams = [(c, s) for c in ordered for s in c.get("streams", [])]
    if streams:
        rows = [
            [
                str(c.get("call_id", "")),
                str(c.get("leg", "")),
                f"m[{s.get('index')}] {s.get('kind', '')}",
                str(s.get("mode", "")),
                _ports(s.get("gateway")),
                _traffic(s.get("counters")),
                str(s.get("clause", "")),
            ]
            for c, s in streams
        ]
        lines += ["", "Streams (gateway ports access/core):"]
        lines += _table(["CALL-ID", "LEG", "STREAM", "MODE", "PORTS", "PACKETS", "CLAUSE"], rows)
    return "\n".join(lines)


def worker_admins(admin: str) -> list[str]:
    """The admin endpoints of every worker of the daemon that `admin` belongs to (README
    "Worker processes": worker i serves admin.port + i and says which it is in /stats), or
    just `admin` for a single process."""
    st = _admin_request(admin, "/stats")
    proc = st.get("process") if isinstance(st, dict) else None
    index = proc.get("worker") if isinstance(proc, dict) else None
    count = proc.get("workers") if isinstance(proc, dict) else None
    if not isinstance(index, int) or not isinstance(count, int) or count <= 1:
        return [admin]
    u = urllib.parse.urlsplit(admin)
    if u.port is None:
        return [admin]
    first = u.port - index
    host = u.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return [
        urllib.parse.urlunsplit(u._replace(netloc=f"{host}:{first + i}")) for i in range(count)
    ]


def cmd_status(admin: str) -> int:
    """Bindings (one store, shared by every worker) and the calls of every worker."""
    try:
        admins = worker_admins(admin)
        bindings = _admin_request(admin, "/registrations")
        calls = []
        for url in admins:
            calls += _admin_request(url, "/calls")
    except AdminError as e:
        print(f"pcscf-alg status: {e}", file=sys.stderr)
        return 2
    print(format_status(bindings, calls))
    return 0


def cmd_reload(admin: str) -> int:
    """POST /reload to the daemon (to every worker); exit 0 when the new config is in force
    everywhere, 1 with the error when not."""
    try:
        admins = worker_admins(admin)
    except AdminError as e:
        print(f"pcscf-alg reload: {e}", file=sys.stderr)
        return 2
    if len(admins) == 1:
        return _reload_one(admins[0])
    rc = 0
    for i, url in enumerate(admins):
        print(f"worker {i} ({url}):")
        rc = max(rc, _reload_one(url))
    return rc


def _reload_one(admin: str) -> int:
    try:
        res = _admin_request(admin, "/reload", post=True, timeout=30.0)
    except AdminError as e:
        print(f"pcscf-alg reload: {e}", file=sys.stderr)
        return 2
    if not isinstance(res, dict):
        print(f"pcscf-alg reload: unexpected answer {res!r}", file=sys.stderr)
        return 2
    if not res.get("ok"):
        print(f"reload failed, nothing changed: {res.get('error')}", file=sys.stderr)
        return 1
    applied = res.get("applied") or []
    restart = res.get("restart_needed") or []
    print("reloaded")
    print(f"  applied: {', '.join(applied) if applied else 'nothing changed'}")
    if restart:
        print(f"  needs a restart (left as it was): {', '.join(restart)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pcscf-alg", description=__doc__)
    p.add_argument("--version", action="version", version=f"pcscf-alg {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", "-c", help="YAML config (default: the embedded loopback config)")
    r.add_argument(
        "--log-level", choices=LOG_LEVELS, type=str.lower, help="overrides log.level of the config"
    )
    # Internal: how the supervisor of `sip.workers` > 1 starts worker i (pcscf_alg/workers.py).
    r.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    for name, what in (
        ("status", "bindings and calls of a running daemon, as tables"),
        ("reload", "make a running daemon re-read its config file (POST /reload)"),
    ):
        client = sub.add_parser(name, help=what)
        client.add_argument(
            "--admin", default=DEFAULT_ADMIN, help=f"admin endpoint (default {DEFAULT_ADMIN})"
        )
    c = sub.add_parser("check-config", help="validate a config file and exit")
    c.add_argument("file")
    try:
        from pcscf_alg import sdp_cli
    except ImportError:  # pragma: no cover
        sdp_cli = None  # type: ignore[assignment]
    if sdp_cli is not None:
        sdp_cli.add_subparser(sub)
    args = p.parse_args(argv)

    if args.cmd == "check-config":
        try:
            _load(args.file)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        print(f"{args.file}: OK")
        return 0
    if args.cmd == "run":
        from pcscf_alg.workers import WorkerSlot, worker_config

        slot = None
        try:
            if args.worker_index is not None:
                # A worker process started by the supervisor (pcscf_alg/workers.py).
                if args.config is None:
                    raise ConfigError("<command line>", "--worker-index", "needs --config FILE")
                cfg = load_config(args.config)
                slot = WorkerSlot(args.worker_index, cfg.sip.workers)
                cfg = worker_config(args.config, slot)
                _validate_all(cfg)
            else:
                cfg = _load(args.config)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        if args.log_level:
            cfg = dataclasses.replace(cfg, log_level=args.log_level.upper())
        # log.format text|json, keys redacted in both (pcscf_alg/logs.py).
        setup_logging(cfg.log_level, cfg.log_format)
        level = args.log_level.upper() if args.log_level else None
        if slot is None and cfg.sip.workers > 1:
            from pcscf_alg.workers import supervise

            return supervise(cfg, level)
        from pcscf_alg.app import run

        if slot is None:
            run(cfg, level)
        else:
            run(cfg, level, slot)
        return 0
    if args.cmd == "status":
        return cmd_status(args.admin)
    if args.cmd == "reload":
        return cmd_reload(args.admin)
    if args.cmd == "sdp" and sdp_cli is not None:
        return int(sdp_cli.run(args))
    p.error(f"unknown command {args.cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
