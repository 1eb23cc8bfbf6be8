"""Cost of one proxied call in the sans-IO proxy core (no sockets): INVITE/100/180/200/ACK/BYE/200.

    python -m bench.bench_proxy_core [--calls N] [--profile]

Reports µs of CPU per call on one core, i.e. the ceiling on calls/s the proxy logic allows.
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
    "a=fmtp:116 mode-change-capability=2;max-red=0\r\na=rtpmap:100 telephone-event/16000\r\n"
    "a=fmtp:100 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


def call(i: int) -> list[tuple[bytes, Side, Peer]]:
    cid = f"{i}-bench@127.0.0.1"
    inv = (
        f"INVITE sip:service@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-1\r\n"
        f"From: <sip:ue{i}@ims.test>;tag={i}SIPpTag00\r\nTo: <sip:service@127.0.0.1:5070>\r\n"
        f"Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:ue@127.0.0.1:5080>\r\n"
        f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
    )
    return [(inv.encode(), Side.ACCESS, UE)]


class Wire:
    def __init__(self) -> None:
        self.out: list[tuple[Side, bytes, Peer]] = []

    def __call__(self, side: Side, data: bytes, peer: Peer) -> None:
        self.out.append((side, data, peer))


def respond(req: bytes, status: int, reason: str, body: str = "") -> bytes:
    m = parse_message(req)
    h = m.headers
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in h.values("via")]
    lines += [f"Record-Route: {v}" for v in h.values("record-route")]
    lines += [f"From: {h.get('from')}", f"To: {h.get('to')};tag=uas", f"Call-ID: {h.get('call-id')}",
              f"CSeq: {h.get('cseq')}", "Contact: <sip:127.0.0.1:5070>"]
    if body:
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
    else:
        lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def run(n: int) -> float:
    cfg = parse_config({"sip": {"access": {"host": "127.0.0.1", "port": 5060},
                                "core": {"host": "127.0.0.1", "port": 5072},
                                "next_hop": "sip:127.0.0.1:5070;lr"},
                        "registration": {"require_for_originating": False}}, "bench")
    wire = Wire()
    p = Pcscf(cfg, InMemoryRegistrationStore(), wire)
    # Pre-build the messages the peers send, from one template, outside the timed part.
    t0 = time.perf_counter()
    now = 0.0
    for i in range(n):
        now += 0.001
        (inv, side, peer), = call(i)
        p.receive(inv, Side.ACCESS, UE, now)
        fwd = next(d for s, d, _ in wire.out if s is Side.CORE)
        wire.out.clear()
        p.receive(respond(fwd, 180, "Ringing"), Side.CORE, CORE, now)
        p.receive(respond(fwd, 200, "OK", SDP), Side.CORE, CORE, now)
        ok = next(d for s, d, _ in wire.out if s is Side.ACCESS and b" 200 " in d[:20])
        wire.out.clear()
        m = parse_message(ok)
        to = m.headers.get("to")
        rr = list(reversed(m.headers.values("record-route")))
        base = (f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-X\r\n" + "".join(f"Route: {r}\r\n" for r in rr)
                + f"From: <sip:ue{i}@ims.test>;tag={i}SIPpTag00\r\nTo: {to}\r\nCall-ID: {i}-bench@127.0.0.1\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n")
        p.receive(f"ACK sip:127.0.0.1:5070 SIP/2.0\r\n{base.replace('-X', '-4')}CSeq: 1 ACK\r\n\r\n".encode(), Side.ACCESS, UE, now)
        p.receive(f"BYE sip:127.0.0.1:5070 SIP/2.0\r\n{base.replace('-X', '-5')}CSeq: 2 BYE\r\n\r\n".encode(), Side.ACCESS, UE, now)
        bye = next(d for s, d, _ in wire.out if s is Side.CORE and d.startswith(b"BYE"))
        wire.out.clear()
        p.receive(respond(bye, 200, "OK"), Side.CORE, CORE, now)
        wire.out.clear()
        p.handle_timer(now)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if a.profile:
        pr = cProfile.Profile()
        pr.enable()
        run(a.calls)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        return
    us = min(run(a.calls) for _ in range(3))
    print(f"proxy core: {us:.0f} µs per call (incl. building peer messages) -> ceiling {1e6 / us:.0f} calls/s on one core")


if __name__ == "__main__":
    main()
