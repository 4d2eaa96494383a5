"""A CA's final CRL (specs/revocation.md, "A CA's final CRL"): before the key of an IACA, a
VICAL CA, a JPKI root generation or a TSA root is destroyed (its certificates all expired), the
same operation signs a last CRL with it: every certificate it revoked, expired ones too,
thisUpdate the destruction's time, a cRLNumber above any before, nextUpdate 99991231235959Z
(RFC 5280 4.1.2.5's "no well-defined expiration"), X.509 expiredCertsOnCRL. Its CRL URL serves
it from then on for good, where it answered 410 a day after the destruction (RFC 5280 5.1.2.6:
an entry must reach a CRL issued beyond its certificate's validity; a relying party validating
an old signature needs a CRL after the key is gone). The readers of this project take it (the
IACA's and the VICAL CA's CRL checks, the JPKI relying party with a time-stamped signature
judged years later, the TSA unit check); OpenSSL reads it. Never signed twice (a destruction
interrupted after it, a key restored and destroyed again), never by a revoked or withdrawn
CA; a key destroyed before final CRLs existed keeps the old rule. Both database backends
(PostgreSQL with a client east of UTC, where 9999-12-31T23:59:59Z is in the year 10000)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker
from test_iaca_rollover import BASE, NOW, _ds, _issue, world  # noqa: F401 - a fixture
from test_issuer_jpki_support import provision
from test_key_destruction_jpki_tsa import CHIYODA, _issued_by

from issuer.api import jpki as jpki_api
from issuer.api import problems
from issuer.api import tsa as tsa_api
from issuer.db import AuditEvent, IssuerKey
from issuer.jpki import JpkiIssuer, profile_for
from issuer.key_destruction import destroy_and_record
from issuer.keystore import KeyStoreError, MemoryKeyStore
from issuer.revocation import revoke
from issuer.tsa import CRL_VALIDITY, TimeStampAuthority, TsaRootKeyDestroyed
from mcred.api_models import KeyDestruction
from mcred.cli.text import key_destruction_line
from mcred.db import make_engine, migrate
from mcred.timestamps import Stamper
from protocols import crl as ca_crl
from protocols import tsp
from protocols.jpki.cms import build_detached_signature
from protocols.jpki.profile import KeyType
from reader.ds_crl import DsCrlCheck
from reader.relying_party import signature_timestamp, verify
from reader.vical_crl import VicalSignerCheck

FOREVER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
YEAR = dt.timedelta(days=366)
DATA = "最終CRLの契約書".encode()


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def _cert(sessions, label: str) -> x509.Certificate:  # noqa: ANN001
    with sessions() as s:
        return x509.load_der_x509_certificate(s.get(IssuerKey, label).certificate)


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _listed(crl: x509.CertificateRevocationList) -> dict[int, str]:
    """Each entry's serial and reason (RFC 5280 name)."""
    out = {}
    for entry in crl:
        try:
            out[entry.serial_number] = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            out[entry.serial_number] = "unspecified"
    return out


def _is_final(crl: x509.CertificateRevocationList, issuer: x509.Certificate, at: dt.datetime) -> None:
    """``crl`` is ``issuer``'s final CRL signed at ``at``: nextUpdate 9999-12-31T23:59:59Z,
    expiredCertsOnCRL from the issuer's notBefore, its signature verifies."""
    assert crl.next_update_utc == FOREVER and ca_crl.is_final(crl)
    assert crl.last_update_utc == at.replace(microsecond=0)
    assert crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())
    since = crl.extensions.get_extension_for_oid(ca_crl.EXPIRED_CERTS_ON_CRL)
    assert not since.critical
    assert since.value.value == b"\x18\x0f" + issuer.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ").encode()


