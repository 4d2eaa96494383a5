"""DeviceRequest, DocRequest, ItemsRequest and readerAuth (ISO/IEC 18013-5:2021 §8.3.2.1.2.1),
and what the second edition adds to them (DeviceRequest version "1.1"):

* ``deviceRequestInfo`` (#6.24 DeviceRequestInfo): ``useCases``, each a set of alternative
  document sets (lists of docRequest indices), ``mandatory``, and ``purposeHints``;
* ``readerAuthAll``: COSE_Sign1 signatures over ``ReaderAuthenticationAllBytes``, one
  signature for every DocRequest at once (and for the DeviceRequestInfo);
* in an ItemsRequest's ``requestInfo``: ``alternativeDataElements`` (what may stand in for a
  requested element the mdoc does not hold), ``issuerIdentifiers`` (the issuing authorities
  the reader accepts, by their certificates' key identifiers), ``uniqueDocSetRequired`` and
  ``maximumResponseSize``.

The 1.1 fields of a DeviceRequest are read only when its version is 1.1 or later (a 1.0
request that carries them has them ignored, as multipaz does); every value we read is
checked, and a malformed one is an :class:`MdocDecodeError` that names it. Keys of
requestInfo or DeviceRequestInfo that we do not interpret are kept in ``other``.
``ItemsRequestBytes`` and ``DeviceRequestInfoBytes`` are kept exactly as received: the
reader's signatures are over them. See specs/presentation.md section 14.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocols import cbor
from protocols.cose import CoseError, CoseSigner, Sign1
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError
from protocols.mdoc.transcript import (
    SessionTranscript,
    reader_authentication_all_bytes,
    reader_authentication_bytes,
)

ElementRef = tuple[str, str]
"""``ElementReference = [NameSpace, DataElementIdentifier]``"""

SECOND_EDITION = "1.1"


def version_tuple(version: str) -> tuple[int, ...] | None:
    """``"1.1"`` -> ``(1, 1)``; None for a version that is not dotted numbers."""
    try:
        parts = tuple(int(x) for x in version.split("."))
    except ValueError:
        return None
    return parts if all(x >= 0 for x in parts) else None


def _element_ref(value: Any, where: str) -> ElementRef:
    ref = p.as_array(value, where)
    if len(ref) != 2 or not all(type(x) is str for x in ref):
        raise MdocDecodeError(f"{where}: expected [NameSpace, DataElementIdentifier] (two text strings)")
    return (ref[0], ref[1])


def _doc_request_index(value: Any, where: str) -> int:
    if type(value) is not int or value < 0:
        raise MdocDecodeError(f"{where}: expected a docRequest index (uint), got {value!r}")
    return value


def _sets(value: Any, where: str, item: Callable[[Any, str], Any]) -> tuple[tuple[Any, ...], ...]:
    """``[+ [+ item]]``: a non-empty array of non-empty arrays, each element read by ``item``."""
    sets = p.as_array(value, where)
    if not sets:
        raise MdocDecodeError(f"{where}: empty")
    out = []
    for i, s in enumerate(sets):
        elements = p.as_array(s, f"{where}[{i}]")
        if not elements:
            raise MdocDecodeError(f"{where}[{i}]: empty")
        out.append(tuple(item(e, f"{where}[{i}][{j}]") for j, e in enumerate(elements)))
    return tuple(out)


@dataclass(frozen=True)
class AlternativeDataElements:
    """``AlternativeDataElementSet = {"requestedElement": ElementReference,
    "alternativeElementSets": [+ [+ ElementReference]]}``: sets of elements, in the reader's
    order of preference, any one of which the reader accepts in place of ``requested``."""

    requested: ElementRef
    alternatives: tuple[tuple[ElementRef, ...], ...]

    def to_cbor(self) -> dict:
        return {"requestedElement": list(self.requested),
                "alternativeElementSets": [[list(r) for r in s] for s in self.alternatives]}

    @classmethod
    def from_cbor(cls, value: Any, where: str) -> AlternativeDataElements:
        m = p.as_map(value, where)
        requested = _element_ref(m.get("requestedElement"), f"{where}.requestedElement")
        return cls(requested, _sets(m.get("alternativeElementSets"), f"{where}.alternativeElementSets", _element_ref))


_DOC_INFO_KEYS = ("alternativeDataElements", "issuerIdentifiers", "uniqueDocSetRequired", "maximumResponseSize")


@dataclass(frozen=True)
class DocRequestInfo:
    """An ItemsRequest's ``requestInfo``, the second edition's fields read; anything else it
    carries is kept, untouched, in ``other``."""

    alternative_data_elements: tuple[AlternativeDataElements, ...] = ()
    issuer_identifiers: tuple[bytes, ...] = ()
    """key identifiers of the issuing authorities (an IACA's, or an intermediate's,
    subjectKeyIdentifier) whose documents the reader accepts; empty: any"""
    unique_doc_set_required: bool | None = None
    maximum_response_size: int | None = None
    """bytes"""
    other: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def second_edition(self) -> bool:
        return bool(self.alternative_data_elements or self.issuer_identifiers
                    or self.unique_doc_set_required is not None or self.maximum_response_size is not None)

    def alternatives_for(self, ref: ElementRef) -> tuple[tuple[ElementRef, ...], ...]:
        return next((a.alternatives for a in self.alternative_data_elements if a.requested == ref), ())

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {}
        if self.alternative_data_elements:
            out["alternativeDataElements"] = [a.to_cbor() for a in self.alternative_data_elements]
        if self.issuer_identifiers:
            out["issuerIdentifiers"] = list(self.issuer_identifiers)
        if self.unique_doc_set_required is not None:
            out["uniqueDocSetRequired"] = self.unique_doc_set_required
        if self.maximum_response_size is not None:
            out["maximumResponseSize"] = self.maximum_response_size
        out.update({k: v for k, v in self.other.items() if k not in out})
        return out

    @classmethod
    def from_cbor(cls, m: Mapping, where: str = "ItemsRequest.requestInfo") -> DocRequestInfo:
        alts = ()
        if "alternativeDataElements" in m:
            seq = p.as_array(m["alternativeDataElements"], f"{where}.alternativeDataElements")
            alts = tuple(AlternativeDataElements.from_cbor(a, f"{where}.alternativeDataElements[{i}]")
                         for i, a in enumerate(seq))
        ids: tuple[bytes, ...] = ()
        if "issuerIdentifiers" in m:
            seq = p.as_array(m["issuerIdentifiers"], f"{where}.issuerIdentifiers")
            for i, x in enumerate(seq):
                if type(x) is not bytes:
                    raise MdocDecodeError(f"{where}.issuerIdentifiers[{i}]: expected a byte string, got {type(x).__name__}")
            ids = tuple(seq)
        unique = p.field(m, "uniqueDocSetRequired", bool, where, optional=True)
        size = p.field(m, "maximumResponseSize", int, where, optional=True)
        if size is not None and size < 0:
            raise MdocDecodeError(f"{where}.maximumResponseSize: must be an unsigned integer, got {size}")
        other = {k: v for k, v in m.items() if k not in _DOC_INFO_KEYS}
        return cls(alts, ids, unique, size, other)


@dataclass(frozen=True)
class UseCase:
    """``UseCase = {"mandatory": bool, "documentSets": [+ DocumentSet], ? "purposeHints":
    {+ tstr => int}}``, ``DocumentSet = [+ uint]``: the document sets are alternatives (any
    one of them, whole, serves the use case); each lists docRequests by their index."""

    mandatory: bool
    document_sets: tuple[tuple[int, ...], ...]
    purpose_hints: Mapping[str, int] = field(default_factory=dict, hash=False)

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {"mandatory": self.mandatory, "documentSets": [list(s) for s in self.document_sets]}
        if self.purpose_hints:
            out["purposeHints"] = dict(self.purpose_hints)
        return out

    @classmethod
    def from_cbor(cls, value: Any, where: str) -> UseCase:
        m = p.as_map(value, where)
        mandatory = p.field(m, "mandatory", bool, where)
        out = _sets(m.get("documentSets"), f"{where}.documentSets", _doc_request_index)
        hints = p.field(m, "purposeHints", Mapping, where, optional=True) or {}
        for k, v in hints.items():
            if type(k) is not str or type(v) is not int:
                raise MdocDecodeError(f"{where}.purposeHints: expected {{tstr => int}}")
        return cls(mandatory, out, dict(hints))


@dataclass(frozen=True)
class DeviceRequestInfo:
    """``DeviceRequestInfo = {? "useCases": [+ UseCase], * tstr => any}``; ``raw`` is the
    exact encoding inside its tag 24 (``DeviceRequestInfoBytes``), which readerAuthAll signs."""

    use_cases: tuple[UseCase, ...] = ()
    other: Mapping[str, Any] = field(default_factory=dict, hash=False)
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def build(cls, use_cases: Sequence[UseCase] = (), other: Mapping[str, Any] | None = None) -> DeviceRequestInfo:
        m: dict[str, Any] = {}
        if use_cases:
            m["useCases"] = [u.to_cbor() for u in use_cases]
        m.update({k: v for k, v in (other or {}).items() if k != "useCases"})
        return cls(tuple(use_cases), dict(other or {}), p.encode(m))

    def check_indices(self, doc_requests: int, where: str = "DeviceRequest.deviceRequestInfo") -> None:
        """Every document set names one of ``doc_requests`` docRequests, or :class:`MdocDecodeError`."""
        for n, u in enumerate(self.use_cases):
            for k, ids in enumerate(u.document_sets):
                if max(ids) >= doc_requests:
                    raise MdocDecodeError(f"{where}.useCases[{n}].documentSets[{k}]: docRequest {max(ids)} does "
                                          f"not exist (there are {doc_requests})")

    @classmethod
    def decode(cls, raw: bytes, where: str = "DeviceRequest.deviceRequestInfo") -> DeviceRequestInfo:
        m = p.as_map(p.load(raw, where), where)
        for k in m:
            if type(k) is not str:
                raise MdocDecodeError(f"{where}: keys must be text, got {type(k).__name__}")
        cases = ()
        if "useCases" in m:
            seq = p.as_array(m["useCases"], f"{where}.useCases")
            cases = tuple(UseCase.from_cbor(u, f"{where}.useCases[{i}]") for i, u in enumerate(seq))
        return cls(cases, {k: v for k, v in m.items() if k != "useCases"}, bytes(raw))


@dataclass(frozen=True)
class ItemsRequest:
    doc_type: str
    name_spaces: Mapping[str, Mapping[str, bool]] = field(hash=False)
    """namespace -> data element identifier -> IntentToRetain"""
    request_info: Mapping[str, Any] | None = field(default=None, hash=False)
    raw: bytes = field(default=b"", compare=False, repr=False)
    info: DocRequestInfo | None = field(default=None, compare=False)
    """``request_info`` read (None when there is none)"""

    @classmethod
    def build(cls, doc_type: str, name_spaces: Mapping[str, Mapping[str, bool]], request_info: Mapping | None = None,
              *, info: DocRequestInfo | None = None) -> ItemsRequest:
        """``info`` (the second edition's requestInfo fields) is written before any other
        ``request_info`` keys."""
        m: dict[str, Any] = {"docType": doc_type, "nameSpaces": {ns: dict(v) for ns, v in name_spaces.items()}}
        if info is not None or request_info is not None:
            merged = dict(info.to_cbor() if info is not None else {})
            merged.update({k: v for k, v in (request_info or {}).items() if k not in merged})
            if merged or request_info is not None:
                m["requestInfo"] = merged
        ri = m.get("requestInfo")
        # what the caller gave needs no reading back; merged with other keys, it is read
        parsed = None if ri is None else info if request_info is None else DocRequestInfo.from_cbor(ri)
        return cls(doc_type, m["nameSpaces"], ri, p.encode(m), parsed)

    @classmethod
    def decode(cls, raw: bytes) -> ItemsRequest:
        m = p.as_map(p.load(raw, "ItemsRequest"), "ItemsRequest")
        doc_type = p.text(m, "docType", "ItemsRequest")
        name_spaces: dict[str, dict[str, bool]] = {}
        for ns, elems in p.field(m, "nameSpaces", Mapping, "ItemsRequest").items():
            if not isinstance(ns, str):
                raise MdocDecodeError("ItemsRequest.nameSpaces: namespace keys must be text")
            inner = {}
            for ident, retain in p.as_map(elems, f"ItemsRequest.nameSpaces[{ns!r}]").items():
                if not isinstance(ident, str) or not isinstance(retain, bool):
                    raise MdocDecodeError(f"ItemsRequest.nameSpaces[{ns!r}]: expected {{tstr: bool}}")
                inner[ident] = retain
            name_spaces[ns] = inner
        info = p.field(m, "requestInfo", Mapping, "ItemsRequest", optional=True)
        if info is not None:
            for k in info:
                if type(k) is not str:
                    raise MdocDecodeError(f"ItemsRequest.requestInfo: keys must be text, got {type(k).__name__}")
        return cls(doc_type, name_spaces, info, bytes(raw), DocRequestInfo.from_cbor(info) if info is not None else None)


@dataclass(frozen=True)
class DocRequest:
    items_request: ItemsRequest
    reader_auth: Sign1 | None = None

    @classmethod
    def build(
        cls,
        items_request: ItemsRequest,
        *,
        reader_signer: CoseSigner | None = None,
        reader_chain: list[bytes] | None = None,
        session_transcript: SessionTranscript | bytes | None = None,
    ) -> DocRequest:
        """Optionally sign ``ReaderAuthenticationBytes`` (§9.1.4) with ``reader_signer``."""
        auth = None
        if reader_signer is not None:
            if session_transcript is None:
                raise MdocDecodeError("DocRequest.build: readerAuth needs the session transcript")
            detached = reader_authentication_bytes(session_transcript, items_request.raw)
            unprotected = {33: reader_chain[0] if len(reader_chain or []) == 1 else list(reader_chain or [])}
            auth = Sign1.create(reader_signer, None, detached=detached, unprotected=unprotected)
        return cls(items_request, auth)

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {"itemsRequest": cbor.CBORTag(24, self.items_request.raw)}
        if self.reader_auth is not None:
            out["readerAuth"] = self.reader_auth.to_cbor_array()
        return out

    @classmethod
    def from_cbor(cls, value: Any, where: str = "DocRequest") -> DocRequest:
        m = p.as_map(value, where)
        raw, _ = p.embedded(m.get("itemsRequest"), f"{where}.itemsRequest")
        items = ItemsRequest.decode(raw)
        auth = None
        if "readerAuth" in m:
            try:
                auth = Sign1.decode(m["readerAuth"])
            except CoseError as exc:
                raise MdocDecodeError(f"{where}.readerAuth: {exc}") from exc
        return cls(items, auth)


@dataclass(frozen=True)
class DeviceRequest:
    doc_requests: tuple[DocRequest, ...]
    version: str = "1.0"
    device_request_info: DeviceRequestInfo | None = None
    reader_auth_all: tuple[Sign1, ...] = ()

    @classmethod
    def build(
        cls,
        doc_requests: Sequence[DocRequest],
        *,
        device_request_info: DeviceRequestInfo | None = None,
        reader_signer: CoseSigner | None = None,
        reader_chain: Sequence[bytes] | None = None,
        session_transcript: SessionTranscript | bytes | None = None,
        version: str | None = None,
    ) -> DeviceRequest:
        """A DeviceRequest; with ``reader_signer``, one readerAuthAll signature over every
        DocRequest (and the DeviceRequestInfo) for ``session_transcript``. The version is
        "1.1" when any second-edition field is used, else "1.0", unless ``version`` says."""
        docs = tuple(doc_requests)
        if not docs:
            raise MdocDecodeError("DeviceRequest.build: no DocRequest")
        if device_request_info is not None:
            device_request_info.check_indices(len(docs), "DeviceRequest.build: deviceRequestInfo")
        auth_all: tuple[Sign1, ...] = ()
        if reader_signer is not None:
            if session_transcript is None:
                raise MdocDecodeError("DeviceRequest.build: readerAuthAll needs the session transcript")
            detached = reader_authentication_all_bytes(
                session_transcript, [d.items_request.raw for d in docs],
                device_request_info.raw if device_request_info is not None else None)
            chain = list(reader_chain or [])
            unprotected = {33: chain[0] if len(chain) == 1 else chain}
            auth_all = (Sign1.create(reader_signer, None, detached=detached, unprotected=unprotected),)
        second = (device_request_info is not None or bool(auth_all)
                  or any(d.items_request.info is not None and d.items_request.info.second_edition for d in docs))
        return cls(docs, version or (SECOND_EDITION if second else "1.0"), device_request_info, auth_all)

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {"version": self.version, "docRequests": [d.to_cbor() for d in self.doc_requests]}
        if self.device_request_info is not None:
            out["deviceRequestInfo"] = cbor.CBORTag(24, self.device_request_info.raw)
        if self.reader_auth_all:
            out["readerAuthAll"] = [a.to_cbor_array() for a in self.reader_auth_all]
        return out

    def encode(self) -> bytes:
        return p.encode(self.to_cbor())

    def reader_authentication_all_bytes(self, session_transcript: SessionTranscript | bytes) -> bytes:
        """What readerAuthAll signs for this request in ``session_transcript``."""
        return reader_authentication_all_bytes(
            session_transcript, [d.items_request.raw for d in self.doc_requests],
            self.device_request_info.raw if self.device_request_info is not None else None)

    def chosen(self, can_answer: Callable[[int, DocRequest], bool]) -> tuple[list[int], list[int]]:
        """Which docRequests to answer, by index, and which use cases no document set of
        serves. Without useCases: every docRequest. With them: for each use case, the first
        document set whose every docRequest ``can_answer``; the docRequests of a use case
        none serves are answered too (their documentErrors tell the reader why), and so are
        docRequests no use case names."""
        cases = self.device_request_info.use_cases if self.device_request_info is not None else ()
        if not cases:
            return list(range(len(self.doc_requests))), []
        answer: set[int] = set()
        named: set[int] = set()
        unmet = []
        for n, case in enumerate(cases):
            for s in case.document_sets:
                named.update(s)
            pick = next((s for s in case.document_sets if all(can_answer(i, self.doc_requests[i]) for i in s)), None)
            if pick is None:
                unmet.append(n)
                for s in case.document_sets:
                    answer.update(s)
            else:
                answer.update(pick)
        answer.update(i for i in range(len(self.doc_requests)) if i not in named)
        return sorted(answer), unmet

    @classmethod
    def decode(cls, data: bytes | Any) -> DeviceRequest:
        m = p.as_map(p.load(data, "DeviceRequest"), "DeviceRequest")
        version = p.text(m, "version", "DeviceRequest")
        parts = version_tuple(version)
        if parts is None or parts[0] != 1:
            raise MdocDecodeError(f"DeviceRequest.version: unsupported {version!r}")
        docs = p.as_array(m.get("docRequests"), "DeviceRequest.docRequests")
        if not docs:
            raise MdocDecodeError("DeviceRequest.docRequests: empty")
        doc_requests = tuple(DocRequest.from_cbor(d, f"DeviceRequest.docRequests[{i}]") for i, d in enumerate(docs))
        info, auth_all = None, ()
        if parts >= (1, 1):
            if "deviceRequestInfo" in m:
                raw = p.embedded_raw(m["deviceRequestInfo"], "DeviceRequest.deviceRequestInfo")
                info = DeviceRequestInfo.decode(raw)
                info.check_indices(len(doc_requests))
            if "readerAuthAll" in m:
                seq = p.as_array(m["readerAuthAll"], "DeviceRequest.readerAuthAll")
                out = []
                for i, a in enumerate(seq):
                    try:
                        out.append(Sign1.decode(a))
                    except CoseError as exc:
                        raise MdocDecodeError(f"DeviceRequest.readerAuthAll[{i}]: {exc}") from exc
                auth_all = tuple(out)
        return cls(doc_requests, version, info, auth_all)
