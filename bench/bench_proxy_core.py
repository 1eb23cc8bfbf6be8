"""CPU cost of one proxied call in the sans-IO core (proxy + call layer), without sockets.

A call is INVITE (with SDP) / 100 / 180 / 200 / ACK / BYE / 200, UE on the access side, a UAS
behind the core side. Three variants, measured in the same run:

- `proxy`: the proxy core alone (no call layer), plain RTP/AVP;
- `plain`: with the call layer (issue 12), the same plain RTP/AVP call (its fast path);
- `e2ae`: with the call layer, a UE registered with mediasec offers RTP/SAVP + a=crypto +
  a=3ge2ae:requested (TS 33.328 7.2.1): the gateway is reserved, the core gets RTP/AVP, the
  answer is rewritten with our key, the gateway configured and released. The gateway operations
  are answered at once by a stand-in (no ports, no sockets): what is measured is the core.

Only the time spent inside the core (`receive`, `handle_timer`, `gateway_done`) is counted; the
stand-in peers' message building is not.

    .venv/bin/python -m bench.bench_proxy_core [--calls N] [--variant proxy,plain,e2ae] [--profile]

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
from pcscf_alg.effects import ExportKeys, GatewayDone, Reserve
from pcscf_alg.mediaplan import Endpoint, Side, StreamReservation
from pcscf_alg.policy import load_policy
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
# The UE's e2ae offer (TS 33.328 7.2.1 step 1): SDES with two suites, e2ae requested.
SDP_E2AE = (
    SDP.replace("RTP/AVP", "RTP/SAVP").replace("a=sendrecv\r\n", "")
    + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC\r\n"
    "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:JZ+dk3xbtuOwoI9W4TiSeW36WjWFwg9TQGGwP7dU\r\n"
    "a=3ge2ae:requested\r\na=sendrecv\r\n"
)
VARIANTS = ("proxy", "plain", "e2ae")


def _invite(i: int, sdp: str = SDP) -> bytes:
    return (
        "INVITE sip:service@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-1\r\n"
        f"From: <sip:ue{i}@ims.test>;tag={i}SIPpTag00\r\nTo: <sip:service@127.0.0.1:5070>\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:ue@127.0.0.1:5080>\r\n"
        "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


REGISTER = (
    b"REGISTER sip:ims.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-reg;rport\r\n"
    b"From: <sip:ue@ims.test>;tag=reg\r\nTo: <sip:ue@ims.test>\r\n"
    b"Call-ID: reg@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:ue@127.0.0.1:5080>\r\n"
    b"Require: sec-agree\r\nProxy-Require: sec-agree\r\n"
    b"Security-Client: sdes-srtp;mediasec\r\nExpires: 600000\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


class StandInGateway:
    """Answers the core's gateway operations at once: reservations on made-up ports."""

    def __init__(self, p: Pcscf) -> None:
        self.p = p
        self.port = 20000

    def serve(self, now: float) -> None:
        effects = self.p.media_effects()
        while effects:
            for eff in effects:
                if isinstance(eff, ExportKeys):
                    continue
                got: tuple[StreamReservation, ...] = ()
                if isinstance(eff, Reserve):
                    self.port = 20000 + (self.port + 4) % 40000
                    got = tuple(
                        StreamReservation(
                            r.index,
                            r.kind,
                            Endpoint("127.0.0.1", self.port, self.port + 1),
                            Endpoint("127.0.0.1", self.port + 2, self.port + 3),
                        )
                        for r in eff.streams
                    )
                self.p.gateway_done(GatewayDone(eff.op, got), now)
            effects = self.p.media_effects()


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


def run(n: int, variant: str = "proxy") -> float:
    """µs of core CPU per call, over `n` calls of `variant` (see the module's docstring)."""
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
    gw = StandInGateway(p)
    if variant != "proxy":
        p.attach_calls(load_policy(cfg.policy, cfg.file))
    spent = 0.0
    clock = time.perf_counter

    def feed(data: bytes, side: Side, peer: Peer, now: float) -> None:
        nonlocal spent
        t = clock()
        p.receive(data, side, peer, now)
        gw.serve(now)
        spent += clock() - t

    now = 0.0
    offer = SDP
    if variant == "e2ae":
        # The UE registers with mediasec (docs/e2ae-notes.md §1): its offers are e2ae.
        p.receive(REGISTER, Side.ACCESS, UE, now)
        reg = next(d for s, d in out if s is Side.CORE)
        out.clear()
        ok = _response(reg, 200, "OK").replace(
            b"Contact: <sip:127.0.0.1:5070>", b"Contact: <sip:ue@127.0.0.1:5080>;expires=600000"
        )
        p.receive(ok, Side.CORE, CORE, now)
        assert any(d.startswith(b"SIP/2.0 200") for s, d in out if s is Side.ACCESS), out
        out.clear()
        offer = SDP_E2AE
    for i in range(n):
        now += 0.001
        feed(_invite(i, offer), Side.ACCESS, UE, now)
        fwd = next(d for s, d in out if s is Side.CORE)
        out.clear()
        feed(_response(fwd, 180, "Ringing"), Side.CORE, CORE, now)
        feed(_response(fwd, 200, "OK", SDP), Side.CORE, CORE, now)
        ok = next(d for s, d in out if s is Side.ACCESS and d.startswith(b"SIP/2.0 200"))
        if variant == "e2ae" and b"RTP/SAVP" not in ok:
            raise AssertionError("the UE's answer is not e2ae: " + ok.decode(errors="replace"))
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
    ap.add_argument("--variant", default=",".join(VARIANTS), help="comma-separated subset")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    variants = [v for v in args.variant.split(",") if v]
    if args.profile:
        for v in variants:
            pr = cProfile.Profile()
            pr.enable()
            run(args.calls, v)
            pr.disable()
            print(f"== {v}")
            pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        return
    # Alternating rounds, best of three per variant: the variants share the machine's state.
    best = {v: float("inf") for v in variants}
    for _ in range(3):
        for v in variants:
            best[v] = min(best[v], run(args.calls, v))
    base = best.get("proxy")
    for v in variants:
        us = best[v]
        ratio = f", {us / base:.2f}x the proxy alone" if base and v != "proxy" else ""
        print(
            f"core [{v}]: {us:.0f} µs of CPU per call (7 messages in, 7 out{ratio}) "
            f"-> at most {1e6 / us:.0f} calls/s on one core"
        )


if __name__ == "__main__":
    main()
