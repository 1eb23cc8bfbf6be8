"""A UE on TCP: REGISTER and an e2ae call over one connection; everything the P-CSCF sends to
the UE (responses and in-dialog requests from the core) comes back on that connection."""

from __future__ import annotations

import socket
import time

from pcscf_alg.sip.message import SipMessage, StreamFramer, parse_message
from tests.e2e.calls_helpers import assert_released, audio_offer, crypto_lines
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer, crlf


class TcpUe:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.port = self.sock.getsockname()[1]
        self.framer = StreamFramer()
        self.pending: list[bytes] = []

    def send(self, text: str) -> None:
        self.sock.sendall(crlf(text).encode())

    def expect(self, what: str | int, timeout: float = 5.0) -> SipMessage:
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                m = parse_message(self.pending.pop(0), datagram=False)
                if m.status == what or m.method == what:
                    return m
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            data = self.sock.recv(65535)
            assert data, "connection closed"
            self.pending += self.framer.feed(data)


def test_tcp_ue_registers_and_calls_over_one_connection(daemon: Daemon) -> None:
    d = daemon
    ue = TcpUe(d.access_port)
    with UdpPeer(d.next_hop_port) as core:
        ue.send(f"""REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:{ue.port};branch=z9hG4bK-tcpreg
Max-Forwards: 70
From: <sip:tina@ims.test>;tag=t1
To: <sip:tina@ims.test>
Call-ID: tcpreg@test
CSeq: 1 REGISTER
Contact: <sip:tina@127.0.0.1:{ue.port};transport=tcp>
Security-Client: sdes-srtp;mediasec
Expires: 600
""")
        r = core.expect("REGISTER")
        core.reply(
            r,
            200,
            "OK",
            d.core_port,
            contact=f"sip:tina@127.0.0.1:{ue.port};transport=tcp>;expires=600;x=<",
        )
        ok = ue.expect(200)
        assert "sdes-srtp;mediasec" in (ok.headers.get("security-server") or "")
        (b,) = d.registrations()
        assert b["flow"] == f"tcp:127.0.0.1:{ue.port}" and b["rtp"] and not b["msrp"]

        ue.send(f"""INVITE sip:bob@ims.test SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:{ue.port};branch=z9hG4bK-tcpinv
Max-Forwards: 70
From: <sip:tina@ims.test>;tag=ti1
To: <sip:bob@ims.test>
Call-ID: tcpcall@test
CSeq: 1 INVITE
Contact: <sip:tina@127.0.0.1:{ue.port};transport=tcp>
Content-Type: application/sdp

{audio_offer(41500)}""")
        inv = core.expect("INVITE")
        assert b"RTP/AVP" in inv.body and b"a=crypto" not in inv.body
        rr = inv.headers.values("record-route")
        assert rr[1] == f"<sip:127.0.0.1:{d.access_port};lr;transport=tcp>"
        answer = (
            "v=0\no=- 2 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            "m=audio 41600 RTP/AVP 96\na=rtpmap:96 AMR-WB/16000/1\na=sendrecv\n"
        )
        core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=answer)
        ok = ue.expect(200)
        assert len(crypto_lines(ok.body)) == 1
        # BYE from the core reaches the UE on its own TCP connection
        core.send(
            "\n".join(
                [
                    f"BYE sip:tina@127.0.0.1:{ue.port};transport=tcp SIP/2.0",
                    f"Via: SIP/2.0/UDP 127.0.0.1:{core.port};branch=z9hG4bK-tcpbye",
                    "Max-Forwards: 70",
                    *[f"Route: {v}" for v in rr],
                    f"From: {inv.headers.get('to')};tag=b1",
                    f"To: {inv.headers.get('from')}",
                    "Call-ID: tcpcall@test",
                    "CSeq: 1 BYE",
                ]
            ),
            d.core_port,
        )
        bye = ue.expect("BYE")
        via = bye.headers.values("via")
        ue.send(
            "\n".join(
                [
                    "SIP/2.0 200 OK",
                    *[f"Via: {v}" for v in via],
                    f"From: {bye.headers.get('from')}",
                    f"To: {bye.headers.get('to')}",
                    "Call-ID: tcpcall@test",
                    "CSeq: 1 BYE",
                ]
            )
        )
        core.expect(200)
        assert_released(d)
    ue.sock.close()
