"""The Azure HCL report and evidence JSON formats: exact round trips, strictness, fuzzing."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import struct
import warnings
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS
from tests.test_azure_verify import SNP_CASES, SNP_IDS, TDX_DIR, SnpCase, needs_tdx
from veritee.broker.evidence import VERIFIERS, VerifyContext
from veritee.errors import EvidenceFormatError, VeriteeError
from veritee.tee.azure.evidence import AzureSnpEvidence, AzureTdxEvidence, VtpmQuote
from veritee.tee.azure.hcl import (
    AK_KEY_ID,
    HashType,
    HclReport,
    ReportType,
    RuntimeClaims,
    TdReportStruct,
)
from veritee.tee.azure.sim import SimulatedAzureSnpCvm
from veritee.tee.snp.gather import CertPool
from veritee.tee.tdx.quote import TdxQuote

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _SIM = SimulatedAzureSnpCvm.generate()
_SIM_HCL = _SIM.hcl_report().to_bytes()
_SIM_EVIDENCE = _SIM.evidence(b"n" * 48, version=1).to_json()
_SIM_EVIDENCE_V0 = _SIM.evidence(b"n" * 48, version=0, with_chain=True).to_json()
_CTX = VerifyContext(now=dt.datetime.now(dt.UTC), collateral=CertPool((), ()), trust_simulator=True)


def _u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


# -- real reports -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SNP_CASES, ids=SNP_IDS)
def test_corpus_hcl_reports_parse_and_round_trip(case: SnpCase) -> None:
    hcl = case.evidence.hcl
    raw = hcl.to_bytes()
    assert HclReport.from_bytes(raw) == hcl
    assert raw[:4] == b"HCLA" and len(raw) == 2600
    assert hcl.report_type is ReportType.SNP and hcl.hash_type is HashType.SHA256
    assert hcl.report_size == struct.unpack_from("<I", raw, 8)[0]
    assert hcl.snp_report().to_bytes() == raw[32 : 32 + 1184]
    claims = hcl.runtime_claims()
    assert len(claims.ak_pub.n) == 256 and claims.ak_pub.key_ops == ("sign",)
    assert claims.key("HCLEkPub") is not None
    assert dict(claims.vm_configuration)["tpm-enabled"] is True
    assert claims.user_data == bytes(64)
    with pytest.raises(EvidenceFormatError, match="not a TDX"):
        hcl.td_report()


def test_corpus_raw_quote_bincode_round_trips() -> None:
    if CORPUS is None:
        pytest.skip("../shared/corpus not present")
    for path in (CORPUS / "azure-snp-vtpm/trustee-milan-raw/quote.bin",
                 CORPUS / "tdx/azure-tdx-vtpm/quote.bin"):
        raw = path.read_bytes()
        q = VtpmQuote.from_bincode(raw)
        assert (len(q.signature), len(q.message), len(q.pcrs)) == (256, 122, 24)
        assert q.to_bincode() == raw
        with pytest.raises(EvidenceFormatError):
            VtpmQuote.from_bincode(raw + b"\0")
        with pytest.raises(EvidenceFormatError):
            VtpmQuote.from_bincode(raw[:-1])


@needs_tdx
def test_corpus_tdx_hcl_report_holds_the_quoted_tdreport() -> None:
    assert TDX_DIR is not None
    raw = (TDX_DIR / "hcl-report.bin").read_bytes()
    hcl = HclReport.from_bytes(raw)
    assert hcl.to_bytes() == raw
    assert hcl.report_type is ReportType.TDX
    td = hcl.td_report()
    assert td.to_bytes() == raw[32 : 32 + 1024]
    assert td.report_type.hex() == "81000000"
    quote = TdxQuote.from_bytes((TDX_DIR / "td-quote.bin").read_bytes())
    assert td.body() == quote.report
    ev0 = AzureTdxEvidence.from_json((TDX_DIR / "evidence-v0.json").read_bytes())
    ev1 = AzureTdxEvidence.from_json((TDX_DIR / "evidence-v1.json").read_bytes())
    assert ev0.hcl == ev1.hcl == hcl
    assert ev0.td_quote == ev1.td_quote == (TDX_DIR / "td-quote.bin").read_bytes()
    assert ev1.quote == VtpmQuote.from_json(
        json.loads((TDX_DIR / "tpm-quote-v1.json").read_text()), hex_form=True
    )
    for name in ("evidence-v0.json", "evidence-v1.json"):
        doc = json.loads((TDX_DIR / name).read_text())
        assert AzureTdxEvidence.from_json(doc).to_json() == doc
    with pytest.raises(EvidenceFormatError, match="not an SEV-SNP"):
        hcl.snp_report()


# -- strictness ---------------------------------------------------------------------------------


def test_header_fields_are_checked() -> None:
    raw = _SIM_HCL
    assert HclReport.from_bytes(raw).to_bytes() == raw
    for bad, match in (
        (b"HCLB" + raw[4:], "signature"),
        (_u32(raw, 4, 3), "version 3"),
        (_u32(raw, 8, struct.unpack_from("<I", raw, 8)[0] + 1), "report_size"),
        (_u32(raw, 32 + 1184, 21), "data_size"),
        (_u32(raw, 32 + 1184 + 8, 3), "report_type 3"),
        (_u32(raw, 32 + 1184 + 12, 0), "hash_type 0"),
        (_u32(raw, 32 + 1184 + 16, 70000), "var_data_size"),
        (raw[: 32 + 1184 + 30], "truncated"),
        (raw[:100], "truncated"),
    ):
        with pytest.raises(EvidenceFormatError, match=match):
            HclReport.from_bytes(bad)


def test_runtime_claims_are_parsed_strictly() -> None:
    good = json.loads(RuntimeClaims.from_json(_SIM.hcl_report().var_data).to_json_bytes())

    def parse(doc: object) -> RuntimeClaims:
        return RuntimeClaims.from_json(json.dumps(doc).encode())

    assert parse(good).ak_pub.kid == AK_KEY_ID
    no_ak = {**good, "keys": [k for k in good["keys"] if k["kid"] != AK_KEY_ID]}
    with pytest.raises(EvidenceFormatError, match="no HCLAkPub"):
        _ = parse(no_ak).ak_pub
    ec_ak = {**good, "keys": [{"kid": AK_KEY_ID, "kty": "EC", "crv": "P-256"}]}
    with pytest.raises(EvidenceFormatError, match="must be an RSA"):
        parse(ec_ak)
    twice = {**good, "keys": [good["keys"][0], good["keys"][0]]}
    with pytest.raises(EvidenceFormatError, match="share one kid"):
        parse(twice)
    bad_n = {**good, "keys": [{**good["keys"][0], "n": "not base64url!"}]}
    with pytest.raises(EvidenceFormatError, match="base64url"):
        parse(bad_n)
    with pytest.raises(EvidenceFormatError, match="user-data"):
        parse({**good, "user-data": "zz"})
    with pytest.raises(EvidenceFormatError, match="duplicate"):
        RuntimeClaims.from_json(b'{"keys": [], "keys": []}')
    with pytest.raises(EvidenceFormatError, match="not JSON"):
        RuntimeClaims.from_json(b"\xff{")
    with pytest.raises(EvidenceFormatError, match="object"):
        RuntimeClaims.from_json(b"[]")


def test_evidence_versions_and_members_are_checked() -> None:
    v1 = dict(_SIM_EVIDENCE)
    assert AzureSnpEvidence.from_json(v1).version == 1
    assert AzureSnpEvidence.from_json({**v1, "version": 2}).version == 2
    for version in (0, 3, "1", True, None):
        with pytest.raises(EvidenceFormatError, match="version"):
            AzureSnpEvidence.from_json({**v1, "version": version})
    with pytest.raises(EvidenceFormatError, match="hcl_report"):
        AzureSnpEvidence.from_json({**v1, "hcl_report": "$$$"})
    quote = dict(v1["tpm_quote"])  # type: ignore[call-overload]
    with pytest.raises(EvidenceFormatError, match="pcrs"):
        AzureSnpEvidence.from_json({**v1, "tpm_quote": {**quote, "pcrs": ["00" * 31]}})
    with pytest.raises(EvidenceFormatError, match="hex"):
        AzureSnpEvidence.from_json({**v1, "tpm_quote": {**quote, "message": "0g"}})
    with pytest.raises(EvidenceFormatError, match="hex"):
        AzureSnpEvidence.from_json({**v1, "tpm_quote": {**quote, "message": "00\n"}})
    v0 = dict(_SIM_EVIDENCE_V0)
    assert AzureSnpEvidence.from_json(v0).version == 0
    with pytest.raises(EvidenceFormatError, match="not a byte"):
        AzureSnpEvidence.from_json({**v0, "report": [*v0["report"][:-1], 256]})  # type: ignore[misc]
    with pytest.raises(EvidenceFormatError, match="not a byte"):
        AzureSnpEvidence.from_json({**v0, "report": [*v0["report"][:-1], True]})  # type: ignore[misc]
    del v0["report"]
    with pytest.raises(EvidenceFormatError, match="needs"):
        AzureSnpEvidence.from_json(v0)
    with pytest.raises(EvidenceFormatError, match="JSON object"):
        AzureSnpEvidence.from_json("[1, 2]")
    with pytest.raises(EvidenceFormatError, match="not JSON"):
        AzureTdxEvidence.from_json(b"{")


def test_base64url_is_strict_but_padding_optional() -> None:
    v1 = dict(_SIM_EVIDENCE)
    unpadded = str(v1["hcl_report"]).rstrip("=")
    raw = AzureSnpEvidence.from_json(v1).hcl.to_bytes()
    assert AzureSnpEvidence.from_json({**v1, "hcl_report": unpadded}).hcl.to_bytes() == raw
    for char in "+/":  # the standard alphabet's two characters are not base64url
        with pytest.raises(EvidenceFormatError, match="base64url"):
            AzureSnpEvidence.from_json({**v1, "hcl_report": unpadded[:8] + char + unpadded[9:]})
    with pytest.raises(EvidenceFormatError, match="base64url"):
        AzureSnpEvidence.from_json({**v1, "hcl_report": unpadded[:4] + " " + unpadded[4:]})


def test_tdreport_round_trips_through_its_quote_body() -> None:
    if TDX_DIR is None or not TDX_DIR.is_dir():
        pytest.skip("../shared/corpus not present")
    quote = TdxQuote.from_bytes((TDX_DIR / "td-quote.bin").read_bytes())
    built = TdReportStruct.from_body(quote.report)
    assert TdReportStruct.from_bytes(built.to_bytes()).body() == quote.report
    td15 = replace(quote.report, tee_tcb_svn2=b"\x07" * 16, mr_servicetd=b"\x09" * 48)
    again = TdReportStruct.from_bytes(TdReportStruct.from_body(td15, version=1).to_bytes())
    assert again.body(td15=True) == td15 and again.version == 1
    with pytest.raises(EvidenceFormatError, match="TDX"):
        TdReportStruct.from_bytes(b"\x80" + built.to_bytes()[1:])


# -- fuzzing: arbitrary input is refused with EvidenceFormatError, nothing else -------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_are_format_errors(data: bytes) -> None:
    for parse in (HclReport.from_bytes, VtpmQuote.from_bincode, RuntimeClaims.from_json,
                  AzureSnpEvidence.from_json, AzureTdxEvidence.from_json):
        with contextlib.suppress(EvidenceFormatError):
            parse(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_hcl_reports_are_format_errors_or_parse(data: st.DataObject) -> None:
    raw = bytearray(_SIM_HCL)
    for _ in range(data.draw(st.integers(1, 6))):
        # Bias towards the header and the runtime-data header, where the sizes are.
        pos = data.draw(st.one_of(st.integers(0, 31), st.integers(1216, 1236),
                                  st.integers(0, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        hcl = HclReport.from_bytes(bytes(raw[:cut]))
    except EvidenceFormatError:
        return
    assert hcl.to_bytes() == bytes(raw[:cut])
    for part in (hcl.snp_report, hcl.td_report, hcl.runtime_claims):
        with contextlib.suppress(EvidenceFormatError):
            part()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_JSON, data=st.data())
def test_arbitrary_json_is_a_format_error(value: object, data: st.DataObject) -> None:
    # Arbitrary documents, and real-shaped documents with one member replaced.
    docs: list[object] = [value]
    for base in (_SIM_EVIDENCE, _SIM_EVIDENCE_V0):
        key = data.draw(st.sampled_from(sorted(base)))
        docs.append({**base, key: value})
        quote_key = "tpm_quote" if "tpm_quote" in base else "quote"
        sub = data.draw(st.sampled_from(["signature", "message", "pcrs"]))
        docs.append({**base, quote_key: {**base[quote_key], sub: value}})  # type: ignore[dict-item]
    docs.append({"keys": value})
    for doc in docs:
        # Through the key broker's adapters: a typed error, never anything else.
        for tee in ("az-snp-vtpm", "az-tdx-vtpm"):
            with contextlib.suppress(VeriteeError):
                VERIFIERS[tee](doc, b"n" * 48, _CTX)
        for parse in (AzureSnpEvidence.from_json, AzureTdxEvidence.from_json):
            with contextlib.suppress(EvidenceFormatError):
                parse(doc)  # type: ignore[arg-type]
        with contextlib.suppress(EvidenceFormatError):
            RuntimeClaims.from_json(json.dumps(doc).encode())
