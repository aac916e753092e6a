"""TPM 2.0 structures (TPM 2.0 Library, Part 2 "Structures"), big-endian on the wire.

Byte format only: no signature checks, no policy. Every ``from_bytes`` accepts
exactly what the specification allows, raises
:class:`~veritee.errors.EvidenceFormatError` otherwise, and ``to_bytes``
reproduces the input byte for byte:

* ``TPMS_ATTEST`` (quote, certify, creation; other attestation kinds are kept raw),
* ``TPMT_PUBLIC`` / ``TPM2B_PUBLIC`` (RSA, ECC, keyed-hash and symmetric objects),
* ``TPMT_SIGNATURE`` (RSASSA, RSAPSS, ECDSA and the other ECC schemes, HMAC, NULL),
* ``TPML_PCR_SELECTION``.

The object Name (``nameAlg || H(TPMT_PUBLIC)``) is a digest of the format, so it
lives here too; it uses :mod:`hashlib`, not a cryptography library.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError

TPM_GENERATED_VALUE = 0xFF544347
PCR_COUNT = 24  # PC Client platforms implement PCR 0..23
MAX_DIGEST = 64  # sizeof(TPMU_HA): the largest digest a TPM can hold (SHA-512)
MAX_HA = 2 + MAX_DIGEST  # sizeof(TPMT_HA)
MAX_NAME = 2 + MAX_DIGEST  # sizeof(TPMU_NAME)
MAX_RSA_KEY_BYTES = 512  # TPM2B_PUBLIC_KEY_RSA (4096-bit keys)
MAX_ECC_KEY_BYTES = 128  # TPM2B_ECC_PARAMETER
MAX_SYM_DATA = 128  # TPM2B_SENSITIVE_DATA / keyed-hash unique
MAX_PCR_SELECT = 32  # generous upper bound on sizeofSelect (PC Client uses 3)
MAX_SELECTIONS = 16  # HASH_COUNT upper bound used by every TSS


class TpmAlg(enum.IntEnum):
    """TPM_ALG_ID values (TCG Algorithm Registry)."""

    RSA = 0x0001
    TDES = 0x0003
    SHA1 = 0x0004
    HMAC = 0x0005
    AES = 0x0006
    MGF1 = 0x0007
    KEYEDHASH = 0x0008
    XOR = 0x000A
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    NULL = 0x0010
    SM3_256 = 0x0012
    SM4 = 0x0013
    RSASSA = 0x0014
    RSAES = 0x0015
    RSAPSS = 0x0016
    OAEP = 0x0017
    ECDSA = 0x0018
    ECDH = 0x0019
    ECDAA = 0x001A
    SM2 = 0x001B
    ECSCHNORR = 0x001C
    ECMQV = 0x001D
    KDF1_SP800_56A = 0x0020
    KDF2 = 0x0021
    KDF1_SP800_108 = 0x0022
    ECC = 0x0023
    SYMCIPHER = 0x0025
    CAMELLIA = 0x0026
    SHA3_256 = 0x0027
    SHA3_384 = 0x0028
    SHA3_512 = 0x0029
    CTR = 0x0040
    OFB = 0x0041
    CBC = 0x0042
    CFB = 0x0043
    ECB = 0x0044


class EccCurve(enum.IntEnum):
    """TPM_ECC_CURVE values."""

    NIST_P192 = 0x0001
    NIST_P224 = 0x0002
    NIST_P256 = 0x0003
    NIST_P384 = 0x0004
    NIST_P521 = 0x0005
    BN_P256 = 0x0010
    BN_P638 = 0x0011
    SM2_P256 = 0x0020


class AttestType(enum.IntEnum):
    """TPM_ST values of TPMS_ATTEST.type."""

    NV = 0x8014
    COMMAND_AUDIT = 0x8015
    SESSION_AUDIT = 0x8016
    CERTIFY = 0x8017
    QUOTE = 0x8018
    TIME = 0x8019
    CREATION = 0x801A
    NV_DIGEST = 0x801C


class ObjectAttr(enum.IntFlag):
    """TPMA_OBJECT bits."""

    FIXED_TPM = 1 << 1
    ST_CLEAR = 1 << 2
    FIXED_PARENT = 1 << 4
    SENSITIVE_DATA_ORIGIN = 1 << 5
    USER_WITH_AUTH = 1 << 6
    ADMIN_WITH_POLICY = 1 << 7
    NO_DA = 1 << 10
    ENCRYPTED_DUPLICATION = 1 << 11
    RESTRICTED = 1 << 16
    DECRYPT = 1 << 17
    SIGN_ENCRYPT = 1 << 18
    X509_SIGN = 1 << 19


# Hash algorithms a TPM uses for PCR banks, names and signatures.
HASH_SIZES: dict[int, int] = {
    TpmAlg.SHA1: 20,
    TpmAlg.SHA256: 32,
    TpmAlg.SHA384: 48,
    TpmAlg.SHA512: 64,
    TpmAlg.SM3_256: 32,
    TpmAlg.SHA3_256: 32,
    TpmAlg.SHA3_384: 48,
    TpmAlg.SHA3_512: 64,
}
HASH_NAMES: dict[int, str] = {
    TpmAlg.SHA1: "sha1",
    TpmAlg.SHA256: "sha256",
    TpmAlg.SHA384: "sha384",
    TpmAlg.SHA512: "sha512",
    TpmAlg.SM3_256: "sm3_256",
    TpmAlg.SHA3_256: "sha3_256",
    TpmAlg.SHA3_384: "sha3_384",
    TpmAlg.SHA3_512: "sha3_512",
}
_HASH_BY_NAME = {v: k for k, v in HASH_NAMES.items()}
_HASHLIB_NAMES: dict[int, str] = {
    TpmAlg.SHA1: "sha1",
    TpmAlg.SHA256: "sha256",
    TpmAlg.SHA384: "sha384",
    TpmAlg.SHA512: "sha512",
    TpmAlg.SHA3_256: "sha3_256",
    TpmAlg.SHA3_384: "sha3_384",
    TpmAlg.SHA3_512: "sha3_512",
}


def hash_name(alg: int) -> str:
    """``sha256`` for TPM_ALG_SHA256; ``0x1234`` for an algorithm this module does not know."""
    return HASH_NAMES.get(alg, f"{alg:#06x}")


def hash_alg(name: str) -> int:
    """TPM_ALG_ID of a hash by name (``sha256``, ``SHA-256``, ``0x000b``)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    for alg, known in HASH_NAMES.items():
        if known.replace("_", "") == key:
            return alg
    try:
        value = int(name, 0)
    except ValueError:
        raise ValueError(f"unknown hash algorithm {name!r}") from None
    if value not in HASH_SIZES:
        raise ValueError(f"unknown hash algorithm {name!r}")
    return value


