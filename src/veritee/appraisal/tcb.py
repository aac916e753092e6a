"""The trusted computing base a piece of verified evidence covers, in plain words.

From verified claims (``veritee verify <tee> --json``), reference values (with
their provenance when ``veritee rv list --json`` supplies it) and the owner's
component metadata, :func:`build_report` lists each layer of the TCB: what it
is, whether the evidence measures it, whether that measurement matched a
reference value, and what the owner says about the component (open source,
audited, release date). It also says what the evidence does NOT cover, so
nobody mistakes "verified" for "everything below me is trustworthy".

Only facts the claims carry are stated as measured. Where coverage depends on
how the guest was launched (an SNP kernel is in the launch measurement only
with measured direct boot), the report says so, and settles it when the
matching reference value's provenance lists the kernel it was computed from.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from veritee.appraisal.attestation import TEE_BINDINGS, binding_for, claim_at
from veritee.appraisal.provenance import Provenance
from veritee.errors import ConfigError, RequestError

__all__ = [
    "LAYER_KINDS",
    "Component",
    "Finding",
    "Gap",
    "RvInfo",
    "TcbReport",
    "build_report",
    "load_components",
    "reference_info",
]

#: Layer kinds, bottom of the stack first; component metadata names one of these.
LAYER_KINDS: Final[Mapping[str, str]] = {
    "hardware": "Hardware root of trust",
    "platform-tcb": "Platform firmware TCB (versions)",
    "tdx-module": "TDX module (SEAM)",
    "paravisor": "Paravisor",
    "firmware": "Guest firmware",
    "firmware-config": "Firmware configuration",
    "bootloader": "Boot loader",
    "secure-boot": "Secure Boot policy",
    "kernel": "Kernel",
    "initrd": "initrd",
    "cmdline": "Kernel command line",
    "guest-config": "Guest configuration",
    "os-runtime": "OS runtime",
    "workload": "Workload / init-data",
    "identity": "Attestation identity",
    "device": "Device",
}
OLD_AFTER_DAYS: Final = 365


@dataclass(frozen=True)
class RvInfo:
    value: object
    provenance: Provenance | None = None


def reference_info(doc: object, *, now: dt.datetime) -> dict[str, RvInfo]:
    """``{name: value}``, or ``veritee rv list --json`` rows (valid ones, with provenance)."""
    if isinstance(doc, list):
        out: dict[str, RvInfo] = {}
        for n, row in enumerate(doc):
            if not isinstance(row, Mapping) or not isinstance(row.get("name"), str):
                raise RequestError(f"reference value record #{n} has no name")
            if row.get("state", "valid") != "valid":
                continue
            prov = row.get("provenance")
            out[row["name"]] = RvInfo(
                row.get("value"), Provenance.from_json(prov) if prov is not None else None
            )
        return out
    from veritee.appraisal.policytest import reference_from

    return {k: RvInfo(v) for k, v in reference_from(doc, now=now).items()}


@dataclass(frozen=True)
class Component:
    """Owner-supplied facts about one component of the TCB."""

    name: str
    layer: str
    version: str = ""
    open_source: bool | None = None
    audited: bool | None = None
    audited_by: str = ""
    release_date: dt.date | None = None
    url: str = ""
    notes: str = ""

    def age_days(self, now: dt.datetime) -> int | None:
        if self.release_date is None:
            return None
        return (now.date() - self.release_date).days

    def to_json(self, now: dt.datetime) -> dict[str, object]:
        return {
            "name": self.name,
            "layer": self.layer,
            "version": self.version,
            "open_source": self.open_source,
            "audited": self.audited,
            "audited_by": self.audited_by,
            "release_date": self.release_date.isoformat() if self.release_date else None,
            "age_days": self.age_days(now),
            "url": self.url,
            "notes": self.notes,
        }


def _component(doc: object, n: int) -> Component:
    where = f"component #{n}"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where} must be a table/object")
    name, layer = doc.get("name"), doc.get("layer")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} needs a name")
    if layer not in LAYER_KINDS:
        raise ConfigError(
            f"{where} ({name}): layer {layer!r} is not known",
            hint="layers: " + ", ".join(LAYER_KINDS),
        )

    def text(key: str) -> str:
        value = doc.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{where} ({name}): {key} must be a string")
        return value

    def flag(key: str) -> bool | None:
        value = doc.get(key)
        if isinstance(value, bool):
            return value
        if value is None:
            return None
        if value in ("yes", "no"):
            return bool(value == "yes")
        raise ConfigError(f"{where} ({name}): {key} must be true/false (or yes/no)")

    released = doc.get("release_date")
    date: dt.date | None = None
    if isinstance(released, dt.datetime):
        date = released.date()
    elif isinstance(released, dt.date):
        date = released
    elif isinstance(released, str) and released:
        try:
            date = dt.date.fromisoformat(released[:10])
        except ValueError:
            raise ConfigError(f"{where} ({name}): release_date must be YYYY-MM-DD") from None
    elif released is not None:
        raise ConfigError(f"{where} ({name}): release_date must be YYYY-MM-DD")
    return Component(
        name=name,
        layer=str(layer),
        version=text("version"),
        open_source=flag("open_source"),
        audited=flag("audited"),
        audited_by=text("audited_by"),
        release_date=date,
        url=text("url"),
        notes=text("notes"),
    )


def load_components(path: Path) -> tuple[Component, ...]:
    """Component metadata from JSON, TOML or (with PyYAML installed) YAML.

    Shape: a list of components, or ``{"components": [...]}`` (TOML:
    ``[[components]]`` tables). Each: name, layer (see :data:`LAYER_KINDS`),
    version, open_source, audited, audited_by, release_date, url, notes.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    doc: Any
    try:
        if suffix == ".toml":
            doc = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                yaml = importlib.import_module("yaml")
            except ImportError:
                raise ConfigError(
                    f"{path}: YAML needs PyYAML, which is not installed",
                    hint="write the components as JSON or TOML, or pip install pyyaml",
                ) from None
            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid {suffix.lstrip('.') or 'JSON'}: {exc}") from None
    except Exception as exc:  # PyYAML's own error types; the file is the owner's input
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(doc, Mapping):
        doc = doc.get("components", doc.get("component"))
    if not isinstance(doc, list):
        raise ConfigError(f"{path}: expected a list of components (or a 'components' key)")
    return tuple(_component(c, n) for n, c in enumerate(doc))


