"""The holder's consent: which requested items the wallet releases (ISO/IEC 18013-5:2021
§8.3.2.1.2.1 ItemsRequest, with IntentToRetain; §9.1.4 reader authentication).

A policy sees a :class:`ConsentRequest` (what is asked, whether the reader means to keep
it, who the reader says it is and whether that was verified) and answers the items it
releases. Two policies: an interactive prompt, and a rules file (JSON) for unattended
drills. Anything not released is refused (the wallet answers it in ``errors``).

Rules file::

    {"documents": {"<docType or *>": {"<namespace or *>": ["<id>", ...] | "*"}},
     "refuse_intent_to_retain": false,
     "require_reader_authentication": false,
     "trusted_readers_only": false,
     "origins": ["https://rp.example", ...]}

``origins``, when given, lists the web origins whose online requests (ISO/IEC TS 18013-7
Annex C) may be answered; an online request from any other origin gets nothing. Proximity
requests have no origin and are not affected.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from protocols.mdoc.age_over import AgeAnswer, identifier


class ConsentError(ValueError):
    """A consent rules file is unreadable or malformed; the message says where."""


@dataclass(frozen=True)
class ReaderIdentity:
    """What the wallet learnt of the reader from readerAuth (shown to the holder)."""

    subject: str | None
    signature_valid: bool
    trusted: bool
    reason: str = ""
    profile: tuple[str, ...] = ()
    """the ISO/IEC 18013-5 Annex B.1.7 rules its certificate breaks (``rule: why``), judged
    for a trusted reader against its reader CA"""
    revocation_failed: bool = False
    """its certificate chains to a trusted reader CA, but the wallet's lists of that CA
    revoke it or cannot tell (none held, or out of date): ``reason`` says which"""


@dataclass(frozen=True)
class ConsentRequest:
    doc_type: str
    items: Mapping[str, Mapping[str, bool]] = field(hash=False)
    """namespace -> element identifier -> IntentToRetain"""
    reader: ReaderIdentity | None = None
    available: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    """what the wallet holds for this docType: namespace -> identifiers"""
    origin: str | None = None
    """the web origin that asks, as the browser reports it (online requests only); for a
    cross-device request, the origin its answer is posted to (its response_uri's)"""
    cross_device: bool = False
    """an OpenID4VP request scanned from a QR code, not handed over by a browser"""
    instead_of: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict, hash=False)
    """(namespace, identifier) of an item in ``items`` -> the asked item it stands in for,
    which this document does not hold (a second-edition request's alternativeDataElements)"""
    age_answers: tuple[AgeAnswer, ...] = ()
    """each age_over_NN asked that this document does not hold, and the age_over_MM in
    ``items`` that answers it in its place with its value (ISO/IEC 18013-5 7.2.5): what the
    holder discloses by releasing that item"""


Released = dict[str, set[str]]


class ConsentPolicy(Protocol):
    def decide(self, request: ConsentRequest) -> Released: ...


def _reader_text(reader: ReaderIdentity | None) -> str:
    """The reader as the holder is shown it. A valid signature by a certificate that does not
    validate names the certificate, with why (its issuer unknown is one reason among others:
    a leaf without EKU mdlReaderAuth, an expired one, a broken path), never "issuer"."""
    if reader is None:
        return "reader: anonymous (no reader authentication)"
    if reader.signature_valid and not reader.trusted and not reader.revocation_failed:
        return f"reader: {reader.subject or '?'} (signature valid, reader certificate NOT trusted" + (
            f": {reader.reason})" if reader.reason else ")")
    state = "verified" if reader.signature_valid and reader.trusted else (
        "NOT verified" if not reader.signature_valid else
        "signature valid, certificate NOT trusted: revoked, or its revocation unknown")
    return f"reader: {reader.subject or '?'} ({state})" + (f" - {reader.reason}" if reader.reason and not reader.trusted else "")


