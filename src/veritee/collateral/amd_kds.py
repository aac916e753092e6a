"""Requests for AMD Key Distribution Service (KDS) collateral: VCEK, cert chains, CRLs.

Each request carries both the KDS URL and the path of the same item inside an
offline bundle, which mirrors the URL path with the query turned into a file
name, e.g. ``vcek/v1/Milan/<hwid>/blSPL=3_teeSPL=0_snpSPL=8_ucodeSPL=115.der``.
The base URL defaults to AMD's and can be pointed at a mirror with the
``VERITEE_KDS_URL`` environment variable or the ``base`` argument.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from veritee.collateral.base import CollateralRequest
from veritee.errors import ConfigError

__all__ = [
    "DEFAULT_KDS_URL",
    "KDS_URL_ENV",
    "PRODUCTS",
    "cert_chain_request",
    "crl_request",
    "kds_base_from_env",
    "product_name",
    "vcek_request",
]

DEFAULT_KDS_URL = "https://kdsintf.amd.com"
KDS_URL_ENV = "VERITEE_KDS_URL"

#: SEV-SNP product lines KDS serves, in the capitalization its URLs use.
PRODUCTS: tuple[str, ...] = ("Milan", "Genoa", "Turin")

CERT_MAX_BYTES = 64 * 1024
CRL_MAX_BYTES = 1024 * 1024

_CHIP_ID_LEN = 64
_TURIN_HWID_LEN = 8

KeyKind = Literal["vcek", "vlek"]


def kds_base_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The KDS base URL: ``$VERITEE_KDS_URL`` when set, else AMD's own."""
    env = os.environ if environ is None else environ
    raw = env.get(KDS_URL_ENV, "").strip()
    if not raw:
        return DEFAULT_KDS_URL
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(
            f"{KDS_URL_ENV}={raw!r} is not a base URL",
            hint="use e.g. https://kdsintf.amd.com or http://mirror.internal:8080",
        )
    return raw.rstrip("/")


def product_name(product: str) -> str:
    """Canonical KDS product name ("Milan", "Genoa", "Turin"); any case accepted."""
    for name in PRODUCTS:
        if product.strip().lower() == name.lower():
            return name
    raise ValueError(f"unknown AMD SEV-SNP product {product!r}; expected one of {PRODUCTS}")


def vcek_request(
    product: str,
    hwid: bytes,
    *,
    bl: int,
    tee: int,
    snp: int,
    ucode: int,
    fmc: int | None = None,
    base: str | None = None,
) -> CollateralRequest:
    """The VCEK certificate (DER) for one chip at one reported TCB.

    ``hwid`` is the report's 64-byte CHIP_ID. On Turin KDS keys chips by the first
    8 bytes (the rest must be zero) and also wants the FMC SPL; ``fmc`` is
    required there and refused elsewhere. ``base=None`` means
    :func:`kds_base_from_env`.
    """
    name = product_name(product)
    spls = {"blSPL": bl, "teeSPL": tee, "snpSPL": snp, "ucodeSPL": ucode}
    if name == "Turin":
        if fmc is None:
            raise ValueError("Turin VCEK requests need the FMC SPL (fmc=...)")
        spls = {"fmcSPL": fmc, **spls}  # KDS order: fmcSPL first
        if len(hwid) == _CHIP_ID_LEN:
            if any(hwid[_TURIN_HWID_LEN:]):
                raise ValueError("Turin CHIP_ID must be zero after its first 8 bytes")
            hwid = hwid[:_TURIN_HWID_LEN]
        elif len(hwid) != _TURIN_HWID_LEN:
            raise ValueError(
                f"Turin hwid must be 8 bytes (or the 64-byte CHIP_ID), not {len(hwid)}"
            )
    else:
        if fmc is not None:
            raise ValueError(f"{name} has no FMC SPL; pass fmc=None")
        if len(hwid) != _CHIP_ID_LEN:
            raise ValueError(f"{name} hwid must be the 64-byte CHIP_ID, not {len(hwid)} bytes")
    for key, value in spls.items():
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{key} must be 0..255, not {value}")

    hwid_hex = hwid.hex()
    query = "&".join(f"{key}={value}" for key, value in spls.items())
    path = f"vcek/v1/{name}/{hwid_hex}"
    tcb_words = " ".join(f"{key.removesuffix('SPL')}={value}" for key, value in spls.items())
    return CollateralRequest(
        url=f"{_base(base)}/{path}?{query}",
        bundle_path=f"{path}/{query.replace('&', '_')}.der",
        description=f"VCEK for {name} chip {hwid_hex[:16]}.. at TCB {tcb_words}",
        max_bytes=CERT_MAX_BYTES,
    )


def cert_chain_request(
    product: str, key: KeyKind = "vcek", *, base: str | None = None
) -> CollateralRequest:
    """The PEM chain that signs VCEKs (ASK then ARK) or VLEKs (ASVK then ARK)."""
    name = product_name(product)
    kind = _key_kind(key)
    path = f"{kind}/v1/{name}/cert_chain"
    signer = "ASK" if kind == "vcek" else "ASVK"
    return CollateralRequest(
        url=f"{_base(base)}/{path}",
        bundle_path=f"{path}.pem",
        description=f"AMD {name} {kind.upper()} certificate chain ({signer}, ARK)",
        max_bytes=CERT_MAX_BYTES,
    )


def crl_request(
    product: str, key: KeyKind = "vcek", *, base: str | None = None
) -> CollateralRequest:
    """The DER CRL the ARK issues over the ASK (``vcek``) or ASVK (``vlek``)."""
    name = product_name(product)
    kind = _key_kind(key)
    path = f"{kind}/v1/{name}/crl"
    return CollateralRequest(
        url=f"{_base(base)}/{path}",
        bundle_path=f"{path}.der",
        description=f"AMD {name} {kind.upper()} CRL",
        max_bytes=CRL_MAX_BYTES,
    )


def _key_kind(key: str) -> KeyKind:
    if key == "vcek":
        return "vcek"
    if key == "vlek":
        return "vlek"
    raise ValueError(f"key must be 'vcek' or 'vlek', not {key!r}")


def _base(base: str | None) -> str:
    return kds_base_from_env() if base is None else base.rstrip("/")
