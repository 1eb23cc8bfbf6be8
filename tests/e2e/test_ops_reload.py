"""Live reload against the running daemon (issue 13): SIGHUP re-reads the config file.

A reload that switches TS 33.328 7.2.1 NOTE 2a (e2ae requested by a UE without registered e2ae
support) from reject to apply makes the next such offer succeed, while an e2ae call set up
before it keeps its media flowing through the gateway; a reload with an invalid file changes
nothing and logs the error with file, key and reason.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import yaml

from tests.e2e.calls_helpers import (
    MediaPeer,
    RtpPeers,
    audio_offer,
    e2ae_call,
    in_dialog,
    invite,
    register,
    ue_hangs_up,
)
from tests.e2e.daemon import Daemon
from tests.e2e.sipua import UdpPeer


def rewrite_config(d: Daemon, change: Callable[[dict[str, Any]], None] | str) -> None:
    """Write the daemon's config file again: `change` edits a copy of its config, or is the
    file's new text."""
    path = d.workdir / "pcscf.yaml"
    if isinstance(change, str):
        path.write_text(change)
        return
    cfg = yaml.safe_load(yaml.safe_dump(d.config))
    change(cfg)
    path.write_text(yaml.safe_dump(cfg))


def sighup_and_wait(d: Daemon, marker: str, timeout: float = 10.0) -> str:
    """SIGHUP the daemon; returns the log line containing `marker` that the reload wrote."""
    assert d.proc is not None
    before = d.log_path.read_text(errors="replace").count(marker)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [ln for ln in d.log_path.read_text(errors="replace").splitlines() if marker in ln]
        if len(lines) > before:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {marker!r} in the log {timeout}s after SIGHUP:\n{d.log()}")


def note_2a_offer(d: Daemon, ue: UdpPeer, media: MediaPeer, cid: str) -> None:
    # `ue` never registered: e2ae requested without established support (TS 33.328 NOTE 2a)
    invite(ue, d, audio_offer(media.port), cid)


def test_sighup_switches_note_2a_to_apply_while_an_e2ae_call_keeps_its_media(
    daemon_factory: Any, rtp_peers: RtpPeers
) -> None:
    d: Daemon = daemon_factory(policy={"e2ae_not_registered": "reject"})
    ue, core, carol = UdpPeer(), UdpPeer(d.next_hop_port), UdpPeer()
    carol_media, carol_core_media = MediaPeer.bind(), MediaPeer.bind()
    ue_media, core_media = rtp_peers
    try:
        register(d, ue, core)
        call = e2ae_call(d, ue, core, ue_media, core_media, "reload-established")
        call.media(ue_media, core_media, seq=1)

        note_2a_offer(d, carol, carol_media, "reload-note2a-1")
        refused = carol.expect(488)
        assert "NOTE 2a" in (refused.headers.get("warning") or ""), refused.serialize()

        rewrite_config(d, lambda c: c["policy"].update(e2ae_not_registered="apply"))
        line = sighup_and_wait(d, "config reloaded from")
        assert "applied: policy.e2ae_not_registered;" in line, line
        assert "needs a restart (left as it was): nothing" in line, line

        # The call set up before the reload: media still crosses the gateway both ways.
        call.media(ue_media, core_media)
        # The next NOTE 2a offer (carol never registered): e2ae applied (TS 33.328 NOTE 2a,
        # "apply" by local policy).
        second = e2ae_call(
            d, carol, core, carol_media, carol_core_media, "reload-note2a-2", to_tag="b2"
        )
        second.media(carol_media, carol_core_media, seq=1)
        call.media(ue_media, core_media, seq=20)

        in_dialog(carol, second.ok, "BYE", 2, d.access_port, uac=True)
        core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
        carol.expect(200)
        ue_hangs_up(d, ue, core, call.ok)
    finally:
        for p in (ue, core, carol):
            p.close()
        carol_media.close()
        carol_core_media.close()


