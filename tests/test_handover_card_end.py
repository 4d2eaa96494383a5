"""Workflows at the edges that end issuance: the mdoc IACA's last months as the installation
configures them, and the end of the holder's card (specs/handover.md, policy 2).

Each test runs in a data directory of its own, under ``time_machine`` (the clock every party
reads) moved to the instant it probes: the years to an IACA's end, or the day after a card's.
"""

from __future__ import annotations

import datetime as dt
import functools

import pytest
import time_machine
from conftest import fsync_skipped
from cryptography import x509
from sqlalchemy import select
from typer.testing import CliRunner

import mcred.mdoc_flow
import wallet_sim
from issuer import handover as wf
from issuer.db import Credential, Handover, Holder, IssuerKey, Phone
from issuer.mdoc.pki import MdocPkiConfig
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.handover_actions import HandoverActions, change_basic_four, mdoc_refusal
from mcred.provision import (
    ProvisionError,
    check_mdoc_issuance,
    mdoc_service,
    parse_holder,
    provision,
)
from mcred.samples import HOLDER
from protocols.birthdays import JST, today_in_japan
from protocols.jpki.parse import read_basic_four

SECRETS = {"pin": "1234", "password": "ABC123", "puk": "12345678"}
MOVES = (
    {"address": "神奈川県横浜市中区港町1-1", "prefecture": "神奈川県", "municipality": "横浜市中区"},
    {"address": "東京都千代田区永田町1-7-1", "prefecture": "東京都", "municipality": "千代田区"},
)


@pytest.fixture
def installation(tmp_path, monkeypatch):
    """A data directory of its own (a fresh mdoc service), its mdoc PKI built with the
    ``rollover_margin`` the test configures through :func:`configure`."""
    def configure(**config) -> Context:  # noqa: ANN003
        monkeypatch.setattr(mcred.mdoc_flow, "MdocPkiConfig", functools.partial(MdocPkiConfig, **config))
        return Context.open(tmp_path / "home")

    with fsync_skipped():
        yield configure


def _provisioned(ctx: Context, **holder) -> tuple[str, str]:  # noqa: ANN003
    """(holder id, phone id) of a holder provisioned on a new phone (P-384, one mdoc)."""
    phone = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, phone, parse_holder(dict(HOLDER, **holder)), key_type="p384", mdoc_batch=1, **SECRETS)
    return r.holder_id, phone


def _iaca_end(ctx: Context) -> dt.datetime:
    with ctx.sessions() as s:
        row = s.scalars(select(IssuerKey).where(IssuerKey.purpose == "iaca")).one()
    return x509.load_der_x509_certificate(row.certificate).not_valid_after_utc


def _state(ctx: Context, holder_id: str, phone: str) -> tuple:
    """The holder's data, their workflows, and the phone's state and credentials."""
    with ctx.sessions() as s:
        return (s.get(Holder, holder_id).data,
                sorted((h.kind, h.state, h.step) for h in s.scalars(select(Handover).where(
                    Handover.holder_id == holder_id))),
                s.get(Phone, phone).state,
                sorted((c.kind, c.status, c.reason, c.id)
                       for c in s.scalars(select(Credential).where(Credential.phone_id == phone))))


