"""`SipUri`, the package's one SIP URI parser, on the inputs where parsers tend to disagree.

Each decision follows RFC 3261 §19.1.1 and the §25.1 grammar (see the `SipUri` docstring); the
registration keys built on it are checked against it in tests/unit/test_registration.py.
"""

from __future__ import annotations

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.headers import SipUri


@pytest.mark.parametrize(
    ("text", "user", "password", "host", "port"),
    [
        # escaped '@' belongs to the user part and stays escaped (§19.1.2: only unreserved
        # characters are equivalent to their escapes, '@' is reserved)
        ("sip:alice%40corp.example@h.example", "alice%40corp.example", None, "h.example", None),
        # the first '@' ends the userinfo; an '@' in the URI headers is cut off with them
        ("sip:bob@h.example?Replaces=id%40a;x=1@b", "bob", None, "h.example", None),
        ("sip:u:pw@h.example:5070", "u", "pw", "h.example", 5070),
        ("SIPS:U@H.Example", "U", None, "H.Example", None),  # scheme lowered, rest as written
        ("sip:[2001:DB8::1]:5062", None, None, "[2001:DB8::1]", 5062),
        ("sip:u@[fe80::1%25eth0]", "u", None, "[fe80::1%25eth0]", None),  # RFC 6874 zone
        ("sip:192.0.2.1", None, None, "192.0.2.1", None),
    ],
)
def test_parts(
    text: str, user: str | None, password: str | None, host: str, port: int | None
) -> None:
    u = SipUri.parse(text)
    assert (u.user, u.password, u.host, u.port) == (user, password, host, port)


@pytest.mark.parametrize(
    "text",
    [
        "sip:a@b@192.0.2.1",  # a raw '@' in the user part (§25.1: user has none)
        "sip:@h.example",  # user = 1*( ... ): not empty
        "sip::pw@h.example",
        "sip:u@[2001:db8::zz]",  # IPv6reference = "[" IPv6address "]"
        "sip:u@[::1]x",  # only ":" port may follow it
        "sip:u@h example",
        "sip:u@h>",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


@pytest.mark.parametrize(
    ("text", "transport", "secure", "default_port"),
    [
        ("sip:h", "udp", False, 5060),
        ("sip:h;transport=TCP", "tcp", False, 5060),
        ("sip:h;transport=tls", "tls", True, 5060),  # deprecated form, still TLS (§26.2.2)
        ("sips:h", "tls", True, 5061),  # §26.2.2 / §19.1.2
        ("sips:h;transport=tcp", "tcp", True, 5061),  # TLS over TCP
    ],
)
def test_transport_and_default_port(
    text: str, transport: str, secure: bool, default_port: int
) -> None:
    u = SipUri.parse(text)
    assert (u.transport, u.secure, u.default_port) == (transport, secure, default_port)


def test_tel_is_not_a_sip_uri() -> None:
    u = SipUri.parse("tel:+1-555-0100;phone-context=ims.test")
    assert (u.scheme, u.user, u.host, u.secure) == ("tel", "+1-555-0100", "", False)
