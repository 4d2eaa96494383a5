"""Issuing card-substitute mdocs into a phone: proof of possession, batch, idempotency,
status references, DS rollover, publication (both database backends)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mdoc_world import HOLDER, Clock, mdoc_world
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from issuer import revocation
from issuer.db import Credential, Phone, StatusList
from issuer.holders import attach_phone, register
from issuer.keystore import MemoryKeyStore
from issuer.mdoc.errors import DeviceKeyError, IssuanceError, JobConflict, UnknownPhone
from issuer.mdoc.issuance import make_proof
from issuer.mdoc.service import MdocService
from issuer.mdoc.status_lists import StatusListPolicy
from mcred.db import make_engine, migrate
from protocols import iaca
from protocols.birthdays import JST
from protocols.cardsub import DEFAULT_NAMES, ISO_NAMESPACE, parse_holder
from protocols.mdoc import IssuerSigned
from protocols.status import Status, StatusListClaimError, verify_status_list_token

NOW = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(db_url):
    engine, sessions, clock, svc = mdoc_world(db_url, NOW)
    yield svc, sessions, clock
    engine.dispose()


def _issue(svc, job, phone, slot, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(key, svc.mdoc_challenge(job, phone, slot))
    return key, spki, proof, svc.issue_mdoc(job, phone, slot, spki, proof)


def test_batch_of_mdocs_has_distinct_keys_salts_and_status_indices(world):
    svc, sessions, _ = world
    out = [_issue(svc, "job-1", "phone-1", i) for i in range(3)]
    docs = [IssuerSigned.from_cbor(body) for *_, body in out]
    msos = [d.mso() for d in docs]
    assert len({m.device_key_info.device_key for m in msos}) == 3
    refs = [m.status.status_list for m in msos]
    assert len({(r.uri, r.idx) for r in refs}) == 3
    assert all(r.uri.startswith("http://issuer.test/status/") for r in refs)
    salts = [{i.random for ns in d.items().values() for i in ns} for d in docs]
    assert not (salts[0] & salts[1]) and all(len(s) >= 16 for x in salts for s in x)
    for m in msos:
        assert m.doc_type == DEFAULT_NAMES.doctype
        assert m.validity_info.valid_from == NOW
        assert m.validity_info.valid_until == NOW + dt.timedelta(days=30)
    items = docs[0].items()
    assert set(items) == {DEFAULT_NAMES.namespace, ISO_NAMESPACE}
    ours = {i.element_identifier: i.element_value for i in items[DEFAULT_NAMES.namespace]}
    assert ours["family_name"] == "山田" and ours["age_over_18"] is True
    with sessions() as s:
        creds = s.scalars(select(Credential).where(Credential.kind == "mdoc")).all()
        assert len(creds) == 3
        assert {c.meta["slot"] for c in creds} == {0, 1, 2}
        assert all(c.issuer_key == "mdoc-ds-1" and c.status == "valid" for c in creds)


def test_retry_returns_the_same_bytes_and_conflicts_are_refused(world):
    svc, sessions, _ = world
    key, spki, proof, first = _issue(svc, "job-2", "phone-1", 0)
    assert svc.mdoc_challenge("job-2", "phone-1", 0) == svc.mdoc_challenge("job-2", "phone-1", 0)
    assert svc.issue_mdoc("job-2", "phone-1", 0, spki, proof) == first
    with sessions() as s:
        assert len(s.scalars(select(Credential).where(Credential.job_ref == "job-2")).all()) == 1
    other = ec.generate_private_key(ec.SECP256R1())
    ospki, oproof = make_proof(other, svc.mdoc_challenge("job-2", "phone-1", 0))
    with pytest.raises(JobConflict):
        svc.issue_mdoc("job-2", "phone-1", 0, ospki, oproof)
    with pytest.raises(JobConflict):
        svc.mdoc_challenge("job-2", "phone-2", 0)


def test_bad_proofs_keys_and_phones_are_refused(world):
    svc, sessions, _ = world
    key = ec.generate_private_key(ec.SECP256R1())
    challenge = svc.mdoc_challenge("job-3", "phone-1", 0)
    spki, proof = make_proof(key, b"\x00" * 32)  # signed over another challenge
    with pytest.raises(DeviceKeyError, match="proof of possession"):
        svc.issue_mdoc("job-3", "phone-1", 0, spki, proof)
    with pytest.raises(DeviceKeyError, match="SubjectPublicKeyInfo"):
        svc.issue_mdoc("job-3", "phone-1", 0, b"\x30\x03garbage", proof)
    with pytest.raises(IssuanceError, match="no challenge"):
        svc.issue_mdoc("job-never", "phone-1", 0, *make_proof(key, challenge))
    with pytest.raises(IssuanceError, match="slot_index"):
        svc.mdoc_challenge("job-3", "phone-1", 99)
    spki, proof = make_proof(key, svc.mdoc_challenge("job-4", "ghost", 0))
    with pytest.raises(UnknownPhone):
        svc.issue_mdoc("job-4", "ghost", 0, spki, proof)
    # one key for two slots would let readers link the two MSOs
    _issue(svc, "job-5", "phone-1", 0, key)
    with pytest.raises(DeviceKeyError, match="own key"):
        _issue(svc, "job-5", "phone-1", 1, key)
    with sessions.begin() as s:
        s.get(Phone, "phone-1").state = "retired"
    with pytest.raises(UnknownPhone, match="retired"):
        _issue(svc, "job-6", "phone-1", 0)


def test_pki_profiles_and_ds_rollover(world):
    svc, sessions, clock = world
    root, ds, status = svc.setup()
    assert not iaca.failed(iaca.check_iaca(root.certificate, NOW))
    assert not iaca.failed(iaca.check_document_signer(ds.certificate, root.certificate, NOW))
    assert not iaca.failed(iaca.check_status_list_signer(status.certificate, root.certificate, NOW))
    assert svc.setup()[1].label == ds.label  # idempotent
    clock.now = NOW + dt.timedelta(days=300)  # within 90 days of the DS's end: roll over
    _, _, _, body = _issue(svc, "job-7", "phone-1", 0)
    signed = IssuerSigned.from_cbor(body)
    new_ds = svc.document_signer()
    assert new_ds.label == "mdoc-ds-2" and signed.issuer_auth.x5chain[0] == new_ds.der
    assert signed.mso().validity_info.valid_until <= new_ds.certificate.not_valid_after_utc
    assert svc.rollover_ds().label == "mdoc-ds-3"


def test_es384_configuration(db_url):
    from issuer.mdoc.pki import MdocPkiConfig
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    svc = MdocService(sessions, MemoryKeyStore(), "http://issuer.test", clock=Clock(NOW),
                      pki_config=MdocPkiConfig(algorithm="ES384"))
    holder_id = register(sessions, parse_holder(HOLDER), now=NOW)
    attach_phone(sessions, holder_id, "p384")
    _, _, _, body = _issue(svc, "j384", "p384", 0)
    assert IssuerSigned.from_cbor(body).issuer_auth.alg == -35
    engine.dispose()


def _list_of(svc, sessions, job: str = "job-pub"):
    """An mdoc issued to phone-1: its status_list reference and the list's registry id."""
    _, _, _, body = _issue(svc, job, "phone-1", 0)
    ref = IssuerSigned.from_cbor(body).mso().status.status_list
    with sessions() as s:
        return ref, s.scalar(select(StatusList.id).where(StatusList.uri == ref.uri))