def digest(alg: int, data: bytes) -> bytes:
    """H_alg(data) for the hashes hashlib provides (SM3 is not one of them)."""
    name = _HASHLIB_NAMES.get(alg)
    if name is None:
        raise EvidenceFormatError(f"hash algorithm {hash_name(alg)} is not supported")
    return hashlib.new(name, data).digest()


def hashlib_name(alg: int) -> str:
    name = _HASHLIB_NAMES.get(alg)
    if name is None:
        raise EvidenceFormatError(f"hash algorithm {hash_name(alg)} is not supported")
    return name


def _alg_name(alg: int) -> str:
    try:
        return TpmAlg(alg).name
    except ValueError:
        return f"{alg:#06x}"


# -- sized buffers ---------------------------------------------------------------------------


def read_tpm2b(rd: Reader, field: str, max_size: int) -> bytes:
    size = rd.u16be(f"{field}.size")
    if size > max_size:
        raise EvidenceFormatError(f"{field}: size {size} exceeds the maximum {max_size}")
    return rd.bytes(size, field)


def write_tpm2b(w: Writer, data: bytes) -> None:
    if len(data) > 0xFFFF:
        raise ValueError("TPM2B buffer longer than 65535 bytes")
    w.u16be(len(data)).bytes(data)


def _yes_no(rd: Reader, field: str) -> int:
    value = rd.u8(field)
    if value > 1:
        raise EvidenceFormatError(f"{field}: TPMI_YES_NO must be 0 or 1, got {value}")
    return value


_CLOCK_INFO = struct.Struct(">QIIB")
_BITS = tuple(tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256))
_BITMAPS: dict[bytes, tuple[int, ...]] = {}  # pcrSelect bitmap -> PCR indices (bounded)


