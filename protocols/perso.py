"""The personalisation protocol of our two applets: AIDs, DGI records and TLV fields.

One definition of the wire format the TSM writes and the applets read
(specs/jpki-applet.md section 4, specs/mdoc-applet.md section 4). Records travel as DGIs
(:mod:`protocols.gp.dgi`) in STORE DATA after INSTALL [for personalization]; each answer is
a DGI of the same tag whose value holds the BER-TLV fields below.
"""

from __future__ import annotations

#: Proprietary ISO/IEC 7816-5 category-F AIDs: F0 || ASCII "mcred".
AID_PREFIX = bytes.fromhex("F06D63726564")
JPKI_LOAD_FILE_AID = AID_PREFIX + b"\x01\x00"
JPKI_MODULE_AID = AID_PREFIX + b"\x01\x01"
#: The JPKI-AP keeps the card's registered AID so existing JPKI readers find it.
JPKI_INSTANCE_AID = bytes.fromhex("D392F000260100000001")
MDOC_LOAD_FILE_AID = AID_PREFIX + b"\x02\x00"
MDOC_MODULE_AID = AID_PREFIX + b"\x02\x01"
MDOC_INSTANCE_AID = AID_PREFIX + b"\x02\x01\x01"

# --- JPKI applet -----------------------------------------------------------------------
#: Key slots and secret references, numbered as OpenSC's key_ref / auth-id (jpki.h).
SLOT_AUTH, SLOT_SIGN, REF_PUK = 1, 2, 3
JPKI_READ_STATE = 0x0100
JPKI_GENERATE = 0x0101
JPKI_PROVE = 0x0102
JPKI_WRITE_CERT = 0x0103
JPKI_SET_PIN = 0x0104
JPKI_SET_PUK = 0x0105
JPKI_CONFIGURE = 0x0106
JPKI_ERASE_CERT = 0x0107
#: Key algorithm codes of GENERATE KEY.
JPKI_ALGORITHMS = {"rsa2048": 0x01, "p384": 0x02}
#: CONFIGURE flag: reading EF 000A needs the user-authentication PIN (the phone's rule).
FLAG_AUTH_CERT_NEEDS_PIN = 0x01

# --- mdoc applet -----------------------------------------------------------------------
MDOC_READ_STATE = 0x0200
MDOC_GENERATE = 0x0201
MDOC_PROVE = 0x0202
MDOC_WRITE = 0x0203
MDOC_DELETE = 0x0204
MDOC_MAX_SLOTS = 16

# --- TLV fields inside the records (shared numbering) ------------------------------------
T_SLOT, T_ALG, T_SPKI, T_POP, T_SHA256, T_CHALLENGE = 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6
T_FID, T_CERT, T_REF, T_VALUE, T_FLAGS = 0xC7, 0xC8, 0xC9, 0xCA, 0xCB
T_IS_SET, T_TRIES, T_MAX, T_LENGTH = 0xCC, 0xCD, 0xCE, 0xCF
T_COSE_KEY, T_ISSUER_SIGNED, T_CREDENTIAL_SHA256 = 0xD1, 0xD2, 0xD3
#: Constructed fields: JPKI key / certificate / secret info; mdoc slot info (E1).
T_KEY_INFO, T_CERT_INFO, T_SECRET_INFO = 0xE1, 0xE2, 0xE3
T_SLOT_INFO = 0xE1
