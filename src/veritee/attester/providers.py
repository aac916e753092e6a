"""Evidence providers: produce the KBS ``primary_evidence`` JSON for given report data."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import threading
from pathlib import Path
from typing import Protocol

from veritee.errors import ConfigError, EvidenceFormatError
from veritee.tee.snp.certtable import GUID_ARK, GUID_ASK, GUID_VCEK, CertEntry, CertTable
from veritee.tee.snp.evidence import decode_report_blob
from veritee.tee.snp.kbs import build_evidence
from veritee.tee.snp.report import REPORT_SIZE, SnpReport
from veritee.tee.snp.sim import DEFAULT_POLICY, SimulatedSnpPlatform


class EvidenceProvider(Protocol):
    @property
    def tee(self) -> str: ...

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object: ...


class SimulatedSnpProvider:
    """A simulated SNP guest. Its cert_chain carries VCEK, ASK and the simulator ARK."""

    tee = "snp"

    def __init__(
        self,
        platform: SimulatedSnpPlatform,
        *,
        measurement: bytes | None = None,
        policy: int = DEFAULT_POLICY,
        host_data: bytes = bytes(32),
    ) -> None:
        self.platform = platform
        self.measurement = measurement if measurement is not None else secrets.token_bytes(48)
        self.policy = policy
        self.host_data = host_data

    def report(self, report_data: bytes, *, host_data: bytes | None = None) -> SnpReport:
        return self.platform.report(
            report_data=report_data,
            measurement=self.measurement,
            policy=self.policy,
            host_data=(host_data if host_data is not None else self.host_data).ljust(32, b"\0")[
                :32
            ],
        )

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
        p = self.platform
        table = CertTable(
            (
                CertEntry(GUID_VCEK, p.vcek_der()),
                CertEntry(GUID_ASK, _der(p.ask)),
                CertEntry(GUID_ARK, _der(p.ark)),
            )
        )
        return build_evidence(self.report(report_data, host_data=host_data), table)


class SimulatedAzureProvider:
    """A simulated Azure SEV-SNP CVM (``az-snp-vtpm``): HCL report + vTPM quote.

    The KBS client hands providers the runtime-data digest zero-padded to 64 bytes; an
    Azure guest's vTPM quote carries the digest itself, so the first ``nonce_size``
    bytes are used (48: SHA-384, the KBS default). Init-data is measured into PCR 8
    once, at "boot" (``init_data_digest``), not per request: ``host_data`` is ignored.
    The evidence is the v0 form whose ``vcek`` PEM also carries the ASK and the
    simulator's ARK, which a server trusts only when told to trust simulators.
    """

    tee = "az-snp-vtpm"

    def __init__(
        self,
        cvm: object,
        *,
        nonce_size: int = 48,
        init_data_digest: bytes | None = None,
    ) -> None:
        from veritee.tee.azure.sim import SimulatedAzureSnpCvm

        if not isinstance(cvm, SimulatedAzureSnpCvm):
            raise TypeError("SimulatedAzureProvider needs a SimulatedAzureSnpCvm")
        if not 1 <= nonce_size <= 64:
            raise ValueError("nonce_size must be 1..64 bytes")
        self.cvm = cvm
        self.nonce_size = nonce_size
        if init_data_digest is not None:
            cvm.vtpm.measure_init_data(init_data_digest)

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
        return self.cvm.evidence(
            report_data[: self.nonce_size], version=0, with_chain=True
        ).to_json()


def _der(cert: object) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import Certificate

    assert isinstance(cert, Certificate)
    return cert.public_bytes(Encoding.DER)


# -- real hardware ---------------------------------------------------------------------------

SEV_GUEST_DEVICE = Path("/dev/sev-guest")
_SNP_GET_REPORT = 0xC0205300  # _IOWR('S', 0x0, struct snp_guest_request_ioctl) on x86_64


class _ReportReq(ctypes.Structure):
    _fields_ = [
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    ]


class _ReportResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class _GuestRequest(ctypes.Structure):
    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    ]


class SevGuestDeviceProvider:
    """SNP report through the Linux ``/dev/sev-guest`` ioctl (SNP_GET_REPORT)."""

    tee = "snp"

    def __init__(self, device: Path = SEV_GUEST_DEVICE, vmpl: int = 0) -> None:
        self.device = device
        self.vmpl = vmpl

    def raw_report(self, report_data: bytes) -> bytes:
        if not self.device.exists():
            raise ConfigError(
                f"{self.device} does not exist: not an SEV-SNP guest (or sev-guest not loaded)",
                hint="run inside an SNP guest, or use the simulator (--tee snp-sim)",
            )
        req = _ReportReq()
        ctypes.memmove(req.user_data, report_data.ljust(64, b"\0")[:64], 64)
        req.vmpl = self.vmpl
        resp = _ReportResp()
        guest = _GuestRequest(1, ctypes.addressof(req), ctypes.addressof(resp), 0)
        fd = os.open(self.device, os.O_RDWR)
        try:
            fcntl.ioctl(fd, _SNP_GET_REPORT, guest)
        except OSError as exc:
            raise ConfigError(
                f"SNP_GET_REPORT failed: {exc.strerror} (firmware error {guest.exitinfo2:#x})"
            ) from None
        finally:
            os.close(fd)
        data = bytes(resp.data)
        status = int.from_bytes(data[0:4], "little")
        size = int.from_bytes(data[4:8], "little")
        if status != 0 or size != REPORT_SIZE:
            raise EvidenceFormatError(f"firmware returned status {status}, report size {size}")
        return data[32 : 32 + REPORT_SIZE]

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
        report = SnpReport.from_bytes(self.raw_report(report_data))
        return build_evidence(report, None)


CONFIGFS_TSM = Path("/sys/kernel/config/tsm/report")
_tsm_lock = threading.Lock()


class ConfigfsTsmProvider:
    """SNP report through the kernel's configfs-tsm interface (Linux 6.7+).

    Writing ``inblob`` and reading ``outblob`` in a report entry asks the
    firmware for a report; ``auxblob`` carries the certificate table.
    """

    tee = "snp"

    def __init__(self, root: Path = CONFIGFS_TSM, entry: str | None = None) -> None:
        self.root = root
        self.entry = entry

    def raw(self, report_data: bytes) -> tuple[bytes, bytes]:
        if not self.root.is_dir():
            raise ConfigError(
                f"{self.root} does not exist: configfs-tsm is not available here",
                hint="mount configfs and use Linux 6.7+, or use the simulator (--tee snp-sim)",
            )
        with _tsm_lock:
            entry = self.root / (self.entry or f"veritee-{os.getpid()}")
            created = not entry.exists()
            if created:
                entry.mkdir()
            try:
                provider = (
                    (entry / "provider").read_text().strip()
                    if (entry / "provider").exists()
                    else ""
                )
                if provider and provider != "sev_guest":
                    raise ConfigError(f"configfs-tsm provider is {provider!r}, not sev_guest")
                (entry / "inblob").write_bytes(report_data.ljust(64, b"\0")[:64])
                out = (entry / "outblob").read_bytes()
                aux_file = entry / "auxblob"
                aux = aux_file.read_bytes() if aux_file.exists() else b""
            finally:
                if created and self.entry is None:
                    with contextlib.suppress(OSError):
                        entry.rmdir()
        return out, aux

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
        out, aux = self.raw(report_data)
        raw, _ = decode_report_blob(out[:REPORT_SIZE])
        table = CertTable.from_bytes(aux) if aux.strip(b"\0") else None
        return build_evidence(SnpReport.from_bytes(raw), table)


class SimulatedTdxProvider:
    """A simulated TDX guest: KBS ``tdx`` evidence ``{"quote", "cc_eventlog"}``."""

    tee = "tdx"

    def __init__(self, platform: object, *, mr_td: bytes | None = None) -> None:
        from veritee.tee.tdx.sim import SimulatedTdxPlatform

        if not isinstance(platform, SimulatedTdxPlatform):
            raise TypeError("SimulatedTdxProvider needs a SimulatedTdxPlatform")
        self.platform = platform
        self.mr_td = mr_td

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
        import base64

        report = self.platform.report(report_data=report_data, mr_td=self.mr_td)
        if host_data is not None:
            from dataclasses import replace

            report = replace(report, mr_config_id=host_data.ljust(48, b"\0")[:48])
        quote = self.platform.quote(report)
        return {"quote": base64.b64encode(quote.to_bytes()).decode(), "cc_eventlog": None}


class TpmProvider:
    """KBS ``tpm`` evidence from a TPM (device or swtpm) through tpm2-tools."""

    tee = "tpm"

    def __init__(self, attester: object) -> None:
        from veritee.attester.tpm import TpmAttester

        if not isinstance(attester, TpmAttester):
            raise TypeError("TpmProvider needs a TpmAttester")
        self.attester = attester

    def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
        if host_data is not None:
            # init-data is bound by extending its digest into PCR 8 before quoting.
            self.attester.extend(8, [("sha256", host_data[:32].ljust(32, b"\0"))])
        return self.attester.evidence(report_data).to_json()


class DeviceProvider(Protocol):
    """A device attester (GPU, switch): evidence items for a device digest."""

    @property
    def tee(self) -> str: ...

    def device_evidence(self, device_digest: bytes) -> dict[str, object]: ...


class SimulatedNvidiaProvider:
    """A simulated NVIDIA GPU: one ``device_evidence_list`` item as guest-components sends it."""

    tee = "nvidia"

    def __init__(self, device: object, uuid: str) -> None:
        from veritee.tee.nvidia.sim import SimulatedNvidiaDevice

        if not isinstance(device, SimulatedNvidiaDevice):
            raise TypeError("SimulatedNvidiaProvider needs a SimulatedNvidiaDevice")
        self.device = device
        self.uuid = uuid

    def device_evidence(self, device_digest: bytes) -> dict[str, object]:
        import base64

        from veritee.tee.nvidia.report import NONCE_SIZE

        nonce = device_digest[:NONCE_SIZE].ljust(NONCE_SIZE, b"\0")
        report = self.device.report(nonce)
        return {
            "arch": self.device.arch.upper(),
            "uuid": self.uuid,
            "evidence": base64.b64encode(report.to_bytes()).decode(),
            "certificate": base64.b64encode(self.device.chain_pem()).decode(),
        }
