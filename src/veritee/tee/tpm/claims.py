"""TPM claims, named as Trustee names them (PROTOCOL.md section 4), plus what veritee reads
from a measured-boot log and an IMA list that the quote covers.

Trustee's ``tpm`` claims are ``pcr00``..``pcr23`` (SHA-256 bank), ``report_data`` (the
quote's extraData), ``init_data`` (PCR 8) and ``ak_public``. veritee adds the clock and
counters, every quoted bank, and — when an event log is given and its replay matched the
quote — typed boot claims (``boot``), and IMA results (``ima``).

Boot claims are taken only from events of PCRs the quote confirmed, and data-bearing
events (UEFI variables, separators, actions, GRUB command lines) only when their data
hashes to their digests in every bank; events that fail that check are listed in
``boot.unbound_events`` and contribute nothing.
"""

from __future__ import annotations

import base64
import hashlib
import warnings
from dataclasses import dataclass

from cryptography import x509

from veritee.errors import EvidenceFormatError
from veritee.tee.base import ClaimValue
from veritee.tee.tpm.eventlog import (
    EFI_CERT_X509,
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    Event,
    EventLog,
    EventType,
    ImageLoadEvent,
    SignatureEntry,
    UefiVariableData,
    parse_signature_data,
    parse_signature_lists,
)
from veritee.tee.tpm.ima_policy import ImaAppraisal
from veritee.tee.tpm.ima_verify import VerifiedIma
from veritee.tee.tpm.replay import GRUB_PREFIXES, ReplayMatch, binding_candidates, is_bound
from veritee.tee.tpm.structures import PCR_COUNT, TpmAlg, hash_name
from veritee.tee.tpm.verify import VerifiedQuote

INIT_DATA_PCR = 8
SECURE_BOOT_VARIABLES = ("PK", "KEK", "db", "dbx", "dbt", "dbr")
_KERNEL_PREFIXES = (b"kernel_cmdline: ", b"kernel_cmdline ", b"grub_kernel_cmdline ")


def _text(data: bytes) -> str:
    return data.rstrip(b"\0").decode("utf-8", "replace")


@dataclass(frozen=True)
class SignatureDbEntry:
    """One entry of PK/KEK/db/dbx or an authority used to verify an image."""

    type: str  # x509, sha256, ...
    owner: str
    sha256: str  # SHA-256 of the entry data (for x509: of the DER certificate)
    subject: str | None = None  # x509 only
    hash: str | None = None  # hash types: the listed hash

    @classmethod
    def of(cls, entry: SignatureEntry) -> SignatureDbEntry:
        subject = None
        value = None
        if entry.signature_type == EFI_CERT_X509:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    subject = x509.load_der_x509_certificate(entry.data).subject.rfc4514_string()
            except ValueError:
                subject = None
        else:
            value = entry.data.hex()
        return cls(entry.type_name, entry.owner, hashlib.sha256(entry.data).hexdigest(),
                   subject, value)

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {"type": self.type, "owner": self.owner, "sha256": self.sha256}
        if self.subject is not None:
            out["subject"] = self.subject
        if self.hash is not None:
            out["hash"] = self.hash
        return out


@dataclass(frozen=True)
class BootImage:
    """An EFI application (PCR 4) or driver / option ROM (PCR 2) as measured: its
    Authenticode digests per bank and the file path of its device path."""

    event: int
    pcr: int
    kind: str  # application, driver, runtime-driver
    digests: tuple[tuple[str, str], ...]
    paths: tuple[str, ...]

    def to_json(self) -> dict[str, ClaimValue]:
        return {
            "event": self.event,
            "pcr": self.pcr,
            "kind": self.kind,
            "digests": dict(self.digests),
            "paths": list(self.paths),
        }


