"""AgwConfig validation, the port pools and the gateway certificate."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.agw.certs import (
    CERT_FILE,
    KEY_FILE,
    fingerprint_of,
    load_or_create,
    select_fingerprints,
)
from pcscf_alg.agw.config import AgwConfig, parse_agw_config
from pcscf_alg.agw.ports import PortPool
from pcscf_alg.errors import ConfigError, GatewayError
from pcscf_alg.mediaplan import Fingerprint


def test_defaults_match_the_documented_section() -> None:
    cfg = parse_agw_config(None, "pcscf.yaml")
    assert cfg == AgwConfig()
    assert cfg.rtp_ports == (30000, 39999) and cfg.msrp_ports == (40000, 40999)
    assert cfg.media_timeout_s == 60.0 and str(cfg.cert_dir) == "var/agw"


def test_full_section() -> None:
    cfg = parse_agw_config(
        {
            "access_host": "::1",
            "core_host": "10.0.0.1",
            "rtp_ports": [31000, 31999],
            "msrp_ports": [41000, 41099],
            "cert_dir": "/tmp/x",
            "media_timeout_s": 2.5,
            "tls_handshake_timeout_s": 1,
            "msrp_idle_timeout_s": 10,
        },
        "f.yaml",
    )
    assert cfg.access_host == "::1" and cfg.rtp_ports == (31000, 31999)
    assert cfg.media_timeout_s == 2.5 and cfg.tls_handshake_timeout_s == 1.0


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"acces_host": "1.2.3.4"}, "agw.acces_host"),
        ({"access_host": "localhost"}, "agw.access_host"),
        ({"core_host": 5}, "agw.core_host"),
        ({"rtp_ports": [30001, 30001]}, "agw.rtp_ports"),
        ({"rtp_ports": [40000, 30000]}, "agw.rtp_ports"),
        ({"rtp_ports": [30000]}, "agw.rtp_ports"),
        ({"rtp_ports": [80, 90]}, "agw.rtp_ports"),
        ({"msrp_ports": [40000, "x"]}, "agw.msrp_ports"),
        ({"msrp_ports": [True, 40000]}, "agw.msrp_ports"),
        ({"cert_dir": ""}, "agw.cert_dir"),
        ({"media_timeout_s": 0}, "agw.media_timeout_s"),
        ({"media_timeout_s": "60"}, "agw.media_timeout_s"),
        ({"tls_handshake_timeout_s": -1}, "agw.tls_handshake_timeout_s"),
        ({"msrp_idle_timeout_s": True}, "agw.msrp_idle_timeout_s"),
    ],
)
def test_errors_name_file_and_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_agw_config(section, "pcscf.yaml")
    assert ei.value.key == key and ei.value.file == "pcscf.yaml"
    assert str(ei.value).startswith(f"pcscf.yaml: {key}: ")


def test_section_must_be_mapping() -> None:
    with pytest.raises(ConfigError, match="agw: must be a mapping"):
        parse_agw_config(["x"], "f")  # type: ignore[arg-type]


def test_rtp_pool_even_pairs_random_and_reused_late() -> None:
    pool = PortPool(30001, 30010, step=2, name="rtp")
    assert pool.capacity == 4  # 30002, 30004, 30006, 30008 (30010 has no odd partner)
    a, b = pool.alloc(), pool.alloc()
    assert {a, b} <= {30002, 30004, 30006, 30008} and a != b
    pool.free(a)
    # the freed port cools while never-used ones are left: it comes back last
    rest = [pool.alloc() for _ in range(3)]
    assert rest[-1] == a and set(rest[:2]) == {30002, 30004, 30006, 30008} - {a, b}
    with pytest.raises(GatewayError, match="no free rtp"):
        pool.alloc()
    assert pool.in_use() == {30002, 30004, 30006, 30008}


def test_pool_ports_are_not_predictable() -> None:
    """Issue 11: the next call's port must not be guessable from the last one (an attacker
    would take the MSRP port before the UE). 200 draws from 1,000 ports are not in order, and
    first draws of fresh pools differ."""
    pool = PortPool(40000, 40999, name="msrp")
    got = [pool.alloc() for _ in range(200)]
    assert len(set(got)) == 200
    assert got != sorted(got)
    firsts = {PortPool(40000, 40999).alloc() for _ in range(20)}
    assert len(firsts) > 1


def test_pool_reuses_a_freed_port_late() -> None:
    pool = PortPool(40000, 40009)
    held = [pool.alloc() for _ in range(10)]
    for p in held[:6]:
        pool.free(p)
    # drawable again only once it is in the older half of the free ports
    nxt = pool.alloc()
    assert nxt in held[:3]  # the three oldest of six freed became drawable
    assert pool.available == 5


def test_pool_double_free_refused() -> None:
    pool = PortPool(40000, 40001)
    p = pool.alloc()
    pool.free(p)
    with pytest.raises(GatewayError, match="freed but not allocated"):
        pool.free(p)
    assert pool.available == 2


def test_certificate_created_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "agw")
    assert first.fingerprint.hash_func == "sha-256" and len(first.fingerprint.digest) == 32
    assert stat.S_IMODE(os.stat(first.key_path).st_mode) == 0o600
    again = load_or_create(tmp_path / "agw")
    assert again.fingerprint == first.fingerprint
    assert fingerprint_of(again.certificate) == first.fingerprint
    pub = first.certificate.public_key()
    assert pub.curve.name == "secp256r1"  # type: ignore[union-attr]


def test_broken_certificate_is_replaced(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    (tmp_path / CERT_FILE).write_text("garbage")
    second = load_or_create(tmp_path)
    assert second.fingerprint != first.fingerprint
    (tmp_path / KEY_FILE).write_bytes(load_or_create(tmp_path / "other").key_path.read_bytes())
    third = load_or_create(tmp_path)  # key no longer matches the certificate
    assert third.fingerprint != second.fingerprint


def test_fingerprint_selection_prefers_strongest_hash() -> None:
    s256 = Fingerprint("SHA-256", b"\x01" * 32)
    s1 = Fingerprint("sha-1", b"\x02" * 20)
    s512 = Fingerprint("sha-512", b"\x03" * 64)
    assert select_fingerprints((s1, s256)) == (Fingerprint("sha-256", b"\x01" * 32),)
    assert select_fingerprints((s256, s512, s1)) == (s512,)
    with pytest.raises(GatewayError):
        select_fingerprints((Fingerprint("md5", b"\x00" * 16),))
    with pytest.raises(GatewayError):
        select_fingerprints((Fingerprint("sha-256", b"\x00" * 20),))  # wrong length
    with pytest.raises(GatewayError):
        select_fingerprints(())
