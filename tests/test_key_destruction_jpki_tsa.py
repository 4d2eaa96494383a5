"""The JPKI's and the TSA's keys destroyed once no duty needs them (specs/issuer-keys.md, "A
signer's key destroyed"), as the mdoc signers' are (tests/test_key_destruction.py): an older
JPKI root generation once every certificate it issued has expired (refused before, saying
when the last one ends), an OCSP responder once a newer one answers or its generation has
nothing left to answer for, a revoked or retired TSA unit; never the issuing root, the
responder answering for it, the unit stamping nor the TSA root. The key store destroys the
key, ``issuer_keys.key_destroyed_at`` records it, the audit trail says who (``jpki.key.destroy``,
``tsa.key.destroy``), a second call says ``already``; the certificate stays (a root in the
trust bundle, a unit in its tokens, which verify as before). ``mcred jpki key destroy``,
``mcred tsa key destroy``, ``mcred tsa revoke --destroy-key``, ``POST /trust/key-destructions``
and ``mcred doctor``'s "compromised signer keys". Both database backends; the token's part
against SoftHSM2 where it is installed."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from api_helpers import bearer
from cryptography import x509
from documented import check_every_answer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from issuer.db import AuditEvent, Credential, Holder, IssuerKey, Phone
from issuer.jpki import JpkiIssuer, profile_for
from issuer.jpki.errors import UnknownJpkiKey
from issuer.jpki.partitions import remember
from issuer.key_destruction import CaDutiesRemain, SignerStillSigning
from issuer.tsa import UNIT_DAYS, UNIT_RENEW_DAYS, TimeStampAuthority, UnknownTsaKey
from mcred.context import Context
from protocols import tsp
from protocols.jpki.profile import KeyType, Municipality

CONTENT = b"a lease, stamped"
URL = "http://tsa.test/tsa/root.crl"
CHIYODA = Municipality("東京都", "千代田区", "131016")


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def _events(sessions, action: str) -> list[AuditEvent]:  # noqa: ANN001
    with sessions() as s:
        return s.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id).all()


def _issued_by(sessions, label: str, not_after: dt.datetime, at: dt.datetime) -> None:  # noqa: ANN001
    """A signing certificate root generation ``label`` issued, revoked at ``at``, in partition
    Chiyoda (its CRL lists it)."""
    with sessions.begin() as s:
        holder = Holder(data={}, card_number=f"card-{label}", card_expiry=not_after.date())
        s.add(holder)
        s.flush()
        s.add(Phone(id=f"phone-{label}", holder_id=holder.id))
        s.flush()
        remember(s, CHIYODA)
        s.add(Credential(holder_id=holder.id, phone_id=f"phone-{label}", kind="jpki-sign", status="revoked",
                         reason="keyCompromise", revoked_at=at, not_before=at - dt.timedelta(days=1),
                         not_after=not_after, serial="7a7a", issuer_key=label, partition=CHIYODA.code,
                         body=b"\x30\x00", issued_at=at))


def test_jpki_keys_go_once_their_duties_have_ended(home, db_url):
    ctx = Context.open(home, db_url)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    jpki = JpkiIssuer(ctx.sessions, ctx.keystore, profile_for("http://issuer.test"), clock=clock)
    jpki.setup(KeyType.EC_P384)
    # the issuing root and the responder answering for it: never
    with pytest.raises(SignerStillSigning, match=r"issuing certificates now.*mcred jpki rollover --slot sign"):
        jpki.destroy_key("jpki-sign-root-g1")
    with pytest.raises(SignerStillSigning, match="answering for root generation jpki-sign-root-g1"):
        jpki.destroy_key("jpki-sign-root-g1-ocsp-1")
    with pytest.raises(UnknownJpkiKey):
        jpki.destroy_key("jpki-sign-root-g9")
    with pytest.raises(UnknownJpkiKey):
        jpki.destroy_key("mdoc-iaca-1")  # another PKI's label is not the JPKI's
    g1 = jpki.ca.generation("jpki-sign-root-g1")
    jpki.rollover("sign", KeyType.EC_P384)
    last_end = t0 + dt.timedelta(days=100)
    _issued_by(ctx.sessions, "jpki-sign-root-g1", last_end, t0)
    # an older generation with a certificate that has not expired: refused, saying until when
    with pytest.raises(CaDutiesRemain, match=f"the last ends {last_end:%Y-%m-%d %H:%M} UTC") as refused:
        jpki.destroy_key("jpki-sign-root-g1")
    assert refused.value.until == last_end and refused.value.duty == "crl"
    with pytest.raises(SignerStillSigning, match="retired root generation jpki-sign-root-g1.*the last ends"):
        jpki.destroy_key("jpki-sign-root-g1-ocsp-1")
    assert ctx.keystore.has("jpki-sign-root-g1") and not _events(ctx.sessions, "jpki.key.destroy")

    # past the last expiry the key goes, after the final CRL of each partition, served for good
    # (specs/revocation.md "A CA's final CRL", tests/test_final_crl.py)
    clock.at = last_end + dt.timedelta(hours=12)
    crl = jpki.crl("sign", CHIYODA.code, key_id=g1.key_id, now=clock.at)
    assert x509.load_der_x509_crl(crl).get_revoked_certificate_by_serial_number(0x7A7A) is not None
    done = jpki.destroy_key(format(g1.certificate.serial_number, "x"), actor="test")
    assert (done.label, done.purpose, done.changed, done.found_absent, done.key_destroyed_at) == (
        "jpki-sign-root-g1", "jpki-sign-root", True, False, clock.at)
    assert not ctx.keystore.has("jpki-sign-root-g1")
    (event,) = _events(ctx.sessions, "jpki.key.destroy")
    assert (event.subject, event.actor, event.detail) == ("jpki-sign-root-g1", "test", {
        "serial": done.serial, "purpose": "jpki-sign-root", "revoked": False, "reason": None, "found_absent": False,
        "final_crls": 1})
    # its certificate stays in the trust bundle: what it issued still chains
    assert jpki.roots("sign")[0] == g1.certificate and len(jpki.roots("sign")) == 2
    final = jpki.crl("sign", CHIYODA.code, key_id=g1.key_id, now=clock.at + dt.timedelta(hours=20))
    assert final != crl and x509.load_der_x509_crl(final).next_update_utc.year == 9999
    assert jpki.crl("sign", CHIYODA.code, key_id=g1.key_id, now=clock.at + dt.timedelta(hours=23, minutes=30)) == final
    again = jpki.destroy_key("jpki-sign-root-g1")
    assert (again.changed, again.to_json()["already"], again.key_destroyed_at) == (False, True, done.key_destroyed_at)
    # its responder has nothing left to answer for: it goes, and the OCSP service answers for
    # the other generations without it
    assert jpki.destroy_key("jpki-sign-root-g1-ocsp-1").changed
    jpki.ocsp.invalidate()
    jpki.ocsp._load()
    answering = {r.certificate.serial_number for r in jpki.ocsp._responders}
    with ctx.sessions() as s:
        gone = x509.load_der_x509_certificate(s.get(IssuerKey, "jpki-sign-root-g1-ocsp-1").certificate)
    assert gone.serial_number not in answering and len(answering) == 2  # g2's and the auth root's
    # a responder a newer one replaced (its last 30 days: renewed) goes, the generation issuing
    clock.at = t0 + dt.timedelta(days=340)
    assert jpki.ca.responder(jpki.ca.active(g1.purpose)).label == "jpki-sign-root-g2-ocsp-2"
    assert jpki.destroy_key("jpki-sign-root-g2-ocsp-1").changed
    with pytest.raises(SignerStillSigning):
        jpki.destroy_key("jpki-sign-root-g2-ocsp-2")
    assert [e.subject for e in _events(ctx.sessions, "jpki.key.destroy")] == [
        "jpki-sign-root-g1", "jpki-sign-root-g1-ocsp-1", "jpki-sign-root-g2-ocsp-1"]


def _stamp(tsa: TimeStampAuthority) -> tuple[bytes, tsp.TimeStamp]:
    token = tsp.token_of_response(tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))
    return token, tsp.verify_token(token, data=CONTENT, roots=tsa.roots())


def test_tsa_keys_go_once_revoked_or_retired(home, db_url):
    from mcred.doctor import _compromised_keys

    ctx = Context.open(home, db_url)
    clock = Clock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock, crl_url=URL)
    token, stamp = _stamp(tsa)
    with pytest.raises(SignerStillSigning, match="tsa-unit-1 is the one stamping now"):
        tsa.destroy_key("tsa-unit-1")
    with pytest.raises(SignerStillSigning, match="the TSA root tsa-root-g1 is the current one"):
        tsa.destroy_key("tsa-root-g1")
    with pytest.raises(UnknownTsaKey):
        tsa.destroy_key("tsa-unit-9")
    assert ctx.keystore.has("tsa-unit-1") and _compromised_keys(ctx).ok

    done = tsa.revoke_unit_detail("tsa-unit-1", "keyCompromise", actor="test", destroy_key=True)
    gone = done.key_destruction
    assert (done.changed, gone.label, gone.purpose, gone.changed, gone.reason) == (
        True, "tsa-unit-1", "tsa-unit", True, "keyCompromise")
    assert not ctx.keystore.has("tsa-unit-1") and _compromised_keys(ctx).ok
    (event,) = _events(ctx.sessions, "tsa.key.destroy")
    assert event.subject == "tsa-unit-1" and event.actor == "test" and event.detail["reason"] == "keyCompromise"
    # its tokens still verify (the unit's certificate travels in them), its root's CRL lists it
    assert tsp.verify_token(token, data=CONTENT, roots=tsa.roots()).serial == stamp.serial
    crl = x509.load_der_x509_crl(tsa.crl())
    assert crl.get_revoked_certificate_by_serial_number(stamp.tsa_certificate.serial_number) is not None
    # a new unit stamps; the first, asked again by its serial: already
    assert _stamp(tsa)[1].tsa_certificate.subject.rfc4514_string().startswith("CN=mcred TSA unit 2,")
    again = tsa.destroy_key(format(stamp.tsa_certificate.serial_number, "x"))
    assert not again.changed and again.key_destroyed_at == gone.key_destroyed_at

    # a unit replaced in its last days (not revoked): retired, its key may go
    clock.at += dt.timedelta(days=UNIT_DAYS - UNIT_RENEW_DAYS + 1)
    assert _stamp(tsa)[1].tsa_certificate.subject.rfc4514_string().startswith("CN=mcred TSA unit 3,")
    retired = tsa.destroy_key("tsa-unit-2", actor="test")
    assert retired.changed and retired.revoked_at is None and not ctx.keystore.has("tsa-unit-2")

    # mcred doctor names a unit revoked for a compromise whose key is kept, with the command
    tsa.revoke_unit("tsa-unit-3", "keyCompromise")
    found = _compromised_keys(ctx)
    assert not found.ok and "tsa-unit-3" in found.detail and found.fix == "mcred tsa key destroy tsa-unit-3"
    tsa.destroy_key("tsa-unit-3")
    assert _compromised_keys(ctx).ok


def _cli(*args: str) -> tuple[int, str]:
    from mcred.cli.main import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, " ".join(r.output.split())


def test_the_commands(home, tmp_path):
    (tmp_path / "doc.txt").write_bytes(CONTENT)
    code, out = _cli("tsa", "stamp", str(tmp_path / "doc.txt"))
    assert code == 0, out
    code, out = _cli("tsa", "key", "destroy", "tsa-unit-1", "--json")
    assert code == 2 and "stamping now" in json.loads(out)["error"], out
    code, out = _cli("tsa", "key", "destroy", "tsa-unit-5")
    assert code == 2 and "no TSA key 'tsa-unit-5'" in out, out
    code, out = _cli("tsa", "revoke", "tsa-unit-1", "--reason", "keyCompromise", "--destroy-key")
    assert code == 0 and "revoked (keyCompromise)" in out and "the key of tsa-unit-1 destroyed at" in out, out
    code, out = _cli("tsa", "revoke", "tsa-unit-1", "--reason", "keyCompromise", "--destroy-key", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["changed"] is False and doc["key_destroyed_at"], out
    code, out = _cli("tsa", "key", "destroy", "tsa-unit-1")
    assert code == 0 and "the key of tsa-unit-1 was already destroyed" in out, out
    # the reply made by the destroyed unit still verifies (its revocation aside)
    code, out = _cli("tsa", "verify", str(tmp_path / "doc.txt.tsr"), "--data", str(tmp_path / "doc.txt"),
                     "--revocation", "none")
    assert code == 0 and out.startswith("VALID"), out

    code, out = _cli("jpki", "key", "destroy", "jpki-sign-root-g1")
    assert code == 2 and "mcred jpki rollover --slot sign" in out, out
    code, out = _cli("jpki", "rollover", "--slot", "sign", "--key-type", "p384")
    assert code == 0, out
    code, out = _cli("jpki", "key", "destroy", "jpki-sign-root-g1", "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["label"], doc["changed"], doc["already"]) == ("jpki-sign-root-g1", True, False), out
    code, out = _cli("jpki", "key", "destroy", "jpki-sign-root-g1")
    assert code == 0 and "already destroyed" in out, out
    code, out = _cli("export", "jpki-root", "--slot", "sign", "--out", str(tmp_path / "roots.pem"))
    assert code == 0, out
    assert len(x509.load_pem_x509_certificates((tmp_path / "roots.pem").read_bytes())) == 2  # g1 still published


def test_key_destructions_over_http_take_the_jpkis_and_the_tsas_keys(home):
    from mcred.api_models import KeyDestruction
    from mcred.jpki_flow import jpki_issuer
    from mcred.service import create_app
    from mcred.timestamps import time_stamp_authority

    ctx = Context.open(home)
    jpki, tsa = jpki_issuer(ctx), time_stamp_authority(ctx)
    api = create_app(ctx, job_workers=1)
    with contextlib.closing(TestClient(api)) as client:
        checked = check_every_answer(client, api)
        tok = bearer(ctx.sessions, ["operator", "issuer"])

        def destroy(ref: str, who: str = "operator"):  # noqa: ANN202
            return client.post("/trust/key-destructions", json={"signer": ref}, headers=tok[who])

        assert destroy("tsa-unit-1", "issuer").status_code == 403
        for ref in ("tsa-unit-1", "tsa-root-g1", "jpki-sign-root-g1", "jpki-auth-root-g1-ocsp-1"):
            r = destroy(ref)
            assert r.status_code == 409 and r.json()["type"] == "/problems/signer-still-signing", (ref, r.text)
            assert ref in r.json()["detail"]
        for ref in ("tsa-unit-9", "jpki-sign-root-g7", "abcdef0123"):
            r = destroy(ref)
            assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer", (ref, r.text)
        unit = x509.load_der_x509_certificate(_row(ctx, "tsa-unit-1").certificate)
        tsa.revoke_unit("tsa-unit-1", "keyCompromise")
        r = destroy(format(unit.serial_number, "x"))  # by its serial: looked up in every PKI
        got = KeyDestruction.model_validate(r.json())
        assert r.status_code == 200 and (got.label, got.purpose, got.reason, got.changed) == (
            "tsa-unit-1", "tsa-unit", "keyCompromise", True)
        g1 = jpki.ca.generation("jpki-sign-root-g1")
        jpki.rollover("sign", KeyType.EC_P384)
        r = destroy("jpki-sign-root-g1")
        got = KeyDestruction.model_validate(r.json())
        assert r.status_code == 200 and (got.purpose, got.changed, got.revoked_at) == ("jpki-sign-root", True, None)
        assert KeyDestruction.model_validate(destroy("jpki-sign-root-g1").json()).already
        # its root stays published; a CRL it would have to sign now (of a partition known only
        # after its destruction, which has no final CRL of it): 410, not a missing key
        served = x509.load_pem_x509_certificates(client.get("/trust/jpki-sign-root.pem").content)
        assert g1.certificate in served
        with ctx.sessions.begin() as s:
            remember(s, CHIYODA)
        r = client.get(f"/crl/sign/{CHIYODA.code}.crl", params={"key_id": g1.key_id.hex()})
        assert r.status_code == 410 and r.json()["type"] == "/problems/signer-key-destroyed", r.text
        assert client.get(f"/crl/sign/{CHIYODA.code}.crl").status_code == 200  # the issuing generation's
        assert {"POST /trust/key-destructions 200", "POST /trust/key-destructions 403",
                "POST /trust/key-destructions 404", "POST /trust/key-destructions 409",
                "GET /crl/{slot}/{filename} 410"} <= set(checked), checked
        assert [e.subject for e in _events(ctx.sessions, "tsa.key.destroy")] == ["tsa-unit-1"]
        assert all(e.actor.startswith("token:") for e in _events(ctx.sessions, "jpki.key.destroy"))


def _row(ctx, label: str) -> IssuerKey:  # noqa: ANN001
    with ctx.sessions() as s:
        return s.get(IssuerKey, label)


def test_jpki_and_tsa_keys_destroyed_leave_nothing_on_the_token(softhsm_token, tmp_path):
    """Over a PKCS#11 token (SoftHSM2): an older root generation's pair and a revoked TSA
    unit's pair destroyed in the token; the other keys there stay and sign (the new root its
    CRL, the next unit its tokens)."""
    pkcs11 = pytest.importorskip("pkcs11", reason="needs python-pkcs11 (the test extra installs it)")
    from softhsm import SOFTHSM_PIN
    from sqlalchemy.orm import sessionmaker

    from issuer.hsm import SOFTHSM2, Pkcs11KeyStore
    from mcred.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    keystore = Pkcs11KeyStore(SOFTHSM2, softhsm_token, SOFTHSM_PIN)
    jpki = JpkiIssuer(sessions, keystore, profile_for("http://issuer.test"))
    jpki.setup(KeyType.EC_P384)
    jpki.rollover("sign", KeyType.EC_P384)
    assert jpki.destroy_key("jpki-sign-root-g1").changed
    tsa = TimeStampAuthority(sessions, keystore, crl_url=URL)
    token, _stamp_ = _stamp(tsa)
    assert tsa.revoke_unit_detail("tsa-unit-1", "keyCompromise", destroy_key=True).key_destruction.changed
    with pkcs11.lib(SOFTHSM2).get_token(token_label=softhsm_token).open() as session:
        for label in ("jpki-sign-root-g1", "tsa-unit-1"):
            assert list(session.get_objects({pkcs11.Attribute.LABEL: label})) == [], label
        for label in ("jpki-sign-root-g2", "tsa-root-g1"):
            assert len(list(session.get_objects({pkcs11.Attribute.LABEL: label}))) == 2, label
    with sessions.begin() as s:
        remember(s, CHIYODA)
    assert x509.load_der_x509_crl(jpki.crl("sign", CHIYODA.code)).is_signature_valid(
        jpki.root("sign").public_key())
    assert _stamp(tsa)[1].tsa_certificate != tsp.verify_token(token, data=CONTENT, roots=tsa.roots()).tsa_certificate
    assert not keystore.has("jpki-sign-root-g1")
    engine.dispose()