def _openssl_reads(tmp_path, der: bytes, issuer: x509.Certificate, serials: list[int]) -> None:
    """OpenSSL reads the final CRL (nextUpdate in 9999), lists ``serials`` and verifies it."""
    if shutil.which("openssl") is None:
        return
    path, ca = tmp_path / "final.crl", tmp_path / "ca.pem"
    path.write_bytes(der)
    ca.write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text", "-in", str(path)],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    assert "Next Update: Dec 31 23:59:59 9999 GMT" in text, text
    assert "2.5.29.60" in text, text  # expiredCertsOnCRL, shown by its OID
    printed = {int(line.split(":", 1)[1], 16) for line in text.splitlines() if "Serial Number:" in line}
    assert printed == set(serials), text
    verified = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-in", str(path), "-CAfile", str(ca),
                               "-verify"], capture_output=True, text=True, timeout=30)
    assert "verify OK" in verified.stdout + verified.stderr, verified


# -- the IACA ---------------------------------------------------------------------------------


def test_an_iacas_final_crl_lists_every_signer_it_revoked_and_is_served_for_good(world, tmp_path):  # noqa: F811
    """An older IACA whose document signer (revoked, keyCompromise) has ended: the ordinary CRLs
    drop the signer once one after its end listed it; the final CRL signed at the destruction
    lists it again, and the status-list signer still valid (made for the lists of its mdocs in
    the signer's last months) revoked cessationOfOperation with it. Served a year later; the
    reader's DS and status-list signer checks take it; OpenSSL reads it; asked again, nothing
    is signed."""
    svc, sessions, clock, client = world
    _key, old = _issue(svc, "phone-1", "job-1")
    ds1 = _ds(old)
    iaca1 = svc.iaca_certificate()
    clock.now = NOW + dt.timedelta(days=1)
    svc.rollover_ds()  # mdoc-ds-2, under IACA 1 too: never revoked
    ds2 = _cert(sessions, "mdoc-ds-2")
    svc.rollover()
    svc.revoke_signer("mdoc-ds-1", "keyCompromise", actor="test")
    status_url = old.mso().status.status_list.uri.removeprefix(BASE)
    # in the signers' last months a list of its mdocs needs a status-list signer under IACA 1,
    # which runs past them
    clock.now = ds1.not_valid_after_utc - dt.timedelta(days=30)
    assert client.get(status_url).status_code == 200
    (late,) = [i for i in svc.signers("status-signer") if i.iaca == "mdoc-iaca-1"]
    assert late.not_after > ds2.not_valid_after_utc and late.revoked_at is None
    clock.now = ds2.not_valid_after_utc + dt.timedelta(hours=1)
    assert ds1.serial_number in _listed(x509.load_der_x509_crl(client.get("/trust/iaca.crl").content))
    clock.now += dt.timedelta(days=2)  # a CRL after the one after its end: the entry is gone (RFC 5280 3.3)
    ordinary = x509.load_der_x509_crl(client.get("/trust/iaca.crl").content)
    assert ordinary.next_update_utc == ordinary.last_update_utc + dt.timedelta(hours=24)
    assert ds1.serial_number not in _listed(ordinary)

    done = svc.destroy_key("1", actor="test")
    assert done.changed and not svc.pki.keystore.has("mdoc-iaca-1")
    (final,) = done.final_crls
    assert (final.crl, final.entries, final.this_update) == ("/trust/iaca.crl", 2, clock.now)
    assert final.crl_number > _number(ordinary)
    assert KeyDestruction.model_validate(done.to_json()).final_crls[0].crl_number == final.crl_number  # the API's
    assert done.to_json()["final_crls"] == [final.to_json()]
    assert (f"its final CRL (/trust/iaca.crl, cRLNumber {final.crl_number}, 2 entries, nextUpdate 9999-12-31) is "
            "served for good") in key_destruction_line(done)
    served = client.get("/trust/iaca.crl")
    crl = x509.load_der_x509_crl(served.content)
    _is_final(crl, iaca1, clock.now)
    assert _number(crl) == final.crl_number
    late_cert = _cert(sessions, late.label)
    assert _listed(crl) == {ds1.serial_number: "key_compromise", late_cert.serial_number: "cessation_of_operation"}
    with sessions() as s:
        events = s.query(AuditEvent).filter(AuditEvent.action.in_(("mdoc.signer.revoke", "mdoc.key.destroy"))) \
            .order_by(AuditEvent.id).all()
    assert [(e.action, e.subject, e.actor, e.detail.get("reason"), e.detail.get("final_crls"))
            for e in events][-2:] == [("mdoc.signer.revoke", late.label, "test", "cessationOfOperation", None),
                                      ("mdoc.key.destroy", "mdoc-iaca-1", "test", None, 1)]
    # its mdocs' list would need a new signer: 410 as before
    r = client.get(status_url)
    assert r.status_code == 410 and r.json()["type"] == "/problems/signer-key-destroyed", r.text

    # a year later, past any nextUpdate an ordinary CRL would have: the same CRL, which a reader takes
    clock.now += YEAR
    assert client.get("/trust/iaca.crl").content == served.content
    check = DsCrlCheck(lambda url: client.get(url.removeprefix(BASE)).content)
    got = check.check(ds1, iaca1, clock.now)
    assert (got.passed, got.code) == (False, "ds_revoked") and "keyCompromise" in got.reason, got
    good = check.check(ds2, iaca1, clock.now)  # ended, never revoked: the final CRL says so
    assert (good.passed, good.code) == (True, "ok") and "not on the IACA CRL" in good.reason, good
    assert "cessationOfOperation" in check.signer_revoked(late_cert, iaca1, clock.now)
    _openssl_reads(tmp_path, served.content, iaca1, [ds1.serial_number, late_cert.serial_number])
    # destroyed again: nothing changes, nothing is signed
    again = svc.destroy_key("mdoc-iaca-1")
    assert again.to_json()["already"] and again.final_crls == ()
    assert client.get("/trust/iaca.crl").content == served.content


