"""Second opinion on AMD chains: veritee's chain builder agrees with `openssl verify`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import CORPUS, SNP_IDS, SNP_SAMPLES, SnpSample
from veritee.errors import ChainError
from veritee.pki.certs import fingerprint, load_certificate, load_certificates
from veritee.pki.chain import build_chain
from veritee.tee.snp.verify import AMD_SIGNATURE_POLICY

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")


def openssl_verdict(tmp: Path, vek_der: bytes, chain_pem: bytes, at: int) -> bool:
    certs = load_certificates(chain_pem)
    ask, ark = certs[0], certs[1]
    (tmp / "ark.pem").write_bytes(ark.public_bytes(Encoding.PEM))
    (tmp / "ask.pem").write_bytes(ask.public_bytes(Encoding.PEM))
    (tmp / "vek.pem").write_bytes(load_certificate(vek_der).public_bytes(Encoding.PEM))
    proc = subprocess.run(
        [
            str(OPENSSL),
            "verify",
            "-attime",
            str(at),
            "-CAfile",
            str(tmp / "ark.pem"),
            "-untrusted",
            str(tmp / "ask.pem"),
            str(tmp / "vek.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


def veritee_verdict(vek_der: bytes, chain_pem: bytes) -> bool:
    certs = load_certificates(chain_pem)
    ark = certs[1]
    try:
        build_chain(
            load_certificate(vek_der),
            certs,
            {fingerprint(ark): ark},
            None,
            policy=AMD_SIGNATURE_POLICY,
        )
    except ChainError:
        return False
    return True


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_chain_verdict_matches_openssl(sample: SnpSample, tmp_path: Path) -> None:
    assert CORPUS is not None
    at = int(sample.at.timestamp())
    chain = sample.roots.read_bytes()
    assert openssl_verdict(tmp_path, sample.vek, chain, at) is True
    assert veritee_verdict(sample.vek, chain) is True
    # The same VEK against every other product's chain: both must refuse.
    for other in sorted((CORPUS / "roots" / "amd").glob("*.pem")):
        if other == sample.roots:
            continue
        o = openssl_verdict(tmp_path, sample.vek, other.read_bytes(), at)
        v = veritee_verdict(sample.vek, other.read_bytes())
        assert o == v, other.name
