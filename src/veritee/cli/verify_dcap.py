"""``veritee verify tdx`` / ``veritee verify sgx``: DCAP quotes against the Intel SGX Root CA.

Order of work: parse the evidence, verify everything that needs no collateral
(quote and QE report signatures, PCK chain to the pinned root, REPORTDATA, RTMR
replay), then gather collateral (offline directories, then Intel PCS only with
``--fetch``) and evaluate it. So tampered evidence exits 3 even when collateral
is missing, and a missing item exits 4 naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veritee.cli import output
from veritee.cli.verify import app
from veritee.clock import parse_instant, utcnow
from veritee.collateral import FetcherChain, HttpFetcher
from veritee.collateral.intel_pcs import pcs_base_from_env
from veritee.errors import ConfigError
from veritee.pki.certs import load_certificate, load_certificates
from veritee.server.bootstrap import cache_dir
from veritee.tee.dcap.evidence import decode_evidence
from veritee.tee.dcap.gather import DcapSources, gather_collateral
from veritee.tee.dcap.quote import Quote
from veritee.tee.dcap.verify import IntelRoots
from veritee.tee.sgx.claims import SgxClaims
from veritee.tee.sgx.quote import SgxQuote
from veritee.tee.sgx.verify import finish_sgx, verify_sgx_signatures
from veritee.tee.tdx.ccel import CcelLog
from veritee.tee.tdx.claims import TdxClaims
from veritee.tee.tdx.quote import TdxQuote
from veritee.tee.tdx.verify import finish_tdx, verify_tdx_signatures

QuoteArg = Annotated[
    Path, typer.Argument(help="Quote: raw bytes, hex or base64 text, or KBS evidence JSON.")
]
CollateralOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--collateral",
        help="Offline collateral directory (Intel PCS files or collateral.json); repeatable.",
    ),
]
FetchOpt = Annotated[bool, typer.Option(help="Allow fetching from Intel PCS (cached).")]
AtOpt = Annotated[str | None, typer.Option(help="Verification time, ISO-8601 (default: now).")]
ReportDataOpt = Annotated[
    str | None, typer.Option(help="Expected REPORTDATA (hex, zero-padded to 64 bytes).")
]
TrustRootOpt = Annotated[
    Path | None, typer.Option(help="Also trust this root (lab or simulator), PEM or DER.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _expected(report_data: str | None) -> bytes | None:
    if report_data is None:
        return None
    try:
        value = bytes.fromhex(report_data.strip().removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"--report-data must be hex, got {report_data!r}") from None
    if len(value) > 64:
        raise ConfigError("--report-data is at most 64 bytes")
    return value


def _roots(quote: Quote, trust_root: Path | None) -> IntelRoots:
    roots = IntelRoots.intel(
        load_certificates(
            quote.signature_data.qe.certification_data.data.rstrip(b"\0") or b"-",
            what="PCK certificate chain",
        )
        if b"CERTIFICATE" in quote.signature_data.qe.certification_data.data
        else []
    )
    if trust_root is not None:
        root = load_certificate(_read(trust_root, "trust root"), what="--trust-root")
        roots = roots.with_root(root)
    return roots


def _sources(collateral: list[Path] | None, fetch: bool) -> DcapSources:
    return DcapSources(
        directories=tuple(collateral or ()),
        fetcher=FetcherChain(HttpFetcher(cache_dir=cache_dir())) if fetch else None,
        pcs_base=pcs_base_from_env() if fetch else None,
    )


def _show(tee: str, title: str, claims: dict[str, object], simulated: bool, json_out: bool,
          summary: str) -> None:
    if json_out:
        output.print_json({"tee": tee, "claims": claims})
        return
    if simulated:
        output.err.print("[bold yellow]warning:[/] verified against a SIMULATOR root, not Intel's")
    output.out.print(output.claims_table(title, claims))  # type: ignore[arg-type]
    output.out.print(summary)


@app.command("tdx")
def verify_tdx(
    quote: QuoteArg,
    collateral: CollateralOpt = None,
    fetch: FetchOpt = False,
    at: AtOpt = None,
    report_data: ReportDataOpt = None,
    event_log: Annotated[
        Path | None, typer.Option(help="CC event log (CCEL log area) to replay against RTMRs.")
    ] = None,
    trust_root: TrustRootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify an Intel TDX quote (v4/v5) with DCAP collateral."""
    now = parse_instant(at) if at else utcnow()
    expected = _expected(report_data)
    evidence = decode_evidence(_read(quote, "quote"))
    parsed = TdxQuote.from_bytes(evidence.quote)
    log_bytes = _read(event_log, "event log") if event_log is not None else evidence.event_log
    log = CcelLog.from_bytes(log_bytes) if log_bytes is not None else None
    roots = _roots(parsed.quote, trust_root)
    verified = verify_tdx_signatures(
        parsed, roots, now, expected_report_data=expected, event_log=log
    )
    gathered = gather_collateral(verified, _sources(collateral, fetch))
    result = finish_tdx(parsed, verified, gathered, roots, now, event_log=log)
    claims = TdxClaims.from_verified(result).to_json()
    _show(
        "tdx", "Intel TDX claims", dict(claims), result.simulated, json_out,
        f"[bold green]verified[/]: TDX quote v{parsed.quote.version}, PCK chain to "
        f"{verified.chain.root.subject.rfc4514_string()}, TCB status "
        f"{result.dcap.tcb.status} at {now.isoformat()}",
    )


@app.command("sgx")
def verify_sgx(
    quote: QuoteArg,
    collateral: CollateralOpt = None,
    fetch: FetchOpt = False,
    at: AtOpt = None,
    report_data: ReportDataOpt = None,
    trust_root: TrustRootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify an Intel SGX DCAP quote (v3) with DCAP collateral."""
    now = parse_instant(at) if at else utcnow()
    expected = _expected(report_data)
    evidence = decode_evidence(_read(quote, "quote"))
    parsed = SgxQuote.from_bytes(evidence.quote)
    roots = _roots(parsed.quote, trust_root)
    verified = verify_sgx_signatures(parsed, roots, now, expected_report_data=expected)
    gathered = gather_collateral(verified, _sources(collateral, fetch))
    result = finish_sgx(parsed, verified, gathered, roots, now)
    claims = SgxClaims.from_verified(result).to_json()
    _show(
        "sgx", "Intel SGX claims", dict(claims), result.simulated, json_out,
        f"[bold green]verified[/]: SGX quote v{parsed.quote.version}, PCK chain to "
        f"{verified.chain.root.subject.rfc4514_string()}, TCB status "
        f"{result.dcap.tcb.status} at {now.isoformat()}",
    )
