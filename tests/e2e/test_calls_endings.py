"""Every ending releases everything (issue 6 §3): transaction timeout, media timeout (the gateway's
event makes the P-CSCF send BYE both ways), and the UE's registration ending mid-call."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.calls_helpers import audio_offer, in_dialog, invite, register
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer

PLAIN = """v=0
o=- 2 2 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40990 RTP/AVP 96
a=rtpmap:96 AMR-WB/16000/1
a=sendrecv
"""


def released(d: Daemon) -> dict[str, Any]:
    return d.wait_stats(lambda s: s["agw_ports"] == 0 and s["dialogs"] == 0, timeout=15)


def confirmed_call(d: Daemon, ue: UdpPeer, core: UdpPeer, call_id: str) -> None:
    invite(ue, d, audio_offer(40980), call_id)
    inv = core.expect("INVITE")
    core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=PLAIN)
    ok = ue.expect(200)
    in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
    core.expect("ACK")
    assert d.stats()["agw_ports"] > 0


def expect_bye_both_ways(d: Daemon, ue: UdpPeer, core: UdpPeer, call_id: str) -> None:
    bye_ue = ue.expect("BYE", timeout=15)
    bye_core = core.expect("BYE", timeout=15)
    assert bye_ue.call_id == bye_core.call_id == call_id
    # each BYE is addressed as the other party would: within the dialog's tags
    assert "tag=b1" in (bye_ue.headers.get("from") or "")
    assert f"tag=a-{call_id}" in (bye_core.headers.get("from") or "")
    ue.reply(bye_ue, 200, "OK", d.access_port, to_tag="")
    core.reply(bye_core, 200, "OK", d.core_port, to_tag="")


def test_transaction_timeout_releases(daemon: Daemon) -> None:
    with UdpPeer() as ue, UdpPeer(daemon.next_hop_port) as core:
        register(daemon, ue, core)
        invite(ue, daemon, audio_offer(40970), "timeout-1")
        core.expect("INVITE")  # the core never answers: Timer B (6.4 s with t1=0.1)
        assert daemon.stats()["agw_ports"] > 0
        resp = ue.expect(408, timeout=15)
        assert resp.call_id == "timeout-1"
        st = released(daemon)
        assert (st["agw_ports"], st["dialogs"]) == (0, 0), st


def test_media_timeout_ends_the_call_with_bye_both_ways(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(agw={"media_timeout_s": 1.0})
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        confirmed_call(d, ue, core, "mto-1")
        expect_bye_both_ways(d, ue, core, "mto-1")  # no media at all for 1 s
        st = released(d)
        assert (st["agw_ports"], st["dialogs"]) == (0, 0), st


def test_registration_expiry_ends_its_calls(daemon: Daemon) -> None:
    with UdpPeer() as ue, UdpPeer(daemon.next_hop_port) as core:
        register(daemon, ue, core, expires=2)
        confirmed_call(daemon, ue, core, "regexp-1")
        regs = daemon.registrations()
        assert regs and regs[0]["calls"] == ["regexp-1"]
        expect_bye_both_ways(daemon, ue, core, "regexp-1")
        st = released(daemon)
        assert (st["agw_ports"], st["dialogs"]) == (0, 0), st
        assert daemon.registrations() == []


def test_unanchored_call_whose_bye_is_lost_is_swept(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(dialogs={"idle_timeout_s": 1.0})
    with UdpPeer() as ue, UdpPeer(d.next_hop_port) as core:
        register(d, ue, core)
        # a plain call: no gateway, so no media timeout would ever end it
        invite(ue, d, audio_offer(40960, proto="RTP/AVP", e2ae=None), "lost-bye-1")
        inv = core.expect("INVITE")
        core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=PLAIN)
        ok = ue.expect(200)
        in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
        assert d.stats()["dialogs"] == 1
        st = d.wait_stats(lambda s: s["dialogs"] == 0, timeout=10)  # ...and no BYE ever comes
        assert st["dialogs"] == 0
        # an anchored (e2ae) call is left to the gateway's media timeout, not to this sweep
        confirmed_call(d, ue, core, "anchored-1")
        time.sleep(2.0)
        assert d.stats()["dialogs"] == 1
