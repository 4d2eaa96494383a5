"""DeviceResponse, Document, DeviceSigned, DeviceAuth, errors and status codes
(ISO/IEC 18013-5:2021 §8.3.2.1.2.2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols import cbor
from protocols.cose import CoseError, Mac0, Sign1
from protocols.cose._headers import _PROTECTED, decode_protected
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError
from protocols.mdoc.issuer_signed import IssuerSigned

# DeviceResponse.status (§8.3.2.1.2.3)
STATUS_OK = 0
STATUS_GENERAL_ERROR = 10
STATUS_CBOR_DECODING_ERROR = 11
STATUS_CBOR_VALIDATION_ERROR = 12
# ErrorCode for documentErrors / element errors (§8.3.2.1.2.3): 0 = data not returned
ERROR_DATA_NOT_RETURNED = 0


@dataclass(frozen=True)
class DeviceAuth:
    """Exactly one of ``device_signature`` (COSE_Sign1) and ``device_mac`` (COSE_Mac0)."""

    device_signature: Sign1 | None = None
    device_mac: Mac0 | None = None

    def __post_init__(self) -> None:
        if (self.device_signature is None) == (self.device_mac is None):
            raise MdocDecodeError("DeviceAuth: exactly one of deviceSignature and deviceMac")

    def to_cbor(self) -> dict:
        if self.device_signature is not None:
            return {"deviceSignature": self.device_signature.to_cbor_array()}
        return {"deviceMac": self.device_mac.to_cbor_array()}

    @classmethod
    def from_cbor(cls, value: Any, where: str) -> DeviceAuth:
        m = p.as_map(value, where)
        if len(m) != 1 or ("deviceSignature" not in m and "deviceMac" not in m):
            raise MdocDecodeError(f"{where}: expected exactly one of deviceSignature / deviceMac")
        try:  # exactly one of the two, as __post_init__ wants
            if "deviceSignature" in m:
                return p.make(cls, device_signature=Sign1.decode(m["deviceSignature"]), device_mac=None)
            return p.make(cls, device_signature=None, device_mac=Mac0.decode(m["deviceMac"]))
        except CoseError as exc:
            raise MdocDecodeError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class DeviceSigned:
    """``DeviceSigned = {"nameSpaces": DeviceNameSpacesBytes, "deviceAuth": DeviceAuth}``."""

    name_spaces_bytes: bytes
    """Encoded DeviceNameSpaces (inside the tag 24), exactly as signed."""
    device_auth: DeviceAuth
    _decoded: Mapping | None = field(default=None, repr=False, compare=False, hash=False)
    """DeviceNameSpaces as decoded (and validated) once by :meth:`from_cbor`."""

    def name_spaces(self) -> dict[str, dict[str, Any]]:
        if self._decoded is not None:
            return {ns: dict(e) for ns, e in self._decoded.items()}
        return _device_name_spaces(p.load(self.name_spaces_bytes, "DeviceNameSpaces"))

    def to_cbor(self) -> dict:
        return {"nameSpaces": cbor.CBORTag(24, self.name_spaces_bytes), "deviceAuth": self.device_auth.to_cbor()}

    @classmethod
    def from_cbor(cls, value: Any, where: str = "DeviceSigned") -> DeviceSigned:
        m = p.as_map(value, where)
        tagged = m.get("nameSpaces")
        if type(tagged) is cbor.CBORTag and tagged.tag == 24 and tagged.value == b"\xa0":
            raw, decoded = b"\xa0", {}  # nothing device-signed: the usual case
        else:
            raw, decoded = p.embedded(tagged, f"{where}.nameSpaces")
        auth = DeviceAuth.from_cbor(m.get("deviceAuth"), f"{where}.deviceAuth")
        return p.make(cls, name_spaces_bytes=raw, device_auth=auth,
                      _decoded=_device_name_spaces(decoded))  # validated from the one decode


def _device_name_spaces(value: Any) -> dict[str, dict[str, Any]]:
    """``DeviceNameSpaces = {* NameSpace => {+ DataElementIdentifier => DataElementValue}}``."""
    m = p.as_map(value, "DeviceNameSpaces")
    out: dict[str, dict[str, Any]] = {}
    for ns, elems in m.items():
        elems = p.as_map(elems, f"DeviceNameSpaces[{ns!r}]")
        if not isinstance(ns, str) or not all(isinstance(k, str) for k in elems):
            raise MdocDecodeError("DeviceNameSpaces: keys must be text")
        out[ns] = dict(elems)
    return out


@dataclass(frozen=True)
class Document:
    doc_type: str
    issuer_signed: IssuerSigned
    device_signed: DeviceSigned
    errors: Mapping[str, Mapping[str, int]] | None = field(default=None, hash=False)

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {
            "docType": self.doc_type,
            "issuerSigned": self.issuer_signed.to_cbor(),
            "deviceSigned": self.device_signed.to_cbor(),
        }
        if self.errors:
            out["errors"] = {ns: dict(e) for ns, e in self.errors.items()}
        return out

    @classmethod
    def from_cbor(cls, value: Any, where: str = "Document") -> Document:
        m = p.as_map(value, where)
        errors = None
        if "errors" in m:
            errors = {}
            for ns, elems in p.as_map(m["errors"], f"{where}.errors").items():
                elems = p.as_map(elems, f"{where}.errors[{ns!r}]")
                if not isinstance(ns, str) or not all(isinstance(k, str) and type(v) is int for k, v in elems.items()):
                    raise MdocDecodeError(f"{where}.errors: expected {{ns: {{id: ErrorCode}}}}")
                errors[ns] = dict(elems)
        doc_type = m.get("docType")
        if type(doc_type) is not str:
            doc_type = p.text(m, "docType", where)
        return p.make(cls, doc_type=doc_type,
                      issuer_signed=IssuerSigned.from_cbor(m.get("issuerSigned"), f"{where}.issuerSigned"),
                      device_signed=DeviceSigned.from_cbor(m.get("deviceSigned"), f"{where}.deviceSigned"),
                      errors=errors)


@dataclass(frozen=True)
class DeviceResponse:
    documents: tuple[Document, ...] = ()
    document_errors: tuple[Mapping[str, int], ...] = field(default=(), hash=False)
    status: int = STATUS_OK
    version: str = "1.0"

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {"version": self.version}
        if self.documents:
            out["documents"] = [d.to_cbor() for d in self.documents]
        if self.document_errors:
            out["documentErrors"] = [dict(e) for e in self.document_errors]
        out["status"] = self.status
        return out

    def encode(self) -> bytes:
        return p.encode(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes | Any) -> DeviceResponse:
        value = p.load(data, "DeviceResponse")
        if type(value) is dict:  # the usual shape in one pass; anything else (or any doubt): below
            version, status, docs = value.get("version"), value.get("status"), value.get("documents")
            if (type(version) is str and version.startswith("1.") and type(status) is int
                    and type(docs) is list and "documentErrors" not in value):
                built = [_usual_document(d) for d in docs]
                if None not in built:
                    return p.make(cls, documents=tuple(built), document_errors=(), status=status, version=version)
        return cls._decode(value)

    @classmethod
    def _decode(cls, value: Any) -> DeviceResponse:
        """The general path of :meth:`decode`, from the decoded item: every shape, every error."""
        m = p.as_map(value, "DeviceResponse")
        version = p.text(m, "version", "DeviceResponse")
        if not version.startswith("1."):
            raise MdocDecodeError(f"DeviceResponse.version: unsupported {version!r}")
        status = p.field(m, "status", int, "DeviceResponse")
        docs = ()
        if "documents" in m:
            docs = tuple(
                Document.from_cbor(d, f"DeviceResponse.documents[{i}]")
                for i, d in enumerate(p.as_array(m["documents"], "DeviceResponse.documents"))
            )
        errs: list[dict] = []
        for i, e in enumerate(p.as_array(m.get("documentErrors", []), "DeviceResponse.documentErrors")):
            e = p.as_map(e, f"DeviceResponse.documentErrors[{i}]")
            if not all(isinstance(k, str) and type(v) is int for k, v in e.items()):
                raise MdocDecodeError(f"DeviceResponse.documentErrors[{i}]: expected {{DocType: ErrorCode}}")
            errs.append(dict(e))
        return p.make(cls, documents=docs, document_errors=tuple(errs), status=status, version=version)


_TAG = cbor.CBORTag
_new = object.__new__


def _usual_sign1(value: Any) -> Sign1 | None:
    """COSE_Sign1 from its decoded untagged array of the usual types, as ``Sign1.decode``
    builds it; None for anything else (``Sign1.decode`` then decides and explains)."""
    if type(value) is not list or len(value) != 4:
        return None
    protected_bytes, unprotected, payload, signature = value
    if (type(protected_bytes) is not bytes or type(unprotected) is not dict or type(signature) is not bytes
            or (payload is not None and type(payload) is not bytes)):
        return None
    hit = _PROTECTED.get(protected_bytes)
    if hit is not None:
        protected = dict(hit)  # what decode_protected returns for these bytes: a copy of its entry
    else:
        try:
            protected = decode_protected(protected_bytes, "COSE_Sign1")
        except CoseError:
            return None
    if not protected.keys().isdisjoint(unprotected):
        return None
    made = _new(Sign1)
    fields = made.__dict__
    fields["protected_bytes"], fields["protected"], fields["unprotected"] = protected_bytes, protected, dict(unprotected)
    fields["payload"], fields["signature"] = payload, signature
    return made


def _usual_document(value: Any) -> Document | None:
    """A Document of the usual shape (no errors, issuer-signed items in every namespace,
    nothing device-signed, a deviceSignature) in one pass, equal to what
    :meth:`Document.from_cbor` builds from it (tests/test_mdoc_fastpaths.py); None for
    anything else, which then takes that general path (its objects or its typed error)."""
    if type(value) is not dict or "errors" in value:
        return None
    doc_type, issuer, device = value.get("docType"), value.get("issuerSigned"), value.get("deviceSigned")
    if type(doc_type) is not str or type(issuer) is not dict or type(device) is not dict or len(issuer) != 2:
        return None
    ns_map = issuer.get("nameSpaces")
    if type(ns_map) is not dict or not ns_map:
        return None
    name_spaces: dict[str, tuple[bytes, ...]] = {}
    for ns, arr in ns_map.items():
        if type(ns) is not str or type(arr) is not list or not arr:
            return None
        raws = tuple([v.value for v in arr if type(v) is _TAG and v.tag == 24])
        if len(raws) != len(arr) or not all([type(r) is bytes for r in raws]):
            return None
        name_spaces[ns] = raws
    issuer_auth = _usual_sign1(issuer.get("issuerAuth"))
    tagged, auth = device.get("nameSpaces"), device.get("deviceAuth")
    if (issuer_auth is None or type(tagged) is not _TAG or tagged.tag != 24 or tagged.value != b"\xa0"
            or type(auth) is not dict or len(auth) != 1):
        return None
    signature = _usual_sign1(auth.get("deviceSignature"))
    if signature is None:
        return None
    # the instances as p.make builds them (the frozen __init__ without its setattr per field)
    device_auth = _new(DeviceAuth)
    device_auth.__dict__["device_signature"], device_auth.__dict__["device_mac"] = signature, None
    device_signed = _new(DeviceSigned)
    fields = device_signed.__dict__
    fields["name_spaces_bytes"], fields["device_auth"], fields["_decoded"] = b"\xa0", device_auth, {}
    issuer_signed = _new(IssuerSigned)
    issuer_signed.__dict__["name_spaces"], issuer_signed.__dict__["issuer_auth"] = name_spaces, issuer_auth
    made = _new(Document)
    fields = made.__dict__
    fields["doc_type"], fields["issuer_signed"], fields["device_signed"], fields["errors"] = (
        doc_type, issuer_signed, device_signed, None)
    return made
