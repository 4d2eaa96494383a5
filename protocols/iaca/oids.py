"""Object identifiers of the mdoc issuer PKI.

``EKU_MDL_DS``: ISO/IEC 18013-5:2021 Annex B, Table B.3 (document signer), ``1.0.18013.5.1.2``.
``EKU_MDL_READER_AUTH``: Annex B.1.7 (mdoc reader authentication), ``1.0.18013.5.1.6``.
``EKU_MDL_VICAL_SIGNER``: Annex C.1.7.2 (id-mdl-kp-mdlVICAL, the VICAL signer), ``1.0.18013.5.1.8``.

``EKU_STATUS_LIST_SIGNER`` is **project-defined**. draft-ietf-oauth-status-list (section
"X.509 Certificate Extended Key Usage Extension", from -10 on) defines
``id-kp-oauthStatusSigning`` under ``1.3.6.1.5.5.7.3`` but its number is still "TBD" in the
drafts; until IANA assigns it we use a UUID-derived OID (ITU-T X.667, arc ``2.25``), unique
without registration, that no other PKI can mean. It is a parameter of every builder and
validator, so switching to the IANA number is a configuration change. See
``specs/status-list.md``.
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

EKU_MDL_DS = ObjectIdentifier("1.0.18013.5.1.2")
EKU_MDL_READER_AUTH = ObjectIdentifier("1.0.18013.5.1.6")  # Annex B.1.7, mdoc reader authentication
EKU_MDL_VICAL_SIGNER = ObjectIdentifier("1.0.18013.5.1.8")  # Annex C.1.7.2, the VICAL signer

# 2.25.<uuid as integer>; uuid 6d637265-642d-7374-6174-75736c697374 ("mcred-statuslist")
_STATUS_LIST_UUID = 0x6D637265642D7374617475736C697374
EKU_STATUS_LIST_SIGNER = ObjectIdentifier(f"2.25.{_STATUS_LIST_UUID}")

# Extensions Annex B does not allow in IACA certificates (policy mapping / constraints and
# the delta-CRL pointer).
DISALLOWED_EXTENSIONS = (
    ObjectIdentifier("2.5.29.33"),  # policyMappings
    ObjectIdentifier("2.5.29.30"),  # nameConstraints
    ObjectIdentifier("2.5.29.36"),  # policyConstraints
    ObjectIdentifier("2.5.29.54"),  # inhibitAnyPolicy
    ObjectIdentifier("2.5.29.46"),  # freshestCRL
)
