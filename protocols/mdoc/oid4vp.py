"""Online presentation of mdocs with OpenID for Verifiable Presentations 1.0 over the W3C
Digital Credentials API (protocol ``openid4vp-v1-unsigned``): the other online flow beside
ISO/IEC TS 18013-7 Annex C (:mod:`protocols.mdoc.dcapi`), the one EU and Android wallets
answer. Sans-I/O, JSON values and bytes in and out.

* **Request** (OID4VP 1.0 Appendix A, section 5): ``{"response_type": "vp_token",
  "response_mode": "dc_api.jwt", "nonce", "client_metadata": {"jwks": {"keys": [the
  verifier's P-256 encryption key, "alg": "ECDH-ES", "use": "enc", "kid"]},
  "encrypted_response_enc_values_supported": ["A128GCM"], "vp_formats_supported":
  {"mso_mdoc": ...}}, "dcql_query"}``. Unsigned: no ``client_id``, the wallet takes the
  verifier to be the origin the browser reports.
* **DCQL** (section 6), the ``mso_mdoc`` part: a credential query per docType
  (``meta.doctype_value``) with claims by ``path: [namespace, element]`` and
  ``intent_to_retain``; ``claim_sets`` are honoured (the first set the wallet can fill),
  ``values`` (a claim only with one of those values) and ``credential_sets`` (for each set
  the first option the wallet answers whole: :func:`select_queries`); queries of another
  format are kept, to be left unanswered.
* **Response** (section 8.3, ``dc_api.jwt``): a JWE (``ECDH-ES``, ``A128GCM`` unless the
  verifier lists another) encrypted to that key, its payload ``{"vp_token": {credential
  query id: [base64url DeviceResponse]}}``; one DeviceResponse per mdoc.
* **SessionTranscript** (Appendix B.2.6.2)::

      [null, null, ["OpenID4VPDCAPIHandover", SHA-256(CBOR([origin, nonce, jwkThumbprint]))]]

  ``jwkThumbprint`` the RFC 7638 SHA-256 thumbprint (bytes) of the verifier's encryption
  key (null when the response is not encrypted). The device signs over it, so a response
  for another origin, nonce or key does not verify. Reproduced byte for byte from the
  specification's example (tests/test_mdoc_oid4vp.py).

The JWE (ECDH-ES key agreement, Concat KDF, AES-GCM) is joserfc's, itself over
``cryptography`` (jwcrypto, tried first, took twice as long to seal and open); the RFC 7638
thumbprint is its canonical JSON hashed here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import itertools
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocError
from protocols.mdoc.transcript import SessionTranscript, hashed_handover, is_hashed_handover

PROTOCOL = "openid4vp-v1-unsigned"
"""The Digital Credentials API protocol identifier of an unsigned OID4VP 1.0 request."""
SIGNED_PROTOCOL = "openid4vp-v1-signed"
"""... of a signed one: the request object a JWS (``typ`` oauth-authz-req+jwt) by the
verifier's certificate (``x5c``), naming itself in ``client_id`` and the origins it may be
used from in ``expected_origins`` (OID4VP 1.0 A.3.2, 5.9.3)."""
PROTOCOLS = (PROTOCOL, SIGNED_PROTOCOL)
REQUEST_TYP = "oauth-authz-req+jwt"
HANDOVER = "OpenID4VPDCAPIHandover"
RESPONSE_MODE = "dc_api.jwt"
PLAIN_RESPONSE_MODE = "dc_api"
JWE_ALG = "ECDH-ES"
DEFAULT_ENC = "A128GCM"
ENCS = ("A128GCM", "A192GCM", "A256GCM")
FORMAT = "mso_mdoc"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JWE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MAX_JWE = 4 * 1024 * 1024


class Oid4vpError(MdocError):
    """An OpenID4VP request or response is not what OID4VP 1.0 defines (for mdocs); the
    message says where."""


class Oid4vpDecryptError(Oid4vpError):
    """The response's JWE does not decrypt with the verifier's key."""


_b64url = p.b64url


def unb64url(text: Any, where: str) -> bytes:
    """The bytes of a base64url string (padding tolerated, nothing else), or :class:`Oid4vpError`."""
    return p.unb64url(text, where, Oid4vpError)


# -- keys -------------------------------------------------------------------------------------


def public_jwk(key: ec.EllipticCurvePublicKey, *, kid: str) -> dict[str, str]:
    """The verifier's encryption key as the request carries it (P-256, ECDH-ES, use enc)."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise Oid4vpError("the response encryption key must be an EC P-256 public key")
    n = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64url(n.x.to_bytes(32, "big")), "y": _b64url(n.y.to_bytes(32, "big")),
            "use": "enc", "alg": JWE_ALG, "kid": kid}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> bytes:
    """RFC 7638 SHA-256 thumbprint of an EC P-256 public JWK, as bytes: the SHA-256 of its
    required members ``crv, kty, x, y`` in that order, as JSON without whitespace (section
    3.2). The point is checked to be on the curve first (``cryptography``)."""
    try:
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise ValueError(f"kty {jwk.get('kty')!r:.10} crv {jwk.get('crv')!r:.10}: need EC P-256")
        if any(not isinstance(jwk.get(c), str) or "=" in jwk[c] for c in ("x", "y")):
            raise ValueError("x and y are base64url without padding (RFC 7518 6.2.1, RFC 7515 2)")
        x, y = (unb64url(jwk.get(c), f"jwk.{c}") for c in ("x", "y"))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("x and y are 32 bytes each on P-256")
        ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()).public_key()
    except (AttributeError, ValueError, Oid4vpError) as exc:
        raise Oid4vpError(f"client_metadata.jwks: not an EC P-256 public key ({exc})") from None
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).digest()


