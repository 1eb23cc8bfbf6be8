"""Worker processes (pcscf_alg/workers.py): the config keys, each worker's ports and gateway
slice, the restart backoff, the supervisor's check of the shared ports. The processes
themselves run in tests/e2e/test_workers.py."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.agw.config import parse_agw_config
from pcscf_alg.alg import Pcscf
from pcscf_alg.config import Config, WorkerPorts, parse_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.mediaplan import Side
from pcscf_alg.registration import InMemoryRegistrationStore
from pcscf_alg.sip.headers import SipUri
from pcscf_alg.workers import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    STABLE_S,
    Supervisor,
    WorkerSlot,
    agw_slice,
    check_config,
    restart_delay,
    split_range,
)

BASE: dict[str, Any] = {
    "sip": {
        "access": {"host": "127.0.0.1", "port": 5060},
        "core": {"host": "127.0.0.1", "port": 5070},
        "next_hop": "sip:127.0.0.1:5080;lr",
        "workers": 2,
    },
    "registration": {"store": {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}},
}


def cfg(**sections: Any) -> Config:
    data = copy.deepcopy(BASE)
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return parse_config(data, "f.yaml")


def error(**sections: Any) -> str:
    with pytest.raises(ConfigError) as e:
        check_config(cfg(**sections))
    return str(e.value)


def test_defaults_one_worker_and_own_ports_after_the_listeners() -> None:
    data = copy.deepcopy(BASE)
    del data["sip"]["workers"], data["registration"]
    c = parse_config(data, "f.yaml")
    assert c.sip.workers == 1
    assert c.sip.worker_ports is None  # derived, not written
    assert c.sip.worker_port_bases() == WorkerPorts(5061, 5071)


def test_several_workers_need_the_shared_store() -> None:
    with pytest.raises(ConfigError) as e:
        cfg(registration={"store": {"backend": "memory"}})
    assert str(e.value).startswith("f.yaml: sip.workers: 2 workers need a shared registration")


@pytest.mark.parametrize(
    ("sip", "key", "why"),
    [
        ({"workers": 0}, "sip.workers", "between 1 and 64"),
        ({"workers": 65}, "sip.workers", "between 1 and 64"),
        ({"workers": True}, "sip.workers", "integer"),
        ({"workers": 10}, "sip.workers", "include sip.core.port 5070"),
        ({"worker_ports": {"access": 5069}}, "sip.worker_ports.access", "sip.core.port"),
        ({"worker_ports": {"core": 5059}}, "sip.worker_ports.core", "sip.access.port"),
        ({"worker_ports": {"access": 6000, "core": 6001}}, "sip.worker_ports.core", "overlap"),
        ({"worker_ports": {"access": 65535}}, "sip.worker_ports.access", "past 65535"),
        ({"worker_ports": {"udp": 6000}}, "sip.worker_ports.udp", "unknown key"),
    ],
)
def test_worker_keys_are_validated(sip: dict[str, Any], key: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(sip=sip)
    assert f"f.yaml: {key}:" in str(e.value) and why in str(e.value)


def test_own_ports_on_another_address_may_reuse_the_numbers() -> None:
    c = cfg(sip={"core": {"host": "127.0.0.2", "port": 5070}, "worker_ports": {"access": 5070}})
    assert c.sip.worker_port_bases() == WorkerPorts(5070, 5071)


def test_admin_ports_of_the_workers_are_checked() -> None:
    with pytest.raises(ConfigError) as e:
        cfg(admin={"enabled": True, "port": 5059})
    assert "f.yaml: admin.port:" in str(e.value) and "overlap SIP ports" in str(e.value)
    with pytest.raises(ConfigError) as e:
        cfg(admin={"enabled": True, "port": 65535})
    assert "past 65535" in str(e.value)


def test_worker_slot_names_its_own_ports_and_knows_all() -> None:
    c = cfg(sip={"workers": 3, "worker_ports": {"access": 6000, "core": 7000}})
    slot = WorkerSlot(2, 3)
    assert slot.own(c.sip) == {Side.ACCESS: ("127.0.0.1", 6002), Side.CORE: ("127.0.0.1", 7002)}
    assert sorted(p for _, p in slot.all_own(c.sip)) == [6000, 6001, 6002, 7000, 7001, 7002]
    assert slot.admin_port(5090) == 5092


def test_a_worker_names_its_own_ports_and_every_workers_are_ours() -> None:
    c = cfg(sip={"worker_ports": {"access": 6000, "core": 7000}})
    slot = WorkerSlot(1, 2)
    p = Pcscf(
        c,
        InMemoryRegistrationStore(),
        lambda *a: None,
        addr=slot.own(c.sip),
        also_ours=slot.all_own(c.sip),
    )
    assert p.addr[Side.CORE] == ("127.0.0.1", 7001)
    assert p.registrar.core == ("127.0.0.1", 7001)  # Path names the own core port
    for port in (5060, 5070, 6000, 6001, 7000, 7001):  # listeners and every worker
        assert p._is_us(SipUri.parse(f"sip:127.0.0.1:{port};lr"))
    assert not p._is_us(SipUri.parse("sip:127.0.0.1:6002;lr"))


def test_split_range_gives_disjoint_slices_of_whole_rtp_pairs() -> None:
    slices = [split_range(30001, 30100, i, 3, pairs=True) for i in range(3)]
    assert slices == [(30002, 30033), (30034, 30065), (30066, 30097)]
    assert [split_range(40000, 40009, i, 3, pairs=False) for i in range(3)] == [
        (40000, 40002),
        (40003, 40005),
        (40006, 40008),
    ]
    assert split_range(30000, 30002, 0, 2, pairs=True) is None
    assert split_range(40000, 40000, 0, 2, pairs=False) is None


def test_agw_slice_and_its_errors() -> None:
    agw = parse_agw_config({"rtp_ports": [30000, 30099], "msrp_ports": [40000, 40099]}, "f")
    s = agw_slice(agw, WorkerSlot(1, 2), "f")
    assert (s.rtp_ports, s.msrp_ports) == ((30050, 30099), (40050, 40099))
    msg = error(agw={"rtp_ports": [30000, 30002]})
    assert "f.yaml: sip.workers:" in msg and "agw.rtp_ports" in msg
    msg = error(agw={"msrp_ports": [40000, 40000]})
    assert "agw.msrp_ports" in msg


def test_own_ports_must_stay_out_of_the_gateway_ranges() -> None:
    msg = error(sip={"worker_ports": {"access": 30010}})
    assert msg.startswith("f.yaml: sip.worker_ports.access:") and "agw.rtp_ports" in msg
    # on another address they may
    check_config(cfg(sip={"worker_ports": {"access": 30010}}, agw={"access_host": "127.0.0.2"}))


def test_restart_backoff_doubles_and_a_stable_worker_ends_the_streak() -> None:
    delays = []
    failures = 0
    for _ in range(12):
        delay, failures = restart_delay(failures, None)
        delays.append(delay)
    assert delays[:3] == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S]
    assert delays[-1] == BACKOFF_MAX_S and failures == 12
    assert restart_delay(failures, STABLE_S) == (BACKOFF_FIRST_S, 1)
    assert restart_delay(failures, STABLE_S / 2)[0] == BACKOFF_MAX_S


def test_supervisor_refuses_shared_ports_someone_holds(tmp_path: Path) -> None:
    """Even a socket with SO_REUSEPORT (which the workers would silently join) is found."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        c = cfg(sip={"access": {"host": "127.0.0.1", "port": port}, "tcp": False})
        sup = Supervisor(c)
        try:
            with pytest.raises(ConfigError) as e:
                sup._probe_ports()
            assert f"f.yaml: sip.access: UDP 127.0.0.1:{port}:" in str(e.value)
        finally:
            sup.dir.rmdir()