def test_a_destruction_interrupted_after_the_final_crl_finishes_without_signing_again(world, monkeypatch):  # noqa: F811
    """The final CRL is committed before the key is destroyed: a key store that fails then
    leaves it signed and served, the IACA certifying nothing more (no key is made for a
    status-list signer it could not put on a CRL); the next call destroys the key and reports
    the same CRL, not a new one. A backup of the key restored later is destroyed again
    (``restored``) and signs nothing."""
    svc, _sessions, clock, client = world
    _key, old = _issue(svc, "phone-1", "job-1")
    svc.rollover()
    clock.now = _ds(old).not_valid_after_utc + dt.timedelta(hours=1)
    store = svc.pki.keystore
    kept = store._keys["mdoc-iaca-1"]  # what a backup of the key store holds

    def broken(label: str) -> None:
        raise KeyStoreError(f"the token refused to destroy {label}")

    monkeypatch.setattr(store, "destroy", broken)
    with pytest.raises(KeyStoreError, match="refused to destroy mdoc-iaca-1"):
        svc.destroy_key("1", actor="test")
    assert store.has("mdoc-iaca-1") and not [i for i in svc.signers("iaca") if i.key_destroyed_at]
    signed = client.get("/trust/iaca.crl").content
    assert ca_crl.is_final(x509.load_der_x509_crl(signed))
    labels = store.labels()
    r = client.get(old.mso().status.status_list.uri.removeprefix(BASE))
    assert r.status_code == 410 and "signed its final CRL" in r.json()["detail"], r.text
    assert store.labels() == labels

    monkeypatch.undo()
    clock.now += dt.timedelta(minutes=5)
    done = svc.destroy_key("1", actor="test")
    assert done.changed and not store.has("mdoc-iaca-1")
    (final,) = done.final_crls
    assert final.crl_number == _number(x509.load_der_x509_crl(signed)) and final.this_update < clock.now
    assert client.get("/trust/iaca.crl").content == signed

    store._keys["mdoc-iaca-1"] = kept  # the backup restored over the store
    again = svc.destroy_key("1", actor="test")
    assert (again.changed, again.restored, again.final_crls) == (False, True, ())
    assert not store.has("mdoc-iaca-1")
    clock.now += YEAR
    assert client.get("/trust/iaca.crl").content == signed


