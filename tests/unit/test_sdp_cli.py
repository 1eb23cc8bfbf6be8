"""`pcscf-alg sdp` dry run."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pcscf_alg import sdp_cli
from tests.spec_examples import spec_example


def ex(n: int) -> str:
    return str(spec_example(n))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = sdp_cli.main(["sdp", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_terminating_offer_and_answer(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--offer", ex(7), "--answer", ex(9), "-d", "term",
                     "--ue", "rtp,msrp", "--access-port", "40100", "--core-port", "30100")
    assert rc == 0
    assert "## offer P-CSCF -> UE" in out and "## answer P-CSCF -> core" in out
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>" in out
    assert "a=3ge2ae:applied" in out
    assert "m=audio 40100 RTP/SAVP 96 97 100" in out and "m=audio 30100 RTP/AVP 96 100" in out
    assert "m[0] rtp e2ae:" in out and "TS 33.328 7.3.1" in out
    assert "rx (from UE) tag 1 AES_CM_128_HMAC_SHA1_80 <redacted>" in out
    assert "UE fingerprint sha-256 AF:55:F0" in out
    # the UE's K22 from example 09 never shows without --show-keys
    assert "n4PXVAey9GM40ciT3rCNAml9dD+44rWjZl5NhUpF" not in out


def test_show_keys_and_seed_are_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    rc1, out1, _ = run(capsys, "--offer", ex(7), "-d", "term", "--ue", "rtp", "--show-keys",
                       "--seed", "7")
    rc2, out2, _ = run(capsys, "--offer", ex(7), "-d", "term", "--ue", "rtp", "--show-keys",
                       "--seed", "7")
    assert rc1 == rc2 == 0 and out1 == out2
    assert "inline:<redacted>" not in out1


def test_note_2a_refusal_prints_488_and_warning(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--offer", ex(4), "-d", "orig")
    assert rc == 1
    assert "## offer refused: 488 Not Acceptable Here" in out
    assert 'Warning: 399 pcscf-alg "e2ae requested but not negotiated at registration ' \
           '(TS 33.328 7.2.1 NOTE 2a)"' in out


def test_policy_file_changes_the_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--offer", ex(4), "-d", "orig", "-c",
                     "config/policy-rcs51.yaml")
    assert rc == 0  # NOTE 2a: e2e under the RCS policy
    assert "m=audio 49170 RTP/SAVP" in out and "e2ae_not_registered=e2e" in out
    rc, out, _ = run(capsys, "--offer", ex(4), "-d", "orig", "-c",
                     "config/policy-lawful-intercept.yaml", "--subscriber", "sip:a@b")
    assert rc == 0 and "m=audio 30000 RTP/AVP" in out and "m=message 30010 TCP/MSRP" in out


def test_bare_sdp_from_stdin_and_lf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import io

    sdp = b"v=0\no=- 1 1 IN IP4 192.0.2.99\ns=-\nc=IN IP4 192.0.2.99\nt=0 0\n" \
          b"m=audio 20000 RTP/AVP 0\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(sdp)))
    rc, out, _ = run(capsys, "--offer", "-", "-d", "term", "--ue", "rtp", "--anchor-all")
    assert rc == 0 and "m=audio 40000 RTP/SAVP 0" in out


def test_config_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  e2ae_not_registered: maybe\n")
    offer = tmp_path / "o.sdp"
    offer.write_text("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n")
    rc, _, err = run(capsys, "--offer", str(offer), "-d", "orig", "-c", str(bad))
    assert rc == 2 and "policy.e2ae_not_registered" in err
    rc, _, err = run(capsys, "--offer", str(tmp_path / "missing"), "-d", "orig")
    assert rc == 2 and "missing" in err
    notyaml = tmp_path / "x.yaml"
    notyaml.write_text("policy: [unclosed\n")
    rc, _, err = run(capsys, "--offer", str(offer), "-d", "orig", "-c", str(notyaml))
    assert rc == 2 and "not valid YAML" in err
    with pytest.raises(SystemExit):
        sdp_cli.main(["sdp", "--offer", str(offer), "-d", "orig", "--ue", "sip"])
    garbage = tmp_path / "g.sdp"
    garbage.write_text("hello\r\n")
    rc, out, _ = run(capsys, "--offer", str(garbage), "-d", "orig")
    assert rc == 1 and "SDP syntax error" in out


def test_add_subparser_wires_into_a_parent_parser() -> None:
    parser = argparse.ArgumentParser(prog="pcscf-alg")
    sub = parser.add_subparsers(dest="command")
    sdp_cli.add_subparser(sub)
    args = parser.parse_args(["sdp", "--offer", "x", "-d", "orig", "--ue", "rtp"])
    assert args.func is sdp_cli.run and args.ue == frozenset({"rtp"})


def test_runs_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pcscf_alg.sdp_cli", "sdp", "--offer", ex(7), "-d", "term"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "e2ae support for RTP not established" in proc.stdout
