"""A revocation made already, amended (issuer.revocation._amend): keyCompromise replaces
another reason once a compromise comes to light (RFC 5280 lets a later CRL say so; the
CA/Browser Forum's Baseline Requirements and Mozilla's root policy ask a CA to), and an
earlier invalidity date replaces a later one; the revocation's time stays, and nothing
else moves (specs/revocation.md, "Amending a revocation")."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from api_helpers import bearer, provision_over_api
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_issuer_jpki_registry import _status
from test_issuer_jpki_support import open_issuer, provision
from typer.testing import CliRunner

from issuer import revocation
from issuer.db import AuditEvent, Credential, StatusList
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.service import create_app

LOST = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
STOLEN = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC)


@pytest.fixture
def issuer(db_url):
    return open_issuer(db_url)


def _entry(issuer, cert: x509.Certificate) -> x509.RevokedCertificate:
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016"))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    return entry


def _reason(extensions) -> x509.ReasonFlags:
    return extensions.get_extension_for_class(x509.CRLReason).value.reason


def _invalidity(extensions) -> dt.datetime | None:
    try:
        return extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
    except x509.ExtensionNotFound:
        return None


def test_key_compromise_replaces_a_lost_phones_reason_and_its_time_stays(issuer):
    phone, bystander = provision(issuer), provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation", "jpki", now=LOST)
    revocation.revoke(issuer.sessions, bystander.phone_id, "superseded", "sign", now=LOST)
    assert _reason(_entry(issuer, cert).extensions) is x509.ReasonFlags.cessation_of_operation

    changes = revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "jpki", now=LATER,
                                invalid_since=STOLEN)
    assert sorted((c.kind, c.before, c.after, c.reason, c.amended_from) for c in changes) == [
        ("jpki-auth", "revoked", "revoked", "keyCompromise", "cessationOfOperation"),
        ("jpki-sign", "revoked", "revoked", "keyCompromise", "cessationOfOperation")]
    entry = _entry(issuer, cert)
    assert _reason(entry.extensions) is x509.ReasonFlags.key_compromise
    assert entry.revocation_date_utc == LOST  # when the CA revoked: no later knowledge moves it
    assert _invalidity(entry.extensions) == STOLEN
    answer = _status(issuer, cert, issuer.root("sign"))
    assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    assert answer.revocation_time_utc == LOST
    assert _invalidity(answer.single_extensions) == STOLEN
    # the other phone's entry is as it was
    other = _entry(issuer, x509.load_der_x509_certificate(bystander.certs["sign"]))
    assert _reason(other.extensions) is x509.ReasonFlags.superseded and _invalidity(other.extensions) is None
    with issuer.sessions() as s:
        rows = list(s.scalars(select(Credential).where(Credential.phone_id == phone.phone_id)))
        assert {(r.status, r.reason, r.revoked_at) for r in rows} == {("revoked", "keyCompromise", LOST)}
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "credential.revoke.amend")))
        assert len(events) == 2
        for e in events:
            assert e.detail["previous_reason"] == "cessationOfOperation" and e.detail["reason"] == "keyCompromise"
            assert e.detail["invalid_since"] == STOLEN.isoformat() and "previous_invalid_since" not in e.detail
            assert e.detail["revoked_at"] == LOST.isoformat()


def test_a_key_compromise_is_never_amended_to_another_reason_and_asking_again_changes_nothing(issuer):
    phone = provision(issuer)
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", now=LOST, invalid_since=STOLEN)
    for reason in ("cessationOfOperation", "superseded", "affiliationChanged", "keyCompromise"):
        assert revocation.revoke(issuer.sessions, phone.phone_id, reason, "sign", now=LATER) == [], reason
    # a later invalidity date than the one recorded says nothing new
    assert revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", now=LATER,
                             invalid_since=STOLEN + dt.timedelta(hours=1)) == []
    # a hold asked of a revoked credential changes nothing either
    assert revocation.hold(issuer.sessions, phone.phone_id, "sign", now=LATER) == []
    entry = _entry(issuer, x509.load_der_x509_certificate(phone.certs["sign"]))
    assert _reason(entry.extensions) is x509.ReasonFlags.key_compromise and _invalidity(entry.extensions) == STOLEN
    with issuer.sessions() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "credential.revoke.amend")) is None


def test_an_earlier_invalidity_date_moves_a_revocations_back_whatever_its_reason(issuer):
    """A death reported late (affiliationChanged) and then known to be earlier still: the
    date moves back, the reason stays; a date after the revocation's time moves nothing."""
    phone = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    revocation.revoke(issuer.sessions, phone.phone_id, "affiliationChanged", "sign", now=LOST)
    assert revocation.revoke(issuer.sessions, phone.phone_id, "affiliationChanged", "sign", now=LATER,
                             invalid_since=LOST + dt.timedelta(hours=1)) == []
    died = LOST - dt.timedelta(days=3)
    [change] = revocation.revoke(issuer.sessions, phone.phone_id, "affiliationChanged", "sign", now=LATER,
                                 invalid_since=died)
    assert (change.reason, change.amended_from) == ("affiliationChanged", "affiliationChanged")
    entry = _entry(issuer, cert)
    assert _reason(entry.extensions) is x509.ReasonFlags.affiliation_changed
    assert _invalidity(entry.extensions) == died and entry.revocation_date_utc == LOST
    earlier = died - dt.timedelta(days=1)
    revocation.revoke(issuer.sessions, phone.phone_id, "superseded", "sign", now=LATER, invalid_since=earlier)
    assert _invalidity(_entry(issuer, cert).extensions) == earlier
    with issuer.sessions() as s:
        last = s.scalars(select(AuditEvent).where(AuditEvent.action == "credential.revoke.amend")
                         .order_by(AuditEvent.id.desc())).first()
        assert last.detail["previous_invalid_since"] == died.isoformat()
        assert last.detail["invalid_since"] == earlier.isoformat()


