"""The least a CPython mdoc issuer and reader can do with cbor2 and cryptography: a yardstick.

The issue targets compare our issuing and verification with the raw crypto they contain.
Between the two sits the work no Python mdoc code can skip: decoding the CBOR it receives,
encoding what it sends, loading the device key from its COSE coordinates, building the
two Sig_structures and DeviceAuthentication, converting signatures between COSE's raw
r||s and the DER that OpenSSL takes. These two functions do exactly that and nothing more:
no structure, type, size or validity checks, no error handling, no status, no chain, one
namespace, the happy path only. They are *not* verifiers (a malformed or hostile input
gets an arbitrary exception or a wrong answer) and live here only so that a benchmark can
say how much of a ratio is the language and these libraries, and how much is our code.

``sketch_verify`` is the "DS chain already verified and cached" case: it takes the DS
public key as known. ``sketch_issue`` signs one MSO over the given elements, with
fresh salts and digestIDs, as ``build_issuer_signed`` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_ECDSA = ec.ECDSA(hashes.SHA256())
_P256 = ec.SECP256R1()
_PROTECTED = cbor2.dumps({1: -7})


def _der(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _tdate(t: dt.datetime) -> cbor2.CBORTag:
    return cbor2.CBORTag(0, t.strftime("%Y-%m-%dT%H:%M:%SZ"))


def sketch_issue(elements: dict, namespace: str, doc_type: str, device_key: ec.EllipticCurvePublicKey,
                 ds_key: ec.EllipticCurvePrivateKey, ds_der: bytes, valid_from: dt.datetime,
                 valid_until: dt.datetime) -> tuple[list[bytes], list]:
    """The items (tag-24 wrapped, as IssuerSignedItemBytes) and the issuerAuth COSE_Sign1."""
    salts = os.urandom(36 * len(elements))
    items, digests = [], {}
    for i, (name, value) in enumerate(elements.items()):
        if type(value) is dt.date:
            value = cbor2.CBORTag(1004, value.isoformat())
        digest_id = int.from_bytes(salts[32 * len(elements) + 4 * i:][:4], "big") >> 1
        tagged = cbor2.dumps(cbor2.CBORTag(24, cbor2.dumps({
            "digestID": digest_id, "random": salts[32 * i:32 * i + 32],
            "elementIdentifier": name, "elementValue": value})))
        items.append(tagged)
        digests[digest_id] = hashlib.sha256(tagged).digest()
    point = device_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    mso = cbor2.dumps(cbor2.CBORTag(24, cbor2.dumps({
        "version": "1.0", "digestAlgorithm": "SHA-256", "valueDigests": {namespace: digests},
        "deviceKeyInfo": {"deviceKey": {1: 2, -1: 1, -2: point[1:33], -3: point[33:]}},
        "docType": doc_type,
        "validityInfo": {"signed": _tdate(valid_from), "validFrom": _tdate(valid_from),
                         "validUntil": _tdate(valid_until)}})))
    r, s = decode_dss_signature(ds_key.sign(cbor2.dumps(["Signature1", _PROTECTED, b"", mso]), _ECDSA))
    return items, [_PROTECTED, {33: ds_der}, mso, r.to_bytes(32, "big") + s.to_bytes(32, "big")]


def sketch_verify(response: bytes, session_transcript: bytes, ds_public_key: ec.EllipticCurvePublicKey) -> dict:
    """Verify the first document of ``response`` (issuer signature, digests, device
    signature; DS key known) and return its first namespace's elements."""
    doc = cbor2.loads(response)["documents"][0]
    issuer_signed, device_signed = doc["issuerSigned"], doc["deviceSigned"]
    protected, _, payload, signature = issuer_signed["issuerAuth"]
    ds_public_key.verify(_der(signature), cbor2.dumps(["Signature1", protected, b"", payload]), _ECDSA)
    mso = cbor2.loads(cbor2.loads(payload).value)
    (namespace, items), = issuer_signed["nameSpaces"].items()
    digests, values = mso["valueDigests"][namespace], {}
    for tagged in items:
        item = cbor2.loads(tagged.value)
        if digests[item["digestID"]] != hashlib.sha256(cbor2.dumps(tagged)).digest():
            raise ValueError(f"digest of {item['elementIdentifier']}")
        values[item["elementIdentifier"]] = item["elementValue"]
    key = mso["deviceKeyInfo"]["deviceKey"]
    device_key = ec.EllipticCurvePublicKey.from_encoded_point(_P256, b"\x04" + key[-2] + key[-3])
    authentication = cbor2.dumps(cbor2.CBORTag(24, cbor2.dumps(
        ["DeviceAuthentication", cbor2.loads(session_transcript), mso["docType"], device_signed["nameSpaces"]])))
    protected, _, _, signature = device_signed["deviceAuth"]["deviceSignature"]
    device_key.verify(_der(signature), cbor2.dumps(["Signature1", protected, b"", authentication]), _ECDSA)
    return values
