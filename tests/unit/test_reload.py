"""Live reload (issue 13): the diff of two configs (pcscf_alg/reload.py) and `App.reload`
applying it, or changing nothing when the file is invalid."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from pcscf_alg.agw.driver import GatewayDriver
from pcscf_alg.app import App
from pcscf_alg.config import Config, load_config, parse_config
from pcscf_alg.li import KeyRecord, load_sink
from pcscf_alg.mediaplan import Direction, MediaKind
from pcscf_alg.policy import PolicyContext, UnnegotiatedAction, load_policy
from pcscf_alg.reload import is_live, plan_reload

BASE: dict[str, Any] = {
    "sip": {
        "access": {"host": "127.0.0.1", "port": 5060},
        "core": {"host": "127.0.0.1", "port": 5070},
        "next_hop": "sip:127.0.0.1:5080;lr",
    },
    "agw": {"rtp_ports": [30000, 39999]},
    "policy": {"e2ae_not_registered": "reject"},
    "log": {"level": "INFO"},
}


def cfg_with(**changes: Any) -> Config:
    """BASE with `section.key=value` changes ("sip__t1" -> sip.t1; a section name alone
    replaces the whole section, None removes it)."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        keys = dotted.split("__")
        if len(keys) == 1:
            if value is None:
                data.pop(keys[0], None)
            else:
                data[keys[0]] = value
            continue
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return parse_config(data, "/etc/pcscf.yaml")


def test_nothing_changed_plans_nothing() -> None:
    plan = plan_reload(cfg_with(), cfg_with())
    assert (plan.applied, plan.restart_needed) == ((), ())
    assert plan.config == cfg_with()


def test_live_keys_apply_and_restart_keys_stay_as_they_were() -> None:
    old = cfg_with()
    new = cfg_with(
        policy__e2ae_not_registered="apply",
        sip__t1=0.2,
        sip__max_transactions=1000,
        registration__require_for_originating=False,
        dialogs__idle_timeout_s=60.0,
        e2ae__anchor_all=True,
        log__level="DEBUG",
        agw__strict_source=False,
        # need a restart:
        sip__access={"host": "127.0.0.1", "port": 6060},
        sip__next_hop="sip:127.0.0.1:6080;lr",
        sip__tcp_max_connections=100,
        sip__core_networks=["10.0.0.0/8"],
        e2ae__rtp=False,
        agw__rtp_ports=[31000, 31999],
        agw__cert_dir="/elsewhere",
        agw__media_timeout_s=5,
        admin__port=6090,
    )
    plan = plan_reload(old, new)
    assert plan.applied == (
        "agw.strict_source",
        "dialogs.idle_timeout_s",
        "e2ae.anchor_all",
        "log.level",
        "policy.e2ae_not_registered",
        "registration.require_for_originating",
        "sip.max_transactions",
        "sip.t1",
    )
    assert plan.restart_needed == (
        "admin.port",
        "agw.cert_dir",
        "agw.media_timeout_s",
        "agw.rtp_ports",
        "e2ae.rtp",
        "sip.access",
        "sip.core_networks",
        "sip.next_hop",
        "sip.tcp_max_connections",
    )
    c = plan.config
    # applied: the new values
    assert c.policy == {"e2ae_not_registered": "apply"}
    assert (c.sip.t1, c.sip.max_transactions) == (0.2, 1000)
    assert c.registration.require_for_originating is False
    assert c.dialogs.idle_timeout_s == 60.0
    assert c.e2ae.anchor_all is True
    assert c.log_level == "DEBUG"
    assert c.agw is not None and c.agw["strict_source"] is False
    # restart needed: the old values, untouched
    assert c.sip.access == old.sip.access and c.sip.next_hop == old.sip.next_hop
    assert (c.sip.next_hop_host, c.sip.next_hop_port) == (old.sip.next_hop_host, 5080)
    assert c.sip.tcp_max_connections == old.sip.tcp_max_connections
    assert c.sip.core_networks == old.sip.core_networks
    assert c.e2ae.rtp is True
    assert c.agw["rtp_ports"] == [30000, 39999]
    assert "cert_dir" not in c.agw and "media_timeout_s" not in c.agw
    assert c.admin == old.admin


def test_defaults_written_out_are_no_change() -> None:
    # `agw: {}` and the same section with its defaults spelt out mean the same gateway; an
    # absent section and an empty one the same policy.
    old = cfg_with(agw=None, policy=None)
    new = cfg_with(agw={"strict_source": True, "max_streams_per_call": 16}, policy={})
    plan = plan_reload(old, new)
    assert (plan.applied, plan.restart_needed) == ((), ())


