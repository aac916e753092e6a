"""Expected TPM PCR values from boot artifacts, and reference values from a known-good log.

What UEFI firmware (EDK2 Tcg2Dxe / DxeImageVerificationLib) and shim measure, following the
TCG PC Client Platform Firmware Profile:

* **PCR 4** — ``EV_EFI_ACTION`` "Calling EFI Application from Boot Option" (at the first
  ReadyToBoot), ``EV_SEPARATOR`` (``00000000``), then one
  ``EV_EFI_BOOT_SERVICES_APPLICATION`` per image loaded (shim, grub, the kernel), whose
  digest is the image's Authenticode hash (:mod:`veritee.tee.tpm.authenticode`);
* **PCR 7** — ``EV_EFI_VARIABLE_DRIVER_CONFIG`` for SecureBoot, PK, KEK, db and dbx (dbt
  when present) in that order, the digest covering the whole ``UEFI_VARIABLE_DATA``
  (a variable that is not set is measured with no data), ``EV_SEPARATOR``, then one
  ``EV_EFI_VARIABLE_AUTHORITY`` per distinct db entry that verified an image — a
  ``UEFI_VARIABLE_DATA`` named ``db`` whose data is the ``EFI_SIGNATURE_DATA`` (owner GUID
  and certificate, or the image hash) — and, for images shim verifies with the certificate
  it was built with, one ``Shim`` authority holding that certificate. Each authority is
  measured once per boot. Without Secure Boot no image is verified and no authority is
  measured.

Which db entry verified an image is found as the firmware finds it: the signature lists of
db in order, the first X.509 entry that is, or directly issued, a certificate carried in the
image's Authenticode signature (checked with the issuer's key), else a hash entry equal to
the image's Authenticode SHA-256.

:func:`reference_values_from_log` is the measured-boot policy generator (what
``keylime-policy create measured-boot`` extracts), returning ``{name: [values]}`` as the RVPS
``sample`` extractor and ``veritee rv`` accept.
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import pkcs7

from veritee.errors import EvidenceFormatError
from veritee.tee.tpm.authenticode import (
    WIN_CERT_TYPE_PKCS_SIGNED_DATA,
    PeImage,
    authenticode_digests,
    shim_vendor_certificate,
)
from veritee.tee.tpm.eventlog import (
    EFI_CERT_SHA256,
    EFI_CERT_X509,
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    SPEC_ID_SIGNATURE,
    Event,
    EventLog,
    EventType,
    ImageLoadEvent,
    LogFormat,
    SignatureEntry,
    SpecIdAlgorithm,
    SpecIdEvent,
    UefiVariableData,
    parse_signature_data,
    parse_signature_lists,
)
from veritee.tee.tpm.replay import binding_candidates, initial_value, is_bound
from veritee.tee.tpm.replay import replay as replay_log
from veritee.tee.tpm.structures import HASH_SIZES, TpmAlg, hash_name, hashlib_name

CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
EXIT_BOOT_SERVICES_INVOCATION = b"Exit Boot Services Invocation"
EXIT_BOOT_SERVICES_SUCCESS = b"Exit Boot Services Returned with Success"
SEPARATOR_DATA = b"\0\0\0\0"
SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
BOOT_APPLICATION_PCR = 4
SECURE_BOOT_PCR = 7
POLICY_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)
DEFAULT_BANKS = (TpmAlg.SHA256,)
_SECURE_BOOT_VARIABLES = (
    ("SecureBoot", EFI_GLOBAL_VARIABLE),
    ("PK", EFI_GLOBAL_VARIABLE),
    ("KEK", EFI_GLOBAL_VARIABLE),
    ("db", EFI_IMAGE_SECURITY_DATABASE),
    ("dbx", EFI_IMAGE_SECURITY_DATABASE),
)


def _hash(alg: int, data: bytes) -> bytes:
    return hashlib.new(hashlib_name(alg), data).digest()


@dataclass(frozen=True)
class PredictedEvent:
    """One event as the firmware would log it: PCR, type, data and a digest per bank.
    ``data`` is empty where the firmware logs something that cannot be predicted (the
    memory address an image was loaded at)."""

    pcr: int
    type: int
    data: bytes
    digests: tuple[tuple[int, bytes], ...]
    what: str

    def digest(self, alg: int) -> bytes:
        for a, d in self.digests:
            if a == alg:
                return d
        raise KeyError(hash_name(alg))

    @property
    def type_name(self) -> str:
        return EventType(self.type).name if self.type in EventType._value2member_map_ else (
            f"{self.type:#010x}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "pcr": self.pcr,
            "type": self.type_name,
            "what": self.what,
            "digests": {hash_name(a): d.hex() for a, d in self.digests},
        }


def measured_event(
    pcr: int, event_type: int, data: bytes, algs: Sequence[int], what: str,
    *, measured: bytes | None = None,
) -> PredictedEvent:
    """An event whose digest is the hash of ``measured`` (its data unless given)."""
    body = data if measured is None else measured
    return PredictedEvent(pcr, event_type, data, tuple((a, _hash(a, body)) for a in algs), what)


def efi_action(pcr: int, text: bytes, algs: Sequence[int]) -> PredictedEvent:
    return measured_event(pcr, EventType.EV_EFI_ACTION, text, algs,
                          text.decode("ascii", "replace"))


def separator(pcr: int, algs: Sequence[int]) -> PredictedEvent:
    return measured_event(pcr, EventType.EV_SEPARATOR, SEPARATOR_DATA, algs, "separator")


def variable_event(
    pcr: int, event_type: int, name: str, guid: str, data: bytes, algs: Sequence[int]
) -> PredictedEvent:
    """EV_EFI_VARIABLE_DRIVER_CONFIG / _AUTHORITY: the digest covers the UEFI_VARIABLE_DATA."""
    raw = UefiVariableData(guid, name, data).to_bytes()
    return measured_event(pcr, event_type, raw, algs, name)


def signature_data(entry: SignatureEntry) -> bytes:
    """EFI_SIGNATURE_DATA: the owner GUID and the certificate or hash."""
    return uuid.UUID(entry.owner).bytes_le + entry.data


# -- boot images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BootImage:
    """A boot application as the firmware sees it: its Authenticode digests, the PKCS#7
    signatures it carries and, for shim, the certificate it trusts."""

    name: str
    digests: tuple[tuple[int, bytes], ...]
    signatures: tuple[bytes, ...] = ()
    vendor_cert: bytes | None = None

    @classmethod
    def from_bytes(cls, name: str, data: bytes, algs: Iterable[int] = DEFAULT_BANKS) -> BootImage:
        pe = PeImage.from_bytes(data)
        wanted = tuple(dict.fromkeys((*algs, TpmAlg.SHA256)))
        names = {a: hashlib_name(a) for a in wanted}
        got = authenticode_digests(data, tuple(names.values()), pe)
        sigs = tuple(
            c.data for c in pe.certificates(data) if c.cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA
        )
        return cls(name, tuple((a, got[n]) for a, n in names.items()), sigs,
                   shim_vendor_certificate(data, pe))

    @classmethod
    def from_digests(cls, name: str, digests: Mapping[int, bytes]) -> BootImage:
        return cls(name, tuple(digests.items()))

    def digest(self, alg: int) -> bytes:
        for a, d in self.digests:
            if a == alg:
                return d
        raise KeyError(hash_name(alg))

    def certificates(self) -> tuple[x509.Certificate, ...]:
        out: list[x509.Certificate] = []
        for sig in self.signatures:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out.extend(pkcs7.load_der_pkcs7_certificates(sig))
            except ValueError as exc:
                raise EvidenceFormatError(
                    f"{self.name}: Authenticode signature is not a PKCS#7 SignedData: {exc}"
                ) from None
        return tuple(out)


def _load_cert(der: bytes) -> x509.Certificate | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _cert_vouches(authority: x509.Certificate, certs: Sequence[x509.Certificate]) -> bool:
    """Whether ``authority`` is one of ``certs`` or signed one of them."""
    for c in certs:
        if c == authority:
            return True
        if c.issuer != authority.subject:
            continue
        try:
            c.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def db_authority(image: BootImage, db: Sequence[SignatureEntry]) -> SignatureEntry | None:
    """The db entry the firmware would log as having verified ``image`` (None: none does)."""
    certs = image.certificates()
    if certs:
        for entry in db:
            if entry.signature_type != EFI_CERT_X509:
                continue
            authority = _load_cert(entry.data)
            if authority is not None and _cert_vouches(authority, certs):
                return entry
    sha256 = image.digest(TpmAlg.SHA256)
    for entry in db:
        if entry.signature_type == EFI_CERT_SHA256 and entry.data == sha256:
            return entry
    return None


# -- Secure Boot variables -------------------------------------------------------------------


@dataclass(frozen=True)
class SecureBootVariables:
    """The Secure Boot variables as stored (raw variable data; empty when not set)."""

    secure_boot: bytes = b""
    pk: bytes = b""
    kek: bytes = b""
    db: bytes = b""
    dbx: bytes = b""
    dbt: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self.secure_boot[:1] == b"\x01"

    def db_entries(self) -> tuple[SignatureEntry, ...]:
        return parse_signature_lists(self.db)

    def events(self, algs: Sequence[int]) -> list[PredictedEvent]:
        values = (self.secure_boot, self.pk, self.kek, self.db, self.dbx)
        for (name, _), value in zip(_SECURE_BOOT_VARIABLES[1:], values[1:], strict=True):
            if value:
                try:
                    parse_signature_lists(value)
                except EvidenceFormatError as exc:
                    raise EvidenceFormatError(f"Secure Boot variable {name}: {exc}") from None
        out = [
            variable_event(SECURE_BOOT_PCR, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, name, guid,
                           value, algs)
            for (name, guid), value in zip(_SECURE_BOOT_VARIABLES, values, strict=True)
        ]
        if self.dbt:
            out.append(variable_event(SECURE_BOOT_PCR, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                                      "dbt", EFI_IMAGE_SECURITY_DATABASE, self.dbt, algs))
        return out


# -- predictions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """Predicted events and the PCR values they give, per bank."""

    events: tuple[PredictedEvent, ...]
    algs: tuple[int, ...]
    values: Mapping[int, Mapping[int, bytes]] = field(default_factory=dict)  # alg -> pcr -> v
    notes: tuple[str, ...] = ()

    def value(self, alg: int, pcr: int) -> bytes:
        return self.values[alg][pcr]


def extend(events: Iterable[PredictedEvent], algs: Sequence[int]) -> dict[int, dict[int, bytes]]:
    """PCR values the events extend to from reset (locality-0 start)."""
    out: dict[int, dict[int, bytes]] = {a: {} for a in algs}
    for e in events:
        for a in algs:
            cur = out[a].get(e.pcr, initial_value(a, e.pcr, None))
            out[a][e.pcr] = _hash(a, cur + e.digest(a))
    return out


def pcr4_events(images: Sequence[BootImage], algs: Sequence[int]) -> list[PredictedEvent]:
    out = [efi_action(BOOT_APPLICATION_PCR, CALLING_EFI_APPLICATION, algs),
           separator(BOOT_APPLICATION_PCR, algs)]
    for img in images:
        out.append(PredictedEvent(
            BOOT_APPLICATION_PCR, EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
            image_load_event(img.name), tuple((a, img.digest(a)) for a in algs), img.name,
        ))
    return out


def image_load_event(name: str) -> bytes:
    """A UEFI_IMAGE_LOAD_EVENT for a predicted application: the load address and size are
    not known ahead of the boot (they do not enter the digest), so they are zero; the device
    path is one file-path node with the image's name."""
    path = (name + "\0").encode("utf-16-le")
    dp = bytes([0x04, 0x04]) + (4 + len(path)).to_bytes(2, "little") + path + b"\x7f\xff\x04\x00"
    return bytes(24) + len(dp).to_bytes(8, "little") + dp


