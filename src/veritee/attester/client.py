"""A KBS client: the guest side of RCAR and resource retrieval."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.attester.jwe import decrypt
from veritee.attester.providers import DeviceProvider, EvidenceProvider
from veritee.broker.binding import (
    HashAlgorithm,
    device_digest,
    expected_report_data,
    primary_digest,
)
from veritee.broker.teekey import TeePublicKey
from veritee.errors import AuthError, PolicyDenied, RequestError, VerificationError, VeriteeError

PROTOCOL_VERSION = "0.4.0"
COOKIE = "kbs-session-id"


class KbsRefused(VeriteeError):
    """The KBS answered with an error body; ``variant`` is Trustee's error type."""

    code = "kbs.refused"
    exit_code = 3

    def __init__(self, status: int, variant: str, detail: str) -> None:
        super().__init__(f"KBS refused ({status} {variant}): {detail}")
        self.status = status
        self.variant = variant
        self.detail = detail


@dataclass
class Attestation:
    token: str
    session_id: str
    nonce: str


class KbsClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        tee_key: ec.EllipticCurvePrivateKey | None = None,
        hash_algorithms: tuple[str, ...] = ("sha256", "sha384", "sha512"),
    ) -> None:
        self.hash_algorithms = hash_algorithms
        self.base = base_url.rstrip("/")
        self.http = httpx.Client(timeout=timeout, transport=transport)
        self.tee_key = tee_key or ec.generate_private_key(ec.SECP256R1())
        self.tee_jwk = TeePublicKey.from_public_key(self.tee_key.public_key(), "ECDH-ES+A256KW")
        self.session_id: str | None = None
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> None:
        if response.status_code == 200:
            return
        try:
            body = response.json()
            variant = str(body.get("type", "")).rsplit("/", 1)[-1]
            detail = str(body.get("detail", ""))
        except ValueError:
            variant, detail = "HTTPFailed", response.text[:200]
        raise KbsRefused(response.status_code, variant, detail)

    def _cookie(self) -> dict[str, str]:
        # Sent explicitly: the session belongs to this exchange, not to a cookie jar.
        return {"Cookie": f"{COOKIE}={self.session_id or ''}"}

    def auth(self, tee: str) -> tuple[str, HashAlgorithm]:
        request = {
            "version": PROTOCOL_VERSION,
            "tee": tee,
            "extra-params": {"supported-hash-algorithms": list(self.hash_algorithms)},
        }
        r = self.http.post(f"{self.base}/kbs/v0/auth", json=request)
        self._check(r)
        self.session_id = r.cookies.get(COOKIE)
        self.http.cookies.clear()
        if not self.session_id:
            raise AuthError("the KBS did not set a kbs-session-id cookie")
        challenge = r.json()
        nonce = challenge.get("nonce")
        if not isinstance(nonce, str):
            raise RequestError("challenge without a nonce")
        extra = challenge.get("extra-params")
        alg = HashAlgorithm.SHA384
        if isinstance(extra, dict) and "selected-hash-algorithm" in extra:
            alg = HashAlgorithm.parse(extra["selected-hash-algorithm"])
        return nonce, alg

    def attest(
        self,
        provider: EvidenceProvider,
        *,
        init_data_toml: str | None = None,
        nonce_override: str | None = None,
        devices: Sequence[DeviceProvider] = (),
    ) -> Attestation:
        """Run auth + attest. ``nonce_override`` exists to test replay refusal.

        ``devices`` (GPUs, switches) are bound with the device digest and sent as
        ``additional_evidence``, which the primary report data then covers.
        """
        nonce, alg = self.auth(provider.tee)
        used_nonce = nonce_override or nonce
        additional = ""
        if devices:
            dev_digest = device_digest(used_nonce, self.tee_jwk, alg)
            grouped: dict[str, list[dict[str, object]]] = {}
            for dev in devices:
                grouped.setdefault(dev.tee, []).append(dev.device_evidence(dev_digest))
            additional = json.dumps(
                {tee: {"device_evidence_list": items} for tee, items in grouped.items()},
                separators=(",", ":"),
            )
        digest = primary_digest(used_nonce, self.tee_jwk, additional, alg)
        host_data = None
        if init_data_toml is not None:
            host_data = HashAlgorithm.SHA256.digest(init_data_toml.encode())
        evidence = provider.evidence(expected_report_data(digest, 64), host_data=host_data)
        body: dict[str, object] = {
            "runtime-data": {"nonce": used_nonce, "tee-pubkey": self.tee_jwk.canonical_jwk()},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": additional},
        }
        if init_data_toml is not None:
            body["init-data"] = {"format": "toml", "body": init_data_toml}
        r = self.http.post(f"{self.base}/kbs/v0/attest", json=body, headers=self._cookie())
        self._check(r)
        token = r.json().get("token")
        if not isinstance(token, str):
            raise VerificationError("attest response without a token")
        self.token = token
        return Attestation(token=token, session_id=self.session_id or "", nonce=nonce)

    def get_resource(self, path: str, *, use_bearer: bool = False) -> bytes:
        url = f"{self.base}/kbs/v0/resource/{path.strip('/')}"
        if use_bearer:
            r = self.http.get(url, headers={"Authorization": f"Bearer {self.token}"})
        else:
            r = self.http.get(url, headers=self._cookie())
        self._check(r)
        return decrypt(r.json(), self.tee_key)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


__all__ = ["Attestation", "KbsClient", "KbsRefused", "PolicyDenied", "b64url"]
