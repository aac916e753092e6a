"""veritee against a real software TPM (swtpm) and two independent verifiers.

* Differential: for quotes made by swtpm over random PCR selections, banks and nonces,
  with RSA and ECC AKs (RSASSA, RSAPSS, ECDSA; SHA-1/256/384), veritee's verdict equals
  ``tpm2_checkquote``'s and keylime's ``tpm_util.checkquote`` on valid and tampered
  quotes (quote bytes, signature, PCR values, nonce).
* MakeCredential by veritee is activated by swtpm (RSA and ECC EKs); a wrong EK fails.
* EK certificates made by swtpm_setup's local CA chain through veritee's EK verifier.
* The attester provider produces KBS ``tpm`` evidence that veritee verifies.
"""

from __future__ import annotations

import hashlib
import logging
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.tpm_swtpm import (  # noqa: F401 - swtpm_fixture provides the "swtpm" fixture
    Swtpm,
    manufacture_with_ek_certs,
    needs_swtpm,
    swtpm_fixture,
)
from veritee.attester.tpm import TpmAttester
from veritee.errors import EvidenceFormatError, MismatchError, VerificationError, VeriteeError
from veritee.tee.tpm.credential import challenge, make_credential
from veritee.tee.tpm.ekcert import EkTrustStore, load_ek_certificate, verify_ek_certificate
from veritee.tee.tpm.kbs import TpmEvidence, init_data_pcr, verify_evidence
from veritee.tee.tpm.pcrs import parse_pcr_file
from veritee.tee.tpm.structures import Attest, TpmAlg, TpmtPublic, TpmtSignature
from veritee.tee.tpm.verify import load_attestation_key, verify_quote

pytestmark = needs_swtpm

BANKS = ("sha1", "sha256", "sha384")
# (key type, signing hash, scheme): every scheme and hash the issue names.
AK_KINDS = (
    ("rsa", "sha256", "rsassa"),
    ("rsa", "sha1", "rsassa"),
    ("rsa", "sha384", "rsapss"),
    ("ecc", "sha256", "ecdsa"),
    ("ecc384", "sha384", "ecdsa"),
)
QUOTES_PER_AK = 6


def _keylime() -> Any:
    try:
        logging.disable(logging.WARNING)
        from keylime.tpm import tpm_util
    except Exception as exc:  # keylime imports gpg and its config at import time
        pytest.skip(f"keylime is not importable ({exc}); scripts/setup.d/tpm.sh installs it")
    finally:
        logging.disable(logging.NOTSET)
    return tpm_util


@dataclass
class Ak:
    kind: tuple[str, str, str]
    ctx: Path
    pub: Path  # TPM2B_PUBLIC
    pem: Path


@dataclass
class QuoteCase:
    ak: Ak
    msg: bytes
    sig: bytes
    pcrs: bytes
    nonce: bytes  # ASCII, so keylime's string nonce and tpm2-tools' hex agree
    selection: dict[str, list[int]]


@pytest.fixture(scope="module")
def aks(swtpm: Swtpm) -> dict[tuple[str, str, str], Ak]:
    swtpm.run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
    out = {}
    for i, (alg, h, scheme) in enumerate(AK_KINDS):
        ctx, pub, pem = (swtpm.workdir / f"ak{i}.{ext}" for ext in ("ctx", "pub", "pem"))
        swtpm.run("tpm2_createak", "-C", "ek.ctx", "-c", ctx, "-G", alg, "-g", h, "-s", scheme,
                  "-u", pub, "-n", swtpm.workdir / f"ak{i}.name")
        swtpm.run("tpm2_readpublic", "-c", ctx, "-o", pem, "-f", "pem")
        out[(alg, h, scheme)] = Ak((alg, h, scheme), ctx, pub, pem)
    return out


