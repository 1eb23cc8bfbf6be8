"""`make demo` keeps working: run it on free ports and check what it reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.daemon import ROOT, free_port


def test_demo_end_to_end(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "pcscf.yaml").read_text())
    cfg["sip"]["access"]["port"] = free_port()
    cfg["sip"]["core"]["port"] = free_port()
    nh = free_port()
    cfg["sip"]["next_hop"] = f"sip:127.0.0.1:{nh};lr"
    cfg["agw"]["cert_dir"] = str(tmp_path / "agw")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--config", str(path), "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Security-Server: sdes-srtp;mediasec, msrp-tls;mediasec" in text
    assert "inline:<redacted>" in text and "TS 33.328 7.2.1" in text and "TS 33.328 7.3.1" in text
    assert "crossed TLS -> TCP -> TLS" in text
    assert "2 of 2 call legs ended" in text