# -- PCR selection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PcrSelection:
    """TPMS_PCR_SELECTION: one bank and a bitmap of its PCRs (bit n of byte n/8 = PCR n)."""

    hash_alg: int
    select: bytes

    @classmethod
    def of(cls, alg: int, pcrs: tuple[int, ...] | list[int], size: int = 3) -> PcrSelection:
        bitmap = bytearray(size)
        for pcr in pcrs:
            if not 0 <= pcr < size * 8:
                raise ValueError(f"PCR {pcr} does not fit a {size}-byte selection")
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        return cls(alg, bytes(bitmap))

    @property
    def pcrs(self) -> tuple[int, ...]:
        # Computed once per object (quotes are checked in hot loops; functools'
        # cached_property takes a lock per access on Python 3.11).
        cached: tuple[int, ...] | None = self.__dict__.get("_pcrs")
        if cached is None:
            cached = _BITMAPS.get(self.select)
            if cached is None:
                cached = tuple(
                    i * 8 + bit for i, byte in enumerate(self.select) for bit in _BITS[byte]
                )
                if len(_BITMAPS) < 4096:
                    _BITMAPS[self.select] = cached
            object.__setattr__(self, "_pcrs", cached)
        return cached

    @classmethod
    def read(cls, rd: Reader) -> PcrSelection:
        alg = rd.u16be("TPMS_PCR_SELECTION.hash")
        size = rd.u8("TPMS_PCR_SELECTION.sizeofSelect")
        if size > MAX_PCR_SELECT:
            raise EvidenceFormatError(f"TPMS_PCR_SELECTION: sizeofSelect {size} is too large")
        return cls(alg, rd.bytes(size, "TPMS_PCR_SELECTION.pcrSelect"))

    def write(self, w: Writer) -> None:
        w.u16be(self.hash_alg).u8(len(self.select)).bytes(self.select)


@dataclass(frozen=True)
class PcrSelectionList:
    """TPML_PCR_SELECTION. Order matters: the quote's PCR digest follows it."""

    selections: tuple[PcrSelection, ...]

    @classmethod
    def read(cls, rd: Reader) -> PcrSelectionList:
        count = rd.u32be("TPML_PCR_SELECTION.count")
        if count > MAX_SELECTIONS:
            raise EvidenceFormatError(f"TPML_PCR_SELECTION: {count} selections is too many")
        return cls(tuple(PcrSelection.read(rd) for _ in range(count)))

    def write(self, w: Writer) -> None:
        w.u32be(len(self.selections))
        for sel in self.selections:
            sel.write(w)

    @classmethod
    def from_bytes(cls, data: bytes) -> PcrSelectionList:
        rd = Reader(data, what="TPML_PCR_SELECTION")
        value = cls.read(rd)
        rd.expect_end()
        return value

    def to_bytes(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @property
    def _items(self) -> tuple[tuple[int, int], ...]:
        cached: tuple[tuple[int, int], ...] | None = self.__dict__.get("_items_cache")
        if cached is None:
            cached = tuple((sel.hash_alg, pcr) for sel in self.selections for pcr in sel.pcrs)
            object.__setattr__(self, "_items_cache", cached)
        return cached

    def items(self) -> Iterator[tuple[int, int]]:
        """(bank, pcr) in the order the TPM concatenates PCR values for the digest."""
        return iter(self._items)

    @property
    def _columns(self) -> _SelectionColumns:
        """The selection as columns, computed once per object: the bank and the PCR of each
        selected value, each value's size (None when a bank's digest size is unknown), and
        whether a bank is selected twice."""
        cached: _SelectionColumns | None = self.__dict__.get("_columns_cache")
        if cached is None:
            items = self._items
            sizes = tuple(HASH_SIZES.get(a, -1) for a, _ in items)
            banks = [s.hash_alg for s in self.selections]
            cached = (
                tuple(a for a, _ in items),
                tuple(p for _, p in items),
                None if -1 in sizes else sizes,
                len(set(banks)) != len(banks),
            )
            object.__setattr__(self, "_columns_cache", cached)
        return cached

    def describe(self) -> str:
        return "+".join(
            f"{hash_name(s.hash_alg)}:{','.join(map(str, s.pcrs)) or '-'}" for s in self.selections
        )


_SelectionColumns = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None, bool]

