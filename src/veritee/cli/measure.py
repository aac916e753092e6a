"""``veritee measure <tee> ...``: expected launch measurements from the owner's own artifacts."""

from __future__ import annotations

import enum
import hashlib
import json
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
from veritee.tee.tdx.ccel import CcelLog
from veritee.tee.tdx.measure import (
    MAX_TDVF_BYTES,
    DirectBoot,
    InitrdOption,
    PageOrder,
    RtmrEvent,
    Separators,
    TdvfImage,
    rtmr0_from_reference,
)
from veritee.tee.tdx.measure import mrtd as tdx_mrtd
from veritee.tee.tdx.measure import reference_values as tdx_reference_values
from veritee.tee.tdx.measure import replay as tdx_replay
from veritee.tee.tpm.eventlog import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, EventLog
from veritee.tee.tpm.predict import (
    BootImage,
    SecureBootVariables,
    reference_values_from_log,
)
from veritee.tee.tpm.predict import predict as tpm_predict
from veritee.tee.tpm.structures import hash_alg, hash_name, hashlib_name

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


# -- TDX ----------------------------------------------------------------------------------------


def _choice(value: str, kinds: type[enum.Enum], what: str) -> enum.Enum:
    for kind in kinds:
        if kind.value == value.strip().lower():
            return kind
    raise ConfigError(
        f"unknown {what} {value!r}", hint=f"use one of {', '.join(str(k.value) for k in kinds)}"
    )


_SB_FILES = ("SecureBoot", "PK", "KEK", "db", "dbx", "dbt")


def _secureboot_dir(path: Path) -> dict[str, bytes]:
    """Secure Boot variables from a directory: ``NAME-<GUID>`` files as efivarfs shows them
    (4 bytes of attributes, then the data) or ``NAME`` / ``NAME.esl`` / ``NAME.bin`` files
    holding the raw data (an EFI_SIGNATURE_LIST for PK/KEK/db/dbx, one byte for SecureBoot).
    A variable with no file is not set."""
    if not path.is_dir():
        raise ConfigError(f"--secureboot-vars {path} is not a directory")
    out: dict[str, bytes] = {}
    for name in _SB_FILES:
        guid = EFI_IMAGE_SECURITY_DATABASE if name.startswith("db") else EFI_GLOBAL_VARIABLE
        efivar = path / f"{name}-{guid}"
        if efivar.is_file():
            data = _read(efivar, f"Secure Boot variable {name}", lambda n: None)
            if len(data) < 4:
                raise EvidenceFormatError(f"{efivar}: efivarfs file shorter than its attributes")
            out[name] = data[4:]
            continue
        for candidate in (path / name, path / f"{name}.esl", path / f"{name}.bin"):
            if candidate.is_file():
                out[name] = _read(candidate, f"Secure Boot variable {name}", lambda n: None)
                break
    return out


