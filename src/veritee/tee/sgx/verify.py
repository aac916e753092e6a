"""Verify an SGX quote: DCAP signatures and collateral, and the expected REPORTDATA.

Pure: takes the parsed quote, gathered collateral, trust roots and an explicit
``now``. :func:`verify_sgx_signatures` needs no collateral, so tampered evidence
is refused before collateral is looked up.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from veritee.errors import MismatchError
from veritee.tee.dcap.report import EnclaveReport
from veritee.tee.dcap.verify import (
    DcapCollateral,
    IntelRoots,
    VerifiedDcapQuote,
    VerifiedQuoteSignature,
    evaluate_collateral,
    verify_quote_signatures,
)
from veritee.tee.sgx.quote import SgxQuote


@dataclass(frozen=True)
class VerifiedSgxQuote:
    quote: SgxQuote
    dcap: VerifiedDcapQuote

    @property
    def report(self) -> EnclaveReport:
        return self.quote.report

    @property
    def simulated(self) -> bool:
        return self.dcap.simulated


def verify_sgx_signatures(
    quote: SgxQuote,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    expected_report_data: bytes | None = None,
) -> VerifiedQuoteSignature:
    verified = verify_quote_signatures(quote.quote, roots, now)
    if expected_report_data is not None:
        if len(expected_report_data) > 64:
            raise MismatchError("expected report data is longer than 64 bytes")
        if not hmac.compare_digest(expected_report_data.ljust(64, b"\0"), quote.report.report_data):
            raise MismatchError(
                "REPORTDATA does not match the expected value",
                hint="the evidence was produced for another nonce or key",
            )
    return verified


def finish_sgx(
    quote: SgxQuote,
    verified: VerifiedQuoteSignature,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
) -> VerifiedSgxQuote:
    return VerifiedSgxQuote(quote, evaluate_collateral(verified, collateral, roots, now))


def verify_sgx_quote(
    quote: SgxQuote,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    expected_report_data: bytes | None = None,
) -> VerifiedSgxQuote:
    verified = verify_sgx_signatures(quote, roots, now, expected_report_data=expected_report_data)
    return finish_sgx(quote, verified, collateral, roots, now)
