"""RFC 3329 / TS 24.229 §7.2A.7 Security-Client/-Server/-Verify parsing and generation."""

from __future__ import annotations

import pytest

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.secagree import (
    SecMechanism,
    e2ae_support,
    format_mechanisms,
    mediasec_mechanisms,
    parse_security_header,
    server_mechanisms,
    strip_option_tags,
    verify_matches,
)
from tests.spec_examples import spec_example

# Example 01/03 Security-Client, example 02 Security-Server / example 03 Security-Verify.
EX_CLIENT = (
    "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=41110;port-s=41111;prot=esp;"
    "spi-c=11111111;spi-s=22222222, sdes-srtp;mediasec, msrp-tls;mediasec"
)
EX_SERVER = (
    "ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=5062;port-s=5064;prot=esp;"
    "spi-c=33333333;spi-s=44444444, sdes-srtp;mediasec, msrp-tls;mediasec"
)


def header_values(example: str, name: str) -> list[str]:
    """Header values of `name` in a spec example."""
    path = spec_example(int(example))
    prefix = name.lower() + ":"
    return [
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.lower().startswith(prefix)
    ]


def names(mechs: list[SecMechanism]) -> list[str]:
    return [m.name for m in mechs]


# ---- parsing: the ABNF cases -------------------------------------------------------------


def test_example_01_security_client() -> None:
    values = header_values("01", "Security-Client")
    assert values == [EX_CLIENT]
    mechs = parse_security_header(values)
    assert names(mechs) == ["ipsec-3gpp", "sdes-srtp", "msrp-tls"]
    ipsec = mechs[0]
    assert not ipsec.mediasec
    assert ipsec.param("spi-c") == "11111111"
    assert ipsec.params[0] == ("alg", "hmac-sha-1-96")
    assert len(ipsec.params) == 8
    assert [m.mediasec for m in mechs] == [False, True, True]
    assert e2ae_support(mechs) == (True, True)


def test_example_02_server_and_03_verify_match() -> None:
    server = parse_security_header(header_values("02", "Security-Server"))
    verify = parse_security_header(header_values("03", "Security-Verify"))
    assert server[0].param("q") == "0.1"
    assert verify_matches(server, verify)
    client3 = parse_security_header(header_values("03", "Security-Client"))
    assert client3 == parse_security_header([EX_CLIENT])


def test_several_header_instances_equal_one_comma_list() -> None:
    one = parse_security_header(["digest;d-alg=md5, tls;q=0.2, sdes-srtp;mediasec"])
    many = parse_security_header(["digest;d-alg=md5", "tls;q=0.2", "sdes-srtp;mediasec"])
    mixed = parse_security_header(["digest;d-alg=md5, tls;q=0.2", "sdes-srtp;mediasec"])
    assert one == many == mixed
    assert names(one) == ["digest", "tls", "sdes-srtp"]


def test_parameters_order_preserved_and_valueless() -> None:
    (m,) = parse_security_header(["tls;q=0.2;foo;bar=baz"])
    assert m.params == (("q", "0.2"), ("foo", None), ("bar", "baz"))
    assert m.has_param("FOO")
    assert m.param("foo") is None
    assert m.param("absent") is None


def test_case_is_folded_for_names_but_values_kept() -> None:
    (m,) = parse_security_header(["IPSEC-3GPP;ALG=HMAC-SHA-1-96;MediaSec"])
    assert m.name == "ipsec-3gpp"
    assert m.params == (("alg", "HMAC-SHA-1-96"), ("mediasec", None))
    assert m.mediasec
    (s,) = parse_security_header(["SDES-SRTP;MEDIASEC"])
    assert e2ae_support([s]) == (True, False)


@pytest.mark.parametrize(
    "value",
    [
        "sdes-srtp;mediasec,msrp-tls;mediasec",
        "  sdes-srtp ; mediasec ,  msrp-tls;  mediasec  ",
        "sdes-srtp\t;\tmediasec,\r\n msrp-tls;mediasec",  # folded continuation line
        "sdes-srtp;mediasec ,msrp-tls ;mediasec",
    ],
)
def test_whitespace_around_separators(value: str) -> None:
    mechs = parse_security_header([value])
    assert names(mechs) == ["sdes-srtp", "msrp-tls"]
    assert all(m.params == (("mediasec", None),) for m in mechs)


