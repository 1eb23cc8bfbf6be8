"""RFC 4568 a=crypto: parse, validate, generate, redact."""

from __future__ import annotations

import base64

import pytest

from pcscf_alg.errors import SdpError
from pcscf_alg.sdp.crypto import (
    GATEWAY_SUITES,
    SUITES,
    CryptoAttr,
    b64decode_lenient,
    generate_crypto,
    parse_crypto,
    redact,
)

from .helpers import b64key, counter_rng


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_registry_suite_parses_with_its_key_length(suite: str) -> None:
    info = SUITES[suite]
    key = b64key(info.key_salt_len)
    c = parse_crypto(f"7 {suite} inline:{key}")
    assert (c.tag, c.suite, len(c.key.key_salt)) == (7, suite, info.key_salt_len)
    assert c.known
    # without padding too
    c2 = parse_crypto(f"7 {suite} inline:{key.rstrip('=')}")
    assert c2.key.key_salt == c.key.key_salt
    # one byte short is refused, and the reason does not leak the key
    short = base64.b64encode(bytes(info.key_salt_len - 1)).decode()
    with pytest.raises(SdpError, match=f"{suite} needs a {info.key_salt_len}-byte") as e:
        parse_crypto(f"7 {suite} inline:{short}")
    assert short not in str(e.value)
    assert (c.gateway_problem() is None) == (suite in GATEWAY_SUITES)


def test_iana_registry_is_complete() -> None:
    for name in (
        "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "F8_128_HMAC_SHA1_80",
        "SEED_CTR_128_HMAC_SHA1_80", "SEED_128_CCM_80", "SEED_128_GCM_96",
        "AES_192_CM_HMAC_SHA1_80", "AES_192_CM_HMAC_SHA1_32", "AES_256_CM_HMAC_SHA1_80",
        "AES_256_CM_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM",
    ):
        assert name in SUITES
    assert GATEWAY_SUITES[0] == "AES_CM_128_HMAC_SHA1_80"
    assert SUITES["AES_CM_128_HMAC_SHA1_32"].srtp_tag_len == 4
    assert SUITES["AES_CM_128_HMAC_SHA1_32"].srtcp_tag_len == 10


def test_lifetime_mki_and_session_params() -> None:
    k = b64key(30)
    c = parse_crypto(
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31|1:4 KDR=0 UNENCRYPTED_SRTCP WSH=64"
    )
    assert c.key.lifetime == 2**31
    assert (c.key.mki_value, c.key.mki_length, c.key.mki) == (1, 4, b"\x00\x00\x00\x01")
    assert c.params == ("KDR=0", "UNENCRYPTED_SRTCP", "WSH=64")
    assert c.param("UNENCRYPTED_SRTCP") == "" and c.param("KDR") == "0"
    # the MKI is fine (the gateway strips it); the session parameter is not
    assert c.gateway_problem() == "session parameter UNENCRYPTED_SRTCP not supported"
    key = c.to_srtp_key()
    assert key.unencrypted_srtcp and not key.unencrypted_srtp and key.mki == b"\x00\x00\x00\x01"
    assert c.to_sdp() == f"1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31|1:4 KDR=0 " \
                         "UNENCRYPTED_SRTCP WSH=64"
    # decimal lifetime, MKI without lifetime, tabs between fields
    c = parse_crypto(f"2\tAES_CM_128_HMAC_SHA1_32\tinline:{k}|1048575")
    assert c.key.lifetime == 1048575 and c.key.mki is None
    assert c.gateway_problem() is None
    c = parse_crypto(f"3 AES_CM_128_HMAC_SHA1_32 inline:{k}|5:1")
    assert c.key.lifetime is None and c.key.mki_value == 5


def test_several_keys_need_mki() -> None:
    k = b64key(30)
    c = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20|1:4;inline:{k}|2^20|2:4")
    assert len(c.keys) == 2
    assert c.gateway_problem() == "several master keys (MKI) not supported"
    with pytest.raises(SdpError, match="MKI each"):
        parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{k};inline:{k}")


