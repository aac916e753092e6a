"""NVIDIA Reference Integrity Manifests (RIMs): SWID tags with an enveloped XML signature.

Format only: no crypto, no policy. A RIM is an ISO/IEC 19770-2:2015 SWID tag::

    <SoftwareIdentity tagId=... version=...>
      <Meta colloquialVersion="550.90.07" .../>
      <Payload>
        <Resource type="Measurement" index="0" active="True" alternatives="1"
                  SHA384:Hash0="<hex>" name="..." size="48"/> ...
      </Payload>
      <ds:Signature> (XML-DSig, enveloped, Exclusive C14N 1.0) </ds:Signature>
    </SoftwareIdentity>

``Rim.from_bytes`` parses that profile strictly: no DTD, no processing
instructions, exactly one Signature (a child of the root) with one Reference to
the whole document (``URI=""``) transformed by enveloped-signature then
Exclusive C14N. It computes the canonical octets the signature and digest cover
(Exclusive XML Canonicalization 1.0 without comments, implemented below), so the
verify layer only hashes and checks signatures. The measurements are read from
the same parsed tree whose canonical form is digested.
"""

from __future__ import annotations

import base64
import binascii
import xml.parsers.expat
from dataclasses import dataclass, field

from veritee.errors import EvidenceFormatError

NS_DSIG = "http://www.w3.org/2000/09/xmldsig#"
NS_SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
NS_SHA384 = "http://www.w3.org/2001/04/xmlenc#sha384"
NS_XML = "http://www.w3.org/XML/1998/namespace"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED_SIGNATURE = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
MAX_RIM_BYTES = 4 << 20
MAX_ALTERNATIVES = 64
_MAX_DEPTH = 32


# -- a prefix-preserving XML tree (expat without namespace processing) -----------------------


@dataclass(eq=False)
class XmlElement:
    qname: str
    attrs: list[tuple[str, str]]  # raw (qname, value), namespace declarations included
    children: list[XmlElement | str] = field(default_factory=list)
    decls: dict[str, str] = field(default_factory=dict)  # prefix ('' = default) -> URI
    scope: dict[str, str] = field(default_factory=dict)  # in-scope namespaces here

    @property
    def prefix(self) -> str:
        return self.qname.split(":", 1)[0] if ":" in self.qname else ""

    @property
    def local(self) -> str:
        return self.qname.split(":", 1)[1] if ":" in self.qname else self.qname

    @property
    def namespace(self) -> str:
        return self.scope.get(self.prefix, "")

    def is_(self, namespace: str, local: str) -> bool:
        return self.namespace == namespace and self.local == local

    def elements(self) -> list[XmlElement]:
        return [c for c in self.children if isinstance(c, XmlElement)]

    def attribute(self, namespace: str, local: str) -> str | None:
        for qname, value in self.attrs:
            if qname == "xmlns" or qname.startswith("xmlns:"):
                continue
            prefix, _, name = qname.rpartition(":")
            uri = self.scope.get(prefix, "") if prefix else ""
            if prefix and prefix not in self.scope:
                raise EvidenceFormatError(f"XML: undeclared prefix {prefix!r}")
            if uri == namespace and name == local:
                return value
        return None

    def text(self) -> str:
        return "".join(c for c in self.children if isinstance(c, str))

    def walk(self) -> list[XmlElement]:
        out = [self]
        for child in self.elements():
            out.extend(child.walk())
        return out


def parse_xml(data: bytes, *, what: str = "XML") -> XmlElement:
    """Parse ``data`` into a tree that keeps prefixes, refusing DTDs and processing instructions."""
    if len(data) > MAX_RIM_BYTES:
        raise EvidenceFormatError(f"{what} larger than {MAX_RIM_BYTES} bytes")
    parser = xml.parsers.expat.ParserCreate()
    parser.ordered_attributes = True
    parser.buffer_text = True
    stack: list[XmlElement] = []
    roots: list[XmlElement] = []

    def refuse(*_: object) -> None:
        raise EvidenceFormatError(f"{what}: DTDs, entities and processing instructions are refused")

    def start(name: str, raw: list[str]) -> None:
        if len(stack) >= _MAX_DEPTH:
            raise EvidenceFormatError(f"{what}: nested deeper than {_MAX_DEPTH}")
        attrs = list(zip(raw[0::2], raw[1::2], strict=True))
        scope = dict(stack[-1].scope) if stack else {"xml": NS_XML}
        decls: dict[str, str] = {}
        for qname, value in attrs:
            if qname == "xmlns":
                decls[""] = value
            elif qname.startswith("xmlns:"):
                prefix = qname[6:]
                if prefix in ("xml", "xmlns") or not value:
                    raise EvidenceFormatError(f"{what}: invalid declaration of prefix {prefix!r}")
                decls[prefix] = value
        scope.update(decls)
        element = XmlElement(name, attrs, decls=decls, scope=scope)
        if ":" in name and element.prefix not in scope:
            raise EvidenceFormatError(f"{what}: undeclared prefix {element.prefix!r}")
        if stack:
            stack[-1].children.append(element)
        else:
            roots.append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1].children.append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ProcessingInstructionHandler = refuse
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise EvidenceFormatError(f"{what}: not well-formed XML ({exc})") from None
    except RecursionError:
        raise EvidenceFormatError(f"{what}: nested too deeply") from None
    if len(roots) != 1:
        raise EvidenceFormatError(f"{what}: expected one root element")
    return roots[0]


# -- Exclusive XML Canonicalization 1.0, without comments ------------------------------------


def _esc_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    )


def _esc_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace('"', "&quot;")
        .replace("\t", "&#x9;")
        .replace("\n", "&#xA;")
        .replace("\r", "&#xD;")
    )


def _c14n(
    el: XmlElement, rendered: dict[str, str], out: list[str], skip: XmlElement | None
) -> None:
    used = {el.prefix}
    plain: list[tuple[str, str, str, str]] = []  # (namespace, local, qname, value)
    for qname, value in el.attrs:
        if qname == "xmlns" or qname.startswith("xmlns:"):
            continue
        prefix, _, local = qname.rpartition(":")
        if prefix:
            if prefix not in el.scope:
                raise EvidenceFormatError(f"XML: undeclared prefix {prefix!r}")
            used.add(prefix)
        plain.append((el.scope.get(prefix, "") if prefix else "", local, qname, value))
    decls: list[tuple[str, str]] = []
    for prefix in sorted(used - {"xml"}):
        uri = el.scope.get(prefix, "")
        if rendered.get(prefix, "" if prefix == "" else None) != uri:
            decls.append((prefix, uri))
    inner = {**rendered, **dict(decls)}
    out.append("<" + el.qname)
    for prefix, uri in decls:
        out.append(
            f' xmlns:{prefix}="{_esc_attr(uri)}"' if prefix else f' xmlns="{_esc_attr(uri)}"'
        )
    for _, _, qname, value in sorted(plain, key=lambda a: (a[0], a[1])):
        out.append(f' {qname}="{_esc_attr(value)}"')
    out.append(">")
    for child in el.children:
        if isinstance(child, str):
            out.append(_esc_text(child))
        elif child is not skip:
            _c14n(child, inner, out, skip)
    out.append(f"</{el.qname}>")


def exclusive_c14n(element: XmlElement, *, omit: XmlElement | None = None) -> bytes:
    """Exclusive C14N 1.0 (no comments, empty InclusiveNamespaces) of ``element``'s subtree.

    ``omit`` drops one descendant subtree (the enveloped-signature transform).
    """
    out: list[str] = []
    _c14n(element, {}, out, omit)
    return "".join(out).encode("utf-8")


# -- the SWID tag and its signature ----------------------------------------------------------


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(f"RIM: {what} is not base64") from None


def _one(parent: XmlElement, namespace: str, local: str) -> XmlElement:
    found = [c for c in parent.elements() if c.is_(namespace, local)]
    if len(found) != 1:
        raise EvidenceFormatError(
            f"RIM: expected one {local} in {parent.local}, found {len(found)}"
        )
    return found[0]


def _algorithm(el: XmlElement) -> str:
    value = el.attribute("", "Algorithm")
    if not value:
        raise EvidenceFormatError(f"RIM: {el.local} has no Algorithm")
    return value


@dataclass(frozen=True)
class XmlSignature:
    """An enveloped XML signature, reduced to the octets and values verification needs."""

    canonical_signed_info: bytes
    canonical_document: bytes  # the whole document without the Signature, canonicalized
    signature_method: str
    digest_method: str
    digest_value: bytes
    signature_value: bytes
    certificates: tuple[bytes, ...]  # DER, as in X509Data (signer first)


def read_signature(root: XmlElement) -> XmlSignature:
    signatures = [e for e in root.walk() if e.is_(NS_DSIG, "Signature")]
    if len(signatures) != 1 or signatures[0] not in root.elements():
        raise EvidenceFormatError("RIM: expected exactly one Signature, a child of the root")
    sig = signatures[0]
    signed_info = _one(sig, NS_DSIG, "SignedInfo")
    c14n_method = _one(signed_info, NS_DSIG, "CanonicalizationMethod")
    if _algorithm(c14n_method) != EXC_C14N or c14n_method.elements():
        raise EvidenceFormatError("RIM: SignedInfo must use Exclusive C14N without a prefix list")
    reference = _one(signed_info, NS_DSIG, "Reference")
    if reference.attribute("", "URI") != "":
        raise EvidenceFormatError("RIM: the signature must reference the whole document (URI='')")
    steps = _one(reference, NS_DSIG, "Transforms").elements()
    if any(not t.is_(NS_DSIG, "Transform") or t.elements() for t in steps):
        raise EvidenceFormatError("RIM: only parameterless Transform elements are supported")
    if [_algorithm(t) for t in steps] != [ENVELOPED_SIGNATURE, EXC_C14N]:
        raise EvidenceFormatError(
            "RIM: the reference must be transformed by enveloped-signature then Exclusive C14N"
        )
    x509_data = _one(_one(sig, NS_DSIG, "KeyInfo"), NS_DSIG, "X509Data")
    certs = tuple(
        _b64(c.text(), "X509Certificate")
        for c in x509_data.elements()
        if c.is_(NS_DSIG, "X509Certificate")
    )
    if not certs:
        raise EvidenceFormatError("RIM: KeyInfo carries no X509Certificate")
    return XmlSignature(
        canonical_signed_info=exclusive_c14n(signed_info),
        canonical_document=exclusive_c14n(root, omit=sig),
        signature_method=_algorithm(_one(signed_info, NS_DSIG, "SignatureMethod")),
        digest_method=_algorithm(_one(reference, NS_DSIG, "DigestMethod")),
        digest_value=_b64(_one(reference, NS_DSIG, "DigestValue").text(), "DigestValue"),
        signature_value=_b64(_one(sig, NS_DSIG, "SignatureValue").text(), "SignatureValue"),
        certificates=certs,
    )


@dataclass(frozen=True)
class RimMeasurement:
    """Golden values for one measurement block (RIM ``index`` is 0-based: SPDM block index+1)."""

    index: int
    name: str
    active: bool
    size: int
    alternatives: tuple[bytes, ...]

    @property
    def block_index(self) -> int:
        return self.index + 1


def _int_attr(el: XmlElement, name: str) -> int:
    raw = el.attribute("", name)
    if raw is None or not raw.isdigit() or len(raw) > 6:
        raise EvidenceFormatError(f"RIM: Resource {name} must be a small decimal integer")
    return int(raw)


def _measurement(el: XmlElement) -> RimMeasurement:
    index = _int_attr(el, "index")
    count = _int_attr(el, "alternatives")
    size = _int_attr(el, "size")
    if not 1 <= count <= MAX_ALTERNATIVES:
        raise EvidenceFormatError(f"RIM: measurement {index} has {count} alternatives")
    active = el.attribute("", "active")
    if active not in ("True", "False"):
        raise EvidenceFormatError(f"RIM: measurement {index}: active must be True or False")
    values = []
    for i in range(count):
        raw = el.attribute(NS_SHA384, f"Hash{i}")
        if raw is None:
            raise EvidenceFormatError(f"RIM: measurement {index} lacks SHA384 Hash{i}")
        try:
            value = bytes.fromhex(raw)
        except ValueError:
            raise EvidenceFormatError(f"RIM: measurement {index} Hash{i} is not hex") from None
        if len(value) != size:
            raise EvidenceFormatError(f"RIM: measurement {index} Hash{i} is not {size} bytes")
        values.append(value)
    return RimMeasurement(
        index=index,
        name=el.attribute("", "name") or "",
        active=active == "True",
        size=size,
        alternatives=tuple(values),
    )


@dataclass(frozen=True)
class Rim:
    """One signed RIM (driver or VBIOS) and the golden measurements it carries."""

    tag_id: str
    version: str
    colloquial_version: str
    measurements: tuple[RimMeasurement, ...]
    signature: XmlSignature
    raw: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> Rim:
        root = parse_xml(data, what="RIM")
        if not root.is_(NS_SWID, "SoftwareIdentity"):
            raise EvidenceFormatError("RIM: the root element is not a SWID SoftwareIdentity")
        signature = read_signature(root)
        meta = _one(root, NS_SWID, "Meta")
        colloquial = meta.attribute("", "colloquialVersion")
        if not colloquial:
            raise EvidenceFormatError("RIM: Meta has no colloquialVersion")
        payload = _one(root, NS_SWID, "Payload")
        measurements = tuple(
            _measurement(r) for r in payload.elements() if r.is_(NS_SWID, "Resource")
        )
        if not measurements:
            raise EvidenceFormatError("RIM: Payload has no Resource measurements")
        indices = [m.index for m in measurements]
        if len(set(indices)) != len(indices):
            raise EvidenceFormatError("RIM: two measurements share an index")
        return cls(
            tag_id=root.attribute("", "tagId") or "",
            version=root.attribute("", "version") or "",
            colloquial_version=colloquial,
            measurements=measurements,
            signature=signature,
            raw=data,
        )

    def to_bytes(self) -> bytes:
        return self.raw
