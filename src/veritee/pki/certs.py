"""Loading certificates and CRLs from PEM/DER, tolerating known vendor quirks explicitly."""

from __future__ import annotations

import functools
import hashlib
import re
import warnings

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import Certificate, CertificateRevocationList

from veritee.errors import EvidenceFormatError

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s+.+?-----END CERTIFICATE-----", re.DOTALL)
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----\s+.+?-----END X509 CRL-----", re.DOTALL)


@functools.lru_cache(maxsize=1024)
def fingerprint(cert: Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex: the form roots are pinned by.

    Memoized: certificates hash and compare by their DER, and the same few are
    checked on every attestation.
    """
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _load_der_cert(der: bytes) -> Certificate:
    # AMD VCEKs carry serial number 0, which RFC 5280 forbids; cryptography warns
    # and still parses. That quirk is accepted here on purpose, nothing else is.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*serial number.*", category=CryptographyDeprecationWarning
        )
        return x509.load_der_x509_certificate(der)


def touch(cert: Certificate, what: str) -> Certificate:
    """Decode every field verification reads, now.

    ``cryptography`` parses lazily: a corrupted field would otherwise surface
    as a bare ValueError deep inside verification instead of a format error.
    """
    try:
        with warnings.catch_warnings():
            # The serial-number quirk of AMD VCEKs is accepted on purpose (_load_der_cert).
            warnings.filterwarnings(
                "ignore", message=".*serial number.*", category=CryptographyDeprecationWarning
            )
            _ = (
                cert.subject,
                cert.issuer,
                cert.extensions,
                cert.not_valid_before_utc,
                cert.not_valid_after_utc,
                cert.serial_number,
                cert.signature_hash_algorithm,
                cert.signature_algorithm_parameters,
                cert.tbs_certificate_bytes,
            )
            cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise EvidenceFormatError(f"{what}: malformed certificate ({exc})") from None
    return cert


def load_certificates(data: bytes, *, what: str = "certificate") -> list[Certificate]:
    """All certificates in ``data`` (one DER certificate, or any number of PEM blocks).

    Memoized by content: every SNP guest sends the same VCEK/ASK/ARK, and a
    parsed certificate is immutable.
    """
    return list(_load_certificates(bytes(data), what))


@functools.lru_cache(maxsize=256)
def _load_certificates(data: bytes, what: str) -> tuple[Certificate, ...]:
    try:
        blocks = _PEM_CERT.findall(data)
        if blocks:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*serial number.*", category=CryptographyDeprecationWarning
                )
                certs = [x509.load_pem_x509_certificate(b) for b in blocks]
        else:
            certs = [_load_der_cert(data)]
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise EvidenceFormatError(f"{what}: not a valid X.509 certificate ({exc})") from None
    return tuple(touch(c, what) for c in certs)


def load_certificate(data: bytes, *, what: str = "certificate") -> Certificate:
    certs = load_certificates(data, what=what)
    if len(certs) != 1:
        raise EvidenceFormatError(f"{what}: expected one certificate, found {len(certs)}")
    return certs[0]


def load_crls(data: bytes, *, what: str = "CRL") -> list[CertificateRevocationList]:
    try:
        blocks = _PEM_CRL.findall(data)
        if blocks:
            crls = [x509.load_pem_x509_crl(b) for b in blocks]
        else:
            crls = [x509.load_der_x509_crl(data)]
        for crl in crls:  # decode eagerly, as for certificates
            _ = (crl.issuer, crl.next_update_utc, crl.last_update_utc, crl.extensions,
                 crl.signature_hash_algorithm, crl.signature_algorithm_parameters,
                 crl.tbs_certlist_bytes, list(crl))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise EvidenceFormatError(f"{what}: not a valid X.509 CRL ({exc})") from exc
    return crls


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not attrs:
        return ""
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
