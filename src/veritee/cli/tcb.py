"""``veritee tcb report``: what trusted computing base a piece of verified evidence covers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from veritee.cli import output
from veritee.clock import parse_instant, utcnow
from veritee.errors import ConfigError

tcb_app = typer.Typer(
    help="Audit the trusted computing base that verified evidence covers.", no_args_is_help=True
)


def _json_file(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not JSON: {exc}") from None


@tcb_app.command("report")
def tcb_report(
    evidence: Annotated[
        Path,
        typer.Argument(
            help="Verified claims: `veritee verify <tee> --json` output, a KBS policy input, "
            "decoded EAR token claims, or bare claims with --tee."
        ),
    ],
    rv: Annotated[
        Path | None,
        typer.Option(
            "--rv",
            help="Reference values: JSON name -> values, or `veritee rv list --json` output "
            "(which carries provenance).",
        ),
    ] = None,
    components: Annotated[
        Path | None,
        typer.Option(help="Component metadata (JSON, TOML or YAML): name, layer, open_source, "
                     "audited, audited_by, release_date, version, url."),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as one HTML page here.")
    ] = None,
    tee: Annotated[
        str | None, typer.Option(help="TEE of bare claims (snp, tdx, tpm, ...).")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Report time, ISO-8601 (default: now); ages count to it.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """List each layer of the TCB: measured? matched a reference value? open source, audited, age;
    and what the evidence does NOT cover."""
    from veritee.appraisal.tcb import build_report, evidence_from, load_components, reference_info
    from veritee.appraisal.tcb_html import render_html

    now = parse_instant(at) if at else utcnow()
    pairs = evidence_from(_json_file(evidence, "evidence"), tee)
    reference = reference_info(_json_file(rv, "reference values"), now=now) if rv else {}
    comps = load_components(components) if components else ()
    report = build_report(pairs, reference, comps, now=now)
    if html is not None:
        try:
            html.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {html}: {exc.strerror}") from None
        output.err.print(f"[green]wrote[/] {html}")
    if json_out:
        output.print_json(report.to_json())
        return
    _print(report)


def _print(report: object) -> None:
    from rich.table import Table

    from veritee.appraisal.tcb import LAYER_KINDS, TcbReport

    assert isinstance(report, TcbReport)
    style = {"yes": "green", "matched": "green", "no": "red", "mismatch": "bold red",
             "unknown": "yellow", "missing": "yellow", "partial": "yellow", "none": "dim"}
    if report.simulated:
        output.out.print("[bold red]SIMULATED EVIDENCE: not real hardware[/]")
    table = Table(title=f"Trusted computing base: {report.subject}", show_lines=True)
    table.add_column("layer", style="bold", max_width=30)
    table.add_column("measured", no_wrap=True)
    table.add_column("reference value", max_width=30)
    table.add_column("components", max_width=40)
    for f in report.findings:
        comps = []
        for c in f.components:
            bits = [c.name + (f" {c.version}" if c.version else "")]
            if c.open_source is not None:
                bits.append("open source" if c.open_source else "CLOSED source")
            if c.audited is not None:
                bits.append(f"audited by {c.audited_by}" if c.audited and c.audited_by
                            else ("audited" if c.audited else "NOT audited"))
            age = c.age_days(report.generated_at)
            if age is not None:
                bits.append(f"{age} days old")
            comps.append(", ".join(bits))
        refs = "\n".join(f"{r.name}: {r.state}" for r in f.references)
        warn = "".join(f"\n[red]! {w}[/]" for w in f.warnings)
        table.add_row(
            f"{f.title}\n[dim]{LAYER_KINDS.get(f.layer, f.layer)}[/]{warn}",
            f"[{style.get(f.measured, 'white')}]{f.measured}[/]",
            f"[{style.get(f.reference, 'white')}]{f.reference}[/]" + (f"\n{refs}" if refs else ""),
            "\n".join(comps) or "[dim]-[/]",
        )
    output.out.print(table)
    output.out.print("[bold]Not covered by this evidence:[/]")
    for g in report.not_covered:
        output.out.print(f"  [yellow]-[/] [bold]{g.what}[/]: {g.why}", soft_wrap=True)
