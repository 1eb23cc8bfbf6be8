"""The optional mypyc build of the sans-IO core (`pcscf_alg._accel`): used only when it matches
the sources, and it behaves exactly like the pure-Python modules it replaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcscf_alg import _accel
from tests.spec_examples import spec_examples

ROOT = Path(__file__).resolve().parents[2]


def _manifest(tmp_path: Path, **change: str) -> Path:
    """A manifest in `tmp_path` describing a build of the current sources (dummy files)."""
    modules = {}
    for name in _accel.MODULES:
        file = name + _accel._ext_suffix()
        (tmp_path / file).write_bytes(b"")
        modules[name] = {"sha256": _accel._digest(_accel._source(name)), "file": file}
    for name, digest in change.items():
        modules[name]["sha256"] = digest
    (tmp_path / "rt.so").write_bytes(b"")
    out = tmp_path / "manifest.json"
    out.write_text(json.dumps({"ext_suffix": _accel._ext_suffix(), "modules": modules,
                               "runtime": {"abc__mypyc": "rt.so"}}))
    return out


def test_a_build_of_the_current_sources_is_served(tmp_path: Path) -> None:
    files = _accel._fresh_build(_manifest(tmp_path))
    assert files is not None
    assert set(files) == {*_accel.MODULES, "abc__mypyc"}
    assert files["pcscf_alg.sdp.model"] == tmp_path / ("pcscf_alg.sdp.model"
                                                        + _accel._ext_suffix())


def test_a_stale_build_is_ignored(tmp_path: Path) -> None:
    # One edited source is enough for the whole build to be ignored: compiled modules call
    # each other directly, so a mix of compiled and edited pure modules is never served.
    assert _accel._fresh_build(_manifest(tmp_path, **{"pcscf_alg.e2ae.plan": "0" * 64})) is None


def test_a_build_for_another_interpreter_or_incomplete_is_ignored(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    data = json.loads(m.read_text())
    data["ext_suffix"] = ".cpython-312-x86_64-linux-gnu.so"
    m.write_text(json.dumps(data))
    assert _accel._fresh_build(m) is None
    m = _manifest(tmp_path)
    (tmp_path / "rt.so").unlink()
    assert _accel._fresh_build(m) is None
    m.write_text("{not json")
    assert _accel._fresh_build(m) is None
    assert _accel._fresh_build(tmp_path / "missing.json") is None


def _status(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pcscf_alg._accel", "status"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_pure_switch_turns_the_build_off() -> None:
    assert "compiled: 0/" in _status({_accel.PURE_ENV: "1"})


COMPILED = _accel._fresh_build() is not None and os.environ.get(_accel.PURE_ENV) is None


@pytest.mark.skipif(not COMPILED, reason="no fresh mypyc build here (make builds one)")
def test_a_fresh_build_is_in_use() -> None:
    assert _accel.active() == list(_accel.MODULES)
    assert f"compiled: {len(_accel.MODULES)}/" in _status({})


_GOLDEN = """
import json, sys
from tests.unit.test_e2ae_fastpath import _run
from tests.unit.test_e2ae_golden import CASES
from pcscf_alg import _accel
json.dump({"compiled": _accel.active(), "runs": [repr(_run(c)) for c in CASES]}, sys.stdout)
"""


@pytest.mark.skipif(not COMPILED, reason="no fresh mypyc build here (make builds one)")
def test_compiled_engine_equals_pure_engine_on_every_golden_case() -> None:
    # Same SDP bytes, decisions, media plans, errors and key draws, case by case.
    runs = {}
    for pure in ("0", "1"):
        out = subprocess.run(
            [sys.executable, "-c", _GOLDEN], cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, _accel.PURE_ENV: pure}, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        runs[pure] = json.loads(out.stdout)
    assert runs["0"]["compiled"] == list(_accel.MODULES)
    assert runs["1"]["compiled"] == []
    assert len(runs["0"]["runs"]) > 40
    for compiled, pure in zip(runs["0"]["runs"], runs["1"]["runs"], strict=True):
        assert compiled == pure


_SIP = """
import json, sys
from pathlib import Path
from pcscf_alg import _accel
from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.message import parse_message
from pcscf_alg.sip.body import locate_sdp, BodyError
out = []
for f in sys.argv[1:]:
    data = Path(f).read_bytes()
    try:
        msg = parse_message(data)
    except SipParseError as e:
        out.append(["error", e.status, str(e)])
        continue
    try:
        sdp = repr(locate_sdp(msg.headers.get("content-type"), msg.body))
    except BodyError as e:
        sdp = "body error: " + str(e)
    out.append([msg.serialize().decode("utf-8", "surrogateescape"), repr(msg.method),
                repr(msg.uri), sdp])
json.dump({"compiled": _accel.active(), "runs": out}, sys.stdout)
"""


@pytest.mark.skipif(not COMPILED, reason="no fresh mypyc build here (make builds one)")
def test_compiled_sip_layer_equals_pure_on_torture_and_spec_messages() -> None:
    # RFC 4475's 49 torture messages and the spec's examples: the same bytes out, the same
    # errors (status and reason), the same routing fields and SDP part, in both forms.
    files = sorted(str(p) for p in (ROOT / "tests/unit/sip/data/rfc4475").glob("*.dat"))
    files += [str(p) for p in spec_examples()]
    assert len(files) == 59
    runs = {}
    for pure in ("0", "1"):
        out = subprocess.run(
            [sys.executable, "-c", _SIP, *files], cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, _accel.PURE_ENV: pure}, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        runs[pure] = json.loads(out.stdout)
    assert "pcscf_alg.sip.message" in runs["0"]["compiled"] and runs["1"]["compiled"] == []
    assert sum(r[0] == "error" for r in runs["0"]["runs"]) > 5  # invalid ones are in there
    for compiled, pure in zip(runs["0"]["runs"], runs["1"]["runs"], strict=True):
        assert compiled == pure
