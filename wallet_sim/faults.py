"""A hostile phone, on purpose: faults the wallet can be told to make in the Documents it
presents, so that a reader maker can check that a reader refuses each one (``mcred phone
pcsc --fault``, ``mcred wallet respond --fault``, ``mcred present --fault``).

Each fault is one thing a forged or broken presentation gets wrong, and names the check of
ISO/IEC 18013-5 §9.3 a reader must fail it by (our reader's check name). The phone's
credential and keys are untouched: a fault changes the bytes the wallet sends, never what the
SE holds. The device key never leaves the SE; where a fault needs another key (a device
signature by a key not in the MSO, a document signer no IACA vouches for) it is a fresh
software key made for that one Document.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor, cose, iaca
from protocols.cose import Sign1
from protocols.mdoc import Document, IssuerSigned


class FaultError(ValueError):
    """No such fault; the message lists them."""


@dataclass(frozen=True)
class Fault:
    name: str
    does: str
    """what the phone gets wrong"""
    refused_by: str
    """the reader check that must fail (ISO/IEC 18013-5 §9.3.1 step, our check's name)"""
    code: str
    """that check's code in our reader's verdict (protocols.mdoc.verify.CHECK_CODES)"""


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("item-digest", "changes the value of one disclosed item after issuance (its digest in the MSO no longer "
          "matches)", "value_digests", "tampered"),
    Fault("doc-type", "presents the document under another docType than the MSO's", "doc_type", "tampered"),
    Fault("issuer-signature", "flips a bit of the MSO's signature (issuerAuth)", "issuer_signature", "tampered"),
    Fault("untrusted-issuer", "re-signs the MSO with a document signer of an IACA of its own making",
          "issuer_certificate_chain", "untrusted_issuer"),
    Fault("device-signature", "signs DeviceAuthentication with a key that is not the MSO's device key",
          "device_authentication", "device_auth_failed"),
    Fault("replay", "answers with the Document of its previous presentation (the device signature is over "
          "that session's transcript); the first presentation is genuine", "device_authentication",
          "device_auth_failed"),
    Fault("unrequested", "discloses one item the reader did not ask for", "matches_request", "not_requested"),
)}


def fault(name: str | None) -> Fault | None:
    """The fault named ``name`` (None: none). Raises :class:`FaultError`."""
    if name is None:
        return None
    try:
        return FAULTS[name]
    except KeyError:
        raise FaultError(f"--fault {name!r}: one of {', '.join(FAULTS)}") from None


def _with_items(doc: Document, name_spaces: dict[str, tuple[bytes, ...]]) -> Document:
    return dataclasses.replace(doc, issuer_signed=IssuerSigned(name_spaces, doc.issuer_signed.issuer_auth))


def _with_issuer_auth(doc: Document, issuer_auth: Sign1) -> Document:
    return dataclasses.replace(doc, issuer_signed=IssuerSigned(doc.issuer_signed.name_spaces, issuer_auth))


def change_an_item(doc: Document) -> Document:
    """The first disclosed item with its value changed (same digestID and random)."""
    for ns, raws in doc.issuer_signed.name_spaces.items():
        if raws:
            item = dict(cbor.loads(raws[0]))
            value = item["elementValue"]
            item["elementValue"] = (not value if isinstance(value, bool) else value + 1 if isinstance(value, int)
                                    else value + "x" if isinstance(value, str)
                                    else bytes([value[0] ^ 1]) + value[1:] if isinstance(value, bytes) and value
                                    else "changed")
            return _with_items(doc, {**doc.issuer_signed.name_spaces, ns: (cbor.dumps(item), *raws[1:])})
    return doc


def flip_issuer_signature(doc: Document) -> Document:
    auth = doc.issuer_signed.issuer_auth
    sig = bytearray(auth.signature)
    sig[len(sig) // 2] ^= 0x01
    return _with_issuer_auth(doc, dataclasses.replace(auth, signature=bytes(sig)))


def resign_by_stranger(doc: Document, now: dt.datetime) -> Document:
    """The same MSO bytes, signed by a document signer under a self-made IACA (the Annex B
    profiles, so only the chain to the reader's trust store is wrong)."""
    iaca_key, ds_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    start = now - dt.timedelta(days=1)
    root = iaca.sign(iaca.iaca_builder(iaca_key.public_key(), common_name="Stranger IACA", not_before=start,
                                       not_after=start + dt.timedelta(days=30),
                                       issuer_alt_name_uri="https://stranger.invalid",
                                       crl_uri="https://stranger.invalid/crl"), iaca_key)
    ds = iaca.sign(iaca.document_signer_builder(ds_key.public_key(), root, common_name="Stranger DS",
                                                not_before=start, not_after=start + dt.timedelta(days=30),
                                                crl_uri="https://stranger.invalid/crl"), iaca_key)
    auth = doc.issuer_signed.issuer_auth
    resigned = Sign1.create(cose.key_signer(ds_key), auth.payload,
                            unprotected={33: ds.public_bytes(serialization.Encoding.DER)})
    return _with_issuer_auth(doc, resigned)


def stranger_signer() -> cose.CoseSigner:
    """A device key that is not the MSO's (made for one Document, then forgotten)."""
    return cose.key_signer(ec.generate_private_key(ec.SECP256R1()))


def after_build(f: Fault | None, doc: Document, now: Callable[[], dt.datetime]) -> Document:
    """``doc`` with the faults that change a built Document applied."""
    if f is None:
        return doc
    if f.name == "item-digest":
        return change_an_item(doc)
    if f.name == "issuer-signature":
        return flip_issuer_signature(doc)
    if f.name == "untrusted-issuer":
        return resign_by_stranger(doc, now())
    return doc


def describe() -> list[dict[str, Any]]:
    return [{"fault": f.name, "does": f.does, "refused_by": f.refused_by, "code": f.code} for f in FAULTS.values()]