# -- the transcript -----------------------------------------------------------------------------


def session_transcript(origin: str, nonce: str, thumbprint: bytes | None) -> SessionTranscript:
    """``[null, null, ["OpenID4VPDCAPIHandover", SHA-256(CBOR([origin, nonce, thumbprint]))]]``;
    ``origin`` not prefixed (``https://rp.example``), ``thumbprint`` None for ``dc_api``."""
    if not isinstance(origin, str) or not origin or not isinstance(nonce, str) or not nonce:
        raise Oid4vpError("SessionTranscript: origin and nonce are non-empty strings")
    if thumbprint is not None and (not isinstance(thumbprint, bytes) or len(thumbprint) != 32):
        raise Oid4vpError("SessionTranscript: the JWK thumbprint is 32 bytes (SHA-256)")
    return hashed_handover(HANDOVER, [origin, nonce, thumbprint])


def is_oid4vp_transcript(transcript: SessionTranscript) -> bool:
    return is_hashed_handover(transcript, HANDOVER)


# -- DCQL for mso_mdoc --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimQuery:
    namespace: str
    identifier: str
    intent_to_retain: bool = False
    id: str | None = None
    #: DCQL ``values``: the claim is to be returned only when its value is one of these,
    #: of the same type (OID4VP 1.0 6.3); None: any value.
    values: tuple[str | int | bool, ...] | None = None

    def matches(self, value: Any) -> bool:
        """``value`` is one of :attr:`values`, type and value both (``True`` is not ``1``)."""
        return self.values is None or any(type(v) is type(value) and v == value for v in self.values)


@dataclass(frozen=True)
class CredentialSet:
    """A DCQL credential set query (OID4VP 1.0 6.2): ``options``, each a list of credential
    query ids that together satisfy it; ``required`` false for one the wallet may leave out."""

    options: tuple[tuple[str, ...], ...]
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"options": [list(o) for o in self.options], **({} if self.required else {"required": False})}


#: What a wallet knows of a claim it holds: namespace, element -> its value (for ``values``).
ValueOf = Callable[[str, str], Any]


@dataclass(frozen=True)
class CredentialQuery:
    """One DCQL credential query; of format ``mso_mdoc`` unless :attr:`format` says another,
    which this wallet holds nothing of (such a query is kept, to be left unanswered)."""

    id: str
    doctype: str
    claims: tuple[ClaimQuery, ...]
    claim_sets: tuple[tuple[str, ...], ...] = ()
    format: str = FORMAT
    #: DCQL ``trusted_authorities`` (OID4VP 1.0 6.1.1): (type, values) each; a credential
    #: is answered only if one of them names its issuer. This wallet judges type ``aki``
    #: (base64url KeyIdentifiers of an authority in the issuer's chain); others match nothing.
    trusted_authorities: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def authority_key_ids(self) -> tuple[bytes, ...] | None:
        """The ``aki`` key identifiers of :attr:`trusted_authorities`; None: no restriction
        (no trusted_authorities); empty: none this wallet can judge, so nothing matches."""
        if not self.trusted_authorities:
            return None
        return tuple(unb64url(v, "trusted_authorities.values") for t, vs in self.trusted_authorities
                     if t == "aki" for v in vs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "format": self.format, "meta": {"doctype_value": self.doctype},
                               "claims": [{**({"id": c.id} if c.id else {}), "path": [c.namespace, c.identifier],
                                           "intent_to_retain": c.intent_to_retain,
                                           **({"values": list(c.values)} if c.values is not None else {})}
                                          for c in self.claims]}
        if self.claim_sets:
            out["claim_sets"] = [list(s) for s in self.claim_sets]
        if self.trusted_authorities:
            out["trusted_authorities"] = [{"type": t, "values": list(vs)} for t, vs in self.trusted_authorities]
        return out

    @property
    def needs_holdings(self) -> bool:
        """Whether what the wallet holds decides the items (claim sets, value matching)."""
        return bool(self.claim_sets) or any(c.values is not None for c in self.claims)

    def _options(self) -> list[list[ClaimQuery]]:
        if not self.claim_sets:
            return [list(self.claims)]
        by_id = {c.id: c for c in self.claims}
        return [[by_id[i] for i in s] for s in self.claim_sets]

    @staticmethod
    def _available(c: ClaimQuery, held: Mapping[str, frozenset[str]], value_of: ValueOf | None) -> bool:
        if c.identifier not in held.get(c.namespace, ()):
            return False
        return c.values is None or (value_of is not None and c.matches(value_of(c.namespace, c.identifier)))

    def satisfiable(self, held: Mapping[str, frozenset[str]] | None, value_of: ValueOf | None = None) -> bool:
        """Whether a credential holding ``held`` (its values by ``value_of``) answers this
        query whole: every claim, or every claim of one of its claim sets."""
        return self.format == FORMAT and held is not None and any(
            all(self._available(c, held, value_of) for c in option) for option in self._options())

    def items(self, held: Mapping[str, frozenset[str]] | None = None,
              value_of: ValueOf | None = None) -> dict[str, dict[str, bool]]:
        """namespace -> element -> intent to retain, as an ItemsRequest has them: all claims,
        or with ``claim_sets`` the first set whose claims are all ``held`` (the first set
        when ``held`` is not given, or when none can be filled); a claim with ``values`` only
        when its held value is one of them (checked when ``held`` is given)."""
        options = self._options()
        chosen = options[0]
        if held is not None and self.claim_sets:
            chosen = next((o for o in options if all(self._available(c, held, value_of) for c in o)), options[0])
        out: dict[str, dict[str, bool]] = {}
        for c in chosen:
            if c.values is not None and held is not None and not self._available(c, held, value_of):
                continue  # "return the claim only if ... the value match[es]" (OID4VP 1.0 6.3)
            out.setdefault(c.namespace, {})[c.identifier] = c.intent_to_retain
        return out


