"""The SIP-level golden table (issue 12 deliver 4): one test per case file under
tests/data/sip_golden/ (format: the README there; harness: tests/golden_harness.py).

Each case runs the proxy core and the call layer with no sockets, no asyncio and a fake clock,
and checks every SIP message and gateway operation that leaves the P-CSCF, then that nothing is
left behind. The Makefile runs this file on the compiled core and again on the pure one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden_harness import CASES_DIR, CaseError, case_files, load_case, run_case

CASES = case_files()


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    run_case(path)


def test_the_table_has_at_least_60_cases_each_with_a_title_and_a_clause() -> None:
    assert len(CASES) >= 60
    for path in CASES:
        case = load_case(path)
        assert case.title and case.spec and case.steps, path.name


def test_a_wrong_byte_fails_the_case_with_a_diff_that_shows_no_key(tmp_path: Path) -> None:
    # The harness must be able to fail: take a case with our keys in it, change one byte of
    # an expected message, and the run fails naming the step, with the key redacted.
    src = (CASES_DIR / "010-orig-e2ae-rtp-bye-caller.case").read_text()
    bad = src.replace("Max-Forwards: 69", "Max-Forwards: 68", 1)
    assert bad != src
    path = tmp_path / "broken.case"
    path.write_text(bad)
    with pytest.raises(CaseError) as err:
        run_case(path)
    text = str(err.value)
    assert "broken.case:" in text and "-Max-Forwards: 68" in text and "+Max-Forwards: 69" in text
    assert "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC" not in text


def test_output_the_case_does_not_expect_fails_it(tmp_path: Path) -> None:
    src = (CASES_DIR / "001-register-mediasec.case").read_text()
    # drop the last expected message: the run must report it as unexpected output
    head, _, _ = src.rpartition("\n< ")
    path = tmp_path / "short.case"
    path.write_text(head + "\n")
    with pytest.raises(CaseError, match="does not expect"):
        run_case(path)