@dataclass(frozen=True)
class RvCheck:
    name: str
    state: str  # matched | mismatch | missing
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "state": self.state, "detail": self.detail}


@dataclass(frozen=True)
class Finding:
    """One layer of the TCB as this evidence shows it."""

    layer: str
    title: str
    measured: str  # yes | no | unknown
    how: str
    claims: Mapping[str, object]
    references: tuple[RvCheck, ...] = ()
    components: tuple[Component, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        states = {r.state for r in self.references}
        if not states:
            return "none"
        if "mismatch" in states:
            return "mismatch"
        if "missing" in states:
            return "missing" if states == {"missing"} else "partial"
        return "matched"

    def to_json(self, now: dt.datetime) -> dict[str, object]:
        return {
            "layer": self.layer,
            "layer_title": LAYER_KINDS.get(self.layer, self.layer),
            "title": self.title,
            "measured": self.measured,
            "how": self.how,
            "claims": dict(self.claims),
            "reference": self.reference,
            "reference_values": [r.to_json() for r in self.references],
            "components": [c.to_json(now) for c in self.components],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Gap:
    """Something the evidence does not cover, and why that matters."""

    what: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "why": self.why}


@dataclass(frozen=True)
class TcbReport:
    subject: str  # which evidence: tee names
    generated_at: dt.datetime
    simulated: bool
    findings: tuple[Finding, ...]
    not_covered: tuple[Gap, ...]
    unplaced_components: tuple[Component, ...] = field(default=())

    def summary(self) -> dict[str, int]:
        comps = [c for f in self.findings for c in f.components]
        return {
            "layers": len(self.findings),
            "measured": sum(1 for f in self.findings if f.measured == "yes"),
            "matched": sum(1 for f in self.findings if f.reference == "matched"),
            "mismatched": sum(1 for f in self.findings if f.reference == "mismatch"),
            "unchecked": sum(
                1
                for f in self.findings
                if f.measured == "yes" and f.reference in ("missing", "partial")
            ),
            "not_covered": len(self.not_covered),
            "components": len(comps),
            "not_open_source": sum(1 for c in comps if c.open_source is False),
            "not_audited": sum(1 for c in comps if c.audited is False),
            "older_than_a_year": sum(
                1 for c in comps if (c.age_days(self.generated_at) or 0) > OLD_AFTER_DAYS
            ),
        }

    def to_json(self) -> dict[str, object]:
        now = self.generated_at
        return {
            "subject": self.subject,
            "generated_at": now.isoformat(),
            "simulated": self.simulated,
            "summary": self.summary(),
            "layers": [f.to_json(now) for f in self.findings],
            "not_covered": [g.to_json() for g in self.not_covered],
            "unplaced_components": [c.to_json(now) for c in self.unplaced_components],
        }


# --- building -----------------------------------------------------------------------


class _Builder:
    def __init__(
        self,
        doc: Mapping[str, object],
        reference: Mapping[str, RvInfo],
        components: Sequence[Component],
    ) -> None:
        self.doc = doc
        self.reference = reference
        self.components = components
        self.findings: list[Finding] = []
        self.gaps: list[Gap] = []

    def rv(self, name: str) -> RvCheck:
        binding = binding_for(name, self.doc)
        present, claim = claim_at(self.doc, binding) if binding else (False, None)
        info = self.reference.get(name)
        if info is None:
            return RvCheck(name, "missing", "no reference value loaded")
        want = info.value
        hit = claim in want if isinstance(want, list) else claim == want
        source = f" ({info.provenance.summary()})" if info.provenance else ""
        if not present:
            return RvCheck(name, "mismatch", "the evidence has no such claim" + source)
        if hit:
            return RvCheck(name, "matched", f"{_short(claim)} is a reference value{source}")
        return RvCheck(name, "mismatch", f"{_short(claim)} is not among the reference values")

    def add(
        self,
        layer: str,
        title: str,
        measured: str,
        how: str,
        claims: Mapping[str, object],
        rvs: Sequence[str] = (),
        warnings: Sequence[str] = (),
    ) -> None:
        self.findings.append(
            Finding(
                layer=layer,
                title=title,
                measured=measured,
                how=how,
                claims={k: v for k, v in claims.items() if v is not None},
                references=tuple(self.rv(n) for n in rvs),
                components=tuple(c for c in self.components if c.layer == layer),
                warnings=tuple(warnings),
            )
        )

    def gap(self, what: str, why: str) -> None:
        if all(g.what != what for g in self.gaps):
            self.gaps.append(Gap(what, why))

    def artifacts_of(self, name: str) -> set[str]:
        """Artifact names a matched reference value was computed from (lowercase)."""
        info = self.reference.get(name)
        if info is None or info.provenance is None or self.rv(name).state != "matched":
            return set()
        return {a.name.lower() for a in info.provenance.artifacts}


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:36] + "..."