def _make_quotes(swtpm: Swtpm, aks: dict[tuple[str, str, str], Ak]) -> list[QuoteCase]:
    rng = random.Random(20261127)
    cases = []
    for ak in aks.values():
        for n in range(QUOTES_PER_AK):
            # Fresh, different values in the PCRs each time (16 and 23 are resettable/debug).
            for pcr in rng.sample(range(8, 16), 2):
                data = rng.randbytes(32).hex()
                swtpm.run("tpm2_pcrextend", f"{pcr}:sha256={data},sha1={data[:40]}", flush=False)
            banks = rng.sample(BANKS, rng.randint(1, 3))
            same = n % 2 == 0  # half the cases: one PCR set for every bank
            common = sorted(rng.sample(range(24), rng.randint(1, 10)))
            if same and ak.kind[1] not in banks:
                banks.append(ak.kind[1])
            selection = {
                b: common if same else sorted(rng.sample(range(24), rng.randint(1, 10)))
                for b in banks
            }
            spec = "+".join(f"{b}:{','.join(map(str, p))}" for b, p in selection.items())
            nonce = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                            for _ in range(rng.randint(8, 32))).encode()
            d = swtpm.workdir / "q"
            swtpm.run("tpm2_quote", "-c", ak.ctx, "-l", spec, "-q", nonce.hex(),
                      "-g", ak.kind[1], "--scheme", ak.kind[2], "-m", f"{d}.msg",
                      "-s", f"{d}.sig", "-o", f"{d}.pcrs", "-F", "serialized")
            cases.append(QuoteCase(ak, Path(f"{d}.msg").read_bytes(), Path(f"{d}.sig").read_bytes(),
                                   Path(f"{d}.pcrs").read_bytes(), nonce, selection))
    return cases


@pytest.fixture(scope="module")
def quotes(swtpm: Swtpm, aks: dict[tuple[str, str, str], Ak]) -> list[QuoteCase]:
    return _make_quotes(swtpm, aks)


def _veritee(case: QuoteCase, msg: bytes, sig: bytes, pcrs: bytes, nonce: bytes) -> bool:
    try:
        ak = load_attestation_key(case.ak.pub.read_bytes())
        attest = Attest.from_bytes(msg)
        verify_quote(attest, TpmtSignature.from_bytes(sig), ak,
                     parse_pcr_file(pcrs), expected_nonce=nonce, message=msg)
    except (EvidenceFormatError, VerificationError):
        return False
    return True


def _checkquote(swtpm: Swtpm, case: QuoteCase, msg: bytes, sig: bytes, pcrs: bytes,
                nonce: bytes) -> bool:
    d = swtpm.workdir / "cq"
    Path(f"{d}.msg").write_bytes(msg)
    Path(f"{d}.sig").write_bytes(sig)
    Path(f"{d}.pcrs").write_bytes(pcrs)
    proc = subprocess.run(
        ["tpm2_checkquote", "-u", str(case.ak.pub), "-m", f"{d}.msg", "-s", f"{d}.sig",
         "-f", f"{d}.pcrs", "-g", case.ak.kind[1], "-q", nonce.hex()],
        capture_output=True, timeout=60, check=False,
    )
    return proc.returncode == 0


def _serialized_values(pcrs: bytes) -> list[bytes]:
    """The values of a tpm2-tools serialized PCR file, read independently of veritee:
    u32 count + 16 x 8-byte selections, u32 n + n x (u32 count + 8 x (u16 size + 64))."""
    import struct

    off = 4 + 16 * 8
    (n,) = struct.unpack_from("<I", pcrs, off)
    off += 4
    out = []
    for _ in range(n):
        (count,) = struct.unpack_from("<I", pcrs, off)
        for j in range(8):
            (size,) = struct.unpack_from("<H", pcrs, off + 4 + j * 66)
            if j < count:
                out.append(pcrs[off + 6 + j * 66 : off + 6 + j * 66 + size])
        off += 4 + 8 * 66
    return out


