"""Verify a DCAP quote against the pinned Intel SGX Root CA, then evaluate its collateral.

Pure: takes the parsed quote, gathered collateral, trust roots and an explicit
``now``; returns verified types or raises. Two stages, so tampered evidence is
refused before any collateral is needed:

1. :func:`verify_quote_signatures` — PCK chain to the pinned root, QE report
   signed by the PCK key, QE report data = SHA-256(attestation key || QE auth
   data) zero-padded, quote signed by the attestation key.
2. :func:`evaluate_collateral` — Root CA CRL and PCK CRL (signature, freshness,
   revocation), TCB info and QE identity (signature by the TCB signing chain,
   ``issueDate``/``nextUpdate``, FMSPC/PCE-ID/TEE match), TDX module identity,
   TCB level selection and status (:mod:`veritee.tee.dcap.tcb`) and Intel's
   supplemental values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from threading import Lock
from typing import TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate, CertificateRevocationList, CRLNumber, ExtensionNotFound

from veritee.clock import require_aware
from veritee.errors import (
    ChainError,
    CollateralUnavailableError,
    EvidenceFormatError,
    ExpiredError,
    MismatchError,
    RevokedError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import common_name, fingerprint, load_certificates
from veritee.pki.chain import Chain, SignaturePolicy, build_chain, check_validity
from veritee.pki.crl import verify_crl_signature
from veritee.tee.dcap.pck import (
    PCK_CN,
    PLATFORM_CA_CN,
    PROCESSOR_CA_CN,
    PckInfo,
    pck_info,
)
from veritee.tee.dcap.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_TYPE_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    Quote,
    TeeType,
)
from veritee.tee.dcap.tcb import REVOKED, TcbEvaluation, TdxTcb, check_tdx_module, evaluate_tcb
from veritee.tee.dcap.tcbinfo import QeIdentity, SignedDocument, TcbInfo

#: SHA-256 of the DER of the Intel SGX Root CA certificate (CN=Intel SGX Root CA).
PINNED_INTEL_ROOT_FINGERPRINT = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
TCB_SIGNING_CN = "Intel SGX TCB Signing"
#: Intel signs PCK chains, CRLs, TCB info and QE identity with ECDSA P-256 / SHA-256.
INTEL_SIGNATURE_POLICY = SignaturePolicy(hash_name="sha256")
MAX_PCK_CHAIN_CERTS = 8

T = TypeVar("T")


@dataclass(frozen=True)
class IntelRoots:
    """Roots that may anchor DCAP chains, keyed by SHA-256 fingerprint."""

    anchors: Mapping[str, Certificate]
    simulated: bool = False

    @classmethod
    def intel(cls, candidates: Iterable[Certificate]) -> IntelRoots:
        """Keep only a candidate that is the pinned Intel SGX Root CA."""
        pinned = PINNED_INTEL_ROOT_FINGERPRINT
        return cls({fingerprint(c): c for c in candidates if fingerprint(c) == pinned})

    def with_root(self, cert: Certificate) -> IntelRoots:
        """Also trust ``cert`` (a lab or simulator root the caller chose explicitly)."""
        return IntelRoots({**self.anchors, fingerprint(cert): cert}, simulated=True)

    @cached_property
    def key(self) -> tuple[str, ...]:
        return tuple(sorted(self.anchors))

    def is_pinned(self, cert: Certificate) -> bool:
        return fingerprint(cert) == PINNED_INTEL_ROOT_FINGERPRINT


@dataclass(frozen=True)
class DcapCollateral:
    """Everything collateral evaluation needs, already gathered (no I/O here)."""

    tcb_info: SignedDocument | None = None
    qe_identity: SignedDocument | None = None
    pck_crl: CertificateRevocationList | None = None
    root_ca_crl: CertificateRevocationList | None = None
    certs: tuple[Certificate, ...] = ()
    """Issuer chains (TCB signing certificate, PCK CRL issuer) in any order."""
    source: str = ""
    missing_hints: tuple[str, ...] = ()
    """Why items are missing and where they were looked for (from gathering)."""

    @cached_property
    def memo_key(self) -> tuple[bytes, ...]:
        """The exact bytes of every item (computed once per collateral object)."""
        der = serialization.Encoding.DER
        parts: list[bytes] = []
        for doc in (self.tcb_info, self.qe_identity):
            parts += [doc.signed_bytes, doc.signature] if doc is not None else [b"", b""]
        for crl in (self.pck_crl, self.root_ca_crl):
            parts.append(crl.public_bytes(der) if crl is not None else b"")
        parts += [c.public_bytes(der) for c in self.certs]
        return tuple(parts)

    def missing(self) -> list[str]:
        names = []
        if self.tcb_info is None:
            names.append("TCB info")
        if self.qe_identity is None:
            names.append("QE identity")
        if self.pck_crl is None:
            names.append("PCK CRL")
        if self.root_ca_crl is None:
            names.append("Root CA CRL")
        return names


@dataclass(frozen=True)
class VerifiedQuoteSignature:
    """Stage 1: the quote is signed by a QE of an Intel-certified platform."""

    quote: Quote
    chain: Chain
    pck: PckInfo
    pck_ca: str
    """``platform`` or ``processor``: which PCK CA issued the PCK (and so which PCK CRL)."""
    simulated: bool = False
    chain_key: bytes = field(default=b"", compare=False, repr=False)
    """SHA-256 over the chain's DER certificates: a memo key for work that depends on it."""


