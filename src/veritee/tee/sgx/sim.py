"""A simulated SGX platform: byte-exact v3 quotes over enclave reports, signed collateral.

THIS IS A SIMULATOR (see :mod:`veritee.tee.dcap.sim`): never trusted unless its
root is passed explicitly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from veritee.tee.dcap.quote import TeeType
from veritee.tee.dcap.report import EnclaveReport
from veritee.tee.dcap.sim import SIMULATOR_BANNER, SimulatedDcapPlatform
from veritee.tee.sgx.quote import SgxQuote

__all__ = ["SIMULATOR_BANNER", "SimulatedSgxPlatform"]


@dataclass(frozen=True)
class SimulatedSgxPlatform:
    dcap: SimulatedDcapPlatform

    @classmethod
    def generate(cls, **kwargs: object) -> SimulatedSgxPlatform:
        return cls(SimulatedDcapPlatform.generate(TeeType.SGX, **kwargs))  # type: ignore[arg-type]

    def report(
        self,
        *,
        report_data: bytes = b"",
        mr_enclave: bytes | None = None,
        mr_signer: bytes | None = None,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
    ) -> EnclaveReport:
        return EnclaveReport.build(
            cpu_svn=bytes(self.dcap.components),
            attributes_flags=0x05 | (0x02 if debug else 0),
            attributes_xfrm=0xE7,
            mr_enclave=mr_enclave or hashlib.sha256(b"simulated enclave").digest(),
            mr_signer=mr_signer or hashlib.sha256(b"simulated enclave signer").digest(),
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            report_data=report_data.ljust(64, b"\0"),
        )

    def quote(
        self, report: EnclaveReport | None = None, *, version: int = 3, **kwargs: object
    ) -> SgxQuote:
        from veritee.tee.dcap.quote import BodyType

        report = report or self.report()
        quote = self.dcap.quote(
            report.to_bytes(), version=version,
            body_type=BodyType.SGX_ENCLAVE if version >= 5 else None,
            **kwargs,  # type: ignore[arg-type]
        )
        return SgxQuote.from_quote(quote)
