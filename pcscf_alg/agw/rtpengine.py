"""rtpengine as the RTP media backend (issue 14, docs/design.md §3 "rtpengine as the RTP backend").

`RtpengineGateway` runs the RTP/SRTP streams of our `AccessGateway` contract in an rtpengine,
over its ng control protocol (bencode over UDP: docs/ng_control_protocol.md in rtpengine's
sources). `SplitGateway` puts it beside the embedded `InProcessGateway`, which keeps MSRP
(rtpengine does not relay MSRP): one call may use both.

The mapping. rtpengine works on SDP offer/answer between two call parties; our API is reserve
(addresses, before the offer is rewritten) -> configure (the answer's plan) -> release. Each
context is one rtpengine call (`call-id` = a prefix of this gateway + the context id) with two
fixed parties whatever way the SIP offer went: `ue` (the access side, from-tag) and `core`
(to-tag). We never hand rtpengine the call's own SDP: we write each party's SDP from the
reservation and the plan, one m-line per RTP stream in the order they were first reserved.

- reserve: an `offer` from `ue` with placeholder addresses (and, for an e2ae stream, a
  throw-away a=crypto of the suite the ALG will use: `StreamRequest.ue_suite`) and
  `transport-protocol: RTP/AVP`, whose reply gives rtpengine's core-side ports; then an
  `answer` from `core` (placeholders, plain RTP) whose reply gives its access-side ports and its
  own SDES key towards the UE: `StreamReservation.local_key` (TS 23.334 §6.2.10), which the e2ae
  engine puts in SDP as K12 (originating) or as the one K21 it offers (terminating).
- configure: the same `offer` and `answer` again with the plan's real addresses and the UE's
  key (K11/K22) as the `ue` party's a=crypto. `port-latching` keeps rtpengine's ports, and it
  keeps its own key while the suite and tag stay (checked: a changed port or key is refused).
- release: `delete` with no delay. Best effort: if rtpengine is down, its own timeouts end it.

Errors (no reply after the retries, `result: error`, a reply we cannot use) are GatewayError:
the call layer answers 488 with a Warning and releases the context. A reserve that fails on a
new context deletes what it made. The ng socket is connected to rtpengine's address (the kernel
drops datagrams from anyone else), replies are matched by a random cookie and anything else is
dropped and counted; requests in flight are bounded (`agw.rtpengine.max_pending`). Nothing here
logs SDP: the ng messages carry keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import GatewayError, SdpError
from ..mediaplan import (
    Endpoint,
    Fingerprint,
    MediaKind,
    MediaPlan,
    SrtpKey,
    StreamMode,
    StreamPlan,
    StreamRequest,
    StreamReservation,
    ThroughConnection,
)
from ..sdp.crypto import SUITES, CryptoAttr, KeyParam, parse_crypto
from ..sdp.model import Sdp
from . import bencode
from .api import AccessGateway, EventHandler, StreamStats
from .config import AgwConfig, RtpengineConfig

log = logging.getLogger(__name__)

UE_TAG: Final = "ue"  # the access party (from-tag of every offer)
CORE_TAG: Final = "core"  # the core party (to-tag)
# Port of the placeholder addresses given before the plan is known: the discard port of
# rtpengine's own control host, so that anything rtpengine relays before configure goes nowhere.
PLACEHOLDER_PORT: Final = 9
# Flags of every offer/answer. trust-address: the SDP we write is the truth (no SIP source);
# port-latching: keep rtpengine's ports when a party's address changes (placeholder -> real);
# no ICE and no DTLS: SDES only, as TS 33.328 e2ae signals it.
_FLAGS: Final = ("trust-address", "port-latching")
_MAX_REASON: Final = 120  # rtpengine's error text in a Warning: bounded, printable


def _family(host: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(host).version == 6 else "IP4"
    except ValueError:
        # an FQDN in c= (RFC 4566 allows it): we resolve nothing on the call path
        raise GatewayError("media address is not an IP address (rtpengine backend)") from None


def _direction(sends: bool, receives: bool) -> str:
    if sends and receives:
        return "sendrecv"
    if sends:
        return "sendonly"
    return "recvonly" if receives else "inactive"


def _reason(reply: dict[bytes, bencode.Value]) -> str:
    raw = reply.get(b"error-reason", b"")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else "?"
    return "".join(c if c.isprintable() else "?" for c in text)[:_MAX_REASON]


# ------------------------------------------------------------------ the ng client


class NgClient(asyncio.DatagramProtocol):
    """ng requests over UDP: a random cookie per request, retries with the same cookie (rtpengine
    answers a retransmission from its cookie cache without doing it twice), bounded in flight."""

    def __init__(self, config: RtpengineConfig) -> None:
        self.config = config
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, asyncio.Future[dict[bytes, bencode.Value]]] = {}
        self.counters: dict[str, int] = {"requests": 0, "timeouts": 0, "errors": 0, "stray": 0}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        # Connected: the kernel hands us only datagrams from rtpengine's address and port.
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, remote_addr=(cfg.ng_host, cfg.ng_port)
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(GatewayError("rtpengine client closed"))
        self._pending.clear()

    # asyncio.DatagramProtocol
    def datagram_received(self, data: bytes, addr: Any) -> None:
        cookie, _, body = data.partition(b" ")
        fut = self._pending.get(cookie)
        if fut is None or fut.done():
            self.counters["stray"] += 1  # late (already retried and answered) or not ours
            return
        try:
            reply = bencode.decode(body)
        except bencode.BencodeError:
            self.counters["stray"] += 1
            return  # a retry may still bring a good one
        if not isinstance(reply, dict):
            self.counters["stray"] += 1
            return
        fut.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on the connected socket: rtpengine is not listening. Fail what
        # waits now rather than at its timeout (it may still be retried).
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(GatewayError("rtpengine not reachable"))

    async def request(
        self, message: dict[str, bencode.Encodable], *, release: bool = False
    ) -> dict[bytes, bencode.Value]:
        """Send one ng request; its reply dictionary (`result: ok`), or GatewayError.

        `release`: a `delete`, which the cap on pending requests does not refuse: refusing it
        under load would leave the call's ports and keys in rtpengine until its own timeout
        (found by bench_cps.sh at 400 calls/s). Deletes stay bounded: one per context held."""
        cfg = self.config
        if self._transport is None:
            raise GatewayError("rtpengine client not started")
        if len(self._pending) >= cfg.max_pending and not release:
            self.counters["errors"] += 1
            raise GatewayError("media gateway overloaded (rtpengine requests pending)")
        command = str(message.get("command", "?"))
        cookie = secrets.token_hex(8).encode()
        data = cookie + b" " + bencode.encode(message)
        loop = asyncio.get_running_loop()
        self.counters["requests"] += 1
        try:
            for _attempt in range(1 + cfg.retries):
                fut: asyncio.Future[dict[bytes, bencode.Value]] = loop.create_future()
                self._pending[cookie] = fut
                if self._transport is None:
                    raise GatewayError("rtpengine client closed")
                self._transport.sendto(data)
                try:
                    reply = await asyncio.wait_for(fut, cfg.timeout_s)
                    break
                except TimeoutError:
                    continue
                except GatewayError:
                    # unreachable: wait out this try's time before the next one, so that a
                    # restarting rtpengine gets its chance
                    await asyncio.sleep(cfg.timeout_s)
                    continue
            else:
                self.counters["timeouts"] += 1
                raise GatewayError(f"media gateway (rtpengine) did not answer {command}")
        finally:
            self._pending.pop(cookie, None)
        result = reply.get(b"result")
        if result != b"ok" and not (command == "ping" and result == b"pong"):
            self.counters["errors"] += 1
            if result == b"error":
                raise GatewayError(f"media gateway (rtpengine) refused {command}: {_reason(reply)}")
            raise GatewayError(f"media gateway (rtpengine) gave no result to {command}")
        return reply

    def pending(self) -> int:
        return len(self._pending)


# ------------------------------------------------------------------ the SDP we hand rtpengine


@dataclass
class _Leg:
    """What rtpengine is told of one party of one stream."""

    remote: Endpoint | None = None  # None: placeholder (not known yet)
    mux: bool = False
    crypto: str | None = None  # the party's a=crypto value (ue party of an e2ae stream)


@dataclass
class _Stream:
    index: int  # our m-line index
    ue_suite: str | None  # SRTP towards the UE (e2ae), else plain on both sides
    ue: _Leg = field(default_factory=_Leg)
    core: _Leg = field(default_factory=_Leg)
    through: ThroughConnection = ThroughConnection.SENDRECV
    rejected: bool = False  # port 0 on both sides (bypassed, rejected, or a failed reserve)
    reservation: StreamReservation | None = None


@dataclass
class _Context:
    call_id: str
    streams: dict[int, _Stream] = field(default_factory=dict)  # in rtpengine's m-line order
    version: int = 0


def party_sdp(
    ctx: _Context, party: str, placeholder_host: str, placeholder_key: bytes | None = None
) -> str:
    """The SDP of one party (`UE_TAG` or `CORE_TAG`) as rtpengine must see it: one audio m-line
    per stream, its own c=, RTP/SAVP with the party's a=crypto for the UE side of an e2ae
    stream, RTP/AVP otherwise (an anchored SRTP-end-to-end stream is relayed as opaque RTP)."""
    ue = party == UE_TAG
    fam = _family(placeholder_host)
    lines = [
        "v=0",
        f"o=- {abs(hash(ctx.call_id)) % 10**9} {ctx.version} IN {fam} {placeholder_host}",
        "s=pcscf-alg",
        "t=0 0",
    ]
    for st in ctx.streams.values():
        leg = st.ue if ue else st.core
        secure = ue and st.ue_suite is not None
        proto = "RTP/SAVP" if secure else "RTP/AVP"
        remote = leg.remote
        if remote is None:
            host = placeholder_host
            port = PLACEHOLDER_PORT
            rtcp: int | None = None if leg.mux else PLACEHOLDER_PORT + 1
        else:
            host, port, rtcp = remote.host, remote.port, remote.rtcp_port
        if st.rejected:
            port = 0
        # The payload types are not ours to choose here: rtpengine relays without transcoding,
        # the real codecs are in the call's own SDP.
        lines.append(f"m=audio {port} {proto} 0 8 96")
        lines.append(f"c=IN {_family(host)} {host}")
        if st.rejected:
            continue
        if leg.mux:
            lines.append("a=rtcp-mux")
        elif rtcp is not None and rtcp != port + 1:
            lines.append(f"a=rtcp:{rtcp}")
        if secure:
            assert st.ue_suite is not None
            crypto = leg.crypto
            if crypto is None:  # a throw-away key: rtpengine needs one to answer with its own
                suite = SUITES[st.ue_suite]
                key = placeholder_key or secrets.token_bytes(suite.key_salt_len)
                crypto = CryptoAttr(1, st.ue_suite, (KeyParam("inline", key),)).to_sdp()
            lines.append(f"a=crypto:{crypto}")
        t = st.through
        ue_sends = t in (ThroughConnection.SENDRECV, ThroughConnection.RECVONLY)
        core_sends = t in (ThroughConnection.SENDRECV, ThroughConnection.SENDONLY)
        lines.append(
            "a=" + (_direction(ue_sends, core_sends) if ue else _direction(core_sends, ue_sends))
        )
    return "\r\n".join(lines) + "\r\n"


def _flags(strict_source: bool) -> list[bencode.Encodable]:
    return [*_FLAGS, "strict-source"] if strict_source else list(_FLAGS)


def offer_request(call_id: str, sdp: str, *, strict_source: bool) -> dict[str, bencode.Encodable]:
    """The ng `offer` from the UE party: the core party gets plain RTP."""
    return {
        "command": "offer",
        "call-id": call_id,
        "from-tag": UE_TAG,
        "sdp": sdp,
        "transport-protocol": "RTP/AVP",
        "ICE": "remove",
        "DTLS": "off",
        "flags": _flags(strict_source),
    }


def answer_request(call_id: str, sdp: str, *, strict_source: bool) -> dict[str, bencode.Encodable]:
    """The ng `answer` from the core party: rtpengine answers the UE party in the protocol it
    offered (RTP/SAVP with rtpengine's own a=crypto for an e2ae stream)."""
    return {
        "command": "answer",
        "call-id": call_id,
        "from-tag": UE_TAG,
        "to-tag": CORE_TAG,
        "sdp": sdp,
        "ICE": "remove",
        "DTLS": "off",
        "flags": _flags(strict_source),
    }


def delete_request(call_id: str) -> dict[str, bencode.Encodable]:
    return {"command": "delete", "call-id": call_id, "from-tag": UE_TAG, "delete delay": 0}


def parse_reply_sdp(
    reply: dict[bytes, bencode.Value], count: int
) -> list[tuple[Endpoint | None, CryptoAttr | None]]:
    """rtpengine's own address (and a=crypto) per m-line of the SDP it returned."""
    raw = reply.get(b"sdp")
    if not isinstance(raw, bytes):
        raise GatewayError("media gateway (rtpengine) returned no SDP")
    try:
        sdp = Sdp.parse(raw)
    except SdpError:
        raise GatewayError("media gateway (rtpengine) returned SDP we cannot parse") from None
    if len(sdp.media) != count:
        raise GatewayError(
            f"media gateway (rtpengine) returned {len(sdp.media)} m-lines, we sent {count}"
        )
    out: list[tuple[Endpoint | None, CryptoAttr | None]] = []
    for m in sdp.media:
        if m.port == 0:
            out.append((None, None))
            continue
        host = sdp.media_host(m)
        if host is None:
            raise GatewayError("media gateway (rtpengine) returned an m-line without c=")
        rtcp: int | None = None
        if not m.has_attr("rtcp-mux"):
            rtcp = m.port + 1
            value = m.attr("rtcp")
            first = value.split(" ", 1)[0] if value else ""
            if first.isdigit():
                rtcp = int(first)
        crypto = None
        cryptos = m.attrs("crypto")
        if cryptos:
            try:
                crypto = parse_crypto(cryptos[0])
            except SdpError:
                raise GatewayError("media gateway (rtpengine) returned a bad a=crypto") from None
        out.append((Endpoint(host, m.port, rtcp), crypto))
    return out


def _crypto_value(key: SrtpKey, tag: int) -> str:
    """The UE's key (K11/K22) as the UE party's a=crypto, under the tag rtpengine answered."""
    mki_value = mki_len = None
    if key.mki is not None:
        mki_value, mki_len = int.from_bytes(key.mki, "big"), len(key.mki)
    kp = KeyParam("inline", key.key_salt, key.lifetime, mki_value, mki_len)
    return CryptoAttr(tag, key.suite, (kp,)).to_sdp()


# ------------------------------------------------------------------ the gateway


class RtpengineGateway:
    """RTP/SRTP streams of the `AccessGateway` contract, run by rtpengine (see module doc)."""

    def __init__(self, config: AgwConfig) -> None:
        self.config = config
        self.client = NgClient(config.rtpengine)
        # Our call-ids in rtpengine: unique per gateway instance, so that another daemon (or
        # this one restarted, or another worker) on the same rtpengine never meets them.
        self._prefix = "pcscf-" + secrets.token_hex(6)
        self._contexts: dict[str, _Context] = {}
        self._counters: dict[str, int] = {}

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        for context_id in list(self._contexts):
            await self.release(context_id)
        self.client.close()

    @property
    def local_fingerprint(self) -> Fingerprint:
        raise GatewayError("rtpengine backend has no certificate (MSRP stays embedded)")

    def set_event_handler(self, handler: EventHandler | None) -> None:
        pass  # rtpengine reports nothing back over ng: no events from this backend

    def contexts(self) -> list[str]:
        return list(self._contexts)

    def counters(self) -> dict[str, int]:
        return {f"rtpengine.{k}": v for k, v in self.client.counters.items() if v}

    def has(self, context_id: str, index: int) -> bool:
        ctx = self._contexts.get(context_id)
        return ctx is not None and index in ctx.streams

    @property
    def _placeholder(self) -> str:
        return self.config.rtpengine.ng_host

    # ------------------------------------------------------------------ Iq procedures

    async def reserve(
        self, context_id: str, streams: Sequence[StreamRequest]
    ) -> list[StreamReservation]:
        for req in streams:
            if req.kind is not MediaKind.RTP:
                raise GatewayError(f"stream {req.index}: rtpengine relays RTP only")
            if req.ue_suite is not None and req.ue_suite not in SUITES:
                raise GatewayError(f"stream {req.index}: unknown SRTP suite {req.ue_suite}")
        ctx = self._contexts.get(context_id)
        new_ctx = ctx is None
        known = set(ctx.streams) if ctx is not None else set()
        if len(known | {r.index for r in streams}) > self.config.max_streams_per_call:
            raise GatewayError(
                f"too many media streams (at most {self.config.max_streams_per_call} per call)"
            )
        if ctx is None:
            ctx = _Context(f"{self._prefix}-{context_id}")
            self._contexts[context_id] = ctx
        dirty: list[_Stream] = []
        for req in streams:
            st = ctx.streams.get(req.index)
            if (
                st is not None
                and st.reservation is not None
                and not st.rejected
                and st.ue_suite == req.ue_suite
            ):
                continue  # idempotent per index
            if st is None:
                st = _Stream(req.index, req.ue_suite)
                ctx.streams[req.index] = st
            # (re)start from placeholders: new, or its SRTP suite or protocol changed
            st.ue_suite = req.ue_suite
            st.ue = _Leg(mux=req.access_rtcp_mux)
            st.core = _Leg(mux=req.core_rtcp_mux)
            st.rejected = False
            st.reservation = None
            st.through = ThroughConnection.SENDRECV
            dirty.append(st)
        if dirty:
            try:
                core_side, ue_side = await self._exchange(ctx)
                for pos, st in enumerate(ctx.streams.values()):
                    if st.rejected:
                        continue
                    res = self._reservation(st, core_side[pos], ue_side[pos])
                    if st.reservation is not None and (
                        res.access != st.reservation.access or res.core != st.reservation.core
                    ):
                        raise GatewayError(f"rtpengine moved stream {st.index}")
                    st.reservation = res
            except BaseException:
                if new_ctx:
                    self._contexts.pop(context_id, None)
                    await self._delete(ctx)
                else:
                    for st in dirty:  # keep rtpengine's m-line positions: park them, port 0
                        st.rejected = True
                        st.reservation = None
                raise
            if self._contexts.get(context_id) is not ctx:
                # released (CANCEL, BYE) while we waited: do not resurrect it
                await self._delete(ctx)
                raise GatewayError(f"context {context_id} released during reserve")
        out: list[StreamReservation] = []
        for req in streams:
            got = ctx.streams[req.index].reservation
            assert got is not None
            out.append(got)
        return out

    def _reservation(
        self,
        st: _Stream,
        core: tuple[Endpoint | None, CryptoAttr | None],
        ue: tuple[Endpoint | None, CryptoAttr | None],
    ) -> StreamReservation:
        core_ep, _ = core
        ue_ep, crypto = ue
        if core_ep is None or ue_ep is None:
            raise GatewayError(f"rtpengine rejected stream {st.index}")
        local: SrtpKey | None = None
        if st.ue_suite is not None:
            if crypto is None or crypto.suite != st.ue_suite:
                raise GatewayError(
                    f"rtpengine gave no {st.ue_suite} key towards the UE for stream {st.index}"
                )
            local = crypto.to_srtp_key()
        return StreamReservation(st.index, MediaKind.RTP, ue_ep, core_ep, None, local)

    async def configure(self, context_id: str, plan: MediaPlan) -> None:
        ctx = self._contexts.get(context_id)
        anchored = [sp for sp in plan.streams if sp.mode in (StreamMode.E2AE, StreamMode.PASS)]
        if ctx is None:
            if anchored:
                raise GatewayError(f"context {context_id} was not reserved")
            return
        # Validate everything first: a refused plan changes nothing.
        for sp in anchored:
            self._validate(ctx, sp)
        before = {i: dataclasses.replace(st) for i, st in ctx.streams.items()}
        for sp in plan.streams:
            st = ctx.streams.get(sp.index)
            if st is None:
                continue
            if sp.mode in (StreamMode.BYPASS, StreamMode.REJECTED) or sp.ue_remote is None:
                st.rejected = True
                continue
            st.ue = _Leg(sp.ue_remote, sp.access_rtcp_mux, None)
            st.core = _Leg(sp.core_remote, sp.core_rtcp_mux, None)
            if sp.mode is StreamMode.E2AE:
                res = st.reservation
                assert sp.rx_key is not None and res is not None and res.local_key is not None
                st.ue.crypto = _crypto_value(sp.rx_key, res.local_key.tag)
            st.through = sp.through
        try:
            core_side, ue_side = await self._exchange(ctx)
            for pos, st in enumerate(ctx.streams.values()):
                if st.rejected or st.reservation is None:
                    continue
                res = self._reservation(st, core_side[pos], ue_side[pos])
                old = st.reservation
                # RTCP may move: a reservation made for an offer with a=rtcp-mux gives RTCP the
                # RTP port; an answer that declines mux (RFC 5761 §5.1.1) makes rtpengine open
                # port+1, which is where the UE sends it (no a=rtcp in our answer: RFC 3605).
                what = [
                    name
                    for name, a, b in (
                        ("access address", res.access, old.access),
                        ("core address", res.core, old.core),
                    )
                    if (a.host, a.port) != (b.host, b.port)
                ]
                if res.local_key != old.local_key:
                    what.append("key")
                if what:
                    raise GatewayError(
                        f"rtpengine changed the {', '.join(what)} of stream {st.index}"
                    )
        except BaseException:
            ctx.streams.update(before)  # what rtpengine had: the call layer releases it
            raise

    def _validate(self, ctx: _Context, sp: StreamPlan) -> None:
        i = sp.index
        st = ctx.streams.get(i)
        if sp.kind is not MediaKind.RTP:
            raise GatewayError(f"stream {i}: rtpengine relays RTP only")
        if st is None or st.reservation is None or st.rejected:
            raise GatewayError(f"stream {i} was not reserved")
        if sp.mode is StreamMode.PASS:
            if st.ue_suite is not None:
                raise GatewayError(f"stream {i} was reserved for e2ae, planned pass-through")
            return
        local = st.reservation.local_key
        if st.ue_suite is None or local is None:
            raise GatewayError(f"stream {i} was reserved without SRTP towards the UE")
        if sp.rx_key is None or sp.tx_key is None:
            raise GatewayError(f"stream {i}: e2ae needs both SRTP keys")
        if sp.rx_key.suite != st.ue_suite:
            raise GatewayError(f"stream {i}: the UE's key is {sp.rx_key.suite}, not {st.ue_suite}")
        if sp.tx_key.suite != local.suite or sp.tx_key.key_salt != local.key_salt:
            # rtpengine protects with the key it made; it cannot take ours
            raise GatewayError(f"stream {i}: the key towards the UE is not the gateway's own")

    async def update_keys(
        self, context_id: str, index: int, rx_key: SrtpKey | None, tx_key: SrtpKey | None
    ) -> None:
        ctx = self._contexts.get(context_id)
        st = ctx.streams.get(index) if ctx is not None else None
        if ctx is None or st is None or st.reservation is None or st.reservation.local_key is None:
            raise GatewayError(f"stream {index} is not an e2ae RTP stream")
        local = st.reservation.local_key
        if tx_key is not None and tx_key.key_salt != local.key_salt:
            raise GatewayError(f"stream {index}: rtpengine makes its own key towards the UE")
        if rx_key is not None:
            st.ue.crypto = _crypto_value(rx_key, local.tag)
            await self._exchange(ctx)

    async def change_through_connection(
        self, context_id: str, index: int, mode: ThroughConnection
    ) -> None:
        ctx = self._contexts.get(context_id)
        st = ctx.streams.get(index) if ctx is not None else None
        if ctx is None or st is None:
            raise GatewayError(f"stream {index} is not reserved")
        st.through = mode
        await self._exchange(ctx)

    async def release(self, context_id: str) -> None:
        ctx = self._contexts.pop(context_id, None)
        if ctx is not None:
            await self._delete(ctx)

    def stats(self, context_id: str | None = None) -> list[StreamStats]:
        return []  # rtpengine counts media itself (its `query`); not mirrored here

    def active_ports(self) -> frozenset[tuple[str, int]]:
        return frozenset()  # rtpengine's ports are rtpengine's

    # ------------------------------------------------------------------ ng exchanges

    async def _exchange(
        self, ctx: _Context
    ) -> tuple[
        list[tuple[Endpoint | None, CryptoAttr | None]],
        list[tuple[Endpoint | None, CryptoAttr | None]],
    ]:
        """offer (UE party) + answer (core party): rtpengine's core-side and UE-side addresses."""
        strict = self.config.strict_source
        n = len(ctx.streams)
        ctx.version += 1
        r1 = await self.client.request(
            offer_request(
                ctx.call_id, party_sdp(ctx, UE_TAG, self._placeholder), strict_source=strict
            )
        )
        core_side = parse_reply_sdp(r1, n)
        r2 = await self.client.request(
            answer_request(
                ctx.call_id, party_sdp(ctx, CORE_TAG, self._placeholder), strict_source=strict
            )
        )
        return core_side, parse_reply_sdp(r2, n)

    async def _delete(self, ctx: _Context) -> None:
        try:
            await self.client.request(delete_request(ctx.call_id), release=True)
        except GatewayError as e:
            # rtpengine's own timeouts end a call it was not told to delete
            log.warning("rtpengine delete of %s failed: %s", ctx.call_id, e)


# ------------------------------------------------------------------ RTP here, MSRP there


class SplitGateway:
    """An `AccessGateway` that runs RTP streams in `rtp` (rtpengine) and every other stream
    (MSRP) in `other` (the embedded gateway): per stream, so one call may use both."""

    def __init__(self, rtp: RtpengineGateway, other: AccessGateway) -> None:
        self.rtp = rtp
        self.other = other

    # the embedded gateway's config is what a reload changes (app.py assigns `gateway.config`)
    @property
    def config(self) -> AgwConfig:
        return self.rtp.config

    @config.setter
    def config(self, value: AgwConfig) -> None:
        self.rtp.config = value
        with contextlib.suppress(AttributeError):
            self.other.config = value  # type: ignore[attr-defined]

    async def start(self) -> None:
        start = getattr(self.other, "start", None)
        if start is not None:
            await start()
        await self.rtp.start()

    async def close(self) -> None:
        await self.rtp.close()
        close = getattr(self.other, "close", None)
        if close is not None:
            await close()

    @property
    def local_fingerprint(self) -> Fingerprint:
        return self.other.local_fingerprint

    def set_event_handler(self, handler: EventHandler | None) -> None:
        self.other.set_event_handler(handler)

    async def reserve(
        self, context_id: str, streams: Sequence[StreamRequest]
    ) -> list[StreamReservation]:
        rtp = [r for r in streams if r.kind is MediaKind.RTP]
        rest = [r for r in streams if r.kind is not MediaKind.RTP]
        cap = self.config.max_streams_per_call
        if len(streams) > cap:
            raise GatewayError(f"too many media streams (at most {cap} per call)")
        got: dict[int, StreamReservation] = {}
        had_rtp = context_id in self.rtp.contexts()
        # rtpengine first: it is the part that can be down, and then nothing was made here
        if rtp:
            for res in await self.rtp.reserve(context_id, rtp):
                got[res.index] = res
        if rest:
            try:
                for res in await self.other.reserve(context_id, rest):
                    got[res.index] = res
            except BaseException:
                if rtp and not had_rtp:
                    await self.rtp.release(context_id)
                raise
        return [got[r.index] for r in streams]

    async def configure(self, context_id: str, plan: MediaPlan) -> None:
        rtp = tuple(s for s in plan.streams if s.kind is MediaKind.RTP)
        rest = tuple(s for s in plan.streams if s.kind is not MediaKind.RTP)
        if any(s.mode in (StreamMode.E2AE, StreamMode.PASS) for s in rest):
            await self.other.configure(context_id, MediaPlan(rest))
        await self.rtp.configure(context_id, MediaPlan(rtp))

    async def update_keys(
        self, context_id: str, index: int, rx_key: SrtpKey | None, tx_key: SrtpKey | None
    ) -> None:
        gw = self.rtp if self.rtp.has(context_id, index) else self.other
        await gw.update_keys(context_id, index, rx_key, tx_key)

    async def change_through_connection(
        self, context_id: str, index: int, mode: ThroughConnection
    ) -> None:
        if self.rtp.has(context_id, index):
            await self.rtp.change_through_connection(context_id, index, mode)
        else:
            await self.other.change_through_connection(context_id, index, mode)

    async def release(self, context_id: str) -> None:
        try:
            await self.rtp.release(context_id)
        finally:
            await self.other.release(context_id)

    def stats(self, context_id: str | None = None) -> list[StreamStats]:
        return self.other.stats(context_id)

    def active_ports(self) -> frozenset[tuple[str, int]]:
        return self.other.active_ports()

    def contexts(self) -> list[str]:
        other = getattr(self.other, "contexts", None)
        names = set(other()) if callable(other) else set()
        return sorted(names | set(self.rtp.contexts()))

    def media_totals(self) -> dict[str, int]:
        totals = getattr(self.other, "media_totals", None)
        return dict(totals()) if callable(totals) else {}

    def counters(self) -> dict[str, int]:
        # The embedded gateway's events (by type and reason); the ng client's own counters are
        # `self.rtp.counters()` (failures are also logged), not events.
        counters = getattr(self.other, "counters", None)
        return dict(counters()) if callable(counters) else {}

    @property
    def certificate(self) -> Any:
        return getattr(self.other, "certificate", None)