def _get(claims: Mapping[str, object], *path: str) -> object:
    cur: object = claims
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _zero(value: object) -> bool:
    return isinstance(value, str) and bool(value) and set(value) <= {"0"}


# -- AMD SEV-SNP -------------------------------------------------------------------------


def _snp(b: _Builder, tee: str, c: Mapping[str, object], *, azure: bool) -> None:
    key = "VLEK (per cloud provider)" if c.get("signing_key") == "VLEK" else "VCEK (per chip)"
    b.add(
        "hardware",
        f"AMD {c.get('product', '')} secure processor",
        "yes",
        f"the report is signed by the {key} key, chained to AMD's root (ARK) for this product",
        {
            "product": c.get("product"),
            "signing_key": c.get("signing_key"),
            "chip_id": c.get("chip_id"),
        },
    )
    b.add(
        "platform-tcb",
        "AMD SEV-SNP firmware and microcode versions",
        "yes",
        "reported TCB security versions, bound into the signing key's derivation",
        {
            "reported_tcb_bootloader": c.get("reported_tcb_bootloader"),
            "reported_tcb_tee": c.get("reported_tcb_tee"),
            "reported_tcb_snp": c.get("reported_tcb_snp"),
            "reported_tcb_microcode": c.get("reported_tcb_microcode"),
        },
        rvs=("snp_bootloader", "snp_microcode", "snp_snp_svn", "snp_tee_svn"),
    )
    if azure:
        b.add(
            "paravisor",
            "Azure paravisor (HCL) and its UEFI firmware",
            "yes",
            "the launch measurement is of Microsoft's paravisor image, which runs at VMPL0 "
            "beneath the guest and implements its vTPM; owners cannot rebuild that image",
            {"measurement": c.get("measurement"), "vmpl": c.get("vmpl")},
            rvs=("snp_launch_measurement",),
            warnings=("the paravisor is in your TCB and is operated by the cloud provider",),
        )
    else:
        covered = b.artifacts_of("snp_launch_measurement")
        b.add(
            "firmware",
            "Guest firmware (OVMF) and initial vCPU state",
            "yes",
            "the launch measurement covers the initial guest memory (firmware pages) and each "
            "vCPU's VMSA (count and CPU type)",
            {"measurement": c.get("measurement")},
            rvs=("snp_launch_measurement",),
        )
        for layer, title, names in (
            ("kernel", "Kernel", ("kernel", "vmlinuz", "bzimage")),
            ("initrd", "initrd", ("initrd", "initramfs")),
            ("cmdline", "Kernel command line", ("cmdline", "append")),
        ):
            # Artifacts are named by role first ("kernel (vmlinuz-6.1)"), or by file name.
            if any(n in (artifact.split(" ") or [""])[0] for artifact in covered for n in names):
                b.add(
                    layer,
                    title,
                    "yes",
                    "in the launch measurement (SEV hashes table, measured direct boot): the "
                    "matching reference value was computed from it",
                    {},
                    rvs=("snp_launch_measurement",),
                )
            else:
                b.add(
                    layer,
                    title,
                    "unknown",
                    "only in the launch measurement if the VM was started with measured direct "
                    "boot (kernel hashes); the report alone cannot tell. A reference value "
                    "computed with `veritee measure snp --kernel ...` settles it",
                    {},
                )
    debug = c.get("policy_debug_allowed")
    warnings = []
    if debug is not False:
        warnings.append("debugging is allowed: the host can read and change guest memory")
    if c.get("policy_migrate_ma") is not False:
        warnings.append("a migration agent is allowed")
    b.add(
        "guest-config",
        "Guest policy (debug, migration, SMT, ABI)",
        "yes",
        "the guest policy set at launch is in the signed report",
        {
            "policy_debug_allowed": debug,
            "policy_migrate_ma": c.get("policy_migrate_ma"),
            "policy_smt_allowed": c.get("policy_smt_allowed"),
            "policy_abi_major": c.get("policy_abi_major"),
            "policy_abi_minor": c.get("policy_abi_minor"),
            "vmpl": c.get("vmpl"),
        },
        warnings=warnings,
    )
    host_data = c.get("host_data" if azure else "init_data")
    b.add(
        "workload",
        "Init-data (HOST_DATA)",
        "no" if _zero(host_data) else "yes",
        "HOST_DATA is set by the host at launch and signed in the report; veritee checks it "
        "against the init-data the guest sends"
        if not _zero(host_data)
        else "HOST_DATA is zero: no init-data is bound into this launch",
        {"host_data" if azure else "init_data": host_data},
    )
    id_key = c.get("id_key_digest")
    if isinstance(id_key, str) and not _zero(id_key):
        b.add(
            "identity",
            "Launch identity (ID block)",
            "yes",
            "an ID block signed by this key vouched for the launch measurement",
            {"id_key_digest": id_key, "author_key_digest": c.get("author_key_digest")},
        )
    b.gap(
        "The hypervisor, host OS and host firmware (BIOS/UEFI)",
        "SEV-SNP keeps them out of the guest's memory, so they are outside the TCB by design; "
        "they still control scheduling and all I/O, so disk and network contents must be "
        "authenticated by the guest itself",
    )
    b.gap(
        "AMD secure processor firmware and microcode contents",
        "only their security version numbers are attested, not the code; trust in them rests "
        "on AMD's versioning and TCB recovery",
    )
    if not azure:
        b.gap(
            "Everything the guest loads after the firmware (OS, drivers, containers)",
            "the launch measurement stops at what is in memory at launch (plus kernel, initrd "
            "and command line with measured direct boot); later code is covered only by a "
            "vTPM or the workload's own measurements, which this evidence does not carry",
        )
        vmpl = c.get("vmpl")
        if isinstance(vmpl, int) and vmpl > 0:
            b.gap(
                f"The software at VMPL0 beneath this guest (it reports VMPL{vmpl})",
                "a paravisor or SVSM runs with more privilege than this guest and is not "
                "described by this report",
            )


