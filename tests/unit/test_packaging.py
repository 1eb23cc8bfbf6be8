"""Packaging metadata a newcomer (and pip) relies on: the licence in PEP 639 form, a setuptools
that understands it, and a wheel that ships the daemon only (not examples/, tests/, bench/)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_license_is_an_spdx_expression_with_its_file() -> None:
    project = _pyproject()["project"]
    # PEP 639: a string holding an SPDX expression; the old table form ({text = ...}) is what
    # setuptools >= 77 warns about on every install.
    lic = project["license"]
    assert isinstance(lic, str)
    assert canonicalize_license_expression(lic) == lic == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text
    # PEP 639 forbids License :: classifiers beside a license expression
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]


def test_build_requires_a_setuptools_that_reads_pep_639() -> None:
    reqs = [Requirement(r) for r in _pyproject()["build-system"]["requires"]]
    st = [r for r in reqs if r.name == "setuptools"]
    assert len(st) == 1
    spec = st[0].specifier
    # the string license and license-files arrived in setuptools 77.0.0
    assert spec.contains("77.0.0") and not spec.contains("76.1.0")


def test_the_venv_gets_a_setuptools_that_reads_pep_639_for_the_mypyc_build() -> None:
    # `make accel` runs setuptools from the venv in the project directory, not in build
    # isolation: the venv's own (Debian's ensurepip gives 66) must read the SPDX license too.
    reqs = [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["dev"]]
    (st,) = [r for r in reqs if r.name == "setuptools"]
    assert "77.0.0" in st.specifier and "76.9" not in st.specifier


def test_wheel_ships_the_daemon_packages_only() -> None:
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    include, exclude = find.get("include", ["*"]), find.get("exclude", [])

    # setuptools' packages.find matches dotted package names with fnmatchcase (setuptools is
    # not imported: venvs of Python >= 3.12 do not have it)
    def shipped(name: str) -> bool:
        return any(fnmatchcase(name, p) for p in include) and not any(
            fnmatchcase(name, p) for p in exclude
        )

    tops = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert {"pcscf_alg", "examples", "tests", "bench"} <= set(tops)
    assert [t for t in tops if shipped(t)] == ["pcscf_alg"]
    assert shipped("pcscf_alg.sip") and shipped("pcscf_alg.e2ae")
    # the demo and its S-CSCF stand-in live in examples/, outside the importable package
    assert (ROOT / "examples" / "demo.py").is_file()
    assert (ROOT / "examples" / "scscf.py").is_file()
    assert not (ROOT / "pcscf_alg" / "demo.py").exists()
    assert not (ROOT / "pcscf_alg" / "labtools").exists()
