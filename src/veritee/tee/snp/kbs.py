"""The KBS ``snp`` evidence JSON a CoCo guest sends (PROTOCOL.md 1.5).

``{"attestation_report": <serde JSON of the virtee sev crate AttestationReport>,
"cert_chain": [{"cert_type": "VCEK", "data": [bytes...]}, ...] | null}``.
Byte arrays are JSON lists of integers; TCB versions are objects with an
``fmc`` member that is null before Turin. Format only: no crypto.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from veritee.errors import EvidenceFormatError
from veritee.tee.snp.certtable import GUID_NAMES, CertEntry, CertTable
from veritee.tee.snp.report import (
    FirmwareVersion,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Signature,
    SnpReport,
    TcbVersion,
)

_GUID_BY_NAME = {name: guid for guid, name in GUID_NAMES.items()}
MAX_CERT_BYTES = 64 * 1024


def _byte_list(value: list[object], what: str) -> bytes:
    """A JSON list of integers 0..255 as bytes (bools and floats are not bytes)."""
    if not set(map(type, value)) <= {int}:
        raise EvidenceFormatError(f"snp evidence: {what} holds a value that is not a byte")
    try:
        return bytes(value)  # type: ignore[arg-type]
    except ValueError:
        raise EvidenceFormatError(
            f"snp evidence: {what} holds a value that is not a byte"
        ) from None


def _bytes(obj: Mapping[str, object], name: str, size: int) -> bytes:
    value = obj.get(name)
    if not isinstance(value, list) or len(value) != size:
        raise EvidenceFormatError(f"snp evidence: {name} must be a list of {size} bytes")
    return _byte_list(value, name)


def _int(obj: Mapping[str, object], name: str, bits: int) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise EvidenceFormatError(f"snp evidence: {name} must be an unsigned {bits}-bit integer")
    return value


def _obj(obj: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = obj.get(name)
    if not isinstance(value, Mapping):
        raise EvidenceFormatError(f"snp evidence: {name} must be an object")
    return value


def _tcb(obj: Mapping[str, object], name: str) -> TcbVersion:
    t = _obj(obj, name)
    fmc = t.get("fmc")
    if fmc is not None and (
        not isinstance(fmc, int) or isinstance(fmc, bool) or not 0 <= fmc <= 255
    ):
        raise EvidenceFormatError(f"snp evidence: {name}.fmc must be a byte or null")
    return TcbVersion(
        bootloader=_int(t, "bootloader", 8),
        tee=_int(t, "tee", 8),
        snp=_int(t, "snp", 8),
        microcode=_int(t, "microcode", 8),
        fmc=fmc if isinstance(fmc, int) else None,
    )


def _fw(obj: Mapping[str, object], name: str) -> FirmwareVersion:
    v = _obj(obj, name)
    return FirmwareVersion(
        major=_int(v, "major", 8), minor=_int(v, "minor", 8), build=_int(v, "build", 8)
    )


def report_from_json(obj: object) -> SnpReport:
    """Build the report from the sev crate's serde form, then round-trip it through bytes.

    Re-parsing the serialized bytes applies every check of the byte format, so
    a JSON report is accepted exactly when its binary form would be.
    """
    if not isinstance(obj, Mapping):
        raise EvidenceFormatError("snp evidence: attestation_report must be an object")
    version = _int(obj, "version", 32)
    v3 = version >= 3
    sig = _obj(obj, "signature")
    try:
        report = SnpReport(
            version=version,
            guest_svn=_int(obj, "guest_svn", 32),
            policy=GuestPolicy(_int(obj, "policy", 64)),
            family_id=_bytes(obj, "family_id", 16),
            image_id=_bytes(obj, "image_id", 16),
            vmpl=_int(obj, "vmpl", 32),
            signature_algo=_int(obj, "sig_algo", 32),
            current_tcb=_tcb(obj, "current_tcb"),
            platform_info=PlatformInfo(_int(obj, "plat_info", 64)),
            key_info=KeyInfo.from_u32(_int(obj, "key_info", 32)),
            report_data=_bytes(obj, "report_data", 64),
            measurement=_bytes(obj, "measurement", 48),
            host_data=_bytes(obj, "host_data", 32),
            id_key_digest=_bytes(obj, "id_key_digest", 48),
            author_key_digest=_bytes(obj, "author_key_digest", 48),
            report_id=_bytes(obj, "report_id", 32),
            report_id_ma=_bytes(obj, "report_id_ma", 32),
            reported_tcb=_tcb(obj, "reported_tcb"),
            cpuid_fam_id=_int(obj, "cpuid_fam_id", 8) if v3 else None,
            cpuid_mod_id=_int(obj, "cpuid_mod_id", 8) if v3 else None,
            cpuid_step=_int(obj, "cpuid_step", 8) if v3 else None,
            chip_id=_bytes(obj, "chip_id", 64),
            committed_tcb=_tcb(obj, "committed_tcb"),
            current_fw=_fw(obj, "current"),
            committed_fw=_fw(obj, "committed"),
            launch_tcb=_tcb(obj, "launch_tcb"),
            launch_mit_vector=_int(obj, "launch_mit_vector", 64)
            if version >= 5 and "launch_mit_vector" in obj
            else (0 if version >= 5 else None),
            current_mit_vector=_int(obj, "current_mit_vector", 64)
            if version >= 5 and "current_mit_vector" in obj
            else (0 if version >= 5 else None),
            signature=Signature(
                int.from_bytes(_bytes(sig, "r", 72), "little"),
                int.from_bytes(_bytes(sig, "s", 72), "little"),
            ),
        )
        raw = report.to_bytes()
    except (ValueError, OverflowError) as exc:
        raise EvidenceFormatError(f"snp evidence: {exc}") from None
    return SnpReport.from_bytes(raw)


def _tcb_json(t: TcbVersion) -> dict[str, int | None]:
    return {
        "fmc": t.fmc,
        "bootloader": t.bootloader,
        "tee": t.tee,
        "snp": t.snp,
        "microcode": t.microcode,
    }


def report_to_json(r: SnpReport) -> dict[str, object]:
    out: dict[str, object] = {
        "version": r.version,
        "guest_svn": r.guest_svn,
        "policy": r.policy.raw,
        "family_id": list(r.family_id),
        "image_id": list(r.image_id),
        "vmpl": r.vmpl,
        "sig_algo": r.signature_algo,
        "current_tcb": _tcb_json(r.current_tcb),
        "plat_info": r.platform_info.raw,
        "key_info": r.key_info.to_u32(),
        "report_data": list(r.report_data),
        "measurement": list(r.measurement),
        "host_data": list(r.host_data),
        "id_key_digest": list(r.id_key_digest),
        "author_key_digest": list(r.author_key_digest),
        "report_id": list(r.report_id),
        "report_id_ma": list(r.report_id_ma),
        "reported_tcb": _tcb_json(r.reported_tcb),
        "cpuid_fam_id": r.cpuid_fam_id,
        "cpuid_mod_id": r.cpuid_mod_id,
        "cpuid_step": r.cpuid_step,
        "chip_id": list(r.chip_id),
        "committed_tcb": _tcb_json(r.committed_tcb),
        "current": {
            "major": r.current_fw.major,
            "minor": r.current_fw.minor,
            "build": r.current_fw.build,
        },
        "committed": {
            "major": r.committed_fw.major,
            "minor": r.committed_fw.minor,
            "build": r.committed_fw.build,
        },
        "launch_tcb": _tcb_json(r.launch_tcb),
    }
    if r.version >= 5:
        out["launch_mit_vector"] = r.launch_mit_vector
        out["current_mit_vector"] = r.current_mit_vector
    out["signature"] = {
        "r": list(r.signature.r.to_bytes(72, "little")),
        "s": list(r.signature.s.to_bytes(72, "little")),
    }
    return out


def cert_chain_from_json(obj: object) -> CertTable | None:
    if obj is None:
        return None
    if not isinstance(obj, Sequence) or isinstance(obj, (str, bytes)):
        raise EvidenceFormatError("snp evidence: cert_chain must be a list or null")
    entries = []
    for item in obj:
        if not isinstance(item, Mapping):
            raise EvidenceFormatError("snp evidence: cert_chain entries must be objects")
        kind = item.get("cert_type")
        data = item.get("data")
        if not isinstance(data, list) or len(data) > MAX_CERT_BYTES:
            raise EvidenceFormatError("snp evidence: cert_chain data must be a byte list")
        raw = _byte_list(data, "cert_chain data")
        if isinstance(kind, str) and kind.upper() in _GUID_BY_NAME:
            guid = _GUID_BY_NAME[kind.upper()]
        elif isinstance(kind, Mapping) and isinstance(kind.get("OTHER"), str):
            try:
                guid = uuid.UUID(str(kind["OTHER"]))
            except ValueError:
                raise EvidenceFormatError("snp evidence: bad cert_type GUID") from None
        else:
            raise EvidenceFormatError(f"snp evidence: unknown cert_type {kind!r}")
        entries.append(CertEntry(guid, raw))
    return CertTable(tuple(entries))


def cert_chain_to_json(table: CertTable) -> list[dict[str, object]]:
    return [
        {
            "cert_type": e.name if e.guid in GUID_NAMES else {"OTHER": str(e.guid)},
            "data": list(e.data),
        }
        for e in table.entries
    ]


def parse_evidence(obj: object) -> tuple[SnpReport, CertTable | None]:
    if not isinstance(obj, Mapping):
        raise EvidenceFormatError("snp evidence must be a JSON object")
    if "attestation_report" not in obj:
        raise EvidenceFormatError("snp evidence lacks attestation_report")
    return report_from_json(obj["attestation_report"]), cert_chain_from_json(obj.get("cert_chain"))


def build_evidence(report: SnpReport, table: CertTable | None) -> dict[str, object]:
    return {
        "attestation_report": report_to_json(report),
        "cert_chain": cert_chain_to_json(table) if table is not None else None,
    }