@dataclass(frozen=True)
class RulesConsent:
    """Unattended consent from rules (see the module docstring for the file shape)."""

    documents: Mapping[str, Mapping[str, Any]] = field(hash=False)
    refuse_intent_to_retain: bool = False
    require_reader_authentication: bool = False
    trusted_readers_only: bool = False
    origins: tuple[str, ...] | None = None

    @classmethod
    def allow_all(cls) -> RulesConsent:
        return cls({"*": {"*": "*"}})

    @classmethod
    def from_mapping(cls, value: Any, where: str = "consent rules") -> RulesConsent:
        if not isinstance(value, Mapping):
            raise ConsentError(f"{where}: expected a JSON object")
        known = ("documents", "refuse_intent_to_retain", "require_reader_authentication",
                 "trusted_readers_only", "origins")
        unknown = set(value) - set(known)
        if unknown:
            raise ConsentError(f"{where}: unknown keys {sorted(unknown)}; the keys are "
                               f"{', '.join(known)} (e.g. {{\"documents\": {{\"*\": {{\"*\": \"*\"}}}}}} "
                               "releases everything asked)")
        docs = value.get("documents", {})
        if not isinstance(docs, Mapping):
            raise ConsentError(f"{where}.documents: expected an object")
        for dt_, nss in docs.items():
            if not isinstance(nss, Mapping):
                raise ConsentError(f"{where}.documents[{dt_!r}]: expected an object of namespaces")
            for ns, ids in nss.items():
                if ids != "*" and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                    raise ConsentError(f"{where}.documents[{dt_!r}][{ns!r}]: expected \"*\" or a list of identifiers")
        flags = {}
        for k in ("refuse_intent_to_retain", "require_reader_authentication", "trusted_readers_only"):
            v = value.get(k, False)
            if not isinstance(v, bool):
                raise ConsentError(f"{where}.{k}: expected true or false")
            flags[k] = v
        origins = value.get("origins")
        if origins is not None:
            if not (isinstance(origins, list) and all(isinstance(o, str) and o for o in origins)):
                raise ConsentError(f"{where}.origins: expected a list of web origins (\"https://rp.example\")")
            origins = tuple(o.rstrip("/") for o in origins)
        return cls({d: dict(n) for d, n in docs.items()}, **flags, origins=origins)

    @classmethod
    def from_file(cls, path: Path | str) -> RulesConsent:
        try:
            value = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConsentError(f"{path}: {exc}") from exc
        return cls.from_mapping(value, str(path))

    def _allowed(self, doc_type: str, ns: str, ident: str) -> bool:
        for dkey in (doc_type, "*"):
            nss = self.documents.get(dkey)
            if not nss:
                continue
            for nkey in (ns, "*"):
                ids = nss.get(nkey)
                if ids == "*" or (isinstance(ids, list) and ident in ids):
                    return True
        return False

    def refusal(self, request: ConsentRequest) -> str | None:
        """Why these rules release nothing to ``request``'s asker whatever it asks, or None."""
        r = request.reader
        if self.require_reader_authentication and (r is None or not r.signature_valid):
            return "the rules release only to a reader that authenticates (require_reader_authentication)"
        if self.trusted_readers_only and (r is None or not r.trusted or not r.signature_valid):
            # a trusted certificate on a signature that does not verify is anyone's
            return "the rules release only to a trusted reader (trusted_readers_only)"
        if request.origin is not None and self.origins is not None and request.origin not in self.origins:
            return f"the rules release only to the origins {', '.join(self.origins)}"
        return None

    def decide(self, request: ConsentRequest) -> Released:
        if self.refusal(request) is not None:
            return {}
        out: Released = {}
        for ns, ids in request.items.items():
            for ident, retain in ids.items():
                if retain and self.refuse_intent_to_retain:
                    continue
                if self._allowed(request.doc_type, ns, ident):
                    out.setdefault(ns, set()).add(ident)
        return out


@dataclass
class NotedConsent:
    """``policy`` deciding, with what the phone's screen would show of each request told to
    ``note``: the reader as its authentication left it (verified, not trusted, revoked), and
    why the rules released nothing when they refused it whole. Unattended rules otherwise
    released to a revoked reader, or refused a reader, without a word."""

    policy: ConsentPolicy
    note: Callable[[str], None]

    def decide(self, request: ConsentRequest) -> Released:
        self.note(_reader_text(request.reader))
        refusal = getattr(self.policy, "refusal", None)
        why = refusal(request) if refusal is not None else None
        if why is not None:
            self.note(f"released nothing: {why}")
        return self.policy.decide(request)


@dataclass
class InteractiveConsent:
    """Asks the holder item by item; the reader's identity is shown first."""

    ask: Callable[[str], str] = input
    show: Callable[[str], None] = print

    def decide(self, request: ConsentRequest) -> Released:
        if request.origin is not None and request.cross_device:
            self.show(f"web site: {request.origin} (cross-device request: the answer is posted there)")
        elif request.origin is not None:
            self.show(f"web site: {request.origin} (online request, as the browser reports it)")
        self.show(_reader_text(request.reader))
        if request.reader is not None and request.reader.profile:
            self.show("  its certificate breaks ISO/IEC 18013-5 Annex B.1.7: " + "; ".join(request.reader.profile))
        self.show(f"asks for {request.doc_type}:")
        out: Released = {}
        for ns, ids in request.items.items():
            for ident, retain in ids.items():
                held = ident in request.available.get(ns, frozenset())
                note = " (will be RETAINED)" if retain else ""
                if (ns, ident) in request.instead_of:
                    note += " (in place of {} / {}, which this document does not hold)".format(*request.instead_of[(ns, ident)])
                note += "".join(f" (in place of {identifier(a.requested)}, which this document does not hold: its value "
                                f"{str(a.value).lower()} tells the reader {a.fact()})" for a in request.age_answers
                                if a.namespace == ns and a.returned is not None and identifier(a.returned) == ident)
                if not held:
                    self.show(f"  {ns} / {ident}: not held")
                    continue
                answer = self.ask(f"  release {ns} / {ident}{note}? [y/N] ").strip().lower()
                if answer in ("y", "yes"):
                    out.setdefault(ns, set()).add(ident)
        return out
