"""A workflow acts on a phone in the state its kind is for (specs/handover.md, policy 2): a
phone handed over already (``retired``) carries none of its holder's credentials any more,
and only a phone with credentials on hold (reported lost) is ``found``. Both were accepted,
ran to ``done`` and did the wrong thing; tests/test_lifecycle_model.py found them."""

from __future__ import annotations

import pytest
from conftest import fsync_skipped, person
from sqlalchemy import select

import wallet_sim
from issuer import handover as wf
from issuer.db import Credential, Handover, Phone
from mcred.context import Context
from mcred.handover_actions import HandoverActions
from mcred.provision import parse_holder, provision
from mcred.samples import HOLDER


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    with fsync_skipped():
        yield Context.open(tmp_path_factory.mktemp("states"))


def _provisioned(ctx):
    """A new phone provisioned for a holder of its own (a person of their own: the
    installation is the module's, and one person holds the credentials on one phone)."""
    phone = wallet_sim.create_phone(ctx.home)
    return provision(ctx, phone, parse_holder(person(HOLDER)), key_type="p384", mdoc_batch=1)


def _run(ctx, kind: str, holder_id: str, old: str | None, new: str | None = None) -> str:
    hid = wf.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=old, new_phone_id=new)
    HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner().run(hid)
    return hid


def _state(ctx, *phones: str) -> dict:
    """Each phone's state and credentials (kind, status, reason, serial)."""
    with ctx.sessions() as s:
        return {p: (s.get(Phone, p).state, sorted((c.kind, c.status, c.reason, c.serial or c.status_list_id)
                                                   for c in s.scalars(select(Credential).where(Credential.phone_id == p))))
                for p in phones}


def _handovers(ctx, holder_id: str) -> int:
    with ctx.sessions() as s:
        return s.query(Handover).filter_by(holder_id=holder_id).count()


def test_a_workflow_naming_a_phone_handed_over_already_is_refused(ctx):
    """After a model change A -> B, a workflow that names A is refused, naming why; nothing is
    recorded and nothing changes. Before: a lost_hold of A ran to done and held nothing, the
    lost phone B staying valid; a death of A left B valid; a resale report made A
    ``revoked``; a model change A -> C moved B's credentials to C (the one-phone rule) and
    left B active and unwiped; a found made A ``active`` again, so the issuer would issue to
    the phone it had retired."""
    r = _provisioned(ctx)
    b = wallet_sim.create_phone(ctx.home)
    _run(ctx, "model_change", r.holder_id, r.phone_id, b)
    before = _state(ctx, r.phone_id, b)
    assert before[r.phone_id][0] == "retired" and before[b][0] == "active"
    workflows = _handovers(ctx, r.holder_id)
    c = wallet_sim.create_phone(ctx.home)
    for kind, new in (("lost_hold", None), ("death", None), ("resale_report", None), ("lost_confirmed", None),
                      ("found", None), ("model_change", c), ("renewal", None)):
        old, new = (None, r.phone_id) if kind == "renewal" else (r.phone_id, new)
        with pytest.raises(wf.WorkflowError, match=f"phone {r.phone_id} was handed over already"):
            wf.create(ctx.sessions, kind=kind, holder_id=r.holder_id, old_phone_id=old, new_phone_id=new)
    assert _state(ctx, r.phone_id, b) == before
    assert _handovers(ctx, r.holder_id) == workflows
    # the phone the credentials went to is the one to name
    _run(ctx, "lost_hold", r.holder_id, b)
    assert {st for _k, st, _r, _s in _state(ctx, b)[b][1]} == {"hold"}


def test_found_needs_a_phone_with_credentials_on_hold(ctx):
    """A found ends a lost_hold. Of a phone never reported lost, it revoked the signing
    certificate (cessationOfOperation) and issued another, though the key had never left the
    holder's hands; of a phone revoked (a death), it made the phone ``active`` again."""
    r = _provisioned(ctx)
    before = _state(ctx, r.phone_id)
    for old in (r.phone_id, None):
        with pytest.raises(wf.WorkflowError, match="nothing of phone .* is on hold|found needs the phone"):
            wf.create(ctx.sessions, kind="found", holder_id=r.holder_id, old_phone_id=old)
    assert _state(ctx, r.phone_id) == before
    _run(ctx, "death", r.holder_id, r.phone_id)
    dead = _state(ctx, r.phone_id)
    with pytest.raises(wf.WorkflowError, match=f"nothing of phone {r.phone_id} is on hold"):
        wf.create(ctx.sessions, kind="found", holder_id=r.holder_id, old_phone_id=r.phone_id)
    assert _state(ctx, r.phone_id) == dead and dead[r.phone_id][0] == "revoked"


