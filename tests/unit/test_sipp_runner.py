"""Validates tests/sipp.py and every SIPp scenario in scenarios/ without the daemon.

* "direct": SIPp UAC -> SIPp UAS on 127.0.0.1, UDP and TCP, scenario keys in "direct" mode.
* "negative": same, with the proxy-mode expectations -> the checks must FAIL (they bite).
* "mini proxy": SIPp -> MiniProxy (below, ~150 lines, UDP, stateless, record-routing,
  P-CSCF-ish REGISTER handling) -> SIPp, with the keys in "proxy" mode: proves the
  proxy-specific checks (Max-Forwards 69, two Record-Routes, Via count, Path, Security-*
  stripping, Security-Server, 494, CANCEL/ACK branches of a second hop) hold when an
  element behaves correctly.
* uac_expect_timeout.xml runs against a Python responder (100 then 408 or 503): direct SIPp cannot
  produce those, and the responder checks the ACK reuses the INVITE branch.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import sipp
from tests.sipp import SippAgent, build_command, free_port, run, run_pair, scenario_keys

pytestmark = pytest.mark.skipif(not sipp.sipp_available(), reason="sipp not installed")

ALL_SCENARIOS = sorted(p.name for p in sipp.SCENARIO_DIR.glob("*.xml"))
SS_BOTH = "sdes-srtp;mediasec, msrp-tls;mediasec"


def _pair(
    tmp_path: Path,
    uas_name: str,
    uac_name: str,
    mode: str,
    transport: str = "u1",
    *,
    uas_keys: dict[str, str] | None = None,
    uac_keys: dict[str, str] | None = None,
    rsa: str | None = None,
    service: str | None = None,
    uac_timeout: float = 10.0,
    uas_timeout: float = 15.0,
) -> sipp.PairResult:
    uas_port = free_port()
    uas = SippAgent(
        uas_name,
        role="uas",
        local_port=uas_port,
        transport=transport,  # type: ignore[arg-type]
        keys={**scenario_keys(uas_name, mode), **(uas_keys or {})},
        timeout=uas_timeout,
    )
    uac = SippAgent(
        uac_name,
        role="uac",
        remote=f"127.0.0.1:{uas_port}",
        transport=transport,  # type: ignore[arg-type]
        keys={**scenario_keys(uac_name, mode), **(uac_keys or {})},
        timeout=uac_timeout,
        rsa=rsa,
        service=service,
    )
    return run_pair(uas, uac, tmp_path)


# =============================================================================== runner unit tests


def test_build_command_is_bounded_and_complete(tmp_path: Path) -> None:
    a = SippAgent(
        "uac_basic.xml",
        role="uac",
        local_port=15061,
        remote="127.0.0.1:5080",
        transport="t1",
        rate=50,
        calls=3,
        call_limit=10,
        rsa="127.0.0.1:5060",
        keys={"rr": "2"},
        sets={"x": "1"},
        inf=tmp_path / "users.csv",
        media_port=16000,
        timeout=7.5,
        service="bob",
    )
    cmd = build_command(a, tmp_path)
    assert cmd[0] == sipp.SIPP_BIN
    assert cmd[-1] == "127.0.0.1:5080"
    joined = " ".join(cmd)
    for frag in (
        "-nostdin",
        "-trace_err",
        "-trace_msg",
        "-trace_stat",
        "-timeout_error",
        "-timeout 8s",
        "-t t1",
        "-r 50",
        "-m 3",
        "-l 10",
        "-rsa 127.0.0.1:5060",
        "-key rr 2",
        "-set x 1",
        "-s bob",
        "-p 15061",
        "-mp 16000",
    ):
        assert frag in joined, frag
    for opt in ("-error_file", "-message_file", "-stf"):
        assert Path(cmd[cmd.index(opt) + 1]).parent == tmp_path
    assert cmd[cmd.index("-inf") + 1] == str(tmp_path / "users.csv")
    assert str(sipp.SCENARIO_DIR / "uac_basic.xml") == cmd[cmd.index("-sf") + 1]


def test_build_command_rejects_bad_agents(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_command(SippAgent("uac_basic.xml", role="uac"), tmp_path)  # no remote
    with pytest.raises(FileNotFoundError):
        build_command(SippAgent("no_such.xml", role="uas"), tmp_path)


def test_build_command_picks_free_ports(tmp_path: Path) -> None:
    a = SippAgent("uas_basic.xml", role="uas")
    build_command(a, tmp_path)
    assert a.local_port and a.media_port
    assert a.local_port != a.media_port


def test_free_ports_are_distinct() -> None:
    ports = sipp.free_ports(20)
    assert len(set(ports)) == 20


def test_parse_stat_csv(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text(
        "StartTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\nx;0;0;0;\ny;4;1;7;\n"
    )
    st = sipp.parse_stat_csv(f)
    assert st["SuccessfulCall(C)"] == "4" and st["FailedCall(C)"] == "1"
    assert sipp.parse_stat_csv(tmp_path / "missing.csv") == {}


def test_hung_sipp_is_killed_by_the_runner(tmp_path: Path) -> None:
    # a UAS nobody calls, with a long SIPp timeout: the runner's deadline must kill it
    a = SippAgent("uas_486.xml", role="uas", timeout=120)
    proc = sipp.start(a, tmp_path)
    try:
        assert proc.wait_ready(5)
        t0 = time.monotonic()
        res = proc.wait(timeout=(time.monotonic() - proc.started) + 1.0)
    finally:
        proc.stop()
    assert res.killed and res.returncode is None and not res.ok
    assert time.monotonic() - t0 < 6
    assert "killed" in res.summary() or "deadline" in res.exit_meaning
    assert not proc.running()


def test_sipp_own_timeout_is_an_error(tmp_path: Path) -> None:
    # INVITE into a port where nothing listens: SIPp's own -timeout ends it, non-zero, quickly
    dead = free_port()
    a = SippAgent("uac_expect_486.xml", role="uac", remote=f"127.0.0.1:{dead}", timeout=2)
    res = run(a, tmp_path)
    assert not res.ok and not res.killed
    assert res.returncode not in (0, None)
    assert res.duration < 6
    assert "INVITE" in res.messages()
    assert "SIPp" in res.dump()


# ============================================================================ every scenario loads


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_scenario_is_documented_and_loads(name: str, tmp_path: Path) -> None:
    path = sipp.SCENARIO_DIR / name
    text = path.read_text(encoding="iso-8859-1")
    ET.fromstring(text.encode("iso-8859-1"))  # well-formed
    header = text[: text.index("<scenario")]
    assert f"sipp -sf scenarios/{name}" in header, "header must show a standalone command line"
    # every [key] the scenario uses is documented in the header and has defaults in tests/sipp.py
    builtin = {
        "service",
        "remote_ip",
        "remote_port",
        "local_ip",
        "local_port",
        "transport",
        "branch",
        "call_id",
        "call_number",
        "pid",
        "len",
        "media_ip",
        "media_port",
        "media_ip_type",
        "local_ip_type",
        "next_url",
        "routes",
        "authentication",
    }
    body = text[text.index("<scenario") :]
    used = {k for k in re.findall(r"\[([a-z][a-z0-9_]*)\]", body) if k not in builtin}
    for k in used:
        assert re.search(rf"(^|\s){k}\s", header, re.M), f"-key {k} not documented"
    for mode in ("direct", "proxy"):
        assert used == set(scenario_keys(name, mode)), f"SCENARIO_KEYS[{name}][{mode}] != {used}"
    # SIPp itself loads it with those keys (-m 0: parse, set up, exit 0) ...
    a = SippAgent(
        name,
        role="uac",
        remote=f"127.0.0.1:{free_port()}",
        calls=0,
        timeout=5,
        keys=scenario_keys(name, "direct"),
    )
    res = run(a, tmp_path)
    assert res.returncode == 0, res.dump()
    # ... and refuses it without them
    if used:
        a2 = SippAgent(
            name, role="uac", remote=f"127.0.0.1:{free_port()}", calls=0, timeout=5, name="nokeys"
        )
        res2 = run(a2, tmp_path)
        assert res2.returncode != 0
        assert "Unsupported keyword" in res2.errors() + res2.files.stdout.read_text()


# ==================================================================================== direct pairs

PAIRS = [
    ("uas_basic.xml", "uac_basic.xml"),
    ("uas_bye.xml", "uac_wait_bye.xml"),
    ("uas_ring_cancel.xml", "uac_cancel.xml"),
    ("uas_486.xml", "uac_expect_486.xml"),
]


@pytest.mark.parametrize("transport", ["u1", "t1"])
@pytest.mark.parametrize(("uas_name", "uac_name"), PAIRS, ids=[p[1] for p in PAIRS])
def test_direct_pair(uas_name: str, uac_name: str, transport: str, tmp_path: Path) -> None:
    res = _pair(tmp_path, uas_name, uac_name, "direct", transport)
    res.assert_ok()
    assert res.uac.successful_calls == 1 and res.uac.failed_calls == 0
    assert res.uas.successful_calls == 1 and res.uas.failed_calls == 0
    assert res.uac.duration < 5 and res.uas.duration < 6


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_direct_register_pair(transport: str, tmp_path: Path) -> None:
    res = _pair(
        tmp_path,
        "registrar_mediasec.xml",
        "ue_register_mediasec.xml",
        "direct",
        transport,
        uas_keys={"once": "0", "pw": "password"},
        service="alice",
    )
    res.assert_ok()
    msgs = res.uac.messages()
    assert f"Security-Verify: {SS_BOTH}" in msgs  # echo of the 401's Security-Server
    assert re.search(r'Authorization: Digest username="alice",.*response="[0-9a-f]{32}"', msgs)
    assert re.search(r"Contact: <sip:alice@127\.0\.0\.1:\d+;transport=\w+>.*;expires=600", msgs)


def test_cancel_reuses_invite_branch(tmp_path: Path) -> None:
    res = _pair(tmp_path, "uas_ring_cancel.xml", "uac_cancel.xml", "direct")
    res.assert_ok()
    msgs = res.uac.messages()
    branches = {
        m: re.search(rf"^{m} .*?\r?\nVia: [^\r\n]*branch=([^;\r\n]+)", msgs, re.M | re.S)
        for m in ("INVITE", "CANCEL", "ACK")
    }
    assert all(branches.values()), msgs
    b = {m: x.group(1) for m, x in branches.items() if x}
    assert b["INVITE"] == b["CANCEL"] == b["ACK"]


# ================================================================================= the checks bite


def test_uas_checks_fail_without_proxy(tmp_path: Path) -> None:
    # proxy expectations (Max-Forwards 69, 2 Record-Routes, 2 Vias) against a direct caller:
    # the UAS must fail
    res = _pair(
        tmp_path,
        "uas_basic.xml",
        "uac_basic.xml",
        "direct",
        uas_keys=scenario_keys("uas_basic.xml", "proxy"),
    )
    assert res.uas.returncode == 1 and res.uas.failed_calls == 1
    assert "Failed regexp match" in res.uas.errors()


def test_uac_record_route_check_fails_without_proxy(tmp_path: Path) -> None:
    res = _pair(tmp_path, "uas_basic.xml", "uac_basic.xml", "direct", uac_keys={"rr": "2"})
    assert res.uac.returncode == 1 and "Failed regexp match" in res.uac.errors()


def test_registrar_checks_fail_without_proxy(tmp_path: Path) -> None:
    res = _pair(
        tmp_path,
        "registrar_mediasec.xml",
        "ue_register_mediasec.xml",
        "direct",
        uas_keys={"proxy": "1", "once": "0", "pw": "password"},
    )
    assert res.uas.returncode == 1
    errs = res.uas.errors()
    assert (
        "Failed regexp match" in errs
        or "matched, but shouldn't" in errs.lower()
        or "shouldn" in errs
    )


def test_registrar_rejects_wrong_digest(tmp_path: Path) -> None:
    res = _pair(
        tmp_path,
        "registrar_mediasec.xml",
        "ue_register_mediasec.xml",
        "direct",
        uas_keys={"once": "0", "pw": "not-the-password"},
    )
    assert res.uas.returncode == 1 and "Failed regexp match" in res.uas.errors()


def test_ue_security_server_check_fails_when_absent(tmp_path: Path) -> None:
    res = _pair(
        tmp_path,
        "registrar_mediasec.xml",
        "ue_register_mediasec.xml",
        "direct",
        uas_keys={"xhdr": "X-Registrar: sipp", "once": "0", "pw": "password"},
    )
    assert res.uac.returncode == 1 and "Failed regexp match" in res.uac.errors()
    # ... and sschk=any disables exactly that check
    res2 = _pair(
        tmp_path / "any",
        "registrar_mediasec.xml",
        "ue_register_mediasec.xml",
        "direct",
        uas_keys={"xhdr": "X-Registrar: sipp", "once": "0", "pw": "password"},
        uac_keys={"sschk": "any"},
    )
    res2.assert_ok()


# ==================================================================== mini proxy (P-CSCF stand-in)


def _hdr_name(line: str) -> str:
    return line.split(":", 1)[0].strip().lower()


class MiniProxy:
    """A stateless, record-routing UDP SIP proxy that imitates what pcscf-alg does on the wire.

    Requests: Max-Forwards - 1; leading Route entries pointing here are popped; target = next
    Route or the Request-URI; own Via on top with a branch derived from the incoming one (so
    CANCEL and the ACK for a non-2xx get the INVITE's branch, like a stateful proxy); initial
    INVITE: two Record-Routes.
    REGISTER: Path added, Security-Client/-Verify removed, sec-agree/mediasec removed from
    (Proxy-)Require; a Security-Verify that differs from our Security-Server -> 494 + Warning.
    Responses: own Via popped, sent to the next Via; 401/200 to REGISTER get Security-Server.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.me = f"127.0.0.1:{self.port}"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.1)
        self.seen: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MiniProxy:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._handle(data.decode("utf-8", "replace"), src)
            except Exception as e:  # keep serving; the test inspects .errors
                self.errors.append(f"{type(e).__name__}: {e}")

    @staticmethod
    def _split(msg: str) -> tuple[str, list[str], str]:
        head, _, body = msg.partition("\r\n\r\n")
        lines = head.split("\r\n")
        return lines[0], lines[1:], body

    @staticmethod
    def _hostport(uri: str) -> tuple[str, int]:
        m = re.search(r"sips?:(?:[^@;>]*@)?([^:;>]+)(?::(\d+))?", uri)
        assert m, uri
        return m.group(1), int(m.group(2) or 5060)

    def _send(self, start: str, headers: list[str], body: str, dest: tuple[str, int]) -> None:
        msg = "\r\n".join([start, *headers]) + "\r\n\r\n" + body
        self.seen.append(msg)
        self.sock.sendto(msg.encode(), dest)

    def _handle(self, msg: str, src: tuple[str, int]) -> None:
        self.seen.append(msg)
        start, headers, body = self._split(msg)
        if start.startswith("SIP/2.0"):
            return self._response(start, headers, body)
        method, ruri, _ = start.split(" ", 2)
        out: list[str] = []
        routes: list[str] = []
        for h in headers:
            n = _hdr_name(h)
            if n == "route":
                routes += [r.strip() for r in h.split(":", 1)[1].split(",")]
            elif n == "max-forwards":
                out.append(f"Max-Forwards: {int(h.split(':', 1)[1]) - 1}")
            else:
                out.append(h)
        while routes and self._hostport(routes[0]) == ("127.0.0.1", self.port):
            routes.pop(0)
        if method == "REGISTER":
            verify = [h.split(":", 1)[1].strip() for h in out if _hdr_name(h) == "security-verify"]
            norm = lambda s: sorted(x.replace(" ", "").lower() for x in s.split(","))  # noqa: E731
            if verify and norm(", ".join(verify)) != norm(SS_BOTH):
                resp = [
                    h for h in headers if _hdr_name(h) in ("via", "from", "to", "call-id", "cseq")
                ]
                resp.append(
                    'Warning: 399 127.0.0.1 "Security-Verify does not match Security-Server"'
                )
                resp.append("Content-Length: 0")
                return self._send("SIP/2.0 494 Security Agreement Required", resp, "", src)
            kept = []
            for h in out:
                n = _hdr_name(h)
                if n in ("security-client", "security-verify"):
                    continue
                if n in ("require", "proxy-require"):
                    tags = [
                        t.strip()
                        for t in h.split(":", 1)[1].split(",")
                        if t.strip() not in ("sec-agree", "mediasec")
                    ]
                    if not tags:
                        continue
                    h = f"{h.split(':', 1)[0]}: {', '.join(tags)}"
                kept.append(h)
            out = [f"Path: <sip:term@{self.me};lr>", *kept]
        top_via = next(h for h in out if _hdr_name(h) in ("via", "v"))
        branch_in = re.search(r"branch=([^;,\s]+)", top_via).group(1)  # type: ignore[union-attr]
        branch = "z9hG4bKmp" + hashlib.md5(branch_in.encode()).hexdigest()[:16]
        to = next(h for h in out if _hdr_name(h) in ("to", "t"))
        if method == "INVITE" and ";tag=" not in to:
            out.insert(0, f"Record-Route: <sip:core@{self.me};lr>, <sip:access@{self.me};lr>")
        if routes:
            out.insert(0, "Route: " + ", ".join(routes))
        out.insert(0, f"Via: SIP/2.0/UDP {self.me};branch={branch}")
        dest = self._hostport(routes[0] if routes else ruri)
        self._send(start, out, body, dest)

    def _response(self, start: str, headers: list[str], body: str) -> None:
        out: list[str] = []
        popped = False
        for h in headers:
            if not popped and _hdr_name(h) in ("via", "v"):
                vias = [v.strip() for v in h.split(":", 1)[1].split(",")]
                assert self.me in vias[0], f"top Via is not ours: {h}"
                popped = True
                if len(vias) > 1:
                    out.append("Via: " + ", ".join(vias[1:]))
                continue
            out.append(h)
        cseq = next(h for h in out if _hdr_name(h) == "cseq")
        code = start.split(" ", 2)[1]
        if cseq.strip().endswith("REGISTER") and code in ("401", "200"):
            out.insert(-1, f"Security-Server: {SS_BOTH}")
        via = next(h for h in out if _hdr_name(h) in ("via", "v"))
        m = re.search(r"SIP/2\.0/\w+\s+([^;:\s,]+)(?::(\d+))?", via)
        assert m, via
        self._send(start, out, body, (m.group(1), int(m.group(2) or 5060)))


