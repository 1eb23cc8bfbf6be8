"""Memory per registration binding in `InMemoryRegistrationStore` (tracemalloc).

Builds N realistic bindings (IMPU, contact with a distinct IPv4 flow, e2ae flags, the three
Security-Client mechanisms of spec example 01 parsed per binding, one Path, one Service-Route,
two associated identities, an empty call-id set), all indexes and the expiry heap included,
and reports bytes per binding. Run:

    .venv/bin/python bench/bench_registration_memory.py [N]

The last line is meant to be pasted into the README design notes.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcscf_alg.registration import (
    Flow,
    InMemoryRegistrationStore,
    indications_from_register,
    register_from_200,
)
from pcscf_alg.sip.secagree import parse_security_header

SECURITY_CLIENT = (
    "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=41110;port-s=41111;prot=esp;"
    "spi-c=11111111;spi-s=22222222, sdes-srtp;mediasec, msrp-tls;mediasec"
)


def build(store: InMemoryRegistrationStore, n: int) -> None:
    for i in range(n):
        msisdn = f"+4915{i:09d}"
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        port = 40000 + (i % 20000)
        flags = indications_from_register([SECURITY_CLIENT], True, True)
        register_from_200(
            store,
            impu=f"sip:{msisdn}@ims.mnc001.mcc262.3gppnetwork.org",
            contact=f'<sip:{msisdn}@{ip}:{port}>;+sip.instance="<urn:gsma:imei:{i:015d}>"',
            flow=Flow("udp", ip, port),
            flags=flags,
            expires=600_000,
            now=1000.0 + i * 1e-3,
            mechanisms=parse_security_header([SECURITY_CLIENT]),
            path=("<sip:term@pcscf.ims.mnc001.mcc262.3gppnetwork.org;lr>",),
            service_route=("<sip:orig@scscf.ims.mnc001.mcc262.3gppnetwork.org;lr>",),
            associated=(
                f"sip:{msisdn}@ims.mnc001.mcc262.3gppnetwork.org",
                f"tel:{msisdn}",
            ),
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    store = InMemoryRegistrationStore()
    build(store, n)
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(store) == n
    per = (after - before) / n
    print(f"bindings: {n}")
    print(f"total retained: {(after - before) / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)")
    print(
        f"Registration store memory: {per:,.0f} bytes per binding "
        f"({n:,} bindings, CPython {sys.version_info.major}.{sys.version_info.minor}, "
        "tracemalloc; all indexes + expiry heap; each binding parses its own 3 "
        "Security-Client mechanisms)"
    )


if __name__ == "__main__":
    main()
