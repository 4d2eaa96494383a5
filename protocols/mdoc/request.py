"""DeviceRequest, DocRequest, ItemsRequest and readerAuth (ISO/IEC 18013-5:2021 §8.3.2.1.2.1).

``ItemsRequestBytes`` are kept exactly as received: readerAuth signs over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols import cbor
from protocols.cose import CoseError, CoseSigner, Sign1
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError
from protocols.mdoc.transcript import SessionTranscript, reader_authentication_bytes


@dataclass(frozen=True)
class ItemsRequest:
    doc_type: str
    name_spaces: Mapping[str, Mapping[str, bool]] = field(hash=False)
    """namespace -> data element identifier -> IntentToRetain"""
    request_info: Mapping[str, Any] | None = field(default=None, hash=False)
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def build(cls, doc_type: str, name_spaces: Mapping[str, Mapping[str, bool]], request_info: Mapping | None = None) -> ItemsRequest:
        m: dict[str, Any] = {"docType": doc_type, "nameSpaces": {ns: dict(v) for ns, v in name_spaces.items()}}
        if request_info is not None:
            m["requestInfo"] = dict(request_info)
        return cls(doc_type, m["nameSpaces"], request_info, p.encode(m))

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
        return cls(doc_type, name_spaces, info, bytes(raw))


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

    def to_cbor(self) -> dict:
        return {"version": self.version, "docRequests": [d.to_cbor() for d in self.doc_requests]}

    def encode(self) -> bytes:
        return p.encode(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes | Any) -> DeviceRequest:
        m = p.as_map(p.load(data, "DeviceRequest"), "DeviceRequest")
        version = p.text(m, "version", "DeviceRequest")
        if not version.startswith("1."):
            raise MdocDecodeError(f"DeviceRequest.version: unsupported {version!r}")
        docs = p.as_array(m.get("docRequests"), "DeviceRequest.docRequests")
        if not docs:
            raise MdocDecodeError("DeviceRequest.docRequests: empty")
        return cls(tuple(DocRequest.from_cbor(d, f"DeviceRequest.docRequests[{i}]") for i, d in enumerate(docs)), version)
