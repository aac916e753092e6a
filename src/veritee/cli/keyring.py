"""``veritee keyring ...``: the key-encryption key (file, PKCS#11 HSM or TPM-sealed), its
rotation, and the HSM-held token-signing key.

A rotation without downtime runs in three steps (README: "Keys in an HSM"):
every replica first holds the new KEK (``[keyring]`` primary = new, previous =
old), then ``veritee keyring rotate`` re-wraps every secret's data key, then
``previous`` is removed and the old KEK destroyed. ``--offline`` is for a
stopped service: it rotates and then points config.toml at the new KEK itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from veritee.cli import output
from veritee.errors import ConfigError
from veritee.server.config import (
    CONFIG_FILE,
    DEFAULT_TCTI,
    TPM_SEALED_DIR,
    FileKeyringConfig,
    KeyringSpec,
    Pkcs11KeyringConfig,
    ServiceConfig,
    TpmKeyringConfig,
)

keyring_app = typer.Typer(
    help="The key-encryption key (file, PKCS#11 HSM or TPM-sealed): status, create, rotate; "
    "and the HSM-held token-signing key (create-signer).",
    no_args_is_help=True,
)

DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Data directory (veritee init).")]
ModuleOpt = Annotated[
    Path | None,
    typer.Option("--module", help="PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so."),
]
TokenOpt = Annotated[str | None, typer.Option("--token-label", help="Label of the HSM token.")]
KeyLabelOpt = Annotated[str | None, typer.Option("--key-label", help="Label of the AES KEK.")]
PinEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--pin-env", help="Environment variable holding the token's user PIN (never the PIN)."
    ),
]
TctiOpt = Annotated[
    str | None,
    typer.Option("--tcti", help=f"TPM TCTI (default {DEFAULT_TCTI}; swtpm:host=H,port=P)."),
]
SealedDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--sealed-dir",
        help=f"Directory for the sealed KEK blobs (default DATA_DIR/{TPM_SEALED_DIR}).",
    ),
]
PcrsOpt = Annotated[
    str | None,
    typer.Option(
        "--pcrs",
        help='Seal to these PCRs as they are now, e.g. "sha256:7" (default: no PCR policy).',
    ),
]


@keyring_app.command("status")
def status(data_dir: DataDirOpt) -> None:
    """Show the configured KEKs and how many secrets each one wraps."""
    from veritee.broker.keyring import MultiKeyring
    from veritee.broker.rotation import kek_inventory
    from veritee.server.bootstrap import describe_keyring_spec, open_keyring
    from veritee.store.db import Database

    config = ServiceConfig.load(data_dir)
    spec = config.keyring_config
    keyring = open_keyring(spec)
    members = keyring.keyrings if isinstance(keyring, MultiKeyring) else (keyring,)
    specs = (spec.primary, spec.previous)
    db = Database(config.db_url)
    try:
        counts = kek_inventory(db)
    finally:
        db.dispose()
    table = Table(title="KEKs")
    table.add_column("role", style="cyan")
    table.add_column("kek_id")
    table.add_column("where", overflow="fold")
    table.add_column("secrets", justify="right")
    for role, member, member_spec in zip(("primary", "previous"), members, specs, strict=False):
        where = describe_keyring_spec(member_spec) if member_spec else ""
        table.add_row(role, member.kek_id, where, str(counts.pop(member.kek_id, 0)))
    for kek_id, count in sorted(counts.items()):
        table.add_row("[red]not configured[/]", kek_id, "", str(count))
    output.out.print(table)
    if counts:
        raise ConfigError(
            f"{sum(counts.values())} secrets are under a KEK this deployment does not hold",
            hint="configure that KEK as keyring.previous in config.toml, or those secrets "
            "cannot be released",
        )


@keyring_app.command("create")
def create(
    module: ModuleOpt = None,
    token_label: TokenOpt = None,
    key_label: KeyLabelOpt = None,
    pin_env: PinEnvOpt = "VERITEE_HSM_PIN",
    tpm: Annotated[
        bool, typer.Option("--tpm", help="Seal a new KEK to this machine's TPM instead.")
    ] = False,
    tcti: TctiOpt = None,
    sealed_dir: SealedDirOpt = None,
    pcrs: PcrsOpt = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data directory (with --tpm: where the blobs go)."),
    ] = None,
) -> None:
    """Generate a KEK in an HSM token (AES-256, non-extractable) or sealed to the TPM (--tpm)."""
    if tpm:
        if module is not None or token_label or key_label:
            raise ConfigError("--tpm takes --tcti, --sealed-dir and --pcrs, not HSM options")
        spec = _tpm_target(tcti, sealed_dir, pcrs, data_dir)
        _create_tpm(spec)
        output.out.print("put this in config.toml:")
        output.out.print(_render(spec, data_dir), markup=False)
        return
    if tcti or sealed_dir or pcrs:
        raise ConfigError("--tcti, --sealed-dir and --pcrs only apply with --tpm")
    from veritee.broker.keyring_pkcs11 import Pkcs11Keyring, read_pin

    if module is None or not token_label or not key_label or not pin_env:
        raise ConfigError("--module, --token-label and --key-label are required")
    pin = read_pin(pin_env, token_label=token_label)
    with Pkcs11Keyring.create(module.absolute(), token_label, key_label, pin) as ring:
        output.out.print(f"[green]created[/] KEK {ring.kek_id} on token {token_label!r}")
    output.out.print("put this in config.toml (the PIN stays in the environment):")
    output.out.print(
        _render_pkcs11(module.absolute(), token_label, key_label, pin_env), markup=False
    )


@keyring_app.command("create-signer")
def create_signer(
    module: ModuleOpt = None,
    token_label: TokenOpt = None,
    key_label: Annotated[
        str, typer.Option("--key-label", help="Label of the EC P-256 token-signing key.")
    ] = "veritee-token-signer",
    pin_env: PinEnvOpt = "VERITEE_HSM_PIN",
) -> None:
    """Generate the EAR token-signing key in an HSM token (EC P-256, non-extractable)."""
    from veritee.broker.keyring_pkcs11 import read_pin
    from veritee.broker.signer_pkcs11 import Pkcs11TokenSigner

    if module is None or not token_label or not key_label or not pin_env:
        raise ConfigError("--module and --token-label are required")
    pin = read_pin(pin_env, token_label=token_label, section="token_signer")
    with Pkcs11TokenSigner.create(module.absolute(), token_label, key_label, pin) as signer:
        output.out.print(f"[green]created[/] token-signing key {signer.kid} on {token_label!r}")
    output.out.print("put this in config.toml (the PIN stays in the environment):")
    output.out.print(
        _render_pkcs11(module.absolute(), token_label, key_label, pin_env).replace(
            "[keyring]", "[token_signer]"
        ),
        markup=False,
    )
    output.out.print(
        "tokens are then signed under a new kid: relying parties must fetch the JWKS again, "
        "and reference values sealed by the old key must be stored again"
    )


@keyring_app.command("rotate")
def rotate(
    data_dir: DataDirOpt,
    to_pkcs11: Annotated[
        bool, typer.Option("--to-pkcs11", help="Rotate to a KEK in a PKCS#11 token.")
    ] = False,
    module: ModuleOpt = None,
    token_label: TokenOpt = None,
    key_label: KeyLabelOpt = None,
    pin_env: PinEnvOpt = None,
    to_tpm: Annotated[
        bool, typer.Option("--to-tpm", help="Rotate to a KEK sealed to this machine's TPM.")
    ] = False,
    tcti: TctiOpt = None,
    sealed_dir: SealedDirOpt = None,
    pcrs: PcrsOpt = None,
    new_file: Annotated[
        Path | None, typer.Option("--new-file", help="Rotate to a 32-byte KEK file.")
    ] = None,
    create_key: Annotated[
        bool, typer.Option("--create", help="Generate the new KEK first (refuses to replace one).")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="The service is stopped: rotate even though config.toml does not hold the "
            "new KEK yet, then make it the configured KEK.",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Secrets per transaction.")
    ] = 50,
) -> None:
    """Re-wrap every secret's data key under a new KEK (ciphertexts stay as they are)."""
    from veritee.broker.keyring import FileKeyring, MultiKeyring
    from veritee.broker.rotation import kek_inventory, rotate_kek
    from veritee.server.bootstrap import open_keyring, open_keyring_spec
    from veritee.store.db import Database

    if [to_pkcs11, to_tpm, new_file is not None].count(True) != 1:
        raise ConfigError(
            "say where the new KEK is: one of --to-pkcs11 ..., --to-tpm ... or --new-file PATH"
        )
    config = ServiceConfig.load(data_dir)
    configured = config.keyring_config
    target: KeyringSpec
    if new_file is not None:
        target = FileKeyringConfig(new_file.absolute())
        if create_key:
            FileKeyring.create(target.path)
    elif to_tpm:
        target = _tpm_target(tcti, sealed_dir, pcrs, data_dir)
        if create_key:
            _create_tpm(target)
    else:
        # Defaults from the configured HSM KEK: PKCS#11 -> PKCS#11 usually only
        # changes the key label.
        base = next(
            (
                s
                for s in (configured.primary, configured.previous)
                if isinstance(s, Pkcs11KeyringConfig)
            ),
            None,
        )
        target = Pkcs11KeyringConfig(
            module=(module.absolute() if module else base.module if base else Path()),
            token_label=token_label or (base.token_label if base else ""),
            key_label=key_label or "",
            pin_env=pin_env or (base.pin_env if base else "VERITEE_HSM_PIN"),
        )
        if not target.token_label or not target.key_label or target.module == Path():
            raise ConfigError(
                "--to-pkcs11 needs --module, --token-label and --key-label "
                "(module and token default to the configured HSM KEK)"
            )
        if create_key:
            from veritee.broker.keyring_pkcs11 import Pkcs11Keyring, read_pin

            pin = read_pin(target.pin_env, token_label=target.token_label)
            Pkcs11Keyring.create(target.module, target.token_label, target.key_label, pin).close()

    old = open_keyring(configured)
    try:
        new = open_keyring_spec(target)
    except BaseException:
        _close(old)
        raise
    held = old.kek_ids if isinstance(old, MultiKeyring) else (old.kek_id,)
    db = Database(config.db_url)
    try:
        if new.kek_id not in held and not offline:
            raise ConfigError(
                f"the running service does not hold the new KEK {new.kek_id}: secrets "
                "re-wrapped under it would become unreadable to it",
                hint="first make it the keyring in config.toml (old KEK as keyring.previous) "
                "on every replica and restart them, then rotate; or stop the service and pass "
                "--offline",
            )
        pending = sum(n for k, n in kek_inventory(db).items() if k != new.kek_id)
        with _progress(pending) as advance:
            done = rotate_kek(db, old, new, batch_size=batch_size, progress=advance)
    finally:
        db.dispose()
        _close(old, new)
    output.out.print(f"[green]re-wrapped[/] {done} secrets under KEK {new.kek_id}")
    if new.kek_id not in held:  # --offline
        _set_keyring_section(data_dir, _render(target, data_dir))
        output.out.print(
            f"{data_dir / CONFIG_FILE}: the keyring section now names KEK {new.kek_id}; the "
            "old KEK wraps no secret any more and can be destroyed once no backup needs it"
        )
    elif new.kek_id != old.kek_id:
        output.out.print(
            "next: make the new KEK the keyring in config.toml on every replica and restart them"
        )
    else:
        output.out.print(
            "next: remove keyring.previous on every replica and restart them; then the old "
            "KEK can be destroyed (`veritee keyring status` shows no secret under it)"
        )


