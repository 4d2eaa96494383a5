"""The card-substitute record (カード代替電磁的記録) as an ISO/IEC 18013-5 mdoc: the
project-defined docType and namespace, the holder record, the data elements.
See ``specs/card-substitute-doctype.md``.
"""

from protocols.cardsub.errors import CardSubError, ElementError, HolderError
from protocols.cardsub.holder import FIELDS, SEX_CODES, Holder, parse_holder
from protocols.cardsub.namespaces import (
    DEFAULT_AGE_THRESHOLDS,
    DEFAULT_NAMES,
    ISO_NAMESPACE,
    JST,
    PORTRAIT_MAX,
    DocNames,
    age_on,
    build_namespaces,
    card_expiry,
    check_age_thresholds,
    check_portrait,
)

__all__ = [
    "DEFAULT_AGE_THRESHOLDS",
    "DEFAULT_NAMES",
    "FIELDS",
    "ISO_NAMESPACE",
    "JST",
    "PORTRAIT_MAX",
    "SEX_CODES",
    "CardSubError",
    "DocNames",
    "ElementError",
    "Holder",
    "HolderError",
    "age_on",
    "build_namespaces",
    "card_expiry",
    "check_age_thresholds",
    "check_portrait",
    "parse_holder",
]
