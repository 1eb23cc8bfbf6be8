"""Optional mypyc build of the sans-IO hot path: the SDP model and e2ae engine (issue 4:
≤ 100 µs per offer+answer), and the SIP message layer.

Why: the e2ae rewrite of a VoLTE offer+answer costs ~105 µs on a CPython 3.11 built without
PGO/LTO, against the issue's 100 µs budget, and its cost is spread over ~300 Python and builtin
calls rather than in any loop that could be rewritten (BENCHMARKS.md, "e2ae SDP rewrite"); SIP
parsing and serialising are most of the proxy's own CPU per call. These modules are typed for
`mypy --strict` already, so mypyc compiles them unchanged into C extensions, 1.5-2× faster.
They are the only modules compiled: the ones that take bytes and return bytes on every call
(the SIP transaction layer was tried too and gained nothing). Everything else (asyncio
adapters, gateway, config) stays interpreted, where the cost is in the kernel, libsrtp or
OpenSSL.

How it stays safe:
- The compiled modules live apart from the sources, in `pcscf_alg/_compiled/`, with a manifest
  of the SHA-256 of each source they were built from. `install()` (called when `pcscf_alg` is
  imported) serves them through a meta-path finder only if every hash still matches, so an
  edited source is never shadowed by a stale build: the package silently runs the pure-Python
  modules until `make` rebuilds.
- The build is optional (`__main__.py`). Without a C compiler or Python headers, `python -m
  pcscf_alg._accel build` says what is missing and the daemon runs the same code interpreted.
- `PCSCF_ALG_PURE=1` turns it off (`make test` runs these modules' unit tests that way too, so
  both forms stay tested).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

PACKAGE_DIR: Final = Path(__file__).resolve().parent.parent
COMPILED_DIR: Final = PACKAGE_DIR / "_compiled"
MANIFEST: Final = COMPILED_DIR / "manifest.json"

# The sans-IO hot path: the SDP model and attribute parsers, the e2ae engine, and the SIP
# message parser/serialiser with the header and multipart-body helpers it calls.
MODULES: Final = (
    "pcscf_alg.sdp.attrs",
    "pcscf_alg.sdp.crypto",
    "pcscf_alg.sdp.fingerprint",
    "pcscf_alg.sdp.model",
    "pcscf_alg.sdp.msrp",
    "pcscf_alg.e2ae.records",
    "pcscf_alg.e2ae.helpers",
    "pcscf_alg.e2ae.rewrite",
    "pcscf_alg.e2ae.plan",
    "pcscf_alg.e2ae.offer",
    "pcscf_alg.e2ae.answer",
    "pcscf_alg.sip.headers",
    "pcscf_alg.sip.message",
    "pcscf_alg.sip.body",
)

PURE_ENV: Final = "PCSCF_ALG_PURE"


def _source(module: str) -> Path:
    return PACKAGE_DIR.parent.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ext_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Serves exactly the modules of a fresh build (and mypyc's shared runtime module)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def _fresh_build(manifest_file: Path = MANIFEST) -> dict[str, Path] | None:
    """module name -> compiled file, if the build matches the sources and this interpreter."""
    compiled_dir = manifest_file.parent
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("ext_suffix") != _ext_suffix():
        return None
    modules = manifest.get("modules")
    if not isinstance(modules, dict) or set(modules) != set(MODULES):
        return None
    files: dict[str, Path] = {}
    try:
        for name in MODULES:
            entry = modules[name]
            if entry["sha256"] != _digest(_source(name)):
                return None
            files[name] = compiled_dir / entry["file"]
        for name, file in manifest["runtime"].items():
            files[name] = compiled_dir / file
    except (OSError, KeyError, TypeError):
        return None
    if not all(f.is_file() for f in files.values()):
        return None
    return files


def install() -> None:
    """Serve the compiled modules if a fresh build exists and PCSCF_ALG_PURE is not set."""
    if os.environ.get(PURE_ENV, "").lower() in ("1", "true", "yes"):
        return
    if any(isinstance(f, _CompiledFinder) for f in sys.meta_path):
        return
    files = _fresh_build()
    if files is not None:
        sys.meta_path.insert(0, _CompiledFinder(files))


def active() -> list[str]:
    """The modules of MODULES that are running compiled (imports them)."""
    out = []
    for name in MODULES:
        module = importlib.import_module(name)
        if not (getattr(module, "__file__", None) or "").endswith(".py"):
            out.append(name)
    return out
