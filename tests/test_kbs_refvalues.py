"""Reference values on a live KBS: signed imports, provenance in every decision's audit record,
tampered rows refused, expiry honoured, and the `veritee rv` / `veritee tcb` commands."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from tests import snp_firmware as fw
from tests.conftest import CORPUS
from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, kbs, sim_platform
from veritee.appraisal.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from veritee.appraisal.ear import verify_ear
from veritee.appraisal.intoto import REFERENCE_VALUES_PREDICATE
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.broker.audit import iter_rows, verify_chain
from veritee.cli.main import main

__all__ = ["kbs", "sim_platform"]

IMPORTED_MEASUREMENT = bytes.fromhex("3c" * 48)


@pytest.fixture(scope="module")
def builder(kbs: Kbs) -> ec.EllipticCurvePrivateKey:
    """The owner's CI key, trusted by the KBS through <data-dir>/trusted-builders/."""
    key = ec.generate_private_key(ec.SECP256R1())
    trusted = kbs.data_dir / "trusted-builders"
    trusted.mkdir(exist_ok=True)
    (trusted / "release-ci.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def admin_args(kbs: Kbs) -> list[str]:
    return ["--kbs", kbs.url, "--admin-key", str(kbs.data_dir / "admin.key")]


def statement(values: dict[str, object]) -> bytes:
    return json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "ovmf (OVMF.fd)", "digest": {"sha256": "a1" * 32}}],
        "predicateType": REFERENCE_VALUES_PREDICATE,
        "predicate": values,
    }).encode()


def write_envelope(path: Path, payload: bytes, key: Any, keyid: str = "release-ci") -> Path:
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, payload, [(key, keyid)] if key else [])
    path.write_text(json.dumps(envelope.to_json()))
    return path


def audit_rows(kbs: Kbs, action: str) -> list[Any]:
    return [r for r in iter_rows(kbs.service.db) if r.action == action]


def attest(kbs: Kbs, measurement: bytes, **kw: Any) -> tuple[KbsClient, Any]:
    client = KbsClient(kbs.url)
    provider = SimulatedSnpProvider(kbs.platform, measurement=measurement, **kw)
    return client, client.attest(provider)


def test_signed_statement_is_imported_and_its_source_named_in_the_decision(
    kbs: Kbs, builder: ec.EllipticCurvePrivateKey, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = statement({"snp_launch_measurement": [GOOD_MEASUREMENT.hex(),
                                                    IMPORTED_MEASUREMENT.hex()]})
    file = write_envelope(tmp_path / "rv.dsse", payload, builder)
    code, out, err = cli(["rv", "import", *admin_args(kbs), str(file)], capsys)
    assert code == 0, err
    assert "imported snp_launch_measurement" in out

    client, result = attest(kbs, IMPORTED_MEASUREMENT)
    assert client.get_resource("default/disk/key") == SECRET
    claims = verify_ear(result.token, [kbs.service.broker.signer.public_jwk()],
                        now=dt.datetime.now(dt.UTC))
    assert claims["submods"]["cpu0"]["ear.status"] == "affirming"

    record = audit_rows(kbs, "attest")[-1]
    detail = json.loads(record.detail_json)
    used = detail["reference_values"]
    # Every value the default policy consulted and found loaded, each with its source.
    assert set(used) == {"snp_launch_measurement", "snp_bootloader", "snp_microcode",
                         "snp_snp_svn", "snp_tee_svn"}
    imported = used["snp_launch_measurement"]
    assert imported["kind"] == "imported"
    assert imported["statement_sha256"] == hashlib.sha256(payload).hexdigest()
    der = builder.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert imported["signers"] == [hashlib.sha256(der).hexdigest()]
    assert used["snp_bootloader"]["kind"] == "admin"
    assert used["snp_bootloader"]["actor"].startswith("admin:")
    assert detail["reference_values_refused"] == {}
    [imp] = [r for r in audit_rows(kbs, "admin.import_reference_values") if r.decision == "allow"]
    assert json.loads(imp.detail_json)["statement_sha256"] == imported["statement_sha256"]
    assert verify_chain(kbs.service.db).ok


@pytest.mark.parametrize(("how", "expect"), [
    ("untrusted key", "no DSSE signature verifies with a trusted builder key"),
    ("tampered", "does not verify: the statement or its payloadType was altered"),
    ("unsigned", "unsigned statements are refused"),
])
def test_bad_statements_are_refused_audited_and_change_nothing(
    kbs: Kbs, builder: ec.EllipticCurvePrivateKey, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], how: str, expect: str,
) -> None:
    payload = statement({"snp_launch_measurement": ["00" * 48]})
    path = tmp_path / "bad.dsse"
    if how == "untrusted key":
        write_envelope(path, payload, Ed25519PrivateKey.generate(), keyid="release-ci-2")
    elif how == "tampered":
        write_envelope(path, payload, builder)
        doc = json.loads(path.read_text())
        doc["payload"] = __import__("base64").b64encode(
            payload.replace(b'"00', b'"01', 1)).decode()
        path.write_text(json.dumps(doc))
    else:
        write_envelope(path, payload, None)
    before = kbs.snapshot()["reference_values"]
    denials = len(audit_rows(kbs, "admin.import_reference_values"))
    code, _, err = cli(["rv", "import", *admin_args(kbs), str(path)], capsys)
    assert code != 0
    assert expect in " ".join(err.split())
    assert kbs.snapshot()["reference_values"] == before
    rows = audit_rows(kbs, "admin.import_reference_values")
    assert len(rows) == denials + 1 and rows[-1].decision == "deny"
    assert expect.split(":")[0] in json.loads(rows[-1].detail_json)["reason"]


