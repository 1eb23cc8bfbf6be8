"""The SIP-level golden table (issue 12 deliver 4): a case file is the SIP that enters the P-CSCF
on both sides, and the exact SIP and gateway operations that must leave it, on a fake clock.

The proxy core (`alg.Pcscf`) and the call layer run as they are, with no sockets and no asyncio:
SIP goes in through `Pcscf.receive`, leaves through the send callback, and the media effects
(`Pcscf.media_effects()`) go to a fake gateway that answers each operation at once with
deterministic addresses, unless the case holds or fails the next one. The format is described in
`tests/data/sip_golden/README.md`; `tests/unit/test_sip_golden.py` runs every file.

Random values (Via branches, our tags, our SRTP keys) are matched with `${NAME}` placeholders:
the first occurrence binds, later ones must be equal, and two names never bind the same value
(so a re-key shows as a new name and a kept key as the same one). Keys are never shown in a
failure: values bound to a name are shown by that name, other `inline:` keys are redacted.
"""

from __future__ import annotations

import base64
import copy
import difflib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pcscf_alg.agw.api import AgwEvent, MediaTimeout, TlsEstablished, TlsFailed
from pcscf_alg.alg import Pcscf
from pcscf_alg.config import parse_config
from pcscf_alg.effects import Configure, ExportKeys, GatewayDone, Release, Reserve
from pcscf_alg.mediaplan import (
    Endpoint,
    Fingerprint,
    MediaKind,
    MsrpMode,
    Side,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)
from pcscf_alg.policy import load_policy
from pcscf_alg.registration import InMemoryRegistrationStore
from pcscf_alg.sip.message import parse_message
from pcscf_alg.sip.transaction import Peer

CASES_DIR = Path(__file__).resolve().parent / "data" / "sip_golden"

# The P-CSCF's listeners and its next hop (the S-CSCF), as the cases write them.
ACCESS_LISTENER = ("203.0.113.1", 5060)
CORE_LISTENER = ("192.0.2.1", 5060)
SCSCF = Peer("udp", "192.0.2.10", 5060)

# The fake gateway: its addresses towards the UE and towards the core; ports are handed out in
# order, 2 per stream (RTP and RTCP), one counter per case.
AGW_ACCESS_HOST = "203.0.113.20"
AGW_CORE_HOST = "192.0.2.20"
AGW_ACCESS_PORT0 = 40000
AGW_CORE_PORT0 = 30000
AGW_FP = Fingerprint("sha-256", bytes(range(0xA0, 0xC0)))


def _fp_text(seed: int) -> str:
    return "sha-256 " + ":".join(f"{(seed + i * 11) % 256:02X}" for i in range(32))


# Values a case may use without binding them (`${K80}` in a UE's SDP). The UE keys are those of
# example 04 of tests/data/spec_examples; the fingerprints are made up.
BUILTINS: dict[str, str] = {
    "K80": "Rg33G9EzbqVaNQ3hXdFAHcUN6otysbWPUxp3zxCC",
    "K32": "MoNHDeEa+5SmQUjjM2YlydHnpHWBlyspHpxHnB/h",
    "K80B": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk",
    "K22": "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMy",
    "UEFP": _fp_text(1),
    "COREFP": _fp_text(2),
    "AGWFP": AGW_FP.to_sdp(),
}

# The UEs a case can name in `registered:`: flow (UDP), IMPU and contact.
UES: dict[str, tuple[str, int]] = {
    "alice": ("198.51.100.10", 5060),
    "bob": ("198.51.100.20", 5060),
    "carol": ("198.51.100.30", 5060),
}

BASE_CONFIG: dict[str, Any] = {
    "sip": {
        "access": {"host": ACCESS_LISTENER[0], "port": ACCESS_LISTENER[1]},
        "core": {"host": CORE_LISTENER[0], "port": CORE_LISTENER[1]},
        "next_hop": f"sip:{SCSCF.host}:{SCSCF.port};lr",
    },
}

