"""What every evidence type shares: the claims value type and the verifier registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

# The JSON value a claim may take once serialized at an edge (CLI, token, policy input).
ClaimValue = str | int | bool | None | Sequence["ClaimValue"] | Mapping[str, "ClaimValue"]


class Claims(Protocol):
    """Typed claims of one verified piece of evidence."""

    @property
    def tee(self) -> str:
        """The KBS ``tee`` name (``snp``, ``tdx``, ...)."""
        ...

    def to_json(self) -> dict[str, ClaimValue]:
        """Claim names exactly as Trustee names them; bytes as lowercase hex."""
        ...
