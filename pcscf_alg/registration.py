"""Registration bindings: who is registered, from which flow, with which e2ae support.

This module is the store and its records: bindings, flows, the look-up keys of URIs and the
look-ups the proxy makes. Handling a REGISTER (sec-agree, Path, what a 200 makes of the
bindings) is `pcscf_alg.registrar`'s job.

A binding is created from the 200 (OK) to a REGISTER that the P-CSCF proxied. It records the
IMPU (To), the contact, the flow the REGISTER came from (transport + source address and port),
the e2ae indications per protocol on the UE side and the network side (docs/e2ae-notes.md
§1.2 item 5, TS 33.328 §7.1.2), the security mechanisms seen, Path, Service-Route, associated
identities (P-Associated-URI) and the expiry.

The originating ALG path looks a binding up *by flow* on every request; the terminating path looks
it up by the Request-URI (a registered contact) or, failing that, by the flow it names. Both are
dictionary look-ups, independent of the number of bindings.

Sans-IO: no clock is read here. Callers pass `now` (the event loop's `loop.time()` in production,
a plain float in tests) and arm one timer at `store.next_expiry()` to call `store.sweep(now)`.

Storage design — why `RegistrationStore` is synchronous
-------------------------------------------------------
`by_flow` runs on every originating request and `by_contact` on every terminating one, inside
the SIP hot path, and the ALG core is sans-IO. Making the protocol `async` would force every
caller (the proxy, the call layer, `pcscf_alg.registrar`) to become coroutines for the sake of
a back-end we do not have yet, and would add a network round trip to each request if a shared
store were queried directly. So the protocol is synchronous and served from local memory.

A shared store (Redis, for several P-CSCFs behind one address or for fail-over) fits behind the
same protocol without touching callers, as a *write-through cache*:

* reads (`by_flow`, `by_contact`, `by_impu`) are answered from an `InMemoryRegistrationStore`
  held inside the Redis store;
* writes (`upsert`, `remove`) update that local copy synchronously and append the change
  to an outbox; an asyncio task owned by the adapter layer drains the outbox to Redis (one SET /
  DEL per binding, keyed by (impu_key, contact_key), with a key expiry at the binding's expiry)
  and publishes it on a pub/sub channel; `sweep` is local (Redis expires the key itself);
* the same task subscribes to that channel and applies other nodes' changes to the local copy
  (`upsert` / `remove` are idempotent, the latest write published wins), and
  loads the full set at start-up.

This keeps the sans-IO rule (the store itself does no I/O), the O(1) local look-ups, and the
callers unchanged. A node only handles flows that reach it, so a replication delay is harmless
for originating requests; for terminating requests the Path header already routes to the
P-CSCF that owns the flow. Built in `pcscf_alg.registration_redis`
(`registration.store.backend: redis`); `writable()` tells the registrar when the back end
cannot take a REGISTER's bindings.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pcscf_alg.errors import RegistrationError, SipParseError
from pcscf_alg.sip.headers import NameAddr, SipUri
from pcscf_alg.sip.secagree import SecMechanism

__all__ = [
    "FLOW_TRANSPORTS",
    "Binding",
    "E2aeFlags",
    "E2aeIndication",
    "Flow",
    "InMemoryRegistrationStore",
    "RegistrationStore",
    "aor_key",
    "contact_key",
    "flow_of_uri",
    "originating_binding",
    "terminating_binding",
]

FLOW_TRANSPORTS = frozenset({"udp", "tcp", "tls"})


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class E2aeIndication:
    """e2ae indications of one registration (docs/e2ae-notes.md §1.2 item 5).

    `ue_*`: the UE listed `sdes-srtp;mediasec` / `msrp-tls;mediasec` in Security-Client.
    `net_*`: we listed the same in Security-Server (our config `e2ae: {rtp, msrp}`).
    `other_mediasec`: names of other mediasec mechanisms the UE listed (e.g. `dtls-srtp`), kept for
    inspection only (TS 24.229 §7.2A.7 lists tokens we do not implement).
    """

    ue_rtp: bool = False
    ue_msrp: bool = False
    net_rtp: bool = False
    net_msrp: bool = False
    other_mediasec: tuple[str, ...] = ()

    @property
    def rtp(self) -> bool:
        """e2ae SDES-SRTP support established: both sides indicated it.

        TS 33.328 §7.2.1 step 2 (originating) and §7.3.1 step 3 (terminating) branch on this."""
        return self.ue_rtp and self.net_rtp

    @property
    def msrp(self) -> bool:
        """e2ae MSRP-TLS support established: both sides indicated it (same clauses as `rtp`)."""
        return self.ue_msrp and self.net_msrp


E2aeFlags = E2aeIndication


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a UE's SIP traffic comes from: transport plus source address and port.

    Hashable; the host is normalised (brackets stripped, lower case, IPv6 in RFC 5952 compressed
    form) so that a flow built from a socket address and one built from a URI compare equal.
    """

    transport: str
    host: str
    port: int

    def __post_init__(self) -> None:
        t = self.transport.lower()
        if t not in FLOW_TRANSPORTS:
            raise ValueError(f"unknown flow transport {self.transport!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"bad flow port {self.port}")
        h = self.host
        if h.startswith("[") and h.endswith("]"):
            h = h[1:-1]
        if ":" in h:
            try:
                h = ipaddress.IPv6Address(h.split("%", 1)[0]).compressed
            except ValueError:
                raise ValueError(f"bad IPv6 flow host {self.host!r}") from None
        else:
            h = h.lower()
        if not h:
            raise ValueError("empty flow host")
        if t != self.transport:
            object.__setattr__(self, "transport", t)
        if h != self.host:
            object.__setattr__(self, "host", h)

    @classmethod
    def from_addr(cls, transport: str, addr: Sequence[object]) -> Flow:
        """From an asyncio peer address: `(host, port)` or `(host, port, flowinfo, scope_id)`."""
        return cls(transport, str(addr[0]), int(str(addr[1])))


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of one IMPU, reached over one flow.

    Frozen so that the store's indexes can never go stale: a refresh is `dataclasses.replace`
    (or a new Binding) passed to `upsert`. `call_ids` is the one mutable part: the ALG adds and
    removes the Call-IDs of dialogs that use this binding (e.g. to release them on
    de-registration); `upsert` carries it over to the refreshed binding.

    `mechanisms` are the media-plane (mediasec) entries of the UE's Security-Client, including
    ones we do not act on. `path` and `service_route` are header values in order; `associated`
    holds the identities the UE may assert (the P-Associated-URI values of the 200; the IMPU is
    always implied).
    `expires_at` and `registered_at` are absolute times on the caller's clock.
    """

    impu: str
    contact: str
    flow: Flow
    flags: E2aeIndication
    expires_at: float
    registered_at: float
    mechanisms: tuple[SecMechanism, ...] = ()
    path: tuple[str, ...] = ()
    service_route: tuple[str, ...] = ()
    associated: tuple[str, ...] = ()
    call_ids: set[str] = field(default_factory=set, compare=False, repr=False)
    # Derived look-up keys, computed once here rather than on every look-up.
    impu_key: str = field(init=False, compare=False, repr=False)
    contact_key: str = field(init=False, compare=False, repr=False)
    identity_keys: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ik = aor_key(self.impu)
        object.__setattr__(self, "impu_key", self.impu if ik == self.impu else ik)
        object.__setattr__(self, "contact_key", contact_key(self.contact))
        ids = [self.impu_key]
        for uri in self.associated:
            k = aor_key(uri)
            if k not in ids:
                ids.append(k)
        object.__setattr__(self, "identity_keys", tuple(ids))

    def has_identity(self, uri: str) -> bool:
        """True if `uri` is the IMPU or one of its associated identities."""
        return aor_key(uri) in self.identity_keys


# --------------------------------------------------------------------------------------------
# URI keys, read through the SIP layer's one URI parser (`sip.headers.SipUri`)
# --------------------------------------------------------------------------------------------


def _addr_spec(uri: str) -> str:
    """The URI inside a name-addr (`"Bob" <sip:b@h>;expires=60`), or the string itself: a bare
    URI keeps its `;params` (they are URI parameters here, `transport=` among them)."""
    s = uri.strip()
    return NameAddr.parse(s).uri if "<" in s else s


def _sip_uri(uri: str) -> tuple[str, SipUri | None]:
    """(addr-spec, its SipUri when the scheme is sip: or sips:). SipParseError on garbage."""
    s = _addr_spec(uri)
    scheme, colon, _ = s.partition(":")
    if not colon or not scheme:
        raise SipParseError("URI without scheme", 400)
    if scheme.lower() not in ("sip", "sips"):
        return s, None
    return s, SipUri.parse(s)


def _host_key(u: SipUri) -> str:
    """The host, lower-cased; an IPv6 reference in RFC 5952 form, zone dropped, in brackets
    (`[2001:DB8:0::1]` and `[2001:db8::1]` are one host)."""
    h = u.host
    if h.startswith("["):
        return f"[{ipaddress.IPv6Address(h[1:-1].split('%', 1)[0]).compressed}]"
    return h.lower()


def _userinfo_key(u: SipUri) -> str:
    # RFC 3261 §19.1.4: userinfo (password included) compares case-sensitively: kept as written.
    if u.user is None:
        return ""
    return f"{u.user}:{u.password}@" if u.password else f"{u.user}@"


def contact_key(uri: str) -> str:
    """Normalised key of a contact URI, for `by_contact`.

    `scheme:user@host:port;transport=t` with scheme, host and transport lower-cased, the user kept
    as is (RFC 3261 §19.1.4: user part is case-sensitive), the default port (5060, 5061 for sips)
    and transport filled in, and every other parameter and header dropped. The transport is tls
    for any sips: URI (RFC 3261 §26.2.2: `sips:` is TLS whatever `transport=` says, so
    `sips:u@h` and `sips:u@h;transport=tcp` are one contact), else the parameter or udp.
    Filling defaults is deliberately more lenient than §19.1.4 (which says an omitted port does
    not match an explicit 5060): S-CSCFs and UEs differ in whether they write defaults, and a
    look-up key must not depend on it. A name-addr is accepted (`<sip:...>;expires=60`).
    Non-SIP schemes are returned stripped and lower-cased. Raises SipParseError on a malformed
    SIP URI.
    """
    s, u = _sip_uri(uri)
    if u is None:
        return s.lower()
    port = u.port if u.port is not None else u.default_port
    transport = "tls" if u.secure else u.transport
    return f"{u.scheme}:{_userinfo_key(u)}{_host_key(u)}:{port};transport={transport}"


_TEL_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")


def aor_key(uri: str) -> str:
    """Normalised key of a public identity (IMPU, P-Associated-URI, P-Asserted-Identity).

    sip/sips: `scheme:user@host[:port]`, parameters dropped, host lower-case. tel: the number
    without visual separators (RFC 3966 §5.1.1) and without parameters. Anything else:
    stripped and lower-cased.
    """
    s, u = _sip_uri(uri)
    if u is None:
        scheme, _, rest = s.partition(":")
        if scheme.lower() == "tel":
            number = rest.split(";", 1)[0].translate(_TEL_VISUAL_SEPARATORS).strip().lower()
            return f"tel:{number}"
        return s.lower()
    port = f":{u.port}" if u.port is not None else ""
    return f"{u.scheme}:{_userinfo_key(u)}{_host_key(u)}{port}"


def flow_of_uri(uri: str) -> Flow | None:
    """The flow a SIP URI points at, when its host is an IP address; None otherwise.

    Used by the terminating look-up when the Request-URI names the UE's transport address
    rather than its registered contact (e.g. a contact rewritten for NAT). A sips: URI, or
    `transport=tls`, is a TLS flow (RFC 3261 §26.2.2); a transport we do not serve is None.
    """
    try:
        _, u = _sip_uri(uri)
    except SipParseError:
        return None
    if u is None:
        return None
    host = u.host[1:-1] if u.host.startswith("[") else u.host
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    transport = "tls" if u.secure else u.transport
    if transport not in FLOW_TRANSPORTS:
        return None
    return Flow(transport, host, u.port if u.port is not None else u.default_port)


# --------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------


class RegistrationStore(Protocol):
    """Where bindings live. Synchronous by design; see the module docstring for the Redis plan.

    Identity of a binding: (IMPU, contact), both normalised (`aor_key`, `contact_key`). The flow
    is an attribute that is indexed: a REGISTER for the same IMPU and contact from another flow
    replaces the binding, and the old flow stops being registered (latest REGISTER wins).
    """

    def upsert(self, binding: Binding) -> Binding | None:
        """Insert or replace the binding for (impu, contact). Returns the replaced one."""
        ...

    def remove(self, impu: str, contact: str) -> Binding | None:
        """Remove and return the binding for (impu, contact), if any."""
        ...

    def get(self, impu: str, contact: str) -> Binding | None: ...

    def by_flow(self, flow: Flow, identity: str | None = None) -> Binding | None:
        """The latest binding registered over `flow`; with `identity`, the latest one whose IMPU
        or associated identities include it. O(1) in the number of bindings."""
        ...

    def by_contact(self, contact_uri: str) -> Binding | None:
        """The latest binding whose contact matches `contact_key(contact_uri)`. O(1)."""
        ...

    def by_impu(self, impu: str) -> list[Binding]:
        """Every binding registered for this IMPU (its contacts), oldest first."""
        ...

    def sweep(self, now: float) -> list[Binding]:
        """Remove and return every binding with `expires_at <= now`."""
        ...

    def next_expiry(self) -> float | None:
        """When the next binding expires (for the adapter's timer), or None when empty."""
        ...

    def writable(self) -> bool:
        """Whether a REGISTER's bindings can be stored now. False while a shared store cannot
        write to its back end (look-ups still answer from the cache): the registrar then
        answers REGISTERs 503 + Retry-After rather than accept bindings it may lose."""
        ...

    def __len__(self) -> int: ...


_K = TypeVar("_K")
# Most keys index exactly one binding, so a slot holds the Binding itself and only becomes a list
# when shared (one UE registering several IMPUs over one flow/contact). That saves a container
# per binding per index (see bench/bench_registration_memory.py).
_Slot = Binding | list[Binding]


def _slot_add(index: dict[_K, _Slot], key: _K, b: Binding) -> None:
    cur = index.get(key)
    if cur is None:
        index[key] = b
    elif isinstance(cur, list):
        cur.append(b)
    else:
        index[key] = [cur, b]


def _slot_remove(index: dict[_K, _Slot], key: _K, b: Binding) -> None:
    cur = index.get(key)
    if cur is None:
        return
    if isinstance(cur, list):
        for i, x in enumerate(cur):
            if x is b:
                del cur[i]
                break
        if len(cur) == 1:
            index[key] = cur[0]
        elif not cur:
            del index[key]
    elif cur is b:
        del index[key]


def _slot_items(cur: _Slot | None) -> Sequence[Binding]:
    if cur is None:
        return ()
    if isinstance(cur, list):
        return cur
    return (cur,)


class InMemoryRegistrationStore:
    """Dict-indexed store: by IMPU (primary), by flow, by contact; expiry min-heap.

    The heap uses lazy deletion: a refresh pushes a new entry and leaves the old one to be
    skipped when it surfaces; it is compacted when stale entries outnumber live bindings, so its
    size stays within about twice the number of bindings.
    """

    __slots__ = ("_by_contact", "_by_flow", "_by_impu", "_count", "_heap", "_seq")

    # Rebuild the heap only past this many stale entries, so small stores never pay for it.
    _COMPACT_SLACK = 1024

    def __init__(self) -> None:
        self._by_impu: dict[str, _Slot] = {}
        self._by_flow: dict[Flow, _Slot] = {}
        self._by_contact: dict[str, _Slot] = {}
        self._heap: list[tuple[float, int, Binding]] = []
        self._seq = itertools.count()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _find(self, impu_key: str, ckey: str) -> Binding | None:
        for b in _slot_items(self._by_impu.get(impu_key)):
            if b.contact_key == ckey:
                return b
        return None

    def _index(self, b: Binding) -> None:
        _slot_add(self._by_impu, b.impu_key, b)
        _slot_add(self._by_flow, b.flow, b)
        _slot_add(self._by_contact, b.contact_key, b)
        self._count += 1

    def _unindex(self, b: Binding) -> None:
        _slot_remove(self._by_impu, b.impu_key, b)
        _slot_remove(self._by_flow, b.flow, b)
        _slot_remove(self._by_contact, b.contact_key, b)
        self._count -= 1

    def upsert(self, binding: Binding) -> Binding | None:
        old = self._find(binding.impu_key, binding.contact_key)
        if old is not None:
            self._unindex(old)
            if old.call_ids is not binding.call_ids:
                binding.call_ids.update(old.call_ids)
        self._index(binding)
        heapq.heappush(self._heap, (binding.expires_at, next(self._seq), binding))
        if len(self._heap) > 2 * self._count + self._COMPACT_SLACK:
            self._compact()
        return old

    def _compact(self) -> None:
        live = [e for e in self._heap if self._find(e[2].impu_key, e[2].contact_key) is e[2]]
        heapq.heapify(live)
        self._heap = live

    def get(self, impu: str, contact: str) -> Binding | None:
        try:
            return self._find(aor_key(impu), contact_key(contact))
        except SipParseError:
            return None

    def remove(self, impu: str, contact: str) -> Binding | None:
        b = self.get(impu, contact)
        if b is not None:
            self._unindex(b)  # its heap entry is now stale and will be skipped
            if len(self._heap) > 2 * self._count + self._COMPACT_SLACK:
                self._compact()
        return b

    def by_flow(self, flow: Flow, identity: str | None = None) -> Binding | None:
        items = _slot_items(self._by_flow.get(flow))
        if not items:
            return None
        if identity is None:
            return items[-1]
        try:
            ik = aor_key(identity)
        except SipParseError:
            return None
        for b in reversed(items):
            if ik in b.identity_keys:
                return b
        return None

    def by_contact(self, contact_uri: str) -> Binding | None:
        try:
            items = _slot_items(self._by_contact.get(contact_key(contact_uri)))
        except SipParseError:
            return None
        return items[-1] if items else None

    def by_impu(self, impu: str) -> list[Binding]:
        try:
            return list(_slot_items(self._by_impu.get(aor_key(impu))))
        except SipParseError:
            return []

    def sweep(self, now: float) -> list[Binding]:
        out: list[Binding] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, b = heapq.heappop(heap)
            if self._find(b.impu_key, b.contact_key) is b:
                self._unindex(b)
                out.append(b)
        return out

    def next_expiry(self) -> float | None:
        heap = self._heap
        # Drop stale tops so the timer is not armed for a binding that was refreshed or removed.
        while heap and self._find(heap[0][2].impu_key, heap[0][2].contact_key) is not heap[0][2]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def writable(self) -> bool:
        return True  # memory is always there

    def bindings(self) -> list[Binding]:
        """Every live binding (for diagnostics and tests)."""
        out: list[Binding] = []
        for slot in self._by_impu.values():
            out.extend(_slot_items(slot))
        return out

    def index_sizes(self) -> tuple[int, int, int]:
        """(impu keys, flow keys, contact keys): lets tests prove nothing is left behind."""
        return len(self._by_impu), len(self._by_flow), len(self._by_contact)


# --------------------------------------------------------------------------------------------
# Look-ups the proxy and the call layer make (REGISTER handling itself: pcscf_alg.registrar)
# --------------------------------------------------------------------------------------------


def originating_binding(store: RegistrationStore, flow: Flow, identity: str | None) -> Binding:
    """The binding an originating request belongs to, or RegistrationError(403).

    The flow must be registered (spec: a request from an unregistered flow gets 403 with a
    Warning). When the request asserts an identity (P-Preferred-Identity, or From when absent), it
    must be one registered over that flow (TS 24.229 §5.2.6.3 checks the asserted identity).
    """
    b = store.by_flow(flow)
    if b is None:
        raise RegistrationError("not registered from this address", 403)
    if identity is not None and not b.has_identity(identity):
        b = store.by_flow(flow, identity)
        if b is None:
            raise RegistrationError("identity not registered from this address", 403)
    return b


def terminating_binding(store: RegistrationStore, request_uri: str) -> Binding | None:
    """The binding a terminating request is for: the Request-URI is a registered contact, or
    names the flow of one (TS 24.229 §5.2.6.4: the S-CSCF targets the registered contact)."""
    b = store.by_contact(request_uri)
    if b is not None:
        return b
    flow = flow_of_uri(request_uri)
    return store.by_flow(flow) if flow is not None else None