def test_sighup_with_an_invalid_file_changes_nothing(
    daemon_factory: Any, rtp_peers: RtpPeers
) -> None:
    d: Daemon = daemon_factory(policy={"e2ae_not_registered": "reject"})
    ue, core, carol = UdpPeer(), UdpPeer(d.next_hop_port), UdpPeer()
    carol_media = MediaPeer.bind()
    ue_media, core_media = rtp_peers
    try:
        register(d, ue, core)
        call = e2ae_call(d, ue, core, ue_media, core_media, "reload-bad-established")
        held = d.stats()
        assert held["agw_ports"] > 0 and held["dialogs"] == 1, held

        def bad(c: dict[str, Any]) -> None:
            c["policy"]["e2ae_not_registered"] = "apply"  # valid, and must not apply either
            c["sip"]["t1"] = -1

        path = d.workdir / "pcscf.yaml"
        cases: list[tuple[Callable[[dict[str, Any]], None] | str, str, str]] = [
            (bad, "sip.t1", "must be between"),
            ("sip: [\n", "line 2", "invalid YAML"),
        ]
        for i, (change, key, reason) in enumerate(cases):
            rewrite_config(d, change)
            line = sighup_and_wait(d, "config reload failed")
            assert "ERROR" in line and "nothing changed" in line, line
            assert f"{path}: {key}" in line and reason in line, line
            assert d.alive()
            # the old policy: NOTE 2a still rejected, nothing reserved for it
            note_2a_offer(d, carol, carol_media, f"reload-bad-{i}")
            carol.expect(488)
        assert "config reloaded from" not in d.log()
        # the call goes on
        call.media(ue_media, core_media, seq=1)
        # the refused offers left nothing behind: the one call holds what it held
        st = d.stats()
        assert (st["agw_ports"], st["dialogs"]) == (held["agw_ports"], 1), st
        ue_hangs_up(d, ue, core, call.ok)
    finally:
        for p in (ue, core, carol):
            p.close()
        carol_media.close()


def post_reload(d: Daemon) -> tuple[int, dict[str, Any]]:
    """`POST /reload` on the admin endpoint (what `pcscf-alg reload` sends)."""
    req = urllib.request.Request(f"http://127.0.0.1:{d.admin_port}/reload", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_post_reload_reports_what_applied_what_needs_a_restart_and_errors(
    daemon_factory: Any, rtp_peers: RtpPeers
) -> None:
    d: Daemon = daemon_factory(policy={"e2ae_not_registered": "reject"})
    ue, core, carol = UdpPeer(), UdpPeer(d.next_hop_port), UdpPeer()
    carol_media, carol_core_media = MediaPeer.bind(), MediaPeer.bind()
    ue_media, core_media = rtp_peers
    try:
        register(d, ue, core)
        call = e2ae_call(d, ue, core, ue_media, core_media, "post-reload-established")
        old_access = d.access_port

        def tune(c: dict[str, Any]) -> None:
            c["policy"]["e2ae_not_registered"] = "apply"
            c["sip"]["t1"] = 0.2
            c["sip"]["access"]["port"] = old_access + 1  # a listener: needs a restart

        rewrite_config(d, tune)
        status, result = post_reload(d)
        assert status == 200, result
        assert result == {
            "ok": True,
            "error": None,
            "applied": ["policy.e2ae_not_registered", "sip.t1"],
            "restart_needed": ["sip.access"],
        }
        # The access listener stayed where it was: the call goes on over it, and the next
        # NOTE 2a offer on it is decided by the new policy.
        in_dialog(ue, call.ok, "OPTIONS", 3, d.access_port, uac=True)
        core.reply(core.expect("OPTIONS"), 200, "OK", d.core_port, to_tag="")
        ue.expect(200)
        call.media(ue_media, core_media, seq=1)
        # carol never registered: a NOTE 2a offer, decided by the new policy
        second = e2ae_call(
            d, carol, core, carol_media, carol_core_media, "post-reload-note2a", to_tag="b2"
        )

        rewrite_config(d, "sip: {access: 5}\n")
        status, result = post_reload(d)
        assert status == 400 and result["ok"] is False, result
        assert str(result["error"]).startswith(f"{d.workdir / 'pcscf.yaml'}: sip.access"), result
        assert (result["applied"], result["restart_needed"]) == ([], [])
        assert d.stats()["reloads"] == {"ok": 1, "error": 1}
        second.media(carol_media, carol_core_media, seq=1)
        call.media(ue_media, core_media, seq=2)

        in_dialog(carol, second.ok, "BYE", 2, d.access_port, uac=True)
        core.reply(core.expect("BYE"), 200, "OK", d.core_port, to_tag="")
        carol.expect(200)
        ue_hangs_up(d, ue, core, call.ok)
    finally:
        for p in (ue, core, carol):
            p.close()
        carol_media.close()
        carol_core_media.close()