def test_whitespace_around_equal() -> None:
    (m,) = parse_security_header(["tls ; q = 0.2"])
    assert m.params == (("q", "0.2"),)


def test_quoted_string_may_contain_comma_and_semicolon() -> None:
    mechs = parse_security_header(['digest;d-ver="0123456789abcdef0123456789abcdef";x="a, b;c"'])
    assert len(mechs) == 1
    assert mechs[0].param("d-ver") == '"0123456789abcdef0123456789abcdef"'
    assert mechs[0].param("x") == '"a, b;c"'
    (e,) = parse_security_header(['tls;x="say \\"hi\\", ok"'])
    assert e.param("x") == '"say \\"hi\\", ok"'


def test_ipv6_host_value() -> None:
    (m,) = parse_security_header(["ipsec-ike;addr=[2001:db8::1]"])
    assert m.param("addr") == "[2001:db8::1]"


def test_unknown_mechanisms_are_kept() -> None:
    mechs = parse_security_header(["x-vendor;foo=1, dtls-srtp;mediasec, bfcp-tls;mediasec"])
    assert names(mechs) == ["x-vendor", "dtls-srtp", "bfcp-tls"]
    assert names(mediasec_mechanisms(mechs)) == ["dtls-srtp", "bfcp-tls"]
    assert e2ae_support(mechs) == (False, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sdes-srtp;mediasec", (True, False)),
        ("msrp-tls;mediasec", (False, True)),
        ("sdes-srtp;mediasec, msrp-tls;mediasec", (True, True)),
        ("ipsec-3gpp;alg=hmac-sha-1-96", (False, False)),
        # the mechanism name without ;mediasec is not a media-plane indication
        ("sdes-srtp, msrp-tls", (False, False)),
        ("sdes-srtp;q=0.5", (False, False)),
        # mediasec on another mechanism is kept but not acted on
        ("dtls-srtp;mediasec", (False, False)),
        ("msrp-tls;q=0.1;mediasec", (False, True)),
        ("sdes-srtp;mediasec=1", (True, False)),
    ],
)
def test_e2ae_support(value: str, expected: tuple[bool, bool]) -> None:
    assert e2ae_support(parse_security_header([value])) == expected


def test_empty_sequence_gives_empty_list() -> None:
    assert parse_security_header([]) == []
    assert e2ae_support([]) == (False, False)


def test_bare_string_is_one_value() -> None:
    assert names(parse_security_header("tls, digest")) == ["tls", "digest"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        ",",
        "tls,",
        "tls,,digest",
        ",tls",
        "tls;",
        "tls;=1",
        "tls;q=",
        'tls;q="unterminated',
        'tls;q="a"b',
        "tls digest",
        "tls;q=0.1 x",
        "t@ls",
        "tls;q=a/b",
        'tls;q="a\r\nb"',
        'tls;q="\\\n"',
        "tls;a=<x>",
        ";mediasec",
    ],
)
def test_garbage_raises_400(value: str) -> None:
    with pytest.raises(SipParseError) as exc:
        parse_security_header([value])
    assert exc.value.status == 400
    assert "\n" not in exc.value.reason


def test_garbage_in_second_instance_raises() -> None:
    with pytest.raises(SipParseError):
        parse_security_header(["tls", "digest;;"])


def test_too_many_mechanisms() -> None:
    with pytest.raises(SipParseError):
        parse_security_header([", ".join(["tls"] * 200)])
    with pytest.raises(SipParseError):
        parse_security_header(["tls" + ";p" * 200])


# ---- generation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtp", "msrp", "text"),
    [
        (True, True, "sdes-srtp;mediasec, msrp-tls;mediasec"),
        (True, False, "sdes-srtp;mediasec"),
        (False, True, "msrp-tls;mediasec"),
        (False, False, ""),
    ],
)
def test_server_mechanisms(rtp: bool, msrp: bool, text: str) -> None:
    mechs = server_mechanisms(rtp, msrp)
    assert format_mechanisms(mechs) == text
    assert all(m.mediasec for m in mechs)
    assert e2ae_support(mechs) == (rtp, msrp)


def test_format_round_trip() -> None:
    mechs = parse_security_header([EX_SERVER, 'digest;d-ver="ab,c";D-QOP=auth'])
    text = format_mechanisms(mechs)
    assert text == EX_SERVER + ', digest;d-ver="ab,c";d-qop=auth'
    assert parse_security_header([text]) == mechs
    assert str(mechs[1]) == "sdes-srtp;mediasec"


