"""The SGX enclave report body (``sgx_report_body_t``, 384 bytes, little-endian).

Byte format only: no crypto, no policy. The same structure is the body of an
SGX quote and the Quoting Enclave's report inside every DCAP quote.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from veritee.binary import Writer
from veritee.errors import EvidenceFormatError

ENCLAVE_REPORT_SIZE = 384
_LAYOUT = struct.Struct("<16sI12s16sQQ32s32s32s32s64sHHH42s16s64s")
assert _LAYOUT.size == ENCLAVE_REPORT_SIZE

ATTRIBUTE_INIT = 1 << 0
ATTRIBUTE_DEBUG = 1 << 1
ATTRIBUTE_MODE64BIT = 1 << 2
ATTRIBUTE_PROVISIONKEY = 1 << 4
ATTRIBUTE_EINITTOKENKEY = 1 << 5
ATTRIBUTE_KSS = 1 << 7


@dataclass(frozen=True)
class EnclaveReport:
    """One ``sgx_report_body_t``. Field names follow Intel's SDK (and Trustee's claims)."""

    cpu_svn: bytes
    misc_select: int
    reserved1: bytes
    isv_ext_prod_id: bytes
    attributes_flags: int
    attributes_xfrm: int
    mr_enclave: bytes
    reserved2: bytes
    mr_signer: bytes
    reserved3: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    reserved4: bytes
    isv_family_id: bytes
    report_data: bytes
    _raw: bytes = field(init=False, default=b"", compare=False, repr=False)

    @property
    def attributes(self) -> bytes:
        """The 16-byte ATTRIBUTES field (flags then XFRM), as QE identity masks it."""
        return self.attributes_flags.to_bytes(8, "little") + self.attributes_xfrm.to_bytes(
            8, "little"
        )

    @property
    def debug(self) -> bool:
        return bool(self.attributes_flags & ATTRIBUTE_DEBUG)

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "enclave report") -> EnclaveReport:
        """Parse exactly 384 bytes. Reserved fields are kept, not judged (they are signed)."""
        if not isinstance(data, bytes):
            raise EvidenceFormatError(f"{what} must be bytes")
        if len(data) != ENCLAVE_REPORT_SIZE:
            raise EvidenceFormatError(
                f"{what} must be {ENCLAVE_REPORT_SIZE} bytes, got {len(data)}"
            )
        (
            cpu_svn, misc_select, reserved1, isv_ext_prod_id, flags, xfrm, mr_enclave,
            reserved2, mr_signer, reserved3, config_id, isv_prod_id, isv_svn, config_svn,
            reserved4, isv_family_id, report_data,
        ) = _LAYOUT.unpack(data)
        report = cls(
            cpu_svn=cpu_svn,
            misc_select=misc_select,
            reserved1=reserved1,
            isv_ext_prod_id=isv_ext_prod_id,
            attributes_flags=flags,
            attributes_xfrm=xfrm,
            mr_enclave=mr_enclave,
            reserved2=reserved2,
            mr_signer=mr_signer,
            reserved3=reserved3,
            config_id=config_id,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            config_svn=config_svn,
            reserved4=reserved4,
            isv_family_id=isv_family_id,
            report_data=report_data,
        )
        object.__setattr__(report, "_raw", data)
        return report

    def to_bytes(self) -> bytes:
        if self._raw:
            return self._raw
        w = Writer()
        w.bytes(self.cpu_svn, 16).u32(self.misc_select).bytes(self.reserved1, 12)
        w.bytes(self.isv_ext_prod_id, 16).u64(self.attributes_flags).u64(self.attributes_xfrm)
        w.bytes(self.mr_enclave, 32).bytes(self.reserved2, 32).bytes(self.mr_signer, 32)
        w.bytes(self.reserved3, 32).bytes(self.config_id, 64)
        w.u16(self.isv_prod_id).u16(self.isv_svn).u16(self.config_svn)
        w.bytes(self.reserved4, 42).bytes(self.isv_family_id, 16).bytes(self.report_data, 64)
        return w.getvalue()

    @classmethod
    def build(
        cls,
        *,
        cpu_svn: bytes = bytes(16),
        misc_select: int = 0,
        isv_ext_prod_id: bytes = bytes(16),
        attributes_flags: int = 0,
        attributes_xfrm: int = 0,
        mr_enclave: bytes = bytes(32),
        mr_signer: bytes = bytes(32),
        config_id: bytes = bytes(64),
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        config_svn: int = 0,
        isv_family_id: bytes = bytes(16),
        report_data: bytes = bytes(64),
    ) -> EnclaveReport:
        """A report with zero reserved fields (for simulators and tests)."""
        return cls.from_bytes(
            cls(
                cpu_svn=cpu_svn,
                misc_select=misc_select,
                reserved1=bytes(12),
                isv_ext_prod_id=isv_ext_prod_id,
                attributes_flags=attributes_flags,
                attributes_xfrm=attributes_xfrm,
                mr_enclave=mr_enclave,
                reserved2=bytes(32),
                mr_signer=mr_signer,
                reserved3=bytes(32),
                config_id=config_id,
                isv_prod_id=isv_prod_id,
                isv_svn=isv_svn,
                config_svn=config_svn,
                reserved4=bytes(42),
                isv_family_id=isv_family_id,
                report_data=report_data,
            ).to_bytes()
        )
