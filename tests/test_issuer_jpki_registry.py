"""The issuer's JPKI CA over the registry, on SQLite and PostgreSQL: roots and rollover,
idempotent issuance with proof of possession, revocation / hold / release, CRLs, OCSP."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import select
from test_issuer_jpki_support import (
    HOLDER,
    OTHER_TOWN,
    new_key,
    open_issuer,
    prove,
    provision,
    spki,
)

from issuer import revocation
from issuer.db import AuditEvent, Credential, Phone
from issuer.jpki import IssuanceError, ProofOfPossessionError, UnknownCredential
from issuer.jpki.keys import KeyExportRefused
from protocols.jpki.parse import classify, read_basic_four
from protocols.jpki.profile import KeyType, Purpose


@pytest.fixture
def issuer(db_url):
    return open_issuer(db_url)


DER = Encoding.DER


def _ski(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _aki(cert):
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def test_setup_is_idempotent_and_keys_never_leave_the_keystore(issuer):
    first = {p: g.label for p, g in issuer.setup().items()}
    again = {p: g.label for p, g in issuer.setup().items()}
    assert first == again
    with pytest.raises(KeyExportRefused):
        issuer.ca.signing_key(issuer.ca.active(Purpose.SIGN)).private_bytes(None, None, None)


def test_issue_both_slots_records_phone_slot_card_and_parses_back(issuer):
    phone = provision(issuer)
    sign = x509.load_der_x509_certificate(phone.certs["sign"])
    auth = x509.load_der_x509_certificate(phone.certs["auth"])
    assert classify(sign) is Purpose.SIGN and classify(auth) is Purpose.AUTH
    four = read_basic_four(sign)
    assert four.name == "山田\u3000花子" and four.address == HOLDER["address"]
    root = issuer.root("sign")
    sign.verify_directly_issued_by(root)
    assert _aki(sign) == _ski(root)
    with issuer.sessions() as s:
        rows = s.scalars(select(Credential).where(Credential.phone_id == phone.phone_id)).all()
    assert {r.kind for r in rows} == {"jpki-sign", "jpki-auth"}
    for r in rows:
        assert r.meta["card_number"] and r.partition == "131016" and r.status == "valid"
        assert int(r.serial, 16) == x509.load_der_x509_certificate(r.body).serial_number


def test_issuance_is_idempotent_per_job_and_supersedes_per_slot(issuer):
    phone = provision(issuer)
    key = phone.keys["sign"]
    nonce = issuer.jpki_challenge(f"job-{phone.phone_id}", phone.phone_id, "sign")
    again, _ = issuer.issue_jpki_certificate(f"job-{phone.phone_id}", phone.phone_id, "sign",
                                             spki(key), prove(key, nonce))
    assert again == phone.certs["sign"]
    # A new job for the same slot (re-issue) leaves exactly one live certificate.
    new = new_key()
    nonce = issuer.jpki_challenge("reissue-1", phone.phone_id, "sign")
    issuer.issue_jpki_certificate("reissue-1", phone.phone_id, "sign", spki(new), prove(new, nonce))
    with issuer.sessions() as s:
        live = s.scalars(select(Credential).where(
            Credential.phone_id == phone.phone_id, Credential.kind == "jpki-sign",
            Credential.status == "valid")).all()
        old = s.scalar(select(Credential).where(Credential.body == phone.certs["sign"]))
    assert len(live) == 1 and old.status == "revoked" and old.reason == "superseded"


def test_proof_of_possession_is_required(issuer):
    phone = provision(issuer)
    key, other = new_key(), new_key()
    nonce = issuer.jpki_challenge("j2", phone.phone_id, "auth")
    with pytest.raises(ProofOfPossessionError):
        issuer.issue_jpki_certificate("j2", phone.phone_id, "auth", spki(key), prove(other, nonce))
    with pytest.raises(ProofOfPossessionError):
        issuer.issue_jpki_certificate("j3", phone.phone_id, "auth", spki(key), prove(key, nonce))
    with pytest.raises(IssuanceError):
        issuer.issue_jpki_certificate("j2", phone.phone_id, "auth", b"\x30\x00", b"")


def test_serials_unique_and_unpredictable(issuer):
    serials = [x509.load_der_x509_certificate(c).serial_number
               for _ in range(4) for c in provision(issuer).certs.values()]
    assert len(set(serials)) == len(serials)
    assert all(s.bit_length() >= 64 for s in serials)


def test_p384_and_rollover_keep_old_generation_verifiable(issuer):
    old = provision(issuer, algorithm="rsa2048")
    gen2 = issuer.rollover("sign", KeyType.EC_P384)
    new = provision(issuer, algorithm="p384")
    old_cert = x509.load_der_x509_certificate(old.certs["sign"])
    new_cert = x509.load_der_x509_certificate(new.certs["sign"])
    assert old_cert.issuer == new_cert.issuer  # same name, ...
    assert _aki(new_cert) == gen2.key_id != _aki(old_cert)  # ... picked by key id
    assert len(issuer.roots("sign")) == 2
    revocation.revoke(issuer.sessions, old.phone_id, "keyCompromise", "sign")
    old_crl = x509.load_der_x509_crl(issuer.crl("sign", "131016", key_id=_aki(old_cert)))
    assert old_crl.get_revoked_certificate_by_serial_number(old_cert.serial_number)
    assert _aki_crl(old_crl) == _aki(old_cert)
    assert _status(issuer, old_cert, issuer.roots("sign")[0]).certificate_status \
        is ocsp.OCSPCertStatus.REVOKED


def test_a_rollover_skips_a_generation_label_whose_key_a_crashed_rollover_left_in_the_keystore(issuer):
    """A rollover creates the key before it records the generation: one that crashed between
    the two left a key of the next label and no row. The next rollover takes the label after
    it (a keystore never replaces a key), records it with its audit event, and a slot that is
    neither sign nor auth is refused."""
    issuer.keystore.create("jpki-sign-root-g2", KeyType.EC_P384.value)
    gen = issuer.rollover("sign", KeyType.EC_P384, actor="ops")
    assert gen.label == "jpki-sign-root-g3" and issuer.ca.active(Purpose.SIGN).label == gen.label
    with issuer.sessions() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.root.create",
                                                   AuditEvent.subject == gen.label)).one()
    assert event.actor == "ops" and event.detail == {"purpose": "sign", "algorithm": KeyType.EC_P384.value}
    with pytest.raises(ValueError, match="neither 'sign' nor 'auth'"):
        issuer.root("passport")


def _aki_crl(crl):
    return crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def _status(issuer, cert, root, alg=hashes.SHA256()):
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, root, alg).build()
    resp = ocsp.load_der_ocsp_response(issuer.ocsp_respond(req.public_bytes(DER)))
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return resp


@pytest.mark.parametrize("reason", ["affiliationChanged", "superseded", "cessationOfOperation",
                                    "keyCompromise"])
def test_each_reason_reaches_crl_and_ocsp(issuer, reason):
    phone = provision(issuer)
    bystander = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["auth"])
    before = x509.load_der_x509_crl(issuer.crl("auth", "131016"))
    changes = revocation.revoke(issuer.sessions, phone.phone_id, reason, "auth")
    assert [c.kind for c in changes] == ["jpki-auth"]
    after = x509.load_der_x509_crl(issuer.crl("auth", "131016"))
    n = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert n(after) > n(before)
    entry = after.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value == reason
    resp = _status(issuer, cert, issuer.root("auth"), hashes.SHA1())
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason.value == reason
    other = x509.load_der_x509_certificate(bystander.certs["auth"])
    assert _status(issuer, other, issuer.root("auth")).certificate_status \
        is ocsp.OCSPCertStatus.GOOD
    assert len(after) == 1
    with issuer.sessions() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "credential.revoke"))


def test_hold_then_release_removes_from_crl_and_ocsp_good(issuer):
    phone = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["auth"])
    root = issuer.root("auth")
    revocation.hold(issuer.sessions, phone.phone_id, "auth")
    crl = x509.load_der_x509_crl(issuer.crl("auth", "131016"))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
        is x509.ReasonFlags.certificate_hold
    assert _status(issuer, cert, root).revocation_reason is x509.ReasonFlags.certificate_hold
    assert revocation.hold(issuer.sessions, phone.phone_id, "auth") == []  # idempotent
    assert [c.after for c in revocation.release(issuer.sessions, phone.phone_id)] == ["valid"]
    crl = x509.load_der_x509_crl(issuer.crl("auth", "131016"))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    assert _status(issuer, cert, root).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_only_the_all_selector_puts_the_phone_itself_out_and_only_its_release_brings_it_back(issuer):
    """specs/revocation.md 1: with `all` the phone is out (`revoked`, or `lost` for a hold
    until the release makes it `active`); a revocation, hold or release of one slot acts on
    that slot's credentials alone and leaves the phone's state as it is."""
    phone, lost = provision(issuer), provision(issuer)

    def state(phone_id):
        with issuer.sessions() as s:
            return s.get(Phone, phone_id).state

    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign")
    revocation.hold(issuer.sessions, phone.phone_id, "auth")
    assert state(phone.phone_id) == "active"
    revocation.release(issuer.sessions, phone.phone_id, "auth")
    assert state(phone.phone_id) == "active"
    revocation.hold(issuer.sessions, lost.phone_id)
    assert state(lost.phone_id) == "lost"
    assert [c.kind for c in revocation.release(issuer.sessions, lost.phone_id, "auth")] == ["jpki-auth"]
    assert state(lost.phone_id) == "lost"
    revocation.release(issuer.sessions, lost.phone_id)
    assert state(lost.phone_id) == "active"
    revocation.hold(issuer.sessions, lost.phone_id)
    revocation.revoke(issuer.sessions, lost.phone_id, "cessationOfOperation")  # lost for good
    assert state(lost.phone_id) == "revoked"


def test_final_revocation_is_final(issuer):
    phone = provision(issuer)
    revocation.hold(issuer.sessions, phone.phone_id)
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation")
    assert revocation.release(issuer.sessions, phone.phone_id) == []
    assert revocation.revoke(issuer.sessions, phone.phone_id, "superseded") == []
    with pytest.raises(revocation.RevocationError):
        revocation.revoke(issuer.sessions, phone.phone_id, "removeFromCRL")
    with pytest.raises(revocation.RevocationError):
        revocation.revoke(issuer.sessions, phone.phone_id, "superseded", "passport")


def test_a_hold_revoked_for_good_is_invalid_since_the_hold_on_the_crl_and_in_ocsp(issuer):
    """specs/revocation.md 1: a held credential revoked for good keeps when it went on hold
    (``invalid_since``), and the CRL entry and the OCSP answer carry it as invalidityDate
    (RFC 5280 5.3.2), the revocation's own time staying the revocationDate; a certificate
    superseded while on hold keeps it too. A released hold leaves none, nor does one revoked
    while valid; the hold itself has none (it may be lifted)."""
    phone, other, renewed = provision(issuer), provision(issuer), provision(issuer)
    held_at = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    revoked_at = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)

    def entry(p, slot):
        cert = x509.load_der_x509_certificate(p.certs[slot])
        crl = x509.load_der_x509_crl(issuer.crl(slot, "131016"))
        return crl.get_revoked_certificate_by_serial_number(cert.serial_number), cert

    def invalidity(extensions):
        try:
            return extensions.get_extension_for_class(x509.InvalidityDate)
        except x509.ExtensionNotFound:
            return None

    revocation.hold(issuer.sessions, phone.phone_id, now=held_at)
    assert invalidity(entry(phone, "sign")[0].extensions) is None  # on hold: none yet
    revocation.release(issuer.sessions, phone.phone_id, "auth", now=held_at + dt.timedelta(days=1))
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation", "sign", now=revoked_at)
    got, cert = entry(phone, "sign")
    ext = invalidity(got.extensions)
    assert ext is not None and not ext.critical and ext.value.invalidity_date_utc == held_at
    assert got.revocation_date_utc == revoked_at
    resp = _status(issuer, cert, issuer.root("sign"))
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED and resp.revocation_time_utc == revoked_at
    assert invalidity(resp.single_extensions).value.invalidity_date_utc == held_at
    # the auth certificate, released then revoked: no invalidity date
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation", "auth", now=revoked_at)
    got, cert = entry(phone, "auth")
    assert invalidity(got.extensions) is None
    assert len(_status(issuer, cert, issuer.root("auth")).single_extensions) == 0
    # revoked while valid: none
    revocation.revoke(issuer.sessions, other.phone_id, "keyCompromise", "sign", now=revoked_at)
    assert invalidity(entry(other, "sign")[0].extensions) is None
    with issuer.sessions() as s:
        rows = {(c.phone_id, c.kind): c for c in s.scalars(select(Credential))}
        assert rows[(phone.phone_id, "jpki-sign")].invalid_since == held_at
        assert rows[(phone.phone_id, "jpki-auth")].invalid_since is None
        assert rows[(other.phone_id, "jpki-sign")].invalid_since is None
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "credential.revoke",
                                                  AuditEvent.subject == rows[(phone.phone_id, "jpki-sign")].id))
        assert event.detail["invalid_since"] == held_at.isoformat()
    # superseded by a new issuance while on hold (a slot held alone, the phone in use)
    revocation.hold(issuer.sessions, renewed.phone_id, "sign", now=held_at)
    key = new_key("p384")
    nonce = issuer.jpki_challenge("job-reissue", renewed.phone_id, "sign")
    issuer.issue_jpki_certificate("job-reissue", renewed.phone_id, "sign", spki(key), prove(key, nonce))
    got, _ = entry(renewed, "sign")
    assert got.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.superseded
    assert invalidity(got.extensions).value.invalidity_date_utc == held_at


def test_crls_are_partitioned_by_municipality(issuer):
    tokyo, osaka = provision(issuer), provision(issuer, OTHER_TOWN)
    revocation.revoke(issuer.sessions, osaka.phone_id, "affiliationChanged")
    tokyo_crl = x509.load_der_x509_crl(issuer.crl("sign", "131016"))
    osaka_crl = x509.load_der_x509_crl(issuer.crl("sign", "271004"))
    assert len(tokyo_crl) == 0 and len(osaka_crl) == 1
    idp = osaka_crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and "大阪市 CRLDP" in idp.value.full_name[0].value.rfc4514_string()
    assert tokyo.phone_id != osaka.phone_id


def _crl_number(crl):
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_cached_crl_is_rebuilt_once_its_next_update_is_an_hour_away(issuer):
    """specs/revocation.md 2: a built CRL (nextUpdate = thisUpdate + 24 h) is served as it is
    until a revocation marks it stale or its nextUpdate is less than one hour away; then it
    is built again with the next CRL number (RFC 5280 5.2.3), so what is served is never
    past its nextUpdate (RFC 5280 5.1.2.5)."""
    provision(issuer)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first = issuer.crl("auth", "131016", now=t0)
    assert x509.load_der_x509_crl(first).next_update_utc == t0 + dt.timedelta(hours=24)
    just_before = t0 + dt.timedelta(hours=23) - dt.timedelta(seconds=1)
    assert issuer.crl("auth", "131016", now=just_before) == first
    at = t0 + dt.timedelta(hours=23)
    again = x509.load_der_x509_crl(issuer.crl("auth", "131016", now=at))
    assert again.last_update_utc == at and again.next_update_utc == at + dt.timedelta(hours=24)
    assert _crl_number(again) == _crl_number(x509.load_der_x509_crl(first)) + 1


def test_a_crl_of_a_partition_or_a_root_key_the_issuer_does_not_have_is_refused(issuer):
    """GET /crl/<slot>/<code>.crl[?key_id=] answers 404 for a partition no certificate names
    and for a key id of no root generation of the slot: neither may be answered with another
    CRL (the active generation's, whose entries say nothing about the certificate asked about)."""
    provision(issuer)
    with pytest.raises(UnknownCredential, match="no CRL partition"):
        issuer.crl("sign", "999999")
    with pytest.raises(UnknownCredential, match="no sign root with key id"):
        issuer.crl("sign", "131016", key_id=_ski(issuer.root("auth")))
    assert issuer.crl("sign", "131016", key_id=_ski(issuer.root("sign")))


def test_ocsp_unknown_serial_and_malformed(issuer):
    phone = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    req = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        *_hashes(issuer.root("sign")), cert.serial_number + 1, hashes.SHA256()).build()
    resp = ocsp.load_der_ocsp_response(issuer.ocsp_respond(req.public_bytes(DER)))
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    bad = ocsp.load_der_ocsp_response(issuer.ocsp_respond(b"\x30\x03\x02\x01\x00"))
    assert bad.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_answers_for_a_new_root_generation_at_once_after_a_rollover(issuer):
    """The responder set is cached (issuer.jpki.ocsp.CACHE_SECONDS); a rollover drops the
    cache, so the new generation's delegated responder (RFC 6960 4.2.2.2) answers for the
    certificates it issued at once, not `unauthorized` until the cache runs out."""
    old = x509.load_der_x509_certificate(provision(issuer).certs["sign"])
    assert _status(issuer, old, issuer.root("sign")).certificate_status is ocsp.OCSPCertStatus.GOOD
    issuer.rollover("sign", KeyType.EC_P384)
    new = x509.load_der_x509_certificate(provision(issuer).certs["sign"])
    assert _status(issuer, new, issuer.root("sign")).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_an_ocsp_responder_lasts_a_year_is_renewed_with_30_days_left_and_never_outlives_its_root(issuer):
    """specs/revocation.md 3: each root generation's delegated responder (RFC 6960 4.2.2.2)
    is valid one year and renewed when fewer than 30 days remain; its certificate ends no
    later than the root that issued it."""
    gen = issuer.ca.active(Purpose.AUTH)
    first = issuer.ca.responder(gen)
    cert = first.certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365, minutes=5)
    end = cert.not_valid_after_utc
    issuer.ca.clock = lambda: end - dt.timedelta(days=30, seconds=1)
    assert issuer.ca.responder(gen) == first
    issuer.ca.clock = lambda: end - dt.timedelta(days=30)
    renewed = issuer.ca.responder(gen)
    assert renewed.label != first.label
    assert renewed.certificate.not_valid_after_utc == end - dt.timedelta(days=30) + dt.timedelta(days=365)
    root_end = gen.certificate.not_valid_after_utc
    issuer.ca.clock = lambda: root_end - dt.timedelta(days=100)
    last = issuer.ca.responder(gen)
    assert last.label not in (first.label, renewed.label)
    assert last.certificate.not_valid_after_utc == root_end


