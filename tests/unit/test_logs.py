"""Log formatters and redaction (pcscf_alg/logs.py), sd_notify (pcscf_alg/sdnotify.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcscf_alg import logs, sdnotify
from pcscf_alg.config import parse_config
from pcscf_alg.errors import ConfigError

KEY = "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC"
LINE = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing through our handler into a buffer (root left as it was)."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    buf = io.StringIO()
    logs.setup_logging("DEBUG", "json", stream=buf)
    try:
        yield logging.getLogger("pcscf_alg.test"), buf
    finally:
        for h in list(root.handlers):
            if h not in before[0]:
                root.removeHandler(h)
        root.setLevel(before[1])


def test_json_line_fields_and_structured_extras(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, buf = captured
    log.info(
        "call %s leg=%s stream=%d: %s",
        "c1@x",
        "originating",
        0,
        "m[0] rtp e2ae",
        extra={"call_id": "c1@x", "leg": "originating", "stream": 0, "unrelated": object()},
    )
    (line,) = buf.getvalue().splitlines()
    rec = json.loads(line)
    assert rec["level"] == "INFO" and rec["logger"] == "pcscf_alg.test"
    assert rec["message"] == "call c1@x leg=originating stream=0: m[0] rtp e2ae"
    assert (rec["call_id"], rec["leg"], rec["stream"]) == ("c1@x", "originating", 0)
    assert rec["time"].endswith("Z") and "T" in rec["time"]
    assert "unrelated" not in rec


def test_json_redacts_message_fields_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, buf = captured
    log.debug("sdp:\r\n%s\r\n", LINE, extra={"peer": f"x inline:{KEY}"})
    try:
        raise ValueError(LINE)
    except ValueError:
        log.exception("failed on %s", LINE)
    out = buf.getvalue()
    assert KEY not in out
    recs = [json.loads(ln) for ln in out.splitlines()]  # still valid JSON, one per line
    assert len(recs) == 2
    assert "inline:<redacted>|2^20" in recs[0]["message"]
    assert recs[0]["peer"] == "x inline:<redacted>"
    assert "inline:<redacted>" in recs[1]["exception"] and "ValueError" in recs[1]["exception"]


def test_text_format_redacts_and_reconfigure_replaces_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    buf1, buf2 = io.StringIO(), io.StringIO()
    try:
        logs.setup_logging("INFO", "text", stream=buf1)
        logs.setup_logging("INFO", "text", stream=buf2)  # a reload: replaced, not stacked
        ours = [h for h in root.handlers if h not in before[0]]
        assert len(ours) == 1
        log = logging.getLogger("pcscf_alg.test")
        try:
            raise RuntimeError(LINE)
        except RuntimeError:
            log.exception("offer %s", LINE)
        log.debug("not at INFO")
        out = buf2.getvalue()
        assert buf1.getvalue() == ""
        assert KEY not in out and out.count("inline:<redacted>") == 2
        assert " ERROR pcscf_alg.test: offer a=crypto:1" in out
        assert "not at INFO" not in out
    finally:
        for h in list(root.handlers):
            if h not in before[0]:
                root.removeHandler(h)
        root.setLevel(before[1])


def test_redacting_filter_for_foreign_handlers() -> None:
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "k=%s", (LINE,), None)
    assert logs.RedactingFilter().filter(rec)
    assert KEY not in rec.getMessage() and "inline:<redacted>" in rec.getMessage()


def test_unknown_format_refused() -> None:
    with pytest.raises(ValueError):
        logs.make_formatter("xml")


BASE = {
    "sip": {
        "access": {"host": "127.0.0.1", "port": 5060},
        "core": {"host": "127.0.0.1", "port": 5070},
        "next_hop": "sip:127.0.0.1:5080;lr",
    }
}


def test_log_format_config() -> None:
    assert parse_config(BASE, "f").log_format == "text"
    assert parse_config({**BASE, "log": {"format": "json"}}, "f").log_format == "json"
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "log": {"format": "yaml"}}, "lab.yaml")
    assert "lab.yaml" in str(e.value) and "log.format" in str(e.value)


# ---- sd_notify ----


def test_notify_without_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify("READY=1") is False


def test_notify_path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(3)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1\nSTATUS=serving")
        assert s.recv(1024) == b"READY=1\nSTATUS=serving"
        assert logs.notify("STOPPING=1")  # the same helper, from pcscf_alg.logs
        assert s.recv(1024) == b"STOPPING=1"
        assert sdnotify.reloading()
        msg = s.recv(1024).decode().split("\n")
        assert msg[0] == "RELOADING=1" and msg[1].startswith("MONOTONIC_USEC=")
        assert int(msg[1].split("=")[1]) > 0


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pcscf-alg-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(3)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert s.recv(1024) == b"READY=1"


def test_notify_to_missing_socket_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sdnotify.notify("READY=1") is False