def _parse_credential(value: Any, where: str) -> CredentialQuery:
    if not isinstance(value, Mapping):
        raise Oid4vpError(f"{where}: expected an object")
    qid = value.get("id")
    if not isinstance(qid, str) or _ID.fullmatch(qid) is None:
        raise Oid4vpError(f"{where}.id: 1-64 characters of A-Z a-z 0-9 _ -")
    fmt = value.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise Oid4vpError(f"{where}.format: a credential format identifier")
    if fmt != FORMAT:  # another format: this wallet holds none of it, and leaves the query unanswered
        return CredentialQuery(qid, "", (), (), fmt)
    meta = value.get("meta")
    doctype = meta.get("doctype_value") if isinstance(meta, Mapping) else None
    if not isinstance(doctype, str) or not doctype:
        raise Oid4vpError(f"{where}.meta.doctype_value: a docType string")
    raw_claims = value.get("claims")
    if not isinstance(raw_claims, list) or not raw_claims:
        raise Oid4vpError(f"{where}.claims: a non-empty array (a request for the whole mdoc is not answered)")
    claims = []
    for i, c in enumerate(raw_claims):
        w = f"{where}.claims[{i}]"
        if not isinstance(c, Mapping):
            raise Oid4vpError(f"{w}: expected an object")
        path = c.get("path")
        if not (isinstance(path, list) and len(path) == 2 and all(isinstance(x, str) and x for x in path)):
            raise Oid4vpError(f"{w}.path: [namespace, element identifier] for mso_mdoc")
        retain = c.get("intent_to_retain", False)
        cid = c.get("id")
        if not isinstance(retain, bool) or (cid is not None and (not isinstance(cid, str) or _ID.fullmatch(cid) is None)):
            raise Oid4vpError(f"{w}: intent_to_retain is true or false, id an identifier")
        values = c.get("values")
        if values is not None and not (isinstance(values, list) and values and all(
                type(v) in (str, int, bool) for v in values)):
            raise Oid4vpError(f"{w}.values: a non-empty array of strings, integers or booleans")
        claims.append(ClaimQuery(path[0], path[1], retain, cid, None if values is None else tuple(values)))
    sets: tuple[tuple[str, ...], ...] = ()
    if "claim_sets" in value:
        ids = {c.id for c in claims if c.id}
        raw_sets = value["claim_sets"]
        if not (isinstance(raw_sets, list) and raw_sets and all(
                isinstance(s, list) and s and all(isinstance(i, str) and i in ids for i in s) for s in raw_sets)):
            raise Oid4vpError(f"{where}.claim_sets: non-empty arrays of the ids of its claims")
        sets = tuple(tuple(s) for s in raw_sets)
    authorities: list[tuple[str, tuple[str, ...]]] = []
    if "trusted_authorities" in value:
        raw = value["trusted_authorities"]
        if not isinstance(raw, list) or not raw:
            raise Oid4vpError(f"{where}.trusted_authorities: a non-empty array of {{type, values}} objects")
        for i, ta in enumerate(raw):
            kind = ta.get("type") if isinstance(ta, Mapping) else None
            vals = ta.get("values") if isinstance(ta, Mapping) else None
            if not (isinstance(kind, str) and kind and isinstance(vals, list) and vals
                    and all(isinstance(v, str) and v for v in vals)):
                raise Oid4vpError(f"{where}.trusted_authorities[{i}]: expected {{\"type\": string, \"values\": "
                                  "[non-empty strings]}")
            if kind == "aki":
                for j, v in enumerate(vals):
                    unb64url(v, f"{where}.trusted_authorities[{i}].values[{j}]")
            authorities.append((kind, tuple(vals)))
    return CredentialQuery(qid, doctype, tuple(claims), sets, trusted_authorities=tuple(authorities))


