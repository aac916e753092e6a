"""``veritee verify azure-snp-vtpm`` / ``azure-tdx-vtpm``: Azure confidential VM evidence.

EVIDENCE is the KBS evidence JSON an Azure CVM guest sends (every version found in
real guests: v0 byte lists, v1/v2 hex and base64url). The hardware report inside the
paravisor's HCL report is verified against AMD's or Intel's roots, its report data
must bind the HCL runtime claims, and the vTPM quote must be signed by the
``HCLAkPub`` key those claims name. ``--report-data`` is the value the vTPM quote's
extraData must equal (the KBS runtime-data digest; Trustee's test guests used the
ASCII bytes of "challenge").

For TDX, everything that needs no DCAP collateral is verified first, so tampered
evidence exits 3 even when collateral is missing, and a missing item exits 4 naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veritee.cli import output
from veritee.cli.verify import app
from veritee.clock import parse_instant, utcnow
from veritee.collateral import FetcherChain, HttpFetcher
from veritee.collateral.amd_kds import kds_base_from_env
from veritee.collateral.intel_pcs import pcs_base_from_env
from veritee.errors import ConfigError
from veritee.pki.certs import load_certificate, load_certificates
from veritee.server.bootstrap import cache_dir
from veritee.tee.azure.claims import AzureSnpClaims, AzureTdxClaims
from veritee.tee.azure.evidence import MAX_EVIDENCE_BYTES, AzureSnpEvidence, AzureTdxEvidence
from veritee.tee.azure.gather import gather_snp_collateral
from veritee.tee.azure.verify import finish_az_tdx, verify_az_snp, verify_az_tdx_signatures
from veritee.tee.dcap.gather import DcapSources, gather_collateral
from veritee.tee.dcap.verify import IntelRoots
from veritee.tee.snp.verify import TrustRoots
from veritee.tee.tdx.quote import TdxQuote

EvidenceArg = Annotated[
    Path, typer.Argument(help="Azure CVM evidence: the KBS evidence JSON (v0, v1 or v2).")
]
AtOpt = Annotated[str | None, typer.Option(help="Verification time, ISO-8601 (default: now).")]
ReportDataOpt = Annotated[
    str | None,
    typer.Option(help="Expected vTPM quote nonce (extraData), hex; compared exactly."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
TrustRootOpt = Annotated[
    Path | None, typer.Option(help="Also trust this root (lab or simulator), PEM or DER.")
]


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_EVIDENCE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return data


def _nonce(report_data: str | None) -> bytes | None:
    if report_data is None:
        return None
    try:
        value = bytes.fromhex(report_data.strip().removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"--report-data must be hex, got {report_data!r}") from None
    if len(value) > 64:
        raise ConfigError("--report-data is at most 64 bytes (a TPM nonce is a digest)")
    return value


def _show(tee: str, title: str, claims: dict[str, object], *, simulated: bool, json_out: bool,
          summary: str, nonce_checked: bool) -> None:
    if not nonce_checked:
        output.err.print(
            "[bold yellow]warning:[/] the vTPM quote's nonce was not checked, so the evidence "
            "may be replayed: pass --report-data with the value the guest quoted"
        )
    if json_out:
        output.print_json({"tee": tee, "claims": claims})
        return
    if simulated:
        output.err.print("[bold yellow]warning:[/] verified against a SIMULATOR root")
    output.out.print(output.claims_table(title, claims))  # type: ignore[arg-type]
    output.out.print(summary)


@app.command("azure-snp-vtpm")
def verify_azure_snp(
    evidence: EvidenceArg,
    vcek: Annotated[
        Path | None, typer.Option(help="Use this VCEK (PEM or DER) instead of the carried one.")
    ] = None,
    collateral: Annotated[
        list[Path] | None,
        typer.Option("--collateral", help="Directory with the AMD ASK/ARK (and CRLs); repeatable."),
    ] = None,
    fetch: Annotated[bool, typer.Option(help="Allow fetching from AMD KDS (cached).")] = False,
    at: AtOpt = None,
    report_data: ReportDataOpt = None,
    trust_root: TrustRootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify Azure SEV-SNP CVM evidence (SNP report in the HCL report + vTPM quote)."""
    now = parse_instant(at) if at else utcnow()
    nonce = _nonce(report_data)
    ev = AzureSnpEvidence.from_json(_read(evidence, "evidence"))
    gathered = gather_snp_collateral(
        ev,
        vek_file=vcek,
        directories=tuple(collateral or ()),
        fetcher=FetcherChain(HttpFetcher(cache_dir=cache_dir())) if fetch else None,
        kds_base=kds_base_from_env() if fetch else None,
    )
    roots = TrustRoots.amd(gathered.intermediates)
    if trust_root is not None:
        roots = roots.with_root(load_certificate(_read(trust_root, "trust root"),
                                                 what="--trust-root"))
    verified = verify_az_snp(ev, gathered, roots, now, expected_nonce=nonce)
    claims = AzureSnpClaims.from_verified(verified).to_json()
    _show(
        "az-snp-vtpm", "Azure SEV-SNP CVM claims", dict(claims),
        simulated=verified.simulated, json_out=json_out, nonce_checked=nonce is not None,
        summary=f"[bold green]verified[/]: HCL report v{ev.hcl.version} with an SNP report of an "
        f"AMD {verified.snp.product.value} chip (chain to "
        f"{verified.snp.chain.root.subject.rfc4514_string()}), vTPM quote signed by HCLAkPub"
        + ("" if nonce is not None else " (nonce NOT checked: pass --report-data)")
        + f" at {now.isoformat()}",
    )


