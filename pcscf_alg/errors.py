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
