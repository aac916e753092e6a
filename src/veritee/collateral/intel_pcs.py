"""Requests for Intel PCS (or a PCCS) collateral: TCB info, QE identity, PCK CRL, Root CA CRL.

Each request carries both the URL (Intel PCS API v4) and the path of the same
item inside an offline bundle, which mirrors the URL path with the query turned
into a file name, e.g. ``tdx/certification/v4/tcb/fmspc=50806F000000.json``.
The signing chains travel in response headers (``TCB-Info-Issuer-Chain``,
``SGX-Enclave-Identity-Issuer-Chain``, ``SGX-PCK-CRL-Issuer-Chain``, URL-encoded
PEM); :func:`issuer_chain` reads them back. The base URL defaults to Intel's and
can be pointed at a PCCS or mirror with ``VERITEE_PCS_URL`` or ``base``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import unquote, urlsplit

from veritee.collateral.base import CollateralRequest, CollateralResponse
from veritee.errors import ConfigError

__all__ = [
    "DEFAULT_PCS_URL",
    "PCS_URL_ENV",
    "ROOT_CA_CRL_URL",
    "issuer_chain",
    "pck_crl_request",
    "pcs_base_from_env",
    "qe_identity_request",
    "root_ca_crl_request",
    "tcb_info_request",
]

DEFAULT_PCS_URL = "https://api.trustedservices.intel.com"
PCS_URL_ENV = "VERITEE_PCS_URL"
#: Where the Intel SGX Root CA certificate says its CRL is published.
ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

JSON_MAX_BYTES = 1024 * 1024
CRL_MAX_BYTES = 1024 * 1024

Tee = Literal["sgx", "tdx"]
PckCa = Literal["platform", "processor"]
Update = Literal["standard", "early"]

TCB_INFO_CHAIN_HEADER = "tcb-info-issuer-chain"
QE_IDENTITY_CHAIN_HEADER = "sgx-enclave-identity-issuer-chain"
PCK_CRL_CHAIN_HEADER = "sgx-pck-crl-issuer-chain"


def pcs_base_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The PCS base URL: ``$VERITEE_PCS_URL`` when set, else Intel's own."""
    env = os.environ if environ is None else environ
    raw = env.get(PCS_URL_ENV, "").strip()
    if not raw:
        return DEFAULT_PCS_URL
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(
            f"{PCS_URL_ENV}={raw!r} is not a base URL",
            hint="use e.g. https://api.trustedservices.intel.com or https://pccs.internal:8081",
        )
    return raw.rstrip("/")


def _tee(tee: str) -> Tee:
    if tee == "sgx":
        return "sgx"
    if tee == "tdx":
        return "tdx"
    raise ValueError(f"tee must be 'sgx' or 'tdx', not {tee!r}")


def _base(base: str | None) -> str:
    return pcs_base_from_env() if base is None else base.rstrip("/")


def tcb_info_request(
    tee: str, fmspc: bytes, *, update: Update | None = None, base: str | None = None
) -> CollateralRequest:
    """TCB info v3 for one FMSPC (``/{sgx|tdx}/certification/v4/tcb?fmspc=...``)."""
    kind = _tee(tee)
    if len(fmspc) != 6:
        raise ValueError(f"FMSPC is 6 bytes, not {len(fmspc)}")
    if update not in (None, "standard", "early"):
        raise ValueError("update must be 'standard' or 'early'")
    fm = fmspc.hex().upper()
    query = f"fmspc={fm}" + (f"&update={update}" if update else "")
    path = f"{kind}/certification/v4/tcb"
    return CollateralRequest(
        url=f"{_base(base)}/{path}?{query}",
        bundle_path=f"{path}/{query.replace('&', '_')}.json",
        description=f"{kind.upper()} TCB info for FMSPC {fm}",
        max_bytes=JSON_MAX_BYTES,
    )


def qe_identity_request(tee: str, *, base: str | None = None) -> CollateralRequest:
    """QE identity (SGX) or TD QE identity (TDX): ``/{sgx|tdx}/certification/v4/qe/identity``."""
    kind = _tee(tee)
    path = f"{kind}/certification/v4/qe/identity"
    return CollateralRequest(
        url=f"{_base(base)}/{path}",
        bundle_path=f"{path}.json",
        description="TD QE identity" if kind == "tdx" else "QE identity",
        max_bytes=JSON_MAX_BYTES,
    )


def pck_crl_request(ca: str, *, base: str | None = None) -> CollateralRequest:
    """The DER CRL of the PCK Platform CA or Processor CA (``/sgx/certification/v4/pckcrl``)."""
    if ca not in ("platform", "processor"):
        raise ValueError(f"ca must be 'platform' or 'processor', not {ca!r}")
    path = "sgx/certification/v4/pckcrl"
    query = f"ca={ca}&encoding=der"
    return CollateralRequest(
        url=f"{_base(base)}/{path}?{query}",
        bundle_path=f"{path}/{query.replace('&', '_')}.der",
        description=f"PCK CRL (ca={ca})",
        max_bytes=CRL_MAX_BYTES,
    )


def root_ca_crl_request(*, base: str | None = None) -> CollateralRequest:
    """The Intel SGX Root CA CRL: from Intel's CRL distribution point, or a PCCS/mirror."""
    if base is None and not os.environ.get(PCS_URL_ENV, "").strip():
        url = ROOT_CA_CRL_URL
    else:
        url = f"{_base(base)}/sgx/certification/v4/rootcacrl"
    return CollateralRequest(
        url=url,
        bundle_path="sgx/certification/v4/rootcacrl.der",
        description="Intel SGX Root CA CRL",
        max_bytes=CRL_MAX_BYTES,
    )


def issuer_chain(response: CollateralResponse, header: str) -> bytes | None:
    """The PEM chain a PCS response carries in ``header`` (URL-decoded), if any."""
    value = response.headers.get(header.lower())
    if not value:
        return None
    return unquote(value).encode("utf-8")