@pytest.mark.parametrize("margin_days", [30, 120])
def test_a_workflow_is_refused_exactly_when_the_installations_issuance_is(installation, margin_days):
    """A workflow that re-issues mdocs is refused before it is recorded in the mdoc IACA's
    last months: those of the installation's own PKI (its ``rollover_margin``), not the
    default 90 days. Read with the default, an installation with a 30-day margin had a move
    refused 60 days before the IACA's end, where its issuer would have issued the new mdocs;
    one with a 120-day margin had the move recorded, its signing certificate re-issued, and
    the workflow stopped half-way at the mdoc the issuer refused. Probed an hour on either
    side of the installation's edge: the move goes through, or is refused with nothing
    changed, exactly as the issuance check says (``check_mdoc_issuance``, the same margin
    the issuer's signer rule uses)."""
    margin = dt.timedelta(days=margin_days)
    ctx = installation(rollover_margin=margin)
    assert mdoc_service(ctx).pki.config.rollover_margin == margin
    card = (dt.datetime.now(dt.UTC) + dt.timedelta(days=11 * 365)).date().isoformat()  # past the IACA
    holder_id, phone = _provisioned(ctx, card_expiry_date=card)
    end = _iaca_end(ctx)
    for n, (offset, refused) in enumerate(((-dt.timedelta(hours=1), False), (dt.timedelta(hours=1), True))):
        with time_machine.travel(end - margin + offset, tick=True):
            issuance = mdoc_service(ctx).issuance_refusal()
            assert (issuance is not None) is refused, issuance
            if refused:
                with pytest.raises(ProvisionError, match="mcred mdoc iaca rollover"):
                    check_mdoc_issuance(ctx, holder_id)
                before = _state(ctx, holder_id, phone)
                with pytest.raises(wf.WorkflowError, match="mcred mdoc iaca rollover"):
                    change_basic_four(ctx, holder_id, MOVES[n % 2], reason="test", actor="test")
                assert _state(ctx, holder_id, phone) == before  # nothing recorded, nothing issued
                with pytest.raises(wf.WorkflowError, match="mcred mdoc iaca rollover"):
                    wf.create(ctx.sessions, kind="renewal", holder_id=holder_id, new_phone_id=phone,
                              actor="test", mdoc_refusal=mdoc_refusal(ctx))
            else:
                check_mdoc_issuance(ctx, holder_id)
                out = change_basic_four(ctx, holder_id, MOVES[n % 2], reason="test", actor="test")
                assert out["state"] == "done", out
                with ctx.sessions() as s:
                    mdocs = s.scalars(select(Credential).where(
                        Credential.phone_id == phone, Credential.kind == "mdoc", Credential.status == "valid")).all()
                assert [m.issued_at.date() for m in mdocs] == [dt.datetime.now(dt.UTC).date()]


# --- the end of the holder's card ------------------------------------------------------------


def _card_holder(ctx: Context) -> tuple[str, str, dt.date]:
    """(holder id, phone id, the card's last day): a card that ends in two days."""
    last = today_in_japan(dt.datetime.now(dt.UTC)) + dt.timedelta(days=2)
    holder_id, phone = _provisioned(ctx, card_expiry_date=last.isoformat())
    return holder_id, phone, last


def _past(last: dt.date) -> dt.datetime:
    """01:00 JST the day after the card's last day: the card has ended, and so has everything
    issued from it."""
    return dt.datetime.combine(last + dt.timedelta(days=1), dt.time(1), JST)


def _run(ctx: Context, kind: str, holder_id: str, phone: str) -> Handover:
    hid = wf.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=phone, actor="test",
                    mdoc_refusal=mdoc_refusal(ctx))
    return HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner("test").run(hid)


def _creds(ctx: Context, phone: str) -> list[tuple[str, str, str | None]]:
    with ctx.sessions() as s:
        return sorted((c.kind, c.status, c.reason) for c in s.scalars(
            select(Credential).where(Credential.phone_id == phone)))


@pytest.mark.parametrize("kind, after", [
    ("lost_hold", [("jpki-auth", "hold", "certificateHold"), ("jpki-sign", "hold", "certificateHold"),
                   ("mdoc", "hold", "certificateHold")]),
    ("resale_report", [("jpki-auth", "revoked", "cessationOfOperation"),
                       ("jpki-sign", "revoked", "cessationOfOperation"), ("mdoc", "revoked", "cessationOfOperation")]),
    ("lost_confirmed", [("jpki-auth", "revoked", "cessationOfOperation"),
                        ("jpki-sign", "revoked", "cessationOfOperation"), ("mdoc", "revoked", "cessationOfOperation")]),
    ("death", [("jpki-auth", "revoked", "affiliationChanged"), ("jpki-sign", "revoked", "affiliationChanged"),
               ("mdoc", "revoked", "affiliationChanged")]),
])
def test_a_workflow_that_only_revokes_goes_through_after_the_cards_end(installation, kind, after):
    """A revocation is never refused for the card's end: a phone lost, sold or of a holder who
    died after it is held or revoked, its lists and CRLs published, as before the end."""
    ctx = installation()
    holder_id, phone, last = _card_holder(ctx)
    with time_machine.travel(_past(last), tick=True):
        h = _run(ctx, kind, holder_id, phone)
        assert h.state == "done", h.detail
        assert [(k, st, why) for k, st, why in _creds(ctx, phone)] == after


