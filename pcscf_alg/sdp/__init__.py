"""SDP layer: a lean line-based model and the attributes e2ae needs.

- `model`: the line-based SDP model (byte-exact pass-through of untouched lines);
- `crypto`: RFC 4568 `a=crypto`;
- `fingerprint`: RFC 8122 `a=fingerprint`;
- `msrp`: RFC 4975 `a=path` URIs, RFC 4145/6135 `a=setup`, RFC 6714 `a=msrp-cema`;
- `attrs`: TS 24.229 `a=3ge2ae`.
"""

from .attrs import E2aeIndicator, parse_3ge2ae
from .crypto import GATEWAY_SUITES, SUITES, CryptoAttr, KeyParam, generate_crypto, parse_crypto
from .fingerprint import fingerprint_of, format_fingerprint, parse_fingerprint
from .model import Connection, Media, Sdp
from .msrp import MsrpUri, parse_msrp_uri, parse_path, parse_setup

__all__ = [
    "GATEWAY_SUITES",
    "SUITES",
    "Connection",
    "CryptoAttr",
    "E2aeIndicator",
    "KeyParam",
    "Media",
    "MsrpUri",
    "Sdp",
    "fingerprint_of",
    "format_fingerprint",
    "generate_crypto",
    "parse_3ge2ae",
    "parse_crypto",
    "parse_fingerprint",
    "parse_msrp_uri",
    "parse_path",
    "parse_setup",
]
