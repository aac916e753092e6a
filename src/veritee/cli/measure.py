"""``veritee measure <tee> ...``: expected launch measurements from the owner's own artifacts."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from veritee import __version__
from veritee.cli import output
from veritee.errors import ConfigError, EvidenceFormatError
from veritee.tee.snp.launch import (
    MAX_FIRMWARE_BYTES,
    MEASUREMENT_SIZE,
    KernelHashes,
    SnpLaunchInputs,
    VmmType,
    cmdline_bytes,
    cpuid_signature,
    expected_measurement,
    load_ovmf,
    vcpu_signature,
)

measure_app = typer.Typer(
    help="Compute expected launch measurements from firmware, kernel, initrd and command line.",
    no_args_is_help=True,
)
_CHUNK = 1 << 20

Advance = Callable[[int], None]


@contextmanager
def _progress(total: int, what: str) -> Iterator[Advance]:
    """A byte-count progress bar on stderr when it is a terminal; silent in pipes."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=output.err,
        transient=True,
        disable=not output.err.is_terminal,
    ) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def _size(path: Path, what: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _read(path: Path, what: str, advance: Advance) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    advance(len(data))
    return data


def _sha256_file(path: Path, what: str, advance: Advance) -> bytes:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                advance(len(chunk))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return h.digest()


def _parse_hex(value: str, what: str, *, max_bits: int) -> int:
    text = value.strip().lower().removeprefix("0x")
    try:
        number = int(text, 16)
    except ValueError:
        raise ConfigError(f"{what} must be hexadecimal, got {value!r}") from None
    if number < 0 or number >= 1 << max_bits:
        raise ConfigError(f"{what} {value!r} does not fit in {max_bits} bits")
    return number


def _vcpu_sig(
    vcpu_type: str | None,
    vcpu_sig: str | None,
    fms: tuple[int | None, int | None, int | None],
    vmm: VmmType,
) -> int | None:
    given = [vcpu_type is not None, vcpu_sig is not None, any(v is not None for v in fms)]
    if sum(given) > 1:
        raise ConfigError(
            "give one of --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping"
        )
    if vcpu_type is not None:
        return vcpu_signature(vcpu_type)
    if vcpu_sig is not None:
        return _parse_hex(vcpu_sig, "--vcpu-sig", max_bits=32)
    family, model, stepping = fms
    if family is not None and model is not None and stepping is not None:
        return cpuid_signature(family, model, stepping)
    if any(v is not None for v in fms):
        raise ConfigError("--vcpu-family, --vcpu-model and --vcpu-stepping go together")
    if vmm is VmmType.QEMU:
        raise ConfigError(
            "QEMU guests need the vCPU model",
            hint="give --vcpu-type (e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa) or --vcpu-sig",
        )
    return None


@measure_app.command("snp")
def measure_snp(
    ovmf: Annotated[Path, typer.Option(help="The OVMF firmware image (OVMF.fd).")],
    vcpus: Annotated[int, typer.Option(help="Number of vCPUs.")],
    vcpu_type: Annotated[
        str | None, typer.Option(help="vCPU model: EPYC, EPYC-v1..v4, EPYC-Milan, EPYC-Genoa...")
    ] = None,
    vcpu_sig: Annotated[
        str | None, typer.Option(help="vCPU CPUID signature (hex), instead of --vcpu-type.")
    ] = None,
    vcpu_family: Annotated[int | None, typer.Option(help="vCPU family (decimal).")] = None,
    vcpu_model: Annotated[int | None, typer.Option(help="vCPU model (decimal).")] = None,
    vcpu_stepping: Annotated[int | None, typer.Option(help="vCPU stepping (decimal).")] = None,
    vmm_type: Annotated[str, typer.Option(help="The VMM: QEMU, ec2 or gce.")] = "QEMU",
    kernel: Annotated[Path | None, typer.Option(help="Kernel booted directly by the VMM.")] = None,
    initrd: Annotated[Path | None, typer.Option(help="Initrd (with --kernel).")] = None,
    append: Annotated[str | None, typer.Option(help="Kernel command line (with --kernel).")] = None,
    guest_features: Annotated[
        str, typer.Option(help="VMSA SEV_FEATURES (hex); 0x1 is SNPActive alone.")
    ] = "0x1",
    snp_ovmf_hash: Annotated[
        str | None,
        typer.Option(help="Precomputed digest of the OVMF pages (hex), as sev-snp-measure takes."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the measurement with its inputs' digests.")
    ] = False,
) -> None:
    """The expected SEV-SNP launch measurement of an OVMF guest (what its report carries)."""
    vmm = VmmType.from_name(vmm_type)
    if (initrd is not None or append is not None) and kernel is None:
        raise ConfigError("--initrd and --append need --kernel")
    sig = _vcpu_sig(vcpu_type, vcpu_sig, (vcpu_family, vcpu_model, vcpu_stepping), vmm)
    features = _parse_hex(guest_features, "--guest-features", max_bits=64)
    pages_digest = None
    if snp_ovmf_hash is not None:
        try:
            pages_digest = bytes.fromhex(snp_ovmf_hash.strip().removeprefix("0x"))
        except ValueError:
            raise ConfigError("--snp-ovmf-hash must be hex") from None
        if len(pages_digest) != MEASUREMENT_SIZE:
            raise ConfigError(f"--snp-ovmf-hash must be {MEASUREMENT_SIZE} bytes")

    ovmf_size = _size(ovmf, "OVMF image")
    if ovmf_size > MAX_FIRMWARE_BYTES:
        raise EvidenceFormatError(
            f"OVMF image {ovmf} is {ovmf_size} bytes, more than the {MAX_FIRMWARE_BYTES} allowed"
        )
    files = [(p, w) for p, w in ((kernel, "kernel"), (initrd, "initrd")) if p is not None]
    total = ovmf_size + sum(_size(p, w) for p, w in files)
    digests: dict[str, bytes] = {}
    with _progress(total, "hashing inputs") as advance:
        image = _read(ovmf, "OVMF image", advance)
        firmware = load_ovmf(image, pages_digest=pages_digest)
        if kernel is not None:
            firmware.metadata.require_direct_boot()  # before hashing large files for nothing
        for path, what in files:
            digests[what] = _sha256_file(path, what, advance)
    kernel_hashes = None
    if "kernel" in digests:
        kernel_hashes = KernelHashes.from_digests(digests["kernel"], digests.get("initrd"), append)
    inputs = SnpLaunchInputs(
        firmware=firmware,
        vcpus=vcpus,
        vcpu_sig=sig,
        vmm_type=vmm,
        guest_features=features,
        kernel_hashes=kernel_hashes,
    )
    measurement = expected_measurement(inputs)
    if not json_out:
        sys.stdout.write(measurement.hex() + "\n")
        sys.stdout.flush()
        return

    def artifact(path: Path | None, what: str) -> dict[str, str] | None:
        if path is None:
            return None
        return {"path": str(path), "sha256": digests[what].hex()}

    output.print_json(
        {
            "tee": "snp",
            "measurement": measurement.hex(),
            "inputs": {
                "ovmf": {
                    "path": str(ovmf),
                    "sha256": firmware.sha256.hex(),
                    "size": firmware.metadata.size,
                    "pages_digest": firmware.pages_digest.hex(),
                },
                "kernel": artifact(kernel, "kernel"),
                "initrd": artifact(initrd, "initrd"),
                "append": None
                if kernel is None
                else {
                    "value": append or "",
                    "sha256": hashlib.sha256(cmdline_bytes(append)).hexdigest(),
                },
                "vcpus": vcpus,
                "vcpu_type": vcpu_type,
                "vcpu_sig": None if sig is None else f"{sig:#010x}",
                "vmm_type": vmm.value,
                "guest_features": f"{features:#x}",
            },
            "generator": {"name": "veritee", "version": __version__},
        }
    )