# -- Intel TDX ----------------------------------------------------------------------------


def _tdx(b: _Builder, tee: str, c: Mapping[str, object]) -> None:
    body = _get(c, "quote", "body")
    q: Mapping[str, object] = body if isinstance(body, Mapping) else {}
    status = c.get("tcb_status")
    b.add(
        "hardware",
        "Intel CPU (TDX-capable platform)",
        "yes",
        "the quote is signed by the platform's Quoting Enclave, whose PCK certificate chains "
        "to Intel's SGX root; the platform TCB was evaluated against Intel's TCB info",
        {
            "fmspc": c.get("fmspc"),
            "tcb_status": status,
            "platform_tcb_status": c.get("platform_tcb_status"),
            "advisory_ids": c.get("advisory_ids"),
            "tcb_date": c.get("tcb_date"),
        },
        warnings=() if status in ("UpToDate", None) else (f"Intel TCB status is {status}",),
    )
    b.add(
        "tdx-module",
        "TDX module (SEAM)",
        "yes",
        "MRSEAM identifies the TDX module that isolates the TD; its version is in TEE_TCB_SVN",
        {
            "mr_seam": q.get("mr_seam"),
            "tcb_svn": q.get("tcb_svn"),
            "tdx_module_tcb_status": c.get("tdx_module_tcb_status"),
        },
        rvs=("mr_seam",) if "mr_seam" in b.reference else (),
    )
    b.add(
        "firmware",
        "Guest firmware (TDVF) - MRTD",
        "yes",
        "MRTD measures the firmware pages the host added to the TD before it started",
        {"mr_td": q.get("mr_td")},
        rvs=("mr_td",),
    )
    events = c.get("uefi_event_logs")
    log_note = (
        f"; the CC event log ({len(events)} events) shows what was extended"
        if isinstance(events, list)
        else "; no event log was supplied, so what produced the value is not shown"
    )
    for layer, title, rtmr, what in (
        ("firmware-config", "Firmware configuration", "rtmr_0",
         "TD HOB, ACPI tables and UEFI variables"),
        ("bootloader", "Boot loader and kernel", "rtmr_1",
         "the boot loader and kernel images (EFI applications)"),
        ("cmdline", "Kernel command line and initrd", "rtmr_2",
         "the kernel command line and initrd (as the boot loader measures them)"),
        ("os-runtime", "Runtime measurements", "rtmr_3",
         "whatever the OS or workload extends at runtime"),
    ):
        value = q.get(rtmr)
        unused = _zero(value)
        b.add(
            layer,
            f"{title} ({rtmr.upper().replace('_', '')})",
            "no" if unused else "yes",
            (f"{rtmr.upper().replace('_', '')} was never extended" if unused else f"holds {what}")
            + ("" if unused else log_note),
            {rtmr: value},
            rvs=(rtmr,) if rtmr in ("rtmr_1", "rtmr_2") or rtmr in b.reference else (),
        )
    attrs = c.get("td_attributes")
    debug = _get(attrs, "debug") if isinstance(attrs, Mapping) else None
    b.add(
        "guest-config",
        "TD attributes and CPU features",
        "yes",
        "TD attributes (debug, ...) and XFAM are fixed at TD creation and in the quote",
        {"td_attributes": attrs, "xfam": q.get("xfam")},
        rvs=("xfam",),
        warnings=("the TD runs in debug mode: the host can read it",) if debug is not False else (),
    )
    b.add(
        "workload",
        "Init-data (MRCONFIGID) and owner (MROWNER)",
        "no" if _zero(q.get("mr_config_id")) else "yes",
        "MRCONFIGID holds the init-data digest set by the host at TD creation",
        {"mr_config_id": q.get("mr_config_id"), "mr_owner": q.get("mr_owner")},
    )
    b.gap(
        "The host VMM, hypervisor and host firmware",
        "TDX keeps them out of the TD's memory (outside the TCB by design) but they control "
        "scheduling and I/O, which the guest must authenticate",
    )
    b.gap(
        "CPU microcode, the SEAM loader and Intel's firmware contents",
        "only their security version numbers are attested and judged against Intel's TCB "
        "info; trust in them rests on Intel",
    )
    b.gap(
        "Anything loaded after the last RTMR extension",
        "code that is not measured into an RTMR (or an event log entry) leaves no trace in "
        "this quote",
    )


