"""IMS Access Gateway (IMS-AGW): SRTP<->RTP and MSRP TLS<->TCP relays behind a TS 23.334-like
control API. `InProcessGateway` is the default implementation of `AccessGateway`."""

from .api import (
    AccessGateway,
    AgwEvent,
    EventHandler,
    MediaTimeout,
    MsrpClosed,
    SrtpAuthFailure,
    StreamStats,
    TlsEstablished,
    TlsFailed,
)
from .config import AgwConfig, parse_agw_config
from .gateway import InProcessGateway

__all__ = [
    "AccessGateway",
    "AgwConfig",
    "AgwEvent",
    "EventHandler",
    "InProcessGateway",
    "MediaTimeout",
    "MsrpClosed",
    "SrtpAuthFailure",
    "StreamStats",
    "TlsEstablished",
    "TlsFailed",
    "parse_agw_config",
]
