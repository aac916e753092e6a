"""Verify an NVIDIA GPU / NVSwitch SPDM report, and optionally compare it with signed RIMs.

Pure: takes the parsed report, the device certificate chain (leaf first, as the
driver returns it), the trust roots and an explicit ``now``. Checked:

- the chain from the device attestation key (leaf) to the NVIDIA Device Identity
  CA pinned by fingerprint (or a root the caller trusts explicitly), every
  certificate valid at ``now``;
- the ECDSA P-384 / SHA-384 signature of the leaf key over
  request || response-without-signature (SPDM 1.1);
- the firmware id (FWID) the report states equals the one in the leaf's
  NVIDIA FWID extension (OID 2.23.133.5.4.1), as NVIDIA's verifier and Trustee check;
- the requester nonce equals the one the relying party chose (constant time);
- with RIMs: each RIM's XML signature and certificate chain (to the pinned NVIDIA
  RIM root), its version against the report's driver / VBIOS version, and every
  active golden measurement against the report's measurement block.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from threading import Lock

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate, ExtensionNotFound, ObjectIdentifier

from veritee.clock import require_aware
from veritee.errors import (
    ChainError,
    ConfigError,
    EvidenceFormatError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import common_name, fingerprint, load_certificate
from veritee.pki.chain import Chain, SignaturePolicy, build_chain, check_validity
from veritee.tee.nvidia.report import (
    NONCE_SIZE,
    NvidiaReport,
    OpaqueType,
    decode_text_field,
    format_vbios_version,
)
from veritee.tee.nvidia.rim import Rim

# SHA-256 of the DER of "NVIDIA Device Identity CA" (root of GPU and NVSwitch device chains).
NVIDIA_DEVICE_ROOT_FINGERPRINT = "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
# SHA-256 of the DER of "NVIDIA CoRIM signing Root CA" (root of the RIM signing chains).
NVIDIA_RIM_ROOT_FINGERPRINT = "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"

NVIDIA_SIGNATURE_POLICY = SignaturePolicy(hash_name="sha384")
FWID_EXTENSION = ObjectIdentifier("2.23.133.5.4.1")
_SHA384_OID = bytes.fromhex("608648016503040202")  # 2.16.840.1.101.3.4.2.2
_MAX_CHAIN_DEPTH = 8

_XMLDSIG_METHODS: Mapping[str, tuple[str, hashes.HashAlgorithm]] = {
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ecdsa", hashes.SHA256()),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ecdsa", hashes.SHA384()),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ("ecdsa", hashes.SHA512()),
}
_XMLDSIG_DIGESTS: Mapping[str, str] = {
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}


class DeviceClass(enum.Enum):
    """Device families this verifier knows, named as Trustee's ``arch`` claim names them."""

    HOPPER = "Hopper"
    LS10 = "LS10"

    @property
    def is_gpu(self) -> bool:
        return self is DeviceClass.HOPPER

    @classmethod
    def from_leaf(cls, leaf: Certificate) -> DeviceClass:
        """From the leaf CN: ``GH100 A01 GSP FMC LF`` (H100) or ``LS_10 A01 FSP FMC LF``."""
        family = common_name(leaf.subject).split(" ", 1)[0]
        if family == "GH100":
            return cls.HOPPER
        if family == "LS_10":
            return cls.LS10
        raise VerificationError(
            f"unsupported NVIDIA device {common_name(leaf.subject)!r}",
            hint="local verification supports Hopper GPUs and LS10 NVSwitches",
        )


