"""The one-pass originating rewrite (`e2ae.offer._offer_orig_rtp`, `e2ae.answer._answer_orig_rtp`)
must produce exactly what the general path produces: every golden case runs twice, once as
shipped and once with the fast path forced to decline, and everything observable must be equal
(SDP bytes, decisions, media plan, state, errors, and which key bytes were drawn)."""

from __future__ import annotations

from typing import Any

import pytest

from pcscf_alg import _accel, e2ae
from pcscf_alg.e2ae import answer as e2ae_answer
from pcscf_alg.e2ae import offer as e2ae_offer
from pcscf_alg.errors import SdpError
from pcscf_alg.policy import load_policy
from tests.unit.sdp.helpers import counter_rng
from tests.unit.test_e2ae_golden import CASES, Case, flags, reserve, sdp

# Compiled (mypyc) modules call each other directly: patching a module attribute cannot steer
# them. `make test` runs this file again with PCSCF_ALG_PURE=1, where it can.
_COMPILED = "pcscf_alg.e2ae.offer" in _accel.active()
needs_pure = pytest.mark.skipif(_COMPILED, reason="needs the pure-Python engine (PCSCF_ALG_PURE=1)")


def _run(case: Case) -> tuple[Any, ...]:
    policy = load_policy(case.policy, "<test>")
    drawn: list[int] = []
    rng0 = counter_rng()

    def rng(n: int) -> bytes:
        drawn.append(n)
        return rng0(n)

    try:
        plan = e2ae.plan_offer(
            sdp(case.offer, case.eol),
            case.direction,
            flags(case.flags),
            policy,
            "sip:+1@x",
            anchor_all=case.anchor_all,
        )
        res = e2ae.apply_offer(plan, reserve(plan.requests), rng)
    except SdpError as e:
        return ("offer error", e.reason)
    if case.answer is None:
        return (res.sdp, res.decisions, drawn)
    try:
        ans = e2ae.apply_answer(res.state, sdp(case.answer, case.eol), rng)
    except SdpError as e:
        return (res.sdp, res.decisions, "answer error", e.reason, drawn)
    return (res.sdp, res.decisions, ans.sdp, ans.decisions, ans.plan, drawn)


@needs_pure
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fast_path_equals_general_path(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = _run(case)
    monkeypatch.setattr(e2ae_offer, "_offer_orig_rtp", lambda *a, **k: None)
    monkeypatch.setattr(e2ae_answer, "_answer_orig_rtp", lambda *a, **k: None)
    assert _run(case) == shipped


@needs_pure
def test_fast_path_is_taken_for_a_plain_volte_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    # guard against the equality test above passing only because the fast path never runs
    taken = []
    real_offer, real_answer = e2ae_offer._offer_orig_rtp, e2ae_answer._answer_orig_rtp

    def spy_offer(*a: Any, **k: Any) -> Any:
        r = real_offer(*a, **k)
        taken.append(("offer", r is not None))
        return r

    def spy_answer(*a: Any, **k: Any) -> Any:
        r = real_answer(*a, **k)
        taken.append(("answer", r is not None))
        return r

    monkeypatch.setattr(e2ae_offer, "_offer_orig_rtp", spy_offer)
    monkeypatch.setattr(e2ae_answer, "_answer_orig_rtp", spy_answer)
    for case in CASES:
        _run(case)
    assert ("offer", True) in taken and ("answer", True) in taken
