"""Certificate chain building against roots pinned by SHA-256 fingerprint.

Pure: the caller supplies every candidate certificate, the pinned anchors and
the verification time. No AIA chasing, no system trust store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import BasicConstraints, Certificate, ExtensionNotFound

from veritee.errors import ChainError, ExpiredError
from veritee.pki.certs import common_name, fingerprint

DEFAULT_MAX_DEPTH = 6


@dataclass(frozen=True)
class SignaturePolicy:
    """Which signature algorithms a chain may use (None = any the library supports)."""

    rsa_pss_only: bool = False
    hash_name: str | None = None


ANY_SIGNATURE = SignaturePolicy()


@dataclass(frozen=True)
class Chain:
    """A verified path: ``certs[0]`` is the leaf, ``certs[-1]`` the pinned root."""

    certs: tuple[Certificate, ...]

    @property
    def leaf(self) -> Certificate:
        return self.certs[0]

    @property
    def root(self) -> Certificate:
        return self.certs[-1]

    def issuer_of(self, index: int) -> Certificate:
        return self.certs[min(index + 1, len(self.certs) - 1)]


def _describe(cert: Certificate) -> str:
    return common_name(cert.subject) or cert.subject.rfc4514_string()


def verify_issued_by(
    cert: Certificate, issuer: Certificate, policy: SignaturePolicy = ANY_SIGNATURE
) -> None:
    """Raise ChainError unless ``issuer``'s key signed ``cert`` (names must chain too)."""
    if cert.issuer != issuer.subject:
        raise ChainError(
            f"{_describe(cert)} is issued by {common_name(cert.issuer)!r}, "
            f"not by {_describe(issuer)!r}"
        )
    key = issuer.public_key()
    params = cert.signature_algorithm_parameters
    hash_alg = cert.signature_hash_algorithm
    if policy.hash_name is not None and (hash_alg is None or hash_alg.name != policy.hash_name):
        raise ChainError(f"{_describe(cert)}: signature hash must be {policy.hash_name}")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(hash_alg, hashes.HashAlgorithm):
                raise ChainError(f"{_describe(cert)}: RSA signature without a hash")
            if isinstance(params, padding.PSS):
                key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_alg)
            elif policy.rsa_pss_only:
                raise ChainError(f"{_describe(cert)}: RSA-PSS signature required")
            else:
                key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if policy.rsa_pss_only or not isinstance(hash_alg, hashes.HashAlgorithm):
                raise ChainError(f"{_describe(cert)}: unexpected ECDSA signature")
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_alg))
        elif isinstance(key, ed25519.Ed25519PublicKey) and not policy.rsa_pss_only:
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            raise ChainError(f"{_describe(issuer)}: unsupported issuer key type")
    except InvalidSignature:
        raise ChainError(
            f"signature on {_describe(cert)} does not verify with {_describe(issuer)}'s key"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise ChainError(f"{_describe(cert)}: unsupported signature algorithm ({exc})") from None


def check_validity(cert: Certificate, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise ExpiredError(
            f"{_describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(verification time {now.isoformat()})",
            hint="check --at or the system clock",
        )
    if now > cert.not_valid_after_utc:
        raise ExpiredError(
            f"{_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()} "
            f"(verification time {now.isoformat()})",
            hint="obtain a current certificate, or verify as of a time it was valid with --at",
        )


def _is_ca(cert: Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(BasicConstraints).value
    except ExtensionNotFound:
        return True  # some vendor intermediates omit it; the pinned root bounds the chain
    return bc.ca


def build_chain(
    leaf: Certificate,
    intermediates: Iterable[Certificate],
    anchors: Mapping[str, Certificate],
    now: dt.datetime | None,
    *,
    policy: SignaturePolicy = ANY_SIGNATURE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Chain:
    """Find a path from ``leaf`` to one of ``anchors`` (keyed by SHA-256 fingerprint).

    Every link's signature, every certificate's validity at ``now`` and the
    anchor's self-signature are checked (``now=None`` leaves validity to the
    caller, who may cache the path). Raises ChainError/ExpiredError.
    """
    pool = [c for c in intermediates if c != leaf]
    anchor_list = list(anchors.values())
    for fp, anchor in anchors.items():
        if fingerprint(anchor) != fp:
            raise ChainError(f"anchor {_describe(anchor)} does not match its pinned fingerprint")
    path = [leaf]
    failures: list[str] = []
    current = leaf
    for _ in range(max_depth):
        # Reached a pinned root?
        for anchor in anchor_list:
            if current == anchor:
                verify_issued_by(anchor, anchor, policy)
                if now is not None:
                    for c in path:
                        check_validity(c, now)
                return Chain(tuple(path))
        candidates = [c for c in (*anchor_list, *pool) if c.subject == current.issuer]
        if not candidates:
            break
        next_cert = None
        for cand in candidates:
            try:
                verify_issued_by(current, cand, policy)
            except ChainError as exc:
                failures.append(str(exc))
                continue
            if cand is not current and cand not in anchor_list and not _is_ca(cand):
                failures.append(f"{_describe(cand)} is not a CA certificate")
                continue
            next_cert = cand
            break
        if next_cert is None or next_cert == current:
            break
        path.append(next_cert)
        current = next_cert
    why = (
        "; ".join(failures)
        if failures
        else (
            f"no certificate for issuer {common_name(current.issuer)!r} and it is not a pinned root"
        )
    )
    raise ChainError(
        f"cannot build a chain from {_describe(leaf)} to a pinned root: {why}",
        hint="supply the intermediate certificates (e.g. the vendor cert_chain) as collateral",
    )
