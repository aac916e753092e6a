"""Collateral gathering: the only place in veritee that may do network I/O.

Offline bundles are the default source; :class:`HttpFetcher` is opt-in. Sources
return bytes and never judge them; verification (in ``veritee.tee``) does.
This package imports only ``veritee.errors``, ``veritee.clock``,
``veritee.binary``, ``veritee.jcs`` and third-party libraries.
"""

from veritee.collateral.amd_kds import (
    DEFAULT_KDS_URL,
    KDS_URL_ENV,
    cert_chain_request,
    crl_request,
    kds_base_from_env,
    vcek_request,
)
from veritee.collateral.base import CollateralRequest, CollateralResponse, Fetcher
from veritee.collateral.http import HttpFetcher
from veritee.collateral.offline import FetcherChain, OfflineBundle

__all__ = [
    "DEFAULT_KDS_URL",
    "KDS_URL_ENV",
    "CollateralRequest",
    "CollateralResponse",
    "Fetcher",
    "FetcherChain",
    "HttpFetcher",
    "OfflineBundle",
    "cert_chain_request",
    "crl_request",
    "kds_base_from_env",
    "vcek_request",
]
