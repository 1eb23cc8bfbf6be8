"""The line-based SDP model: byte-exact pass-through, edits, syntax errors."""

from __future__ import annotations

import pytest
import sdp_transform
from hypothesis import given
from hypothesis import strategies as st

from pcscf_alg.errors import SdpError
from pcscf_alg.sdp.model import Connection, Sdp, attr_name, attr_value, remove_attrs
from tests.spec_examples import spec_examples

from .helpers import oracle_check, sdp

EXAMPLES = [str(p) for p in spec_examples("0[4-9]_*.sip") + spec_examples("10_*.sip")]


def body(path: str) -> bytes:
    return open(path, "rb").read().split(b"\r\n\r\n", 1)[1]


VOLTE = sdp(
    """
    v=0
    o=- 1 1 IN IP4 198.51.100.10
    s=-
    c=IN IP4 198.51.100.10
    b=AS:64
    t=0 0
    a=group:BUNDLE 0
    m=audio 49170 RTP/SAVPF 96 97 100
    b=AS:41
    b=RS:0
    a=rtpmap:96 AMR-WB/16000/1
    a=fmtp:96 mode-change-capability=2;max-red=220
    a=rtcp-fb:* nack
    a=rtcp-fb:96 trr-int 5000
    a=curr:qos local none
    a=curr:qos remote none
    a=des:qos mandatory local sendrecv
    a=des:qos optional remote sendrecv
    a=tcap:1 RTP/SAVPF
    a=acap:1 crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80
    a=pcfg:1 t=1 a=1
    a=x-vendor-unknown:whatever   spaces   kept
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$K80|2^20|1:4 KDR=0 UNENCRYPTED_SRTCP
    a=sendrecv
    """
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.rsplit("/", 1)[1])
def test_examples_round_trip_byte_for_byte(path: str) -> None:
    data = body(path)
    assert Sdp.parse(data).to_bytes() == data
    oracle_check(data)


def test_volte_round_trip_and_untouched_lines() -> None:
    s = Sdp.parse(VOLTE)
    assert s.to_bytes() == VOLTE
    m = s.media[0]
    assert (m.media, m.port, m.proto, m.fmts) == ("audio", 49170, "RTP/SAVPF", ["96", "97", "100"])
    # an edit elsewhere does not disturb the other lines, in order
    m.set_port(30000)
    m.set_proto("RTP/AVPF")
    out = s.to_bytes().split(b"\r\n")
    ref = VOLTE.split(b"\r\n")
    assert out[7] == b"m=audio 30000 RTP/AVPF 96 97 100"
    assert out[:7] == ref[:7] and out[8:] == ref[8:]


def test_lf_and_missing_final_eol_and_trailing_blank() -> None:
    lf = VOLTE.replace(b"\r\n", b"\n")
    assert Sdp.parse(lf).to_bytes() == lf
    assert Sdp.parse(lf).eol == "\n"
    assert Sdp.parse(lf[:-1]).to_bytes() == lf[:-1]
    assert Sdp.parse(VOLTE + b"\r\n").to_bytes() == VOLTE + b"\r\n"
    assert Sdp.parse(VOLTE.decode()).to_str() == VOLTE.decode()


def test_mixed_line_endings_normalised_to_first() -> None:
    mixed = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\n"
    assert Sdp.parse(mixed).to_bytes() == mixed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    lf_first = b"v=0\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\nt=0 0\n"
    assert Sdp.parse(lf_first).to_bytes() == lf_first.replace(b"\r\n", b"\n")


def test_invalid_utf8_bytes_survive() -> None:
    data = (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\xfe caf\xc3\xa9\r\n"
            b"c=IN IP4 1.2.3.4\r\nt=0 0\r\n")
    assert Sdp.parse(data).to_bytes() == data