def test_revocations_and_releases_by_hand_go_through_after_the_cards_end(installation):
    """``mcred revoke`` / ``release`` (issuer.revocation) after the card's end: a hold, its
    release, a revocation."""
    from issuer import revocation

    ctx = installation()
    holder_id, phone, last = _card_holder(ctx)
    with time_machine.travel(_past(last), tick=True):
        revocation.hold(ctx.sessions, phone, "all", actor="test")
        revocation.release(ctx.sessions, phone, "all", actor="test")
        assert {st for _k, st, _r in _creds(ctx, phone)} == {"valid"}
        revocation.revoke(ctx.sessions, phone, "keyCompromise", "all", actor="test")
        assert {(st, why) for _k, st, why in _creds(ctx, phone)} == {("revoked", "keyCompromise")}


@pytest.mark.parametrize("reported", ["before", "after"])
def test_a_phone_found_after_the_cards_end_is_settled_and_its_card_renewed(installation, reported):
    """A phone reported lost (before the card's end or after it) and found after it: the
    found lifts the holds of user authentication and the mdoc, revokes the signing
    certificate (its key was out of the holder's hands) and issues none, the card having
    ended (``skipped``, naming the card's renewal); the phone is active again. Before, the
    found lifted the holds, then failed at the issuer's refusal to re-issue the signing
    certificate: a workflow failed half-way, for good (a resume failed the same), and the
    card's renewal refused while it stood, its hold not settled. Now the card is renewed and
    the phone gets everything anew."""
    from mcred.handover_actions import renew_card

    ctx = installation()
    holder_id, phone, last = _card_holder(ctx)
    if reported == "before":
        _run(ctx, "lost_hold", holder_id, phone)
    with time_machine.travel(_past(last), tick=True):
        if reported == "after":
            _run(ctx, "lost_hold", holder_id, phone)
        h = _run(ctx, "found", holder_id, phone)
        assert h.state == "done", h.detail
        sign = h.detail["results"]["reissue_sign"]
        assert sign["revoked"] == 1 and sign["generated"] is False
        assert f"card expired on {last}" in sign["skipped"] and f"mcred holder renew-card {holder_id}" in sign["skipped"]
        assert _creds(ctx, phone) == [("jpki-auth", "valid", None), ("jpki-sign", "revoked", "cessationOfOperation"),
                                      ("mdoc", "valid", None)]
        with ctx.sessions() as s:
            assert s.get(Phone, phone).state == "active"
        out = renew_card(ctx, holder_id, reason="test", actor="test")
        assert out["phone"] == phone and out["state"] == "done", out
        live = [(k, st) for k, st, _why in _creds(ctx, phone) if st == "valid"]
        assert sorted(live) == [("jpki-auth", "valid"), ("jpki-sign", "valid"), ("mdoc", "valid")]


