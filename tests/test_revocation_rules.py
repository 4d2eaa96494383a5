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
        ("ops", "credential.revoke", {**common, "reason": "keyCompromise", "before": "hold"})]
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