def _via_proxy(
    tmp_path: Path,
    proxy: MiniProxy,
    uas_name: str,
    uac_name: str,
    *,
    uas_keys: dict[str, str] | None = None,
    uac_keys: dict[str, str] | None = None,
    service: str | None = None,
    uac_timeout: float = 10.0,
) -> sipp.PairResult:
    return _pair(
        tmp_path,
        uas_name,
        uac_name,
        "proxy",
        "u1",
        uas_keys=uas_keys,
        uac_keys=uac_keys,
        rsa=proxy.me,
        service=service,
        uac_timeout=uac_timeout,
    )


@pytest.mark.parametrize(("uas_name", "uac_name"), PAIRS, ids=[p[1] for p in PAIRS])
def test_pair_through_mini_proxy(uas_name: str, uac_name: str, tmp_path: Path) -> None:
    with MiniProxy() as proxy:
        res = _via_proxy(tmp_path, proxy, uas_name, uac_name)
    assert not proxy.errors, proxy.errors
    res.assert_ok()
    assert res.uac.successful_calls == 1 and res.uas.successful_calls == 1


@pytest.mark.parametrize(
    "sc",
    [
        SS_BOTH,
        "sdes-srtp;mediasec",
        "msrp-tls;mediasec",
        "ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1111;spi-s=2222;port-c=5062;port-s=5064",
    ],
    ids=["both", "rtp-only", "msrp-only", "neither"],
)
def test_register_through_mini_proxy(sc: str, tmp_path: Path) -> None:
    with MiniProxy() as proxy:
        res = _via_proxy(
            tmp_path,
            proxy,
            "registrar_mediasec.xml",
            "ue_register_mediasec.xml",
            uas_keys={"once": "0", "pw": "password"},
            uac_keys={"sc": sc},
            service="alice",
        )
    assert not proxy.errors, proxy.errors
    res.assert_ok()
    assert f"Security-Client: {sc}" in res.uac.messages()
    reg = res.uas.messages()
    assert (
        "Path: <sip:term@" in reg and "Security-Client" not in reg and "Security-Verify" not in reg
    )
    assert not re.search(r"^(Proxy-)?Require:.*(sec-agree|mediasec)", reg, re.M)
    assert re.search(r"Service-Route: <sip:orig@127\.0\.0\.1:\d+;lr>", res.uac.messages())


