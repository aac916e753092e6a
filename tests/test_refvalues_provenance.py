"""Reference values carry provenance and the service's seal; in-toto statements become values.

Tampering with the table (value, expiry, provenance, name, a row inserted by hand,
a seal from another key) is detected on every read: the row is refused and
reported, never used.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from veritee.appraisal import refvalues
from veritee.appraisal.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    TrustedKey,
    sign_envelope,
    verify_envelope,
)
from veritee.appraisal.ear import TokenSigner, verify_ear
from veritee.appraisal.intoto import REFERENCE_VALUES_PREDICATE, reference_values_from
from veritee.appraisal.policy import RegoPolicy
from veritee.appraisal.provenance import Provenance, RowSeal
from veritee.errors import RequestError, VerificationError
from veritee.store.db import Database

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MEASUREMENT = "ab" * 48


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.sqlite(tmp_path / "rv.db")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def seal() -> RowSeal:
    return RowSeal(TokenSigner.generate())


def _message(values: dict[str, object], **extra: object) -> dict[str, object]:
    payload = base64.b64encode(json.dumps(values).encode()).decode()
    return {"version": "0.1.0", "type": "sample", "payload": payload, **extra}


def _store(db: Database, seal: RowSeal, values: list[refvalues.ReferenceValue]) -> None:
    with db.write() as s:
        for rv in values:
            refvalues.put(s, rv, NOW, seal)


def test_admin_and_computed_provenance_round_trip(db: Database, seal: RowSeal) -> None:
    admin = refvalues.parse_rvps_message(
        _message({"snp_bootloader": [3]}), now=NOW, source="admin:alice"
    )
    computed = refvalues.parse_rvps_message(
        _message(
            {"snp_launch_measurement": [MEASUREMENT]},
            artifacts=[{"name": "ovmf (OVMF.fd)", "digest": {"sha256": "11" * 32}},
                       {"name": "kernel (vmlinuz)", "digest": {"SHA256": "22" * 32}}],
            tool="veritee 0.1.0 measure snp",
        ),
        now=NOW,
        source="admin:bob",
    )
    _store(db, seal, admin + computed)
    with db.read() as s:
        loaded = refvalues.load(s, NOW, seal)
    assert loaded.refused == {}
    a = loaded.valid["snp_bootloader"].provenance
    c = loaded.valid["snp_launch_measurement"].provenance
    assert a is not None and a.kind == "admin" and a.actor == "admin:alice"
    assert c is not None and c.kind == "computed" and c.tool == "veritee 0.1.0 measure snp"
    assert [x.name for x in c.artifacts] == ["ovmf (OVMF.fd)", "kernel (vmlinuz)"]
    assert "computed with veritee 0.1.0 measure snp from ovmf (OVMF.fd) sha256:111111111111" in (
        c.summary()
    )
    record = loaded.valid["snp_launch_measurement"].to_rvps()
    assert record["provenance"] == c.to_json() and record["expiration"] == "2027-03-01T00:00:00Z"


# Each tampering a database writer could do, as SQL on the stored row.
TAMPERING = {
    "value": "UPDATE reference_values SET value_json = '[\"{m}\", \"ff\"]' WHERE name = 'm'",
    "expiry": "UPDATE reference_values SET expires_at = expires_at + 86400 WHERE name = 'm'",
    "provenance": "UPDATE reference_values SET provenance_json = replace(provenance_json, "
    "'admin:alice', 'admin:mallory') WHERE name = 'm'",
    "no seal": "UPDATE reference_values SET signature = NULL WHERE name = 'm'",
    "no provenance": "UPDATE reference_values SET provenance_json = NULL WHERE name = 'm'",
    "seal of another row": "UPDATE reference_values SET signature = "
    "(SELECT signature FROM reference_values WHERE name = 'other') WHERE name = 'm'",
    "renamed": "UPDATE reference_values SET name = 'm' WHERE name = 'other'",
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_tampered_row_is_refused_and_reported(
    db: Database, seal: RowSeal, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    values = refvalues.parse_rvps_message(
        _message({"m": [MEASUREMENT], "other": [MEASUREMENT]}), now=NOW, source="admin:alice"
    )
    _store(db, seal, values)
    with db.write() as s:
        if how == "renamed":
            s.execute(text("DELETE FROM reference_values WHERE name = 'm'"))
        s.execute(text(TAMPERING[how].format(m=MEASUREMENT)))
    with db.read() as s:
        loaded = refvalues.load(s, NOW, seal)
        assert "m" not in loaded.valid
        assert refvalues.get(s, "m", NOW, seal) is None
        stored = refvalues.inspect(s, "m", NOW, seal)
        listed = {r.value.name: r for r in refvalues.list_all(s, NOW, seal)}
    assert loaded.refused.get("m")
    assert stored is not None and stored.state == "refused"
    assert listed["m"].state == "refused"
    assert any("reference value 'm' refused" in r.getMessage() for r in caplog.records)
    if how != "renamed":
        assert "other" in loaded.valid  # only the altered row is refused


def test_a_row_inserted_by_hand_is_refused(db: Database, seal: RowSeal) -> None:
    with db.write() as s:
        s.execute(text(
            "INSERT INTO reference_values (name, value_json, expires_at, source, updated_at) "
            "VALUES ('snp_launch_measurement', :v, :e, 'admin:root', 0)"),
            {"v": json.dumps([MEASUREMENT]), "e": int(NOW.timestamp()) + 3600})
    with db.read() as s:
        loaded = refvalues.load(s, NOW, seal)
    assert loaded.valid == {}
    assert "no provenance" in loaded.refused["snp_launch_measurement"]


def test_a_seal_by_another_service_key_is_refused(db: Database, seal: RowSeal) -> None:
    other = RowSeal(TokenSigner.generate())
    values = refvalues.parse_rvps_message(_message({"m": [1]}), now=NOW, source="admin:a")
    _store(db, other, values)
    with db.read() as s:
        loaded = refvalues.load(s, NOW, seal)
        assert refvalues.load(s, NOW, other).valid.keys() == {"m"}
    assert "sealed by another key" in loaded.refused["m"]


def test_the_seal_is_not_an_attestation_token(seal: RowSeal) -> None:
    """A seal is a detached JWS of its own type: no EAR verifier accepts it as a token."""
    signer = TokenSigner.generate()
    row_seal = RowSeal(signer)
    payload = refvalues.parse_rvps_message(_message({"m": [1]}), now=NOW, source="a")[0].payload()
    detached = row_seal.seal(payload)
    header, middle, sig = detached.split(".")
    assert middle == ""
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["typ"] == "veritee-rv+jws"
    attached = f"{header}.{base64.urlsafe_b64encode(payload).decode().rstrip('=')}.{sig}"
    with pytest.raises(VerificationError):
        verify_ear(attached, [signer.public_jwk()], now=NOW)
    assert row_seal.problem(payload, detached) is None
    assert row_seal.problem(payload + b" ", detached) is not None


def test_expired_values_are_not_used_and_expiry_in_the_past_is_refused(
    db: Database, seal: RowSeal
) -> None:
    values = refvalues.parse_rvps_message(
        _message({"m": [1]}, expiration="2026-03-02T00:00:00Z"), now=NOW, source="admin:a"
    )
    _store(db, seal, values)
    later = NOW + dt.timedelta(days=2)
    with db.read() as s:
        assert refvalues.load(s, NOW, seal).valid.keys() == {"m"}
        assert refvalues.load(s, later, seal).valid == {}
        assert refvalues.load(s, later, seal).refused == {}  # expired is not tampered
        assert [r.state for r in refvalues.list_all(s, later, seal)] == ["expired"]
    for bad in ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "tomorrow", "2026-05-01"):
        with pytest.raises(RequestError):
            refvalues.parse_rvps_message(_message({"m": [1]}, expiration=bad), now=NOW,
                                         source="a")


@pytest.mark.parametrize("artifacts", [
    [], "x", [{"name": "k"}], [{"name": "k", "digest": {"sha256": "zz"}}],
    [{"name": "k", "digest": {"sha384": "ab" * 32}}],
])
def test_bad_artifacts_are_refused(artifacts: object) -> None:
    with pytest.raises(RequestError):
        refvalues.parse_rvps_message(_message({"m": [1]}, artifacts=artifacts), now=NOW,
                                     source="a")


def test_sources_used_names_what_the_policy_consults(db: Database, seal: RowSeal) -> None:
    values = refvalues.parse_rvps_message(
        _message({"snp_launch_measurement": [MEASUREMENT], "unrelated": [1]}),
        now=NOW, source="admin:alice",
    )
    _store(db, seal, values)
    with db.read() as s:
        loaded = refvalues.load(s, NOW, seal)
    literal = RegoPolicy.parse("p", 'package policy\nimport rego.v1\n'
                               'x := query_reference_value("snp_launch_measurement")\n')
    used = refvalues.sources_used(loaded, [literal])
    assert list(used) == ["snp_launch_measurement"]
    assert used["snp_launch_measurement"]["kind"] == "admin"
    assert used["snp_launch_measurement"]["actor"] == "admin:alice"
    dynamic = RegoPolicy.parse("q", 'package policy\nimport rego.v1\n'
                               'x := data.reference[input.name]\n')
    assert set(refvalues.sources_used(loaded, [dynamic])) == {"snp_launch_measurement", "unrelated"}


# -- in-toto statements --------------------------------------------------------------------


def _statement(predicate_type: str, predicate: object, subjects: list[object] | None = None
               ) -> bytes:
    return json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects if subjects is not None else [
            {"name": "ovmf (OVMF.fd)", "digest": {"sha256": "11" * 32}},
            {"name": "kernel (vmlinuz-6.8)", "digest": {"sha256": "22" * 32}},
        ],
        "predicateType": predicate_type,
        "predicate": predicate,
    }).encode()


def _verified(payload: bytes) -> tuple[object, TrustedKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    trusted = TrustedKey.from_pem(pem, "release-builder")
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, payload, [(key, "release-builder")])
    return verify_envelope(Envelope.from_json(envelope.to_json()), [trusted]), trusted


def test_veritee_predicate_becomes_imported_values(db: Database, seal: RowSeal) -> None:
    payload = _statement(REFERENCE_VALUES_PREDICATE,
                         {"snp_launch_measurement": [MEASUREMENT], "snp_bootloader": [3, 4]})
    verified, trusted = _verified(payload)
    values = reference_values_from(verified, now=NOW, actor="admin:alice")  # type: ignore[arg-type]
    assert {v.name: v.value for v in values} == {
        "snp_launch_measurement": [MEASUREMENT], "snp_bootloader": [3, 4]}
    prov = values[0].provenance
    assert prov is not None and prov.kind == "imported"
    assert prov.statement_sha256 == __import__("hashlib").sha256(payload).hexdigest()
    assert prov.signer_keyids == (trusted.keyid,) and prov.signer_labels == ("release-builder",)
    assert [a.name for a in prov.artifacts] == ["ovmf (OVMF.fd)", "kernel (vmlinuz-6.8)"]
    _store(db, seal, values)
    with db.read() as s:
        back = refvalues.load(s, NOW, seal).valid["snp_launch_measurement"].provenance
    assert back == prov
    assert Provenance.from_json(prov.to_json()) == prov


def test_slsa_provenance_subjects_become_the_named_value() -> None:
    predicate = {"buildDefinition": {"buildType": "https://example.com/image"},
                 "runDetails": {"builder": {"id": "https://github.com/org/repo/.github/ci"}}}
    subjects = [{"name": "launch-measurement", "digest": {"sha384": MEASUREMENT}},
                {"name": "disk.img", "digest": {"sha256": "33" * 32, "sha384": "cd" * 48}}]
    verified, _ = _verified(_statement("https://slsa.dev/provenance/v1", predicate, subjects))
    with pytest.raises(RequestError, match="names no reference value"):
        reference_values_from(verified, now=NOW, actor="a")  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="every subject needs a sha256"):
        reference_values_from(verified, now=NOW, actor="a",  # type: ignore[arg-type]
                              name="snp_launch_measurement")
    [value] = reference_values_from(verified, now=NOW, actor="a",  # type: ignore[arg-type]
                                    name="snp_launch_measurement", digest_alg="sha384")
    assert value.value == sorted([MEASUREMENT, "cd" * 48])
    assert value.provenance is not None
    assert value.provenance.builder == "https://github.com/org/repo/.github/ci"
    assert "builder https://github.com/org/repo/.github/ci" in value.provenance.summary()


@pytest.mark.parametrize(("payload", "match"), [
    (b"not json", "not a JSON in-toto statement"),
    (b"[]", "not a JSON object"),
    (json.dumps({"_type": "https://in-toto.io/Statement/v9", "subject": []}).encode(),
     "is not an in-toto Statement"),
    (_statement(REFERENCE_VALUES_PREDICATE, {"m": [1]}, subjects=[]), "non-empty subject"),
    (_statement(REFERENCE_VALUES_PREDICATE, {"m": [1]}, subjects=[{"name": "x"}]), "digest"),
    (_statement(REFERENCE_VALUES_PREDICATE, {}), "holds no values"),
    (_statement(REFERENCE_VALUES_PREDICATE, []), "predicate must be a JSON object"),
    (_statement(REFERENCE_VALUES_PREDICATE, {"": [1]}), "invalid reference value name"),
    (_statement("https://example.com/unknown/v1", {}), "carries no reference values"),
])
def test_malformed_statements_are_refused_with_the_field(payload: bytes, match: str) -> None:
    verified, _ = _verified(payload)
    with pytest.raises(RequestError, match=match):
        reference_values_from(verified, now=NOW, actor="a")  # type: ignore[arg-type]


def test_imported_value_with_expiry_in_the_past_is_refused() -> None:
    verified, _ = _verified(_statement(REFERENCE_VALUES_PREDICATE, {"m": [1]}))
    with pytest.raises(RequestError, match="expired"):
        reference_values_from(verified, now=NOW, actor="a",  # type: ignore[arg-type]
                              expires_at=NOW - dt.timedelta(seconds=1))


def test_ed25519_signed_statement_is_accepted_too() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE,
                             _statement(REFERENCE_VALUES_PREDICATE, {"m": [1]}), [(key, "")])
    verified = verify_envelope(envelope, [TrustedKey.from_pem(pem, "ed")])
    assert [v.name for v in reference_values_from(verified, now=NOW, actor="a")] == ["m"]


def test_reseal_after_the_token_signer_changed(tmp_path: Path) -> None:
    import shutil

    from veritee.broker.audit import iter_rows
    from veritee.cli.main import main
    from veritee.server.bootstrap import init_data_dir, open_service
    from veritee.server.config import ServiceConfig

    data = tmp_path / "kbs"
    config = init_data_dir(data)
    service = open_service(config)
    payload = base64.b64encode(json.dumps({"m": [MEASUREMENT], "n": [1]}).encode()).decode()
    service.broker.register_reference_values(
        {"version": "0.1.0", "type": "sample", "payload": payload}, admin="admin:t"
    )
    service.db.dispose()
    with service.db.write() as s:  # one row edited behind the API: must stay refused
        s.execute(text("UPDATE reference_values SET value_json = '[2]' WHERE name = 'n'"))
    old_key = tmp_path / "old-signer.pem"
    shutil.copy(config.token_key_path, old_key)
    config.token_key_path.unlink()
    TokenSigner.generate().save_pem(config.token_key_path)  # the signer is replaced

    def loaded() -> refvalues.LoadedValues:
        fresh = open_service(ServiceConfig.load(data))
        with fresh.db.read() as s:
            result = refvalues.load(s, dt.datetime.now(dt.UTC), RowSeal(fresh.broker.signer))
        fresh.db.dispose()
        return result

    before = loaded()
    assert before.valid == {} and "another key" in before.refused["m"]
    assert main(["rv", "reseal", "--data-dir", str(data), "--previous-signer", str(old_key)]) == 0
    after = loaded()
    assert set(after.valid) == {"m"} and after.valid["m"].value == [MEASUREMENT]
    assert "n" in after.refused  # its old seal never matched the edited value
    db = Database(config.db_url)
    record = [r for r in iter_rows(db) if r.action == "admin.reseal_reference_values"][-1]
    assert json.loads(record.detail_json)["resealed"] == ["m"]
    db.dispose()
    # The current key is not a previous one; a missing file is a clear error.
    args = ["rv", "reseal", "--data-dir", str(data), "--previous-signer"]
    assert main([*args, str(config.token_key_path)]) != 0
    assert main([*args, str(tmp_path / "missing.pem")]) != 0
