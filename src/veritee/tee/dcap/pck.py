"""The SGX extensions of an Intel PCK certificate (OID 1.2.840.113741.1.13.1).

``SEQUENCE OF SEQUENCE { OID, value }``: PPID, TCB (16 SGX components, PCESVN,
CPUSVN), PCE-ID, FMSPC, SGX type and, in Platform CA certificates, the platform
instance id and configuration flags (dynamic platform, cached keys, SMT).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.x509 import Certificate, ExtensionNotFound, UnrecognizedExtension

from veritee.errors import ChainError, EvidenceFormatError
from veritee.pki import oids
from veritee.pki.certs import common_name
from veritee.pki.der import (
    TAG_BOOLEAN,
    TAG_ENUMERATED,
    TAG_INTEGER,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    oid_pairs,
    read_tlv,
)

PCK_CN = "Intel SGX PCK Certificate"
PLATFORM_CA_CN = "Intel SGX PCK Platform CA"
PROCESSOR_CA_CN = "Intel SGX PCK Processor CA"


class SgxType(enum.IntEnum):
    STANDARD = 0
    SCALABLE = 1
    SCALABLE_WITH_INTEGRITY = 2

    @property
    def label(self) -> str:
        """The name Intel's supplemental data (and Trustee) use."""
        return {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}[self.value]


@dataclass(frozen=True)
class PckInfo:
    """What a PCK certificate says about the platform it was issued to."""

    ppid: bytes
    sgx_tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: SgxType
    platform_instance_id: bytes | None = None
    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None


def _int(tag: int, value: bytes, what: str) -> int:
    if tag not in (TAG_INTEGER, TAG_ENUMERATED) or not value:
        raise EvidenceFormatError(f"{what} must be an INTEGER")
    number = int.from_bytes(value, "big", signed=True)
    if number < 0:
        raise EvidenceFormatError(f"{what} must not be negative")
    return number


def _octets(tag: int, value: bytes, size: int, what: str) -> bytes:
    if tag != TAG_OCTET_STRING or len(value) != size:
        raise EvidenceFormatError(f"{what} must be an OCTET STRING of {size} bytes")
    return value


def _bool(tag: int, value: bytes, what: str) -> bool:
    if tag != TAG_BOOLEAN or len(value) != 1:
        raise EvidenceFormatError(f"{what} must be a BOOLEAN")
    return value != b"\x00"


def parse_sgx_extensions(der: bytes) -> PckInfo:
    """Decode the extension value (the outer SEQUENCE, DER). Raises EvidenceFormatError."""
    tag, content = read_tlv(der)
    if tag != TAG_SEQUENCE:
        raise EvidenceFormatError("SGX extensions must be a SEQUENCE")
    found: dict[str, tuple[int, bytes]] = {}
    for oid, vtag, value in oid_pairs(content, what="SGX extensions"):
        if oid in found:
            raise EvidenceFormatError(f"SGX extension {oid} appears twice")
        found[oid] = (vtag, value)
    for required in (oids.SGX_PPID, oids.SGX_TCB, oids.SGX_PCEID, oids.SGX_FMSPC, oids.SGX_TYPE):
        if required not in found:
            raise EvidenceFormatError(f"SGX extension {required} is missing")

    tcb_tag, tcb_content = found[oids.SGX_TCB]
    if tcb_tag != TAG_SEQUENCE:
        raise EvidenceFormatError("SGX TCB extension must be a SEQUENCE")
    tcb: dict[str, tuple[int, bytes]] = {}
    for oid, vtag, value in oid_pairs(tcb_content, what="SGX TCB extension"):
        tcb[oid] = (vtag, value)
    components: list[int] = []
    for i in range(1, 17):
        item = tcb.get(oids.sgx_tcb_component(i))
        if item is None:
            raise EvidenceFormatError(f"SGX TCB component {i} is missing")
        svn = _int(*item, f"SGX TCB component {i}")
        if svn > 0xFF:
            raise EvidenceFormatError(f"SGX TCB component {i} is above 255")
        components.append(svn)
    if oids.SGX_TCB_PCESVN not in tcb or oids.SGX_TCB_CPUSVN not in tcb:
        raise EvidenceFormatError("SGX TCB extension lacks PCESVN or CPUSVN")
    pcesvn = _int(*tcb[oids.SGX_TCB_PCESVN], "PCESVN")
    if pcesvn > 0xFFFF:
        raise EvidenceFormatError("PCESVN is above 65535")
    cpusvn = _octets(*tcb[oids.SGX_TCB_CPUSVN], 16, "CPUSVN")

    sgx_type_value = _int(*found[oids.SGX_TYPE], "SGX type")
    try:
        sgx_type = SgxType(sgx_type_value)
    except ValueError:
        raise EvidenceFormatError(f"unknown SGX type {sgx_type_value}") from None

    instance = None
    if oids.SGX_PLATFORM_INSTANCE_ID in found:
        instance = _octets(*found[oids.SGX_PLATFORM_INSTANCE_ID], 16, "platform instance id")
    dynamic = cached = smt = None
    if oids.SGX_CONFIGURATION in found:
        ctag, ccontent = found[oids.SGX_CONFIGURATION]
        if ctag != TAG_SEQUENCE:
            raise EvidenceFormatError("SGX configuration extension must be a SEQUENCE")
        for oid, vtag, value in oid_pairs(ccontent, what="SGX configuration"):
            if oid == oids.SGX_CONFIG_DYNAMIC_PLATFORM:
                dynamic = _bool(vtag, value, "dynamicPlatform")
            elif oid == oids.SGX_CONFIG_CACHED_KEYS:
                cached = _bool(vtag, value, "cachedKeys")
            elif oid == oids.SGX_CONFIG_SMT_ENABLED:
                smt = _bool(vtag, value, "SMTEnabled")
    return PckInfo(
        ppid=_octets(*found[oids.SGX_PPID], 16, "PPID"),
        sgx_tcb_components=tuple(components),
        pcesvn=pcesvn,
        cpusvn=cpusvn,
        pce_id=_octets(*found[oids.SGX_PCEID], 2, "PCE-ID"),
        fmspc=_octets(*found[oids.SGX_FMSPC], 6, "FMSPC"),
        sgx_type=sgx_type,
        platform_instance_id=instance,
        dynamic_platform=dynamic,
        cached_keys=cached,
        smt_enabled=smt,
    )


def pck_info(cert: Certificate) -> PckInfo:
    """The SGX extensions of a PCK certificate; a missing or malformed one is a ChainError."""
    try:
        ext = cert.extensions.get_extension_for_oid(oids.SGX_EXTENSIONS)
    except ExtensionNotFound:
        raise ChainError(
            f"{common_name(cert.subject)!r} has no SGX extensions: not a PCK certificate"
        ) from None
    value = ext.value
    if not isinstance(value, UnrecognizedExtension):  # pragma: no cover - library change
        raise ChainError("SGX extensions were decoded unexpectedly")
    try:
        return parse_sgx_extensions(value.value)
    except EvidenceFormatError as exc:
        raise ChainError(f"{common_name(cert.subject)!r}: bad SGX extension: {exc}") from None
