"""The Redis registration store without Redis (issue 14): records and their wall-clock times,
malformed input refused, the outbox (coalescing, bound, restore), changes from other daemons,
the `registration.store` config keys, the registrar's 503 and the reload rule."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pcscf_alg.config import Config, RegistrationStoreConfig, parse_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.registrar import Refusal, RegisterCtx, Registrar
from pcscf_alg.registration import Binding, E2aeIndication, Flow, InMemoryRegistrationStore
from pcscf_alg.registration_redis import (
    MAX_RECORD_BYTES,
    RecordError,
    RedisRegistrationStore,
    binding_from_record,
    binding_record,
    decode_message,
    encode_message,
    redact_url,
)
from pcscf_alg.reload import plan_reload
from pcscf_alg.sip.message import parse_message
from pcscf_alg.sip.secagree import SecMechanism
from pcscf_alg.sip.transaction import Peer

WALL = 1_700_000_000.0  # wall clock - loop clock of "this process"


def full_binding(**kw: Any) -> Binding:
    """A Binding with every field set to something other than its default."""
    values: dict[str, Any] = {
        "impu": "sip:alice@ims.test",
        "contact": '<sip:alice@[2001:db8::10]:41111;transport=tcp>;+sip.instance="<urn:x>"',
        "flow": Flow("tcp", "2001:db8::10", 41111),
        "flags": E2aeIndication(True, False, True, True, ("dtls-srtp", "bfcp-tls")),
        "expires_at": 700.25,
        "registered_at": 100.5,
        "mechanisms": (
            SecMechanism("sdes-srtp", (("mediasec", None),)),
            SecMechanism("msrp-tls", (("mediasec", None), ("q", "0.5"))),
        ),
        "path": ("<sip:term@127.0.0.1:5070;lr>",),
        "service_route": ("<sip:orig@scscf.ims.test;lr>", "<sip:as.ims.test;lr>"),
        "associated": ("sip:alice@ims.test", "tel:+1-555-0100"),
    }
    values.update(kw)
    return Binding(**values)


# ------------------------------------------------------------------------------ records


def test_a_binding_round_trips_with_every_field() -> None:
    b = full_binding()
    b.call_ids.add("call-1")
    rec = json.loads(json.dumps(binding_record(b, WALL)))  # what Redis holds
    got = binding_from_record(rec, WALL)
    assert got == b  # every compared field: identities, flow, flags, times, lists
    assert (got.flags, got.mechanisms, got.path) == (b.flags, b.mechanisms, b.path)
    assert (got.service_route, got.associated) == (b.service_route, b.associated)
    assert got.identity_keys == b.identity_keys and got.contact_key == b.contact_key
    assert got.flags.rtp and not got.flags.msrp
    # call_ids are this process's calls: never written, empty when read
    assert "call_ids" not in json.dumps(rec) and "call-1" not in json.dumps(rec)
    assert got.call_ids == set()


def test_times_are_stored_on_the_wall_clock_and_read_back_on_the_new_loop_clock() -> None:
    b = full_binding(expires_at=700.0, registered_at=100.0)
    rec = binding_record(b, WALL)
    assert (rec["exp"], rec["reg"]) == (WALL + 700.0, WALL + 100.0)
    # Another process (or this one after a restart) whose loop clock started 5,000 s later:
    # the same wall-clock instants, hence the same time left.
    later = WALL + 5000.0
    got = binding_from_record(rec, later)
    assert got.expires_at == pytest.approx(700.0 - 5000.0)
    assert got.registered_at == pytest.approx(100.0 - 5000.0)
    now_there = 600.0 - 5000.0  # the wall instant WALL + 600 on that clock
    assert got.expires_at - now_there == pytest.approx(100.0)


def test_a_message_carries_a_set_or_a_del() -> None:
    b = full_binding()
    node, op, what = decode_message(encode_message("n1", "set", b, WALL), WALL)
    assert (node, op, what) == ("n1", "set", b)
    node, op, what = decode_message(encode_message("n2", "del", b, WALL), WALL)
    assert (node, op, what) == ("n2", "del", (b.impu, b.contact))


def _rec(**changes: Any) -> dict[str, Any]:
    rec = binding_record(full_binding(), WALL)
    for k, v in changes.items():
        if v is KeyError:
            del rec[k]
        else:
            rec[k] = v
    return rec


@pytest.mark.parametrize(
    "rec",
    [
        "a string",
        [1, 2],
        _rec(impu=KeyError),
        _rec(impu=""),
        _rec(impu=5),
        _rec(impu="sip:"),  # not a URI our parser accepts
        _rec(contact="sip:a@[::zz]"),
        _rec(flow=["sctp", "127.0.0.1", 5060]),
        _rec(flow=["udp", "127.0.0.1", 70000]),
        _rec(flow=["udp", "127.0.0.1", True]),
        _rec(flow=["udp", "[::zz]", 5060]),
        _rec(flow=["udp", "127.0.0.1"]),
        _rec(e2ae=[True, True, True]),
        _rec(e2ae=[1, 0, 1, 0]),
        _rec(other="dtls-srtp"),
        _rec(exp=float("nan")),
        _rec(exp="1700000000"),
        _rec(reg=None),
        _rec(exp=True),
        _rec(mech=[["sdes srtp", []]]),
        _rec(mech=[["sdes-srtp", [["mediasec", 1]]]]),
        _rec(mech=[["sdes-srtp"]]),
        _rec(mech={"a": 1}),
        _rec(path=[""]),
        _rec(sr=[None]),
        _rec(assoc="sip:a@b"),
    ],
)
def test_a_malformed_record_is_refused(rec: Any) -> None:
    with pytest.raises(RecordError):
        binding_from_record(rec, WALL)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,  # deep nesting: refused, not a RecursionError out of the task
        b"null",
        json.dumps({"v": 2, "n": "x", "op": "del", "impu": "sip:a@b", "contact": "sip:a@c"}),
        json.dumps({"v": 1, "op": "del", "impu": "sip:a@b", "contact": "sip:a@c"}),
        json.dumps({"v": 1, "n": "x", "op": "put", "b": {}}),
        json.dumps({"v": 1, "n": "x", "op": "del", "impu": "sip:a@b"}),
        json.dumps({"v": 1, "n": "x", "op": "set", "b": {"impu": "sip:a@b"}}),
        b'{"v":1,"n":"x","op":"del","impu":"' + b"a" * MAX_RECORD_BYTES + b'","contact":"c"}',
    ],
)
def test_a_malformed_message_is_refused(data: bytes | str) -> None:
    with pytest.raises(RecordError):
        decode_message(data, WALL)


def test_a_password_never_reaches_the_logs() -> None:
    assert redact_url("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact_url("redis://u:s3cret@h/1") == "redis://u:***@h/1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    cfg = RegistrationStoreConfig(url="redis://:s3cret@10.0.0.1/0")
    assert "s3cret" not in repr(cfg)


# ------------------------------------------------------------------------------ the outbox


def binding(contact_port: int = 5000, expires_at: float = 100.0, **kw: Any) -> Binding:
    return Binding(
        impu=kw.pop("impu", "sip:alice@ims.test"),
        contact=f"sip:alice@127.0.0.1:{contact_port}",
        flow=Flow("udp", "127.0.0.1", contact_port),
        flags=E2aeIndication(True, True, True, True),
        expires_at=expires_at,
        registered_at=0.0,
        **kw,
    )


def test_writes_go_to_the_cache_at_once_and_to_the_outbox_coalesced() -> None:
    s = RedisRegistrationStore()
    woken: list[int] = []
    s.on_change = lambda: woken.append(1)
    s.upsert(binding(expires_at=10.0))
    s.upsert(binding(expires_at=20.0))
    s.upsert(binding(expires_at=30.0))
    s.upsert(binding(6000))
    # the cache answers at once, as the in-memory store would
    assert s.by_flow(Flow("udp", "127.0.0.1", 5000)) == binding(expires_at=30.0)
    assert len(s) == 2 and len(woken) == 4
    # one entry per binding, its latest state, in the order of their last change
    items = s.take_outbox(10)
    assert [(op, b.expires_at, b.flow.port) for _, op, b in items] == [
        ("set", 30.0, 5000),
        ("set", 100.0, 6000),
    ]
    assert not s.outbox
    # a removal replaces a pending set; removing what is not there queues nothing
    s.upsert(binding())
    s.remove("sip:alice@ims.test", "sip:alice@127.0.0.1:5000")
    assert s.remove("sip:bob@ims.test", "sip:bob@127.0.0.1:1") is None
    assert [(op, b.flow.port) for _, op, b in s.take_outbox(10)] == [("del", 5000)]


def test_expiry_is_not_written_redis_expires_the_key_itself() -> None:
    s = RedisRegistrationStore()
    s.upsert(binding(expires_at=10.0))
    s.take_outbox(10)
    assert s.next_expiry() == 10.0
    assert [b.flow.port for b in s.sweep(10.0)] == [5000]
    assert not s.outbox and len(s) == 0


def test_the_outbox_is_bounded_drop_oldest_and_counted() -> None:
    s = RedisRegistrationStore(outbox_max=3)
    for port in range(5000, 5005):
        s.upsert(binding(port))
    assert len(s.outbox) == 3 and s.counters.outbox_dropped == 2
    assert [b.flow.port for _, _, b in s.take_outbox(10)] == [5002, 5003, 5004]
    assert len(s) == 5  # the cache keeps them all: only their sharing was lost


def test_changes_that_failed_go_back_unless_a_newer_one_was_queued() -> None:
    s = RedisRegistrationStore()
    s.upsert(binding(5000))
    s.upsert(binding(6000))
    items = s.take_outbox(10)
    s.upsert(binding(6000, expires_at=50.0))  # newer, queued while the write failed
    s.restore(items)
    got = [(b.flow.port, b.expires_at) for _, _, b in s.take_outbox(10)]
    assert got == [(5000, 100.0), (6000, 50.0)]


def test_writable_follows_the_connection_and_the_in_memory_store_always_is() -> None:
    s = RedisRegistrationStore()
    assert not s.writable()  # until the first connection
    s.connected = True
    assert s.writable()
    assert InMemoryRegistrationStore().writable()
    assert s.stats()["connected"] == 1 and s.stats()["backend"] == "redis"


def test_changes_from_other_daemons_keep_local_call_ids_and_lose_to_pending_writes() -> None:
    s = RedisRegistrationStore()
    s.upsert(binding())
    s.take_outbox(10)
    s.by_flow(Flow("udp", "127.0.0.1", 5000)).call_ids.add("c1")  # type: ignore[union-attr]
    assert s.apply_remote("set", binding(expires_at=500.0))
    b = s.by_flow(Flow("udp", "127.0.0.1", 5000))
    assert b is not None and b.expires_at == 500.0 and b.call_ids == {"c1"}
    assert not s.outbox  # a remote change is not written back
    # our own pending change wins over a remote one for the same binding
    s.upsert(binding(expires_at=900.0))
    assert not s.apply_remote("set", binding(expires_at=600.0))
    assert not s.apply_remote("del", ("sip:alice@ims.test", "sip:alice@127.0.0.1:5000"))
    assert s.get("sip:alice@ims.test", "sip:alice@127.0.0.1:5000").expires_at == 900.0  # type: ignore[union-attr]
    s.take_outbox(10)
    assert s.apply_remote("del", ("sip:alice@ims.test", "<sip:alice@127.0.0.1:5000>"))
    assert len(s) == 0 and s.counters.remote_applied == 2
    assert not s.apply_remote("del", ("sip:alice@ims.test", "sip:alice@127.0.0.1:5000"))


# ------------------------------------------------------------------------------ config, registrar


def cfg(store: Any = None, **reg: Any) -> Config:
    if store is not None:
        reg["store"] = store
    return parse_config(
        {
            "sip": {
                "access": {"host": "127.0.0.1", "port": 5060},
                "core": {"host": "127.0.0.1", "port": 5070},
                "next_hop": "sip:127.0.0.1:5080;lr",
            },
            "registration": reg,
        },
        "test.yaml",
    )


def test_the_store_keys_default_to_memory() -> None:
    st = cfg().registration.store
    assert st == RegistrationStoreConfig()
    assert (st.backend, st.url, st.prefix) == ("memory", "redis://127.0.0.1:6379/0", "pcscf-alg:")
    got = cfg({"backend": "redis", "url": "unix:///run/redis.sock", "prefix": "lab1:"})
    assert got.registration.store.backend == "redis"


@pytest.mark.parametrize(
    ("store", "key", "reason"),
    [
        ({"backend": "etcd"}, "backend", "must be memory or redis"),
        ({"url": "http://127.0.0.1"}, "url", "redis://, rediss:// or unix://"),
        ({"url": "redis:///0"}, "url", "needs a host"),
        ({"url": "redis://:pw@127.0.0.1/x"}, "url", "database number"),
        ({"url": "unix://"}, "url", "socket path"),
        ({"prefix": "a b"}, "prefix", "without spaces"),
        ({"prefix": "lab*"}, "prefix", "without spaces"),
        ({"prefix": "x" * 65}, "prefix", "at most 64"),
        ({"outbox_max": 0}, "outbox_max", "between"),
        ({"timeout_s": 0}, "timeout_s", "between"),
        ({"retry_after_s": "soon"}, "retry_after_s", "integer"),
        ({"hosts": 1}, "hosts", "unknown key"),
        ("redis", "", "must be a mapping"),
    ],
)
def test_a_bad_store_key_names_file_key_and_reason(store: Any, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(store)
    assert e.value.file == "test.yaml"
    assert e.value.key == ("registration.store" + (f".{key}" if key else ""))
    assert reason in e.value.reason
    assert "pw@" not in str(e.value)


def test_the_registrar_answers_503_while_the_store_cannot_write() -> None:
    store = RedisRegistrationStore()
    c = cfg({"backend": "redis", "retry_after_s": 7})
    r = Registrar(store, lambda: c, ("127.0.0.1", 5070))
    msg = parse_message(
        b"REGISTER sip:ims.test SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:41111;branch=z9hG4bK-1"
        b"\r\nFrom: <sip:alice@ims.test>;tag=1\r\nTo: <sip:alice@ims.test>\r\nCall-ID: r1\r\n"
        b"CSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.10:41111>\r\nContent-Length: 0"
        b"\r\n\r\n"
    )
    ue = Peer("udp", "198.51.100.10", 41111)
    got = r.on_register(msg, ue, "udp", now=0.0)
    assert got == Refusal(
        503,
        "Service Unavailable",
        warning="registration store unavailable",
        extra=[("Retry-After", "7")],
    )
    assert not msg.headers.values("path")  # refused before anything was added
    store.connected = True
    assert isinstance(r.on_register(msg, ue, "udp", now=1.0), RegisterCtx)


def test_the_store_keys_need_a_restart_the_rest_of_registration_stays_live() -> None:
    old = cfg()
    new = cfg({"backend": "redis", "prefix": "lab:"}, default_expires=300)
    plan = plan_reload(old, new)
    assert plan.applied == ("registration.default_expires",)
    assert plan.restart_needed == ("registration.store.backend", "registration.store.prefix")
    assert plan.config.registration.store == old.registration.store
    assert plan.config.registration.default_expires == 300
    # and the other way round: nothing else changed, nothing applied
    same = dataclasses.replace(old, registration=old.registration)
    assert plan_reload(old, same).applied == ()