# -- the VICAL CA, and CAs that sign none ------------------------------------------------------


def test_a_retired_vical_cas_final_crl_and_none_by_a_withdrawn_ca(world):  # noqa: F811
    """A retired VICAL CA whose signer (revoked, keyCompromise) has ended: its final CRL lists it
    and is served for good, and a VICAL reader's check of that signer finds it revoked there. A
    VICAL CA withdrawn as compromised, and a revoked IACA, sign none: a CRL signed by a key that
    may be in other hands proves nothing (their CRLs answer 410 withdrawn, as before)."""
    svc, sessions, clock, client = world
    svc.vical()
    clock.now = NOW + dt.timedelta(days=1)
    svc.rollover_vical_ca(actor="test")
    svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise", actor="test")
    signer1, ca1 = _cert(sessions, "mdoc-vical-signer-1"), _cert(sessions, "mdoc-vical-ca-1")
    clock.now = signer1.not_valid_after_utc + dt.timedelta(hours=1)
    assert signer1.serial_number in _listed(x509.load_der_x509_crl(client.get("/trust/vical-ca.crl").content))
    clock.now += dt.timedelta(days=2)
    ordinary = x509.load_der_x509_crl(client.get("/trust/vical-ca.crl").content)
    assert signer1.serial_number not in _listed(ordinary)

    done = svc.destroy_key("mdoc-vical-ca-1", actor="test")
    (final,) = done.final_crls
    assert (final.crl, final.entries) == ("/trust/vical-ca.crl", 1) and final.crl_number > _number(ordinary)
    served = client.get("/trust/vical-ca.crl").content
    crl = x509.load_der_x509_crl(served)
    _is_final(crl, ca1, clock.now)
    assert _listed(crl) == {signer1.serial_number: "key_compromise"}
    clock.now += YEAR
    assert client.get("/trust/vical-ca.crl").content == served
    why = VicalSignerCheck(lambda url: client.get(url.removeprefix(BASE)).content)(signer1, ca1, clock.now)
    assert why is not None and why.startswith("is revoked") and "keyCompromise" in why, why

    # withdrawn as compromised: its key goes at once, signing nothing
    svc.rollover_vical_ca(compromised=True, actor="test")
    gone = svc.destroy_key("mdoc-vical-ca-2", actor="test")
    assert gone.changed and gone.final_crls == ()
    r = client.get("/trust/vical-ca-2.crl")
    assert r.status_code == 410 and r.json()["type"] == "/problems/vical-ca-withdrawn", r.text
    # a revoked IACA: the same
    svc.setup()
    svc.revoke_iaca(1, "cACompromise", actor="test")
    gone = svc.destroy_key("1", actor="test")
    assert gone.changed and gone.final_crls == ()
    r = client.get("/trust/iaca.crl")
    assert r.status_code == 410 and r.json()["type"] == "/problems/iaca-withdrawn", r.text


# -- a JPKI root generation ---------------------------------------------------------------------


def _app(*routers) -> TestClient:  # noqa: ANN002
    app = FastAPI()
    problems.install(app)
    for router in routers:
        app.include_router(router)
    return TestClient(app)


