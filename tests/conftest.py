"""Shared fixtures: the real-hardware corpus (skipped when absent) and simulated platforms."""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from veritee.tee.snp.report import Product
from veritee.tee.snp.sim import SimulatedSnpPlatform

REPO = Path(__file__).resolve().parent.parent


def corpus_root() -> Path | None:
    env = os.environ.get("VERITEE_CORPUS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "corpus")
    for c in candidates:
        if (c / "MANIFEST.md").is_file():
            return c
    return None


CORPUS = corpus_root()
needs_corpus = pytest.mark.skipif(CORPUS is None, reason="../shared/corpus not present")


@pytest.fixture(scope="session")
def corpus() -> Path:
    if CORPUS is None:
        pytest.skip("../shared/corpus not present")
    return CORPUS


@dataclass(frozen=True)
class SnpSample:
    name: str
    path: Path
    report: bytes
    vek: bytes
    expected: dict[str, object]
    roots: Path
    at: dt.datetime

    @property
    def observed(self) -> dict[str, object]:
        obs = self.expected["observed_by_collector"]
        assert isinstance(obs, dict)
        return obs


def _verify_time(obs: dict[str, object], verify_at: str) -> dt.datetime:
    """A time inside the VEK's validity: the manifest's stated instant if it gives one."""
    if verify_at[:4].isdigit() and "T" in verify_at[:20]:
        return dt.datetime.fromisoformat(verify_at.split(" ")[0].replace("Z", "+00:00"))
    if "e.g." in verify_at:
        stamp = verify_at.split("e.g.")[1].strip().split(" ")[0].replace("Z", "+00:00")
        return dt.datetime.fromisoformat(stamp)
    start = dt.datetime.fromisoformat(str(obs["vek_not_before"]))
    return start + dt.timedelta(days=30)


def snp_samples() -> list[SnpSample]:
    if CORPUS is None:
        return []
    out = []
    for d in sorted((CORPUS / "snp").iterdir()):
        exp_file = d / "expected.json"
        if not (d / "report.bin").is_file() or not exp_file.is_file():
            continue
        expected = json.loads(exp_file.read_text())
        obs = expected["observed_by_collector"]
        vek = d / ("vlek.der" if obs["endorsement_key"] == "VLEK" else "vcek.der")
        out.append(
            SnpSample(
                name=d.name,
                path=d,
                report=(d / "report.bin").read_bytes(),
                vek=vek.read_bytes(),
                expected=expected,
                roots=CORPUS / obs["roots"],
                at=_verify_time(obs, str(expected["verify_at"])),
            )
        )
    return out


SNP_SAMPLES = snp_samples()
SNP_IDS = [s.name for s in SNP_SAMPLES]


@pytest.fixture(scope="session")
def sim_milan() -> Iterator[SimulatedSnpPlatform]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield SimulatedSnpPlatform.generate(Product.MILAN, rsa_bits=2048)


@pytest.fixture(scope="session")
def sim_turin() -> Iterator[SimulatedSnpPlatform]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield SimulatedSnpPlatform.generate(Product.TURIN, rsa_bits=2048)
