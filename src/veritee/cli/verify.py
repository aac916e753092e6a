"""``veritee verify <tee> ...``: verify evidence offline (or with opt-in fetching)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veritee.cli import output
from veritee.clock import parse_instant, utcnow
from veritee.collateral import FetcherChain, HttpFetcher
from veritee.collateral.amd_kds import kds_base_from_env
from veritee.errors import ConfigError
from veritee.pki.certs import load_certificate
from veritee.server.bootstrap import cache_dir
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.evidence import decode_report_blob
from veritee.tee.snp.gather import SnpSources, gather_collateral
from veritee.tee.snp.report import SnpReport
from veritee.tee.snp.verify import TrustRoots, verify_report

app = typer.Typer(help="Verify evidence against the vendors' roots.", no_args_is_help=True)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _parse_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value.strip().removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"{what} must be hex, got {value!r}") from None


@app.command("snp")
def verify_snp(
    report: Annotated[Path, typer.Argument(help="Report: raw 1184 bytes, hex or base64 text.")],
    certs: Annotated[
        Path | None, typer.Option(help="Directory with vcek.der/.pem, ask.pem, ark.pem.")
    ] = None,
    vcek: Annotated[Path | None, typer.Option(help="The VCEK or VLEK (PEM or DER).")] = None,
    collateral: Annotated[
        Path | None, typer.Option(help="Offline collateral directory (certs, CRLs).")
    ] = None,
    fetch: Annotated[bool, typer.Option(help="Allow fetching from AMD KDS (cached).")] = False,
    at: Annotated[
        str | None, typer.Option(help="Verification time, ISO-8601 (default: now).")
    ] = None,
    report_data: Annotated[
        str | None, typer.Option(help="Expected REPORT_DATA (hex, zero-padded to 64 bytes).")
    ] = None,
    trust_root: Annotated[
        Path | None, typer.Option(help="Also trust this ARK (lab or simulator root).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Verify an AMD SEV-SNP attestation report end to end."""
    if certs is not None and vcek is not None:
        raise ConfigError("use either --certs DIR or --vcek FILE, not both")
    now = parse_instant(at) if at else utcnow()
    expected = _parse_hex(report_data, "--report-data") if report_data is not None else None
    if expected is not None and len(expected) > 64:
        raise ConfigError("--report-data is at most 64 bytes")
    raw, table = decode_report_blob(_read(report, "report"))
    parsed = SnpReport.from_bytes(raw)

    directories = tuple(p for p in (certs, collateral) if p is not None)
    fetcher = None
    if fetch:
        fetcher = FetcherChain(HttpFetcher(cache_dir=cache_dir()))
    sources = SnpSources(
        vek_file=vcek,
        directories=directories,
        cert_table=table,
        fetcher=fetcher,
        kds_base=kds_base_from_env() if fetch else None,
    )
    gathered = gather_collateral(parsed, sources)
    roots = TrustRoots.amd(gathered.intermediates)
    if trust_root is not None:
        root_cert = load_certificate(_read(trust_root, "trust root"), what="--trust-root")
        roots = roots.with_root(root_cert)
    verified = verify_report(parsed, gathered, roots, now, expected_report_data=expected)
    claims = SnpClaims.from_verified(verified).to_json()
    if json_out:
        output.print_json({"tee": "snp", "claims": claims})
        return
    if verified.simulated:
        output.err.print("[bold yellow]warning:[/] verified against a SIMULATOR root, not AMD's")
    output.out.print(output.claims_table("SEV-SNP claims", claims))
    output.out.print(
        f"[bold green]verified[/]: {verified.signing_key.name} of an AMD {verified.product.value} "
        f"chip, chain to ARK {verified.chain.root.subject.rfc4514_string()} "
        f"at {now.isoformat()}"
    )
