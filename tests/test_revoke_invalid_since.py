"""An operator's invalidity date (specs/revocation.md 1, "Invalid since"): ``mcred revoke
--invalid-since`` and ``POST /revocations`` ``invalid_since``, for a keyCompromise whose
compromise time is known or suspected (RFC 5280 5.3.2). Recorded on each credential revoked
(the earlier of it and a hold's time), published on the CRL and in OCSP, audited; a time
with no offset, one after the revocation, or one given with a hold is refused, by name.
The end-to-end check (a signature time-stamped after it refused by the relying party) is in
tests/test_lost_phone_signatures.py."""

from __future__ import annotations

import datetime as dt
import json
import re
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
from issuer.db import AuditEvent, Credential, utcnow
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.service import create_app

JST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture
def issuer(db_url):
    return open_issuer(db_url)


def _invalidity(extensions) -> dt.datetime | None:
    try:
        return extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
    except x509.ExtensionNotFound:
        return None


def test_a_given_invalidity_date_is_recorded_published_and_audited(issuer):
    """A valid credential takes the date given; a held one the earlier of it and the hold's
    time (the hold's when the date given is later, the date given when it is earlier)."""
    valid, held_late, held_early = provision(issuer), provision(issuer), provision(issuer)
    held_at = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    revoked_at = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    compromised = dt.datetime(2026, 11, 30, 18, 0, tzinfo=JST)  # 09:00 UTC, the day before the hold
    revocation.hold(issuer.sessions, held_late.phone_id, now=held_at)
    revocation.hold(issuer.sessions, held_early.phone_id, now=held_at)
    revocation.revoke(issuer.sessions, valid.phone_id, "keyCompromise", "sign", now=revoked_at,
                      invalid_since=compromised)
    revocation.revoke(issuer.sessions, held_late.phone_id, "keyCompromise", "sign", now=revoked_at,
                      invalid_since=held_at + dt.timedelta(hours=5))
    revocation.revoke(issuer.sessions, held_early.phone_id, "keyCompromise", "sign", now=revoked_at,
                      invalid_since=compromised)
    want = {valid.phone_id: compromised, held_late.phone_id: held_at, held_early.phone_id: compromised}
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016"))
    for p in (valid, held_late, held_early):
        cert = x509.load_der_x509_certificate(p.certs["sign"])
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        assert _invalidity(entry.extensions) == want[p.phone_id], p.phone_id
        assert entry.revocation_date_utc == revoked_at
        assert _invalidity(_status(issuer, cert, issuer.root("sign")).single_extensions) == want[p.phone_id]
    with issuer.sessions() as s:
        rows = {c.phone_id: c for c in s.scalars(select(Credential).where(Credential.kind == "jpki-sign"))}
        for phone_id, at in want.items():
            assert rows[phone_id].invalid_since == at
            event = s.scalar(select(AuditEvent).where(AuditEvent.action == "credential.revoke",
                                                      AuditEvent.subject == rows[phone_id].id))
            assert event.detail["invalid_since"] == at.astimezone(dt.UTC).isoformat(), event.detail
        given = s.scalar(select(AuditEvent).where(AuditEvent.subject == rows[held_late.phone_id].id,
                                                  AuditEvent.action == "credential.revoke")).detail
        assert given["invalid_since_given"] == (held_at + dt.timedelta(hours=5)).isoformat()
        # the auth certificate of the held phones stays on hold, untouched
        assert {c.status for c in s.scalars(select(Credential).where(
            Credential.kind == "jpki-auth", Credential.phone_id != valid.phone_id))} == {"hold"}


@pytest.mark.parametrize("reason, at, said", [
    ("keyCompromise", dt.datetime(2026, 12, 1, 9, 0), "has no UTC offset"),
    ("keyCompromise", dt.datetime(2026, 12, 3, 9, 0, 1, tzinfo=dt.UTC), "is after the revocation"),
    ("certificateHold", dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC), "a hold (certificateHold) carries no"),
])
def test_an_invalidity_date_that_cannot_be_one_is_refused_and_nothing_changes(issuer, reason, at, said):
    phone = provision(issuer)
    with pytest.raises(revocation.InvalidSinceRefused, match=re.escape(said)) as got:
        revocation.revoke(issuer.sessions, phone.phone_id, reason, "sign",
                          now=dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC), invalid_since=at)
    assert str(got.value).startswith("invalid_since: ")
    with issuer.sessions() as s:
        assert {c.status for c in s.scalars(select(Credential))} == {"valid"}


