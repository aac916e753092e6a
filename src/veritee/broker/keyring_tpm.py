"""The KEK sealed to a TPM 2.0: stored only as TPM blobs, unsealed into memory once at startup.

At setup (:meth:`TpmSealedKeyring.create`) a random 32-byte AES-256 KEK is
sealed as a keyed-hash data object under a primary key of the owner hierarchy
(``tpm2_createprimary -C o``, ECC P-256, re-derived from the TPM's owner seed
on every start and so never stored). The object's public and private parts
(``kek.pub``, ``kek.priv``: the private part is encrypted by the primary key,
so it only opens in this TPM) and a small non-secret description
(``kek.json``: the PCR selection and the PCR values it was sealed against) go
to the sealed directory. The plaintext KEK is never written anywhere.

Optionally the object is bound to a PCR policy (``pcrs = "sha256:7"``): the
TPM then releases the KEK only while those PCRs hold the values they had at
sealing, i.e. only in the measured boot state the KEK was sealed in. Such an
object has no ``userWithAuth``, so the policy cannot be bypassed with the
(empty) auth value.

At startup the KEK is unsealed once (``tpm2_unseal``) and kept in process
memory; data keys are then wrapped with AES-256-GCM in the same blob format as
:class:`~veritee.broker.keyring.FileKeyring`, so the TPM is not on the request
path. ``kek_id`` is derived from the sealed object's TPM Name (a digest of its
public area, which holds only a salted digest of the secret), never from key
material.

tpm2-tools are driven as subprocesses with ``TPM2TOOLS_TCTI`` set to the
configured TCTI (``device:/dev/tpmrm0`` for the kernel's resource manager,
``swtpm:host=...,port=...`` for swtpm). Without a resource manager transient
objects and sessions are flushed after each step, as in
:mod:`veritee.attester.tpm`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.broker.keyring import KEY_BYTES, aead_unwrap, aead_wrap
from veritee.errors import ConfigError, EvidenceFormatError, KeyringUnavailableError
from veritee.secretfile import write_new_file
from veritee.tee.tpm.structures import ObjectAttr, TpmAlg, TpmtPublic

__all__ = ["DEFAULT_TCTI", "PcrSelection", "TpmSealedKeyring"]

DEFAULT_TCTI: Final = "device:/dev/tpmrm0"
PUBLIC_FILE: Final = "kek.pub"
PRIVATE_FILE: Final = "kek.priv"
META_FILE: Final = "kek.json"
_META_VERSION: Final = 1
_KEK_ID_LABEL: Final = b"veritee/tpm-kek-id/v1\x00"
# The primary key the KEK is sealed under; re-created identically from the owner seed.
_PRIMARY: Final = ("-C", "o", "-g", "sha256", "-G", "ecc")
# noda: a service retrying its start must not push the TPM into dictionary-attack lockout.
_POLICY_ATTRS: Final = "fixedtpm|fixedparent|adminwithpolicy|noda"
_PLAIN_ATTRS: Final = "fixedtpm|fixedparent|userwithauth|noda"
_BANKS: Final = ("sha1", "sha256", "sha384", "sha512", "sm3_256")
_MAX_PCR: Final = 23
_TCTI = re.compile(r"[A-Za-z0-9_.-]+(:[^\x00-\x1f]*)?")
_PCR_LINE = re.compile(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$")
_BANK_LINE = re.compile(r"^\s*([a-z0-9_]+)\s*:\s*$")
# "src/tss2-esys/api/Esys_Load.c:112:Esys_Load() " in tpm2-tools' log lines.
_SOURCE_PREFIX = re.compile(r"^(?:WARNING|ERROR):[a-z]+:\S+:\d+:\S+\(\)\s*")


@dataclass(frozen=True)
class PcrSelection:
    """A tpm2-tools PCR selection such as ``sha256:0,7`` (banks joined by ``+``)."""

    banks: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def parse(cls, text: str) -> PcrSelection:
        """Parse and canonicalise (banks in given order, indices sorted); ConfigError if bad."""
        where = f"PCR selection {text[:60]!r}"
        hint = 'write it as tpm2-tools does, e.g. "sha256:7" or "sha256:0,2,7+sha1:7"'
        if not text.strip():
            raise ConfigError(f"{where} is empty", hint=hint)
        banks: list[tuple[str, tuple[int, ...]]] = []
        for part in text.strip().split("+"):
            bank, sep, indices = part.strip().partition(":")
            bank = bank.strip().lower()
            if not sep or bank not in _BANKS:
                raise ConfigError(
                    f"{where}: bank {bank!r} is not one of {', '.join(_BANKS)}", hint=hint
                )
            if any(bank == b for b, _ in banks):
                raise ConfigError(f"{where} names bank {bank} twice", hint=hint)
            try:
                numbers = sorted({int(i) for i in indices.split(",")})
            except ValueError:
                raise ConfigError(f"{where}: PCR indices must be numbers", hint=hint) from None
            if not numbers or numbers[0] < 0 or numbers[-1] > _MAX_PCR:
                raise ConfigError(f"{where}: PCR indices must be 0..{_MAX_PCR}", hint=hint)
            banks.append((bank, tuple(numbers)))
        return cls(tuple(banks))

    def __str__(self) -> str:
        return "+".join(f"{bank}:{','.join(map(str, idx))}" for bank, idx in self.banks)

    def names(self) -> tuple[str, ...]:
        """``("sha256:0", "sha256:7")``: one name per PCR, as errors name them."""
        return tuple(f"{bank}:{i}" for bank, idx in self.banks for i in idx)


def parse_pcr_values(text: str) -> dict[str, str]:
    """``tpm2_pcrread`` output -> ``{"sha256:7": "hex", ...}`` (lower-case hex)."""
    values: dict[str, str] = {}
    bank: str | None = None
    for line in text.splitlines():
        if m := _BANK_LINE.match(line):
            bank = m.group(1)
        elif (m := _PCR_LINE.match(line)) and bank is not None:
            values[f"{bank}:{int(m.group(1))}"] = m.group(2).lower()
    return values


def _kek_id(name: bytes) -> str:
    return "tpm-" + hashlib.sha256(_KEK_ID_LABEL + name).hexdigest()[:16]


def _tool_error(stderr: bytes) -> str:
    """The telling line of a tpm2-tools failure, without source locations."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    # "ERROR: Esys_Unseal(0x99D) - tpm:session(1):a policy check failed" is the summary line;
    # TCTI failures only say why in the library's own log lines.
    summary = [ln[len("ERROR: ") :] for ln in lines if ln.startswith("ERROR: ")]
    summary = [s for s in summary if not s.startswith("Unable to run")]
    detail = [_SOURCE_PREFIX.sub("", ln) for ln in lines if ln.startswith(("ERROR:", "WARNING:"))]
    picked = summary[:1] + [d for d in detail if "tcti" in d.lower() or "connect" in d.lower()][:1]
    text = "; ".join(picked) or (lines[-1] if lines else "no output")
    return text[:300]