@dataclass(frozen=True)
class Supplemental:
    """Intel's supplemental data (``sgx_ql_qv_supplemental_t``), as values."""

    tcb_status: str
    advisory_ids: tuple[str, ...]
    tcb_date: dt.datetime
    earliest_issue_date: dt.datetime
    latest_issue_date: dt.datetime
    earliest_expiration_date: dt.datetime
    tcb_eval_num: int
    pck_crl_num: int
    root_ca_crl_num: int
    root_key_id: bytes
    collateral_expired: bool
    qe_tcb_status: str
    platform_tcb_status: str
    tdx_module_tcb_status: str | None


@dataclass(frozen=True)
class VerifiedDcapQuote:
    """Both stages passed: authentic quote, acceptable collateral, TCB evaluated."""

    signature: VerifiedQuoteSignature
    tcb: TcbEvaluation
    supplemental: Supplemental
    tcb_info: TcbInfo
    qe_identity: QeIdentity

    @property
    def quote(self) -> Quote:
        return self.signature.quote

    @property
    def pck(self) -> PckInfo:
        return self.signature.pck

    @property
    def simulated(self) -> bool:
        return self.signature.simulated


class _Memo:
    """Bounded memo of pure work keyed by exact input bytes (chains, parsed documents).

    A hit proves the same bytes were verified before; validity at ``now``,
    freshness and revocation are still checked on every call.
    """

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self._lock = Lock()

    def get_or(self, key: tuple[object, ...], make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_MEMO = _Memo()


def _der_signature(raw: bytes) -> bytes:
    return encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big")
    )


