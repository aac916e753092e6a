"""Gather SNP collateral (all I/O happens here, before pure verification).

Sources, in order: an explicit VEK file, the certificate table carried with the
evidence, local directories (``--certs``, ``--collateral``), and, only when
the caller passes a fetcher, AMD KDS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.x509 import Certificate, CertificateRevocationList

from veritee.collateral import Fetcher, amd_kds
from veritee.errors import CollateralUnavailableError, EvidenceFormatError, VeriteeError
from veritee.pki.certs import common_name, fingerprint, load_certificates, load_crls
from veritee.tee.snp.certtable import GUID_ARK, GUID_ASK, GUID_VCEK, GUID_VLEK, CertTable
from veritee.tee.snp.report import Product, SigningKey, SnpReport
from veritee.tee.snp.verify import PINNED_ARK_FINGERPRINTS, SnpCollateral, parse_vek_extensions

MAX_DIR_FILES = 2000
MAX_FILE_BYTES = 1 << 20
_SUFFIXES = {".pem", ".der", ".cer", ".crt", ".crl", ""}


@dataclass(frozen=True)
class CertPool:
    certs: tuple[Certificate, ...]
    crls: tuple[CertificateRevocationList, ...]


@dataclass(frozen=True)
class SnpSources:
    vek_file: Path | None = None
    directories: tuple[Path, ...] = ()
    cert_table: CertTable | None = None
    fetcher: Fetcher | None = None
    kds_base: str | None = None
    preloaded: CertPool | None = None  # e.g. a service's collateral, loaded once at start


def load_directory(path: Path) -> CertPool:
    """Every certificate and CRL under ``path`` (any layout, PEM or DER)."""
    if not path.is_dir():
        raise CollateralUnavailableError(f"collateral directory {path} does not exist")
    certs: list[Certificate] = []
    crls: list[CertificateRevocationList] = []
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if len(files) > MAX_DIR_FILES:
        raise CollateralUnavailableError(f"{path} holds more than {MAX_DIR_FILES} files")
    for file in files:
        if file.suffix.lower() not in _SUFFIXES or file.stat().st_size > MAX_FILE_BYTES:
            continue
        data = file.read_bytes()
        if file.suffix.lower() == ".crl" or b"X509 CRL" in data or file.name == "crl":
            try:
                crls.extend(load_crls(data, what=str(file)))
                continue
            except EvidenceFormatError:
                pass
        try:
            certs.extend(load_certificates(data, what=str(file)))
        except EvidenceFormatError:
            try:
                crls.extend(load_crls(data, what=str(file)))
            except EvidenceFormatError:
                continue  # not PKI material; directories may hold other files
    return CertPool(tuple(certs), tuple(crls))


def _dedupe(certs: Iterable[Certificate]) -> tuple[Certificate, ...]:
    seen: dict[str, Certificate] = {}
    for c in certs:
        seen.setdefault(fingerprint(c), c)
    return tuple(seen.values())


def _vek_matches(cert: Certificate, report: SnpReport, kind: SigningKey) -> bool:
    if common_name(cert.subject) != f"SEV-{kind.name}":
        return False
    try:
        info = parse_vek_extensions(cert)
    except VeriteeError:
        return False
    if any(info.tcb.get(k) != v for k, v in report.reported_tcb.spls().items()):
        return False
    if kind is SigningKey.VCEK and not report.key_info.mask_chip_key and info.hwid is not None:
        return report.chip_id[: len(info.hwid)] == info.hwid
    return True


def _candidate_products(report: SnpReport) -> list[Product]:
    stated = report.product
    return [stated] if stated is not None else [Product.MILAN, Product.GENOA]


def gather_collateral(report: SnpReport, sources: SnpSources) -> SnpCollateral:
    kind = report.key_info.signing_key
    pool: list[Certificate] = []
    crls: list[CertificateRevocationList] = []
    origin: list[str] = []

    vek: Certificate | None = None
    if sources.vek_file is not None:
        try:
            data = sources.vek_file.read_bytes()
        except OSError as exc:
            raise CollateralUnavailableError(f"cannot read {sources.vek_file}: {exc}") from exc
        loaded = load_certificates(data, what=str(sources.vek_file))
        vek, pool = loaded[0], loaded[1:]
        origin.append(f"file:{sources.vek_file}")

    table = sources.cert_table
    if table is not None:
        for guid in (GUID_ASK, GUID_ARK):
            blob = table.get(guid)
            if blob:
                pool.extend(load_certificates(blob, what="certificate table"))
        guid = GUID_VLEK if kind is SigningKey.VLEK else GUID_VCEK
        blob = table.get(guid)
        if vek is None and blob:
            vek = load_certificates(blob, what="certificate table")[0]
            origin.append("evidence certificate table")

    if sources.preloaded is not None:
        pool.extend(sources.preloaded.certs)
        crls.extend(sources.preloaded.crls)
        origin.append("preloaded collateral")

    for directory in sources.directories:
        loaded_pool = load_directory(directory)
        pool.extend(loaded_pool.certs)
        crls.extend(loaded_pool.crls)
        origin.append(f"dir:{directory}")

    if vek is None:
        for cert in pool:
            if _vek_matches(cert, report, kind):
                vek = cert
                break

    fetcher = sources.fetcher
    if vek is None and fetcher is not None and kind is SigningKey.VCEK:
        vek = _fetch_vcek(report, fetcher, sources.kds_base)
        origin.append("AMD KDS")

    if vek is None:
        hint = (
            "pass --vcek FILE, --certs DIR or --collateral DIR with it, or --fetch to get it "
            "from AMD KDS"
            if kind is SigningKey.VCEK
            else "pass --vcek FILE with the VLEK (KDS serves VLEKs only to cloud providers)"
        )
        raise CollateralUnavailableError(
            f"no {kind.name} certificate for this report "
            f"(chip {report.chip_id[:8].hex()}..., reported TCB {report.reported_tcb.hex()})",
            hint=hint,
        )

    product = _product_of(vek)
    have_root = (
        any(fingerprint(c) == PINNED_ARK_FINGERPRINTS.get(product) for c in pool)
        if product
        else False
    )
    if fetcher is not None and product is not None:
        key: Literal["vcek", "vlek"] = "vlek" if kind is SigningKey.VLEK else "vcek"
        if not have_root:
            resp = fetcher.fetch(amd_kds.cert_chain_request(product.value, key, **_base(sources)))
            pool.extend(load_certificates(resp.body, what="KDS cert_chain"))
        # Fetching was asked for, so a missing CRL fails closed rather than skipping revocation.
        resp = fetcher.fetch(amd_kds.crl_request(product.value, key, **_base(sources)))
        crls.extend(load_crls(resp.body, what="KDS CRL"))
    return SnpCollateral(
        vek=vek,
        intermediates=_dedupe(pool),
        crls=tuple(crls),
        source=", ".join(origin),
    )


def _base(sources: SnpSources) -> dict[str, str]:
    return {"base": sources.kds_base} if sources.kds_base else {}


def _product_of(vek: Certificate) -> Product | None:
    try:
        name = parse_vek_extensions(vek).product_name
        return Product.from_name(name) if name else None
    except (VeriteeError, ValueError):
        return None


def _fetch_vcek(report: SnpReport, fetcher: Fetcher, base: str | None) -> Certificate:
    errors: list[str] = []
    tcb = report.reported_tcb
    for product in _candidate_products(report):
        hwid = report.chip_id[:8] if product is Product.TURIN else report.chip_id
        req = amd_kds.vcek_request(
            product.value,
            hwid,
            bl=tcb.bootloader,
            tee=tcb.tee,
            snp=tcb.snp,
            ucode=tcb.microcode,
            fmc=tcb.fmc,
            **({"base": base} if base else {}),
        )
        try:
            resp = fetcher.fetch(req)
        except CollateralUnavailableError as exc:
            errors.append(str(exc))
            continue
        return load_certificates(resp.body, what="VCEK from KDS")[0]
    raise CollateralUnavailableError("could not fetch the VCEK: " + "; ".join(errors))
