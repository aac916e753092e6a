"""DCAP byte formats: quotes, TD reports, enclave reports, PCK extensions, PCS JSON, CCEL.

Real quotes round-trip exactly and parse to the manifest's values; truncations and
arbitrary bytes are refused with EvidenceFormatError and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dcap_corpus import ALL_IDS, ALL_SAMPLES, SGX_SAMPLES, TDX_SAMPLES, DcapSample, sample
from veritee.errors import EvidenceFormatError
from veritee.pki.certs import load_certificates
from veritee.pki.der import decode_oid_value, encode_oid, iter_tlvs, read_tlv
from veritee.tee.dcap.evidence import decode_evidence
from veritee.tee.dcap.pck import parse_sgx_extensions, pck_info
from veritee.tee.dcap.quote import Quote
from veritee.tee.dcap.report import EnclaveReport
from veritee.tee.dcap.tcbinfo import QeIdentity, SignedDocument, TcbInfo, split_signed
from veritee.tee.sgx.quote import SgxQuote
from veritee.tee.tdx.ccel import CcelLog, CcelTable
from veritee.tee.tdx.quote import TdReport, TdxQuote

needs_samples = pytest.mark.skipif(not ALL_SAMPLES, reason="corpus absent")


@pytest.mark.parametrize("s", ALL_SAMPLES, ids=ALL_IDS)
def test_corpus_quote_round_trips_and_matches_manifest(s: DcapSample) -> None:
    quote = Quote.from_bytes(s.quote)
    checks, report = s.checks, s.report
    assert quote.to_bytes() == s.quote[: len(quote.to_bytes())]
    assert (
        quote.trailing_bytes == checks["trailing"] == report["trailing_bytes_after_signature_data"]
    )
    assert quote.version == checks["ver"]
    assert hex(quote.header.tee_type) == checks["tee"]
    assert (None if quote.body_type is None else int(quote.body_type)) == checks["btype"]
    if s.tee == "tdx":
        td = TdxQuote.from_bytes(s.quote).report
        assert td.to_bytes() == quote.body
        assert TdReport.from_bytes(td.to_bytes()) == td
        for name, attr in (
            ("tee_tcb_svn", "tee_tcb_svn"),
            ("mr_seam", "mr_seam"),
            ("mr_td", "mr_td"),
            ("td_attributes", "td_attributes"),
            ("xfam", "xfam"),
            ("report_data", "report_data"),
            ("mr_config_id", "mr_config_id"),
            ("mr_owner", "mr_owner"),
            ("mr_owner_config", "mr_owner_config"),
            ("rtmr0", "rtmr0"),
            ("rtmr1", "rtmr1"),
            ("rtmr2", "rtmr2"),
            ("rtmr3", "rtmr3"),
        ):
            assert getattr(td, attr).hex() == report[name], name
        if "tee_tcb_svn2" in report:
            assert td.tee_tcb_svn2 is not None and td.mr_servicetd is not None
            assert td.tee_tcb_svn2.hex() == report["tee_tcb_svn2"]
            assert td.mr_servicetd.hex() == report["mr_servicetd"]
        else:
            assert td.tee_tcb_svn2 is None
    else:
        body = SgxQuote.from_bytes(s.quote).report
        assert body.cpu_svn.hex() == report["cpu_svn"]
        assert body.attributes.hex() == report["attributes"]
        assert body.mr_enclave.hex() == report["mr_enclave"]
        assert body.mr_signer.hex() == report["mr_signer"]
        assert (body.isv_prod_id, body.isv_svn) == (report["isv_prod_id"], report["isv_svn"])
        assert body.report_data.hex() == report["report_data"]
    qe = quote.signature_data.qe
    assert EnclaveReport.from_bytes(qe.qe_report.to_bytes()) == qe.qe_report
    assert quote.signature_data.wrapped is (quote.version >= 4)


@pytest.mark.parametrize("s", ALL_SAMPLES, ids=ALL_IDS)
def test_pck_extensions_match_manifest(s: DcapSample) -> None:
    quote = Quote.from_bytes(s.quote)
    certs = load_certificates(quote.signature_data.qe.certification_data.data)
    assert len(certs) == s.checks["chain_len"]
    info = pck_info(certs[0])
    assert info.fmspc.hex() == s.checks["fmspc"]
    tcb = s.tcb
    if tcb is not None:
        assert list(info.sgx_tcb_components) == tcb["sgx_tcb_comps"]
        assert info.pcesvn == tcb["pcesvn"]
        assert info.cpusvn == bytes(info.sgx_tcb_components)


@needs_samples
@pytest.mark.parametrize("name", ["dcap-qvl-v4-uptodate", "trustee-v5-emr", "dcap-qvl-sgx"])
def test_every_truncation_is_a_format_error(name: str) -> None:
    data = sample(name).quote
    end = len(Quote.from_bytes(data).to_bytes())
    for cut in range(end):
        with pytest.raises(EvidenceFormatError):
            Quote.from_bytes(data[:cut])


@needs_samples
def test_wrong_tee_for_the_quote_kind_is_a_format_error() -> None:
    with pytest.raises(EvidenceFormatError, match="not a TDX quote"):
        TdxQuote.from_bytes(SGX_SAMPLES[0].quote)
    with pytest.raises(EvidenceFormatError, match="not an SGX quote"):
        SgxQuote.from_bytes(TDX_SAMPLES[0].quote)


@needs_samples
def test_header_and_v5_body_fields_are_checked() -> None:
    v5 = bytearray(sample("trustee-v5-emr").quote)
    bad_version = bytearray(v5)
    bad_version[0] = 7
    with pytest.raises(EvidenceFormatError, match="version 7"):
        Quote.from_bytes(bytes(bad_version))
    bad_type = bytearray(v5)
    bad_type[48] = 9
    with pytest.raises(EvidenceFormatError, match="body type"):
        Quote.from_bytes(bytes(bad_type))
    bad_size = bytearray(v5)
    bad_size[50] ^= 1
    with pytest.raises(EvidenceFormatError, match="must be"):
        Quote.from_bytes(bytes(bad_size))
    bad_tee = bytearray(v5)
    bad_tee[4] = 0x42
    with pytest.raises(EvidenceFormatError, match="TEE type"):
        Quote.from_bytes(bytes(bad_tee))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=6000))
def test_arbitrary_bytes_only_raise_format_errors(data: bytes) -> None:
    for parse in (
        Quote.from_bytes,
        TdxQuote.from_bytes,
        SgxQuote.from_bytes,
        decode_evidence,
        CcelLog.from_bytes,
        CcelTable.from_bytes,
        TdReport.from_bytes,
        EnclaveReport.from_bytes,
        parse_sgx_extensions,
        TcbInfo.from_signed,
        QeIdentity.from_signed,
        lambda d: split_signed(d, "tcbInfo"),
    ):
        with contextlib.suppress(EvidenceFormatError):
            parse(data)


@needs_samples
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_quotes_only_raise_format_errors(data: st.DataObject) -> None:
    s = data.draw(st.sampled_from(ALL_SAMPLES))
    raw = bytearray(s.quote)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        Quote.from_bytes(bytes(raw[:cut]))
        decode_evidence(bytes(raw[:cut]))
    except EvidenceFormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_mutated_pcs_json_only_raises_format_errors(noise: bytes) -> None:
    body = b'{"tcbInfo":{"id":"TDX","version":3},"signature":"' + b"00" * 64 + b'"}'
    text = noise.decode("latin-1").encode("utf-8")
    for data in (body + text, body[: len(text) % len(body)], text + body):
        try:
            doc = split_signed(data, "tcbInfo")
            TcbInfo.from_signed(doc.signed_bytes)
        except EvidenceFormatError:
            pass


def test_signed_span_is_the_exact_substring_and_compact_fallback() -> None:
    inner = '{"id": "SGX",  "version":3}'
    body = ('{ "tcbInfo" : ' + inner + ' ,\n "signature": "' + "ab" * 64 + '" }').encode()
    doc = split_signed(body, "tcbInfo")
    assert doc.signed_bytes == inner.encode()
    assert doc.signature == bytes.fromhex("ab" * 64)
    assert doc.compact_bytes == b'{"id":"SGX","version":3}'
    compact = SignedDocument("tcbInfo", b'{"a":1}', bytes(64))
    assert compact.compact_bytes is None
    with pytest.raises(EvidenceFormatError, match="duplicate"):
        split_signed(b'{"tcbInfo":{},"tcbInfo":{},"signature":"00"}', "tcbInfo")
    with pytest.raises(EvidenceFormatError, match="64 bytes"):
        split_signed(b'{"tcbInfo":{},"signature":"00"}', "tcbInfo")


@needs_samples
def test_corpus_pcs_documents_parse() -> None:
    s = sample("go-tdx-guest-spr-v4")
    tcb = split_signed((s.path / "tcbinfo.json").read_bytes(), "tcbInfo")
    info = TcbInfo.from_signed(tcb.signed_bytes)
    assert (info.id, info.version, info.fmspc.hex()) == ("TDX", 3, "50806f000000")
    assert info.tcb_evaluation_data_number == s.tcb["tcb_eval_num"]  # type: ignore[index]
    assert info.tcb_levels[0].tdx_components is not None
    qe = split_signed((s.path / "qe_identity.json").read_bytes(), "enclaveIdentity")
    identity = QeIdentity.from_signed(qe.signed_bytes)
    assert (identity.id, identity.isvprodid) == ("TD_QE", 2)


def test_der_oid_round_trip_and_bounds() -> None:
    for dotted in ("1.2.840.113741.1.13.1.2.17", "2.999.1", "0.9.2342"):
        tag, value = read_tlv(encode_oid(dotted))
        assert tag == 0x06
        assert decode_oid_value(value) == dotted
    with pytest.raises(EvidenceFormatError):
        iter_tlvs(b"\x30\x05\x02\x01")
    with pytest.raises(EvidenceFormatError):
        decode_oid_value(b"\x81")


@needs_samples
def test_evidence_text_and_kbs_json_forms_decode_to_the_same_quote() -> None:
    raw = sample("gcp-cos113-ccel").quote
    log = (sample("gcp-cos113-ccel").path / "ccel_data.bin").read_bytes()
    assert decode_evidence(raw).quote == raw
    assert decode_evidence(raw.hex().encode() + b"\n").quote == raw
    assert decode_evidence(base64.b64encode(raw)).quote == raw
    kbs = json.dumps(
        {"quote": base64.b64encode(raw).decode(), "cc_eventlog": base64.b64encode(log).decode()}
    ).encode()
    evidence = decode_evidence(kbs)
    assert (evidence.quote, evidence.event_log) == (raw, log)
    assert (
        decode_evidence(json.dumps({"quote": base64.b64encode(raw).decode()}).encode()).event_log
        is None
    )
    with pytest.raises(EvidenceFormatError):
        decode_evidence(b'{"cc_eventlog": null}')
    with pytest.raises(EvidenceFormatError):
        decode_evidence(b"text that is neither hex nor base64 !!")


@needs_samples
def test_ccel_table_and_log_parse() -> None:
    s = sample("gcp-cos113-ccel")
    table = CcelTable.from_bytes((s.path / "ccel_table.bin").read_bytes())
    assert table.log_area_minimum_length == len((s.path / "ccel_data.bin").read_bytes())
    log = CcelLog.from_bytes((s.path / "ccel_data.bin").read_bytes())
    assert log.digest_sizes == ((0x000C, 48),)
    assert {e.mr_index for e in log.events} <= {1, 2, 3, 4}
    broken = bytearray((s.path / "ccel_table.bin").read_bytes())
    broken[40] ^= 1
    with pytest.raises(EvidenceFormatError, match="checksum"):
        CcelTable.from_bytes(bytes(broken))