def credential_query(qid: str, doctype: str, items: Mapping[str, Mapping[str, bool]],
                     info: Any = None, *, limit: int = 64) -> CredentialQuery:
    """An ISO request for one docType as a DCQL credential query: its items as claims, and
    what an ISO/IEC 18013-5 second-edition requestInfo (``info``, a
    :class:`~protocols.mdoc.request.DocRequestInfo`) adds, in DCQL's terms:
    ``alternativeDataElements`` as ``claim_sets`` (the items asked first, then each choice
    of alternatives in the reader's order of preference, at most ``limit`` sets), and
    ``issuerIdentifiers`` as ``trusted_authorities`` of type ``aki``."""
    asked = [(ns, ident, retain) for ns, ids in items.items() for ident, retain in ids.items()]
    alternatives = []
    if info is not None:
        keys = {(ns, ident) for ns, ident, _ in asked}
        alternatives = [a for a in info.alternative_data_elements if a.requested in keys]
    authorities = ()
    if info is not None and info.issuer_identifiers:
        authorities = (("aki", tuple(_b64url(i) for i in info.issuer_identifiers)),)
    if not alternatives:
        return CredentialQuery(qid, doctype, tuple(ClaimQuery(ns, i, r) for ns, i, r in asked),
                               trusted_authorities=authorities)
    retain_of = {(ns, ident): r for ns, ident, r in asked}
    ids: dict[tuple[str, str], str] = {}
    claims: list[ClaimQuery] = []

    def claim(ref: tuple[str, str], retain: bool) -> str:
        if ref not in ids:
            ids[ref] = f"c{len(ids)}"
            claims.append(ClaimQuery(ref[0], ref[1], retain, ids[ref]))
        return ids[ref]

    for ns, ident, retain in asked:
        claim((ns, ident), retain)
    # per alternative group: the asked element itself first, then each of its sets
    choices = [[(a.requested,)] + [tuple(s) for s in a.alternatives] for a in alternatives]
    replaced = {a.requested for a in alternatives}
    base = [ids[(ns, ident)] for ns, ident, _ in asked if (ns, ident) not in replaced]
    sets: list[tuple[str, ...]] = []
    for combo in itertools.product(*choices):
        if len(sets) == limit:
            break
        chosen = list(base)
        for a, pick in zip(alternatives, combo, strict=True):
            for ref in pick:
                cid = claim(ref, retain_of[a.requested])
                if cid not in chosen:
                    chosen.append(cid)
        sets.append(tuple(chosen))
    return CredentialQuery(qid, doctype, tuple(claims), tuple(sets), trusted_authorities=authorities)


def credential_sets_of(use_cases: Sequence[Any], query_ids: Sequence[str]) -> tuple[CredentialSet, ...]:
    """ISO/IEC 18013-5 second-edition use cases (:class:`~protocols.mdoc.request.UseCase`,
    document sets by request index) as DCQL ``credential_sets`` over ``query_ids``."""
    return tuple(CredentialSet(tuple(tuple(query_ids[i] for i in s) for s in u.document_sets), u.mandatory)
                 for u in use_cases)


def parse_dcql(value: Any) -> tuple[CredentialQuery, ...]:
    """The credential queries of a DCQL query: ``mso_mdoc`` ones parsed, those of another
    format kept as unanswerable (a request of none but other formats is refused)."""
    if not isinstance(value, Mapping):
        raise Oid4vpError("dcql_query: expected an object")
    creds = value.get("credentials")
    if not isinstance(creds, list) or not creds:
        raise Oid4vpError("dcql_query.credentials: a non-empty array")
    out = tuple(_parse_credential(c, f"dcql_query.credentials[{i}]") for i, c in enumerate(creds))
    if len({q.id for q in out}) != len(out):
        raise Oid4vpError("dcql_query.credentials: ids must be unique")
    if all(q.format != FORMAT for q in out):
        raise Oid4vpError(f"dcql_query.credentials: formats {', '.join(sorted({q.format[:40] for q in out}))}: only "
                          f"{FORMAT!r} is answered here")
    return out


