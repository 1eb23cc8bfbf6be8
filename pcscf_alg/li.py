"""Lawful-interception key export: the SDES keys of e2ae streams for the LI functions.

TS 33.328 / TS 33.107 Annex G (docs/e2ae-notes.md §3.4): for interception points *before* the
IMS-AGW (where media is still SRTP), the P-CSCF must provide the SDES keys to the delivery function;
the S-CSCF never sees them, and they are never logged in clear. The P-CSCF does it through
this internal API: every time the keys of an e2ae RTP stream are agreed (an answer applied,
including every re-key and every early dialog of a forked call), a `KeyRecord` goes to the
configured `KeySink`. The same keys are not delivered twice for the same dialog and stream.

Configuration (`li:` section; absent = no export):

    li:
      socket: /run/pcscf-alg/li.sock     # JSON datagrams to a local DF agent (AF_UNIX, DGRAM)
    # or
    li:
      class: mypackage.li:MySink         # module:Class implementing KeySink
      options: {...}                     # keyword arguments of its constructor

Not exported: keys of SRTP streams relayed end to end (they are the endpoints' own), and TLS
session secrets of e2ae MSRP streams.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError
from .mediaplan import SrtpKey
from .plugin import instantiate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The keys of one e2ae RTP stream of one dialog, from the P-CSCF's point of view.

    `from_ue` unprotects what the UE sends (K11 on an originating leg, K22 on a terminating
    one); `to_ue` protects what goes to the UE (K12 or K21). Its repr never shows key bytes
    (`SrtpKey`'s repr is redacted): records can be logged, their JSON cannot.
    """

    call_id: str
    leg: str  # "originating" (call from the UE) or "terminating" (call towards the UE)
    dialog: str  # the callee's To-tag: one record per early dialog when the call forks
    subscriber: str | None  # the served user (IMPU), when registered
    stream: int  # m-line index
    from_ue: SrtpKey
    to_ue: SrtpKey
    time: float  # wall clock, seconds since the epoch

    def to_json(self) -> dict[str, Any]:
        """The record for the DF, keys in base64 (master key || master salt, RFC 4568 §6.1)."""

        def key(k: SrtpKey) -> dict[str, Any]:
            return {
                "suite": k.suite,
                "tag": k.tag,
                "key_salt": base64.b64encode(k.key_salt).decode(),
                "mki": k.mki.hex() if k.mki is not None else None,
            }

        return {
            "call_id": self.call_id,
            "leg": self.leg,
            "dialog": self.dialog,
            "subscriber": self.subscriber,
            "stream": self.stream,
            "from_ue": key(self.from_ue),
            "to_ue": key(self.to_ue),
            "time": self.time,
        }


@runtime_checkable
class KeySink(Protocol):
    """Where key records go. Called on the event loop: must not block."""

    def deliver(self, record: KeyRecord) -> None: ...


class UnixDatagramSink:
    """JSON records, one per datagram, to a DF agent listening on an AF_UNIX SOCK_DGRAM socket.

    Non-blocking: a record the agent is not there (or too slow) to take is dropped and counted
    (`dropped`), with a log line naming the call and stream, never the keys. Datagrams keep
    records whole, and a local socket keeps the keys off the network.
    """

    def __init__(self, socket_path: str) -> None:
        self.path = socket_path
        self.sent = 0
        self.dropped = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def deliver(self, record: KeyRecord) -> None:
        data = json.dumps(record.to_json(), separators=(",", ":")).encode()
        try:
            self._sock.sendto(data, self.path)
        except OSError as e:
            self.dropped += 1
            log.warning(
                "LI key record for call %s stream %d not delivered to %s: %s",
                record.call_id,
                record.stream,
                self.path,
                e.strerror or type(e).__name__,
            )
            return
        self.sent += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def load_sink(section: Mapping[str, Any] | None, file: str) -> KeySink | None:
    """The sink configured by the `li:` section, or None when there is none."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ConfigError(file, "li", "must be a mapping")
    for key in section:
        if key not in ("socket", "class", "options"):
            raise ConfigError(file, f"li.{key}", "unknown key (allowed: class, options, socket)")
    if ("socket" in section) == ("class" in section):
        raise ConfigError(file, "li", "needs exactly one of li.socket and li.class")
    if "socket" in section:
        path = section["socket"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(file, "li.socket", f"must be an absolute path, got {path!r}")
        if "options" in section:
            raise ConfigError(file, "li.options", "only with li.class")
        return UnixDatagramSink(path)
    spec = section["class"]
    sink = instantiate(file, "li", spec, section.get("options", {}))
    if not isinstance(sink, KeySink):
        raise ConfigError(file, "li.class", f"{spec} does not implement KeySink (deliver)")
    return sink


__all__ = ["KeyRecord", "KeySink", "UnixDatagramSink", "load_sink"]