# -- TPMS_ATTEST -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockInfo:
    """TPMS_CLOCK_INFO. ``reset_count``/``restart_count`` are obfuscated by the TPM for keys
    outside the endorsement and platform hierarchies (still monotonic per key)."""

    clock: int
    reset_count: int
    restart_count: int
    safe: int

    @classmethod
    def read(cls, rd: Reader) -> ClockInfo:
        clock, resets, restarts, safe = rd.unpack(_CLOCK_INFO, "clockInfo")
        if safe > 1:
            raise EvidenceFormatError(f"clockInfo.safe: TPMI_YES_NO must be 0 or 1, got {safe}")
        return cls(clock, resets, restarts, safe)

    def write(self, w: Writer) -> None:
        w.u64be(self.clock).u32be(self.reset_count).u32be(self.restart_count).u8(self.safe)


@dataclass(frozen=True)
class QuoteInfo:
    """TPMS_QUOTE_INFO: the PCRs selected and the digest of their values."""

    pcr_select: PcrSelectionList
    pcr_digest: bytes


@dataclass(frozen=True)
class CertifyInfo:
    """TPMS_CERTIFY_INFO: the certified object's Name and qualified Name."""

    name: bytes
    qualified_name: bytes


@dataclass(frozen=True)
class CreationInfo:
    """TPMS_CREATION_INFO."""

    object_name: bytes
    creation_hash: bytes


@dataclass(frozen=True)
class OtherAttestInfo:
    """Attestation kinds veritee does not interpret (time, NV, audit): kept verbatim."""

    raw: bytes


AttestedInfo = QuoteInfo | CertifyInfo | CreationInfo | OtherAttestInfo


