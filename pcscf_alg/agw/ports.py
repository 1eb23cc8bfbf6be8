"""Port allocation for the gateway: O(1) alloc and free, unpredictable ports.

RTP takes an even port for RTP and the next odd one for RTCP (RFC 3550 §11, RFC 3605 default),
so the RTP pool hands out even bases. MSRP takes single TCP ports.

Two properties, both against a third party on the network:
- **Unpredictable** (issue 11): a port is drawn at random (`secrets`) among the free ones. Handed
  out in ascending order, the next call's MSRP port was known in advance, and whoever connected
  to it first could fill its pending-connection slots before the UE (RFC 6056 makes the same
  point for ephemeral ports; rtpengine picks at random too).
- **Reused late**: a freed port first cools in a FIFO and only becomes drawable again once it is
  among the older half of the freed ports (or nothing else is left), so stray packets of a
  finished call rarely reach the next call that gets the same port.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field

from ..errors import GatewayError


@dataclass
class PortPool:
    """Free port bases in [first, last]; `step` is 2 for RTP pairs, 1 for single ports."""

    first: int
    last: int
    step: int = 1
    name: str = "ports"
    _ready: list[int] = field(init=False, repr=False)  # drawable at random
    _cooling: deque[int] = field(init=False, repr=False)  # freed, oldest first
    _used: set[int] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        start = self.first + (self.first & 1) if self.step == 2 else self.first
        stop = self.last - self.step + 2  # the whole group must fit inside [first, last]
        self._ready = list(range(start, stop, self.step))
        self._cooling = deque()

    @property
    def capacity(self) -> int:
        return len(self._ready) + len(self._cooling) + len(self._used)

    @property
    def available(self) -> int:
        return len(self._ready) + len(self._cooling)

    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def alloc(self) -> int:
        # Cooling ports become drawable once they are the older half of the free ones.
        while self._cooling and (not self._ready or len(self._cooling) > len(self._ready)):
            self._ready.append(self._cooling.popleft())
        if not self._ready:
            raise GatewayError(f"no free {self.name} left")
        i = secrets.randbelow(len(self._ready))
        ready = self._ready
        base = ready[i]
        ready[i] = ready[-1]  # swap-remove: O(1)
        ready.pop()
        self._used.add(base)
        return base

    def free(self, base: int) -> None:
        # A double free would put a port twice in the pool and hand it to two calls.
        if base not in self._used:
            raise GatewayError(f"{self.name}: port {base} freed but not allocated")
        self._used.remove(base)
        self._cooling.append(base)
