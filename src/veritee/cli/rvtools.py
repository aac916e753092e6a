"""Helpers behind ``veritee rv ...`` and ``veritee policy test|preset``: file readers and tables."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from veritee.cli import output
from veritee.errors import ConfigError

# The artifacts a measurement was computed from, named by role first (the TCB report
# reads the role): "kernel (vmlinuz)".
_ROLES = ("ovmf", "tdvf", "kernel", "initrd")


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not JSON: {exc}") from None


def _artifacts(doc: Mapping[str, Any]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    inputs = doc.get("inputs")
    if isinstance(inputs, Mapping):
        for role in _ROLES:
            item = inputs.get(role)
            if not isinstance(item, Mapping):
                continue
            digest = {a: item[a] for a in ("sha256", "sha384") if isinstance(item.get(a), str)}
            if digest:
                label = Path(str(item.get("path", ""))).name
                out.append({"name": f"{role} ({label})" if label else role, "digest": digest})
        append = inputs.get("append")
        if isinstance(append, Mapping) and isinstance(append.get("sha256"), str):
            out.append({"name": "cmdline", "digest": {"sha256": append["sha256"]}})
    predicted = doc.get("predicted")
    images = predicted.get("boot_images") if isinstance(predicted, Mapping) else None
    for img in images if isinstance(images, list) else []:
        if isinstance(img, Mapping) and isinstance(img.get("authenticode"), Mapping):
            digest = {f"authenticode-{a}": v for a, v in img["authenticode"].items()}
            out.append({"name": f"boot image ({img.get('name', '')})", "digest": digest})
    log = doc.get("log")
    if isinstance(log, Mapping) and isinstance(log.get("path"), str):
        # The document names the log but not its digest: hash the file it names, now.
        path = Path(log["path"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the event log {path} it names: {exc.strerror}",
                              hint="run from where `veritee measure` ran") from None
        out.append({"name": f"event log ({path.name})",
                    "digest": {"sha256": hashlib.sha256(data).hexdigest()}})
    return out


def computed_from(
    doc: object, where: Path
) -> tuple[dict[str, object], list[dict[str, object]], str]:
    """(values by name, artifacts, tool) from ``veritee measure <tee> --json`` output."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("tee"), str):
        raise ConfigError(f"{where} is not `veritee measure ... --json` output")
    tee = str(doc["tee"])
    values: dict[str, object]
    if isinstance(doc.get("reference_values"), Mapping) and doc["reference_values"]:
        values = dict(doc["reference_values"])
    elif tee == "snp" and isinstance(doc.get("measurement"), str):
        values = {"snp_launch_measurement": [doc["measurement"]]}
    else:
        raise ConfigError(f"{where} carries no measurement or reference values")
    artifacts = _artifacts(doc)
    if not artifacts:
        raise ConfigError(f"{where} lists no input digests to record as provenance")
    gen = doc.get("generator")
    tool = f"veritee measure {tee}"
    if isinstance(gen, Mapping):
        tool = f"{gen.get('name', 'veritee')} {gen.get('version', '')} measure {tee}".strip()
    return values, artifacts, tool


def _values(value: object) -> str:
    items = value if isinstance(value, list) else [value]
    shown = [v if isinstance(v, str) else json.dumps(v) for v in items[:4]]
    shown = [s if len(s) <= 24 else s[:20] + "..." for s in shown]
    more = f" (+{len(items) - 4})" if len(items) > 4 else ""
    return "\n".join(shown) + more


def _provenance(p: object) -> str:
    if not isinstance(p, Mapping):
        return "[red]none[/]"
    from veritee.appraisal.provenance import Provenance
    from veritee.errors import RequestError

    try:
        return Provenance.from_json(p).summary()
    except RequestError:
        return "[red]unreadable[/]"


def rv_table(records: Sequence[Mapping[str, object]]) -> Table:
    table = Table(title="reference values", show_lines=True)
    table.add_column("name", style="cyan", no_wrap=True)
    table.add_column("values", overflow="fold")
    table.add_column("expires", no_wrap=True)
    table.add_column("provenance", overflow="fold", max_width=48)
    table.add_column("signature", overflow="fold", max_width=30)
    for r in records:
        state = r.get("state")
        if state == "valid":
            seal = "[green]valid (sealed by this service)[/]"
        elif state == "expired":
            seal = "[yellow]valid seal, EXPIRED[/]"
        else:
            seal = f"[bold red]REFUSED[/]: {r.get('problem', '')}"
        table.add_row(
            str(r.get("name")),
            _values(r.get("value")),
            str(r.get("expiration", "")),
            _provenance(r.get("provenance")),
            seal,
        )
    return table


def print_policy_result(result: Any, policy_path: Path) -> None:
    """The human view of a PolicyTestResult."""
    from veritee.appraisal.policytest import PolicyTestResult

    assert isinstance(result, PolicyTestResult)
    d = result.decision
    if result.not_for_production:
        output.err.print(
            "[bold white on red] THIS POLICY IS MARKED NOT FOR PRODUCTION [/] "
            f"({policy_path.name} sets not_for_production)"
        )
    color = {"affirming": "green", "warning": "yellow"}.get(d.status, "red")
    output.out.print(f"policy {policy_path.name} on {result.tee} evidence: "
                     f"[bold {color}]{d.status}[/]")
    vector = Table(title="trust vector", show_header=True)
    vector.add_column("claim")
    vector.add_column("value", justify="right")
    vector.add_column("tier")
    from veritee.appraisal.decision import tier

    for k, v in d.trust_vector.items():
        t = tier(v)
        style = {"affirming": "green", "warning": "yellow", "contraindicated": "red"}.get(t, "dim")
        vector.add_row(k, str(v), f"[{style}]{t}[/]")
    output.out.print(vector)
    if result.checks:
        rvs = Table(title="reference values the policy consults")
        rvs.add_column("name", style="cyan")
        rvs.add_column("state")
        rvs.add_column("claim", overflow="fold")
        rvs.add_column("evidence value", overflow="fold", max_width=40)
        for c in result.checks:
            style = {"match": "green", "mismatch": "bold red", "missing": "yellow"}.get(
                c.state, "white"
            )
            shown = c.claim if isinstance(c.claim, str) else json.dumps(c.claim)
            rvs.add_row(c.name, f"[{style}]{c.state}[/]", c.claim_path, shown)
        output.out.print(rvs)
    if d.status != "affirming":
        output.out.print("[bold]why:[/]")
        for r in d.reasons:
            output.out.print(f"  [red]-[/] {r.rule}: {r.detail}", soft_wrap=True)

