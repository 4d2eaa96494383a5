"""What the TSM knows of the two applets it manages: their AIDs and personalisation
records, as specs/jpki-applet.md section 4 and specs/mdoc-applet.md section 4 define them
(the TSM speaks the wire format; it imports nothing from the phone).

Records travel as DGIs in STORE DATA after INSTALL [for personalization]; each answer is a
DGI of the same tag holding BER-TLV fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocols import perso as P
from protocols.gp.tlv import encode as tlv
from protocols.perso import (  # noqa: F401 - READ_STATE, REF_PUK used as ap.X by tsm.steps
    JPKI_GENERATE,
    JPKI_PROVE,
    JPKI_READ_STATE,
    JPKI_SET_PIN,
    JPKI_SET_PUK,
    JPKI_WRITE_CERT,
    MDOC_DELETE,
    MDOC_GENERATE,
    MDOC_PROVE,
    MDOC_READ_STATE,
    MDOC_WRITE,
    REF_PUK,
    SLOT_AUTH,
    SLOT_SIGN,
    T_ALG,
    T_CERT,
    T_CERT_INFO,
    T_CHALLENGE,
    T_CREDENTIAL_SHA256,
    T_FID,
    T_IS_SET,
    T_ISSUER_SIGNED,
    T_KEY_INFO,
    T_MAX,
    T_POP,
    T_REF,
    T_SECRET_INFO,
    T_SHA256,
    T_SLOT,
    T_SLOT_INFO,
    T_SPKI,
    T_TRIES,
    T_VALUE,
)
from tsm.errors import CardDataError
from tsm.gp_commands import dgi, one_field, parse_dgis, tlv_fields


@dataclass(frozen=True)
class AppletRef:
    name: str
    load_file_aid: bytes
    module_aid: bytes
    instance_aid: bytes


JPKI = AppletRef("jpki", P.JPKI_LOAD_FILE_AID, P.JPKI_MODULE_AID, P.JPKI_INSTANCE_AID)
MDOC = AppletRef("mdoc", P.MDOC_LOAD_FILE_AID, P.MDOC_MODULE_AID, P.MDOC_INSTANCE_AID)

# --- JPKI applet (specs/jpki-applet.md 4) ----------------------------------------------
SLOTS = {"auth": SLOT_AUTH, "sign": SLOT_SIGN}
EF_SIGN_CERT, EF_SIGN_CA, EF_AUTH_CERT, EF_AUTH_CA = 0x0001, 0x0002, 0x000A, 0x000B
CERT_EFS = {"sign": (EF_SIGN_CERT, EF_SIGN_CA), "auth": (EF_AUTH_CERT, EF_AUTH_CA)}
ALGORITHMS = P.JPKI_ALGORITHMS
ALGORITHM_NAMES = {v: k for k, v in ALGORITHMS.items()}


def answer_of(stream: bytes, tag: int, where: str) -> bytes:
    """The value of the single DGI ``tag`` an applet answered."""
    recs = parse_dgis(stream)
    if len(recs) != 1 or recs[0][0] != tag:
        raise CardDataError(f"{where}: expected one DGI {tag:04X} in the answer")
    return recs[0][1]


@dataclass(frozen=True)
class JpkiKeyInfo:
    slot: int
    algorithm: str
    spki_sha256: bytes


@dataclass(frozen=True)
class JpkiSecretInfo:
    ref: int
    is_set: bool
    tries_left: int
    max_tries: int


@dataclass(frozen=True)
class JpkiState:
    keys: dict[int, JpkiKeyInfo]
    certs: dict[int, bytes]  # FID -> SHA-256 of the DER
    secrets: dict[int, JpkiSecretInfo]


def parse_jpki_state(value: bytes) -> JpkiState:
    where = "JPKI READ STATE"
    f = tlv_fields(value, where)
    keys, certs, secrets = {}, {}, {}
    for v in f.get(T_KEY_INFO, []):
        k = tlv_fields(v, where)
        slot = one_field(k, T_SLOT, where)
        alg = one_field(k, T_ALG, where)
        if len(slot) != 1 or len(alg) != 1 or alg[0] not in ALGORITHM_NAMES:
            raise CardDataError(f"{where}: key info slot {slot.hex()} alg {alg.hex()} malformed")
        keys[slot[0]] = JpkiKeyInfo(slot[0], ALGORITHM_NAMES[alg[0]], one_field(k, T_SHA256, where))
    for v in f.get(T_CERT_INFO, []):
        c = tlv_fields(v, where)
        fid = one_field(c, T_FID, where)
        if len(fid) != 2:
            raise CardDataError(f"{where}: certificate FID {fid.hex()} is not 2 bytes")
        certs[int.from_bytes(fid, "big")] = one_field(c, T_SHA256, where)
    for v in f.get(T_SECRET_INFO, []):
        s = tlv_fields(v, where)
        vals = [one_field(s, t, where) for t in (T_REF, T_IS_SET, T_TRIES, T_MAX)]
        if any(len(x) != 1 for x in vals):
            raise CardDataError(f"{where}: secret info malformed")
        secrets[vals[0][0]] = JpkiSecretInfo(vals[0][0], bool(vals[1][0]), vals[2][0], vals[3][0])
    return JpkiState(keys, certs, secrets)


@dataclass(frozen=True)
class KeyProof:
    slot: int
    spki: bytes
    proof: bytes


def parse_jpki_key(value: bytes) -> KeyProof:
    where = "JPKI key record"
    f = tlv_fields(value, where)
    slot = one_field(f, T_SLOT, where)
    spki = one_field(f, T_SPKI, where)
    if len(slot) != 1 or hashlib.sha256(spki).digest() != one_field(f, T_SHA256, where):
        raise CardDataError(f"{where}: slot or SPKI digest malformed")
    return KeyProof(slot[0], spki, one_field(f, T_POP, where))


def jpki_generate(slot: int, algorithm: str, challenge: bytes) -> bytes:
    return dgi(JPKI_GENERATE, tlv(T_SLOT, bytes([slot])) + tlv(T_ALG, bytes([ALGORITHMS[algorithm]]))
               + tlv(T_CHALLENGE, challenge))


def jpki_prove(slot: int, challenge: bytes) -> bytes:
    return dgi(JPKI_PROVE, tlv(T_SLOT, bytes([slot])) + tlv(T_CHALLENGE, challenge))


def jpki_write_cert(fid: int, der: bytes) -> bytes:
    return dgi(JPKI_WRITE_CERT, tlv(T_FID, fid.to_bytes(2, "big")) + tlv(T_CERT, der))


def jpki_set_pin(ref: int, value: bytes) -> bytes:
    return dgi(JPKI_SET_PIN, tlv(T_REF, bytes([ref])) + tlv(T_VALUE, value))


def jpki_set_puk(value: bytes) -> bytes:
    return dgi(JPKI_SET_PUK, tlv(T_VALUE, value))


@dataclass(frozen=True)
class MdocSlotInfo:
    slot: int
    spki_sha256: bytes
    credential_sha256: bytes | None


def parse_mdoc_state(value: bytes) -> dict[int, MdocSlotInfo]:
    where = "mdoc READ STATE"
    out = {}
    for v in tlv_fields(value, where).get(T_SLOT_INFO, []):
        f = tlv_fields(v, where)
        slot = one_field(f, T_SLOT, where)
        if len(slot) != 1:
            raise CardDataError(f"{where}: slot {slot.hex()} malformed")
        cred = f.get(T_CREDENTIAL_SHA256, [None])[0]
        out[slot[0]] = MdocSlotInfo(slot[0], one_field(f, T_SHA256, where), cred)
    return out


def parse_mdoc_keys(value: bytes) -> list[KeyProof]:
    where = "mdoc key record"
    out = []
    for v in tlv_fields(value, where).get(T_SLOT_INFO, []):
        f = tlv_fields(v, where)
        slot = one_field(f, T_SLOT, where)
        if len(slot) != 1:
            raise CardDataError(f"{where}: slot {slot.hex()} malformed")
        out.append(KeyProof(slot[0], one_field(f, T_SPKI, where), one_field(f, T_POP, where)))
    return out


def mdoc_generate(slots: list[int], challenge: bytes) -> bytes:
    return dgi(MDOC_GENERATE, tlv(T_SLOT, bytes(slots)) + tlv(T_CHALLENGE, challenge))


def mdoc_prove(slot: int, challenge: bytes) -> bytes:
    return dgi(MDOC_PROVE, tlv(T_SLOT, bytes([slot])) + tlv(T_CHALLENGE, challenge))


def mdoc_write(slot: int, issuer_signed: bytes) -> bytes:
    return dgi(MDOC_WRITE, tlv(T_SLOT, bytes([slot])) + tlv(T_ISSUER_SIGNED, issuer_signed))


def mdoc_delete(slots: list[int]) -> bytes:
    return dgi(MDOC_DELETE, tlv(T_SLOT, bytes(slots)))