def test_a_jpki_root_generations_final_crl_serves_a_time_stamped_signature_years_later(db_url, tmp_path):
    """An older JPKI root generation whose certificates have all expired: its final CRL of the
    partition lists every certificate it revoked, the one that left the ordinary CRLs long ago
    too, and is served for good at ``?key_id=``. A relying party verifying years later a CAdES-T
    signature made before its signer's certificate was revoked takes it (chain and validity
    at the time-stamp, the revocation after it)."""
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock, keys = Clock(t0), MemoryKeyStore()
    jpki = JpkiIssuer(sessions, keys, profile_for(BASE), clock=clock)
    jpki.setup(KeyType.EC_P384)
    tsa = TimeStampAuthority(sessions, keys, clock=clock, crl_url=f"{BASE}/tsa/root.crl")
    http = _app(jpki_api.jpki_router(lambda: jpki), tsa_api.tsa_router(lambda: tsa))
    g1 = jpki.ca.generation("jpki-sign-root-g1")
    phone = provision(jpki)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    cms = build_detached_signature(content=DATA, certificate=cert, signing_time=t0,
                                   sign=lambda tbs: phone.keys["sign"].sign(tbs, ec.ECDSA(hashes.SHA384())))
    stamped = Stamper(tsa.respond, "the test's TSA", tuple(tsa.roots())).stamp_signature(cms)
    _issued_by(sessions, "jpki-sign-root-g1", t0 + dt.timedelta(days=30), t0)  # serial 7a7a, keyCompromise
    jpki.rollover("sign", KeyType.EC_P384)
    clock.at = t0 + dt.timedelta(days=1)  # the signer moves away: revoked after the time-stamp
    revoke(sessions, phone.phone_id, "affiliationChanged", "sign", now=clock.at)

    def crl_of_g1() -> httpx.Response:
        return http.get(f"/crl/sign/{CHIYODA.code}.crl", params={"key_id": g1.key_id.hex()})

    assert set(_listed(x509.load_der_x509_crl(crl_of_g1().content))) == {cert.serial_number, 0x7A7A}
    for days in (60, 61):  # 7a7a ended at day 30: on the one after, then on none
        clock.at = t0 + dt.timedelta(days=days)
        ordinary = x509.load_der_x509_crl(crl_of_g1().content)
    assert set(_listed(ordinary)) == {cert.serial_number}
    clock.at = cert.not_valid_after_utc + dt.timedelta(hours=1)
    done = jpki.destroy_key("jpki-sign-root-g1", actor="test")
    assert done.changed and not keys.has("jpki-sign-root-g1")
    (final,) = done.final_crls  # one partition there
    assert final.crl == f"/crl/sign/{CHIYODA.code}.crl?key_id={g1.key_id.hex()}" and final.entries == 2
    served = crl_of_g1()
    crl = x509.load_der_x509_crl(served.content)
    _is_final(crl, g1.certificate, clock.at)
    assert _number(crl) == final.crl_number > _number(ordinary)
    assert _listed(crl) == {cert.serial_number: "affiliation_changed", 0x7A7A: "key_compromise"}
    _openssl_reads(tmp_path, served.content, g1.certificate, [cert.serial_number, 0x7A7A])

    clock.at += 3 * YEAR
    assert crl_of_g1().content == served.content
    tsa_crls = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=http.get(request.url.path).content)))
    verdict = verify(DATA, stamped, roots=jpki.roots("sign"), revocation="crl", crl=crl_of_g1().content,
                     tsa_roots=tsa.roots(), client=tsa_crls, at=clock.at)
    checks = {c["name"]: c for c in verdict["checks"]}
    assert verdict["valid"], verdict
    assert checks["revocation"]["code"] == "revoked_after_signing", checks["revocation"]
    assert "affiliationChanged" in checks["revocation"]["reason"]
    assert jpki.destroy_key("jpki-sign-root-g1").final_crls == ()  # already: nothing signed
    assert crl_of_g1().content == served.content
    engine.dispose()


# -- a TSA root -------------------------------------------------------------------------------