@dataclass(frozen=True)
class Attest:
    """TPMS_ATTEST: what a TPM signs for TPM2_Quote, TPM2_Certify, TPM2_CertifyCreation..."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    attested: AttestedInfo
    # The exact bytes parsed (they equal to_bytes(): parsing round-trips exactly), so the
    # signed message need not be re-serialized. Not an init field: dataclasses.replace()
    # never carries stale bytes into a changed structure.
    _raw: bytes = field(init=False, default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> Attest:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("TPMS_ATTEST must be bytes")
        attest = _quote_fast(data)
        if attest is None:
            rd = Reader(data, what="TPMS_ATTEST")
            attest = cls.read(rd)
            rd.expect_end()
        object.__setattr__(attest, "_raw", data)
        return attest

    @classmethod
    def read(cls, rd: Reader) -> Attest:
        """The field-by-field parser (every kind, every error named); ``from_bytes`` reads
        the common quote layout faster and comes here for anything else."""
        magic = rd.u32be("magic")
        st = rd.u16be("type")
        signer = read_tpm2b(rd, "qualifiedSigner", MAX_NAME)
        extra = read_tpm2b(rd, "extraData", MAX_HA)
        clock = ClockInfo.read(rd)
        fw = rd.u64be("firmwareVersion")
        attested: AttestedInfo
        if st == AttestType.QUOTE:
            sel = PcrSelectionList.read(rd)
            attested = QuoteInfo(sel, read_tpm2b(rd, "pcrDigest", MAX_DIGEST))
        elif st == AttestType.CERTIFY:
            attested = CertifyInfo(
                read_tpm2b(rd, "name", MAX_NAME), read_tpm2b(rd, "qualifiedName", MAX_NAME)
            )
        elif st == AttestType.CREATION:
            attested = CreationInfo(
                read_tpm2b(rd, "objectName", MAX_NAME), read_tpm2b(rd, "creationHash", MAX_DIGEST)
            )
        else:
            attested = OtherAttestInfo(rd.rest("attested"))
        return cls(magic, st, signer, extra, clock, fw, attested)

    def signed_bytes(self) -> bytes:
        """The bytes a signature covers: the parsed input when there is one."""
        return self._raw or self.to_bytes()

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u32be(self.magic).u16be(self.type)
        write_tpm2b(w, self.qualified_signer)
        write_tpm2b(w, self.extra_data)
        self.clock_info.write(w)
        w.u64be(self.firmware_version)
        a = self.attested
        if isinstance(a, QuoteInfo):
            a.pcr_select.write(w)
            write_tpm2b(w, a.pcr_digest)
        elif isinstance(a, CertifyInfo):
            write_tpm2b(w, a.name)
            write_tpm2b(w, a.qualified_name)
        elif isinstance(a, CreationInfo):
            write_tpm2b(w, a.object_name)
            write_tpm2b(w, a.creation_hash)
        else:
            w.bytes(a.raw)
        return w.getvalue()

    @property
    def quote(self) -> QuoteInfo | None:
        return self.attested if isinstance(self.attested, QuoteInfo) else None


_ATTEST_HEAD = struct.Struct(">IHH")  # magic, type, qualifiedSigner.size
_U16BE = struct.Struct(">H")
_U32BE = struct.Struct(">I")
_CLOCK_FW = struct.Struct(">QIIBQ")  # TPMS_CLOCK_INFO + firmwareVersion
_SELECTION_LISTS: dict[bytes, PcrSelectionList] = {}  # TPML_PCR_SELECTION bytes -> parsed


def selection_list_of(raw: bytes) -> PcrSelectionList:
    """A TPML_PCR_SELECTION by its exact bytes, parsed once (a verifier sees the same few
    selections over and over; the parsed object is immutable, so it is shared)."""
    sel = _SELECTION_LISTS.get(raw)
    if sel is None:
        sel = PcrSelectionList.from_bytes(raw)
        if len(_SELECTION_LISTS) < 256:
            _SELECTION_LISTS[raw] = sel
    return sel


def _quote_fast(data: bytes) -> Attest | None:
    """A TPM2_Quote TPMS_ATTEST read with precompiled layouts, or None for anything else
    (another kind, or any size or bound the field-by-field parser would refuse: it then
    parses the input itself and names the error). Accepts exactly what Attest.read does."""
    n = len(data)
    if n < 8:
        return None
    magic, st, size = _ATTEST_HEAD.unpack_from(data)
    if st != AttestType.QUOTE or size > MAX_NAME or 8 + size + 2 > n:
        return None
    off = 8 + size
    signer = data[8:off]
    (size,) = _U16BE.unpack_from(data, off)
    start = off + 2
    off = start + size
    if size > MAX_HA or off + _CLOCK_FW.size + 4 > n:
        return None
    extra = data[start:off]
    clock, resets, restarts, safe, fw = _CLOCK_FW.unpack_from(data, off)
    if safe > 1:
        return None
    off += _CLOCK_FW.size
    sel_start = off
    (count,) = _U32BE.unpack_from(data, off)
    if count > MAX_SELECTIONS:
        return None
    off += 4
    for _ in range(count):
        if off + 3 > n or data[off + 2] > MAX_PCR_SELECT:
            return None
        off += 3 + data[off + 2]
    if off + 2 > n:
        return None
    (size,) = _U16BE.unpack_from(data, off)
    if size > MAX_DIGEST or off + 2 + size != n:
        return None
    sel = selection_list_of(data[sel_start:off])
    return Attest(
        magic, st, signer, extra, ClockInfo(clock, resets, restarts, safe), fw,
        QuoteInfo(sel, data[off + 2 :]),
    )


# -- schemes and public areas ----------------------------------------------------------------

# Which union member follows a scheme selector. Everything else known carries a hash.
_SCHEMES_WITHOUT_DETAILS = {TpmAlg.NULL, TpmAlg.RSAES}
_KNOWN_SCHEMES = {
    TpmAlg.NULL, TpmAlg.RSASSA, TpmAlg.RSAES, TpmAlg.RSAPSS, TpmAlg.OAEP, TpmAlg.ECDSA,
    TpmAlg.ECDH, TpmAlg.ECDAA, TpmAlg.SM2, TpmAlg.ECSCHNORR, TpmAlg.ECMQV, TpmAlg.HMAC,
    TpmAlg.XOR, TpmAlg.MGF1, TpmAlg.KDF1_SP800_56A, TpmAlg.KDF2, TpmAlg.KDF1_SP800_108,
}
_SYMMETRIC = {TpmAlg.AES, TpmAlg.SM4, TpmAlg.CAMELLIA, TpmAlg.TDES}


@dataclass(frozen=True)
class Scheme:
    """A scheme selector with its details (TPMT_RSA_SCHEME, TPMT_ECC_SCHEME, TPMT_KDF_SCHEME,
    TPMT_KEYEDHASH_SCHEME). ``count`` is ECDAA's, ``kdf`` is XOR's."""

    scheme: int
    hash_alg: int | None = None
    count: int | None = None
    kdf: int | None = None

    @classmethod
    def read(cls, rd: Reader, field: str) -> Scheme:
        scheme = rd.u16be(f"{field}.scheme")
        if scheme not in _KNOWN_SCHEMES:
            raise EvidenceFormatError(f"{field}: unknown scheme {scheme:#06x}")
        if scheme in _SCHEMES_WITHOUT_DETAILS:
            return cls(scheme)
        h = rd.u16be(f"{field}.hashAlg")
        if scheme == TpmAlg.ECDAA:
            return cls(scheme, h, count=rd.u16be(f"{field}.count"))
        if scheme == TpmAlg.XOR:
            return cls(scheme, h, kdf=rd.u16be(f"{field}.kdf"))
        return cls(scheme, h)

    def write(self, w: Writer) -> None:
        w.u16be(self.scheme)
        if self.scheme in _SCHEMES_WITHOUT_DETAILS:
            return
        w.u16be(self.hash_alg or 0)
        if self.scheme == TpmAlg.ECDAA:
            w.u16be(self.count or 0)
        elif self.scheme == TpmAlg.XOR:
            w.u16be(self.kdf or 0)

    @property
    def is_null(self) -> bool:
        return self.scheme == TpmAlg.NULL

    def describe(self) -> str:
        if self.is_null:
            return "NULL"
        if self.hash_alg is None:
            return _alg_name(self.scheme)
        return f"{_alg_name(self.scheme)}/{hash_name(self.hash_alg)}"


NULL_SCHEME = Scheme(TpmAlg.NULL)


@dataclass(frozen=True)
class SymDef:
    """TPMT_SYM_DEF_OBJECT: algorithm, key bits and mode (absent for NULL)."""

    algorithm: int
    key_bits: int | None = None
    mode: int | None = None

    @classmethod
    def read(cls, rd: Reader, field: str = "symmetric") -> SymDef:
        alg = rd.u16be(f"{field}.algorithm")
        if alg == TpmAlg.NULL:
            return cls(alg)
        if alg not in _SYMMETRIC:
            raise EvidenceFormatError(f"{field}: unknown symmetric algorithm {alg:#06x}")
        return cls(alg, rd.u16be(f"{field}.keyBits"), rd.u16be(f"{field}.mode"))

    def write(self, w: Writer) -> None:
        w.u16be(self.algorithm)
        if self.algorithm != TpmAlg.NULL:
            w.u16be(self.key_bits or 0).u16be(self.mode or 0)


NULL_SYMMETRIC = SymDef(TpmAlg.NULL)


@dataclass(frozen=True)
class RsaParms:
    symmetric: SymDef
    scheme: Scheme
    key_bits: int
    exponent: int  # 0 means the default 65537


@dataclass(frozen=True)
class EccParms:
    symmetric: SymDef
    scheme: Scheme
    curve_id: int
    kdf: Scheme


@dataclass(frozen=True)
class KeyedHashParms:
    scheme: Scheme


@dataclass(frozen=True)
class SymCipherParms:
    symmetric: SymDef


PublicParms = RsaParms | EccParms | KeyedHashParms | SymCipherParms


@dataclass(frozen=True)
class EccPoint:
    x: bytes
    y: bytes

    @classmethod
    def read(cls, rd: Reader, field: str = "point") -> EccPoint:
        return cls(
            read_tpm2b(rd, f"{field}.x", MAX_ECC_KEY_BYTES),
            read_tpm2b(rd, f"{field}.y", MAX_ECC_KEY_BYTES),
        )

    def write(self, w: Writer) -> None:
        write_tpm2b(w, self.x)
        write_tpm2b(w, self.y)

    def to_bytes(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()


@dataclass(frozen=True)
class TpmtPublic:
    """TPMT_PUBLIC. ``unique`` is the RSA modulus, an :class:`EccPoint`, or a digest."""

    type: int
    name_alg: int
    object_attributes: int
    auth_policy: bytes
    parameters: PublicParms
    unique: bytes | EccPoint

    @classmethod
    def read(cls, rd: Reader) -> TpmtPublic:
        typ = rd.u16be("TPMT_PUBLIC.type")
        name_alg = rd.u16be("TPMT_PUBLIC.nameAlg")
        if name_alg != TpmAlg.NULL and name_alg not in HASH_SIZES:
            raise EvidenceFormatError(f"TPMT_PUBLIC: unknown nameAlg {name_alg:#06x}")
        attrs = rd.u32be("TPMT_PUBLIC.objectAttributes")
        policy = read_tpm2b(rd, "TPMT_PUBLIC.authPolicy", MAX_DIGEST)
        params: PublicParms
        unique: bytes | EccPoint
        if typ == TpmAlg.RSA:
            params = RsaParms(
                symmetric=SymDef.read(rd),
                scheme=Scheme.read(rd, "TPMT_RSA_SCHEME"),
                key_bits=rd.u16be("keyBits"),
                exponent=rd.u32be("exponent"),
            )
            unique = read_tpm2b(rd, "unique.rsa", MAX_RSA_KEY_BYTES)
        elif typ == TpmAlg.ECC:
            params = EccParms(
                symmetric=SymDef.read(rd),
                scheme=Scheme.read(rd, "TPMT_ECC_SCHEME"),
                curve_id=rd.u16be("curveID"),
                kdf=Scheme.read(rd, "TPMT_KDF_SCHEME"),
            )
            unique = EccPoint.read(rd, "unique.ecc")
        elif typ == TpmAlg.KEYEDHASH:
            params = KeyedHashParms(Scheme.read(rd, "TPMT_KEYEDHASH_SCHEME"))
            unique = read_tpm2b(rd, "unique.keyedHash", MAX_DIGEST)
        elif typ == TpmAlg.SYMCIPHER:
            params = SymCipherParms(SymDef.read(rd))
            unique = read_tpm2b(rd, "unique.sym", MAX_DIGEST)
        else:
            raise EvidenceFormatError(f"TPMT_PUBLIC: unknown object type {typ:#06x}")
        return cls(typ, name_alg, attrs, policy, params, unique)

    def write(self, w: Writer) -> None:
        w.u16be(self.type).u16be(self.name_alg).u32be(self.object_attributes)
        write_tpm2b(w, self.auth_policy)
        p = self.parameters
        if isinstance(p, RsaParms):
            p.symmetric.write(w)
            p.scheme.write(w)
            w.u16be(p.key_bits).u32be(p.exponent)
        elif isinstance(p, EccParms):
            p.symmetric.write(w)
            p.scheme.write(w)
            w.u16be(p.curve_id)
            p.kdf.write(w)
        elif isinstance(p, KeyedHashParms):
            p.scheme.write(w)
        else:
            p.symmetric.write(w)
        if isinstance(self.unique, EccPoint):
            self.unique.write(w)
        else:
            write_tpm2b(w, self.unique)

    @classmethod
    def from_bytes(cls, data: bytes) -> TpmtPublic:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("TPMT_PUBLIC must be bytes")
        rd = Reader(data, what="TPMT_PUBLIC")
        value = cls.read(rd)
        rd.expect_end()
        return value

    def to_bytes(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @classmethod
    def from_tpm2b(cls, data: bytes) -> TpmtPublic:
        """TPM2B_PUBLIC (what ``tpm2_createak -u`` and ``tpm2_readpublic -o`` write)."""
        if not isinstance(data, bytes):
            raise EvidenceFormatError("TPM2B_PUBLIC must be bytes")
        rd = Reader(data, what="TPM2B_PUBLIC")
        size = rd.u16be("TPM2B_PUBLIC.size")
        if size != rd.remaining:
            raise EvidenceFormatError(
                f"TPM2B_PUBLIC: size field says {size} bytes, {rd.remaining} follow"
            )
        return cls.from_bytes(rd.rest("publicArea"))

    def to_tpm2b(self) -> bytes:
        body = self.to_bytes()
        return len(body).to_bytes(2, "big") + body

    @classmethod
    def parse_any(cls, data: bytes) -> TpmtPublic:
        """A TPM2B_PUBLIC or a bare TPMT_PUBLIC, told apart by the leading size field."""
        if len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2:
            return cls.from_tpm2b(data)
        return cls.from_bytes(data)

    # -- derived ----------------------------------------------------------------------------
    @property
    def attributes(self) -> ObjectAttr:
        return ObjectAttr(self.object_attributes)

    def has(self, attr: ObjectAttr) -> bool:
        return bool(self.object_attributes & attr)

    @property
    def scheme(self) -> Scheme:
        p = self.parameters
        if isinstance(p, RsaParms | EccParms | KeyedHashParms):
            return p.scheme
        return NULL_SCHEME

    def name(self) -> bytes:
        """The object's Name: nameAlg (2 bytes) || H_nameAlg(TPMT_PUBLIC)."""
        return self.name_alg.to_bytes(2, "big") + digest(self.name_alg, self.to_bytes())

    def describe(self) -> str:
        p = self.parameters
        if isinstance(p, RsaParms):
            kind = f"RSA-{p.key_bits}"
        elif isinstance(p, EccParms):
            try:
                kind = f"ECC {EccCurve(p.curve_id).name}"
            except ValueError:
                kind = f"ECC curve {p.curve_id:#06x}"
        else:
            kind = _alg_name(self.type)
        return f"{kind} (scheme {self.scheme.describe()}, name alg {hash_name(self.name_alg)})"