def test_in_its_roots_last_30_days_the_responder_is_kept_and_an_expired_root_gets_none(issuer):
    """A responder that already runs to its root's end is kept in the root's last 30 days:
    a renewal could last no longer, and each call (the OCSP service's reload, every minute)
    made a new key and certificate. Once the root has expired it gets no responder
    (GenerationEnded: the certificate would end before it began), and the OCSP service
    answers its certificates ``unauthorized`` while the other generations' are answered;
    before, building that certificate raised out of every respond()."""
    from issuer.jpki.errors import GenerationEnded
    from issuer.jpki.ocsp import OcspService

    phone = provision(issuer)
    old_cert = x509.load_der_x509_certificate(phone.certs["auth"])
    gen = issuer.ca.active(Purpose.AUTH)
    root_end = gen.certificate.not_valid_after_utc
    issuer.ca.clock = lambda: root_end - dt.timedelta(days=100)
    last = issuer.ca.responder(gen)
    assert last.certificate.not_valid_after_utc == root_end
    for days_left in (29, 20, 1):
        issuer.ca.clock = lambda d=days_left: root_end - dt.timedelta(days=d)
        assert issuer.ca.responder(gen) == last
    newer = issuer.ca.rollover(Purpose.AUTH, KeyType.EC_P384)  # made a day before the first ends
    issuer.ca.clock = lambda: root_end + dt.timedelta(seconds=1)
    with pytest.raises(GenerationEnded, match=f"root generation {gen.label} ended"):
        issuer.ca.responder(gen)
    service = OcspService(issuer.ca)
    request = ocsp.OCSPRequestBuilder().add_certificate(old_cert, gen.certificate, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(service.respond(request.public_bytes(DER)))
    assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    stranger = (x509.CertificateBuilder().subject_name(old_cert.subject).issuer_name(newer.certificate.subject)
                .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(12345)
                .not_valid_before(root_end).not_valid_after(root_end + dt.timedelta(days=1))
                .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    request = ocsp.OCSPRequestBuilder().add_certificate(stranger, newer.certificate, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(service.respond(request.public_bytes(DER)))
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN  # answered, by the newer root's responder


def test_the_ocsp_responder_set_is_reloaded_by_the_wall_clock_too(issuer):
    """The responder set was cached for CACHE_SECONDS by time.monotonic() alone, which stops
    while the machine is suspended: a service suspended across its root's end kept answering
    with the ended generation's responder (a response past its responder's and its root's
    validity) for up to another minute. The wall clock (the CA's clock) counts too: past the
    root's end the set is reloaded and the old generation's certificates are unauthorized."""
    from issuer.jpki.ocsp import OcspService

    cert = x509.load_der_x509_certificate(provision(issuer).certs["auth"])
    gen = issuer.ca.active(Purpose.AUTH)
    service = OcspService(issuer.ca)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, gen.certificate, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(service.respond(request.public_bytes(DER)))
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD  # the set loaded, its stamp now
    root_end = gen.certificate.not_valid_after_utc
    issuer.ca.clock = lambda: root_end + dt.timedelta(seconds=1)  # a suspend: the monotonic clock stood
    answer = ocsp.load_der_ocsp_response(service.respond(request.public_bytes(DER)))
    assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_ocsp_status_answers_on_its_own_before_any_request(issuer, monkeypatch):
    """OcspService.status is public: asked before any respond() loaded the responder set
    (a fresh service, a script asking for one certificate), it answered Unknown for every
    certificate. It loads the root generations it needs, and reloads them for an issuer it
    does not know (one made by another process), as respond() does."""
    from issuer.jpki import JpkiIssuer
    from issuer.jpki import ocsp as issuer_ocsp
    from issuer.jpki.ocsp import OcspService
    from protocols.jpki.crl import RevocationReason
    from protocols.jpki.ocsp import CertId, Good, Revoked, Unknown

    phone = provision(issuer)
    sign = x509.load_der_x509_certificate(phone.certs["sign"])
    auth = x509.load_der_x509_certificate(phone.certs["auth"])
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "auth")
    service = OcspService(issuer.ca)
    assert isinstance(service.status(CertId.for_certificate(sign, issuer.root("sign"))), Good)
    answer = service.status(CertId.for_certificate(auth, issuer.root("auth"), "sha1"))
    assert isinstance(answer, Revoked) and answer.reason is RevocationReason.KEY_COMPROMISE
    unknown = CertId.for_certificate(sign, issuer.root("sign"))
    assert isinstance(service.status(CertId(unknown.hash_algorithm, unknown.issuer_name_hash,
                                            unknown.issuer_key_hash, sign.serial_number + 1)),
                      Unknown)
    # a root generation another process made after this service loaded its set
    cli = JpkiIssuer(issuer.sessions, issuer.keystore, issuer.profile)
    cli.rollover("sign", KeyType.EC_P384)
    new = x509.load_der_x509_certificate(provision(cli).certs["sign"])
    monkeypatch.setattr(issuer_ocsp, "MISS_RELOAD_SECONDS", 0.0)
    assert isinstance(service.status(CertId.for_certificate(new, cli.root("sign"))), Good)


def test_issuer_ocsp_answers_are_current_for_ten_minutes(issuer):
    """specs/revocation.md 3: producedAt = thisUpdate = now, nextUpdate = now + 10 minutes
    (the relying party's cache TTL, RFC 6960 4.2.2.1)."""
    cert = x509.load_der_x509_certificate(provision(issuer).certs["auth"])
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer.root("auth"), hashes.SHA256()).build()
    resp = ocsp.load_der_ocsp_response(issuer.ocsp_respond(req.public_bytes(DER), now=at))
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.produced_at_utc == resp.this_update_utc == at
    assert resp.next_update_utc == at + dt.timedelta(minutes=10)


def _hashes(root):
    from protocols.jpki.ocsp import issuer_hashes

    return issuer_hashes(root, "sha256")


def test_expired_certificates_leave_the_crl_after_one_crl_beyond_their_end(issuer):
    """RFC 5280 3.3: "An entry MUST NOT be removed from the CRL until it appears on one
    regularly scheduled CRL issued beyond the revoked certificate's validity period." The
    first CRL of a partition, built twelve years on, still lists the long-expired revoked
    certificate (no CRL after its end had); the next one does not."""
    phone, other = provision(issuer), provision(issuer)
    serial = x509.load_der_x509_certificate(phone.certs["sign"]).serial_number
    revocation.revoke(issuer.sessions, phone.phone_id, "superseded", "sign")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 12)
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016", now=later))
    assert [e.serial_number for e in crl] == [serial]
    revocation.revoke(issuer.sessions, other.phone_id, "superseded", "sign")  # the CRL is built anew
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016", now=later + dt.timedelta(hours=1)))
    assert len(crl) == 0  # both expired before the CRL it follows


