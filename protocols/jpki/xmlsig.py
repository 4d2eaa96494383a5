"""XML signatures made with a JPKI certificate: W3C XML Signature (enveloped), or XAdES
baseline B-B (ETSI EN 319 132-1), the form Japan's government XML filings take (e-Gov 電子申請
and e-Tax sign the filing's XML with the holder's 署名用電子証明書).

The shape (specs/jpki-profile.md, "XML signatures"):

* one ``ds:Signature`` as the last child of the document's root, its first reference
  ``URI=""`` (the whole document) with the enveloped-signature transform, so nothing of the
  document lies outside what is signed (no signature wrapping);
* Exclusive XML Canonicalization for SignedInfo, every reference (written out as its
  transform) and the time-stamp's imprint: with it, what each implementation canonicalizes
  does not depend on the ancestors' xml:* attributes and unused namespaces (see
  :func:`c14n_apex` for how inclusive C14N 1.0, which others sign with, is read right);
* RSA-2048 keys: ``rsa-sha256`` and SHA-256 digests; P-384 keys: ``ecdsa-sha384`` and SHA-384
  digests (r || s, XML Signature 1.1 4.4.2.3), as the card signs;
* ``ds:KeyInfo/ds:X509Data`` carries the signer's certificate only (a relying party has the
  JPKI roots);
* XAdES adds ``xades:SignedProperties`` (SigningTime, SigningCertificateV2 and the
  DataObjectFormat of the document), covered by a second reference, and a third over
  KeyInfo; B-T a ``xades:SignatureTimeStamp`` (:func:`add_signature_timestamp` over
  :func:`timestamp_data`) and B-LT ``xades:RevocationValues``
  (:func:`add_revocation_values`), both unsigned properties outside every reference.

The key signs on request (:data:`Sign`: the bytes in, the signature out, DER for ECDSA), so
the private key stays where it lives (the phone's SE). signxml (with lxml) does the XML; it
is the ``xml`` extra (``pip install 'mcred[xml]'``). Verification here is the signature
alone (:func:`verify_enveloped`); chain, policy, validity and revocation are the relying
party's (:mod:`reader.jpki_xml`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from protocols import certs

from .errors import JpkiError
from .profile import KeyType

#: the largest document this module signs or verifies
XML_MAX_BYTES = 16 * 1024 * 1024
#: every certificate in KeyInfo: one signer and a few more are plenty
_MAX_CERTIFICATES = 8

_DS = "http://www.w3.org/2000/09/xmldsig#"
_XADES = "http://uri.etsi.org/01903/v1.3.2#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SIGNED_PROPERTIES = "http://uri.etsi.org/01903#SignedProperties"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
#: the most signature time-stamps one signature may carry
_MAX_TIMESTAMPS = 4
#: key type -> (SignatureMethod, DigestMethod) URIs
ALGORITHMS = {
    KeyType.RSA_2048: ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                       "http://www.w3.org/2001/04/xmlenc#sha256"),
    KeyType.EC_P384: ("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
                      "http://www.w3.org/2001/04/xmldsig-more#sha384"),
}
_HASH = {KeyType.RSA_2048: hashes.SHA256, KeyType.EC_P384: hashes.SHA384}

#: what signs: the bytes to sign in, the signature out (PKCS#1 v1.5, or ECDSA DER), hashed
#: with the key type's hash (SHA-256 for RSA-2048, SHA-384 for P-384)
Sign = Callable[[bytes], bytes]


class XmlSignatureError(JpkiError, ValueError):
    """An XML document cannot be signed, or its signature is not one this profile accepts or
    does not verify; the message says which."""


class XmlExtraMissing(XmlSignatureError, ImportError):
    """signxml (the ``xml`` extra) is not installed."""


@dataclass(frozen=True)
class XmlSignature:
    """A verified enveloped signature: who signed (the certificate in KeyInfo), with what,
    the document's root element, for XAdES the signing time the signer claims, and its
    signature time-stamps (XAdES-T): each DER TimeStampToken with the bytes its imprint must
    be the hash of (the canonical ``ds:SignatureValue``), not verified here."""

    signer_certificate: x509.Certificate
    signature_method: str
    root: str
    xades: bool
    claimed_signing_time: dt.datetime | None
    timestamps: tuple[tuple[bytes, bytes], ...] = ()
    #: validation data in xades:RevocationValues (XAdES-LT): DER OCSP responses and CRLs
    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


def require() -> None:
    """Raise :class:`XmlExtraMissing` naming the extra when signxml is not installed."""
    try:
        import signxml  # noqa: F401
    except ImportError:
        raise XmlExtraMissing("XML signatures need signxml: pip install 'mcred[xml]'") from None


_CLASSES_LOCK = threading.Lock()


def _classes() -> tuple[type, type, type, type]:
    """signxml's signers and verifiers, serializing as UTF-8: signxml copies trees through
    ``etree.tostring`` in ASCII, which writes a non-ASCII element name (``<申請書>``) as a
    character reference no parser takes back. Made once, by the first thread to ask
    (signxml's import, four classes, the verifiers' schemas)."""
    with _CLASSES_LOCK:
        if not _MADE:
            _MADE.append(_make_classes())
        return _MADE[0]


_MADE: list[tuple[type, type, type, type]] = []


def _make_classes() -> tuple[type, type, type, type]:
    require()
    from lxml import etree
    from signxml import XMLSigner, XMLVerifier
    from signxml.processor import get_schema
    from signxml.xades import XAdESSigner, XAdESVerifier

    class Utf8:
        #: the XML-namespace attributes the node signxml is about to copy apart from the
        #: document inherited there (the ds:Signature, then each reference's target): signxml
        #: canonicalizes SignedInfo and the references in such copies
        _outside: dict[str, str] = {}

        #: the document and the tree :func:`verify_enveloped` parsed (and checked) from it
        _parsed: tuple[bytes, Any] | None = None

        def _tostring(self, node: Any, **kwargs: Any) -> bytes:
            kwargs.setdefault("encoding", "UTF-8")
            return etree.tostring(node, **kwargs)

        def get_root(self, data: Any) -> Any:
            if self._parsed is not None and data is self._parsed[0]:
                return self._parsed[1]  # parsed once, not again (signxml copies what it changes)
            return super().get_root(data)

        def _get_signature(self, root: Any) -> Any:
            signature = super()._get_signature(root)
            self._outside = inherited_xml_attributes(signature)
            return signature

        def _resolve_reference(self, doc_root: Any, reference: Any, uri_resolver: Any = None) -> Any:
            target = super()._resolve_reference(doc_root, reference, uri_resolver=uri_resolver)
            self._outside = inherited_xml_attributes(target) if hasattr(target, "iterancestors") else {}
            return target

        def _c14n(self, nodes: Any, algorithm: Any, inclusive_ns_prefixes: Any = None) -> bytes:
            nodes = nodes if isinstance(nodes, list) else [nodes]
            if not algorithm.value.startswith(EXC_C14N):
                nodes = [c14n_apex(n, self._outside) if hasattr(n, "iterancestors") else n for n in nodes]
            return super()._c14n(nodes, algorithm, inclusive_ns_prefixes=inclusive_ns_prefixes)

    class Signer(Utf8, XMLSigner):
        pass

    class Verifier(Utf8, XMLVerifier):
        pass

    class XadesSigner(Utf8, XAdESSigner):
        signing_time: dt.datetime

        def add_signing_time(self, signed_signature_properties: Any, sig_root: Any, signing_settings: Any) -> None:
            from signxml.util import xades_tag

            element = etree.SubElement(signed_signature_properties, xades_tag("SigningTime"), nsmap=self.namespaces)
            element.text = self.signing_time.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

        def _add_reference_to_signed_info(self, sig_root: Any, node_to_reference: Any, **attrs: Any) -> None:
            """The SignedProperties and KeyInfo references, with their canonicalization
            written out as a Transform: signxml digests them by the signer's
            canonicalization but writes none, and a reference without one is read with
            inclusive C14N 1.0 (XML Signature 4.4.3.2), so an exclusive one would not verify
            elsewhere."""
            import base64

            from signxml.util import ds_tag

            reference = etree.SubElement(self._find(sig_root, "SignedInfo"), ds_tag("Reference"), nsmap=self.namespaces)
            reference.set("URI", f"#{node_to_reference.get('Id')}")
            for name, value in attrs.items():
                reference.set(name, value)
            transforms = etree.SubElement(reference, ds_tag("Transforms"), nsmap=self.namespaces)
            etree.SubElement(transforms, ds_tag("Transform"), nsmap=self.namespaces, Algorithm=self.c14n_alg.value)
            etree.SubElement(reference, ds_tag("DigestMethod"), nsmap=self.namespaces, Algorithm=self.digest_alg.value)
            digest = self._get_digest(self._c14n(node_to_reference, algorithm=self.c14n_alg), algorithm=self.digest_alg)
            etree.SubElement(reference, ds_tag("DigestValue"), nsmap=self.namespaces).text = \
                base64.b64encode(digest).decode()

    class XadesVerifier(Utf8, XAdESVerifier):
        pass

    for cls in (Verifier, XadesVerifier):
        # signxml loads its schemas at first use into one list every class shares, under a
        # lock made anew at each call: threads verifying at once validated XAdES against
        # half that list, or parsed the schema files together (libxml2 then finds them
        # invalid). Each verifier gets its own schemas here, once, under _CLASSES_LOCK.
        cls._schemas = [get_schema(name) for name in cls.schema_files]
    return Signer, Verifier, XadesSigner, XadesVerifier


def inherited_xml_attributes(node: Any) -> dict[str, str]:
    """The attributes in the XML namespace (xml:lang, xml:space, xml:base, ...) ``node``
    inherits from its ancestors and lacks itself, the nearest ancestor's first."""
    inherited: dict[str, str] = {}
    for ancestor in node.iterancestors():
        for name, value in ancestor.attrib.items():
            if name.startswith(_XML_NS) and name not in node.attrib and name not in inherited:
                inherited[name] = value
    return inherited


