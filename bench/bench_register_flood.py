"""Memory held per unauthenticated REGISTER in the proxy core (tracemalloc), issue 11 item 6.

Drives `Pcscf` as pure code (no sockets, injected time) with N distinct initial REGISTERs, as
a flood from N spoofed UEs would arrive, each forwarded to the registrar, and reports the bytes
retained per REGISTER at the three moments that matter:

  pending    the registrar has not answered yet (server transaction Trying, client transaction
             Trying with its retransmission bytes: up to Timer F = 64*T1);
  answered   the registrar answered 401 (server Completed for Timer J = 64*T1 to absorb
             retransmissions, client Completed for Timer K = T4);
  after-K    Timer K fired (only the server transactions are left, until Timer J).

With `--top` it also lists the allocation sites holding the most memory in the answered state.
Run:

    .venv/bin/python bench/bench_register_flood.py [N] [--top]
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcscf_alg.alg import Pcscf
from pcscf_alg.config import parse_config
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore
from pcscf_alg.sip.message import parse_message
from pcscf_alg.sip.transaction import Peer

REGISTRAR = Peer("udp", "127.0.0.1", 5080)


def register(i: int) -> bytes:
    """An initial VoLTE REGISTER (TS 24.229 5.1.1.2) as a UE sends it, ~900 bytes."""
    msisdn = f"+4915{i:09d}"
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return (
        "REGISTER sip:ims.mnc001.mcc262.3gppnetwork.org SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{i:012d}flood;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{msisdn}@ims.mnc001.mcc262.3gppnetwork.org>;tag=f{i:08d}\r\n"
        f"To: <sip:{msisdn}@ims.mnc001.mcc262.3gppnetwork.org>\r\n"
        f"Call-ID: {i:016x}@{ip}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f'Contact: <sip:{msisdn}@{ip}:5060>;+sip.instance="<urn:gsma:imei:{i:015d}>";'
        '+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel";+g.3gpp.smsip\r\n'
        f'Authorization: Digest username="{i:015d}@ims.mnc001.mcc262.3gppnetwork.org",'
        'realm="ims.mnc001.mcc262.3gppnetwork.org",nonce="",'
        'uri="sip:ims.mnc001.mcc262.3gppnetwork.org",response=""\r\n'
        "Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec\r\n"
        "Require: sec-agree\r\nProxy-Require: sec-agree\r\n"
        "Supported: path, gruu, sec-agree\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, UPDATE, PRACK, MESSAGE, OPTIONS, NOTIFY, REFER\r\n"
        "Expires: 600000\r\n"
        "User-Agent: flood-ue/1.0\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def unauthorized(fwd: bytes, i: int) -> bytes:
    """The registrar's 401 (TS 24.229 5.4.1.2.1) to a forwarded REGISTER."""
    req = parse_message(fwd)
    h = req.headers
    lines = ["SIP/2.0 401 Unauthorized"]
    lines += [f"Via: {v}" for v in h.values("via")]
    lines += [
        f"From: {h.get('from')}",
        f"To: {h.get('to')};tag=reg{i:08d}",
        f"Call-ID: {h.get('call-id')}",
        f"CSeq: {h.get('cseq')}",
        'WWW-Authenticate: Digest realm="ims.mnc001.mcc262.3gppnetwork.org",'
        f'nonce="{i:032x}{i:032x}",algorithm=AKAv1-MD5,qop="auth"',
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


class Wire:
    """Keeps what goes to the registrar (when asked to), drops the rest."""

    def __init__(self) -> None:
        self.keep = False
        self.to_core: list[bytes] = []

    def __call__(self, side: Side, data: bytes, peer: Peer) -> None:
        if self.keep and side is Side.CORE:
            self.to_core.append(data)


def make() -> tuple[Pcscf, Wire]:
    cfg = parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5070},
                "next_hop": "sip:127.0.0.1:5080;lr",
                # No cap: this measures what each REGISTER costs.
                "max_transactions": 10_000_000,
            },
        },
        "bench.yaml",
    )
    wire = Wire()
    return Pcscf(cfg, InMemoryRegistrationStore(), wire), wire


def flood(p: Pcscf, n: int) -> None:
    for i in range(n):
        p.receive(register(i), Side.ACCESS, Peer("udp", "10.0.0.1", 10000 + i % 50000), 0.0)


def measure(n: int, top: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    # pending: nothing answers
    p, wire = make()
    gc.collect()
    tracemalloc.start(1)
    b0, _ = tracemalloc.get_traced_memory()
    flood(p, n)
    gc.collect()
    b1, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert p.layers[Side.ACCESS].server_count == n, p.layers[Side.ACCESS].server_count
    out["pending"] = (b1 - b0) / n
    del p, wire
    gc.collect()

    # answered: the registrar answers every REGISTER with 401
    p, wire = make()
    wire.keep = True
    gc.collect()
    tracemalloc.start(8 if top else 1)
    b0, _ = tracemalloc.get_traced_memory()
    flood(p, n)
    fwd = wire.to_core
    wire.to_core = []
    wire.keep = False
    for i, data in enumerate(fwd):
        p.receive(unauthorized(data, i), Side.CORE, REGISTRAR, 0.1)
    fwd.clear()
    del fwd
    gc.collect()
    b1, _ = tracemalloc.get_traced_memory()
    assert p.layers[Side.ACCESS].server_count == n
    out["answered"] = (b1 - b0) / n
    snap = tracemalloc.take_snapshot() if top else None
    # Timer K (T4) fires; Timer J (64*T1) has not
    p.handle_timer(0.1 + p.layers[Side.CORE].timers.T4 + 0.01)
    gc.collect()
    b2, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert p.layers[Side.CORE].client_count == 0
    assert p.layers[Side.ACCESS].server_count == n
    out["after-K"] = (b2 - b0) / n
    if snap is not None:
        snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        print(f"top allocation sites, answered state, bytes per REGISTER (N={n}):")
        for stat in snap.statistics("traceback")[:15]:
            frames = [f for f in stat.traceback if "pcscf_alg" in f.filename] or list(
                stat.traceback
            )
            where = " <- ".join(
                f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-3:])
            )
            print(f"  {stat.size / n:8.0f}  {where}")
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    n = int(args[0]) if args else 5000
    res = measure(n, "--top" in sys.argv)
    print(
        "Unauthenticated REGISTER, bytes retained per REGISTER "
        f"(N={n:,}, CPython {sys.version_info.major}.{sys.version_info.minor}, tracemalloc): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in res.items())
    )


if __name__ == "__main__":
    main()