def test_a_tsa_roots_final_crl_lets_its_time_stamps_be_judged_years_later(db_url, tmp_path, monkeypatch):
    """An older TSA root whose units have all expired: its final CRL lists the unit it revoked
    (superseded, after a time-stamp it made) and is served for good at ``/tsa/root.crl``; a
    relying party judging that time-stamp years later finds the unit's revocation after it, and
    the time-stamp stands. The database client's time zone is east of UTC (``PGTZ``): on
    PostgreSQL 9999-12-31T23:59:59Z is read back all the same."""
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    tsa = TimeStampAuthority(sessions, MemoryKeyStore(), clock=clock, crl_url=f"{BASE}/tsa/root.crl")
    http = _app(tsa_api.tsa_router(lambda: tsa))
    token = tsp.token_of_response(tsa.respond(tsp.build_request(tsp.digest("sha256", DATA))))
    g1 = tsa.root()
    clock.at = t0 + dt.timedelta(days=10)
    tsa.rollover(actor="test")
    tsa.revoke_unit("tsa-unit-1", "superseded", actor="test")
    unit1 = _cert(sessions, "tsa-unit-1")
    clock.at = unit1.not_valid_after_utc + dt.timedelta(hours=1)
    before = x509.load_der_x509_crl(http.get("/tsa/root.crl").content)

    done = tsa.destroy_key("tsa-root-g1", actor="test")
    (final,) = done.final_crls
    assert (final.crl, final.entries, final.crl_number > _number(before)) == ("/tsa/root.crl", 1, True)
    served = http.get("/tsa/root.crl").content
    crl = x509.load_der_x509_crl(served)
    _is_final(crl, g1, clock.at)
    assert _listed(crl) == {unit1.serial_number: "superseded"}
    _openssl_reads(tmp_path, served, g1, [unit1.serial_number])

    clock.at += 2 * YEAR
    assert http.get("/tsa/root.crl").content == served == tsa.crl(1)
    client = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=http.get(request.url.path).content)))
    check, stamp = signature_timestamp([(token, DATA)], tsa.roots(), revocation="crl", at=clock.at, client=client)
    assert check.passed and stamp.tsa_certificate == unit1, check
    # a second TSA, another process: it serves the same final CRL, and signs none
    other = TimeStampAuthority(sessions, MemoryKeyStore(), clock=clock, crl_url=f"{BASE}/tsa/root.crl")
    assert other.crl(1) == served
    engine.dispose()


def test_a_key_destroyed_before_final_crls_keeps_the_old_rule(db_url):
    """A TSA root destroyed by a release that signed no final CRL: the CRL it signed last is
    served to an hour before its nextUpdate, then 410 (nothing can sign another); a backup of
    its key restored and destroyed again signs nothing either (it is recorded destroyed)."""
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock, keys = Clock(t0), MemoryKeyStore()
    tsa = TimeStampAuthority(sessions, keys, clock=clock, crl_url=f"{BASE}/tsa/root.crl")
    tsa.unit()
    tsa.rollover(actor="test")
    clock.at = _cert(sessions, "tsa-unit-1").not_valid_after_utc + dt.timedelta(hours=1)
    last = tsa.crl(1)
    kept = keys._keys["tsa-root-g1"]
    with sessions.begin() as s:  # what the release before this one did: the key destroyed, recorded
        destroy_and_record(s, keys, s.get(IssuerKey, "tsa-root-g1"), clock.at, actor="test", action="tsa.key.destroy")
    tsa._crls.clear()
    keys._keys["tsa-root-g1"] = kept  # and a backup restored since
    again = tsa.destroy_key("tsa-root-g1", actor="test")
    assert (again.changed, again.restored, again.final_crls) == (False, True, ())
    clock.at += CRL_VALIDITY - dt.timedelta(hours=1, minutes=5)
    assert tsa.crl(1) == last and not ca_crl.is_final(x509.load_der_x509_crl(last))
    clock.at += dt.timedelta(minutes=10)
    with pytest.raises(TsaRootKeyDestroyed, match="it signs no CRL any more"):
        tsa.crl(1)
    engine.dispose()
