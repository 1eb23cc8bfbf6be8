"""Issue 13, deliver 1 and 2: the admin endpoint (`/metrics`, `/registrations`, `/calls`) and the
CLI (`status`, `reload`, `run --log-level`) against the running daemon.

The metrics are read with prometheus_client's own text parser, the JSON with the stdlib; the
CLI runs as a subprocess (`python -m pcscf_alg ...`) like an operator would run it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.calls_helpers import (
    K11,
    K11_32,
    RtpPeers,
    audio_offer,
    audio_port,
    b64,
    e2ae_call,
    in_dialog,
    invite,
    register,
    ue_hangs_up,
)
from tests.e2e.daemon import ROOT, Daemon, free_port, make_daemon
from tests.e2e.sipua import UdpPeer, new_call_id


def _get(d: Daemon, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.admin_port}{path}", timeout=5) as r:
        data: bytes = r.read()
    return data


def _samples(d: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client: (name, sorted labels) -> value."""
    text = _get(d, "/metrics").decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _e2ae_call(
    d: Daemon, ue: UdpPeer, core: UdpPeer, rtp_peers: RtpPeers, call_id: str
) -> tuple[Any, bytes]:
    """An originating e2ae RTP call with SRTP media both ways through the gateway. Returns the
    UE's 200 OK and K12 (the key the P-CSCF gave the UE)."""
    call = e2ae_call(d, ue, core, *rtp_peers, call_id)
    call.media(*rtp_peers)
    return call.ok, call.to_ue[1]


