"""TPM evidence provider for the attester: quotes, event log, credential activation.

Drives tpm2-tools as subprocesses, so it works against a TPM device (``/dev/tpmrm0``,
the default TCTI of tpm2-tools) and against swtpm (``tcti="swtpm:host=127.0.0.1,port=P"``,
or ``$TPM2TOOLS_TCTI``). An EK and an AK are created once and kept at persistent handles;
the AK's public area (TPM2B_PUBLIC) is saved beside them in ``workdir``.

Without a resource manager (swtpm's socket) transient objects and sessions are flushed
after each step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from veritee.errors import VeriteeError
from veritee.tee.tpm.credential import Credential
from veritee.tee.tpm.kbs import DEFAULT_EXTRA_DATA_SIZE, TpmEvidence, expected_extra_data
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import TpmAlg, TpmtPublic
from veritee.tee.tpm.verify import public_key_of

DEFAULT_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_IMA_LOG = Path("/sys/kernel/security/ima/ascii_runtime_measurements")
EK_HANDLE = 0x81010001
AK_HANDLE = 0x81010002
ALL_SHA256 = "sha256:" + ",".join(str(i) for i in range(24))


class TpmAttesterError(VeriteeError):
    """The local TPM or tpm2-tools failed."""

    code = "attester.tpm"
    exit_code = 1


@dataclass(frozen=True)
class Quote:
    message: bytes  # TPMS_ATTEST
    signature: bytes  # TPMT_SIGNATURE
    pcrs: bytes  # tpm2-tools serialized PCR file


class TpmAttester:
    def __init__(
        self,
        workdir: Path,
        *,
        tcti: str | None = None,
        ak_alg: str = "rsa",
        ak_hash: str = "sha256",
        ak_scheme: str | None = None,
        ek_alg: str = "rsa",
        ek_handle: int = EK_HANDLE,
        ak_handle: int = AK_HANDLE,
        timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        if tcti is not None:
            self.env["TPM2TOOLS_TCTI"] = tcti
        self.ak_alg = ak_alg
        self.ak_hash = ak_hash
        self.ak_scheme = ak_scheme or ("ecdsa" if ak_alg == "ecc" else "rsassa")
        self.ek_alg = ek_alg
        self.ek_handle = ek_handle
        self.ak_handle = ak_handle
        self.timeout = timeout
        if shutil.which("tpm2_quote", path=self.env.get("PATH")) is None:
            raise TpmAttesterError(
                "tpm2-tools are not installed", hint="apt-get install tpm2-tools"
            )

    # -- plumbing ---------------------------------------------------------------------------
    def _run(self, *args: str, flush: bool = True) -> bytes:
        try:
            proc = subprocess.run(  # noqa: S603 - fixed tool names, no shell
                list(args), env=self.env, cwd=self.workdir, capture_output=True,
                timeout=self.timeout, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TpmAttesterError(f"{args[0]} could not run: {exc}") from None
        if flush:
            subprocess.run(
                ["tpm2_flushcontext", "-t"], env=self.env, cwd=self.workdir,  # noqa: S607
                capture_output=True, timeout=self.timeout, check=False,
            )
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TpmAttesterError(
                f"{args[0]} failed (exit {proc.returncode}): {err[-1] if err else 'no output'}"
            )
        return proc.stdout

    def _exists(self, handle: int) -> bool:
        try:
            self._run("tpm2_readpublic", "-c", f"{handle:#x}", flush=False)
        except TpmAttesterError:
            return False
        return True

    # -- keys -------------------------------------------------------------------------------
    def provision(self) -> TpmtPublic:
        """Create the EK and AK (once; kept at persistent handles) and return the AK."""
        ek_pub = self.workdir / "ek.pub"
        ak_pub = self.workdir / "ak.pub"
        if not self._exists(self.ek_handle):
            self._run("tpm2_createek", "-c", f"{self.ek_handle:#x}", "-G", self.ek_alg,
                      "-u", str(ek_pub))
        elif not ek_pub.exists():
            self._run("tpm2_readpublic", "-c", f"{self.ek_handle:#x}", "-o", str(ek_pub))
        if not self._exists(self.ak_handle):
            self._run("tpm2_createak", "-C", f"{self.ek_handle:#x}", "-c", "ak.ctx",
                      "-G", self.ak_alg, "-g", self.ak_hash, "-s", self.ak_scheme,
                      "-u", str(ak_pub), "-n", "ak.name")
            self._run("tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", f"{self.ak_handle:#x}")
            (self.workdir / "ak.ctx").unlink(missing_ok=True)
        elif not ak_pub.exists():
            self._run("tpm2_readpublic", "-c", f"{self.ak_handle:#x}", "-o", str(ak_pub))
        return self.ak_public()

    def ak_public(self) -> TpmtPublic:
        return TpmtPublic.from_tpm2b((self.workdir / "ak.pub").read_bytes())

    def ek_public(self) -> TpmtPublic:
        return TpmtPublic.from_tpm2b((self.workdir / "ek.pub").read_bytes())

    def ek_certificate(self) -> bytes | None:
        """The EK certificate from its NV index (RSA 0x01c00002, ECC 0x01c0000a), if any."""
        index = "0x1c00002" if self.ek_alg == "rsa" else "0x1c0000a"
        out = self.workdir / "ekcert.der"
        try:
            self._run("tpm2_nvread", index, "-o", str(out), flush=False)
        except TpmAttesterError:
            return None
        return out.read_bytes()

    # -- evidence ---------------------------------------------------------------------------
    def quote(self, nonce: bytes, pcrs: str = ALL_SHA256, sign_hash: str | None = None) -> Quote:
        """TPM2_Quote over ``pcrs`` (tpm2-tools syntax, e.g. ``sha256:0,1,7+sha1:10``)."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            t = Path(tmp)
            args = ["tpm2_quote", "-c", f"{self.ak_handle:#x}", "-l", pcrs,
                    "-m", str(t / "msg"), "-s", str(t / "sig"), "-o", str(t / "pcrs"),
                    "-F", "serialized", "-g", sign_hash or self.ak_hash,
                    "--scheme", self.ak_scheme]
            if nonce:
                args += ["-q", nonce.hex()]
            self._run(*args)
            return Quote((t / "msg").read_bytes(), (t / "sig").read_bytes(),
                         (t / "pcrs").read_bytes())

    def evidence(
        self, report_data: bytes, *, extra_data_size: int = DEFAULT_EXTRA_DATA_SIZE
    ) -> TpmEvidence:
        """KBS ``tpm`` evidence (PROTOCOL.md 1.5) bound to the runtime-data digest."""
        q = self.quote(expected_extra_data(report_data, extra_data_size), ALL_SHA256)
        _, banks = PcrBanks.from_tpm2_tools(q.pcrs)
        values = tuple(banks.get(TpmAlg.SHA256, i) or b"" for i in range(24))
        der = public_key_of(self.ak_public()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return TpmEvidence(der, q.message, q.signature, values)

    def evidence_json(self, report_data: bytes) -> str:
        return json.dumps(self.evidence(report_data).to_json())

    def extend(self, pcr: int, digests: Sequence[tuple[str, bytes]]) -> None:
        """TPM2_PCR_Extend (e.g. the init-data digest into PCR 8)."""
        spec = ",".join(f"{alg}={d.hex()}" for alg, d in digests)
        self._run("tpm2_pcrextend", f"{pcr}:{spec}", flush=False)

    def activate_credential(self, credential: Credential) -> bytes:
        """TPM2_ActivateCredential with the AK and EK: the secret a verifier sealed."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            t = Path(tmp)
            (t / "cred").write_bytes(credential.to_tpm2_tools())
            self._run("tpm2_startauthsession", "--policy-session", "-S", str(t / "s.ctx"),
                      flush=False)
            try:
                self._run("tpm2_policysecret", "-S", str(t / "s.ctx"), "-c", "e", flush=False)
                self._run("tpm2_activatecredential", "-c", f"{self.ak_handle:#x}",
                          "-C", f"{self.ek_handle:#x}", "-i", str(t / "cred"),
                          "-o", str(t / "out"), "-P", f"session:{t / 's.ctx'}", flush=False)
                return (t / "out").read_bytes()
            finally:
                subprocess.run(  # noqa: S603
                    ["tpm2_flushcontext", str(t / "s.ctx")],  # noqa: S607
                    env=self.env, cwd=self.workdir, capture_output=True,
                    timeout=self.timeout, check=False,
                )
                self._run("tpm2_flushcontext", "-t", flush=False)

    @staticmethod
    def event_log(path: Path = DEFAULT_EVENT_LOG) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TpmAttesterError(f"cannot read the event log {path}: {exc.strerror}") from None

    @staticmethod
    def ima_log(path: Path = DEFAULT_IMA_LOG) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TpmAttesterError(f"cannot read the IMA list {path}: {exc.strerror}") from None
