"""Service commands: init, serve, admin clients (resource, policy, rv), attest, audit."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from veritee.cli import output
from veritee.clock import utcnow
from veritee.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PolicyDenied,
    RequestError,
    VeriteeError,
)

resource_app = typer.Typer(help="Manage secrets on a KBS (admin).", no_args_is_help=True)
policy_app = typer.Typer(
    help="Manage attestation and resource policies (admin).", no_args_is_help=True
)
rv_app = typer.Typer(help="Manage reference values (admin).", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the tamper-evident audit log.", no_args_is_help=True)

KbsOpt = Annotated[str, typer.Option("--kbs", help="KBS base URL, e.g. http://127.0.0.1:8080")]
AdminKeyOpt = Annotated[Path, typer.Option("--admin-key", help="Admin Ed25519 private key (PEM).")]


def _admin_headers(admin_key: Path) -> dict[str, str]:
    from veritee.server.admin_auth import AdminKeyPair, mint_admin_token

    pair = AdminKeyPair.load(admin_key)
    token = mint_admin_token(pair.private_key, now=utcnow(), ttl=dt.timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


def _request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        response = httpx.request(method, url, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"cannot reach the KBS at {url}: {exc}",
            hint="check --kbs and that `veritee serve` is running",
        ) from None
    if response.status_code != 200:
        try:
            body = response.json()
            detail = f"{str(body.get('type', '')).rsplit('/', 1)[-1]}: {body.get('detail', '')}"
        except ValueError:
            detail = response.text[:300]
        if response.status_code == 401 and "AdminAuth" in detail:
            raise AuthError(
                f"the KBS refused the admin credentials ({detail})",
                hint="pass the admin.key of this deployment with --admin-key",
            )
        if response.status_code == 404:
            raise NotFoundError(detail)
        raise RequestError(f"the KBS refused the request ({response.status_code} {detail})")
    return response


def _path3(value: str) -> str:
    parts = value.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"resource path must be REPO/TYPE/TAG, got {value!r}")
    return "/".join(parts)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- init / serve ------------------------------------------------------------------------------


def init(
    data_dir: Annotated[Path, typer.Argument(help="Directory to create.")],
    database: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL shared by replicas (default: SQLite in DIR)."),
    ] = None,
) -> None:
    """Create a data directory: config, database, KEK, token key, admin key pair."""
    from veritee.server.bootstrap import init_data_dir

    init_data_dir(data_dir, database=database)
    output.out.print(f"[green]initialised[/] {data_dir}")
    output.out.print(f"  config       {data_dir / 'config.toml'}")
    output.out.print(f"  database     {_redact(database) if database else data_dir / 'veritee.db'}")
    output.out.print(f"  KEK          {data_dir / 'kek.key'} (keep secret; back it up)")
    output.out.print(f"  admin key    {data_dir / 'admin.key'} / {data_dir / 'admin.pub'}")
    output.out.print(f"next: veritee serve --data-dir {data_dir}")


def serve(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory (veritee init).")],
    host: Annotated[str | None, typer.Option(help="Listen address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    trust_simulator: Annotated[
        bool, typer.Option(help="Accept evidence from veritee's simulators (never production).")
    ] = False,
) -> None:
    """Run the KBS (uvicorn)."""
    import logging

    import uvicorn

    from veritee.server.config import ServiceConfig
    from veritee.server.hardening import MULTIPROCESS_ENV

    config = ServiceConfig.load(data_dir)
    bind = host or config.host
    if not _is_loopback(bind) and not config.tls and not config.allow_http_non_loopback:
        raise ConfigError(
            f"refusing to serve plain HTTP on {bind}",
            hint="set tls_cert and tls_key in config.toml, bind to 127.0.0.1 behind a TLS "
            "proxy, or set allow_http_non_loopback = true",
        )
    if trust_simulator and config.production:
        raise ConfigError("--trust-simulator is refused: this deployment is configured production")
    handler = logging.StreamHandler()
    if config.json_logs:
        from veritee.server.hardening import JsonLogFormatter

        handler.setFormatter(
            JsonLogFormatter({"simulator_trusted": True} if trust_simulator else None)
        )
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s "
            + ("[SIMULATOR TRUSTED] " if trust_simulator else "")
            + "%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    os.environ["VERITEE_DATA_DIR"] = str(data_dir.resolve())
    if workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        # Workers write their counters to files here; /metrics sums them (hardening.Metrics).
        import tempfile

        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="veritee-metrics-")
    if trust_simulator:
        os.environ["VERITEE_TRUST_SIMULATOR"] = "1"
    scheme = "https" if config.tls else "http"
    listen = f"{scheme}://{bind}:{port or config.port}"
    output.err.print(f"veritee KBS on {listen} ({workers} worker(s))")
    uvicorn.run(
        "veritee.server.app:create_app_from_env",
        factory=True,
        host=bind,
        port=port or config.port,
        workers=workers,
        log_level="warning",
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,  # bounds request line + headers
    )


def _redact(url: str) -> str:
    """A database URL without its password, for display."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- admin clients -------------------------------------------------------------------------------


