"""The `a=3ge2ae` attribute (TS 24.229 §7.5.2, docs/e2ae-notes.md §2).

    3ge2ae-attribute = "a=3ge2ae:" indicator
    indicator        = "requested" / "applied" / token

Media level. `requested` = stage 2 "e2ae-security requested by UE"; `applied` = "e2ae-security
offered by network". Other values shall be ignored. Compared case-insensitively.
"""

from __future__ import annotations

import enum
from typing import Final

E2AE_ATTR: Final = "3ge2ae"
APPLIED_LINE: Final = "a=3ge2ae:applied"


class E2aeIndicator(enum.Enum):
    REQUESTED = "requested"
    APPLIED = "applied"
    OTHER = "other"  # any other token: ignored (TS 24.229 §7.5.2)


# value -> indicator; a dict rather than `E2aeIndicator.X` lookups, which Python 3.11 does not
# specialise (`EnumType.__getattr__`).
_INDICATORS: Final = {"requested": E2aeIndicator.REQUESTED, "applied": E2aeIndicator.APPLIED}
_OTHER: Final = E2aeIndicator.OTHER


def parse_3ge2ae(value: str) -> E2aeIndicator:
    return _INDICATORS.get(value.strip().lower(), _OTHER)
