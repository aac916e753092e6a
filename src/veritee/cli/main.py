"""Entry point of the ``veritee`` command."""

from __future__ import annotations

import sys

import typer

from veritee import __version__
from veritee.cli import output, service, sim, verify
from veritee.cli import tenants as tenants_cli
from veritee.errors import VeriteeError

app = typer.Typer(
    name="veritee",
    help="First-party remote attestation and key broker for confidential computing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(verify.app, name="verify")
app.add_typer(sim.app, name="sim")
app.command("init")(service.init)
app.command("serve")(service.serve)
app.command("attest")(service.attest)
app.add_typer(service.resource_app, name="resource")
app.add_typer(service.policy_app, name="policy")
app.add_typer(service.rv_app, name="rv")
app.add_typer(service.audit_app, name="audit")
app.add_typer(service.backup_app, name="backup")
app.add_typer(tenants_cli.tenant_app, name="tenant")

# Feature modules register their commands on import (e.g. ``@verify.app.command("tdx")``).
# One import line per module, kept sorted.
# -- feature command modules --
from veritee.cli import keyring as keyring_cli  # noqa: E402
from veritee.cli import measure as measure_cli  # noqa: E402
from veritee.cli import tcb as tcb_cli  # noqa: E402
from veritee.cli import tpm as tpm_cli  # noqa: E402
from veritee.cli import verify_azure as azure_cli  # noqa: E402, F401
from veritee.cli import verify_dcap  # noqa: E402, F401
from veritee.cli import verify_devices as devices_cli  # noqa: E402, F401

app.add_typer(tpm_cli.eventlog_app, name="eventlog")
app.add_typer(measure_cli.measure_app, name="measure")
app.add_typer(keyring_cli.keyring_app, name="keyring")
app.add_typer(tcb_cli.tcb_app, name="tcb")
# -- end feature command modules --


@app.command()
def version() -> None:
    """Print the version."""
    output.out.print(f"veritee {__version__}")


@app.command()
def demo() -> None:
    """Full attestation + secret release on loopback with a simulated SNP guest."""
    from veritee.cli.demo import run_demo

    run_demo()


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
