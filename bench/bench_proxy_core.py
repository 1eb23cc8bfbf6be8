"""CPU cost of one proxied call in the sans-IO proxy core, without sockets.

A call is INVITE (with SDP) / 100 / 180 / 200 / ACK / BYE / 200, UE on the access side, a UAS
behind the core side, no e2ae (plain RTP/AVP). Only the time spent inside the proxy (`receive`
and `handle_timer`) is counted; the stand-in peers' message building is not.

    .venv/bin/python -m bench.bench_proxy_core [--calls N] [--profile]

The result bounds the calls/s one core can route: the daemon adds the asyncio/uvloop edge and
the kernel's UDP work on top (bench/bench_cps.sh measures the whole daemon with SIPp).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from pcscf_alg.alg import Pcscf
from pcscf_alg.config import parse_config
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore
from pcscf_alg.sip.message import parse_message
from pcscf_alg.sip.transaction import Peer

UE = Peer("udp", "127.0.0.1", 5080)
CORE = Peer("udp", "127.0.0.1", 5070)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 16000 RTP/AVP 116 100\r\na=rtpmap:116 AMR-WB/16000/1\r\n"
    "a=fmtp:116 mode-change-capability=2;max-red=0\r\n"
    "a=rtpmap:100 telephone-event/16000\r\na=fmtp:100 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


def _invite(i: int) -> bytes:
    return (
        "INVITE sip:service@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-1\r\n"
        f"From: <sip:ue{i}@ims.test>;tag={i}SIPpTag00\r\nTo: <sip:service@127.0.0.1:5070>\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:ue@127.0.0.1:5080>\r\n"
        "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def _response(req: bytes, status: int, reason: str, body: str = "") -> bytes:
    h = parse_message(req).headers
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in h.values("via")]
    lines += [f"Record-Route: {v}" for v in h.values("record-route")]
    lines += [
        f"From: {h.get('from')}",
        f"To: {h.get('to')};tag=uas",
        f"Call-ID: {h.get('call-id')}",
        f"CSeq: {h.get('cseq')}",
        "Contact: <sip:127.0.0.1:5070>",
    ]
    if body:
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
    else:
        lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def _in_dialog(method: str, i: int, cseq: int, ok: bytes) -> bytes:
    m = parse_message(ok)
    routes = "".join(f"Route: {r}\r\n" for r in reversed(m.headers.values("record-route")))
    return (
        f"{method} sip:127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-{method}\r\n{routes}"
        f"From: <sip:ue{i}@ims.test>;tag={i}SIPpTag00\r\nTo: {m.headers.get('to')}\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def run(n: int) -> float:
    """µs of proxy CPU per call, over `n` calls."""
    cfg = parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5072},
                "next_hop": "sip:127.0.0.1:5070;lr",
            },
            "registration": {"require_for_originating": False},
        },
        "bench",
    )
    out: list[tuple[Side, bytes]] = []
    p = Pcscf(cfg, InMemoryRegistrationStore(), lambda side, data, peer: out.append((side, data)))
    spent = 0.0
    clock = time.perf_counter

    def feed(data: bytes, side: Side, peer: Peer, now: float) -> None:
        nonlocal spent
        t = clock()
        p.receive(data, side, peer, now)
        spent += clock() - t

    now = 0.0
    for i in range(n):
        now += 0.001
        feed(_invite(i), Side.ACCESS, UE, now)
        fwd = next(d for s, d in out if s is Side.CORE)
        out.clear()
        feed(_response(fwd, 180, "Ringing"), Side.CORE, CORE, now)
        feed(_response(fwd, 200, "OK", SDP), Side.CORE, CORE, now)
        ok = next(d for s, d in out if s is Side.ACCESS and d.startswith(b"SIP/2.0 200"))
        out.clear()
        feed(_in_dialog("ACK", i, 1, ok), Side.ACCESS, UE, now)
        feed(_in_dialog("BYE", i, 2, ok), Side.ACCESS, UE, now)
        bye = next(d for s, d in out if s is Side.CORE and d.startswith(b"BYE"))
        out.clear()
        feed(_response(bye, 200, "OK"), Side.CORE, CORE, now)
        out.clear()
        t = clock()
        p.handle_timer(now)
        spent += clock() - t
    return spent / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        run(args.calls)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        return
    us = min(run(args.calls) for _ in range(3))
    print(
        f"proxy core: {us:.0f} µs of CPU per call (7 messages in, 7 out) "
        f"-> at most {1e6 / us:.0f} calls/s on one core"
    )


if __name__ == "__main__":
    main()