def test_a_revoked_certificate_is_listed_through_its_end_and_on_the_first_crl_after_it_then_leaves(issuer):
    """RFC 5280 4.1.2.5: the validity period includes notAfter, so a certificate revoked is
    listed on every CRL built up to and at that instant; RFC 5280 3.3: and on the first CRL
    built after it (it dropped off that one, so a relying party that fetched its last CRL
    after the end never saw the entry go by); only from the CRL after that is it gone."""
    phone, other, third = provision(issuer), provision(issuer), provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    revocation.revoke(issuer.sessions, phone.phone_id, "superseded", "sign")
    end = cert.not_valid_after_utc
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016", now=end))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    revocation.revoke(issuer.sessions, other.phone_id, "superseded", "sign")  # the CRL is built anew
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016", now=end + dt.timedelta(seconds=1)))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    revocation.revoke(issuer.sessions, third.phone_id, "superseded", "sign")
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016", now=end + dt.timedelta(seconds=2)))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None


def test_register_holder_from_cardsub_one_card_per_holder(issuer):
    from issuer import holders
    from protocols.cardsub.holder import parse_holder

    record = {k: v for k, v in HOLDER.items() if k != "municipality_code"}
    parsed = parse_holder(dict(record, pin="1234", password="ABC123"))
    hid = holders.register(issuer.sessions, dict(
        {f: getattr(parsed, f) for f in holders.FIELDS}, card_number="1111222233334444"))
    again = holders.register(issuer.sessions, dict(
        {f: getattr(parsed, f) for f in holders.FIELDS}, card_number="1111222233334444"))
    assert hid == again
    with pytest.raises(holders.HolderError):
        holders.register(issuer.sessions, dict(record, family_name="別人",
                                               card_number="1111222233334444"))
    with pytest.raises(holders.HolderError, match="address"):
        holders.register(issuer.sessions, {k: v for k, v in record.items() if k != "address"})
    plain = holders.register(issuer.sessions, parsed)  # a cardsub Holder as such
    with issuer.sessions() as s:
        from issuer.db import Holder

        row = s.get(Holder, plain)
    assert "pin" not in row.data and "password" not in row.data
    assert len(row.card_number) == 16 and row.card_expiry > dt.date.today()