def parse_credential_sets(value: Any, queries: Sequence[CredentialQuery]) -> tuple[CredentialSet, ...]:
    """A DCQL query's ``credential_sets`` (absent: none, every query is asked for)."""
    if not isinstance(value, Mapping) or "credential_sets" not in value:
        return ()
    raw = value["credential_sets"]
    ids = {q.id for q in queries}
    if not isinstance(raw, list) or not raw:
        raise Oid4vpError("dcql_query.credential_sets: a non-empty array of credential set queries")
    out = []
    for i, cs in enumerate(raw):
        options = cs.get("options") if isinstance(cs, Mapping) else None
        required = cs.get("required", True) if isinstance(cs, Mapping) else None
        if not (isinstance(options, list) and options and all(
                isinstance(o, list) and o and all(isinstance(q, str) and q in ids for q in o) for o in options)):
            raise Oid4vpError(f"dcql_query.credential_sets[{i}].options: non-empty arrays of credential query ids")
        if not isinstance(required, bool):
            raise Oid4vpError(f"dcql_query.credential_sets[{i}].required: true or false")
        out.append(CredentialSet(tuple(tuple(o) for o in options), required))
    return tuple(out)


def select_queries(queries: Sequence[CredentialQuery], sets: Sequence[CredentialSet],
                   satisfiable: Callable[[CredentialQuery], bool]) -> tuple[CredentialQuery, ...]:
    """The credential queries to answer (OID4VP 1.0 6.4.2): without credential sets, every
    query; with them, for each set the first option whose queries are all ``satisfiable``
    (a set with none: left out when optional, :class:`Oid4vpError` when required)."""
    if not sets:
        return tuple(queries)
    by_id = {q.id: q for q in queries}
    chosen: dict[str, CredentialQuery] = {}
    for i, cs in enumerate(sets):
        option = next((o for o in cs.options if all(satisfiable(by_id[q]) for q in o)), None)
        if option is None:
            if cs.required:
                raise Oid4vpError(f"dcql_query.credential_sets[{i}]: no option this wallet can answer (options "
                                  f"{[list(o) for o in cs.options]!r:.200})")
            continue
        chosen.update((q, by_id[q]) for q in option)
    return tuple(q for q in queries if q.id in chosen)