def test_slsa_provenance_import_over_http(
    kbs: Kbs, builder: ec.EllipticCurvePrivateKey
) -> None:
    payload = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app.tar", "digest": {"sha256": "5e" * 32}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"runDetails": {"builder": {"id": "https://ci.example/builder"}}},
    }).encode()
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, payload, [(builder, "")]).to_json()
    r = kbs.admin_post("/kbs/v0/reference-value/import",
                       json={"envelope": envelope, "name": "workload_image_digest"})
    assert r.status_code == 200, r.text
    assert r.json() == {"registered": ["workload_image_digest"]}
    record = httpx.get(f"{kbs.url}/kbs/v0/reference-value/workload_image_digest",
                       headers=kbs.admin_headers()).json()
    assert record["value"] == ["5e" * 32]
    assert record["provenance"]["builder"] == "https://ci.example/builder"
    for bad in ({}, {"envelope": "x"}, {"envelope": envelope, "digest_alg": "md5"},
                {"envelope": envelope, "name": "x", "expiration": "2001-01-01T00:00:00Z"}, []):
        r = kbs.admin_post("/kbs/v0/reference-value/import", json=bad)
        assert r.status_code in (400, 401) and r.json()["detail"], bad


def test_tampered_row_is_refused_at_attestation_and_shown_by_rv_list(
    kbs: Kbs, builder: ec.EllipticCurvePrivateKey, capsys: pytest.CaptureFixture[str],
) -> None:
    # An attacker with database access adds their measurement to the stored list.
    evil = bytes.fromhex("e1" * 48)
    with kbs.service.db.write() as s:
        row = s.execute(text("SELECT value_json FROM reference_values "
                             "WHERE name = 'snp_launch_measurement'")).scalar_one()
        s.execute(text("UPDATE reference_values SET value_json = :v "
                       "WHERE name = 'snp_launch_measurement'"),
                  {"v": json.dumps([*json.loads(row), evil.hex()])})
    try:
        client, _ = attest(kbs, evil)
        with pytest.raises(KbsRefused) as info:
            client.get_resource("default/disk/key")
        assert "snp_launch_measurement" in info.value.detail
        detail = json.loads(audit_rows(kbs, "attest")[-1].detail_json)
        assert "row was altered" in detail["reference_values_refused"]["snp_launch_measurement"]
        assert "snp_launch_measurement" not in detail["reference_values"]

        code, out, _ = cli(["rv", "list", *admin_args(kbs), "--json"], capsys)
        assert code == 0
        states = {r["name"]: r["state"] for r in json.loads(out)}
        assert states["snp_launch_measurement"] == "refused"
        assert states["snp_bootloader"] == "valid"
        code, out, err = cli(["rv", "list", *admin_args(kbs)], capsys)
        assert code == 0 and "REFUSED" in out and "1 value(s) refused" in " ".join(err.split())
        code, _, err = cli(["rv", "get", *admin_args(kbs), "snp_launch_measurement"], capsys)
        assert code != 0 and "refused" in err
    finally:
        # The owner registers the value again from its source; the seal is valid again.
        code, _, err = cli(["rv", "add", *admin_args(kbs), "snp_launch_measurement",
                            GOOD_MEASUREMENT.hex(), IMPORTED_MEASUREMENT.hex()], capsys)
        assert code == 0, err
    client, _ = attest(kbs, IMPORTED_MEASUREMENT)
    assert client.get_resource("default/disk/key") == SECRET