def c14n_apex(node: Any, outside: dict[str, str] | None = None) -> Any:
    """``node`` as the root of a tree of its own, fit for inclusive Canonical XML 1.0 of the
    document subset it heads: every namespace in scope declared on it (used or not), the
    XML-namespace attributes it inherits (xml:lang, xml:space, ...; section 2.4) set on it,
    and for a node at the top of a tree copied apart from its document (or of a ds:Signature
    so copied), ``outside``: what it inherited there. A tree's own root is returned as it is.

    lxml (6.2 over libxml2 2.14) canonicalizes an element inside a larger tree wrongly on
    both counts: it leaves the inherited xml:* attributes out, and below an inherited default
    namespace it writes ``xmlns=""`` on the grandchildren. A ds:Signature in the default
    namespace (as xmlsec1, .NET and Java write it) and a root with xml:lang were thus read
    over other bytes than were signed. The copy is made by serializing the element (lxml
    writes every namespace in scope on its start tag, and keeps every prefix as written;
    moving elements between trees would not) with the inherited xml:* attributes added to
    that start tag, and parsing it again."""
    from xml.sax.saxutils import quoteattr

    from lxml import etree

    inherited = inherited_xml_attributes(node)
    ancestors = list(node.iterancestors())
    top = ancestors[-1] if ancestors else node
    if outside and (top is node or top.tag == f"{{{_DS}}}Signature"):
        inherited = {**{k: v for k, v in outside.items() if k not in node.attrib}, **inherited}
    if not ancestors and not inherited:
        return node
    text = etree.tostring(node, encoding="unicode", with_tail=False)
    if inherited:
        cut = 1 + len(f"{node.prefix}:" if node.prefix else "") + len(etree.QName(node).localname)
        added = " ".join(f"xml:{name[len(_XML_NS):]}={quoteattr(value)}" for name, value in inherited.items())
        text = f"{text[:cut]} {added}{text[cut:]}"
    return etree.fromstring(text, parser=etree.XMLParser(resolve_entities=False, no_network=True))