# -- the request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Oid4vpRequest:
    """An unsigned OID4VP 1.0 request for mdocs over the Digital Credentials API."""

    nonce: str
    queries: tuple[CredentialQuery, ...]
    encryption_jwk: Mapping[str, Any] | None  # None: response_mode dc_api (not encrypted)
    encs: tuple[str, ...] = (DEFAULT_ENC,)
    credential_sets: tuple[CredentialSet, ...] = ()

    @classmethod
    def build(cls, queries: Sequence[CredentialQuery], encryption_key: ec.EllipticCurvePublicKey | None, *,
              nonce: str | None = None, kid: str | None = None,
              credential_sets: Sequence[CredentialSet] = ()) -> Oid4vpRequest:
        jwk = None if encryption_key is None else public_jwk(encryption_key, kid=kid or secrets.token_urlsafe(8))
        return cls(nonce or secrets.token_urlsafe(32), tuple(queries), jwk, credential_sets=tuple(credential_sets))

    @property
    def response_mode(self) -> str:
        return PLAIN_RESPONSE_MODE if self.encryption_jwk is None else RESPONSE_MODE

    @functools.cached_property
    def thumbprint(self) -> bytes | None:
        """RFC 7638 thumbprint of the encryption key (None for dc_api), computed once."""
        return None if self.encryption_jwk is None else jwk_thumbprint(self.encryption_jwk)

    def to_json(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"vp_formats_supported": {FORMAT: {
            "issuerauth_alg_values": [-7, -35, -36, -9], "deviceauth_alg_values": [-7, -35, -36, -9]}}}
        if self.encryption_jwk is not None:
            metadata["jwks"] = {"keys": [dict(self.encryption_jwk)]}
            metadata["encrypted_response_enc_values_supported"] = list(self.encs)
        return {"protocol": PROTOCOL, "data": {
            "response_type": "vp_token", "response_mode": self.response_mode, "nonce": self.nonce,
            "client_metadata": metadata, "dcql_query": {
                "credentials": [q.to_json() for q in self.queries],
                **({"credential_sets": [c.to_json() for c in self.credential_sets]} if self.credential_sets else {})}}}

    @classmethod
    def parse(cls, value: Any) -> Oid4vpRequest:
        """From an unsigned request object (or its ``data`` member alone); a signed one goes
        through :func:`parse_signed`."""
        if not isinstance(value, Mapping):
            raise Oid4vpError(f"request: expected a JSON object, got {type(value).__name__}")
        data = value
        if "protocol" in value or ("data" in value and "nonce" not in value):
            if value.get("protocol") != PROTOCOL:
                raise Oid4vpError(f"request.protocol: expected {PROTOCOL!r}, got {value.get('protocol')!r:.60}")
            data = value.get("data")
            if not isinstance(data, Mapping):
                raise Oid4vpError("request.data: expected a JSON object")
        if "request" in data or "client_id" in data:
            raise Oid4vpError(f"a signed request (request, client_id) comes as {SIGNED_PROTOCOL!r}")
        return cls.of_params(data)

    @classmethod
    def of_params(cls, data: Mapping[str, Any], modes: tuple[str, str] = (RESPONSE_MODE, PLAIN_RESPONSE_MODE)
                 ) -> Oid4vpRequest:
        """From the request's parameters; ``modes`` the encrypted and the clear response
        modes it may ask for (``dc_api.jwt``/``dc_api``, or ``direct_post.jwt``/``direct_post``)."""
        if data.get("response_type") != "vp_token":
            raise Oid4vpError(f"response_type: expected 'vp_token', got {data.get('response_type')!r:.40}")
        nonce = data.get("nonce")
        if not isinstance(nonce, str) or not nonce or len(nonce) > 512:
            raise Oid4vpError("nonce: a non-empty string")
        mode = data.get("response_mode", modes[1])
        if mode not in modes:
            raise Oid4vpError(f"response_mode: {mode!r:.40}: expected {modes[0]!r} or {modes[1]!r}")
        queries = parse_dcql(data.get("dcql_query"))
        sets = parse_credential_sets(data.get("dcql_query"), queries)
        jwk, encs = None, (DEFAULT_ENC,)
        if mode == modes[0]:
            metadata = data.get("client_metadata")
            keys = metadata.get("jwks", {}).get("keys") if isinstance(metadata, Mapping) and isinstance(
                metadata.get("jwks"), Mapping) else None
            if not isinstance(keys, list):
                raise Oid4vpError(f"client_metadata.jwks.keys: {mode} needs the verifier's encryption key")
            jwk = next((k for k in keys if isinstance(k, Mapping) and k.get("kty") == "EC" and k.get("crv") == "P-256"
                        and k.get("alg", JWE_ALG) == JWE_ALG and k.get("use", "enc") == "enc"), None)
            if jwk is None:
                raise Oid4vpError("client_metadata.jwks.keys: no EC P-256 key for ECDH-ES")
            offered = metadata.get("encrypted_response_enc_values_supported", [DEFAULT_ENC])
            if not isinstance(offered, list) or not any(e in ENCS for e in offered):
                raise Oid4vpError(f"client_metadata.encrypted_response_enc_values_supported: none of {', '.join(ENCS)}")
            encs = tuple(e for e in offered if e in ENCS)
        request = cls(nonce, queries, None if jwk is None else dict(jwk), encs, sets)
        request.thumbprint  # noqa: B018 - a key that is one: refused here, not when first used
        return request


# -- signed requests ------------------------------------------------------------------------------


def client_id_for(leaf_der: bytes) -> str:
    """The client identifier a verifier certificate gives (OID4VP 1.0 5.9.3):
    ``x509_san_dns:<its first DNS name>``, or ``x509_hash:<base64url SHA-256 of its DER>``
    when it has none."""
    from cryptography import x509

    from protocols import certs

    try:
        names = certs.load_der(leaf_der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (x509.ExtensionNotFound, ValueError):  # CertificateParseError is a ValueError
        names = []
    return f"x509_san_dns:{names[0]}" if names else f"x509_hash:{_b64url(hashlib.sha256(leaf_der).digest())}"


def sign_request(request: Oid4vpRequest, signer: Any, chain: Sequence[bytes], *,
                 expected_origins: Sequence[str]) -> dict[str, Any]:
    """``{"protocol": "openid4vp-v1-signed", "data": {"request": JWS}}``: the request's
    parameters with ``client_id`` (from the leaf of ``chain``) and ``expected_origins``,
    signed by ``signer`` (a :class:`~protocols.cose.CoseSigner`: ES256 gives JWS's ``r||s``
    as COSE does, the key stays behind it) with ``x5c`` the chain (leaf first)."""
    if not chain:
        raise Oid4vpError("a signed request needs an ES256/384/512 signer and its certificate chain")
    claims = {**request.to_json()["data"], "client_id": client_id_for(chain[0]),
              "expected_origins": list(expected_origins)}
    return {"protocol": SIGNED_PROTOCOL, "data": {"request": sign_request_object(claims, signer, chain)}}


def sign_request_object(claims: Mapping[str, Any], signer: Any, chain: Sequence[bytes]) -> str:
    """A request object (RFC 9101 as OID4VP 1.0 section 5 uses it): ``claims`` as a JWS in
    compact serialization, header ``typ`` oauth-authz-req+jwt, ``alg`` the signer's, ``x5c``
    the chain (leaf first)."""
    from protocols.cose import ES256, ES384, ES512

    alg = {ES256: "ES256", ES384: "ES384", ES512: "ES512"}.get(getattr(signer, "alg", None))
    if alg is None or not chain:
        raise Oid4vpError("a signed request needs an ES256/384/512 signer and its certificate chain")
    header = {"alg": alg, "typ": REQUEST_TYP, "x5c": [base64.b64encode(c).decode("ascii") for c in chain]}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False).encode()))
    return signing_input + "." + _b64url(signer.sign(signing_input.encode("ascii")))


