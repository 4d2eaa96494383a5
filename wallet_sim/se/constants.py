"""AIDs, life cycle codings, status words and policy of the simulated GP-SE
(GPCS 2.3.1 11.1.1 life cycle coding, 11.1.3 status words; specs/secure-element.md)."""

from __future__ import annotations

from protocols.gp.codes import (  # noqa: F401 - the SE's modules import these from here
    INS_DELETE,
    INS_EXTERNAL_AUTHENTICATE,
    INS_GET_DATA,
    INS_GET_RESPONSE,
    INS_GET_STATUS,
    INS_INITIALIZE_UPDATE,
    INS_INSTALL,
    INS_MANAGE_CHANNEL,
    INS_PUT_KEY,
    INS_SELECT,
    INS_SET_STATUS,
    INS_STORE_DATA,
    SW1_BYTES_REMAINING,
    SW_AUTH_METHOD_BLOCKED,
    SW_AUTHENTICATION_FAILED,
    SW_CHAINING_NOT_SUPPORTED,
    SW_CHANNEL_NOT_SUPPORTED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_MORE_DATA_AVAILABLE,
    SW_NOT_ENOUGH_MEMORY,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_NOT_SATISFIED,
    SW_SM_NOT_SUPPORTED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
)

ISD_AID = bytes.fromhex("A000000151000000")

#: Factory keyset: the GlobalPlatform test key (documented, public, for untouched phones).
FACTORY_KVN = 0x30
FACTORY_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
SCP03_I = 0x70  # pseudo-random challenge, R-MAC and R-ENC supported, S8
#: SCP11b key pair (GPCS Amendment F): KID 13, KVN 01, P-256, certified by the SE maker
SCP11B_KVN = 0x01
#: SCP11a key pair: KID 11, KVN 01, P-256, certified by the SE maker; made when the SE's
#: issuer gives the factory the CA key of the OCEs allowed to load keys (CA-KLOC, KID 10)
SCP11A_KVN = 0x01
KLOC_KVN = 0x01
#: ISD commands an SCP11b session may send once the factory keyset is gone: SCP11b does not
#: authenticate the off-card entity, so such a session reads and changes nothing else
SCP11B_UNAUTHENTICATED = frozenset((0xCA, 0xF2))  # GET DATA, GET STATUS
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

# Status words and GlobalPlatform instructions: protocols.gp.codes (imported above).

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
