"""CPU instructions per e2ae exchange, counted by valgrind (deterministic where wall-clock
minima on a shared machine move by +-10 %): used for the rounds in BENCHMARKS.md.

    .venv/bin/python bench/e2ae_instructions.py            # VoLTE, 04, 07+09; ~1 min
    .venv/bin/python bench/e2ae_instructions.py volte      # one case

Each case runs twice under `valgrind --tool=cachegrind` (0 and 400 exchanges after the same
warm-up, PYTHONHASHSEED=0); the difference over 400 is the figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
N = 400


def _child(case: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    import bench_e2ae as b

    ex04, ex07, ex09 = b._body("04"), b._body("07"), b._body("09")
    fns = {
        "volte": lambda: b.orig_exchange(b.VOLTE_AUDIO, b.VOLTE_AUDIO_ANSWER, b.RES1),
        "04": lambda: b.orig_exchange(ex04, b.CORE_ANSWER_04, b.RES2),
        "07+09": lambda: b.term_exchange(ex07, ex09, b.RES2),
    }
    fn = fns[case]
    for _ in range(20):
        fn()
    for _ in range(n):
        fn()


def _count(case: str, n: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--child", case, str(n)],
        capture_output=True, text=True, env=env, check=True,
    ).stderr
    m = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if m is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out}")
    return int(m.group(1).replace(",", ""))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]))
        return
    cases = sys.argv[1:] or ["volte", "04", "07+09"]
    sys.path.insert(0, str(HERE.parent))
    from pcscf_alg import _accel

    engine = "compiled" if _accel.active() else "pure Python"
    print(f"# instructions per e2ae exchange (Python {sys.version.split()[0]}, {sys.executable}, "
          f"{engine} engine)")
    for case in cases:
        per = (_count(case, N) - _count(case, 0)) // N
        print(f"{case:6s} {per:>9,}")


if __name__ == "__main__":
    main()
