"""Verify a TDX quote: DCAP signatures and collateral, REPORTDATA, and CCEL replay of RTMRs.

Pure: takes the parsed quote, gathered collateral, trust roots and an explicit
``now``. :func:`verify_tdx_signatures` needs no collateral (quote and QE report
signatures, PCK chain, expected REPORTDATA, RTMR replay), so tampered evidence is
refused before collateral is looked up; :func:`verify_tdx_quote` does both stages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from veritee.errors import MismatchError
from veritee.tee.dcap.tcb import TdxTcb
from veritee.tee.dcap.verify import (
    DcapCollateral,
    IntelRoots,
    VerifiedDcapQuote,
    VerifiedQuoteSignature,
    evaluate_collateral,
    verify_quote_signatures,
)
from veritee.tee.tdx.ccel import EV_NO_ACTION, TPM_ALG_SHA384, CcelLog
from veritee.tee.tdx.quote import TdReport, TdxQuote


@dataclass(frozen=True)
class VerifiedTdxQuote:
    quote: TdxQuote
    dcap: VerifiedDcapQuote
    event_log: CcelLog | None = None

    @property
    def report(self) -> TdReport:
        return self.quote.report

    @property
    def simulated(self) -> bool:
        return self.dcap.simulated


def tdx_tcb(report: TdReport) -> TdxTcb:
    return TdxTcb(
        tee_tcb_svn=report.tee_tcb_svn,
        mr_signer_seam=report.mr_signer_seam,
        seam_attributes=report.seam_attributes,
        tee_tcb_svn2=report.tee_tcb_svn2,
    )


def replay_rtmrs(log: CcelLog) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..3 as the events of ``log`` extend them (SHA-384, from zero)."""
    rtmrs = [bytes(48)] * 4
    for n, event in enumerate(log.events):
        if event.event_type == EV_NO_ACTION or event.mr_index == 0:
            continue  # not extended (MRTD is measured by the TDX module, not replayed)
        if not 1 <= event.mr_index <= 4:
            raise MismatchError(
                f"event log replay: event {n} targets MR index {event.mr_index} (only 1..4 "
                "are RTMRs)"
            )
        digest = event.digest(TPM_ALG_SHA384)
        if digest is None:
            raise MismatchError(f"event log replay: event {n} has no SHA-384 digest")
        i = event.mr_index - 1
        rtmrs[i] = hashlib.sha384(rtmrs[i] + digest).digest()
    return rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]


def check_event_log(report: TdReport, log: CcelLog) -> None:
    replayed = replay_rtmrs(log)
    for i, (got, want) in enumerate(zip(replayed, report.rtmrs, strict=True)):
        if not hmac.compare_digest(got, want):
            raise MismatchError(
                f"event log replay: RTMR{i} replays to {got.hex()[:16]}..., the quote has "
                f"{want.hex()[:16]}...",
                hint="the event log does not belong to this TD, or it was altered",
            )


def check_report_data(actual: bytes, expected: bytes) -> None:
    if len(expected) > 64:
        raise MismatchError("expected report data is longer than 64 bytes")
    if not hmac.compare_digest(expected.ljust(64, b"\0"), actual):
        raise MismatchError(
            "REPORTDATA does not match the expected value",
            hint="the evidence was produced for another nonce or key",
        )


def verify_tdx_signatures(
    quote: TdxQuote,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    expected_report_data: bytes | None = None,
    event_log: CcelLog | None = None,
) -> VerifiedQuoteSignature:
    """Everything that needs no collateral: signatures, PCK chain, REPORTDATA, RTMR replay."""
    verified = verify_quote_signatures(quote.quote, roots, now)
    if expected_report_data is not None:
        check_report_data(quote.report.report_data, expected_report_data)
    if event_log is not None:
        check_event_log(quote.report, event_log)
    return verified


def finish_tdx(
    quote: TdxQuote,
    verified: VerifiedQuoteSignature,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    event_log: CcelLog | None = None,
) -> VerifiedTdxQuote:
    """Stage 2 for a quote that passed :func:`verify_tdx_signatures`."""
    dcap = evaluate_collateral(verified, collateral, roots, now, tdx=tdx_tcb(quote.report))
    return VerifiedTdxQuote(quote, dcap, event_log)


def verify_tdx_quote(
    quote: TdxQuote,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    expected_report_data: bytes | None = None,
    event_log: CcelLog | None = None,
) -> VerifiedTdxQuote:
    verified = verify_tdx_signatures(
        quote, roots, now, expected_report_data=expected_report_data, event_log=event_log
    )
    return finish_tdx(quote, verified, collateral, roots, now, event_log=event_log)