def shim_authority_event(
    name: str, guid: str, data: bytes, algs: Sequence[int], *, legacy: bool
) -> PredictedEvent:
    """An authority event as shim logs it. Shim releases before 15.3 sized the record with
    ``sizeof (UEFI_VARIABLE_DATA)`` of an unpacked struct (40 bytes instead of 32 + 3), so
    the measured record carries 5 zero bytes after the variable data; later releases
    measure the packed structure, as EDK2 does."""
    if not legacy:
        return variable_event(SECURE_BOOT_PCR, EventType.EV_EFI_VARIABLE_AUTHORITY, name, guid,
                              data, algs)
    raw = UefiVariableData(guid, name, data).to_bytes() + bytes(_LEGACY_SHIM_PAD)
    return measured_event(SECURE_BOOT_PCR, EventType.EV_EFI_VARIABLE_AUTHORITY, raw, algs, name)


_LEGACY_SHIM_PAD = 5


def pcr7_events(
    variables: SecureBootVariables,
    images: Sequence[BootImage],
    algs: Sequence[int],
    *,
    legacy_shim: bool = False,
) -> tuple[list[PredictedEvent], list[str]]:
    """PCR 7 events, and notes on what could not be predicted. ``legacy_shim``: the shim
    is older than 15.3 (see :func:`shim_authority_event`; it also logs an authority each
    time it is used, where the firmware and later shims log each once)."""
    out = variables.events(algs)
    out.append(separator(SECURE_BOOT_PCR, algs))
    notes: list[str] = []
    if not variables.enabled:
        return out, notes
    db = variables.db_entries()
    seen: set[tuple[bool, bytes]] = set()
    shim: BootImage | None = None

    def add(name: str, guid: str, data: bytes, *, by_shim: bool) -> None:
        key = (by_shim, UefiVariableData(guid, name, data).to_bytes())  # each keeps its own list
        if key in seen and not (by_shim and legacy_shim):
            return
        seen.add(key)
        if by_shim:
            out.append(shim_authority_event(name, guid, data, algs, legacy=legacy_shim))
        else:
            out.append(variable_event(SECURE_BOOT_PCR, EventType.EV_EFI_VARIABLE_AUTHORITY,
                                      name, guid, data, algs))

    for img in images:
        entry = db_authority(img, db)
        if entry is not None:
            add("db", EFI_IMAGE_SECURITY_DATABASE, signature_data(entry), by_shim=shim is not None)
        elif shim is not None and shim.vendor_cert is not None and _vendor_vouches(shim, img):
            add("Shim", SHIM_LOCK_GUID, shim.vendor_cert, by_shim=True)
        else:
            verifier = "shim" if shim is not None else "the firmware"
            notes.append(
                f"{img.name}: no db entry{' or shim vendor certificate' if shim else ''} "
                f"verifies it, so {verifier} would refuse to start it under Secure Boot"
            )
        if shim is None and img.vendor_cert is not None:
            shim = img
            notes.append(
                f"{img.name} is shim: its SbatLevel and MokList authorities (PCR 7) depend on "
                "variables of the running machine and are not predicted; pin them from a "
                "known-good log (--from-log)"
            )
    return out, notes