def _p256_key(cert: Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ChainError(f"{common_name(cert.subject)!r}: key is not ECDSA P-256")
    return key


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _verify_p256(key: ec.EllipticCurvePublicKey, raw_sig: bytes, data: bytes) -> bool:
    try:
        key.verify(_der_signature(raw_sig), data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def attestation_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError:
        raise SignatureError(
            "quote signature: the attestation key is not a point on P-256"
        ) from None


# -- stage 1: the quote itself ------------------------------------------------------------


def _pck_certs(data: bytes) -> tuple[Certificate, ...]:
    certs = tuple(load_certificates(data.rstrip(b"\0"), what="PCK certificate chain"))
    if not certs or b"-----BEGIN CERTIFICATE-----" not in data:
        raise EvidenceFormatError("PCK certificate chain: no PEM certificate found")
    if len(certs) > MAX_PCK_CHAIN_CERTS:
        raise EvidenceFormatError(f"PCK certificate chain: more than {MAX_PCK_CHAIN_CERTS} certs")
    for n, cert in enumerate(certs):
        touch_certificate(cert, f"PCK certificate chain [{n}]")
    return certs


def touch_certificate(cert: Certificate, what: str) -> None:
    """Decode every field verification reads, so a malformed one is a format error here."""
    try:
        _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc,
             cert.not_valid_after_utc, cert.serial_number, cert.signature_hash_algorithm)
        cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise EvidenceFormatError(f"{what}: malformed certificate ({exc})") from None


@dataclass(frozen=True)
class _PckWork:
    chain: Chain
    info: PckInfo
    ca: str
    key: ec.EllipticCurvePublicKey
    valid_from: dt.datetime
    valid_until: dt.datetime
    chain_key: bytes


def _pck_chain(cert_data: bytes, roots: IntelRoots) -> _PckWork:
    def make() -> _PckWork:
        certs = _pck_certs(cert_data)
        leaf = certs[0]
        if PCK_CN not in common_name(leaf.subject):
            raise ChainError(
                f"the first certificate of the quote's chain is {common_name(leaf.subject)!r}, "
                f"not an {PCK_CN!r}"
            )
        chain = build_chain(
            leaf, certs[1:], roots.anchors, None, policy=INTEL_SIGNATURE_POLICY, max_depth=4
        )
        issuer = common_name(chain.issuer_of(0).subject)
        if issuer == PLATFORM_CA_CN:
            ca = "platform"
        elif issuer == PROCESSOR_CA_CN:
            ca = "processor"
        else:
            raise ChainError(f"PCK certificate is issued by {issuer!r}, not by a PCK CA")
        der = serialization.Encoding.DER
        return _PckWork(
            chain=chain,
            info=pck_info(leaf),
            ca=ca,
            key=_p256_key(leaf),
            valid_from=max(c.not_valid_before_utc for c in chain.certs),
            valid_until=min(c.not_valid_after_utc for c in chain.certs),
            chain_key=hashlib.sha256(b"".join(c.public_bytes(der) for c in chain.certs)).digest(),
        )

    return _MEMO.get_or(("pck", cert_data, roots.key), make)


def verify_quote_signatures(
    quote: Quote, roots: IntelRoots, now: dt.datetime
) -> VerifiedQuoteSignature:
    """Stage 1 (no collateral): PCK chain, QE report signature and binding, quote signature."""
    now = require_aware(now)
    header = quote.header
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise SignatureError(
            f"attestation key type {header.att_key_type} is not supported "
            "(only 2: ECDSA-256 with P-256)"
        )
    if not roots.anchors:
        raise ChainError(
            "no trusted Intel SGX Root CA available",
            hint="the quote's PCK chain must end in the Intel SGX Root CA (pinned by "
            "fingerprint); a lab or simulator root is trusted only with --trust-root",
        )
    sig = quote.signature_data
    qe = sig.qe
    cert = qe.certification_data
    if cert.cert_type != CERT_TYPE_PCK_CHAIN:
        raise CollateralUnavailableError(
            f"the quote carries certification data type {cert.cert_type}, not the PCK "
            "certificate chain (type 5): the PCK certificate must be obtained separately",
            hint="configure the platform's quote provider library to embed the PCK chain",
        )

    work = _pck_chain(cert.data, roots)
    chain = work.chain
    if not work.valid_from <= now <= work.valid_until:
        for c in chain.certs:
            check_validity(c, now)  # raises, naming the certificate

    if not _verify_p256(work.key, qe.qe_report_signature, qe.qe_report.to_bytes()):
        raise SignatureError(
            "QE report signature does not verify with the PCK certificate's key",
            hint="the QE report was altered or comes from another platform",
        )
    expected = hashlib.sha256(sig.attestation_key + qe.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(expected, qe.qe_report.report_data):
        raise SignatureError(
            "QE report data is not SHA-256(attestation key || QE auth data): the QE did "
            "not certify this attestation key",
            hint="the attestation key or QE auth data was replaced",
        )
    att_key = _MEMO.get_or(
        ("ak", sig.attestation_key), lambda: attestation_public_key(sig.attestation_key)
    )
    if not _verify_p256(att_key, sig.signature, quote.signed_bytes()):
        raise SignatureError(
            "quote signature does not verify with the attestation key (header and body "
            "were altered, or the signature belongs to another quote)"
        )
    if header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise MismatchError(
            f"QE vendor id {header.qe_vendor_id.hex()} is not Intel's quoting enclave"
        )
    simulated = roots.simulated and not roots.is_pinned(chain.root)
    return VerifiedQuoteSignature(quote, chain, work.info, work.ca, simulated, work.chain_key)


# -- stage 2: collateral --------------------------------------------------------------------


def _crl_number(crl: CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(CRLNumber).value.crl_number)
    except ExtensionNotFound:
        return 0


def _check_crl_pure(
    crl: CertificateRevocationList,
    issuer: Certificate,
    certs: Iterable[Certificate],
    what: str,
) -> None:
    """Issuer, signature and membership: pure functions of the CRL and certificate bytes."""
    if crl.issuer != issuer.subject:
        raise ChainError(
            f"{what} is issued by {common_name(crl.issuer)!r}, not by "
            f"{common_name(issuer.subject)!r}"
        )
    verify_crl_signature(crl, issuer)
    for cert in certs:
        if cert.issuer != issuer.subject:
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise RevokedError(
                f"{what}: {common_name(cert.subject)!r} (serial {cert.serial_number:#x}) is "
                f"revoked since {entry.revocation_date_utc.isoformat()}"
            )


def _check_crl_window(crl: CertificateRevocationList, now: dt.datetime, what: str) -> None:
    if now < crl.last_update_utc:
        raise ExpiredError(
            f"{what} is not yet valid at {now.isoformat()} (thisUpdate "
            f"{crl.last_update_utc.isoformat()})",
            hint="verify as of a later time with --at, or use the CRL of that time",
        )
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise ExpiredError(
            f"{what} is stale: nextUpdate was {next_update.isoformat()} "
            f"(verification time {now.isoformat()})",
            hint="fetch a current CRL, or verify as of an earlier time with --at",
        )


def _signing_chain(
    doc: SignedDocument, certs: tuple[Certificate, ...], roots: IntelRoots, what: str
) -> Chain:
    """The chain of the certificate whose key signed ``doc`` (Intel SGX TCB Signing)."""
    candidates = [c for c in certs if common_name(c.subject) == TCB_SIGNING_CN] or list(certs)
    bodies = [doc.signed_bytes]
    compact = doc.compact_bytes
    if compact is not None:
        bodies.append(compact)
    failures = []
    for cert in candidates:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        if not any(_verify_p256(key, doc.signature, body) for body in bodies):
            failures.append(common_name(cert.subject))
            continue
        return build_chain(cert, certs, roots.anchors, None, policy=INTEL_SIGNATURE_POLICY)
    tried = ", ".join(repr(f) for f in dict.fromkeys(failures)) or "none supplied"
    raise SignatureError(
        f"{what} signature does not verify with any TCB signing certificate (tried: {tried})",
        hint="the document was altered, or supply its TCB-Info-Issuer-Chain",
    )


def _parse(doc: SignedDocument, parse: Callable[[bytes], T], what: str) -> T:
    try:
        return parse(doc.signed_bytes)
    except EvidenceFormatError as exc:
        raise VerificationError(f"{what} is malformed: {exc.message}") from None


def _check_window(
    what: str, issue: dt.datetime, next_update: dt.datetime, now: dt.datetime
) -> None:
    if now > next_update:
        raise ExpiredError(
            f"{what} is past its nextUpdate {next_update.isoformat()} "
            f"(verification time {now.isoformat()})",
            hint="get current collateral (--fetch), or verify as of an earlier time with --at",
        )
    if now < issue:
        raise ExpiredError(
            f"{what} is not yet valid: issueDate {issue.isoformat()} is after the "
            f"verification time {now.isoformat()}",
            hint="verify as of a later time with --at",
        )


def root_key_id(root: Certificate) -> bytes:
    """SHA-384 of the root CA's raw public key (Intel's ``root_key_id``)."""
    raw = root.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return hashlib.sha384(raw).digest()


def unavailable(collateral: DcapCollateral, verified: VerifiedQuoteSignature) -> None:
    """Raise CollateralUnavailableError naming every missing item, if any is missing."""
    missing = collateral.missing()
    if not missing:
        return
    fmspc = verified.pck.fmspc.hex().upper()
    tee = "TDX" if verified.quote.tee is TeeType.TDX else "SGX"
    names = {
        "TCB info": f"{tee} TCB info for FMSPC {fmspc}",
        "QE identity": "TD QE identity" if tee == "TDX" else "QE identity",
        "PCK CRL": f"PCK CRL (ca={verified.pck_ca})",
        "Root CA CRL": "Intel SGX Root CA CRL",
    }
    listed = ", ".join(names[m] for m in missing)
    hint = "; ".join(collateral.missing_hints) or (
        "pass --collateral DIR holding them (Intel PCS files or a collateral.json), "
        "or --fetch to get them from Intel PCS"
    )
    raise CollateralUnavailableError(
        f"the quote's signature, QE report and PCK chain verify, but collateral is missing: "
        f"{listed}",
        hint=hint,
    )


@dataclass(frozen=True)
class _CollateralWork:
    """Everything about one collateral set and one PCK chain that does not depend on time."""

    tcb_chain: Chain
    qe_chain: Chain
    info: TcbInfo
    identity: QeIdentity
    valid_from: dt.datetime
    valid_until: dt.datetime
    earliest_issue: dt.datetime
    latest_issue: dt.datetime
    tcb_eval_num: int
    pck_crl_num: int
    root_ca_crl_num: int
    root_key_id: bytes


def _collateral_work(
    verified: VerifiedQuoteSignature, collateral: DcapCollateral, roots: IntelRoots
) -> _CollateralWork:
    assert collateral.tcb_info is not None
    assert collateral.qe_identity is not None
    assert collateral.pck_crl is not None
    assert collateral.root_ca_crl is not None
    chain, root = verified.chain, verified.chain.root
    tcb_chain = _signing_chain(collateral.tcb_info, collateral.certs, roots, "TCB info")
    qe_chain = _signing_chain(collateral.qe_identity, collateral.certs, roots, "QE identity")
    if tcb_chain.root != root or qe_chain.root != root:
        raise ChainError("TCB signing chain and PCK chain end in different roots")
    # Revocation: the Root CA CRL covers the intermediates, the PCK CRL the PCK.
    intermediates = [*chain.certs[1:-1], *tcb_chain.certs[:-1], *qe_chain.certs[:-1]]
    _check_crl_pure(collateral.root_ca_crl, root, intermediates, "Root CA CRL")
    _check_crl_pure(collateral.pck_crl, chain.issuer_of(0), [chain.leaf], "PCK CRL")

    info = _parse(collateral.tcb_info, TcbInfo.from_signed, "TCB info")
    what = f"TCB info ({info.id}, FMSPC {info.fmspc.hex().upper()})"
    tee_name = "TDX" if verified.quote.tee is TeeType.TDX else "SGX"
    if info.version >= 3 and info.id != tee_name:
        raise MismatchError(f"{what} is for {info.id}, the quote is {tee_name}")
    if info.fmspc != verified.pck.fmspc:
        raise MismatchError(
            f"{what} does not match the PCK certificate's FMSPC "
            f"{verified.pck.fmspc.hex().upper()}",
            hint="use the TCB info for this platform's FMSPC",
        )
    if info.pce_id != verified.pck.pce_id:
        raise MismatchError(
            f"{what}: PCE-ID {info.pce_id.hex()} is not the PCK's {verified.pck.pce_id.hex()}"
        )
    identity = _parse(collateral.qe_identity, QeIdentity.from_signed, "QE identity")
    wanted_qe = "TD_QE" if tee_name == "TDX" else "QE"
    if identity.id != wanted_qe:
        raise MismatchError(f"QE identity mismatch: identity is {identity.id}, need {wanted_qe}")

    crls = (collateral.pck_crl, collateral.root_ca_crl)
    certs = {*chain.certs, *tcb_chain.certs, *qe_chain.certs}
    issues = [info.issue_date, identity.issue_date, *(c.last_update_utc for c in crls),
              *(c.not_valid_before_utc for c in certs)]
    expiries = [info.next_update, identity.next_update, *(c.not_valid_after_utc for c in certs),
                *(c.next_update_utc for c in crls if c.next_update_utc is not None)]
    return _CollateralWork(
        tcb_chain=tcb_chain,
        qe_chain=qe_chain,
        info=info,
        identity=identity,
        valid_from=max(issues),
        valid_until=min(expiries),
        earliest_issue=min(issues),
        latest_issue=max(issues),
        tcb_eval_num=min(info.tcb_evaluation_data_number, identity.tcb_evaluation_data_number),
        pck_crl_num=_crl_number(collateral.pck_crl),
        root_ca_crl_num=_crl_number(collateral.root_ca_crl),
        root_key_id=root_key_id(root),
    )


def _check_windows(
    work: _CollateralWork, collateral: DcapCollateral, now: dt.datetime
) -> None:
    """Name the item that is not valid at ``now`` (only called when one is not)."""
    for c in {*work.tcb_chain.certs, *work.qe_chain.certs}:
        check_validity(c, now)
    assert collateral.root_ca_crl is not None
    assert collateral.pck_crl is not None
    _check_crl_window(collateral.root_ca_crl, now, "Root CA CRL")
    _check_crl_window(collateral.pck_crl, now, "PCK CRL")
    info, identity = work.info, work.identity
    what = f"TCB info ({info.id}, FMSPC {info.fmspc.hex().upper()})"
    _check_window(what, info.issue_date, info.next_update, now)
    _check_window(f"QE identity ({identity.id})", identity.issue_date, identity.next_update, now)


def _evaluate(
    work: _CollateralWork, verified: VerifiedQuoteSignature, tdx: TdxTcb | None
) -> TcbEvaluation:
    if tdx is not None:
        check_tdx_module(work.info, tdx, verified.quote.version)
    return evaluate_tcb(
        work.info,
        sgx_components=verified.pck.sgx_tcb_components,
        pcesvn=verified.pck.pcesvn,
        qe_report=verified.quote.signature_data.qe.qe_report,
        qe_identity=work.identity,
        tdx=tdx,
    )


def evaluate_collateral(
    verified: VerifiedQuoteSignature,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    tdx: TdxTcb | None = None,
) -> VerifiedDcapQuote:
    """Stage 2: CRLs, TCB info, QE identity, TCB level and status, supplemental values.

    Signatures, chains, revocation membership, parsing and the TCB evaluation are
    pure functions of the exact bytes involved and are memoized; validity at
    ``now`` is checked on every call.
    """
    now = require_aware(now)
    unavailable(collateral, verified)
    if verified.quote.tee is TeeType.TDX and tdx is None:
        raise ValueError("a TDX quote needs its TD report's TCB values (tdx=TdxTcb(...))")
    chain_key = verified.chain_key or hashlib.sha256(
        b"".join(c.public_bytes(serialization.Encoding.DER) for c in verified.chain.certs)
    ).digest()
    base_key = (collateral.memo_key, chain_key, roots.key)
    work = _MEMO.get_or(
        ("collateral", *base_key), lambda: _collateral_work(verified, collateral, roots)
    )
    if not work.valid_from <= now <= work.valid_until:
        _check_windows(work, collateral, now)
    qe_report = verified.quote.signature_data.qe.qe_report.to_bytes()
    tdx_key = (tdx.tee_tcb_svn, tdx.mr_signer_seam, tdx.seam_attributes, tdx.tee_tcb_svn2) if (
        tdx is not None
    ) else None
    evaluation = _MEMO.get_or(
        ("tcb", *base_key, qe_report, tdx_key, verified.quote.version),
        lambda: _evaluate(work, verified, tdx),
    )
    if evaluation.status == REVOKED:
        raise RevokedError(
            f"TCB status is Revoked for this platform (FMSPC "
            f"{work.info.fmspc.hex().upper()}, advisories "
            f"{', '.join(evaluation.advisory_ids) or 'none'})"
        )
    supplemental = Supplemental(
        tcb_status=evaluation.status,
        advisory_ids=evaluation.advisory_ids,
        tcb_date=evaluation.tcb_date,
        earliest_issue_date=work.earliest_issue,
        latest_issue_date=work.latest_issue,
        earliest_expiration_date=work.valid_until,
        tcb_eval_num=work.tcb_eval_num,
        pck_crl_num=work.pck_crl_num,
        root_ca_crl_num=work.root_ca_crl_num,
        root_key_id=work.root_key_id,
        collateral_expired=now > work.valid_until,
        qe_tcb_status=evaluation.qe_level.tcb_status if evaluation.qe_level else "",
        platform_tcb_status=evaluation.platform_status,
        tdx_module_tcb_status=(
            evaluation.module_level.tcb_status if evaluation.module_level else None
        ),
    )
    return VerifiedDcapQuote(verified, evaluation, supplemental, work.info, work.identity)


def verify_quote(
    quote: Quote,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    tdx: TdxTcb | None = None,
) -> VerifiedDcapQuote:
    """Both stages in order (signatures first, so tampering is refused before collateral)."""
    return evaluate_collateral(
        verify_quote_signatures(quote, roots, now), collateral, roots, now, tdx=tdx
    )
