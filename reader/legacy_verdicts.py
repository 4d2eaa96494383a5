"""Verdicts kept by a worker of the version before check codes (specs/presentation.md 4,
"Codes"), read back from the sessions table during a rolling upgrade: each check gets the
``code`` this version would have given it, derived from its name and reason, so that no
answer of the result route lacks the code its OpenAPI document requires.

A verdict is stored as JSON when its session ends and read back by whichever worker serves
``GET /sessions/{sid}/result`` (:class:`reader.sessions.SqlSessionStore`); a session lives
minutes, so only the verdicts of an upgrade's first minutes are ever read here. The reasons
are the ones the codes were added beside (unchanged since); where a name and reason do not
pin a code, the check gets ``failed``, which the vocabulary defines as "read the reason".
"""

from __future__ import annotations

import json
import re

from protocols.mdoc.verify import (
    DEVICE_AUTHENTICATION,
    DOC_TYPE,
    ISSUER_CERTIFICATE_CHAIN,
    ISSUER_SIGNATURE,
    KEY_AUTHORIZATIONS,
    MSO_STRUCTURE,
    RESPONSE_STATUS,
    VALIDITY,
    VALUE_DIGESTS,
)
from reader.ds_crl import DS_REVOCATION
from reader.pipeline import (
    DS_PROFILE,
    IACA_PROFILE,
    MSO_SIGNED_WITHIN_DS,
    REVOCATION_STATUS,
    STATUS_LIST_FRESHNESS,
    STATUS_LIST_SIGNATURE,
    TRUST_ANCHOR_SCOPE,
)
from reader.session import HOLDER_ENDED, MATCHES_REQUEST, SESSION, SESSION_FAILED

#: The one code a failed check of these names has (unless it was not checked).
_ONE_CODE = {
    DOC_TYPE: "tampered",
    ISSUER_CERTIFICATE_CHAIN: "untrusted_issuer",
    IACA_PROFILE: "untrusted_issuer",
    DS_PROFILE: "untrusted_issuer",
    TRUST_ANCHOR_SCOPE: "untrusted_issuer",
    MSO_SIGNED_WITHIN_DS: "untrusted_issuer",
    MSO_STRUCTURE: "malformed",
    "saved_transcript": "malformed",
    STATUS_LIST_SIGNATURE: "unavailable",
    STATUS_LIST_FRESHNESS: "unavailable",
    DEVICE_AUTHENTICATION: "device_auth_failed",
}
_OUTSIDE = re.compile(r"(\S+) outside validFrom (\S+) \.\. validUntil (\S+)")


def derived_code(name: str, passed: bool, reason: str) -> str:
    """The code of a check kept without one (``name``, ``passed``, ``reason`` as kept)."""
    if passed:
        return "ok"
    if name == SESSION:
        if reason.startswith("the wallet answered 'access_denied'"):
            return "declined"
        if reason == "wallet ended the session with status 20" or reason.endswith("(State 0x02))"):
            return HOLDER_ENDED
        return SESSION_FAILED
    # a document's checks start with its docType ("org.iso.18013.5.1.mDL: not checked: ...")
    if reason.startswith("not checked") or ": not checked: " in reason:
        return "unavailable" if reason.endswith("not checked: list not trusted") else "not_checked"
    if name in _ONE_CODE:
        if name == DEVICE_AUTHENTICATION and ("needs the reader's" in reason or "no SessionTranscript" in reason):
            return "not_checked"
        return _ONE_CODE[name]
    return _by_reason(name, reason)


def _by_reason(name: str, reason: str) -> str:
    if name == RESPONSE_STATUS:
        if reason.startswith(("unverifiable", "not a DeviceResponse")):
            return "malformed"
        if ", no documents" in reason:
            return "declined" if reason.startswith("status 0,") else SESSION_FAILED
    elif name == MATCHES_REQUEST:
        return "not_requested" if reason.startswith("not requested: ") else "declined"
    elif name == ISSUER_SIGNATURE:
        return "untrusted_issuer" if reason.endswith("no usable document signer key in x5chain") else "tampered"
    elif name == VALUE_DIGESTS:
        return "tampered" if reason.endswith(("has no digests in the MSO", "matches no valueDigest of the MSO",
                                             "mismatched or repeated")) else "malformed"
    elif name == KEY_AUTHORIZATIONS:
        return "malformed" if "unreadable" in reason or "keyAuthorizations malformed" in reason else "tampered"
    elif name == VALIDITY:
        outside = _OUTSIDE.search(reason)
        if outside:
            return "not_yet_valid" if outside[1] < outside[2] else "expired"
        return "untrusted_issuer" if "outside the DS certificate validity" in reason else "failed"
    elif name == REVOCATION_STATUS:
        if reason.endswith(": revoked (INVALID)"):
            return "revoked"
        if reason.endswith(": SUSPENDED"):
            return "suspended"
        if "(application-specific)" in reason or "status_list reference" in reason:
            return "failed"
        return "unavailable"
    elif name == DS_REVOCATION:
        return "ds_revoked" if re.match(r"(\S+: )?DS serial [0-9a-f]+ revoked", reason) else "unavailable"
    return "failed"


def with_codes(verdict: bytes) -> bytes:
    """``verdict`` (the JSON the result route answers) with a code on every check: the same
    bytes when each has one, as this version keeps them."""
    try:
        parsed = json.loads(verdict)
        checks = parsed["checks"]
        if all("code" in c for c in checks):
            return verdict
        for c in checks:
            c.setdefault("code", derived_code(c["name"], c["passed"], c["reason"]))
    except (ValueError, TypeError, KeyError):
        return verdict  # not a verdict this code wrote: answered as kept
    return json.dumps(parsed, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
