"""Gather DCAP collateral (all I/O happens here, before pure verification).

Sources, in order: offline directories (``--collateral DIR``, any number), then,
only when the caller passes a fetcher, Intel PCS or a PCCS. Two offline layouts
are found in the wild and both are accepted, in any mix and nesting:

* separate files as Intel PCS serves them: TCB info and QE identity bodies
  (``{"tcbInfo": ..., "signature": ...}``, ``{"enclaveIdentity": ...}``), PCK and
  Root CA CRLs (DER, PEM or hex), issuer chains as PEM files; a mirror of PCS
  URL paths (``tdx/certification/v4/tcb/fmspc=<FMSPC>.json``...) is one of these;
* one ``collateral.json`` in dcap-qvl's ``QuoteCollateralV3`` shape (exact signed
  ``tcb_info``/``qe_identity`` strings, hex signatures and CRLs, PEM chains).

Files are recognized by content, not by name. Sources never judge what they
return; choosing among several candidates only reads which FMSPC, TEE or CA an
item is for (the first directory that has a match wins).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.x509 import Certificate, CertificateRevocationList, Name

from veritee.collateral import Fetcher, intel_pcs
from veritee.errors import CollateralUnavailableError, EvidenceFormatError
from veritee.pki.certs import fingerprint, load_certificates, load_crls
from veritee.tee.dcap.quote import TeeType
from veritee.tee.dcap.tcbinfo import (
    DocKind,
    QeIdentity,
    SignedDocument,
    TcbInfo,
    signature_bytes,
    split_signed,
)
from veritee.tee.dcap.verify import DcapCollateral, VerifiedQuoteSignature, touch_certificate

MAX_DIR_FILES = 2000
MAX_FILE_BYTES = 2 << 20
_SUFFIXES = {".json", ".pem", ".der", ".crl", ".cer", ".crt", ".hex", ".txt", ""}
_HEX_TEXT = re.compile(rb"^[0-9a-fA-F\s]+$")


@dataclass(frozen=True)
class DcapSources:
    directories: tuple[Path, ...] = ()
    fetcher: Fetcher | None = None
    pcs_base: str | None = None


@dataclass
class CollateralPool:
    """Every DCAP collateral item found in one source."""

    tcb_infos: list[tuple[SignedDocument, TcbInfo]] = field(default_factory=list)
    qe_identities: list[tuple[SignedDocument, QeIdentity]] = field(default_factory=list)
    crls: list[CertificateRevocationList] = field(default_factory=list)
    certs: list[Certificate] = field(default_factory=list)
    origin: str = ""

    def add_document(self, doc: SignedDocument) -> None:
        try:
            if doc.kind == "tcbInfo":
                self.tcb_infos.append((doc, TcbInfo.from_signed(doc.signed_bytes)))
            else:
                self.qe_identities.append((doc, QeIdentity.from_signed(doc.signed_bytes)))
        except EvidenceFormatError:
            pass  # not a document we can use; verification would refuse it anyway


def _crls_any(data: bytes, what: str) -> list[CertificateRevocationList]:
    body = data
    compact = b"".join(data.split())
    if compact and _HEX_TEXT.match(data) and len(compact) % 2 == 0:
        body = bytes.fromhex(compact.decode("ascii"))
    return load_crls(body, what=what)


def _collateral_json(doc: dict[str, object], pool: CollateralPool, what: str) -> bool:
    """dcap-qvl ``QuoteCollateralV3``; returns whether ``doc`` had that shape."""
    if not isinstance(doc.get("tcb_info"), str) and not isinstance(doc.get("qe_identity"), str):
        return False
    for kind, key in (("tcbInfo", "tcb_info"), ("enclaveIdentity", "qe_identity")):
        body, sig = doc.get(key), doc.get(f"{key}_signature")
        if isinstance(body, str) and sig is not None:
            try:
                signature = signature_bytes(sig, key)
            except EvidenceFormatError:
                continue
            pool.add_document(SignedDocument(_kind(kind), body.encode("utf-8"), signature))
    for key in ("pck_crl", "root_ca_crl"):
        value = doc.get(key)
        raw: bytes | None = None
        if isinstance(value, str):
            raw = value.encode("ascii", "replace")
        elif isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
            raw = bytes(value)
        if raw:
            with contextlib.suppress(EvidenceFormatError):
                pool.crls.extend(_crls_any(raw, f"{what} {key}"))
    for key in ("tcb_info_issuer_chain", "qe_identity_issuer_chain", "pck_crl_issuer_chain"):
        value = doc.get(key)
        if isinstance(value, str):
            with contextlib.suppress(EvidenceFormatError):
                pool.certs.extend(load_certificates(value.encode("utf-8"), what=f"{what} {key}"))
    return True


def _kind(kind: str) -> DocKind:
    return "tcbInfo" if kind == "tcbInfo" else "enclaveIdentity"


def add_file(data: bytes, pool: CollateralPool, what: str) -> None:
    """Recognize one file's content and add what it holds to ``pool``."""
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        for kind in ("tcbInfo", "enclaveIdentity"):
            try:
                pool.add_document(split_signed(data, _kind(kind)))
                return
            except EvidenceFormatError:
                continue
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if isinstance(doc, dict):
            _collateral_json(doc, pool, what)
        return
    if b"X509 CRL" in data:
        with contextlib.suppress(EvidenceFormatError):
            pool.crls.extend(_crls_any(data, what))
        return
    if b"CERTIFICATE" in data:
        with contextlib.suppress(EvidenceFormatError):
            pool.certs.extend(load_certificates(data, what=what))
        return
    try:
        pool.crls.extend(_crls_any(data, what))
        return
    except EvidenceFormatError:
        pass
    with contextlib.suppress(EvidenceFormatError):  # not collateral: other files are fine
        pool.certs.extend(load_certificates(data, what=what))


