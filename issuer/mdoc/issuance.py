"""Issuing card-substitute mdocs into phones (ISO/IEC 18013-5:2021 §9.1.2; issue 5 item 3).

The mdoc applet in the phone's SE generates one device key per slot and proves possession
of each by signing ``challenge || SPKI`` (DER ECDSA, SHA-256 for P-256, SHA-384 for P-384),
the challenge coming from :meth:`MdocIssuer.mdoc_challenge`. The issuer then signs one MSO
per slot: fresh random salts and digestIDs for every element, a validity window, and the
``status`` reference to a freshly allocated status-list index. A small batch of slots
(distinct device keys, distinct MSOs, distinct indices) keeps readers from linking
presentations, the way production wallets do.

Idempotent by ``(job_ref, slot)``: the challenge and the IssuerSigned are stored and given
back unchanged when a job retries after a lost answer (``tsm/ports.py`` ``IssuerPort``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Holder, Phone, utcnow
from issuer.mdoc.errors import DeviceKeyError, IssuanceError, JobConflict, UnknownPhone
from issuer.mdoc.models import MdocChallenge, MdocIssuance
from issuer.mdoc.pki import ActiveKey, MdocPki
from issuer.mdoc.status_lists import StatusRegistry
from issuer.mdoc.txn import run_transaction
from issuer.revocation import supersede, supersede_on_other_phones
from protocols import cardsub
from protocols.birthdays import end_of_day_jst
from protocols.cardsub import DEFAULT_NAMES, JST, DocNames
from protocols.cose import CRV_P256, CRV_P384, CoseKey
from protocols.mdoc import (
    IdentifierListRef,
    IssuerSigned,
    MsoStatus,
    StatusListRef,
    build_issuer_signed,
)
from protocols.mdoc.issuing import PreparedNamespaces, prepare_namespaces

CHALLENGE_BYTES = 32
#: Size of an MSO's identifier in the Identifier List (random, never reused in practice).
IDENTIFIER_BYTES = 16
_PROOF_HASH = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}


@dataclass(frozen=True)
class IssuancePolicy:
    """MSO validity (short, re-issued: the way production wallets refresh), digest, names."""

    mso_validity: dt.timedelta = dt.timedelta(days=30)
    digest_alg: str = "SHA-256"
    names: DocNames = field(default=DEFAULT_NAMES)
    max_slots: int = 16
    #: Also put an ``identifier_list`` reference (16 random bytes, the Identifier List
    #: beside the status list) into each MSO; specs/status-list.md says why it is off.
    identifier_list: bool = False
    #: The NN of the ``age_over_NN`` elements issued: 18 and 20 always, others beside them
    #: (:func:`protocols.cardsub.check_age_thresholds`; kept sorted, 18 and 20 included).
    age_over: tuple[int, ...] = cardsub.DEFAULT_AGE_THRESHOLDS

    def __post_init__(self) -> None:
        # the MSO writes its times in whole seconds and validUntil must be later than
        # validFrom (ISO/IEC 18013-5 9.1.2.4): less than a second would issue an MSO that
        # is never valid (or, at zero or less, none, blamed on the record or the DS)
        if type(self.mso_validity) is not dt.timedelta or self.mso_validity < dt.timedelta(seconds=1):
            raise IssuanceError(f"issuance policy: mso_validity {self.mso_validity!r:.60}: a timedelta of at least "
                                "one second (an MSO's validUntil is later than its validFrom, in whole seconds: "
                                "ISO/IEC 18013-5 9.1.2.4)")
        try:
            ages = cardsub.check_age_thresholds(self.age_over)
        except cardsub.ElementError as exc:
            raise IssuanceError(f"issuance policy: {exc}") from None
        # the default kept as the object itself: build_namespaces names its elements once
        object.__setattr__(self, "age_over", cardsub.DEFAULT_AGE_THRESHOLDS
                           if ages == cardsub.DEFAULT_AGE_THRESHOLDS else ages)


def device_key_from_spki(spki_der: bytes) -> ec.EllipticCurvePublicKey:
    """The device public key from its SubjectPublicKeyInfo DER: P-256 or P-384 only."""
    try:
        key = serialization.load_der_public_key(bytes(spki_der))
    except (ValueError, TypeError) as exc:
        raise DeviceKeyError(f"device key: not a SubjectPublicKeyInfo DER ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _PROOF_HASH:
        raise DeviceKeyError(f"device key: need an EC P-256 or P-384 key, got {type(key).__name__}"
                             + (f" on {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else ""))
    return key


def device_key_and_point(spki_der: bytes) -> tuple[ec.EllipticCurvePublicKey, CoseKey]:
    """:func:`device_key_from_spki` (same checks, same errors) and the key's point as a
    :class:`~protocols.cose.CoseKey`, for the MSO's deviceKey.

    The key object checks the proof of possession; the CoseKey goes into the MSO as it is,
    so issuing does not ask OpenSSL to serialise the point again. The point is read from the
    DER the key was loaded from (and so validated): a named-curve SPKI with an uncompressed
    point ends with it, after a prefix fixed by the curve. Any other encoding (a compressed
    point) is serialised once here."""
    key = device_key_from_spki(spki_der)
    spki = spki_der if type(spki_der) is bytes else bytes(spki_der)
    shape = _SPKI_POINT.get(len(spki))
    if shape is not None and spki.startswith(shape[0]):
        prefix, crv, size = shape
        return key, CoseKey._of(crv, spki[len(prefix):len(prefix) + size], spki[len(prefix) + size:])
    return key, CoseKey.from_public_key(key)


_SPKI_POINT = {len(prefix) + 2 * size: (prefix, crv, size) for prefix, crv, size in (
    (bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04", CRV_P256, 32),
    (bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200") + b"\x04", CRV_P384, 48),
)}
"""By the SPKI's length: its DER up to x for a P-256 / P-384 key (SEQUENCE, id-ecPublicKey and
the curve's OID, the BIT STRING head and 04, the uncompressed point's first octet), the COSE
crv and the coordinate size (tests/test_issuer_mdoc_issuance.py checks them against
``cryptography``)."""


def verify_proof(key: ec.EllipticCurvePublicKey, challenge: bytes, spki_der: bytes, proof: bytes) -> None:
    """Proof of possession: DER ECDSA by the device key over ``challenge || spki_der``."""
    try:
        key.verify(bytes(proof), bytes(challenge) + bytes(spki_der),
                   ec.ECDSA(_PROOF_HASH[key.curve.name]()))
    except (InvalidSignature, ValueError):
        raise DeviceKeyError("device key: the proof of possession does not verify over "
                             "challenge || SPKI") from None


def make_proof(private_key: ec.EllipticCurvePrivateKey, challenge: bytes) -> tuple[bytes, bytes]:
    """``(spki_der, proof)`` for a device key held in this process (CLI, tests)."""
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki, private_key.sign(challenge + spki, ec.ECDSA(_PROOF_HASH[private_key.curve.name]()))


def spki_sha256(spki_der: bytes) -> str:
    return hashlib.sha256(spki_der).hexdigest()


def document_number(holder_id: str, phone_id: str) -> str:
    """The record's document number: stable per (holder, phone), never the My Number."""
    return "JPCS" + hashlib.sha256(f"{holder_id}|{phone_id}".encode()).hexdigest()[:12].upper()