def _vendor_vouches(shim: BootImage, img: BootImage) -> bool:
    assert shim.vendor_cert is not None
    vendor = _load_cert(shim.vendor_cert)
    return vendor is not None and _cert_vouches(vendor, img.certificates())


def predict(
    images: Sequence[BootImage],
    variables: SecureBootVariables | None,
    algs: Sequence[int] = DEFAULT_BANKS,
    *,
    legacy_shim: bool = False,
) -> Prediction:
    """PCR 4 (and PCR 7 when the Secure Boot variables are given) from boot artifacts."""
    algs = tuple(dict.fromkeys(algs))
    events = pcr4_events(images, algs)
    notes: list[str] = []
    if variables is not None:
        pcr7, notes = pcr7_events(variables, images, algs, legacy_shim=legacy_shim)
        events = pcr7 + events
    return Prediction(tuple(events), algs, extend(events, algs), tuple(notes))


def to_event_log(events: Sequence[PredictedEvent], algs: Sequence[int]) -> EventLog:
    """A crypto-agile TCG event log holding ``events`` (so other tools can replay them)."""
    spec = SpecIdEvent(SPEC_ID_SIGNATURE, 0, 0, 2, 0, 2,
                       tuple(SpecIdAlgorithm(a, HASH_SIZES[a]) for a in algs), b"")
    header = Event(0, 0, 0, EventType.EV_NO_ACTION, ((TpmAlg.SHA1, bytes(20)),), spec.to_bytes())
    body = tuple(
        Event(n + 1, 0, e.pcr, e.type, tuple((a, e.digest(a)) for a in algs), e.data)
        for n, e in enumerate(events)
    )
    return EventLog(LogFormat.CRYPTO_AGILE, header, spec, body)


