"""The registrar side of the P-CSCF as plain calls: a REGISTER in, a decision out; a response
in, bindings out. No proxy, no transactions, a fake clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pcscf_alg.config import Config, parse_config
from pcscf_alg.errors import SipParseError
from pcscf_alg.registrar import Refusal, RegisterCtx, Registrar
from pcscf_alg.registration import Flow, InMemoryRegistrationStore
from pcscf_alg.sip.message import SipMessage, parse_message
from pcscf_alg.sip.transaction import Peer

UE = Peer("udp", "198.51.100.10", 41111)
CORE = ("127.0.0.1", 5070)
SERVER = "sdes-srtp;mediasec, msrp-tls;mediasec"
IPSEC = "ipsec-3gpp;alg=hmac-sha-1-96;prot=esp;spi-c=1;spi-s=2"


def config(**reg: Any) -> Config:
    return parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": CORE[0], "port": CORE[1]},
                "next_hop": "sip:127.0.0.1:5080;lr",
            },
            "registration": reg,
        },
        "test.yaml",
    )


class Holder:
    """What `Pcscf` gives the registrar: the configuration in force, replaceable (reload)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(self) -> Config:
        return self.cfg


def make(**reg: Any) -> tuple[Registrar, InMemoryRegistrationStore, Holder]:
    store = InMemoryRegistrationStore()
    holder = Holder(config(**reg))
    return Registrar(store, holder, CORE), store, holder


def register(*extra: str, contact: str = "<sip:alice@198.51.100.10:41111>") -> SipMessage:
    lines = [
        "REGISTER sip:ims.test SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.10:41111;branch=z9hG4bK-r1",
        "Max-Forwards: 70",
        "From: <sip:alice@ims.test>;tag=r1",
        "To: <sip:alice@ims.test>",
        "Call-ID: reg-1",
        "CSeq: 1 REGISTER",
        f"Contact: {contact}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return parse_message("\r\n".join(lines).encode())


def response(req: SipMessage, status: int, *extra: str) -> SipMessage:
    h = req.headers
    lines = [
        f"SIP/2.0 {status} X",
        f"Via: {h.get('via')}",
        f"From: {h.get('from')}",
        f"To: {h.get('to')};tag=s1",
        f"Call-ID: {h.get('call-id')}",
        f"CSeq: {h.get('cseq')}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return parse_message("\r\n".join(lines).encode())


def test_a_register_is_forwarded_with_our_path_and_its_e2ae_flags() -> None:
    r, _, _ = make()
    msg = register(f"Security-Client: {IPSEC}, sdes-srtp;mediasec", "Expires: 300")
    got = r.on_register(msg, UE, "tcp", now=0.0)
    assert isinstance(got, RegisterCtx)
    assert got.flow == Flow("udp", "198.51.100.10", 41111) and got.impu == "sip:alice@ims.test"
    assert got.contacts == ["sip:alice@198.51.100.10:41111"]
    assert got.requested == {"sip:alice@198.51.100.10:41111": 300}
    assert got.flags.rtp and not got.flags.msrp and got.flags.ue_rtp
    # RFC 3327: Path names the core listener, with the next hop's transport
    assert got.path == "<sip:term@127.0.0.1:5070;lr;transport=tcp>"
    assert msg.headers.values("path") == [got.path]


def test_security_verify_mismatch_is_494_then_the_address_is_throttled() -> None:
    r, _, _ = make(secagree_max_failures=2, secagree_window_s=30)
    bad = f"Security-Verify: {SERVER.split(',')[0]}"  # a downgrade: one of our two
    first = r.on_register(register(bad), UE, "udp", now=0.0)
    assert first == Refusal(
        494,
        "Security Agreement Required",
        warning="Security-Verify does not match Security-Server",
        extra=[("Security-Server", SERVER)],
    )
    with pytest.raises(SipParseError):  # malformed: 400 by the proxy, a failure all the same
        r.on_register(register("Security-Client: sdes-srtp;;mediasec"), UE, "udp", now=1.0)
    third = r.on_register(register(f"Security-Verify: {SERVER}"), UE, "udp", now=10.0)
    assert isinstance(third, Refusal) and third.throttled and third.status == 503
    assert third.extra == [("Retry-After", "20")]  # the rest of the window
    # another address is not affected; this one is served again once the window is over
    other = Peer("udp", "198.51.100.11", 5060)
    assert isinstance(r.on_register(register(), other, "udp", now=10.0), RegisterCtx)
    assert isinstance(r.on_register(register(), UE, "udp", now=30.0), RegisterCtx)


def test_the_registration_keys_follow_a_live_reload() -> None:
    r, _, holder = make(secagree_max_failures=1)
    r.on_register(register("Security-Verify: sdes-srtp;mediasec"), UE, "udp", now=0.0)
    assert isinstance(r.on_register(register(), UE, "udp", now=1.0), Refusal)
    holder.cfg = dataclasses.replace(
        holder.cfg,
        registration=dataclasses.replace(holder.cfg.registration, secagree_max_failures=3),
    )
    assert isinstance(r.on_register(register(), UE, "udp", now=2.0), RegisterCtx)


def test_a_200_makes_the_bindings_it_lists() -> None:
    r, store, _ = make()
    msg = register(
        "Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec",
        contact="<sip:alice@198.51.100.10:41111>, <sip:alice@198.51.100.10:41112>",
    )
    reg = r.on_register(msg, UE, "udp", now=100.0)
    assert isinstance(reg, RegisterCtx)
    challenge = response(msg, 401)
    assert r.on_response(reg, challenge, now=100.5) == 0
    assert challenge.headers.get("security-server") == SERVER  # RFC 3329 §2.3.1
    ok = response(
        msg,
        200,
        # RFC 3261 §10.3 step 8: only the first contact is granted (the second is not listed)
        "Contact: <sip:alice@198.51.100.10:41111>;expires=60",
        "Service-Route: <sip:orig@scscf.ims.test;lr>",
        "P-Associated-URI: <sip:alice@ims.test>, <tel:+15550100>",
    )
    assert r.on_response(reg, ok, now=101.0) == 2  # one written, one expired to 0
    assert ok.headers.get("security-server") == SERVER
    (b,) = store.by_impu("sip:alice@ims.test")
    assert b.contact == "sip:alice@198.51.100.10:41111" and b.expires_at == 161.0
    assert b.path == (reg.path,) and b.service_route == ("<sip:orig@scscf.ims.test;lr>",)
    assert b.has_identity("tel:+1-555-0100") and b.flags.rtp and b.flags.msrp
    # Contact: * removes every binding of the AoR (RFC 3261 §10.2.2)
    star = register("Expires: 0", contact="*")
    reg2 = r.on_register(star, UE, "udp", now=200.0)
    assert isinstance(reg2, RegisterCtx) and reg2.wildcard
    assert r.on_response(reg2, response(star, 200), now=200.0) == 0
    assert store.by_impu("sip:alice@ims.test") == []


def test_a_ue_without_security_client_learns_nothing_of_ours() -> None:
    r, _, _ = make()
    msg = register()
    reg = r.on_register(msg, UE, "udp", now=0.0)
    assert isinstance(reg, RegisterCtx)
    challenge = response(msg, 401)
    r.on_response(reg, challenge, now=0.0)
    assert challenge.headers.get("security-server") is None
