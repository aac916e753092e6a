"""The AWS Nitro Enclaves attestation document: a COSE_Sign1 (RFC 9052) over a CBOR map.

Byte format only: no crypto, no policy. The layout and the syntactic checks follow
AWS's "Nitro Enclaves attestation process" (aws-nitro-enclaves-nsm-api,
docs/attestation_process.md)::

    COSE_Sign1 = [protected: bstr .cbor {1: -35}, unprotected: {}, payload: bstr, signature: bstr]
    AttestationDocument = {
        module_id: text, digest: "SHA384", timestamp: uint (ms since the epoch),
        pcrs: {+ uint(0..31) => bstr .size 48}, certificate: bstr (DER, 1..1024),
        cabundle: [+ bstr (DER, 1..1024)], ? public_key: bstr (1..1024) / null,
        ? user_data: bstr (0..512) / null, ? nonce: bstr (0..512) / null,
    }

The Nitro Secure Module emits CBOR in its preferred serialization (minimal
lengths, definite lengths, no duplicate keys). The signed payload is refused
unless it is exactly that encoding of the map it decodes to, so what is verified
and what is read can never differ; ``to_bytes`` therefore reproduces the input.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cbor2

from veritee.errors import EvidenceFormatError

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_CRIT = 2
ALG_ES384 = -35
SIGNATURE_SIZE = 96  # ECDSA P-384: r || s, 48 bytes each
DIGEST_SHA384 = "SHA384"
PCR_SIZE = 48
MAX_PCRS = 32
MAX_CERT_BYTES = 1024
MAX_PUBLIC_KEY_BYTES = 1024
MAX_USER_DATA_BYTES = 512
MAX_NONCE_BYTES = 512
MAX_DOCUMENT_BYTES = 64 * 1024  # real documents are ~5 KiB; the fields above bound them well below
FIELD_ORDER = (
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
)
_REQUIRED = frozenset(FIELD_ORDER[:6])
_OPTIONAL = frozenset(FIELD_ORDER[6:])
_MAX_DEPTH = 8
_HEX = frozenset(string.hexdigits)
_TEXT = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e]*$")


def _loads(data: bytes, what: str) -> object:
    try:
        return cbor2.loads(
            data,
            max_depth=_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except cbor2.CBORDecodeError as exc:
        raise EvidenceFormatError(f"{what}: not valid CBOR ({exc})") from None


def _dumps(value: object) -> bytes:
    return cbor2.dumps(value)


def _bstr(value: object, name: str, lo: int, hi: int) -> bytes:
    if not isinstance(value, bytes):
        raise EvidenceFormatError(f"attestation document: {name} must be a byte string")
    if not lo <= len(value) <= hi:
        raise EvidenceFormatError(
            f"attestation document: {name} is {len(value)} bytes, must be {lo}..{hi}"
        )
    return value


def _uint(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EvidenceFormatError(f"attestation document: {name} must be an unsigned integer")
    return value


@dataclass(frozen=True)
class AttestationDocument:
    """The signed payload: what the Nitro hypervisor states about one enclave."""

    module_id: str
    digest: str
    timestamp: int  # milliseconds since the Unix epoch, UTC
    pcrs: Mapping[int, bytes]
    certificate: bytes  # DER of the leaf that signs this document
    cabundle: tuple[bytes, ...]  # DER, root first, leaf's issuer last
    public_key: bytes | None = None
    user_data: bytes | None = None
    nonce: bytes | None = None
    # Which keys the map had, in order (an optional key may be present with null).
    keys: tuple[str, ...] = field(default=FIELD_ORDER)

    def __post_init__(self) -> None:
        if not self.module_id:
            raise EvidenceFormatError("attestation document: module_id must not be empty")
        if self.digest != DIGEST_SHA384:
            raise EvidenceFormatError(
                f"attestation document: digest must be {DIGEST_SHA384!r}, got {self.digest!r}"
            )
        if self.timestamp <= 0 or self.timestamp >= 1 << 64:
            raise EvidenceFormatError("attestation document: timestamp out of range")
        if not 1 <= len(self.pcrs) <= MAX_PCRS:
            raise EvidenceFormatError(
                f"attestation document: {len(self.pcrs)} PCRs, must be 1..{MAX_PCRS}"
            )
        for index, value in self.pcrs.items():
            if not 0 <= index < MAX_PCRS:
                raise EvidenceFormatError(f"attestation document: PCR index {index} out of range")
            if len(value) != PCR_SIZE:
                raise EvidenceFormatError(
                    f"attestation document: PCR{index} is {len(value)} bytes, "
                    f"SHA-384 PCRs are {PCR_SIZE}"
                )
        _bstr(self.certificate, "certificate", 1, MAX_CERT_BYTES)
        if not self.cabundle:
            raise EvidenceFormatError("attestation document: cabundle must not be empty")
        for i, cert in enumerate(self.cabundle):
            _bstr(cert, f"cabundle[{i}]", 1, MAX_CERT_BYTES)
        limits = (
            ("public_key", self.public_key, 1, MAX_PUBLIC_KEY_BYTES),
            ("user_data", self.user_data, 0, MAX_USER_DATA_BYTES),
            ("nonce", self.nonce, 0, MAX_NONCE_BYTES),
        )
        for name, optional, lo, hi in limits:
            if optional is not None:
                _bstr(optional, name, lo, hi)
                if name not in self.keys:
                    raise EvidenceFormatError(f"attestation document: {name} set but not in keys")
        if len(set(self.keys)) != len(self.keys) or not set(self.keys) <= set(FIELD_ORDER):
            raise EvidenceFormatError("attestation document: keys must be distinct known fields")
        if not set(self.keys) >= _REQUIRED:
            raise EvidenceFormatError("attestation document: a required field is missing")

    def pcr(self, index: int) -> bytes | None:
        return self.pcrs.get(index)

    @classmethod
    def from_bytes(cls, data: bytes) -> AttestationDocument:
        value = _loads(data, "attestation document")
        if not isinstance(value, dict):
            raise EvidenceFormatError("attestation document: payload must be a CBOR map")
        keys: list[str] = []
        for key in value:
            if not isinstance(key, str) or key not in FIELD_ORDER:
                raise EvidenceFormatError(f"attestation document: unknown key {key!r}")
            keys.append(key)
        missing = _REQUIRED - set(keys)
        if missing:
            raise EvidenceFormatError(
                f"attestation document: missing required field(s) {', '.join(sorted(missing))}"
            )
        module_id = value["module_id"]
        digest = value["digest"]
        if not isinstance(module_id, str) or not isinstance(digest, str):
            raise EvidenceFormatError("attestation document: module_id and digest must be text")
        raw_pcrs = value["pcrs"]
        if not isinstance(raw_pcrs, dict):
            raise EvidenceFormatError("attestation document: pcrs must be a map")
        pcrs: dict[int, bytes] = {}
        for index, pcr in raw_pcrs.items():
            idx = _uint(index, "PCR index")
            pcrs[idx] = _bstr(pcr, f"PCR{idx}", PCR_SIZE, PCR_SIZE)
        cabundle = value["cabundle"]
        if not isinstance(cabundle, list):
            raise EvidenceFormatError("attestation document: cabundle must be an array")
        optional: dict[str, bytes | None] = {}
        for name in _OPTIONAL:
            item = value.get(name)
            if item is not None and not isinstance(item, bytes):
                raise EvidenceFormatError(f"attestation document: {name} must be bytes or null")
            optional[name] = item
        doc = cls(
            module_id=module_id,
            digest=digest,
            timestamp=_uint(value["timestamp"], "timestamp"),
            pcrs=pcrs,
            certificate=_bstr(value["certificate"], "certificate", 1, MAX_CERT_BYTES),
            cabundle=tuple(
                _bstr(c, f"cabundle[{i}]", 1, MAX_CERT_BYTES) for i, c in enumerate(cabundle)
            ),
            public_key=optional["public_key"],
            user_data=optional["user_data"],
            nonce=optional["nonce"],
            keys=tuple(keys),
        )
        if doc.to_bytes() != data:
            raise EvidenceFormatError(
                "attestation document: payload is not in CBOR preferred serialization",
                hint="the Nitro Secure Module never emits this; the document was re-encoded",
            )
        return doc

    def to_bytes(self) -> bytes:
        values: dict[str, object] = {
            "module_id": self.module_id,
            "digest": self.digest,
            "timestamp": self.timestamp,
            "pcrs": dict(self.pcrs),
            "certificate": self.certificate,
            "cabundle": list(self.cabundle),
            "public_key": self.public_key,
            "user_data": self.user_data,
            "nonce": self.nonce,
        }
        return _dumps({key: values[key] for key in self.keys})


def _protected_alg(protected: bytes) -> int:
    header = _loads(protected, "COSE protected header")
    if not isinstance(header, dict):
        raise EvidenceFormatError("COSE protected header must be a map")
    if HEADER_CRIT in header:
        raise EvidenceFormatError("COSE protected header: critical headers are not supported")
    alg = header.get(HEADER_ALG)
    if alg != ALG_ES384:
        raise EvidenceFormatError(
            f"COSE protected header: algorithm {alg!r} is not ES384 (-35)",
            hint="Nitro documents are signed with ECDSA P-384 / SHA-384",
        )
    if _dumps(header) != protected:
        raise EvidenceFormatError("COSE protected header is not in CBOR preferred serialization")
    return ALG_ES384


@dataclass(frozen=True)
class NitroDocument:
    """A COSE_Sign1 carrying an :class:`AttestationDocument` (tagged or not)."""

    protected: bytes
    payload: bytes
    signature: bytes
    tagged: bool = False
    document: AttestationDocument = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _protected_alg(self.protected)
        if len(self.signature) != SIGNATURE_SIZE:
            raise EvidenceFormatError(
                f"COSE signature is {len(self.signature)} bytes, ES384 needs {SIGNATURE_SIZE}"
            )
        # The payload is parsed once, here: a NitroDocument always holds a valid document.
        object.__setattr__(self, "document", AttestationDocument.from_bytes(self.payload))

    @property
    def algorithm(self) -> int:
        return ALG_ES384

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = MAX_DOCUMENT_BYTES) -> NitroDocument:
        if not isinstance(data, bytes):
            raise TypeError("NitroDocument.from_bytes needs bytes")
        if len(data) > max_size:
            raise EvidenceFormatError(f"Nitro document larger than {max_size} bytes")
        value = _loads(data, "COSE_Sign1")
        tagged = False
        if isinstance(value, cbor2.CBORTag):
            if value.tag != COSE_SIGN1_TAG:
                raise EvidenceFormatError(f"CBOR tag {value.tag} is not COSE_Sign1 (18)")
            tagged = True
            value = value.value
        if not isinstance(value, (list, tuple)) or len(value) != 4:
            raise EvidenceFormatError("COSE_Sign1 must be an array of 4 items")
        protected, unprotected, payload, signature = value
        if not isinstance(protected, bytes) or not isinstance(payload, bytes):
            raise EvidenceFormatError("COSE_Sign1: protected header and payload must be bytes")
        if not isinstance(signature, bytes):
            raise EvidenceFormatError("COSE_Sign1: signature must be bytes")
        if unprotected != {}:
            raise EvidenceFormatError("COSE_Sign1: the unprotected header must be an empty map")
        doc = cls(protected=protected, payload=payload, signature=signature, tagged=tagged)
        if doc.to_bytes() != data:
            raise EvidenceFormatError("COSE_Sign1 is not in CBOR preferred serialization")
        return doc

    def to_bytes(self) -> bytes:
        body = [self.protected, {}, self.payload, self.signature]
        return _dumps(cbor2.CBORTag(COSE_SIGN1_TAG, body) if self.tagged else body)

    def sig_structure(self) -> bytes:
        """The COSE Sig_structure the signature covers (external_aad is empty)."""
        return _dumps(["Signature1", self.protected, b"", self.payload])


def _is_hex(label: str) -> bool:
    return bool(label) and all(c in _HEX for c in label)


def document_from_san_names(names: Iterable[str]) -> bytes:
    """The COSE bytes carried hex-encoded in a TLS certificate's SAN dNSName.

    Evervault Cages put ``<hex(COSE_Sign1)>.<cage>.<app>.cages.evervault.com`` in
    the longest dNSName; the hex may also be split over several leading labels.
    """
    candidates = sorted((n for n in names if "." in n or _is_hex(n)), key=len, reverse=True)
    for name in candidates:
        labels = name.split(".")
        leading: list[str] = []
        for label in labels:
            if not _is_hex(label):
                break
            leading.append(label)
        for count in range(len(leading), 0, -1):
            text = "".join(leading[:count])
            if len(text) % 2:
                continue
            blob = bytes.fromhex(text)
            try:
                NitroDocument.from_bytes(blob)
            except EvidenceFormatError:
                continue
            return blob
    raise EvidenceFormatError(
        "no SAN dNSName of this certificate carries a Nitro attestation document",
        hint="expected a name like <hex COSE_Sign1>.<host> (Evervault Cages)",
    )


def decode_document_blob(data: bytes) -> bytes:
    """Raw COSE bytes from a file holding them raw, or as base64 or hex text."""
    if len(data) > 4 * MAX_DOCUMENT_BYTES:
        raise EvidenceFormatError(f"evidence larger than {4 * MAX_DOCUMENT_BYTES} bytes")
    if data[:1] in (b"\x84", b"\xd2"):
        return data
    if not data or not _TEXT.match(data):
        raise EvidenceFormatError(
            "not a Nitro attestation document (neither COSE_Sign1 bytes nor base64 text)"
        )
    stripped = b"".join(data.split())
    if stripped and all(chr(c) in _HEX for c in stripped) and len(stripped) % 2 == 0:
        return bytes.fromhex(stripped.decode("ascii"))
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(
            "Nitro document text is neither base64 nor hex",
            hint="pass the raw COSE_Sign1 bytes, their base64, or a PEM certificate carrying them",
        ) from None
