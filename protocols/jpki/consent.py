"""The holder's consent to the latest basic four data service (最新の利用者情報提供): the
document a relying party hands its customer to sign with the signing certificate.

Since 2023-05-16 a relying party may ask J-LIS, through a platform operator, for a customer's
current name, birth date, sex and address, as often as it needs, for ten years after the
customer consented by signing with their signing certificate; the customer may withdraw the
consent at any time. This is our profile of that consent: a UTF-8 JSON object, signed as a
detached CMS signature (``mcred jpki sign``), carrying

* ``type``: :data:`CONSENT_TYPE`;
* ``relying_party``: who may ask (1 to 128 printable characters; the API takes it as the
  name of the relying party's token);
* ``purpose``: why, as shown to the customer (1 to 500 printable characters);
* ``issued_at``: when the relying party made it (RFC 3339, UTC);
* ``nonce``: 32 hex digits, so that two consents to the same party are two documents.

The ten years run from the registration, not from ``issued_at``; a document made more than
:data:`MAX_AGE` before it is registered is refused as stale.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass

from .errors import JpkiError

CONSENT_TYPE = "mcred-jpki-latest-basic-four-consent/1"
#: How long a consent lasts once registered (the service's ten years).
TERM = dt.timedelta(days=3652)
#: How old a consent document may be when it is registered.
MAX_AGE = dt.timedelta(days=30)
MAX_BYTES = 4096
_NONCE = re.compile(r"[0-9a-f]{32}")


class ConsentError(JpkiError):
    """A consent document is not one: the message says what is wrong."""


@dataclass(frozen=True)
class Consent:
    relying_party: str
    purpose: str
    issued_at: dt.datetime
    nonce: str


def _text(doc: dict, key: str, longest: int) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= longest or not value.isprintable():
        raise ConsentError(f"consent {key}: 1 to {longest} printable characters")
    return value


def build_consent(relying_party: str, purpose: str, now: dt.datetime | None = None) -> bytes:
    """A consent document for ``relying_party`` (checked as :func:`parse_consent` would)."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    doc = {"type": CONSENT_TYPE, "relying_party": relying_party, "purpose": purpose,
           "issued_at": now.isoformat().replace("+00:00", "Z"), "nonce": secrets.token_hex(16)}
    data = json.dumps(doc, ensure_ascii=False, indent=2).encode()
    parse_consent(data)
    return data


def parse_consent(data: bytes) -> Consent:
    """The consent a document carries; :class:`ConsentError` naming what is wrong."""
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_BYTES:
        raise ConsentError(f"a consent document is at most {MAX_BYTES} bytes")
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConsentError(f"a consent document is UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != CONSENT_TYPE:
        raise ConsentError(f"not a consent document (type {CONSENT_TYPE!r} expected)")
    extra = sorted(set(doc) - {"type", "relying_party", "purpose", "issued_at", "nonce"})
    if extra:
        raise ConsentError(f"consent: unknown field(s) {', '.join(map(str, extra))}")
    issued = doc.get("issued_at")
    try:
        when = dt.datetime.fromisoformat(issued.replace("Z", "+00:00")) if isinstance(issued, str) else None
    except ValueError:
        when = None
    if when is None or when.utcoffset() != dt.timedelta(0):
        raise ConsentError("consent issued_at: an RFC 3339 time in UTC")
    nonce = doc.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise ConsentError("consent nonce: 32 hex digits")
    return Consent(_text(doc, "relying_party", 128), _text(doc, "purpose", 500), when, nonce)