def _canonical(node: Any, method: str) -> bytes:
    """``node`` as a document subset in Canonical XML 1.0 (inclusive, :func:`c14n_apex`) or
    Exclusive XML Canonicalization, comments left out."""
    from lxml import etree

    if method == EXC_C14N:
        return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)
    return etree.tostring(c14n_apex(node), method="c14n", with_comments=False)


class _KeyInSe:
    """What signxml signs with: a private key's ``sign`` and ``key_size`` over :data:`Sign`,
    refusing any hash but the key type's."""

    def __init__(self, certificate: x509.Certificate, key_type: KeyType, sign: Sign) -> None:
        self._public = certificate.public_key()
        self._key_type, self._sign = key_type, sign
        self.key_size = self._public.key_size

    def public_key(self):  # noqa: ANN201 - the certificate's key
        return self._public

    def sign(self, data: bytes, signature_algorithm: Any = None, padding: Any = None,
             algorithm: Any = None) -> bytes:
        wanted = signature_algorithm.algorithm if isinstance(signature_algorithm, ec.ECDSA) else algorithm
        if (self._key_type is KeyType.RSA_2048) != isinstance(padding, PKCS1v15) or \
                not isinstance(wanted, _HASH[self._key_type]):
            raise XmlSignatureError(f"the {self._key_type.value} key signs "
                                    f"{'PKCS#1 v1.5' if self._key_type is KeyType.RSA_2048 else 'ECDSA'} over "
                                    f"{_HASH[self._key_type].name}, not {getattr(wanted, 'name', wanted)}")
        return self._sign(data)


