"""JPKI smartphone certificates: profiles, CRLs, OCSP, CMS and relying-party checks (pure).

See specs/jpki-profile.md for the profile this package implements.
"""

from .certificates import (
    BasicFour,
    JpkiSex,
    build_auth_certificate,
    build_ocsp_responder_certificate,
    build_root_ca,
    build_signing_certificate,
)
from .cms import CmsSignature, build_detached_signature, ecdsa_raw_to_der, verify_detached_signature
from .crl import Revocation, RevocationEvent, RevocationReason, apply_event, build_crl
from .era import Era, JpkiBirthDate, decode_birth_date, encode_birth_date, era_of
from .errors import (
    BirthDateError,
    CertificateFormatError,
    CmsError,
    JpkiError,
    OcspRequestError,
    ProfileError,
)
from .ocsp import (
    CertId,
    Good,
    OcspRequest,
    OcspResponder,
    ResponseStatus,
    Revoked,
    Unknown,
    build_response,
    error_response,
    parse_request,
    respond,
)
from .parse import classify, load_certificate, read_basic_four
from .profile import (
    PRODUCTION_ARC,
    TEST_ARC,
    CrlPartition,
    JpkiProfile,
    KeyType,
    Municipality,
    PolicyArc,
    Purpose,
)
from .relying_party import Check, VerificationResult, verify_signed_content
from .validity import (
    CURRENT_CARD_RULE,
    NEXT_CARD_RULE,
    FixedYears,
    NthBirthday,
    Validity,
    end_entity_validity,
)

__all__ = [
    "CertId", "Check", "CmsSignature", "Good", "OcspRequest", "OcspResponder", "ResponseStatus",
    "Revocation", "RevocationEvent", "RevocationReason", "Revoked", "Unknown",
    "VerificationResult", "apply_event", "build_crl", "build_detached_signature",
    "build_response", "ecdsa_raw_to_der", "error_response", "parse_request", "respond",
    "verify_detached_signature", "verify_signed_content",
    "BasicFour", "BirthDateError", "CURRENT_CARD_RULE", "CertificateFormatError", "CmsError",
    "CrlPartition", "Era", "FixedYears", "JpkiBirthDate", "JpkiError", "JpkiProfile",
    "JpkiSex", "KeyType", "Municipality", "NEXT_CARD_RULE", "NthBirthday",
    "OcspRequestError", "PRODUCTION_ARC", "PolicyArc", "ProfileError", "Purpose", "TEST_ARC",
    "Validity", "build_auth_certificate", "build_ocsp_responder_certificate", "build_root_ca",
    "build_signing_certificate", "classify", "decode_birth_date", "encode_birth_date",
    "end_entity_validity", "era_of", "load_certificate", "read_basic_four",
]
