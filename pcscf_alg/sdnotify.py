"""systemd's readiness protocol (sd_notify(3)), without a dependency: when the service manager
started us with `Type=notify` it sets `NOTIFY_SOCKET` to an AF_UNIX datagram socket (a path, or
`@name` in the abstract namespace) and waits for `READY=1`.

`notify(state)` sends one datagram (`"READY=1"`, `"STOPPING=1"`, `"STATUS=..."`, newline-
separated assignments) and returns whether it went; without `NOTIFY_SOCKET` it does nothing.
It never raises and never blocks: readiness reporting must not be able to stop the daemon.
`reloading()` is the message for the start of a reload (with the `MONOTONIC_USEC` that
`Type=notify-reload` requires; harmless with `Type=notify`); send `READY=1` when it is done.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace (sd_notify(3))
    if value.startswith("/"):
        return value
    return None  # vsock:... and others: not supported


def notify(state: str) -> bool:
    """Send `state` to the service manager; False when not under one or when sending failed."""
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    addr = _address(value)
    if addr is None:
        log.debug("NOTIFY_SOCKET %r not supported", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(state.encode("utf-8"), addr)
    except OSError as e:
        log.warning("sd_notify %s failed: %s", state.split("\n", 1)[0], e)
        return False
    return True


def reloading() -> bool:
    """`RELOADING=1` with the monotonic timestamp systemd asks for (sd_notify(3))."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")