def holder_from_row(row: Holder) -> cardsub.Holder:
    """The registry's holder JSON (issuer/holders.py) as a typed cardsub Holder."""
    data = {k: v for k, v in row.data.items() if k in cardsub.FIELDS}
    data.setdefault("card_expiry_date", row.card_expiry.isoformat())
    return cardsub.parse_holder(data)


def sign_card_substitute(
    holder: cardsub.Holder,
    portrait: bytes | None,
    device_key: ec.EllipticCurvePublicKey | CoseKey,
    ds: ActiveKey,
    *,
    now: dt.datetime,
    record_expiry: dt.date,
    document_no: str,
    status: MsoStatus | None,
    policy: IssuancePolicy = IssuancePolicy(),
) -> IssuerSigned:
    """One signed card-substitute mdoc (pure apart from the DS key's signature).

    Validity: from ``now`` for ``policy.mso_validity``, cut at the DS certificate's end and
    at the record's expiry, so no MSO outlives what vouches for it. ``device_key`` may be
    the validated key's point as :func:`device_key_and_point` gives it (the registry's way:
    no serialisation of the point per MSO).
    """
    return _card_substitute(holder, portrait, device_key, ds, now, record_expiry, document_no, status, policy)[0]


def _card_substitute(holder: cardsub.Holder, portrait: bytes | None, device_key: ec.EllipticCurvePublicKey | CoseKey,
                     ds: ActiveKey, now: dt.datetime, record_expiry: dt.date, document_no: str,
                     status: MsoStatus | None, policy: IssuancePolicy,
                     ) -> tuple[IssuerSigned, dt.datetime, dt.datetime]:
    """:func:`sign_card_substitute`, with the MSO's validFrom and validUntil as it wrote
    them (whole seconds, UTC): the registry records them beside the MSO without decoding it."""
    if now.tzinfo is not dt.UTC:
        now = now.astimezone(dt.UTC)
    if now.microsecond:
        now = now.replace(microsecond=0)
    issue_date = (now + _JST_OFFSET).date()  # the day in Japan (JST has no summer time)
    if record_expiry < issue_date:
        # the record runs through its expiry day (the card's last day, to 23:59:59 JST, as a
        # JPKI certificate does): nothing to issue after that day, said before the elements
        # are built (their check of the expiry date had raised an untyped ElementError: a
        # crash to the TSM)
        raise IssuanceError(f"nothing to issue: the record (the card) ended with {record_expiry.isoformat()}, "
                            f"its last day in Japan, and today is {issue_date.isoformat()}")
    key = (_HOLDER_KEY(holder), issue_date, record_expiry, document_no, policy.names, policy.age_over)
    hit = _ELEMENTS.get(key)
    if hit is None or (hit[0] is not portrait and hit[0] != portrait):
        hit = _elements(key, holder, portrait, issue_date, record_expiry, document_no, now, policy.names,
                        policy.age_over)
    _, elements, record_end = hit
    valid_until = min(now + policy.mso_validity, ds.not_valid_after, record_end)
    if valid_until <= now:
        raise IssuanceError(f"nothing to issue: the record or the DS ends at {valid_until}")
    issued = build_issuer_signed(
        elements, policy.names.doctype, device_key, ds.signer, [ds.der],
        valid_from=now, valid_until=valid_until, signed=now, status=status,
        digest_alg=policy.digest_alg,
    )
    return issued, now, valid_until if not valid_until.microsecond else valid_until.replace(microsecond=0)


