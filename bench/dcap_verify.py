"""Per-quote cost of Intel DCAP verification (TDX and SGX) with warm collateral.

Verifies every real quote of ../shared/corpus whose collateral is complete and
whose platform matches a TCB level (repeatedly): parse, signatures, PCK chain,
QE report, CRLs, TCB info and QE identity, TCB level, claims. The mean time per
quote is divided by the cost of two ECDSA P-256 signature verifications measured
in the same run: the quote signature and the QE report signature are the two
that verification cannot avoid (chains and collateral signatures are memoized
by their exact bytes; validity, freshness and revocation are checked every time).

    RESULT dcap_cost_per_2xp256_verify=<ratio> ratio target<=1.5
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from veritee.pki.certs import load_certificates  # noqa: E402
from veritee.tee.dcap.gather import DcapSources, gather_collateral  # noqa: E402
from veritee.tee.dcap.quote import Quote, TeeType  # noqa: E402
from veritee.tee.dcap.verify import DcapCollateral, IntelRoots, verify_quote_signatures  # noqa: E402
from veritee.tee.sgx.claims import SgxClaims  # noqa: E402
from veritee.tee.sgx.quote import SgxQuote  # noqa: E402
from veritee.tee.sgx.verify import verify_sgx_quote  # noqa: E402
from veritee.tee.tdx.claims import TdxClaims  # noqa: E402
from veritee.tee.tdx.quote import TdxQuote  # noqa: E402
from veritee.tee.tdx.verify import verify_tdx_quote  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "12000"))

# (sample, extra collateral directories, verification time)
CASES = [
    ("tdx/dcap-qvl-v4-uptodate", (), "2025-06-20T00:00:00Z"),
    ("tdx/go-tdx-guest-v5", ("tdx/dcap-qvl-v5-outdated",), "2026-02-18T11:00:00Z"),
    ("sgx/dcap-qvl-sgx", (), "2025-06-20T00:00:00Z"),
]

Case = tuple[bytes, DcapCollateral, IntelRoots, dt.datetime]


def corpus() -> Path:
    env = os.environ.get("VERITEE_CORPUS")
    root = Path(env) if env else REPO.parent / "shared" / "corpus"
    if not (root / "tdx").is_dir():
        sys.exit(f"corpus not found at {root}; set VERITEE_CORPUS")
    return root


def load_cases(root: Path) -> list[tuple[str, Case]]:
    cases = []
    for name, extra, at in CASES:
        d = root / name
        raw = (d / "quote.dat").read_bytes()
        when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        quote = Quote.from_bytes(raw)
        roots = IntelRoots.intel(load_certificates(quote.signature_data.qe.certification_data.data))
        verified = verify_quote_signatures(quote, roots, when)
        dirs = (d, *(root / e for e in extra))
        collateral = gather_collateral(verified, DcapSources(directories=dirs))
        cases.append((quote.tee.name, (raw, collateral, roots, when)))
    return cases


def full_verify_tdx(raw: bytes, col: DcapCollateral, roots: IntelRoots, at: dt.datetime) -> None:
    """What a caller does per quote: parse, verify both stages, produce claims."""
    verified = verify_tdx_quote(TdxQuote.from_bytes(raw), col, roots, at)
    TdxClaims.from_verified(verified).to_json()


def full_verify_sgx(raw: bytes, col: DcapCollateral, roots: IntelRoots, at: dt.datetime) -> None:
    verified = verify_sgx_quote(SgxQuote.from_bytes(raw), col, roots, at)
    SgxClaims.from_verified(verified).to_json()


def two_p256_verifies_cost(rounds: int) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    msg = os.urandom(632)
    sig = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    pub = key.public_key()
    start = time.perf_counter()
    for _ in range(rounds):
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    return (time.perf_counter() - start) / rounds


def main() -> None:
    cases = load_cases(corpus())
    runners: list[tuple[Callable[..., None], Case]] = [
        (full_verify_tdx if tee == TeeType.TDX.name else full_verify_sgx, case)
        for tee, case in cases
    ]
    for run, case in runners:  # warm: chains, extensions and collateral memoized
        run(*case)
    best_ratio = float("inf")
    repeat = ROUNDS // len(runners) + 1
    for _ in range(5):  # interleave to share machine noise; keep the best of 5 trials
        base = two_p256_verifies_cost(ROUNDS)
        start = time.perf_counter()
        for _ in range(repeat):
            for run, case in runners:
                run(*case)
        per_quote = (time.perf_counter() - start) / (repeat * len(runners))
        best_ratio = min(best_ratio, per_quote / base)
        print(f"per quote {per_quote * 1e6:8.1f} us   two P-256 verifies {base * 1e6:8.1f} us")
    print(f"RESULT dcap_cost_per_2xp256_verify={best_ratio:.3f} ratio target<=1.5")


if __name__ == "__main__":
    main()
