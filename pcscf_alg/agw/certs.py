"""The gateway's own TLS certificate and RFC 8122 fingerprints.

For e2ae MSRP (TS 33.328 7.2.1 step 7) the IMS-AGW uses a self-signed certificate; peers
authenticate it by the `a=fingerprint` the P-CSCF puts in SDP, not by PKI (RFC 8122 §6.2). An EC
P-256 key keeps handshakes cheap. The certificate is made on first start and reused afterwards
so that its fingerprint stays stable across restarts; it is renewed when close to expiry.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..errors import GatewayError
from ..mediaplan import Fingerprint

log = logging.getLogger(__name__)

CERT_FILE = "agw-cert.pem"
KEY_FILE = "agw-key.pem"
# One year, renewed when under 30 days remain: a fingerprint in a long call's SDP stays valid.
VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)

# RFC 8122 §5 hash-func names we can compute. md2/md5 are not accepted (RFC 8122 §5: MUST NOT).
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}
# Strongest first: RFC 8122 §5 says to check against the most preferred hash that was offered.
HASH_PREFERENCE = ("sha-512", "sha-384", "sha-256", "sha-224", "sha-1")


@dataclass(frozen=True)
class GatewayCertificate:
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate
    fingerprint: Fingerprint  # sha-256, what goes into a=fingerprint


def fingerprint_of(cert: x509.Certificate, hash_func: str = "sha-256") -> Fingerprint:
    algo = HASHES.get(hash_func.lower())
    if algo is None:
        raise GatewayError(f"unsupported fingerprint hash {hash_func!r}")
    return Fingerprint(hash_func.lower(), cert.fingerprint(algo()))


def select_fingerprints(fps: tuple[Fingerprint, ...]) -> tuple[Fingerprint, ...]:
    """The signalled fingerprints that use the most preferred hash we support (RFC 8122 §5).

    Raises GatewayError when none is usable, so that the ALG can reject the stream (488) instead
    of letting every handshake fail later.
    """
    by_hash: dict[str, list[Fingerprint]] = {}
    for fp in fps:
        name = fp.hash_func.lower()
        if name in HASHES and len(fp.digest) == HASHES[name]().digest_size:
            by_hash.setdefault(name, []).append(Fingerprint(name, fp.digest))
    for name in HASH_PREFERENCE:
        if name in by_hash:
            return tuple(by_hash[name])
    raise GatewayError("no usable UE certificate fingerprint (need sha-1/224/256/384/512)")


def _create(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pcscf-alg IMS-AGW")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate peers' clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write to temporary files then rename, so a crash never leaves a half-written pair; the key
    # file is created 0600 from the start.
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)


def _usable(cert_path: Path, key_path: Path) -> x509.Certificate | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or cert_key.public_numbers() != (
        key.public_key().public_numbers()
    ):
        return None
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return None
    return cert


def load_or_create(cert_dir: Path) -> GatewayCertificate:
    """Load the gateway certificate from `cert_dir`, creating (or renewing) it if needed."""
    try:
        cert_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GatewayError(f"cannot create cert_dir {cert_dir}: {e.strerror}") from None
    cert_path, key_path = cert_dir / CERT_FILE, cert_dir / KEY_FILE
    cert = _usable(cert_path, key_path)
    if cert is None:
        log.info("creating a new self-signed AGW certificate in %s", cert_dir)
        try:
            _create(cert_path, key_path)
        except OSError as e:
            raise GatewayError(f"cannot write certificate in {cert_dir}: {e.strerror}") from None
        cert = _usable(cert_path, key_path)
        if cert is None:  # pragma: no cover - we just wrote it
            raise GatewayError(f"certificate in {cert_dir} unusable after creation")
    fp = fingerprint_of(cert)
    log.info("AGW certificate fingerprint %s", fp.to_sdp())
    return GatewayCertificate(cert_path, key_path, cert, fp)
