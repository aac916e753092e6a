"""RIMs: Exclusive C14N, the XML signature, and golden-measurement comparison.

No NVIDIA-signed RIM is in the corpus, so signatures are tested with RIMs the
simulated RIM service signs; the canonicalization is checked against Python's
C14N 2.0 (which agrees with Exclusive C14N when every namespace is declared where
it is used) and against the Exclusive C14N rules for the cases where they differ.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
import xml.etree.ElementTree as ET

import pytest

from veritee.errors import (
    ChainError,
    ConfigError,
    EvidenceFormatError,
    ExpiredError,
    MismatchError,
    SignatureError,
)
from veritee.tee.nvidia.claims import NvidiaClaims
from veritee.tee.nvidia.report import NvidiaReport
from veritee.tee.nvidia.rim import Rim, exclusive_c14n, parse_xml
from veritee.tee.nvidia.sim import SimulatedNvidiaDevice, SimulatedRimSigner
from veritee.tee.nvidia.verify import (
    NvidiaRoots,
    VerifiedRim,
    compare_measurements,
    verify_report,
    verify_rim,
)

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def gpu() -> SimulatedNvidiaDevice:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedNvidiaDevice.hopper()


@pytest.fixture(scope="module")
def signer() -> SimulatedRimSigner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedRimSigner.generate()


# -- canonicalization -----------------------------------------------------------------------

LOCAL_NAMESPACE_DOCS = [
    '<a xmlns="urn:x" b="2" a="1"><c>t &amp; &lt; &gt; "q"</c><d/></a>',
    '<p:a xmlns:p="urn:p" xmlns:q="urn:q" q:z="1" y="2" p:x="3">\n  <p:b>x\r\ny</p:b>\n</p:a>',
    '<a at="tab\t&#9;nl&#10;cr&#13;amp&amp;lt&lt;quot&quot;gt>"><b xmlns="urn:b"/></a>',
    '<a xmlns="urn:1"><b xmlns="urn:2"><c xmlns="urn:1">é ü</c></b></a>',
    '<?xml version="1.0"?>\n<!-- c --><a><!-- in --><b>1</b><![CDATA[<x>&]]></a>\n<!-- after -->',
]


@pytest.mark.parametrize("doc", LOCAL_NAMESPACE_DOCS)
def test_c14n_agrees_with_c14n2_where_namespaces_are_declared_where_used(doc: str) -> None:
    ours = exclusive_c14n(parse_xml(doc.encode()))
    assert ours.decode() == ET.canonicalize(doc)


def test_exclusive_c14n_moves_namespaces_to_where_they_are_used() -> None:
    doc = (
        b'<r xmlns="urn:r" xmlns:u="urn:unused" xmlns:h="urn:h">'
        b'<x h:v="1"/><ds:s xmlns:ds="urn:ds"><ds:i a="b"/></ds:s><y xmlns=""/></r>'
    )
    root = parse_xml(doc)
    assert exclusive_c14n(root) == (
        b'<r xmlns="urn:r"><x xmlns:h="urn:h" h:v="1"></x>'
        b'<ds:s xmlns:ds="urn:ds"><ds:i a="b"></ds:i></ds:s><y xmlns=""></y></r>'
    )
    # A subtree carries the namespaces it uses from its ancestors, and only those.
    inner = root.elements()[1].elements()[0]
    assert exclusive_c14n(inner) == b'<ds:i xmlns:ds="urn:ds" a="b"></ds:i>'
    x = root.elements()[0]
    assert exclusive_c14n(x) == b'<x xmlns="urn:r" xmlns:h="urn:h" h:v="1"></x>'
    # The enveloped transform: the omitted subtree leaves its surrounding text.
    assert exclusive_c14n(root, omit=root.elements()[1]) == (
        b'<r xmlns="urn:r"><x xmlns:h="urn:h" h:v="1"></x><y xmlns=""></y></r>'
    )


def test_xml_parser_refuses_dtds_and_processing_instructions() -> None:
    for doc in (
        b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
        b"<a><?pi data?></a>",
        b"<a><b></a>",
        b"<p:a/>",
        b"<a/><b/>",
        b"<a>" * 40 + b"</a>" * 40,
    ):
        with pytest.raises(EvidenceFormatError):
            parse_xml(doc)


# -- signed RIMs ----------------------------------------------------------------------------


def _rim(signer: SimulatedRimSigner, gpu: SimulatedNvidiaDevice, **kw: object) -> bytes:
    args: dict[str, object] = {
        "tag_id": "NV_GPU_DRIVER_GH100_550.90.07",
        "version": "550.90.07",
        "golden": {i: [gpu.measurements[i]] for i in range(1, 33)},
    }
    args.update(kw)
    return signer.sign(**args)  # type: ignore[arg-type]


def _verified(signer: SimulatedRimSigner, data: bytes) -> VerifiedRim:
    return verify_rim(Rim.from_bytes(data), NvidiaRoots.rim().with_root(signer.root), NOW)


def test_signed_rim_round_trip_and_verify(
    signer: SimulatedRimSigner, gpu: SimulatedNvidiaDevice
) -> None:
    data = _rim(signer, gpu)
    rim = Rim.from_bytes(data)
    assert rim.to_bytes() == data
    assert rim.colloquial_version == "550.90.07" and len(rim.measurements) == 32
    assert rim.measurements[0].index == 0 and rim.measurements[0].block_index == 1
    verified = _verified(signer, data)
    assert verified.simulated
    with pytest.raises(ChainError):  # NVIDIA's pinned RIM root only: refused
        verify_rim(rim, NvidiaRoots.rim(), NOW)
    with pytest.raises(ChainError):  # a device root is not a RIM root
        verify_rim(rim, NvidiaRoots.device().with_root(gpu.root), NOW)
    with pytest.raises(ExpiredError):
        verify_rim(rim, NvidiaRoots.rim().with_root(signer.root), NOW + dt.timedelta(days=3650))


def test_edited_rims_fail_the_signature(
    signer: SimulatedRimSigner, gpu: SimulatedNvidiaDevice
) -> None:
    data = _rim(signer, gpu)
    golden = gpu.measurements[5].hex().encode()
    edits = [
        data.replace(golden, bytes(48).hex().encode()),  # a golden value
        data.replace(b'colloquialVersion="550.90.07"', b'colloquialVersion="550.90.08"'),
        data.replace(b'index="4" active="True"', b'index="4" active="False"'),
        data.replace(b"</Payload>", b"<Extra/></Payload>"),
        data.replace(b'<ds:Reference URI="">', b'<ds:Reference URI="" Id="r">'),  # SignedInfo
    ]
    for edited in edits:
        assert edited != data
        with pytest.raises(SignatureError):
            _verified(signer, edited)
    # Whitespace between elements is covered too; the XML declaration and comments are not.
    with pytest.raises(SignatureError):
        _verified(signer, data.replace(b"<Payload>\n", b"<Payload>\n\n"))
    _verified(signer, data.replace(b"<Payload>", b"<!-- note --><Payload>"))


def test_signature_wrapping_and_unsupported_profiles_are_refused(
    signer: SimulatedRimSigner, gpu: SimulatedNvidiaDevice
) -> None:
    data = _rim(signer, gpu)
    start, end = data.index(b"<ds:Signature>"), data.index(b"</ds:Signature>") + 15
    signature = data[start:end]
    cases = [
        data.replace(b"</Payload>", signature + b"</Payload>"),  # a second Signature
        data[:start] + data[end:],  # no Signature
        data.replace(b'URI=""', b'URI="#payload"'),
        data.replace(b"xml-exc-c14n#", b"xml-c14n-20010315", 1),
        data.replace(b"<ds:Transforms>", b"<ds:Transforms><ds:Transform Algorithm='x'/>"),
        data.replace(b"SHA384:Hash0", b"SHA384:HashX", 1),
        data.replace(b'alternatives="1"', b'alternatives="0"', 1),
        data.replace(b"<SoftwareIdentity ", b"<SoftwareIdentityX ").replace(
            b"</SoftwareIdentity>", b"</SoftwareIdentityX>"
        ),
    ]
    for case in cases:
        with pytest.raises(EvidenceFormatError):
            Rim.from_bytes(case)


def test_measurement_comparison(signer: SimulatedRimSigner, gpu: SimulatedNvidiaDevice) -> None:
    roots = NvidiaRoots.device().with_root(gpu.root)
    nonce = os.urandom(32)
    report = NvidiaReport.from_bytes(gpu.report(nonce).to_bytes())
    driver = _verified(signer, _rim(signer, gpu))
    vbios_golden = {i: [os.urandom(48), gpu.measurements[i]] for i in range(33, 65)}
    vbios = _verified(
        signer,
        _rim(
            signer,
            gpu,
            tag_id="NV_GPU_VBIOS_1010_0200_882_96009F0001",
            version="96.00.9F.00.01",
            golden=vbios_golden,
        ),
    )
    verified = verify_report(
        report, gpu.chain, roots, NOW, expected_nonce=nonce, driver_rim=driver, vbios_rim=vbios
    )
    claims = NvidiaClaims.from_verified(verified).to_json()
    assert claims["driver_rim"] == "NV_GPU_DRIVER_GH100_550.90.07"
    assert claims["vbios_rim"] == "NV_GPU_VBIOS_1010_0200_882_96009F0001"

    # The device now runs other firmware in block 40 (a VBIOS measurement): refused.
    changed = gpu.with_measurements({40: os.urandom(48)})
    with pytest.raises(MismatchError, match="block 40"):
        verify_report(changed.report(nonce), gpu.chain, roots, NOW, vbios_rim=vbios)
    # ... unless the RIM marks that block inactive.
    lax = _verified(
        signer,
        _rim(signer, gpu, tag_id="v", version="96.00.9f.00.01", golden=vbios_golden, inactive=[40]),
    )
    verify_report(changed.report(nonce), gpu.chain, roots, NOW, vbios_rim=lax)
    # A block the RIM requires but the report lacks.
    extra = _verified(signer, _rim(signer, gpu, golden={70: [os.urandom(48)]}))
    with pytest.raises(MismatchError, match="no measurement block 70"):
        compare_measurements(report, extra, None)
    # Two RIMs claiming the same block.
    with pytest.raises(MismatchError, match="both"):
        compare_measurements(report, driver, driver)
    # A RIM for another driver version.
    other = _verified(signer, _rim(signer, gpu, version="535.104.05"))
    with pytest.raises(MismatchError, match=r"535\.104\.05"):
        verify_report(report, gpu.chain, roots, NOW, driver_rim=other)


def test_rims_are_for_gpus_only(signer: SimulatedRimSigner, gpu: SimulatedNvidiaDevice) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        switch = SimulatedNvidiaDevice.nvswitch()
    rim = _verified(signer, _rim(signer, gpu))
    roots = NvidiaRoots.device().with_root(switch.root)
    with pytest.raises(ConfigError):
        verify_report(switch.report(bytes(32)), switch.chain, roots, NOW, driver_rim=rim)
