"""The default `Policy`: decisions read from the `policy:` section of the YAML config.

Keys (all optional; the defaults are strict 3GPP, see config/policy-strict-3gpp.yaml):

    policy:
      originating_msrp_tls: pass | terminate          # TS 33.328 7.2.1 step 2, NOTE x
      terminating_msrp_unregistered: none | terminate # 7.3.1 step 3
      terminating_msrp_tls: pass | terminate          # 7.3.1 step 3, NOTE x
      e2ae_not_registered: reject | e2e | apply       # 7.2.1 NOTE 2a
      e2ae_downgrade: keep | reject | allow           # re-offer leaving e2ae (default keep)
      crypto:
        allow: [AES_CM_128_HMAC_SHA1_80, ...]         # allow-list = preference order
        offer: [AES_CM_128_HMAC_SHA1_80, ...]         # K21 lines offered to the UE, in order
        select: first_supported | strongest | preferred
      subscribers:                                    # first match wins
        - match: "sip:+1555123*"                      # fnmatch, case-insensitive
          originating_msrp_tls: terminate             # any key above, crypto merged key by key
        - regex: "^tel:\\+49.*$"                      # or a full-match regular expression
          e2ae_not_registered: e2e

Or, instead of all of the above, a custom implementation:

    policy:
      class: mypackage.policies:MyPolicy              # module:Class implementing Policy
      options: {any: thing}                           # passed as keyword arguments

Every key is validated; an error names `policy.<path>` (ConfigError).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigError
from ..plugin import instantiate
from ..sdp.crypto import GATEWAY_SUITES, SUITES, CryptoAttr
from .base import (
    CryptoSelection,
    DowngradeAction,
    MsrpTlsAction,
    Policy,
    PolicyContext,
    UnnegotiatedAction,
    UnregisteredMsrpAction,
    select_by,
)

DEFAULT_OFFER: Final = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")


@dataclass(frozen=True)
class RuleSet:
    """One complete set of decisions. The field defaults are strict 3GPP."""

    # 7.2.1 step 2: without "e2ae requested", TCP/TLS/MSRP proceeds per 7.2.3 (end to end).
    originating_msrp_tls: MsrpTlsAction = MsrpTlsAction.PASS
    # 7.3.1 step 3: without registered support, "continue as ... without media plane security".
    terminating_msrp_unregistered: UnregisteredMsrpAction = UnregisteredMsrpAction.NONE
    # 7.3.1 step 3: TCP/TLS/MSRP from the core proceeds per 7.3.3 (end to end).
    terminating_msrp_tls: MsrpTlsAction = MsrpTlsAction.PASS
    # 7.2.1 NOTE 2a: "this is an error case" -> refuse the offer.
    e2ae_not_registered: UnnegotiatedAction = UnnegotiatedAction.REJECT
    # Not a 3GPP policy point: a re-offer without the indication on a stream anchored as e2ae
    # keeps it e2ae, so that the UE's key never reaches the core (issue 11 item 8).
    e2ae_downgrade: DowngradeAction = DowngradeAction.KEEP
    allow: tuple[str, ...] = GATEWAY_SUITES
    offer: tuple[str, ...] = DEFAULT_OFFER
    select: CryptoSelection = CryptoSelection.FIRST_SUPPORTED


@dataclass(frozen=True)
class Override:
    label: str
    pattern: re.Pattern[str]
    rules: RuleSet


class YamlPolicy:
    """`Policy` from a default `RuleSet` plus per-subscriber overrides (first match wins)."""

    def __init__(self, default: RuleSet | None = None, overrides: Sequence[Override] = ()) -> None:
        self._default = default if default is not None else RuleSet()
        self._overrides = tuple(overrides)

    def rules(self, subscriber: str | None) -> tuple[RuleSet, str]:
        if subscriber is not None:
            for o in self._overrides:
                if o.pattern.fullmatch(subscriber):
                    return o.rules, o.label
        return self._default, "policy default"

    def describe(self, subscriber: str | None) -> str:
        return self.rules(subscriber)[1]

    def originating_msrp_tls(self, ctx: PolicyContext) -> MsrpTlsAction:
        return self.rules(ctx.subscriber)[0].originating_msrp_tls

    def terminating_msrp_unregistered(self, ctx: PolicyContext) -> UnregisteredMsrpAction:
        return self.rules(ctx.subscriber)[0].terminating_msrp_unregistered

    def terminating_msrp_tls(self, ctx: PolicyContext) -> MsrpTlsAction:
        return self.rules(ctx.subscriber)[0].terminating_msrp_tls

    def e2ae_not_registered(self, ctx: PolicyContext) -> UnnegotiatedAction:
        return self.rules(ctx.subscriber)[0].e2ae_not_registered

    def e2ae_downgrade(self, ctx: PolicyContext) -> DowngradeAction:
        return self.rules(ctx.subscriber)[0].e2ae_downgrade

    def allowed_suites(self, ctx: PolicyContext) -> Sequence[str]:
        return self.rules(ctx.subscriber)[0].allow

    def offer_suites(self, ctx: PolicyContext) -> Sequence[str]:
        return self.rules(ctx.subscriber)[0].offer

    def select_crypto(
        self, ctx: PolicyContext, candidates: Sequence[CryptoAttr]
    ) -> CryptoAttr | None:
        rules = self.rules(ctx.subscriber)[0]
        return select_by(rules.select, candidates, rules.allow)


def strict_policy() -> YamlPolicy:
    """The strict 3GPP defaults (what an absent `policy:` section means)."""
    return YamlPolicy()


# -- loading and validation ------------------------------------------------------------------

_RULE_KEYS: Final[dict[str, type[Any]]] = {
    "originating_msrp_tls": MsrpTlsAction,
    "terminating_msrp_unregistered": UnregisteredMsrpAction,
    "terminating_msrp_tls": MsrpTlsAction,
    "e2ae_not_registered": UnnegotiatedAction,
    "e2ae_downgrade": DowngradeAction,
}
_CRYPTO_KEYS: Final = ("allow", "offer", "select")


def _enum(file: str, key: str, value: object, cls: type[Any]) -> Any:
    choices = [e.value for e in cls]
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(file, key, f"must be one of {', '.join(choices)} (got {value!r})")
    return cls(value)


def _suites(file: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(file, key, "must be a non-empty list of crypto suite names")
    out: list[str] = []
    for n, s in enumerate(value):
        if not isinstance(s, str) or s not in SUITES:
            raise ConfigError(file, f"{key}[{n}]", f"unknown crypto suite {s!r}")
        if s not in GATEWAY_SUITES:
            raise ConfigError(
                file, f"{key}[{n}]", f"{s} is not supported by the gateway "
                f"(supported: {', '.join(GATEWAY_SUITES)})"
            )
        if s in out:
            raise ConfigError(file, f"{key}[{n}]", f"duplicate suite {s}")
        out.append(s)
    return tuple(out)


def _rules(file: str, prefix: str, data: Mapping[str, Any], base: RuleSet,
           extra: frozenset[str] = frozenset()) -> RuleSet:
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}"
        if key in _RULE_KEYS:
            changes[key] = _enum(file, path, value, _RULE_KEYS[key])
        elif key == "crypto":
            if not isinstance(value, dict):
                raise ConfigError(file, path, "must be a mapping")
            for ck, cv in value.items():
                cpath = f"{path}.{ck}"
                if ck in ("allow", "offer"):
                    changes[ck] = _suites(file, cpath, cv)
                elif ck == "select":
                    changes[ck] = _enum(file, cpath, cv, CryptoSelection)
                else:
                    raise ConfigError(file, cpath,
                                      f"unknown key (expected {', '.join(_CRYPTO_KEYS)})")
        elif key not in extra:
            raise ConfigError(file, path, "unknown key")
    if "allow" in changes and "offer" not in changes:
        # allow-list narrowed, offer not given: offer what is left of the inherited offer
        allow = changes["allow"]
        changes["offer"] = tuple(s for s in base.offer if s in allow) or allow[:1]
    rules = dataclasses.replace(base, **changes)
    stray = [s for s in rules.offer if s not in rules.allow]
    if stray:
        raise ConfigError(file, f"{prefix}.crypto.offer",
                          f"{stray[0]} is offered but not in crypto.allow")
    return rules


def _override(file: str, n: int, item: object, base: RuleSet) -> Override:
    prefix = f"policy.subscribers[{n}]"
    if not isinstance(item, dict):
        raise ConfigError(file, prefix, "must be a mapping with match: or regex:")
    has_m, has_r = "match" in item, "regex" in item
    if has_m == has_r:
        raise ConfigError(file, prefix, "needs exactly one of match: (fnmatch) or regex:")
    key = "match" if has_m else "regex"
    pat = item[key]
    if not isinstance(pat, str) or not pat:
        raise ConfigError(file, f"{prefix}.{key}", "must be a non-empty string")
    try:
        # IMPU patterns: fnmatch compares case-insensitively (URI hosts and schemes are).
        rx = re.compile(fnmatch.translate(pat), re.IGNORECASE) if has_m else re.compile(pat)
    except re.error as e:
        raise ConfigError(file, f"{prefix}.{key}", f"bad pattern: {e}") from None
    rules = _rules(file, prefix, item, base, frozenset(("match", "regex")))
    return Override(f"policy.subscribers[{n}] ({key} {pat!r})", rx, rules)


def _load_class(file: str, section: Mapping[str, Any]) -> Policy:
    for key in section:
        if key not in ("class", "options"):
            raise ConfigError(file, f"policy.{key}", "not allowed together with policy.class")
    spec = section["class"]
    obj = instantiate(file, "policy", spec, section.get("options", {}))
    if not isinstance(obj, Policy):
        missing = [m for m in ("originating_msrp_tls", "terminating_msrp_unregistered",
                               "terminating_msrp_tls", "e2ae_not_registered", "e2ae_downgrade",
                               "allowed_suites", "offer_suites", "select_crypto", "describe")
                   if not callable(getattr(obj, m, None))]
        raise ConfigError(file, "policy.class",
                          f"{spec} does not implement Policy (missing {', '.join(missing)})")
    return obj


def load_policy(section: Mapping[str, Any] | None, file: str) -> Policy:
    """Build the policy from the `policy:` section (None = strict 3GPP defaults)."""
    if section is None:
        return strict_policy()
    if not isinstance(section, Mapping):
        raise ConfigError(file, "policy", "must be a mapping")
    if "class" in section:
        return _load_class(file, section)
    default = _rules(file, "policy", section, RuleSet(), frozenset(("subscribers",)))
    subs = section.get("subscribers", [])
    if subs is None:
        subs = []
    if not isinstance(subs, list):
        raise ConfigError(file, "policy.subscribers", "must be a list")
    overrides = [_override(file, n, item, default) for n, item in enumerate(subs)]
    return YamlPolicy(default, overrides)