@dataclass(frozen=True)
class NvidiaRoots:
    """Roots that may anchor a chain, by SHA-256 fingerprint; ``pinned`` is NVIDIA's."""

    pinned: str = NVIDIA_DEVICE_ROOT_FINGERPRINT
    anchors: Mapping[str, Certificate] = field(default_factory=dict)
    simulated: bool = False

    @classmethod
    def device(cls, candidates: Iterable[Certificate] = ()) -> NvidiaRoots:
        """Device identity roots: keep candidates that are the pinned NVIDIA Device Identity CA."""
        return cls(NVIDIA_DEVICE_ROOT_FINGERPRINT).with_candidates(candidates)

    @classmethod
    def rim(cls, candidates: Iterable[Certificate] = ()) -> NvidiaRoots:
        """RIM signing roots: keep candidates that are the pinned NVIDIA RIM root."""
        return cls(NVIDIA_RIM_ROOT_FINGERPRINT).with_candidates(candidates)

    def with_candidates(self, candidates: Iterable[Certificate]) -> NvidiaRoots:
        anchors = dict(self.anchors)
        for cert in candidates:
            if fingerprint(cert) == self.pinned:
                anchors[self.pinned] = cert
        return NvidiaRoots(self.pinned, anchors, self.simulated)

    def with_root(self, cert: Certificate) -> NvidiaRoots:
        """Add an explicitly trusted root (a lab or simulator root the caller chose)."""
        anchors = dict(self.anchors)
        anchors[fingerprint(cert)] = cert
        return NvidiaRoots(self.pinned, anchors, simulated=True)


@dataclass(frozen=True)
class VerifiedRim:
    rim: Rim
    chain: Chain
    simulated: bool = False


@dataclass(frozen=True)
class VerifiedNvidiaReport:
    report: NvidiaReport
    chain: Chain
    device: DeviceClass
    certificate_fwid: bytes | None
    driver_rim: VerifiedRim | None = None
    vbios_rim: VerifiedRim | None = None
    simulated: bool = False


class _Memo:
    """Bounded memo of verified paths keyed by the exact certificates and anchors."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], Chain] = OrderedDict()
        self._lock = Lock()

    def chain(
        self, leaf: Certificate, pool: tuple[Certificate, ...], anchors: Mapping[str, Certificate]
    ) -> Chain:
        if not anchors:
            raise ChainError(
                "no trusted NVIDIA root among the certificates given",
                hint="supply the full chain (it ends with NVIDIA's root); a lab or simulator "
                "root is trusted only with --trust-root",
            )
        key = (leaf, pool, tuple(sorted(anchors)))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        # Validity at ``now`` is checked by the caller on every call, so the path is cacheable.
        found = build_chain(
            leaf, pool, anchors, None, policy=NVIDIA_SIGNATURE_POLICY, max_depth=_MAX_CHAIN_DEPTH
        )
        with self._lock:
            self._items[key] = found
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return found


_CHAINS = _Memo()


def _p384(cert: Certificate, what: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ChainError(f"{common_name(cert.subject)}: {what} key is not ECDSA P-384")
    return key


def _der_items(content: bytes) -> list[tuple[int, bytes]]:
    """The TLVs making up ``content`` (short and long definite lengths only)."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(content):
        if pos + 2 > len(content):
            raise EvidenceFormatError("DER truncated")
        tag, first = content[pos], content[pos + 1]
        pos += 2
        length = first
        if first & 0x80:
            n = first & 0x7F
            if n == 0 or n > 3 or pos + n > len(content):
                raise EvidenceFormatError("DER length malformed")
            length = int.from_bytes(content[pos : pos + n], "big")
            pos += n
        if pos + length > len(content):
            raise EvidenceFormatError("DER value runs past its container")
        items.append((tag, content[pos : pos + length]))
        pos += length
    return items