class _Tpm:
    """tpm2-tools against one TCTI, in a private working directory."""

    def __init__(self, tcti: str, workdir: Path, timeout: float) -> None:
        self.tcti = tcti
        self.workdir = workdir
        self.timeout = timeout
        self.env = {**os.environ, "TPM2TOOLS_TCTI": tcti}

    def run(
        self, *args: str, stdin: bytes | None = None, flush: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one tool; the completed process whatever its exit status (callers judge)."""
        try:
            proc = subprocess.run(  # noqa: S603 - fixed tool names, no shell
                list(args), input=stdin, env=self.env, cwd=self.workdir,
                capture_output=True, timeout=self.timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"the TPM at TCTI {self.tcti!r} did not answer {args[0]} within "
                f"{self.timeout:g} s",
                hint="check the TPM device or swtpm, and keyring.tcti",
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot run {args[0]}: {exc.strerror}") from None
        finally:
            if flush:
                self.flush()
        return proc

    def flush(self) -> None:
        # No resource manager on a swtpm socket: nothing may stay loaded between steps.
        for kind in ("-t", "-l"):
            try:
                subprocess.run(  # noqa: S603
                    ["tpm2_flushcontext", kind], env=self.env, cwd=self.workdir,  # noqa: S607
                    capture_output=True, timeout=self.timeout, check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                return

    def primary(self) -> None:
        """The owner-hierarchy primary key (``primary.ctx``); ConfigError if the TPM is away."""
        proc = self.run("tpm2_createprimary", *_PRIMARY, "-c", "primary.ctx")
        if proc.returncode != 0:
            why = _tool_error(proc.stderr)
            if "tcti" in why.lower():
                raise ConfigError(
                    f"cannot reach the TPM at TCTI {self.tcti!r}: {why}",
                    hint="check keyring.tcti (e.g. device:/dev/tpmrm0, or "
                    "swtpm:host=H,port=P), that the TPM is there and that this user may open it",
                )
            raise ConfigError(
                f"the TPM at TCTI {self.tcti!r} refused to create the primary key: {why}",
                hint="the KEK is sealed under the owner hierarchy, whose auth value must be empty",
            )

    def pcr_values(self, selection: PcrSelection, out: str | None = None) -> dict[str, str]:
        args = ["tpm2_pcrread", str(selection)] + (["-o", out] if out else [])
        proc = self.run(*args, flush=False)
        if proc.returncode != 0:
            raise ConfigError(
                f"cannot read PCRs {selection} from the TPM at TCTI {self.tcti!r}: "
                f"{_tool_error(proc.stderr)}",
                hint="is that PCR bank active on this TPM?",
            )
        values = parse_pcr_values(proc.stdout.decode("ascii", "replace"))
        if set(values) != set(selection.names()):
            raise ConfigError(
                f"the TPM did not return every PCR of {selection}",
                hint="is that PCR bank active on this TPM?",
            )
        return values


def _check_tools() -> None:
    if shutil.which("tpm2_unseal") is None or shutil.which("tpm2_createprimary") is None:
        raise ConfigError(
            'keyring type = "tpm" needs tpm2-tools', hint="apt-get install tpm2-tools"
        )


def _check_tcti(tcti: str) -> None:
    if not _TCTI.fullmatch(tcti):
        raise ConfigError(
            f"keyring.tcti {tcti[:60]!r} is not a TCTI specification",
            hint='e.g. "device:/dev/tpmrm0" or "swtpm:host=127.0.0.1,port=2321"',
        )


@dataclass(frozen=True)
class _Sealed:
    """What the sealed directory holds (nothing secret)."""

    public: bytes
    private: bytes
    pcrs: PcrSelection | None
    pcr_values: Mapping[str, str]
    name: bytes


def _read_sealed(sealed_dir: Path) -> _Sealed:
    paths = [sealed_dir / n for n in (PUBLIC_FILE, PRIVATE_FILE, META_FILE)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(
            f"the TPM-sealed KEK in {sealed_dir} is missing ({', '.join(missing)})",
            hint="check keyring.sealed_dir, or seal a new KEK with "
            "`veritee keyring create --tpm --sealed-dir DIR` (secrets stored under the old "
            "one cannot be opened without it)",
        )
    public, private, meta_text = (p.read_bytes() for p in paths)
    try:
        meta = json.loads(meta_text)
        if not isinstance(meta, dict) or meta.get("version") != _META_VERSION:
            raise ValueError("unknown version")
        pcr_text = meta.get("pcrs") or ""
        values = meta.get("pcr_values") or {}
        if not isinstance(pcr_text, str) or not isinstance(values, dict):
            raise ValueError("bad pcrs")
        pcrs = PcrSelection.parse(pcr_text) if pcr_text else None
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{sealed_dir / META_FILE} is not a veritee TPM KEK description: "
                          f"{exc}") from None
    try:
        pub = TpmtPublic.from_tpm2b(public)
    except EvidenceFormatError as exc:
        raise ConfigError(f"{sealed_dir / PUBLIC_FILE} is not a TPM2B_PUBLIC: {exc}") from None
    if pub.type != TpmAlg.KEYEDHASH or not (
        pub.has(ObjectAttr.FIXED_TPM) and pub.has(ObjectAttr.FIXED_PARENT)
    ):
        raise ConfigError(f"{sealed_dir / PUBLIC_FILE} is not a fixedTPM sealed data object")
    if pcrs is not None and (pub.has(ObjectAttr.USER_WITH_AUTH) or not pub.auth_policy):
        # Its empty auth value would open it whatever the PCRs say.
        raise ConfigError(
            f"{sealed_dir / PUBLIC_FILE} claims a PCR policy but the object can be unsealed "
            "without it (userWithAuth set or no policy)",
            hint="seal a new KEK with `veritee keyring create --tpm --pcrs ...` and rotate",
        )
    return _Sealed(public, private, pcrs, {str(k): str(v) for k, v in values.items()}, pub.name())


class TpmSealedKeyring:
    """A KEK sealed to this machine's TPM, unsealed into memory once; thread-safe."""

    __slots__ = ("_aead", "_kek_id", "pcrs", "sealed_dir", "tcti")

    def __init__(
        self,
        tcti: str,
        sealed_dir: Path,
        *,
        pcrs: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Unseal the KEK in ``sealed_dir``; every problem is a ConfigError saying what to fix.

        ``pcrs``, when given, must be the selection the KEK was sealed to (the
        configuration says what the deployment expects; the sealed object decides).
        """
        _check_tools()
        _check_tcti(tcti)
        self.tcti = tcti
        self.sealed_dir = sealed_dir
        sealed = _read_sealed(sealed_dir)
        if pcrs:
            wanted = PcrSelection.parse(pcrs)
            if wanted != sealed.pcrs:
                raise ConfigError(
                    f"keyring.pcrs is {wanted}, but the KEK in {sealed_dir} is sealed to "
                    f"{sealed.pcrs or 'no PCR policy'}",
                    hint="set keyring.pcrs to what the KEK was sealed to, or seal a new KEK "
                    "with the wanted PCRs and rotate to it",
                )
        self.pcrs = sealed.pcrs
        self._kek_id = _kek_id(sealed.name)
        kek = _unseal(tcti, sealed_dir, sealed, timeout)
        self._aead: AESGCM | None = AESGCM(kek)
        del kek

    @classmethod
    def open(
        cls, tcti: str, sealed_dir: Path, *, pcrs: str | None = None, timeout: float = 30.0
    ) -> TpmSealedKeyring:
        return cls(tcti, sealed_dir, pcrs=pcrs, timeout=timeout)

    @classmethod
    def create(
        cls, tcti: str, sealed_dir: Path, *, pcrs: str | None = None, timeout: float = 30.0
    ) -> TpmSealedKeyring:
        """Generate a KEK and seal it to the TPM (to ``pcrs`` as they are now, if given).

        Refuses if ``sealed_dir`` already holds a sealed KEK (never replaces one). The
        blobs are unsealed again before they are written, so a KEK that would not
        open is never put in service.
        """
        _check_tools()
        _check_tcti(tcti)
        selection = PcrSelection.parse(pcrs) if pcrs else None
        existing = [n for n in (PUBLIC_FILE, PRIVATE_FILE, META_FILE) if (sealed_dir / n).exists()]
        if existing:
            raise ConfigError(
                f"{sealed_dir} already holds a TPM-sealed KEK ({', '.join(existing)}); "
                "refusing to replace it",
                hint="pick another --sealed-dir; the old KEK may still wrap secrets",
            )
        kek = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        with tempfile.TemporaryDirectory(prefix="veritee-tpm-") as tmp:
            tpm = _Tpm(tcti, Path(tmp), timeout)
            tpm.primary()
            seal_args: list[str] = []
            values: dict[str, str] = {}
            if selection is not None:
                # The policy is computed from the very PCR values recorded in kek.json.
                values = tpm.pcr_values(selection, out="pcrs.bin")
                proc = tpm.run(
                    "tpm2_createpolicy", "--policy-pcr", "-l", str(selection),
                    "-f", "pcrs.bin", "-L", "policy.digest",
                )
                if proc.returncode != 0:
                    raise ConfigError(
                        f"the TPM could not compute the PCR policy for {selection}: "
                        f"{_tool_error(proc.stderr)}"
                    )
                # No userwithauth: the (empty) auth value must not open it past the policy.
                seal_args = ["-L", "policy.digest", "-a", _POLICY_ATTRS]
            else:
                seal_args = ["-a", _PLAIN_ATTRS]
            # The KEK goes to tpm2_create on stdin: it never touches the disk.
            proc = tpm.run(
                "tpm2_create", "-C", "primary.ctx", "-g", "sha256", "-i", "-",
                "-u", PUBLIC_FILE, "-r", PRIVATE_FILE, *seal_args, stdin=kek,
            )
            if proc.returncode != 0:
                raise ConfigError(
                    f"the TPM at TCTI {tcti!r} could not seal the KEK: {_tool_error(proc.stderr)}"
                )
            public = (Path(tmp) / PUBLIC_FILE).read_bytes()
            private = (Path(tmp) / PRIVATE_FILE).read_bytes()
        meta = {"version": _META_VERSION, "pcrs": str(selection or ""), "pcr_values": values}
        staged = _Sealed(
            public, private, selection, values, TpmtPublic.from_tpm2b(public).name()
        )
        if not hmac.compare_digest(_unseal(tcti, sealed_dir, staged, timeout), kek):
            raise ConfigError(f"the TPM at TCTI {tcti!r} did not give back the KEK it sealed")
        sealed_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_new_file(sealed_dir / PUBLIC_FILE, public, "TPM-sealed KEK (public part)")
        write_new_file(sealed_dir / PRIVATE_FILE, private, "TPM-sealed KEK (private part)")
        write_new_file(
            sealed_dir / META_FILE,
            (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
            "TPM-sealed KEK description",
        )
        del kek
        return cls(tcti, sealed_dir, timeout=timeout)

    def __repr__(self) -> str:
        return (
            f"TpmSealedKeyring(sealed_dir={str(self.sealed_dir)!r}, "
            f"pcrs={str(self.pcrs or '')!r}, kek_id={self._kek_id!r})"
        )

    def __enter__(self) -> TpmSealedKeyring:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        """Same blob as FileKeyring: version || 12-byte nonce || AES-256-GCM(dek) || tag."""
        return aead_wrap(self._held(), dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return aead_unwrap(self._held(), blob, aad, self._kek_id)

    def close(self) -> None:
        """Drop the unsealed KEK (Python cannot wipe it; it is released, not zeroed)."""
        self._aead = None

    def _held(self) -> AESGCM:
        aead = self._aead
        if aead is None:
            raise KeyringUnavailableError(f"TPM-sealed keyring {self._kek_id} is closed")
        return aead


def _unseal(tcti: str, sealed_dir: Path, sealed: _Sealed, timeout: float) -> bytes:
    """The KEK, unsealed by the TPM; ConfigError names what stands in the way."""
    with tempfile.TemporaryDirectory(prefix="veritee-tpm-") as tmp:
        work = Path(tmp)
        (work / PUBLIC_FILE).write_bytes(sealed.public)
        (work / PRIVATE_FILE).write_bytes(sealed.private)
        tpm = _Tpm(tcti, work, timeout)
        tpm.primary()
        proc = tpm.run(
            "tpm2_load", "-C", "primary.ctx", "-u", PUBLIC_FILE, "-r", PRIVATE_FILE,
            "-c", "kek.ctx",
        )
        if proc.returncode != 0:
            raise ConfigError(
                f"the TPM-sealed KEK in {sealed_dir} does not load into the TPM at TCTI "
                f"{tcti!r}: {_tool_error(proc.stderr)}",
                hint="the blobs were altered, or they were sealed by another TPM (or before "
                "the owner hierarchy was cleared); such a KEK cannot be recovered",
            )
        auth = ["-p", f"pcr:{sealed.pcrs}"] if sealed.pcrs is not None else []
        # The policy session is started by tpm2_unseal itself (auth "pcr:..."), so it
        # works with the kernel's resource manager as well as without one.
        proc = tpm.run("tpm2_unseal", "-c", "kek.ctx", *auth)
        if proc.returncode != 0:
            why = _tool_error(proc.stderr)
            # TPM_RC_POLICY_FAIL on session 1: "Esys_Unseal(0x99D) - ...a policy check failed"
            policy_failed = "0X99D" in why.upper() or "policy check" in why.lower()
            if sealed.pcrs is not None and policy_failed:
                raise ConfigError(_policy_message(tpm, sealed, sealed_dir), hint=_POLICY_HINT)
            raise ConfigError(f"the TPM refused to unseal the KEK in {sealed_dir}: {why}")
        kek = proc.stdout
    if len(kek) != KEY_BYTES:
        raise ConfigError(
            f"the TPM-sealed object in {sealed_dir} holds {len(kek)} bytes, not a "
            f"{KEY_BYTES}-byte KEK"
        )
    return kek


_POLICY_HINT: Final = (
    "the machine is not in the measured state the KEK was sealed in (firmware, bootloader "
    "or Secure Boot settings changed): boot that state again to start the service. Before "
    "a planned change, rotate to a KEK that does not depend on it (an HSM or file KEK, or a "
    "TPM KEK without PCRs) and seal a new one afterwards"
)


def _policy_message(tpm: _Tpm, sealed: _Sealed, sealed_dir: Path) -> str:
    assert sealed.pcrs is not None
    head = f"the TPM refused to unseal the KEK in {sealed_dir}: its PCR policy no longer matches"
    try:
        now = tpm.pcr_values(sealed.pcrs)
    except ConfigError:
        return f"{head} (sealed to PCRs {sealed.pcrs})"
    changed = _changed(sealed.pcrs.names(), sealed.pcr_values, now)
    if not changed:
        return f"{head} (sealed to PCRs {sealed.pcrs}; their recorded values look unchanged)"
    return f"{head}: PCR {', '.join(changed)} changed since the KEK was sealed"


def _changed(names: Sequence[str], before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    return [n for n in names if before.get(n) != now.get(n)]