def _rsapss_oracle(swtpm: Swtpm, case: QuoteCase, msg: bytes, sig: bytes, pcrs: bytes,
                   nonce: bytes) -> bool:
    """tpm2_checkquote cannot verify RSAPSS quotes (tpm2-tools issue #3283, still open in
    5.4-5.6): OpenSSL's command line checks the PSS signature (salt = digest length, TPM
    2.0 Part 1 B.7), tpm2_print reads extraData and pcrDigest."""
    d = swtpm.workdir / "pss"
    Path(f"{d}.msg").write_bytes(msg)
    if len(sig) < 6:
        return False
    Path(f"{d}.sig").write_bytes(sig[6:])  # TPMT_SIGNATURE: alg, hash, size, then the bytes
    h = case.ak.kind[1]
    ossl = subprocess.run(
        ["openssl", "dgst", f"-{h}", "-verify", str(case.ak.pem), "-sigopt",
         "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest", "-signature",
         f"{d}.sig", f"{d}.msg"], capture_output=True, timeout=60, check=False)
    if ossl.returncode != 0 or sig[:4] != bytes.fromhex("0016") + {"sha256": b"\x00\x0b",
                                                              "sha384": b"\x00\x0c",
                                                              "sha1": b"\x00\x04"}[h]:
        return False
    printed = swtpm.run("tpm2_print", "-t", "TPMS_ATTEST", f"{d}.msg", check=False, flush=False)
    if printed.returncode != 0:
        return False
    fields = dict(
        line.strip().split(": ", 1) for line in printed.stdout.decode().splitlines()
        if ": " in line and line.strip().split(": ", 1)[0] in ("extraData", "pcrDigest")
    )
    digest = hashlib.new(h, b"".join(_serialized_values(pcrs))).hexdigest()
    return fields.get("extraData") == nonce.hex() and fields.get("pcrDigest") == digest


def _keylime_verdict(tpm_util: Any, case: QuoteCase, msg: bytes, sig: bytes, pcrs: bytes,
                     nonce: bytes) -> bool:
    try:
        tpm_util.checkquote(case.ak.pem.read_bytes(), nonce.decode(), sig, msg, pcrs,
                            case.ak.kind[1])
    except Exception:
        return False
    return True


def _variants(
    case: QuoteCase, rng: random.Random
) -> Iterator[tuple[str, bytes, bytes, bytes, bytes]]:
    yield "valid", case.msg, case.sig, case.pcrs, case.nonce
    msg = bytearray(case.msg)
    msg[rng.randrange(len(msg))] ^= 1 << rng.randrange(8)
    yield "quote-bit", bytes(msg), case.sig, case.pcrs, case.nonce
    sig = bytearray(case.sig)
    sig[rng.randrange(6, len(sig))] ^= 1 << rng.randrange(8)
    yield "signature-bit", case.msg, bytes(sig), case.pcrs, case.nonce
    # a PCR value: the first digest slot of the first TPML_DIGEST of the serialized file
    pcrs = bytearray(case.pcrs)
    pcrs[4 + 16 * 8 + 4 + 4 + 2 + rng.randrange(20)] ^= 0x80
    yield "pcr-value", case.msg, case.sig, bytes(pcrs), case.nonce
    yield "nonce", case.msg, case.sig, case.pcrs, case.nonce + b"x"


def _keylime_domain(case: QuoteCase) -> bool:
    """Keylime hashes the signing-hash bank's selection once per selected bank, and knows
    no RSAPSS: it is only an oracle for quotes whose banks all select the same PCRs,
    including the signing bank, signed with RSASSA or ECDSA."""
    sets = {tuple(p) for p in case.selection.values()}
    return (case.ak.kind[2] != "rsapss" and len(sets) == 1
            and case.ak.kind[1] in case.selection)


def test_verdicts_equal_tpm2_checkquote_and_keylime(
    swtpm: Swtpm, quotes: list[QuoteCase]
) -> None:
    tpm_util = _keylime()
    rng = random.Random(7)
    compared_keylime = 0
    seen = set()
    for case in quotes:
        for name, msg, sig, pcrs, nonce in _variants(case, rng):
            ours = _veritee(case, msg, sig, pcrs, nonce)
            if case.ak.kind[2] == "rsapss":
                theirs = _rsapss_oracle(swtpm, case, msg, sig, pcrs, nonce)
            else:
                theirs = _checkquote(swtpm, case, msg, sig, pcrs, nonce)
            assert ours == theirs, (name, case.ak.kind, case.selection)
            assert ours is (name == "valid"), (name, case.ak.kind, case.selection)
            kl = _keylime_verdict(tpm_util, case, msg, sig, pcrs, nonce)
            if _keylime_domain(case):
                assert kl == ours, ("keylime", name, case.ak.kind, case.selection)
                compared_keylime += 1
            elif name == "valid":
                # Outside keylime's domain it refuses valid quotes; record that it does.
                assert kl is False, ("keylime accepted an out-of-domain quote", case.selection)
            seen.add((case.ak.kind, name))
    assert compared_keylime >= len(AK_KINDS) * 2 * 5
    assert len(seen) == len(AK_KINDS) * 5