def sign_enveloped(document: bytes, *, certificate: x509.Certificate, sign: Sign, xades: bool = False,
                   signing_time: dt.datetime | None = None, description: str = "signed document") -> bytes:
    """``document`` (XML bytes, UTF-8 or as declared) with an enveloped signature by the key
    of ``certificate`` appended to its root; with ``xades``, XAdES B-B (``signing_time``,
    default now, and ``description`` of the document in its DataObjectFormat). The result is
    UTF-8 with an XML declaration. Raises :class:`XmlSignatureError` for what is not XML or
    not signable (a DTD, entities, a root that already carries a signature)."""
    key_type = KeyType.of(certificate.public_key())
    signature_method, digest_method = ALGORITHMS[key_type]
    signer_class, _, xades_class, _ = _classes()
    from lxml import etree
    from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, methods
    from signxml.exceptions import SignXMLException
    from signxml.xades import XAdESDataObjectFormat

    root = _parse(document)
    if root.find(f"{{{_DS}}}Signature") is not None:
        raise XmlSignatureError("the document's root already carries a ds:Signature: one signature per document")
    options = dict(method=methods.enveloped, signature_algorithm=SignatureMethod(signature_method),
                   digest_algorithm=DigestAlgorithm(digest_method),
                   c14n_algorithm=CanonicalizationMethod(EXC_C14N))
    if xades:
        signer = xades_class(data_object_format=XAdESDataObjectFormat(Description=description,
                                                                       MimeType="text/xml"), **options)
        signer.signing_time = signing_time or dt.datetime.now(dt.UTC)
    else:
        signer = signer_class(**options)
    try:
        signed = signer.sign(root, key=_KeyInSe(certificate, key_type, sign), cert=[certificate],
                             always_add_key_value=False)
    except SignXMLException as exc:
        raise XmlSignatureError(f"cannot sign: {exc}") from None
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def _parse(document: bytes):  # noqa: ANN202 - an lxml element
    """The root element; no DTD, no entities, no network."""
    from lxml import etree

    if len(document) > XML_MAX_BYTES:
        raise XmlSignatureError(f"document of {len(document)} bytes: at most {XML_MAX_BYTES}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=False)
    try:
        root = etree.fromstring(document, parser=parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise XmlSignatureError(f"not well-formed XML: {exc}") from None
    info = etree.ElementTree(root).docinfo
    if info.internalDTD is not None or info.externalDTD is not None or info.doctype:
        raise XmlSignatureError("a document type declaration (DTD) is not accepted")
    for _ in root.iter(etree.Entity):
        raise XmlSignatureError("entity references are not accepted")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            # URI="" signs the whole document, these too; signxml signs from the root element:
            # refused, so that no part of the document is outside what both sides check
            raise XmlSignatureError(f"processing instruction <?{sibling.target} ...?> outside the root element: "
                                    "not accepted")
    return root


def _base64(text: str | None, what: str) -> bytes:
    """The bytes of an XML base64 text (white space allowed, as XML Signature writes it)."""
    import base64
    import binascii

    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise XmlSignatureError(f"{what}: not base64: {exc}") from None


def _signer_certificate(signature: Any) -> x509.Certificate:
    """The one end-entity certificate of ``ds:KeyInfo/ds:X509Data``."""
    texts = [e.text or "" for e in signature.iterfind(f"{{{_DS}}}KeyInfo/{{{_DS}}}X509Data/{{{_DS}}}X509Certificate")]
    if not texts:
        raise XmlSignatureError("ds:KeyInfo carries no ds:X509Certificate: a JPKI signature names its certificate")
    if len(texts) > _MAX_CERTIFICATES:
        raise XmlSignatureError(f"ds:KeyInfo carries {len(texts)} certificates: at most {_MAX_CERTIFICATES}")
    leaves = []
    for n, text in enumerate(texts, 1):
        der = _base64(text, f"ds:X509Certificate {n}")
        try:
            # KeyInfo is outside SignedInfo: loaded as any certificate from the wire (its
            # version, extensions and Names read now, not where a later check meets them)
            cert = certs.load_der(der)
        except certs.CertificateParseError as exc:
            raise XmlSignatureError(f"ds:X509Certificate {n} is not a certificate: {exc}") from None
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            leaves.append(cert)
    if len(leaves) != 1:
        raise XmlSignatureError(f"ds:KeyInfo carries {len(leaves)} end-entity certificates: exactly one signs")
    return leaves[0]


def verify_enveloped(document: bytes) -> XmlSignature:
    """Verify the enveloped signature of ``document`` with the certificate in its KeyInfo:
    SignedInfo's signature, every reference's digest, the shape above (one signature, the
    root's last child; the first reference the whole document, enveloped; XAdES: the
    signed properties and the signing certificate's digest). Raises
    :class:`XmlSignatureError` naming the first thing wrong; trust in the certificate is the
    caller's."""
    _, verifier_class, _, xades_class = _classes()
    from lxml import etree
    from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod
    from signxml.exceptions import SignXMLException
    from signxml.xades import XAdESSignatureConfiguration

    root = _parse(document)
    signature = _the_signature(root)
    references = signature.findall(f"{{{_DS}}}SignedInfo/{{{_DS}}}Reference")
    if references and references[0].get("URI") is None:
        raise XmlSignatureError('the first reference has no URI (the object left to the application, as some '
                                'signers write it): a JPKI relying party takes URI="", the whole document')
    if not references or references[0].get("URI") != "":
        raise XmlSignatureError('the first reference is not URI="" (the whole document): what is signed '
                                "must be the document itself")
    transforms = [t.get("Algorithm") for t in references[0].iterfind(f"{{{_DS}}}Transforms/{{{_DS}}}Transform")]
    if _ENVELOPED not in transforms:
        raise XmlSignatureError("the document's reference lacks the enveloped-signature transform")
    method = signature.find(f"{{{_DS}}}SignedInfo/{{{_DS}}}SignatureMethod")
    method_uri = method.get("Algorithm") if method is not None else None
    if method_uri not in {m for m, _ in ALGORITHMS.values()}:
        raise XmlSignatureError(f"signature method {method_uri!r}: one of "
                                f"{', '.join(m for m, _ in ALGORITHMS.values())}")
    certificate = _signer_certificate(signature)
    try:
        key_type = KeyType.of(certificate.public_key())
    except JpkiError as exc:
        raise XmlSignatureError(f"the signer's key: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:  # a certificate whose key does not decode
        raise XmlSignatureError(f"the signer's certificate carries no usable key: {exc}") from None
    if ALGORITHMS[key_type][0] != method_uri:
        raise XmlSignatureError(f"signature method {method_uri} does not fit the certificate's "
                                f"{key_type.value} key ({ALGORITHMS[key_type][0]})")
    qualifying = signature.findall(f"{{{_DS}}}Object/{{{_XADES}}}QualifyingProperties")
    xades = bool(qualifying)
    if len(qualifying) > 1:
        raise XmlSignatureError(f"{len(qualifying)} xades:QualifyingProperties: one per signature")
    if xades and (not signature.get("Id") or qualifying[0].get("Target") != "#" + signature.get("Id")):
        raise XmlSignatureError(f"xades:QualifyingProperties Target {qualifying[0].get('Target')!r} does not "
                                f"name this ds:Signature (Id {signature.get('Id')!r})")
    methods = frozenset({SignatureMethod(m) for m, _ in ALGORITHMS.values()})
    digests = frozenset({DigestAlgorithm(d) for _, d in ALGORITHMS.values()})
    if xades and not any(r.get("Type") == _SIGNED_PROPERTIES for r in references):
        raise XmlSignatureError("XAdES properties that no reference signs")
    config = (XAdESSignatureConfiguration if xades else SignatureConfiguration)(
        expect_references=len(references), signature_methods=methods, digest_algorithms=digests)
    verifier = xades_class() if xades else verifier_class()
    verifier._parsed = (document, root)
    try:
        results = verifier.verify(document, x509_cert=certificate, expect_config=config)
        claimed = _signing_time(results) if xades else None
    except SignXMLException as exc:
        raise XmlSignatureError(f"signature does not verify: {exc}") from None
    except etree.DocumentInvalid as exc:  # signxml checks ds:Signature against the XML Signature schema
        raise XmlSignatureError(f"ds:Signature is not as the XML Signature schema says: {exc}") from None
    except (ValueError, TypeError, KeyError, etree.LxmlError) as exc:
        raise XmlSignatureError(f"signature unreadable: {type(exc).__name__}: {exc}") from None
    return XmlSignature(certificate, method_uri, root.tag, xades, claimed, _timestamps(signature, qualifying),
                        *_revocation_values(qualifying))


#: the most encapsulated OCSP responses or CRLs one signature may carry
_MAX_VALUES = 16


def _unsigned_signature_properties(qualifying: Any) -> Any:
    return qualifying.find(f"{{{_XADES}}}UnsignedProperties/{{{_XADES}}}UnsignedSignatureProperties")


def _revocation_values(qualifying: list) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The DER OCSP responses and CRLs of xades:RevocationValues (EN 319 132-1 5.4.2),
    undecoded: a relying party judges them."""
    properties = _unsigned_signature_properties(qualifying[0]) if qualifying else None
    if properties is None:
        return (), ()
    found: dict[str, list[bytes]] = {"OCSP": [], "CRL": []}
    for kind in found:
        for n, value in enumerate(properties.iterfind(f"{{{_XADES}}}RevocationValues/{{{_XADES}}}{kind}Values/"
                                                      f"{{{_XADES}}}Encapsulated{kind}Value"), 1):
            if n > _MAX_VALUES:
                raise XmlSignatureError(f"more than {_MAX_VALUES} xades:Encapsulated{kind}Value")
            found[kind].append(_base64(value.text, f"xades:Encapsulated{kind}Value {n}"))
    return tuple(found["OCSP"]), tuple(found["CRL"])


def add_revocation_values(document: bytes, *, ocsp_responses: Sequence[bytes] = (),
                          crls: Sequence[bytes] = ()) -> bytes:
    """``document`` with DER OCSP responses and CRLs added to its XAdES signature's
    unsigned properties as xades:RevocationValues (XAdES-LT, after the signature
    time-stamp); the signed parts stay byte for byte. Raises :class:`XmlSignatureError`
    for a signature that is not XAdES-T."""
    import base64

    from lxml import etree

    signature, qualifying = _qualifying(document)
    properties = _unsigned_signature_properties(qualifying) if qualifying is not None else None
    if properties is None or properties.find(f"{{{_XADES}}}SignatureTimeStamp") is None:
        raise XmlSignatureError("validation data speaks for the time of a signature time-stamp: XAdES-T first")
    if properties.find(f"{{{_XADES}}}RevocationValues") is not None:
        raise XmlSignatureError("the signature already carries xades:RevocationValues")
    values = etree.SubElement(properties, f"{{{_XADES}}}RevocationValues")
    for kind, items in (("CRL", crls), ("OCSP", ocsp_responses)):  # the schema's order: CRLValues, OCSPValues
        if items:
            holder = etree.SubElement(values, f"{{{_XADES}}}{kind}Values")
            for der in items:
                etree.SubElement(holder, f"{{{_XADES}}}Encapsulated{kind}Value").text = base64.b64encode(der).decode()
    return _written(signature)


def _timestamps(signature: Any, qualifying: list) -> tuple[tuple[bytes, bytes], ...]:
    """Each xades:SignatureTimeStamp's token and the canonical ds:SignatureValue it stamps
    (ETSI EN 319 132-1 5.3: by the stamp's own CanonicalizationMethod, C14N 1.0 inclusive or
    exclusive here)."""
    if not qualifying:
        return ()
    properties = _unsigned_signature_properties(qualifying[0])
    stamps = properties.findall(f"{{{_XADES}}}SignatureTimeStamp") if properties is not None else []
    if len(stamps) > _MAX_TIMESTAMPS:
        raise XmlSignatureError(f"{len(stamps)} xades:SignatureTimeStamp: at most {_MAX_TIMESTAMPS}")
    value = signature.find(f"{{{_DS}}}SignatureValue")
    out = []
    for n, stamp in enumerate(stamps, 1):
        method = stamp.find(f"{{{_DS}}}CanonicalizationMethod")
        uri = method.get("Algorithm") if method is not None else C14N  # the default of XAdES 1.3.2
        if uri not in (C14N, EXC_C14N):
            raise XmlSignatureError(f"xades:SignatureTimeStamp {n}: canonicalization {uri!r}: {C14N} or {EXC_C14N}")
        encapsulated = stamp.findall(f"{{{_XADES}}}EncapsulatedTimeStamp")
        if len(encapsulated) != 1:
            raise XmlSignatureError(f"xades:SignatureTimeStamp {n}: {len(encapsulated)} EncapsulatedTimeStamp, "
                                    "exactly one (an RFC 3161 token)")
        token = _base64(encapsulated[0].text, f"xades:SignatureTimeStamp {n}")
        out.append((token, _canonical(value, uri)))
    return tuple(out)


def timestamp_data(document: bytes) -> bytes:
    """What a signature time-stamp of ``document``'s signature is over (XAdES-T): its
    ``ds:SignatureValue`` element in Exclusive XML Canonicalization (as the stamp declares it),
    whose hash goes to the TSA."""
    return _canonical(_the_signature(_parse(document)).find(f"{{{_DS}}}SignatureValue"), EXC_C14N)


def add_signature_timestamp(document: bytes, token: bytes) -> bytes:
    """``document`` with the RFC 3161 ``token`` (DER, over :func:`timestamp_data`) added to
    its XAdES signature's unsigned properties as a ``xades:SignatureTimeStamp`` (XAdES-T);
    the signed parts stay byte for byte. Raises :class:`XmlSignatureError` for a document
    whose signature is not XAdES."""
    import base64

    from lxml import etree

    signature, qualifying = _qualifying(document)
    if qualifying is None:
        raise XmlSignatureError("a signature time-stamp goes into XAdES unsigned properties: sign with XAdES")
    unsigned = qualifying.find(f"{{{_XADES}}}UnsignedProperties")
    if unsigned is None:
        unsigned = etree.SubElement(qualifying, f"{{{_XADES}}}UnsignedProperties")
    properties = unsigned.find(f"{{{_XADES}}}UnsignedSignatureProperties")
    if properties is None:
        properties = etree.SubElement(unsigned, f"{{{_XADES}}}UnsignedSignatureProperties")
    count = len(properties.findall(f"{{{_XADES}}}SignatureTimeStamp"))
    stamp = etree.SubElement(properties, f"{{{_XADES}}}SignatureTimeStamp",
                             Id=f"{signature.get('Id') or 'Signature'}-SignatureTimeStamp{count + 1}")
    etree.SubElement(stamp, f"{{{_DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(stamp, f"{{{_XADES}}}EncapsulatedTimeStamp").text = base64.b64encode(token).decode()
    return _written(signature)


def _qualifying(document: bytes) -> tuple[Any, Any]:
    """The document's signature and its xades:QualifyingProperties (None: not XAdES), in a
    tree the caller may add unsigned properties to and write back with :func:`_written`."""
    require()
    signature = _the_signature(_parse(document))
    return signature, signature.find(f"{{{_DS}}}Object/{{{_XADES}}}QualifyingProperties")


def _written(signature: Any) -> bytes:
    """The document of ``signature``, UTF-8 with an XML declaration."""
    from lxml import etree

    return etree.tostring(signature.getroottree(), xml_declaration=True, encoding="UTF-8")


def _the_signature(root: Any) -> Any:
    """The document's one ds:Signature, a child of its root (enveloped)."""
    signatures = list(root.iter(f"{{{_DS}}}Signature"))
    if len(signatures) != 1:
        raise XmlSignatureError(f"{len(signatures)} ds:Signature elements: exactly one, enveloped in the root")
    if signatures[0].getparent() is not root:
        raise XmlSignatureError("the ds:Signature is not a child of the document's root: not an enveloped signature")
    return signatures[0]


def _signing_time(results: Any) -> dt.datetime | None:
    for result in results if isinstance(results, list) else [results]:
        props = getattr(result, "signed_properties", None)
        if props is None:
            continue
        element = props.find(f"{{{_XADES}}}SigningTime")
        if element is None or not element.text:
            return None
        try:
            t = dt.datetime.fromisoformat(element.text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise XmlSignatureError(f"xades:SigningTime {element.text.strip()!r} is not a time") from None
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return None