def test_concurrent_retries_of_one_job_issue_once(issuer):
    from concurrent.futures import ThreadPoolExecutor

    from issuer import holders

    hid = holders.register(issuer.sessions, dict(HOLDER, card_number="5555000011112222"))
    holders.attach_phone(issuer.sessions, hid, "race-phone")
    key = new_key()
    nonce = issuer.jpki_challenge("race", "race-phone", "sign")
    proof = prove(key, nonce)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: issuer.issue_jpki_certificate(
            "race", "race-phone", "sign", spki(key), proof), range(4)))
    assert len({cert for cert, _ in results}) == 1
    with issuer.sessions() as s:
        rows = s.scalars(select(Credential).where(Credential.phone_id == "race-phone")).all()
    assert len(rows) == 1 and rows[0].status == "valid"


def test_one_phone_per_person_is_the_issuers_rule(issuer):
    """Issuing a slot on a holder's new phone revokes that slot on the old phone in the same
    transaction, through the issuer alone (no composition wiring, specs/handover.md 1)."""
    from issuer import holders

    old = provision(issuer)
    with issuer.sessions() as s:
        holder_id = s.scalar(select(Credential.holder_id)
                             .where(Credential.phone_id == old.phone_id))
    holders.attach_phone(issuer.sessions, holder_id, "new-phone")
    key = new_key()
    nonce = issuer.jpki_challenge("job-new", "new-phone", "sign")
    issuer.issue_jpki_certificate("job-new", "new-phone", "sign", spki(key), prove(key, nonce))
    with issuer.sessions() as s:
        rows = {(r.phone_id, r.kind): r for r in s.scalars(
            select(Credential).where(Credential.holder_id == holder_id))}
        assert rows[(old.phone_id, "jpki-sign")].status == "revoked"
        assert rows[(old.phone_id, "jpki-sign")].reason == "cessationOfOperation"
        assert rows[(old.phone_id, "jpki-auth")].status == "valid"  # not issued anew yet
        assert rows[("new-phone", "jpki-sign")].status == "valid"
        audit = s.scalars(select(AuditEvent).where(
            AuditEvent.subject == rows[(old.phone_id, "jpki-sign")].id,
            AuditEvent.action == "credential.revoke")).one()
        assert audit.detail["policy"] == "one-phone-per-person"
    revoked = rows[(old.phone_id, "jpki-sign")]
    crl = x509.load_der_x509_crl(issuer.crl("sign", revoked.partition))
    assert int(revoked.serial, 16) in {e.serial_number for e in crl}


