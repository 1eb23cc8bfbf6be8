"""Issue 6 "Calls end to end", deliverable 5: the daemon driven by SIPp on both sides, with
Python media peers (SRTP/RTP over UDP, MSRP over TLS towards the UE and TCP towards the core).

Each test runs one SIPp scenario pair from scenarios/ (the scenarios check the SDP they receive
with <ereg check_it>; a failed check makes SIPp exit 1), reads the SDP each side received from
SIPp's message trace while SIPp holds the call, exchanges media through the gateway, and ends
with the daemon holding no gateway port and no call.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon import Daemon
from tests.e2e.sipp_e2ae import (
    HOST,
    addr,
    cryptos,
    exchange_plain_rtp,
    exchange_srtp,
    fingerprint,
    media,
    msrp_ok,
    msrp_send,
    new_key,
    read_msrp,
    received,
    sdp_of,
    tcp_listener,
    ue_certificate,
    ue_tls_connect,
    udp_socket,
    wait_traced,
)
from tests.sipp import SippAgent, SippProcess, start

SUITE80 = "AES_CM_128_HMAC_SHA1_80"
REQ = "\r\na=3ge2ae:requested"
CEMA = "\r\na=msrp-cema"
BOTH = "sdes-srtp;mediasec, msrp-tls;mediasec"
HOLD_MS = 2500


def assert_released(d: Daemon) -> None:
    """After each call: the gateway holds zero ports and the ALG zero calls (release is async)."""
    st = d.wait_stats(lambda s: s["agw_ports"] == 0 and s["dialogs"] == 0, timeout=10)
    assert st["agw_ports"] == 0, st
    assert st["dialogs"] == 0, st
    assert st["agw_contexts"] == 0, st


@dataclass
class Pair:
    """A core-side SIPp (UAS on the daemon's next hop) and a UE SIPp (UAC via the access port)."""

    core: SippProcess
    ue: SippProcess
    procs: list[SippProcess] = field(default_factory=list)

    def finish(self) -> None:
        ue = self.ue.wait()
        core = self.core.wait(timeout=ue.duration + 8)
        problems = [r for r in (ue, core) if not r.ok]
        assert not problems, "\n\n".join(r.dump(12000) for r in problems)


@contextlib.contextmanager
def orig_pair(
    d: Daemon, tmp_path: Path, *, ue_keys: dict[str, str], core_keys: dict[str, str],
    ue_scenario: str = "ue_e2ae_orig.xml", core_scenario: str = "scscf_e2ae_orig.xml",
    timeout: float = 20.0,
) -> Iterator[Pair]:
    core = SippAgent(core_scenario, role="uas", local_port=d.next_hop_port, keys=core_keys,
                     timeout=timeout, name="core")
    ue = SippAgent(ue_scenario, role="uac", remote=f"{HOST}:{d.next_hop_port}",
                   rsa=f"{HOST}:{d.access_port}", service="alice", keys=ue_keys,
                   timeout=timeout, name="ue")
    cp = start(core, tmp_path)
    up: SippProcess | None = None
    try:
        assert cp.wait_ready(5), cp.wait(timeout=0).dump()
        up = start(ue, tmp_path)
        yield Pair(cp, up)
    finally:
        if up is not None:
            up.stop()
        cp.stop()


@dataclass
class UeMedia:
    rtp: socket.socket
    core_rtp: socket.socket
    core_msrp: socket.socket  # listening: the far end answers a=setup:passive
    k1: str
    k2: str

    @property
    def ports(self) -> dict[str, str]:
        return {"rtp_port": str(self.rtp.getsockname()[1])}

    def close(self) -> None:
        for s in (self.rtp, self.core_rtp, self.core_msrp):
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def peers() -> Iterator[UeMedia]:
    m = UeMedia(udp_socket(), udp_socket(), tcp_listener(), new_key(), new_key())
    try:
        yield m
    finally:
        m.close()


def orig_keys(
    p: UeMedia, fp: str, *, xa: str = REQ, xm: str = REQ + CEMA, rtp_mode: str = "e2ae",
    msrp_mode: str = "e2ae", bye_ue: str = "send", sc: str = BOTH, ue_msrp_port: int = 41010,
) -> tuple[dict[str, str], dict[str, str]]:
    ue = {
        "sc": sc, "k1": p.k1, "k2": p.k2, "rtp_port": str(p.rtp.getsockname()[1]),
        "msrp_port": str(ue_msrp_port), "fp": fp, "xa": xa, "xm": xm,
        "sel": f"1 {SUITE80}", "rtp_mode": rtp_mode, "msrp_mode": msrp_mode,
        "bye": bye_ue, "hold": str(HOLD_MS),
    }
    cema = CEMA if CEMA in xm else ""
    core = {
        "rtp_port": str(p.core_rtp.getsockname()[1]),
        "msrp_port": str(p.core_msrp.getsockname()[1]),
        "ue_rtp_port": ue["rtp_port"], "ue_msrp_port": str(ue_msrp_port), "agw_ip": HOST,
        "rtp_mode": rtp_mode, "msrp_mode": msrp_mode,
        "mscheme": "msrp" if msrp_mode == "e2ae" else "msrps",
        "xa": "", "xm": cema, "bye": "recv" if bye_ue == "send" else "send",
        "hold": str(HOLD_MS),
    }
    if bye_ue == "recv":
        core["bye"] = "recv"
    return ue, core


def msrp_roundtrip(
    ue_cert: Any, ue_ans: Any, core_listener: socket.socket, *, cema: bool,
    ue_path: str, core_offer_path: str,
) -> None:
    """UE (TLS client) -> gateway -> core (TCP): SEND, and its 200 back."""
    m = media(ue_ans, "message")
    agw_fp = (m.attr("fingerprint") or "").split(" ", 1)[1]
    to_path = m.attr("path")
    assert to_path is not None
    tls = ue_tls_connect(ue_cert, addr(ue_ans, "message"), agw_fp)
    with tls:
        tls.sendall(msrp_send("tx7Kq2aP", to_path, ue_path, b"hello core"))
        conn, _ = core_listener.accept()
        with conn:
            conn.settimeout(3)
            req = read_msrp(conn.recv)
            assert req.first == "MSRP tx7Kq2aP SEND", req
            assert req.body == b"hello core"
            if cema:
                # application-agnostic: bytes untouched
                assert req.headers["to-path"] == to_path
                assert req.headers["from-path"] == ue_path
            else:
                # application-aware: the core sees the paths of the core leg
                assert req.headers["to-path"] == core_offer_path[0]
                assert req.headers["from-path"] == core_offer_path[1]
            conn.sendall(msrp_ok("tx7Kq2aP", req.headers["from-path"], req.headers["to-path"]))
            resp = read_msrp(tls.recv)
            assert resp.first == "MSRP tx7Kq2aP 200 OK", resp
            assert resp.headers["to-path"] == ue_path
            assert resp.headers["from-path"] == to_path


# ------------------------------------------------------------------------------------ originating


@pytest.mark.parametrize("cema", [True, False], ids=["cema", "non-cema"])
def test_originating_rtp_and_msrp(daemon: Daemon, tmp_path: Path, peers: UeMedia,
                                  cema: bool) -> None:
    cert, fp = ue_certificate(tmp_path)
    ue_keys, core_keys = orig_keys(peers, fp, xm=REQ + (CEMA if cema else ""))
    with orig_pair(daemon, tmp_path, ue_keys=ue_keys, core_keys=core_keys) as pair:
        inv = wait_traced(pair.core, received("INVITE"), "INVITE at the core")
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 to the INVITE at the UE")
        core_sdp, ue_sdp = sdp_of(inv), sdp_of(ok)
        # RTP: the UE's answer carries exactly one crypto line: the selected tag, its suite, a new
        # key, no lifetime (also checked by the scenario)
        (k12,) = cryptos(ue_sdp)
        assert (k12.tag, k12.suite) == (1, SUITE80)
        assert k12.key.lifetime is None and k12.key.mki_value is None
        k12_b64 = media(ue_sdp, "audio").attr("crypto").split("inline:", 1)[1]  # type: ignore[union-attr]
        assert k12_b64 not in (peers.k1, peers.k2)
        exchange_srtp(
            ue=peers.rtp, ue_tx_key=peers.k1, ue_rx_key=k12_b64, suite=SUITE80,
            agw_access=addr(ue_sdp, "audio"), core=peers.core_rtp,
            agw_core=addr(core_sdp, "audio"),
        )
        # MSRP
        core_m = media(core_sdp, "message")
        ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
        core_path = f"msrp://{HOST}:{peers.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
        assert (core_m.attr("path") == ue_path) is cema
        msrp_roundtrip(cert, ue_sdp, peers.core_msrp, cema=cema, ue_path=ue_path,
                       core_offer_path=(core_path, core_m.attr("path") or ""))
        pair.finish()
    assert_released(daemon)


# ------------------------------------------------------------------------------------ terminating


def term_keys(
    p: UeMedia, fp: str, *, cema: bool = True, aproto: str = "RTP/AVP",
    mproto: str = "TCP/MSRP", rtp_mode: str = "e2ae", msrp_mode: str = "e2ae",
    core_msrp_mode: str | None = None, sc: str = BOTH, xa_core: str = "", xm_core: str = "",
    bye_core: str = "send", bye_ue: str = "recv", ue_msrp_port: int = 41010,
    ue_mscheme: str = "msrps",
) -> tuple[dict[str, str], dict[str, str]]:
    c = CEMA if cema else ""
    core = {
        "rtp_port": str(p.core_rtp.getsockname()[1]),
        "msrp_port": str(p.core_msrp.getsockname()[1]),
        "aproto": aproto, "mproto": mproto,
        "mscheme": "msrps" if "TLS" in mproto else "msrp", "msetup": "passive",
        "xa": xa_core, "xm": xm_core + c,
        "ue_rtp_port": str(p.rtp.getsockname()[1]), "ue_msrp_port": str(ue_msrp_port),
        "ue_fp": fp, "agw_ip": HOST, "rtp_mode": rtp_mode,
        "msrp_mode": core_msrp_mode or msrp_mode, "bye": bye_core, "hold": str(HOLD_MS),
    }
    ue = {
        "sc": sc, "k1": p.k1, "rtp_port": core["ue_rtp_port"], "msrp_port": str(ue_msrp_port),
        "fp": fp, "mscheme": ue_mscheme, "xa": "", "xm": c,
        "core_rtp_port": core["rtp_port"], "core_msrp_port": core["msrp_port"],
        "rtp_mode": rtp_mode, "msrp_mode": msrp_mode, "bye": bye_ue, "hold": str(HOLD_MS),
    }
    return ue, core


def term_pair(d: Daemon, tmp_path: Path, ue_keys: dict[str, str], core_keys: dict[str, str],
              **kw: Any) -> Any:
    return orig_pair(d, tmp_path, ue_keys=ue_keys, core_keys=core_keys,
                     ue_scenario="ue_e2ae_term.xml", core_scenario="scscf_e2ae_term.xml", **kw)


def k21_of(ue_offer: Any) -> str:
    lines = [v for v in media(ue_offer, "audio").attrs("crypto") if v.startswith("1 ")]
    assert lines, ue_offer
    return lines[0].split("inline:", 1)[1]


@pytest.mark.parametrize("cema", [True, False], ids=["cema", "non-cema"])
def test_terminating_rtp_and_msrp(daemon: Daemon, tmp_path: Path, peers: UeMedia,
                                  cema: bool) -> None:
    cert, fp = ue_certificate(tmp_path)
    ue_keys, core_keys = term_keys(peers, fp, cema=cema)
    with term_pair(daemon, tmp_path, ue_keys, core_keys) as pair:
        inv = wait_traced(pair.ue, received("INVITE"), "INVITE at the UE")
        ok = wait_traced(pair.core, received(200, "INVITE"), "200 to the INVITE at the core")
        ue_sdp, core_sdp = sdp_of(inv), sdp_of(ok)
        # the offer to the UE: SAVP, one or more crypto lines (K21), a=3ge2ae:applied
        assert media(ue_sdp, "audio").proto == "RTP/SAVP"
        assert media(ue_sdp, "audio").attrs("3ge2ae") == ["applied"]
        offered = cryptos(ue_sdp)
        assert offered and offered[0].suite == SUITE80
        assert all(c.key.lifetime is None for c in offered)
        k21 = k21_of(ue_sdp)
        assert k21 != peers.k1
        exchange_srtp(
            ue=peers.rtp, ue_tx_key=peers.k1, ue_rx_key=k21, suite=SUITE80,
            agw_access=addr(ue_sdp, "audio"), core=peers.core_rtp,
            agw_core=addr(core_sdp, "audio"),
        )
        ue_m = media(ue_sdp, "message")
        assert ue_m.attrs("3ge2ae") == ["applied"]
        ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
        core_path = f"msrp://{HOST}:{peers.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
        core_m = media(core_sdp, "message")
        assert (core_m.attr("path") == ue_path) is cema
        msrp_roundtrip(cert, ue_sdp, peers.core_msrp, cema=cema, ue_path=ue_path,
                       core_offer_path=(core_path, core_m.attr("path") or ""))
        pair.finish()
    assert_released(daemon)


# ------------------------------------------------------------------------- wrong UE certificate


def _tls_must_fail(cert: Any, to: tuple[str, int], agw_fp: str) -> None:
    """The UE presents a certificate that is not the one it signalled: the gateway aborts the
    handshake (with TLS 1.3 the client may finish first and see the alert on its first read)."""
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # noqa: PT012
        tls = ue_tls_connect(cert, to, agw_fp)
        with tls:
            tls.sendall(msrp_send("zz9Qk3Tx", "msrp://x/y;tcp", "msrp://x/z;tcp", b"x"))
            tls.settimeout(3)
            if not tls.recv(100):
                raise ConnectionError("closed by the gateway")


@pytest.mark.parametrize("direction", ["originating", "terminating"])
def test_wrong_certificate_fails_handshake_and_call_is_torn_down(
    daemon: Daemon, tmp_path: Path, peers: UeMedia, direction: str
) -> None:
    _, fp = ue_certificate(tmp_path, "signalled")
    wrong, wrong_fp = ue_certificate(tmp_path, "presented")
    assert wrong_fp != fp
    if direction == "originating":
        ue_keys, core_keys = orig_keys(peers, fp, bye_ue="recv")
        ctx = orig_pair(daemon, tmp_path, ue_keys=ue_keys, core_keys=core_keys)
    else:
        ue_keys, core_keys = term_keys(peers, fp, bye_core="recv", bye_ue="recv")
        ctx = term_pair(daemon, tmp_path, ue_keys, core_keys)
    with ctx as pair:
        if direction == "originating":
            ue_sdp = sdp_of(wait_traced(pair.ue, received(200, "INVITE"), "200 at the UE"))
        else:
            ue_sdp = sdp_of(wait_traced(pair.ue, received("INVITE"), "INVITE at the UE"))
            wait_traced(pair.core, received(200, "INVITE"), "200 at the core")
        m = media(ue_sdp, "message")
        agw_fp = (m.attr("fingerprint") or "").split(" ", 1)[1]
        _tls_must_fail(wrong, addr(ue_sdp, "message"), agw_fp)
        # the P-CSCF sends BYE both ways; both scenarios expect it and answer 200
        wait_traced(pair.ue, received("BYE"), "BYE from the P-CSCF at the UE")
        wait_traced(pair.core, received("BYE"), "BYE from the P-CSCF at the core")
        pair.finish()
        # and the core peer never got a connection for a stream whose UE failed authentication
        peers.core_msrp.settimeout(0.2)
        with pytest.raises(TimeoutError):
            peers.core_msrp.accept()
    assert_released(daemon)
    assert daemon.stats()["calls"]["teardown_bye"] >= 2
