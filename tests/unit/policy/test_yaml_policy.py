"""The Policy protocol, the YAML default and its validation."""

from __future__ import annotations

import glob
from typing import Any

import pytest
import yaml

from pcscf_alg.errors import ConfigError
from pcscf_alg.mediaplan import Direction, MediaKind
from pcscf_alg.policy import (
    CryptoSelection,
    DowngradeAction,
    MsrpTlsAction,
    Policy,
    PolicyContext,
    UnnegotiatedAction,
    UnregisteredMsrpAction,
    YamlPolicy,
    load_policy,
    select_by,
)
from pcscf_alg.sdp.crypto import generate_crypto

from ..sdp.helpers import counter_rng


def ctx(sub: str | None = None) -> PolicyContext:
    return PolicyContext(sub, Direction.ORIGINATING, 0, MediaKind.MSRP, "TCP/TLS/MSRP")


def test_defaults_are_strict_3gpp() -> None:
    for p in (load_policy(None, "f.yaml"), load_policy({}, "f.yaml")):
        assert isinstance(p, Policy)
        c = ctx()
        assert p.originating_msrp_tls(c) is MsrpTlsAction.PASS
        assert p.terminating_msrp_unregistered(c) is UnregisteredMsrpAction.NONE
        assert p.terminating_msrp_tls(c) is MsrpTlsAction.PASS
        assert p.e2ae_not_registered(c) is UnnegotiatedAction.REJECT
        assert p.e2ae_downgrade(c) is DowngradeAction.KEEP
        assert list(p.offer_suites(c)) == ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]
        assert p.allowed_suites(c)[0] == "AES_CM_128_HMAC_SHA1_80"
        assert p.describe(None) == "policy default"


def test_subscriber_overrides_first_match_wins_and_merge_crypto() -> None:
    p = load_policy(
        {
            "originating_msrp_tls": "terminate",
            "crypto": {"select": "strongest", "allow": ["AES_CM_128_HMAC_SHA1_80",
                                                         "AEAD_AES_128_GCM"]},
            "subscribers": [
                {"match": "sip:+1555*", "e2ae_not_registered": "e2e",
                 "crypto": {"select": "preferred"}},
                {"regex": r"tel:\+49\d+", "originating_msrp_tls": "pass"},
                {"match": "sip:+15551*", "e2ae_not_registered": "apply"},  # shadowed
            ],
        },
        "f.yaml",
    )
    assert isinstance(p, YamlPolicy)
    a = ctx("SIP:+15551230001@ims.example.net")  # fnmatch is case-insensitive
    assert p.e2ae_not_registered(a) is UnnegotiatedAction.E2E
    assert p.originating_msrp_tls(a) is MsrpTlsAction.TERMINATE  # inherited from the default
    rules, label = p.rules(a.subscriber)
    assert rules.select is CryptoSelection.PREFERRED
    assert rules.allow == ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM")
    assert label == "policy.subscribers[0] (match 'sip:+1555*')"
    assert p.originating_msrp_tls(ctx("tel:+4930123")) is MsrpTlsAction.PASS
    assert p.originating_msrp_tls(ctx("tel:+4930123x")) is MsrpTlsAction.TERMINATE  # full match
    assert p.describe(None) == "policy default"