@resource_app.command("put")
def resource_put(
    kbs: KbsOpt,
    admin_key: AdminKeyOpt,
    path: Annotated[str, typer.Argument(help="REPO/TYPE/TAG")],
    file: Annotated[Path, typer.Argument(help="File holding the secret.")],
) -> None:
    """Store a secret (encrypted at rest under the KEK)."""
    data = file.read_bytes()
    _request(
        "POST",
        f"{kbs.rstrip('/')}/kbs/v0/resource/{_path3(path)}",
        content=data,
        headers=_admin_headers(admin_key),
    )
    output.out.print(f"[green]stored[/] {_path3(path)} ({len(data)} bytes)")


@resource_app.command("delete")
def resource_delete(
    kbs: KbsOpt, admin_key: AdminKeyOpt, path: Annotated[str, typer.Argument(help="REPO/TYPE/TAG")]
) -> None:
    """Delete a secret."""
    _request(
        "DELETE",
        f"{kbs.rstrip('/')}/kbs/v0/resource/{_path3(path)}",
        headers=_admin_headers(admin_key),
    )
    output.out.print(f"[green]deleted[/] {_path3(path)}")


@policy_app.command("set")
def policy_set(
    kbs: KbsOpt,
    admin_key: AdminKeyOpt,
    kind: Annotated[str, typer.Argument(help="attestation or resource")],
    file: Annotated[Path, typer.Argument(help="Rego policy file.")],
    policy_id: Annotated[str, typer.Option(help="Attestation policy id.")] = "default_cpu",
) -> None:
    """Set the attestation or the resource policy."""
    body = _b64url(file.read_bytes())
    if kind == "attestation":
        url, payload = (
            "attestation-policy",
            {"type": "rego", "policy_id": policy_id, "policy": body},
        )
    elif kind == "resource":
        url, payload = "resource-policy", {"policy": body}
    else:
        raise ConfigError("policy kind must be 'attestation' or 'resource'")
    _request(
        "POST", f"{kbs.rstrip('/')}/kbs/v0/{url}", json=payload, headers=_admin_headers(admin_key)
    )
    output.out.print(f"[green]{kind} policy set[/] from {file}")


@policy_app.command("get")
def policy_get(
    kbs: KbsOpt,
    admin_key: AdminKeyOpt,
    kind: Annotated[str, typer.Argument(help="attestation or resource")],
) -> None:
    """Print the stored policies of one kind as JSON."""
    if kind not in ("attestation", "resource"):
        raise ConfigError("policy kind must be 'attestation' or 'resource'")
    r = _request(
        "GET", f"{kbs.rstrip('/')}/kbs/v0/{kind}-policy", headers=_admin_headers(admin_key)
    )
    output.print_json(r.json())