def load_directory(path: Path) -> CollateralPool:
    """Every DCAP collateral item under ``path`` (any layout, recognized by content)."""
    if not path.is_dir():
        raise CollateralUnavailableError(
            f"collateral directory {path} does not exist",
            hint="pass --collateral with an existing directory",
        )
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if len(files) > MAX_DIR_FILES:
        raise CollateralUnavailableError(f"{path} holds more than {MAX_DIR_FILES} files")
    pool = CollateralPool(origin=f"dir:{path}")
    for file in files:
        if file.suffix.lower() not in _SUFFIXES:
            continue
        try:
            if file.stat().st_size > MAX_FILE_BYTES:
                continue
            data = file.read_bytes()
        except OSError:
            continue
        add_file(data, pool, str(file))
    return pool


def _dedupe(certs: Iterable[Certificate]) -> tuple[Certificate, ...]:
    seen: dict[str, Certificate] = {}
    for cert in certs:
        try:
            touch_certificate(cert, "collateral certificate")
        except EvidenceFormatError:
            continue  # unusable; a chain that needed it fails with ChainError
        seen.setdefault(fingerprint(cert), cert)
    return tuple(seen.values())


@dataclass
class _Choice:
    tcb_info: SignedDocument | None = None
    qe_identity: SignedDocument | None = None
    pck_crl: CertificateRevocationList | None = None
    root_ca_crl: CertificateRevocationList | None = None
    origin: list[str] = field(default_factory=list)