@dataclass(frozen=True)
class VariableEvent:
    event: int
    pcr: int
    type: str
    guid: str
    name: str
    data_sha256: str

    def to_json(self) -> dict[str, ClaimValue]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BootClaims:
    log_format: str
    banks: tuple[str, ...]
    startup_locality: int | None
    verified_pcrs: tuple[int, ...] | None  # None: not compared with a quote (unverified)
    secure_boot: bool | None
    secure_boot_db: tuple[tuple[str, tuple[SignatureDbEntry, ...]], ...]
    authorities: tuple[tuple[str, SignatureDbEntry], ...]
    boot_applications: tuple[BootImage, ...]
    boot_drivers: tuple[BootImage, ...]
    kernel_cmdline: str | None
    grub_commands: tuple[str, ...]
    separators: tuple[tuple[int, bool], ...]  # (pcr, error separator?)
    efi_actions: tuple[tuple[int, str], ...]
    efi_variables: tuple[VariableEvent, ...]
    exit_boot_services: bool
    unbound_events: tuple[tuple[int, str, int], ...]

    @classmethod
    def from_log(cls, log: EventLog, match: ReplayMatch | None = None) -> BootClaims:
        verified = match.matched_pcrs if match is not None else None
        algs = log.algorithms
        secure_boot: bool | None = None
        dbs: dict[str, tuple[SignatureDbEntry, ...]] = {}
        authorities: list[tuple[str, SignatureDbEntry]] = []
        apps: list[BootImage] = []
        drivers: list[BootImage] = []
        cmdline: str | None = None
        grub: list[str] = []
        separators: list[tuple[int, bool]] = []
        actions: list[tuple[int, str]] = []
        variables: list[VariableEvent] = []
        unbound: list[tuple[int, str, int]] = []
        for e in log.events:
            if e.type == EventType.EV_NO_ACTION:
                continue
            if verified is not None and e.pcr not in verified:
                continue
            if binding_candidates(e) is not None and not all(is_bound(e, a) for a in algs):
                unbound.append((e.number, e.type_name, e.pcr))
                continue
            t = e.type
            if t in (EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
                     EventType.EV_EFI_BOOT_SERVICES_DRIVER,
                     EventType.EV_EFI_RUNTIME_SERVICES_DRIVER):
                image = _image(e)
                (apps if t == EventType.EV_EFI_BOOT_SERVICES_APPLICATION else drivers).append(image)
            elif t == EventType.EV_SEPARATOR:
                separators.append((e.pcr, e.data not in (b"\0\0\0\0", b"WBCL")))
            elif t in (EventType.EV_EFI_ACTION, EventType.EV_ACTION):
                actions.append((e.pcr, _text(e.data)))
            elif t == EventType.EV_IPL and e.pcr == INIT_DATA_PCR:
                text = e.data.rstrip(b"\0")
                for prefix in _KERNEL_PREFIXES:
                    if text.startswith(prefix):
                        cmdline = _text(text[len(prefix):])
                        break
                else:
                    for prefix in GRUB_PREFIXES:
                        if text.startswith(prefix):
                            grub.append(_text(text[len(prefix):]))
                            break
            elif t in (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_VARIABLE_BOOT,
                       EventType.EV_EFI_VARIABLE_BOOT2, EventType.EV_EFI_VARIABLE_AUTHORITY):
                try:
                    var = UefiVariableData.from_bytes(
                        e.data, allow_trailing=t == EventType.EV_EFI_VARIABLE_AUTHORITY
                    )
                except EvidenceFormatError:
                    unbound.append((e.number, e.type_name, e.pcr))
                    continue
                variables.append(VariableEvent(
                    e.number, e.pcr, e.type_name, var.variable_guid, var.name,
                    hashlib.sha256(var.data).hexdigest()))
                if t == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG and e.pcr == 7:
                    if var.name == "SecureBoot" and var.variable_guid == EFI_GLOBAL_VARIABLE:
                        # An empty SecureBoot variable (seen on real firmware) means it is
                        # not set: Secure Boot is off.
                        secure_boot = bool(var.data) and var.data[0] == 1
                    elif var.name in SECURE_BOOT_VARIABLES and var.variable_guid in (
                        EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE
                    ):
                        try:
                            entries = parse_signature_lists(var.data)
                        except EvidenceFormatError:
                            unbound.append((e.number, e.type_name, e.pcr))
                            continue
                        dbs[var.name] = tuple(SignatureDbEntry.of(x) for x in entries)
                elif t == EventType.EV_EFI_VARIABLE_AUTHORITY:
                    try:
                        entry = parse_signature_data(var.data)
                    except EvidenceFormatError:
                        # SbatLevel, MokListTrusted...: policy data, not a signature entry
                        entry = SignatureEntry("data", "", var.data)
                    authorities.append((var.name, SignatureDbEntry.of(entry)))
        exit_bs = any(text == "Exit Boot Services Invocation" for _, text in actions)
        return cls(
            log_format=log.format.value,
            banks=tuple(hash_name(a) for a in algs),
            startup_locality=log.startup_locality,
            verified_pcrs=tuple(sorted(verified)) if verified is not None else None,
            secure_boot=secure_boot,
            secure_boot_db=tuple(dbs.items()),
            authorities=tuple(authorities),
            boot_applications=tuple(apps),
            boot_drivers=tuple(drivers),
            kernel_cmdline=cmdline,
            grub_commands=tuple(grub),
            separators=tuple(separators),
            efi_actions=tuple(actions),
            efi_variables=tuple(variables),
            exit_boot_services=exit_bs,
            unbound_events=tuple(unbound),
        )

    def to_json(self) -> dict[str, ClaimValue]:
        return {
            "log_format": self.log_format,
            "banks": list(self.banks),
            "startup_locality": self.startup_locality,
            "verified_pcrs": list(self.verified_pcrs) if self.verified_pcrs is not None else None,
            "secure_boot": self.secure_boot,
            "secure_boot_db": {
                name: [x.to_json() for x in entries] for name, entries in self.secure_boot_db
            },
            "authorities": [{"variable": n, **x.to_json()} for n, x in self.authorities],
            "boot_applications": [x.to_json() for x in self.boot_applications],
            "boot_drivers": [x.to_json() for x in self.boot_drivers],
            "kernel_cmdline": self.kernel_cmdline,
            "grub_commands": list(self.grub_commands),
            "separators": [{"pcr": p, "error": err} for p, err in self.separators],
            "efi_actions": [{"pcr": p, "action": a} for p, a in self.efi_actions],
            "efi_variables": [v.to_json() for v in self.efi_variables],
            "exit_boot_services": self.exit_boot_services,
            "unbound_events": [
                {"event": n, "type": t, "pcr": p} for n, t, p in self.unbound_events
            ],
        }


