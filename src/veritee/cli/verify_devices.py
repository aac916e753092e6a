"""``veritee verify nitro`` and ``veritee verify nvidia``: enclave and device evidence.

Both are fully offline: a Nitro document carries its own certificate chain, and
an NVIDIA report comes with the device chain the driver returned; the vendor
roots are pinned by fingerprint. Output and exit codes are those of every
``veritee verify`` command.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from veritee.cli import output
from veritee.cli.verify import app
from veritee.clock import parse_instant, utcnow
from veritee.errors import ConfigError
from veritee.pki.certs import load_certificate, load_certificates
from veritee.tee.nitro.claims import NitroClaims
from veritee.tee.nitro.document import NitroDocument, decode_document_blob
from veritee.tee.nitro.verify import NitroRoots, document_from_certificate, verify_document
from veritee.tee.nvidia.claims import NvidiaClaims
from veritee.tee.nvidia.evidence import decode_device_evidence
from veritee.tee.nvidia.report import NvidiaReport
from veritee.tee.nvidia.rim import Rim
from veritee.tee.nvidia.verify import NvidiaRoots, VerifiedRim, verify_report, verify_rim

AtOpt = Annotated[str | None, typer.Option(help="Verification time, ISO-8601 (default: now).")]
TrustRootOpt = Annotated[
    Path | None, typer.Option(help="Also trust this root (lab or simulator), PEM or DER.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _hex(value: str | None, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value.strip().removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"{what} must be hex, got {value!r}") from None


def _show(
    tee: str, title: str, claims: dict[str, object], json_out: bool, simulated: bool, summary: str
) -> None:
    if json_out:
        output.print_json({"tee": tee, "claims": claims})
        return
    if simulated:
        output.err.print("[bold yellow]warning:[/] verified against a SIMULATOR root")
    output.out.print(output.claims_table(title, claims))  # type: ignore[arg-type]
    output.out.print(summary)


@app.command("nitro")
def verify_nitro(
    doc: Annotated[
        Path,
        typer.Argument(
            help="Attestation document: raw COSE_Sign1, base64 text, or a TLS certificate "
            "(PEM/DER) carrying it in its subjectAltName."
        ),
    ],
    at: AtOpt = None,
    nonce: Annotated[str | None, typer.Option(help="Expected nonce (hex).")] = None,
    trust_root: TrustRootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify an AWS Nitro Enclaves attestation document against the AWS Nitro root."""
    now = parse_instant(at) if at else utcnow()
    expected_nonce = _hex(nonce, "--nonce")
    raw = _read(doc, "document")
    tls_key = None
    if b"-----BEGIN CERTIFICATE-----" in raw or raw[:2] == b"\x30\x82":
        carried = document_from_certificate(raw)
        blob, tls_key = carried.document, carried.tls_public_key
    else:
        blob = decode_document_blob(raw)
    parsed = NitroDocument.from_bytes(blob)
    roots = NitroRoots()
    if trust_root is not None:
        roots = roots.with_root(
            load_certificate(_read(trust_root, "trust root"), what="--trust-root")
        )
    # A certificate carrying the document binds its key: user_data is its SubjectPublicKeyInfo.
    verified = verify_document(
        parsed, roots, now, expected_nonce=expected_nonce, expected_user_data=tls_key
    )
    claims = NitroClaims.from_verified(verified).to_json()
    _show(
        "nitro",
        "AWS Nitro Enclaves claims",
        dict(claims),
        json_out,
        verified.simulated,
        f"[bold green]verified[/]: enclave {verified.attestation.module_id}, chain to "
        f"{verified.chain.root.subject.rfc4514_string()} at {now.isoformat()}"
        + (", TLS key bound" if tls_key is not None else ""),
    )


def _rim(path: Path | None, roots: NvidiaRoots, now: dt.datetime, what: str) -> VerifiedRim | None:
    if path is None:
        return None
    return verify_rim(Rim.from_bytes(_read(path, what)), roots, now)


@app.command("nvidia")
def verify_nvidia(
    report: Annotated[
        Path,
        typer.Argument(
            help="SPDM report (request || response): raw, hex or base64 text, or device "
            "evidence JSON (nvtrust PPCIe list or Trustee device_evidence_list)."
        ),
    ],
    cert_chain: Annotated[
        Path | None,
        typer.Option(
            help="Device certificate chain, PEM, leaf first (optional for JSON "
            "evidence that carries it)."
        ),
    ] = None,
    nonce: Annotated[
        str | None, typer.Option(help="Expected SPDM requester nonce (hex, 32 bytes).")
    ] = None,
    at: AtOpt = None,
    trust_root: TrustRootOpt = None,
    driver_rim: Annotated[Path | None, typer.Option(help="Driver RIM (signed SWID XML).")] = None,
    vbios_rim: Annotated[Path | None, typer.Option(help="VBIOS RIM (signed SWID XML).")] = None,
    rim_trust_root: Annotated[
        Path | None, typer.Option(help="Also trust this RIM signing root (lab or simulator).")
    ] = None,
    device: Annotated[int, typer.Option(help="Which device of a JSON evidence list.")] = 0,
    uuid: Annotated[
        str | None, typer.Option(help="Device UUID to report as the uuid claim.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify an NVIDIA Hopper GPU or LS10 NVSwitch SPDM measurement report."""
    now = parse_instant(at) if at else utcnow()
    expected_nonce = _hex(nonce, "--nonce")
    devices = decode_device_evidence(_read(report, "report"))
    if not 0 <= device < len(devices):
        raise ConfigError(f"--device {device}: the evidence holds {len(devices)} device(s)")
    evidence = devices[device]
    chain_pem = _read(cert_chain, "certificate chain") if cert_chain else evidence.cert_chain
    if chain_pem is None:
        raise ConfigError("the report needs its device certificate chain: pass --cert-chain FILE")
    chain = load_certificates(chain_pem, what="device certificate chain")
    parsed = NvidiaReport.from_bytes(evidence.report)
    roots = NvidiaRoots.device()
    if trust_root is not None:
        roots = roots.with_root(
            load_certificate(_read(trust_root, "trust root"), what="--trust-root")
        )
    rim_roots = NvidiaRoots.rim()
    if rim_trust_root is not None:
        rim_roots = rim_roots.with_root(
            load_certificate(_read(rim_trust_root, "RIM trust root"), what="--rim-trust-root")
        )
    verified = verify_report(
        parsed,
        chain,
        roots,
        now,
        expected_nonce=expected_nonce,
        stated_arch=evidence.arch,
        driver_rim=_rim(driver_rim, rim_roots, now, "driver RIM"),
        vbios_rim=_rim(vbios_rim, rim_roots, now, "VBIOS RIM"),
    )
    claims = NvidiaClaims.from_verified(verified, uuid=uuid or evidence.uuid).to_json()
    rims = [r.rim.tag_id for r in (verified.driver_rim, verified.vbios_rim) if r is not None]
    _show(
        "nvidia",
        "NVIDIA device claims",
        dict(claims),
        json_out,
        verified.simulated,
        f"[bold green]verified[/]: {verified.device.value} device, chain to "
        f"{verified.chain.root.subject.rfc4514_string()} at {now.isoformat()}"
        + (f", measurements match {', '.join(rims)}" if rims else ", no RIM compared"),
    )
