"""issuer.revocation rule by rule, on SQLite (the lock order is tests/test_revocation_concurrency.py's,
the CRLs and OCSP tests/test_issuer_jpki_registry.py's): the reason names and credential
selectors it takes, what each call changes and records. Each test holds a rule that a
mutation round found no test holding."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from test_issuer_jpki_support import open_issuer, provision

from issuer import revocation
from issuer.db import AuditEvent, Credential


@pytest.mark.parametrize(("given", "name"), [
    ("key_compromise", "keyCompromise"), ("affiliation_changed", "affiliationChanged"),
    ("cessation_of_operation", "cessationOfOperation"), ("certificate_hold", "certificateHold"),
    ("superseded", "superseded"),
    *[(name, name) for name in revocation.REASONS],
])
def test_a_reason_is_taken_by_its_rfc_name_or_its_snake_form(given, name):
    assert revocation.parse_reason(given) == name


@pytest.mark.parametrize("given", ["removeFromCRL", "remove_from_crl", "unspecified", "KeyCompromise", ""])
def test_a_reason_that_is_no_crl_reason_of_jpki_is_refused(given):
    with pytest.raises(revocation.RevocationError, match="is not one of keyCompromise"):
        revocation.parse_reason(given)


def test_each_credential_selector_names_its_kinds():
    """specs/revocation.md 1: sign, auth, mdoc, jpki or all; a kind's own name selects it too."""
    assert {sel: revocation.kinds_of(sel) for sel in revocation.SELECTORS} == {
        "sign": ("jpki-sign",), "auth": ("jpki-auth",), "mdoc": ("mdoc",),
        "jpki": ("jpki-sign", "jpki-auth"), "all": ("jpki-sign", "jpki-auth", "mdoc"),
        "jpki-sign": ("jpki-sign",), "jpki-auth": ("jpki-auth",)}
    with pytest.raises(revocation.RevocationError, match="'passport' is not one of"):
        revocation.kinds_of("passport")


@pytest.fixture
def issuer(tmp_path):
    return open_issuer(f"sqlite:///{tmp_path / 'registry.sqlite3'}")


def _credentials(issuer, phone_id: str) -> dict[str, Credential]:
    with issuer.sessions() as s:
        return {r.kind: r for r in s.scalars(select(Credential).where(Credential.phone_id == phone_id))}


def _events(issuer, subject: str) -> list[tuple[str, str, dict]]:
    with issuer.sessions() as s:
        return [(e.actor, e.action, e.detail) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.subject == subject,
                                     AuditEvent.action.startswith("credential."))
            .order_by(AuditEvent.id))]


def test_a_hold_a_revocation_and_a_release_each_record_what_they_did_to_the_credential(issuer):
    """The audit trail keeps every step (specs/revocation.md 1): the phone, kind, serial,
    reason and the status before, for a hold and a revocation; for a release, its time."""
    phone, other = provision(issuer), provision(issuer)
    auth, sign = _credentials(issuer, phone.phone_id)["jpki-auth"], _credentials(issuer, phone.phone_id)["jpki-sign"]
    at = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert [(c.kind, c.before, c.after, c.reason) for c in revocation.hold(
        issuer.sessions, phone.phone_id, "auth", actor="desk", now=at)] == [
        ("jpki-auth", "valid", "hold", "certificateHold")]
    revocation.release(issuer.sessions, other.phone_id, "auth", actor="desk", now=at)  # nothing held there
    assert [(c.kind, c.before, c.after, c.reason) for c in revocation.release(
        issuer.sessions, phone.phone_id, "auth", actor="desk2", now=at + dt.timedelta(hours=1))] == [
        ("jpki-auth", "hold", "valid", None)]
    revocation.hold(issuer.sessions, phone.phone_id, "auth", actor="desk", now=at)
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "jpki", actor="ops", now=at)
    common = {"phone": phone.phone_id, "kind": "jpki-auth", "serial": auth.serial}
    assert _events(issuer, auth.id) == [
        ("desk", "credential.hold", {**common, "reason": "certificateHold", "before": "valid"}),
        ("desk2", "credential.release", {**common, "at": (at + dt.timedelta(hours=1)).isoformat()}),
        ("desk", "credential.hold", {**common, "reason": "certificateHold", "before": "valid"}),
        # a hold made final keeps the hold's time as its invalidity date (RFC 5280 5.3.2)
        ("ops", "credential.revoke", {**common, "reason": "keyCompromise", "before": "hold",
                                      "invalid_since": at.isoformat()})]
    assert _events(issuer, sign.id) == [
        ("ops", "credential.revoke", {"phone": phone.phone_id, "kind": "jpki-sign", "serial": sign.serial,
                                      "reason": "keyCompromise", "before": "valid"})]
    other_auth = _credentials(issuer, other.phone_id)["jpki-auth"]
    assert _events(issuer, other_auth.id) == []
    before = dt.datetime.now(dt.UTC)
    revocation.hold(issuer.sessions, other.phone_id, "auth")
    revocation.release(issuer.sessions, other.phone_id, "auth")  # at the time of the call
    revocation.revoke(issuer.sessions, other.phone_id, "affiliationChanged", "auth")
    held, released, revoked = _events(issuer, other_auth.id)
    assert [e[:2] for e in (held, released, revoked)] == [
        ("operator", "credential.hold"), ("operator", "credential.release"), ("operator", "credential.revoke")]
    assert before <= dt.datetime.fromisoformat(released[2]["at"]) <= dt.datetime.now(dt.UTC)


