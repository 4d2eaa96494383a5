"""Issuing the two JPKI end-entity certificates of a phone (the issuer side of the TSM job).

The TSM asks :func:`challenge` for a nonce, has the SE's JPKI applet generate the key pair
and sign ``nonce || SubjectPublicKeyInfo`` with the new key (proof of possession, as in a
PKCS#10 request, RFC 2986 4.2), and hands both to :func:`issue`. Issuance is idempotent per
(job_ref, slot): a retried call returns the certificate already issued for the same key, so a
lost response never yields two certificates. At most one live (valid or held) certificate
exists per (phone, slot): issuing a new one revokes the previous one as ``superseded`` in the
same transaction. Serials are 159 random bits, unique per issuing key (database constraint,
retried on the astronomically unlikely collision). An issuance that loses a race to another
writer (a PostgreSQL deadlock or serialisation failure, SQLite's busy database) runs again
too; its locks follow the order of every status change (:mod:`issuer.revocation`). A
certificate that would outlive its root generation is refused (:func:`root_refusal`,
:class:`~.errors.RootEndsTooSoon`): its validity is the holder's rule, never cut at the
root's end; the root is rolled over first (specs/issuer-keys.md, "The JPKI root
generations").
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from issuer.db import AuditEvent, Credential, Holder, IssuerKey, Phone
from issuer.mdoc.txn import is_retryable
from issuer.revocation import supersede_on_other_phones
from protocols.birthdays import today_in_japan
from protocols.jpki.certificates import (
    BasicFour,
    JpkiSex,
    build_auth_certificate,
    build_signing_certificate,
)
from protocols.jpki.eligibility import signing_eligible_from, signing_refusal
from protocols.jpki.errors import JpkiError
from protocols.jpki.profile import KeyType, Purpose
from protocols.jpki.validity import CURRENT_CARD_RULE, NEXT_CARD_RULE, Validity, end_entity_validity

from . import partitions
from .ca import _DER, KIND, Generation, JpkiCa, purpose_of, random_serial, root_purpose, staged_of
from .errors import (
    IssuanceError,
    ProofOfPossessionError,
    RootEndsTooSoon,
    SigningCertificateRefused,
)
from .models import JpkiChallenge

CHALLENGE_BYTES = 32
#: A challenge older than this is refused (the TSM asks again with a new job step).
CHALLENGE_TTL = dt.timedelta(hours=1)
_LIVE = ("valid", "hold")
#: How many times an issuance runs before it gives up (serial collisions, lost races).
_ATTEMPTS = 5


def challenge(ca: JpkiCa, job_ref: str, phone_id: str, slot: str) -> bytes:
    """The nonce the SE signs together with the new SPKI; the same one on a retry."""
    purpose = purpose_of(slot)
    with ca.sessions.begin() as s:
        row = s.scalar(select(JpkiChallenge).where(JpkiChallenge.job_ref == job_ref,
                                                   JpkiChallenge.slot == purpose.value))
        if row is not None:
            if row.phone_id != phone_id:
                raise IssuanceError(f"job {job_ref!r} belongs to phone {row.phone_id!r}, "
                                    f"not {phone_id!r}")
            return row.nonce
        nonce = secrets.token_bytes(CHALLENGE_BYTES)
        s.add(JpkiChallenge(job_ref=job_ref, phone_id=phone_id, slot=purpose.value,
                            nonce=nonce, created_at=ca.clock()))
    return nonce


def verify_proof(spki_der: bytes, nonce: bytes, proof: bytes):
    """The subject public key, if ``proof`` is its signature over ``nonce || spki_der``:
    RSASSA-PKCS1-v1_5/SHA-256 for RSA-2048, ECDSA/SHA-384 (DER) for P-384."""
    try:
        key = serialization.load_der_public_key(spki_der)
        KeyType.of(key)
    except (ValueError, TypeError, JpkiError) as exc:
        raise IssuanceError(f"subject public key is not an RSA-2048 or P-384 SPKI: {exc}") from None
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(proof, nonce + spki_der, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(proof, nonce + spki_der, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError) as exc:
        raise ProofOfPossessionError(
            "proof of possession does not verify with the submitted key "
            f"({type(exc).__name__})") from None
    return key


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def issue(ca: JpkiCa, job_ref: str, phone_id: str, slot: str, spki_der: bytes,
          proof: bytes, actor: str = "tsm") -> tuple[bytes, bytes]:
    """Issue (or return the already issued) certificate of ``slot`` for the phone.

    Returns (end-entity certificate DER, issuing root certificate DER)."""
    purpose = purpose_of(slot)
    for attempt in range(_ATTEMPTS):
        now = ca.clock()
        try:
            return _issue_once(ca, job_ref, phone_id, purpose, spki_der, proof, actor, now)
        except IntegrityError:
            continue  # serial collision (or a concurrent writer): try again with a new serial
        except DBAPIError as exc:
            # another writer won (a PostgreSQL deadlock or serialisation failure, SQLite's
            # busy database): run again, seeing what it committed, as every issuer
            # transaction does (issuer.mdoc.txn.run_transaction)
            if not is_retryable(exc) or attempt == _ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter only
    raise IssuanceError(f"could not allocate a unique serial in {_ATTEMPTS} attempts")


def _issue_once(ca: JpkiCa, job_ref: str, phone_id: str, purpose: Purpose,
                spki_der: bytes, proof: bytes, actor: str, now: dt.datetime
                ) -> tuple[bytes, bytes]:
    kind = KIND[purpose]
    with ca.sessions.begin() as s:
        # First statement writes: a row lock on PostgreSQL, the write lock on SQLite, so
        # concurrent retries of one job serialise here.
        locked = s.execute(update(Phone).where(Phone.id == phone_id)
                           .values(state=Phone.state)).rowcount
        if not locked:
            raise IssuanceError(f"phone {phone_id!r} is not registered with the issuer")
        # the signing root, read in this transaction (not one of its own before it)
        generation = ca.active(purpose, s)
        done = s.scalar(select(Credential).where(
            Credential.job_ref == job_ref, Credential.kind == kind,
            Credential.phone_id == phone_id).order_by(Credential.issued_at.desc()))
        if done is not None:
            cert = x509.load_der_x509_certificate(done.body)
            if _spki(cert) == spki_der:
                root = ca.generation(done.issuer_key).certificate
                return done.body, root.public_bytes(_DER)
        chal = s.scalar(select(JpkiChallenge).where(JpkiChallenge.job_ref == job_ref,
                                                    JpkiChallenge.slot == purpose.value))
        if chal is None or chal.phone_id != phone_id:
            raise ProofOfPossessionError(
                f"no challenge was handed out for job {job_ref!r} slot {purpose.value} "
                f"on phone {phone_id!r}")
        if now - chal.created_at > CHALLENGE_TTL:
            raise ProofOfPossessionError(f"challenge of job {job_ref!r} expired")
        subject_key = verify_proof(spki_der, chal.nonce, proof)
        phone = s.get(Phone, phone_id)
        if phone.state != "active":  # revoked (or lost, on hold) while its provisioning ran
            raise IssuanceError(f"phone {phone_id!r} is {phone.state}: nothing more is issued to it")
        # the holder's row locked after the phone's: an issuance of the holder to another
        # phone under way ends first, and its certificate is among those revoked below (one
        # phone per person), where neither saw the other's and both stayed valid
        holder = s.get(Holder, phone.holder_id, with_for_update=True) if phone.holder_id else None
        if holder is None:
            raise IssuanceError(f"phone {phone_id!r} has no holder")
        if purpose is Purpose.SIGN:
            _check_signing_age(holder, now)
        cert = _build(ca, purpose, generation, holder, subject_key, now,
                      staged=lambda: staged_of(ca.generations(purpose, s), now))
        # The certificates this issuance revokes, locked before any CRL row, in one
        # statement and one order (issue time, then id), as a revocation locks a phone's
        # credentials before their CRLs (lock order: issuer.revocation): the slot's
        # certificate on this phone (superseded) and the holder's on other phones (one
        # phone per person). Their CRLs are then marked stale together, in (kind,
        # partition) order. Marking the superseded certificate's CRL stale first, a
        # revocation of the holder's other phone and this issuance each waited for the
        # other until PostgreSQL failed one.
        revoking = list(s.scalars(select(Credential).where(
            Credential.kind == kind, Credential.status.in_(_LIVE),
            or_(Credential.phone_id == phone_id, Credential.holder_id == holder.id))
            .order_by(Credential.issued_at, Credential.id).with_for_update()))
        mine = [r for r in revoking if r.phone_id == phone_id]
        for old in mine:
            # superseded while on hold: invalid since the hold (issuer.revocation)
            old.invalid_since = old.revoked_at if old.status == "hold" else None
            old.status, old.reason, old.revoked_at = "revoked", "superseded", now
            s.add(AuditEvent(actor=actor, action="jpki.supersede", subject=old.id,
                             detail={"serial": old.serial, "by_job": job_ref}))
        supersede_on_other_phones(s, holder.id, kind, phone_id, now=now,
                                  rows=[r for r in revoking if r.phone_id != phone_id],
                                  also_touch=mine)
        # a new partition's row after every lock another transaction may hold: a second
        # issuance into the same new partition waits here for this one's commit
        muni = partitions.municipality_of(holder.data)
        partitions.remember(s, muni)
        cred = Credential(
            holder_id=holder.id, phone_id=phone_id, kind=kind, status="valid",
            issued_at=now, not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, serial=format(cert.serial_number, "x"),
            issuer_key=generation.label, partition=muni.code, body=cert.public_bytes(_DER),
            job_ref=job_ref,
            meta={"card_number": holder.card_number, "slot": purpose.value,
                  "subject": cert.subject.rfc4514_string(),
                  "spki_sha256": hashes_hex(spki_der)},
        )
        s.add(cred)
        s.flush()
        s.add(AuditEvent(actor=actor, action="jpki.issue", subject=cred.id,
                         detail={"phone": phone_id, "slot": purpose.value,
                                 "serial": cred.serial, "job": job_ref,
                                 "card_number": holder.card_number}))
        return cred.body, generation.certificate.public_bytes(_DER)


def _check_signing_age(holder: Holder, now: dt.datetime) -> None:
    """:class:`SigningCertificateRefused` for a holder under 15 on the day of issue in Japan:
    whatever a caller planned, the CA issues no signing certificate to them."""
    try:
        birth = dt.date.fromisoformat(holder.data["birth_date"])
    except (KeyError, TypeError, ValueError):
        raise IssuanceError(f"holder {holder.id} has no birth date: no signing certificate") from None
    today = today_in_japan(now)
    why = signing_refusal(birth, today) if birth <= today else None  # unborn: the profile refuses it
    if why is not None:
        raise SigningCertificateRefused(f"holder {holder.id}: {why}", holder_id=holder.id,
                                        eligible_from=signing_eligible_from(birth).isoformat())


def hashes_hex(data: bytes) -> str:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize().hex()


def planned_validity(key_type: KeyType, birth: dt.date, card_expiry: dt.date | None,
                     now: dt.datetime) -> Validity:
    """The validity of a certificate of a ``key_type`` key issued at ``now`` to a holder born
    on ``birth`` whose card runs through ``card_expiry``: today's card's rule for RSA-2048
    (the 5th birthday after issue), the next card's for P-384 (the 10th), capped by the card
    (specs/jpki-profile.md "Validity rule"). Raises what the rule raises (a card that ended, a
    birth after the day of issue)."""
    rule = CURRENT_CARD_RULE if key_type is KeyType.RSA_2048 else NEXT_CARD_RULE
    return end_entity_validity(rule, now, birth, card_expiry)


def root_refusal(generation: Generation, not_after: dt.datetime,
                 staged: Generation | None = None) -> RootEndsTooSoon | None:
    """:class:`RootEndsTooSoon` when a certificate running to ``not_after`` would outlive
    ``generation`` (the slot's issuing root), naming the commands that lift it (``staged``: the
    generation a rollover would start); None when the root lasts as long."""
    end = generation.certificate.not_valid_after_utc
    if not_after <= end:
        return None
    slot = generation.purpose.value
    if staged is not None:
        fix = (f"start the staged generation {staged.label} (in the trust bundle since "
               f"{staged.created_at:%Y-%m-%d %H:%M} UTC) once relying parties hold the bundle: "
               f"mcred jpki rollover --slot {slot} (POST /trust/jpki-rollover)")
    else:
        fix = (f"stage the next generation (mcred jpki stage --slot {slot}, POST /trust/jpki-stage), give relying "
               f"parties the bundle (mcred export jpki-root --slot {slot}, /trust/jpki-{slot}-root.pem), then "
               f"mcred jpki rollover --slot {slot} (POST /trust/jpki-rollover)")
    return RootEndsTooSoon(
        f"the {slot} root generation {generation.label} ends {end:%Y-%m-%d %H:%M} UTC, before the certificate "
        f"would ({not_after:%Y-%m-%d %H:%M} UTC): a relying party refuses its chain once the root has ended, so "
        f"it is not issued; {fix}", slot=slot, root=generation.label, root_not_after=end, not_after=not_after,
        staged=staged.label if staged is not None else None)


def issuance_refusal(session: Session, slots: tuple[str, ...] | list[str], key_type: KeyType, birth: dt.date,
                     card_expiry: dt.date | None, now: dt.datetime) -> RootEndsTooSoon | None:
    """Why a certificate of ``slots`` for a ``key_type`` key, issued at ``now`` to a holder born
    on ``birth`` whose card runs through ``card_expiry``, would be refused for outliving its
    slot's issuing root generation (:func:`root_refusal`), or None: what :func:`issue` decides,
    found before anything is done (before the SE makes a key), from the registry alone (the
    roots' rows, one statement in ``session``; no key store). None too when a slot has no root
    yet (the set-up makes one of full term) or the rule itself refuses (a card ended, a birth
    after the day: the issuance says so)."""
    try:
        not_after = planned_validity(key_type, birth, card_expiry, now).not_after
    except (JpkiError, ValueError):
        return None
    purposes = [purpose_of(slot) for slot in slots]
    rows = session.scalars(select(IssuerKey).where(IssuerKey.purpose.in_([root_purpose(p) for p in purposes]))
                           .order_by(IssuerKey.created_at, IssuerKey.label)).all()
    for purpose in purposes:
        generations = [Generation(r.label, purpose, r.algorithm, x509.load_der_x509_certificate(r.certificate),
                                  r.active, r.created_at, r.key_destroyed_at)
                       for r in rows if r.purpose == root_purpose(purpose) and r.certificate]
        active = [g for g in generations if g.active]
        if active:
            refused = root_refusal(active[-1], not_after, staged_of(generations, now))
            if refused is not None:
                return refused
    return None


def _build(ca: JpkiCa, purpose: Purpose, generation, holder: Holder, subject_key,
           now: dt.datetime, staged: Callable[[], Generation | None] = lambda: None) -> x509.Certificate:
    """The certificate of ``subject_key`` for ``holder``, signed by ``generation``; refused
    (:class:`RootEndsTooSoon`) before anything is signed when it would outlive that root
    (``staged``: the staged generation, read only then, for the refusal to name)."""
    data = holder.data
    try:
        key_type = KeyType.of(subject_key)
        profile = replace(ca.profile, key_type=key_type)
        birth = dt.date.fromisoformat(data["birth_date"])
        validity = planned_validity(key_type, birth, holder.card_expiry, now)
        refused = root_refusal(generation, validity.not_after)
        if refused is not None:
            raise root_refusal(generation, validity.not_after, staged())
        muni = partitions.municipality_of(data)
        subject_id = f"{now:%Y%m%d}{secrets.token_hex(8).upper()}"
        common = dict(profile=profile, issuer=generation.certificate,
                      issuer_key=ca.signing_key(generation), subject_key=subject_key,
                      serial=random_serial(), validity=validity, subject_id=subject_id,
                      municipality=muni)
        if purpose is Purpose.AUTH:
            return build_auth_certificate(**common)
        four = BasicFour.of(family_name=data["family_name"], given_name=data["given_name"],
                            sex=JpkiSex.from_iso5218(int(data["sex"])), birth_date=birth,
                            address=data["address"])
        return build_signing_certificate(**common, basic_four=four)
    except KeyError as exc:
        raise IssuanceError(f"holder {holder.id} lacks the field {exc.args[0]!r}") from None
    except (JpkiError, ValueError) as exc:
        raise IssuanceError(f"holder {holder.id}: {exc}") from None