def test_checkquote_and_veritee_agree_without_pcr_tampering_detection_gaps(
    swtpm: Swtpm, quotes: list[QuoteCase]
) -> None:
    """Every quoted (bank, PCR) read by veritee equals what tpm2_pcrread reports."""
    case = quotes[-1]
    banks = parse_pcr_file(case.pcrs)
    for bank, pcrs in case.selection.items():
        out = swtpm.run("tpm2_pcrread", f"{bank}:{','.join(map(str, pcrs))}").stdout.decode()
        alg = {"sha1": TpmAlg.SHA1, "sha256": TpmAlg.SHA256, "sha384": TpmAlg.SHA384}[bank]
        for pcr in pcrs:
            value = banks.get(alg, pcr)
            assert value is not None and f"0x{value.hex().upper()}" in out


# -- credential activation ---------------------------------------------------------------


def _activate(swtpm: Swtpm, ak_ctx: Path, ek_ctx: Path, blob: bytes) -> bytes | None:
    d = swtpm.workdir
    (d / "cred.in").write_bytes(blob)
    swtpm.run("tpm2_startauthsession", "--policy-session", "-S", d / "session.ctx", flush=False)
    try:
        swtpm.run("tpm2_policysecret", "-S", d / "session.ctx", "-c", "e", flush=False)
        proc = swtpm.run("tpm2_activatecredential", "-c", ak_ctx, "-C", ek_ctx, "-i",
                         d / "cred.in", "-o", d / "cred.out", "-P",
                         f"session:{d / 'session.ctx'}", check=False, flush=False)
    finally:
        swtpm.run("tpm2_flushcontext", d / "session.ctx", check=False)
    if proc.returncode != 0:
        return None
    return (d / "cred.out").read_bytes()


@pytest.mark.parametrize("ek_alg", ["rsa", "ecc"])
def test_make_credential_is_activated_by_swtpm_and_wrong_ek_fails(
    swtpm: Swtpm, ek_alg: str
) -> None:
    d = swtpm.workdir
    swtpm.run("tpm2_createek", "-c", d / f"ek-{ek_alg}.ctx", "-G", ek_alg, "-u",
              d / f"ek-{ek_alg}.pub")
    swtpm.run("tpm2_createak", "-C", d / f"ek-{ek_alg}.ctx", "-c", d / "cak.ctx", "-G", "rsa",
              "-g", "sha256", "-s", "rsassa", "-u", d / "cak.pub", "-n", d / "cak.name")
    ek = TpmtPublic.from_tpm2b((d / f"ek-{ek_alg}.pub").read_bytes())
    ak = TpmtPublic.from_tpm2b((d / "cak.pub").read_bytes())
    assert ak.name() == (d / "cak.name").read_bytes()

    pending = challenge(ek, ak)
    got = _activate(swtpm, d / "cak.ctx", d / f"ek-{ek_alg}.ctx",
                    pending.credential.to_tpm2_tools())
    assert got is not None
    pending.check(got)

    # Made for another EK (a second EK of the other algorithm): the TPM refuses it.
    other_alg = "ecc" if ek_alg == "rsa" else "rsa"
    swtpm.run("tpm2_createek", "-c", d / "ek-other.ctx", "-G", other_alg, "-u", d / "ek-other.pub")
    other = TpmtPublic.from_tpm2b((d / "ek-other.pub").read_bytes())
    wrong = make_credential(other, ak.name(), b"not for this EK")
    assert _activate(swtpm, d / "cak.ctx", d / f"ek-{ek_alg}.ctx", wrong.to_tpm2_tools()) is None

    # Bound to another object's Name: refused too.
    misnamed = make_credential(ek, b"\x00\x0b" + bytes(32), b"wrong name")
    assert _activate(swtpm, d / "cak.ctx", d / f"ek-{ek_alg}.ctx",
                     misnamed.to_tpm2_tools()) is None

    # And a wrong answer is caught by the verifier.
    with pytest.raises(MismatchError):
        pending.check(got[:-1] + bytes([got[-1] ^ 1]))


# -- EK certificates from a manufactured swtpm -----------------------------------------------


