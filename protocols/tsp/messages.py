"""TimeStampReq and TimeStampResp (RFC 3161 2.4.1, 2.4.2), and their HTTP media types (3.4).

A request is parsed strictly: a TSA answers every defect with a refusal naming the
PKIFailureInfo bit (badDataFormat, badAlg, badRequest, unacceptedExtension), never with an
exception of the decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import core as asn1core
from asn1crypto import tsp as asn1tsp

from protocols.cms import DECODE_ERRORS as _DECODE_ERRORS

from .errors import RequestRefused, ResponseRefused, TspError
from .token import HASHES, TsaUnit, build_token

QUERY_MEDIA_TYPE = "application/timestamp-query"
REPLY_MEDIA_TYPE = "application/timestamp-reply"
#: A nonce of more bits than this is refused (RFC 3161 asks for a large random number;
#: 64 bits are usual, and nothing needs more than 512).
MAX_NONCE_BITS = 512
MAX_REQUEST_BYTES = 16 * 1024

_FAILURE_BITS = {"badAlg": "bad_alg", "badRequest": "bad_request",
                 "badDataFormat": "bad_data_format", "timeNotAvailable": "time_not_available",
                 "unacceptedPolicy": "unaccepted_policy",
                 "unacceptedExtension": "unaccepted_extensions",
                 "addInfoNotAvailable": "add_info_not_available",
                 "systemFailure": "system_failure"}
_FAILURE_NAMES = {v: k for k, v in _FAILURE_BITS.items()}


class _TimeStampResp(asn1core.Sequence):
    """RFC 3161 2.4.2 as written: timeStampToken is OPTIONAL (absent from a refusal), which
    asn1crypto's own class does not allow."""

    _fields = [("status", asn1tsp.PKIStatusInfo),
               ("time_stamp_token", asn1tsp.ContentInfo, {"optional": True})]


#: The decoder's class names, as RFC 3161 and RFC 5280 write the types.
_ASN1_NAMES = {"DigestAlgorithm": "AlgorithmIdentifier", "DigestAlgorithmId": "OBJECT IDENTIFIER",
               "ObjectIdentifier": "OBJECT IDENTIFIER", "OctetString": "OCTET STRING",
               "Integer": "INTEGER", "Boolean": "BOOLEAN", "Extensions": "Extensions"}
_TYPE = re.compile(r"asn1crypto\.\w+\.(\w+)")


def _type(name: str) -> str:
    return _ASN1_NAMES.get(name, name)


