"""The mdoc applet: ISO/IEC 18013-5 device keys and issued credentials in the GP-SE.

A project-defined applet (``specs/mdoc-applet.md``): credential slots each holding a P-256
device key generated inside the SE (18013-5 9.1.3.4 mdoc authentication) and the
IssuerSigned structure (8.3.2.1.2.2) issued for it. The wallet app on the phone lists slots,
reads IssuerSigned, and asks for the device signature (ECDSA over a SHA-256 digest of
DeviceAuthenticationBytes, 9.1.3.6) or for the ECDH shared secret behind deviceMac
(9.1.3.5); no APDU returns a private key. The TSM personalises slots through STORE DATA.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import perso
from protocols.perso import (
    T_CHALLENGE,
    T_COSE_KEY,
    T_CREDENTIAL_SHA256,
    T_ISSUER_SIGNED,
    T_LENGTH,
    T_POP,
    T_SHA256,
    T_SLOT,
    T_SLOT_INFO,
    T_SPKI,
)
from wallet_sim.applets import _keys
from wallet_sim.applets._apdu import (
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_END_OF_FILE,
    SW_INS_NOT_SUPPORTED,
    SW_REF_NOT_FOUND,
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
from wallet_sim.applets._perso import BlockAssembler, dgi, parse_dgis
from wallet_sim.applets._state import state_bytes
from wallet_sim.applets.errors import AppletStateError, StatusError
from wallet_sim.se.applet import Applet, CommandContext

MDOC_INSTANCE_AID = perso.MDOC_INSTANCE_AID
MAX_SLOTS = perso.MDOC_MAX_SLOTS
MAX_CREDENTIAL = 0xFFFF  # one DGI record; documented limit

# Plain APDU instructions (CLA 80).
INS_LIST_SLOTS = 0x10
INS_GET_PUBLIC_KEY = 0x12
INS_READ_CREDENTIAL = 0x14
INS_SIGN = 0x2A
INS_KEY_AGREEMENT = 0x86
SLOT_HAS_KEY = 0x01
SLOT_HAS_CREDENTIAL = 0x02

# Personalisation records (DGI tags) and TLV fields: specs/mdoc-applet.md section 4.
DGI_READ_STATE = perso.MDOC_READ_STATE
DGI_GENERATE_KEYS = perso.MDOC_GENERATE
DGI_PROVE_KEYS = perso.MDOC_PROVE
DGI_WRITE_CREDENTIAL = perso.MDOC_WRITE
DGI_DELETE_SLOTS = perso.MDOC_DELETE


@dataclass(frozen=True)
class CredentialSlot:
    #: the device key: it never leaves the SE, in a repr (a log, a traceback) neither
    pkcs8: bytes = field(repr=False)
    spki: bytes
    issuer_signed: bytes = b""


@dataclass(frozen=True)
class MdocState:
    slots: dict[int, CredentialSlot] = field(default_factory=dict)


#: the DER of a P-256 SubjectPublicKeyInfo (RFC 5480) up to its point, which follows
#: uncompressed: 04 || X || Y (the form ``cryptography`` writes)
_P256_SPKI_HEAD = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04"
_P256_SPKI_LEN = len(_P256_SPKI_HEAD) + 64


def cose_key(spki: bytes) -> bytes:
    """The COSE_Key (RFC 9052 7, EC2 P-256) of a device public key, deterministic CBOR.

    X and Y are cut from an SPKI of the exact P-256 uncompressed form (every SPKI this SE
    made); any other SPKI is loaded and its coordinates read from the key object."""
    if len(spki) == _P256_SPKI_LEN and spki.startswith(_P256_SPKI_HEAD):
        n = len(_P256_SPKI_HEAD)
        x, y = spki[n:n + 32], spki[n + 32:]
    else:
        numbers = serialization.load_der_public_key(spki).public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    # the keys in canonical order already (01, 20, 21, 22): the plain encoding is canonical
    return cbor2.dumps({1: 2, -1: 1, -2: x, -3: y})


def mso_of(issuer_signed: bytes) -> dict:
    """The MobileSecurityObject inside IssuerSigned.issuerAuth (18013-5 9.1.2.4)."""
    try:
        doc = cbor2.loads(issuer_signed)
        auth = doc["issuerAuth"]
        payload = auth[2]
        if isinstance(payload, cbor2.CBORTag):
            payload = payload.value
        inner = cbor2.loads(payload)
        if isinstance(inner, cbor2.CBORTag) and inner.tag == 24:
            inner = cbor2.loads(inner.value)
        if not isinstance(inner, dict) or not isinstance(doc.get("nameSpaces", {}), dict):
            raise TypeError("MSO is not a map")
        return inner
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        RecursionError,
        cbor2.CBORError,
    ) as exc:
        raise StatusError(SW_WRONG_DATA, f"IssuerSigned does not parse: {exc}") from exc


def _device_key_matches(mso: dict, spki: bytes) -> bool:
    try:
        device_key = mso["deviceKeyInfo"]["deviceKey"]
        return cbor2.loads(cose_key(spki)) == {k: device_key[k] for k in (1, -1, -2, -3)}
    except (KeyError, TypeError):
        return False


class MdocApplet(Applet):
    """Up to 16 credential slots, each a P-256 device key and its IssuerSigned."""

    MODULE_AID = perso.MDOC_MODULE_AID

    def __init__(self, instance_aid: bytes = MDOC_INSTANCE_AID) -> None:
        super().__init__(instance_aid)
        self.state = MdocState()
        self._blocks = BlockAssembler(max_bytes=MAX_SLOTS * (MAX_CREDENTIAL + 16))

    def select(self, p2: int, ctx: CommandContext) -> bytes:
        return sw_bytes(0x9000)

    def process(self, apdu: bytes, ctx: CommandContext) -> bytes:
        try:
            cmd = parse_command(apdu)
            handler = self._HANDLERS.get(cmd.ins)
            if handler is None:
                raise StatusError(SW_INS_NOT_SUPPORTED, f"INS {cmd.ins:02X} not supported")
            if not cmd.proprietary:
                raise StatusError(SW_CLA_NOT_SUPPORTED, f"CLA {cmd.cla:02X}: use CLA 80")
            return respond(handler(self, cmd))
        except StatusError as exc:
            return sw_bytes(exc.sw)

    def store_data(self, p1: int, p2: int, data: bytes, ctx: CommandContext) -> bytes:
        try:
            stream = self._blocks.feed(p1, p2, data, ctx)
            if stream is None:
                return sw_bytes(0x9000)
            state, out = self.state, b""
            for record in parse_dgis(stream):
                state, answer = self._personalise(state, record.tag, record.value)
                out += answer
            self.state = state
            return respond(out)
        except StatusError as exc:
            return sw_bytes(exc.sw)

    def snapshot(self) -> dict:
        return {
            "version": 1,
            "slots": {
                n: {"pkcs8": s.pkcs8, "spki": s.spki, "issuer_signed": s.issuer_signed}
                for n, s in self.state.slots.items()
            },
        }

    def restore(self, state: dict) -> None:
        try:
            if not isinstance(state, dict) or state.get("version") != 1:
                raise AppletStateError("mdoc state: unknown version")
            slots = {}
            for n, s in state["slots"].items():
                if type(n) is not int or not 0 <= n < MAX_SLOTS:
                    raise AppletStateError(f"mdoc state: bad slot {n!r}")
                pkcs8 = state_bytes(s["pkcs8"], f"mdoc state: slot {n} pkcs8")
                spki = state_bytes(s["spki"], f"mdoc state: slot {n} spki")
                _keys.check_pair(_keys.EC_P256, pkcs8, spki)
                slots[n] = CredentialSlot(pkcs8, spki, state_bytes(s["issuer_signed"], f"mdoc state: slot {n} credential"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise AppletStateError(f"mdoc state malformed: {exc!r}") from exc
        self.state = MdocState(slots)
        self._blocks.reset()

    def describe(self) -> dict:
        slots = {}
        for n, s in sorted(self.state.slots.items()):
            info: dict = {
                "algorithm": _keys.EC_P256,
                "public_key_sha256": hashlib.sha256(s.spki).hexdigest(),
                "credential_bytes": len(s.issuer_signed),
            }
            if s.issuer_signed:
                try:
                    info["doc_type"] = mso_of(s.issuer_signed).get("docType")
                except StatusError:
                    info["doc_type"] = None
            slots[n] = info
        return {"applet": "mdoc", "aid": self.instance_aid.hex().upper(), "slots": slots}

    # --- plain APDUs ---------------------------------------------------------------------

    def _slot(self, cmd: Command) -> CredentialSlot:
        if cmd.p2 != 0x00 or cmd.p1 >= MAX_SLOTS:
            raise StatusError(SW_WRONG_P1P2, f"P1-P2 {cmd.p1:02X}{cmd.p2:02X}: no such slot")
        slot = self.state.slots.get(cmd.p1)
        if slot is None:
            raise StatusError(SW_REF_NOT_FOUND, f"slot {cmd.p1} holds no key")
        return slot

    def _list_slots(self, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            raise StatusError(SW_WRONG_P1P2, "LIST SLOTS takes P1-P2 0000")
        if cmd.data:
            raise StatusError(SW_WRONG_LENGTH, "LIST SLOTS is case 2")
        out = b""
        for n, s in sorted(self.state.slots.items()):
            flags = SLOT_HAS_KEY | (SLOT_HAS_CREDENTIAL if s.issuer_signed else 0)
            out += bytes([n, flags]) + len(s.issuer_signed).to_bytes(4, "big")
        return out

    def _get_public_key(self, cmd: Command) -> bytes:
        slot = self._slot(cmd)
        if cmd.data:
            raise StatusError(SW_WRONG_LENGTH, "GET PUBLIC KEY is case 2")
        return slot.spki

    def _read_credential(self, cmd: Command) -> bytes:
        slot = self._slot(cmd)
        if len(cmd.data) != 3 or cmd.le is None:
            raise StatusError(SW_WRONG_LENGTH, "READ CREDENTIAL: 3-byte offset and Le")
        if not slot.issuer_signed:
            raise StatusError(SW_REF_NOT_FOUND, f"slot {cmd.p1} holds no credential")
        offset = int.from_bytes(cmd.data, "big")
        if offset >= len(slot.issuer_signed):
            raise StatusError(SW_END_OF_FILE, f"offset {offset} at/after the end")
        return slot.issuer_signed[offset : offset + cmd.le]

    def _sign(self, cmd: Command) -> bytes:
        slot = self._slot(cmd)
        if len(cmd.data) != 32:
            raise StatusError(SW_WRONG_LENGTH, "SIGN takes a 32-byte SHA-256 digest")
        return _keys.ecdsa_prehashed(slot.pkcs8, _keys.EC_P256, cmd.data, hashes.SHA256())

    def _key_agreement(self, cmd: Command) -> bytes:
        slot = self._slot(cmd)
        peer = _peer_key(cmd.data)
        return _keys.private_key(slot.pkcs8).exchange(ec.ECDH(), peer)

    _HANDLERS = {
        INS_LIST_SLOTS: _list_slots,
        INS_GET_PUBLIC_KEY: _get_public_key,
        INS_READ_CREDENTIAL: _read_credential,
        INS_SIGN: _sign,
        INS_KEY_AGREEMENT: _key_agreement,
    }

    # --- personalisation -----------------------------------------------------------------

    def _personalise(self, state: MdocState, tag: int, value: bytes) -> tuple[MdocState, bytes]:
        if tag == DGI_READ_STATE:
            if value:
                raise StatusError(SW_WRONG_DATA, "READ STATE takes no data")
            return state, dgi(tag, _state_report(state))
        if tag in (DGI_GENERATE_KEYS, DGI_PROVE_KEYS):
            f = tlv_map(value, {T_SLOT, T_CHALLENGE})
            slots = _slot_list(one(f, T_SLOT))
            challenge = one(f, T_CHALLENGE)
            if not 16 <= len(challenge) <= 64:
                raise StatusError(SW_WRONG_DATA, "challenge must be 16-64 bytes")
            new = dict(state.slots)
            answer = b""
            for n in slots:
                if tag == DGI_GENERATE_KEYS:
                    new[n] = CredentialSlot(*_keys.generate(_keys.EC_P256))
                elif n not in new:
                    raise StatusError(SW_REF_NOT_FOUND, f"slot {n} holds no key")
                s = new[n]
                pop = _keys.proof_of_possession(_keys.EC_P256, s.pkcs8, challenge + s.spki)
                answer += tlv(
                    T_SLOT_INFO,
                    tlv(T_SLOT, bytes([n]))
                    + tlv(T_SPKI, s.spki)
                    + tlv(T_COSE_KEY, cose_key(s.spki))
                    + tlv(T_POP, pop),
                )
            return MdocState(new), dgi(tag, answer)
        if tag == DGI_WRITE_CREDENTIAL:
            f = tlv_map(value, {T_SLOT, T_ISSUER_SIGNED})
            (n,) = _slot_list(one(f, T_SLOT), single=True)
            issuer_signed = one(f, T_ISSUER_SIGNED)
            slot = state.slots.get(n)
            if slot is None:
                raise StatusError(SW_CONDITIONS_NOT_SATISFIED, f"slot {n} holds no key")
            if not _device_key_matches(mso_of(issuer_signed), slot.spki):
                raise StatusError(SW_WRONG_DATA, f"the MSO's device key is not slot {n}'s key")
            slots = {**state.slots, n: replace(slot, issuer_signed=issuer_signed)}
            return MdocState(slots), b""
        if tag == DGI_DELETE_SLOTS:
            slots = _slot_list(one(tlv_map(value, {T_SLOT}), T_SLOT))
            return MdocState({k: v for k, v in state.slots.items() if k not in slots}), b""
        raise StatusError(SW_REF_NOT_FOUND, f"DGI {tag:04X} unknown")


def _slot_list(raw: bytes, *, single: bool = False) -> tuple[int, ...]:
    if not raw or len(set(raw)) != len(raw) or any(n >= MAX_SLOTS for n in raw):
        raise StatusError(SW_WRONG_DATA, f"slot list {raw.hex()} invalid")
    if single and len(raw) != 1:
        raise StatusError(SW_WRONG_DATA, "exactly one slot expected")
    return tuple(raw)


def _peer_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """The reader's ephemeral P-256 key: an SEC1 point (04 || X || Y, or compressed) or an
    SPKI; anything not on P-256 answers 6A80."""
    try:
        if data[:1] == b"\x30":
            key = serialization.load_der_public_key(data)
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                raise ValueError("not a P-256 key")
            return key
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except (ValueError, TypeError) as exc:
        raise StatusError(SW_WRONG_DATA, f"reader key invalid: {exc}") from exc


def _state_report(state: MdocState) -> bytes:
    out = b""
    for n, s in sorted(state.slots.items()):
        body = (
            tlv(T_SLOT, bytes([n]))
            + tlv(T_SHA256, hashlib.sha256(s.spki).digest())
            + tlv(T_LENGTH, len(s.issuer_signed).to_bytes(4, "big"))
        )
        if s.issuer_signed:
            body += tlv(T_CREDENTIAL_SHA256, hashlib.sha256(s.issuer_signed).digest())
        out += tlv(T_SLOT_INFO, body)
    return out