@measure_app.command("tdx")
def measure_tdx(
    tdvf: Annotated[Path, typer.Option(help="The TDVF firmware image (an OVMF.fd with TDX).")],
    kernel: Annotated[Path | None, typer.Option(help="Kernel booted directly by the VMM.")] = None,
    initrd: Annotated[Path | None, typer.Option(help="Initrd (with --kernel).")] = None,
    append: Annotated[str | None, typer.Option(help="Kernel command line (with --kernel).")] = None,
    reference_log: Annotated[
        Path | None,
        typer.Option(help="A known-good CC event log of the same VM shape: RTMR0's VMM-made "
                          "events (TD HOB, ACPI, boot variables) are taken from it."),
    ] = None,
    secureboot_vars: Annotated[
        Path | None, typer.Option(help="Directory of Secure Boot variables (see the README).")
    ] = None,
    page_order: Annotated[
        str, typer.Option(help="single-pass (KVM, upstream QEMU) or two-pass (older TDX QEMU).")
    ] = "single-pass",
    initrd_option: Annotated[
        str, typer.Option(help="suffix (EDK2 <= 2024) or prefix (EDK2 2025+) 'initrd=initrd'.")
    ] = "suffix",
    separators: Annotated[
        str, typer.Option(help="rtmr1 (GCE firmware) or all (recent EDK2) ReadyToBoot separators.")
    ] = "rtmr1",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print values, events and reference values as JSON.")
    ] = False,
) -> None:
    """Expected MRTD of a TDVF image, and RTMR0-2 for a directly booted kernel."""
    if (initrd is not None or append is not None) and kernel is None:
        raise ConfigError("--initrd and --append need --kernel")
    order = _choice(page_order, PageOrder, "page order")
    assert isinstance(order, PageOrder)
    option = _choice(initrd_option, InitrdOption, "initrd option")
    assert isinstance(option, InitrdOption)
    seps = _choice(separators, Separators, "separator convention")
    assert isinstance(seps, Separators)
    size = _size(tdvf, "TDVF image")
    if size > MAX_TDVF_BYTES:
        raise EvidenceFormatError(f"TDVF image {tdvf} is {size} bytes, more than allowed")
    files = [(p, w) for p, w in ((kernel, "kernel"), (initrd, "initrd"), (reference_log,
             "reference log")) if p is not None]
    total = size + sum(_size(p, w) for p, w in files)
    blobs: dict[str, bytes] = {}
    with _progress(total, "measuring") as advance:
        image = TdvfImage.from_bytes(_read(tdvf, "TDVF image", advance))
        for path, what in files:
            blobs[what] = _read(path, what, advance)
    mr_td = tdx_mrtd(image, order)
    events: list[RtmrEvent] = []
    notes: list[str] = []
    rtmrs: list[bytes | None] = [None, None, None]
    variables = _secureboot_dir(secureboot_vars) if secureboot_vars is not None else None
    if "reference log" in blobs:
        comparison = rtmr0_from_reference(
            CcelLog.from_bytes(blobs["reference log"]), image, variables
        )
        events += comparison.events
        rtmrs[0] = tdx_replay(comparison.events)[0]
        notes += [f"RTMR0: {w} differs from the reference log's" for w in comparison.differs]
    else:
        notes.append("RTMR0 needs the VMM's TD HOB and ACPI tables: give --reference-log")
    if "kernel" in blobs:
        boot = DirectBoot(blobs["kernel"], blobs.get("initrd"), append, option, seps).events()
        events += boot
        replayed = tdx_replay(boot)
        rtmrs[1], rtmrs[2] = replayed[1], replayed[2]
        notes.append(
            "RTMR1/RTMR2 assume OVMF direct boot of an EFI-stub kernel that measures into "
            "RTMRs (Linux 6.8+); --kernel must be the image as the firmware loads it"
        )
    else:
        notes.append("RTMR1 and RTMR2 need the directly booted --kernel")
    if not json_out:
        lines = [f"mr_td  {mr_td.hex()}"]
        lines += [f"rtmr_{i} {v.hex()}" for i, v in enumerate(rtmrs) if v is not None]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        for note in notes:
            output.err.print(f"[dim]note:[/] {note}", soft_wrap=True)
        return
    output.print_json(
        {
            "tee": "tdx",
            "mr_td": mr_td.hex(),
            "rtmrs": {f"rtmr_{i}": None if v is None else v.hex() for i, v in enumerate(rtmrs)},
            "events": [e.to_json() for e in events],
            "notes": notes,
            "reference_values": tdx_reference_values(mr_td, rtmrs),
            "inputs": {
                "tdvf": {
                    "path": str(tdvf),
                    "sha384": image.sha384.hex(),
                    "sections": [
                        {"type": s.type_name, "gpa": f"{s.gpa:#x}", "size": f"{s.memory_size:#x}",
                         "mr_extend": s.mr_extend, "page_aug": s.page_aug}
                        for s in image.sections
                    ],
                },
                "kernel": None if kernel is None else str(kernel),
                "initrd": None if initrd is None else str(initrd),
                "append": append,
                "page_order": order.value,
                "initrd_option": option.value,
                "separators": seps.value,
            },
            "generator": {"name": "veritee", "version": __version__},
        }
    )


# -- TPM ----------------------------------------------------------------------------------------


