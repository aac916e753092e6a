"""What every collateral source shares: the request, the response, the Fetcher protocol.

Collateral (certificates, CRLs, TCB info) is gathered before verification, so the
verifier itself stays pure. A source either returns the bytes or raises
:class:`~veritee.errors.CollateralUnavailableError`; it never judges the content:
signature, validity period and revocation are the verifier's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from veritee.errors import CollateralUnavailableError

__all__ = [
    "CollateralRequest",
    "CollateralResponse",
    "Fetcher",
    "fetch_hint",
    "unavailable",
]


@dataclass(frozen=True)
class CollateralRequest:
    """One collateral item, addressed both online and inside an offline bundle."""

    url: str
    """Where the vendor serves it (``https://...``)."""
    bundle_path: str
    """Relative POSIX path of the same item inside an offline bundle directory."""
    description: str
    """Human words for error messages, e.g. ``VCEK for Milan chip 1a2b.. TCB ...``."""
    max_bytes: int = 1 << 20
    """Refuse bodies larger than this (a bound, not a guess of the size)."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("CollateralRequest.max_bytes must be positive")
        if not self.bundle_path:
            raise ValueError("CollateralRequest.bundle_path must not be empty")

    @property
    def host(self) -> str:
        """The vendor host named in :attr:`url` (for messages)."""
        return urlsplit(self.url).hostname or self.url


@dataclass(frozen=True)
class CollateralResponse:
    """The bytes of one collateral item and where they came from."""

    body: bytes
    headers: Mapping[str, str]
    """Lower-case names, e.g. Intel PCS ``*-issuer-chain`` headers; empty offline."""
    source: str
    """``offline:<path>`` | ``cache:<url>`` | ``http:<url>``."""

    def __post_init__(self) -> None:
        # Normalize once so every consumer can look headers up in lower case, and
        # make the mapping read-only to match the frozen dataclass.
        lowered = {name.lower(): value for name, value in self.headers.items()}
        object.__setattr__(self, "headers", MappingProxyType(lowered))


@runtime_checkable
class Fetcher(Protocol):
    """A source of collateral: offline bundle, HTTP with cache, or a chain of them."""

    def fetch(self, request: CollateralRequest) -> CollateralResponse:
        """Return the item or raise :class:`CollateralUnavailableError`."""
        ...


def fetch_hint(request: CollateralRequest) -> str:
    """What an operator can do when an item is missing, in one line."""
    return (
        f"pass --collateral DIR with it at {request.bundle_path} "
        f"(it is served at {request.url}), or --fetch to allow fetching from {request.host}"
    )


def unavailable(
    request: CollateralRequest, where: str, why: str, *, hint: str | None = None
) -> CollateralUnavailableError:
    """Build the error every source raises: what was wanted, from where, why, what to do."""
    return CollateralUnavailableError(
        f"{request.description}: not available from {where}: {why}",
        hint=hint if hint is not None else fetch_hint(request),
    )