# -- TPMT_SIGNATURE --------------------------------------------------------------------------

_RSA_SIGS = {TpmAlg.RSASSA, TpmAlg.RSAPSS}
_SIG_HEAD = struct.Struct(">HHH")  # sigAlg, hash, first TPM2B size
_ECC_SIGS = {TpmAlg.ECDSA, TpmAlg.ECDAA, TpmAlg.SM2, TpmAlg.ECSCHNORR}


@dataclass(frozen=True)
class TpmtSignature:
    """TPMT_SIGNATURE. RSA schemes fill ``signature``; ECC schemes ``r``/``s``; HMAC puts the
    MAC in ``signature``; NULL carries nothing."""

    sig_alg: int
    hash_alg: int | None
    signature: bytes = b""
    r: bytes = b""
    s: bytes = b""

    @classmethod
    def read(cls, rd: Reader) -> TpmtSignature:
        alg = rd.u16be("TPMT_SIGNATURE.sigAlg")
        if alg == TpmAlg.NULL:
            return cls(alg, None)
        if alg in _RSA_SIGS:
            h = rd.u16be("TPMT_SIGNATURE.hash")
            return cls(alg, h, signature=read_tpm2b(rd, "signature.rsa", MAX_RSA_KEY_BYTES))
        if alg in _ECC_SIGS:
            h = rd.u16be("TPMT_SIGNATURE.hash")
            r = read_tpm2b(rd, "signature.r", MAX_ECC_KEY_BYTES)
            s = read_tpm2b(rd, "signature.s", MAX_ECC_KEY_BYTES)
            return cls(alg, h, r=r, s=s)
        if alg == TpmAlg.HMAC:
            h = rd.u16be("TPMT_HA.hashAlg")
            size = HASH_SIZES.get(h)
            if size is None:
                raise EvidenceFormatError(f"TPMT_HA: unknown hash {h:#06x}")
            return cls(alg, h, signature=rd.bytes(size, "TPMT_HA.digest"))
        raise EvidenceFormatError(f"TPMT_SIGNATURE: unknown signature algorithm {alg:#06x}")

    def write(self, w: Writer) -> None:
        w.u16be(self.sig_alg)
        if self.sig_alg == TpmAlg.NULL:
            return
        w.u16be(self.hash_alg or 0)
        if self.sig_alg in _ECC_SIGS:
            write_tpm2b(w, self.r)
            write_tpm2b(w, self.s)
        elif self.sig_alg == TpmAlg.HMAC:
            w.bytes(self.signature)
        else:
            write_tpm2b(w, self.signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> TpmtSignature:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("TPMT_SIGNATURE must be bytes")
        # RSA and ECC signatures (what quotes carry) read with one precompiled layout; the
        # field-by-field reader below takes anything else, and names every error.
        n = len(data)
        if n >= 6:
            alg, h, size = _SIG_HEAD.unpack_from(data)
            if alg in _RSA_SIGS:
                if size <= MAX_RSA_KEY_BYTES and 6 + size == n:
                    return cls(alg, h, data[6:])
            elif alg in _ECC_SIGS and size <= MAX_ECC_KEY_BYTES and 8 + size <= n:
                (size_s,) = _U16BE.unpack_from(data, 6 + size)
                if size_s <= MAX_ECC_KEY_BYTES and 8 + size + size_s == n:
                    return cls(alg, h, b"", data[6 : 6 + size], data[8 + size :])
        rd = Reader(data, what="TPMT_SIGNATURE")
        value = cls.read(rd)
        rd.expect_end()
        return value

    def to_bytes(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    def describe(self) -> str:
        if self.hash_alg is None:
            return _alg_name(self.sig_alg)
        return f"{_alg_name(self.sig_alg)}/{hash_name(self.hash_alg)}"
