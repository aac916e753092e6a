"""TPM endorsement (and AK) certificates: loading with vendor quirks, chains to vendor CAs.

TPM vendors ship EK certificates that strict X.509 parsers refuse. Each quirk below is
recognized and handled on purpose, recorded in ``EkCertificate.quirks``, and nothing
else is relaxed — the issuer's signature is always checked over the exact bytes it
signed, and the chain must end at a CA the caller configured:

* ``nv-padding``: certificates read from TPM NV indices carry zero (or 0xFF) padding
  after the DER; it is cut at the DER length.
* ``der-explicit-default``: some vendors (e.g. Nuvoton) encode DEFAULT FALSE booleans
  (Extension.critical, BasicConstraints.cA) explicitly, which DER forbids. veritee
  re-encodes a canonical copy to *read* the fields; the signature is verified over the
  original TBSCertificate.
* ``rsaes-oaep-spki``: the TCG EK profile allows the subject key to be labelled
  id-RSAES-OAEP instead of rsaEncryption; the RSA key is read from the BIT STRING.
* ``non-positive-serial``: serial numbers of 0 or negative.
* ``long-common-name``: Google's vTPM CAs use common names longer than the 64
  characters RFC 5280 allows; the names are compared as they are.
* Intermediates without BasicConstraints are accepted as CAs by the chain builder
  because the pinned vendor root bounds the chain.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import Certificate

from veritee.binary import Reader
from veritee.clock import require_aware
from veritee.errors import ChainError, EvidenceFormatError, MismatchError
from veritee.pki.certs import common_name, fingerprint, load_certificates
from veritee.pki.chain import build_chain, check_validity
from veritee.tee.tpm.structures import TpmtPublic
from veritee.tee.tpm.verify import PublicKey, public_key_of

OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
OID_BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")  # 2.5.29.19, encoded
OID_TCG_EK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.1")
OID_TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
OID_TPM_MODEL = x509.ObjectIdentifier("2.23.133.2.2")
OID_TPM_VERSION = x509.ObjectIdentifier("2.23.133.2.3")
_RSA_ENCRYPTION_ALG = bytes.fromhex("300d06092a864886f70d0101010500")
MAX_CERT_BYTES = 64 << 10


# -- a little DER -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tlv:
    tag: int
    start: int  # offset of the tag byte
    body: int  # offset of the value
    end: int  # offset after the value

    def value(self, data: bytes) -> bytes:
        return data[self.body : self.end]

    def whole(self, data: bytes) -> bytes:
        return data[self.start : self.end]


def _read_tlv(data: bytes, offset: int, limit: int) -> _Tlv:
    rd = Reader(data[:limit], what="DER", offset=offset)
    tag = rd.u8("tag")
    if tag & 0x1F == 0x1F:
        raise EvidenceFormatError("DER: multi-byte tags are not supported")
    first = rd.u8("length")
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise EvidenceFormatError("DER: indefinite length is not DER")
    else:
        n = first & 0x7F
        if n > 4:
            raise EvidenceFormatError("DER: length too long")
        length = int.from_bytes(rd.bytes(n, "length"), "big")
    body = rd.offset
    rd.skip(length, "value")
    return _Tlv(tag, offset, body, body + length)


def _children(data: bytes, node: _Tlv) -> list[_Tlv]:
    out = []
    pos = node.body
    while pos < node.end:
        child = _read_tlv(data, pos, node.end)
        out.append(child)
        pos = child.end
    return out


def _encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


# -- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EkCertificate:
    der: bytes  # the certificate as issued (NV padding removed)
    cert: Certificate  # for reading fields; re-encoded when ``der-explicit-default`` applied
    tbs: bytes  # the TBSCertificate bytes the issuer signed
    signature: bytes
    public_key: PublicKey
    quirks: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


def _load(der: bytes) -> Certificate:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*serial number.*", category=CryptographyDeprecationWarning
        )
        return x509.load_der_x509_certificate(der)


class _LongNames(warnings.catch_warnings):
    """Reading names with attributes over the RFC 5280 upper bound warns; those names are
    a known vendor quirk (``long-common-name``) and are compared as they are."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.filterwarnings(
            "ignore", message="Attribute's length must be", category=UserWarning
        )


