"""Expected SEV-SNP launch measurements, held to sev-snp-measure on real and built firmware.

sev-snp-measure (PyPI, installed by scripts/setup.d/measure.sh) is the oracle; Debian's
``ovmf`` package (scripts/setup.d/measure.apt) gives real OVMF images. Those lack the
SNP_KERNEL_HASHES section, so measured direct boot is compared on images built by
tests/snp_firmware.py, from Debian's code image and from synthetic bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import snp_firmware as fw
from veritee.cli.main import main
from veritee.errors import ConfigError, EvidenceFormatError
from veritee.tee.snp.launch import (
    BSP_RESET_EIP,
    HASH_TABLE_SIZE,
    VCPU_TYPES,
    KernelHashes,
    SectionType,
    SnpLaunchInputs,
    VmmType,
    clear_ovmf_cache,
    cpuid_signature,
    expected_measurement,
    load_ovmf,
    ovmf_pages_digest,
    parse_guid_table,
    parse_ovmf_metadata,
    vcpu_signature,
    vmsa_page,
)

try:
    from sevsnpmeasure import guest as oracle_guest
    from sevsnpmeasure import vcpu_types as oracle_vcpu_types
    from sevsnpmeasure import vmsa as oracle_vmsa
    from sevsnpmeasure.vmm_types import VMMType as OracleVmm

    HAVE_ORACLE = True
except ImportError:  # pragma: no cover - CI installs it
    HAVE_ORACLE = False

_VENV_CLI = Path(sys.executable).parent / "sev-snp-measure"
ORACLE_CLI = str(_VENV_CLI) if _VENV_CLI.exists() else shutil.which("sev-snp-measure")
needs_oracle = pytest.mark.skipif(
    not HAVE_ORACLE,
    reason="sev-snp-measure is not installed (run scripts/setup.d/measure.sh)",
)

OVMF_DIRS = (Path("/usr/share/ovmf"), Path("/usr/share/OVMF"))


def _debian_images() -> tuple[list[Path], list[Path]]:
    """Debian's *.fd files (symlinks resolved), split by whether they carry SEV metadata.

    Classified by looking for the SEV metadata GUID in the image's last page, without
    either implementation's parser.
    """
    seen: dict[Path, Path] = {}
    for d in OVMF_DIRS:
        if d.is_dir():
            for p in sorted(d.glob("*.fd")):
                seen.setdefault(p.resolve(), p.resolve())
    with_md: list[Path] = []
    without: list[Path] = []
    for p in sorted(seen):
        data = p.read_bytes()
        (with_md if fw.METADATA_GUID.bytes_le in data[-fw.PAGE :] else without).append(p)
    return with_md, without


DEBIAN_WITH_METADATA, DEBIAN_WITHOUT_METADATA = _debian_images()
needs_debian_ovmf = pytest.mark.skipif(
    not DEBIAN_WITH_METADATA,
    reason="Debian's ovmf package is not installed (scripts/setup.d/measure.apt)",
)
DEBIAN_CODE = next((p for p in DEBIAN_WITH_METADATA if p.name == "OVMF_CODE.fd"), None)

ALL_VMMS = tuple(VmmType)
FEATURES = (0x1, 0x5, 0x21, 0x3F, 0x80000001)


def oracle_measure(
    ovmf: Path,
    vcpus: int,
    sig: int | None,
    vmm: VmmType,
    features: int,
    kernel: Path | None = None,
    initrd: Path | None = None,
    append: str | None = None,
    ovmf_hash: str = "",
) -> bytes:
    digest: bytes = oracle_guest.snp_calc_launch_digest(
        vcpus,
        sig,
        str(ovmf),
        str(kernel) if kernel else None,
        str(initrd) if initrd else None,
        append,
        features,
        ovmf_hash,
        OracleVmm[vmm.value],
    )
    return digest


def ours(
    image: bytes,
    vcpus: int,
    sig: int | None,
    vmm: VmmType,
    features: int,
    hashes: KernelHashes | None = None,
) -> bytes:
    inputs = SnpLaunchInputs(
        firmware=load_ovmf(image),
        vcpus=vcpus,
        vcpu_sig=sig,
        vmm_type=vmm,
        guest_features=features,
        kernel_hashes=hashes,
    )
    return expected_measurement(inputs)


# ---------------------------------------------------------------------------------------
# Pieces: CPUID signatures and VMSA pages byte for byte.
# ---------------------------------------------------------------------------------------


@needs_oracle
def test_vcpu_types_and_signatures_equal_sev_snp_measure() -> None:
    assert set(VCPU_TYPES) == set(oracle_vcpu_types.CPU_SIGS)
    for name, sig in oracle_vcpu_types.CPU_SIGS.items():
        assert vcpu_signature(name) == sig, name
    for family, model, stepping in itertools.product(
        (0x0, 0x6, 0xF, 0x10, 0x17, 0x19, 0x1A, 0x10E), (0, 1, 0x11, 0x31, 0xA0, 0xFF), (0, 2, 15)
    ):
        assert cpuid_signature(family, model, stepping) == oracle_vcpu_types.cpu_sig(
            family, model, stepping
        )
    # AMD's published Fn0000_0001_EAX for Milan B1 and Genoa B1.
    assert cpuid_signature(0x19, 0x01, 0x1) == 0x00A00F11
    assert cpuid_signature(0x19, 0x11, 0x1) == 0x00A10F11


def test_vcpu_type_errors_are_config_errors() -> None:
    assert vcpu_signature("epyc-milan") == vcpu_signature("EPYC-Milan")
    with pytest.raises(ConfigError, match="unknown vCPU type"):
        vcpu_signature("Xeon")
    with pytest.raises(ConfigError):
        cpuid_signature(0x19, 0x100, 0)
    with pytest.raises(ConfigError, match="unknown VMM"):
        VmmType.from_name("xen")


@needs_oracle
def test_vmsa_pages_equal_sev_snp_measure_byte_for_byte() -> None:
    checked = 0
    for vmm, eip, sig, features in itertools.product(
        ALL_VMMS,
        (BSP_RESET_EIP, 0x80B004, 0x808004, 0xFFFFF000, 0x1234),
        (vcpu_signature("EPYC-v4"), vcpu_signature("EPYC-Genoa"), 0),
        (0x1, 0x21, (1 << 64) - 1),
    ):
        theirs = bytes(oracle_vmsa.VMSA.build_save_area(eip, features, sig, OracleVmm[vmm.value]))
        assert vmsa_page(eip, vmm, sig, features) == theirs, (vmm, hex(eip), hex(sig))
        checked += 1
    assert checked == 135


# ---------------------------------------------------------------------------------------
# Debian's real OVMF images.
# ---------------------------------------------------------------------------------------


def _debian_matrix() -> Iterator[tuple[int, str, VmmType, int]]:
    for name, vmm, vcpus in itertools.product(VCPU_TYPES, ALL_VMMS, (1, 4)):
        yield vcpus, name, vmm, 0x1
    for vcpus, name, vmm, features in itertools.product(
        (2, 3, 8, 64, 255), ("EPYC-v4", "EPYC-Genoa"), ALL_VMMS, FEATURES[1:]
    ):
        yield vcpus, name, vmm, features


@needs_oracle
@needs_debian_ovmf
@pytest.mark.parametrize("path", DEBIAN_WITH_METADATA, ids=lambda p: p.name)
def test_debian_ovmf_measurements_equal_sev_snp_measure(path: Path) -> None:
    image = path.read_bytes()
    checked = 0
    for vcpus, name, vmm, features in _debian_matrix():
        sig = vcpu_signature(name)
        expected = oracle_measure(path, vcpus, sig, vmm, features)
        assert ours(image, vcpus, sig, vmm, features) == expected, (vcpus, name, vmm, features)
        checked += 1
    assert checked == 16 * 3 * 2 + 5 * 2 * 3 * 4


@needs_oracle
@needs_debian_ovmf
@pytest.mark.parametrize("path", DEBIAN_WITH_METADATA, ids=lambda p: p.name)
def test_debian_ovmf_pages_digest_and_precomputed_seed_equal_sev_snp_measure(path: Path) -> None:
    image = path.read_bytes()
    pages = oracle_guest.calc_snp_ovmf_hash(str(path))
    assert ovmf_pages_digest(image) == pages
    assert load_ovmf(image).pages_digest == pages
    seed = hashlib.sha384(b"another firmware's pages").digest()
    firmware = load_ovmf(image, pages_digest=seed)
    sig = vcpu_signature("EPYC-Milan")
    for vmm in ALL_VMMS:
        inputs = SnpLaunchInputs(firmware=firmware, vcpus=3, vcpu_sig=sig, vmm_type=vmm)
        theirs = oracle_measure(path, 3, sig, vmm, 0x1, ovmf_hash=seed.hex())
        assert expected_measurement(inputs) == theirs


@needs_debian_ovmf
def test_debian_metadata_is_what_ovmf_declares() -> None:
    for path in DEBIAN_WITH_METADATA:
        meta = parse_ovmf_metadata(path.read_bytes())
        assert meta.gpa + meta.size == 1 << 32
        kinds = [s.kind for s in meta.sections]
        assert SectionType.SNP_SECRETS in kinds
        assert SectionType.CPUID in kinds
        assert SectionType.SNP_KERNEL_HASHES not in kinds
        assert not meta.supports_kernel_hashes
        assert 0x800000 <= meta.reset_eip < 0x900000


@pytest.mark.skipif(not DEBIAN_WITHOUT_METADATA, reason="no Debian image without SEV metadata")
def test_debian_images_without_sev_metadata_are_refused() -> None:
    """The 4M builds have a GUIDed table but no SEV metadata; the VARS files have no table.

    QEMU exits ("Failed to locate SEV metadata header") before launching such an image
    under SEV-SNP, so there is no launch measurement to predict. sev-snp-measure computes
    one anyway (for the 4M builds); veritee refuses, naming the reason.
    """
    for path in DEBIAN_WITHOUT_METADATA:
        with pytest.raises(EvidenceFormatError, match=r"SEV metadata|table footer"):
            load_ovmf(path.read_bytes())


# ---------------------------------------------------------------------------------------
# Built images with SNP_KERNEL_HASHES: measured direct boot.
# ---------------------------------------------------------------------------------------

SPECS = {
    "amdsev-c00": fw.FirmwareSpec(),
    "table-at-0": fw.FirmwareSpec(hash_area=(0x820000, 0x400)),
    "table-at-end": fw.FirmwareSpec(hash_area=(0x820000 + 0x1000 - HASH_TABLE_SIZE, 0xB0)),
    "svsm-caa": fw.FirmwareSpec(sections=fw.SVSM_SECTIONS),
    "hashes-first": fw.FirmwareSpec(
        sections=((0x820000, 0x1000, fw.KERNEL_HASHES), *fw.DEBIAN_SECTIONS),
        metadata_offset=0x1000,
        reset_eip=0x808004,
    ),
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("artifacts")
    rng = random.Random(6)
    return {
        "kernel": fw.write(d / "vmlinuz", rng.randbytes(300_000)),
        "initrd": fw.write(d / "initrd.img", rng.randbytes(1_000_000)),
        "empty": fw.write(d / "empty", b""),
    }


BOOTS: dict[str, tuple[str | None, str | None, str | None]] = {
    "no-kernel": (None, None, None),
    "kernel": ("kernel", None, None),
    "kernel+initrd": ("kernel", "initrd", None),
    "kernel+append": ("kernel", None, "console=ttyS0 root=/dev/vda1 ro"),
    "all-unicode": ("kernel", "initrd", "quiet modprobe.blacklist=x ünïcode=✓"),
    "empty-kernel-empty-append": ("empty", "empty", ""),
}


@pytest.fixture(scope="module")
def bases() -> dict[str, bytes]:
    out = {"synthetic": fw.synthetic_base(96, seed=1)}
    if DEBIAN_CODE is not None:
        out["debian-code"] = DEBIAN_CODE.read_bytes()
    return out


@needs_oracle
def test_built_firmware_direct_boot_measurements_equal_sev_snp_measure(
    tmp_path: Path, artifacts: dict[str, Path], bases: dict[str, bytes]
) -> None:
    checked = 0
    for (base_name, base), (spec_name, spec) in itertools.product(bases.items(), SPECS.items()):
        image = fw.build_firmware(base, spec)
        path = fw.write(tmp_path / f"{base_name}-{spec_name}.fd", image)
        assert load_ovmf(image).metadata.supports_kernel_hashes
        for (boot_name, (k, i, a)), vmm, (vcpus, name) in itertools.product(
            BOOTS.items(), ALL_VMMS, ((1, "EPYC-v4"), (4, "EPYC-Milan"), (7, "EPYC-Genoa"))
        ):
            kernel = artifacts[k] if k else None
            initrd = artifacts[i] if i else None
            hashes = None
            if kernel is not None:
                hashes = KernelHashes.of(
                    kernel.read_bytes(), initrd.read_bytes() if initrd else None, a
                )
            sig = vcpu_signature(name)
            expected = oracle_measure(path, vcpus, sig, vmm, 0x1, kernel, initrd, a)
            got = ours(image, vcpus, sig, vmm, 0x1, hashes)
            assert got == expected, (base_name, spec_name, boot_name, vmm, vcpus)
            checked += 1
    assert checked == len(bases) * len(SPECS) * len(BOOTS) * 3 * 3


@needs_oracle
def test_kernel_hashes_change_the_measurement_as_the_oracle_says(
    tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    image = fw.build_firmware(fw.synthetic_base(32, seed=2))
    path = fw.write(tmp_path / "fw.fd", image)
    sig = vcpu_signature("EPYC-v4")
    kernel = artifacts["kernel"].read_bytes()
    flipped = bytearray(kernel)
    flipped[12345] ^= 1
    fw.write(tmp_path / "k2", bytes(flipped))
    seen = set()
    for k, a in ((kernel, "a"), (bytes(flipped), "a"), (kernel, "b"), (kernel, "a ")):
        got = ours(image, 2, sig, VmmType.QEMU, 1, KernelHashes.of(k, None, a))
        kpath = artifacts["kernel"] if k == kernel else tmp_path / "k2"
        assert got == oracle_measure(path, 2, sig, VmmType.QEMU, 1, kpath, None, a)
        seen.add(got)
    assert len(seen) == 4


def test_hash_table_layout() -> None:
    hashes = KernelHashes.of(b"kernel", b"initrd", "cmdline")
    table = hashes.table()
    assert len(table) == HASH_TABLE_SIZE == 176
    assert table[:16] == uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21").bytes_le
    assert struct.unpack_from("<H", table, 16)[0] == 168
    entries = [table[18 + 50 * n : 18 + 50 * (n + 1)] for n in range(3)]
    assert [e[18:] for e in entries] == [
        hashlib.sha256(b"cmdline\0").digest(),
        hashlib.sha256(b"initrd").digest(),
        hashlib.sha256(b"kernel").digest(),
    ]
    assert all(struct.unpack_from("<H", e, 16)[0] == 50 for e in entries)
    assert table[168:] == bytes(8)
    assert KernelHashes.of(b"k").initrd == hashlib.sha256(b"").digest()
    assert KernelHashes.of(b"k").cmdline == hashlib.sha256(b"\0").digest()
    page = hashes.page(0xC00)
    assert page[0xC00 : 0xC00 + 176] == table
    assert page.count(0) >= 4096 - 176


# ---------------------------------------------------------------------------------------
# The command line, against sev-snp-measure's.
# ---------------------------------------------------------------------------------------


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def oracle_cli(args: list[str]) -> str:
    assert ORACLE_CLI is not None
    done = subprocess.run(
        [ORACLE_CLI, "--mode", "snp", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@needs_oracle
@pytest.mark.skipif(ORACLE_CLI is None, reason="sev-snp-measure command not found")
def test_cli_equals_sev_snp_measure_cli(
    tmp_path: Path, artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    image = fw.write(tmp_path / "fw.fd", fw.build_firmware(fw.synthetic_base(48, seed=3)))
    k, i = str(artifacts["kernel"]), str(artifacts["initrd"])
    pages = oracle_guest.calc_snp_ovmf_hash(str(image)).hex()
    cases = [
        ["--vcpus", "1", "--vcpu-type", "EPYC-v4"],
        ["--vcpus", "4", "--vcpu-type", "EPYC-Milan", "--kernel", k],
        ["--vcpus", "2", "--vcpu-type", "EPYC-Genoa", "--kernel", k, "--initrd", i],
        ["--vcpus", "3", "--vcpu-type", "EPYC-Rome", "--kernel", k, "--append", "ro quiet"],
        ["--vcpus", "2", "--vmm-type", "ec2", "--kernel", k, "--initrd", i, "--append", "x"],
        ["--vcpus", "5", "--vmm-type", "gce", "--guest-features", "0x21"],
        ["--vcpus", "2", "--vcpu-sig", "0xA10F11", "--guest-features", "0x5"],
        ["--vcpus", "2", "--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "1"],
        ["--vcpus", "6", "--vcpu-type", "EPYC-v4", "--snp-ovmf-hash", pages, "--kernel", k],
    ]
    for args in cases:
        theirs = oracle_cli(["--ovmf", str(image), *args])
        code, out, err = run(["measure", "snp", "--ovmf", str(image), *args], capsys)
        assert code == 0, err
        assert out.strip() == theirs, args
    if DEBIAN_WITH_METADATA:
        path = str(DEBIAN_WITH_METADATA[0])
        args = ["--ovmf", path, "--vcpus", "8", "--vcpu-type", "EPYC-Milan-v2"]
        code, out, _ = run(["measure", "snp", *args], capsys)
        assert code == 0
        assert out.strip() == oracle_cli(args)


def test_cli_json_carries_the_inputs_digests(
    tmp_path: Path, artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = fw.build_firmware(fw.synthetic_base(16, seed=4))
    image = fw.write(tmp_path / "fw.fd", data)
    base = ["measure", "snp", "--ovmf", str(image), "--vcpus", "2", "--vcpu-type", "EPYC-v4"]
    boot = ["--kernel", str(artifacts["kernel"]), "--initrd", str(artifacts["initrd"])]
    code, plain, _ = run([*base, *boot, "--append", "ro"], capsys)
    assert code == 0
    code, out, _ = run([*base, *boot, "--append", "ro", "--json"], capsys)
    assert code == 0
    doc: dict[str, Any] = json.loads(out)
    assert doc["tee"] == "snp"
    assert doc["measurement"] == plain.strip()
    inputs = doc["inputs"]
    assert inputs["ovmf"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert inputs["ovmf"]["size"] == len(data)
    assert (
        inputs["kernel"]["sha256"] == hashlib.sha256(artifacts["kernel"].read_bytes()).hexdigest()
    )
    assert (
        inputs["initrd"]["sha256"] == hashlib.sha256(artifacts["initrd"].read_bytes()).hexdigest()
    )
    assert inputs["append"] == {"value": "ro", "sha256": hashlib.sha256(b"ro\0").hexdigest()}
    assert inputs["vcpus"] == 2
    assert inputs["vcpu_type"] == "EPYC-v4"
    assert int(inputs["vcpu_sig"], 16) == vcpu_signature("EPYC-v4")
    assert inputs["vmm_type"] == "QEMU"
    assert inputs["guest_features"] == "0x1"
    hashes = KernelHashes.of(
        artifacts["kernel"].read_bytes(), artifacts["initrd"].read_bytes(), "ro"
    )
    assert (
        doc["measurement"]
        == ours(data, 2, vcpu_signature("EPYC-v4"), VmmType.QEMU, 1, hashes).hex()
    )


def test_cli_errors_use_the_documented_exit_codes(
    tmp_path: Path, artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = fw.write(tmp_path / "fw.fd", fw.build_firmware(fw.synthetic_base(8, seed=5)))
    no_hashes = fw.write(
        tmp_path / "nh.fd",
        fw.build_firmware(
            fw.synthetic_base(8, seed=5), fw.FirmwareSpec(sections=fw.DEBIAN_SECTIONS)
        ),
    )
    bad = fw.write(tmp_path / "bad.fd", fw.synthetic_base(8, seed=5))
    k = str(artifacts["kernel"])
    cases = [
        (2, ["--ovmf", str(bad), "--vcpus", "1", "--vcpu-type", "EPYC"], "table footer"),
        (1, ["--ovmf", str(good), "--vcpus", "1"], "vCPU model"),
        (1, ["--ovmf", str(good), "--vcpus", "0", "--vcpu-type", "EPYC"], "out of range"),
        (1, ["--ovmf", str(good), "--vcpus", "1", "--vcpu-type", "Xeon"], "unknown vCPU"),
        (
            1,
            ["--ovmf", str(good), "--vcpus", "1", "--vcpu-type", "EPYC", "--vcpu-sig", "1"],
            "one of",
        ),
        (1, ["--ovmf", str(good), "--vcpus", "1", "--vmm-type", "xen"], "unknown VMM"),
        (
            1,
            ["--ovmf", str(good), "--vcpus", "1", "--vmm-type", "ec2", "--initrd", k],
            "need --kernel",
        ),
        (
            1,
            ["--ovmf", str(good), "--vcpus", "1", "--vmm-type", "ec2", "--guest-features", "zz"],
            "hex",
        ),
        (
            1,
            ["--ovmf", str(tmp_path / "missing.fd"), "--vcpus", "1", "--vmm-type", "ec2"],
            "cannot read",
        ),
        (
            1,
            ["--ovmf", str(no_hashes), "--vcpus", "1", "--vmm-type", "ec2", "--kernel", k],
            "SNP_KERNEL_HASHES",
        ),
        (
            1,
            ["--ovmf", str(good), "--vcpus", "1", "--vmm-type", "ec2", "--snp-ovmf-hash", "00"],
            "48 bytes",
        ),
    ]
    for code, args, message in cases:
        got, out, err = run(["measure", "snp", *args], capsys)
        assert got == code, (args, err)
        assert out == ""
        assert message in " ".join(err.split()), (args, err)


# ---------------------------------------------------------------------------------------
# Malformed images and bad options.
# ---------------------------------------------------------------------------------------


def _good() -> bytes:
    return fw.build_firmware(fw.synthetic_base(8, seed=7))


def test_every_truncation_is_a_format_error() -> None:
    image = _good()
    cuts = sorted({*range(0, len(image), fw.PAGE), *range(len(image) - 64, len(image))})
    for cut in cuts:
        with pytest.raises(EvidenceFormatError):
            load_ovmf(image[:cut])
    # a whole page less keeps the size valid but loses the footer at the end
    with pytest.raises(EvidenceFormatError, match="table footer"):
        parse_ovmf_metadata(image[: -fw.PAGE])


def _patch(image: bytes, offset_from_end: int, data: bytes) -> bytes:
    out = bytearray(image)
    at = len(out) - offset_from_end
    out[at : at + len(data)] = data
    return bytes(out)


def _with_sections(*sections: tuple[int, int, int], version: int = 1) -> bytes:
    return fw.build_firmware(
        fw.synthetic_base(8, seed=7), fw.FirmwareSpec(sections=sections, metadata_version=version)
    )


MALFORMED = {
    "footer guid": (lambda: _patch(_good(), 0x30, bytes(16)), "table footer"),
    "footer length too big": (lambda: _patch(_good(), 0x32, b"\xff\xff"), "out of range"),
    "footer length too small": (lambda: _patch(_good(), 0x32, b"\x05\x00"), "out of range"),
    "entry length": (lambda: _patch(_good(), 0x32 + 18, b"\x03\x00"), "outside the table"),
    "metadata signature": (lambda: _patch(_good(), 0x800, b"XSEV"), "signature"),
    "metadata version": (lambda: _with_sections(*fw.AMDSEV_SECTIONS, version=2), "version 2"),
    "metadata count": (lambda: _patch(_good(), 0x800 - 12, b"\xff\x00\x00\x00"), "too small"),
    "metadata offset 0": (
        lambda: fw.build_firmware(
            fw.synthetic_base(8, seed=7),
            fw.FirmwareSpec(metadata=False, extra=((fw.METADATA_GUID, struct.pack("<I", 0)),)),
        ),
        "outside the image",
    ),
    "metadata offset past the start": (
        lambda: fw.build_firmware(
            fw.synthetic_base(8, seed=7),
            fw.FirmwareSpec(metadata=False, extra=((fw.METADATA_GUID, struct.pack("<I", 0x9000)),)),
        ),
        "outside the image",
    ),
    "metadata runs off the end": (
        lambda: fw.build_firmware(
            fw.synthetic_base(8, seed=7),
            fw.FirmwareSpec(metadata=False, extra=((fw.METADATA_GUID, struct.pack("<I", 8)),)),
        ),
        "truncated|signature",
    ),
    "no metadata": (
        lambda: fw.build_firmware(fw.synthetic_base(8, seed=7), fw.FirmwareSpec(metadata=False)),
        "no SEV metadata",
    ),
    "no reset block": (
        lambda: fw.build_firmware(fw.synthetic_base(8, seed=7), fw.FirmwareSpec(reset_eip=None)),
        "reset block",
    ),
    "unknown section type": (lambda: _with_sections((0x800000, 0x1000, 0x7)), "unknown type"),
    "unaligned section": (lambda: _with_sections((0x800800, 0x1000, 0x1)), "page-aligned"),
    "ragged section": (lambda: _with_sections((0x800000, 0x1800, 0x1)), "page-aligned"),
    "two-page secrets": (lambda: _with_sections((0x800000, 0x2000, 0x2)), "one page"),
    "empty cpuid": (lambda: _with_sections((0x800000, 0, 0x3)), "one page"),
    "above 4 GiB": (lambda: _with_sections((0xFFFFF000, 0x2000, 0x1)), "above 4 GiB"),
    "duplicate entry": (
        lambda: fw.build_firmware(
            fw.synthetic_base(8, seed=7),
            fw.FirmwareSpec(extra=((fw.RESET_BLOCK_GUID, struct.pack("<I", 0x1000)),)),
        ),
        "twice",
    ),
    "short reset block": (
        lambda: fw.build_firmware(
            fw.synthetic_base(8, seed=7),
            fw.FirmwareSpec(reset_eip=None, extra=((fw.RESET_BLOCK_GUID, b"\x01\x02"),)),
        ),
        "truncated",
    ),
    "ragged size": (lambda: _good()[:-1], "multiple"),
    "empty": (lambda: b"", "multiple"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_images_raise_evidence_format_errors(case: str) -> None:
    make, message = MALFORMED[case]
    with pytest.raises(EvidenceFormatError, match=message):
        load_ovmf(make())


def test_bad_options_raise_config_errors() -> None:
    firmware = load_ovmf(_good())
    sig = vcpu_signature("EPYC-v4")
    for kwargs, message in (
        ({"vcpus": 0, "vcpu_sig": sig}, "out of range"),
        ({"vcpus": 4097, "vcpu_sig": sig}, "out of range"),
        ({"vcpus": 1}, "vCPU type"),
        ({"vcpus": 1, "vcpu_sig": 1 << 32}, "32 bits"),
        ({"vcpus": 1, "vcpu_sig": sig, "guest_features": -1}, "64 bits"),
        ({"vcpus": 1, "vcpu_sig": sig, "guest_features": 1 << 64}, "64 bits"),
    ):
        with pytest.raises(ConfigError, match=message):
            SnpLaunchInputs(firmware=firmware, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="NUL"):
        KernelHashes.of(b"k", None, "a\0b")
    with pytest.raises(ConfigError, match="32-byte"):
        KernelHashes(kernel=b"x", initrd=bytes(32), cmdline=bytes(32))
    with pytest.raises(ConfigError, match="48 bytes"):
        load_ovmf(_good(), pages_digest=b"short")
    # EC2 and GCE need no CPUID signature
    for vmm in (VmmType.EC2, VmmType.GCE):
        assert (
            len(expected_measurement(SnpLaunchInputs(firmware=firmware, vcpus=2, vmm_type=vmm)))
            == 48
        )


def test_direct_boot_needs_a_firmware_that_measures_it() -> None:
    hashes = KernelHashes.of(b"kernel")
    sig = vcpu_signature("EPYC-v4")
    base = fw.synthetic_base(8, seed=8)
    for spec, error, message in (
        (fw.FirmwareSpec(sections=fw.DEBIAN_SECTIONS), ConfigError, "SNP_KERNEL_HASHES"),
        (fw.FirmwareSpec(hash_area=None), ConfigError, "absent"),
        (fw.FirmwareSpec(hash_area=(0, 0x400)), ConfigError, "no usable"),
        (fw.FirmwareSpec(hash_area=(0x820C00, 0x10)), ConfigError, "no usable"),
        (fw.FirmwareSpec(hash_area=(0x820F80, 0x400)), EvidenceFormatError, "page boundary"),
        (
            fw.FirmwareSpec(sections=((0x820000, 0x2000, fw.KERNEL_HASHES),)),
            EvidenceFormatError,
            "one page",
        ),
    ):
        firmware = load_ovmf(fw.build_firmware(base, spec))
        SnpLaunchInputs(firmware=firmware, vcpus=1, vcpu_sig=sig)  # fine without a kernel
        with pytest.raises(error, match=message):
            SnpLaunchInputs(firmware=firmware, vcpus=1, vcpu_sig=sig, kernel_hashes=hashes)


def test_zero_ap_reset_address_allows_only_one_vcpu() -> None:
    firmware = load_ovmf(
        fw.build_firmware(fw.synthetic_base(8, seed=9), fw.FirmwareSpec(reset_eip=0))
    )
    SnpLaunchInputs(firmware=firmware, vcpus=1, vcpu_sig=0)
    with pytest.raises(EvidenceFormatError, match="AP address 0"):
        SnpLaunchInputs(firmware=firmware, vcpus=2, vcpu_sig=0)


def test_guid_table_walk_and_memoization() -> None:
    image = _good()
    table = parse_guid_table(image)
    assert set(table) == {
        fw.METADATA_GUID,
        fw.HASH_AREA_GUID,
        fw.SECRET_BLOCK_GUID,
        fw.RESET_BLOCK_GUID,
    }
    assert table[fw.RESET_BLOCK_GUID] == struct.pack("<I", 0x80B004)
    clear_ovmf_cache()
    first = load_ovmf(image)
    assert first.sha256 == hashlib.sha256(image).digest()
    assert load_ovmf(bytes(bytearray(image))) is first  # equal content, another object
    other = load_ovmf(_patch(image, 0x1000, b"\x00"))
    assert other is not first
    assert other.pages_digest != first.pages_digest
    assert other.metadata == first.metadata
    for seed in range(20):  # more images than the memo keeps
        load_ovmf(fw.build_firmware(fw.synthetic_base(2, seed=100 + seed)))
    again = load_ovmf(image)
    assert again is not first
    assert again == first


# ---------------------------------------------------------------------------------------
# Fuzzing: arbitrary bytes, and arbitrary damage to a valid image's tables.
# ---------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3 * fw.PAGE))
def test_arbitrary_bytes_raise_only_format_errors(data: bytes) -> None:
    try:
        firmware = load_ovmf(data)
    except EvidenceFormatError:
        return
    expected_measurement(SnpLaunchInputs(firmware=firmware, vcpus=1, vcpu_sig=0))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2),
    st.integers(min_value=0, max_value=fw.PAGE - 1),
    st.binary(min_size=1, max_size=64),
)
def test_damaged_last_pages_raise_only_format_errors(pages: int, at: int, blob: bytes) -> None:
    last = bytearray(_good()[-fw.PAGE :])
    last[at : at + len(blob)] = blob[: fw.PAGE - at]
    try:
        firmware = load_ovmf(bytes(fw.PAGE) * pages + bytes(last))
    except EvidenceFormatError:
        return
    expected_measurement(SnpLaunchInputs(firmware=firmware, vcpus=1, vcpu_sig=0))


_FUZZ_BASE = fw.build_firmware(fw.synthetic_base(4, seed=10))
_FUZZ_TABLE = len(fw.guid_table(fw.FirmwareSpec()))
_FUZZ_METADATA = len(fw.metadata_block(fw.AMDSEV_SECTIONS))
# offsets from the end: inside the GUID table, inside the metadata block, anywhere near
_FUZZ_OFFSETS = st.one_of(
    st.integers(min_value=0x21, max_value=0x20 + _FUZZ_TABLE),
    st.integers(min_value=0x800 - _FUZZ_METADATA + 1, max_value=0x800),
    st.integers(min_value=1, max_value=0x820),
)


@needs_oracle
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(
        st.tuples(_FUZZ_OFFSETS, st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=4,
    ),
    vcpus=st.integers(min_value=1, max_value=5),
    vmm=st.sampled_from(ALL_VMMS),
    with_kernel=st.booleans(),
)
def test_damaged_tables_are_refused_or_measured_exactly_like_the_oracle(
    edits: list[tuple[int, bytes]], vcpus: int, vmm: VmmType, with_kernel: bool
) -> None:
    image = bytearray(_FUZZ_BASE)
    for offset_from_end, blob in edits:
        at = len(image) - offset_from_end
        image[at : at + len(blob)] = blob[:offset_from_end]
    data = bytes(image)
    sig = vcpu_signature("EPYC-v4")
    hashes = KernelHashes.of(b"fuzz kernel", None, "fuzz") if with_kernel else None
    try:
        got = ours(data, vcpus, sig, vmm, 0x1, hashes)
    except (EvidenceFormatError, ConfigError):
        return
    with tempfile.TemporaryDirectory() as d:
        path = fw.write(Path(d) / "fw.fd", data)
        kernel = fw.write(Path(d) / "k", b"fuzz kernel") if with_kernel else None
        expected = oracle_measure(
            path, vcpus, sig, vmm, 0x1, kernel, None, "fuzz" if with_kernel else None
        )
    assert got == expected