@rv_app.command("add")
def rv_add(
    kbs: KbsOpt,
    admin_key: AdminKeyOpt,
    name: Annotated[
        str | None,
        typer.Argument(help="Reference value name, e.g. snp_launch_measurement"),
    ] = None,
    values: Annotated[
        list[str] | None, typer.Argument(help="Values (JSON or plain strings).")
    ] = None,
    computed_from: Annotated[
        Path | None,
        typer.Option(
            help="`veritee measure snp|tdx|tpm --json` output: register its reference values "
            "(all, or NAME) with the digests of the artifacts they were computed from."
        ),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry, RFC 3339 (default: 12 months from now).")
    ] = None,
) -> None:
    """Register reference values (a list under one name), sealed with their provenance."""
    from veritee.cli import rvtools

    message: dict[str, object] = {"version": "0.1.0", "type": "sample"}
    registered: dict[str, object]
    if computed_from is not None:
        if values:
            raise ConfigError("with --computed-from the values come from the file")
        registered, artifacts, tool = rvtools.computed_from(
            rvtools.read_json(computed_from, "measurement"), computed_from
        )
        if name is not None:
            if name not in registered:
                raise ConfigError(
                    f"{computed_from} has no {name!r}", hint="it has " + ", ".join(registered)
                )
            registered = {name: registered[name]}
        message.update(artifacts=artifacts, tool=tool)
    else:
        if not name or not values:
            raise ConfigError("give NAME and VALUES, or --computed-from FILE")
        parsed: list[object] = []
        for v in values:
            try:
                parsed.append(json.loads(v))
            except ValueError:
                parsed.append(v)
        registered = {name: parsed}
    if expires is not None:
        message["expiration"] = expires
    message["payload"] = base64.b64encode(json.dumps(registered).encode()).decode()
    _request(
        "POST",
        f"{kbs.rstrip('/')}/kbs/v0/reference-value",
        json=message,
        headers=_admin_headers(admin_key),
    )
    how = f" (computed from {computed_from})" if computed_from is not None else ""
    for key, value in registered.items():
        output.out.print(f"[green]registered[/] {key} = {value}{how}")


@rv_app.command("get")
def rv_get(kbs: KbsOpt, admin_key: AdminKeyOpt, name: Annotated[str, typer.Argument()]) -> None:
    """Print one reference value."""
    r = _request(
        "GET", f"{kbs.rstrip('/')}/kbs/v0/reference-value/{name}", headers=_admin_headers(admin_key)
    )
    output.print_json(r.json())


