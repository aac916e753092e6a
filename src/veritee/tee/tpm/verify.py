"""Verify a TPM 2.0 quote: AK signature, TPM_GENERATED magic and type, nonce, PCR digest.

Pure: takes the parsed quote, its signature, the AK, the claimed PCR values and the
expected nonce; returns :class:`VerifiedQuote` or raises a
:class:`~veritee.errors.VerificationError` subclass. Whether the AK itself is to be
trusted (allow-list, AK certificate, credential activation) is decided by the caller
with :mod:`veritee.tee.tpm.ekcert` and :mod:`veritee.tee.tpm.credential`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import EvidenceFormatError, MismatchError, SignatureError, VerificationError
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import (
    HASH_SIZES,
    NULL_SCHEME,
    NULL_SYMMETRIC,
    TPM_GENERATED_VALUE,
    Attest,
    AttestType,
    ClockInfo,
    EccCurve,
    EccParms,
    EccPoint,
    ObjectAttr,
    PcrSelectionList,
    QuoteInfo,
    RsaParms,
    Scheme,
    TpmAlg,
    TpmtPublic,
    TpmtSignature,
    hash_name,
    hashlib_name,
)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_CURVES: dict[int, type[ec.EllipticCurve]] = {
    EccCurve.NIST_P192: ec.SECP192R1,
    EccCurve.NIST_P224: ec.SECP224R1,
    EccCurve.NIST_P256: ec.SECP256R1,
    EccCurve.NIST_P384: ec.SECP384R1,
    EccCurve.NIST_P521: ec.SECP521R1,
}
_CURVE_IDS: dict[str, int] = {
    "secp192r1": EccCurve.NIST_P192,
    "secp224r1": EccCurve.NIST_P224,
    "secp256r1": EccCurve.NIST_P256,
    "secp384r1": EccCurve.NIST_P384,
    "secp521r1": EccCurve.NIST_P521,
}
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    TpmAlg.SHA1: hashes.SHA1,
    TpmAlg.SHA256: hashes.SHA256,
    TpmAlg.SHA384: hashes.SHA384,
    TpmAlg.SHA512: hashes.SHA512,
    TpmAlg.SHA3_256: hashes.SHA3_256,
    TpmAlg.SHA3_384: hashes.SHA3_384,
    TpmAlg.SHA3_512: hashes.SHA3_512,
}

# What an attestation key must be (TPM 2.0 Keys for Device Identity and Attestation, 3.x):
# a restricted signing key that cannot leave its TPM.
AK_REQUIRED = ObjectAttr.SIGN_ENCRYPT | ObjectAttr.RESTRICTED
_AK_REQUIRED_BITS = int(AK_REQUIRED)
AK_RECOMMENDED = ObjectAttr.FIXED_TPM | ObjectAttr.FIXED_PARENT | ObjectAttr.SENSITIVE_DATA_ORIGIN


_HASH_OBJECTS: dict[int, hashes.HashAlgorithm] = {alg: cls() for alg, cls in _HASHES.items()}
_PKCS1V15 = padding.PKCS1v15()


def hash_algorithm(alg: int) -> hashes.HashAlgorithm:
    h = _HASH_OBJECTS.get(alg)
    if h is None:
        raise SignatureError(f"hash algorithm {hash_name(alg)} is not supported for signatures")
    return h


def public_key_of(public: TpmtPublic) -> PublicKey:
    """The cryptography key of an RSA or ECC TPMT_PUBLIC."""
    p = public.parameters
    try:
        if isinstance(p, RsaParms):
            if not isinstance(public.unique, bytes) or not public.unique:
                raise EvidenceFormatError("RSA public area without a modulus")
            n = int.from_bytes(public.unique, "big")
            if n.bit_length() > p.key_bits or p.key_bits - n.bit_length() >= 8:
                raise EvidenceFormatError(
                    f"RSA modulus of {n.bit_length()} bits does not match keyBits {p.key_bits}"
                )
            e = p.exponent or 65537
            return rsa.RSAPublicNumbers(e, n).public_key()
        if isinstance(p, EccParms):
            curve = _CURVES.get(p.curve_id)
            if curve is None:
                raise EvidenceFormatError(f"ECC curve {p.curve_id:#06x} is not supported")
            if not isinstance(public.unique, EccPoint):
                raise EvidenceFormatError("ECC public area without a point")
            x = int.from_bytes(public.unique.x, "big")
            y = int.from_bytes(public.unique.y, "big")
            return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
    except ValueError as exc:
        raise EvidenceFormatError(f"public area does not hold a valid key ({exc})") from None
    raise EvidenceFormatError(f"object type {public.type:#06x} is not an asymmetric key")


def tpmt_public_of(
    key: PublicKey, *, name_alg: int = TpmAlg.SHA256, scheme_hash: int = TpmAlg.SHA256
) -> TpmtPublic:
    """A TPMT_PUBLIC for ``key`` with AK attributes (used by simulators and tests)."""
    attrs = int(AK_REQUIRED | AK_RECOMMENDED | ObjectAttr.USER_WITH_AUTH)
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        size = (key.key_size + 7) // 8
        return TpmtPublic(
            TpmAlg.RSA,
            name_alg,
            attrs,
            b"",
            RsaParms(NULL_SYMMETRIC, Scheme(TpmAlg.RSASSA, scheme_hash), key.key_size,
                     0 if nums.e == 65537 else nums.e),
            nums.n.to_bytes(size, "big"),
        )
    curve_id = _CURVE_IDS.get(key.curve.name)
    if curve_id is None:
        raise ValueError(f"curve {key.curve.name} has no TPM id")
    size = (key.curve.key_size + 7) // 8
    en = key.public_numbers()
    return TpmtPublic(
        TpmAlg.ECC,
        name_alg,
        attrs,
        b"",
        EccParms(NULL_SYMMETRIC, Scheme(TpmAlg.ECDSA, scheme_hash), curve_id, NULL_SCHEME),
        EccPoint(en.x.to_bytes(size, "big"), en.y.to_bytes(size, "big")),
    )


@dataclass(frozen=True)
class AttestationKey:
    """An AK as given: its TPM public area when known (so attributes and scheme are checked),
    else only the key (from PEM/DER), in which case ``public`` is None."""

    key: PublicKey
    public: TpmtPublic | None = None

    @property
    def spki_der(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def name(self) -> bytes | None:
        return self.public.name() if self.public is not None else None

    def describe(self) -> str:
        if self.public is not None:
            return self.public.describe()
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"RSA-{self.key.key_size} (from a PEM/DER key: TPM attributes unknown)"
        return f"ECC {self.key.curve.name} (from a PEM/DER key: TPM attributes unknown)"


class _KeyMemo:
    """Parsed AKs by their exact bytes: building a key object is most of a quote check."""

    def __init__(self, size: int = 128) -> None:
        self._size = size
        self._items: OrderedDict[bytes, AttestationKey] = OrderedDict()
        self._lock = Lock()

    def get(self, data: bytes) -> AttestationKey | None:
        with self._lock:
            return self._items.get(data)

    def put(self, data: bytes, value: AttestationKey) -> None:
        with self._lock:
            self._items[data] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_AK_MEMO = _KeyMemo()


def load_attestation_key(data: bytes) -> AttestationKey:
    """An AK from TPM2B_PUBLIC, TPMT_PUBLIC, PEM or DER SubjectPublicKeyInfo."""
    hit = _AK_MEMO.get(data)
    if hit is not None:
        return hit
    result: AttestationKey
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise EvidenceFormatError(f"AK PEM is not a public key ({exc})") from None
        result = AttestationKey(_asymmetric(key))
    elif data[:1] == b"\x30":
        try:
            key = serialization.load_der_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise EvidenceFormatError(f"AK DER is not a public key ({exc})") from None
        result = AttestationKey(_asymmetric(key))
    else:
        public = TpmtPublic.parse_any(data)
        result = AttestationKey(public_key_of(public), public)
    _AK_MEMO.put(data, result)
    return result


def _asymmetric(key: object) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key
    raise EvidenceFormatError("AK must be an RSA or ECC key")


def verify_signature(message: bytes, signature: TpmtSignature, ak: AttestationKey) -> None:
    """Check a TPMT_SIGNATURE over ``message`` (RSASSA, RSAPSS or ECDSA) with the AK."""
    if signature.hash_alg is None:
        raise SignatureError(f"signature scheme {signature.describe()} carries no signature")
    h = hash_algorithm(signature.hash_alg)
    key = ak.key
    if ak.public is not None:
        scheme = ak.public.scheme
        if not scheme.is_null and (
            scheme.scheme != signature.sig_alg or scheme.hash_alg != signature.hash_alg
        ):
            raise SignatureError(
                f"signature uses {signature.describe()} but the AK is bound to "
                f"{scheme.describe()}"
            )
    try:
        if signature.sig_alg == TpmAlg.RSASSA and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature.signature, message, _PKCS1V15, h)
            return
        if signature.sig_alg == TpmAlg.RSAPSS and isinstance(key, rsa.RSAPublicKey):
            _verify_pss(key, signature.signature, message, h)
            return
        if signature.sig_alg == TpmAlg.ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            r = int.from_bytes(signature.r, "big")
            s = int.from_bytes(signature.s, "big")
            if r == 0 or s == 0:
                raise InvalidSignature
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(h))
            return
    except InvalidSignature:
        raise SignatureError(
            f"quote signature ({signature.describe()}) does not verify with the AK",
            hint="the quote or signature was altered, or it was made by another key",
        ) from None
    raise SignatureError(
        f"signature scheme {signature.describe()} does not fit the AK ({ak.describe()})"
    )


def _verify_pss(key: rsa.RSAPublicKey, sig: bytes, message: bytes, h: hashes.HashAlgorithm) -> None:
    # TPMs salt RSAPSS with the digest length (TPM 2.0 Part 1, B.7); older TPMs outside FIPS
    # mode use the largest salt the key allows. Both are accepted; nothing else is.
    # (cryptography's PSS.MAX_LENGTH means "any" when verifying, so the maximum is explicit.)
    max_salt = (key.key_size - 1 + 7) // 8 - h.digest_size - 2
    for salt in (h.digest_size, max_salt):
        try:
            key.verify(sig, message, padding.PSS(mgf=padding.MGF1(h), salt_length=salt), h)
            return
        except InvalidSignature:
            continue
    raise InvalidSignature


def _hasher(alg: int) -> Callable[[bytes], hashlib._Hash]:
    ctor = _HASHLIB.get(alg)
    if ctor is None:
        name = hashlib_name(alg)
        return lambda data: hashlib.new(name, data)
    return ctor


_HASHLIB: dict[int, Callable[[bytes], hashlib._Hash]] = {
    TpmAlg.SHA1: hashlib.sha1,
    TpmAlg.SHA256: hashlib.sha256,
    TpmAlg.SHA384: hashlib.sha384,
    TpmAlg.SHA512: hashlib.sha512,
}


def pcr_digest(pcrs: PcrBanks, quote: QuoteInfo, alg: int) -> bytes:
    """H_alg of the selected PCR values concatenated in selection order (TPM2_Quote)."""
    hasher = hashlib.new(hashlib_name(alg))
    for value in pcrs.values_for(quote.pcr_select):
        hasher.update(value)
    return hasher.digest()


@dataclass(frozen=True)
class VerifiedQuote:
    """A quote whose signature, type, nonce (when one was expected) and PCR digest held."""

    attest: Attest
    signature: TpmtSignature
    ak: AttestationKey
    pcrs: PcrBanks  # exactly the PCRs the quote selects
    nonce_checked: bool

    @property
    def quote(self) -> QuoteInfo:
        q = self.attest.attested
        assert isinstance(q, QuoteInfo)
        return q

    @property
    def clock(self) -> ClockInfo:
        return self.attest.clock_info


def verify_quote(
    attest: Attest,
    signature: TpmtSignature,
    ak: AttestationKey,
    pcrs: PcrBanks,
    *,
    expected_nonce: bytes | None,
    message: bytes | None = None,
    require_ak_attributes: bool = True,
) -> VerifiedQuote:
    """Check that ``ak`` signed ``attest``, a TPM2_Quote over exactly ``pcrs``.

    ``expected_nonce`` must equal extraData byte for byte (None: not checked, and the
    result says so). ``message`` is the signed bytes when the caller has them (otherwise
    the bytes ``attest`` was parsed from, or its re-serialization: parsing round-trips
    exactly).
    """
    signed = message if message is not None else attest.signed_bytes()
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
    selection = quote.pcr_select
    algs, numbers, sizes, twice = selection._columns  # computed once per selection
    if twice:
        raise EvidenceFormatError("quote selects a PCR bank twice")
    values = pcrs.values_for(selection)
    if sizes is None or tuple(map(len, values)) != sizes:
        _check_value_sizes(selection, values)
    computed = _hasher(alg)(b"".join(values)).digest()
    if not hmac.compare_digest(computed, quote.pcr_digest):
        raise MismatchError(
            f"PCR values do not match the quote's PCR digest ({selection.describe()})",
            hint="the PCR file is not the one read with this quote, or was altered",
        )
    quoted = PcrBanks(tuple(zip(algs, numbers, values, strict=True)))
    return VerifiedQuote(attest, signature, ak, quoted, expected_nonce is not None)


def _check_value_sizes(selection: PcrSelectionList, values: list[bytes]) -> None:
    """Every value of a bank of known digest size has that size (the first bank with one
    that has not is named)."""
    start = 0
    for s in selection.selections:
        n = len(s.pcrs)
        size = HASH_SIZES.get(s.hash_alg)
        if size is not None and any(len(v) != size for v in values[start : start + n]):
            raise EvidenceFormatError(f"a {hash_name(s.hash_alg)} PCR value has the wrong size")
        start += n


def check_successor(previous: ClockInfo, current: ClockInfo, *, allow_reboot: bool = False) -> None:
    """Refuse a clock rollback, and a reboot unless ``allow_reboot``, between two quotes of
    the same AK (``current`` is the later one).

    A TPM reset (reboot) increments resetCount and zeroes restartCount; a resume from
    hibernation increments restartCount. Clock only moves forward while ``safe``.
    """
    if current.reset_count < previous.reset_count:
        raise MismatchError(
            f"TPM reset count went back from {previous.reset_count} to {current.reset_count}",
            hint="the quote is older than the one verified before (replay), or the TPM was cleared",
        )
    if current.reset_count > previous.reset_count:
        if not allow_reboot:
            raise MismatchError(
                f"the platform rebooted between the two quotes (reset count "
                f"{previous.reset_count} -> {current.reset_count})",
                hint="re-attest measured boot from a fresh event log",
            )
        return
    if current.restart_count < previous.restart_count:
        raise MismatchError(
            f"TPM restart count went back from {previous.restart_count} to "
            f"{current.restart_count}"
        )
    if current.restart_count > previous.restart_count and not allow_reboot:
        raise MismatchError(
            f"the TPM was restarted (resume from hibernation) between the quotes "
            f"(restart count {previous.restart_count} -> {current.restart_count})"
        )
    if current.clock < previous.clock:
        raise MismatchError(
            f"TPM clock went back from {previous.clock} ms to {current.clock} ms in one boot",
            hint="the quote is older than the one verified before (replay)",
        )