def test_expired_reference_value_is_not_used(kbs: Kbs, capsys: pytest.CaptureFixture[str]) -> None:
    broker = kbs.service.broker
    real_clock = broker.clock
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tee_svn = str(kbs.platform.tcb.tee)
    code, _, err = cli(["rv", "add", *admin_args(kbs), "snp_tee_svn", tee_svn,
                        "--expires", soon], capsys)
    assert code == 0, err
    client, _ = attest(kbs, GOOD_MEASUREMENT)
    assert client.get_resource("default/disk/key") == SECRET
    broker.clock = lambda: real_clock() + dt.timedelta(minutes=10)
    try:
        client, _ = attest(kbs, GOOD_MEASUREMENT)
        with pytest.raises(KbsRefused) as info:
            client.get_resource("default/disk/key")
        assert "snp_tee_svn" in info.value.detail
        detail = json.loads(audit_rows(kbs, "attest")[-1].detail_json)
        assert "snp_tee_svn" not in detail["reference_values"]
        code, out, _ = cli(["rv", "list", *admin_args(kbs), "--json"], capsys)
        assert {r["name"]: r["state"] for r in json.loads(out)}["snp_tee_svn"] == "expired"
    finally:
        broker.clock = real_clock
        code, _, err = cli(["rv", "add", *admin_args(kbs), "snp_tee_svn", tee_svn], capsys)
        assert code == 0, err
    code, _, err = cli(["rv", "add", *admin_args(kbs), "snp_tee_svn", tee_svn,
                        "--expires", "2020-01-01T00:00:00Z"], capsys)
    assert code != 0 and "in the past" in err


@pytest.fixture
def measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """`veritee measure snp --json` of a firmware image with kernel hashes, and its inputs."""
    image = fw.write(tmp_path / "fw.fd", fw.build_firmware(fw.synthetic_base(16, seed=11)))
    (tmp_path / "vmlinuz").write_bytes(b"MZ kernel " * 100)
    (tmp_path / "initrd.img").write_bytes(b"initrd " * 100)
    code, out, err = cli(["measure", "snp", "--ovmf", str(image), "--vcpus", "2",
                          "--vcpu-type", "EPYC-v4", "--kernel", str(tmp_path / "vmlinuz"),
                          "--initrd", str(tmp_path / "initrd.img"), "--append", "console=ttyS0",
                          "--json"], capsys)
    assert code == 0, err
    path = tmp_path / "measure.json"
    path.write_text(out)
    return path


