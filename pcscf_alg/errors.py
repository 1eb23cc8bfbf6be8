"""One exception type per layer (docs/design.md §2).

Each carries a text fit for a SIP `Warning` header or a log line: short, one line, no key material.
"""

from __future__ import annotations


class PcscfError(Exception):
    """Base class for every error this package raises on purpose."""


class SipParseError(PcscfError):
    """A SIP message could not be parsed. `status` is the response to send (400, 413, 505...)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class RoutingError(PcscfError):
    """A well-formed request the proxy cannot or may not route (RFC 3261 §16.5, §16.6 step 6).

    `status` is the response to send: 403 (destination outside `sip.egress_networks`), 404 (a
    tel: URI with no Route to carry it) or 503 (a host we cannot resolve). Not a parse error:
    the message was fine, the target was not.
    """

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class RegistrationError(PcscfError):
    """A registration-layer refusal (494 on a Security-Verify mismatch, 403 for an unregistered
    flow or identity). `reason` goes into the response's Warning header."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SdpError(PcscfError):
    """A bad or unacceptable SDP body: the request is answered 488 with a Warning of this text."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PolicyError(PcscfError):
    """Policy refused something, or a policy definition is invalid."""


class GatewayError(PcscfError):
    """The IMS-AGW could not do what was asked (no ports left, bad parameters...)."""


class ConfigError(PcscfError):
    """A configuration error. The message names the file, the key (dotted path) and the reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason
