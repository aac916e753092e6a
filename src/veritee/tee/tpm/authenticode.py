"""PE/COFF images and their Authenticode digest, as UEFI firmware measures boot applications.

Byte format and hashing only (hashlib): no signature checks, no policy. The digest is the
one the Authenticode specification ("Windows Authenticode Portable Executable Signature
Format", "Calculating the PE Image Hash") defines and EDK2 computes for
EV_EFI_BOOT_SERVICES_APPLICATION events (DxeTpm2MeasureBootLib, ``Tcg2MeasurePeImage``):

1. the headers from offset 0 up to ``SizeOfHeaders``, less the 4-byte ``CheckSum`` of the
   optional header and the 8-byte Certificate Table entry of the data directory (when the
   directory has one);
2. each section with raw data, in ascending ``PointerToRawData`` order, ``SizeOfRawData``
   bytes from ``PointerToRawData``; ``SUM_OF_BYTES_HASHED`` counts the headers and these;
3. when the file is larger than ``SUM_OF_BYTES_HASHED``, the bytes from file offset
   ``SUM_OF_BYTES_HASHED`` up to ``file size - Certificate Table size`` (data appended
   after the last section, e.g. a kernel's trailing payload; never the signature).

The Certificate Table (``WIN_CERTIFICATE`` entries, 8-byte aligned, at the file offset its
directory entry names) is parsed too, so signed images yield their PKCS#7 blobs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from veritee.binary import Reader
from veritee.errors import EvidenceFormatError

MAX_PE_BYTES = 512 << 20
MAX_SECTIONS = 96  # the PE/COFF specification's limit
PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B
SECURITY_DIRECTORY = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY: the Certificate Table
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
WIN_CERT_REVISION_2_0 = 0x0200
_SECTION_HEADER = 40
_HASHES = {"sha1", "sha256", "sha384", "sha512"}


@dataclass(frozen=True)
class PeSection:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_offset: int


@dataclass(frozen=True)
class WinCertificate:
    """One WIN_CERTIFICATE of the Certificate Table (type 2 holds a DER PKCS#7 SignedData)."""

    revision: int
    cert_type: int
    data: bytes


@dataclass(frozen=True)
class PeImage:
    """The parts of a PE/COFF image the Authenticode digest depends on."""

    size: int
    machine: int
    pe32_plus: bool
    checksum_offset: int
    security_entry_offset: int | None  # file offset of the Certificate Table entry
    size_of_headers: int
    cert_table_offset: int
    cert_table_size: int
    sections: tuple[PeSection, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> PeImage:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("PE image must be bytes")
        if len(data) > MAX_PE_BYTES:
            raise EvidenceFormatError(f"PE image is larger than {MAX_PE_BYTES} bytes")
        rd = Reader(data, what="PE image")
        if rd.bytes(2, "DOS signature") != b"MZ":
            raise EvidenceFormatError("not a PE image: no 'MZ' DOS header")
        pe_offset = Reader(data, what="PE image", offset=0x3C).u32("e_lfanew")
        rd = Reader(data, what="PE image", offset=pe_offset)
        if rd.bytes(4, "PE signature") != b"PE\0\0":
            raise EvidenceFormatError(f"not a PE image: no 'PE' signature at {pe_offset:#x}")
        machine = rd.u16("Machine")
        n_sections = rd.u16("NumberOfSections")
        rd.skip(4, "TimeDateStamp")
        symbols_at = rd.u32("PointerToSymbolTable")
        n_symbols = rd.u32("NumberOfSymbols")
        opt_size = rd.u16("SizeOfOptionalHeader")
        rd.u16("Characteristics")
        opt = rd.offset
        magic = rd.u16("optional header Magic")
        if magic not in (PE32_MAGIC, PE32_PLUS_MAGIC):
            raise EvidenceFormatError(
                f"PE optional header magic {magic:#x} is neither PE32 nor PE32+"
            )
        plus = magic == PE32_PLUS_MAGIC
        dirs_at = opt + (112 if plus else 96)
        if opt_size < dirs_at - opt:
            raise EvidenceFormatError(f"PE optional header is too short ({opt_size} bytes)")
        hdr = Reader(data, what="PE optional header", offset=opt + 60)
        size_of_headers = hdr.u32("SizeOfHeaders")
        checksum_offset = hdr.offset
        hdr.u32("CheckSum")
        n_dirs = Reader(data, what="PE optional header", offset=dirs_at - 4).u32(
            "NumberOfRvaAndSizes"
        )
        if n_dirs > 16 or dirs_at + 8 * n_dirs > opt + opt_size:
            raise EvidenceFormatError(
                f"PE data directory of {n_dirs} entries does not fit the optional header"
            )
        security_entry: int | None = None
        cert_offset = cert_size = 0
        if n_dirs > SECURITY_DIRECTORY:
            security_entry = dirs_at + 8 * SECURITY_DIRECTORY
            sec = Reader(data, what="PE data directory", offset=security_entry)
            cert_offset, cert_size = sec.u32("Certificate Table offset"), sec.u32("size")
            if cert_size and (cert_offset < size_of_headers or cert_offset + cert_size > len(data)):
                raise EvidenceFormatError(
                    f"PE Certificate Table [{cert_offset:#x}, +{cert_size:#x}) lies outside "
                    "the file"
                )
        if n_sections > MAX_SECTIONS:
            raise EvidenceFormatError(
                f"PE image has {n_sections} sections (at most {MAX_SECTIONS})"
            )
        table = opt + opt_size
        if size_of_headers > len(data) or size_of_headers < table + _SECTION_HEADER * n_sections:
            raise EvidenceFormatError(
                f"PE SizeOfHeaders {size_of_headers:#x} does not cover the section table or "
                "exceeds the file"
            )
        srd = Reader(data, what="PE section table", offset=table)
        sections = []
        for _ in range(n_sections):
            name = _section_name(data, srd.bytes(8, "section Name"), symbols_at, n_symbols)
            vsize, vaddr = srd.u32("VirtualSize"), srd.u32("VirtualAddress")
            raw_size, raw_offset = srd.u32("SizeOfRawData"), srd.u32("PointerToRawData")
            srd.skip(16, "relocations, line numbers, characteristics")
            if raw_size and raw_offset + raw_size > len(data):
                raise EvidenceFormatError(
                    f"PE section {name!r} raw data [{raw_offset:#x}, +{raw_size:#x}) lies outside "
                    "the file"
                )
            sections.append(PeSection(name, vsize, vaddr, raw_size, raw_offset))
        return cls(
            size=len(data),
            machine=machine,
            pe32_plus=plus,
            checksum_offset=checksum_offset,
            security_entry_offset=security_entry,
            size_of_headers=size_of_headers,
            cert_table_offset=cert_offset,
            cert_table_size=cert_size,
            sections=tuple(sections),
        )

    def hashed_ranges(self) -> tuple[tuple[int, int], ...]:
        """The [start, end) file ranges the Authenticode digest covers, in hashing order."""
        out: list[tuple[int, int]] = [(0, self.checksum_offset)]
        after_checksum = self.checksum_offset + 4
        if self.security_entry_offset is None:
            out.append((after_checksum, self.size_of_headers))
        else:
            out.append((after_checksum, self.security_entry_offset))
            out.append((self.security_entry_offset + 8, self.size_of_headers))
        hashed = self.size_of_headers
        for s in sorted(self.sections, key=lambda s: s.raw_offset):
            if s.raw_size == 0:
                continue
            out.append((s.raw_offset, s.raw_offset + s.raw_size))
            hashed += s.raw_size
        if self.size > hashed:
            end = self.size - self.cert_table_size
            if end > hashed:
                out.append((hashed, end))
        return tuple((a, b) for a, b in out if b > a)

    def certificates(self, data: bytes) -> tuple[WinCertificate, ...]:
        """The WIN_CERTIFICATE entries of the Certificate Table of ``data`` (this image)."""
        if not self.cert_table_size:
            return ()
        table = data[self.cert_table_offset : self.cert_table_offset + self.cert_table_size]
        rd = Reader(table, what="PE Certificate Table")
        out = []
        while rd.remaining >= 8:
            start = rd.offset
            length = rd.u32("dwLength")
            revision = rd.u16("wRevision")
            cert_type = rd.u16("wCertificateType")
            if length < 8:
                raise EvidenceFormatError(f"WIN_CERTIFICATE at {start:#x}: length {length}")
            out.append(WinCertificate(revision, cert_type, rd.bytes(length - 8, "bCertificate")))
            pad = -length % 8
            if rd.remaining < pad:
                break
            rd.skip(pad, "WIN_CERTIFICATE alignment")
        return tuple(out)


def _section_name(data: bytes, raw: bytes, symbols_at: int, n_symbols: int) -> str:
    """A section name; ``/N`` names a longer one at offset N of the COFF string table (which
    follows the symbol table), as GNU ld writes for names over 8 bytes (``.vendor_cert``)."""
    name = raw.rstrip(b"\0").decode("latin-1")
    if not (name.startswith("/") and name[1:].isdigit() and symbols_at):
        return name
    at = symbols_at + 18 * n_symbols + int(name[1:])
    if at >= len(data):
        return name
    end = data.find(b"\0", at, at + 256)
    return data[at : end if end >= 0 else at + 256].decode("latin-1")


def authenticode_digests(
    data: bytes, algs: tuple[str, ...] = ("sha256",), image: PeImage | None = None
) -> dict[str, bytes]:
    """The Authenticode digest of the PE image ``data`` in each hashlib algorithm of ``algs``."""
    for alg in algs:
        if alg not in _HASHES:
            raise ValueError(f"unsupported Authenticode hash {alg!r}")
    pe = image if image is not None else PeImage.from_bytes(data)
    hashers = {alg: hashlib.new(alg) for alg in algs}
    view = memoryview(data)
    for start, end in pe.hashed_ranges():
        chunk = view[start:end]
        for h in hashers.values():
            h.update(chunk)
    return {alg: h.digest() for alg, h in hashers.items()}


def authenticode_digest(data: bytes, alg: str = "sha256") -> bytes:
    return authenticode_digests(data, (alg,))[alg]


def shim_vendor_certificate(data: bytes, image: PeImage | None = None) -> bytes | None:
    """The certificate shim is built to trust (its ``.vendor_cert`` section), or None.

    The section starts with ``struct { u32 vendor_authorized_size, vendor_deauthorized_size,
    vendor_authorized_offset, vendor_deauthorized_offset; }`` (shim's cert.S); offsets are
    from the start of the section. shim logs this certificate as the ``Shim`` authority
    (PCR 7) when it verifies the next stage with it.
    """
    pe = image if image is not None else PeImage.from_bytes(data)
    for s in pe.sections:
        if s.name != ".vendor_cert":
            continue
        body = data[s.raw_offset : s.raw_offset + s.raw_size]
        rd = Reader(body, what="shim .vendor_cert")
        size = rd.u32("vendor_authorized_size")
        rd.u32("vendor_deauthorized_size")
        offset = rd.u32("vendor_authorized_offset")
        if size == 0:
            return None
        return Reader(body, what="shim .vendor_cert", offset=offset).bytes(size, "vendor cert")
    return None
