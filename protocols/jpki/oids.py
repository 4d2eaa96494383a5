"""Object identifiers of the JPKI profiles, production and TEST arcs.

J-LIS arc `1.2.392.200149` (jpki); personal data under `.8.5.5`, certificate policies under
`.8.5.1` (`.1.1.20` signing, `.1.3.30` user authentication). The simulator's TEST arc puts the
policies under `.8.5.1.0` (`.0.20`, `.0.30`), a branch no public J-LIS document assigns, so a
simulated certificate never carries a production policy. See specs/jpki-profile.md.
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

JPKI_ARC = "1.2.392.200149"

# Personal data (subjectAltName otherName type-ids), J-LIS profile.
OID_NAME = ObjectIdentifier("1.2.392.200149.8.5.5.1")
OID_NAME_SUBSTITUTES = ObjectIdentifier("1.2.392.200149.8.5.5.2")
OID_SEX = ObjectIdentifier("1.2.392.200149.8.5.5.3")
OID_BIRTH_DATE = ObjectIdentifier("1.2.392.200149.8.5.5.4")
OID_ADDRESS = ObjectIdentifier("1.2.392.200149.8.5.5.5")
OID_ADDRESS_SUBSTITUTES = ObjectIdentifier("1.2.392.200149.8.5.5.6")

# Certificate policies.
POLICY_SIGNING = ObjectIdentifier("1.2.392.200149.8.5.1.1.20")
POLICY_AUTH = ObjectIdentifier("1.2.392.200149.8.5.1.3.30")
TEST_POLICY_SIGNING = ObjectIdentifier("1.2.392.200149.8.5.1.0.20")
TEST_POLICY_AUTH = ObjectIdentifier("1.2.392.200149.8.5.1.0.30")

# RFC 6960 4.2.2.2.1 / RFC 5280 4.2.1.12.
OID_OCSP_NOCHECK = ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")
