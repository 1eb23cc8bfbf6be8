"""A minimal S-CSCF stand-in for labs, demos and tests: registrar + stateless loose-routing proxy.

Not an S-CSCF: no authentication, no iFC, no charging. Just enough IMS routing to put two UEs
behind one P-CSCF in a call: REGISTER is answered 200 with a Service-Route and the binding's Path
is stored; an originating INVITE for a registered AoR is sent back to the P-CSCF's core side
(Route = the callee's Path, Request-URI = the callee's contact), Record-Routing itself so that
in-dialog requests cross it too. Responses go back by Via. UDP only. Runs in a thread.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import NameAddr, SipUri, Via
from pcscf_alg.sip.message import SipMessage, make_response, parse_message

Tap = Callable[[str, SipMessage], None]


@dataclass
class _Binding:
    contact: str
    path: list[str]


@dataclass
class ScscfStub:
    host: str = "127.0.0.1"
    port: int = 5080
    tap: Tap | None = None  # called with ("in"|"out", message) for every message, for display
    bindings: dict[str, _Binding] = field(default_factory=dict)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};lr"

    def start(self) -> ScscfStub:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((self.host, self.port))
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._run, name="scscf-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ScscfStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- loop ----
    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                msg = parse_message(data)
            except SipParseError:
                continue
            if self.tap is not None:
                self.tap("in", msg)
            try:
                if msg.is_request:
                    self._request(msg, addr)
                else:
                    self._response(msg)
            except (SipParseError, KeyError, ValueError):
                continue

    def _send(self, msg: SipMessage, host: str, port: int) -> None:
        assert self._sock is not None
        if self.tap is not None:
            self.tap("out", msg)
        self._sock.sendto(msg.serialize(), (host, port))

    def _reply(
        self,
        req: SipMessage,
        status: int,
        reason: str,
        addr: tuple[str, int],
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        resp = make_response(req, status, reason, to_tag=secrets.token_hex(4), extra=extra)
        self._send(resp, addr[0], addr[1])

    @staticmethod
    def _aor(uri: str) -> str:
        u = SipUri.parse(uri)
        return f"{u.scheme}:{u.user}@{u.host}" if u.scheme != "tel" else f"tel:{u.user}"

    def _request(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        if msg.method == "REGISTER":
            self._register(msg, addr)
            return
        # our own Route entry (loose routing, RFC 3261 §16.4)
        top = msg.headers.first_value("route")
        if top is not None:
            u = SipUri.parse(NameAddr.parse(top).uri)
            if u.host == self.host and (u.port or 5060) == self.port:
                msg.headers.pop_first_value("route")
        target_uri: str | None = None
        if (
            msg.headers.first_value("route") is None
            and msg.method != "ACK"
            and "tag=" not in (msg.headers.get("to") or "")
        ):
            # initial request: terminate at the callee's registered contact, via its Path
            b = self.bindings.get(self._aor(msg.uri or ""))
            if b is None:
                self._reply(msg, 404, "Not Found", addr)
                return
            msg.uri = b.contact
            for p in reversed(b.path):
                msg.headers.prepend("Route", p)
            msg.headers.prepend("Record-Route", f"<{self.uri}>")
        route = msg.headers.first_value("route")
        target_uri = NameAddr.parse(route).uri if route else (msg.uri or "")
        t = SipUri.parse(target_uri)
        mf = msg.headers.get("max-forwards")
        msg.headers.set("Max-Forwards", str(int(mf) - 1 if mf else 70))
        msg.headers.prepend(
            "Via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(6)}"
        )
        self._send(msg, t.host, t.port or 5060)

    def _register(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        to = NameAddr.parse(msg.headers.get("to") or "")
        contacts = [c for c in msg.headers.values("contact") if c.strip() != "*"]
        expires = msg.headers.get("expires") or "600"
        aor = self._aor(to.uri)
        extra = [("Service-Route", f"<sip:orig@{self.host}:{self.port};lr>")]
        if contacts:
            c = NameAddr.parse(contacts[0])
            exp = c.param("expires") or expires
            if exp == "0":
                self.bindings.pop(aor, None)
            else:
                self.bindings[aor] = _Binding(c.uri, msg.headers.values("path"))
            extra.append(("Contact", f"<{c.uri}>;expires={exp}"))
        self._reply(msg, 200, "OK", addr, extra)

    def _response(self, msg: SipMessage) -> None:
        msg.headers.pop_first_value("via")  # ours
        nxt = msg.headers.first_value("via")
        if nxt is None:
            return
        v = Via.parse(nxt)
        rport = v.param("rport")
        host = v.param("received") or v.host
        port = int(rport) if rport else (v.port or 5060)
        self._send(msg, host, port)
