"""Per-report cost of SNP verification with a warm collateral cache (process CPU time).

Verifies every real report in ../shared/corpus/snp (repeatedly) and divides the
mean per-report time by the cost of one ECDSA P-384 signature verification
measured in the same run: the one operation verification cannot avoid.

    RESULT snp_cost_per_p384_verify=<ratio> ratio target<=1.15
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from veritee.pki.certs import load_certificate, load_certificates  # noqa: E402
from veritee.tee.snp.claims import SnpClaims  # noqa: E402
from veritee.tee.snp.report import SnpReport  # noqa: E402
from veritee.tee.snp.verify import SnpCollateral, TrustRoots, verify_report  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "15"))


def corpus() -> Path:
    env = os.environ.get("VERITEE_CORPUS")
    root = Path(env) if env else REPO.parent / "shared" / "corpus"
    if not (root / "snp").is_dir():
        sys.exit(f"corpus not found at {root}; set VERITEE_CORPUS")
    return root


def load_cases(root: Path) -> list[tuple[bytes, SnpCollateral, TrustRoots, dt.datetime]]:
    cases = []
    for d in sorted((root / "snp").iterdir()):
        exp = json.loads((d / "expected.json").read_text())["observed_by_collector"]
        vek_file = d / ("vlek.der" if exp["endorsement_key"] == "VLEK" else "vcek.der")
        inter = tuple(load_certificates((root / exp["roots"]).read_bytes()))
        col = SnpCollateral(vek=load_certificate(vek_file.read_bytes()), intermediates=inter)
        at = dt.datetime.fromisoformat(exp["vek_not_before"]) + dt.timedelta(days=30)
        cases.append(((d / "report.bin").read_bytes(), col, TrustRoots.amd(inter), at))
    return cases


def full_verify(raw: bytes, col: SnpCollateral, roots: TrustRoots, at: dt.datetime) -> None:
    """What a caller does per report: parse, verify, produce claims."""
    verified = verify_report(SnpReport.from_bytes(raw), col, roots, at)
    SnpClaims.from_verified(verified).to_json()


def p384_verify_cost(rounds: int) -> float:
    key = ec.generate_private_key(ec.SECP384R1())
    msg = os.urandom(672)
    sig = key.sign(msg, ec.ECDSA(hashes.SHA384()))
    pub = key.public_key()
    start = time.process_time()
    for _ in range(rounds):
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA384()))
    return (time.process_time() - start) / rounds


def main() -> None:
    cases = load_cases(corpus())
    for raw, col, roots, at in cases:  # warm: chains and extensions memoized
        full_verify(raw, col, roots, at)
    ratios = []
    for _ in range(TRIALS):  # short interleaved trials share machine noise; report the median
        base = p384_verify_cost(ROUNDS)
        start = time.process_time()
        for _ in range(ROUNDS // len(cases) + 1):
            for raw, col, roots, at in cases:
                full_verify(raw, col, roots, at)
        n = (ROUNDS // len(cases) + 1) * len(cases)
        per_report = (time.process_time() - start) / n
        ratios.append(per_report / base)
        print(f"per report {per_report * 1e6:8.1f} us   one P-384 verify {base * 1e6:8.1f} us")
    ratios.sort()
    median = ratios[len(ratios) // 2]
    print(f"ratio min {ratios[0]:.3f}  median {median:.3f}  max {ratios[-1]:.3f}")
    print(f"RESULT snp_cost_per_p384_verify={median:.3f} ratio target<=1.15")


if __name__ == "__main__":
    main()
