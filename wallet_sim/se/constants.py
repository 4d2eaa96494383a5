"""AIDs, life cycle codings, status words and policy of the simulated GP-SE
(GPCS 2.3.1 11.1.1 life cycle coding, 11.1.3 status words; specs/secure-element.md)."""

from __future__ import annotations

ISD_AID = bytes.fromhex("A000000151000000")

#: Factory keyset: the GlobalPlatform test key (documented, public, for untouched phones).
FACTORY_KVN = 0x30
FACTORY_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
SCP03_I = 0x70  # pseudo-random challenge, R-MAC and R-ENC supported, S8
DEFAULT_MAX_FAILED_AUTHENTICATIONS = 5

# Card life cycle (GPCS Table 11-5)
CARD_OP_READY = 0x01
CARD_INITIALIZED = 0x07
CARD_SECURED = 0x0F
CARD_LOCKED = 0x7F
CARD_TERMINATED = 0xFF
# Application / security domain life cycle (Tables 11-6, 11-7)
APP_INSTALLED = 0x03
APP_SELECTABLE = 0x07
SD_PERSONALIZED = 0x0F
LOCKED_BIT = 0x80
ELF_LOADED = 0x01

CARD_LIFE_CYCLE_NAMES = {
    CARD_OP_READY: "OP_READY", CARD_INITIALIZED: "INITIALIZED", CARD_SECURED: "SECURED",
    CARD_LOCKED: "CARD_LOCKED", CARD_TERMINATED: "TERMINATED",
}


def app_life_cycle_name(lc: int) -> str:
    base = {APP_INSTALLED: "INSTALLED", APP_SELECTABLE: "SELECTABLE", SD_PERSONALIZED: "PERSONALIZED"}
    name = base.get(lc & 0x7F, f"APPLICATION_SPECIFIC_{lc & 0x7F:02X}")
    return f"LOCKED({name})" if lc & LOCKED_BIT else name


ISD_PRIVILEGES = bytes.fromhex("9EFE80")
APP_PRIVILEGES = bytes.fromhex("000000")

# Status words
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SM_NOT_SUPPORTED = 0x6882
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_METHOD_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

# GlobalPlatform instructions
INS_SELECT = 0xA4
INS_MANAGE_CHANNEL = 0x70
INS_INITIALIZE_UPDATE = 0x50
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_GET_DATA = 0xCA
INS_GET_STATUS = 0xF2
INS_INSTALL = 0xE6
INS_STORE_DATA = 0xE2
INS_PUT_KEY = 0xD8
INS_DELETE = 0xE4
INS_SET_STATUS = 0xF0

#: Minimum SCP03 security level per ISD command (None: no secure channel needed).
SECURITY_FLOORS: dict[int, int | None] = {
    INS_GET_DATA: None,
    INS_GET_STATUS: 0x01,
    INS_INSTALL: 0x01,
    INS_DELETE: 0x01,
    INS_SET_STATUS: 0x01,
    INS_PUT_KEY: 0x03,
    INS_STORE_DATA: 0x03,
}

MAX_CHANNELS = 4  # basic logical channels 0..3