def _close(*keyrings: object) -> None:
    from veritee.broker.keyring import MultiKeyring

    for ring in keyrings:
        members = ring.keyrings if isinstance(ring, MultiKeyring) else (ring,)
        for member in members:
            close = getattr(member, "close", None)
            if callable(close):
                close()


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; silent in pipes."""
    with Progress(
        TextColumn("re-wrapping data keys"),
        BarColumn(),
        MofNCompleteColumn(),
        console=output.err,
        transient=True,
        disable=not output.err.is_terminal,
    ) as progress:
        task = progress.add_task("rotate", total=total)
        yield lambda n: progress.advance(task, n)


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value)


def _render_pkcs11(module: Path, token_label: str, key_label: str, pin_env: str) -> str:
    return (
        "[keyring]\n"
        'type = "pkcs11"\n'
        f"module = {_toml_str(str(module))}\n"
        f"token_label = {_toml_str(token_label)}\n"
        f"key_label = {_toml_str(key_label)}\n"
        f"pin_env = {_toml_str(pin_env)}\n"
    )


def _tpm_target(
    tcti: str | None, sealed_dir: Path | None, pcrs: str | None, data_dir: Path | None
) -> TpmKeyringConfig:
    from veritee.broker.keyring_tpm import PcrSelection

    if sealed_dir is None:
        if data_dir is None:
            raise ConfigError("--tpm needs --sealed-dir DIR (or --data-dir DIR)")
        sealed_dir = data_dir / TPM_SEALED_DIR
    return TpmKeyringConfig(
        tcti=tcti or DEFAULT_TCTI,
        sealed_dir=sealed_dir.absolute(),
        pcrs=str(PcrSelection.parse(pcrs)) if pcrs else "",
    )


def _create_tpm(spec: TpmKeyringConfig) -> None:
    from veritee.broker.keyring_tpm import TpmSealedKeyring

    with TpmSealedKeyring.create(spec.tcti, spec.sealed_dir, pcrs=spec.pcrs or None) as ring:
        sealed = f" to PCRs {spec.pcrs}" if spec.pcrs else " (no PCR policy)"
        output.out.print(
            f"[green]sealed[/] KEK {ring.kek_id} to the TPM{sealed} in {spec.sealed_dir}"
        )


def _relative(path: Path, data_dir: Path | None) -> Path:
    if data_dir is not None and path.is_relative_to(data_dir.absolute()):
        return path.relative_to(data_dir.absolute())
    return path


def _render(spec: KeyringSpec, data_dir: Path | None) -> str:
    if isinstance(spec, Pkcs11KeyringConfig):
        return _render_pkcs11(spec.module, spec.token_label, spec.key_label, spec.pin_env)
    if isinstance(spec, TpmKeyringConfig):
        return (
            '[keyring]\ntype = "tpm"\n'
            f"tcti = {_toml_str(spec.tcti)}\n"
            f"sealed_dir = {_toml_str(str(_relative(spec.sealed_dir, data_dir)))}\n"
            + (f"pcrs = {_toml_str(spec.pcrs)}\n" if spec.pcrs else "")
        )
    path = _relative(spec.path, data_dir)
    return f'[keyring]\ntype = "file"\npath = {_toml_str(str(path))}\n'


def _set_keyring_section(data_dir: Path, section: str) -> None:
    """Replace ``[keyring]`` (and its sub-tables) in config.toml, atomically."""
    path = data_dir / CONFIG_FILE
    kept: list[str] = []
    skipping = False
    for line in path.read_text().splitlines(keepends=True):
        header = line.strip()
        if header.startswith("[") and not header.startswith("[["):
            name = header.strip("[]").strip()
            skipping = name == "keyring" or name.startswith("keyring.")
        if not skipping:
            kept.append(line)
    text = "".join(kept).rstrip("\n") + "\n\n" + section
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".config.", suffix=".toml")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    ServiceConfig.load(data_dir)  # what was written must load
