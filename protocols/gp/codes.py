"""Instruction codes and status words of ISO/IEC 7816-4 and GlobalPlatform, defined once.

ISO/IEC 7816-4:2020 5.6 (status words, tables 6 and 7) and GPCS 2.3.1 11.1.2 / Amendment D
7.1 (instructions). Both ends of every wire in the project (TSM and SE, SE and applets)
name their codes from here.
"""

from __future__ import annotations

# --- status words (ISO/IEC 7816-4 5.6; GPCS 11.1.3) --------------------------------------
SW_OK = 0x9000
#: SW1 61: process completed, SW2 response bytes still available (00: 256 or more)
SW1_BYTES_REMAINING = 0x61
#: EXTERNAL AUTHENTICATE: authentication of the host cryptogram failed (GPCS Amendment D 7.1.2.5)
SW_AUTHENTICATION_FAILED = 0x6300
SW_MORE_DATA_AVAILABLE = 0x6310  # GET STATUS: more entries follow (GPCS 11.4.3)
SW_WRONG_LENGTH = 0x6700
SW_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SM_NOT_SUPPORTED = 0x6882
SW_CHAINING_NOT_SUPPORTED = 0x6884
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_METHOD_BLOCKED = 0x6983
SW_REF_DATA_NOT_USABLE = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
#: Wrong parameters P1-P2 (offset at or after the end of an EF, the JICSAP usage).
SW_WRONG_P1P2_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_NO_PRECISE_DIAGNOSIS = 0x6F00

# --- instructions -----------------------------------------------------------------------
CLA_GP = 0x80
INS_SELECT = 0xA4
INS_MANAGE_CHANNEL = 0x70
#: GET RESPONSE (ISO/IEC 7816-4 11.7.1): the rest of an answer announced by 61xx
INS_GET_RESPONSE = 0xC0
INS_INITIALIZE_UPDATE = 0x50
INS_EXTERNAL_AUTHENTICATE = 0x82
#: SCP11b key agreement (GPCS Amendment F); the JPKI applet's own INTERNAL AUTHENTICATE signs
INS_INTERNAL_AUTHENTICATE = 0x88
INS_GET_DATA = 0xCA
#: PERFORM SECURITY OPERATION [verify certificate] (GPCS Amendment F 7.5: the OCE's chain)
INS_PERFORM_SECURITY_OPERATION = 0x2A
#: MUTUAL AUTHENTICATE of SCP11a and c (Amendment F 7.6; the code of EXTERNAL AUTHENTICATE)
INS_MUTUAL_AUTHENTICATE = 0x82
INS_GET_STATUS = 0xF2
INS_INSTALL = 0xE6
INS_STORE_DATA = 0xE2
INS_PUT_KEY = 0xD8
INS_DELETE = 0xE4
INS_SET_STATUS = 0xF0
