"""The JPKI applet: the card's JPKI-AP as the phone's GP-SE carries it.

Plain APDU interface as ``shared/context/JPKI-AP.md`` records what OpenSC ``jpki``, jpki/myna
and myna-card send (ISO/IEC 7816-4 SELECT / READ BINARY / VERIFY / CHANGE REFERENCE DATA /
RESET RETRY COUNTER, ISO/IEC 7816-8 COMPUTE DIGITAL SIGNATURE with CLA 80); personalisation
through GP STORE DATA DGI records. Every choice the sources leave open is written down in
``specs/jpki-applet.md``, which this module implements.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo, Prehashed

from protocols import perso
from protocols.perso import (
    FLAG_AUTH_CERT_NEEDS_PIN,
    T_ALG,
    T_CERT,
    T_CERT_INFO,
    T_CHALLENGE,
    T_FID,
    T_FLAGS,
    T_IS_SET,
    T_KEY_INFO,
    T_MAX,
    T_POP,
    T_REF,
    T_SECRET_INFO,
    T_SHA256,
    T_SLOT,
    T_SPKI,
    T_TRIES,
    T_VALUE,
)
from wallet_sim.applets import _keys
from wallet_sim.applets._apdu import (
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_END_OF_FILE,
    SW_FILE_NOT_FOUND,
    SW_FUNC_NOT_SUPPORTED,
    SW_INCOMPATIBLE_FILE,
    SW_INS_NOT_SUPPORTED,
    SW_NO_CURRENT_EF,
    SW_REF_DATA_NOT_USABLE,
    SW_REF_NOT_FOUND,
    SW_SECURITY_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Command,
    one,
    parse_command,
    respond,
    sw_bytes,
    tlv,
    tlv_map,
)
from wallet_sim.applets._perso import SL_C_DECRYPTION, BlockAssembler, dgi, parse_dgis
from wallet_sim.applets._state import state_bytes, state_int
from wallet_sim.applets.errors import AppletStateError, StatusError
from wallet_sim.se.applet import Applet, CommandContext

JPKI_AP_AID = perso.JPKI_INSTANCE_AID
TOKEN_LABEL = b"JPKIAPGPSETOKEN"

# Key slots, numbered as OpenSC's key_ref / auth-id (jpki.h): 1 user authentication, 2 signing.
SLOT_AUTH, SLOT_SIGN, REF_PUK = perso.SLOT_AUTH, perso.SLOT_SIGN, perso.REF_PUK
SLOT_NAMES = {SLOT_AUTH: "user_authentication", SLOT_SIGN: "signing"}
SECRET_NAMES = {SLOT_AUTH: "user_auth_pin", SLOT_SIGN: "signing_password", REF_PUK: "puk"}
MAX_TRIES = {SLOT_AUTH: 3, SLOT_SIGN: 5, REF_PUK: 10}

# Elementary files (JPKI-AP.md section 2).
EF_SIGN_CERT = 0x0001
EF_SIGN_CA = 0x0002
EF_TOKEN_INFO = 0x0006
EF_CERT_FLAGS = 0x0008
EF_AUTH_CERT = 0x000A
EF_AUTH_CA = 0x000B
EF_AUTH_KEY = 0x0017
EF_AUTH_PIN = 0x0018
EF_SIGN_KEY = 0x001A
EF_SIGN_PIN = 0x001B
CERT_EFS = (EF_SIGN_CERT, EF_SIGN_CA, EF_AUTH_CERT, EF_AUTH_CA)
KEY_EFS = {EF_AUTH_KEY: SLOT_AUTH, EF_SIGN_KEY: SLOT_SIGN}
PIN_EFS = {EF_AUTH_PIN: SLOT_AUTH, EF_SIGN_PIN: SLOT_SIGN}
#: The end-entity certificate EF of each slot (cleared when the slot's key is regenerated).
SLOT_CERT = {SLOT_AUTH: EF_AUTH_CERT, SLOT_SIGN: EF_SIGN_CERT}

# Key references in P2 (VERIFY 80|SFI as myna-card; COMPUTE DIGITAL SIGNATURE 97 / 9A).
_PIN_P2 = {0x98: SLOT_AUTH, 0x9B: SLOT_SIGN}
_KEY_P2 = {0x97: SLOT_AUTH, 0x9A: SLOT_SIGN}

# Personalisation records (DGI tags) and their TLV fields: specs/jpki-applet.md section 4.
DGI_READ_STATE = perso.JPKI_READ_STATE
DGI_GENERATE_KEY = perso.JPKI_GENERATE
DGI_PROVE_KEY = perso.JPKI_PROVE
DGI_WRITE_CERT = perso.JPKI_WRITE_CERT
DGI_SET_PIN = perso.JPKI_SET_PIN
DGI_SET_PUK = perso.JPKI_SET_PUK
DGI_CONFIGURE = perso.JPKI_CONFIGURE
DGI_ERASE_CERT = perso.JPKI_ERASE_CERT
ALG_CODES = {perso.JPKI_ALGORITHMS["rsa2048"]: _keys.RSA_2048,
             perso.JPKI_ALGORITHMS["p384"]: _keys.EC_P384}
ALG_BY_NAME = {v: k for k, v in ALG_CODES.items()}
PUK_LENGTH = 8

_DIGEST_INFO_PREFIX = {
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}
_BARE_HASH = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}


def valid_secret(ref: int, value: bytes) -> bool:
    """Format rules: PIN exactly 4 ASCII digits; password 6-16 of A-Z 0-9; PUK 8 digits."""
    if ref == SLOT_AUTH:
        return len(value) == 4 and value.isdigit() and value.isascii()
    if ref == SLOT_SIGN:
        return (
            6 <= len(value) <= 16
            and value.isascii()
            and all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" for c in value)
        )
    return len(value) == PUK_LENGTH and value.isascii() and value.isdigit()


@dataclass(frozen=True)
class KeySlot:
    algorithm: str
    #: the private key: it never leaves the SE, in a repr (a log, a traceback) neither
    pkcs8: bytes = field(repr=False)
    spki: bytes


@dataclass(frozen=True)
class Secret:
    """A PIN, password or PUK: salted SHA-256 of the value, and its retry counter."""

    max_tries: int
    tries_left: int
    #: not in a repr: a 4-digit PIN is found again from its salted hash in microseconds
    salt: bytes = field(default=b"", repr=False)
    digest: bytes = field(default=b"", repr=False)

    @property
    def is_set(self) -> bool:
        return bool(self.digest)

    @property
    def blocked(self) -> bool:
        return self.is_set and self.tries_left == 0

    @staticmethod
    def fresh(max_tries: int, value: bytes) -> Secret:
        salt = os.urandom(16)
        return Secret(max_tries, max_tries, salt, hashlib.sha256(salt + value).digest())

    def matches(self, value: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(self.salt + value).digest(), self.digest)


@dataclass(frozen=True)
class JpkiState:
    """Everything the applet keeps in NVM."""

    serial: str
    keys: dict[int, KeySlot] = field(default_factory=dict)
    certs: dict[int, bytes] = field(default_factory=dict)
    secrets: dict[int, Secret] = field(
        default_factory=lambda: {r: Secret(n, n) for r, n in MAX_TRIES.items()}
    )
    auth_cert_needs_pin: bool = True


@dataclass(frozen=True)
class _Session:
    """Volatile per-channel state: current EF and verified PINs (cleared on (de)select)."""

    current: int | None = None
    verified: frozenset[int] = frozenset()


def token_info(serial: str) -> bytes:
    """EF 0006: PKCS #11 CK_TOKEN_INFO with 4-byte big-endian integers, 160 bytes."""

    def pad(text: bytes, n: int) -> bytes:
        return text[:n].ljust(n, b" ")

    def u32(v: int) -> bytes:
        return v.to_bytes(4, "big")

    out = (
        pad(TOKEN_LABEL, 32)
        + pad(b"mcred GP-SE simulator", 32)
        + pad(b"JPKI-AP", 16)
        + pad(serial.encode("ascii"), 16)
        + u32(0x0000040D)  # RNG | LOGIN_REQUIRED | USER_PIN_INITIALIZED | TOKEN_INITIALIZED
        + u32(1)
        + u32(0)
        + u32(1)
        + u32(0)  # max/session, max/rw session
        + u32(16)
        + u32(4)  # max / min PIN length over both secrets
        + u32(0xFFFFFFFF) * 4  # public / private memory: unavailable
        + b"03"
        + b"01"  # hardware / firmware version
        + b" " * 16  # utcTime: the SE has no clock
    )
    assert len(out) == 160
    return out