def _image(e: Event) -> BootImage:
    kind = {
        EventType.EV_EFI_BOOT_SERVICES_APPLICATION: "application",
        EventType.EV_EFI_BOOT_SERVICES_DRIVER: "driver",
    }.get(EventType(e.type), "runtime-driver")
    try:
        paths = ImageLoadEvent.from_bytes(e.data).file_paths()
    except EvidenceFormatError:
        paths = ()
    return BootImage(
        e.number, e.pcr, kind, tuple((hash_name(a), d.hex()) for a, d in e.digests), paths
    )


@dataclass(frozen=True)
class ImaClaims:
    bank: str
    pcr: int
    entries_verified: int
    position: int
    aggregate: str
    pending: int
    templates: tuple[str, ...]
    policy_violations: tuple[str, ...] | None  # None: no policy applied

    @classmethod
    def of(cls, verified: VerifiedIma, appraisal: ImaAppraisal | None = None) -> ImaClaims:
        return cls(
            bank=hash_name(verified.state.alg),
            pcr=verified.state.pcr,
            entries_verified=len(verified.entries),
            position=verified.state.position,
            aggregate=verified.state.value.hex(),
            pending=len(verified.pending),
            templates=tuple(sorted({e.template_name for e in verified.entries})),
            policy_violations=tuple(v.describe() for v in appraisal.violations)
            if appraisal is not None else None,
        )

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {
            "bank": self.bank,
            "pcr": self.pcr,
            "entries_verified": self.entries_verified,
            "position": self.position,
            "aggregate": self.aggregate,
            "pending": self.pending,
            "templates": list(self.templates),
        }
        if self.policy_violations is not None:
            out["policy_violations"] = list(self.policy_violations)
        return out


@dataclass(frozen=True)
class TpmClaims:
    """Claims of one verified quote (and, optionally, its boot log and IMA list)."""

    pcrs: tuple[tuple[int, bytes], ...]  # the main bank (SHA-256 when quoted)
    report_data: bytes
    init_data: bytes | None
    ak_public: bytes  # DER SubjectPublicKeyInfo
    # veritee additions
    pcr_bank: str
    banks: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...]
    signature: str
    clock: int
    reset_count: int
    restart_count: int
    clock_safe: bool
    firmware_version: int
    qualified_signer: bytes
    ak_name: bytes | None
    nonce_checked: bool
    boot: BootClaims | None = None
    ima: ImaClaims | None = None

    @property
    def tee(self) -> str:
        return "tpm"

    @classmethod
    def from_verified(
        cls, v: VerifiedQuote, *, boot: BootClaims | None = None, ima: ImaClaims | None = None
    ) -> TpmClaims:
        table = v.pcrs.as_dict()
        main = TpmAlg.SHA256 if TpmAlg.SHA256 in table else next(iter(table))
        bank = table[main]
        a = v.attest
        return cls(
            pcrs=tuple(sorted((p, val) for p, val in bank.items() if p < PCR_COUNT)),
            report_data=a.extra_data,
            init_data=bank.get(INIT_DATA_PCR),
            ak_public=v.ak.spki_der,
            pcr_bank=hash_name(main),
            banks=tuple(
                (hash_name(alg), tuple(sorted(vals.items()))) for alg, vals in table.items()
            ),
            signature=v.signature.describe(),
            clock=a.clock_info.clock,
            reset_count=a.clock_info.reset_count,
            restart_count=a.clock_info.restart_count,
            clock_safe=bool(a.clock_info.safe),
            firmware_version=a.firmware_version,
            qualified_signer=a.qualified_signer,
            ak_name=v.ak.name,
            nonce_checked=v.nonce_checked,
            boot=boot,
            ima=ima,
        )

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {f"pcr{p:02d}": val.hex() for p, val in self.pcrs}
        out["report_data"] = self.report_data.hex()
        if self.init_data is not None:
            out["init_data"] = self.init_data.hex()
        out["ak_public"] = base64.b64encode(self.ak_public).decode("ascii")
        out["ak_public_sha256"] = hashlib.sha256(self.ak_public).hexdigest()
        out["pcr_bank"] = self.pcr_bank
        out["pcrs"] = {name: {str(p): val.hex() for p, val in vals} for name, vals in self.banks}
        out["signature"] = self.signature
        out["clock"] = self.clock
        out["reset_count"] = self.reset_count
        out["restart_count"] = self.restart_count
        out["clock_safe"] = self.clock_safe
        out["firmware_version"] = f"{self.firmware_version:016x}"
        out["qualified_signer"] = self.qualified_signer.hex()
        out["ak_name"] = self.ak_name.hex() if self.ak_name is not None else None
        out["nonce_checked"] = self.nonce_checked
        if self.boot is not None:
            out["boot"] = self.boot.to_json()
        if self.ima is not None:
            out["ima"] = self.ima.to_json()
        return out