@pytest.mark.parametrize(
    "data, msg",
    [
        (b"", "v=0"),
        (b"v=1\r\n", "v=0"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "v=0"),
        (b"v=0\r\ns=-\r\n", "no o= line"),
        (b"v=0\r\no=- 1 1 IN IP4\r\n", "o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n", "line 3"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n\r\ns=-\r\n", "line 3"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nX=foo\r\n", "line 3"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n", "c= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP\r\n",
         "m= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
         "port"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
         "range"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1000 RTP/AVP 0\r\n", "without a c="),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=a\rb\r\n", "stray CR"),
        (b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=a\rb\n", "stray CR"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\r\n", "stray CR"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r", "stray CR"),
        (b"v=0\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\n\r", "stray CR"),
    ],
)
def test_syntax_errors(data: bytes, msg: str) -> None:
    # bytes (from the wire) and str take different CR paths: both must refuse alike
    for body in (data, data.decode()):
        with pytest.raises(SdpError, match=msg) as e:
            Sdp.parse(body)
        assert "\n" not in e.value.reason and e.value.status == 488


def test_rejected_mline_needs_no_connection() -> None:
    s = Sdp.parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n")
    assert s.media[0].rejected


def test_attribute_helpers() -> None:
    s = Sdp.parse(VOLTE)
    m = s.media[0]
    assert attr_name("a=Crypto:1 X") == "crypto"
    assert attr_value("a=sendrecv") == ""
    assert m.attr("rtcp-fb") == "* nack"
    assert m.attrs("curr") == ["qos local none", "qos remote none"]
    assert not m.has_attr("rtcp")  # rtcp-fb is not rtcp
    assert m.direction() == "sendrecv"
    assert s.session_attr("group") == "BUNDLE 0"
    assert m.remove_attrs("curr", "des") == 4
    assert not m.has_attr("curr")
    i = m.replace_or_insert("setup", "a=setup:passive")
    assert m.lines[i] == "a=setup:passive" and m.lines[i + 1] == "a=sendrecv"
    n = len(m.lines)
    m.replace_or_insert("setup", "a=setup:active")
    assert len(m.lines) == n and m.attr("setup") == "active"
    # lines after it, in the same edit: where the setup line was, or at the insert point
    i = m.replace_or_insert("setup", "a=setup:passive", "a=fingerprint:sha-256 AB", "a=x")
    assert m.lines[i : i + 4] == ["a=setup:passive", "a=fingerprint:sha-256 AB", "a=x",
                                  "a=sendrecv"]
    assert m.attrs("setup") == ["passive"] and m.find("x") == i + 2
    m.remove_attrs("setup", "fingerprint", "x")
    i = m.replace_or_insert("setup", "a=setup:active", "a=fingerprint:sha-256 CD")
    assert m.lines[i : i + 3] == ["a=setup:active", "a=fingerprint:sha-256 CD", "a=sendrecv"]
    lines = ["a=3GE2AE:requested", "a=3ge2ae", "a=3ge2aex:1", "a=foo"]
    assert remove_attrs(lines, {"3ge2ae"}) == 2 and lines == ["a=3ge2aex:1", "a=foo"]


def test_connection_and_port_count() -> None:
    s = Sdp.parse(
        b"v=0\r\no=- 1 1 IN IP6 ::1\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
        b"m=video 5000/2 RTP/AVP 96\r\nc=IN IP4 224.2.1.1/127/3\r\n"
    )
    c = s.session_connection()
    assert c is not None and c.host == "2001:db8::1" and c.addrtype == "IP6"
    m = s.media[0]
    mc = m.connection()
    assert mc is not None and mc.host == "224.2.1.1"
    assert m.nports == "2"
    m.set_port(6000)
    assert m.lines[0] == "m=video 6000 RTP/AVP 96"
    assert Connection.line_for("2001:db8::5") == "c=IN IP6 2001:db8::5"


def test_sdp_transform_oracle_agrees_on_volte() -> None:
    oracle_check(VOLTE)
    # ... and shows why it is only an oracle: it loses the second session parameter
    t = sdp_transform.parse(VOLTE.decode())
    assert t["media"][0]["crypto"][0]["sessionConfig"] == "KDR=0"


_line = st.from_regex(r"[a-z]=[ -~]{0,40}", fullmatch=True).filter(
    lambda s: s[0] in "sibuepzkart" and "\r" not in s
)


@given(st.lists(_line, max_size=20), st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_round_trip_property(extra: list[str], eol: str, final: bool) -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 10.0.0.1", "c=IN IP4 10.0.0.1", *extra,
             "m=audio 1000 RTP/AVP 0", *extra]
    text = eol.join(lines) + (eol if final else "")
    assert Sdp.parse(text).to_str() == text
