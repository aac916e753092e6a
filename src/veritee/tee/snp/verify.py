"""Verify an SEV-SNP report: VCEK/VLEK signature, AMD chain to a pinned ARK, TCB extensions.

Pure: takes the parsed report, the gathered collateral, the trust roots and an
explicit ``now``; returns :class:`VerifiedSnpReport` or raises a
:class:`~veritee.errors.VerificationError` subclass.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from threading import Lock
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import (
    Certificate,
    CertificateRevocationList,
    ExtensionNotFound,
    ObjectIdentifier,
)

from veritee.clock import require_aware
from veritee.errors import (
    ChainError,
    EvidenceFormatError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from veritee.pki import oids
from veritee.pki.certs import common_name, fingerprint
from veritee.pki.chain import Chain, SignaturePolicy, build_chain, check_validity
from veritee.pki.crl import check_not_revoked
from veritee.pki.der import decode_integer, decode_string, read_tlv
from veritee.tee.snp.report import (
    SIG_ALGO_ECDSA_P384_SHA384,
    Product,
    SigningKey,
    SnpReport,
    TcbVersion,
)

V = TypeVar("V")

# SHA-256 of the DER of each AMD Root Key, per product (from AMD KDS cert_chain).
PINNED_ARK_FINGERPRINTS: Mapping[Product, str] = {
    Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}

# AMD signs ARK, ASK/ASVK and VCEK/VLEK with RSASSA-PSS over SHA-384.
AMD_SIGNATURE_POLICY = SignaturePolicy(rsa_pss_only=True, hash_name="sha384")


@dataclass(frozen=True)
class TrustRoots:
    """ARKs that may anchor a chain: fingerprint -> (product, certificate)."""

    anchors: Mapping[str, tuple[Product, Certificate]]
    simulated: bool = False

    @cached_property
    def by_fingerprint(self) -> dict[str, Certificate]:
        return {fp: cert for fp, (_, cert) in self.anchors.items()}

    @cached_property
    def key(self) -> tuple[str, ...]:
        return tuple(sorted(self.anchors))

    @classmethod
    def amd(cls, candidates: Iterable[Certificate]) -> TrustRoots:
        """Keep only the candidates whose fingerprint is one of AMD's pinned ARKs."""
        by_fp = {fp: p for p, fp in PINNED_ARK_FINGERPRINTS.items()}
        anchors = {}
        for cert in candidates:
            fp = fingerprint(cert)
            if fp in by_fp:
                anchors[fp] = (by_fp[fp], cert)
        return cls(anchors)

    def with_root(self, cert: Certificate, product: Product | None = None) -> TrustRoots:
        """Add an explicitly trusted root (a lab or simulator ARK the caller chose)."""
        if product is None:
            cn = common_name(cert.subject)
            if not cn.startswith("ARK-"):
                raise ChainError(
                    f"trust root {cn!r} is not an ARK: cannot tell its product",
                    hint="its subject CN must be ARK-Milan, ARK-Genoa or ARK-Turin",
                )
            product = Product.from_name(cn[4:])
        anchors = dict(self.anchors)
        anchors[fingerprint(cert)] = (product, cert)
        return TrustRoots(anchors, simulated=True)


