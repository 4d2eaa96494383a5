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
from .era import Era, JpkiBirthDate, decode_birth_date, encode_birth_date, era_of
from .errors import (
    BirthDateError,
    CertificateFormatError,
    CmsError,
    JpkiError,
    OcspRequestError,
    ProfileError,
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
from .validity import (
    CURRENT_CARD_RULE,
    NEXT_CARD_RULE,
    FixedYears,
    NthBirthday,
    Validity,
    end_entity_validity,
)

__all__ = [
    "BasicFour", "BirthDateError", "CURRENT_CARD_RULE", "CertificateFormatError", "CmsError",
    "CrlPartition", "Era", "FixedYears", "JpkiBirthDate", "JpkiError", "JpkiProfile",
    "JpkiSex", "KeyType", "Municipality", "NEXT_CARD_RULE", "NthBirthday",
    "OcspRequestError", "PRODUCTION_ARC", "PolicyArc", "ProfileError", "Purpose", "TEST_ARC",
    "Validity", "build_auth_certificate", "build_ocsp_responder_certificate", "build_root_ca",
    "build_signing_certificate", "classify", "decode_birth_date", "encode_birth_date",
    "end_entity_validity", "era_of", "load_certificate", "read_basic_four",
]