def test_a_move_after_the_cards_end_is_recorded_in_the_registry_alone(installation, monkeypatch):
    """異動 after the card's end: the holder moved, and the registry takes the new address
    (the renewed card carries it); nothing on the phone is re-issued, everything there having
    ended with the card, and no workflow is made: the answer says so, naming the card's
    renewal, which then issues everything with the new address. Before, the move's workflow
    revoked the signing certificate (superseded), then failed at the issuer's refusal to
    issue the new one: stopped half-way, for good. A ``basic_four_change`` asked for directly
    is refused before it is recorded."""
    from mcred.handover_actions import renew_card

    ctx = installation()
    holder_id, phone, last = _card_holder(ctx)
    with time_machine.travel(_past(last), tick=True):
        creds = _creds(ctx, phone)
        out = change_basic_four(ctx, holder_id, MOVES[0], reason="test", actor="test")
        assert out["state"] == "registry only" and out["handover"] is None and out["phone"] == phone, out
        assert f"card expired on {last}" in out["card_ended"]
        assert f"mcred holder renew-card {holder_id}" in out["card_ended"]
        with ctx.sessions() as s:
            assert s.get(Holder, holder_id).data["address"] == MOVES[0]["address"]
            assert not s.scalars(select(Handover).where(Handover.holder_id == holder_id)).all()
        assert _creds(ctx, phone) == creds
        with pytest.raises(wf.WorkflowError, match=f"card expired on {last}"):
            wf.create(ctx.sessions, kind="basic_four_change", holder_id=holder_id, old_phone_id=phone,
                      actor="test", mdoc_refusal=mdoc_refusal(ctx))
        # the command line says it: what was recorded, and what to do
        monkeypatch.setenv("MCRED_HOME", str(ctx.home))
        monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
        said = CliRunner().invoke(cli, ["holder", "update", holder_id, "--address", MOVES[1]["address"],
                                        "--prefecture", MOVES[1]["prefecture"], "--municipality",
                                        MOVES[1]["municipality"], "--reason", "転居届"])
        assert said.exit_code == 0, said.output
        assert f"phone {phone}: nothing re-issued" in said.output
        assert f"mcred holder renew-card {holder_id}" in said.output
        assert _creds(ctx, phone) == creds
        renew_card(ctx, holder_id, reason="test", actor="test")
        with ctx.sessions() as s:
            sign = s.scalars(select(Credential).where(Credential.phone_id == phone, Credential.kind == "jpki-sign",
                                                      Credential.status == "valid")).one()
        assert read_basic_four(x509.load_der_x509_certificate(sign.body)).address == MOVES[1]["address"]


@pytest.mark.parametrize("kind", ["model_change", "renewal"])
def test_a_workflow_that_provisions_is_refused_after_the_cards_end(installation, kind):
    """A model change and a renewal without a new card provision a phone from the card:
    refused before they are recorded, naming the card's renewal (as before)."""
    ctx = installation()
    holder_id, phone, last = _card_holder(ctx)
    new = wallet_sim.create_phone(ctx.home) if kind == "model_change" else None
    with time_machine.travel(_past(last), tick=True):
        with pytest.raises(wf.WorkflowError, match=f"card expired on {last}.*mcred holder renew-card"):
            wf.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=None if kind == "renewal" else phone,
                      new_phone_id=phone if kind == "renewal" else new, actor="test", mdoc_refusal=mdoc_refusal(ctx))


@pytest.mark.parametrize("kind", ["found", "basic_four_change"])
def test_a_workflow_made_on_the_cards_last_day_and_run_after_it_ends_without_issuing(installation, kind):
    """A found or a move recorded on the card's last day (everything could still be issued)
    and run after it (a resume the next morning): it ends ``done``, the steps that would
    issue ``skipped`` with the card's renewal named, rather than failing half-way at the
    issuer's refusal."""
    from mcred.handover_actions import record_basic_four_change

    ctx = installation()
    holder_id, phone, last = _card_holder(ctx)
    if kind == "found":
        _run(ctx, "lost_hold", holder_id, phone)
    with time_machine.travel(dt.datetime.combine(last, dt.time(22), JST), tick=True):
        if kind == "found":
            hid = wf.create(ctx.sessions, kind="found", holder_id=holder_id, old_phone_id=phone, actor="test",
                            mdoc_refusal=mdoc_refusal(ctx))
        else:
            moved = record_basic_four_change(ctx, holder_id, MOVES[1], reason="test", actor="test")
            assert moved["state"] == "running", moved
            hid = moved["handover"]
    with time_machine.travel(_past(last), tick=True):
        h = HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner("test").run(hid)
        assert h.state == "done", h.detail
        results = h.detail["results"]
        assert f"mcred holder renew-card {holder_id}" in results["reissue_sign"]["skipped"]
        if kind == "basic_four_change":
            assert f"mcred holder renew-card {holder_id}" in results["reissue_mdoc"]["skipped"]
            assert _creds(ctx, phone) == [("jpki-auth", "valid", None), ("jpki-sign", "revoked", "superseded"),
                                          ("mdoc", "valid", None)]
        else:
            assert _creds(ctx, phone) == [("jpki-auth", "valid", None),
                                          ("jpki-sign", "revoked", "cessationOfOperation"), ("mdoc", "valid", None)]
