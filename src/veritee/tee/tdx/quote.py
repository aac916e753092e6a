"""TDX quote bodies: TD report 1.0 (quote v4, v5 type 2) and 1.5 (quote v5 type 3).

Byte format only: no crypto, no policy. All multi-byte integers are little-endian;
measurements are kept as bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from veritee.errors import EvidenceFormatError
from veritee.tee.dcap.quote import BodyType, Quote, TeeType

TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
_LAYOUT10 = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
assert _LAYOUT10.size == TD_REPORT10_SIZE

# TD_ATTRIBUTES bits (Intel TDX module ABI).
TD_ATTR_DEBUG = 1 << 0
TD_ATTR_SEPT_VE_DISABLE = 1 << 28
TD_ATTR_PKS = 1 << 30
TD_ATTR_KL = 1 << 31
TD_ATTR_PERFMON = 1 << 63


@dataclass(frozen=True)
class TdReport:
    """A TD report body. ``tee_tcb_svn2`` and ``mr_servicetd`` exist only in TD report 1.5."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes | None = None
    _raw: bytes = field(init=False, default=b"", compare=False, repr=False)

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    @property
    def td_attributes_value(self) -> int:
        return int.from_bytes(self.td_attributes, "little")

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes_value & TD_ATTR_DEBUG)

    @property
    def is_td15(self) -> bool:
        return self.tee_tcb_svn2 is not None

    @classmethod
    def from_bytes(cls, data: bytes) -> TdReport:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("TD report must be bytes")
        if len(data) not in (TD_REPORT10_SIZE, TD_REPORT15_SIZE):
            raise EvidenceFormatError(
                f"TD report must be {TD_REPORT10_SIZE} or {TD_REPORT15_SIZE} bytes, got {len(data)}"
            )
        f = _LAYOUT10.unpack(data[:TD_REPORT10_SIZE])
        svn2 = servicetd = None
        if len(data) == TD_REPORT15_SIZE:
            svn2, servicetd = data[584:600], data[600:648]
        report = cls(
            tee_tcb_svn=f[0], mr_seam=f[1], mr_signer_seam=f[2], seam_attributes=f[3],
            td_attributes=f[4], xfam=f[5], mr_td=f[6], mr_config_id=f[7], mr_owner=f[8],
            mr_owner_config=f[9], rtmr0=f[10], rtmr1=f[11], rtmr2=f[12], rtmr3=f[13],
            report_data=f[14], tee_tcb_svn2=svn2, mr_servicetd=servicetd,
        )
        object.__setattr__(report, "_raw", data)
        return report

    def to_bytes(self) -> bytes:
        if self._raw:
            return self._raw
        base = _LAYOUT10.pack(
            self.tee_tcb_svn, self.mr_seam, self.mr_signer_seam, self.seam_attributes,
            self.td_attributes, self.xfam, self.mr_td, self.mr_config_id, self.mr_owner,
            self.mr_owner_config, self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3,
            self.report_data,
        )
        for name, value, size in (
            ("tee_tcb_svn", self.tee_tcb_svn, 16), ("report_data", self.report_data, 64),
            ("mr_td", self.mr_td, 48),
        ):
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes")
        if self.tee_tcb_svn2 is None:
            return base
        if len(self.tee_tcb_svn2) != 16 or len(self.mr_servicetd or b"") != 48:
            raise ValueError("TD report 1.5 needs tee_tcb_svn2 (16) and mr_servicetd (48)")
        return base + self.tee_tcb_svn2 + (self.mr_servicetd or b"")


@dataclass(frozen=True)
class TdxQuote:
    """A DCAP quote whose body is a TD report."""

    quote: Quote
    report: TdReport

    @classmethod
    def from_quote(cls, quote: Quote) -> TdxQuote:
        if quote.tee is not TeeType.TDX:
            raise EvidenceFormatError(
                "not a TDX quote (TEE type is SGX)", hint="use `veritee verify sgx`"
            )
        if quote.version < 4:
            raise EvidenceFormatError(f"TDX quotes are version 4 or 5, not {quote.version}")
        report = TdReport.from_bytes(quote.body)
        if quote.body_type is BodyType.TD_REPORT15 and not report.is_td15:
            raise EvidenceFormatError("quote v5 body type 3 must hold a TD report 1.5")
        return cls(quote, report)

    @classmethod
    def from_bytes(cls, data: bytes) -> TdxQuote:
        return cls.from_quote(Quote.from_bytes(data))

    def to_bytes(self) -> bytes:
        return self.quote.to_bytes()
