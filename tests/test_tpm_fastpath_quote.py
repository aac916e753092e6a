"""The quote fast paths give exactly what the field-by-field code gives.

* ``Attest.from_bytes`` (precompiled layout for quotes, shared parsed selections) equals
  ``Attest.read`` over a Reader; ``TpmtSignature.from_bytes`` equals ``TpmtSignature.read``;
  ``PcrBanks.from_tpm2_tools`` (layouts remembered by header) equals its general reader:
  the same values, or the same error, on real, simulated and randomly mutated bytes.
* ``verify_quote`` (selection columns computed once, no re-serialization) gives the same
  VerifiedQuote, or fails with the same error, as the previous implementation (kept
  below, verbatim, as the reference) on valid and tampered quotes of every scheme.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tpm_corpus import QUOTES
from veritee.binary import Reader
from veritee.errors import EvidenceFormatError, MismatchError, VerificationError
from veritee.tee.tpm import structures
from veritee.tee.tpm.pcrs import PcrBanks, parse_pcr_file
from veritee.tee.tpm.sim import SimulatedTpm
from veritee.tee.tpm.structures import (
    HASH_SIZES,
    TPM_GENERATED_VALUE,
    Attest,
    AttestType,
    CertifyInfo,
    ObjectAttr,
    PcrSelection,
    PcrSelectionList,
    QuoteInfo,
    TpmAlg,
    TpmtSignature,
    hash_name,
)
from veritee.tee.tpm.verify import (
    _AK_REQUIRED_BITS,
    AK_REQUIRED,
    AttestationKey,
    VerifiedQuote,
    _hasher,
    load_attestation_key,
    verify_quote,
    verify_signature,
)


def outcome(fn: Callable[[], object]) -> tuple[Any, ...]:
    try:
        value = fn()
    except Exception as exc:
        return ("error", type(exc), str(exc), getattr(exc, "hint", None))
    extra = value.to_bytes() if isinstance(value, Attest | TpmtSignature) else None
    return ("ok", value, extra)


def reference_attest(data: bytes) -> Attest:
    if not isinstance(data, bytes):
        raise EvidenceFormatError("TPMS_ATTEST must be bytes")
    rd = Reader(data, what="TPMS_ATTEST")
    value = Attest.read(rd)
    rd.expect_end()
    return value


def reference_signature(data: bytes) -> TpmtSignature:
    rd = Reader(data, what="TPMT_SIGNATURE")
    value = TpmtSignature.read(rd)
    rd.expect_end()
    return value


def reference_verify_quote(
    attest: Attest, signature: TpmtSignature, ak: AttestationKey, pcrs: PcrBanks, *,
    expected_nonce: bytes | None, message: bytes | None = None,
    require_ak_attributes: bool = True,
) -> VerifiedQuote:
    """verify_quote as it was before the fast path (verbatim but for the names)."""
    signed = message if message is not None else attest.to_bytes()
    if ak.public is not None and require_ak_attributes and (
        ak.public.object_attributes & _AK_REQUIRED_BITS != _AK_REQUIRED_BITS
    ):
        missing = AK_REQUIRED & ~ObjectAttr(ak.public.object_attributes)
        if missing:
            raise VerificationError(
                f"the AK is not a restricted signing key (missing {missing!r})",
                hint="an unrestricted key can sign forged quotes; create the AK with tpm2_createak",
            )
    verify_signature(signed, signature, ak)
    if attest.magic != TPM_GENERATED_VALUE:
        raise VerificationError(f"signed structure is not TPM-generated (magic {attest.magic:#x})")
    quote = attest.quote
    if attest.type != AttestType.QUOTE or quote is None:
        raise MismatchError(f"signed structure is a {attest.type:#x} attestation, not a quote")
    if expected_nonce is not None and not hmac.compare_digest(attest.extra_data, expected_nonce):
        raise MismatchError(
            f"quote nonce (extraData {attest.extra_data.hex() or 'empty'}) is not the expected "
            f"{expected_nonce.hex() or 'empty'} value",
            hint="the quote was made for another challenge (replayed or stale)",
        )
    alg = signature.hash_alg
    assert alg is not None
    if len(quote.pcr_digest) != HASH_SIZES.get(alg, -1):
        raise MismatchError(
            f"pcrDigest is {len(quote.pcr_digest)} bytes, not a {hash_name(alg)} digest"
        )
    sels = quote.pcr_select.selections
    if len({s.hash_alg for s in sels}) != len(sels):
        raise EvidenceFormatError("quote selects a PCR bank twice")
    selected = quote.pcr_select._items
    values = pcrs.values_for(quote.pcr_select)
    start = 0
    for s in sels:
        n = len(s.pcrs)
        size = HASH_SIZES.get(s.hash_alg)
        if size is not None and any(len(v) != size for v in values[start : start + n]):
            raise EvidenceFormatError(f"a {hash_name(s.hash_alg)} PCR value has the wrong size")
        start += n
    computed = _hasher(alg)(b"".join(values)).digest()
    if not hmac.compare_digest(computed, quote.pcr_digest):
        raise MismatchError(
            f"PCR values do not match the quote's PCR digest ({quote.pcr_select.describe()})",
            hint="the PCR file is not the one read with this quote, or was altered",
        )
    quoted = PcrBanks(tuple((a, p, v) for (a, p), v in zip(selected, values, strict=True)))
    return VerifiedQuote(attest, signature, ak, quoted, expected_nonce is not None)


_SIMS: dict[tuple[int, int], SimulatedTpm] = {}
SCHEMES = [(TpmAlg.RSASSA, TpmAlg.SHA256), (TpmAlg.RSASSA, TpmAlg.SHA1),
           (TpmAlg.RSAPSS, TpmAlg.SHA256), (TpmAlg.ECDSA, TpmAlg.SHA256),
           (TpmAlg.ECDSA, TpmAlg.SHA384)]


def sim(scheme: tuple[int, int]) -> SimulatedTpm:
    if scheme not in _SIMS:
        curve = ec.SECP384R1() if scheme[1] == TpmAlg.SHA384 else None
        s = SimulatedTpm.generate(*scheme, curve=curve)
        for pcr in range(24):
            s.extend(pcr, bytes([pcr]) * 3)
        _SIMS[scheme] = s
    return _SIMS[scheme]


BANKS = [TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384]
selections = st.lists(
    st.tuples(st.sampled_from(BANKS), st.sets(st.integers(0, 23)), st.sampled_from([3, 3, 4])),
    min_size=1, max_size=3, unique_by=lambda t: t[0],
).map(lambda sels: PcrSelectionList(tuple(PcrSelection.of(a, sorted(p), size)
                                          for a, p, size in sels)))


def _mutate(data: st.DataObject, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "set" and b:
            b[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b.insert(pos, data.draw(st.integers(0, 255)))
        elif b:
            del b[pos]
    if data.draw(st.booleans()):
        b = b[: data.draw(st.integers(0, len(b)))]
    if data.draw(st.integers(0, 5)) == 0:
        b += data.draw(st.binary(min_size=1, max_size=4))
    return bytes(b)


# -- byte formats ----------------------------------------------------------------------------


@pytest.mark.skipif(not QUOTES, reason="corpus absent")
def test_corpus_quotes_parse_as_the_field_by_field_reader_does() -> None:
    for q in QUOTES:
        fast = Attest.from_bytes(q.attest)
        assert fast == reference_attest(q.attest) and fast.to_bytes() == q.attest
        assert fast.signed_bytes() is q.attest
        assert TpmtSignature.from_bytes(q.signature) == reference_signature(q.signature)
        changed = replace(fast, extra_data=b"\x01")
        assert changed.signed_bytes() == changed.to_bytes() != q.attest  # no stale bytes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), scheme=st.sampled_from(SCHEMES), sel=selections,
       nonce=st.binary(max_size=70))
def test_mutated_quotes_and_signatures_parse_exactly_as_the_reference(
    data: st.DataObject, scheme: tuple[int, int], sel: PcrSelectionList, nonce: bytes
) -> None:
    s = sim(scheme)
    msg, sig = s.quote(sel, nonce[:64])
    seeds = [msg, sig.to_bytes()] + [q.attest for q in QUOTES[:2]] + [q.signature
                                                                     for q in QUOTES[:2]]
    kind = data.draw(st.sampled_from(["quote", "other", "certify"]))
    if kind == "certify":  # another attestation kind: the general reader only
        msg = msg[:4] + AttestType.CERTIFY.to_bytes(2, "big") + msg[6:]
    elif kind == "other":
        msg = msg[:4] + AttestType.TIME.to_bytes(2, "big") + msg[6:]
    seeds.append(msg)
    raw = _mutate(data, data.draw(st.sampled_from(seeds)))
    fast = outcome(lambda: Attest.from_bytes(raw))
    assert fast == outcome(lambda: reference_attest(raw))
    if fast[0] == "ok":
        assert fast[1].signed_bytes() is raw
    assert outcome(lambda: TpmtSignature.from_bytes(raw)) == outcome(
        lambda: reference_signature(raw))


def test_every_single_byte_change_truncation_and_extension_reads_as_the_reference() -> None:
    """Exhaustive near-misses of valid inputs: each byte set to a few telling values, every
    truncation, a byte more (the fast readers must refuse or accept exactly as the
    reference, with the same message)."""
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, list(range(24))),
                            PcrSelection.of(TpmAlg.SHA1, [0, 7, 10])))
    cases: list[tuple[bytes, Callable[[bytes], object], Callable[[bytes], object]]] = []
    for scheme in (SCHEMES[0], SCHEMES[3]):
        s = sim(scheme)
        msg, sig = s.quote(sel, b"nonce")
        blob = s.pcr_banks().to_tpm2_tools(sel)
        PcrBanks.from_tpm2_tools(blob)  # the layout is remembered from here on
        cases += [(msg, Attest.from_bytes, reference_attest),
                  (sig.to_bytes(), TpmtSignature.from_bytes, reference_signature),
                  (blob, PcrBanks.from_tpm2_tools, PcrBanks._from_tpm2_tools)]
    for raw, fast, ref in cases:
        variants = [raw[:cut] for cut in range(len(raw))] + [raw + b"\0", raw + b"\xff"]
        for pos in range(len(raw)):
            for value in {0, 1, 2, 0x21, 0x7F, 0x80, 0xFF, raw[pos] ^ 1}:
                variants.append(raw[:pos] + bytes([value]) + raw[pos + 1 :])
        for v in variants:
            assert outcome(lambda v=v, f=fast: f(v)) == outcome(lambda v=v, f=ref: f(v))


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def test_oversized_fields_with_consistent_lengths_read_as_the_reference() -> None:
    """Every size limit the reference enforces, hit by inputs whose lengths add up."""
    head = TPM_GENERATED_VALUE.to_bytes(4, "big") + AttestType.QUOTE.to_bytes(2, "big")
    clock = bytes(8) + bytes(4) + bytes(4) + b"\x01" + bytes(8)
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, [0]),)).to_bytes()
    attests = []
    for signer, extra, digest in ((66, 64, 32), (67, 0, 32), (0, 66, 32), (0, 67, 32),
                                  (0, 0, 64), (0, 0, 65), (0, 0, 0)):
        attests.append(head + _tpm2b(b"s" * signer) + _tpm2b(b"e" * extra) + clock + sel
                       + _tpm2b(b"d" * digest))
    for count, size in ((16, 3), (17, 3), (1, 32), (1, 33), (0, 0)):
        sels = count.to_bytes(4, "big") + (TpmAlg.SHA256.to_bytes(2, "big") + bytes([size])
                                           + b"\xff" * size) * count
        attests.append(head + _tpm2b(b"") + _tpm2b(b"") + clock + sels + _tpm2b(b"d" * 32))
    for safe in (0, 1, 2, 255):
        attests.append(head + _tpm2b(b"") + _tpm2b(b"") + clock[:16] + bytes([safe])
                       + clock[17:] + sel + _tpm2b(b"d" * 32))
    for raw in attests:
        assert outcome(lambda raw=raw: Attest.from_bytes(raw)) == outcome(
            lambda raw=raw: reference_attest(raw))
    sigs = []
    for alg in (TpmAlg.RSASSA, TpmAlg.RSAPSS):
        for size in (0, 256, 512, 513):
            sigs.append(alg.to_bytes(2, "big") + TpmAlg.SHA256.to_bytes(2, "big")
                        + _tpm2b(b"x" * size))
    for alg in (TpmAlg.ECDSA, TpmAlg.ECDAA, TpmAlg.SM2, TpmAlg.ECSCHNORR):
        for r, s_ in ((32, 32), (128, 128), (129, 1), (1, 129), (0, 0)):
            sigs.append(alg.to_bytes(2, "big") + TpmAlg.SHA256.to_bytes(2, "big")
                        + _tpm2b(b"r" * r) + _tpm2b(b"s" * s_))
    for raw in sigs:
        assert outcome(lambda raw=raw: TpmtSignature.from_bytes(raw)) == outcome(
            lambda raw=raw: reference_signature(raw))


def test_shared_selections_are_the_parsed_ones() -> None:
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, [0, 7]),))
    raw = sel.to_bytes()
    assert structures.selection_list_of(raw) == sel
    assert structures.selection_list_of(raw) is structures.selection_list_of(raw)
    with pytest.raises(EvidenceFormatError, match="trailing"):
        structures.selection_list_of(raw + b"\0")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), sel=selections, unknown=st.booleans())
def test_mutated_pcr_files_parse_exactly_as_the_reference(
    data: st.DataObject, sel: PcrSelectionList, unknown: bool
) -> None:
    s = sim(SCHEMES[0])
    banks = s.pcr_banks()
    if unknown:  # a bank of unknown digest size: never a remembered layout
        extra = {(0x0099, p): bytes([p]) * (p % 9 + 1) for p in range(24)}
        banks = PcrBanks(banks.values + tuple((a, p, v) for (a, p), v in extra.items()))
        sel = PcrSelectionList((*sel.selections, PcrSelection.of(0x0099, [1, 5, 9])))
    blob = banks.to_tpm2_tools(sel)
    # Warm the layout memo with the valid file, then read it and a mutated one both ways.
    for raw in (blob, blob, _mutate(data, blob)):
        fast = outcome(lambda raw=raw: PcrBanks.from_tpm2_tools(raw))
        ref = outcome(lambda raw=raw: PcrBanks._from_tpm2_tools(raw))
        assert fast == ref
        if fast[0] == "ok":
            (sel_f, banks_f), (sel_r, banks_r) = fast[1], ref[1]
            assert banks_f.values == banks_r.values
            assert banks_f.__dict__["_file_order"] == banks_r.__dict__["_file_order"]
            assert banks_f.values_for(sel_f) == banks_r.values_for(sel_r)
            assert parse_pcr_file(raw) == banks_r


# -- verify_quote ----------------------------------------------------------------------------


def _tampered_banks(banks: PcrBanks, how: str, sel: PcrSelectionList) -> PcrBanks:
    items = list(banks.values)
    wanted = set(sel.items())
    idx = next((i for i, (a, p, _) in enumerate(items) if (a, p) in wanted), 0)
    a, p, v = items[idx]
    if how == "value":
        items[idx] = (a, p, bytes([v[0] ^ 1]) + v[1:])
    elif how == "short":
        items[idx] = (a, p, v[:-1])
    elif how == "long":
        items[idx] = (a, p, v + b"\0")
    elif how == "missing":
        del items[idx]
    return PcrBanks(tuple(items))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scheme=st.sampled_from(SCHEMES), sel=selections, nonce=st.binary(max_size=32),
       how=st.sampled_from(["none", "nonce", "no-nonce", "value", "short", "long", "missing",
                            "twice", "digest-size", "magic", "certify", "message", "pem",
                            "unrestricted", "file"]))
def test_verify_quote_gives_what_the_previous_implementation_gave(
    scheme: tuple[int, int], sel: PcrSelectionList, nonce: bytes, how: str
) -> None:
    s = sim(scheme)
    msg, sig = s.quote(sel, nonce)
    attest = Attest.from_bytes(msg)
    ak = s.ak
    pcrs = s.pcr_banks()
    expected: bytes | None = nonce
    message: bytes | None = None
    if how == "nonce":
        expected = nonce + b"!"
    elif how == "no-nonce":
        expected = None
    elif how in ("value", "short", "long", "missing"):
        pcrs = _tampered_banks(pcrs, how, sel)
    elif how in ("twice", "digest-size", "magic", "certify"):
        q = attest.quote
        assert q is not None
        if how == "twice":
            q = QuoteInfo(PcrSelectionList(sel.selections + sel.selections[:1]), q.pcr_digest)
        elif how == "digest-size":
            q = QuoteInfo(q.pcr_select, q.pcr_digest + b"\0")
        crafted = replace(attest, attested=q, magic=attest.magic ^ (1 if how == "magic" else 0))
        if how == "certify":
            crafted = replace(crafted, type=AttestType.CERTIFY,
                              attested=CertifyInfo(b"\0\x0b" + bytes(32), b"\0\x0b" + bytes(32)))
        raw = crafted.to_bytes()
        sig = s.sign(raw)
        attest = Attest.from_bytes(raw)
    elif how == "message":
        message = msg + b"x"
    elif how == "pem":
        ak = load_attestation_key(ak.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    elif how == "unrestricted":
        assert ak.public is not None
        ak = AttestationKey(ak.key, replace(ak.public, object_attributes=(
            ak.public.object_attributes & ~int(ObjectAttr.RESTRICTED))))
    elif how == "file":
        pcrs = parse_pcr_file(pcrs.to_tpm2_tools(sel))
    for m in (message, msg if how == "none" else None):
        new = outcome(lambda m=m: verify_quote(attest, sig, ak, pcrs, expected_nonce=expected,
                                               message=m))
        old = outcome(lambda m=m: reference_verify_quote(attest, sig, ak, pcrs,
                                                         expected_nonce=expected, message=m))
        assert new == old, how
        if how in ("none", "no-nonce", "file", "pem"):
            assert new[0] == "ok"
        if new[0] == "ok":
            assert new[1].pcrs.values == old[1].pcrs.values


@pytest.mark.skipif(not QUOTES, reason="corpus absent")
def test_corpus_quotes_verify_as_before_with_their_pcr_files() -> None:
    for q in QUOTES:
        attest = Attest.from_bytes(q.attest)
        sig = TpmtSignature.from_bytes(q.signature)
        ak = load_attestation_key(q.ak)
        quote = attest.quote
        assert quote is not None
        blob = q.pcrs.to_tpm2_tools(quote.pcr_select)
        for pcrs in (q.pcrs, parse_pcr_file(blob), parse_pcr_file(blob)):
            for nonce in (b"", None, b"\x01"):
                args = (attest, sig, ak, pcrs)
                new = outcome(lambda a=args, n=nonce: verify_quote(*a, expected_nonce=n))
                old = outcome(lambda a=args, n=nonce: reference_verify_quote(*a, expected_nonce=n))
                assert new == old
                assert (new[0] == "ok") == (nonce != b"\x01")
