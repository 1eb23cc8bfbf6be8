"""`python -m pcscf_alg._accel build [--force] | status`: compile the sans-IO core (SIP message
layer, SDP model, e2ae engine) with mypyc, or say whether the compiled build is in use (see the
package docstring for why and how)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from . import (
    COMPILED_DIR,
    MANIFEST,
    MODULES,
    PACKAGE_DIR,
    _digest,
    _ext_suffix,
    _fresh_build,
    _source,
    active,
    install,
)


def build(force: bool = False) -> int:
    """Compile MODULES with mypyc into COMPILED_DIR; 0 on success or when already fresh."""
    if not force and _fresh_build() is not None:
        print("pcscf-alg: compiled core is up to date")
        return 0
    missing = []
    cc = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        missing.append(f"a C compiler ({cc}; Debian: gcc)")
    if not Path(sysconfig.get_paths()["include"], "Python.h").is_file():
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        missing.append(f"Python headers (Debian: python{version}-dev)")
    try:
        from mypyc.build import mypycify
        from setuptools import setup
    except ImportError:
        missing.append("mypy/mypyc and setuptools (pip install -e '.[dev]')")
    if missing:
        print("pcscf-alg: core not compiled, running it as pure Python; missing: "
              + ", ".join(missing))
        return 1
    sources = {name: _source(name) for name in MODULES}
    with tempfile.TemporaryDirectory(prefix="pcscf-accel-") as tmp:
        out = Path(tmp, "lib")
        cwd = os.getcwd()
        os.chdir(PACKAGE_DIR.parent)  # mypyc names modules by their path from here
        try:
            digests = {name: _digest(path) for name, path in sources.items()}
            exts = mypycify(
                [str(p.relative_to(PACKAGE_DIR.parent)) for p in sources.values()],
                opt_level="3",
                target_dir=str(Path(tmp, "c")),
            )
            setup(
                name="pcscf-alg-compiled",
                ext_modules=exts,
                script_args=["-q", "build_ext", "--build-lib", str(out),
                             "--build-temp", str(Path(tmp, "obj"))],
            )
        except SystemExit as e:  # mypyc and setuptools report failure by exiting
            print(f"pcscf-alg: core not compiled ({e}), running it as pure Python")
            return 1
        except Exception as e:  # any other build failure also leaves the pure core
            print(f"pcscf-alg: core not compiled ({type(e).__name__}: {e}), running it as "
                  "pure Python")
            return 1
        finally:
            os.chdir(cwd)
        if any(_digest(p) != digests[n] for n, p in sources.items()):
            print("pcscf-alg: sources changed during the build; run it again")
            return 1
        suffix = _ext_suffix()
        shutil.rmtree(COMPILED_DIR, ignore_errors=True)
        COMPILED_DIR.mkdir()
        modules = {}
        for name in MODULES:
            rel = Path(*name.split(".")).with_suffix("").as_posix() + suffix
            target = name + suffix
            shutil.copy2(out / rel, COMPILED_DIR / target)
            modules[name] = {"sha256": digests[name], "file": target}
        # mypyc's shared runtime: the top-level extension(s) the module shims import.
        runtime = {}
        for f in out.glob("*" + suffix):
            name = f.name[: -len(suffix)]
            shutil.copy2(f, COMPILED_DIR / f.name)
            runtime[name] = f.name
        MANIFEST.write_text(json.dumps(
            {"ext_suffix": suffix, "modules": modules, "runtime": runtime}, indent=1) + "\n")
    print(f"pcscf-alg: compiled {len(MODULES)} core modules with mypyc into {COMPILED_DIR}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:
        return build(force="--force" in args)
    if args[:1] == ["status"]:
        install()
        names = active()
        print(f"compiled: {len(names)}/{len(MODULES)} core modules"
              + ("" if names else " (pure Python)"))
        return 0
    print("usage: python -m pcscf_alg._accel build [--force] | status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