def test_a_phone_reported_lost_is_found(ctx):
    """The case found is for, unchanged: held -> user-auth and mdoc released, signing
    certificate re-issued."""
    r = _provisioned(ctx)
    _run(ctx, "lost_hold", r.holder_id, r.phone_id)
    _run(ctx, "found", r.holder_id, r.phone_id)
    state, creds = _state(ctx, r.phone_id)[r.phone_id]
    assert state == "active"
    assert sorted((k, st, why) for k, st, why, _s in creds) == [
        ("jpki-auth", "valid", None), ("jpki-sign", "revoked", "cessationOfOperation"), ("jpki-sign", "valid", None),
        ("mdoc", "valid", None)]


@pytest.mark.parametrize("before", ["lost_hold", "death"])
def test_a_renewal_needs_a_live_phone(ctx, before):
    """A renewal (``POST /handovers`` kind renewal) deletes the phone's applets, then
    provisions it anew. Of a phone reported lost (on hold) or revoked (a death), the issuer
    refuses the provisioning, as it refuses any issuance to a phone not active: the workflow
    stopped there, for good, with the phone's SE wiped (a found then released credentials
    the phone no longer held). It is refused before anything is recorded, as a card renewal
    is while a phone is on hold."""
    r = _provisioned(ctx)
    _run(ctx, before, r.holder_id, r.phone_id)
    state = _state(ctx, r.phone_id)
    applets = sorted(a["aid"] for a in wallet_sim.describe(r.phone_id, ctx.home)["secure_element"]["applets"])
    workflows = _handovers(ctx, r.holder_id)
    with pytest.raises(wf.WorkflowError, match=f"phone {r.phone_id} is (lost|revoked)"):
        wf.create(ctx.sessions, kind="renewal", holder_id=r.holder_id, new_phone_id=r.phone_id)
    assert _state(ctx, r.phone_id) == state and _handovers(ctx, r.holder_id) == workflows
    assert sorted(a["aid"] for a in wallet_sim.describe(r.phone_id, ctx.home)["secure_element"]["applets"]) == applets


def test_a_renewal_of_a_live_phone_reissues_everything(ctx):
    r = _provisioned(ctx)
    _run(ctx, "renewal", r.holder_id, None, r.phone_id)
    state, creds = _state(ctx, r.phone_id)[r.phone_id]
    assert state == "active"
    assert sorted((k, st, why) for k, st, why, _s in creds) == [
        ("jpki-auth", "revoked", "superseded"), ("jpki-auth", "valid", None),
        ("jpki-sign", "revoked", "superseded"), ("jpki-sign", "valid", None),
        ("mdoc", "revoked", "superseded"), ("mdoc", "valid", None)]


@pytest.mark.parametrize("kind, reason", [("resale_report", "cessationOfOperation"),
                                          ("lost_confirmed", "cessationOfOperation"),
                                          ("death", "affiliationChanged")])
def test_revoke_old_keeps_a_retired_phone_retired(ctx, kind, reason):
    """specs/revocation.md 1: "a phone `retired` by a handover stays so". No workflow reaches
    revoke_old for a retired phone any more (create refuses it, above), but the action itself
    set the old phone ``revoked`` whatever it was, where issuer.revocation.revoke keeps it
    retired; asked of a retired phone, it now changes nothing."""
    r = _provisioned(ctx)
    b = wallet_sim.create_phone(ctx.home)
    _run(ctx, "model_change", r.holder_id, r.phone_id, b)
    before = _state(ctx, r.phone_id, b)
    assert before[r.phone_id][0] == "retired"
    step = wf.StepContext(handover_id="direct", kind=kind, holder_id=r.holder_id, old_phone_id=r.phone_id,
                          new_phone_id=None, reason=reason, step="revoke_old", results={})
    HandoverActions(ctx, key_type="p384", mdoc_batch=1).revoke_old(step)
    assert _state(ctx, r.phone_id, b) == before