@rv_app.command("list")
def rv_list(
    kbs: KbsOpt,
    admin_key: AdminKeyOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Every stored value: values, expiry, provenance and whether its seal verifies."""
    from veritee.cli import rvtools

    r = _request(
        "GET", f"{kbs.rstrip('/')}/kbs/v0/reference-values", headers=_admin_headers(admin_key)
    )
    records = r.json()
    if json_out:
        output.print_json(records)
        return
    output.out.print(rvtools.rv_table(records))
    refused = [x["name"] for x in records if x.get("state") == "refused"]
    if refused:
        output.err.print(
            f"[bold red]{len(refused)} value(s) refused[/] (never used in appraisals): "
            + ", ".join(refused)
        )


@rv_app.command("import")
def rv_import(
    kbs: KbsOpt,
    admin_key: AdminKeyOpt,
    file: Annotated[Path, typer.Argument(help="DSSE envelope (JSON) with an in-toto statement.")],
    name: Annotated[
        str | None, typer.Option(help="SLSA provenance: the reference value its subjects are.")
    ] = None,
    digest_alg: Annotated[
        str, typer.Option(help="SLSA provenance: subject digest to use (sha256|sha384|sha512).")
    ] = "sha256",
    expires: Annotated[
        str | None, typer.Option(help="Expiry, RFC 3339 (default: 12 months from now).")
    ] = None,
) -> None:
    """Upload a signed statement; the KBS accepts it only if a trusted builder key signed it."""
    from veritee.cli import rvtools

    body: dict[str, object] = {"envelope": rvtools.read_json(file, "statement"),
                               "digest_alg": digest_alg}
    if name is not None:
        body["name"] = name
    if expires is not None:
        body["expiration"] = expires
    r = _request(
        "POST",
        f"{kbs.rstrip('/')}/kbs/v0/reference-value/import",
        json=body,
        headers=_admin_headers(admin_key),
    )
    names = r.json().get("registered", [])
    output.out.print(f"[green]imported[/] {', '.join(names)} from {file}")


@rv_app.command("remove")
def rv_remove(kbs: KbsOpt, admin_key: AdminKeyOpt, name: Annotated[str, typer.Argument()]) -> None:
    """Delete one reference value (audited)."""
    _request(
        "DELETE",
        f"{kbs.rstrip('/')}/kbs/v0/reference-value/{name}",
        headers=_admin_headers(admin_key),
    )
    output.out.print(f"[green]removed[/] {name}")


@rv_app.command("reseal")
def rv_reseal(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
    previous_signer: Annotated[
        Path, typer.Option("--previous-signer", help="The token-signing key (PEM) used before.")
    ],
) -> None:
    """After replacing the token-signing key: re-seal the stored reference values.

    Works on the database directly, also while the service runs (it picks the
    values up at once). Values the previous key did not seal stay refused.
    """
    from rich.table import Table

    from veritee.appraisal.ear import TokenSigner
    from veritee.broker import refstore
    from veritee.clock import utcnow
    from veritee.server.bootstrap import open_token_signer
    from veritee.server.config import ServiceConfig
    from veritee.server.tenants import discover
    from veritee.store.db import Database

    config = ServiceConfig.load(data_dir)
    try:
        old = TokenSigner.load_pem(previous_signer)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the previous signer key {previous_signer}: {exc}",
            hint="pass the PEM file the service signed with before the change",
        ) from None
    new = open_token_signer(config.token_signer_config)
    if old.kid == new.kid:
        raise ConfigError("the previous signer is the current one: nothing to re-seal")
    db = Database(config.db_url)
    table = Table(title="re-sealed reference values")
    for column in ("tenant", "re-sealed", "still refused"):
        table.add_column(column)
    now = utcnow()
    for tenant in ["default", *discover(data_dir)]:
        resealed, refused = refstore.reseal(db, old, new, tenant, admin="admin:cli", now=now)
        table.add_row(tenant, str(len(resealed)),
                      "; ".join(f"{n}: {why}" for n, why in refused.items()) or "-")
    db.dispose()
    output.out.print(table)


@policy_app.command("test")
def policy_test(
    policy: Annotated[Path, typer.Argument(help="Rego attestation policy file.")],
    evidence: Annotated[
        Path | None,
        typer.Option(help="`veritee verify <tee> --json` output, a KBS policy input, decoded "
                     "EAR claims, or claims JSON (with --tee)."),
    ] = None,
    claims: Annotated[
        Path | None, typer.Option(help="Claims JSON (bare claims need --tee).")
    ] = None,
    rv: Annotated[
        Path | None,
        typer.Option("--rv", help="Reference values: JSON name -> values (or an RVPS sample "
                     "message, or `veritee rv list --json` output)."),
    ] = None,
    tee: Annotated[
        str | None, typer.Option(help="TEE of bare claims (snp, tdx, tpm, ...).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate an attestation policy offline: the decision, and on deny why (exit 5)."""
    from veritee.appraisal.policy import PolicyEngine, RegoPolicy
    from veritee.appraisal.policytest import (
        policy_input,
        reference_from,
        run_policy_test,
    )
    from veritee.cli import rvtools

    if (evidence is None) == (claims is None):
        raise ConfigError("give exactly one of --evidence FILE or --claims FILE")
    source = evidence if evidence is not None else claims
    assert source is not None
    try:
        body = policy.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read policy {policy}: {exc.strerror}") from None
    parsed = RegoPolicy.parse(policy.stem, body)
    pinput = policy_input(rvtools.read_json(source, "evidence"), tee)
    reference = (
        reference_from(rvtools.read_json(rv, "reference values"), now=utcnow()) if rv else {}
    )
    result = run_policy_test(PolicyEngine(), parsed, pinput, reference)
    if json_out:
        output.print_json(result.to_json())
    else:
        rvtools.print_policy_result(result, policy)
    if result.decision.status != "affirming":
        raise PolicyDenied(
            f"policy {policy.name} does not affirm this evidence (status {result.decision.status})"
        )


@policy_app.command("preset")
def policy_preset(
    name: Annotated[
        str,
        typer.Argument(help="allow-all-reference-values, dev or strict-production."),
    ],
    out: Annotated[Path | None, typer.Option(help="Write to this file (default: stdout).")] = None,
) -> None:
    """Print a preset attestation policy (Rego), to review, test and set."""
    import sys

    from veritee.appraisal.builtin import preset

    text = preset(name).body
    if "not_for_production := true" in text:
        output.err.print(
            f"[bold white on red] {name}: DEVELOPMENT ONLY - NOT FOR PRODUCTION [/]"
        )
    if out is not None:
        out.write_text(text)
        output.err.print(f"[green]wrote[/] {out}")
        return
    sys.stdout.write(text)
    sys.stdout.flush()


# -- guest side ------------------------------------------------------------------------------------


def attest(
    kbs: KbsOpt,
    tee: Annotated[
        str, typer.Option(help="snp-sim (simulator), snp (configfs-tsm or /dev/sev-guest)")
    ],
    resource: Annotated[str, typer.Option(help="REPO/TYPE/TAG to fetch after attesting.")],
    measurement: Annotated[str | None, typer.Option(help="Simulator: MEASUREMENT (hex).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the secret here (default: stdout).")
    ] = None,
) -> None:
    """Run the guest side: attest to the KBS, then fetch and decrypt one resource."""
    from veritee.attester.client import KbsClient
    from veritee.attester.providers import (
        CONFIGFS_TSM,
        ConfigfsTsmProvider,
        EvidenceProvider,
        SevGuestDeviceProvider,
        SimulatedSnpProvider,
    )
    from veritee.server.bootstrap import cache_dir
    from veritee.tee.snp.sim import SIMULATOR_BANNER, cached_platform

    provider: EvidenceProvider
    if tee == "snp-sim":
        output.err.print(f"[yellow]{SIMULATOR_BANNER}[/]")
        meas = bytes.fromhex(measurement) if measurement else bytes(48)
        if len(meas) != 48:
            raise ConfigError("--measurement must be 48 bytes of hex")
        provider = SimulatedSnpProvider(cached_platform(cache_dir()), measurement=meas)
    elif tee == "snp":
        provider = ConfigfsTsmProvider() if CONFIGFS_TSM.is_dir() else SevGuestDeviceProvider()
    else:
        raise ConfigError(f"unknown --tee {tee!r}", hint="use snp-sim or snp")
    with KbsClient(kbs) as client:
        client.attest(provider)
        secret = client.get_resource(_path3(resource))
    if out is not None:
        out.write_bytes(secret)
        out.chmod(0o600)
        output.err.print(f"[green]attested and received[/] {_path3(resource)} -> {out}")
    else:
        import sys

        sys.stdout.buffer.write(secret)


# -- audit -----------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect",
            help="A head written down earlier ([TENANT:]SEQ:HASH from `audit head`): that "
            "record must still be there, unchanged (detects truncation and re-hashing).",
        ),
    ] = None,
) -> None:
    """Check the hash chain of every tenant's audit log; name the first broken record."""
    from veritee.broker.audit import Anchor, check_anchor, tenants, verify_chain
    from veritee.server.config import ServiceConfig
    from veritee.store.db import Database

    try:
        anchors = [Anchor.parse(text) for text in expect or []]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    db = Database(ServiceConfig.load(data_dir).db_url)
    broken = []
    for tenant in tenants(db) or ["default"]:
        report = verify_chain(db, tenant)
        label = "" if tenant == "default" else f" (tenant {tenant})"
        if report.ok:
            output.out.print(f"[green]audit chain intact[/]{label}: {report.records} records")
        else:
            broken.append(f"audit chain{label} broken at record {report.first_broken}: "
                          f"{report.reason}")
    for anchor in anchors:
        problem = check_anchor(db, anchor)
        if problem is None:
            output.out.print(f"[green]anchor holds[/]: {anchor}")
        else:
            broken.append(f"anchor {anchor}: {problem}")
    if broken:
        raise _AuditBroken("; ".join(broken))