# -- TPM (physical or vTPM) and the vTPM inside Azure CVMs ---------------------------------


def _tpm_pcrs(
    b: _Builder, pcrs: Mapping[str, object], boot: object, *, pcr11: str = "tpm_pcr11"
) -> None:
    prefix = "tpm_"
    boot_doc: Mapping[str, object] = boot if isinstance(boot, Mapping) else {}
    apps = boot_doc.get("boot_applications")
    app_rows = [
        " ".join(a.get("paths") or ["(no path)"])
        + " sha256:"
        + str(_get(a, "digests", "sha256"))[:16]
        for a in (apps if isinstance(apps, list) else [])
        if isinstance(a, Mapping)
    ]
    has_log = bool(boot_doc)
    how_log = "" if has_log else "; no event log was replayed, so only the final digest is known"
    b.add(
        "firmware",
        "Platform firmware (SRTM, PCR 0)",
        "yes",
        "PCR 0 accumulates the firmware code measured from the core root of trust" + how_log,
        {"pcr00": pcrs.get("pcr00")},
        rvs=(f"{prefix}pcr00",),
    )
    b.add(
        "firmware-config",
        "Firmware configuration and option ROMs (PCR 1-3)",
        "yes",
        "firmware settings (PCR 1) and add-in option ROMs and their data (PCR 2, 3)",
        {"pcr01": pcrs.get("pcr01"), "pcr02": pcrs.get("pcr02"), "pcr03": pcrs.get("pcr03")},
    )
    b.add(
        "bootloader",
        "Boot loader and kernel images (PCR 4)",
        "yes",
        "each EFI application started (shim, grub, a UKI or kernel) is measured by its "
        "Authenticode hash" + how_log,
        {"pcr04": pcrs.get("pcr04"), "boot_applications": app_rows or None},
        rvs=(f"{prefix}pcr04",),
    )
    secure = boot_doc.get("secure_boot")
    b.add(
        "secure-boot",
        "Secure Boot state and keys (PCR 7)",
        "yes",
        "PCR 7 records whether Secure Boot is on and which db authorities verified images",
        {"pcr07": pcrs.get("pcr07"), "secure_boot": secure},
        rvs=(f"{prefix}pcr07",),
        warnings=("Secure Boot is off",) if secure is False else (),
    )
    cmdline = boot_doc.get("kernel_cmdline")
    b.add(
        "cmdline",
        "Kernel command line (PCR 8 when grub measures it)",
        "yes" if cmdline else "unknown",
        "grub measures its commands and the kernel command line into PCR 8; Trustee-style "
        "guests extend their init-data into PCR 8 instead",
        {"pcr08": pcrs.get("pcr08"), "kernel_cmdline": cmdline},
        rvs=(f"{prefix}pcr08",) if f"{prefix}pcr08" in b.reference else (),
    )
    b.add(
        "initrd",
        "Files grub loads: kernel and initrd (PCR 9)",
        "unknown" if _zero(pcrs.get("pcr09")) else "yes",
        "grub measures each file it reads into PCR 9; a UKI carries its initrd in PCR 4/11",
        {"pcr09": pcrs.get("pcr09")},
        rvs=(f"{prefix}pcr09",) if f"{prefix}pcr09" in b.reference else (),
    )
    b.add(
        "workload",
        "Unified kernel image / workload (PCR 11)",
        "no" if _zero(pcrs.get("pcr11")) else "yes",
        "systemd-stub measures the UKI sections into PCR 11; workloads may extend it",
        {"pcr11": pcrs.get("pcr11")},
        rvs=(pcr11,),
    )


