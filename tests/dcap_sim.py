"""Simulated DCAP platforms and their collateral for tests (a helper, not a test module)."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritee.pki.certs import load_certificates
from veritee.tee.dcap.quote import TeeType
from veritee.tee.dcap.sim import SimulatedDcapPlatform
from veritee.tee.dcap.tcbinfo import split_signed
from veritee.tee.dcap.verify import DcapCollateral, IntelRoots

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
ISSUE = NOW - dt.timedelta(days=2)
NEXT = NOW + dt.timedelta(days=28)


def generate(tee: TeeType, **kwargs: object) -> SimulatedDcapPlatform:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedDcapPlatform.generate(tee, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Bundle:
    tcb_info: bytes
    qe_identity: bytes
    pck_crl: x509.CertificateRevocationList
    root_crl: x509.CertificateRevocationList


def bundle(p: SimulatedDcapPlatform, **overrides: object) -> Bundle:
    values: dict[str, object] = {
        "tcb_info": p.tcb_info_body(issue=ISSUE, next_update=NEXT),
        "qe_identity": p.qe_identity_body(issue=ISSUE, next_update=NEXT),
        "pck_crl": p.crl(this_update=ISSUE, next_update=NEXT),
        "root_crl": p.crl(issuer="root", this_update=ISSUE, next_update=NEXT),
    }
    values.update(overrides)
    return Bundle(**values)  # type: ignore[arg-type]


def collateral(p: SimulatedDcapPlatform, b: Bundle | None = None) -> DcapCollateral:
    b = b or bundle(p)
    chain = load_certificates(
        p.tcb_cert.public_bytes(serialization.Encoding.PEM)
        + p.root.public_bytes(serialization.Encoding.PEM)
    )
    return DcapCollateral(
        tcb_info=split_signed(b.tcb_info, "tcbInfo"),
        qe_identity=split_signed(b.qe_identity, "enclaveIdentity"),
        pck_crl=b.pck_crl,
        root_ca_crl=b.root_crl,
        certs=tuple(chain),
    )


def roots(p: SimulatedDcapPlatform) -> IntelRoots:
    return IntelRoots.intel(()).with_root(p.root)