def test_published_token_follows_revocation_hold_and_release(world):
    svc, sessions, clock = world
    ref, list_id = _list_of(svc, sessions, "job-8")
    root = svc.iaca_certificate()

    def status_now() -> int:
        pub = svc.status_token(list_id)
        tok = verify_status_list_token(pub.token, trust_anchor=root, uri=ref.uri, now=clock.now)
        return tok.status(ref.idx)

    first = svc.status_token(list_id)
    assert status_now() == Status.VALID
    assert svc.status_token(list_id).etag == first.etag  # unchanged list: same bytes
    assert first.headers(NOW)["Cache-Control"] == "public, max-age=300"
    revocation.hold(sessions, "phone-1", "mdoc", now=NOW)
    assert status_now() == Status.SUSPENDED
    assert svc.status_token(list_id).etag != first.etag
    revocation.release(sessions, "phone-1", "mdoc", now=NOW)
    assert status_now() == Status.VALID
    revocation.revoke(sessions, "phone-1", "keyCompromise", "mdoc", now=NOW)
    assert status_now() == Status.INVALID
    # near its exp the token is re-signed even without a change
    before = svc.status_token(list_id)
    clock.now = before.expires_at - dt.timedelta(seconds=100)
    assert svc.status_token(list_id).etag != before.etag


