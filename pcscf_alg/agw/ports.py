"""Port allocation for the gateway: O(1) alloc and free.

RTP takes an even port for RTP and the next odd one for RTCP (RFC 3550 §11, RFC 3605 default),
so the RTP pool hands out even bases. MSRP takes single TCP ports. Freed ports go to the *back*
of the queue, so a port is reused as late as possible: stray packets of a finished call then
rarely reach the next call that gets the same port (rtpengine and Asterisk do the same).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..errors import GatewayError


@dataclass
class PortPool:
    """A FIFO of free port bases in [first, last]; `step` is 2 for RTP pairs, 1 for single ports."""

    first: int
    last: int
    step: int = 1
    name: str = "ports"
    _free: deque[int] = field(init=False, repr=False)
    _used: set[int] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        start = self.first + (self.first & 1) if self.step == 2 else self.first
        stop = self.last - self.step + 2  # the whole group must fit inside [first, last]
        self._free = deque(range(start, stop, self.step))

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._used)

    @property
    def available(self) -> int:
        return len(self._free)

    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def alloc(self) -> int:
        if not self._free:
            raise GatewayError(f"no free {self.name} left")
        base = self._free.popleft()
        self._used.add(base)
        return base

    def free(self, base: int) -> None:
        # A double free would put a port twice in the queue and hand it to two calls.
        if base not in self._used:
            raise GatewayError(f"{self.name}: port {base} freed but not allocated")
        self._used.remove(base)
        self._free.append(base)