@dataclass(frozen=True)
class SignedBy:
    """Who signed a request, as far as its JWS says: its certificates (leaf first), the
    ``client_id`` it claims (checked against the leaf), the origins it may be used from."""

    chain: tuple[bytes, ...]
    client_id: str
    expected_origins: tuple[str, ...]


def verify_request_object(jws: Any) -> tuple[dict[str, Any], tuple[bytes, ...]]:
    """A signed request object's claims and its ``x5c`` chain (leaf first), once its JWS
    verifies with the leaf's key and its ``typ`` is oauth-authz-req+jwt (OID4VP 1.0 section
    5: a wallet MUST NOT process another). Whether the leaf chains to a trusted verifier CA,
    and what its ``client_id`` may be, are the caller's."""
    from protocols import certs
    from protocols.cose import CoseError, ecdsa_verify

    if not isinstance(jws, str) or len(jws) > MAX_JWE or re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
                                                                     jws) is None:
        raise Oid4vpError("request object: a JWS in compact serialization (three base64url parts)")
    head_b64, body_b64, sig_b64 = jws.split(".")
    try:
        header = json.loads(unb64url(head_b64, "JWS header"))
        claims = json.loads(unb64url(body_b64, "JWS payload"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Oid4vpError(f"request JWS: header or payload not JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Oid4vpError("request JWS: header and payload are JSON objects")
    if header.get("typ") != REQUEST_TYP:
        raise Oid4vpError(f"request JWS typ: expected {REQUEST_TYP!r}, got {header.get('typ')!r:.40}")
    algs = {"ES256": -7, "ES384": -35, "ES512": -36}
    if header.get("alg") not in algs:
        raise Oid4vpError(f"request JWS alg: {header.get('alg')!r:.20}: ES256, ES384 or ES512")
    x5c = header.get("x5c")
    if not (isinstance(x5c, list) and x5c and all(isinstance(c, str) for c in x5c)) or len(x5c) > 5:
        raise Oid4vpError("request JWS x5c: the verifier's certificates, leaf first")
    try:
        chain = tuple(base64.b64decode(c, validate=True) for c in x5c)
        # a hostile page's certificate: loaded as any from the wire (certs.load_der reads its
        # version, extensions and Names now; public_key_of its key), so each refusal is typed
        key = certs.public_key_of(certs.load_der(chain[0]))
        ecdsa_verify(algs[header["alg"]], key, unb64url(sig_b64, "JWS signature"),
                     f"{head_b64}.{body_b64}".encode("ascii"))
    except (binascii.Error, ValueError) as exc:  # CertificateParseError is a ValueError
        raise Oid4vpError(f"request JWS x5c: not a certificate ({exc})") from None
    except CoseError as exc:
        raise Oid4vpError(f"request JWS: the signature does not verify with its x5c leaf ({exc})") from None
    return claims, chain


def parse_signed(value: Any, origin: str) -> tuple[Oid4vpRequest, SignedBy]:
    """A signed request, for the page at ``origin``: its JWS verified with its ``x5c`` leaf
    key, ``typ`` oauth-authz-req+jwt, ``client_id`` the leaf's (x509_san_dns or x509_hash),
    ``origin`` among ``expected_origins`` (a request replayed from another site is refused).
    Whether the leaf chains to a trusted verifier CA is the caller's (reader trust anchors)."""
    if not isinstance(value, Mapping) or value.get("protocol") != SIGNED_PROTOCOL:
        raise Oid4vpError(f"request.protocol: expected {SIGNED_PROTOCOL!r}")
    data = value.get("data")
    jws = data.get("request") if isinstance(data, Mapping) else None
    if not isinstance(jws, str):
        raise Oid4vpError("request.data.request: a JWS in compact serialization (three base64url parts)")
    claims, chain = verify_request_object(jws)
    client_id = claims.get("client_id")
    if client_id != client_id_for(chain[0]):
        raise Oid4vpError(f"request client_id {client_id!r:.80}: not the one its certificate gives "
                          f"({client_id_for(chain[0])})")
    origins = claims.get("expected_origins")
    if not (isinstance(origins, list) and all(isinstance(o, str) for o in origins)):
        raise Oid4vpError("request expected_origins: an array of origins (required in a signed request)")
    if origin not in origins:
        raise Oid4vpError(f"request expected_origins {origins[:5]!r:.200}: this page's origin {origin!r:.80} is not "
                          "among them (a request replayed from another site)")
    request = Oid4vpRequest.of_params({k: v for k, v in claims.items() if k not in ("client_id", "expected_origins")})
    return request, SignedBy(chain, client_id, tuple(origins))


# -- the response -------------------------------------------------------------------------------


def vp_token(documents: Mapping[str, Sequence[bytes]]) -> dict[str, list[str]]:
    """``{query id: [base64url DeviceResponse, ...]}``."""
    return {qid: [_b64url(d) for d in docs] for qid, docs in documents.items()}


def seal(token: Mapping[str, list[str]], request: Oid4vpRequest, *, protocol: str = PROTOCOL) -> dict[str, Any]:
    """The wallet's answer for the page: ``{"protocol", "data": {"response": JWE}}`` (or
    ``{"vp_token"}`` in the clear for ``dc_api``), ``protocol`` the request's."""
    payload = {"vp_token": dict(token)}
    if request.encryption_jwk is None:
        return {"protocol": protocol, "data": payload}
    return {"protocol": protocol, "data": {"response": encrypt(payload, request)}}


def encrypt(payload: Mapping[str, Any], request: Oid4vpRequest) -> str:
    """``payload`` (JSON) as a JWE in compact serialization to the request's encryption key:
    ECDH-ES, the first ``enc`` both sides support, the key's ``kid`` in the header."""
    from joserfc import jwe
    from joserfc.jwk import ECKey

    if request.encryption_jwk is None:
        raise Oid4vpError("this request asks for its response in the clear: nothing to encrypt to")
    key = ECKey.import_key({k: request.encryption_jwk[k] for k in ("kty", "crv", "x", "y")})
    header = {"alg": JWE_ALG, "enc": request.encs[0]}
    if isinstance(request.encryption_jwk.get("kid"), str):
        header["kid"] = request.encryption_jwk["kid"]
    return jwe.encrypt_compact(header, json.dumps(dict(payload), separators=(",", ":")).encode(), key,
                               algorithms=[JWE_ALG, request.encs[0]])


def response_payload(value: Any) -> str | dict:
    """From the page's credential ``{"protocol", "data": {...}}`` (or ``data`` alone): the
    JWE compact text, or the clear payload (``dc_api``)."""
    if not isinstance(value, Mapping):
        raise Oid4vpError(f"response: expected a JSON object, got {type(value).__name__}")
    data = value
    if "data" in value:
        if value.get("protocol", PROTOCOL) not in PROTOCOLS:
            raise Oid4vpError(f"response.protocol: expected {PROTOCOL!r} or {SIGNED_PROTOCOL!r}, "
                              f"got {value.get('protocol')!r:.60}")
        data = value["data"]
    if not isinstance(data, Mapping):
        raise Oid4vpError("response.data: expected a JSON object")
    if "response" in data:
        jwe_text = data["response"]
        if not isinstance(jwe_text, str) or len(jwe_text) > MAX_JWE or _JWE.fullmatch(jwe_text) is None:
            raise Oid4vpError("response.data.response: a JWE in compact serialization (five base64url parts)")
        return jwe_text
    if "vp_token" in data:
        return dict(data)
    raise Oid4vpError("response.data: neither 'response' (a JWE) nor 'vp_token'")


def open_response(jwe_text: str, private_key: ec.EllipticCurvePrivateKey, *, encs: Sequence[str] = ENCS) -> dict:
    """The verifier's side: the JWE's JSON payload, decrypted with ECDH-ES and one of ``encs``."""
    from joserfc import jwe
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey

    try:
        opened = jwe.decrypt_compact(jwe_text, ECKey.import_key(private_key), algorithms=[JWE_ALG, *encs])
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise Oid4vpDecryptError(f"JWE: does not decrypt with this request's key ({type(exc).__name__}: "
                                 f"{str(exc)[:120]})") from None
    try:
        payload = json.loads(opened.plaintext)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise Oid4vpError(f"JWE payload: not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise Oid4vpError("JWE payload: expected a JSON object")
    return payload


def documents(payload: Mapping[str, Any], query_ids: Sequence[str]) -> dict[str, list[bytes]]:
    """The DeviceResponse bytes of each asked query id, out of ``{"vp_token": {id: [b64, ...]}}``
    (a query the wallet did not answer is left out; an id not asked is refused)."""
    token = payload.get("vp_token")
    if not isinstance(token, Mapping):
        raise Oid4vpError("vp_token: expected an object of credential query ids")
    unknown = [k for k in token if k not in query_ids]
    if unknown:
        raise Oid4vpError(f"vp_token: not asked for: {', '.join(map(str, unknown[:5]))}")
    out = {}
    for qid, presentations in token.items():
        if not isinstance(presentations, list) or not presentations:
            raise Oid4vpError(f"vp_token.{qid}: a non-empty array of presentations")
        out[qid] = [unb64url(x, f"vp_token.{qid}[{i}]") for i, x in enumerate(presentations)]
    return out
