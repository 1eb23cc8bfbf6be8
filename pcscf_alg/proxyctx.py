"""One proxied request, as the proxy core (`alg.Pcscf`) and the call layer (`calls`) share it.

Apart from both so that the call layer can name the request it acts on without importing the
proxy core (issue 12: no import cycle in the package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pcscf_alg.mediaplan import Side
from pcscf_alg.sip import transaction as tx
from pcscf_alg.sip.message import SipMessage

if TYPE_CHECKING:
    from pcscf_alg.registrar import RegisterCtx

Peer = tx.Peer


@dataclass(slots=True)
class ProxyCtx:
    """One proxied request: its server transaction upstream and client transaction downstream."""

    server: tx.ServerTransaction
    in_side: Side
    out_side: Side
    request: SipMessage  # the request as forwarded downstream
    client: tx.ClientTransaction | None = None
    final_sent: bool = False
    cancelled: bool = False
    dest: Peer | None = None
    # REGISTER bookkeeping (None for other methods)
    reg: RegisterCtx | None = None
    # the call leg (calls.py) this request belongs to: the side its initial INVITE came from
    call_leg: Side | None = None
    timer_c: float | None = None  # RFC 3261 §16.8 deadline (INVITE after a provisional)
