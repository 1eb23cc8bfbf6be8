"""Registration end to end (issue 3): SIPp UE with mediasec, SIPp registrar behind the core side,
the real daemon in between; bindings read back from the admin endpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.calls_helpers import audio_offer, invite, register
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer
from tests.sipp import SippAgent, run_pair, scenario_keys

SC = {
    "both": "sdes-srtp;mediasec, msrp-tls;mediasec",
    "rtp": "sdes-srtp;mediasec",
    "msrp": "msrp-tls;mediasec",
    # a UE with only signalling security: no mediasec entry at all
    "neither": "ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1111;spi-s=2222;port-c=5062;port-s=5064",
}


def _register_with_sipp(
    d: Daemon, tmp_path: Path, sc: str, sschk: str, transport: str = "u1", mismatch: bool = False
) -> Any:
    reg = SippAgent(
        "registrar_mediasec.xml",
        role="uas",
        local_port=d.next_hop_port,
        transport=transport,  # type: ignore[arg-type]
        keys=scenario_keys("registrar_mediasec.xml", "proxy", once="1" if mismatch else "0"),
        timeout=20,
    )
    name = "ue_register_verify_mismatch.xml" if mismatch else "ue_register_mediasec.xml"
    ue = SippAgent(
        name,
        role="uac",
        remote=f"127.0.0.1:{d.next_hop_port}",
        rsa=f"127.0.0.1:{d.access_port}",
        transport=transport,  # type: ignore[arg-type]
        service="alice",
        keys=scenario_keys(name, "proxy", sc=sc, sschk=sschk),
        timeout=20,
    )
    return run_pair(reg, ue, tmp_path)


EXPECTED = {
    # UE indication -> (ue_rtp, ue_msrp)
    "both": (True, True),
    "rtp": (True, False),
    "msrp": (False, True),
    "neither": (False, False),
}


@pytest.mark.parametrize("ue", ["both", "rtp", "msrp", "neither"])
@pytest.mark.parametrize("net", ["both", "rtp-off"])
def test_binding_flags_for_each_combination(
    daemon_factory: Any, tmp_path: Path, ue: str, net: str
) -> None:
    e2ae = {"rtp": net != "rtp-off", "msrp": True}
    d: Daemon = daemon_factory(e2ae=e2ae)
    sschk = "both" if net == "both" else "msrp"
    res = _register_with_sipp(d, tmp_path, SC[ue], sschk)
    assert res.ok, res.dump()
    regs = d.registrations()
    assert len(regs) == 1, regs
    b = regs[0]
    ue_rtp, ue_msrp = EXPECTED[ue]
    assert (b["ue_rtp"], b["ue_msrp"]) == (ue_rtp, ue_msrp), b
    assert (b["net_rtp"], b["net_msrp"]) == (e2ae["rtp"], e2ae["msrp"]), b
    # established = both sides indicated it (TS 33.328 7.2.1 step 2 / 7.3.1 step 3)
    assert b["rtp"] == (ue_rtp and e2ae["rtp"])
    assert b["msrp"] == (ue_msrp and e2ae["msrp"])
    assert b["service_route"], b
    assert b["path"] and ";lr" in b["path"][0]


def test_register_over_tcp(daemon_factory: Any, tmp_path: Path) -> None:
    d: Daemon = daemon_factory(tcp_next_hop=True)
    res = _register_with_sipp(d, tmp_path, SC["both"], "both", transport="t1")
    assert res.ok, res.dump()
    (b,) = d.registrations()
    assert b["flow"].startswith("tcp:") and b["rtp"] and b["msrp"]


def test_mismatched_security_verify_gets_494(daemon: Daemon, tmp_path: Path) -> None:
    res = _register_with_sipp(daemon, tmp_path, SC["both"], "both", mismatch=True)
    assert res.ok, res.dump()
    assert daemon.registrations() == []


def test_other_mediasec_mechanisms_are_kept_but_not_acted_on(daemon: Daemon) -> None:
    with UdpPeer() as ue, UdpPeer(daemon.next_hop_port) as core:
        register(daemon, ue, core, sec_client="dtls-srtp;mediasec, bfcp-tls;mediasec")
        (b,) = daemon.registrations()
        assert b["other_mediasec"] == ["dtls-srtp", "bfcp-tls"]
        assert not (b["ue_rtp"] or b["ue_msrp"])


def test_deregistration_removes_the_binding(daemon: Daemon) -> None:
    with UdpPeer() as ue, UdpPeer(daemon.next_hop_port) as core:
        register(daemon, ue, core)
        assert len(daemon.registrations()) == 1
        register(daemon, ue, core, expires=0)
        assert daemon.registrations() == []


def test_expiry_removes_the_binding(daemon: Daemon) -> None:
    with UdpPeer() as ue, UdpPeer(daemon.next_hop_port) as core:
        register(daemon, ue, core, expires=1)
        assert len(daemon.registrations()) == 1
        deadline = time.monotonic() + 10
        while daemon.registrations() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert daemon.registrations() == []


def test_reregistration_latest_flags_win(daemon: Daemon) -> None:
    with UdpPeer() as ue, UdpPeer(daemon.next_hop_port) as core:
        register(daemon, ue, core, sec_client=SC["both"])
        assert daemon.registrations()[0]["rtp"] is True
        register(daemon, ue, core, sec_client=SC["msrp"])
        (b,) = daemon.registrations()
        assert (b["ue_rtp"], b["ue_msrp"]) == (False, True)


def test_invite_from_unregistered_flow_gets_403(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(registration={"require_for_originating": True})
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        invite(ue, d, audio_offer(40010, proto="RTP/AVP", e2ae=None), "unreg-1")
        resp = ue.expect(403)
        assert "not registered" in (resp.headers.get("warning") or "")
        # registered from this flow: the INVITE goes through, with P-Asserted-Identity
        register(d, ue, core)
        invite(ue, d, audio_offer(40010, proto="RTP/AVP", e2ae=None), "unreg-2")
        inv = core.expect("INVITE")
        assert inv.headers.get("p-asserted-identity") == "<sip:alice@ims.test>"
        assert inv.headers.get("p-preferred-identity") is None
