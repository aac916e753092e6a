"""The TPM part of the real-hardware corpus (../shared/corpus/tpm), as test parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import CORPUS
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import TpmAlg, hash_alg

TPM = CORPUS / "tpm" if CORPUS is not None else None


@dataclass(frozen=True)
class LogSample:
    name: str
    path: Path
    expected: dict[str, dict[int, str]]  # bank -> pcr -> hex (authoritative or collector's)
    authoritative: bool
    locality3: bool = False


def log_samples() -> list[LogSample]:
    if TPM is None:
        return []
    out = []
    for d in sorted(TPM.iterdir()):
        f = d / "binary_bios_measurements"
        if not f.is_file():
            continue
        exp = json.loads((d / "expected.json").read_text())
        if exp.get("expected_pcrs"):
            banks = {b: {int(p): v for p, v in vals.items()}
                     for b, vals in exp["expected_pcrs"].items()}
            out.append(LogSample(d.name, f, banks, True))
        else:
            vals = exp["collector_replay_sha256_or_sha1"]
            bank = "sha256" if len(next(iter(vals.values()))) == 64 else "sha1"
            out.append(LogSample(d.name, f, {bank: {int(p): v for p, v in vals.items()}}, False))
    return out


LOGS = log_samples()
LOG_IDS = [s.name for s in LOGS]


@dataclass(frozen=True)
class QuoteSample:
    name: str
    bank: str
    attest: bytes
    signature: bytes
    ak: bytes
    pcrs: PcrBanks
    event_log: bytes | None
    expected: dict[str, object]


def quote_samples() -> list[QuoteSample]:
    if TPM is None:
        return []
    out = []
    for d in sorted(TPM.iterdir()):
        if not (d / "ak_pub.tpmt_public").is_file():
            continue
        exp = json.loads((d / "expected.json").read_text())
        log = d / "event_log.bin"
        for bank, q in exp["quotes"].items():
            out.append(QuoteSample(
                f"{d.name}-{bank}", bank,
                (d / f"quote-{bank}.tpms_attest").read_bytes(),
                (d / f"quote-{bank}.tpmt_signature").read_bytes(),
                (d / "ak_pub.tpmt_public").read_bytes(),
                PcrBanks.from_mapping({hash_alg(bank): {int(p): bytes.fromhex(v)
                                                        for p, v in q["pcrs"].items()}}),
                log.read_bytes() if log.is_file() else None,
                q,
            ))
    return out


QUOTES = quote_samples()
QUOTE_IDS = [q.name for q in QUOTES]
IMA_DIR = TPM / "ima-raspberrypi4-embrave" if TPM is not None else None
SHA1 = TpmAlg.SHA1