def test_a_token_is_re_signed_once_no_more_than_its_ttl_is_left_before_its_exp(world):
    """A reader caches a Status List Token for its ttl; one served with exactly ttl seconds
    left would still be in use at its exp, when it must no longer be accepted (RFC 8392
    exp, RFC 7519 4.1.4 "on or after"). So the publisher serves it as stored while more
    than ttl seconds are left and re-signs it from then on; past its exp it tells a cache
    max-age=0, never a positive number."""
    svc, sessions, clock = world
    _, list_id = _list_of(svc, sessions, "job-exp")
    first = svc.status_token(list_id)
    clock.now = first.expires_at - dt.timedelta(seconds=first.ttl + 1)
    assert svc.status_token(list_id).etag == first.etag
    clock.now = first.expires_at - dt.timedelta(seconds=first.ttl)
    assert svc.status_token(list_id).etag != first.etag
    assert first.max_age(first.expires_at - dt.timedelta(seconds=1)) == 1
    assert first.max_age(first.expires_at) == 0 and first.max_age(first.expires_at + dt.timedelta(seconds=9)) == 0


def test_a_token_is_served_only_as_the_policy_signs_it_now(world):
    """A token stored under one ttl (or lifetime) is rebuilt once the policy says another,
    though the list did not change: readers cache a token for the ttl it carries, so a drill
    that shortened the ttl to 2 s, on an installation whose holder change had published the
    list with 300 s, saw its reader keep the list five minutes and never see the death it
    revoked (tests/test_drill_after_api_flows.py). Another process (its own service over the
    same database) under the old policy rebuilds it back rather than serve the other ttl."""
    from dataclasses import replace

    from protocols.status import decode_status_list_token

    svc, sessions, _ = world
    _, list_id = _list_of(svc, sessions, "job-ttl")
    first = svc.status_token(list_id)
    assert decode_status_list_token(first.token).header.ttl == 300 and first.ttl == 300
    svc.registry.policy = replace(svc.registry.policy, ttl=2)
    short = svc.status_token(list_id)
    assert short.etag != first.etag and short.version == first.version
    assert decode_status_list_token(short.token).header.ttl == 2
    assert short.headers(NOW)["Cache-Control"] == "public, max-age=2"
    assert svc.status_token(list_id).etag == short.etag  # then served as stored
    other = MdocService(sessions, svc.pki.keystore, "http://issuer.test", clock=Clock(NOW),
                        status_policy=StatusListPolicy(size=1024))
    back = other.status_token(list_id)
    assert decode_status_list_token(back.token).header.ttl == 300 and back.etag != short.etag
    svc.registry.policy = replace(svc.registry.policy, ttl=300, lifetime=3600)
    shorter = svc.status_token(list_id)
    assert shorter.expires_at - shorter.issued_at == dt.timedelta(hours=1)
    assert decode_status_list_token(shorter.token).header.ttl == 300


