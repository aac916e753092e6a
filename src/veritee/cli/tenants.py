"""``veritee tenant ...``: host several owners on one deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from veritee.cli import output

tenant_app = typer.Typer(help="Tenants: several owners on one deployment.", no_args_is_help=True)


@tenant_app.command("add")
def tenant_add(
    name: Annotated[str, typer.Argument(help="Tenant name (lowercase letters, digits, -).")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
) -> None:
    """Create a tenant with its own admin key pair (a running `veritee serve` picks it up)."""
    from veritee.server import tenants

    directory = tenants.add(data_dir, name)
    output.out.print(f"[green]tenant {name} created[/]")
    output.out.print(f"  admin key    {directory / 'admin.key'} (give it to the tenant's admin)")
    output.out.print(f"  KBS URL      https://<host>/t/{name}  (guests and admin tools use this)")


@tenant_app.command("list")
def tenant_list(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
) -> None:
    """Tenants of this deployment."""
    from veritee.server import tenants

    table = Table(title="tenants")
    table.add_column("tenant")
    table.add_column("URL path")
    table.add_row("default (first party)", "/kbs/v0")
    for name in tenants.discover(data_dir):
        table.add_row(name, f"/t/{name}/kbs/v0")
    output.out.print(table)
