"""The mdoc issuer PKI: ISO/IEC 18013-5:2021 Annex B certificate profiles.

Builders (unsigned :class:`x509.CertificateBuilder`, signed by the issuer's key store or
:func:`sign`) and validators returning named :class:`Check` results.
"""

from protocols.iaca.builders import (
    DS_MAX_VALIDITY,
    IACA_MAX_VALIDITY,
    READER_MAX_VALIDITY,
    document_signer_builder,
    hash_for_key,
    iaca_builder,
    reader_auth_builder,
    reader_ca_builder,
    sign,
    status_list_signer_builder,
    vical_ca_builder,
    vical_signer_builder,
)
from protocols.iaca.checks import (
    Check,
    IacaProfile,
    check_document_signer,
    check_iaca,
    check_reader_certificate,
    check_status_list_signer,
    failed,
    iaca_profile,
)
from protocols.iaca.errors import IacaError, IacaProfileError
from protocols.iaca.oids import (
    EKU_MDL_DS,
    EKU_MDL_READER_AUTH,
    EKU_MDL_VICAL_SIGNER,
    EKU_STATUS_LIST_SIGNER,
)

__all__ = [
    "DS_MAX_VALIDITY",
    "EKU_MDL_DS",
    "EKU_MDL_READER_AUTH",
    "EKU_MDL_VICAL_SIGNER",
    "EKU_STATUS_LIST_SIGNER",
    "IACA_MAX_VALIDITY",
    "READER_MAX_VALIDITY",
    "Check",
    "IacaError",
    "IacaProfile",
    "IacaProfileError",
    "check_document_signer",
    "check_iaca",
    "check_reader_certificate",
    "check_status_list_signer",
    "document_signer_builder",
    "failed",
    "hash_for_key",
    "iaca_profile",
    "iaca_builder",
    "reader_auth_builder",
    "reader_ca_builder",
    "sign",
    "status_list_signer_builder",
    "vical_ca_builder",
    "vical_signer_builder",
]