def _set(issuer, credential_id: str, **values) -> None:
    with issuer.sessions.begin() as s:
        row = s.get(Credential, credential_id)
        for name, value in values.items():
            setattr(row, name, value)


def test_an_abandoned_renewal_revokes_the_live_certificates_of_its_slots_and_marks_them(issuer):
    """revoke_abandoned_renewal: a held certificate is revoked too (cessationOfOperation, at
    the time given), one already revoked is left as it is and not marked, the mark joins what
    the certificate's meta held, and the audit says which job; a second call changes nothing."""
    phone = provision(issuer)
    rows = _credentials(issuer, phone.phone_id)
    revocation.hold(issuer.sessions, phone.phone_id, "auth")
    held_at = _credentials(issuer, phone.phone_id)["jpki-auth"].revoked_at
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign")
    meta = dict(rows["jpki-auth"].meta)
    assert meta  # what the issuance noted (card number, slot, ...)
    at = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    created = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    changes = revocation.revoke_abandoned_renewal(issuer.sessions, phone.phone_id, ["sign", "auth"],
                                                  "job-renew", created, actor="tsm", now=at)
    assert [(c.kind, c.before, c.after, c.reason) for c in changes] == [
        ("jpki-auth", "hold", "revoked", "cessationOfOperation")]
    after = _credentials(issuer, phone.phone_id)
    assert after["jpki-auth"].revoked_at == at
    assert after["jpki-auth"].meta == {**meta, "renewal_abandoned": "job-renew"}
    assert (after["jpki-sign"].reason, after["jpki-sign"].meta) == ("keyCompromise", rows["jpki-sign"].meta)
    assert _events(issuer, rows["jpki-auth"].id)[-1] == ("tsm", "credential.revoke", {
        "phone": phone.phone_id, "kind": "jpki-auth", "serial": rows["jpki-auth"].serial,
        "reason": "cessationOfOperation", "before": "hold", "renewal_abandoned": "job-renew",
        "invalid_since": held_at.isoformat()})
    assert after["jpki-auth"].invalid_since == held_at
    assert revocation.revoke_abandoned_renewal(issuer.sessions, phone.phone_id, ["sign", "auth"],
                                               "job-renew", created) == []
    assert revocation.renewals_needed(issuer.sessions(), [phone.phone_id]) == {phone.phone_id: {"auth": "job-renew"}}


