"""`make bench`: run every benchmark in turn and print their reports.

Each script measures pcscf-alg and its baseline side by side in the same run (ratios, not
absolute figures, are what carries from one run to the next on a shared machine). The CPS
comparison against Kamailio and rtpengine needs `apt-get install -y kamailio rtpengine-daemon
redis-server bc`; it is skipped (with a message) when they are missing, as is rtpengine in the
SRTP bench.

    .venv/bin/python -m bench.run_all [--quick] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable

BENCHES: dict[str, tuple[list[str], list[str]]] = {
    # name: (full command, quick command)
    "sip_parse": ([PY, str(HERE / "bench_sip_parse.py")],
                  [PY, str(HERE / "bench_sip_parse.py"), "--quick"]),
    "e2ae": ([PY, str(HERE / "bench_e2ae.py")], [PY, str(HERE / "bench_e2ae.py"), "--quick"]),
    "proxy_core": ([PY, "-m", "bench.bench_proxy_core"],
                   [PY, "-m", "bench.bench_proxy_core", "--calls", "500"]),
    "registration_memory": ([PY, str(HERE / "bench_registration_memory.py")],
                            [PY, str(HERE / "bench_registration_memory.py")]),
    "srtp_relay": ([PY, str(HERE / "bench_srtp_relay.py")],
                   [PY, str(HERE / "bench_srtp_relay.py"), "--rounds", "1", "--seconds", "1"]),
    "msrp_relay": ([PY, str(HERE / "bench_msrp_relay.py")],
                   [PY, str(HERE / "bench_msrp_relay.py"), "--rounds", "1", "--mbytes", "16"]),
    "cps": (["bash", str(HERE / "bench_cps.sh")], ["bash", str(HERE / "bench_cps.sh"), "4"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated subset: " + ",".join(BENCHES))
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    failed = []
    for name in names:
        full, quick = BENCHES[name]
        needs = ("sipp", "kamailio", "rtpengine", "redis-server", "bc")
        if name == "cps" and not all(shutil.which(t) for t in needs):
            print(f"== {name}: skipped (needs the Debian packages sip-tester, kamailio, "
                  "rtpengine-daemon, redis-server, bc)\n")
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(quick if args.quick else full, cwd=HERE.parent)
        print(f"== {name}: exit {rc} in {time.monotonic() - t0:.0f} s\n", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