def test_sections_appearing_and_disappearing() -> None:
    # li added: live; policy removed: live (back to strict 3GPP); capture added: a restart
    old = cfg_with()
    new = cfg_with(li={"socket": "/run/li.sock"}, policy=None)
    data = yaml.safe_load(yaml.safe_dump(BASE))
    plan = plan_reload(old, new)
    assert plan.applied == ("li.socket", "policy.e2ae_not_registered")
    assert plan.config.li == {"socket": "/run/li.sock"} and plan.config.policy is None
    data["capture"] = {"hep": "127.0.0.1:9060"}
    with_capture = parse_config(data, "/etc/pcscf.yaml")
    plan = plan_reload(old, with_capture)
    assert plan.applied == ()
    assert plan.restart_needed and all(k.startswith("capture.") for k in plan.restart_needed)
    assert plan.config.capture is None


def test_agw_live_keys_merge_into_the_running_section() -> None:
    old = cfg_with(agw={"rtp_ports": [30000, 39999], "max_streams_per_call": 4})
    new = cfg_with(agw={"rtp_ports": [32000, 32999], "msrp_max_pending_connections": 2})
    plan = plan_reload(old, new)
    assert plan.applied == ("agw.max_streams_per_call", "agw.msrp_max_pending_connections")
    assert plan.restart_needed == ("agw.rtp_ports",)
    # max_streams_per_call went back to its default (absent from the new file)
    assert plan.config.agw == {"rtp_ports": [30000, 39999], "msrp_max_pending_connections": 2}


def test_which_keys_are_live() -> None:
    for key in ("policy.subscribers", "li.class", "log.format", "sip.t2", "sip.t4"):
        assert is_live(key), key
    for key in ("sip.core", "sip.udp", "sip.tcp", "sip.hosts", "admin.host", "agw.msrp_ports"):
        assert not is_live(key), key


# ---------------------------------------------------------------- App.reload


class _FakeGateway:
    def set_event_handler(self, handler: Any) -> None:
        pass


class RecordingSink:
    """An `li.class` sink that remembers whether it was closed."""

    instances: ClassVar[list[RecordingSink]] = []

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.closed = False
        RecordingSink.instances.append(self)

    def deliver(self, record: KeyRecord) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _app(path: Path, data: dict[str, Any]) -> App:
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(str(path))
    app = App(cfg)
    # The call layer without a running gateway: enough to see the policy and sink swaps.
    sink = load_sink(cfg.li, cfg.file)
    app.pcscf.attach_calls(load_policy(cfg.policy, cfg.file), export_keys=sink is not None)
    app.driver = GatewayDriver(_FakeGateway(), app.pcscf, sink=sink)  # type: ignore[arg-type]
    return app


def _sink(app: App) -> object:
    assert app.driver is not None
    return app.driver.sink


def _reload(app: App) -> dict[str, object]:
    return asyncio.run(asyncio.wait_for(app.reload(), 10))