class JpkiApplet(Applet):
    """JPKI-AP with two key slots, three retry-counted secrets and four certificate EFs."""

    MODULE_AID = perso.JPKI_MODULE_AID

    def __init__(self, instance_aid: bytes = JPKI_AP_AID) -> None:
        super().__init__(instance_aid)
        self.state = JpkiState(serial=os.urandom(8).hex().upper())
        self._sessions: dict[int, _Session] = {}
        self._blocks = BlockAssembler(max_bytes=32 * 1024)

    # --- Applet contract ---------------------------------------------------------------

    def select(self, p2: int, ctx: CommandContext) -> bytes:
        self._sessions[ctx.channel] = _Session()
        return sw_bytes(0x9000)

    def deselect(self, ctx: CommandContext) -> None:
        self._sessions.pop(ctx.channel, None)

    def process(self, apdu: bytes, ctx: CommandContext) -> bytes:
        try:
            cmd = parse_command(apdu)
            handler, proprietary = self._HANDLERS.get(cmd.ins, (None, False))
            if handler is None:
                raise StatusError(SW_INS_NOT_SUPPORTED, f"INS {cmd.ins:02X} not supported")
            if cmd.proprietary != proprietary:
                raise StatusError(SW_CLA_NOT_SUPPORTED, f"CLA {cmd.cla:02X} for INS {cmd.ins:02X}")
            session = self._sessions.get(ctx.channel, _Session())
            data, session = handler(self, cmd, session)
            self._sessions[ctx.channel] = session
            return respond(data)
        except _Counted as counted:  # a retry counter moved: commit it, then answer 63Cx
            self.state = counted.state
            self._sessions[ctx.channel] = counted.session
            return sw_bytes(counted.sw)
        except StatusError as exc:
            return sw_bytes(exc.sw)

    def store_data(self, p1: int, p2: int, data: bytes, ctx: CommandContext) -> bytes:
        try:
            stream = self._blocks.feed(p1, p2, data, ctx)
            if stream is None:
                return sw_bytes(0x9000)
            old = state = self.state
            out = b""
            for record in parse_dgis(stream):
                state, answer = self._personalise(state, record.tag, record.value, ctx)
                out += answer
            self.state = state
            if state is not old:  # keys, certificates or secrets changed: drop verifications
                for ch, s in self._sessions.items():
                    self._sessions[ch] = _Session(s.current if self._exists(s.current) else None)
            return respond(out)
        except StatusError as exc:
            return sw_bytes(exc.sw)

    def snapshot(self) -> dict:
        s = self.state
        return {
            "version": 1,
            "serial": s.serial,
            "auth_cert_needs_pin": int(s.auth_cert_needs_pin),  # 0/1: the image holds no bool (se/store.py)
            "keys": {
                slot: {"algorithm": k.algorithm, "pkcs8": k.pkcs8, "spki": k.spki}
                for slot, k in s.keys.items()
            },
            "certs": dict(s.certs),
            "secrets": {
                ref: {
                    "max_tries": x.max_tries,
                    "tries_left": x.tries_left,
                    "salt": x.salt,
                    "digest": x.digest,
                }
                for ref, x in s.secrets.items()
            },
        }

    def restore(self, state: dict) -> None:
        self.state = _load_state(state)
        self._sessions.clear()
        self._blocks.reset()

    def describe(self) -> dict:
        s = self.state
        slots = {}
        for slot, name in SLOT_NAMES.items():
            key = s.keys.get(slot)
            slots[name] = {
                "algorithm": key.algorithm if key else None,
                "public_key_sha256": hashlib.sha256(key.spki).hexdigest() if key else None,
            }
        certs = {}
        for fid, der in sorted(s.certs.items()):
            cert = x509.load_der_x509_certificate(der)
            certs[f"{fid:04X}"] = {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "serial": f"{cert.serial_number:X}",
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
        secrets = {
            SECRET_NAMES[ref]: {
                "set": x.is_set,
                "tries_left": x.tries_left,
                "max_tries": x.max_tries,
                "blocked": x.blocked,
            }
            for ref, x in sorted(s.secrets.items())
        }
        return {
            "applet": "jpki",
            "aid": self.instance_aid.hex().upper(),
            "token_label": TOKEN_LABEL.decode(),
            "serial": s.serial,
            "auth_certificate_needs_pin": s.auth_cert_needs_pin,
            "slots": slots,
            "certificates": certs,
            "secrets": secrets,
        }

    # --- files ---------------------------------------------------------------------------

    def _exists(self, fid: int | None) -> bool:
        if fid is None:
            return False
        if fid in (EF_TOKEN_INFO, EF_CERT_FLAGS) or fid in PIN_EFS:
            return True
        if fid in KEY_EFS:
            return KEY_EFS[fid] in self.state.keys
        return fid in self.state.certs

    def _content(self, fid: int) -> bytes:
        if fid == EF_TOKEN_INFO:
            return token_info(self.state.serial)
        if fid == EF_CERT_FLAGS:
            return bytes(
                [
                    0x8F if EF_SIGN_CERT in self.state.certs else 0x00,
                    0x8F if EF_AUTH_CERT in self.state.certs else 0x00,
                    0x00,
                ]
            )
        return self.state.certs[fid]

    # --- plain APDUs ---------------------------------------------------------------------

    def _select(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 == 0x04:
            raise StatusError(SW_FILE_NOT_FOUND, "no other DF name lives in the JPKI-AP")
        if cmd.p1 not in (0x00, 0x02) or cmd.p2 != 0x0C:
            raise StatusError(SW_WRONG_P1P2, f"SELECT P1-P2 {cmd.p1:02X}{cmd.p2:02X}")
        if len(cmd.data) != 2:
            raise StatusError(SW_WRONG_LENGTH, f"SELECT by FID with {len(cmd.data)} data bytes")
        fid = int.from_bytes(cmd.data, "big")
        if not self._exists(fid):
            raise StatusError(SW_FILE_NOT_FOUND, f"EF {fid:04X} not found")
        return b"", replace(session, current=fid)

    def _read_binary(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 & 0x80:
            raise StatusError(SW_FUNC_NOT_SUPPORTED, "READ BINARY with a short EF identifier")
        if cmd.data or cmd.le is None:
            raise StatusError(SW_WRONG_LENGTH, "READ BINARY is case 2")
        fid = session.current
        if fid is None:
            raise StatusError(SW_NO_CURRENT_EF, "READ BINARY without a current EF")
        if fid in KEY_EFS or fid in PIN_EFS:
            raise StatusError(SW_INCOMPATIBLE_FILE, f"EF {fid:04X} is not a transparent EF")
        if fid == EF_SIGN_CERT and SLOT_SIGN not in session.verified:
            raise StatusError(SW_SECURITY_NOT_SATISFIED, "signing certificate needs the password")
        if (
            fid == EF_AUTH_CERT
            and self.state.auth_cert_needs_pin
            and SLOT_AUTH not in session.verified
        ):
            raise StatusError(SW_SECURITY_NOT_SATISFIED, "auth certificate needs the PIN")
        content = self._content(fid)
        offset = (cmd.p1 << 8) | cmd.p2
        if offset >= len(content):
            raise StatusError(SW_END_OF_FILE, f"offset {offset} at/after end {len(content)}")
        return content[offset : offset + cmd.le], session

    def _pin_ref(self, cmd: Command, session: _Session) -> int:
        if cmd.p2 == 0x80:
            if session.current is None:
                raise StatusError(SW_NO_CURRENT_EF, "P2=80 without a current EF")
            if session.current not in PIN_EFS:
                raise StatusError(SW_REF_NOT_FOUND, f"EF {session.current:04X} holds no PIN")
            return PIN_EFS[session.current]
        if cmd.p2 in _PIN_P2:
            return _PIN_P2[cmd.p2]
        raise StatusError(SW_REF_NOT_FOUND, f"PIN reference P2={cmd.p2:02X} not found")

    def _verify(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 != 0x00:
            raise StatusError(SW_WRONG_P1P2, f"VERIFY P1={cmd.p1:02X}")
        ref = self._pin_ref(cmd, session)
        if cmd.le is not None:
            raise StatusError(SW_WRONG_LENGTH, "VERIFY carries no Le")
        secret = self.state.secrets[ref]
        _check_set(ref, secret)
        if not cmd.data:  # retry query: always 63Cx for a set secret, even blocked (C0) or verified
            raise StatusError(0x63C0 | min(secret.tries_left, 15), "retry counter query")
        if secret.blocked:
            raise StatusError(SW_REF_DATA_NOT_USABLE, f"{SECRET_NAMES[ref]} is blocked")
        if secret.matches(cmd.data):
            if secret.tries_left != secret.max_tries:
                self.state = self._with_secret(ref, replace(secret, tries_left=secret.max_tries))
            return b"", replace(session, verified=session.verified | {ref})
        return self._wrong_try(ref, session)

    def _wrong_try(self, ref: int, session: _Session) -> tuple[bytes, _Session]:
        secret = self.state.secrets[ref]
        left = secret.tries_left - 1
        state = self._with_secret(ref, replace(secret, tries_left=left))
        session = replace(session, verified=session.verified - {ref})
        raise _Counted(0x63C0 | min(left, 15), state, session)

    def _with_secret(self, ref: int, secret: Secret) -> JpkiState:
        return replace(self.state, secrets={**self.state.secrets, ref: secret})

    def _change_reference(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 != 0x01:
            raise StatusError(SW_WRONG_P1P2, "CHANGE REFERENCE DATA only with P1=01 (new value)")
        ref = self._pin_ref(cmd, session)
        secret = self.state.secrets[ref]
        _check_set(ref, secret)
        if secret.blocked:
            raise StatusError(SW_REF_DATA_NOT_USABLE, f"{SECRET_NAMES[ref]} is blocked")
        if ref not in session.verified:
            raise StatusError(SW_SECURITY_NOT_SATISFIED, "VERIFY the old value first")
        if not valid_secret(ref, cmd.data):
            raise StatusError(SW_WRONG_DATA, f"new {SECRET_NAMES[ref]} breaks the format rules")
        self.state = self._with_secret(ref, Secret.fresh(secret.max_tries, cmd.data))
        return b"", session

    def _reset_retry_counter(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 not in (0x00, 0x01):
            raise StatusError(SW_WRONG_P1P2, f"RESET RETRY COUNTER P1={cmd.p1:02X}")
        ref = self._pin_ref(cmd, session)
        puk_value, new_value = cmd.data[:PUK_LENGTH], cmd.data[PUK_LENGTH:]
        if len(puk_value) != PUK_LENGTH or (cmd.p1 == 0x01) != (not new_value):
            raise StatusError(SW_WRONG_LENGTH, "data must be PUK (P1=01) or PUK || new (P1=00)")
        if new_value and not valid_secret(ref, new_value):
            raise StatusError(SW_WRONG_DATA, f"new {SECRET_NAMES[ref]} breaks the format rules")
        target, puk = self.state.secrets[ref], self.state.secrets[REF_PUK]
        _check_set(ref, target)
        _check_set(REF_PUK, puk)
        if puk.blocked:
            raise StatusError(SW_REF_DATA_NOT_USABLE, "PUK is blocked")
        if not puk.matches(puk_value):
            left = puk.tries_left - 1
            state = self._with_secret(REF_PUK, replace(puk, tries_left=left))
            raise _Counted(0x63C0 | min(left, 15), state, session)
        if new_value:
            target = Secret.fresh(target.max_tries, new_value)
        else:
            target = replace(target, tries_left=target.max_tries)
        state = replace(
            self.state,
            secrets={
                **self.state.secrets,
                ref: target,
                REF_PUK: replace(puk, tries_left=puk.max_tries),
            },
        )
        self.state = state
        return b"", replace(session, verified=session.verified - {ref})

    def _key_slot(self, cmd: Command, session: _Session) -> int:
        if cmd.p2 == 0x80:
            if session.current is None:
                raise StatusError(SW_NO_CURRENT_EF, "P2=80 without a current key EF")
            if session.current not in KEY_EFS:
                raise StatusError(SW_REF_NOT_FOUND, f"EF {session.current:04X} is no key")
            slot = KEY_EFS[session.current]
        elif cmd.p2 in _KEY_P2:
            slot = _KEY_P2[cmd.p2]
        else:
            raise StatusError(SW_WRONG_P1P2, f"key reference P2={cmd.p2:02X}")
        if slot not in self.state.keys:
            raise StatusError(SW_REF_NOT_FOUND, f"no key in the {SLOT_NAMES[slot]} slot")
        secret = self.state.secrets[slot]
        if secret.blocked:
            raise StatusError(SW_REF_DATA_NOT_USABLE, f"{SECRET_NAMES[slot]} is blocked")
        if slot not in session.verified:
            raise StatusError(SW_SECURITY_NOT_SATISFIED, f"{SECRET_NAMES[slot]} not verified")
        return slot

    def _compute_signature(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 > 0x05:
            raise StatusError(SW_WRONG_P1P2, f"signature scheme P1={cmd.p1:02X}")
        slot = self._key_slot(cmd, session)
        return _sign(self.state.keys[slot], cmd.p1, cmd.data), session

    def _internal_authenticate(self, cmd: Command, session: _Session) -> tuple[bytes, _Session]:
        if cmd.p1 != 0x00:
            raise StatusError(SW_WRONG_P1P2, f"INTERNAL AUTHENTICATE P1={cmd.p1:02X}")
        slot = self._key_slot(cmd, session)
        return _sign(self.state.keys[slot], 0x00, cmd.data), session

    _HANDLERS = {
        0xA4: (_select, False),
        0xB0: (_read_binary, False),
        0x20: (_verify, False),
        0x24: (_change_reference, False),
        0x2C: (_reset_retry_counter, False),
        0x88: (_internal_authenticate, False),
        0x2A: (_compute_signature, True),
    }

    # --- personalisation -----------------------------------------------------------------

    def _personalise(
        self, state: JpkiState, tag: int, value: bytes, ctx: CommandContext
    ) -> tuple[JpkiState, bytes]:
        if tag == DGI_READ_STATE:
            if value:
                raise StatusError(SW_WRONG_DATA, "READ STATE takes no data")
            return state, dgi(tag, _state_report(state))
        if tag in (DGI_GENERATE_KEY, DGI_PROVE_KEY):
            f = tlv_map(
                value, {T_SLOT, T_CHALLENGE} | ({T_ALG} if tag == DGI_GENERATE_KEY else set())
            )
            slot = _slot(one(f, T_SLOT))
            challenge = one(f, T_CHALLENGE)
            if not 16 <= len(challenge) <= 64:
                raise StatusError(SW_WRONG_DATA, "challenge must be 16-64 bytes")
            if tag == DGI_GENERATE_KEY:
                alg = one(f, T_ALG)
                if len(alg) != 1 or alg[0] not in ALG_CODES:
                    raise StatusError(SW_WRONG_DATA, f"algorithm {alg.hex()} unknown")
                pkcs8, spki = _keys.generate(ALG_CODES[alg[0]])
                key = KeySlot(ALG_CODES[alg[0]], pkcs8, spki)
                certs = {k: v for k, v in state.certs.items() if k != SLOT_CERT[slot]}
                state = replace(state, keys={**state.keys, slot: key}, certs=certs)
            elif slot not in state.keys:
                raise StatusError(SW_REF_NOT_FOUND, f"no key in the {SLOT_NAMES[slot]} slot")
            key = state.keys[slot]
            pop = _keys.proof_of_possession(key.algorithm, key.pkcs8, challenge + key.spki)
            answer = (
                tlv(T_SLOT, bytes([slot]))
                + tlv(T_ALG, bytes([ALG_BY_NAME[key.algorithm]]))
                + tlv(T_SPKI, key.spki)
                + tlv(T_SHA256, hashlib.sha256(key.spki).digest())
                + tlv(T_POP, pop)
            )
            return state, dgi(tag, answer)
        if tag == DGI_WRITE_CERT:
            f = tlv_map(value, {T_FID, T_CERT})
            fid = _cert_fid(one(f, T_FID))
            der = one(f, T_CERT)
            _check_certificate(state, fid, der)
            return replace(state, certs={**state.certs, fid: der}), b""
        if tag == DGI_ERASE_CERT:
            fid = _cert_fid(one(tlv_map(value, {T_FID}), T_FID))
            return replace(state, certs={k: v for k, v in state.certs.items() if k != fid}), b""
        if tag in (DGI_SET_PIN, DGI_SET_PUK):
            if not ctx.security_level & SL_C_DECRYPTION:
                raise StatusError(SW_SECURITY_NOT_SATISFIED, "secrets need C-DECRYPTION")
            if tag == DGI_SET_PIN:
                f = tlv_map(value, {T_REF, T_VALUE})
                ref = _slot(one(f, T_REF))
            else:
                f = tlv_map(value, {T_VALUE})
                ref = REF_PUK
            secret_value = one(f, T_VALUE)
            if not valid_secret(ref, secret_value):
                raise StatusError(SW_WRONG_DATA, f"{SECRET_NAMES[ref]} breaks the format rules")
            fresh = Secret.fresh(MAX_TRIES[ref], secret_value)
            return replace(state, secrets={**state.secrets, ref: fresh}), b""
        if tag == DGI_CONFIGURE:
            flags = one(tlv_map(value, {T_FLAGS}), T_FLAGS)
            if len(flags) != 1 or flags[0] & ~FLAG_AUTH_CERT_NEEDS_PIN:
                raise StatusError(SW_WRONG_DATA, f"flags {flags.hex()} unknown")
            return replace(state, auth_cert_needs_pin=bool(flags[0] & 1)), b""
        raise StatusError(SW_REF_NOT_FOUND, f"DGI {tag:04X} unknown")


class _Counted(Exception):
    """Internal: a VERIFY / RESET RETRY COUNTER attempt failed and moved a counter."""

    def __init__(self, sw: int, state: JpkiState, session: _Session) -> None:
        super().__init__(f"{sw:04X}")
        self.sw, self.state, self.session = sw, state, session


def _check_set(ref: int, secret: Secret) -> None:
    """A secret never set (the applet installed, not yet personalised) is 6A88, referenced
    data not found (ISO/IEC 7816-4 table 6): distinct from a blocked one, 6984, so that the
    holder is not sent to unblock with a PUK what was never there."""
    if not secret.is_set:
        raise StatusError(SW_REF_NOT_FOUND, f"{SECRET_NAMES[ref]} was never set")


def _slot(raw: bytes) -> int:
    if len(raw) != 1 or raw[0] not in SLOT_NAMES:
        raise StatusError(SW_WRONG_DATA, f"slot {raw.hex()} unknown")
    return raw[0]


def _cert_fid(raw: bytes) -> int:
    fid = int.from_bytes(raw, "big") if len(raw) == 2 else -1
    if fid not in CERT_EFS:
        raise StatusError(SW_WRONG_DATA, f"FID {raw.hex()} is no certificate EF")
    return fid


def _check_certificate(state: JpkiState, fid: int, der: bytes) -> None:
    """A certificate EF takes one DER X.509 certificate with a 30 82 header (OpenSC reads
    4 bytes and assumes it); an end-entity certificate must certify its slot's key."""
    if len(der) < 4 or der[:2] != b"\x30\x82" or int.from_bytes(der[2:4], "big") + 4 != len(der):
        raise StatusError(SW_WRONG_DATA, f"certificate for EF {fid:04X} lacks a 30 82 header")
    try:
        cert = x509.load_der_x509_certificate(der)
        cert_spki = _keys.spki_of(cert.public_key())
        cert.not_valid_after_utc  # noqa: B018 - parse the fields describe() shows
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise StatusError(SW_WRONG_DATA, f"EF {fid:04X}: not an X.509 certificate") from exc
    for slot, ee in SLOT_CERT.items():
        if fid == ee:
            if slot not in state.keys:
                raise StatusError(SW_CONDITIONS_NOT_SATISFIED, f"no key in slot {slot}")
            if cert_spki != state.keys[slot].spki:
                raise StatusError(SW_WRONG_DATA, f"EF {fid:04X}: certificate is for another key")


def _state_report(state: JpkiState) -> bytes:
    out = b""
    for slot, key in sorted(state.keys.items()):
        out += tlv(
            T_KEY_INFO,
            tlv(T_SLOT, bytes([slot]))
            + tlv(T_ALG, bytes([ALG_BY_NAME[key.algorithm]]))
            + tlv(T_SHA256, hashlib.sha256(key.spki).digest()),
        )
    for fid, der in sorted(state.certs.items()):
        out += tlv(
            T_CERT_INFO,
            tlv(T_FID, fid.to_bytes(2, "big")) + tlv(T_SHA256, hashlib.sha256(der).digest()),
        )
    for ref, x in sorted(state.secrets.items()):
        out += tlv(
            T_SECRET_INFO,
            tlv(T_REF, bytes([ref]))
            + tlv(T_IS_SET, bytes([int(x.is_set)]))
            + tlv(T_TRIES, bytes([x.tries_left]))
            + tlv(T_MAX, bytes([x.max_tries])),
        )
    return out + tlv(T_FLAGS, bytes([FLAG_AUTH_CERT_NEEDS_PIN if state.auth_cert_needs_pin else 0]))


def _sign(key: KeySlot, scheme: int, data: bytes) -> bytes:
    """COMPUTE DIGITAL SIGNATURE schemes (P1), JPKI-AP.md section 4; ECDSA answers r||s."""
    if not data:
        raise StatusError(SW_WRONG_LENGTH, "nothing to sign")
    private = _keys.private_key(key.pkcs8)
    if key.algorithm == _keys.RSA_2048:
        pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        if scheme == 0x00:
            if len(data) > 245:
                raise StatusError(SW_WRONG_LENGTH, "PKCS #1 v1.5 input over 245 bytes")
            return private.sign(data, padding.PKCS1v15(), NoDigestInfo())
        if scheme == 0x01:
            return private.sign(hashlib.sha256(data).digest(), padding.PKCS1v15(), NoDigestInfo())
        if scheme in (0x02, 0x04) and len(data) != 32:
            raise StatusError(SW_WRONG_LENGTH, "a SHA-256 hash is 32 bytes")
        if scheme == 0x02:
            return private.sign(data, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        if scheme == 0x03:
            return private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if scheme == 0x04:
            return private.sign(data, pss, Prehashed(hashes.SHA256()))
        return private.sign(data, pss, hashes.SHA256())
    # ECDSA P-384: DigestInfo (or a bare hash) in, raw r || s (96 bytes) out.
    if scheme == 0x00:
        hash_alg, digest = _digest_of(data)
        return _keys.ecdsa_prehashed(key.pkcs8, key.algorithm, digest, hash_alg)
    if scheme == 0x02:
        if len(data) != 32:
            raise StatusError(SW_WRONG_LENGTH, "a SHA-256 hash is 32 bytes")
        return _keys.ecdsa_prehashed(key.pkcs8, key.algorithm, data, hashes.SHA256())
    if scheme == 0x03:
        digest = hashlib.sha256(data).digest()
        return _keys.ecdsa_prehashed(key.pkcs8, key.algorithm, digest, hashes.SHA256())
    raise StatusError(SW_WRONG_P1P2, f"scheme P1={scheme:02X} is RSA only")


def _digest_of(data: bytes):
    for prefix, hash_alg in _DIGEST_INFO_PREFIX.items():
        if data.startswith(prefix) and len(data) == len(prefix) + hash_alg.digest_size:
            return hash_alg, data[len(prefix) :]
    if len(data) in _BARE_HASH:
        return _BARE_HASH[len(data)], data
    raise StatusError(SW_WRONG_DATA, "expected a SHA-256/384/512 DigestInfo or hash")


def _load_state(raw: object) -> JpkiState:
    """Parse a snapshot back, refusing anything this applet would not have written."""
    try:
        if not isinstance(raw, dict) or raw.get("version") != 1:
            raise AppletStateError("JPKI state: unknown version")
        serial = raw["serial"]
        if not isinstance(serial, str) or not serial.isascii() or len(serial) > 16:
            raise AppletStateError("JPKI state: bad serial")
        keys = {}
        for slot, k in raw["keys"].items():
            if slot not in SLOT_NAMES or k["algorithm"] not in ALG_BY_NAME:
                raise AppletStateError(f"JPKI state: bad key slot {slot!r}")
            pkcs8 = state_bytes(k["pkcs8"], f"JPKI state: key slot {slot!r} pkcs8")
            spki = state_bytes(k["spki"], f"JPKI state: key slot {slot!r} spki")
            _keys.check_pair(k["algorithm"], pkcs8, spki)
            keys[slot] = KeySlot(k["algorithm"], pkcs8, spki)
        certs = {}
        for fid, der in raw["certs"].items():
            if fid not in CERT_EFS or not isinstance(der, bytes):
                raise AppletStateError(f"JPKI state: bad certificate EF {fid!r}")
            certs[fid] = der
        secrets = {}
        for ref, x in raw["secrets"].items():
            if ref not in MAX_TRIES or x["max_tries"] != MAX_TRIES[ref]:
                raise AppletStateError(f"JPKI state: bad secret {ref!r}")
            secrets[ref] = Secret(
                x["max_tries"],
                state_int(x["tries_left"], f"JPKI state: retry counter of {ref!r}", 0, x["max_tries"]),
                state_bytes(x["salt"], f"JPKI state: salt of {ref!r}"),
                state_bytes(x["digest"], f"JPKI state: digest of {ref!r}"),
            )
        if set(secrets) != set(MAX_TRIES):
            raise AppletStateError("JPKI state: secrets missing")
        flag = raw["auth_cert_needs_pin"]
        if type(flag) not in (int, bool) or flag not in (0, 1):  # 0/1; True/False in older images
            raise AppletStateError("JPKI state: bad flag")
        flag = bool(flag)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AppletStateError(f"JPKI state malformed: {exc!r}") from exc
    return JpkiState(serial, keys, certs, secrets, flag)