@pytest.fixture(scope="module")
def manufactured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Swtpm, Path]]:
    work = tmp_path_factory.mktemp("swtpm-ek")
    ca = manufacture_with_ek_certs(work)
    tpm = Swtpm(work)
    tpm.start()
    try:
        yield tpm, ca
    finally:
        tpm.stop()


def test_swtpm_ek_certificate_chains_to_its_ca_and_matches_the_ek(
    manufactured: tuple[Swtpm, Path],
) -> None:
    import datetime as dt

    tpm, ca = manufactured
    tpm.run("tpm2_nvread", "0x1c00002", "-o", tpm.workdir / "ek.crt", flush=False)
    tpm.run("tpm2_createek", "-c", tpm.workdir / "ek.ctx", "-G", "rsa",
            "-u", tpm.workdir / "ek.pub")
    cert = load_ek_certificate((tpm.workdir / "ek.crt").read_bytes())
    store = EkTrustStore.from_blobs([p.read_bytes() for p in ca.glob("*cert*.pem")])
    ek = TpmtPublic.from_tpm2b((tpm.workdir / "ek.pub").read_bytes())
    v = verify_ek_certificate(cert, store, dt.datetime.now(dt.UTC), tpm_public=ek)
    assert v.model == "swtpm" and v.ek_eku
    assert len(v.chain) == 2  # swtpm-localca -> swtpm-localca-rootca

    # Another key is not the certified key.
    assert isinstance(ek.unique, bytes)
    flipped = replace(ek, unique=bytes([ek.unique[0] ^ 1]) + ek.unique[1:])
    with pytest.raises(MismatchError):
        verify_ek_certificate(cert, store, dt.datetime.now(dt.UTC), tpm_public=flipped)
    # Without the CA that issued it, it does not chain.
    with pytest.raises(VerificationError):
        verify_ek_certificate(
            cert, EkTrustStore.from_blobs([(ca / "swtpm-localca-rootca-cert.pem").read_bytes()]),
            dt.datetime.now(dt.UTC),
        )


# -- the attester provider and the KBS evidence ------------------------------------------------


@pytest.fixture
def fresh_swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    tpm = Swtpm(tmp_path / "fresh")
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


def test_attester_evidence_verifies_and_binds_nonce_and_init_data(
    fresh_swtpm: Swtpm, tmp_path: Path
) -> None:
    attester = TpmAttester(tmp_path / "attester", tcti=fresh_swtpm.tcti)
    ak = attester.provision()
    assert attester.provision() == ak  # idempotent: the persistent AK is reused
    init_digest = hashlib.sha256(b"init-data").digest()
    attester.extend(8, [("sha256", init_digest)])
    report_data = hashlib.sha384(b"runtime-data").digest()
    wire = attester.evidence_json(report_data)
    evidence = TpmEvidence.from_json(wire)
    claims = verify_evidence(evidence, expected_report_data=report_data,
                             expected_init_data=init_digest,
                             trusted_ak_sha256=[hashlib.sha256(evidence.ak_public).digest()])
    j = claims.to_json()
    assert j["report_data"] == report_data[:32].hex()
    assert len([k for k in j if k.startswith("pcr") and k[3:].isdigit()]) == 24
    assert evidence.pcrs[8] == init_data_pcr(init_digest)

    with pytest.raises(MismatchError):
        verify_evidence(evidence, expected_report_data=hashlib.sha384(b"other").digest())
    with pytest.raises(MismatchError):
        verify_evidence(evidence, expected_report_data=report_data,
                        expected_init_data=hashlib.sha256(b"other").digest())
    with pytest.raises(VerificationError):
        verify_evidence(evidence, expected_report_data=report_data,
                        trusted_ak_sha256=[bytes(32)])
    bad = TpmEvidence(evidence.ak_public, evidence.message, evidence.signature,
                      (b"\x01" * 32, *evidence.pcrs[1:]))
    with pytest.raises(MismatchError):
        verify_evidence(bad, expected_report_data=report_data)

    # Credential activation through the provider proves the AK sits beside the EK.
    pending = challenge(attester.ek_public(), ak)
    pending.check(attester.activate_credential(pending.credential))


def test_attester_reports_tpm_failures(tmp_path: Path) -> None:
    attester = TpmAttester(tmp_path, tcti="swtpm:host=127.0.0.1,port=1")
    with pytest.raises(VeriteeError):
        attester.provision()