def der_defect(exc: BaseException) -> str:
    """What the decoder found wrong with a DER message, in the words of its ASN.1 module (its
    types and fields: ``messageImprint``, ``AlgorithmIdentifier``), not of the decoder's
    classes, which a client of the TSA has never heard of."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    first = lines[0].strip()
    inside = [_type(ln.strip().removeprefix("while parsing ").rsplit(".", 1)[-1].lstrip("_"))
              for ln in lines[1:]]
    where = f" (inside {inside[0]})" if inside else ""
    if m := re.match(r"Insufficient data - (\d+) bytes requested but only (\d+) available", first):
        return f"truncated: a length says {m[1]} more bytes where {m[2]} remain{where}"
    if m := re.match(r"Extra data - (\d+) bytes of trailing data", first):
        return f"{m[1]} bytes follow the message's end"
    if m := re.match(r'Field "(\w+)" is missing from structure', first):
        camel = re.sub(r"_(\w)", lambda c: c[1].upper(), m[1])
        return f"its field {camel} is missing{where}"
    if m := re.match(r"Error parsing [\w.]+?\.(\w+) - (.*)", first):
        what = m[2]
        if n := re.match(r"method should have been (\w+), but (\w+) was found", what):
            what = f"a {n[1]} encoding expected, a {n[2]} one found"
        elif n := re.match(r"tag should have been (\d+), but (\d+) was found", what):
            what = f"tag {n[1]} expected, tag {n[2]} found"
        return f"{_type(m[1].lstrip('_'))}: {what}{where}"
    return _TYPE.sub(lambda m: _type(m.group(1)), first) + where


@dataclass(frozen=True)
class TimeStampRequest:
    """A parsed TimeStampReq: the imprint to stamp, and what the requester asked for."""

    hash_algorithm: str
    message_digest: bytes
    nonce: int | None = None
    cert_req: bool = False
    policy: str | None = None


def build_request(message_digest: bytes, hash_algorithm: str = "sha256", *,
                  nonce: int | None = None, cert_req: bool = True,
                  policy: str | None = None) -> bytes:
    """DER TimeStampReq for ``message_digest`` (a ``hash_algorithm`` digest)."""
    if hash_algorithm not in HASHES:
        raise TspError(f"hash algorithm {hash_algorithm!r}: one of {', '.join(HASHES)}")
    if len(message_digest) != HASHES[hash_algorithm].digest_size:
        raise TspError(f"a {hash_algorithm} digest is {HASHES[hash_algorithm].digest_size} "
                       f"bytes, not {len(message_digest)}")
    req = {"version": "v1",
           "message_imprint": {"hash_algorithm": {"algorithm": hash_algorithm},
                               "hashed_message": message_digest},
           "cert_req": cert_req}
    if nonce is not None:
        req["nonce"] = nonce
    if policy is not None:
        req["req_policy"] = policy
    return asn1tsp.TimeStampReq(req).dump()


def parse_request(der: bytes) -> TimeStampRequest:
    """The request in ``der``, or :class:`RequestRefused` with the failure a TSA answers."""
    if len(der) > MAX_REQUEST_BYTES:
        raise RequestRefused("badDataFormat", f"request of {len(der)} bytes is over "
                             f"{MAX_REQUEST_BYTES}")
    if not der:
        raise RequestRefused("badDataFormat", "not a DER TimeStampReq (RFC 3161 2.4.1): no bytes")
    try:
        req = asn1tsp.TimeStampReq.load(bytes(der), strict=True)
        version = req["version"].native
        imprint = req["message_imprint"]
        alg = imprint["hash_algorithm"]
        alg_name = alg["algorithm"].native
        params = alg["parameters"]
        hashed = imprint["hashed_message"].native
        nonce = req["nonce"].native
        cert_req = bool(req["cert_req"].native)
        policy = req["req_policy"].dotted if req["req_policy"].native is not None else None
        extensions = req["extensions"].native
    except _DECODE_ERRORS as exc:
        raise RequestRefused("badDataFormat",
                             f"not a DER TimeStampReq (RFC 3161 2.4.1): {der_defect(exc)}") from None
    if version != "v1":
        raise RequestRefused("badRequest", f"TimeStampReq version {version}, expected v1")
    if alg_name not in HASHES:
        raise RequestRefused("badAlg", f"hash algorithm {alg_name} is not accepted "
                             f"(one of {', '.join(HASHES)})")
    if params.native is not None and not isinstance(params, asn1core.Null):
        raise RequestRefused("badAlg", f"{alg_name} takes no parameters (or NULL)")
    if len(hashed) != HASHES[alg_name].digest_size:
        raise RequestRefused("badDataFormat", f"a {alg_name} imprint is "
                             f"{HASHES[alg_name].digest_size} bytes, not {len(hashed)}")
    if nonce is not None and (nonce < 0 or nonce.bit_length() > MAX_NONCE_BITS):
        raise RequestRefused("badRequest", f"nonce must be a non-negative integer of at most "
                             f"{MAX_NONCE_BITS} bits")
    if extensions:
        raise RequestRefused("unacceptedExtension", "this TSA accepts no request extensions")
    return TimeStampRequest(alg_name, hashed, nonce, cert_req, policy)


def grant(request: TimeStampRequest, *, unit: TsaUnit, serial: int, gen_time: datetime) -> bytes:
    """DER TimeStampResp granting ``request``: a token by ``unit`` at ``gen_time``.
    A request for another policy than the unit's is refused (unacceptedPolicy)."""
    if request.policy is not None and request.policy != unit.policy:
        raise RequestRefused("unacceptedPolicy", f"this TSA stamps under policy {unit.policy} "
                             f"only, not {request.policy}")
    token = build_token(unit=unit, hash_algorithm=request.hash_algorithm,
                        message_digest=request.message_digest, serial=serial,
                        gen_time=gen_time, nonce=request.nonce,
                        include_certificates=request.cert_req)
    return _TimeStampResp({
        "status": {"status": "granted"},
        "time_stamp_token": asn1tsp.ContentInfo.load(token),
    }).dump()


def reject(failure: str, text: str) -> bytes:
    """DER TimeStampResp refusing a request: status rejection, the failure bit, the text."""
    return _TimeStampResp({"status": {
        "status": "rejection",
        "status_string": [text[:512]],
        "fail_info": {_FAILURE_BITS[failure]},
    }}).dump()


def token_of_response(der: bytes) -> bytes:
    """The TimeStampToken (DER ContentInfo) of a granted response; :class:`ResponseRefused`
    when the TSA granted none, :class:`TspError` when ``der`` is no TimeStampResp. The token
    is verified by :func:`.token.verify_token`, against the request's imprint and nonce."""
    try:
        resp = _TimeStampResp.load(bytes(der), strict=True)
        status = resp["status"]
        code = status["status"].native
        text = " ".join(status["status_string"].native or [])
        failures = tuple(sorted(_FAILURE_NAMES.get(b, b) for b in (status["fail_info"].native or ())))
        token = resp["time_stamp_token"]
        # absent: a Void; present: its bytes as received (asking for .native first would
        # decode every certificate in it and have dump() encode the whole token again: ~7 ms)
        token_der = None if isinstance(token, asn1core.Void) else token.dump()
    except _DECODE_ERRORS as exc:
        raise TspError(f"not a DER TimeStampResp (RFC 3161 2.4.2): {der_defect(exc)}") from None
    if code not in ("granted", "granted_with_mods"):
        raise ResponseRefused(code, failures, text)
    if token_der is None:
        raise TspError(f"TSA said {code} but sent no token")
    return token_der
