"""Runtime-data binding: how the nonce and the TEE key get into the evidence (PROTOCOL.md 1.4).

The guest puts ``H(JCS(obj))`` into its report data and veritee recomputes it
from its own session nonce and the validated key; nothing of the client's
``runtime-data`` object is trusted as a whole. The exact bytes matter:

* device digest (report data of each *additional* attester, e.g. a GPU)::

      H(JCS({"nonce": <nonce>, "tee-pubkey": <typed JWK>}))

* primary digest (report data of the CPU TEE)::

      H(JCS({"additional-evidence": <string, "" if none>, "nonce": ..., "tee-pubkey": ...}))

  ``additional-evidence`` is present even when empty.

``H`` is SHA-384 unless the challenge carried ``selected-hash-algorithm``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final

from veritee.broker.teekey import TeePublicKey
from veritee.errors import MismatchError, RequestError
from veritee.jcs import canonicalize

__all__ = [
    "DEFAULT_HASH",
    "HashAlgorithm",
    "check_report_data",
    "device_digest",
    "device_runtime_data",
    "expected_report_data",
    "primary_digest",
    "primary_runtime_data",
    "select_hash",
]


class HashAlgorithm(enum.Enum):
    """Hash names as kbs-types spells them after lower-casing."""

    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @classmethod
    def parse(cls, name: object) -> HashAlgorithm:
        """Case-insensitive, as Trustee lower-cases before comparing."""
        if isinstance(name, str):
            lowered = name.lower()
            for member in cls:
                if member.value == lowered:
                    return member
            shown = ascii(name) if len(name) <= 32 else ascii(name[:29]) + "..."
        else:
            shown = f"a {type(name).__name__}"
        raise RequestError(
            f"unsupported hash algorithm {shown}",
            hint="use one of " + ", ".join(m.value for m in cls),
        )

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.value).digest_size

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.value, data).digest()


#: The client's rule: without ``selected-hash-algorithm`` in the challenge, SHA-384.
DEFAULT_HASH: Final = HashAlgorithm.SHA384

# When the guest does not offer SHA-384 we must select; prefer the stronger one.
_FALLBACK_ORDER: Final = (HashAlgorithm.SHA512, HashAlgorithm.SHA256)


def select_hash(supported: object) -> HashAlgorithm | None:
    """The algorithm to put in the challenge's ``selected-hash-algorithm``, or None.

    ``supported`` is the Request's ``extra-params`` verbatim (real guests send
    ``{"supported-hash-algorithms": [...]}``, older ones ``""``; any JSON value
    is accepted) or the list itself. None means "send ``extra-params: ""``":
    both sides then use SHA-384, which is what Trustee does for every TEE
    except IBM SE and the Intel Trust Authority backend (their callers pick
    those explicitly). A selection is made only when the guest lists
    algorithms and SHA-384 is not among them; names veritee does not know are
    ignored. Raises :class:`RequestError` when the guest lists algorithms but
    none of them is usable.
    """
    offered: object = supported
    if isinstance(supported, Mapping):
        offered = supported.get("supported-hash-algorithms")
    if isinstance(offered, str) or not isinstance(offered, Sequence):
        return None
    known: set[HashAlgorithm] = set()
    for name in offered:
        if isinstance(name, str):
            try:
                known.add(HashAlgorithm.parse(name))
            except RequestError:
                continue  # a newer guest may offer more (e.g. sm3); not an error by itself
    if not offered or DEFAULT_HASH in known:
        return None
    for candidate in _FALLBACK_ORDER:
        if candidate in known:
            return candidate
    raise RequestError(
        "none of the guest's supported-hash-algorithms is supported by veritee",
        hint="veritee supports " + ", ".join(m.value for m in HashAlgorithm),
    )


def device_runtime_data(nonce: str, tee_pubkey: TeePublicKey) -> dict[str, object]:
    """``{"nonce", "tee-pubkey"}``: hashed for device evidence; also the token's runtime claims."""
    return {"nonce": nonce, "tee-pubkey": tee_pubkey.canonical_jwk()}


def primary_runtime_data(
    nonce: str, tee_pubkey: TeePublicKey, additional_evidence: str
) -> dict[str, object]:
    """The object hashed into the primary TEE's report data."""
    return {
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey.canonical_jwk(),
    }


def device_digest(nonce: str, tee_pubkey: TeePublicKey, alg: HashAlgorithm = DEFAULT_HASH) -> bytes:
    """H(JCS({"nonce", "tee-pubkey"})) for each additional (device) attester."""
    return alg.digest(_canonical(device_runtime_data(nonce, tee_pubkey)))


def primary_digest(
    nonce: str,
    tee_pubkey: TeePublicKey,
    additional_evidence: str,
    alg: HashAlgorithm = DEFAULT_HASH,
) -> bytes:
    """H(JCS({"additional-evidence", "nonce", "tee-pubkey"})) for the primary TEE."""
    return alg.digest(_canonical(primary_runtime_data(nonce, tee_pubkey, additional_evidence)))


def _canonical(obj: dict[str, object]) -> bytes:
    try:
        return canonicalize(obj)
    except (TypeError, ValueError):
        # Python's json module admits lone surrogates ("\ud800") that JCS (and
        # the guest's serde_json) cannot encode: client input, not a server bug.
        raise RequestError(
            "runtime data cannot be canonicalized: the nonce and additional_evidence must be "
            "strings of valid Unicode"
        ) from None


def expected_report_data(digest: bytes, field_size: int) -> bytes:
    """The digest fitted to the evidence field: zero-padded, or truncated (TPM's 32 bytes).

    Field sizes: 64 for SNP ``REPORT_DATA``, TDX and SGX report data; 32 for a
    TPM quote's ``extraData`` (the first 32 bytes of a SHA-384 digest).
    """
    if field_size <= 0:
        raise ValueError(f"report-data field size must be positive, not {field_size}")
    return digest[:field_size].ljust(field_size, b"\x00")


def check_report_data(report_data: bytes, digest: bytes, *, what: str = "report data") -> None:
    """Raise :class:`MismatchError` unless ``report_data`` is the digest fitted to its size."""
    if not report_data:
        raise MismatchError(f"{what} is empty: it cannot bind this session's nonce and key")
    expected = expected_report_data(digest, len(report_data))
    if not hmac.compare_digest(report_data, expected):
        raise MismatchError(
            f"{what} does not bind this session's nonce and TEE key: "
            f"expected {expected.hex()}, got {report_data.hex()}",
            hint="the evidence was produced for another challenge or key, with another "
            "hash algorithm, or the tee-pubkey carried extra JWK members when hashed",
        )