def test_metrics_after_e2ae_call_show_decisions_and_latency(
    peers: Any, rtp_peers: RtpPeers
) -> None:
    d, ue, core = peers
    register(d, ue, core)
    ok, _ = _e2ae_call(d, ue, core, rtp_peers, new_call_id())
    # An unregistered UE requesting e2ae: TS 33.328 7.2.1 NOTE 2a, strict policy rejects (488).
    with UdpPeer() as stranger:
        invite(stranger, d, audio_offer(40000), new_call_id())
        assert stranger.expect(488)

    m = _samples(d)

    def val(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    dec = "pcscf_alg_e2ae_decisions_total"
    assert val(dec, protocol="rtp", direction="originating", outcome="e2ae") >= 1, m
    assert val(dec, protocol="rtp", direction="originating", outcome="rejected") >= 1
    # every label combination of the contract is exported, at 0 when nothing happened
    assert (
        dec,
        (("direction", "terminating"), ("outcome", "downgrade"), ("protocol", "msrp")),
    ) in m
    # the offer needed a gateway reservation: one sample in the histogram, with its sum
    assert val("pcscf_alg_offer_forward_seconds_count") >= 1
    assert val("pcscf_alg_offer_forward_seconds_bucket", le="+Inf") >= 1
    assert val("pcscf_alg_offer_forward_seconds_sum") > 0
    # SIP messages by side / method / status
    msgs = "pcscf_alg_sip_messages_received_total"
    assert val(msgs, side="access", method="INVITE", status="0") >= 2
    assert val(msgs, side="core", method="INVITE", status="200") >= 1
    assert val(msgs, side="core", method="REGISTER", status="200") >= 1
    # state gauges during the call
    assert val("pcscf_alg_calls_active") == 1
    assert val("pcscf_alg_bindings") == 1
    assert val("pcscf_alg_bindings_e2ae", protocol="rtp") == 1
    assert val("pcscf_alg_bindings_e2ae", protocol="msrp") == 1
    assert val("pcscf_alg_gateway_ports_in_use", transport="udp") >= 4  # RTP+RTCP, both legs
    assert ("pcscf_alg_transactions", (("kind", "server"), ("side", "access"))) in m
    assert val("pcscf_alg_media_packets_total", direction="to_core") >= 1
    assert ("pcscf_alg_srtp_auth_failures_total", ()) in m
    assert ("pcscf_alg_config_reloads_total", (("outcome", "ok"),)) in m

    ue_hangs_up(d, ue, core, ok)
    m = _samples(d)
    assert m[("pcscf_alg_calls_active", ())] == 0
    assert m[("pcscf_alg_gateway_ports_in_use", (("transport", "udp"),))] == 0


def test_registrations_show_e2ae_flags_per_protocol(daemon: Daemon) -> None:
    core = UdpPeer(daemon.next_hop_port)
    with core, UdpPeer() as rtp_ue, UdpPeer() as msrp_ue:
        register(daemon, rtp_ue, core, sec_client="sdes-srtp;mediasec", user="rita", expires=600)
        register(daemon, msrp_ue, core, sec_client="msrp-tls;mediasec", user="max", expires=300)
        regs = {r["impu"]: r for r in daemon.registrations()}
    rita, mx = regs["sip:rita@ims.test"], regs["sip:max@ims.test"]
    assert rita["e2ae"] == {"rtp": True, "msrp": False}
    assert mx["e2ae"] == {"rtp": False, "msrp": True}
    assert 0 < rita["expires_in"] <= 600 and 0 < mx["expires_in"] <= 300
    # the fields scripts already read are still there
    assert rita["flow"] == f"udp:127.0.0.1:{rita['contact'].rsplit(':', 1)[1].rstrip('>')}"
    for key in ("contact", "ue_rtp", "net_rtp", "rtp", "msrp", "path", "expires_at", "calls"):
        assert key in rita


def test_calls_lists_live_streams_and_never_a_key(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    call_id = new_call_id()
    ok, k12 = _e2ae_call(d, ue, core, rtp_peers, call_id)
    _, agw_access, _ = audio_port(ok.body)

    raw = _get(d, "/calls")
    legs = json.loads(raw)
    assert len(legs) == 1, legs
    leg = legs[0]
    assert leg["call_id"] == call_id and leg["leg"] == "originating"
    assert leg["subscriber"] == "sip:alice@ims.test"
    assert leg["age"] >= 0 and leg["phase"] == "confirmed" and leg["anchored"] is True
    (stream,) = leg["streams"]
    assert stream["mode"] == "e2ae" and stream["kind"] == "rtp"
    assert "TS 33.328 7.2.1" in stream["clause"] and stream["decision"]
    assert stream["gateway"]["access"]["port"] == agw_access
    assert stream["counters"]["to_core_packets"] >= 1 and stream["counters"]["to_ue_packets"] >= 1

    # Never a key: no SDES inline: value, none of the keys this test knows in any encoding.
    text = raw.decode()
    assert "inline:" not in text
    for key in (b64(K11), b64(K11_32), k12):
        for form in (
            base64.b64encode(key).decode(),
            base64.b64encode(key).decode().rstrip("="),
            key.hex(),
            key[:16].hex(),
            base64.b64encode(key[:16]).decode().rstrip("="),
        ):
            assert form not in text, form
    for path in ("/stats", "/registrations", "/metrics"):
        body = _get(d, path).decode()
        assert "inline:" not in body and base64.b64encode(k12).decode() not in body

    ue_hangs_up(d, ue, core, ok)
    assert json.loads(_get(d, "/calls")) == []


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pcscf_alg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_status_cli_prints_the_binding_and_the_call(peers: Any, rtp_peers: RtpPeers) -> None:
    d, ue, core = peers
    register(d, ue, core)
    call_id = new_call_id()
    ok, _ = _e2ae_call(d, ue, core, rtp_peers, call_id)
    res = _cli("status", "--admin", f"http://127.0.0.1:{d.admin_port}")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Bindings: 1" in out and "Calls: 1" in out, out
    binding_row = next(ln for ln in out.splitlines() if ln.startswith("sip:alice@ims.test"))
    assert f"udp:127.0.0.1:{ue.port}" in binding_row and "rtp,msrp" in binding_row
    call_rows = [ln for ln in out.splitlines() if ln.startswith(call_id)]
    assert len(call_rows) == 2, out  # the leg and its stream
    assert "originating" in call_rows[0] and "sip:alice@ims.test" in call_rows[0]
    assert "m[0] rtp" in call_rows[1] and " e2ae " in call_rows[1] and "TS 33.328" in call_rows[1]
    assert "inline:" not in out
    ue_hangs_up(d, ue, core, ok)


def test_status_cli_without_daemon_says_so() -> None:
    port = free_port(socket.SOCK_STREAM)
    res = _cli("status", "--admin", f"http://127.0.0.1:{port}")
    assert res.returncode == 2
    assert "cannot reach the admin endpoint" in res.stderr


def test_reload_cli_reports_success_and_failure(daemon: Daemon) -> None:
    cfg_path = daemon.workdir / "pcscf.yaml"
    admin = f"http://127.0.0.1:{daemon.admin_port}"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["policy"] = {"e2ae_not_registered": "apply"}
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = _cli("reload", "--admin", admin)
    assert res.returncode == 0, (res.stdout, res.stderr, daemon.log())
    assert res.stdout.startswith("reloaded") and "policy" in res.stdout, res.stdout

    cfg["sip"]["t1"] = "soon"  # invalid: must be a number
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = _cli("reload", "--admin", admin)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "reload failed" in res.stderr and "sip.t1" in res.stderr and str(cfg_path) in res.stderr
    st = daemon.stats()
    assert st["reloads"]["ok"] >= 1 and st["reloads"]["error"] >= 1, st


@pytest.fixture
def bare_daemon(tmp_path: Path) -> Iterator[Any]:
    """start(extra_args, log_level) -> (Popen, log path): the daemon with a command line of
    the test's choosing; stopped (SIGTERM, bounded) after the test."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[Any] = []

    def start(extra: list[str], level: str) -> tuple[subprocess.Popen[bytes], Path]:
        d = make_daemon(tmp_path, log={"level": level})
        cfg_path = tmp_path / "pcscf.yaml"
        cfg_path.write_text(yaml.safe_dump(d.config))
        log_path = tmp_path / f"daemon-{len(procs)}.log"
        f = open(log_path, "wb")  # noqa: SIM115 - closed after the test
        files.append(f)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pcscf_alg", "run", "--config", str(cfg_path), *extra],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        procs.append(proc)
        deadline = time.monotonic() + 15
        while b"pcscf-alg ready" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        return proc, log_path

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    for f in files:
        f.close()


def test_log_level_flag_overrides_the_config(bare_daemon: Any) -> None:
    # config says error: the INFO start-up line (logged before "ready") is there only
    # because of the flag
    proc, log_path = bare_daemon(["--log-level", "info"], "ERROR")
    assert "pcscf-alg up" in log_path.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    # and the other way round: config says info, the flag silences it
    _, log_path2 = bare_daemon(["--log-level", "error"], "INFO")
    assert "pcscf-alg up" not in log_path2.read_text()


def test_msrp_e2ae_call_counts_tls_handshake_and_msrp_decision(peers: Any, tmp_path: Path) -> None:
    from pcscf_alg.agw.certs import load_or_create
    from tests.e2e.test_calls_msrp import core_answer, media, msrp_offer, tls_client

    d, ue, core = peers
    register(d, ue, core)
    cert = load_or_create(tmp_path / "ue")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    try:
        invite(ue, d, msrp_offer(50000, cert.fingerprint.to_sdp(), cema=True), "ops-msrp-1")
        inv = core.expect("INVITE")
        port = listener.getsockname()[1]
        core.reply(inv, 200, "OK", d.core_port, to_tag="b1", body=core_answer(port, cema=True))
        ok = ue.expect(200)
        agw_access_port, _, _ = media(ok.body)
        in_dialog(ue, ok, "ACK", 1, d.access_port, uac=True)
        core.expect("ACK")
        tls = tls_client(agw_access_port, cert)  # the UE's certificate: verified in the handshake
        try:
            key = (
                "pcscf_alg_tls_handshakes_total",
                (("outcome", "established"), ("reason", "ok"), ("side", "access")),
            )
            deadline = time.monotonic() + 10
            m = _samples(d)
            while m.get(key, 0) < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
                m = _samples(d)
            assert m.get(key, 0) == 1, {k: v for k, v in m.items() if "tls" in k[0]}
            dec = (
                "pcscf_alg_e2ae_decisions_total",
                (("direction", "originating"), ("outcome", "e2ae"), ("protocol", "msrp")),
            )
            assert m[dec] == 1
            (leg,) = json.loads(_get(d, "/calls"))
            (stream,) = leg["streams"]
            assert (stream["kind"], stream["mode"]) == ("msrp", "e2ae")
            assert stream["gateway"]["access"]["port"] == agw_access_port
        finally:
            tls.close()
        ue_hangs_up(d, ue, core, ok)
    finally:
        listener.close()