@measure_app.command("tpm")
def measure_tpm(
    boot_image: Annotated[
        list[Path] | None,
        typer.Option(help="A boot application (PE), in load order: shim, grub, kernel. Repeat."),
    ] = None,
    from_log: Annotated[
        Path | None, typer.Option(help="A known-good TCG event log: the measured-boot policy.")
    ] = None,
    secureboot_vars: Annotated[
        Path | None, typer.Option(help="Directory of Secure Boot variables: predicts PCR 7.")
    ] = None,
    bank: Annotated[
        list[str] | None, typer.Option(help="PCR bank(s) to predict (default sha256). Repeat.")
    ] = None,
    legacy_shim: Annotated[
        bool, typer.Option(help="shim older than 15.3 (its authority events differ).")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print values, events and reference values as JSON.")
    ] = False,
) -> None:
    """Expected TPM PCRs from boot images and Secure Boot variables, or the reference values
    a measured-boot policy may pin, from a known-good event log."""
    images = boot_image or []
    if not images and from_log is None:
        raise ConfigError("give --boot-image (repeatable) or --from-log")
    if secureboot_vars is not None and not images:
        raise ConfigError("--secureboot-vars predicts PCR 7 with --boot-image")
    try:
        algs = tuple(dict.fromkeys(hash_alg(b) for b in (bank or ["sha256"])))
        for a in algs:
            hashlib_name(a)
    except (EvidenceFormatError, ValueError) as exc:
        raise ConfigError(f"--bank: {exc}", hint="use sha1, sha256, sha384 or sha512") from None
    doc: dict[str, object] = {"tee": "tpm"}
    rv: dict[str, list[object]] = {}
    lines: list[str] = []
    notes: list[str] = []
    if images:
        total = sum(_size(p, "boot image") for p in images)
        loaded = []
        with _progress(total, "hashing boot images") as advance:
            for p in images:
                loaded.append(BootImage.from_bytes(p.name, _read(p, "boot image", advance), algs))
        variables = None
        if secureboot_vars is not None:
            raw = _secureboot_dir(secureboot_vars)
            variables = SecureBootVariables(
                raw.get("SecureBoot", b""), raw.get("PK", b""), raw.get("KEK", b""),
                raw.get("db", b""), raw.get("dbx", b""), raw.get("dbt"),
            )
        prediction = tpm_predict(loaded, variables, algs, legacy_shim=legacy_shim)
        notes += prediction.notes
        pcrs = (4, 7) if variables is not None else (4,)
        main = algs[0]
        for a in algs:
            prefix = "tpm_" if a == main else f"tpm_{hash_name(a)}_"
            for pcr in pcrs:
                rv[f"{prefix}pcr{pcr:02d}"] = [prediction.value(a, pcr).hex()]
                lines.append(f"pcr{pcr:02d} {hash_name(a):6} {prediction.value(a, pcr).hex()}")
        rv["tpm_boot_app_digests"] = [img.digest(main).hex() for img in loaded]
        doc["predicted"] = {
            "pcrs": {hash_name(a): {str(p): prediction.value(a, p).hex() for p in pcrs}
                     for a in algs},
            "events": [e.to_json() for e in prediction.events],
            "boot_images": [
                {"path": str(p), "name": img.name,
                 "authenticode": {hash_name(a): d.hex() for a, d in img.digests},
                 "signatures": len(img.signatures), "shim": img.vendor_cert is not None}
                for p, img in zip(images, loaded, strict=True)
            ],
        }
    if from_log is not None:
        with _progress(_size(from_log, "event log"), "reading the event log") as advance:
            log = EventLog.from_bytes(_read(from_log, "event log", advance))
        from_log_values = reference_values_from_log(log)
        for name, values in from_log_values.items():
            if name in rv and rv[name] != values:
                notes.append(f"{name}: the boot images predict {rv[name][0]}, the log has "
                             f"{values[0]}; both are listed")
                rv[name] = rv[name] + [v for v in values if v not in rv[name]]
            else:
                rv.setdefault(name, values)
        doc["log"] = {"path": str(from_log), "format": log.format.value,
                      "banks": [hash_name(a) for a in log.algorithms],
                      "events": len(log.events)}
        if not lines:
            lines = [f"{name} {json.dumps(values)}" for name, values in rv.items()]
    doc["notes"] = notes
    doc["reference_values"] = rv
    doc["generator"] = {"name": "veritee", "version": __version__}
    if json_out:
        output.print_json(doc)
        return
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    for note in notes:
        output.err.print(f"[dim]note:[/] {note}", soft_wrap=True)