def _tpm(b: _Builder, tee: str, c: Mapping[str, object]) -> None:
    b.add(
        "identity",
        "TPM and its attestation key",
        "yes",
        "the quote is signed by this attestation key; the key is trusted only if the owner "
        "listed it (reference value trusted_aks) or it chains to the TPM vendor's CA",
        {
            "ak_public_sha256": c.get("ak_public_sha256"),
            "signature": c.get("signature"),
            "firmware_version": c.get("firmware_version"),
        },
        rvs=("trusted_aks",),
    )
    _tpm_pcrs(b, c, c.get("boot"))
    ima = c.get("ima")
    b.add(
        "os-runtime",
        "Files executed at runtime (IMA, PCR 10)",
        "yes" if isinstance(ima, Mapping) else "unknown",
        "the kernel's IMA list records files as they are opened; it was replayed against PCR 10"
        if isinstance(ima, Mapping)
        else "no IMA list was supplied: PCR 10 alone does not say which files ran",
        {"pcr10": c.get("pcr10")},
    )
    b.gap(
        "Memory confidentiality and integrity at runtime",
        "a TPM quote proves what booted, not that the host (or, for a cloud vTPM, the "
        "hypervisor) cannot read or change the machine's memory afterwards",
    )
    b.gap(
        "Firmware that does not measure itself",
        "the BMC, embedded controller, CPU microcode updates and management engines are not "
        "in the PCRs unless the platform firmware measures them",
    )
    if c.get("nonce_checked") is False:
        b.gap(
            "Freshness of this quote",
            "no nonce was checked, so this could be a replay of an older quote",
        )