def test_elements_encoded_once_per_batch_follow_every_input(world):
    """sign_card_substitute keeps a holder's encoded elements for the MSOs of a batch: a
    second MSO carries exactly the elements a fresh build gives, and any change of holder,
    portrait, document number, record expiry or day is seen, never a stale entry; bad
    input is still refused with its typed error."""
    import dataclasses

    from issuer.mdoc import issuance
    from protocols import cardsub
    from protocols.cardsub import ElementError

    svc, sessions, _ = world
    _, ds, _ = svc.setup()
    device = ec.generate_private_key(ec.SECP256R1()).public_key()
    holder = parse_holder(HOLDER)
    jpeg = b"\xff\xd8\xff" + bytes(64)

    def elements(issued):
        return {ns: {i.element_identifier: i.element_value for i in items} for ns, items in issued.items().items()}

    def check(h, portrait, now, expiry, docno):
        issued = issuance.sign_card_substitute(h, portrait, device, ds, now=now, record_expiry=expiry,
                                               document_no=docno, status=None)
        day = now.astimezone(cardsub.JST).date()
        fresh = cardsub.build_namespaces(h, portrait, issue_date=day, expiry_date=expiry, document_number=docno,
                                         now=now)
        assert elements(issued) == fresh
        assert issued.mso().validity_info.valid_from == now
        return issued

    issuance._ELEMENTS.clear()
    base = (holder, None, NOW, dt.date(2035, 4, 1), "JPCS0123456789AB")
    first, second = check(*base), check(*base)  # the second from the entry the first left
    assert len(issuance._ELEMENTS) == 1
    assert first.name_spaces != second.name_spaces  # fresh salts and digestIDs all the same
    check(dataclasses.replace(holder, address="大阪府大阪市北区1-1"), None, *base[2:])
    check(holder, jpeg, *base[2:])
    check(holder, jpeg[:-1] + b"\x01", *base[2:])
    check(holder, None, NOW, dt.date(2034, 4, 1), base[4])
    check(holder, None, NOW, base[3], "JPCS0123456789AC")
    check(holder, None, dt.datetime(1990, 3, 30, 16, tzinfo=dt.UTC) + dt.timedelta(days=365 * 18 + 4), *base[3:])
    assert all(len(k[0]) == len(cardsub.FIELDS) - 2 for k in issuance._ELEMENTS)  # never the PIN or password
    with pytest.raises(ElementError):
        issuance.sign_card_substitute(holder, b"not a jpeg", device, ds, now=NOW, record_expiry=base[3],
                                      document_no=base[4], status=None)
    with pytest.raises(ElementError):
        issuance.sign_card_substitute(holder, None, device, ds, now=NOW, record_expiry=base[3],
                                      document_no="123456789012", status=None)