def test_register_verify_mismatch_through_mini_proxy(tmp_path: Path) -> None:
    with MiniProxy() as proxy:
        res = _via_proxy(
            tmp_path,
            proxy,
            "registrar_mediasec.xml",
            "ue_register_verify_mismatch.xml",
            uas_keys={"once": "1", "pw": "password"},
            service="alice",
        )
    assert not proxy.errors, proxy.errors
    res.assert_ok()
    assert "SIP/2.0 494" in res.uac.messages()
    assert res.uas.messages().count("REGISTER sip:") == 1  # the 2nd REGISTER never reached the core


def test_register_verify_echo_is_not_a_mismatch(tmp_path: Path) -> None:
    # sv = exactly what the proxy announces: the mismatch scenario must then FAIL
    # (the 2nd REGISTER is forwarded; no 494 comes back)
    with MiniProxy() as proxy:
        res = _via_proxy(
            tmp_path,
            proxy,
            "registrar_mediasec.xml",
            "ue_register_verify_mismatch.xml",
            uas_keys={"once": "1", "pw": "password"},
            uac_keys={"sv": SS_BOTH},
            service="alice",
            uac_timeout=3,
        )
    assert not res.uac.ok


def test_proxy_checks_detect_a_bad_proxy(tmp_path: Path) -> None:
    # a proxy that forgets to decrement Max-Forwards / record-route must be caught by uas_basic
    class LazyProxy(MiniProxy):
        def _send(self, start: str, headers: list[str], body: str, dest: tuple[str, int]) -> None:
            headers = [h for h in headers if _hdr_name(h) != "record-route"]
            headers = ["Max-Forwards: 70" if _hdr_name(h) == "max-forwards" else h for h in headers]
            super()._send(start, headers, body, dest)

    with LazyProxy() as proxy:
        res = _via_proxy(tmp_path, proxy, "uas_basic.xml", "uac_basic.xml")
    assert res.uas.returncode == 1 and "Failed regexp match" in res.uas.errors()