@audit_app.command("head")
def audit_head(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
) -> None:
    """Print each chain's newest record as TENANT:SEQ:HASH, to keep somewhere else."""
    from veritee.broker.audit import head, tenants
    from veritee.server.config import ServiceConfig
    from veritee.store.db import Database

    db = Database(ServiceConfig.load(data_dir).db_url)
    for tenant in tenants(db) or ["default"]:
        anchor = head(db, tenant)
        print(anchor if anchor is not None else f"{tenant}: empty chain")


@audit_app.command("show")
def audit_show(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
    last: Annotated[int, typer.Option(help="How many of the latest records.")] = 20,
) -> None:
    """Print the latest audit records."""
    from veritee.broker.audit import iter_rows
    from veritee.server.config import ServiceConfig
    from veritee.store.db import Database

    rows = list(iter_rows(Database(ServiceConfig.load(data_dir).db_url)))[-last:]
    output.out.print(audit_table(rows))


def audit_table(rows: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="audit trail (hash-chained)")
    table.add_column("#", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("subject", overflow="ellipsis", max_width=22, no_wrap=True)
    table.add_column("decision", no_wrap=True)
    table.add_column("detail", overflow="ellipsis", max_width=40, no_wrap=True)
    table.add_column("hash", no_wrap=True)
    for r in rows:
        detail = json.loads(r.detail_json)
        text = detail.get("reason") or "; ".join(detail.get("reasons", [])[:1]) or ""
        table.add_row(str(r.seq), r.action, r.subject, r.decision, text, r.hash[:10])
    return table


class _AuditBroken(VeriteeError):
    code = "audit.broken"
    exit_code = 3


backup_app = typer.Typer(help="Encrypted backup and restore of the whole state.",
                         no_args_is_help=True)


@backup_app.command("create")
def backup_create(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory.")],
    out: Annotated[Path, typer.Option("--out", help="Backup file to write (mode 0600).")],
) -> None:
    """Write every row and the token key, encrypted under the KEK."""
    from veritee.broker.backup import create_backup
    from veritee.server.bootstrap import open_service
    from veritee.server.config import ServiceConfig

    config = ServiceConfig.load(data_dir)
    service = open_service(config)
    summary = create_backup(service.db, service.broker.keyring,
                            config.token_key_path.read_bytes(), out, utcnow())
    service.db.dispose()
    total = sum(summary.tables.values())
    output.out.print(f"[green]backup written[/] {out}: {total} rows, KEK {summary.kek_id}")


@backup_app.command("restore")
def backup_restore(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Fresh data directory.")],
    file: Annotated[Path, typer.Argument(help="Backup file.")],
    force: Annotated[bool, typer.Option(help="Replace existing rows.")] = False,
) -> None:
    """Restore a backup into a fresh deployment that holds the same KEK."""
    from veritee.broker.audit import verify_chain
    from veritee.broker.backup import restore_backup
    from veritee.server.bootstrap import open_service
    from veritee.server.config import ServiceConfig

    config = ServiceConfig.load(data_dir)
    service = open_service(config)
    summary, signer = restore_backup(service.db, service.broker.keyring, file, force=force)
    if signer:
        tmp = config.token_key_path.with_name("token-signer.pem.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer)
        os.replace(tmp, config.token_key_path)
    report = verify_chain(service.db)
    service.db.dispose()
    if not report.ok:
        raise _AuditBroken(f"restored audit chain is broken at {report.first_broken}")
    output.out.print(f"[green]restored[/] {sum(summary.tables.values())} rows from {file} "
                     f"(made {summary.created_at}); audit chain intact ({report.records})")
