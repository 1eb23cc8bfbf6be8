"""Policy layer: the `Policy` protocol (TS 33.328 "local policy" points) and the YAML default."""

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
from .yaml_policy import RuleSet, YamlPolicy, load_policy, strict_policy

__all__ = [
    "CryptoSelection",
    "DowngradeAction",
    "MsrpTlsAction",
    "Policy",
    "PolicyContext",
    "RuleSet",
    "UnnegotiatedAction",
    "UnregisteredMsrpAction",
    "YamlPolicy",
    "load_policy",
    "select_by",
    "strict_policy",
]
