"""Verify an AWS Nitro Enclaves attestation document.

Pure: takes the parsed document, the trust roots and an explicit ``now``; returns
:class:`VerifiedNitroDocument` or raises a :class:`~veritee.errors.VerificationError`
subclass. Checked: the leaf ``certificate`` chains through ``cabundle`` to the
AWS Nitro root pinned by fingerprint (or to a root the caller trusts
explicitly), every certificate is valid at ``now`` (leaves live about three
hours), the ES384 COSE signature over the Sig_structure verifies with the leaf
key, and the nonce (and optionally user data or public key) equals what the
relying party expects, compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from threading import Lock

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate

from veritee.clock import require_aware
from veritee.errors import ChainError, EvidenceFormatError, MismatchError, SignatureError
from veritee.pki.certs import common_name, fingerprint, load_certificate, load_certificates
from veritee.pki.chain import Chain, SignaturePolicy, build_chain, check_validity
from veritee.tee.nitro.document import (
    AttestationDocument,
    NitroDocument,
    document_from_san_names,
)

# SHA-256 of the DER of the AWS Nitro Enclaves root "aws.nitro-enclaves" (G1).
AWS_NITRO_ROOT_FINGERPRINT = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

# Every certificate of the Nitro PKI is ECDSA P-384 with SHA-384.
NITRO_SIGNATURE_POLICY = SignaturePolicy(hash_name="sha384")
_MAX_CHAIN_DEPTH = 8


@dataclass(frozen=True)
class NitroRoots:
    """Roots that may anchor a Nitro chain, by SHA-256 fingerprint."""

    anchors: Mapping[str, Certificate] = field(default_factory=dict)
    simulated: bool = False

    @classmethod
    def aws(cls, candidates: Iterable[Certificate] = ()) -> NitroRoots:
        """Keep only candidates that are the pinned AWS Nitro root."""
        pinned = {fingerprint(c): c for c in candidates}
        return cls({fp: c for fp, c in pinned.items() if fp == AWS_NITRO_ROOT_FINGERPRINT})

    def with_root(self, cert: Certificate) -> NitroRoots:
        """Add an explicitly trusted root (a lab or simulator root the caller chose)."""
        anchors = dict(self.anchors)
        anchors[fingerprint(cert)] = cert
        return NitroRoots(anchors, simulated=True)


@dataclass(frozen=True)
class VerifiedNitroDocument:
    document: NitroDocument
    chain: Chain
    simulated: bool = False

    @property
    def attestation(self) -> AttestationDocument:
        return self.document.document

    @property
    def timestamp(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.attestation.timestamp / 1000, dt.UTC)


@dataclass(frozen=True)
class CertCarriedDocument:
    """A document found in a TLS certificate's SAN, with the certificate's public key."""

    document: bytes
    tls_public_key: bytes  # DER SubjectPublicKeyInfo


class _Memo:
    """Bounded memo of verified paths keyed by the exact certificates and anchors."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], Chain] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[object, ...]) -> Chain | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[object, ...], value: Chain) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_CHAINS = _Memo()


def _certificates(doc: AttestationDocument) -> tuple[Certificate, tuple[Certificate, ...]]:
    leaf = load_certificate(doc.certificate, what="Nitro document certificate")
    bundle = tuple(
        load_certificate(der, what=f"Nitro document cabundle[{i}]")
        for i, der in enumerate(doc.cabundle)
    )
    return leaf, bundle


def _chain_for(leaf: Certificate, bundle: tuple[Certificate, ...], roots: NitroRoots) -> Chain:
    anchors = {**NitroRoots.aws(bundle).anchors, **roots.anchors}
    if not anchors:
        raise ChainError(
            "no trusted root: the document's cabundle does not hold the pinned AWS Nitro root",
            hint="a lab or simulator root is trusted only with --trust-root",
        )
    key = ("nitro", leaf, bundle, tuple(sorted(anchors)))
    hit = _CHAINS.get(key)
    if hit is not None:
        return hit
    # Validity at ``now`` is checked on every call by the caller, so the path is cacheable.
    chain = build_chain(
        leaf, bundle, anchors, None, policy=NITRO_SIGNATURE_POLICY, max_depth=_MAX_CHAIN_DEPTH
    )
    _CHAINS.put(key, chain)
    return chain


def _check_signature(doc: NitroDocument, leaf: Certificate) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ChainError(f"{common_name(leaf.subject)}: document signing key is not ECDSA P-384")
    r = int.from_bytes(doc.signature[:48], "big")
    s = int.from_bytes(doc.signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), doc.sig_structure(), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureError(
            "Nitro document signature does not verify with its certificate's key",
            hint="the document was altered after the Nitro hypervisor signed it",
        ) from None


def _expect(name: str, got: bytes | None, expected: bytes | None) -> None:
    if expected is None:
        return
    if got is None:
        raise MismatchError(
            f"the document carries no {name}, expected {expected.hex()}",
            hint="the enclave requested the document without binding this value",
        )
    if not hmac.compare_digest(got, expected):
        raise MismatchError(
            f"document {name} does not match the expected value",
            hint="the document was produced for another request (replay?)",
        )


def verify_document(
    document: NitroDocument,
    roots: NitroRoots,
    now: dt.datetime,
    *,
    expected_nonce: bytes | None = None,
    expected_user_data: bytes | None = None,
    expected_public_key: bytes | None = None,
) -> VerifiedNitroDocument:
    """Check that ``document`` was signed by a Nitro hypervisor endorsed by the trusted root."""
    now = require_aware(now)
    doc = document.document
    leaf, bundle = _certificates(doc)
    chain = _chain_for(leaf, bundle, roots)
    for cert in chain.certs:
        check_validity(cert, now)
    _check_signature(document, leaf)
    _expect("nonce", doc.nonce, expected_nonce)
    _expect("user_data", doc.user_data, expected_user_data)
    _expect("public_key", doc.public_key, expected_public_key)
    return VerifiedNitroDocument(
        document=document,
        chain=chain,
        simulated=fingerprint(chain.root) != AWS_NITRO_ROOT_FINGERPRINT,
    )


def document_from_certificate(data: bytes) -> CertCarriedDocument:
    """The document a TLS certificate (PEM or DER) carries in its SAN, and the cert's key.

    With a PEM chain, the first certificate that carries a document is used (the
    leaf; its issuers carry none). Evervault's protocol binds the TLS key by putting
    its DER SubjectPublicKeyInfo in the document's ``user_data``: pass
    ``tls_public_key`` as ``expected_user_data`` to check that binding.
    """
    failure: EvidenceFormatError | None = None
    for cert in load_certificates(data, what="TLS certificate"):
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            blob = document_from_san_names(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            failure = EvidenceFormatError("TLS certificate has no subjectAltName")
            continue
        except EvidenceFormatError as exc:
            failure = exc
            continue
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return CertCarriedDocument(document=blob, tls_public_key=spki)
    assert failure is not None  # load_certificates returns at least one certificate
    raise failure