def _compressed_spki(key: ec.EllipticCurvePublicKey) -> bytes:
    """A P-256 SPKI with a compressed point (``cryptography`` writes SPKIs uncompressed)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    point = key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    return bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + point


def test_device_key_and_point_reads_the_point_the_key_was_loaded_from():
    """The registry's device key: the loaded key and its point as a CoseKey, the point read
    out of the SPKI when it is the usual named-curve uncompressed form, serialised once
    otherwise; both as from the key itself."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from issuer.mdoc.issuance import device_key_and_point, device_key_from_spki
    from protocols.cose import CoseKey

    for curve in (ec.SECP256R1(), ec.SECP384R1()):
        for _ in range(8):  # some points with leading zero octets in x or y, over the runs
            public = ec.generate_private_key(curve).public_key()
            spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            for given in (spki, bytearray(spki)):
                key, point = device_key_and_point(given)
                assert key.public_numbers() == public.public_numbers() == device_key_from_spki(spki).public_numbers()
                assert type(point) is CoseKey and point == CoseKey.from_public_key(public)
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    hybrid = bytearray(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    hybrid[26] = 0x06 | public.public_numbers().y & 1  # X9.62 hybrid form: OpenSSL loads it too
    for spki in (_compressed_spki(public), bytes(hybrid)):  # not the usual form: the key serialised
        key, point = device_key_and_point(spki)
        assert key.public_numbers() == public.public_numbers() and point == CoseKey.from_public_key(public)


def test_device_key_and_point_refuses_what_device_key_from_spki_refuses():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from issuer.mdoc.issuance import device_key_and_point, device_key_from_spki

    spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    off_curve = spki[:-1] + bytes([spki[-1] ^ 1])
    other = [k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) for k in (
        ec.generate_private_key(ec.SECP521R1()).public_key(), ed25519.Ed25519PrivateKey.generate().public_key())]
    for load in (device_key_and_point, device_key_from_spki):
        with pytest.raises(DeviceKeyError, match="SubjectPublicKeyInfo"):
            load(off_curve)
        with pytest.raises(DeviceKeyError, match="SubjectPublicKeyInfo"):
            load(_compressed_spki(ec.generate_private_key(ec.SECP256R1()).public_key())[:-32] + b"\xff" * 32)
        for der in other:
            with pytest.raises(DeviceKeyError, match="P-256 or P-384"):
                load(der)


def test_registry_mso_carries_the_device_key_of_the_spki(world):
    """The MSO's deviceKey is the SPKI's point, and the row's validity is the MSO's (the
    registry records it without decoding the MSO), also when the record's end cuts it."""
    from protocols.cose import CoseKey

    svc, sessions, clock = world
    clock.now = NOW + dt.timedelta(microseconds=250_000)
    for slot in range(2):
        key, _, _, body = _issue(svc, "job-pt", "phone-1", slot)
        mso = IssuerSigned.from_cbor(body).mso()
        assert mso.device_key_info.device_key == CoseKey.from_public_key(key.public_key())
        with sessions() as s:
            row = s.scalars(select(Credential).where(Credential.job_ref == "job-pt",
                                                     Credential.body == body)).one()
            stored = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (row.not_before, row.not_after)]
            assert stored == [mso.validity_info.valid_from, mso.validity_info.valid_until]


@pytest.mark.parametrize("validity", [dt.timedelta(0), dt.timedelta(milliseconds=999), dt.timedelta(days=-1), 30])
def test_an_issuance_policy_that_would_write_an_mso_never_valid_is_refused_by_name(validity):
    """ISO/IEC 18013-5 9.1.2.4: validUntil later than validFrom, and the MSO writes both in
    whole seconds. A policy's mso_validity under a second would issue an MSO whose
    validUntil is its validFrom (or, at zero or less, refuse each issuance blaming the record
    or the DS): it is refused when the policy is made, naming mso_validity."""
    from issuer.mdoc.issuance import IssuancePolicy

    with pytest.raises(IssuanceError, match=r"issuance policy: mso_validity .*at least one second.*9\.1\.2\.4"):
        IssuancePolicy(mso_validity=validity)


def test_the_shortest_policy_issues_an_mso_valid_for_one_whole_second(world):
    from issuer.mdoc import issuance

    svc, _, _ = world
    _, ds, _ = svc.setup()
    device = ec.generate_private_key(ec.SECP256R1()).public_key()
    now = NOW.replace(microsecond=0) + dt.timedelta(microseconds=700_000)
    issued = issuance.sign_card_substitute(parse_holder(HOLDER), None, device, ds, now=now,
                                           record_expiry=dt.date(2035, 4, 1), document_no="JPCS0123456789AB",
                                           status=None,
                                           policy=issuance.IssuancePolicy(mso_validity=dt.timedelta(seconds=1)))
    v = issued.mso().validity_info
    assert v.order_error() is None and v.valid_until - v.valid_from == dt.timedelta(seconds=1)