def test_a_hold_made_final_and_then_found_compromised_keeps_the_earlier_date(issuer):
    phone = provision(issuer)
    revocation.hold(issuer.sessions, phone.phone_id, now=LOST)
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation", "sign", now=LATER)
    [change] = revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign",
                                 now=LATER + dt.timedelta(days=1), invalid_since=LATER)
    assert change.amended_from == "cessationOfOperation"
    entry = _entry(issuer, x509.load_der_x509_certificate(phone.certs["sign"]))
    assert _reason(entry.extensions) is x509.ReasonFlags.key_compromise
    assert _invalidity(entry.extensions) == LOST  # the hold's time, earlier than the date given
    assert entry.revocation_date_utc == LATER


def test_openssl_reads_the_amended_entry(issuer, tmp_path):
    phone = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation", "sign", now=LOST)
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", now=LATER, invalid_since=STOLEN)
    (tmp_path / "crl.der").write_bytes(issuer.crl("sign", "131016"))
    text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", tmp_path / "crl.der", "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    serial = f"{cert.serial_number:X}"
    serial = serial.rjust(len(serial) + len(serial) % 2, "0")  # OpenSSL prints whole octets
    block = text.split(f"Serial Number: {serial}")[1].split("Serial Number:")[0]
    assert "Key Compromise" in block and "Cessation Of Operation" not in block, block
    assert "Invalidity Date" in block and "Nov 30 22:00:00 2026" in block, block
    assert "Dec  1 09:00:00 2026" in block, block  # the revocation date as it was


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


HOLDER = {"family_name": "盗難", "given_name": "後子", "family_name_kana": "トウナン",
          "given_name_kana": "ノチコ", "birth_date": "1981-06-06", "sex": 2,
          "address": "北海道札幌市中央区北2条西3-1", "prefecture": "北海道", "municipality": "札幌市"}


@pytest.mark.usefixtures("every_answer_checked")
def test_the_api_and_the_cli_say_what_was_amended_and_the_status_list_is_left_alone(home: Path):
    ctx = Context.open(home)
    tok = bearer(ctx.sessions, ("tsm", "issuer"))
    with TestClient(create_app(ctx, job_workers=1)) as c:
        phone = provision_over_api(c, tok, HOLDER)
        r = c.post("/revocations", headers=tok["issuer"],
                   json={"phone_id": phone, "reason": "cessationOfOperation", "credential": "all"})
        assert r.status_code == 200 and all("amended_from" not in x for x in r.json()["changes"]), r.text
        with ctx.sessions() as s:
            versions = {sl.id: sl.version for sl in s.scalars(select(StatusList))}
        r = c.post("/revocations", headers=tok["issuer"],
                   json={"phone_id": phone, "reason": "keyCompromise", "credential": "all"})
        assert r.status_code == 200, r.text
        got = sorted((x["kind"], x["before"], x["after"], x["reason"], x["amended_from"])
                     for x in r.json()["changes"])
        assert got == [("jpki-auth", "revoked", "revoked", "keyCompromise", "cessationOfOperation"),
                       ("jpki-sign", "revoked", "revoked", "keyCompromise", "cessationOfOperation"),
                       ("mdoc", "revoked", "revoked", "keyCompromise", "cessationOfOperation")]
        with ctx.sessions() as s:  # an mdoc revoked stays INVALID: its list is not made again
            assert {sl.id: sl.version for sl in s.scalars(select(StatusList))} == versions
        creds = c.get("/credentials", headers=tok["issuer"], params={"phone_id": phone}).json()["credentials"]
        assert {x["reason"] for x in creds} == {"keyCompromise"}
    # the CLI: a second amendment changes nothing; an earlier date is one, said as such
    r = _cli("revoke", "--phone", phone, "--reason", "keyCompromise", "--credential", "sign")
    assert r.exit_code == 0 and r.output.strip() == "nothing to change", r.output
    r = _cli("revoke", "--phone", phone, "--reason", "keyCompromise", "--credential", "sign",
             "--invalid-since", "2026-11-30T09:00:00+09:00")
    assert r.exit_code == 0, r.output
    assert "revoked (keyCompromise) -> revoked (keyCompromise), amended" in r.output, r.output
    r = _cli("revoke", "--phone", phone, "--reason", "keyCompromise", "--credential", "auth",
             "--invalid-since", "2026-11-29T09:00:00+09:00", "--json")
    assert r.exit_code == 0, r.output
    [change] = json.loads(r.stdout)["changes"]
    assert change["amended_from"] == "keyCompromise" and change["kind"] == "jpki-auth", change
    with ctx.sessions() as s:
        auth = s.scalar(select(Credential).where(Credential.phone_id == phone, Credential.kind == "jpki-auth"))
        assert auth.invalid_since == dt.datetime(2026, 11, 29, 0, 0, tzinfo=dt.UTC)
