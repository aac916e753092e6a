"""EK certificate quirks, each handled explicitly: the issuer's signature is always
checked over the bytes it signed, and a quirk never excuses anything else."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from veritee.errors import ChainError, EvidenceFormatError, MismatchError
from veritee.tee.tpm.ekcert import (
    EkTrustStore,
    _children,
    _encode,
    _read_tlv,
    load_ek_certificate,
    verify_ek_certificate,
)
from veritee.tee.tpm.verify import tpmt_public_of

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
EK_EKU = x509.ObjectIdentifier("2.23.133.8.1")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki() -> dict[str, object]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    root = (x509.CertificateBuilder().subject_name(_name("Vendor EK Root"))
            .issuer_name(_name("Vendor EK Root")).public_key(root_key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA384()))
    # An intermediate without BasicConstraints, as some vendors issue them.
    inter = (x509.CertificateBuilder().subject_name(_name("Vendor EK Intermediate"))
             .issuer_name(root.subject).public_key(inter_key.public_key())
             .serial_number(2).not_valid_before(start).not_valid_after(end)
             .sign(root_key, hashes.SHA384()))
    ek_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {"root": root, "inter": inter, "inter_key": inter_key, "ek_key": ek_key}


def _ek_tbs(pki: dict[str, object], serial: int = 77) -> bytes:
    """A TBSCertificate as a TPM vendor issues it: empty subject, critical SAN with the TPM
    attributes, TCG EK EKU, BasicConstraints CA:FALSE."""
    inter = pki["inter"]
    ek_key = pki["ek_key"]
    assert isinstance(inter, x509.Certificate) and isinstance(ek_key, rsa.RSAPrivateKey)
    san = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.1"), "id:564E5400"),
        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.2"), "NPCT75x"),
        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.3"), "id:00070002"),
    ]))])
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # discarded
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(inter.subject)
            .public_key(ek_key.public_key()).serial_number(serial)
            .not_valid_before(dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2041, 1, 1, tzinfo=dt.UTC))
            .add_extension(san, critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([EK_EKU]), critical=False)
            .sign(signer, hashes.SHA256()))
    return cert.tbs_certificate_bytes


def _sign(pki: dict[str, object], tbs: bytes) -> bytes:
    key = pki["inter_key"]
    assert isinstance(key, rsa.RSAPrivateKey)
    sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    alg = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSAEncryption
    return _encode(0x30, tbs + alg + _encode(0x03, b"\0" + sig))


def _store(pki: dict[str, object]) -> EkTrustStore:
    root, inter = pki["root"], pki["inter"]
    assert isinstance(root, x509.Certificate) and isinstance(inter, x509.Certificate)
    return EkTrustStore.from_certificates([root, inter])


def _rewrite_extensions(tbs: bytes, fn: object) -> bytes:
    node = _read_tlv(tbs, 0, len(tbs))
    parts = []
    for child in _children(tbs, node):
        if child.tag == 0xA3:
            (seq,) = _children(tbs, child)
            exts = [fn(tbs, e) for e in _children(tbs, seq)]  # type: ignore[operator]
            parts.append(_encode(0xA3, _encode(0x30, b"".join(exts))))
        else:
            parts.append(child.whole(tbs))
    return _encode(0x30, b"".join(parts))


def _explicit_defaults(tbs: bytes, ext: object) -> bytes:
    """Encode critical FALSE explicitly, and cA FALSE inside BasicConstraints (not DER)."""
    fields = _children(tbs, ext)  # type: ignore[arg-type]
    oid = fields[0].whole(tbs)
    rest = b"".join(f.whole(tbs) for f in fields[1:])
    if oid == bytes.fromhex("0603551d13"):  # basicConstraints: critical TRUE, cA FALSE explicit
        return _encode(0x30, oid + bytes.fromhex("0101ff") + _encode(
            0x04, _encode(0x30, bytes.fromhex("010100"))))
    if fields[1].tag != 0x01:  # not critical: say so explicitly
        return _encode(0x30, oid + bytes.fromhex("010100") + rest)
    return _encode(0x30, oid + rest)


def test_plain_vendor_ek_certificate_chains(pki: dict[str, object]) -> None:
    der = _sign(pki, _ek_tbs(pki))
    cert = load_ek_certificate(der)
    assert cert.quirks == ()
    ek_key = pki["ek_key"]
    assert isinstance(ek_key, rsa.RSAPrivateKey)
    ek_public = tpmt_public_of(ek_key.public_key())
    v = verify_ek_certificate(cert, _store(pki), NOW, tpm_public=ek_public)
    assert (v.manufacturer, v.model, v.version, v.ek_eku) == (
        "id:564E5400", "NPCT75x", "id:00070002", True)


def test_nv_padding_is_cut_at_the_der_length(pki: dict[str, object]) -> None:
    der = _sign(pki, _ek_tbs(pki))
    for pad in (bytes(300), b"\xff" * 20):
        cert = load_ek_certificate(der + pad)
        assert cert.quirks == ("nv-padding",) and cert.der == der
        verify_ek_certificate(cert, _store(pki), NOW)
    with pytest.raises(EvidenceFormatError, match="not NV padding"):
        load_ek_certificate(der + b"\x00garbage")


def test_explicit_default_booleans_are_read_but_signature_covers_original(
    pki: dict[str, object],
) -> None:
    tbs = _rewrite_extensions(_ek_tbs(pki), _explicit_defaults)
    der = _sign(pki, tbs)
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(der)  # strict DER parsers refuse it
    cert = load_ek_certificate(der)
    assert "der-explicit-default" in cert.quirks
    assert cert.tbs == tbs  # what the issuer signed, not the re-encoding
    bc = cert.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca is False and bc.critical
    v = verify_ek_certificate(cert, _store(pki), NOW)
    assert v.model == "NPCT75x"
    # A different serial inside the non-DER TBS, signature unchanged: refused.
    forged = bytearray(der)
    idx = der.index(bytes.fromhex("02014d"))  # INTEGER 77
    forged[idx + 2] = 78
    with pytest.raises(ChainError, match="does not verify"):
        verify_ek_certificate(load_ek_certificate(bytes(forged)), _store(pki), NOW)


def test_rsaes_oaep_labelled_key_is_read_as_rsa(pki: dict[str, object]) -> None:
    tbs = _ek_tbs(pki)
    oaep_alg = bytes.fromhex("300d06092a864886f70d0101073000")  # id-RSAES-OAEP, default params
    node = _read_tlv(tbs, 0, len(tbs))
    fields = _children(tbs, node)
    spki = fields[6]  # version, serial, signature, issuer, validity, subject, SPKI
    bits = _children(tbs, spki)[1]
    body = b"".join(
        _encode(0x30, oaep_alg + bits.whole(tbs)) if f is spki else f.whole(tbs) for f in fields)
    der = _sign(pki, _encode(0x30, body))
    cert = load_ek_certificate(der)
    assert "rsaes-oaep-spki" in cert.quirks
    ek_key = pki["ek_key"]
    assert isinstance(ek_key, rsa.RSAPrivateKey)
    assert cert.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == ek_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    verify_ek_certificate(cert, _store(pki), NOW, tpm_public=tpmt_public_of(ek_key.public_key()))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(MismatchError):
        verify_ek_certificate(cert, _store(pki), NOW, tpm_public=other.public_key())


def test_quirks_do_not_excuse_chain_or_time(pki: dict[str, object]) -> None:
    der = _sign(pki, _ek_tbs(pki)) + bytes(16)
    cert = load_ek_certificate(der)
    root = pki["root"]
    assert isinstance(root, x509.Certificate)
    with pytest.raises(ChainError):
        verify_ek_certificate(cert, EkTrustStore.from_certificates([root]), NOW)
    with pytest.raises(ChainError):
        verify_ek_certificate(cert, EkTrustStore({}, ()), NOW)
    from veritee.errors import ExpiredError

    with pytest.raises(ExpiredError):
        verify_ek_certificate(cert, _store(pki), dt.datetime(2050, 1, 1, tzinfo=dt.UTC))
    verify_ek_certificate(cert, _store(pki), None)  # validity left to the caller explicitly
    sig_flip = bytearray(der)
    sig_flip[len(der) - 16 - 5] ^= 1
    with pytest.raises(ChainError):
        verify_ek_certificate(load_ek_certificate(bytes(sig_flip)), _store(pki), NOW)