HEADER_KEYS = frozenset(
    {"title", "spec", "registered", "config", "policy", "anchor_all", "li", "vars", "rng_seed"}
)
STEP_RE = re.compile(
    r"^(?:(?P<dir>[<>]) (?P<side>access|core) (?P<tr>udp|tcp) (?P<host>[^\s:]+):(?P<port>\d+)"
    r"(?P<rest>.*)|(?P<kw>gw|li|timer|event|sweep)(?: (?P<arg>.*))?)$"
)
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What a placeholder can stand for: a token (branch, tag, base64 key), never white space or a
# SIP delimiter.
TOKEN = r"[A-Za-z0-9+/=._!%*~-]+"
INLINE_RE = re.compile(r"inline:[A-Za-z0-9+/=]+")


class CaseError(AssertionError):
    """A case failed or is malformed: the message names the file, the line and the step."""


# ------------------------------------------------------------------ the case file


@dataclass
class Step:
    line: int  # 1-based line of the step in the file
    head: str  # the step line itself
    kind: str  # "in" | "out" | "gw" | "li" | "timer" | "event" | "sweep"
    body: list[str] = field(default_factory=list)
    side: Side | None = None
    peer: Peer | None = None
    rest: str = ""  # after the address (`again x3`) or after the keyword


@dataclass
class Case:
    path: Path
    title: str
    spec: str
    header: dict[str, Any]
    steps: list[Step]