@pytest.mark.parametrize(
    "params, problem",
    [
        ("KDR=1", "KDR other than 0"),
        ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTP not supported"),
        ("UNAUTHENTICATED_SRTP", "UNAUTHENTICATED_SRTP not supported"),
        ("FEC_ORDER=FEC_SRTP", "FEC_ORDER"),
        ("FOO=1", "unknown session parameter"),
        ("WSH=128", None),
        ("KDR=0", None),
    ],
)
def test_gateway_problems(params: str, problem: str | None) -> None:
    c = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{b64key(30)} {params}")
    assert c.gateway_problem() == problem if problem is None else problem in str(
        c.gateway_problem()
    )


def test_unknown_suite_and_key_method_are_parsed_not_refused() -> None:
    c = parse_crypto("1 FANCY_NEW_SUITE inline:QUJDRA== FOO")
    assert not c.known and c.gateway_problem() == "unknown crypto suite FANCY_NEW_SUITE"
    c = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 mikey:whatever")
    assert c.gateway_problem() == "key method mikey not supported"


@pytest.mark.parametrize(
    "value, msg",
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs tag"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag"),
        ("1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag"),
        ("1 AES-CM inline:AAAA", "suite"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:", "key-param"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAAA", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AA=A", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|2^99", "lifetime"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|0", "lifetime"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|1:0", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|256:1", "MKI value"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|1:1|2^20", "lifetime must precede"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|1:1|2:1", "two MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K|1|2|3", "too many"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K KDR=99", "KDR"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K WSH=10", "WSH"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:$K UNENCRYPTED_SRTP=1", "no value"),
    ],
)
def test_bad_crypto_lines(value: str, msg: str) -> None:
    key = b64key(30)
    with pytest.raises(SdpError, match=msg) as e:
        parse_crypto(value.replace("$K", key))
    assert key not in e.value.reason


def test_b64_lenient() -> None:
    assert b64decode_lenient("QUJD") == b"ABC"
    assert b64decode_lenient("QUI") == b"AB" == b64decode_lenient("QUI=")
    with pytest.raises(SdpError):
        b64decode_lenient("QUJ\u00e9")


@pytest.mark.parametrize("suite", GATEWAY_SUITES)
def test_generate(suite: str) -> None:
    c = generate_crypto(3, suite, counter_rng())
    assert (c.tag, c.suite, len(c.key.key_salt)) == (3, suite, SUITES[suite].key_salt_len)
    assert c.key.lifetime is None and c.key.mki is None
    again = parse_crypto(c.to_sdp())
    assert again == c
    assert "inline:" in c.line() and "|" not in c.line()
    assert CryptoAttr.from_srtp_key(c.to_srtp_key()) == c


def test_generate_refuses_unrunnable_suite_and_short_rng() -> None:
    with pytest.raises(ValueError):
        generate_crypto(1, "AES_256_CM_HMAC_SHA1_80", counter_rng())
    with pytest.raises(ValueError):
        generate_crypto(1, "AES_CM_128_HMAC_SHA1_80", lambda n: b"x")


def test_repr_never_shows_keys() -> None:
    c = generate_crypto(1, "AES_CM_128_HMAC_SHA1_80", counter_rng())
    b64 = base64.b64encode(c.key.key_salt).decode()
    assert b64 not in repr(c) and b64 not in repr(c.to_srtp_key())


def test_redact() -> None:
    k = b64key(30)
    text = (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20|1:4 KDR=0\r\n"
            f"a=acap:1 crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{k}\r\n"
            f"a=crypto:3 X inline:{k};inline:{k}|1:1 FEC_KEY=inline:{k}")
    out = redact(text)
    assert k not in out
    assert "inline:<redacted>|2^20|1:4 KDR=0\r\n" in out
    assert out.count("<redacted>") == 5
