"""The e2ae example messages (TS 33.328 / TS 24.229 flows, one SIP message per file) that tests
and benchmarks use as data. They live in the repository (`tests/data/spec_examples/`, see the
README there): a clone needs nothing beside it, and a missing file fails a test, never skips it.
"""

from __future__ import annotations

from pathlib import Path

SPEC_EXAMPLES = Path(__file__).resolve().parent / "data" / "spec_examples"


def spec_examples(pattern: str = "*.sip") -> list[Path]:
    """The example files matching `pattern`, sorted; raises when there is none (a test that
    uses them at collection time then errors instead of running on nothing)."""
    files = sorted(SPEC_EXAMPLES.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no spec example {pattern} under {SPEC_EXAMPLES}")
    return files


def spec_example(n: int) -> Path:
    """Example number `n` (01-10)."""
    (path,) = spec_examples(f"{n:02d}_*.sip")
    return path
