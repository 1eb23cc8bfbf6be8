"""Registrations on Redis (issue 14): a write-through cache shared by several daemons.

`registration: {store: {backend: redis, url: ...}}`. The design is the one the docstring of
`pcscf_alg.registration` sketches; this module is its two halves:

* `RedisRegistrationStore` is the `RegistrationStore` the proxy and the registrar use. It does no
  I/O: look-ups are answered from an `InMemoryRegistrationStore` held inside it, and a write
  (`upsert`, `remove`) changes that cache at once and queues the binding's new state in an
  *outbox*, coalesced per binding (only its latest state waits) and bounded
  (`registration.store.outbox_max`, the oldest dropped and counted). Nothing on the SIP path
  awaits Redis. `writable()` is False while Redis cannot be written: the registrar then answers
  REGISTERs 503 + Retry-After.
* `RedisSync` is the asyncio task the daemon runs beside it (redis-py's `redis.asyncio` with
  hiredis): it connects, subscribes to the pub/sub channel, *resynchronises* (below), then drains
  the outbox (a pipeline of `SET key record PXAT expiry` or `DEL key`, each followed by a
  `PUBLISH`) and applies the changes other daemons publish to the cache. On any error it drops
  the connection, marks the store not writable and reconnects with a doubling backoff
  (`reconnect_max_s`); writes that did not go through go back to the outbox.

Redis layout (`P` = `registration.store.prefix`, default `pcscf-alg:`):

* `P b:<aor_key(impu)>|<contact_key(contact)>`: one string per binding, the JSON record
  (`binding_record`), with a key expiry at the binding's expiry (`PXAT`, wall clock);
* `P events`: the pub/sub channel; a message is `{"v":1,"n":node,"op":"set","b":record}` or
  `{"v":1,"n":node,"op":"del","impu":..,"contact":..}`; `n` is a random id per process so
  that a daemon skips its own messages.

Clocks. A `Binding`'s `expires_at` and `registered_at` are on the event loop's clock
(`loop.time()`: monotonic, per process). Records hold wall-clock times (`time.time()`), converted
with the offset `time.time() - loop.time()` taken when a record is written or read, so a
binding registered before a restart expires when it should afterwards (within the wall clocks'
agreement between machines).

Expiry: every daemon sweeps its own cache (as with the in-memory store) and Redis expires the
key by itself, so an expiry is neither written nor published (a late DEL from one daemon could
otherwise delete the refresh another just wrote). A de-registration (expires 0, `Contact: *`)
is a DEL and is published.

Resynchronisation, at every (re)connection: subscribe first, then read every binding Redis holds
(`SCAN` + `MGET`) and merge it with the cache. A pending local write (in the outbox) wins over
Redis; otherwise Redis wins. Local bindings Redis does not hold are pushed back when Redis is
not the instance we last saw (its `run_id` changed: a restarted redis-server without
persistence is empty), and dropped from the cache when it is the same instance (another daemon
removed them, or Redis expired them, while we were away).

Trust: whoever can write to this Redis (or publish on its channel) can add, change and remove
bindings, e2ae flags included. Records and messages are validated (types, sizes, URIs, flows)
and malformed ones are dropped and counted, but a well-formed forged binding is believed:
Redis must be reachable only by the P-CSCFs (README, Security model).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from pcscf_alg.config import RegistrationStoreConfig
from pcscf_alg.errors import PcscfError
from pcscf_alg.registration import (
    Binding,
    E2aeIndication,
    Flow,
    InMemoryRegistrationStore,
)
from pcscf_alg.sip.secagree import SecMechanism

__all__ = [
    "MAX_RECORD_BYTES",
    "SCHEMA",
    "RecordError",
    "RedisRegistrationStore",
    "RedisSync",
    "StoreCounters",
    "binding_from_record",
    "binding_record",
    "decode_message",
    "encode_message",
    "redact_url",
]

log = logging.getLogger(__name__)

SCHEMA: Final = 1
# A record or a pub/sub message larger than this is refused: ours are built from one REGISTER and
# its 200 (`sip.max_message_bytes` at most 61,440 bytes each), so this leaves room for JSON
# escaping while bounding what a writer of the Redis can make every daemon parse.
MAX_RECORD_BYTES: Final = 131_072
# Commands per pipeline when draining the outbox or pushing bindings back.
_BATCH: Final = 256
# Keys per SCAN step / MGET when loading.
_SCAN_COUNT: Final = 500
# While connected and idle, a PING this often finds a dead connection (no RST) within
# `timeout_s` of it.
_PING_S: Final = 5.0

Op = str  # "set" | "del"


class RecordError(ValueError):
    """A record or message read from Redis is malformed (dropped and counted)."""


# ---------------------------------------------------------------------------------- records


def binding_record(b: Binding, wall_offset: float) -> dict[str, Any]:
    """The JSON-able record of `b`; times on the wall clock (`loop time + wall_offset`).
    `call_ids` stays out: it is this process's state (the calls it holds)."""
    f = b.flags
    return {
        "impu": b.impu,
        "contact": b.contact,
        "flow": [b.flow.transport, b.flow.host, b.flow.port],
        "e2ae": [f.ue_rtp, f.ue_msrp, f.net_rtp, f.net_msrp],
        "other": list(f.other_mediasec),
        "exp": b.expires_at + wall_offset,
        "reg": b.registered_at + wall_offset,
        "mech": [[m.name, [[k, v] for k, v in m.params]] for m in b.mechanisms],
        "path": list(b.path),
        "sr": list(b.service_route),
        "assoc": list(b.associated),
    }


