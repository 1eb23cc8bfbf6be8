"""REGISTER handling of the P-CSCF, in one place and sans-IO.

What a P-CSCF does to a REGISTER it proxies, and to the response that comes back:

* security agreement (RFC 3329, TS 33.203): parse the UE's Security-Client, check a protected
  REGISTER's Security-Verify against the Security-Server we sent (494 on a mismatch), answer our
  Security-Server in the 401/407/494 and the 200, and refuse for a while an address that keeps
  failing (503 + Retry-After);
* the e2ae indications of the registration (TS 24.229 §7.2A.7, docs/e2ae-notes.md §1): the
  UE's mediasec mechanisms, the network's from our config;
* Path (RFC 3327) towards the registrar, so that terminating requests come back through us;
* from the 200: the bindings (RFC 3261 §10.3: every current contact with its expiry),
  Service-Route (RFC 3608) and P-Associated-URI, written to the registration store.

`Registrar` takes the REGISTER (or its response) and the current time and returns a decision:
a `Refusal` to answer with, or the `RegisterCtx` to forward the request with. The proxy core
(`alg.Pcscf`) keeps the mechanics: transactions, replies, forwarding, counters. No socket, no
clock, no asyncio here; nothing here imports the proxy core or the call layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pcscf_alg.config import Config
from pcscf_alg.errors import RegistrationError, SipParseError
from pcscf_alg.registration import (
    Binding,
    E2aeIndication,
    Flow,
    RegistrationStore,
    contact_key,
)
from pcscf_alg.sip.headers import NameAddr
from pcscf_alg.sip.message import SipMessage
from pcscf_alg.sip.secagree import (
    MECH_MSRP_TLS,
    MECH_SDES_SRTP,
    SecMechanism,
    e2ae_support,
    format_mechanisms,
    mediasec_mechanisms,
    parse_security_header,
    server_mechanisms,
    verify_matches,
)
from pcscf_alg.sip.transaction import Peer

__all__ = [
    "MAX_EXPIRES",
    "SECAGREE_TRACKED",
    "Refusal",
    "RegisterCtx",
    "Registrar",
    "RegistrationError",
    "check_security_verify",
    "expiry_from_200",
    "indications_from_mechanisms",
    "indications_from_register",
    "register_from_200",
]

log = logging.getLogger(__name__)

# RFC 3261 §20.19 / §20.10: delta-seconds for Expires and the Contact expires param are
# 0 .. 2**32-1.
MAX_EXPIRES = 2**32 - 1
# Source addresses whose failed security agreements we count (a bounded table: an attacker
# with many addresses evicts old entries rather than growing it).
SECAGREE_TRACKED = 4096

_ACTED_ON = frozenset({MECH_SDES_SRTP, MECH_MSRP_TLS})


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RegisterCtx:
    """What a REGISTER told us, kept until its final response arrives."""

    flow: Flow
    impu: str
    contacts: list[str]
    mechanisms: tuple[SecMechanism, ...]
    flags: E2aeIndication
    path: str
    # what the REGISTER asked for, per contact (Contact expires= or Expires), and Contact: *
    requested: dict[str, int | None] = field(default_factory=dict)
    wildcard: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer the REGISTER with this instead of forwarding it.

    `throttled` marks the 503 given to an address with too many failed security agreements
    (the proxy counts it as `secagree_throttled`)."""

    status: int
    reason: str
    warning: str | None = None
    extra: list[tuple[str, str]] | None = None
    throttled: bool = False


