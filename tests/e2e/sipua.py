"""A scripted SIP peer over UDP for end-to-end tests: send text, receive parsed messages.

SIPp drives the load and the scenario tests; this peer serves the tests that must hold keys and
addresses in Python (media peers) or play flows SIPp makes awkward (forking, several answers).
Bounded: every receive has a timeout.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass, field

from pcscf_alg.sip.headers import NameAddr
from pcscf_alg.sip.message import SipMessage, parse_message

_counter = itertools.count(1)


def crlf(text: str) -> str:
    """Normalise a triple-quoted message to CRLF and fix Content-Length."""
    lines = text.strip("\n").split("\n")
    lines = [ln.strip() for ln in lines]
    if "" in lines:
        i = lines.index("")
        head, body = lines[:i], lines[i + 1 :]
    else:
        head, body = lines, []
    body_text = "\r\n".join(body) + ("\r\n" if body else "")
    head = [h for h in head if not h.lower().startswith("content-length")]
    head.append(f"Content-Length: {len(body_text.encode())}")
    return "\r\n".join(head) + "\r\n\r\n" + body_text


@dataclass
class UdpPeer:
    port: int = 0
    host: str = "127.0.0.1"
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, self.port))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, text: str | bytes | SipMessage, port: int, host: str = "127.0.0.1") -> None:
        if isinstance(text, SipMessage):
            data = text.serialize()
        elif isinstance(text, str):
            data = crlf(text).encode()
        else:
            data = text
        self.sock.sendto(data, (host, port))

    def recv(
        self, timeout: float = 5.0, *, skip_100: bool = True
    ) -> tuple[SipMessage, tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing received on {self.port} in {timeout}s")
            self.sock.settimeout(left)
            data, addr = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if skip_100 and msg.status == 100:
                continue
            return msg, addr

    def expect(self, what: str | int, timeout: float = 5.0) -> SipMessage:
        """Receive until a request with method `what` or a response with status `what`.
        Requests that are not expected are answered nothing and skipped (retransmissions)."""
        deadline = time.monotonic() + timeout
        while True:
            msg, _ = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(what, int) and msg.status == what:
                return msg
            if isinstance(what, str) and msg.method == what:
                return msg

    def reply(
        self,
        req: SipMessage,
        status: int,
        reason: str,
        port: int,
        *,
        to_tag: str = "t1",
        extra: str = "",
        body: str = "",
        contact: str | None = None,
        content_type: str = "application/sdp",
    ) -> None:
        """Answer `req` (copying Via, Record-Route, From, To(+tag), Call-ID, CSeq)."""
        h = req.headers
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in h.values("via")]
        lines += [f"Record-Route: {v}" for v in h.values("record-route")]
        lines.append(f"From: {h.get('from')}")
        to = h.get("to") or ""
        if to_tag and "tag=" not in to:
            to = f"{to};tag={to_tag}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {h.get('call-id')}")
        lines.append(f"CSeq: {h.get('cseq')}")
        lines.append(f"Contact: <{contact or f'sip:peer@127.0.0.1:{self.port}'}>")
        if extra:
            lines += [x for x in extra.strip("\n").split("\n")]
        if body:
            lines.append(f"Content-Type: {content_type}")
            lines.append("")
            lines += body.strip("\n").split("\n")
        self.send("\n".join(lines), port)


def route_set(resp: SipMessage) -> list[str]:
    """The UAC's route set from a 2xx's Record-Route (reversed, RFC 3261 §12.1.2)."""
    return list(reversed(resp.headers.values("record-route")))


def contact_uri(msg: SipMessage) -> str:
    c = msg.headers.first_value("contact")
    assert c is not None
    return NameAddr.parse(c).uri


def new_call_id() -> str:
    return f"{next(_counter)}-{time.monotonic_ns()}@test"
