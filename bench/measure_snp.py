"""Expected SEV-SNP launch measurements: veritee against sev-snp-measure on the same inputs.

The workload is the reference-value set an owner computes before deploying: for each
firmware, the launch measurement of every VM shape they run (vCPU counts x vCPU models
x VMM), and for a measured-direct-boot firmware also with a kernel and command line
(CoCo style, root filesystem on a dm-verity disk) and with kernel, initrd and command
line. Every configuration starts from the files on disk for both tools:

* sev-snp-measure: ``guest.snp_calc_launch_digest`` with the paths (its library entry
  point, the same work as its command line without the interpreter start-up);
* veritee: read the firmware, ``load_ovmf`` (memoized by the image's SHA-256, which it
  computes every time), stream the kernel and initrd through SHA-256 as ``veritee
  measure snp`` does, ``expected_measurement``.

Both results are compared for every configuration. Firmware: Debian's OVMF images with
SEV metadata and a direct-boot image built from Debian's OVMF_CODE.fd (synthetic 2 MiB
images when the ``ovmf`` package is absent). The kernel (6 MiB) and initrd (16 MiB) are
random bytes; hashing them costs both tools the same and bounds the direct-boot ratio.
Also printed: the cold cost of one measurement of a firmware seen for the first time.

    RESULT measure_snp_speedup_vs_sev_snp_measure=<x> ratio target>=2
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests import snp_firmware as fw  # noqa: E402

from veritee.tee.snp.launch import (  # noqa: E402
    KernelHashes,
    SnpLaunchInputs,
    VmmType,
    clear_ovmf_cache,
    expected_measurement,
    load_ovmf,
    vcpu_signature,
)

try:
    from sevsnpmeasure import guest
    from sevsnpmeasure.vmm_types import VMMType
except ImportError:
    sys.exit("sev-snp-measure is not installed: run scripts/setup.d/measure.sh")

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "24"))
SHAPES = [
    (vcpus, cpu, vmm)
    for vcpus in (1, 2, 4, 8, 16, 64)
    for cpu in ("EPYC-v4", "EPYC-Milan", "EPYC-Genoa")
    for vmm in (VmmType.QEMU, VmmType.EC2)
]
KERNEL_BYTES = 6 << 20
INITRD_BYTES = 16 << 20
CMDLINE = "console=ttyS0 root=/dev/vda1 ro dm-mod.create=root,,,ro,0 verity 1 ... quiet"


@dataclass(frozen=True)
class Config:
    label: str
    ovmf: Path
    vcpus: int
    cpu: str
    vmm: VmmType
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None


def sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def veritee_measure(c: Config) -> bytes:
    firmware = load_ovmf(c.ovmf.read_bytes())
    hashes = None
    if c.kernel is not None:
        initrd = sha256_file(c.initrd) if c.initrd is not None else None
        hashes = KernelHashes.from_digests(sha256_file(c.kernel), initrd, c.append)
    inputs = SnpLaunchInputs(
        firmware=firmware,
        vcpus=c.vcpus,
        vcpu_sig=vcpu_signature(c.cpu),
        vmm_type=c.vmm,
        kernel_hashes=hashes,
    )
    return expected_measurement(inputs)


def oracle_measure(c: Config) -> bytes:
    digest: bytes = guest.snp_calc_launch_digest(
        c.vcpus,
        vcpu_signature(c.cpu),
        str(c.ovmf),
        str(c.kernel) if c.kernel else None,
        str(c.initrd) if c.initrd else None,
        c.append,
        0x1,
        "",
        VMMType[c.vmm.value],
    )
    return digest


def timed(fn: Callable[[Config], bytes], c: Config) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = fn(c)
    return time.perf_counter() - t0, out


def firmware_files(d: Path) -> list[tuple[str, Path]]:
    debian = [
        Path("/usr/share/ovmf/OVMF.fd"),
        Path("/usr/share/OVMF/OVMF_CODE.fd"),
        Path("/usr/share/OVMF/OVMF_CODE.secboot.fd"),
    ]
    found = [(p.name, p) for p in debian if p.is_file()]
    if found:
        base = found[-1][1].read_bytes()
    else:
        print("Debian's ovmf package is absent: using synthetic 2 MiB firmware images")
        for seed in (1, 2):
            image = fw.build_firmware(
                fw.synthetic_base(512, seed), fw.FirmwareSpec(sections=fw.DEBIAN_SECTIONS)
            )
            found.append((f"synthetic-{seed}.fd", fw.write(d / f"synthetic-{seed}.fd", image)))
        base = fw.synthetic_base(480, 3)
    direct = fw.write(d / "amdsev.fd", fw.build_firmware(base))
    return [*found, ("amdsev.fd (built)", direct)]


def main() -> None:
    rng = random.Random(2024)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        firmwares = firmware_files(d)
        kernel = fw.write(d / "vmlinuz", rng.randbytes(KERNEL_BYTES))
        initrd = fw.write(d / "initrd.img", rng.randbytes(INITRD_BYTES))
        configs: list[Config] = []
        for name, path in firmwares:
            for vcpus, cpu, vmm in SHAPES:
                configs.append(Config(f"{name}", path, vcpus, cpu, vmm))
        direct = firmwares[-1][1]
        for vcpus, cpu, vmm in SHAPES:
            configs.append(Config("kernel+cmdline", direct, vcpus, cpu, vmm, kernel, None, CMDLINE))
            configs.append(
                Config("kernel+initrd+cmdline", direct, vcpus, cpu, vmm, kernel, initrd, CMDLINE)
            )

        # Cold: a firmware seen for the first time (nothing memoized), no kernel.
        cold_ours = cold_theirs = 0.0
        cold_n = 0
        for _ in range(5):
            for _name, path in firmwares:
                c = Config("cold", path, 4, "EPYC-v4", VmmType.QEMU)
                clear_ovmf_cache()
                t_ours, a = timed(veritee_measure, c)
                t_theirs, b = timed(oracle_measure, c)
                assert a == b, c
                cold_ours += t_ours
                cold_theirs += t_theirs
                cold_n += 1

        clear_ovmf_cache()
        totals: dict[str, list[float]] = {}
        checked = 0
        t_start = time.perf_counter()
        for r in range(ROUNDS):
            order = list(configs)
            random.Random(r).shuffle(order)
            for c in order:
                # alternate which tool goes first so neither always finds a warm page cache
                if (checked + r) % 2:
                    t_ours, a = timed(veritee_measure, c)
                    t_theirs, b = timed(oracle_measure, c)
                else:
                    t_theirs, b = timed(oracle_measure, c)
                    t_ours, a = timed(veritee_measure, c)
                if a != b:
                    sys.exit(f"MISMATCH for {c}: veritee {a.hex()} sev-snp-measure {b.hex()}")
                group = totals.setdefault(c.label, [0.0, 0.0, 0.0])
                group[0] += t_ours
                group[1] += t_theirs
                group[2] += 1
                checked += 1
        elapsed = time.perf_counter() - t_start

    print(f"{checked} measurements compared, all identical ({ROUNDS} rounds, {elapsed:.1f} s)")
    print(f"{'configuration':<28}{'n':>6}{'veritee ms':>12}{'sev-snp-measure ms':>20}{'ratio':>8}")
    sum_ours = sum_theirs = 0.0
    for label, (ours, theirs, n) in totals.items():
        sum_ours += ours
        sum_theirs += theirs
        print(
            f"{label:<28}{int(n):>6}{ours / n * 1e3:>12.2f}{theirs / n * 1e3:>20.2f}"
            f"{theirs / ours:>8.2f}"
        )
    print(
        f"{'cold (first sight of a firmware)':<34}{cold_ours / cold_n * 1e3:>6.2f} ms "
        f"vs {cold_theirs / cold_n * 1e3:.2f} ms, ratio {cold_theirs / cold_ours:.2f}"
    )
    speedup = sum_theirs / sum_ours
    print(f"total: veritee {sum_ours:.2f} s, sev-snp-measure {sum_theirs:.2f} s")
    print(f"RESULT measure_snp_speedup_vs_sev_snp_measure={speedup:.2f} ratio target>=2")


if __name__ == "__main__":
    main()