_JST_OFFSET = JST.utcoffset(None)
_HOLDER_KEY = operator.attrgetter(*(f for f in cardsub.FIELDS if f not in ("pin", "password")))
"""The holder fields that go into a key of :data:`_ELEMENTS` (never the PIN or the password)."""
_ELEMENTS: dict[tuple, tuple[bytes | None, PreparedNamespaces, dt.datetime]] = {}
"""A holder's elements, encoded once for the MSOs of a batch (one per slot of a phone, issued
one after the other): by the holder's fields, issue date, record expiry, document number and
names, with the portrait they were built with and the record's end. Bounded: a few batches."""
_ELEMENTS_MAX = 16


def _elements(key: tuple, holder: cardsub.Holder, portrait: bytes | None, issue_date: dt.date,
              record_expiry: dt.date, document_no: str, now: dt.datetime,
              names: DocNames, age_over: tuple[int, ...]) -> tuple[bytes | None, PreparedNamespaces, dt.datetime]:
    """The card-substitute elements of ``holder`` (every check of ``build_namespaces``), encoded."""
    namespaces = cardsub.build_namespaces(
        holder, portrait, issue_date=issue_date, expiry_date=record_expiry,
        document_number=document_no, now=now, names=names,
        age_thresholds=age_over,
    )
    # through the card's last day, as its JPKI certificates run (specs/card-substitute-doctype.md):
    # an MSO that ended at the start of that day left the holder a day without an mdoc, and
    # none could be issued on it
    record_end = end_of_day_jst(record_expiry)
    hit = (portrait, prepare_namespaces(namespaces), record_end)
    if len(_ELEMENTS) >= _ELEMENTS_MAX:
        _ELEMENTS.clear()
    _ELEMENTS[key] = hit
    return hit


