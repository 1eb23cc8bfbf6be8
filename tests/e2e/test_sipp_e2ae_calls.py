"""Issue 6 "Calls end to end", deliverable 5: the daemon driven by SIPp on both sides, with
Python media peers (SRTP/RTP over UDP, MSRP over TLS towards the UE and TCP towards the core).

Each test runs one SIPp scenario pair from scenarios/ (the scenarios check the SDP they receive
with <ereg check_it>; a failed check makes SIPp exit 1), reads the SDP each side received from
SIPp's message trace while SIPp holds the call, exchanges media through the gateway, and ends
with the daemon holding no gateway port and no call.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon import Daemon
from tests.e2e.sipp_e2ae import (
    HOST,
    SUITE80,
    UeMedia,
    addr,
    answered_k12,
    assert_released,
    cryptos,
    exchange_plain_rtp,
    exchange_srtp,
    media,
    msrp_ok,
    msrp_send,
    new_key,
    read_msrp,
    received,
    sdp_of,
    sipp_pair,
    ue_certificate,
    ue_tls_connect,
    wait_traced,
)

REQ = "\r\na=3ge2ae:requested"
CEMA = "\r\na=msrp-cema"
BOTH = "sdes-srtp;mediasec, msrp-tls;mediasec"
HOLD_MS = 2500


def orig_keys(
    p: UeMedia,
    fp: str,
    *,
    xa: str = REQ,
    xm: str = REQ + CEMA,
    rtp_mode: str = "e2ae",
    msrp_mode: str = "e2ae",
    bye_ue: str = "send",
    sc: str = BOTH,
    ue_msrp_port: int = 41010,
) -> tuple[dict[str, str], dict[str, str]]:
    ue = {
        "sc": sc,
        "k1": p.k1,
        "k2": p.k2,
        "rtp_port": str(p.rtp.getsockname()[1]),
        "msrp_port": str(ue_msrp_port),
        "fp": fp,
        "xa": xa,
        "xm": xm,
        "sel": f"1 {SUITE80}",
        "rtp_mode": rtp_mode,
        "msrp_mode": msrp_mode,
        "bye": bye_ue,
        "hold": str(HOLD_MS),
    }
    cema = CEMA if CEMA in xm else ""
    core = {
        "rtp_port": str(p.core_rtp.getsockname()[1]),
        "msrp_port": str(p.core_msrp.getsockname()[1]),
        "ue_rtp_port": ue["rtp_port"],
        "ue_msrp_port": str(ue_msrp_port),
        "agw_ip": HOST,
        "rtp_mode": rtp_mode,
        "msrp_mode": msrp_mode,
        "mscheme": "msrp" if msrp_mode == "e2ae" else "msrps",
        "xa": "",
        "xm": cema,
        "bye": "recv" if bye_ue == "send" else "send",
        "hold": str(HOLD_MS),
    }
    if bye_ue == "recv":
        core["bye"] = "recv"
    return ue, core


def msrp_roundtrip(
    ue_cert: Any,
    ue_ans: Any,
    core_listener: socket.socket,
    *,
    cema: bool,
    ue_path: str,
    core_offer_path: tuple[str, str],
    wrap_core: Callable[[socket.socket], socket.socket] | None = None,
) -> None:
    """UE (TLS client) -> gateway -> core (TCP, or TLS with `wrap_core`): SEND, and its 200
    back. `core_offer_path`: (the core's own path, the path it was given for the UE)."""
    m = media(ue_ans, "message")
    agw_fp = (m.attr("fingerprint") or "").split(" ", 1)[1]
    to_path = m.attr("path")
    assert to_path is not None
    tls = ue_tls_connect(ue_cert, addr(ue_ans, "message"), agw_fp)
    with tls:
        tls.sendall(msrp_send("tx7Kq2aP", to_path, ue_path, b"hello core"))
        conn, _ = core_listener.accept()
        conn.settimeout(3)
        if wrap_core is not None:
            conn = wrap_core(conn)
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
def test_originating_rtp_and_msrp(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia, cema: bool
) -> None:
    cert, fp = ue_certificate(tmp_path)
    ue_keys, core_keys = orig_keys(ue_media, fp, xm=REQ + (CEMA if cema else ""))
    with sipp_pair(daemon, tmp_path, ue_keys=ue_keys, core_keys=core_keys) as pair:
        inv = wait_traced(pair.core, received("INVITE"), "INVITE at the core")
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 to the INVITE at the UE")
        core_sdp, ue_sdp = sdp_of(inv), sdp_of(ok)
        # RTP: the UE's answer carries exactly one crypto line: the selected tag, its suite, a new
        # key, no lifetime (also checked by the scenario)
        k12_b64 = answered_k12(ue_sdp, (ue_media.k1, ue_media.k2))
        exchange_srtp(
            ue=ue_media.rtp,
            ue_tx_key=ue_media.k1,
            ue_rx_key=k12_b64,
            suite=SUITE80,
            agw_access=addr(ue_sdp, "audio"),
            core=ue_media.core_rtp,
            agw_core=addr(core_sdp, "audio"),
        )
        # MSRP
        core_m = media(core_sdp, "message")
        ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
        core_path = f"msrp://{HOST}:{ue_media.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
        assert (core_m.attr("path") == ue_path) is cema
        msrp_roundtrip(
            cert,
            ue_sdp,
            ue_media.core_msrp,
            cema=cema,
            ue_path=ue_path,
            core_offer_path=(core_path, core_m.attr("path") or ""),
        )
        pair.finish()
    assert_released(daemon)


# ------------------------------------------------------------------------------------ terminating


def term_keys(
    p: UeMedia,
    fp: str,
    *,
    cema: bool = True,
    aproto: str = "RTP/AVP",
    mproto: str = "TCP/MSRP",
    rtp_mode: str = "e2ae",
    msrp_mode: str = "e2ae",
    core_msrp_mode: str | None = None,
    sc: str = BOTH,
    xa_core: str = "",
    xm_core: str = "",
    bye_core: str = "send",
    bye_ue: str = "recv",
    ue_msrp_port: int = 41010,
    ue_mscheme: str = "msrps",
) -> tuple[dict[str, str], dict[str, str]]:
    c = CEMA if cema else ""
    core = {
        "rtp_port": str(p.core_rtp.getsockname()[1]),
        "msrp_port": str(p.core_msrp.getsockname()[1]),
        "aproto": aproto,
        "mproto": mproto,
        "mscheme": "msrps" if "TLS" in mproto else "msrp",
        "msetup": "passive",
        "xa": xa_core,
        "xm": xm_core + c,
        "ue_rtp_port": str(p.rtp.getsockname()[1]),
        "ue_msrp_port": str(ue_msrp_port),
        "ue_fp": fp,
        "agw_ip": HOST,
        "rtp_mode": rtp_mode,
        "msrp_mode": core_msrp_mode or msrp_mode,
        "bye": bye_core,
        "hold": str(HOLD_MS),
    }
    ue = {
        "sc": sc,
        "k1": p.k1,
        "rtp_port": core["ue_rtp_port"],
        "msrp_port": str(ue_msrp_port),
        "fp": fp,
        "mscheme": ue_mscheme,
        "xa": "",
        "xm": c,
        "core_rtp_port": core["rtp_port"],
        "core_msrp_port": core["msrp_port"],
        "rtp_mode": rtp_mode,
        "msrp_mode": msrp_mode,
        "bye": bye_ue,
        "hold": str(HOLD_MS),
    }
    return ue, core


def term_pair(
    d: Daemon, tmp_path: Path, ue_keys: dict[str, str], core_keys: dict[str, str], **kw: Any
) -> Any:
    return sipp_pair(
        d,
        tmp_path,
        ue_keys=ue_keys,
        core_keys=core_keys,
        ue_scenario="ue_e2ae_term.xml",
        core_scenario="scscf_e2ae_term.xml",
        **kw,
    )


def k21_of(ue_offer: Any) -> str:
    lines = [v for v in media(ue_offer, "audio").attrs("crypto") if v.startswith("1 ")]
    assert lines, ue_offer
    return lines[0].split("inline:", 1)[1]


@pytest.mark.parametrize("cema", [True, False], ids=["cema", "non-cema"])
def test_terminating_rtp_and_msrp(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia, cema: bool
) -> None:
    cert, fp = ue_certificate(tmp_path)
    ue_keys, core_keys = term_keys(ue_media, fp, cema=cema)
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
        assert k21 != ue_media.k1
        exchange_srtp(
            ue=ue_media.rtp,
            ue_tx_key=ue_media.k1,
            ue_rx_key=k21,
            suite=SUITE80,
            agw_access=addr(ue_sdp, "audio"),
            core=ue_media.core_rtp,
            agw_core=addr(core_sdp, "audio"),
        )
        ue_m = media(ue_sdp, "message")
        assert ue_m.attrs("3ge2ae") == ["applied"]
        ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
        core_path = f"msrp://{HOST}:{ue_media.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
        core_m = media(core_sdp, "message")
        assert (core_m.attr("path") == ue_path) is cema
        msrp_roundtrip(
            cert,
            ue_sdp,
            ue_media.core_msrp,
            cema=cema,
            ue_path=ue_path,
            core_offer_path=(core_path, core_m.attr("path") or ""),
        )
        pair.finish()
    assert_released(daemon)


# ------------------------------------------------------------------------- wrong UE certificate


def _tls_must_fail(cert: Any, to: tuple[str, int], agw_fp: str) -> None:
    """The UE presents a certificate that is not the one it signalled: the gateway aborts the
    handshake (with TLS 1.3 the client may finish first and see the alert on its first read)."""
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls = ue_tls_connect(cert, to, agw_fp)
        with tls:
            tls.sendall(msrp_send("zz9Qk3Tx", "msrp://x/y;tcp", "msrp://x/z;tcp", b"x"))
            tls.settimeout(3)
            if not tls.recv(100):
                raise ConnectionError("closed by the gateway")


@pytest.mark.parametrize("direction", ["originating", "terminating"])
def test_wrong_certificate_fails_handshake_and_call_is_torn_down(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia, direction: str
) -> None:
    _, fp = ue_certificate(tmp_path, "signalled")
    wrong, wrong_fp = ue_certificate(tmp_path, "presented")
    assert wrong_fp != fp
    if direction == "originating":
        ue_keys, core_keys = orig_keys(ue_media, fp, bye_ue="recv")
        ctx = sipp_pair(daemon, tmp_path, ue_keys=ue_keys, core_keys=core_keys)
    else:
        ue_keys, core_keys = term_keys(ue_media, fp, bye_core="recv", bye_ue="recv")
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
        # the P-CSCF sends BYE both ways; both scenarios expect it and answer 200. The call
        # ends on the stream's deadline (10 s after the answer), not on the failed handshake
        # alone, which anyone could cause (issue 11).
        wait_traced(pair.ue, received("BYE"), "BYE from the P-CSCF at the UE", timeout=20)
        wait_traced(pair.core, received("BYE"), "BYE from the P-CSCF at the core")
        pair.finish()
        # and the core peer never got a connection for a stream whose UE failed authentication
        ue_media.core_msrp.settimeout(0.2)
        with pytest.raises(TimeoutError):
            ue_media.core_msrp.accept()
    assert_released(daemon)
    assert daemon.stats()["calls"]["teardown_bye"] >= 2


# ------------------------------------------------------------------------------------ error case


def test_e2ae_requested_without_registered_support_gets_488(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    with sipp_pair(
        daemon,
        tmp_path,
        ue_scenario="ue_e2ae_rejected.xml",
        core_scenario="registrar_e2ae.xml",
        ue_keys={
            "sc": "msrp-tls;mediasec",
            "k1": ue_media.k1,
            "rtp_port": str(ue_media.rtp.getsockname()[1]),
        },
        core_keys={"linger": "1500"},
    ) as pair:
        pair.finish()
    st = daemon.stats()
    assert st["calls"]["rejected_488"] == 1, st
    assert st["agw_ports"] == 0 and st["dialogs"] == 0, st


# ------------------------------------------------------------------------- policy by config only

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def policy_file(name: str) -> dict[str, Any]:
    """The `policy:` section of config/policy-<name>.yaml, exactly as shipped."""
    data = yaml.safe_load((CONFIG_DIR / f"policy-{name}.yaml").read_text())
    return dict(data["policy"])


def start_daemon(factory: Any, policy: str | None) -> Daemon:
    return factory() if policy is None else factory(policy=policy_file(policy))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("policy", "msrp_mode"),
    [(None, "pass"), ("rcs51", "e2ae")],
    ids=["strict-pass", "rcs51-terminate"],
)
def test_policy_originating_msrp_tls_without_indication(
    daemon_factory: Any, tmp_path: Path, ue_media: UeMedia, policy: str | None, msrp_mode: str
) -> None:
    """7.2.1 step 2 / NOTE x: TCP/TLS/MSRP with a fingerprint but no a=3ge2ae:requested is
    passed end to end (strict 3GPP) or terminated at the gateway (RCS 5.1), by config alone."""
    d = start_daemon(daemon_factory, policy)
    cert, fp = ue_certificate(tmp_path)
    _, core_fp = ue_certificate(tmp_path, "far-end")
    ue_keys, core_keys = orig_keys(ue_media, fp, xm=CEMA, msrp_mode=msrp_mode)
    if msrp_mode == "pass":
        core_keys["xm"] = f"\r\na=fingerprint:sha-256 {core_fp}" + CEMA
    with sipp_pair(d, tmp_path, ue_keys=ue_keys, core_keys=core_keys) as pair:
        core_sdp = sdp_of(wait_traced(pair.core, received("INVITE"), "INVITE at the core"))
        ue_sdp = sdp_of(wait_traced(pair.ue, received(200, "INVITE"), "200 at the UE"))
        core_m, ue_m = media(core_sdp, "message"), media(ue_sdp, "message")
        if msrp_mode == "pass":
            # end to end: the far end sees the UE's own fingerprint and address, and vice versa
            assert core_m.attr("fingerprint") == f"sha-256 {fp}"
            assert addr(core_sdp, "message") == (HOST, 41010)
            assert ue_m.attr("fingerprint") == f"sha-256 {core_fp}"
            assert addr(ue_sdp, "message") == (HOST, ue_media.core_msrp.getsockname()[1])
        else:
            assert core_m.proto == "TCP/MSRP" and core_m.attr("fingerprint") is None
            ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
            core_path = f"msrp://{HOST}:{ue_media.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
            msrp_roundtrip(
                cert,
                ue_sdp,
                ue_media.core_msrp,
                cema=True,
                ue_path=ue_path,
                core_offer_path=(core_path, ue_path),
            )
        # the audio stream asked for e2ae in both cases
        assert media(core_sdp, "audio").proto == "RTP/AVP"
        pair.finish()
    assert_released(d)


@pytest.mark.parametrize(
    ("policy", "msrp_mode"),
    [(None, "pass"), ("rcs51", "e2ae")],
    ids=["strict-none", "rcs51-terminate"],
)
def test_policy_terminating_msrp_for_ue_without_msrp_tls_registration(
    daemon_factory: Any, tmp_path: Path, ue_media: UeMedia, policy: str | None, msrp_mode: str
) -> None:
    """7.3.1 step 3 / NOTE x: TCP/MSRP from the core towards a UE that registered only
    sdes-srtp;mediasec: no media security (strict) or TLS towards the UE anyway (RCS 5.1)."""
    d = start_daemon(daemon_factory, policy)
    cert, fp = ue_certificate(tmp_path)
    ue_keys, core_keys = term_keys(
        ue_media,
        fp,
        sc="sdes-srtp;mediasec",
        msrp_mode=msrp_mode,
        ue_mscheme="msrps" if msrp_mode == "e2ae" else "msrp",
    )
    with term_pair(d, tmp_path, ue_keys, core_keys) as pair:
        ue_sdp = sdp_of(wait_traced(pair.ue, received("INVITE"), "INVITE at the UE"))
        wait_traced(pair.core, received(200, "INVITE"), "200 at the core")
        ue_m = media(ue_sdp, "message")
        if msrp_mode == "pass":
            assert ue_m.proto == "TCP/MSRP" and ue_m.attr("fingerprint") is None
            assert ue_m.attrs("3ge2ae") == []
        else:
            assert ue_m.proto == "TCP/TLS/MSRP" and ue_m.attrs("3ge2ae") == ["applied"]
            ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
            core_path = f"msrp://{HOST}:{ue_media.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
            msrp_roundtrip(
                cert,
                ue_sdp,
                ue_media.core_msrp,
                cema=True,
                ue_path=ue_path,
                core_offer_path=(core_path, ue_path),
            )
        # RTP support was registered: e2ae in both cases
        assert media(ue_sdp, "audio").attrs("3ge2ae") == ["applied"]
        pair.finish()
    assert_released(d)


@pytest.mark.parametrize(
    ("policy", "core_mode"),
    [(None, "pass"), ("lawful-intercept", "li")],
    ids=["strict-pass", "li-terminate"],
)
def test_policy_tls_from_the_core_passed_or_terminated(
    daemon_factory: Any, tmp_path: Path, ue_media: UeMedia, policy: str | None, core_mode: str
) -> None:
    """7.3.1 step 3: TCP/TLS/MSRP offered by the core stays end to end (7.3.3), or, by policy
    (lawful interception), TLS is terminated at the gateway on both legs."""
    d = start_daemon(daemon_factory, policy)
    cert, fp = ue_certificate(tmp_path)
    core_cert, core_fp = ue_certificate(tmp_path, "far-end")
    msrp_mode = "pass" if core_mode == "pass" else "e2ae"
    ue_keys, core_keys = term_keys(
        ue_media,
        fp,
        mproto="TCP/TLS/MSRP",
        msrp_mode=msrp_mode,
        core_msrp_mode=core_mode,
        xm_core=f"\r\na=fingerprint:sha-256 {core_fp}",
    )
    with term_pair(d, tmp_path, ue_keys, core_keys) as pair:
        ue_sdp = sdp_of(wait_traced(pair.ue, received("INVITE"), "INVITE at the UE"))
        core_sdp = sdp_of(wait_traced(pair.core, received(200, "INVITE"), "200 at the core"))
        ue_m, core_m = media(ue_sdp, "message"), media(core_sdp, "message")
        if core_mode == "pass":
            assert ue_m.attr("fingerprint") == f"sha-256 {core_fp}"
            assert core_m.attr("fingerprint") == f"sha-256 {fp}"
            assert ue_m.attrs("3ge2ae") == []
        else:
            agw_fp = (ue_m.attr("fingerprint") or "").split(" ", 1)[1]
            assert core_m.attr("fingerprint") == f"sha-256 {agw_fp}"  # the gateway's, both legs
            assert ue_m.attrs("3ge2ae") == ["applied"]
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(core_cert.cert_path, core_cert.key_path)

            def tls_server(conn: socket.socket) -> socket.socket:
                s = sctx.wrap_socket(conn, server_side=True)
                return s

            ue_path = f"msrps://{HOST}:41010/ue{pair.ue.pid};tcp"
            core_path = f"msrps://{HOST}:{ue_media.core_msrp.getsockname()[1]}/core{pair.core.pid};tcp"
            msrp_roundtrip(
                cert,
                ue_sdp,
                ue_media.core_msrp,
                cema=True,
                ue_path=ue_path,
                core_offer_path=(core_path, ue_path),
                wrap_core=tls_server,
            )
        pair.finish()
    assert_released(d)


def test_pass_through_without_indications_anchors_nothing(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    """7.2.1 step 2 (7.2.2/7.2.3): RTP/SAVP and TCP/TLS/MSRP without a=3ge2ae:requested are end
    to end: crypto lines and fingerprint reach the core untouched, no gateway port is used."""
    _, fp = ue_certificate(tmp_path)
    _, core_fp = ue_certificate(tmp_path, "far-end")
    kc = new_key()
    ue_keys, core_keys = orig_keys(ue_media, fp, xa="", xm=CEMA, rtp_mode="pass", msrp_mode="pass")
    core_keys["xa"] = f"\r\na=crypto:1 {SUITE80} inline:{kc}"
    core_keys["xm"] = f"\r\na=fingerprint:sha-256 {core_fp}" + CEMA
    with sipp_pair(daemon, tmp_path, ue_keys=ue_keys, core_keys=core_keys) as pair:
        core_sdp = sdp_of(wait_traced(pair.core, received("INVITE"), "INVITE at the core"))
        ue_sdp = sdp_of(wait_traced(pair.ue, received(200, "INVITE"), "200 at the UE"))
        assert media(core_sdp, "audio").attrs("crypto") == [
            f"1 {SUITE80} inline:{ue_media.k1}",
            f"2 AES_CM_128_HMAC_SHA1_32 inline:{ue_media.k2}",
        ]
        assert media(ue_sdp, "audio").attrs("crypto") == [f"1 {SUITE80} inline:{kc}"]
        assert addr(ue_sdp, "audio") == (HOST, ue_media.core_rtp.getsockname()[1])
        st = daemon.stats()
        assert st["agw_ports"] == 0 and st["dialogs"] == 1, st
        # SRTP flows peer to peer, untouched
        exchange_plain_rtp(
            ue_media.rtp, addr(ue_sdp, "audio"), ue_media.core_rtp, addr(core_sdp, "audio")
        )
        pair.finish()
    assert_released(daemon)


# --------------------------------------------------------------- the scenario checks do bite


def test_scenario_check_failure_is_reported(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    """A wrong expectation (the UE expects tag 2 / the 32-bit suite to be selected) fails the UE
    scenario: the <ereg check_it> checks are live, not decoration."""
    _, fp = ue_certificate(tmp_path)
    ue_keys, core_keys = orig_keys(ue_media, fp, bye_ue="recv")
    core_keys["bye"] = "send"  # the far end ends the call, whatever the UE's SIPp did
    ue_keys["sel"] = "2 AES_CM_128_HMAC_SHA1_32"
    with sipp_pair(daemon, tmp_path, ue_keys=ue_keys, core_keys=core_keys, timeout=8) as pair:
        res = pair.ue.wait()
        assert not res.ok, res.dump()
        assert "Failed regexp match" in res.errors(), res.dump()
        assert "e2ae|2 AES_CM_128_HMAC_SHA1_32|1 AES_CM_128_HMAC_SHA1_80 inline:" in res.errors()
        pair.core.wait()
    assert_released(daemon)
