"""A custom policy class for the module:Class loading tests."""

from __future__ import annotations

from collections.abc import Sequence

from pcscf_alg.policy import (
    DowngradeAction,
    MsrpTlsAction,
    PolicyContext,
    UnnegotiatedAction,
    UnregisteredMsrpAction,
)
from pcscf_alg.sdp.crypto import CryptoAttr


class AlwaysTerminate:
    def __init__(self, label: str = "custom") -> None:
        self.label = label

    def originating_msrp_tls(self, ctx: PolicyContext) -> MsrpTlsAction:
        return MsrpTlsAction.TERMINATE

    def terminating_msrp_unregistered(self, ctx: PolicyContext) -> UnregisteredMsrpAction:
        return UnregisteredMsrpAction.TERMINATE

    def terminating_msrp_tls(self, ctx: PolicyContext) -> MsrpTlsAction:
        return MsrpTlsAction.TERMINATE

    def e2ae_not_registered(self, ctx: PolicyContext) -> UnnegotiatedAction:
        return UnnegotiatedAction.APPLY

    def e2ae_downgrade(self, ctx: PolicyContext) -> DowngradeAction:
        return DowngradeAction.REJECT

    def allowed_suites(self, ctx: PolicyContext) -> Sequence[str]:
        return ("AES_CM_128_HMAC_SHA1_80",)

    def offer_suites(self, ctx: PolicyContext) -> Sequence[str]:
        return ("AES_CM_128_HMAC_SHA1_80",)

    def select_crypto(
        self, ctx: PolicyContext, candidates: Sequence[CryptoAttr]
    ) -> CryptoAttr | None:
        return candidates[-1] if candidates else None

    def describe(self, subscriber: str | None) -> str:
        return self.label


class NoDowngrade(AlwaysTerminate):
    """Written before the `e2ae_downgrade` policy point existed."""

    e2ae_downgrade = None  # type: ignore[assignment]


class Incomplete:
    def describe(self, subscriber: str | None) -> str:
        return "x"