def test_reload_applies_policy_timers_and_li(tmp_path: Path) -> None:
    RecordingSink.instances.clear()
    path = tmp_path / "pcscf.yaml"
    sink = {"class": f"{__name__}:RecordingSink", "options": {"name": "first"}}
    app = _app(path, {**BASE, "li": sink})
    calls = app.pcscf.calls
    assert calls is not None
    old_policy, first = calls.policy, _sink(app)
    assert isinstance(first, RecordingSink)

    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["policy"]["e2ae_not_registered"] = "apply"
    data["sip"]["t1"] = 0.25
    data["sip"]["access"]["port"] = 6060  # needs a restart
    data["li"] = {"class": f"{__name__}:RecordingSink", "options": {"name": "second"}}
    path.write_text(yaml.safe_dump(data))
    result = _reload(app)

    assert result == {
        "ok": True,
        "error": None,
        "applied": ["li.options", "policy.e2ae_not_registered", "sip.t1"],
        "restart_needed": ["sip.access"],
    }
    assert app.reloads == {"ok": 1, "error": 0}
    assert calls.policy is not old_policy
    ctx = PolicyContext(None, Direction.ORIGINATING, 0, MediaKind.RTP, "RTP/SAVP")
    assert old_policy.e2ae_not_registered(ctx) is UnnegotiatedAction.REJECT
    assert calls.policy.e2ae_not_registered(ctx) is UnnegotiatedAction.APPLY
    new_sink = _sink(app)
    assert isinstance(new_sink, RecordingSink) and new_sink.name == "second"
    assert first.closed and not new_sink.closed and calls.export_keys
    # new transactions use the new T1 (Timer J = 64*T1 gives the default Retry-After)
    for layer in app.pcscf.layers.values():
        assert layer.timers.T1 == 0.25 and layer.retry_after == 16
    assert app.cfg.sip.access.port == 5060 and app.pcscf.cfg is app.cfg
    assert app.cfg.policy == {"e2ae_not_registered": "apply"}


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("sip: [", "line", "invalid YAML"),
        (None, "sip.t1", "must be between"),  # our own loader's validation
        (None, "policy.e2ae_not_registered", ""),  # the policy layer's validation
        (None, "agw.rtp_ports", ""),  # the gateway's, on a key that needs a restart
    ],
)
def test_invalid_file_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str | None, key: str, reason: str
) -> None:
    RecordingSink.instances.clear()
    path = tmp_path / "pcscf.yaml"
    app = _app(path, {**BASE, "li": {"class": f"{__name__}:RecordingSink"}})
    calls = app.pcscf.calls
    assert calls is not None
    before = (app.cfg, calls.policy, _sink(app), [la.timers for la in app.pcscf.layers.values()])
    if text is None:
        data = yaml.safe_load(yaml.safe_dump(BASE))
        data["li"] = {"class": f"{__name__}:RecordingSink", "options": {"name": "other"}}
        data["sip"]["t2"] = 8.0  # a valid live change that must not apply either
        if key == "sip.t1":
            data["sip"]["t1"] = -1
        elif key == "policy.e2ae_not_registered":
            data["policy"]["e2ae_not_registered"] = "maybe"
        else:
            data["agw"]["rtp_ports"] = [5, 4]
        text = yaml.safe_dump(data)
    path.write_text(text)
    with caplog.at_level(logging.INFO, logger="pcscf_alg.app"):
        result = _reload(app)
    assert result["ok"] is False
    error = str(result["error"])
    assert error.startswith(f"{path}: ") and key in error and reason in error
    assert (result["applied"], result["restart_needed"]) == ([], [])
    assert app.reloads == {"ok": 0, "error": 1}
    after = (app.cfg, calls.policy, _sink(app), [la.timers for la in app.pcscf.layers.values()])
    assert after == before
    assert not any(s.closed for s in RecordingSink.instances)
    # the sink the failed reload would have used was not even created
    assert [s.name for s in RecordingSink.instances] == [""]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1 and error in failed[0].getMessage()
    assert "nothing changed" in failed[0].getMessage()


def test_embedded_default_config_has_nothing_to_reload() -> None:
    app = App(load_config(None))
    before = app.cfg
    result = _reload(app)
    assert result["ok"] is False and "--config" in str(result["error"])
    assert app.cfg is before and app.reloads == {"ok": 0, "error": 1}


def test_reload_tells_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Type=notify-reload: RELOADING=1 (with MONOTONIC_USEC) before, READY=1 after, also when
    # the file is invalid (the daemon runs on, with its old config).
    name = f"pcscf-alg-test-{os.getpid()}-{id(tmp_path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        path = tmp_path / "pcscf.yaml"
        app = _app(path, BASE)
        for text in (yaml.safe_dump(BASE), "sip: ["):
            path.write_text(text)
            _reload(app)
            first, second = s.recv(512).decode(), s.recv(512).decode()
            assert first.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert second == "READY=1"
    assert app.reloads == {"ok": 1, "error": 1}


def test_log_level_from_the_command_line_survives_a_reload(tmp_path: Path) -> None:
    """`pcscf-alg run --log-level debug` keeps DEBUG when a reload reads `log.level: INFO`
    (and a file that changes only other keys reports no log change)."""
    path = tmp_path / "pcscf.yaml"
    app = _app(path, {**BASE, "log": {"level": "INFO"}})
    app.log_level_override = "DEBUG"
    app.cfg = dataclasses.replace(app.cfg, log_level="DEBUG")
    path.write_text(yaml.safe_dump({**BASE, "log": {"level": "WARNING"}}))
    out = _reload(app)
    assert out["ok"] is True
    assert app.cfg.log_level == "DEBUG"
    assert not any(str(k).startswith("log.") for k in out["applied"])  # type: ignore[attr-defined]
