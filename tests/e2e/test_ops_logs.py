"""Issue 13, deliver 4 and 6: structured logs without key material, and sd_notify.

A debug-level daemon carries e2ae calls (the test knows the keys: K11 from its offer, K12 from
the answer the daemon gave the UE); neither key appears in text or JSON logs, in any encoding
the daemon could have printed it in. JSON logs parse line by line and every e2ae decision line
carries call_id, leg and stream. The daemon tells a test-bound NOTIFY_SOCKET READY=1 and, on
SIGTERM, STOPPING=1.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.calls_helpers import (
    K11,
    K11_32,
    MediaPeer,
    b64,
    e2ae_call,
    register,
    ue_hangs_up,
)
from tests.e2e.daemon import Daemon, make_daemon
from tests.e2e.sipua import UdpPeer


def e2ae_rtp_call(d: Daemon, call_id: str) -> list[str]:
    """Register a UE with mediasec, run an originating e2ae RTP call through the daemon with
    SRTP media both ways, hang up. Returns every textual form of the keys that crossed (K11 of
    the UE's offer, both offered lines, and K12 of the daemon's answer)."""
    ue, core = UdpPeer(), UdpPeer(d.next_hop_port)
    ue_media, core_media = MediaPeer.bind(), MediaPeer.bind()
    try:
        register(d, ue, core)
        call = e2ae_call(d, ue, core, ue_media, core_media, call_id)
        k12 = call.to_ue[1]
        call.media(ue_media, core_media)  # the keys are real: media flows under them
        ue_hangs_up(d, ue, core, call.ok)
    finally:
        ue.close()
        core.close()
        ue_media.close()
        core_media.close()
    return [*key_forms(b64(K11), b64(K11_32), k12), K11, K11_32]


def key_forms(*keys: bytes) -> list[str]:
    """Every way a key-salt could show up in a text: base64 (with and without padding), hex,
    and Python's bytes repr."""
    out = []
    for k in keys:
        enc = base64.b64encode(k).decode()
        out += [enc, enc.rstrip("="), k.hex(), repr(k)[2:-1]]
    return out


def assert_no_keys(text: str, forms: list[str], where: str) -> None:
    for f in forms:
        assert f not in text, f"key material {f[:6]}... found in {where}"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_logs_carry_no_key_material(daemon_factory: Any, fmt: str) -> None:
    d: Daemon = daemon_factory(log={"level": "DEBUG", "format": fmt})
    call_id = f"ops-logs-{fmt}@test"
    forms = e2ae_rtp_call(d, call_id)
    log = d.log_path.read_text(errors="replace")
    # Debug level did log the SIP messages (and the SDP with its crypto lines, redacted) ...
    assert "inline:<redacted>" in log, log[-3000:]
    assert "gateway reserved" in log and "gateway release" in log, log[-3000:]
    # ... and no key in any form.
    assert_no_keys(log, forms, f"the {fmt} log")


def test_json_logs_parse_and_decisions_are_structured(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(log={"level": "DEBUG", "format": "json"})
    call_id = "ops-json-1@test"
    e2ae_rtp_call(d, call_id)
    records = []
    for line in d.log_path.read_text().splitlines():
        if line == "pcscf-alg ready":  # the start banner on stdout, not a log record
            continue
        rec = json.loads(line)  # every log line is one JSON object
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
        records.append(rec)
    decisions = [
        r
        for r in records
        if r.get("call_id") == call_id and r["logger"] == "pcscf_alg.calls" and "stream" in r
    ]
    # One line per decision: the offer's and the answer's for stream 0, originating leg.
    assert len(decisions) >= 2, records[-20:]
    for r in decisions:
        assert r["leg"] == "originating" and r["stream"] == 0 and r["level"] == "INFO", r
        assert r["mode"] == "e2ae" and r["rule"], r
        assert f"call {call_id} leg=originating" in r["message"] and "stream=0" in r["message"]
    # The SIP messages themselves at DEBUG, with the Call-ID as a field.
    wire = [r for r in records if r["logger"] == "pcscf_alg.wire" and r.get("call_id") == call_id]
    assert {r["side"] for r in wire} == {"access", "core"}, wire[:3]


def test_text_decision_lines_carry_leg_and_stream(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(log={"level": "INFO", "format": "text"})
    call_id = "ops-text-1@test"
    e2ae_rtp_call(d, call_id)
    lines = [ln for ln in d.log_path.read_text().splitlines() if f"call {call_id} leg=" in ln]
    assert any("leg=originating stream=0 offer: m[0] rtp e2ae" in ln for ln in lines), lines
    assert any("leg=originating dialog=b1 stream=0 answer:" in ln for ln in lines), lines
    # INFO: no SIP messages in the log.
    assert "pcscf_alg.wire" not in d.log_path.read_text()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """An AF_UNIX datagram socket standing in for systemd's, passed as NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield s
    finally:
        s.close()


def test_sd_notify_ready_and_stopping(tmp_path: Path, notify_socket: socket.socket) -> None:
    # Started by hand (not daemon_factory): this test stops the daemon itself.
    d = make_daemon(tmp_path)
    try:
        d.start()
        ready = notify_socket.recv(4096).decode()
        assert "READY=1" in ready.split("\n"), ready
        assert d.alive()
    finally:
        rc = d.stop()
    assert rc == 0, d.log()
    stopping = notify_socket.recv(4096).decode()
    assert "STOPPING=1" in stopping.split("\n"), stopping