def test_select_by_rules() -> None:
    rng = counter_rng()
    c80 = generate_crypto(1, "AES_CM_128_HMAC_SHA1_80", rng)
    c32 = generate_crypto(2, "AES_CM_128_HMAC_SHA1_32", rng)
    g256 = generate_crypto(3, "AEAD_AES_256_GCM", rng)
    cands = [c32, c80, g256]
    assert select_by(CryptoSelection.FIRST_SUPPORTED, cands, ()) is c32
    assert select_by(CryptoSelection.STRONGEST, cands, ()) is g256
    assert select_by(CryptoSelection.PREFERRED, cands,
                     ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM")) is c80
    assert select_by(CryptoSelection.PREFERRED, [], ()) is None


@pytest.mark.parametrize(
    "section, key, reason",
    [
        ([], "policy", "mapping"),
        ({"nope": 1}, "policy.nope", "unknown key"),
        ({"originating_msrp_tls": "maybe"}, "policy.originating_msrp_tls", "pass, terminate"),
        ({"e2ae_not_registered": 3}, "policy.e2ae_not_registered", "reject, e2e, apply"),
        ({"terminating_msrp_unregistered": "pass"}, "policy.terminating_msrp_unregistered",
         "none, terminate"),
        ({"crypto": []}, "policy.crypto", "mapping"),
        ({"crypto": {"prefer": []}}, "policy.crypto.prefer", "unknown key"),
        ({"crypto": {"allow": []}}, "policy.crypto.allow", "non-empty"),
        ({"crypto": {"allow": ["NOPE"]}}, "policy.crypto.allow[0]", "unknown crypto suite"),
        ({"crypto": {"offer": ["AES_CM_128_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_80"]}},
         "policy.crypto.offer[1]", "not supported by the gateway"),
        ({"crypto": {"offer": ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"]}},
         "policy.crypto.offer[1]", "duplicate"),
        ({"crypto": {"allow": ["AES_CM_128_HMAC_SHA1_80"], "offer": ["AEAD_AES_128_GCM"]}},
         "policy.crypto.offer",
         "not in crypto.allow"),
        ({"crypto": {"select": "best"}}, "policy.crypto.select", "first_supported"),
        ({"subscribers": {}}, "policy.subscribers", "list"),
        ({"subscribers": ["x"]}, "policy.subscribers[0]", "mapping"),
        ({"subscribers": [{"e2ae_not_registered": "e2e"}]}, "policy.subscribers[0]",
         "exactly one"),
        ({"subscribers": [{"match": "a", "regex": "b"}]}, "policy.subscribers[0]", "exactly one"),
        ({"subscribers": [{"regex": "("}]}, "policy.subscribers[0].regex", "bad pattern"),
        ({"subscribers": [{"match": ""}]}, "policy.subscribers[0].match", "non-empty"),
        ({"subscribers": [{"match": "x", "colour": "red"}]}, "policy.subscribers[0].colour",
         "unknown key"),
        ({"e2ae_downgrade": "drop"}, "policy.e2ae_downgrade", "keep, reject, allow"),
        ({"subscribers": [{"match": "x", "e2ae_downgrade": None}]},
         "policy.subscribers[0].e2ae_downgrade", "must be one of"),
        ({"subscribers": [{"match": "x", "crypto": {"select": 1}}]},
         "policy.subscribers[0].crypto.select", "one of"),
        ({"class": "nope"}, "policy.class", "module:Class"),
        ({"class": "no_such_module_xyz:C"}, "policy.class", "cannot import"),
        ({"class": "tests.unit.policy.custom_policy:Missing"}, "policy.class", "no class"),
        ({"class": "tests.unit.policy.custom_policy:Incomplete"}, "policy.class",
         "missing originating_msrp_tls"),
        ({"class": "tests.unit.policy.custom_policy:AlwaysTerminate", "options": []},
         "policy.options", "mapping"),
        ({"class": "tests.unit.policy.custom_policy:AlwaysTerminate",
          "options": {"colour": 1}}, "policy.options", "unexpected keyword"),
        ({"class": "tests.unit.policy.custom_policy:AlwaysTerminate",
          "e2ae_not_registered": "e2e"}, "policy.e2ae_not_registered", "not allowed"),
    ],
)
def test_validation_errors_name_the_key(section: Any, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_policy(section, "pcscf.yaml")
    assert e.value.key == key
    assert e.value.file == "pcscf.yaml"
    assert reason in e.value.reason
    assert str(e.value).startswith(f"pcscf.yaml: {key}: ")


def test_custom_class() -> None:
    p = load_policy({"class": "tests.unit.policy.custom_policy:AlwaysTerminate",
                     "options": {"label": "mine"}}, "f.yaml")
    assert p.describe(None) == "mine"
    assert p.terminating_msrp_tls(ctx()) is MsrpTlsAction.TERMINATE


@pytest.mark.parametrize("path", sorted(glob.glob("config/policy-*.yaml")))
def test_shipped_example_policies_load(path: str) -> None:
    with open(path) as f:
        data = yaml.safe_load(f)
    p = load_policy(data["policy"], path)
    assert isinstance(p, YamlPolicy)


def test_shipped_policies_mean_what_they_say() -> None:
    def load(name: str) -> Policy:
        with open(f"config/policy-{name}.yaml") as f:
            return load_policy(yaml.safe_load(f)["policy"], name)

    strict, rcs, li = load("strict-3gpp"), load("rcs51"), load("lawful-intercept")
    c = ctx()
    default = load_policy(None, "x")
    for m in ("originating_msrp_tls", "terminating_msrp_unregistered", "terminating_msrp_tls",
              "e2ae_not_registered", "e2ae_downgrade", "allowed_suites", "offer_suites"):
        assert getattr(strict, m)(c) == getattr(default, m)(c), m
    assert rcs.originating_msrp_tls(c) is MsrpTlsAction.TERMINATE
    assert rcs.terminating_msrp_unregistered(c) is UnregisteredMsrpAction.TERMINATE
    assert li.terminating_msrp_tls(c) is MsrpTlsAction.TERMINATE
    assert li.e2ae_not_registered(c) is UnnegotiatedAction.APPLY
    assert li.e2ae_downgrade(c) is rcs.e2ae_downgrade(c) is DowngradeAction.KEEP


def test_e2ae_downgrade_per_subscriber() -> None:
    p = load_policy({"e2ae_downgrade": "allow",
                     "subscribers": [{"match": "sip:+1555*", "e2ae_downgrade": "reject"},
                                     {"match": "sip:+1666*", "originating_msrp_tls": "pass"}]},
                    "f")
    assert p.e2ae_downgrade(ctx("sip:+15550001@x")) is DowngradeAction.REJECT
    assert p.e2ae_downgrade(ctx("sip:+16660001@x")) is DowngradeAction.ALLOW  # inherited
    assert p.e2ae_downgrade(ctx(None)) is DowngradeAction.ALLOW


def test_custom_class_without_e2ae_downgrade_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as e:
        load_policy({"class": "tests.unit.policy.custom_policy:NoDowngrade"}, "f.yaml")
    assert e.value.key == "policy.class"
    assert e.value.reason.endswith("(missing e2ae_downgrade)")
    p = load_policy({"class": "tests.unit.policy.custom_policy:AlwaysTerminate"}, "f.yaml")
    assert p.e2ae_downgrade(ctx()) is DowngradeAction.REJECT


def test_narrowed_allow_list_narrows_the_inherited_offer() -> None:
    p = load_policy({"crypto": {"allow": ["AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_32"]}}, "f")
    assert tuple(p.offer_suites(ctx())) == ("AES_CM_128_HMAC_SHA1_32",)
    p = load_policy({"crypto": {"allow": ["AEAD_AES_256_GCM"]}}, "f")
    assert tuple(p.offer_suites(ctx())) == ("AEAD_AES_256_GCM",)
