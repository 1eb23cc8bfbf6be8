"""Our SIP parser vs the `sipmessage` package: speed and fidelity.

    .venv/bin/python bench/bench_sip_parse.py [--quick]

Speed: µs per parse and per serialise of an INVITE with SDP (spec example 04), both parsers in
the same process, runs interleaved; the figure is the minimum over repeats (the least disturbed
run: other processes on a shared machine only ever add time), the median is shown beside it.

Fidelity: what each parser does with the properties a proxy needs (byte-exact pass-through,
unknown header order, compact forms, folding, Content-Length framing, RFC 4475 valid/invalid).
Prints a markdown report (the "SIP parser" section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import sipmessage  # evaluated only: not a run-time dependency

from pcscf_alg.errors import SipParseError
from pcscf_alg.sip.message import parse_message
from tests.spec_examples import SPEC_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = SPEC_EXAMPLES
INVITE = (EXAMPLES / "04_invite_orig_ue_to_pcscf.sip").read_bytes()
RFC4475 = ROOT / "tests" / "unit" / "sip" / "data" / "rfc4475"
# The RFC 4475 messages our table (tests/unit/sip/test_rfc4475.py) calls valid for a proxy.
RFC_VALID = [
    *("wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq"),
    *("semiuri", "transports", "mpart01", "unreason", "noreason", "baddate", "regbadct"),
    *("badaspec", "badbranch", "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01"),
    *("bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01", "inv2543"),
]


def ours_parse(data: bytes) -> object:
    return parse_message(data)


def theirs_parse(data: bytes) -> object:
    return sipmessage.Message.parse(data)


def ours_bytes(data: bytes) -> bytes:
    return parse_message(data).serialize()


def theirs_bytes(data: bytes) -> bytes:
    return bytes(sipmessage.Message.parse(data))


def timing(
    funcs: dict[str, Callable[[], object]], number: int, repeat: int
) -> dict[str, list[float]]:
    """µs per call of each function; runs interleaved so that load hits them alike."""
    out: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(repeat):
        for name, fn in funcs.items():
            out[name].append(timeit.timeit(fn, number=number) / number * 1e6)
    return out


def outcome(fn: Callable[[bytes], bytes], data: bytes) -> str:
    """'same' (byte-exact), 'changed', or the exception name."""
    try:
        out = fn(data)
    except Exception as e:
        return type(e).__name__
    return "same" if out == data else "changed"


def yes(b: bool) -> str:
    return "yes" if b else "**no**"


def fidelity() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    rows.append(
        (
            "example 04 (INVITE+SDP) round-trips byte-exact",
            yes(ours_bytes(INVITE) == INVITE),
            yes(outcome(theirs_bytes, INVITE) == "same"),
        )
    )
    all_ex = sorted(EXAMPLES.glob("*.sip"))
    ours_ok = sum(outcome(ours_bytes, p.read_bytes()) == "same" for p in all_ex)
    theirs_ok = sum(outcome(theirs_bytes, p.read_bytes()) == "same" for p in all_ex)
    rows.append(("all 10 spec examples byte-exact", f"{ours_ok}/10", f"{theirs_ok}/10"))

    base = (
        b"OPTIONS sip:b@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
        b"Call-ID: x@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
    )
    interleaved = base + b"X-A: 1\r\nP-Foo: 2\r\nX-A: 3\r\nContent-Length: 0\r\n\r\n"
    rows.append(
        (
            "unknown headers interleaved (X-A, P-Foo, X-A): order kept",
            yes(outcome(ours_bytes, interleaved) == "same"),
            yes(outcome(theirs_bytes, interleaved) == "same"),
        )
    )
    case = base + b"x-lower-case: 1\r\nCONTENT-LENGTH: 0\r\n\r\n"
    rows.append(
        (
            "header name case kept",
            yes(outcome(ours_bytes, case) == "same"),
            yes(outcome(theirs_bytes, case) == "same"),
        )
    )
    compact = base.replace(b"Call-ID:", b"i:").replace(b"From:", b"f:") + b"l: 0\r\n\r\n"
    theirs_c = outcome(theirs_bytes, compact)
    rows.append(
        (
            "compact forms (i:, f:, l:) recognised and kept on output",
            yes(outcome(ours_bytes, compact) == "same"),
            yes(theirs_c == "same")
            + (" (expanded to long names)" if theirs_c == "changed" else f" ({theirs_c})"),
        )
    )
    folded = base + b"Subject: one\r\n two\r\nContent-Length: 0\r\n\r\n"
    ours_f = parse_message(folded).headers.get("subject") == "one two"
    theirs_f = outcome(theirs_parse_bytes_ok, folded)
    rows.append(
        (
            "folded header line (RFC 3261 §7.3.1) unfolded",
            yes(ours_f),
            yes(theirs_f == "same") + ("" if theirs_f == "same" else f" ({theirs_f})"),
        )
    )
    dbl = (RFC4475 / "dblreq.dat").read_bytes()
    ours_body = parse_message(dbl).body
    try:
        theirs_body = sipmessage.Message.parse(dbl).body
    except Exception as e:
        theirs_body = type(e).__name__.encode()
    rows.append(
        (
            "body cut at Content-Length (RFC 4475 dblreq)",
            yes(ours_body == b""),
            yes(theirs_body == b"") + ("" if theirs_body == b"" else " (keeps trailing octets)"),
        )
    )
    rows.append(("stream framing (Content-Length over TCP)", "yes (StreamFramer)", "**no**"))
    v_ours = v_theirs = rt_ours = rt_theirs = 0
    for name in RFC_VALID:
        data = (RFC4475 / f"{name}.dat").read_bytes()
        try:
            parse_message(data)
            v_ours += 1
        except SipParseError:
            pass
        try:
            sipmessage.Message.parse(data)
            v_theirs += 1
        except Exception:  # any failure counts as "not parsed"
            pass
        rt_ours += outcome(ours_bytes, data) == "same"
        rt_theirs += outcome(theirs_bytes, data) == "same"
    n = len(RFC_VALID)
    rows.append(
        (f"RFC 4475 valid-for-a-proxy messages parsed (of {n})", str(v_ours), str(v_theirs))
    )
    rows.append(
        (
            f"... and round-tripped byte-exact (of {n}; ours: dblreq loses its trailing octets "
            "and inv2543 gains a Content-Length, both on purpose)",
            str(rt_ours),
            str(rt_theirs),
        )
    )
    invalid = sorted(p.stem for p in RFC4475.glob("*.dat") if p.stem not in RFC_VALID)
    rej_ours = rej_theirs = 0
    other: set[str] = set()
    for name in invalid:
        data = (RFC4475 / f"{name}.dat").read_bytes()
        try:
            parse_message(data)
        except SipParseError:
            rej_ours += 1
        try:
            sipmessage.Message.parse(data)
        except ValueError:
            rej_theirs += 1
        except Exception as e:
            rej_theirs += 1
            other.add(type(e).__name__)
    rows.append(
        (
            f"RFC 4475 invalid messages rejected (of {len(invalid)})",
            f"{rej_ours} (SipParseError with 400/505)",
            f"{rej_theirs} (ValueError, no status)" + (f"; also {sorted(other)}" if other else ""),
        )
    )
    return rows


def theirs_parse_bytes_ok(data: bytes) -> bytes:
    m = sipmessage.Message.parse(data)
    if m.headers.get("Subject") != "one two":
        raise ValueError(f"Subject is {m.headers.get('Subject')!r}")
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke run)")
    args = ap.parse_args()
    number, repeat = (200, 5) if args.quick else (500, 80)
    # sanity: both parse the message
    ours = parse_message(INVITE)
    theirs = sipmessage.Message.parse(INVITE)
    t = timing(
        {
            "ours parse": lambda: parse_message(INVITE),
            "sipmessage parse": lambda: sipmessage.Message.parse(INVITE),
            "ours serialize": ours.serialize,
            "sipmessage serialize": lambda: bytes(theirs),
        },
        number,
        repeat,
    )
    best = {k: min(v) for k, v in t.items()}
    med = {k: statistics.median(v) for k, v in t.items()}
    print("## SIP parser\n")
    print(
        f"Measured by `bench/bench_sip_parse.py` in one process, runs interleaved, "
        f"{repeat}x{number} calls each; min (median). Python {platform.python_version()}, "
        f"sipmessage {sipmessage.__version__ if hasattr(sipmessage, '__version__') else '0.7.x'}, "
        f"{platform.machine()}. Message: spec example 04, INVITE with SDP, {len(INVITE)} bytes, "
        f"{len(ours.headers)} header fields.\n"
    )
    print("| µs per call | ours | sipmessage | ours / sipmessage |")
    print("| --- | ---: | ---: | ---: |")
    for what in ("parse", "serialize"):
        a, b = best[f"ours {what}"], best[f"sipmessage {what}"]
        print(
            f"| {what} | {a:.1f} ({med[f'ours {what}']:.1f}) | {b:.1f} "
            f"({med[f'sipmessage {what}']:.1f}) | {a / b:.2f} |"
        )
    print(
        "\nOur parse includes what a proxy needs before it may act on a message: header names "
        "checked as tokens, Request-URI, CSeq/method match, Max-Forwards, From/To name-addr "
        "syntax, top Via syntax, Content-Length framing, duplicate singleton fields and the "
        "limits. sipmessage's parse does none of these (it splits lines and names).\n"
    )
    print("| fidelity | ours | sipmessage |")
    print("| --- | --- | --- |")
    for row in fidelity():
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