class MdocIssuer:
    """The mdoc half of the TSM's ``IssuerPort``, over the issuer's registry."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        pki: MdocPki,
        registry: StatusRegistry,
        policy: IssuancePolicy | None = None,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        portrait_for: Callable[[Holder], bytes | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.pki = pki
        self.registry = registry
        self.policy = policy or IssuancePolicy()
        self.clock = clock
        self.portrait_for = portrait_for or (lambda _row: None)

    def _check_slot(self, job_ref: str, slot_index: int) -> None:
        if not isinstance(job_ref, str) or not 0 < len(job_ref) <= 128:
            raise IssuanceError(f"job_ref must be 1-128 characters, got {job_ref!r}")
        if type(slot_index) is not int or not 0 <= slot_index < self.policy.max_slots:
            raise IssuanceError(f"slot_index must be 0..{self.policy.max_slots - 1}, got {slot_index!r}")

    def mdoc_challenge(self, job_ref: str, phone_id: str, slot_index: int) -> bytes:
        """A fresh challenge for slot ``slot_index`` of the job (the same one on a retry)."""
        self._check_slot(job_ref, slot_index)

        def work(s: Session) -> bytes:
            row = s.get(MdocChallenge, (job_ref, slot_index))
            if row is None:
                row = MdocChallenge(job_ref=job_ref, slot=slot_index, phone_id=phone_id,
                                    challenge=secrets.token_bytes(CHALLENGE_BYTES),
                                    created_at=self.clock())
                s.add(row)
                s.flush()
            elif row.phone_id != phone_id:
                raise JobConflict(f"job {job_ref} slot {slot_index} belongs to phone {row.phone_id}")
            return row.challenge

        return run_transaction(self.sessions, work)

    def issue_mdoc(self, job_ref: str, phone_id: str, slot_index: int,
                   device_public_key_der: bytes, proof: bytes) -> bytes:
        """Check the proof of possession, sign an MSO for the device key; IssuerSigned CBOR."""
        return self._issue_for_key(job_ref, phone_id, slot_index, device_public_key_der, proof)

    def issue_attested(self, job_ref: str, phone_id: str, slot_index: int,
                       device_public_key_der: bytes, *, portrait: bytes | None = None) -> bytes:
        """Issue for a device key the operator vouches for (``mcred mdoc issue`` with a
        public key file): no challenge and no proof. Same idempotency as :meth:`issue_mdoc`."""
        return self._issue_for_key(job_ref, phone_id, slot_index, device_public_key_der, None,
                                   portrait)

    def _issue_for_key(self, job_ref: str, phone_id: str, slot_index: int,
                       device_public_key_der: bytes, proof: bytes | None,
                       portrait: bytes | None = None) -> bytes:
        self._check_slot(job_ref, slot_index)
        spki = bytes(device_public_key_der)
        key, point = device_key_and_point(spki)
        digest = spki_sha256(spki)
        return run_transaction(
            self.sessions, lambda s: self._issue(s, job_ref, phone_id, slot_index, key, point, spki,
                                                 digest, proof, portrait))

    def _issue(self, s: Session, job_ref: str, phone_id: str, slot: int,
               key: ec.EllipticCurvePublicKey, point: CoseKey, spki: bytes, digest: str,
               proof: bytes | None, portrait: bytes | None = None) -> bytes:
        done = s.get(MdocIssuance, (job_ref, slot))
        if done is not None:
            if done.phone_id != phone_id or done.device_key_sha256 != digest:
                raise JobConflict(f"job {job_ref} slot {slot} was issued for another phone or key")
            return s.get(Credential, done.credential_id).body
        if proof is not None:
            challenge = s.get(MdocChallenge, (job_ref, slot))
            if challenge is None or challenge.phone_id != phone_id:
                raise IssuanceError(f"job {job_ref} slot {slot}: no challenge was given to phone "
                                    f"{phone_id}; ask mdoc_challenge first")
            verify_proof(key, challenge.challenge, spki, proof)
        # the phone's row locked (PostgreSQL): a revocation of the phone under way ends first,
        # and its new state is read here (issuer.revocation takes the row before the credentials)
        phone = s.get(Phone, phone_id, with_for_update=True)
        if phone is None or phone.holder_id is None:
            raise UnknownPhone(f"phone {phone_id!r} is not registered to a holder")
        if phone.state != "active":  # revoked (or lost, on hold) while its provisioning ran
            raise UnknownPhone(f"phone {phone_id!r} is {phone.state}: nothing more is issued to it")
        reuse = s.scalar(select(MdocIssuance.slot).join(
            Credential, Credential.id == MdocIssuance.credential_id).where(
            MdocIssuance.phone_id == phone_id, MdocIssuance.device_key_sha256 == digest,
            MdocIssuance.slot != slot, Credential.status != "revoked").limit(1))
        if reuse is not None:
            raise DeviceKeyError(f"device key already bound to slot {reuse} of phone {phone_id}: "
                                 "each slot needs its own key (unlinkability)")
        # the holder's row locked after the phone's: an issuance of the holder to another
        # phone under way ends first, and its mdoc is among those revoked below (one phone
        # per person), where neither saw the other's and both stayed valid
        holder_row = s.get(Holder, phone.holder_id, with_for_update=True)
        try:
            holder = holder_from_row(holder_row)
        except cardsub.CardSubError as exc:
            raise IssuanceError(f"holder {holder_row.id}: {exc}") from exc
        now = self.clock()
        ds = self.pki.document_signer(s, now)
        portrait = portrait if portrait is not None else self.portrait_for(holder_row)
        docno = document_number(holder_row.id, phone_id)

        def make_row(lst, idx: int) -> Credential:
            ident = secrets.token_bytes(IDENTIFIER_BYTES) if self.policy.identifier_list else None
            status = MsoStatus(StatusListRef(idx, lst.uri), None if ident is None else
                               IdentifierListRef(ident, self.registry.identifier_uri_for(lst.id)))
            issuer_signed, valid_from, valid_until = _card_substitute(
                holder, portrait, point, ds, now, holder_row.card_expiry, docno, status, self.policy)
            return Credential(
                holder_id=holder_row.id, phone_id=phone_id, kind="mdoc", status="valid",
                issued_at=now, not_before=valid_from, not_after=valid_until,
                issuer_key=ds.label, body=issuer_signed.encode(), job_ref=job_ref,
                meta={"slot": slot, "device_key_sha256": digest, "doctype": self.policy.names.doctype,
                      "document_number": docno, "proof": "attested" if proof is None else "pop",
                      **({"identifier": ident.hex()} if ident is not None else {})},
            )

        # The credentials this issuance revokes are locked before any status list, as a
        # revocation locks a phone's credentials before their lists: the holder's mdocs on
        # other phones (one phone per person) and the slot's earlier MSO on this phone, which
        # was overwritten in the SE (a refresh), in one statement by issue time and id, as
        # every transaction locks credentials. Their lists and the open one are then locked
        # together in id order, the order of every revocation (issuer.revocation): the old
        # lists bumped first and the open one locked last, a hold of a third phone with
        # mdocs on both lists (after a month boundary) and this issuance each waited for
        # the other until PostgreSQL failed one.
        slot_msos = select(MdocIssuance.credential_id).where(MdocIssuance.phone_id == phone_id,
                                                             MdocIssuance.slot == slot)
        revoking = s.scalars(select(Credential).where(Credential.kind == "mdoc", or_(
            and_(Credential.holder_id == holder_row.id, Credential.phone_id != phone_id,
                 Credential.status.in_(("valid", "hold"))),
            and_(Credential.id.in_(slot_msos), Credential.status == "valid")))
            .order_by(Credential.issued_at, Credential.id)
            .with_for_update()).all()
        others = [r for r in revoking if r.phone_id != phone_id]
        earlier = [r for r in revoking if r.phone_id == phone_id]
        credential = self.registry.allocate(
            s, now, make_row, touching={r.status_list_id for r in (*others, *earlier)}, iaca=ds.iaca_label)
        supersede_on_other_phones(s, holder_row.id, "mdoc", phone_id, now=now, rows=others)
        supersede(s, earlier, now=now, by_credential=credential.id, policy="one-mso-per-slot")
        s.add(MdocIssuance(job_ref=job_ref, slot=slot, phone_id=phone_id,
                           credential_id=credential.id, device_key_sha256=digest, created_at=now))
        s.add(AuditEvent(actor="issuer", action="mdoc.issue", subject=phone_id,
                         detail={"job": job_ref, "slot": slot, "credential": credential.id,
                                 "status_list": credential.status_list_id,
                                 "ds": ds.label}))
        s.flush()
        return credential.body