def test_other_final_reasons_may_carry_one(issuer):
    """RFC 5280 5.3.2 does not tie invalidityDate to a reason: a death reported late
    (affiliationChanged) may say since when."""
    phone = provision(issuer)
    died = dt.datetime(2026, 11, 20, tzinfo=JST)
    revocation.revoke(issuer.sessions, phone.phone_id, "affiliationChanged", "jpki",
                      now=dt.datetime(2026, 12, 3, tzinfo=dt.UTC), invalid_since=died)
    with issuer.sessions() as s:
        assert {c.invalid_since for c in s.scalars(select(Credential).where(
            Credential.phone_id == phone.phone_id, Credential.kind.in_(("jpki-sign", "jpki-auth"))))} == {died}


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("given, said", [
    ("2026-12-01T09:00:00", "has no UTC offset: give one (2026-12-01T09:00:00+09:00)"),
    ("2999-12-01T09:00:00+09:00", "is after the revocation"),
    ("yesterday", "'yesterday': not an ISO 8601 instant"),
])
def test_the_cli_refuses_a_bad_invalid_since_by_name(home, given, said):
    phone = json.loads(_cli("phone", "new", "--json").output)["id"]
    for reason in ("keyCompromise",):
        r = _cli("revoke", "--phone", phone, "--reason", reason, "--invalid-since", given)
        assert r.exit_code == 2, r.output
        text = " ".join(r.output.replace("│", " ").split())
        assert "--invalid-since" in text and said in text, text
        r = _cli("revoke", "--phone", phone, "--reason", reason, "--invalid-since", given, "--json")
        assert r.exit_code == 2, r.output
        doc = json.loads(r.stdout)
        assert "--invalid-since" in doc["error"] and said in doc["error"], doc


def test_the_cli_refuses_one_with_a_hold(home):
    phone = json.loads(_cli("phone", "new", "--json").output)["id"]
    r = _cli("revoke", "--phone", phone, "--reason", "certificateHold", "--invalid-since", "2026-12-01T09:00:00Z",
             "--json")
    assert r.exit_code == 2, r.output
    assert "--invalid-since" in (err := json.loads(r.stdout)["error"]) and "carries no invalidity date" in err


HOLDER = {"family_name": "鍵", "given_name": "漏子", "family_name_kana": "カギ",
          "given_name_kana": "モレコ", "birth_date": "1980-05-05", "sex": 2,
          "address": "北海道札幌市中央区北1条西2-1", "prefecture": "北海道", "municipality": "札幌市"}


@pytest.mark.usefixtures("every_answer_checked")
def test_post_revocations_takes_invalid_since_and_refuses_a_bad_one_precisely(home: Path):
    ctx = Context.open(home)
    tok = bearer(ctx.sessions, ("tsm", "issuer"))
    with TestClient(create_app(ctx, job_workers=1)) as c:
        phone = provision_over_api(c, tok, HOLDER)
        body = {"phone_id": phone, "reason": "keyCompromise", "credential": "sign"}
        for bad in ("2026-12-01T09:00:00", "2026-12-01", "yesterday", 1764547200):
            r = c.post("/revocations", headers=tok["issuer"], json={**body, "invalid_since": bad})
            assert r.status_code == 422 and r.json()["type"] == "/problems/validation", (bad, r.text)
            assert [e["location"] for e in r.json()["errors"]] == ["body.invalid_since"], (bad, r.text)
        for extra, said in (({"invalid_since": "2999-01-01T00:00:00+09:00"}, "is after the revocation"),
                            ({"reason": "certificateHold", "invalid_since": "2026-12-01T09:00:00+09:00"},
                             "a hold (certificateHold) carries no invalidity date")):
            r = c.post("/revocations", headers=tok["issuer"], json={**body, **extra})
            assert r.status_code == 400 and r.json()["type"] == "/problems/revocation-refused", r.text
            assert r.json()["detail"].startswith("invalid_since: ") and said in r.json()["detail"], r.text
        creds = c.get("/credentials", headers=tok["issuer"], params={"phone_id": phone}).json()["credentials"]
        assert {x["status"] for x in creds} == {"valid"}  # the refusals changed nothing
        compromised = (utcnow() - dt.timedelta(days=2)).replace(microsecond=0)
        r = c.post("/revocations", headers=tok["issuer"],
                   json={**body, "invalid_since": compromised.astimezone(JST).isoformat()})
        assert r.status_code == 200, r.text
        assert [(x["kind"], x["after"], x["reason"]) for x in r.json()["changes"]] == [
            ("jpki-sign", "revoked", "keyCompromise")]
        sign = c.get("/credentials", headers=tok["issuer"],
                     params={"phone_id": phone, "kind": "jpki-sign"}).json()["credentials"][0]
        assert dt.datetime.fromisoformat(sign["invalid_since"]) == compromised, sign