def test_mechanism_constructor_validates_and_folds_case() -> None:
    m = SecMechanism("SDES-SRTP", (("MediaSec", None),))
    assert m == SecMechanism("sdes-srtp", (("mediasec", None),))
    assert hash(m) == hash(SecMechanism("sdes-srtp", (("mediasec", None),)))
    with pytest.raises(ValueError):
        SecMechanism("bad name")
    with pytest.raises(ValueError):
        SecMechanism("tls", (("q", "a\r\nInjected: x"),))
    with pytest.raises(ValueError):
        SecMechanism("tls", (("bad=name", None),))


# ---- Security-Verify comparison ----------------------------------------------------------


def test_verify_matches_identical() -> None:
    sent = parse_security_header([EX_SERVER])
    assert verify_matches(sent, parse_security_header([EX_SERVER]))


@pytest.mark.parametrize(
    "verify",
    [
        # mechanism order
        "msrp-tls;mediasec, sdes-srtp;mediasec, " + EX_SERVER.split(", ")[0],
        # parameter order
        "sdes-srtp;mediasec, msrp-tls;mediasec, ipsec-3gpp;spi-s=44444444;spi-c=33333333;"
        "prot=esp;port-s=5064;port-c=5062;mod=trans;ealg=aes-cbc;alg=hmac-sha-1-96;q=0.1",
        # case of names and token values, whitespace, split over several headers
        EX_SERVER.upper().replace(";", " ; ").replace(",", " ,\t"),
    ],
)
def test_verify_matches_ignores_order_case_whitespace(verify: str) -> None:
    sent = parse_security_header([EX_SERVER])
    assert verify_matches(sent, parse_security_header([verify]))


def test_verify_matches_over_several_instances() -> None:
    sent = server_mechanisms(True, True)
    assert verify_matches(sent, parse_security_header(["msrp-tls;mediasec", "sdes-srtp;mediasec"]))


@pytest.mark.parametrize(
    "verify",
    [
        "sdes-srtp;mediasec",  # a mechanism missing
        "sdes-srtp;mediasec, msrp-tls;mediasec, dtls-srtp;mediasec",  # one extra
        "sdes-srtp, msrp-tls;mediasec",  # mediasec flag lost
        "sdes-srtp;mediasec;q=0.5, msrp-tls;mediasec",  # extra parameter
        "sdes-srtp;mediasec, sdes-srtp;mediasec",  # duplicate instead of msrp-tls
        "sdes-srtp;mediasec=x, msrp-tls;mediasec",  # value where there was none
    ],
)
def test_verify_mismatch(verify: str) -> None:
    sent = server_mechanisms(True, True)
    assert not verify_matches(sent, parse_security_header([verify]))


def test_verify_param_value_mismatch_and_quoted_case() -> None:
    sent = parse_security_header(['digest;d-ver="abcdef";q=0.1'])
    assert verify_matches(sent, parse_security_header(['digest;Q=0.1;D-VER="abcdef"']))
    # quoted strings compare case-sensitively (RFC 3261 §7.3.1)
    assert not verify_matches(sent, parse_security_header(['digest;d-ver="ABCDEF";q=0.1']))
    # a token is not a quoted string
    assert not verify_matches(sent, parse_security_header(["digest;d-ver=abcdef;q=0.1"]))
    assert not verify_matches(sent, parse_security_header(['digest;d-ver="abcdef";q=0.2']))


def test_verify_empty_lists() -> None:
    assert verify_matches([], [])
    assert not verify_matches(server_mechanisms(True, False), [])


# ---- Require / Proxy-Require option tags --------------------------------------------------


def test_strip_option_tags() -> None:
    assert strip_option_tags(["sec-agree"], {"sec-agree"}) == []
    assert strip_option_tags(["sec-agree, mediasec"], {"sec-agree", "mediasec"}) == []
    assert strip_option_tags(
        ["Sec-Agree , 100rel", "MEDIASEC", "precondition"], {"sec-agree", "mediasec"}
    ) == ["100rel", "precondition"]
    assert strip_option_tags(["100rel,, timer ,"], {"sec-agree"}) == ["100rel", "timer"]
    assert strip_option_tags([], {"sec-agree"}) == []
    assert strip_option_tags(["path"], {"SEC-AGREE"}) == ["path"]
