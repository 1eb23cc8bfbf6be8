"""Logging of the daemon (issue 13): `log: {level, format: text | json}`.

- *text*: `time level logger: message`, as before.
- *json*: one JSON object per line: `time` (UTC, ISO 8601, milliseconds), `level`, `logger`,
  `message`, `exception` when there is one, and the structured fields a record carries
  (`extra={...}`: `call_id`, `leg`, `stream`, ... see `STRUCTURED_FIELDS`). Every e2ae decision
  is one such line with `call_id`, `leg` and `stream` (pcscf_alg.calls).

Key material never reaches a log line, in either format: the formatters pass every message,
exception text and structured string field through `sdp.crypto.redact` (the helper that
`e2ae.redact_sdp` and the `sdp` command use), which replaces each `inline:` key-salt (RFC 4568
§6.1, `a=crypto`) by `<redacted>`. Call sites redact SDP themselves too; the formatter is the
net under them (a traceback or a third-party message quoting an SDP is caught as well).
`RedactingFilter` does the same for handlers this module does not install (tests' caplog...).

At DEBUG the daemon also logs every SIP message received and sent (logger `pcscf_alg.wire`,
redacted) and the gateway operations of each call.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from pcscf_alg.sdnotify import notify as notify  # re-exported: the reload path calls it
from pcscf_alg.sdp.crypto import redact

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Fields copied from `extra={...}` into JSON lines. A contract: scripts filter on these names.
STRUCTURED_FIELDS = (
    "call_id",
    "leg",
    "dialog",
    "stream",
    "kind",
    "mode",
    "rule",
    "side",
    "direction",
    "transport",
    "peer",
    "subscriber",
)

# Marks the handler installed by `setup_logging`, so that a reload replaces it, not stacks.
_OWNED = "_pcscf_alg_owned"


def _scrub(text: str) -> str:
    return redact(text) if "inline:" in text else text


class RedactingFilter(logging.Filter):
    """Renders a record's message once and redacts it (`inline:` keys) in place. For handlers
    other than ours; our formatters redact on their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "inline:" in msg:
            record.msg = redact(msg)
            record.args = None
        return True


class TextFormatter(logging.Formatter):
    """The classic line, redacted as a whole (message, exception and stack text)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; every string in it redacted before encoding (redacting the
    encoded line could swallow a closing quote and break the JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _scrub(record.getMessage()),
        }
        for name in STRUCTURED_FIELDS:
            value = record.__dict__.get(name)
            if value is None:
                continue
            if isinstance(value, str):
                value = _scrub(value)
            elif not isinstance(value, (int, float, bool)):
                value = _scrub(str(value))
            out[name] = value
        if record.exc_info:
            out["exception"] = _scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = _scrub(record.exc_text)
        if record.stack_info:
            out["stack"] = _scrub(self.formatStack(record.stack_info))
        # ensure_ascii: one physical line whatever the message holds.
        return json.dumps(out, ensure_ascii=True, separators=(",", ":"))


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def setup_logging(level: str, fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Configure the root logger: one handler (stderr by default) with the chosen format,
    redacting. Called at start and again on a reload (`log:` takes effect at once): the handler
    installed by a previous call is replaced, other handlers are left alone."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _OWNED, False):
            root.removeHandler(h)
            h.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    setattr(handler, _OWNED, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
