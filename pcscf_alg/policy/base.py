"""The `Policy` protocol: every "depending on its local policy" point of TS 33.328 is one method.

| method                          | seed text                                                   |
|---------------------------------|-------------------------------------------------------------|
| `originating_msrp_tls`          | 7.2.1 step 2: TCP/TLS/MSRP from the UE without indication   |
| `terminating_msrp_unregistered` | 7.3.1 step 3: TCP/MSRP from the core, support not registered |
| `terminating_msrp_tls`          | 7.3.1 step 3: TCP/TLS/MSRP from the core                     |
| `e2ae_not_registered`           | 7.2.1 NOTE 2a: indication present, support not registered    |
| `e2ae_downgrade`                | a re-offer would take a stream anchored as e2ae out of e2ae   |
| `allowed_suites`                | crypto suite allow-list, in order of preference               |
| `offer_suites`                  | which suites we offer to the UE (K21), in order (7.3.1 step 4)|
| `select_crypto`                 | which UE crypto line becomes K11 (7.2.1 step 3)               |

Methods take a `PolicyContext` and return enums, so a decision can be logged and counted.
`describe(subscriber)` names the rule set in force, for the decision records.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from ..mediaplan import Direction, MediaKind
from ..sdp.crypto import SUITES, CryptoAttr


class MsrpTlsAction(enum.Enum):
    """MSRP over TLS that nobody asked e2ae for: relay it end to end, or terminate TLS."""

    PASS = "pass"
    TERMINATE = "terminate"


class UnregisteredMsrpAction(enum.Enum):
    """Terminating TCP/MSRP when the UE/network did not register e2ae support for MSRP."""

    NONE = "none"  # no media plane security
    TERMINATE = "terminate"  # RCS 5.1: always use TLS on the terminating access leg (NOTE x)


class UnnegotiatedAction(enum.Enum):
    """TS 33.328 7.2.1 NOTE 2a: e2ae requested but support not established at registration."""

    REJECT = "reject"  # 488 + Warning
    E2E = "e2e"  # drop the indication, treat the stream as end to end
    APPLY = "apply"  # apply e2ae anyway


class DowngradeAction(enum.Enum):
    """A re-offer (UE or core) that would take a stream anchored as e2ae out of e2ae.

    TS 33.328 7.2.1 / 7.3.1 decide per offer and say nothing about a stream that was e2ae and
    is re-offered without the indication: read literally, the UE's SDES key (the one it has been
    using towards the gateway) would go to the core and anchoring would stop mid-call. Local
    policy decides.
    """

    KEEP = "keep"  # the stream stays e2ae (or anchored plain); the UE's keys stay on access
    REJECT = "reject"  # 488 + Warning naming the stream; the previous media stays
    ALLOW = "allow"  # decide the re-offer on its own, as for an initial offer


class CryptoSelection(enum.Enum):
    """How K11 is chosen among the UE's usable crypto lines."""

    FIRST_SUPPORTED = "first_supported"  # the UE's order (RFC 4568: offerer's preference)
    STRONGEST = "strongest"  # by suite strength
    PREFERRED = "preferred"  # by our allow-list order


class PolicyContext(NamedTuple):
    """What a policy sees about one stream. `ue_supports`/`net_supports` are the registration
    flags for the stream's protocol (RTP or MSRP). An immutable record (a NamedTuple: it is
    built for every m-line, and a frozen dataclass costs several times more to build)."""

    subscriber: str | None
    direction: Direction
    index: int  # type: ignore[assignment]
    kind: MediaKind
    proto: str
    ue_supports: bool = False
    net_supports: bool = False


@runtime_checkable
class Policy(Protocol):
    def originating_msrp_tls(self, ctx: PolicyContext) -> MsrpTlsAction: ...

    def terminating_msrp_unregistered(self, ctx: PolicyContext) -> UnregisteredMsrpAction: ...

    def terminating_msrp_tls(self, ctx: PolicyContext) -> MsrpTlsAction: ...

    def e2ae_not_registered(self, ctx: PolicyContext) -> UnnegotiatedAction: ...

    def e2ae_downgrade(self, ctx: PolicyContext) -> DowngradeAction: ...

    def allowed_suites(self, ctx: PolicyContext) -> Sequence[str]: ...

    def offer_suites(self, ctx: PolicyContext) -> Sequence[str]: ...

    def select_crypto(
        self, ctx: PolicyContext, candidates: Sequence[CryptoAttr]
    ) -> CryptoAttr | None: ...

    def describe(self, subscriber: str | None) -> str: ...


# Python 3.11 does not specialise lookups on an enum class (`EnumType.__getattr__`).
_FIRST_SUPPORTED = CryptoSelection.FIRST_SUPPORTED
_STRONGEST = CryptoSelection.STRONGEST


def select_by(
    rule: CryptoSelection, candidates: Sequence[CryptoAttr], preference: Sequence[str]
) -> CryptoAttr | None:
    """The standard selection rules, for `Policy.select_crypto` implementations.

    `candidates` are already filtered (gateway-usable, allowed), in the UE's order.
    """
    if not candidates:
        return None
    if rule is _FIRST_SUPPORTED:
        return candidates[0]
    if rule is _STRONGEST:
        # max() keeps the first of equals, so the UE's order breaks ties
        return max(candidates, key=lambda c: SUITES[c.suite].strength if c.known else -1)
    rank = {s: n for n, s in enumerate(preference)}
    return min(candidates, key=lambda c: rank.get(c.suite, len(rank)))
