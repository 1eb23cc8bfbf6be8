"""`pcscf-alg sdp`: a dry run of the e2ae SDP rewrite, for operators tuning policy.

Given an offer (and optionally its answer), the direction, the registration flags and a config
file, it prints the rewritten SDP for each hop and the decision per stream. The gateway is
simulated: its addresses are `--agw-access`/`--agw-core`, ports are handed out from
`--access-port`/`--core-port` in steps of 10, and its certificate fingerprint is a fixed dummy.
Keys are redacted unless `--show-keys` is given.

Input files may be a bare SDP body or a whole SIP message (the body is taken after the first
empty line); `-` reads stdin.

Exit status: 0 done, 1 the offer or answer would be refused (488, printed with its Warning),
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from .e2ae import E2aeFlags, apply_answer, apply_offer, plan_offer, redact_sdp
from .errors import ConfigError, GatewayError, SdpError
from .mediaplan import (
    Direction,
    Endpoint,
    Fingerprint,
    MediaPlan,
    SrtpKey,
    StreamPlan,
    StreamRequest,
    StreamReservation,
)
from .policy import Policy, load_policy

PORT_STEP = 10  # like the spec examples: 40000 audio, 40010 message...
# A stand-in for the gateway certificate: clearly not a real one.
DRY_RUN_FINGERPRINT = Fingerprint("sha-256", hashlib.sha256(b"pcscf-alg dry run").digest())


def add_subparser(subparsers: Any) -> None:
    """Register the `sdp` sub-command on an argparse subparsers object."""
    p = subparsers.add_parser(
        "sdp",
        help="dry-run the e2ae SDP rewrite of an offer/answer",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _arguments(p)
    p.set_defaults(func=run)


def _flags(text: str) -> frozenset[str]:
    items = frozenset(t.strip().lower() for t in text.split(",") if t.strip())
    bad = items - {"rtp", "msrp", "none"}
    if bad:
        raise argparse.ArgumentTypeError(f"unknown protocol {sorted(bad)[0]!r} (rtp, msrp, none)")
    return items - {"none"}


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--offer", required=True, metavar="FILE", help="the SDP offer ('-' = stdin)")
    p.add_argument("--answer", metavar="FILE", help="the SDP answer to that offer")
    p.add_argument(
        "--direction", "-d", required=True,
        choices=["originating", "orig", "terminating", "term"],
        help="originating: offer from the UE (TS 33.328 7.2.1); terminating: offer towards "
        "the UE (7.3.1)",
    )
    p.add_argument("--ue", type=_flags, default=frozenset(), metavar="PROTOS",
                   help="e2ae support the UE indicated at registration: rtp,msrp (default none)")
    p.add_argument("--net", type=_flags, default=frozenset({"rtp", "msrp"}), metavar="PROTOS",
                   help="e2ae support the P-CSCF indicated (default rtp,msrp)")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="YAML config; its policy: section is used (default strict 3GPP)")
    p.add_argument("--subscriber", metavar="IMPU", help="the served user, for policy overrides")
    p.add_argument("--anchor-all", action="store_true",
                   help="anchor non-e2ae RTP/MSRP streams at the gateway too (PASS mode)")
    p.add_argument("--agw-access", default="203.0.113.20", metavar="HOST",
                   help="gateway address towards the UE")
    p.add_argument("--agw-core", default="192.0.2.20", metavar="HOST",
                   help="gateway address towards the core")
    p.add_argument("--access-port", type=int, default=40000, metavar="PORT")
    p.add_argument("--core-port", type=int, default=30000, metavar="PORT")
    p.add_argument("--reoffer", metavar="FILE",
                   help="a re-offer in the dialog of --offer/--answer (needs --answer): shows "
                   "what happens to streams that were e2ae (policy e2ae_downgrade)")
    p.add_argument("--reoffer-direction", choices=["originating", "orig", "terminating", "term"],
                   help="who sends the re-offer (default: as --direction)")
    p.add_argument("--show-keys", action="store_true", help="print keys in clear")
    p.add_argument("--seed", type=int, metavar="N",
                   help="deterministic keys (for documentation and tests)")


def _read(path: str) -> bytes:
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    first = data.split(b"\n", 1)[0]
    if not first.startswith(b"v=") and b"SIP/2.0" in first:
        for sep in (b"\r\n\r\n", b"\n\n"):
            _, found, body = data.partition(sep)
            if found:
                return body
    return data


def _load_policy(path: str | None) -> Policy:
    if path is None:
        return load_policy(None, "<defaults>")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(path, "-", f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, "-", f"not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "-", "top level must be a mapping")
    return load_policy(data.get("policy"), path)


def _rng(seed: int | None) -> Callable[[int], bytes]:
    if seed is None:
        return secrets.token_bytes
    r = random.Random(seed)
    return r.randbytes


def _key(k: SrtpKey | None, show: bool) -> str:
    if k is None:
        return "-"
    import base64

    key = base64.b64encode(k.key_salt).decode() if show else "<redacted>"
    return f"tag {k.tag} {k.suite} {key}"


def _ep(e: Endpoint | None) -> str:
    if e is None:
        return "-"
    rtcp = "" if e.rtcp_port is None else f" rtcp {e.rtcp_port}"
    return f"{e.host}:{e.port}{rtcp}"


def _plan_lines(plan: MediaPlan, show: bool) -> list[str]:
    out: list[str] = []
    for s in plan.streams:
        out.append(f"  m[{s.index}] {s.kind.value} {s.mode.value}: "
                   f"ue {_ep(s.ue_remote)} / core {_ep(s.core_remote)}")
        out.extend(_stream_detail(s, show))
    return out


def _stream_detail(s: StreamPlan, show: bool) -> list[str]:
    out: list[str] = []
    if s.rx_key is not None or s.tx_key is not None:
        out.append(f"        rx (from UE) {_key(s.rx_key, show)}")
        out.append(f"        tx (to UE)   {_key(s.tx_key, show)}")
        out.append(f"        rtcp-mux access={s.access_rtcp_mux} core={s.core_rtcp_mux}")
    if s.kind.value == "msrp" and s.mode.value in ("e2ae", "pass"):
        fps = ", ".join(fp.to_sdp() for fp in s.ue_fingerprint) or "-"
        out.append(f"        setup access={s.access_setup.value} core={s.core_setup.value}; "
                   f"msrp {s.msrp_mode.value}")
        if s.ue_fingerprint:
            out.append(f"        UE fingerprint {fps}")
        if s.agw_access_path or s.agw_core_path:
            out.append(f"        path access {s.agw_access_path} / core {s.agw_core_path}")
        if s.core_tls:
            out.append("        TLS terminated on the core leg too")
    if s.through.value != "sendrecv":
        out.append(f"        through-connection {s.through.value}")
    return out


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    direction = (Direction.ORIGINATING if args.direction.startswith("orig")
                 else Direction.TERMINATING)
    flags = E2aeFlags(ue_rtp="rtp" in args.ue, ue_msrp="msrp" in args.ue,
                      net_rtp="rtp" in args.net, net_msrp="msrp" in args.net)
    show = bool(args.show_keys)

    def sdp_text(data: bytes) -> str:
        text = data.decode("utf-8", "replace")
        return text if show else redact_sdp(text)

    try:
        policy = _load_policy(args.config)
        offer = _read(args.offer)
        answer = _read(args.answer) if args.answer else None
        reoffer = _read(args.reoffer) if args.reoffer else None
    except ConfigError as e:
        print(f"pcscf-alg sdp: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"pcscf-alg sdp: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    rng = _rng(args.seed)
    towards = "core" if direction is Direction.ORIGINATING else "UE"
    back = "UE" if direction is Direction.ORIGINATING else "core"
    clause = "7.2.1" if direction is Direction.ORIGINATING else "7.3.1"
    out.write(f"# direction {direction.value} (TS 33.328 {clause}); UE e2ae "
              f"rtp={flags.ue_rtp} msrp={flags.ue_msrp}; network rtp={flags.net_rtp} "
              f"msrp={flags.net_msrp}; {policy.describe(args.subscriber)}\n")
    if reoffer is not None and answer is None:
        print("pcscf-alg sdp: --reoffer needs --answer", file=sys.stderr)
        return 2
    stage = "offer"
    try:
        plan = plan_offer(offer, direction, flags, policy, args.subscriber,
                          anchor_all=args.anchor_all)
        res = apply_offer(plan, _reservations(args, plan.requests), rng)
        out.write(f"\n## offer P-CSCF -> {towards}\n")
        out.write(sdp_text(res.sdp))
        out.write("\n## decisions (offer)\n")
        out.writelines(f"  {d}\n" for d in res.decisions)
        if answer is None:
            return 0
        stage = "answer"
        ans = apply_answer(res.state, answer, rng)
        out.write(f"\n## answer P-CSCF -> {back}\n")
        out.write(sdp_text(ans.sdp))
        out.write("\n## decisions (answer)\n")
        out.writelines(f"  {d}\n" for d in ans.decisions)
        out.write("\n## media plan for the gateway\n")
        out.writelines(line + "\n" for line in _plan_lines(ans.plan, show))
        if reoffer is None:
            return 0
        stage = "re-offer"
        re_dir = direction if args.reoffer_direction is None else (
            Direction.ORIGINATING if args.reoffer_direction.startswith("orig")
            else Direction.TERMINATING)
        plan2 = plan_offer(reoffer, re_dir, flags, policy, args.subscriber,
                           anchor_all=args.anchor_all, previous=ans)
        res2 = apply_offer(plan2, _reservations(args, plan2.requests), rng)
        out.write(f"\n## re-offer ({re_dir.value}) P-CSCF -> "
                  f"{'core' if re_dir is Direction.ORIGINATING else 'UE'}\n")
        out.write(sdp_text(res2.sdp))
        out.write("\n## decisions (re-offer)\n")
        out.writelines(f"  {d}\n" for d in res2.decisions)
        return 0
    except SdpError as e:
        out.write(f"\n## {stage} refused: {e.status} Not Acceptable Here\n")
        out.write(f'Warning: 399 pcscf-alg "{e.reason}"\n')
        return 1
    except GatewayError as e:  # pragma: no cover - the simulated gateway always reserves
        print(f"pcscf-alg sdp: {e}", file=sys.stderr)
        return 2


def _reservations(
    args: argparse.Namespace, requests: Sequence[StreamRequest]
) -> dict[int, StreamReservation]:
    """The simulated gateway: the same ports for a stream index every time (as the real
    gateway keeps a stream's ports across re-offers)."""
    reservations: dict[int, StreamReservation] = {}
    for req in requests:
        acc = args.access_port + PORT_STEP * req.index
        core = args.core_port + PORT_STEP * req.index
        rtp = req.kind.value == "rtp"
        reservations[req.index] = StreamReservation(
            req.index, req.kind,
            Endpoint(args.agw_access, acc, None if req.access_rtcp_mux or not rtp
                     else acc + 1),
            Endpoint(args.agw_core, core, None if req.core_rtcp_mux or not rtp
                     else core + 1),
            DRY_RUN_FINGERPRINT if req.want_local_fingerprint else None,
        )
    return reservations


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pcscf-alg")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subparser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