def test_a_stored_token_is_served_while_a_reader_on_our_clock_accepts_its_iat(world):
    """A reader refuses a token whose iat is more than 60 s in its future (specs/status-list.md
    verification step 5, ``CLOCK_SKEW``). A process whose clock is behind the one that stored
    the token (or a clock stepped back) serves the stored bytes while their iat is at most
    60 s ahead of its now, and re-signs them once further ahead: every token it serves is
    one a reader on its clock accepts, and none is re-signed needlessly."""
    svc, sessions, _ = world
    ref, list_id = _list_of(svc, sessions)
    root = svc.iaca_certificate()
    first = svc.status_token(list_id)
    edge = first.issued_at - dt.timedelta(seconds=60)
    assert svc.status_token(list_id, edge).etag == first.etag
    verify_status_list_token(first.token, trust_anchor=root, uri=ref.uri, now=edge)
    ahead = first.issued_at - dt.timedelta(seconds=61)
    with pytest.raises(StatusListClaimError, match="in the future"):
        verify_status_list_token(first.token, trust_anchor=root, uri=ref.uri, now=ahead)
    again = svc.status_token(list_id, ahead)
    assert again.etag != first.etag and again.issued_at == ahead
    verify_status_list_token(again.token, trust_anchor=root, uri=ref.uri, now=ahead)


def test_a_process_serves_the_token_another_process_stored(world):
    """Every API process serves the token stored in ``status_list_tokens`` (specs/status-list.md
    Publication), not a copy it remembers: one that served a list before another process
    re-signed it after a revocation then serves the other's bytes, ETag and version, with the
    revocation in them (its remembered copy would hold readers to the old status)."""
    svc, sessions, _ = world
    ref, list_id = _list_of(svc, sessions)
    first = svc.status_token(list_id)
    other = MdocService(sessions, svc.pki.keystore, "http://issuer.test", clock=Clock(NOW),
                        status_policy=StatusListPolicy(size=1024))
    revocation.revoke(sessions, "phone-1", "keyCompromise", "mdoc", now=NOW)
    theirs = other.status_token(list_id)
    assert theirs.etag != first.etag and theirs.version != first.version
    ours = svc.status_token(list_id)
    assert (ours.token, ours.etag, ours.version) == (theirs.token, theirs.etag, theirs.version)
    tok = verify_status_list_token(ours.token, trust_anchor=svc.iaca_certificate(), uri=ref.uri,
                                   now=NOW)
    assert tok.status(ref.idx) == Status.INVALID


def test_the_published_times_are_the_signed_whole_second_iat_and_exp(world):
    """CWT ``iat`` / ``exp`` are NumericDates in whole seconds (RFC 8392 3.1.6, 3.1.4). A token
    asked for at a fraction of a second is signed at that second (truncated, so its iat is
    never in a reader's future), and the times the publisher keeps and serves from
    (Last-Modified, Expires, max-age, the re-sign boundary) are the signed ones: the token is
    re-signed at exactly ``ttl`` seconds before the ``exp`` it carries."""
    from protocols.status import decode_status_list_token

    svc, sessions, _ = world
    _, list_id = _list_of(svc, sessions)
    asked = NOW + dt.timedelta(seconds=5, microseconds=750_000)
    pub = svc.status_token(list_id, asked)
    header = decode_status_list_token(pub.token).header
    assert header.iat == NOW + dt.timedelta(seconds=5)
    assert (pub.issued_at, pub.expires_at) == (header.iat, header.exp)
    assert pub.headers(asked)["Last-Modified"] == "Mon, 23 Nov 2026 03:00:05 GMT"
    before = header.exp - dt.timedelta(seconds=header.ttl + 1)
    assert svc.status_token(list_id, before).etag == pub.etag
    assert svc.status_token(list_id, header.exp - dt.timedelta(seconds=header.ttl)).etag != pub.etag