def test_revoke_ids_revokes_exactly_the_named_live_credentials_with_audit(issuer):
    phone = provision(issuer)
    with issuer.sessions() as s:
        rows = {r.kind: r.id for r in s.scalars(
            select(Credential).where(Credential.phone_id == phone.phone_id))}
    changes = revocation.revoke_ids(issuer.sessions, {rows["jpki-sign"]}, "superseded",
                                    actor="handover")
    assert [(c.kind, c.after, c.reason) for c in changes] == [("jpki-sign", "revoked", "superseded")]
    assert revocation.revoke_ids(issuer.sessions, set(rows.values()), "superseded",
                                 kind="jpki-sign") == []  # a re-run changes nothing
    with issuer.sessions() as s:
        assert s.get(Credential, rows["jpki-auth"]).status == "valid"
        audit = s.scalars(select(AuditEvent).where(AuditEvent.subject == rows["jpki-sign"],
                                                   AuditEvent.action == "credential.revoke")).one()
        assert audit.actor == "handover" and audit.detail["reason"] == "superseded"


def test_a_revocation_time_in_jst_is_the_same_instant_in_crl_ocsp_and_registry(issuer):
    """A caller in Japan passes aware local times. SQLite stores a DateTime without its
    offset, so a +09:00 time must be turned into UTC before it is stored, or it comes back
    nine hours off (PostgreSQL converts it itself): both backends must agree."""
    jst = dt.timezone(dt.timedelta(hours=9), "JST")
    phone = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["auth"])
    at = dt.datetime.now(jst).replace(microsecond=0) - dt.timedelta(minutes=5)
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "auth", now=at)
    entry = x509.load_der_x509_crl(issuer.crl("auth", "131016")).get_revoked_certificate_by_serial_number(
        cert.serial_number)
    assert entry.revocation_date_utc == at
    assert _status(issuer, cert, issuer.root("auth")).revocation_time_utc == at
    with issuer.sessions() as s:
        row = s.scalar(select(Credential).where(Credential.serial == format(cert.serial_number, "x")))
        assert row.revoked_at == at and row.revoked_at.utcoffset() == dt.timedelta(0)