def _choose(
    pool: CollateralPool,
    choice: _Choice,
    *,
    tee: str,
    fmspc: bytes,
    pck_issuer: Name,
    root_subject: Name,
) -> None:
    used = False
    if choice.tcb_info is None:
        matching = [(d, i) for d, i in pool.tcb_infos if i.id == tee and i.fmspc == fmspc]
        if matching:
            best = max(matching, key=lambda m: (m[1].tcb_evaluation_data_number, m[1].issue_date))
            choice.tcb_info, used = best[0], True
    if choice.qe_identity is None:
        wanted = "TD_QE" if tee == "TDX" else "QE"
        ids = [(d, i) for d, i in pool.qe_identities if i.id == wanted]
        if ids:
            best_id = max(ids, key=lambda m: (m[1].tcb_evaluation_data_number, m[1].issue_date))
            choice.qe_identity, used = best_id[0], True
    if choice.pck_crl is None:
        crls = [c for c in pool.crls if c.issuer == pck_issuer]
        if crls:
            choice.pck_crl, used = max(crls, key=lambda c: c.last_update_utc), True
    if choice.root_ca_crl is None:
        crls = [c for c in pool.crls if c.issuer == root_subject]
        if crls:
            choice.root_ca_crl, used = max(crls, key=lambda c: c.last_update_utc), True
    if used and pool.origin:
        choice.origin.append(pool.origin)


def gather_collateral(verified: VerifiedQuoteSignature, sources: DcapSources) -> DcapCollateral:
    """Collect TCB info, QE identity, CRLs and signing chains for a verified quote.

    Never raises for a missing item: the returned collateral says what is missing
    (and why), and :func:`veritee.tee.dcap.verify.evaluate_collateral` names it.
    """
    tee = "TDX" if verified.quote.tee is TeeType.TDX else "SGX"
    fmspc = verified.pck.fmspc
    chain = verified.chain
    keys = {
        "tee": tee,
        "fmspc": fmspc,
        "pck_issuer": chain.issuer_of(0).subject,
        "root_subject": chain.root.subject,
    }
    choice = _Choice()
    certs: list[Certificate] = []
    hints: list[str] = []
    for directory in sources.directories:
        pool = load_directory(directory)
        certs.extend(pool.certs)
        _choose(pool, choice, **keys)  # type: ignore[arg-type]

    fetcher = sources.fetcher
    if fetcher is not None:
        base = sources.pcs_base
        kind = tee.lower()
        pool = CollateralPool(origin="Intel PCS")
        pcs = intel_pcs
        wanted = []
        if choice.tcb_info is None:
            req = pcs.tcb_info_request(kind, fmspc, base=base)
            wanted.append((req, pcs.TCB_INFO_CHAIN_HEADER))
        if choice.qe_identity is None:
            wanted.append((pcs.qe_identity_request(kind, base=base), pcs.QE_IDENTITY_CHAIN_HEADER))
        if choice.pck_crl is None:
            req = pcs.pck_crl_request(verified.pck_ca, base=base)
            wanted.append((req, pcs.PCK_CRL_CHAIN_HEADER))
        if choice.root_ca_crl is None:
            wanted.append((pcs.root_ca_crl_request(base=base), ""))
        for request, header in wanted:
            try:
                response = fetcher.fetch(request)
            except CollateralUnavailableError as exc:
                hints.append(exc.message)
                continue
            add_file(response.body, pool, request.description)
            chain_pem = intel_pcs.issuer_chain(response, header) if header else None
            if chain_pem:
                add_file(chain_pem, pool, f"{request.description} issuer chain")
        certs.extend(pool.certs)
        _choose(pool, choice, **keys)  # type: ignore[arg-type]

    if not sources.directories and fetcher is None:
        hints.append(
            "no collateral source was given: pass --collateral DIR (Intel PCS files or a "
            "collateral.json), or --fetch to get it from Intel PCS"
        )
    elif fetcher is None and (
        choice.tcb_info is None
        or choice.qe_identity is None
        or choice.pck_crl is None
        or choice.root_ca_crl is None
    ):
        where = ", ".join(str(d) for d in sources.directories)
        hints.append(
            f"not found in {where}; add a --collateral DIR that holds it, or --fetch to get "
            "it from Intel PCS"
        )
    return DcapCollateral(
        tcb_info=choice.tcb_info,
        qe_identity=choice.qe_identity,
        pck_crl=choice.pck_crl,
        root_ca_crl=choice.root_ca_crl,
        certs=_dedupe([*certs, *chain.certs]),
        source=", ".join(dict.fromkeys(choice.origin)),
        missing_hints=tuple(hints),
    )