def _str(v: object, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise RecordError(f"{what}: not a non-empty string")
    return v


def _strs(v: object, what: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise RecordError(f"{what}: not a list")
    return tuple(_str(x, what) for x in v)


def _time(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RecordError(f"{what}: not a finite number")
    return float(v)


def _mechanism(v: object) -> SecMechanism:
    if not (isinstance(v, list) and len(v) == 2 and isinstance(v[1], list)):
        raise RecordError("mech: not [name, params]")
    params: list[tuple[str, str | None]] = []
    for p in v[1]:
        if not (isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)):
            raise RecordError("mech: bad parameter")
        if p[1] is not None and not isinstance(p[1], str):
            raise RecordError("mech: bad parameter value")
        params.append((p[0], p[1]))
    return SecMechanism(_str(v[0], "mech"), tuple(params))  # validates the tokens


def binding_from_record(rec: object, wall_offset: float) -> Binding:
    """The Binding of a record (`binding_record`), times back on the loop clock
    (`wall - wall_offset`). RecordError on anything malformed: a wrong type, a missing field, a
    flow or URI our own code would not have produced."""
    if not isinstance(rec, dict):
        raise RecordError("record: not an object")
    try:
        flow_v = rec["flow"]
        if not (
            isinstance(flow_v, list)
            and len(flow_v) == 3
            and isinstance(flow_v[2], int)
            and not isinstance(flow_v[2], bool)
        ):
            raise RecordError("flow: not [transport, host, port]")
        flow = Flow(_str(flow_v[0], "flow"), _str(flow_v[1], "flow"), flow_v[2])
        e = rec["e2ae"]
        if not (isinstance(e, list) and len(e) == 4 and all(isinstance(x, bool) for x in e)):
            raise RecordError("e2ae: not four booleans")
        flags = E2aeIndication(e[0], e[1], e[2], e[3], _strs(rec["other"], "other"))
        mech_v = rec["mech"]
        if not isinstance(mech_v, list):
            raise RecordError("mech: not a list")
        return Binding(
            impu=_str(rec["impu"], "impu"),
            contact=_str(rec["contact"], "contact"),
            flow=flow,
            flags=flags,
            expires_at=_time(rec["exp"], "exp") - wall_offset,
            registered_at=_time(rec["reg"], "reg") - wall_offset,
            mechanisms=tuple(_mechanism(m) for m in mech_v),
            path=_strs(rec["path"], "path"),
            service_route=_strs(rec["sr"], "sr"),
            associated=_strs(rec["assoc"], "assoc"),
        )
    except KeyError as e:
        raise RecordError(f"record: missing {e.args[0]!r}") from None
    except RecordError:
        raise
    except (ValueError, PcscfError) as e:  # Flow, SecMechanism, the URI keys of Binding
        raise RecordError(f"record: {e}") from None


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(data: bytes | str) -> object:
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise RecordError(f"not JSON: {type(e).__name__}") from None


def encode_message(node: str, op: Op, b: Binding, wall_offset: float) -> bytes:
    """A pub/sub message: the binding's new state (`set`) or its removal (`del`)."""
    if op == "set":
        return _dumps({"v": SCHEMA, "n": node, "op": "set", "b": binding_record(b, wall_offset)})
    return _dumps({"v": SCHEMA, "n": node, "op": "del", "impu": b.impu, "contact": b.contact})


def decode_message(
    data: bytes | str, wall_offset: float
) -> tuple[str, Op, Binding | tuple[str, str]]:
    """(node, "set", Binding) or (node, "del", (impu, contact)); RecordError when malformed."""
    msg = _loads(data)
    if not isinstance(msg, dict) or msg.get("v") != SCHEMA:
        raise RecordError("message: not a version 1 object")
    node = _str(msg.get("n"), "n")
    op = msg.get("op")
    if op == "set":
        return node, "set", binding_from_record(msg.get("b"), wall_offset)
    if op == "del":
        return node, "del", (_str(msg.get("impu"), "impu"), _str(msg.get("contact"), "contact"))
    raise RecordError("message: op is neither set nor del")


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        u = urlsplit(url)
        if u.password is None:
            return url
        host = u.hostname or ""
        netloc = f"{u.username or ''}:***@{host}" + (f":{u.port}" if u.port else "")
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
    except ValueError:
        return "<unparseable url>"


# ---------------------------------------------------------------------------------- the store


@dataclass(slots=True)
class StoreCounters:
    """What /stats (`store`) and /metrics (`pcscf_alg_store_*`) show."""

    writes: int = 0  # binding changes written to Redis (SET or DEL, each published)
    failures: int = 0  # connections lost or refused, failed writes (each followed by a retry)
    outbox_dropped: int = 0  # changes dropped from a full outbox (never written)
    remote_applied: int = 0  # changes from other daemons applied to the cache
    remote_rejected: int = 0  # malformed records or messages dropped
    loaded: int = 0  # bindings read from Redis at a (re)connection
    pushed: int = 0  # local bindings written back to a Redis that had lost them
    resyncs: int = 0  # successful (re)connections


_Key = tuple[str, str]  # (impu_key, contact_key): the identity of a binding


class RedisRegistrationStore:
    """The `RegistrationStore` of the Redis back end: a local cache plus an outbox (module
    docstring). Sans-IO: `RedisSync` moves the outbox to Redis and other daemons' changes in."""

    __slots__ = ("cache", "connected", "counters", "on_change", "outbox", "outbox_max")

    def __init__(self, outbox_max: int = 100_000) -> None:
        self.cache = InMemoryRegistrationStore()
        # key -> (op, binding): a binding's latest state only, oldest change first.
        self.outbox: OrderedDict[_Key, tuple[Op, Binding]] = OrderedDict()
        self.outbox_max = outbox_max
        self.connected = False  # set by RedisSync
        self.counters = StoreCounters()
        self.on_change: Callable[[], None] | None = None  # RedisSync's wake-up

    # ---- the RegistrationStore protocol (reads from the cache; writes queued)
    def upsert(self, binding: Binding) -> Binding | None:
        old = self.cache.upsert(binding)
        self._queue("set", binding)
        return old

    def remove(self, impu: str, contact: str) -> Binding | None:
        b = self.cache.remove(impu, contact)
        if b is not None:
            self._queue("del", b)
        return b

    def get(self, impu: str, contact: str) -> Binding | None:
        return self.cache.get(impu, contact)

    def by_flow(self, flow: Flow, identity: str | None = None) -> Binding | None:
        return self.cache.by_flow(flow, identity)

    def by_contact(self, contact_uri: str) -> Binding | None:
        return self.cache.by_contact(contact_uri)

    def by_impu(self, impu: str) -> list[Binding]:
        return self.cache.by_impu(impu)

    def sweep(self, now: float) -> list[Binding]:
        # Redis expires the key by itself (PXAT): nothing to write (module docstring, Expiry).
        return self.cache.sweep(now)

    def next_expiry(self) -> float | None:
        return self.cache.next_expiry()

    def writable(self) -> bool:
        return self.connected

    def __len__(self) -> int:
        return len(self.cache)

    def bindings(self) -> list[Binding]:
        return self.cache.bindings()

    def index_sizes(self) -> tuple[int, int, int]:
        return self.cache.index_sizes()

    def stats(self) -> dict[str, Any]:
        """For /stats and /metrics: the back end, connected 0/1, the outbox, the counters."""
        return {
            "backend": "redis",
            "connected": int(self.connected),
            "outbox": len(self.outbox),
            **asdict(self.counters),
        }

    # ---- the outbox
    def _queue(self, op: Op, b: Binding) -> None:
        key = (b.impu_key, b.contact_key)
        box = self.outbox
        if key in box:
            del box[key]  # coalesce: the latest state goes to the end
        box[key] = (op, b)
        while len(box) > self.outbox_max:
            box.popitem(last=False)
            self.counters.outbox_dropped += 1
        if self.on_change is not None:
            self.on_change()

    def take_outbox(self, limit: int) -> list[tuple[_Key, Op, Binding]]:
        """Up to `limit` pending changes, oldest first, taken out of the outbox."""
        out: list[tuple[_Key, Op, Binding]] = []
        box = self.outbox
        while box and len(out) < limit:
            key, (op, b) = box.popitem(last=False)
            out.append((key, op, b))
        return out

    def restore(self, items: list[tuple[_Key, Op, Binding]]) -> None:
        """Put back changes that were not written, unless a newer one for the same binding was
        queued meanwhile; they go first (they are the oldest)."""
        box = self.outbox
        for key, op, b in reversed(items):
            if key not in box:
                box[key] = (op, b)
                box.move_to_end(key, last=False)
        while len(box) > self.outbox_max:
            box.popitem(last=False)
            self.counters.outbox_dropped += 1

    def queue_push(self, b: Binding) -> None:
        """Write `b` to Redis again (it lost it), without changing the cache."""
        self._queue("set", b)

    # ---- changes from Redis
    def apply_remote(self, op: Op, b: Binding | tuple[str, str]) -> bool:
        """Apply another daemon's change to the cache. A change of ours to the same binding
        that waits in the outbox wins (it will overwrite Redis). Returns whether applied."""
        if isinstance(b, Binding):
            if (b.impu_key, b.contact_key) in self.outbox:
                return False
            self.cache.upsert(b)  # carries this process's call_ids over
        else:
            cur = self.cache.get(*b)
            if cur is None or (cur.impu_key, cur.contact_key) in self.outbox:
                return False
            self.cache.remove(*b)
        self.counters.remote_applied += 1
        return True


# ---------------------------------------------------------------------------------- the task


class RedisSync:
    """The asyncio side of `RedisRegistrationStore` (module docstring): connect, resync, drain
    the outbox, listen to the other daemons; reconnect with backoff on any error."""

    def __init__(self, store: RedisRegistrationStore, cfg: RegistrationStoreConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.node = secrets.token_hex(8)
        self.channel = f"{cfg.prefix}events"
        self.key_prefix = f"{cfg.prefix}b:"
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._run_id: str | None = None  # the Redis instance seen at the last resync
        self._client: Any = None
        store.on_change = self._wake.set

    def key(self, b: Binding) -> str:
        return f"{self.key_prefix}{b.impu_key}|{b.contact_key}"

    @staticmethod
    def _offset() -> float:
        """wall clock - loop clock, now."""
        return time.time() - asyncio.get_running_loop().time()

    async def start(self) -> bool:
        """Start the task and wait (at most `start_timeout_s`) for the first load. Returns
        whether it happened; if not, the daemon serves an empty cache and the task keeps
        trying."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="redis-store")
        try:
            await asyncio.wait_for(self._ready.wait(), self.cfg.start_timeout_s)
        except TimeoutError:
            log.warning(
                "registration store: Redis at %s not reachable within %.1f s: starting with no "
                "registrations, REGISTERs answered 503 until it is; retrying",
                redact_url(self.cfg.url),
                self.cfg.start_timeout_s,
            )
            return False
        return True

    async def stop(self) -> None:
        """Write what waits in the outbox (bounded by `timeout_s`), then stop."""
        if self._task is None:
            return
        client = self._client
        if client is not None and self.store.connected and self.store.outbox:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(client), self.cfg.timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None

    # ---- connection life
    def _new_client(self) -> Any:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        t = self.cfg.timeout_s
        # No retries inside redis-py: an error must reach `_run`, which marks the store
        # unwritable, reconnects with its own backoff and resynchronises.
        return Redis.from_url(
            self.cfg.url,
            socket_timeout=t,
            socket_connect_timeout=t,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
            client_name=f"pcscf-alg-{self.node}",
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        least = min(0.1, self.cfg.reconnect_max_s)
        delay = least
        ever = warned = False
        while True:
            client = self._new_client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            up_since: float | None = None
            try:
                await pubsub.subscribe(self.channel)
                await self._resync(client)
                self._client = client
                self.store.connected = True
                self.store.counters.resyncs += 1
                self._ready.set()
                log.info(
                    "registration store: %s Redis at %s (%d bindings)",
                    "reconnected to" if ever else "connected to",
                    redact_url(self.cfg.url),
                    len(self.store),
                )
                ever, warned = True, False
                up_since = loop.time()
                await self._serve(client, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # redis errors, OSError, timeouts: all mean "reconnect"
                self.store.counters.failures += 1
                if not warned:  # once per outage, not once per attempt
                    log.warning(
                        "registration store: Redis at %s unavailable (%s: %s): serving "
                        "look-ups from the cache, REGISTERs answered 503; reconnecting",
                        redact_url(self.cfg.url),
                        type(e).__name__,
                        e,
                    )
                    warned = True
            finally:
                self.store.connected = False
                self._client = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            # The backoff starts again only after a connection that held for a while: one that
            # fails each time right after its resync (a read-only replica, an OOM Redis) must
            # not make us load every binding ten times a second.
            if up_since is not None and loop.time() - up_since >= self.cfg.reconnect_max_s:
                delay = least
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def _serve(self, client: Any, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        self._wake.set()  # what was queued while away goes out at once
        tasks = [
            loop.create_task(self._drain(client)),
            loop.create_task(self._listen(client, pubsub)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # raises what ended it
            raise ConnectionError("registration store task ended")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- writing
    async def _drain(self, client: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush(client)

    async def _flush(self, client: Any) -> None:
        store = self.store
        while store.outbox:
            items = store.take_outbox(_BATCH)
            try:
                await self._write(client, items)
            except BaseException:
                store.restore(items)
                raise
            store.counters.writes += len(items)

    async def _write(self, client: Any, items: list[tuple[_Key, str, Binding]]) -> None:
        off = self._offset()
        now_ms = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        for _, op, b in items:
            key = self.key(b)
            if op == "set":
                record = _dumps(binding_record(b, off))
                exp_ms = int((b.expires_at + off) * 1000)
                if len(record) > MAX_RECORD_BYTES or exp_ms <= now_ms:
                    # Too large for the others to accept, or already over: not shared.
                    pipe.delete(key)
                    continue
                pipe.set(key, record, pxat=exp_ms)
            else:
                pipe.delete(key)
            pipe.publish(self.channel, encode_message(self.node, op, b, off))
        await pipe.execute()

    # ---- reading
    async def _listen(self, client: Any, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None and msg.get("type") == "message":
                self._on_message(msg.get("data", b""))
            if loop.time() - last_ping >= _PING_S:
                await client.ping()
                await pubsub.ping()
                last_ping = loop.time()

    def _on_message(self, data: bytes | str) -> None:
        loop = asyncio.get_running_loop()
        try:
            node, op, what = decode_message(data, self._offset())
        except RecordError as e:
            self._rejected(e)
            return
        if node == self.node:
            return
        if isinstance(what, Binding) and what.expires_at <= loop.time():
            return  # over already (clocks apart, or an old message)
        self.store.apply_remote(op, what)

    def _rejected(self, e: Exception) -> None:
        c = self.store.counters
        c.remote_rejected += 1
        n = c.remote_rejected
        if n & (n - 1) == 0:  # 1, 2, 4, 8...: a flood cannot flood the log
            log.warning(
                "registration store: malformed data from Redis dropped (%d so far): %s", n, e
            )

    async def _load(self, client: Any) -> dict[_Key, Binding]:
        """Every live binding Redis holds (malformed records counted and skipped)."""
        now = asyncio.get_running_loop().time()
        off = self._offset()
        out: dict[_Key, Binding] = {}
        keys: list[Any] = []
        cursor: Any = 0
        while True:
            cursor, batch = await client.scan(
                cursor, match=f"{self.key_prefix}*", count=_SCAN_COUNT
            )
            keys.extend(batch)
            if len(keys) >= _SCAN_COUNT or int(cursor) == 0:
                await self._load_values(client, keys, off, now, out)
                keys = []
            if int(cursor) == 0:
                return out

    async def _load_values(
        self, client: Any, keys: list[Any], off: float, now: float, out: dict[_Key, Binding]
    ) -> None:
        if not keys:
            return
        for raw in await client.mget(keys):
            if raw is None:
                continue  # expired or removed since the SCAN
            try:
                b = binding_from_record(_loads(raw), off)
            except RecordError as e:
                self._rejected(e)
                continue
            if b.expires_at > now:
                out[(b.impu_key, b.contact_key)] = b

    async def _resync(self, client: Any) -> None:
        """Merge Redis and the cache (module docstring, Resynchronisation)."""
        info: Mapping[str, Any] = await client.info("server")
        run_id = str(info.get("run_id", ""))
        remote = await self._load(client)
        store = self.store
        store.counters.loaded += len(remote)
        now = asyncio.get_running_loop().time()
        same_instance = self._run_id is not None and run_id == self._run_id
        for b in store.cache.bindings():
            key = (b.impu_key, b.contact_key)
            if key in remote or key in store.outbox or b.expires_at <= now:
                continue
            if same_instance:
                store.cache.remove(b.impu, b.contact)  # removed or expired there meanwhile
            else:
                store.queue_push(b)
                store.counters.pushed += 1
        for key, b in remote.items():
            if key not in store.outbox:
                store.cache.upsert(b)
        self._run_id = run_id