def _has_long_name(cert: Certificate) -> bool:
    with _LongNames():
        return any(
            isinstance(a.value, str) and len(a.value) > 64
            for name in (cert.subject, cert.issuer)
            for a in name
        )


def _normalize(data: bytes, tbs: _Tlv, *, rsa_spki: bytes | None) -> bytes:
    """Re-encode ``tbs`` for reading: without explicit DEFAULT FALSE booleans in its
    extensions, and with ``rsa_spki`` (an rsaEncryption SubjectPublicKeyInfo) in place of
    an id-RSAES-OAEP one."""
    parts = []
    fields = _children(data, tbs)
    spki_index = (1 if fields and fields[0].tag == 0xA0 else 0) + 5
    for i, child in enumerate(fields):
        if i == spki_index and rsa_spki is not None:
            parts.append(rsa_spki)
            continue
        if child.tag != 0xA3:  # [3] extensions
            parts.append(child.whole(data))
            continue
        (seq,) = _children(data, child)
        exts = []
        for ext in _children(data, seq):
            fields = _children(data, ext)
            keep = []
            for f in fields:
                if f.tag == 0x01 and f.value(data) == b"\x00":
                    continue  # critical FALSE (the default)
                if f.tag == 0x04 and fields[0].whole(data) == OID_BASIC_CONSTRAINTS:
                    inner = _read_tlv(data, f.body, f.end)
                    bc = [c for c in _children(data, inner)
                          if not (c.tag == 0x01 and c.value(data) == b"\x00")]
                    keep.append(_encode(0x04, _encode(0x30, b"".join(c.whole(data) for c in bc))))
                    continue
                keep.append(f.whole(data))
            exts.append(_encode(0x30, b"".join(keep)))
        parts.append(_encode(0xA3, _encode(0x30, b"".join(exts))))
    return _encode(0x30, b"".join(parts))


