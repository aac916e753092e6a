"""TPM verification speed, side by side with keylime in the same run.

* quote: one full quote check (parse TPMS_ATTEST, TPMT_SIGNATURE, AK public area and the
  tpm2-tools PCR file; signature, nonce, PCR digest) on the real GCE vTPM quote, vs
  keylime's ``tpm_util.checkquote`` on the same bytes (AK as PEM, PCRs serialized);
* event log: full parse + replay of every real crypto-agile log in the corpus, vs
  keylime's ``mba.bootlog_parse`` (which runs tpm2_eventlog);
* IMA: entries per second verifying the real 922-entry ima-ng list against PCR 10
  (template hashes + aggregate), vs keylime's ``process_measurement_list``.

Each figure is the best of several interleaved rounds, so both sides see the same
machine noise. veritee keeps parsed AKs in a small memo keyed by their bytes (as a
verifier seeing the same AK again does); the first, cold check is printed too.

    RESULT eventlog_speedup_vs_keylime=<x> ratio target>=30
    RESULT ima_speedup_vs_keylime=<x> ratio target>=5
    RESULT quote_speedup_vs_keylime=<x> ratio target>=1
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from veritee.tee.tpm.eventlog import EventLog  # noqa: E402
from veritee.tee.tpm.ima import parse_ascii  # noqa: E402
from veritee.tee.tpm.ima_verify import verify_ima  # noqa: E402
from veritee.tee.tpm.pcrs import PcrBanks, parse_pcr_file  # noqa: E402
from veritee.tee.tpm.replay import replay  # noqa: E402
from veritee.tee.tpm.structures import Attest, TpmAlg, TpmtSignature  # noqa: E402
from veritee.tee.tpm.verify import load_attestation_key, verify_quote  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))


def corpus() -> Path:
    env = os.environ.get("VERITEE_CORPUS")
    root = Path(env) if env else REPO.parent / "shared" / "corpus"
    if not (root / "tpm").is_dir():
        sys.exit(f"corpus not found at {root}; set VERITEE_CORPUS")
    return root / "tpm"


def keylime() -> tuple[Any, Any, Any, Any]:
    logging.disable(logging.CRITICAL)
    try:
        from keylime.common import algorithms
        from keylime.ima import ima
        from keylime.mba import mba
        from keylime.tpm import tpm_util
    except Exception as exc:  # depends on the machine
        sys.exit(f"keylime is not importable ({exc}); run scripts/setup.d/tpm.sh")
    mba.load_imports(skip_custom_policies=True)
    return tpm_util, mba, ima, algorithms


def timed(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def side_by_side(name: str, ours: Callable[[], object], theirs: Callable[[], object],
                 n_ours: int, n_theirs: int, per: int = 1) -> tuple[float, float]:
    ours()
    theirs()
    t_ours = t_theirs = float("inf")
    for _ in range(ROUNDS):
        t_ours = min(t_ours, timed(ours, n_ours))
        t_theirs = min(t_theirs, timed(theirs, n_theirs))
    print(f"  {name:9s} veritee {t_ours * 1e3 / per:9.3f} ms   "
          f"keylime {t_theirs * 1e3 / per:9.3f} ms   x{t_theirs / t_ours:.1f}")
    return t_ours, t_theirs


def main() -> None:
    tpm = corpus()
    tpm_util, mba, ima, algorithms = keylime()

    # -- quote ------------------------------------------------------------------------------
    d = tpm / "gce-cos85-quote-no-nonce"
    msg = (d / "quote-sha256.tpms_attest").read_bytes()
    sig = (d / "quote-sha256.tpmt_signature").read_bytes()
    ak_raw = (d / "ak_pub.tpmt_public").read_bytes()
    exp = json.loads((d / "expected.json").read_text())["quotes"]["sha256"]["pcrs"]
    quote = Attest.from_bytes(msg).quote
    assert quote is not None
    banks = PcrBanks.from_mapping(
        {TpmAlg.SHA256: {int(p): bytes.fromhex(v) for p, v in exp.items()}})
    pcr_blob = banks.to_tpm2_tools(quote.pcr_select)
    pem = load_attestation_key(ak_raw).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def ours_quote() -> object:
        return verify_quote(Attest.from_bytes(msg), TpmtSignature.from_bytes(sig),
                            load_attestation_key(ak_raw), parse_pcr_file(pcr_blob),
                            expected_nonce=b"", message=msg)

    def keylime_quote() -> object:
        return tpm_util.checkquote(pem, "", sig, msg, pcr_blob, "sha256")

    cold_start = time.perf_counter()
    verify_quote(Attest.from_bytes(msg), TpmtSignature.from_bytes(sig),
                 load_attestation_key(pem + b"\n"), parse_pcr_file(pcr_blob),
                 expected_nonce=b"", message=msg)
    cold = time.perf_counter() - cold_start
    print("quote check (GCE vTPM quote, RSA-2048, 24 SHA-256 PCRs):")
    q_ours, q_theirs = side_by_side("quote", ours_quote, keylime_quote, 300, 300)
    print(f"  (veritee cold, AK parsed for the first time: {cold * 1e3:.3f} ms)")

    # -- event logs -------------------------------------------------------------------------
    logs = []
    for sub in sorted(tpm.iterdir()):
        f = sub / "binary_bios_measurements"
        if f.is_file() and "legacy" not in sub.name:  # keylime cannot parse SHA-1 logs
            logs.append(base64.b64encode(f.read_bytes()).decode())
    total = sum(len(base64.b64decode(b)) for b in logs)

    def ours_logs() -> None:
        for b64 in logs:
            replay(EventLog.from_bytes(base64.b64decode(b64)))

    def keylime_logs() -> None:
        for b64 in logs:
            mba.bootlog_parse(b64, "sha256")

    print(f"event log parse + replay ({len(logs)} real crypto-agile logs, {total // 1024} KiB), "
          "per log:")
    e_ours, e_theirs = side_by_side("eventlog", ours_logs, keylime_logs, 10, 1, per=len(logs))

    # -- IMA --------------------------------------------------------------------------------
    text = (tpm / "ima-raspberrypi4-embrave" / "ascii_runtime_measurements").read_bytes()
    lines = text.decode().splitlines()
    pcr10 = bytes.fromhex("f38695bbd9479953543813fb13bb88235440504e")

    def ours_ima() -> object:
        return verify_ima(parse_ascii(text), expected=pcr10)

    def keylime_ima() -> object:
        running, failure = ima.process_measurement_list(
            None, lines, None, pcrval=pcr10.hex(), hash_alg=algorithms.Hash.SHA1)
        assert not failure.get_event_ids()
        return running

    print(f"IMA list ({len(lines)} ima-ng entries) against PCR 10, per list:")
    i_ours, i_theirs = side_by_side("ima", ours_ima, keylime_ima, 30, 15)
    print(f"  veritee {len(lines) / i_ours:,.0f} entries/s, keylime "
          f"{len(lines) / i_theirs:,.0f} entries/s")

    print(f"RESULT eventlog_speedup_vs_keylime={e_theirs / e_ours:.1f} ratio target>=30")
    print(f"RESULT ima_speedup_vs_keylime={i_theirs / i_ours:.1f} ratio target>=5")
    print(f"RESULT quote_speedup_vs_keylime={q_theirs / q_ours:.2f} ratio target>=1")


if __name__ == "__main__":
    main()