def _azure(b: _Builder, tee: str, c: Mapping[str, object]) -> None:
    if tee == "az-snp-vtpm":
        _snp(b, tee, c, azure=True)
    else:
        _tdx(b, tee, c)
        b.add(
            "paravisor",
            "Azure paravisor (TD partitioning / HCL)",
            "yes",
            "the paravisor runs beneath the guest and implements its vTPM; its image is "
            "Microsoft's and is in MRTD/RTMRs, which owners cannot rebuild",
            {},
            warnings=("the paravisor is in your TCB and is operated by the cloud provider",),
        )
    tpm = c.get("tpm")
    if isinstance(tpm, Mapping):
        _tpm_pcrs(b, tpm, None, pcr11="snp_pcr11" if tee == "az-snp-vtpm" else "tdx_pcr11")
    b.gap(
        "The Azure paravisor (HCL) beyond its launch measurement",
        "it runs with more privilege than the guest and implements the vTPM whose PCRs this "
        "report relies on; its source and builds are Microsoft's, not reproducible by you",
    )
    b.gap(
        "Guest boot components without an event log",
        "the vTPM PCRs are final digests: without the guest's event log the images behind "
        "them are not shown",
    )


def _nvidia(b: _Builder, tee: str, c: Mapping[str, object]) -> None:
    config = c.get("config")
    cfg: Mapping[str, object] = config if isinstance(config, Mapping) else {}
    b.add(
        "device",
        f"NVIDIA {c.get('arch', 'GPU')} {c.get('uuid') or ''}".strip(),
        "yes",
        "the SPDM measurement report is signed by the device key (chained to NVIDIA's device "
        "root); its measurements were compared with NVIDIA's signed RIMs",
        {
            "vbios_version": cfg.get("vbios_version"),
            "driver_version": cfg.get("driver_version"),
            "vbios_rim": c.get("vbios_rim"),
            "driver_rim": c.get("driver_rim"),
        },
        rvs=("nvidia_driver_version", "nvidia_vbios_version"),
    )
    b.gap(
        "GPU firmware contents beyond the RIM",
        "measurements are compared with NVIDIA's reference manifests; the firmware itself is "
        "closed and trusted on NVIDIA's word",
    )