def certificate_fwid(cert: Certificate) -> bytes | None:
    """The SHA-384 FWID in NVIDIA's extension 2.23.133.5.4.1, or None if there is none.

    Its value is SEQUENCE { INTEGER, SubjectPublicKeyInfo, SEQUENCE { hashAlg OID, OCTET STRING } }.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(FWID_EXTENSION)
    except ExtensionNotFound:
        return None
    raw = getattr(ext.value, "value", None)
    if not isinstance(raw, bytes):
        return None
    try:
        outer = _der_items(raw)
        if len(outer) != 1 or outer[0][0] != 0x30:
            raise EvidenceFormatError("not a SEQUENCE")
        for tag, value in _der_items(outer[0][1]):
            if tag != 0x30:
                continue
            inner = _der_items(value)
            if len(inner) == 2 and inner[0] == (0x06, _SHA384_OID) and inner[1][0] == 0x04:
                if len(inner[1][1]) != 48:
                    raise EvidenceFormatError("FWID is not 48 bytes")
                return inner[1][1]
    except EvidenceFormatError as exc:
        raise ChainError(f"{common_name(cert.subject)}: bad FWID extension: {exc}") from None
    raise ChainError(f"{common_name(cert.subject)}: FWID extension holds no SHA-384 FWID")


def _check_report_signature(report: NvidiaReport, leaf: Certificate) -> None:
    key = _p384(leaf, "device attestation")
    sig = report.response.signature
    der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    try:
        key.verify(der, report.signed_bytes(), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureError(
            "SPDM measurement signature does not verify with the device attestation key",
            hint="the report was altered, or the certificate chain belongs to another device",
        ) from None


def _check_fwid(report: NvidiaReport, cert_fwid: bytes | None, device: DeviceClass) -> None:
    stated = report.opaque(OpaqueType.FWID)
    if stated is None:
        if device.is_gpu:
            raise MismatchError("the GPU report states no FWID to bind it to its certificate")
        return
    if cert_fwid is None:
        raise MismatchError("the report states an FWID but the leaf certificate carries none")
    if not hmac.compare_digest(stated, cert_fwid):
        raise MismatchError(
            "report FWID differs from the device certificate's FWID",
            hint="the certificate chain belongs to another device or firmware",
        )


def verify_rim(rim: Rim, roots: NvidiaRoots, now: dt.datetime) -> VerifiedRim:
    """Check a RIM's XML signature and its certificate chain to the pinned NVIDIA RIM root."""
    now = require_aware(now)
    signed = rim.signature
    certs = tuple(load_certificate(der, what="RIM certificate") for der in signed.certificates)
    roots = roots.with_candidates(certs)
    chain = _CHAINS.chain(certs[0], certs[1:], roots.anchors)
    for cert in chain.certs:
        check_validity(cert, now)
    digest_name = _XMLDSIG_DIGESTS.get(signed.digest_method)
    method = _XMLDSIG_METHODS.get(signed.signature_method)
    if digest_name is None or method is None:
        raise SignatureError(
            f"RIM signature algorithm {signed.signature_method} / {signed.digest_method} "
            "is not supported (ECDSA with SHA-2)"
        )
    digest = hashlib.new(digest_name, signed.canonical_document).digest()
    if not hmac.compare_digest(digest, signed.digest_value):
        raise SignatureError(
            f"RIM {rim.tag_id}: digest of the signed document does not match",
            hint="the RIM was edited after it was signed",
        )
    key = chain.leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ChainError("RIM signing certificate does not hold an ECDSA key")
    half = (key.curve.key_size + 7) // 8
    value = signed.signature_value
    if len(value) != 2 * half:
        raise SignatureError(f"RIM {rim.tag_id}: ECDSA signature value has the wrong size")
    der = encode_dss_signature(
        int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big")
    )
    try:
        key.verify(der, signed.canonical_signed_info, ec.ECDSA(method[1]))
    except InvalidSignature:
        raise SignatureError(
            f"RIM {rim.tag_id}: XML signature does not verify with its signing certificate"
        ) from None
    return VerifiedRim(
        rim=rim, chain=chain, simulated=fingerprint(chain.root) != NVIDIA_RIM_ROOT_FINGERPRINT
    )


def _check_rim_version(kind: str, rim: Rim, reported: str | None) -> None:
    if reported is None:
        raise MismatchError(f"the report states no {kind} version to compare with the {kind} RIM")
    if rim.colloquial_version.lower() != reported.lower():
        raise MismatchError(
            f"{kind} RIM {rim.tag_id} is for version {rim.colloquial_version}, "
            f"the device reports {reported}",
            hint=f"supply the RIM for {kind} version {reported}",
        )


