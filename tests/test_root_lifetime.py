"""A JPKI certificate never outlives its root generation (specs/issuer-keys.md, "The JPKI root
generations", "Its last years"): a relying party refuses a chain once its root has ended
(RFC 5280 6.1.3), and the JPKI's validity is the holder's rule (the 5th or 10th birthday, the
card's expiry), which nothing cuts short. So an issuance whose certificate would run past its
slot's issuing root is refused (``issuer.jpki.RootEndsTooSoon``, naming ``mcred jpki stage`` and
``mcred jpki rollover``, or the staged generation to start), decided per certificate: the
rule of its key type, the holder's birthday and card. A rollover lifts it. Through the TSM the
composition root finds it before anything is done (``mcred.provision.check_jpki_issuance``):
a provisioning registers nothing, a renewal makes no job, a card renewal's or a move's
workflow is not recorded (``issuer.handover.create_in``); one recorded before stops before the
phone is wiped, or before the new signing key is made; and the SE is left as it was.

The roots are made "long ago" by a CA on a clock set back (a root lasts 20 years), so that they
end soon after the wall clock's today, which every other party (the TSM, the holder's card) reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from api_helpers import bearer
from conftest import fsync_skipped, person
from cryptography import x509
from documented import check_every_answer
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker
from test_issuer_jpki_support import HOLDER, new_key, prove, spki
from test_rp_http import run_cli
from test_tsa_rollover import Clock

import wallet_sim
from issuer import holders
from issuer.db import AuditEvent, Credential, Phone
from issuer.jpki import JpkiIssuer, RootEndsTooSoon, profile_for
from issuer.jpki.ca import ROOT_YEARS
from issuer.jpki.issuance import planned_validity
from issuer.keystore import MemoryKeyStore
from mcred.context import Context
from mcred.db import make_engine, migrate
from mcred.provision import JpkiRootEndingError, parse_holder, provision, renew_jpki
from mcred.service import create_app
from protocols.jpki.profile import KeyType
from tsm.jobs import list_jobs

URL = "http://issuer.test"
#: the support module's holder as a holder file has it (its partition code is the registry's own)
FILE_HOLDER = {k: v for k, v in HOLDER.items() if k != "municipality_code"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _made_to_end_at(end: dt.datetime) -> dt.datetime:
    """When a root made now-ish must have been made to end at ``end`` (a root lasts 20 years)."""
    return end - dt.timedelta(days=365 * ROOT_YEARS)


def _issuer(db_url: str, root_end: dt.datetime) -> tuple[JpkiIssuer, Clock]:
    """A CA whose P-384 roots (both slots) end at ``root_end``, its clock back at today."""
    engine = make_engine(db_url)
    migrate(engine)
    now = _now()
    clock = Clock(_made_to_end_at(root_end))
    issuer = JpkiIssuer(sessionmaker(engine, expire_on_commit=False), MemoryKeyStore(), profile_for(URL), clock=clock)
    issuer.setup(KeyType.EC_P384)
    clock.at = now
    assert issuer.root("sign").not_valid_after_utc == root_end.replace(microsecond=0)
    return issuer, clock


def _holder(issuer: JpkiIssuer, phone: str, n: int) -> str:
    hid = holders.register(issuer.sessions, dict(HOLDER, card_number=f"{n:016d}"))
    holders.attach_phone(issuer.sessions, hid, phone)
    return hid


def _issue(issuer: JpkiIssuer, phone: str, slot: str, algorithm: str) -> bytes:
    key = new_key(algorithm)
    job = f"job-{phone}-{slot}"
    nonce = issuer.jpki_challenge(job, phone, slot)
    return issuer.issue_jpki_certificate(job, phone, slot, spki(key), prove(key, nonce))[0]


def _cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _issued(issuer: JpkiIssuer, phone: str) -> tuple[int, int]:
    """(credentials, jpki.issue events) the registry holds for ``phone``."""
    with issuer.sessions() as s:
        creds = s.scalar(select(func.count()).select_from(Credential).where(Credential.phone_id == phone))
        events = s.scalars(select(AuditEvent.detail).where(AuditEvent.action == "jpki.issue")).all()
    return creds, sum(1 for d in events if d.get("phone") == phone)


def _card_and_birth(issuer: JpkiIssuer, holder_id: str) -> tuple[dt.date, dt.date]:
    from issuer.db import Holder

    with issuer.sessions() as s:
        row = s.get(Holder, holder_id)
        return dt.date.fromisoformat(row.data["birth_date"]), row.card_expiry


def test_a_certificate_that_would_outlive_its_root_is_refused_and_a_rollover_lifts_it(db_url):
    """Roots ending in six years: a today's-card (RSA-2048) certificate, which runs to the 5th
    birthday, is issued; a next-card (P-384) one, to the 10th, is refused with nothing recorded,
    naming the staging and the rollover, then the staged generation once there is one; the
    rollover (of that slot alone) lifts it."""
    root_end = _now() + dt.timedelta(days=6 * 365)
    issuer, clock = _issuer(db_url, root_end)
    _holder(issuer, "phone-rsa", 1)
    short = _cert(_issue(issuer, "phone-rsa", "sign", "rsa2048"))
    assert short.not_valid_after_utc <= root_end

    hid = _holder(issuer, "phone-ec", 2)
    birth, card = _card_and_birth(issuer, hid)
    would = planned_validity(KeyType.EC_P384, birth, card, clock()).not_after
    assert would > root_end  # the 10th birthday (and the card) lie past the root's end
    with pytest.raises(RootEndsTooSoon) as refused:
        _issue(issuer, "phone-ec", "sign", "p384")
    e = refused.value
    assert (e.slot, e.root, e.root_not_after, e.not_after, e.staged) == (
        "sign", "jpki-sign-root-g1", root_end, would, None)
    said = str(e)
    assert "jpki-sign-root-g1 ends" in said and "before the certificate would" in said
    assert "mcred jpki stage --slot sign" in said and "mcred jpki rollover --slot sign" in said
    assert _issued(issuer, "phone-ec") == (0, 0)  # nothing issued, nothing recorded
    # the check the composition root asks before the SE makes a key says the same
    ahead = issuer.issuance_refusal(("auth", "sign"), KeyType.EC_P384, birth, card)
    assert (ahead.slot, ahead.root, ahead.not_after) == ("auth", "jpki-auth-root-g1", would)
    assert issuer.issuance_refusal(("sign",), KeyType.RSA_2048, birth, card) is None

    staged = issuer.stage("sign", KeyType.EC_P384).generation
    with pytest.raises(RootEndsTooSoon, match="start the staged generation jpki-sign-root-g2 .*mcred jpki "
                                              "rollover --slot sign") as refused:
        _issue(issuer, "phone-ec", "sign", "p384")
    assert refused.value.staged == "jpki-sign-root-g2"

    issuer.rollover("sign")
    cert = _cert(_issue(issuer, "phone-ec", "sign", "p384"))
    assert cert.not_valid_after_utc == would <= staged.certificate.not_valid_after_utc
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == staged.key_id  # issued by the generation started
    with pytest.raises(RootEndsTooSoon, match="jpki-auth-root-g1"):  # the other slot, as it was
        _issue(issuer, "phone-ec", "auth", "p384")
    issuer.rollover("auth", KeyType.EC_P384)
    _issue(issuer, "phone-ec", "auth", "p384")
    assert _issued(issuer, "phone-ec") == (2, 2)
    issuer.sessions.kw["bind"].dispose()


@pytest.mark.parametrize("margin, issued", [(dt.timedelta(0), True), (dt.timedelta(seconds=-1), False)],
                         ids=["root-ends-with-it", "root-ends-a-second-before"])
def test_the_refusal_is_to_the_second(tmp_path, margin, issued):
    """A certificate that ends with its root is issued; one a second longer is not."""
    birth = dt.date.fromisoformat(HOLDER["birth_date"])
    probe, _ = _issuer(f"sqlite:///{tmp_path / 'probe.sqlite3'}", _now() + dt.timedelta(days=30 * 365))
    hid = _holder(probe, "phone-0", 0)
    card = _card_and_birth(probe, hid)[1]
    would = planned_validity(KeyType.EC_P384, birth, card, _now()).not_after
    issuer, _clock = _issuer(f"sqlite:///{tmp_path / 'db.sqlite3'}", would + margin)
    _holder(issuer, "phone-1", 1)
    if issued:
        assert _cert(_issue(issuer, "phone-1", "auth", "p384")).not_valid_after_utc == would
    else:
        with pytest.raises(RootEndsTooSoon):
            _issue(issuer, "phone-1", "auth", "p384")


# --- through the TSM: refused before the SE is touched ------------------------------------------


def _roots_ending_in(ctx: Context, days: int) -> None:
    """Both JPKI roots of the installation rolled over onto generations made by a CA whose clock
    is set back, so that they end ``days`` from now."""
    made = _now() - dt.timedelta(days=365 * ROOT_YEARS - days)
    past = JpkiIssuer(ctx.sessions, ctx.keystore, profile_for(ctx.public_url), clock=lambda: made)
    for slot in ("sign", "auth"):
        past.rollover(slot, KeyType.EC_P384)


def _se(ctx: Context, phone: str) -> list:
    """The applets of the phone's SE as ``mcred phone show`` describes them: each one's keys and
    certificates (the security domain's counters aside: reading the SE moves them)."""
    return wallet_sim.describe(phone, ctx.home)["secure_element"]["applets"]


def test_provisioning_renewals_and_workflows_are_refused_before_the_se_is_touched(home):
    """With the roots ending in three years, today's card's certificates (RSA-2048, to the 5th
    birthday) and the next card's (P-384, to the 10th) would outlive them: a provisioning is
    refused before anything is registered or run, a certificate renewal before its job is made
    (the library, the command, the route), a card renewal and a move before their workflow is
    recorded (the new card, the new address not recorded either); workflows recorded before the
    roots came so near their end stop at the step that would touch the SE: a card renewal's
    before it wipes the phone, a move's before the new signing key is made. Each phone's SE is as
    it was (found by the issuer alone, the TSM's GENERATE KEY had replaced the slot's key and
    erased its certificate). A rollover of both roots lifts it: the workflows resumed, the
    renewal and a new move then run."""
    from issuer import handover as wf
    from issuer.db import Holder
    from issuer.handover import StepFailed, WorkflowError
    from mcred.handover_actions import HandoverActions, change_basic_four, renew_card

    with fsync_skipped():
        ctx = Context.open(home)
        phone = wallet_sim.create_phone(home)
        secrets = {"pin": "1234", "password": "ABCD1234", "puk": "12345678"}
        done = provision(ctx, phone, parse_holder(person(FILE_HOLDER, **secrets)), key_type="rsa2048", mdoc_batch=1)
        hid = done.holder_id
        # recorded while the roots have years ahead, run when they have not
        moved = wf.create(ctx.sessions, kind="basic_four_change", holder_id=hid, old_phone_id=phone, actor="test")
        renewal = wf.create(ctx.sessions, kind="renewal", holder_id=hid, new_phone_id=phone, actor="test",
                            jpki_key_type="p384")
        _roots_ending_in(ctx, 3 * 365)
        before = _se(ctx, phone)

        with pytest.raises(JpkiRootEndingError, match="no JPKI sign certificate can be issued now, nothing was "
                                                      "done: the sign root generation jpki-sign-root-g2 ends") as e:
            renew_jpki(ctx, phone, early=True, reason="drill")
        assert e.value.refusal.root == "jpki-sign-root-g2" and "mcred jpki stage --slot sign" in str(e.value)
        said = json.loads(run_cli("jpki", "renew", "--phone", phone, "--early", "--reason", "drill", "--json",
                                  code=2))
        assert "jpki-sign-root-g2 ends" in said["error"] and "mcred jpki rollover --slot sign" in said["error"]
        api = create_app(ctx, job_workers=1)
        try:
            with contextlib.closing(TestClient(api)) as client:
                check_every_answer(client, api)
                r = client.post("/certificate-renewals", json={"phone_id": phone, "early": True, "reason": "drill"},
                                headers=bearer(ctx.sessions, ["issuer"])["issuer"])
                assert r.status_code == 409 and r.json()["type"] == "/problems/provisioning-refused", r.text
                assert "jpki-sign-root-g2 ends" in r.json()["detail"] and "POST /trust/jpki-rollover" in r.json()["detail"]
        finally:
            api.state.jobs.shutdown()
        assert not list_jobs(ctx.engine, phone, kind="renew-jpki")
        with ctx.sessions() as s:
            assert not s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.renew")).all()

        other = wallet_sim.create_phone(home)
        fresh = _se(ctx, other)
        with pytest.raises(JpkiRootEndingError, match="jpki-sign-root-g2 ends"):
            provision(ctx, other, parse_holder(person(FILE_HOLDER)), key_type="p384", mdoc_batch=1)
        with ctx.sessions() as s:
            assert s.get(Phone, other) is None or s.get(Phone, other).holder_id is None  # nothing registered
        assert not list_jobs(ctx.engine, other) and _se(ctx, other) == fresh

        with ctx.sessions() as s:
            card, address = s.get(Holder, hid).card_number, s.get(Holder, hid).data["address"]
        with pytest.raises(WorkflowError, match="renewal of holder .*no JPKI sign certificate can be issued now: "
                                                "the sign root generation jpki-sign-root-g2 ends"):
            renew_card(ctx, hid, reason="drill", key_type="p384")
        with pytest.raises(WorkflowError, match="basic_four_change of holder .*jpki-sign-root-g2 ends"):
            change_basic_four(ctx, hid, {"address": "東京都千代田区永田町1-7-1"}, reason="moved")
        with ctx.sessions() as s:  # neither the new card nor the move recorded
            assert (s.get(Holder, hid).card_number, s.get(Holder, hid).data["address"]) == (card, address)

        actions = HandoverActions(ctx, key_type="p384", given={phone: secrets})
        with pytest.raises(StepFailed, match="step 'reissue_sign' .*jpki-sign-root-g2 ends"):
            actions.runner("test").run(moved)  # the old signing certificate superseded, no new key made
        assert _se(ctx, phone) == before
        with pytest.raises(StepFailed, match="step 'reissue_all' .*jpki-sign-root-g2 ends"):
            actions.runner("test").run(renewal)
        assert _se(ctx, phone) == before  # the phone was not wiped, nor was a key made
        assert not list_jobs(ctx.engine, phone, kind="delete-credentials")

        run_cli("jpki", "rollover", "--slot", "sign", "--key-type", "p384")
        run_cli("jpki", "rollover", "--slot", "auth", "--key-type", "p384")
        assert actions.runner("test").run(moved).state == "done"
        renewed = renew_jpki(ctx, phone, early=True, reason="drill")
        assert {slot for slot, _old, _der in renewed.renewed} == {"sign", "auth"}
        assert actions.runner("test").run(renewal).state == "done"
        assert change_basic_four(ctx, hid, {"address": "東京都千代田区永田町1-7-1"}, reason="moved")["state"] == "done"
        ctx.engine.dispose()


def test_the_doctor_warns_before_any_certificate_is_refused(home):
    """`mcred doctor` asks for the rollover from ROOT_NOTICE_DAYS before the root's last
    ROOT_RENEW_DAYS; on that day no certificate a holder could be issued is refused yet (the
    longest, a next card's to the 10th birthday, whatever the birthday, uncapped by a card), so
    the warning comes before the first refusal; the finding says refusals come."""
    from issuer.jpki.ca import ROOT_NOTICE_DAYS, ROOT_RENEW_DAYS
    from mcred.doctor import _jpki_roots

    ctx = Context.open(home)
    clock = Clock(_now())
    jpki = JpkiIssuer(ctx.sessions, ctx.keystore, profile_for(ctx.public_url), clock=clock)
    jpki.setup(KeyType.EC_P384)
    end = jpki.root("sign").not_valid_after_utc
    clock.at = end - dt.timedelta(days=ROOT_RENEW_DAYS + ROOT_NOTICE_DAYS - 1)
    found = _jpki_roots(ctx, clock.at)
    assert not found.ok and "refuses the certificates that would outlive it" in found.detail
    assert "mcred jpki stage --slot sign" in found.fix
    today = clock.at.date()
    for days in range(366):  # every birthday of the year, born 30 years before
        birth = dt.date(today.year - 30, 1, 1) + dt.timedelta(days=days)
        assert jpki.issuance_refusal(("sign", "auth"), KeyType.EC_P384, birth, None) is None, birth
    clock.at = end - dt.timedelta(days=9 * 365)  # nine years left: a ten-year certificate is refused
    assert jpki.issuance_refusal(("sign",), KeyType.EC_P384, dt.date(1990, 4, 1), None) is not None
    ctx.engine.dispose()