def test_an_abandoned_renewal_leaves_a_certificate_another_job_issued_from_the_moment_it_was_made(issuer):
    """Only the job's own certificates and those issued before it was made are the
    abandoned renewal's: one of another job issued at or after ``job_created`` is the phone's.
    With no JPKI slot named there is nothing to do, nor a phone to look up. The default actor
    is the operator, the default time now."""
    phone = provision(issuer)
    rows = _credentials(issuer, phone.phone_id)
    created = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    _set(issuer, rows["jpki-sign"].id, issued_at=created)
    _set(issuer, rows["jpki-auth"].id, issued_at=created - dt.timedelta(seconds=1))
    assert revocation.revoke_abandoned_renewal(issuer.sessions, "no-such-phone", ["mdoc"], "job-x", created) == []
    before = dt.datetime.now(dt.UTC)
    changes = revocation.revoke_abandoned_renewal(issuer.sessions, phone.phone_id, ["sign", "auth"], "job-x", created)
    assert [c.kind for c in changes] == ["jpki-auth"]
    after = _credentials(issuer, phone.phone_id)
    assert after["jpki-sign"].status == "valid" and "renewal_abandoned" not in after["jpki-sign"].meta
    assert before <= after["jpki-auth"].revoked_at <= dt.datetime.now(dt.UTC)
    assert _events(issuer, rows["jpki-auth"].id)[-1][0] == "operator"
    # the job's own certificate, issued after it was made, is its own
    changes = revocation.revoke_abandoned_renewal(issuer.sessions, phone.phone_id, ["sign"],
                                                  f"job-{phone.phone_id}", created)
    assert [c.kind for c in changes] == ["jpki-sign"]


def test_an_abandoned_sign_issue_revokes_its_own_live_signing_certificates_and_marks_them(issuer):
    """revoke_abandoned_sign_issue: of the ids, the signing certificates the job issued that
    are live (valid or on hold) are revoked, cessationOfOperation, at the time given (default
    now, by the operator), marked beside what their meta held, the audit naming the job;
    another kind, another job's certificate and a second call change nothing."""
    phone, other = provision(issuer), provision(issuer)
    job = f"job-{phone.phone_id}"
    rows, others = _credentials(issuer, phone.phone_id), _credentials(issuer, other.phone_id)
    ids = [rows["jpki-sign"].id, rows["jpki-auth"].id, others["jpki-sign"].id]
    revocation.hold(issuer.sessions, phone.phone_id, "sign")
    held_at = _credentials(issuer, phone.phone_id)["jpki-sign"].revoked_at
    at = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    changes = revocation.revoke_abandoned_sign_issue(issuer.sessions, ids, job, actor="tsm", now=at)
    assert [(c.credential_id, c.before, c.after, c.reason) for c in changes] == [
        (rows["jpki-sign"].id, "hold", "revoked", "cessationOfOperation")]
    after = _credentials(issuer, phone.phone_id)
    assert after["jpki-sign"].revoked_at == at
    assert after["jpki-sign"].meta == {**rows["jpki-sign"].meta, "sign_issue_abandoned": job}
    assert after["jpki-auth"].status == "valid" and _credentials(issuer, other.phone_id)["jpki-sign"].status == "valid"
    assert _events(issuer, rows["jpki-sign"].id)[-1] == ("tsm", "credential.revoke", {
        "phone": phone.phone_id, "kind": "jpki-sign", "serial": rows["jpki-sign"].serial,
        "reason": "cessationOfOperation", "before": "hold", "sign_issue_abandoned": job,
        "invalid_since": held_at.isoformat()})
    assert after["jpki-sign"].invalid_since == held_at
    assert revocation.revoke_abandoned_sign_issue(issuer.sessions, ids, job) == []

    job = f"job-{other.phone_id}"
    before = dt.datetime.now(dt.UTC)
    assert [c.kind for c in revocation.revoke_abandoned_sign_issue(issuer.sessions, ids, job)] == ["jpki-sign"]
    assert before <= _credentials(issuer, other.phone_id)["jpki-sign"].revoked_at <= dt.datetime.now(dt.UTC)
    assert _events(issuer, others["jpki-sign"].id)[-1][0] == "operator"
    assert revocation.sign_issues_needed(issuer.sessions(), [phone.phone_id, other.phone_id]) == {
        phone.phone_id: f"job-{phone.phone_id}", other.phone_id: job}


def test_revoke_ids_takes_the_time_and_actor_given_else_now_and_the_operator(issuer):
    phone = provision(issuer)
    rows = _credentials(issuer, phone.phone_id)
    at = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    revocation.revoke_ids(issuer.sessions, [rows["jpki-sign"].id], "superseded", now=at)
    before = dt.datetime.now(dt.UTC)
    revocation.revoke_ids(issuer.sessions, [rows["jpki-auth"].id], "superseded")
    after = _credentials(issuer, phone.phone_id)
    assert after["jpki-sign"].revoked_at == at
    assert before <= after["jpki-auth"].revoked_at <= dt.datetime.now(dt.UTC)
    assert [_events(issuer, r.id)[-1][0] for r in rows.values()] == ["operator", "operator"]