def compare_measurements(
    report: NvidiaReport, driver: VerifiedRim | None, vbios: VerifiedRim | None
) -> None:
    """Every active golden value must be matched by the report's block (MismatchError if not)."""
    owner: dict[int, str] = {}
    runtime = report.measurements
    for kind, verified in (("driver", driver), ("vbios", vbios)):
        if verified is None:
            continue
        rim = verified.rim
        for golden in rim.measurements:
            if not golden.active:
                continue
            if golden.block_index in owner:
                raise MismatchError(
                    f"measurement {golden.block_index} is active in both the "
                    f"{owner[golden.block_index]} and the {kind} RIM"
                )
            owner[golden.block_index] = kind
            value = runtime.get(golden.block_index)
            if value is None:
                raise MismatchError(
                    f"the report has no measurement block {golden.block_index} "
                    f"({golden.name}) that the {kind} RIM requires"
                )
            if not any(hmac.compare_digest(value, alt) for alt in golden.alternatives):
                raise MismatchError(
                    f"measurement block {golden.block_index} ({golden.name}) matches none of "
                    f"the {len(golden.alternatives)} golden value(s) of {kind} RIM {rim.tag_id}",
                    hint="the device runs firmware or a driver the RIM does not describe",
                )


def verify_report(
    report: NvidiaReport,
    chain: Sequence[Certificate],
    roots: NvidiaRoots,
    now: dt.datetime,
    *,
    expected_nonce: bytes | None = None,
    stated_arch: str | None = None,
    driver_rim: VerifiedRim | None = None,
    vbios_rim: VerifiedRim | None = None,
) -> VerifiedNvidiaReport:
    """Check that ``report`` was signed by an NVIDIA device whose chain leads to a trusted root."""
    now = require_aware(now)
    if expected_nonce is not None and len(expected_nonce) != NONCE_SIZE:
        raise ConfigError(f"the expected SPDM nonce must be {NONCE_SIZE} bytes")
    if not chain:
        raise ChainError("no device certificate chain given", hint="pass --cert-chain FILE")
    leaf, pool = chain[0], tuple(chain[1:])
    roots = roots.with_candidates(chain)
    found = _CHAINS.chain(leaf, pool, roots.anchors)
    for cert in found.certs:
        check_validity(cert, now)
    device = DeviceClass.from_leaf(leaf)
    if stated_arch is not None and stated_arch.lower() != device.value.lower():
        raise MismatchError(
            f"evidence states arch {stated_arch!r} but the certificate is a {device.value} device"
        )
    _check_report_signature(report, leaf)
    cert_fwid = certificate_fwid(leaf)
    _check_fwid(report, cert_fwid, device)
    if expected_nonce is not None and not hmac.compare_digest(report.nonce, expected_nonce):
        raise MismatchError(
            "SPDM requester nonce does not match the expected nonce",
            hint="the report was produced for another request (replay?)",
        )
    if (driver_rim or vbios_rim) and not device.is_gpu:
        raise ConfigError("RIM comparison is implemented for GPUs only")
    if driver_rim is not None:
        _check_rim_version(
            "driver", driver_rim.rim, decode_text_field(report.opaque(OpaqueType.DRIVER_VERSION))
        )
    if vbios_rim is not None:
        raw = report.opaque(OpaqueType.VBIOS_VERSION)
        _check_rim_version("vbios", vbios_rim.rim, format_vbios_version(raw) if raw else None)
    compare_measurements(report, driver_rim, vbios_rim)
    simulated = fingerprint(found.root) != NVIDIA_DEVICE_ROOT_FINGERPRINT or any(
        r is not None and r.simulated for r in (driver_rim, vbios_rim)
    )
    return VerifiedNvidiaReport(
        report=report,
        chain=found,
        device=device,
        certificate_fwid=cert_fwid,
        driver_rim=driver_rim,
        vbios_rim=vbios_rim,
        simulated=simulated,
    )
