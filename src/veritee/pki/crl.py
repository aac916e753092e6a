"""Certificate revocation lists: signature by the issuer, freshness, membership."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import Certificate, CertificateRevocationList

from veritee.errors import ChainError, ExpiredError, RevokedError
from veritee.pki.certs import common_name


def verify_crl_signature(crl: CertificateRevocationList, issuer: Certificate) -> None:
    if crl.issuer != issuer.subject:
        raise ChainError(
            f"CRL issued by {common_name(crl.issuer)!r}, not by {common_name(issuer.subject)!r}"
        )
    key = issuer.public_key()
    hash_alg = crl.signature_hash_algorithm
    params = crl.signature_algorithm_parameters
    try:
        if isinstance(key, rsa.RSAPublicKey) and isinstance(hash_alg, hashes.HashAlgorithm):
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            key.verify(crl.signature, crl.tbs_certlist_bytes, pad, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
            hash_alg, hashes.HashAlgorithm
        ):
            key.verify(crl.signature, crl.tbs_certlist_bytes, ec.ECDSA(hash_alg))
        else:
            raise ChainError("CRL signed with an unsupported algorithm")
    except InvalidSignature:
        raise ChainError(
            f"CRL signature does not verify with {common_name(issuer.subject)!r}"
        ) from None


def check_not_revoked(
    crl: CertificateRevocationList,
    issuer: Certificate,
    certs: Iterable[Certificate],
    now: dt.datetime,
) -> None:
    """Raise RevokedError if any of ``certs`` issued by ``issuer`` is listed in ``crl``.

    The CRL must be signed by ``issuer`` and current at ``now`` (a stale CRL
    proves nothing, so it fails closed with ExpiredError).
    """
    verify_crl_signature(crl, issuer)
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise ExpiredError(
            f"CRL from {common_name(issuer.subject)!r} is stale (next update was "
            f"{next_update.isoformat()})",
            hint="fetch a current CRL, or verify as of an earlier time with --at",
        )
    for cert in certs:
        if cert.issuer != issuer.subject:
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise RevokedError(
                f"{common_name(cert.subject)!r} (serial {cert.serial_number:#x}) is revoked by "
                f"{common_name(issuer.subject)!r} since {entry.revocation_date_utc.isoformat()}"
            )
