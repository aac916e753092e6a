"""A simulated TDX platform: byte-exact v4/v5 quotes over TD reports, signed collateral, CCEL.

THIS IS A SIMULATOR (see :mod:`veritee.tee.dcap.sim`): never trusted unless its
root is passed explicitly.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from veritee.tee.dcap.quote import BodyType, TeeType
from veritee.tee.dcap.sim import SIMULATOR_BANNER, SimulatedDcapPlatform
from veritee.tee.tdx.ccel import EV_NO_ACTION, SPEC_ID_SIGNATURE, TPM_ALG_SHA384
from veritee.tee.tdx.quote import TD_ATTR_SEPT_VE_DISABLE, TdReport, TdxQuote

__all__ = ["SIMULATOR_BANNER", "SimulatedTdxPlatform", "build_event_log"]

DEFAULT_TEE_TCB_SVN = bytes([5, 1, 5]) + bytes(13)


def build_event_log(events: Sequence[tuple[int, int, bytes]]) -> bytes:
    """A CCEL log (SHA-384) with ``(mr_index, event_type, data)`` events, digest = SHA-384(data)."""
    spec = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 1)
    spec += struct.pack("<HH", TPM_ALG_SHA384, 48) + b"\0"
    out = struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)) + spec
    for index, event_type, data in events:
        digest = hashlib.sha384(data).digest()
        out += struct.pack("<IIIH", index, event_type, 1, TPM_ALG_SHA384) + digest
        out += struct.pack("<I", len(data)) + data
    return out + bytes(64)


def replayed(events: Sequence[tuple[int, int, bytes]]) -> list[bytes]:
    rtmrs = [bytes(48)] * 4
    for index, event_type, data in events:
        if event_type == EV_NO_ACTION or not 1 <= index <= 4:
            continue
        rtmrs[index - 1] = hashlib.sha384(rtmrs[index - 1] + hashlib.sha384(data).digest()).digest()
    return rtmrs


@dataclass(frozen=True)
class SimulatedTdxPlatform:
    dcap: SimulatedDcapPlatform

    @classmethod
    def generate(cls, **kwargs: object) -> SimulatedTdxPlatform:
        return cls(SimulatedDcapPlatform.generate(TeeType.TDX, **kwargs))  # type: ignore[arg-type]

    def report(
        self,
        *,
        report_data: bytes = b"",
        mr_td: bytes | None = None,
        rtmrs: Sequence[bytes] | None = None,
        tee_tcb_svn: bytes = DEFAULT_TEE_TCB_SVN,
        td15: bool = False,
        tee_tcb_svn2: bytes | None = None,
        td_attributes: int = TD_ATTR_SEPT_VE_DISABLE,
    ) -> TdReport:
        regs = list(rtmrs) if rtmrs is not None else [bytes(48)] * 4
        return TdReport(
            tee_tcb_svn=tee_tcb_svn,
            mr_seam=hashlib.sha384(b"veritee simulated TDX module").digest(),
            mr_signer_seam=bytes(48),
            seam_attributes=bytes(8),
            td_attributes=td_attributes.to_bytes(8, "little"),
            xfam=bytes.fromhex("e702060000000000"),
            mr_td=mr_td if mr_td is not None else hashlib.sha384(b"simulated TD").digest(),
            mr_config_id=bytes(48),
            mr_owner=bytes(48),
            mr_owner_config=bytes(48),
            rtmr0=regs[0],
            rtmr1=regs[1],
            rtmr2=regs[2],
            rtmr3=regs[3],
            report_data=report_data.ljust(64, b"\0"),
            tee_tcb_svn2=(tee_tcb_svn2 or tee_tcb_svn) if td15 else None,
            mr_servicetd=bytes(48) if td15 else None,
        )

    def quote(
        self, report: TdReport | None = None, *, version: int = 4, **kwargs: object
    ) -> TdxQuote:
        report = report or self.report()
        body_type = (BodyType.TD_REPORT15 if report.is_td15 else BodyType.TD_REPORT10) if (
            version >= 5
        ) else None
        quote = self.dcap.quote(
            report.to_bytes(), version=version, body_type=body_type, **kwargs  # type: ignore[arg-type]
        )
        return TdxQuote.from_quote(quote)
