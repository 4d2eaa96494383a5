"""A crash after each handover step, then a resume, ends in the same final state as an
uninterrupted run (issue 7, "Done when"), over the real actions: registry statuses and
reasons, the SEs' applets and keys, the phones' states."""

from __future__ import annotations

import pytest
from conftest import fsync_skipped, person
from sqlalchemy import select

import wallet_sim
from issuer import handover as wf
from issuer.db import Credential, Phone
from mcred.context import Context
from mcred.handover_actions import HandoverActions
from mcred.provision import parse_holder, provision

HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
          "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
          "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    with fsync_skipped():
        yield Context.open(tmp_path_factory.mktemp("crash"))


def final_state(ctx, phones: dict[str, str]) -> dict:
    """The state by role (old/new), independent of ids and serials."""
    out = {}
    with ctx.sessions() as s:
        for role, pid in phones.items():
            creds = s.scalars(select(Credential).where(Credential.phone_id == pid)).all()
            out[role] = {
                "credentials": sorted((c.kind, c.status, c.reason) for c in creds),
                "phone_state": s.get(Phone, pid).state if s.get(Phone, pid) else None,
            }
            se = wallet_sim.describe(pid, ctx.home)["secure_element"]
            out[role]["applets"] = sorted(a["aid"] for a in se["applets"])
            jpki = [a["details"] for a in se["applets"] if a["aid"] == "D392F000260100000001"]
            out[role]["jpki_slots"] = sorted(jpki[0]["slots"]) if jpki else []
            out[role]["jpki_certs"] = sorted(jpki[0]["certificates"]) if jpki else []
    return out


def setup(ctx, kind):
    """A holder of their own (a person of their own: the installation is the module's, and
    one person holds the credentials on one phone) on a new phone, ready for ``kind``."""
    old = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, old, parse_holder(person(HOLDER)), key_type="p384", mdoc_batch=1)
    phones = {"old": old}
    new = None
    if kind == "model_change":
        new = wallet_sim.create_phone(ctx.home)
        phones["new"] = new
    if kind == "found":
        pre = wf.create(ctx.sessions, kind="lost_hold", holder_id=r.holder_id, old_phone_id=old)
        HandoverActions(ctx).runner().run(pre)
    if kind == "renewal":
        return r.holder_id, None, old, phones
    return r.holder_id, old, new, phones


def run(ctx, kind, crash_after: str | None):
    holder_id, old, new, phones = setup(ctx, kind)
    actions = HandoverActions(ctx, key_type="p384", mdoc_batch=1)
    hid = wf.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=old,
                    new_phone_id=new)
    runner = actions.runner()
    if crash_after is not None:
        h = runner.run(hid, stop_after=crash_after)  # the process dies here
        assert h.step == crash_after
        runner = HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner()  # a new worker
    h = runner.run(hid)
    assert h.state == "done"
    return final_state(ctx, phones)


@pytest.mark.parametrize("kind", ["model_change", "found", "renewal"])
def test_crash_after_each_step_then_resume(ctx, kind):
    reference = run(ctx, kind, None)
    for step in wf.WORKFLOWS[kind][:-1]:
        assert run(ctx, kind, step) == reference, step


class CrashInside:
    """Crash inside a step's TSM job, once, after the TSM step ``at``."""

    def __init__(self, at: str) -> None:
        self.at, self.fired = at, False

    def __call__(self, step: str) -> None:
        if step == self.at and not self.fired:
            self.fired = True
            raise Crash(step)


@pytest.mark.parametrize("kind, tsm_step", [("model_change", "issue-sign-cert"),
                                            ("found", "generate-sign-key"),
                                            ("found", "issue-sign-cert"),
                                            ("model_change", "delete-jpki")])
def test_crash_inside_a_step_then_resume(ctx, kind, tsm_step):
    reference = run(ctx, kind, None)
    holder_id, old, new, phones = setup(ctx, kind)
    hid = wf.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=old,
                    new_phone_id=new)
    hook = CrashInside(tsm_step)
    with pytest.raises(wf.StepFailed):
        HandoverActions(ctx, key_type="p384", mdoc_batch=1, tsm_hook=hook).runner().run(hid)
    assert hook.fired
    h = HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner().run(hid)
    assert h.state == "done"
    got = final_state(ctx, phones)
    assert got == reference, (got, reference)


def test_a_handover_whose_provisioning_was_abandoned_provisions_anew(ctx):
    """The new phone's provisioning stopped inside the handover and the operator gave that
    TSM job up (`mcred tsm abandon`): the handover's next run does not resume the abandoned
    job (which can only fail) but provisions the new phone with a job of its own, and ends
    as an uninterrupted run does, but for the abandoned job's certificate, revoked."""
    from mcred.provision import abandon
    from tsm.jobs import list_jobs

    reference = run(ctx, "model_change", None)
    holder_id, old, new, phones = setup(ctx, "model_change")
    hid = wf.create(ctx.sessions, kind="model_change", holder_id=holder_id, old_phone_id=old,
                    new_phone_id=new)
    with pytest.raises(wf.StepFailed):
        HandoverActions(ctx, key_type="p384", mdoc_batch=1,
                        tsm_hook=CrashInside("write-sign-cert")).runner().run(hid)
    (stuck,) = list_jobs(ctx.engine, new, unfinished=True)
    gave_up = abandon(ctx, stuck.id, "new phone's job stuck")
    assert gave_up.wiped and gave_up.released_holder == holder_id
    h = HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner().run(hid)
    assert h.state == "done"
    got = final_state(ctx, phones)
    assert got["old"] == reference["old"]
    extra = ("jpki-sign", "revoked", "cessationOfOperation")
    assert extra in got["new"]["credentials"]
    got["new"]["credentials"].remove(extra)
    assert got["new"] == reference["new"]
