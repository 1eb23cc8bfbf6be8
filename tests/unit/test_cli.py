"""pcscf_alg/cli.py: `status` and `reload` as clients of an admin endpoint (a stdlib HTTP
server on loopback standing in for the daemon), the `status` tables, `run --log-level`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pcscf_alg import cli

BINDINGS = [
    {
        "impu": "sip:alice@ims.test",
        "contact": "sip:alice@127.0.0.1:5061",
        "flow": "udp:127.0.0.1:5061",
        "e2ae": {"rtp": True, "msrp": False},
        "expires_in": 597,
        "calls": ["c1@test"],
    }
]
CALLS = [
    {
        "call_id": "c1@test",
        "leg": "originating",
        "subscriber": "sip:alice@ims.test",
        "age": 12.4,
        "phase": "confirmed",
        "anchored": True,
        "streams": [
            {
                "index": 0,
                "kind": "rtp",
                "mode": "e2ae",
                "decision": "RTP/AVP->RTP/SAVP; K12 tag 1 AES_CM_128_HMAC_SHA1_80 generated",
                "clause": "TS 33.328 7.2.1 steps 7-8",
                "gateway": {
                    "access": {"host": "127.0.0.1", "port": 30010, "rtcp_port": 30011},
                    "core": {"host": "127.0.0.1", "port": 30020, "rtcp_port": 30021},
                },
                "counters": {"to_core_packets": 250, "to_ue_packets": 249, "auth_failures": 2},
            }
        ],
    }
]


class FakeAdmin(BaseHTTPRequestHandler):
    reload_answer: tuple[int, dict[str, Any]] = (200, {})

    def _send(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        data = {"/registrations": BINDINGS, "/calls": CALLS}.get(self.path)
        self._send(200 if data is not None else 404, data or {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/reload" or "Origin" in self.headers:
            self._send(403, {"error": "no"})
            return
        self._send(*type(self).reload_answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeAdmin)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_status_prints_bindings_calls_and_streams(admin: str, capsys: Any) -> None:
    assert cli.main(["status", "--admin", admin]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Bindings: 1"
    assert lines[1].split() == ["IMPU", "CONTACT", "FLOW", "E2AE", "EXPIRES", "CALLS"]
    assert lines[2].split() == [
        "sip:alice@ims.test",
        "sip:alice@127.0.0.1:5061",
        "udp:127.0.0.1:5061",
        "rtp",
        "597s",
        "1",
    ]
    call = next(ln for ln in lines if ln.startswith("c1@test") and "confirmed" in ln)
    assert call.split() == [
        "c1@test",
        "originating",
        "sip:alice@ims.test",
        "12s",
        "confirmed",
        "yes",
        "1",
    ]
    stream = next(ln for ln in lines if ln.startswith("c1@test") and "m[0]" in ln)
    assert "e2ae" in stream and "30010/30020" in stream
    assert "to core 250, to UE 249, auth failures 2" in stream
    assert stream.endswith("TS 33.328 7.2.1 steps 7-8")


def test_status_with_nothing_registered() -> None:
    assert cli.format_status([], []) == "Bindings: 0\n\nCalls: 0"


def test_reload_success_prints_what_was_applied(admin: str, capsys: Any) -> None:
    FakeAdmin.reload_answer = (
        200,
        {
            "ok": True,
            "error": None,
            "applied": ["policy.e2ae_not_registered"],
            "restart_needed": ["sip.access.port"],
        },
    )
    assert cli.main(["reload", "--admin", admin]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "reloaded",
        "  applied: policy.e2ae_not_registered",
        "  needs a restart (left as it was): sip.access.port",
    ]


def test_reload_failure_exits_1_with_the_error(admin: str, capsys: Any) -> None:
    FakeAdmin.reload_answer = (
        400,
        {
            "ok": False,
            "error": "/etc/p.yaml: sip.t1: must be a number",
            "applied": [],
            "restart_needed": [],
        },
    )
    assert cli.main(["reload", "--admin", admin]) == 1
    err = capsys.readouterr().err
    assert "reload failed, nothing changed: /etc/p.yaml: sip.t1: must be a number" in err


def test_unreachable_admin_endpoint_exits_2(capsys: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        assert cli.main(["reload", "--admin", f"http://127.0.0.1:{port}"]) == 2
        assert cli.main(["status", "--admin", f"http://127.0.0.1:{port}"]) == 2
    assert "cannot reach the admin endpoint" in capsys.readouterr().err


def test_log_level_must_be_one_of_the_four() -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--log-level", "loud"])
    assert e.value.code == 2


def test_log_level_flag_replaces_the_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(
        "pcscf_alg.app.run", lambda cfg, override=None: seen.append((cfg, override))
    )
    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)
    assert cli.main(["run", "--log-level", "DEBUG"]) == 0
    assert seen[0][0].log_level == "DEBUG"
    assert seen[0][1] == "DEBUG"  # handed to the App: it keeps winning on reloads
    assert cli.main(["run"]) == 0
    assert seen[1][0].log_level == "INFO"  # the embedded default config's
    assert seen[1][1] is None
