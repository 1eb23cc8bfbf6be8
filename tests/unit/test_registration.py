"""Bindings, e2ae flags, look-ups, expiry and the in-memory store."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.registrar import (
    RegistrationError,
    check_security_verify,
    expiry_from_200,
    indications_from_register,
    register_from_200,
)
from pcscf_alg.registration import (
    Binding,
    E2aeIndication,
    Flow,
    InMemoryRegistrationStore,
    RegistrationStore,
    aor_key,
    contact_key,
    flow_of_uri,
    originating_binding,
    terminating_binding,
)
from pcscf_alg.sip.headers import SipUri
from pcscf_alg.sip.secagree import format_mechanisms, parse_security_header, server_mechanisms

IMPU = "sip:+15551230001@ims.example.net"
TEL = "tel:+1-555-123-0001"
CONTACT = '<sip:+15551230001@198.51.100.10:41111>;+sip.instance="<urn:gsma:imei:1>";expires=60'
FLOW = Flow("udp", "198.51.100.10", 41111)
IPSEC = "ipsec-3gpp;alg=hmac-sha-1-96;prot=esp;spi-c=1;spi-s=2"


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def flags(
    ue_rtp: bool = False, ue_msrp: bool = False, net_rtp: bool = True, net_msrp: bool = True
) -> E2aeIndication:
    return E2aeIndication(ue_rtp, ue_msrp, net_rtp, net_msrp)


def make(
    store: RegistrationStore,
    *,
    impu: str = IMPU,
    contact: str = CONTACT,
    flow: Flow = FLOW,
    f: E2aeIndication | None = None,
    expires: int = 600,
    now: float = 1000.0,
    associated: tuple[str, ...] = (),
) -> Binding:
    b = register_from_200(
        store,
        impu=impu,
        contact=contact,
        flow=flow,
        flags=f or flags(),
        expires=expires,
        now=now,
        associated=associated,
        path=("<sip:term@pcscf.example.net;lr>",),
        service_route=("<sip:orig@scscf.example.net;lr>",),
    )
    assert b is not None
    return b


def assert_empty(store: InMemoryRegistrationStore) -> None:
    assert len(store) == 0
    assert store.index_sizes() == (0, 0, 0)
    assert store.bindings() == []
    assert store.next_expiry() is None


# ---- e2ae indications: the four combinations, and config turning a protocol off ---------


@pytest.mark.parametrize(
    ("client", "ue"),
    [
        (f"{IPSEC}, sdes-srtp;mediasec", (True, False)),  # RTP only
        (f"{IPSEC}, msrp-tls;mediasec", (False, True)),  # MSRP only
        (f"{IPSEC}, sdes-srtp;mediasec, msrp-tls;mediasec", (True, True)),  # both
        (IPSEC, (False, False)),  # neither
    ],
)
@pytest.mark.parametrize("net", [(True, True), (True, False), (False, True), (False, False)])
def test_flags_for_each_combination(
    client: str, ue: tuple[bool, bool], net: tuple[bool, bool]
) -> None:
    ind = indications_from_register([client], *net)
    assert (ind.ue_rtp, ind.ue_msrp) == ue
    assert (ind.net_rtp, ind.net_msrp) == net
    assert ind.rtp == (ue[0] and net[0])
    assert ind.msrp == (ue[1] and net[1])
    assert ind.other_mediasec == ()

    store = InMemoryRegistrationStore()
    b = make(store, f=ind)
    got = store.by_flow(FLOW)
    assert got is b
    assert got.flags == E2aeIndication(ue[0], ue[1], net[0], net[1])


def test_exact_flags_both_and_config_off() -> None:
    client = [f"{IPSEC}, sdes-srtp;mediasec, msrp-tls;mediasec"]
    assert indications_from_register(client, True, True) == E2aeIndication(True, True, True, True)
    msrp_off = indications_from_register(client, True, False)
    assert msrp_off == E2aeIndication(True, True, True, False)
    assert (msrp_off.rtp, msrp_off.msrp) == (True, False)
    rtp_off = indications_from_register(client, False, True)
    assert (rtp_off.rtp, rtp_off.msrp) == (False, True)


def test_no_security_client_and_other_mediasec() -> None:
    assert indications_from_register([], True, True) == E2aeIndication(False, False, True, True)
    ind = indications_from_register(
        ["sdes-srtp, dtls-srtp;mediasec, bfcp-tls;mediasec", "dtls-srtp;mediasec"], True, True
    )
    assert (ind.ue_rtp, ind.ue_msrp) == (False, False)
    assert ind.other_mediasec == ("dtls-srtp", "bfcp-tls")


def test_example_01_security_client_gives_both() -> None:
    client = (
        "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=41110;port-s=41111;prot=esp;"
        "spi-c=11111111;spi-s=22222222, sdes-srtp;mediasec, msrp-tls;mediasec"
    )
    ind = indications_from_register([client], True, True)
    assert ind.rtp and ind.msrp


def test_garbage_security_client_is_400() -> None:
    with pytest.raises(SipParseError) as exc:
        indications_from_register(["sdes-srtp;;mediasec"], True, True)
    assert exc.value.status == 400


# ---- Security-Verify ----------------------------------------------------------------------


def test_check_security_verify() -> None:
    sent = server_mechanisms(True, True)
    check_security_verify(sent, [])  # nothing to check
    check_security_verify(sent, [format_mechanisms(sent)])
    check_security_verify(sent, ["MSRP-TLS ; MEDIASEC", " sdes-srtp;mediasec "])
    with pytest.raises(RegistrationError) as exc:
        check_security_verify(sent, ["sdes-srtp;mediasec"])
    assert exc.value.status == 494
    assert exc.value.reason
    with pytest.raises(SipParseError):
        check_security_verify(sent, ["sdes-srtp;mediasec,,"])


# ---- expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "header", "default", "expected"),
    [
        (300, 600, 3600, 300),  # Contact expires wins
        (None, 600, 3600, 600),  # then Expires
        (None, None, 3600, 3600),  # then our default
        (0, 600, 3600, 0),  # de-registration
        (None, 0, 3600, 0),
        (-5, 600, 3600, 600),  # malformed ignored
        (2**40, None, 3600, 2**32 - 1),  # capped
    ],
)
def test_expiry_from_200(
    param: int | None, header: int | None, default: int, expected: int
) -> None:
    assert expiry_from_200(param, header, default) == expected


# ---- URI keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:u@198.51.100.10", "SIP:u@198.51.100.10:5060"),
        ("<sip:u@Host.Example.NET:5060;transport=UDP>;expires=5", "sip:u@host.example.net"),
        ("sip:u@h;lr;ob", "sip:u@h:5060;transport=udp"),
        ("sip:u@[2001:DB8:0::1]:5070", "sip:u@[2001:db8::1]:5070;transport=udp"),
        ("sip:[2001:db8::1]", "sip:[2001:db8::1]:5060"),
        ("sips:u@h", "sips:u@h:5061;transport=tcp"),
        ('"Bob" <sip:u;npdi@h:1>', "sip:u;npdi@h:1"),
        ("sip:h.example.com?Subject=x", "sip:h.example.com:5060"),
    ],
)
def test_contact_key_equal(a: str, b: str) -> None:
    assert contact_key(a) == contact_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:U@h", "sip:u@h"),  # user part is case-sensitive
        ("sip:u@h", "sips:u@h"),
        ("sip:u@h", "sip:u@h:5070"),
        ("sip:u@h", "sip:u@h;transport=tcp"),
        ("sip:u@h", "sip:h"),
    ],
)
def test_contact_key_differs(a: str, b: str) -> None:
    assert contact_key(a) != contact_key(b)


def test_contact_key_shape() -> None:
    assert contact_key("<sip:+1@198.51.100.10:41111>") == "sip:+1@198.51.100.10:41111;transport=udp"
    assert contact_key("sip:[::1]") == "sip:[::1]:5060;transport=udp"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "nocolon",
        "<sip:u@h",
        "sip:u@[::1",
        "sip:u@h:abc",
        "sip:u@h:0",
        "sip:u@h:70000",
        "sip:@h",
        "sip:u@",
        "sip:u@[zz::1]",
        "sip:u@h:",
    ],
)
def test_contact_key_garbage(bad: str) -> None:
    with pytest.raises(SipParseError):
        contact_key(bad)


def test_aor_key() -> None:
    assert aor_key("<sip:+15551230001@IMS.example.net;user=phone>") == IMPU
    assert aor_key(TEL) == aor_key("tel:+15551230001;phone-context=x") == "tel:+15551230001"
    assert aor_key(IMPU) != aor_key("sip:+15551230002@ims.example.net")


def test_flow_normalisation_and_from_uri() -> None:
    assert Flow("UDP", "[2001:DB8::0:1]", 5060) == Flow("udp", "2001:db8::1", 5060)
    assert Flow.from_addr("tcp", ("198.51.100.10", 5060)) == Flow("tcp", "198.51.100.10", 5060)
    assert Flow.from_addr("udp", ("::1", 5060, 0, 0)) == Flow("udp", "::1", 5060)
    assert hash(Flow("udp", "A.example", 1)) == hash(Flow("udp", "a.example", 1))
    with pytest.raises(ValueError):
        Flow("sctp-x", "h", 1)
    with pytest.raises(ValueError):
        Flow("udp", "h", 70000)
    with pytest.raises(ValueError):
        Flow("udp", "zz::1", 1)
    assert flow_of_uri("sip:+1@198.51.100.10:41111") == FLOW
    assert flow_of_uri("sip:x@[2001:db8::1];transport=tcp") == Flow("tcp", "2001:db8::1", 5060)
    assert flow_of_uri("sips:x@198.51.100.1") == Flow("tls", "198.51.100.1", 5061)
    assert flow_of_uri("sip:x@host.example") is None
    assert flow_of_uri("sip:x@1.2.3.4;transport=sctp") is None
    assert flow_of_uri("tel:+1") is None
    assert flow_of_uri("garbage") is None


# ---- the keys read URIs as SipUri does (one parser, issue 12) ----------------------------


@pytest.mark.parametrize(
    ("uri", "contact", "aor", "flow"),
    [
        # IPv6 literal: one host whatever its spelling, RFC 5952 form in brackets
        (
            "sip:u@[2001:DB8:0::1]:5070",
            "sip:u@[2001:db8::1]:5070;transport=udp",
            "sip:u@[2001:db8::1]:5070",
            Flow("udp", "2001:db8::1", 5070),
        ),
        # sips: is TLS on port 5061, whatever transport= says (RFC 3261 §26.2.2, §19.1.2)
        (
            "sips:u@192.0.2.7",
            "sips:u@192.0.2.7:5061;transport=tls",
            "sips:u@192.0.2.7",
            Flow("tls", "192.0.2.7", 5061),
        ),
        (
            "sips:u@192.0.2.7;transport=tcp",
            "sips:u@192.0.2.7:5061;transport=tls",
            "sips:u@192.0.2.7",
            Flow("tls", "192.0.2.7", 5061),
        ),
        # ;transport= and a missing port
        (
            "sip:u@192.0.2.7;transport=TCP",
            "sip:u@192.0.2.7:5060;transport=tcp",
            "sip:u@192.0.2.7",
            Flow("tcp", "192.0.2.7", 5060),
        ),
        # an escaped '@' stays in the user part, escaped
        (
            "sip:a%40b@192.0.2.7:7",
            "sip:a%40b@192.0.2.7:7;transport=udp",
            "sip:a%40b@192.0.2.7:7",
            Flow("udp", "192.0.2.7", 7),
        ),
        # upper-case scheme and host: lowered; the user is case-sensitive (§19.1.4)
        (
            "<SIP:Bob@IMS.Example.NET>;expires=5",
            "sip:Bob@ims.example.net:5060;transport=udp",
            "sip:Bob@ims.example.net",
            None,
        ),
        # tel: is not a SIP URI: no flow, no SIP key
        (
            "tel:+1-555-0100;phone-context=x",
            "tel:+1-555-0100;phone-context=x",
            "tel:+15550100",
            None,
        ),
    ],
)
def test_keys_agree_with_sip_uri(uri: str, contact: str, aor: str, flow: Flow | None) -> None:
    assert contact_key(uri) == contact
    assert aor_key(uri) == aor
    assert flow_of_uri(uri) == flow
    inner = uri[1 : uri.index(">")] if uri.startswith("<") else uri
    u = SipUri.parse(inner)
    if u.scheme == "tel":
        return
    # The key, read back by SipUri, names what SipUri read: same scheme and user, the same
    # host up to case and IPv6 spelling, the port or its default, TLS for a secure URI.
    k = SipUri.parse(contact)
    port = u.port if u.port is not None else u.default_port
    assert (k.scheme, k.user, k.port) == (u.scheme, u.user, port)
    assert k.transport == ("tls" if u.secure else u.transport)
    assert _host(k.host) == _host(u.host)
    if flow is not None:
        assert (flow.transport, flow.host, flow.port) == (k.transport, _host(u.host), port)


def _host(h: str) -> str:
    return str(ipaddress.ip_address(h[1:-1])) if h.startswith("[") else h.lower()


@pytest.mark.parametrize("uri", ["sip:a@b@192.0.2.7", "sip:@192.0.2.7", "sip:u@[::1]x"])
def test_keys_refuse_what_sip_uri_refuses(uri: str) -> None:
    """A raw '@' in the user part, an empty user, junk after an IPv6 reference: malformed for
    SipUri, so no key and no flow (the old private parser read `sip:a@b@h` as user `a`)."""
    with pytest.raises(SipParseError):
        SipUri.parse(uri)
    with pytest.raises(SipParseError):
        contact_key(uri)
    with pytest.raises(SipParseError):
        aor_key(uri)
    assert flow_of_uri(uri) is None


# ---- store: create, look up, refresh, re-register, remove --------------------------------


def test_register_and_lookups() -> None:
    store = InMemoryRegistrationStore()
    b = make(store, associated=(IMPU, TEL))
    assert len(store) == 1
    assert b.expires_at == 1600.0
    assert b.registered_at == 1000.0
    assert b.path == ("<sip:term@pcscf.example.net;lr>",)
    assert b.service_route == ("<sip:orig@scscf.example.net;lr>",)
    assert b.identity_keys == (IMPU, "tel:+15551230001")
    assert store.by_flow(FLOW) is b
    assert store.by_flow(Flow("udp", "198.51.100.10", 41111)) is b
    assert store.by_flow(Flow("tcp", "198.51.100.10", 41111)) is None
    assert store.by_flow(Flow("udp", "198.51.100.10", 41110)) is None
    assert store.by_flow(FLOW, "<tel:+15551230001>") is b
    assert store.by_flow(FLOW, "sip:+15551230001@ims.example.net;user=phone") is b
    assert store.by_flow(FLOW, "sip:someone-else@ims.example.net") is None
    assert store.by_contact("sip:+15551230001@198.51.100.10:41111;transport=udp") is b
    assert store.by_contact("sip:+15551230001@198.51.100.10:41112") is None
    assert store.by_contact("not a uri") is None
    assert store.by_impu("<" + IMPU + ">") == [b]
    assert store.by_impu("sip:nobody@ims.example.net") == []
    assert store.get(IMPU, "sip:+15551230001@198.51.100.10:41111") is b


def test_originating_and_terminating_helpers() -> None:
    store = InMemoryRegistrationStore()
    b = make(store, associated=(IMPU, TEL))
    assert originating_binding(store, FLOW, None) is b
    assert originating_binding(store, FLOW, TEL) is b
    with pytest.raises(RegistrationError) as exc:
        originating_binding(store, Flow("udp", "203.0.113.9", 5060), IMPU)
    assert exc.value.status == 403
    assert exc.value.reason
    with pytest.raises(RegistrationError) as exc:
        originating_binding(store, FLOW, "sip:mallory@ims.example.net")
    assert exc.value.status == 403

    assert terminating_binding(store, "sip:+15551230001@198.51.100.10:41111") is b
    # contact not matching, but the Request-URI names the registered flow
    assert terminating_binding(store, "sip:other@198.51.100.10:41111") is b
    assert terminating_binding(store, "sip:+15551230001@203.0.113.9") is None
    assert terminating_binding(store, "sip:x@host.example") is None


def test_refresh_updates_binding() -> None:
    store = InMemoryRegistrationStore()
    b1 = make(store, now=1000.0, expires=600)
    b1.call_ids.add("call-1")
    b2 = make(store, now=1300.0, expires=600)
    assert len(store) == 1
    assert store.by_flow(FLOW) is b2
    assert b2.expires_at == 1900.0
    assert b2.registered_at == 1000.0  # kept from the first registration
    assert b2.call_ids == {"call-1"}
    assert store.sweep(1600.0) == []  # the first expiry was superseded
    assert store.by_flow(FLOW) is b2
    assert store.next_expiry() == 1900.0
    assert store.sweep(1900.0) == [b2]
    assert_empty(store)


def test_upsert_carries_call_ids_for_fresh_binding() -> None:
    store = InMemoryRegistrationStore()
    b1 = make(store)
    b1.call_ids.add("c1")
    b2 = dataclasses.replace(b1, expires_at=2000.0, call_ids=set())
    assert store.upsert(b2) is b1
    assert store.by_flow(FLOW) is b2
    assert b2.call_ids == {"c1"}


def test_reregistration_latest_flags_win() -> None:
    store = InMemoryRegistrationStore()
    both = indications_from_register(["sdes-srtp;mediasec, msrp-tls;mediasec"], True, True)
    make(store, f=both)
    assert store.by_flow(FLOW) is not None
    assert store.by_flow(FLOW).flags.msrp  # type: ignore[union-attr]
    rtp_only = indications_from_register(["sdes-srtp;mediasec"], True, True)
    make(store, f=rtp_only, now=1100.0)
    got = store.by_flow(FLOW)
    assert got is not None
    assert (got.flags.rtp, got.flags.msrp) == (True, False)
    neither = indications_from_register([IPSEC], True, True)
    make(store, f=neither, now=1200.0)
    got = store.by_contact(CONTACT)
    assert got is not None
    assert (got.flags.rtp, got.flags.msrp) == (False, False)
    assert len(store) == 1


def test_reregistration_from_new_flow_moves_flow_index() -> None:
    store = InMemoryRegistrationStore()
    make(store)
    new_flow = Flow("tcp", "198.51.100.77", 40000)
    b2 = make(store, flow=new_flow, now=1100.0)
    assert store.by_flow(FLOW) is None
    assert store.by_flow(new_flow) is b2
    assert store.index_sizes() == (1, 1, 1)


def test_deregistration_removes_everything() -> None:
    store = InMemoryRegistrationStore()
    make(store, associated=(IMPU, TEL))
    assert (
        register_from_200(
            store, impu=IMPU, contact=CONTACT, flow=FLOW, flags=flags(), expires=0, now=1100.0
        )
        is None
    )
    assert store.by_flow(FLOW) is None
    assert store.by_flow(FLOW, TEL) is None
    assert store.by_contact(CONTACT) is None
    assert store.by_impu(IMPU) == []
    assert_empty(store)
    assert store.sweep(10**9) == []  # the stale heap entry is skipped


def test_remove_returns_binding_and_unknown_is_none() -> None:
    store = InMemoryRegistrationStore()
    b = make(store)
    assert store.remove(IMPU, "sip:other@198.51.100.10") is None
    assert store.remove("sip:x@y", CONTACT) is None
    assert store.remove("<" + IMPU + ">", "sip:+15551230001@198.51.100.10:41111") is b
    assert store.remove(IMPU, CONTACT) is None
    assert store.remove(IMPU, "garbage") is None
    assert_empty(store)


def test_expiry_sweep_with_fake_clock() -> None:
    clock = FakeClock(1000.0)
    store = InMemoryRegistrationStore()
    a = make(
        store,
        contact="sip:a@198.51.100.1",
        flow=Flow("udp", "198.51.100.1", 5060),
        expires=100,
        now=clock(),
    )
    b = make(
        store,
        impu="sip:b@ims.example.net",
        contact="sip:b@198.51.100.2",
        flow=Flow("udp", "198.51.100.2", 5060),
        expires=300,
        now=clock(),
    )
    assert store.next_expiry() == 1100.0
    clock.t = 1099.999
    assert store.sweep(clock()) == []
    clock.t = 1100.0  # expires_at <= now is expired
    assert store.sweep(clock()) == [a]
    assert store.by_flow(a.flow) is None
    assert store.by_contact(a.contact) is None
    assert store.by_impu(IMPU) == []
    assert store.by_flow(b.flow) is b
    assert store.next_expiry() == 1300.0
    clock.t = 5000.0
    assert store.sweep(clock()) == [b]
    assert_empty(store)


def test_several_impus_share_flow_and_contact() -> None:
    """One UE registering two IMPUs over one flow with one contact (implicit sets)."""
    store = InMemoryRegistrationStore()
    impu2 = "sip:+15551230002@ims.example.net"
    b1 = make(store, associated=(IMPU, TEL))
    b2 = make(store, impu=impu2, now=1010.0, expires=100)
    assert len(store) == 2
    assert store.index_sizes() == (2, 1, 1)
    assert store.by_flow(FLOW) is b2  # latest
    assert store.by_flow(FLOW, TEL) is b1
    assert store.by_flow(FLOW, impu2) is b2
    assert store.by_contact(CONTACT) is b2
    assert originating_binding(store, FLOW, TEL) is b1
    assert store.sweep(1110.0) == [b2]
    assert store.by_flow(FLOW) is b1
    assert store.by_contact(CONTACT) is b1
    assert store.by_flow(FLOW, impu2) is None
    assert store.index_sizes() == (1, 1, 1)
    store.remove(IMPU, CONTACT)
    assert_empty(store)


def test_one_impu_several_contacts() -> None:
    store = InMemoryRegistrationStore()
    b1 = make(store)
    flow2 = Flow("udp", "198.51.100.20", 5060)
    b2 = make(store, contact="sip:+15551230001@198.51.100.20", flow=flow2)
    assert store.by_impu(IMPU) == [b1, b2]
    store.remove(IMPU, CONTACT)
    assert store.by_impu(IMPU) == [b2]
    assert store.by_flow(FLOW) is None
    assert store.index_sizes() == (1, 1, 1)


def test_randomised_consistency_and_heap_compaction() -> None:
    """Many refreshes/removals/sweeps: indexes always agree with a simple model."""
    rng = random.Random(1234)
    store = InMemoryRegistrationStore()
    model: dict[tuple[str, str], Binding] = {}
    now = 0.0
    for _ in range(6000):
        now += rng.random()
        i = rng.randrange(60)
        impu = f"sip:user{i % 40}@ims.example.net"
        contact = f"sip:user{i % 40}@10.0.0.{i}:5060"
        op = rng.random()
        key = (aor_key(impu), contact_key(contact))
        if op < 0.7:
            flow = Flow("udp", f"10.0.0.{i}", 5060 + rng.randrange(2))
            b = make(
                store, impu=impu, contact=contact, flow=flow, now=now, expires=rng.randrange(1, 50)
            )
            model[key] = b
        elif op < 0.85:
            store.remove(impu, contact)
            model.pop(key, None)
        else:
            for b in store.sweep(now):
                assert model.pop((b.impu_key, b.contact_key)) is b
            for k, b in list(model.items()):
                assert b.expires_at > now, k
        assert len(store) == len(model)
    assert sorted(map(id, store.bindings())) == sorted(map(id, model.values()))
    for b in model.values():
        assert store.by_contact(b.contact) in {
            x for x in model.values() if x.contact_key == b.contact_key
        }
        assert b in store.by_impu(b.impu)
        assert store.by_flow(b.flow, b.impu) is not None
    # the lazy-deletion heap stays bounded
    assert len(store._heap) <= 2 * len(store) + store._COMPACT_SLACK
    store.sweep(now + 1000)
    assert_empty(store)


def test_security_server_text_matches_flags() -> None:
    ind = indications_from_register(["sdes-srtp;mediasec"], True, False)
    assert format_mechanisms(server_mechanisms(ind.net_rtp, ind.net_msrp)) == "sdes-srtp;mediasec"
    assert parse_security_header(["sdes-srtp;mediasec"]) == server_mechanisms(True, False)