@dataclass(frozen=True)
class SnpCollateral:
    """Everything verification needs besides the report, already gathered (no I/O here)."""

    vek: Certificate | None
    intermediates: tuple[Certificate, ...] = ()
    crls: tuple[CertificateRevocationList, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class VekInfo:
    """The AMD extensions of a VCEK/VLEK that bind it to a chip and a TCB."""

    product_name: str
    hwid: bytes | None
    tcb: Mapping[str, int]
    csp_id: str | None


@dataclass(frozen=True)
class VerifiedSnpReport:
    report: SnpReport
    product: Product
    signing_key: SigningKey
    chain: Chain
    vek: VekInfo
    simulated: bool = False
    warnings: tuple[str, ...] = field(default=())


def _ext_value(cert: Certificate, oid: ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except ExtensionNotFound:
        return None
    value = getattr(ext.value, "value", None)
    return value if isinstance(value, bytes) else None


def parse_vek_extensions(cert: Certificate) -> VekInfo:
    """Read the AMD extensions; malformed values make the certificate unusable."""
    try:
        raw_name = _ext_value(cert, oids.AMD_PRODUCT_NAME)
        product_name = decode_string(raw_name) if raw_name else ""
        tcb: dict[str, int] = {}
        for name, oid in (
            ("bootloader", oids.AMD_BL_SPL),
            ("tee", oids.AMD_TEE_SPL),
            ("snp", oids.AMD_SNP_SPL),
            ("microcode", oids.AMD_UCODE_SPL),
            ("fmc", oids.AMD_FMC_SPL),
        ):
            raw = _ext_value(cert, oid)
            if raw is not None:
                tcb[name] = decode_integer(raw)
        hwid = _ext_value(cert, oids.AMD_HWID)
        if hwid is not None and len(hwid) not in (8, 64):
            # Some encoders wrap the id in an OCTET STRING; accept exactly that form.
            tag, inner = read_tlv(hwid)
            if tag != 0x04 or len(inner) not in (8, 64):
                raise EvidenceFormatError("hwID extension has an unexpected length")
            hwid = inner
        raw_csp = _ext_value(cert, oids.AMD_CSP_ID)
        csp_id = decode_string(raw_csp) if raw_csp else None
    except EvidenceFormatError as exc:
        raise ChainError(f"{common_name(cert.subject)}: bad AMD extension: {exc}") from None
    return VekInfo(product_name=product_name, hwid=hwid, tcb=tcb, csp_id=csp_id)


class _Memo(Generic[V]):
    """Bounded memo of work that depends only on immutable inputs (chains, extensions).

    Verified chains are keyed by the exact certificates and anchors involved, so
    a hit proves the same bytes were verified before; validity at ``now`` and
    CRLs are still checked on every call.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], V] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[object, ...]) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[object, ...], value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class _ChainWork:
    """Pure work on exact inputs: the verified path, the VEK's extensions, names."""

    chain: Chain
    info: VekInfo
    vek_cn: str
    issuer_cn: str
    product: Product  # of the pinned root the chain ends at
    named_product: Product | None  # what the VEK's product-name extension says
    public_key: object  # the VEK's public key, parsed once


_MEMO: _Memo[tuple[Certificate, tuple[Certificate, ...], _ChainWork]] = _Memo()
_BY_DER: _Memo[_ChainWork] = _Memo()


def _chain_for(vek: Certificate, collateral: SnpCollateral, roots: TrustRoots) -> _ChainWork:
    anchors, pinned = roots.by_fingerprint, roots.key
    # Fast path: the very same objects as last time (a service keeps them). The memo
    # holds them, so their ids cannot be reused meanwhile; identity is re-checked.
    fast_key = (id(vek), id(collateral.intermediates), pinned)
    hit = _MEMO.get(fast_key)
    if hit is not None and hit[0] is vek and hit[1] is collateral.intermediates:
        return hit[2]
    # Certificates hash and compare by their DER bytes, so they are exact keys.
    key = ("chain", vek, collateral.intermediates, pinned)
    work = _BY_DER.get(key)
    if work is None:
        # Validity at ``now`` is checked by the caller on every call: the path is cacheable.
        chain = build_chain(
            vek, collateral.intermediates, anchors, None, policy=AMD_SIGNATURE_POLICY
        )
        info = parse_vek_extensions(vek)
        try:
            named: Product | None = (
                Product.from_name(info.product_name) if info.product_name else None
            )
        except ValueError:
            named = None
        work = _ChainWork(
            chain=chain,
            info=info,
            vek_cn=common_name(vek.subject),
            issuer_cn=common_name(chain.issuer_of(0).subject),
            product=_anchor_product(roots, chain.root),
            named_product=named,
            public_key=vek.public_key(),
        )
        _BY_DER.put(key, work)
    _MEMO.put(fast_key, (vek, collateral.intermediates, work))
    return work


def _anchor_product(roots: TrustRoots, root: Certificate) -> Product:
    for product, cert in roots.anchors.values():
        if cert == root:
            return product
    raise ChainError("chain root is not among the trust roots")  # pragma: no cover


def _pinned_roots(roots: TrustRoots) -> list[Certificate]:
    pinned = set(PINNED_ARK_FINGERPRINTS.values())
    return [cert for fp, (_, cert) in roots.anchors.items() if fp in pinned]


_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
_CN: _Memo[tuple[Certificate, str]] = _Memo()


def _vek_cn(vek: Certificate) -> str:
    """The VEK's common name, remembered for the same certificate object."""
    hit = _CN.get((id(vek),))
    if hit is not None and hit[0] is vek:
        return hit[1]
    cn = common_name(vek.subject)
    _CN.put((id(vek),), (vek, cn))
    return cn


def _check_signature(report: SnpReport, vek: Certificate, work: _ChainWork) -> None:
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise SignatureError(
            f"SNP report signature algorithm {report.signature_algo} is not ECDSA P-384/SHA-384"
        )
    key = work.public_key
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ChainError(f"{work.vek_cn}: endorsement key is not ECDSA P-384")
    sig = encode_dss_signature(report.signature.r, report.signature.s)
    try:
        key.verify(sig, report.signed_bytes(), _ECDSA_SHA384)
    except InvalidSignature:
        raise SignatureError(
            "SNP report signature does not verify with the "
            f"{report.key_info.signing_key.name} of this chip and TCB",
            hint="the report was altered, or the VCEK is for another chip or TCB",
        ) from None


def _check_tcb_binding(report: SnpReport, info: VekInfo, product: Product, vek_kind: str) -> None:
    tcb: TcbVersion = report.reported_tcb
    wanted = tcb.spls()
    for name, value in wanted.items():
        got = info.tcb.get(name)
        if got is None:
            raise MismatchError(f"{vek_kind} has no {name} SPL extension")
        if got != value:
            raise MismatchError(
                f"{vek_kind} is for {name} SPL {got}, the report's reported TCB has {value}",
                hint="fetch the VCEK for the reported TCB (KDS URL parameters = reported_tcb)",
            )
    if product.has_fmc and "fmc" not in info.tcb:
        raise MismatchError(f"{vek_kind} for {product.value} lacks the FMC SPL extension")


def _check_hwid(report: SnpReport, info: VekInfo, product: Product) -> None:
    if report.key_info.mask_chip_key:
        return  # the guest asked firmware to zero CHIP_ID; nothing to compare
    if info.hwid is None:
        raise MismatchError("VCEK has no hwID extension")
    expected = report.chip_id[: len(info.hwid)]
    if product is Product.TURIN and len(info.hwid) != 8:
        raise MismatchError("Turin VCEK hwID must be 8 bytes")
    if not hmac.compare_digest(expected, info.hwid) or (
        len(info.hwid) == 8 and any(report.chip_id[8:])
    ):
        raise MismatchError(
            "VCEK belongs to another chip (hwID != report CHIP_ID)",
            hint="fetch the VCEK for this chip id",
        )


def verify_report(
    report: SnpReport,
    collateral: SnpCollateral,
    roots: TrustRoots,
    now: dt.datetime,
    *,
    expected_report_data: bytes | None = None,
) -> VerifiedSnpReport:
    """Check that ``report`` was signed by an AMD-endorsed key of this chip and TCB."""
    now = require_aware(now)
    signing_key = report.key_info.signing_key
    if signing_key is SigningKey.NONE:
        raise VerificationError("SNP report is not signed (SIGNING_KEY = none)")
    vek_kind = signing_key.name
    vek = collateral.vek
    if vek is None:
        raise VerificationError(f"no {vek_kind} certificate to verify the report with")
    cn = _vek_cn(vek)
    if cn != f"SEV-{vek_kind}":
        raise MismatchError(
            f"the report is signed by a {vek_kind} but the certificate given is {cn!r}",
            hint=f"supply the {vek_kind} certificate",
        )
    if not roots.anchors:
        raise ChainError(
            "no trusted AMD root available: none of the certificates given is a pinned AMD ARK",
            hint="supply AMD's cert_chain (ASK+ARK) as collateral or use --fetch; a lab or "
            "simulator root is trusted only with --trust-root",
        )

    work = _chain_for(vek, collateral, roots)
    chain, info = work.chain, work.info
    product = work.product

    # Intermediate naming follows the key type: ASK for VCEKs, ASVK (SEV-VLEK-*) for VLEKs.
    issuer_cn = work.issuer_cn
    expected_issuer = (
        f"SEV-{product.value}" if signing_key is SigningKey.VCEK else (f"SEV-VLEK-{product.value}")
    )
    if issuer_cn != expected_issuer:
        raise ChainError(f"{vek_kind} is issued by {issuer_cn!r}, expected {expected_issuer!r}")

    for cert in chain.certs:
        check_validity(cert, now)
    for crl in collateral.crls:
        if crl.issuer == chain.root.subject:
            check_not_revoked(crl, chain.root, chain.certs[:-1], now)

    if work.named_product is not product:
        raise MismatchError(
            f"{vek_kind} product name {info.product_name!r} does not match the "
            f"{product.value} root it chains to"
        )
    stated = report.product
    if stated is not None and stated is not product:
        raise MismatchError(
            f"report CPUID identifies {stated.value} but the key chains to {product.value}"
        )
    if stated is None and product.has_fmc:
        # A report without CPUID was parsed with the pre-Turin TCB layout.
        report = SnpReport.from_bytes(report.to_bytes(), product=product)

    _check_signature(report, vek, work)
    _check_tcb_binding(report, info, product, vek_kind)
    if signing_key is SigningKey.VCEK:
        _check_hwid(report, info, product)

    if expected_report_data is not None:
        if len(expected_report_data) > 64:
            raise MismatchError("expected report data is longer than 64 bytes")
        padded = expected_report_data.ljust(64, b"\0")
        if not hmac.compare_digest(padded, report.report_data):
            raise MismatchError(
                "REPORT_DATA does not match the expected value",
                hint="the evidence was produced for another nonce or key",
            )

    return VerifiedSnpReport(
        report=report,
        product=product,
        signing_key=signing_key,
        chain=chain,
        vek=info,
        simulated=roots.simulated and chain.root not in _pinned_roots(roots),
    )