# -- the measured-boot policy generator ------------------------------------------------------


def _entry_value(entry: SignatureEntry) -> str:
    """db/dbx entries as reference values: SHA-256 of a certificate, or the listed hash."""
    if entry.signature_type == EFI_CERT_X509:
        return hashlib.sha256(entry.data).hexdigest()
    return entry.data.hex()


def _bank_prefix(alg: int, main: int) -> str:
    return "tpm_" if alg == main else f"tpm_{hash_name(alg)}_"


def _is_firmware_volume_app(e: Event) -> bool:
    """A boot application loaded from a firmware volume (the boot menu, a UEFI shell):
    PIWG firmware-file / firmware-volume device path nodes (media type 4, subtypes 6 and 7)."""
    try:
        dp = ImageLoadEvent.from_bytes(e.data).device_path
    except EvidenceFormatError:
        return False
    i = 0
    while i + 4 <= len(dp):
        typ, sub, length = dp[i], dp[i + 1], int.from_bytes(dp[i + 2 : i + 4], "little")
        if typ == 0x04 and sub in (6, 7):
            return True
        if length < 4 or typ == 0x7F:
            return False
        i += length
    return False


def reference_values_from_log(log: EventLog) -> dict[str, list[object]]:
    """The values a measured-boot policy may pin, from a known-good log: ``tpm_pcrNN`` (the
    SHA-256 bank, or the strongest the log has) and ``tpm_<bank>_pcrNN`` for every other
    bank, PCRs 0-9 and 14 where the log extends them; the Authenticode digests of the boot
    applications; the kernel command line, initrd and kernel digests GRUB measured; the
    Secure Boot state, the entries of PK, KEK, db and dbx, and the authorities used.

    Data-bearing events whose data does not hash to their digest contribute nothing.
    """
    r = replay_log(log)
    main = TpmAlg.SHA256 if TpmAlg.SHA256 in r.algs else max(
        r.algs, key=lambda a: HASH_SIZES.get(a, 0))
    out: dict[str, list[object]] = {}
    for alg in r.algs:
        prefix = _bank_prefix(alg, main)
        for pcr in POLICY_PCRS:
            if pcr in r.extended:
                out[f"{prefix}pcr{pcr:02d}"] = [r.value(alg, pcr).hex()]
    apps: list[object] = []
    firmware: list[object] = []
    crtm: list[object] = []
    initrd: list[object] = []
    kernel: list[object] = []
    cmdline: list[object] = []
    mok: list[object] = []
    mokx: list[object] = []
    authorities: list[object] = []
    secure_boot: bool | None = None
    dbs: dict[str, list[object]] = {}
    for e in log.events:
        if e.type == EventType.EV_NO_ACTION:
            continue
        if binding_candidates(e) is not None and not all(is_bound(e, a) for a in r.algs):
            continue
        d = e.digest(main)
        if d is None:
            continue
        t = e.type
        if t == EventType.EV_EFI_BOOT_SERVICES_APPLICATION:
            if not _is_firmware_volume_app(e):
                _add(apps, d.hex())
        elif t in (EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB,
                   EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2):
            _add(firmware, d.hex())
        elif t == EventType.EV_S_CRTM_VERSION:
            _add(crtm, d.hex())
        elif t == EventType.EV_IPL and e.pcr == 9:
            text = e.data.rstrip(b"\0")
            if b"initrd" in text or b"initramfs" in text:
                _add(initrd, d.hex())
            elif b"vmlinuz" in text:
                _add(kernel, d.hex())
        elif t == EventType.EV_IPL and e.pcr == 8:
            line = e.data.rstrip(b"\0")
            for tag in (b"kernel_cmdline: ", b"kernel_cmdline ", b"grub_kernel_cmdline "):
                if line.startswith(tag):
                    _add(cmdline, line[len(tag):].decode("utf-8", "replace"))
                    break
        elif t == EventType.EV_IPL and e.pcr == 14:
            mok_name = e.data.rstrip(b"\0")
            if mok_name == b"MokList":
                _add(mok, d.hex())
            elif mok_name == b"MokListX":
                _add(mokx, d.hex())
        elif t == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG and e.pcr == SECURE_BOOT_PCR:
            try:
                var = UefiVariableData.from_bytes(e.data)
            except EvidenceFormatError:
                continue
            if var.name == "SecureBoot" and var.variable_guid == EFI_GLOBAL_VARIABLE:
                secure_boot = var.data[:1] == b"\x01"
            elif var.name in ("PK", "KEK", "db", "dbx"):
                try:
                    entries = parse_signature_lists(var.data)
                except EvidenceFormatError:
                    continue
                dbs[var.name.lower()] = list(dict.fromkeys(_entry_value(x) for x in entries))
        elif t == EventType.EV_EFI_VARIABLE_AUTHORITY:
            try:
                var = UefiVariableData.from_bytes(e.data, allow_trailing=True)
                entry = parse_signature_data(var.data)
            except EvidenceFormatError:
                continue
            _add(authorities, _entry_value(entry))
    named: list[tuple[str, list[object]]] = [
        ("tpm_boot_app_digests", apps),
        ("tpm_platform_firmware_digests", firmware),
        ("tpm_scrtm_digests", crtm),
        ("tpm_kernel_cmdline", cmdline),
        ("tpm_initrd_digests", initrd),
        ("tpm_kernel_digests", kernel),
        ("tpm_moklist_digests", mok),
        ("tpm_moklistx_digests", mokx),
        ("tpm_secureboot_authorities", authorities),
    ]
    for name, values in named:
        if values:
            out[name] = values
    if secure_boot is not None:
        out["tpm_secure_boot"] = [secure_boot]
    for var_name in ("pk", "kek", "db", "dbx"):
        if var_name in dbs:
            out[f"tpm_secureboot_{var_name}"] = dbs[var_name]
    return out


def _add(values: list[object], value: object) -> None:
    if value not in values:
        values.append(value)

