"""Shared console helpers: one place decides how results and errors look."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from veritee.errors import VeriteeError
from veritee.tee.base import ClaimValue

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def claims_table(title: str, claims: Mapping[str, ClaimValue]) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("claim", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in claims.items():
        table.add_row(name, json.dumps(value) if not isinstance(value, str) else value)
    return table


def report_error(exc: VeriteeError) -> int:
    kind = {
        2: "malformed evidence",
        3: "not authentic",
        4: "collateral unavailable",
        5: "denied by policy",
    }.get(exc.exit_code, "error")
    err.print(f"[bold red]{kind}:[/] {exc.message}", markup=True, soft_wrap=True)
    if exc.hint:
        err.print(f"[yellow]what to do:[/] {exc.hint}", soft_wrap=True)
    err.print(f"[dim](code {exc.code}, exit {exc.exit_code})[/]")
    return exc.exit_code