def test_the_longest_prefecture_and_municipality_the_holder_allows_are_issued(issuer):
    """On both backends: the limits of parse_holder fit the certificate profile and the
    registry columns (a 32-character prefecture, a 19-kanji municipality)."""
    from protocols.cardsub import parse_holder
    from protocols.cardsub.holder import MAX_CHARS, MUNICIPALITY_MAX_UTF8

    holder = dict(HOLDER, prefecture="県" * MAX_CHARS["prefecture"], municipality="市" * (MUNICIPALITY_MAX_UTF8 // 3))
    parse_holder({k: v for k, v in holder.items() if k != "municipality_code"})
    phone = provision(issuer, holder)
    assert phone.certs["sign"] and phone.certs["auth"]


@pytest.mark.parametrize("lost", ["deadlock detected", "database is locked"])
def test_an_issuance_that_loses_a_race_to_another_writer_runs_again(issuer, monkeypatch, lost):
    """The JPKI issuance ran again only after a serial collision: a PostgreSQL deadlock or
    serialisation failure, or SQLite's busy database, failed it (and the TSM job's step) where
    every other issuer transaction (revocations, the mdoc issuance) runs again."""
    from sqlalchemy.exc import OperationalError

    from issuer import holders
    from issuer.jpki import issuance

    class Orig(Exception):
        sqlstate = "40P01" if lost.startswith("deadlock") else None

    hid = holders.register(issuer.sessions, dict(HOLDER, card_number="5555000011113333"))
    holders.attach_phone(issuer.sessions, hid, "busy-phone")
    key = new_key()
    proof = prove(key, issuer.jpki_challenge("busy", "busy-phone", "sign"))
    build, calls = issuance._build, []

    def loses_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:  # inside the issuance's transaction, after its first locks
            raise OperationalError("SELECT ...", {}, Orig(lost))
        return build(*args, **kwargs)

    monkeypatch.setattr(issuance, "_build", loses_once)
    cert, _root = issuer.issue_jpki_certificate("busy", "busy-phone", "sign", spki(key), proof)
    assert len(calls) == 2
    with issuer.sessions() as s:
        rows = s.scalars(select(Credential).where(Credential.phone_id == "busy-phone")).all()
    assert [(r.status, r.body) for r in rows] == [("valid", cert)]


def test_ocsp_answers_for_a_generation_another_process_made_without_waiting_for_the_cache(issuer, monkeypatch):
    """A rollover from the CLI beside a running service: the service's responder set is
    cached (CACHE_SECONDS, 60 s) and the other process cannot drop it, so a certificate of
    the new generation got `unauthorized` for up to a minute. A request naming an issuer the
    set does not know now reloads it (at most once a MISS_RELOAD_SECONDS) and is answered."""
    from issuer.jpki import JpkiIssuer
    from issuer.jpki import ocsp as issuer_ocsp

    service = issuer  # the running service, its responder set loaded by a first answer
    old = x509.load_der_x509_certificate(provision(service).certs["sign"])
    assert _status(service, old, service.root("sign")).certificate_status is ocsp.OCSPCertStatus.GOOD
    cli = JpkiIssuer(service.sessions, service.keystore, service.profile)  # another process: its own caches
    cli.rollover("sign", KeyType.EC_P384)
    new = x509.load_der_x509_certificate(provision(cli).certs["sign"])
    monkeypatch.setattr(issuer_ocsp, "MISS_RELOAD_SECONDS", 0.0)
    assert _status(service, new, cli.root("sign")).certificate_status is ocsp.OCSPCertStatus.GOOD
    # a request for an issuer nobody knows stays unauthorized, reloaded or not
    stranger = ocsp.OCSPRequestBuilder().add_certificate_by_hash(b"\x01" * 32, b"\x02" * 32, 7, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(service.ocsp_respond(stranger.public_bytes(DER)))
    assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
