"""TLS towards the UE with the peer certificate checked against the SDP fingerprint, in-handshake.

Python's ssl module cannot accept an unknown self-signed peer certificate and still compare it
with a fingerprint *during* the handshake (no verify callback), so this uses pyOpenSSL with
memory BIOs: `TlsEngine` is sans-IO (bytes in, bytes out), the asyncio adapter lives in
msrp_relay.py.

Rules (RFC 8122 §6.2, RFC 6135, TS 33.328 7.2.1 step 7/9):
- No PKI, no host name: the certificate is self-signed and the fingerprint is the only gate.
- Both roles present the gateway certificate and require the peer's. As server the gateway
  sends a CertificateRequest (mutual TLS), else there would be nothing to check.
- A mismatch fails the verify callback, which aborts the handshake with a fatal alert before
  any application data is accepted. OpenSSL picks the alert from the certificate's own verify
  error, so a GnuTLS peer receives unknown_ca (48) for the self-signed certificate it rejected
  (tests/e2e/test_calls_msrp_gnutls.py); with TLS 1.3 and the gateway as client, GnuTLS reports
  "decryption failed" instead, as with any OpenSSL client (the alert comes before the keys).
- Session resumption is disabled: a resumed session skips the certificate check, and the one
  context is shared by every stream, each with its own expected fingerprint.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from OpenSSL import SSL

from ..mediaplan import Fingerprint
from .certs import HASHES, GatewayCertificate

READ_CHUNK: Final = 64 * 1024


class TlsError(Exception):
    """`reason` is a stable token for events/metrics; `detail` is OpenSSL's text, for logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def make_context(cert: GatewayCertificate) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)  # RFC 8996 / RFC 9325
    ctx.use_certificate_file(str(cert.cert_path))
    ctx.use_privatekey_file(str(cert.key_path))
    ctx.check_privatekey()
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify)
    return ctx


def _verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    # OpenSSL reports the self-signed leaf as an error (ok=0, errno 18); we decide alone.
    # Only the leaf (depth 0) is the UE's certificate; anything above it is not looked at.
    if depth > 0:
        return True
    engine = conn.get_app_data()
    if not isinstance(engine, TlsEngine):  # pragma: no cover - every connection has one
        return False
    return engine.check_peer(cert.to_cryptography())


class TlsEngine:
    """One TLS connection over memory BIOs. Feed received bytes, collect bytes to send."""

    def __init__(
        self, ctx: SSL.Context, *, server: bool, expected: tuple[Fingerprint, ...]
    ) -> None:
        self.expected = expected
        self.server = server
        self.established = False
        self.eof = False
        self.failure: str | None = None  # "fingerprint_mismatch" once the callback refused
        self._matched: bool | None = None
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_app_data(self)
        if server:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()

    def check_peer(self, cert: Any) -> bool:
        """The RFC 8122 check: digest of the DER certificate equals a signalled fingerprint."""
        for fp in self.expected:
            algo = HASHES.get(fp.hash_func)
            if algo is not None and hmac.compare_digest(cert.fingerprint(algo()), fp.digest):
                self._matched = True
                return True
        self._matched = False
        self.failure = "fingerprint_mismatch"
        return False

    def receive(self, data: bytes) -> None:
        self._conn.bio_write(data)

    def handshake(self) -> bool:
        """Advance the handshake. True once established; raises TlsError on failure."""
        if self.established:
            return True
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as e:
            raise TlsError(self.failure or "handshake", _detail(e)) from None
        # Belt and braces: the callback must have run and matched (it always does for a full
        # handshake with VERIFY_PEER; resumption is off).
        if self._matched is not True:
            self.failure = self.failure or "no_certificate"
            raise TlsError(self.failure)
        self.established = True
        return True

    def read(self) -> bytes:
        """All application data available now (b"" if none). Sets `eof` on close_notify."""
        chunks = []
        while True:
            try:
                chunks.append(self._conn.recv(READ_CHUNK))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.eof = True
                break
            except SSL.Error as e:
                raise TlsError("tls", _detail(e)) from None
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # With a memory BIO SSL_write never blocks; it may split into 16 KiB records.
            n = self._conn.send(view)
            view = view[n:]

    def outgoing(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self._conn.bio_read(READ_CHUNK))
            except SSL.WantReadError:
                break
        return b"".join(chunks)

    def close(self) -> bytes:
        """Send close_notify if possible; returns the bytes to write."""
        try:
            if self.established:
                self._conn.shutdown()
        except SSL.Error:
            pass
        self._conn.set_app_data(None)
        return self.outgoing()


def _detail(e: SSL.Error) -> str:
    # pyOpenSSL errors carry [(lib, func, reason), ...]; keep the first reason for the log.
    try:
        return str(e.args[0][0][2])
    except (IndexError, TypeError):
        return str(e)
