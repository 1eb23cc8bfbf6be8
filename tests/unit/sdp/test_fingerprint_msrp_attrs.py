"""RFC 8122 fingerprints, MSRP URIs and a=setup, a=3ge2ae."""

from __future__ import annotations

import hashlib

import pytest

from pcscf_alg.errors import SdpError
from pcscf_alg.mediaplan import Fingerprint, SetupRole
from pcscf_alg.sdp.attrs import E2aeIndicator, parse_3ge2ae
from pcscf_alg.sdp.fingerprint import fingerprint_of, matches, parse_fingerprint, usable
from pcscf_alg.sdp.msrp import (
    MsrpUri,
    answer_role,
    parse_msrp_uri,
    parse_path,
    parse_setup,
    peer_role,
)

CERT = b"\x30\x82 not really a certificate"


def test_fingerprint_parse_and_compare_by_bytes() -> None:
    fp = fingerprint_of(CERT)
    text = fp.to_sdp()
    assert text.startswith("sha-256 ") and text == text.upper().replace("SHA-256", "sha-256")
    assert parse_fingerprint(text) == fp
    # case-insensitive hash name and hex, extra blanks
    assert parse_fingerprint("  SHA-256 " + text[8:].lower() + " ") == fp
    assert matches([fp], CERT) and not matches([fp], CERT + b"x")


def test_fingerprint_strongest_hash_set_is_checked() -> None:
    sha1 = fingerprint_of(CERT, "sha-1")
    wrong256 = Fingerprint("sha-256", bytes(32))
    assert matches([sha1], CERT)
    assert not matches([sha1, wrong256], CERT)  # sha-256 present: only it counts
    assert not matches([Fingerprint("md5", hashlib.md5(CERT).digest())], CERT)
    assert usable([Fingerprint("md5", bytes(16)), sha1]) == (sha1,)


@pytest.mark.parametrize(
    "value, msg",
    [
        ("sha-256", "needs"),
        ("sha-256 AB:CD", "32 octets"),
        ("sha-1 " + ":".join(["AB"] * 32), "20 octets"),
        ("sha-256 ABCD:" + ":".join(["AB"] * 31), "hex octets"),
        ("sha-256 " + ":".join(["ZZ"] * 32), "hex octets"),
        ("sha-256 " + "AB" * 32, "hex octets"),
        # fromhex skips ASCII whitespace: a space or tab in place of a digit must still fail
        ("sha-256 " + ":".join(["AB"] * 31) + ": B", "hex octets"),
        ("sha-256 A :" + ":".join(["AB"] * 31), "hex octets"),
        ("sha-256 " + ":".join(["AB"] * 30) + ":\t\t:AB", "hex octets"),
        ("sha-256 " + ":".join(["AB"] * 31) + ":\u0661\u0662", "hex octets"),  # Arabic digits
        ("sha-256 " + ":".join(["AB"] * 31) + ":+1", "hex octets"),
    ],
)
def test_bad_fingerprints(value: str, msg: str) -> None:
    with pytest.raises(SdpError, match=msg):
        parse_fingerprint(value)


def test_fingerprint_hex_of_either_case() -> None:
    upper = parse_fingerprint("SHA-256 " + ":".join(["AB"] * 32))
    assert upper == parse_fingerprint("sha-256 " + ":".join(["ab"] * 32))
    assert upper.digest == b"\xab" * 32


def test_unknown_hash_token_is_parsed_but_unusable() -> None:
    fp = parse_fingerprint("blake3 AB:CD")
    assert fp.hash_func == "blake3" and usable([fp]) == ()


def test_msrp_uri_parse_and_rfc4975_equality() -> None:
    u = parse_msrp_uri("msrps://198.51.100.10:50000/kjh29x97us;tcp")
    assert (u.scheme, u.host, u.port, u.session_id, u.transport) == (
        "msrps", "198.51.100.10", 50000, "kjh29x97us", "tcp")
    assert str(u) == "msrps://198.51.100.10:50000/kjh29x97us;tcp"
    assert u == parse_msrp_uri("MSRPS://bob@198.51.100.10:50000/kjh29x97us;TCP;foo=bar")
    assert u != parse_msrp_uri("msrp://198.51.100.10:50000/kjh29x97us;tcp")  # scheme matters
    assert u != parse_msrp_uri("msrps://198.51.100.10:50000/KJH29X97US;tcp")  # sid is exact
    assert parse_msrp_uri("msrp://Host.Example/s;tcp") == parse_msrp_uri(
        "msrp://host.example:2855/s;tcp")
    assert len({u, parse_msrp_uri("msrps://198.51.100.10:50000/kjh29x97us;tcp")}) == 1
    v6 = parse_msrp_uri("msrp://[2001:db8::1]:7394/a/b=+;tcp")
    assert v6.host == "2001:db8::1" and v6.session_id == "a/b=+"
    assert str(v6) == "msrp://[2001:db8::1]:7394/a/b=+;tcp"
    assert str(MsrpUri.build("msrps", "203.0.113.20", 40010, "sid")) == \
        "msrps://203.0.113.20:40010/sid;tcp"


def test_path_list() -> None:
    p = parse_path("msrps://relay.example:2855/r1;tcp msrps://1.2.3.4:5/ep;tcp")
    assert [x.session_id for x in p] == ["r1", "ep"]


@pytest.mark.parametrize(
    "uri",
    ["sip:foo", "msrp://1.2.3.4:5/sid", "msrp://1.2.3.4:99999/s;tcp", "msrp:///s;tcp",
     "msrp://[::1/s;tcp", "msrp://1.2.3.4:5/;tcp", "msrp://1.2.3.4:5/s;t-c", "msrp://[::1]x/s;tcp"],
)
def test_bad_msrp_uris(uri: str) -> None:
    with pytest.raises(SdpError):
        parse_msrp_uri(uri)


def test_setup_roles() -> None:
    assert parse_setup("ACTPASS") is SetupRole.ACTPASS
    with pytest.raises(SdpError):
        parse_setup("both")
    assert peer_role(SetupRole.ACTIVE) is SetupRole.PASSIVE
    assert peer_role(SetupRole.HOLDCONN) is SetupRole.HOLDCONN
    # we answer passive whenever we may (docs/e2ae-notes.md §5.3), active to a passive offerer
    assert answer_role(SetupRole.ACTPASS) is SetupRole.PASSIVE
    assert answer_role(None) is SetupRole.PASSIVE
    assert answer_role(SetupRole.ACTIVE) is SetupRole.PASSIVE
    assert answer_role(SetupRole.PASSIVE) is SetupRole.ACTIVE
    assert answer_role(SetupRole.HOLDCONN) is SetupRole.HOLDCONN


def test_3ge2ae_values() -> None:
    assert parse_3ge2ae("requested") is E2aeIndicator.REQUESTED
    assert parse_3ge2ae(" Applied ") is E2aeIndicator.APPLIED
    assert parse_3ge2ae("maybe") is E2aeIndicator.OTHER


def test_format_fingerprint_matches_mediaplan() -> None:
    from pcscf_alg.sdp.fingerprint import format_fingerprint

    for fp in (fingerprint_of(CERT), fingerprint_of(CERT, "sha-1"), Fingerprint("md5", bytes(16))):
        assert format_fingerprint(fp) == fp.to_sdp()