def test_computed_value_from_measure_json_and_the_tcb_report_of_the_token(
    kbs: Kbs, measured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    doc = json.loads(measured.read_text())
    code, out, err = cli(["rv", "add", *admin_args(kbs), "--computed-from", str(measured)],
                         capsys)
    assert code == 0, err
    code, out, _ = cli(["rv", "list", *admin_args(kbs), "--json"], capsys)
    row = {r["name"]: r for r in json.loads(out)}["snp_launch_measurement"]
    assert row["value"] == [doc["measurement"]] and row["state"] == "valid"
    prov = row["provenance"]
    assert prov["kind"] == "computed" and prov["tool"].endswith("measure snp")
    assert {a["name"]: a["digest"]["sha256"] for a in prov["artifacts"]} == {
        "ovmf (fw.fd)": doc["inputs"]["ovmf"]["sha256"],
        "kernel (vmlinuz)": doc["inputs"]["kernel"]["sha256"],
        "initrd (initrd.img)": doc["inputs"]["initrd"]["sha256"],
        "cmdline": doc["inputs"]["append"]["sha256"],
    }
    (tmp_path / "rvs.json").write_text(out)

    # The simulated guest launched exactly these artifacts: it attests and gets its secret.
    client, result = attest(kbs, bytes.fromhex(doc["measurement"]))
    assert client.get_resource("default/disk/key") == SECRET
    claims = verify_ear(result.token, [kbs.service.broker.signer.public_jwk()],
                        now=dt.datetime.now(dt.UTC))
    (tmp_path / "token.json").write_text(json.dumps(claims))
    code, out, err = cli(["tcb", "report", str(tmp_path / "token.json"),
                          "--rv", str(tmp_path / "rvs.json"), "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    layers = {x["layer"]: x for x in report["layers"]}
    # Kernel, initrd and command line are in the launch measurement: the matching value
    # was computed from them, so the report can say so.
    for layer in ("firmware", "kernel", "initrd", "cmdline"):
        assert layers[layer]["measured"] == "yes", layer
        assert layers[layer]["reference"] == "matched", layer
    assert report["simulated"] is True
    assert report["not_covered"][0]["what"] == "Real hardware"

    # Without provenance the same report cannot claim the kernel is covered.
    plain = {r["name"]: r["value"] for r in json.loads((tmp_path / "rvs.json").read_text())}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    code, out, _ = cli(["tcb", "report", str(tmp_path / "token.json"),
                        "--rv", str(tmp_path / "plain.json"), "--json"], capsys)
    layers = {x["layer"]: x for x in json.loads(out)["layers"]}
    assert layers["kernel"]["measured"] == "unknown"
    assert layers["firmware"]["reference"] == "matched"


def test_remove_is_audited_and_unknown_names_are_404(
    kbs: Kbs, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["rv", "add", *admin_args(kbs), "scratch_value", "1"], capsys)
    assert code == 0, err
    code, out, err = cli(["rv", "remove", *admin_args(kbs), "scratch_value"], capsys)
    assert code == 0 and "removed scratch_value" in out, err
    [row] = [r for r in audit_rows(kbs, "admin.remove_reference_value")
             if r.subject == "scratch_value"]
    assert json.loads(row.detail_json)["provenance"]["kind"] == "admin"
    code, _, err = cli(["rv", "remove", *admin_args(kbs), "scratch_value"], capsys)
    assert code != 0 and "does not exist" in err


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/kbs/v0/reference-values"),
    ("DELETE", "/kbs/v0/reference-value/snp_bootloader"),
    ("POST", "/kbs/v0/reference-value/import"),
])
def test_new_routes_need_an_admin_token_and_are_documented(
    kbs: Kbs, method: str, path: str
) -> None:
    r = httpx.request(method, f"{kbs.url}{path}", json={})
    assert r.status_code == 401 and r.json()["type"].endswith("AdminAuthAccess")
    doc = httpx.get(f"{kbs.url}/openapi.json").json()
    template = path.replace("snp_bootloader", "{name}")
    op = doc["paths"][template][method.lower()]
    assert "200" in op["responses"] and "401" in op["responses"]
    if method == "POST":
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["envelope"]


@pytest.mark.skipif(CORPUS is None, reason="corpus absent")
def test_computed_from_a_tpm_event_log(
    kbs: Kbs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert CORPUS is not None
    log = CORPUS / "tpm" / "gce-cos85-quote-no-nonce" / "event_log.bin"
    code, out, err = cli(["measure", "tpm", "--from-log", str(log), "--json"], capsys)
    assert code == 0, err
    measured = tmp_path / "tpm.json"
    measured.write_text(out)
    predicted = json.loads(out)["reference_values"]
    code, out, err = cli(["rv", "add", *admin_args(kbs), "tpm_pcr07",
                          "--computed-from", str(measured)], capsys)
    assert code == 0, err
    assert "registered tpm_pcr07" in out and "tpm_pcr04" not in out
    record = httpx.get(f"{kbs.url}/kbs/v0/reference-value/tpm_pcr07",
                       headers=kbs.admin_headers()).json()
    assert record["value"] == predicted["tpm_pcr07"]
    assert record["provenance"]["kind"] == "computed"
    assert record["provenance"]["artifacts"] == [
        {"name": "event log (event_log.bin)",
         "digest": {"sha256": hashlib.sha256(log.read_bytes()).hexdigest()}}]
    code, _, err = cli(["rv", "add", *admin_args(kbs), "no_such_value",
                        "--computed-from", str(measured)], capsys)
    assert code != 0 and "has no 'no_such_value'" in err