def load_case(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    try:
        sep = lines.index("---")
    except ValueError:
        raise CaseError(f"{path}: no '---' line between the header and the steps") from None
    header = yaml.safe_load("\n".join(lines[:sep])) or {}
    if not isinstance(header, dict):
        raise CaseError(f"{path}: the header must be a YAML mapping")
    unknown = set(header) - HEADER_KEYS
    if unknown:
        raise CaseError(f"{path}: unknown header keys {sorted(unknown)}")
    for key in ("title", "spec"):
        if not header.get(key):
            raise CaseError(f"{path}: the header needs a {key!r}")
    steps: list[Step] = []
    for n, raw in enumerate(lines[sep + 1 :], start=sep + 2):
        line = raw.rstrip("\r")
        if line.startswith("#"):
            continue
        m = STEP_RE.match(line)
        if m is None:
            if not steps:
                if line.strip():
                    raise CaseError(f"{path}:{n}: text before the first step: {line!r}")
                continue
            steps[-1].body.append(line)
            continue
        if m.group("dir"):
            side = Side.ACCESS if m.group("side") == "access" else Side.CORE
            peer = Peer(m.group("tr"), m.group("host"), int(m.group("port")))
            kind = "in" if m.group("dir") == ">" else "out"
            steps.append(Step(n, line, kind, side=side, peer=peer, rest=m.group("rest").strip()))
        else:
            steps.append(Step(n, line, m.group("kw"), rest=(m.group("arg") or "").strip()))
    for s in steps:
        while s.body and not s.body[-1].strip():
            s.body.pop()
    return Case(path, str(header["title"]), str(header["spec"]), header, steps)


def message_bytes(lines: list[str], *, fix_length: bool) -> bytes:
    """A message from its lines: CRLF line ends, the body after the first empty line. With
    `fix_length` (input) Content-Length is set to the body's size (added last if absent)."""
    if "" in lines:
        i = lines.index("")
        head, body_lines = lines[:i], lines[i + 1 :]
    else:
        head, body_lines = lines, []
    body = "".join(f"{b}\r\n" for b in body_lines)
    if fix_length:
        n = len(body.encode())
        names = [h.split(":", 1)[0].strip().lower() for h in head]
        if "content-length" in names or "l" in names:
            i = names.index("content-length") if "content-length" in names else names.index("l")
            head = [*head[:i], f"{head[i].split(':', 1)[0]}: {n}", *head[i + 1 :]]
        else:
            head = [*head, f"Content-Length: {n}"]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


# ------------------------------------------------------------------ placeholders


@dataclass
class Bindings:
    values: dict[str, str] = field(default_factory=dict)

    def substitute(self, text: str, where: str) -> str:
        """Input: every placeholder must be bound already."""

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.values:
                raise CaseError(f"{where}: ${{{name}}} is used before it is bound")
            return self.values[name]

        return PLACEHOLDER_RE.sub(one, text)

    def substitute_known(self, text: str) -> str:
        """For a report: bound placeholders filled, unbound ones left as they are."""
        return PLACEHOLDER_RE.sub(lambda m: self.values.get(m.group(1), m.group(0)), text)

    def match(self, expected: str, actual: str) -> dict[str, str] | None:
        """Whether `actual` is `expected` with its placeholders filled: the new bindings, or
        None. Bound names must equal their value; a new name binds a token."""
        parts: list[str] = []
        pos = 0
        new: list[str] = []
        for m in PLACEHOLDER_RE.finditer(expected):
            parts.append(re.escape(expected[pos : m.start()]))
            name = m.group(1)
            if name in self.values:
                parts.append(re.escape(self.values[name]))
            elif name in new:
                parts.append(f"(?P={name})")
            else:
                parts.append(f"(?P<{name}>{TOKEN})")
                new.append(name)
            pos = m.end()
        parts.append(re.escape(expected[pos:]))
        got = re.fullmatch("".join(parts), actual, flags=re.DOTALL)
        if got is None:
            return None
        return {name: got.group(name) for name in new}

    def bind(self, new: dict[str, str], where: str) -> None:
        taken = {v: k for k, v in self.values.items()}
        for name, value in new.items():
            if value in taken:
                raise CaseError(
                    f"{where}: ${{{name}}} would bind the value already bound to "
                    f"${{{taken[value]}}} (use that name if they must be equal)"
                )
            taken[value] = name
            self.values[name] = value

    def show(self, text: str) -> str:
        """`text` for a failure report: bound values back to their names, keys redacted."""
        for name, value in sorted(self.values.items(), key=lambda kv: -len(kv[1])):
            if len(value) >= 6:
                text = text.replace(value, f"${{{name}}}")
        return INLINE_RE.sub("inline:<key>", text)


# ------------------------------------------------------------------ what comes out


@dataclass
class SipOut:
    side: Side
    peer: Peer
    data: bytes

    def describe(self) -> str:
        return f"< {self.side.value} {self.peer.transport} {self.peer.host}:{self.peer.port}"


@dataclass
class GwOut:
    text: str  # the rendering: first line "gw <op> ..." or "li ...", then indented lines

    def describe(self) -> str:
        return self.text.split("\n", 1)[0]


Item = SipOut | GwOut


def _ep(e: Endpoint | None) -> str:
    if e is None:
        return "-"
    return f"{e.host}:{e.port}" + (f"/{e.rtcp_port}" if e.rtcp_port is not None else "")


def _key(k: SrtpKey) -> str:
    out = f"{k.tag} {k.suite} inline:{base64.b64encode(k.key_salt).decode()}"
    if k.lifetime is not None:
        out += f"|{k.lifetime}"
    if k.mki is not None:
        out += f"|mki={k.mki.hex()}"
    flags = [
        f"KDR={k.kdr}" if k.kdr else "",
        "UNENCRYPTED_SRTP" if k.unencrypted_srtp else "",
        "UNENCRYPTED_SRTCP" if k.unencrypted_srtcp else "",
        "UNAUTHENTICATED_SRTP" if k.unauthenticated_srtp else "",
    ]
    return " ".join([out, *(f for f in flags if f)])


def _fp(f: Fingerprint) -> str:
    return f.to_sdp()  # as in SDP, so that ${UEFP} / ${COREFP} / ${AGWFP} name it


def render_request(r: StreamRequest) -> str:
    flags = [
        "mux-access" if r.access_rtcp_mux else "",
        "mux-core" if r.core_rtcp_mux else "",
        "fp" if r.want_local_fingerprint else "",
    ]
    return " ".join([f"m{r.index}", r.kind.value, *(f for f in flags if f)])


def render_stream(s: StreamPlan) -> list[str]:
    head = [f"m{s.index}", s.kind.value, s.mode.value]
    if s.mode in (StreamMode.E2AE, StreamMode.PASS):
        head += [f"ue={_ep(s.ue_remote)}", f"core={_ep(s.core_remote)}"]
        mux = [n for n, on in (("access", s.access_rtcp_mux), ("core", s.core_rtcp_mux)) if on]
        if mux:
            head.append("mux=" + ",".join(mux))
        if s.through is not ThroughConnection.SENDRECV:
            head.append(f"through={s.through.value}")
    out = [" ".join(head)]
    if s.rx_key is not None:
        out.append(f"  rx={_key(s.rx_key)}")
    if s.tx_key is not None:
        out.append(f"  tx={_key(s.tx_key)}")
    if s.kind is MediaKind.MSRP and s.mode in (StreamMode.E2AE, StreamMode.PASS):
        out.append(f"  setup access={s.access_setup.value} core={s.core_setup.value}")
        out.append(f"  msrp={s.msrp_mode.value}")
        for f in s.ue_fingerprint:
            out.append(f"  ue-fp={_fp(f)}")
        if s.msrp_mode is MsrpMode.AWARE:
            out.append(f"  path ue={s.ue_path} agw-access={s.agw_access_path}")
            out.append(f"  path core={s.core_path} agw-core={s.agw_core_path}")
        if s.core_tls:
            out.append("  core-tls " + " ".join(f"core-fp={_fp(f)}" for f in s.core_fingerprint))
    return out


def render_op(eff: object) -> str:
    if isinstance(eff, Reserve):
        return f"gw reserve {eff.context_id} " + ", ".join(render_request(r) for r in eff.streams)
    if isinstance(eff, Configure):
        lines = [f"gw configure {eff.context_id}"]
        for s in eff.plan.streams:
            lines += ["  " + x for x in render_stream(s)]
        return "\n".join(lines)
    if isinstance(eff, Release):
        return f"gw release {eff.context_id}"
    if isinstance(eff, ExportKeys):
        r = eff.record
        return "\n".join(
            [
                f"li {r.leg} {r.call_id} dialog={r.dialog} subscriber={r.subscriber} m{r.stream}",
                f"  from-ue={_key(r.from_ue)}",
                f"  to-ue={_key(r.to_ue)}",
            ]
        )
    raise CaseError(f"unknown media effect {type(eff).__name__}")


def _norm_gw(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().split("\n") if line.strip())


# ------------------------------------------------------------------ the fake gateway


@dataclass
class FakeGateway:
    """Answers every operation at once, unless told to hold or fail the next one."""

    contexts: dict[str, dict[int, StreamReservation]] = field(default_factory=dict)
    next_port: int = 0
    hold_next: bool = False
    held: list[Reserve | Configure | Release] = field(default_factory=list)
    fail_next: dict[str, str] = field(default_factory=dict)  # op name -> error text

    def result(self, op: Reserve | Configure | Release) -> GatewayDone:
        name = type(op).__name__.lower()
        error = self.fail_next.pop(name, None)
        if error is not None:
            return GatewayDone(op.op, error=error)
        if isinstance(op, Reserve):
            ctx = self.contexts.setdefault(op.context_id, {})
            for r in op.streams:
                if r.index not in ctx:  # idempotent per index, as AccessGateway.reserve
                    ctx[r.index] = self._reserve(r)
            return GatewayDone(op.op, reservations=tuple(ctx[r.index] for r in op.streams))
        if isinstance(op, Release):
            self.contexts.pop(op.context_id, None)
        return GatewayDone(op.op)

    def _reserve(self, r: StreamRequest) -> StreamReservation:
        a, c = AGW_ACCESS_PORT0 + 2 * self.next_port, AGW_CORE_PORT0 + 2 * self.next_port
        self.next_port += 1
        rtp = r.kind is MediaKind.RTP
        return StreamReservation(
            r.index,
            r.kind,
            Endpoint(AGW_ACCESS_HOST, a, a + 1 if rtp and not r.access_rtcp_mux else None),
            Endpoint(AGW_CORE_HOST, c, c + 1 if rtp and not r.core_rtcp_mux else None),
            AGW_FP if r.want_local_fingerprint else None,
        )


# ------------------------------------------------------------------ running a case


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class Runner:
    def __init__(self, case: Case) -> None:
        self.case = case
        h = case.header
        cfg_dict = _merge(BASE_CONFIG, h.get("config") or {})
        if h.get("policy") is not None:
            cfg_dict["policy"] = h["policy"]
        self.cfg = parse_config(cfg_dict, str(case.path))
        self.now = 0.0
        self.queue: list[Item] = []
        self.last_to: dict[tuple[Side, Peer], bytes] = {}
        self.gw = FakeGateway()
        self.vars = Bindings(dict(BUILTINS))
        for k, v in (h.get("vars") or {}).items():
            self.vars.bind({str(k): str(v)}, f"{case.path}: vars")
        self.store = InMemoryRegistrationStore()
        self.pcscf = Pcscf(self.cfg, self.store, self._sent)
        # Deterministic keys: the same rng sequence in the compiled and the pure core.
        rnd = random.Random(int(h.get("rng_seed", 1)))
        policy = load_policy(self.cfg.policy, str(case.path))
        self.pcscf.attach_calls(
            policy,
            rng=rnd.randbytes,
            anchor_all=bool(h.get("anchor_all", self.cfg.e2ae.anchor_all)),
            export_keys=bool(h.get("li", False)),
        )

    # -- plumbing
    def _sent(self, side: Side, data: bytes, peer: Peer) -> None:
        self.queue.append(SipOut(side, peer, data))

    def pump(self) -> None:
        """Run the media effects the core queued through the fake gateway, in order."""
        while True:
            effects = self.pcscf.media_effects()
            if not effects:
                return
            for eff in effects:
                self.queue.append(GwOut(render_op(eff)))
                if isinstance(eff, ExportKeys):
                    continue
                if self.gw.hold_next:
                    self.gw.hold_next = False
                    self.gw.held.append(eff)
                    continue
                self.pcscf.gateway_done(self.gw.result(eff), self.now)

    def where(self, step: Step) -> str:
        return f"{self.case.path.name}:{step.line}: {step.head}"

    # -- the steps
    def run(self) -> None:
        self._register_ues()
        for step in self.case.steps:
            getattr(self, f"_step_{step.kind}")(step)
        self._finish()

    def _step_in(self, step: Step) -> None:
        self._expect_nothing_pending(step)
        assert step.side is not None and step.peer is not None
        where = self.where(step)
        text = self.vars.substitute("\n".join(step.body), where)
        data = message_bytes(text.split("\n"), fix_length=True)
        self.pcscf.receive(data, step.side, step.peer, self.now)
        self.pump()

    def _take(self, step: Step) -> Item:
        if not self.queue:
            raise CaseError(f"{self.where(step)}\nexpected this, but nothing (more) came out")
        return self.queue.pop(0)

    def _step_out(self, step: Step) -> None:
        assert step.side is not None and step.peer is not None
        where = self.where(step)
        again = re.fullmatch(r"again(?: x(\d+))?", step.rest)
        if step.rest and again is None:
            raise CaseError(f"{where}: after the address only 'again' or 'again xN' may follow")
        for _ in range(int(again.group(1) or 1) if again else 1):
            item = self._take(step)
            if not isinstance(item, SipOut):
                raise CaseError(f"{where}\nexpected SIP, got a gateway operation:\n{item.text}")
            if (item.side, item.peer) != (step.side, step.peer):
                raise CaseError(
                    f"{where}\nthe next message went elsewhere: {item.describe()}\n"
                    + self.vars.show(item.data.decode("utf-8", "replace"))
                )
            key = (item.side, item.peer)
            if again:
                if self.last_to.get(key) != item.data:
                    raise CaseError(
                        f"{where}\nnot a retransmission of the previous message:\n"
                        + self.vars.show(item.data.decode("utf-8", "replace"))
                    )
                continue
            self.last_to[key] = item.data
            expected = message_bytes(step.body, fix_length=False).decode()
            self._compare(where, expected, item.data.decode("utf-8", "replace"))

    def _compare(self, where: str, expected: str, actual: str) -> None:
        new = self.vars.match(expected, actual)
        if new is None:
            exp = self.vars.show(self.vars.substitute_known(expected))
            act = self.vars.show(actual)
            diff = "\n".join(
                difflib.unified_diff(
                    exp.replace("\r\n", "\n").split("\n"),
                    act.replace("\r\n", "\n").split("\n"),
                    "expected",
                    "actual",
                    lineterm="",
                )
            )
            if exp == act:
                diff = "(they differ only in key material, not shown)"
            raise CaseError(f"{where}\n{diff}")
        self.vars.bind(new, where)

    def _step_gw(self, step: Step) -> None:
        where = self.where(step)
        words = step.rest.split(" ", 2)
        verb = words[0]
        if verb == "hold":
            self.gw.hold_next = True
            return
        if verb == "complete":
            if not self.gw.held:
                raise CaseError(f"{where}: no operation is held")
            held, self.gw.held = self.gw.held, []
            for op in held:
                self.pcscf.gateway_done(self.gw.result(op), self.now)
            self.pump()
            return
        if verb == "fail":
            m = re.fullmatch(r'fail (reserve|configure|release) "([^"]+)"', step.rest)
            if m is None:
                raise CaseError(f'{where}: write gw fail reserve|configure|release "text"')
            self.gw.fail_next[m.group(1)] = m.group(2)
            return
        if verb in ("reserve", "configure", "release"):
            self._expect_op(step)
            return
        raise CaseError(f"{where}: unknown gateway step {verb!r}")

    def _step_li(self, step: Step) -> None:
        self._expect_op(step)

    def _expect_op(self, step: Step) -> None:
        where = self.where(step)
        item = self._take(step)
        if not isinstance(item, GwOut):
            raise CaseError(
                f"{where}\nexpected a gateway operation, got SIP {item.describe()}:\n"
                + self.vars.show(item.data.decode("utf-8", "replace"))
            )
        expected = _norm_gw("\n".join([step.head, *step.body]))
        self._compare(where, expected, _norm_gw(item.text))

    def _step_timer(self, step: Step) -> None:
        m = re.fullmatch(r"\+(\d+(?:\.\d+)?)", step.rest)
        if m is None:
            raise CaseError(f"{self.where(step)}: write timer +SECONDS")
        self._expect_nothing_pending(step)
        self.advance(self.now + float(m.group(1)))

    def advance(self, target: float) -> None:
        """Fire every deadline up to `target` at its own time, then stand at `target`."""
        for _ in range(100_000):
            t = self.pcscf.get_timer()
            if t is None or t > target:
                break
            self.now = max(self.now, t)
            self.pcscf.handle_timer(self.now)
            self.pump()
        else:
            raise CaseError(f"{self.case.path.name}: timers do not settle")
        self.now = target

    def _step_event(self, step: Step) -> None:
        where = self.where(step)
        self._expect_nothing_pending(step)
        m = re.fullmatch(
            r"(tls-failed|tls-established|media-timeout) (\S+) m=(\d+)(?: (\S+))?", step.rest
        )
        if m is None:
            raise CaseError(
                f"{where}: write event tls-failed|tls-established|media-timeout "
                "CONTEXT m=INDEX [REASON]"
            )
        kind, ctx, index = m.group(1), m.group(2), int(m.group(3))
        ev: AgwEvent
        if kind == "tls-failed":
            ev = TlsFailed(ctx, index, m.group(4) or "handshake")
        elif kind == "tls-established":
            ev = TlsEstablished(ctx, index)
        else:
            ev = MediaTimeout(ctx, index)
        self.pcscf.gateway_event(ev, self.now)
        self.pump()

    def _step_sweep(self, step: Step) -> None:
        self._expect_nothing_pending(step)
        if step.rest == "registrations":
            self.pcscf.sweep_registrations(self.now)
        elif step.rest == "calls":
            self.pcscf.sweep_calls(self.now)
        else:
            raise CaseError(f"{self.where(step)}: write sweep registrations|calls")
        self.pump()

    def _expect_nothing_pending(self, step: Step | None) -> None:
        if self.queue:
            where = self.where(step) if step is not None else f"{self.case.path.name}: at the end"
            shown = "\n\n".join(
                (i.describe() + "\n" + self.vars.show(i.data.decode("utf-8", "replace")))
                if isinstance(i, SipOut)
                else self.vars.show(i.text)
                for i in self.queue
            )
            raise CaseError(f"{where}\nthis came out and the case does not expect it:\n{shown}")

    # -- set-up and the end
    def _register_ues(self) -> None:
        """The `registered:` UEs register through the P-CSCF at time 0 (REGISTER with their
        mediasec Security-Client, 200 from the S-CSCF); what that exchange looks like in detail
        is shown by the REGISTER cases, so here it is only checked to succeed."""
        for entry in self.case.header.get("registered") or []:
            name = str(entry["ue"])
            host, port = UES[name] if name in UES else (entry["host"], int(entry["port"]))
            mediasec = [str(m) for m in entry.get("mediasec", [])]
            sec = {"rtp": "sdes-srtp;mediasec", "msrp": "msrp-tls;mediasec"}
            secl = ", ".join(sec[m] for m in mediasec)
            expires = int(entry.get("expires", 600))
            impu = f"sip:{name}@ims.test"
            contact = f"sip:{name}@{host}:{port}"
            lines = [
                "REGISTER sip:ims.test SIP/2.0",
                f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-reg-{name};rport",
                "Max-Forwards: 70",
                f"From: <{impu}>;tag=reg-{name}",
                f"To: <{impu}>",
                f"Call-ID: reg-{name}@golden",
                "CSeq: 1 REGISTER",
                f"Contact: <{contact}>",
                f"Expires: {expires}",
            ]
            if secl:
                lines += ["Require: sec-agree", "Proxy-Require: sec-agree"]
                lines.append(f"Security-Client: {secl}")
            ue = Peer("udp", host, port)
            self.pcscf.receive(message_bytes(lines, fix_length=True), Side.ACCESS, ue, self.now)
            fwd = [i for i in self.queue if isinstance(i, SipOut) and i.side is Side.CORE]
            if len(fwd) != 1:
                raise CaseError(f"{self.case.path.name}: REGISTER of {name} was not forwarded")
            req = parse_message(fwd[0].data)
            h = req.headers
            resp = [
                "SIP/2.0 200 OK",
                *(f"Via: {v}" for v in h.values("via")),
                f"From: {h.get('from')}",
                f"To: {h.get('to')};tag=scscf-{name}",
                f"Call-ID: {h.get('call-id')}",
                f"CSeq: {h.get('cseq')}",
                f"Contact: <{contact}>;expires={expires}",
            ]
            self.queue.clear()
            self.pcscf.receive(message_bytes(resp, fix_length=True), Side.CORE, SCSCF, self.now)
            got = [parse_message(i.data) for i in self.queue if isinstance(i, SipOut)]
            if [m.status for m in got] != [200]:
                raise CaseError(f"{self.case.path.name}: REGISTER of {name} did not get 200")
            self.queue.clear()
            self.pump()
            self._expect_nothing_pending(None)

    def _finish(self) -> None:
        """Nothing unexpected is left: no output, no held operation, no retransmission or
        timer firing later, no call state, no gateway context, no call on a binding."""
        name = self.case.path.name
        self._expect_nothing_pending(None)
        if self.gw.held:
            raise CaseError(f"{name}: a held gateway operation was never completed")
        # Let every transaction run out (Timer J, K, L, D...): nothing may be sent meanwhile.
        self.advance(self.now + 3600.0)
        self._expect_nothing_pending(None)
        if self.pcscf.get_timer() is not None:
            raise CaseError(f"{name}: a timer is still armed an hour after the last step")
        live = call_state(self.pcscf)
        if live:
            raise CaseError(f"{name}: call state left after the case: {live}")
        if self.gw.contexts:
            raise CaseError(f"{name}: gateway contexts never released: {sorted(self.gw.contexts)}")
        for b in self.store.bindings():
            if b.call_ids:
                raise CaseError(f"{name}: binding {b.impu} still lists calls {b.call_ids}")


def call_state(pcscf: Pcscf) -> list[str]:
    """The calls the call layer still holds (its keys), for the end-of-case check."""
    layer = pcscf.calls
    if layer is None:
        return []
    left = [f"{cid} ({leg.value})" for cid, leg in layer.calls]
    left += [f"context {c}" for c in layer.by_context]
    if layer.pending_ops():
        left.append(f"{layer.pending_ops()} gateway operations not reported done")
    return left


def run_case(path: Path) -> Runner:
    runner = Runner(load_case(path))
    runner.run()
    return runner


# Random values the P-CSCF generates, named automatically when recording: our Via branches
# (RFC 3261 §8.1.1.7), our tags (§19.3) and our SRTP keys.
AUTO_NAMES = (
    ("BR", re.compile(r"branch=(z9hG4bK[0-9a-f]{16})")),
    ("TAG", re.compile(r"tag=([0-9a-f]{12})(?![0-9A-Za-z])")),
    ("KEY", re.compile(r"inline:([A-Za-z0-9+/=]{20,})")),
)


class Recorder(Runner):
    """Authoring aid (`python -m tests.golden_harness --record FILE`): runs the inputs and
    directives of a case, ignores its expectations, and prints what came out after each step
    in the case format, random values named ${BR1}, ${TAG1}, ${KEY1}... (inputs may use those
    names). Read the output against the specification before pasting it into the case."""

    def __init__(self, case: Case) -> None:
        super().__init__(case)
        self.out: list[str] = []
        self.counts: dict[str, int] = {}

    def run(self) -> None:
        self._register_ues()
        for step in self.case.steps:
            if step.kind in ("out", "li") or (
                step.kind == "gw" and step.rest.split(" ")[0] in ("reserve", "configure", "release")
            ):
                continue
            self.out.append("\n".join([step.head, *step.body]))
            getattr(self, f"_step_{step.kind}")(step)
            self._dump()

    def _dump(self) -> None:
        for item in self.queue:
            if isinstance(item, SipOut):
                text = item.data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")
                self.out.append(item.describe() + "\n" + self._name(text))
            else:
                self.out.append(self._name(item.text))
        self.queue.clear()

    def _name(self, text: str) -> str:
        for prefix, rx in AUTO_NAMES:
            for value in rx.findall(text):
                if value in self.vars.values.values():
                    continue
                self.counts[prefix] = self.counts.get(prefix, 0) + 1
                self.vars.values[f"{prefix}{self.counts[prefix]}"] = value
        for name, value in sorted(self.vars.values.items(), key=lambda kv: -len(kv[1])):
            if len(value) >= 6:
                text = text.replace(value, f"${{{name}}}")
        return text


def record_case(path: Path) -> str:
    rec = Recorder(load_case(path))
    rec.run()
    return "\n\n".join(rec.out) + "\n"


def case_files() -> list[Path]:
    files = sorted(CASES_DIR.glob("*.case"))
    if not files:
        raise FileNotFoundError(f"no golden case under {CASES_DIR}")
    return files


__all__ = ["CaseError", "case_files", "load_case", "record_case", "run_case"]

if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--record":
        sys.exit("usage: python -m tests.golden_harness --record FILE.case")
    sys.stdout.write(record_case(Path(sys.argv[2])))
