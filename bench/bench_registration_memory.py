"""Memory per registration binding in `InMemoryRegistrationStore` (tracemalloc).

Builds N realistic bindings (IMPU, contact with a distinct IPv4 flow, its own e2ae flags object,
the Security-Client of spec example 01, one Path, one Service-Route, two associated identities,
an empty call-id set), all indexes and the expiry heap included, and reports bytes per binding.
The Security-Client is parsed once: `register_from_200` keeps only its mediasec entries, which
the parser returns as shared immutable instances, so per-REGISTER parsing retains nothing more
(and tracemalloc makes parsing 100,000 headers slow). Then times the O(1) look-ups. Run:

    .venv/bin/python bench/bench_registration_memory.py [N]

The last line is meant to be pasted into the README design notes.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcscf_alg.registrar import indications_from_mechanisms, register_from_200
from pcscf_alg.registration import Flow, InMemoryRegistrationStore
from pcscf_alg.sip.secagree import parse_security_header

SECURITY_CLIENT = (
    "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=41110;port-s=41111;prot=esp;"
    "spi-c=11111111;spi-s=22222222, sdes-srtp;mediasec, msrp-tls;mediasec"
)


def flow_of(i: int) -> Flow:
    return Flow("udp", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 40000 + (i % 20000))


def build(store: InMemoryRegistrationStore, n: int) -> None:
    mechs = parse_security_header([SECURITY_CLIENT])
    for i in range(n):
        msisdn = f"+4915{i:09d}"
        flow = flow_of(i)
        ip, port = flow.host, flow.port
        flags = indications_from_mechanisms(mechs, True, True)
        register_from_200(
            store,
            impu=f"sip:{msisdn}@ims.mnc001.mcc262.3gppnetwork.org",
            contact=f'<sip:{msisdn}@{ip}:{port}>;+sip.instance="<urn:gsma:imei:{i:015d}>"',
            flow=flow,
            flags=flags,
            expires=600_000,
            now=1000.0 + i * 1e-3,
            mechanisms=mechs,
            # Distinct string objects per binding, as the SIP parser produces them.
            path=(f"<sip:term@pcscf{i % 1}.ims.mnc001.mcc262.3gppnetwork.org;lr>",),
            service_route=(f"<sip:orig@scscf{i % 1}.ims.mnc001.mcc262.3gppnetwork.org;lr>",),
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
        "tracemalloc; all indexes and the expiry heap included)"
    )
    flows = [flow_of(i) for i in range(0, n, max(1, n // 10_000))]
    contacts = [b.contact for b in store.bindings()[:: max(1, n // 10_000)]]
    t0 = time.perf_counter()
    for f in flows:
        store.by_flow(f)
    t1 = time.perf_counter()
    for c in contacts:
        store.by_contact(c)
    t2 = time.perf_counter()
    print(
        f"look-ups at {n:,} bindings: by_flow {(t1 - t0) / len(flows) * 1e6:.2f} us, "
        f"by_contact {(t2 - t1) / len(contacts) * 1e6:.2f} us (includes contact_key parsing)"
    )


if __name__ == "__main__":
    main()
