"""NVIDIA device claims (``tee`` = ``nvidia``), named as Trustee's local verifier names them.

Trustee's set (PROTOCOL.md section 4): ``arch``, ``uuid``, ``measurements``
(block index -> hex) and ``config`` (the opaque data fields under nvtrust's
names: ``driver_version``, ``vbios_version``, ``measurement_count``, ``fwid``,
``board_id``, ``chip_sku``, ...). The values are decoded as Trustee's
expected-claims test vector for the nvtrust H100 sample states them (text
fields NUL-trimmed, ``measurement_count`` a map, the rest hex). NVSwitch fields
(``switch_pdi``, ``switch_gpu_pdis``, ...) follow the same rules.

veritee additions: ``report_data`` (the requester nonce), ``driver_rim`` /
``vbios_rim`` (tag ids of the RIMs compared, or null) and ``simulated``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from veritee.tee.base import ClaimValue
from veritee.tee.nvidia.report import (
    OpaqueField,
    OpaqueType,
    decode_text_field,
    format_vbios_version,
)
from veritee.tee.nvidia.verify import VerifiedNvidiaReport

_TEXT_FIELDS = frozenset(
    {
        OpaqueType.DRIVER_VERSION,
        OpaqueType.CHIP_SKU,
        OpaqueType.CHIP_SKU_MOD,
        OpaqueType.PROJECT,
        OpaqueType.PROJECT_SKU,
        OpaqueType.CHIP_INFO,
        OpaqueType.NVDEC0_STATUS,
        OpaqueType.PROTECTED_PCIE_STATUS,
    }
)
_NAMES: Mapping[OpaqueType, str] = {
    OpaqueType.MSRSCNT: "measurement_count",
    OpaqueType.CPRINFO: "cpr_info",
}
_FEATURE_FLAGS = {0: "SPT", 1: "MPT", 2: "PPCIE"}


def claim_name(kind: OpaqueType) -> str:
    return _NAMES.get(kind, kind.name.lower())


def decode_field(kind: OpaqueType, raw: bytes) -> ClaimValue:
    """One opaque field as a claim value (the report parser already checked its size)."""
    if kind in _TEXT_FIELDS:
        return decode_text_field(raw)
    if kind is OpaqueType.VBIOS_VERSION:
        return format_vbios_version(raw)
    if kind is OpaqueType.MSRSCNT:
        return {
            str(i + 1): int.from_bytes(raw[4 * i : 4 * i + 4], "little")
            for i in range(len(raw) // 4)
        }
    if kind in (OpaqueType.SWITCH_PDI, OpaqueType.SWITCH_GPU_PDIS):
        return [raw[i : i + 8].hex() for i in range(0, len(raw), 8)]
    if kind is OpaqueType.OPAQUE_DATA_VERSION:
        return int.from_bytes(raw, "little")
    if kind is OpaqueType.FEATURE_FLAG:
        return _FEATURE_FLAGS.get(int.from_bytes(raw, "little"), "unknown")
    return raw.hex()


@dataclass(frozen=True)
class NvidiaClaims:
    arch: str
    uuid: str | None
    measurements: Mapping[int, bytes]
    opaque: tuple[OpaqueField, ...]
    # veritee additions
    report_data: bytes
    driver_rim: str | None
    vbios_rim: str | None
    simulated: bool

    @property
    def tee(self) -> str:
        return "nvidia"

    @classmethod
    def from_verified(cls, v: VerifiedNvidiaReport, *, uuid: str | None = None) -> NvidiaClaims:
        return cls(
            arch=v.device.value,
            uuid=uuid,
            measurements=dict(sorted(v.report.measurements.items())),
            opaque=v.report.response.opaque,
            report_data=v.report.nonce,
            driver_rim=v.driver_rim.rim.tag_id if v.driver_rim else None,
            vbios_rim=v.vbios_rim.rim.tag_id if v.vbios_rim else None,
            simulated=v.simulated,
        )

    def config(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {}
        for f in self.opaque:
            kind = f.known
            if kind is not None:  # unknown ids stay in the report, not in the claims
                out[claim_name(kind)] = decode_field(kind, f.value)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, ClaimValue]:
        return {
            "arch": self.arch,
            "uuid": self.uuid,
            "measurements": {str(i): v.hex() for i, v in self.measurements.items()},
            "config": self.config(),
            "report_data": self.report_data.hex(),
            "driver_rim": self.driver_rim,
            "vbios_rim": self.vbios_rim,
            "simulated": self.simulated,
        }
