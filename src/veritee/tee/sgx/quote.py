"""SGX quotes: a DCAP quote whose body is an enclave report (``sgx_report_body_t``).

Byte format only: no crypto, no policy. The report layout itself lives in
``veritee.tee.dcap.report`` because every DCAP quote's QE report has it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from veritee.errors import EvidenceFormatError
from veritee.tee.dcap.quote import Quote, TeeType
from veritee.tee.dcap.report import EnclaveReport


@dataclass(frozen=True)
class SgxQuote:
    quote: Quote
    report: EnclaveReport

    @classmethod
    def from_quote(cls, quote: Quote) -> SgxQuote:
        if quote.tee is not TeeType.SGX:
            raise EvidenceFormatError(
                "not an SGX quote (TEE type is TDX)", hint="use `veritee verify tdx`"
            )
        return cls(quote, EnclaveReport.from_bytes(quote.body, what="SGX quote body"))

    @classmethod
    def from_bytes(cls, data: bytes) -> SgxQuote:
        return cls.from_quote(Quote.from_bytes(data))

    def to_bytes(self) -> bytes:
        return self.quote.to_bytes()