def _generic(b: _Builder, tee: str, c: Mapping[str, object]) -> None:
    bound = TEE_BINDINGS.get(tee, {})
    b.add(
        "hardware",
        f"{tee} evidence",
        "yes",
        "veritee has no layer model for this evidence type: its claims are listed, and no "
        "statement is made about what they cover",
        {k: v for k, v in list(c.items())[:12]},
        rvs=tuple(bound),
    )
    b.gap(f"The TCB structure of {tee} evidence", "not modelled by this report")


_MODELS = {
    "snp": lambda b, t, c: _snp(b, t, c, azure=False),
    "tdx": _tdx,
    "tpm": _tpm,
    "az-snp-vtpm": _azure,
    "az-tdx-vtpm": _azure,
    "nvidia": _nvidia,
}


def build_report(
    evidence: Sequence[tuple[str, Mapping[str, object]]],
    reference: Mapping[str, RvInfo],
    components: Sequence[Component],
    *,
    now: dt.datetime,
) -> TcbReport:
    """The TCB of each (tee, claims) pair, in one report (a CPU TEE and its devices)."""
    if not evidence:
        raise RequestError("no evidence to report on")
    findings: list[Finding] = []
    gaps: list[Gap] = []
    simulated = False
    for tee, claims in evidence:
        b = _Builder({tee: claims}, reference, components)
        _MODELS.get(tee, _generic)(b, tee, claims)
        findings.extend(b.findings)
        gaps.extend(g for g in b.gaps if g not in gaps)
        simulated = simulated or claims.get("simulated") is True
    if simulated:
        gaps.insert(
            0,
            Gap(
                "Real hardware",
                "this evidence comes from a veritee SIMULATOR signed by a local test root: "
                "nothing here says anything about real hardware",
            ),
        )
    placed = {c.layer for f in findings for c in f.components}
    return TcbReport(
        subject=" + ".join(t for t, _ in evidence),
        generated_at=now,
        simulated=simulated,
        findings=tuple(findings),
        not_covered=tuple(gaps),
        unplaced_components=tuple(c for c in components if c.layer not in placed),
    )


def evidence_from(doc: object, tee: str | None = None) -> list[tuple[str, Mapping[str, object]]]:
    """(tee, claims) pairs from verify output, a KBS policy input or decoded EAR claims.

    EAR claims yield every submod (cpu0 and its devices) so a composite
    attestation is reported whole.
    """
    from veritee.appraisal.policytest import policy_input

    if isinstance(doc, Mapping) and isinstance(doc.get("submods"), Mapping):
        out: list[tuple[str, Mapping[str, object]]] = []
        for name in sorted(doc["submods"], key=lambda n: (n != "cpu0", n)):
            sub = doc["submods"][name]
            annotated = (
                sub.get("ear.veraison.annotated-evidence") if isinstance(sub, Mapping) else None
            )
            if isinstance(annotated, Mapping):
                pinput = policy_input(annotated, tee if name == "cpu0" else None)
                out.append((pinput.tee, pinput.claims))
        if not out:
            raise RequestError("the token claims carry no annotated evidence")
        return out
    pinput = policy_input(doc, tee)
    return [(pinput.tee, pinput.claims)]