# ============================================================================== uac_expect_timeout


class Responder:
    """Answers every INVITE with 100 and then ``code``; records the ACK (UDP)."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.1)
        self.invite_branch: str | None = None
        self.ack_branch: str | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Responder:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            msg = data.decode()
            head = msg.split("\r\n\r\n", 1)[0].split("\r\n")
            branch = re.search(r"branch=([^;\s]+)", next(h for h in head if h.startswith("Via:")))
            if head[0].startswith("ACK"):
                self.ack_branch = branch.group(1) if branch else None
                continue
            if not head[0].startswith("INVITE"):
                continue
            self.invite_branch = branch.group(1) if branch else None
            keep = [h for h in head[1:] if h.split(":")[0] in ("Via", "From", "Call-ID", "CSeq")]
            to = next(h for h in head if h.startswith("To:"))
            for code, reason, tag in ((100, "Trying", ""), (self.code, "Failed", ";tag=resp1")):
                resp = [f"SIP/2.0 {code} {reason}", *keep, to + tag, "Content-Length: 0", "", ""]
                self.sock.sendto("\r\n".join(resp).encode(), src)


@pytest.mark.parametrize("code", [408, 503])
def test_uac_expect_timeout_accepts_408_or_503(code: int, tmp_path: Path) -> None:
    with Responder(code) as r:
        a = SippAgent(
            "uac_expect_timeout.xml", role="uac", remote=f"127.0.0.1:{r.port}", timeout=10
        )
        res = run(a, tmp_path)
        deadline = time.monotonic() + 2
        while r.ack_branch is None and time.monotonic() < deadline:
            time.sleep(0.02)
    res.assert_ok()
    assert r.invite_branch and r.ack_branch == r.invite_branch


def test_uac_expect_timeout_rejects_other_codes(tmp_path: Path) -> None:
    with Responder(486) as r:
        a = SippAgent("uac_expect_timeout.xml", role="uac", remote=f"127.0.0.1:{r.port}", timeout=3)
        res = run(a, tmp_path)
    assert not res.ok
