"""Shared test helpers for the SDP / e2ae tests: tokens, a fake gateway, sdp-transform oracle."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Iterable

import sdp_transform

from pcscf_alg.mediaplan import Endpoint, Fingerprint, StreamRequest, StreamReservation
from pcscf_alg.sdp.crypto import SUITES, parse_crypto
from pcscf_alg.sdp.model import Sdp

AGW_ACCESS = "203.0.113.20"
AGW_CORE = "192.0.2.20"
AGW_FP = Fingerprint("sha-256", bytes(range(0xA0, 0xC0)))


def b64key(n: int, seed: int = 1) -> str:
    return base64.b64encode(bytes((seed * 7 + i) % 256 for i in range(n))).decode()


def fp_text(seed: int) -> str:
    return "sha-256 " + ":".join(f"{(seed + i * 11) % 256:02X}" for i in range(32))


TOKENS = {
    "$K80B": b64key(30, 2),
    "$K80": b64key(30, 1),
    "$K32": b64key(30, 3),
    "$K256CM": b64key(46, 4),
    "$KG128": b64key(28, 5),
    "$KG256": b64key(44, 6),
    "$UEFP": fp_text(1),
    "$COREFP": fp_text(2),
}


def sdp(text: str, eol: str = "\r\n") -> bytes:
    """Test SDP: dedented, tokens substituted, line endings made `eol`."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    out = eol.join(lines) + eol
    for k in sorted(TOKENS, key=len, reverse=True):
        out = out.replace(k, TOKENS[k])
    return out.encode()


def counter_rng() -> Callable[[int], bytes]:
    c = itertools.count(1)

    def rng(n: int) -> bytes:
        start = next(c) * 37
        return bytes((start + i) % 256 for i in range(n))

    return rng


def reserve(requests: Iterable[StreamRequest]) -> dict[int, StreamReservation]:
    """A fake gateway: ports 40000+10i (access) / 30000+10i (core), rtcp on +1 unless muxed."""
    out = {}
    for r in requests:
        a, c = 40000 + 10 * r.index, 30000 + 10 * r.index
        rtp = r.kind.value == "rtp"
        out[r.index] = StreamReservation(
            r.index,
            r.kind,
            Endpoint(AGW_ACCESS, a, a + 1 if rtp and not r.access_rtcp_mux else None),
            Endpoint(AGW_CORE, c, c + 1 if rtp and not r.core_rtcp_mux else None),
            AGW_FP if r.want_local_fingerprint else None,
        )
    return out


_INLINE = re.compile(r"inline:([A-Za-z0-9+/=]+)")


def normalise(data: bytes) -> str:
    """Our output with keys replaced by KEY and the gateway fingerprint by AGWFP.

    Before replacing, every generated key is checked: the key||salt length fits its suite and
    there is no lifetime or MKI (TS 33.328: "shall be omitted").
    """
    text = data.decode()
    for line in text.split("\r\n" if "\r\n" in text else "\n"):
        if line.startswith("a=crypto:"):
            c = parse_crypto(line[9:])
            assert len(c.key.key_salt) == SUITES[c.suite].key_salt_len
    text = _INLINE.sub("inline:KEY", text)
    return text.replace(AGW_FP.to_sdp(), "sha-256 AGWFP")


def oracle_check(data: bytes) -> None:
    """Re-parse with sdp-transform (an independent parser) and check it agrees with our model."""
    ours = Sdp.parse(data)
    theirs = sdp_transform.parse(data.decode())
    assert len(theirs["media"]) == len(ours.media)
    sess_c = ours.session_connection()
    if sess_c is not None:
        assert theirs["connection"]["ip"] == sess_c.host
    assert theirs["origin"]["address"] == ours.session[ours.origin_index()].split()[-1]
    for m, t in zip(ours.media, theirs["media"], strict=True):
        assert t["type"] == m.media
        assert t["port"] == m.port
        assert t["protocol"] == m.proto
        c = m.connection()
        if c is not None:
            assert t["connection"]["ip"] == c.host
        cryptos = [parse_crypto(v) for v in m.attrs("crypto")]
        assert [(x["id"], x["suite"]) for x in t.get("crypto", [])] == [
            (x.tag, x.suite) for x in cryptos
        ]
        for x, tc in zip(cryptos, t.get("crypto", []), strict=True):
            b64 = base64.b64encode(x.key.key_salt).decode()
            assert tc["config"].split("|")[0] == "inline:" + b64
        fp = m.attr("fingerprint")
        if fp is not None:
            assert t["fingerprint"]["type"] + " " + t["fingerprint"]["hash"] == fp
        else:
            assert "fingerprint" not in t
        setup = m.attr("setup")
        assert t.get("setup") == setup
        if m.direction() is not None:
            assert t.get("direction") == m.direction()
        rtcp = m.attr("rtcp")
        if rtcp is not None:
            assert t["rtcp"]["port"] == int(rtcp.split()[0])
        assert ("rtcpMux" in t) == m.has_attr("rtcp-mux")
