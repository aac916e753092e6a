"""The one exception hierarchy of veritee.

Every error carries a stable ``code`` (for APIs and logs) and an ``exit_code``
(for the command line). Messages say what failed and, where possible, what to do.
"""

from __future__ import annotations

from typing import ClassVar


class VeriteeError(Exception):
    """Root of every error veritee raises on purpose."""

    code: ClassVar[str] = "veritee.error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class EvidenceFormatError(VeriteeError):
    """The evidence bytes do not follow the format (truncated, bad field, reserved bits set)."""

    code = "evidence.malformed"
    exit_code = 2


class VerificationError(VeriteeError):
    """The evidence is well-formed but not authentic, or its collateral is not acceptable."""

    code = "evidence.not_authentic"
    exit_code = 3


class SignatureError(VerificationError):
    code = "evidence.bad_signature"


class ChainError(VerificationError):
    """A certificate chain does not lead to a pinned root, or a link is broken."""

    code = "pki.bad_chain"


class RevokedError(VerificationError):
    code = "pki.revoked"


class ExpiredError(VerificationError):
    """A certificate or collateral is not valid at the verification time."""

    code = "pki.expired"


class MismatchError(VerificationError):
    """A value bound into the evidence differs from the expected one (report data, TCB, chip id)."""

    code = "evidence.mismatch"


class CollateralUnavailableError(VeriteeError):
    """Collateral could not be obtained: offline miss, transport failure, budget exhausted."""

    code = "collateral.unavailable"
    exit_code = 4


class PolicyError(VeriteeError):
    code = "policy.error"
    exit_code = 5


class RequestError(VeriteeError):
    """A client request is malformed or not acceptable (bad JSON, unsupported key, version)."""

    code = "request.invalid"
    exit_code = 1


class ProtocolVersionError(RequestError):
    code = "request.protocol_version"


class NotFoundError(VeriteeError):
    code = "not_found"
    exit_code = 1


class PolicyDenied(VeriteeError):
    """The appraisal or resource policy said no. A value-level outcome, never a crash."""

    code = "policy.denied"
    exit_code = 5


class AuthError(VeriteeError):
    """Missing or invalid credentials (admin token, session cookie, attestation token)."""

    code = "auth.denied"
    exit_code = 1


class ConfigError(VeriteeError):
    code = "config.error"
    exit_code = 1


class KeyringUnavailableError(VeriteeError):
    """The key-encryption key's holder (an HSM, a TPM) cannot be used right now: retry later."""

    code = "keyring.unavailable"
    exit_code = 1