def _intel_roots(quote: TdxQuote, trust_root: Path | None) -> IntelRoots:
    data = quote.quote.signature_data.qe.certification_data.data
    roots = IntelRoots.intel(
        load_certificates(data.rstrip(b"\0"), what="PCK certificate chain")
        if b"CERTIFICATE" in data
        else []
    )
    if trust_root is not None:
        roots = roots.with_root(load_certificate(_read(trust_root, "trust root"),
                                                 what="--trust-root"))
    return roots


@app.command("azure-tdx-vtpm")
def verify_azure_tdx(
    evidence: EvidenceArg,
    collateral: Annotated[
        list[Path] | None,
        typer.Option(
            "--collateral",
            help="Offline DCAP collateral directory (Intel PCS files or collateral.json); "
            "repeatable.",
        ),
    ] = None,
    fetch: Annotated[bool, typer.Option(help="Allow fetching from Intel PCS (cached).")] = False,
    at: AtOpt = None,
    report_data: ReportDataOpt = None,
    trust_root: TrustRootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify Azure TDX CVM evidence (TD quote + HCL report + vTPM quote)."""
    now = parse_instant(at) if at else utcnow()
    nonce = _nonce(report_data)
    ev = AzureTdxEvidence.from_json(_read(evidence, "evidence"))
    td_quote = TdxQuote.from_bytes(ev.td_quote)
    roots = _intel_roots(td_quote, trust_root)
    stage = verify_az_tdx_signatures(ev, roots, now, expected_nonce=nonce)
    sources = DcapSources(
        directories=tuple(collateral or ()),
        fetcher=FetcherChain(HttpFetcher(cache_dir=cache_dir())) if fetch else None,
        pcs_base=pcs_base_from_env() if fetch else None,
    )
    gathered = gather_collateral(stage.dcap, sources)
    verified = finish_az_tdx(stage, gathered, roots, now)
    claims = AzureTdxClaims.from_verified(verified).to_json()
    _show(
        "az-tdx-vtpm", "Azure TDX CVM claims", dict(claims),
        simulated=verified.simulated, json_out=json_out, nonce_checked=nonce is not None,
        summary=f"[bold green]verified[/]: TD quote v{td_quote.quote.version} made from the HCL "
        f"report's TDREPORT, PCK chain to {stage.dcap.chain.root.subject.rfc4514_string()}, "
        f"TCB status {verified.tdx.dcap.tcb.status}, vTPM quote signed by HCLAkPub"
        + ("" if nonce is not None else " (nonce NOT checked: pass --report-data)")
        + f" at {now.isoformat()}",
    )
