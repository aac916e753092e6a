"""Real AWS Nitro documents and NVIDIA reports of ../shared/corpus, with their manifest values.

A helper for tests/test_nitro_*.py and tests/test_nvidia_*.py: nothing is copied
out of the corpus, and every list is empty when the corpus is absent.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import CORPUS


@dataclass(frozen=True)
class NitroSample:
    name: str
    path: Path
    cose: bytes
    expected: dict[str, object]

    @property
    def observed(self) -> dict[str, object]:
        obs = self.expected["observed_by_collector"]
        assert isinstance(obs, dict)
        return obs

    @property
    def at(self) -> dt.datetime:
        """The manifest's verification time: the document timestamp."""
        return dt.datetime.fromtimestamp(int(str(self.observed["timestamp_ms"])) / 1000, dt.UTC)


def nitro_samples() -> list[NitroSample]:
    if CORPUS is None:
        return []
    out = []
    for d in sorted((CORPUS / "nitro").iterdir()):
        if (d / "attestation_doc.cose").is_file() and (d / "expected.json").is_file():
            out.append(
                NitroSample(
                    d.name,
                    d,
                    (d / "attestation_doc.cose").read_bytes(),
                    json.loads((d / "expected.json").read_text()),
                )
            )
    return out


@dataclass(frozen=True)
class GpuSample:
    name: str
    path: Path
    report_text: bytes
    chain_pem: bytes
    expected: dict[str, object]
    claims_file: Path | None

    @property
    def observed(self) -> dict[str, object]:
        obs = self.expected["observed_by_collector"]
        assert isinstance(obs, dict)
        return obs

    @property
    def nonce(self) -> bytes:
        return bytes.fromhex(str(self.observed["req_nonce"]))


# "certs valid until 9999-12-31; any time after 2022-03-01" (MANIFEST.md)
NVIDIA_AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
NVIDIA_NOT_BEFORE = dt.datetime(2022, 3, 1, tzinfo=dt.UTC)
_GPU_FILES = {
    "nvtrust-h100-local-sample": ("hopperAttestationReport.txt", "hopperCertChain.txt"),
    "trustee-h100-coco-report1": ("hopper_coco_report1.txt", "hopper_coco_certs1.txt"),
}


def gpu_samples() -> list[GpuSample]:
    if CORPUS is None:
        return []
    out = []
    for name, (report, chain) in sorted(_GPU_FILES.items()):
        d = CORPUS / "nvidia" / name
        if not (d / report).is_file():
            continue
        claims = d / "hopperAttestationReport-claims.txt"
        out.append(
            GpuSample(
                name,
                d,
                (d / report).read_bytes(),
                (d / chain).read_bytes(),
                json.loads((d / "expected.json").read_text()),
                claims if claims.is_file() else None,
            )
        )
    return out


def switch_evidence() -> tuple[Path, dict[str, object]] | None:
    if CORPUS is None:
        return None
    d = CORPUS / "nvidia" / "nvtrust-ppcie-4x-nvswitch-ls10"
    if not (d / "switch_evidence.json").is_file():
        return None
    return d / "switch_evidence.json", json.loads((d / "expected.json").read_text())


NITRO_SAMPLES = nitro_samples()
NITRO_IDS = [s.name for s in NITRO_SAMPLES]
GPU_SAMPLES = gpu_samples()
GPU_IDS = [s.name for s in GPU_SAMPLES]
SWITCH = switch_evidence()
