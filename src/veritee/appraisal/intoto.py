"""in-toto Statements (v1) carrying reference values, read from verified DSSE envelopes.

Two predicate types are understood:

* ``https://veritee.dev/reference-values/v1``: the predicate is the object
  ``{name: value}`` of reference values (the same shape as an RVPS ``sample``
  payload); the statement's subjects are the artifacts the values were
  computed from (firmware, kernel, initrd ...), kept as provenance.
* SLSA provenance (``https://slsa.dev/provenance/v1`` and ``v0.2``): the
  builder attests to having built the subjects; their digests become the
  value of the one reference value the importer names (e.g. a launch
  measurement published as a subject ``{"sha384": ...}``), and the builder id
  stated in the predicate is kept as provenance.

Only a statement whose envelope verified against a trusted builder key gets
here (:class:`~veritee.appraisal.dsse.VerifiedEnvelope`); everything it says is
then checked for shape, and refused with the field named when it is wrong.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from veritee.appraisal.dsse import VerifiedEnvelope
from veritee.appraisal.provenance import Artifact, Provenance
from veritee.appraisal.refvalues import (
    DEFAULT_TTL,
    ReferenceValue,
    check_name,
    check_value,
)
from veritee.errors import RequestError

__all__ = [
    "REFERENCE_VALUES_PREDICATE",
    "SLSA_PREDICATES",
    "STATEMENT_TYPES",
    "Statement",
    "reference_values_from",
]

# v0.1 statements have the same layout; SLSA v0.2 provenance is wrapped in them.
STATEMENT_TYPES: Final = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
REFERENCE_VALUES_PREDICATE: Final = "https://veritee.dev/reference-values/v1"
SLSA_PREDICATES: Final = ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2")
MAX_SUBJECTS: Final = 64


@dataclass(frozen=True)
class Statement:
    statement_type: str
    subjects: tuple[Artifact, ...]
    predicate_type: str
    predicate: Mapping[str, object]

    @classmethod
    def parse(cls, payload: bytes) -> Statement:
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RequestError("the signed payload is not a JSON in-toto statement") from None
        if not isinstance(doc, Mapping):
            raise RequestError("the in-toto statement is not a JSON object")
        kind = doc.get("_type")
        if kind not in STATEMENT_TYPES:
            raise RequestError(
                f"statement _type {kind!r} is not an in-toto Statement",
                hint=f"expected {STATEMENT_TYPES[0]}",
            )
        raw_subjects = doc.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise RequestError("the statement needs a non-empty subject list")
        if len(raw_subjects) > MAX_SUBJECTS:
            raise RequestError(f"the statement has more than {MAX_SUBJECTS} subjects")
        subjects = tuple(
            Artifact.from_json(s, f"subject #{n}") for n, s in enumerate(raw_subjects)
        )
        predicate_type = doc.get("predicateType")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise RequestError("the statement needs a predicateType")
        predicate = doc.get("predicate", {})
        if not isinstance(predicate, Mapping):
            raise RequestError("the statement's predicate must be a JSON object")
        return cls(str(kind), subjects, predicate_type, predicate)

    def builder_id(self) -> str:
        """The builder a SLSA predicate names (v1: runDetails.builder.id; v0.2: builder.id)."""
        run = self.predicate.get("runDetails")
        holder = run if isinstance(run, Mapping) else self.predicate
        builder = holder.get("builder")
        if isinstance(builder, Mapping) and isinstance(builder.get("id"), str):
            return str(builder["id"])[:512]
        return ""


def reference_values_from(
    verified: VerifiedEnvelope,
    *,
    now: dt.datetime,
    actor: str,
    name: str | None = None,
    digest_alg: str = "sha256",
    expires_at: dt.datetime | None = None,
) -> list[ReferenceValue]:
    """The reference values a verified statement carries, with imported provenance."""
    statement = Statement.parse(verified.payload)
    expires = expires_at or now + DEFAULT_TTL
    if expires <= now:
        raise RequestError("an expired reference value is refused: give a future expiration")

    def provenance(builder: str = "") -> Provenance:
        return Provenance(
            kind="imported",
            actor=actor,
            recorded_at=int(now.timestamp()),
            artifacts=statement.subjects,
            statement_sha256=verified.payload_sha256,
            predicate_type=statement.predicate_type,
            signer_keyids=tuple(k.keyid for k in verified.signers),
            signer_labels=tuple(k.label for k in verified.signers),
            builder=builder,
        )

    source = "imported:" + ",".join(k.label for k in verified.signers)
    if statement.predicate_type == REFERENCE_VALUES_PREDICATE:
        if name is not None:
            raise RequestError(
                "name applies to SLSA provenance only: this statement names its values"
            )
        if not statement.predicate:
            raise RequestError("the reference-values predicate holds no values")
        imported = provenance()
        out = []
        for rv_name, value in statement.predicate.items():
            checked = check_name(rv_name)
            out.append(
                ReferenceValue(
                    checked, check_value(checked, value), expires, source, imported
                )
            )
        return out
    if statement.predicate_type in SLSA_PREDICATES:
        if not name:
            raise RequestError(
                "SLSA provenance names no reference value: say which one its subjects are",
                hint="pass name (CLI: --name), e.g. snp_launch_measurement",
            )
        checked = check_name(name)
        digests = [s.digest.get(digest_alg) for s in statement.subjects]
        if not all(digests):
            raise RequestError(
                f"every subject needs a {digest_alg} digest to become {checked!r}",
                hint="choose the digest algorithm with digest_alg (CLI: --digest-alg)",
            )
        values = sorted({str(d) for d in digests})
        return [
            ReferenceValue(checked, values, expires, source, provenance(statement.builder_id()))
        ]
    raise RequestError(
        f"predicateType {statement.predicate_type!r} carries no reference values veritee reads",
        hint=f"use {REFERENCE_VALUES_PREDICATE} or SLSA provenance ({', '.join(SLSA_PREDICATES)})",
    )