def _spki_key(data: bytes, tbs: _Tlv) -> tuple[PublicKey, bytes | None]:
    """The subject key, and the rsaEncryption SPKI that replaces an id-RSAES-OAEP one."""
    fields = _children(data, tbs)
    idx = 1 if fields and fields[0].tag == 0xA0 else 0  # skip [0] version
    if len(fields) < idx + 6:
        raise EvidenceFormatError("certificate: TBSCertificate has too few fields")
    spki = fields[idx + 5]
    alg, bits = _children(data, spki)
    oid_node = _children(data, alg)[0]
    oid = x509.ObjectIdentifier(_oid_text(oid_node.value(data)))
    oaep = oid.dotted_string == OID_RSAES_OAEP
    der = spki.whole(data)
    if oaep:
        der = _encode(0x30, _RSA_ENCRYPTION_ALG + bits.whole(data))
        if alg.end - alg.start > 64:
            raise EvidenceFormatError("certificate: RSAES-OAEP parameters are not supported")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise EvidenceFormatError(
            f"certificate: subject public key is not usable ({exc})"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise EvidenceFormatError("certificate: subject key must be RSA or ECC")
    if oaep and not isinstance(key, rsa.RSAPublicKey):
        raise EvidenceFormatError("certificate: RSAES-OAEP label on a non-RSA key")
    return key, der if oaep else None


def _oid_text(raw: bytes) -> str:
    if not raw:
        raise EvidenceFormatError("DER: empty OID")
    arcs: list[int] = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def load_ek_certificate(data: bytes) -> EkCertificate:
    """An EK/AK certificate from DER (as read from NV, padding allowed) or PEM."""
    if not isinstance(data, bytes) or not data:
        raise EvidenceFormatError("certificate must be non-empty bytes")
    if len(data) > MAX_CERT_BYTES:
        raise EvidenceFormatError("certificate larger than 64 KiB")
    if data.lstrip().startswith(b"-----BEGIN"):
        with _LongNames():
            (cert,) = load_certificates(data, what="EK certificate")[:1]
        data = cert.public_bytes(serialization.Encoding.DER)
    quirks: list[str] = []
    outer = _read_tlv(data, 0, len(data))
    if outer.tag != 0x30:
        raise EvidenceFormatError("certificate: not a DER SEQUENCE")
    if outer.end != len(data):
        rest = data[outer.end :]
        if rest.strip(b"\0") and rest.strip(b"\xff"):
            raise EvidenceFormatError(
                f"certificate: {len(rest)} bytes after the DER that are not NV padding"
            )
        quirks.append("nv-padding")
        data = data[: outer.end]
    parts = _children(data, outer)
    if len(parts) != 3 or parts[0].tag != 0x30 or parts[2].tag != 0x03:
        raise EvidenceFormatError("certificate: expected TBSCertificate, algorithm, signature")
    tbs_node, sig_node = parts[0], parts[2]
    tbs = tbs_node.whole(data)
    sig_bits = sig_node.value(data)
    if not sig_bits or sig_bits[0] != 0:
        raise EvidenceFormatError("certificate: signature BIT STRING has unused bits")
    signature = sig_bits[1:]
    key, rsa_spki = _spki_key(data, tbs_node)
    if rsa_spki is not None:
        quirks.append("rsaes-oaep-spki")
    try:
        cert = _load(data)
    except ValueError:
        normalized_tbs = _normalize(data, tbs_node, rsa_spki=rsa_spki)
        if normalized_tbs == tbs:
            raise EvidenceFormatError("certificate: not a valid X.509 certificate") from None
        normalized = _encode(0x30, normalized_tbs + parts[1].whole(data) + sig_node.whole(data))
        try:
            cert = _load(normalized)
        except ValueError as exc:
            raise EvidenceFormatError(
                f"certificate: not a valid X.509 certificate ({exc})"
            ) from None
        if _normalize(data, tbs_node, rsa_spki=None) != tbs:
            quirks.append("der-explicit-default")
    if cert.serial_number <= 0:
        quirks.append("non-positive-serial")
    if _has_long_name(cert):
        quirks.append("long-common-name")
    return EkCertificate(data, cert, tbs, signature, key, tuple(quirks))


# -- chains ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EkTrustStore:
    """The TPM vendor CAs a deployment trusts: roots by fingerprint, plus intermediates."""

    anchors: Mapping[str, Certificate]
    intermediates: tuple[Certificate, ...] = ()

    @classmethod
    def from_certificates(cls, certs: Iterable[Certificate]) -> EkTrustStore:
        anchors: dict[str, Certificate] = {}
        inter: list[Certificate] = []
        with _LongNames():
            for c in certs:
                if c.subject == c.issuer:
                    anchors[fingerprint(c)] = c
                else:
                    inter.append(c)
        return cls(anchors, tuple(inter))

    @classmethod
    def from_blobs(cls, blobs: Iterable[bytes]) -> EkTrustStore:
        """From file contents (PEM bundles or DER certificates), as read by the caller."""
        certs: list[Certificate] = []
        with _LongNames():
            for blob in blobs:
                certs.extend(load_certificates(blob, what="TPM vendor CA"))
        return cls.from_certificates(certs)


@dataclass(frozen=True)
class VerifiedEkCertificate:
    certificate: EkCertificate
    chain: tuple[Certificate, ...]  # issuer .. pinned root (the leaf is ``certificate``)
    manufacturer: str | None
    model: str | None
    version: str | None
    ek_eku: bool  # carries the TCG EK certificate extended key usage
    quirks: tuple[str, ...] = field(default=())


def _verify_leaf_signature(leaf: EkCertificate, issuer: Certificate) -> None:
    key = issuer.public_key()
    cert = leaf.cert
    h = cert.signature_hash_algorithm
    params = cert.signature_algorithm_parameters
    try:
        if isinstance(key, rsa.RSAPublicKey) and isinstance(h, hashes.HashAlgorithm):
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            key.verify(leaf.signature, leaf.tbs, pad, h)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(h, hashes.HashAlgorithm):
            key.verify(leaf.signature, leaf.tbs, ec.ECDSA(h))
        else:
            raise ChainError(f"{common_name(issuer.subject)!r}: unsupported signature algorithm")
    except InvalidSignature:
        raise ChainError(
            f"TPM certificate signature does not verify with {common_name(issuer.subject)!r}"
        ) from None


def _san_attributes(cert: Certificate) -> dict[x509.ObjectIdentifier, str]:
    out: dict[x509.ObjectIdentifier, str] = {}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return out
    for name in san.get_values_for_type(x509.DirectoryName):
        for attr in name:
            value = attr.value
            out[attr.oid] = value if isinstance(value, str) else value.hex()
    return out


def _same_key(a: PublicKey, b: PublicKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(serialization.Encoding.DER, fmt) == b.public_bytes(
        serialization.Encoding.DER, fmt
    )


def verify_ek_certificate(
    leaf: EkCertificate,
    store: EkTrustStore,
    now: dt.datetime | None,
    *,
    intermediates: Iterable[Certificate] = (),
    tpm_public: TpmtPublic | PublicKey | None = None,
) -> VerifiedEkCertificate:
    """Chain ``leaf`` to a root in ``store`` and, with ``tpm_public``, check that it
    certifies that key (the EK from TPM2_ReadPublic, or the AK of a quote).

    ``now=None`` skips validity periods (EK certificates of long-lived TPMs often expire
    while the TPM stays in service; decide that explicitly)."""
    with _LongNames():
        return _verify_ek_certificate(leaf, store, now, intermediates, tpm_public)


def _verify_ek_certificate(
    leaf: EkCertificate,
    store: EkTrustStore,
    now: dt.datetime | None,
    intermediates: Iterable[Certificate],
    tpm_public: TpmtPublic | PublicKey | None,
) -> VerifiedEkCertificate:
    if now is not None:
        now = require_aware(now)
    if not store.anchors:
        raise ChainError("no TPM vendor CA configured", hint="pass the vendor CA bundle")
    pool = [*intermediates, *store.intermediates]
    candidates = [c for c in (*pool, *store.anchors.values()) if c.subject == leaf.cert.issuer]
    if not candidates:
        raise ChainError(
            f"no configured CA issued the TPM certificate (issuer "
            f"{leaf.cert.issuer.rfc4514_string()!r})",
            hint="add the TPM vendor's intermediate and root CA to the bundle",
        )
    errors = []
    for issuer in candidates:
        try:
            _verify_leaf_signature(leaf, issuer)
            rest = build_chain(issuer, pool, store.anchors, now)
        except ChainError as exc:
            errors.append(str(exc))
            continue
        if now is not None:
            check_validity(leaf.cert, now)
        if tpm_public is not None:
            key = public_key_of(tpm_public) if isinstance(tpm_public, TpmtPublic) else tpm_public
            if not _same_key(key, leaf.public_key):
                raise MismatchError(
                    "the certificate is for another key than the TPM's",
                    hint="the EK/AK public area does not belong to this certificate",
                )
        attrs = _san_attributes(leaf.cert)
        try:
            eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            ek_eku = OID_TCG_EK_CERTIFICATE in eku
        except (x509.ExtensionNotFound, ValueError):
            ek_eku = False
        return VerifiedEkCertificate(
            leaf,
            rest.certs,
            attrs.get(OID_TPM_MANUFACTURER),
            attrs.get(OID_TPM_MODEL),
            attrs.get(OID_TPM_VERSION),
            ek_eku,
            leaf.quirks,
        )
    raise ChainError(f"TPM certificate does not chain to a configured CA: {'; '.join(errors)}")
