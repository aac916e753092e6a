"""Entry point of the ``veritee`` command."""

from __future__ import annotations

import sys
import warnings

import typer

from veritee import __version__
from veritee.cli import output, sim, verify
from veritee.clock import utcnow
from veritee.errors import VeriteeError

app = typer.Typer(
    name="veritee",
    help="First-party remote attestation and key broker for confidential computing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(verify.app, name="verify")
app.add_typer(sim.app, name="sim")

# Feature modules register their commands on import (e.g. ``@verify.app.command("tdx")``).
# One import line per module, kept sorted.
# -- feature command modules --
# -- end feature command modules --


@app.command()
def version() -> None:
    """Print the version."""
    output.out.print(f"veritee {__version__}")


@app.command()
def demo() -> None:
    """Simulate an SNP guest, verify its report, and show that tampering is caught."""
    from veritee.tee.snp.claims import SnpClaims
    from veritee.tee.snp.sim import SIMULATOR_BANNER, SimulatedSnpPlatform
    from veritee.tee.snp.verify import SnpCollateral, TrustRoots, verify_report

    output.err.print(f"[bold yellow]{SIMULATOR_BANNER}[/]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        platform = SimulatedSnpPlatform.generate()
    nonce = b"veritee-demo-nonce".ljust(64, b"\0")
    report = platform.report(report_data=nonce, measurement=bytes(range(48)))
    collateral = SnpCollateral(vek=platform.vcek, intermediates=(platform.ask, platform.ark))
    now = utcnow()
    verified = verify_report(
        report,
        collateral,
        TrustRoots.amd(()).with_root(platform.ark),
        now,
        expected_report_data=nonce,
    )
    output.out.print(
        output.claims_table(
            "simulated SEV-SNP guest: verified claims", SnpClaims.from_verified(verified).to_json()
        )
    )
    tampered = bytearray(report.to_bytes())
    tampered[0x90] ^= 1  # one bit of the measurement
    from veritee.tee.snp.report import SnpReport

    try:
        verify_report(
            SnpReport.from_bytes(bytes(tampered)),
            collateral,
            TrustRoots.amd(()).with_root(platform.ark),
            now,
        )
    except VeriteeError as exc:
        output.out.print(f"[green]tampered report refused as expected:[/] {exc.message}")
    else:  # pragma: no cover - would be a verifier bug
        raise SystemExit("BUG: a tampered report verified")
    try:
        verify_report(report, collateral, TrustRoots.amd(()), now)
    except VeriteeError as exc:
        output.out.print(f"[green]simulator root not trusted by default:[/] {exc.message}")
    else:  # pragma: no cover
        raise SystemExit("BUG: the simulator root was trusted without being asked")
    output.out.print("[bold green]demo complete[/]")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI mapping errors to the documented exit codes (1 usage, 2..5 verification)."""
    try:
        app(args=argv, prog_name="veritee", standalone_mode=False)
    except VeriteeError as exc:
        return output.report_error(exc)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        output.err.print("aborted")
        return 1
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            output.err.print(f"usage error: {exc}")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