# --------------------------------------------------------------------------------------------
# The registrar side of the P-CSCF
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Registrar:
    """REGISTER handling (module docstring) over a registration store.

    `config` returns the configuration in force: the `registration:` keys are read on every
    request, so a live reload (`Pcscf.set_config`) applies at once. The Security-Server we
    offer comes from the `e2ae:` keys, which need a restart: it is computed once. `core` is the
    (host, port) that Path names: the core listener, or with worker processes the worker's own
    core port, so that terminating requests reach the worker that registered the UE.
    """

    store: RegistrationStore
    config: Callable[[], Config]
    core: tuple[str, int]
    server: tuple[SecMechanism, ...] = field(init=False)
    server_text: str = field(init=False)
    # Failed security agreements per source address: host -> (window start, failures).
    secagree_fail: dict[str, tuple[float, int]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        cfg = self.config()
        self.server = tuple(server_mechanisms(cfg.e2ae.rtp, cfg.e2ae.msrp))
        self.server_text = format_mechanisms(self.server)

    # ---------------------------------------------------------------- the request
    def on_register(
        self, msg: SipMessage, source: Peer, next_hop_transport: str, now: float
    ) -> RegisterCtx | Refusal:
        """Decide on a REGISTER from a UE (`source`) that goes on to the core over
        `next_hop_transport`. On a forward, `msg` has our Path on top; the sec-agree material
        is the forwarding's business (it leaves every request towards the core).

        Raises SipParseError (answered 400) on a malformed Security-Client/-Verify (counted as a
        failed agreement), To or Contact."""
        cfg = self.config()
        if not self.store.writable():
            # A shared store that cannot write now (Redis down): the bindings of a 200 could be
            # lost, so the UE is told to come back (RFC 3261 §21.5.4) while calls to the UEs
            # already registered go on from the cache (README "Registrations on Redis").
            return Refusal(
                503,
                "Service Unavailable",
                warning="registration store unavailable",
                extra=[("Retry-After", str(cfg.registration.store.retry_after_s))],
            )
        retry = self.secagree_throttled(source.host, now)
        if retry is not None:
            return Refusal(
                503,
                "Service Unavailable",
                warning="too many failed security agreements from this address",
                extra=[("Retry-After", str(retry))],
                throttled=True,
            )
        try:
            client_mechs = parse_security_header(msg.headers.get_raw_all("security-client"))
            check_security_verify(self.server, msg.headers.get_raw_all("security-verify"))
        except SipParseError:
            self.secagree_failed(source.host, now)
            raise
        except RegistrationError as e:
            self.secagree_failed(source.host, now)
            # RFC 3329 §2.3.1: a 494 carries the server's list so the UE can start again.
            return Refusal(
                e.status,
                "Security Agreement Required",
                warning=e.reason,
                extra=[("Security-Server", self.server_text)] if self.server else None,
            )
        flags = indications_from_mechanisms(client_mechs, cfg.e2ae.rtp, cfg.e2ae.msrp)
        to = NameAddr.parse(msg.headers.get("to") or "")
        req_exp = msg.headers.get("expires")
        default_req = int(req_exp) if req_exp and req_exp.strip().isdigit() else None
        contacts: list[str] = []
        requested: dict[str, int | None] = {}
        wildcard = False
        for c in msg.headers.values("contact"):
            if c.strip() == "*":
                wildcard = True  # RFC 3261 §10.2.2: remove every binding of the AoR
                continue
            na = NameAddr.parse(c)
            contacts.append(na.uri)
            exp = na.param("expires")
            requested[na.uri] = int(exp) if exp and exp.isdigit() else default_req
        # RFC 3327: our Path entry names the core listener, so that the S-CSCF's terminating
        # requests for this contact come back through us (docs/e2ae-notes.md §1.2 item 4).
        host, port = self.core
        t = ";transport=tcp" if next_hop_transport == "tcp" else ""
        path = f"<sip:term@{host}:{port};lr{t}>"
        msg.headers.prepend("Path", path)
        flow = Flow(source.transport, source.host, source.port)
        return RegisterCtx(
            flow, to.uri, contacts, tuple(client_mechs), flags, path, requested, wildcard
        )

    def secagree_failed(self, host: str, now: float) -> None:
        """Count a failed security agreement from `host` in its current window."""
        window = self.config().registration.secagree_window_s
        fail = self.secagree_fail
        start, n = fail.get(host, (now, 0))
        if now - start >= window:
            start, n = now, 0
        if host not in fail and len(fail) >= SECAGREE_TRACKED:
            # Bounded by design: drop windows that are over, else the oldest one.
            over = [h for h, (t, _) in fail.items() if now - t >= window]
            for h in over or [min(fail, key=lambda h: fail[h][0])]:
                del fail[h]
        fail[host] = (start, n + 1)

    def secagree_throttled(self, host: str, now: float) -> int | None:
        """Seconds the REGISTERs of `host` are refused for (Retry-After), or None: after
        `registration.secagree_max_failures` failed security agreements within
        `registration.secagree_window_s`, the rest of that window. A UE that retries a 494 at
        once (Asterisk with duplicated Security-Verify did, 32 rounds in 0.34 s) is told to
        wait rather than kept in a loop with us."""
        got = self.secagree_fail.get(host)
        if got is None:
            return None
        start, n = got
        reg = self.config().registration
        left = reg.secagree_window_s - (now - start)
        if left <= 0:
            del self.secagree_fail[host]
            return None
        if n < reg.secagree_max_failures:
            return None
        return max(1, int(left + 0.999))

    # ---------------------------------------------------------------- the response
    def on_response(self, reg: RegisterCtx, resp: SipMessage, now: float) -> int:
        """A response to a REGISTER we forwarded, on its way to the UE: add our
        Security-Server where it belongs and, on a 2xx, write the bindings to the store.
        Returns the number of bindings written (refreshed, created or expired to 0)."""
        ok = 200 <= resp.status < 300
        if self.server and reg.mechanisms and (ok or resp.status in (401, 407, 494)):
            # RFC 3329 §2.3.1: the server's list answers a client's; a UE that sent no
            # Security-Client gets none (it would only learn what we support).
            # docs/e2ae-notes.md §1.2 item 2: Security-Server in the 401 and in the 200.
            resp.headers.add_after_last("Security-Server", self.server_text, "cseq")
        if not ok:
            return 0
        if reg.wildcard:
            for b in self.store.by_impu(reg.impu):
                self.store.remove(b.impu, b.contact)
            return 0
        default = self.config().registration.default_expires
        expires_hdr = resp.headers.get("expires")
        exp_h = int(expires_hdr) if expires_hdr and expires_hdr.strip().isdigit() else None
        granted: dict[str, int | None] = {}
        for c in resp.headers.values("contact"):
            try:
                na = NameAddr.parse(c)
            except SipParseError:
                continue
            e = na.param("expires")
            granted[_contact_norm(na.uri)] = int(e) if e and e.isdigit() else None
        # RFC 3608: the Service-Route of the 200 is the preloaded route of the UE's originating
        # requests (TS 24.229 5.2.6.3.3); P-Associated-URI lists the identities it may assert.
        service_route = resp.headers.values("service-route")
        associated = []
        for v in resp.headers.values("p-associated-uri"):
            try:
                associated.append(NameAddr.parse(v).uri)
            except SipParseError:
                continue
        written = 0
        for contact in reg.contacts:
            key = _contact_norm(contact)
            if granted:
                # RFC 3261 §10.3 step 8: the 200 lists every current binding with its expiry;
                # a contact it does not list is not registered.
                expires = expiry_from_200(granted[key], exp_h, default) if key in granted else 0
            else:
                # A minimal registrar that lists no Contact: take what the UE asked for.
                expires = expiry_from_200(reg.requested.get(contact), exp_h, default)
            try:
                register_from_200(
                    self.store,
                    impu=reg.impu,
                    contact=contact,
                    flow=reg.flow,
                    flags=reg.flags,
                    expires=expires,
                    now=now,
                    mechanisms=reg.mechanisms,
                    path=[reg.path],
                    service_route=service_route,
                    associated=associated,
                )
            except (ValueError, SipParseError) as e:
                # A contact we cannot key (malformed URI): the 200 still goes to the UE.
                log.info("REGISTER %s: binding not stored: %s", reg.impu, e)
                continue
            written += 1
        return written


def _contact_norm(uri: str) -> str:
    """`contact_key`, or the URI itself when it cannot be keyed (then it matches only itself)."""
    try:
        return contact_key(uri)
    except (ValueError, SipParseError):
        return uri


# --------------------------------------------------------------------------------------------
# The pieces, as functions (also used by tests and benchmarks)
# --------------------------------------------------------------------------------------------


def indications_from_register(
    security_client_values: Sequence[str], net_rtp: bool, net_msrp: bool
) -> E2aeIndication:
    """e2ae flags for a REGISTER: UE side from its Security-Client, network side from config.

    TS 24.229 §7.2A.7 / docs/e2ae-notes.md §1.2 item 1: `sdes-srtp;mediasec` => UE supports
    e2ae RTP, `msrp-tls;mediasec` => MSRP. Other mediasec names are recorded, not acted on. The
    network side is what we put in Security-Server, i.e. `server_mechanisms(net_rtp, net_msrp)`.
    Raises SipParseError(400) on a malformed header.
    """
    mechs = parse_security_header(security_client_values)
    return indications_from_mechanisms(mechs, net_rtp, net_msrp)


def indications_from_mechanisms(
    mechs: Iterable[SecMechanism], net_rtp: bool, net_msrp: bool
) -> E2aeIndication:
    """As `indications_from_register`, for an already parsed Security-Client."""
    media = mediasec_mechanisms(mechs)
    ue_rtp, ue_msrp = e2ae_support(media)
    other: list[str] = []
    for m in media:
        if m.name not in _ACTED_ON and m.name not in other:
            other.append(m.name)
    return E2aeIndication(ue_rtp, ue_msrp, net_rtp, net_msrp, tuple(other))


def check_security_verify(
    server_sent: Sequence[SecMechanism], security_verify_values: Sequence[str]
) -> None:
    """Check a protected REGISTER's Security-Verify against our Security-Server.

    No Security-Verify: nothing to check (an initial or unprotected REGISTER). Otherwise it must
    list exactly what we sent (RFC 3329 §2.3.1, downgrade protection), compared regardless
    of order, case and whitespace; raise RegistrationError(494) if not. A malformed header raises
    SipParseError(400).
    """
    if not security_verify_values:
        return
    # Exact duplicates are one entry (see `parse_security_header`): no downgrade hides there.
    verify = parse_security_header(security_verify_values, dedupe=True)
    if not verify_matches(server_sent, verify):
        # RFC 3329 §2.3.1: the server answers 494 (Security Agreement Required) on mismatch.
        raise RegistrationError("Security-Verify does not match Security-Server", 494)


def expiry_from_200(
    contact_params_expires: int | None, expires_header: int | None, default: int
) -> int:
    """Seconds a contact stays registered, from the 200 (OK) to REGISTER.

    RFC 3261 §10.2.4 / §10.3 step 8: the registrar returns each contact with its granted expiry;
    the Contact `expires` param wins over the Expires header, which wins over our default.
    A negative value is malformed and ignored; values are capped at 2**32-1 (RFC 3261 §20.19).
    0 means the contact is de-registered.
    """
    for v in (contact_params_expires, expires_header, default):
        if v is not None and v >= 0:
            return min(v, MAX_EXPIRES)
    return 0


def register_from_200(
    store: RegistrationStore,
    *,
    impu: str,
    contact: str,
    flow: Flow,
    flags: E2aeIndication,
    expires: int,
    now: float,
    mechanisms: Iterable[SecMechanism] = (),
    path: Iterable[str] = (),
    service_route: Iterable[str] = (),
    associated: Iterable[str] = (),
) -> Binding | None:
    """Apply a successful REGISTER to the store: refresh/create, or remove when `expires` is 0.

    Latest REGISTER wins: flags, flow, mechanisms, Path, Service-Route and associated identities
    are all replaced. `registered_at` is kept from the existing binding on a refresh. Returns the
    stored binding, or None when the contact was de-registered.

    `mechanisms` is the UE's parsed Security-Client; only its mediasec entries are kept. The
    signalling ones (ipsec-3gpp with SPIs and ports, tls, digest) belong to the sec-agree / SA
    layer, not to e2ae, and keeping them would cost about 2 KB per binding (measured).
    """
    if expires <= 0:
        store.remove(impu, contact)
        return None
    old = store.get(impu, contact)
    binding = Binding(
        impu=impu,
        contact=contact,
        flow=flow,
        flags=flags,
        expires_at=now + expires,
        registered_at=old.registered_at if old is not None else now,
        mechanisms=tuple(mediasec_mechanisms(mechanisms)),
        path=tuple(path),
        service_route=tuple(service_route),
        associated=tuple(associated),
        call_ids=old.call_ids if old is not None else set(),
    )
    store.upsert(binding)
    return binding