def test_the_etag_is_strong_and_if_none_match_compares_weakly(world):
    """The ETag is a strong entity-tag (RFC 9110 8.8.3: quoted, no ``W/``; the same bytes
    every time it is served), and If-None-Match uses the weak comparison (RFC 9110 13.1.2):
    the tag itself or its ``W/`` form, alone or in a list, or ``*``, is a match (304); no
    header, an empty one or another tag is not."""
    import re

    svc, sessions, _ = world
    _, list_id = _list_of(svc, sessions)
    pub = svc.status_token(list_id)
    assert re.fullmatch(r'"[\x21\x23-\x7e]+"', pub.etag)
    assert svc.status_token(list_id).etag == pub.etag
    for header in (pub.etag, "W/" + pub.etag, f'"other", {pub.etag}', f'W/"x",W/{pub.etag}', "*"):
        assert pub.matches(header), header
    for header in (None, "", '"other"', pub.etag[:-2] + '"', "W/" + pub.etag[1:-1]):
        assert not pub.matches(header), header


def test_an_mdoc_runs_through_the_cards_last_day_and_none_is_issued_after_it(db_url):
    """A card valid until D is valid through the whole of D in Japan, and so are its JPKI
    certificates (notAfter 23:59:59 JST of D): an MSO now ends there too, so an mdoc issued
    the day before runs through D and one is issued on D. Before, an MSO ended at the start
    of D (00:00 JST): the holder's mdoc expired a day before the card and its certificates,
    and on D the issuer refused every issuance. The day after D the issuer refuses with an
    IssuanceError (a typed refusal to the TSM, not the cardsub ElementError of the expiry
    date that had crashed its job)."""
    from protocols.birthdays import end_of_day_jst
    from protocols.jpki.validity import NEXT_CARD_RULE, end_entity_validity

    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    last = (NOW + dt.timedelta(days=400)).astimezone(JST).date()
    clock = Clock(NOW)
    svc = MdocService(sessions, MemoryKeyStore(), "http://issuer.test", clock=clock,
                      status_policy=StatusListPolicy(size=1024))
    holder_id = register(sessions, parse_holder(dict(HOLDER, card_expiry_date=last.isoformat())), now=NOW)
    attach_phone(sessions, holder_id, "phone-1")
    end = dt.datetime.combine(last, dt.time(23, 59, 59), JST)
    # the JPKI side's notAfter for the same card, by its own rule: the same instant
    jpki = end_entity_validity(NEXT_CARD_RULE, NOW, dt.date.fromisoformat(HOLDER["birth_date"]), last)
    assert jpki.not_after == end == end_of_day_jst(last)
    clock.now = dt.datetime.combine(last, dt.time(0), JST) - dt.timedelta(hours=1)  # the day before
    *_, body = _issue(svc, "job-day-before", "phone-1", 0)
    assert IssuerSigned.from_cbor(body).mso().validity_info.valid_until == end
    clock.now = dt.datetime.combine(last, dt.time(0), JST) + dt.timedelta(seconds=1)  # the last day
    *_, body = _issue(svc, "job-last-day", "phone-1", 0)
    doc = IssuerSigned.from_cbor(body)
    assert doc.mso().validity_info.valid_until == end
    ours = {i.element_identifier: i.element_value for i in doc.items()[DEFAULT_NAMES.namespace]}
    assert ours["issue_date"] == ours["expiry_date"] == ours["card_expiry_date"] == last
    clock.now = end - dt.timedelta(seconds=1)  # its last second but one
    *_, body = _issue(svc, "job-last-second", "phone-1", 0)
    assert IssuerSigned.from_cbor(body).mso().validity_info.valid_until == end
    clock.now = end + dt.timedelta(seconds=1)  # 00:00:00 JST the day after
    with pytest.raises(IssuanceError, match=f"nothing to issue: the record \\(the card\\) ended with {last}"):
        _issue(svc, "job-day-after", "phone-1", 0)
    engine.dispose()