def test_status_and_reload_reach_every_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pcscf-alg status` merges the calls of every worker (admin.port + i); `reload` posts to
    each and fails when one fails."""
    from pcscf_alg import cli

    asked: list[tuple[str, str, bool]] = []

    def fake(base: str, path: str, *, post: bool = False, timeout: float = 10.0) -> Any:
        asked.append((base, path, post))
        port = int(base.rsplit(":", 1)[1])
        if path == "/stats":
            return {"process": {"pid": 1, "worker": port - 5090, "workers": 3}}
        if path == "/registrations":
            return [{"impu": "sip:a@x", "contact": "sip:a@1.2.3.4", "expires_in": 5}]
        if path == "/calls":
            return [{"call_id": f"c{port}", "leg": "originating", "streams": []}]
        return {"ok": port != 5092, "error": "bad", "applied": [], "restart_needed": []}

    monkeypatch.setattr(cli, "_admin_request", fake)
    assert cli.worker_admins("http://127.0.0.1:5091") == [
        "http://127.0.0.1:5090",
        "http://127.0.0.1:5091",
        "http://127.0.0.1:5092",
    ]
    assert cli.main(["status", "--admin", "http://127.0.0.1:5091"]) == 0
    out = capsys.readouterr().out
    assert "Bindings: 1" in out and "Calls: 3" in out
    assert all(f"c{p}" in out for p in (5090, 5091, 5092))
    asked.clear()
    assert cli.main(["reload", "--admin", "http://127.0.0.1:5090"]) == 1
    assert [a for a in asked if a[2]] == [
        (f"http://127.0.0.1:{p}", "/reload", True) for p in (5090, 5091, 5092)
    ]


def test_status_of_a_single_process_asks_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from pcscf_alg import cli

    monkeypatch.setattr(
        cli,
        "_admin_request",
        lambda base, path, **k: {"process": {"pid": 1, "worker": None, "workers": 1}},
    )
    assert cli.worker_admins("http://127.0.0.1:5090") == ["http://127.0.0.1:5090"]
