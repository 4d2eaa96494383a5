"""Holders who are minors (seed 004, 「マイナンバーカード等の有効期限」): the card of a holder
under 18 at issue runs to the 5th birthday (not the 10th), one rule for the registry and the
mdoc (protocols.birthdays); and no signing certificate (署名用電子証明書) for a holder under 15."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from conftest import fsync_skipped
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

import wallet_sim
from issuer import handover as wf
from issuer.db import AuditEvent, Credential, Holder
from issuer.holders import attach_phone, register
from issuer.holders import renew_card as registry_renew_card
from issuer.jpki import JpkiIssuer, SigningCertificateRefused, profile_for
from issuer.keystore import MemoryKeyStore
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.db import make_engine, migrate
from mcred.handover_actions import HandoverActions, change_basic_four, renew_card
from mcred.provision import ProvisionError, issue_sign, provision, reset_secrets, tsm_for
from mcred.provision import parse_holder as parse_holder_file
from mcred.provision import register as register_on_phone
from protocols import birthdays
from protocols.cardsub import card_expiry, parse_holder
from protocols.jpki.validity import NthBirthday
from tsm.errors import IssuerPortError, JobInputError
from tsm.jobs import JobSecrets, list_jobs

HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
          "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
          "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"}
#: 2026-06-01 in Japan (03:00 UTC = 12:00 JST)
NOW = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    migrate(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _registered_expiry(sessions, birth: str, now: dt.datetime = NOW) -> dt.date:
    hid = register(sessions, parse_holder(dict(HOLDER, birth_date=birth), today=dt.date(2026, 6, 1)), now=now)
    with sessions() as s:
        return s.get(Holder, hid).card_expiry


@pytest.mark.parametrize(("birth", "expiry"), [
    ("2016-05-10", "2031-05-10"),  # 10 years old: the 5th birthday after issue
    ("2008-06-02", "2030-06-02"),  # 17 (18 tomorrow, the 1st birthday after): under 18 at issue, the 5th
    ("2008-06-01", "2036-06-01"),  # 18 today: the 10th (the birthday of issue does not count)
    ("1990-04-01", "2036-04-01"),  # an adult: the 10th, as before
])
def test_the_registry_gives_a_minor_a_card_until_the_5th_birthday(sessions, birth, expiry):
    """`mcred holder show` said "until 2036-05-10" for a 10-year-old: the registry counted 10
    birthdays whatever the age, where the card (and the mdoc's own rule) counts 5 under 18."""
    assert _registered_expiry(sessions, birth) == dt.date.fromisoformat(expiry)
    assert card_expiry(dt.date.fromisoformat(birth), dt.date(2026, 6, 1)) == dt.date.fromisoformat(expiry)


def test_a_29_february_birthday_ends_a_validity_on_28_february_everywhere(sessions):
    """The registry and the JPKI certificates took 28 February in a common year, the mdoc's
    card validity 1 March: one rule now (みなし誕生日), while age still turns on 1 March."""
    leap = dt.date(2012, 2, 29)  # 14 on 2026-06-01: the 5th birthday after is in 2031
    assert _registered_expiry(sessions, "2012-02-29") == dt.date(2031, 2, 28)
    assert card_expiry(leap, dt.date(2026, 6, 1)) == dt.date(2031, 2, 28)
    assert NthBirthday(5).last_day(dt.date(2026, 6, 1), leap) == dt.date(2031, 2, 28)
    adult = dt.date(1988, 2, 29)
    assert card_expiry(adult, dt.date(2026, 6, 1)) == dt.date(2036, 2, 29)  # a leap year
    assert card_expiry(adult, dt.date(2027, 6, 1)) == dt.date(2037, 2, 28)
    # issued on 28 February of a common year, that birthday is the day of issue: not counted
    assert card_expiry(adult, dt.date(2027, 2, 28)) == dt.date(2037, 2, 28)
    assert card_expiry(adult, dt.date(2027, 2, 27)) == dt.date(2036, 2, 29)
    # age reckoning is another question: a year older on 1 March in a common year
    assert birthdays.age_on(leap, dt.date(2027, 2, 28)) == 14
    assert birthdays.age_on(leap, dt.date(2027, 3, 1)) == 15


def test_a_card_issued_on_the_day_japan_is_already_on(sessions):
    """The day of issue is the date in Japan: at 23:30 UTC on 31 May it is 1 June in Tokyo,
    the 18th birthday of a holder born 2008-06-01, who gets 10 birthdays."""
    late = dt.datetime(2026, 5, 31, 23, 30, tzinfo=dt.UTC)
    assert _registered_expiry(sessions, "2008-06-01", late) == dt.date(2036, 6, 1)


def test_a_renewed_card_of_a_minor_runs_5_birthdays(sessions):
    hid = register(sessions, parse_holder(dict(HOLDER, birth_date="2016-05-10")), now=NOW)
    out = registry_renew_card(sessions, hid, actor="t", reason="renewed", now=NOW)
    assert out["card_expiry"] == "2031-05-10"


# --- no signing certificate under 15 ---------------------------------------------------------
JPKI_AID = "D392F000260100000001"


def _born_years_ago(years: int, days: int = 0) -> str:
    """The birth date of someone ``years`` old today in Japan (``days`` later: that much younger)."""
    today = birthdays.today_in_japan(dt.datetime.now(dt.UTC))
    day = birthdays.birthday_in(today, today.year - years) + dt.timedelta(days=days)
    return day.isoformat()


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    with fsync_skipped():
        yield Context.open(tmp_path_factory.mktemp("minors"))


def _kinds(ctx, phone: str) -> list[tuple[str, str]]:
    with ctx.sessions() as s:
        return sorted((c.kind, c.status) for c in s.scalars(select(Credential).where(Credential.phone_id == phone)))


def _jpki(ctx, phone: str) -> dict:
    se = wallet_sim.describe(phone, ctx.home)["secure_element"]
    return next(a for a in se["applets"] if a["aid"] == JPKI_AID)["details"]


_CHILDREN = itertools.count()


def _child(ctx, tmp_path, years: int = 10, **extra) -> tuple[str, dict]:
    """``mcred provision --phone new --holder child.json --json`` for a holder ``years`` old,
    a child of their own (an address of their own: the installation is the module's, and the
    registry takes the same identity fields for the same person, one phone per person)."""
    f = tmp_path / "child.json"
    extra = {"address": f"{HOLDER['address']}-{next(_CHILDREN)}", **extra}
    f.write_text(json.dumps(dict(HOLDER, given_name="花", birth_date=_born_years_ago(years), **extra),
                            ensure_ascii=False), encoding="utf-8")
    phone = wallet_sim.create_phone(ctx.home)
    r = CliRunner().invoke(cli, ["provision", "--phone", phone, "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1", "--json"], env={"MCRED_HOME": str(ctx.home)})
    assert r.exit_code == 0, r.output
    return phone, json.loads(r.stdout)


def test_a_child_gets_the_user_authentication_certificate_and_mdocs_and_no_signing_certificate(ctx, tmp_path):
    """A 10-year-old got both certificates: the signing one (署名用電子証明書) is not issued under
    15. Provisioning issues the user-authentication certificate and the mdocs only, the SE's
    signing slot stays empty and its password unset, and every output says so."""
    phone, out = _child(ctx, tmp_path, password="ABC123")  # a password in the file is not used
    assert out["sign_certificate"] is None and "under 15" in out["sign_withheld"]
    assert out["auth_certificate"]["serial"] and out["mdocs"] == 1
    assert "password" not in out["secrets_shown_once"] and {"pin", "puk"} <= set(out["secrets_shown_once"])
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("mdoc", "valid")]
    jpki = _jpki(ctx, phone)
    assert jpki["slots"]["signing"] == {"algorithm": None, "public_key_sha256": None}
    assert jpki["slots"]["user_authentication"]["algorithm"] == "p384"
    assert set(jpki["certificates"]) == {"000A", "000B"}  # no signing certificate nor its CA's
    assert jpki["secrets"]["signing_password"]["set"] is False
    assert jpki["secrets"]["user_auth_pin"]["set"] is True
    # the TSM's job provisioned the auth slot only
    job = list_jobs(ctx.engine, phone, kind="provision")[-1]
    assert job.input["jpki_slots"] == ["auth"]
    assert not any("sign" in step for step in job.steps)
    # the text output and `mcred holder show` say so
    runner = CliRunner(env={"MCRED_HOME": str(ctx.home)})
    shown = runner.invoke(cli, ["holder", "show", out["holder"]])
    assert shown.exit_code == 0 and "no signing certificate: holder under 15" in shown.stdout
    detail = json.loads(runner.invoke(cli, ["holder", "show", out["holder"], "--json"]).stdout)
    assert detail["signing_certificate_from"] == birthdays.turns(
        dt.date.fromisoformat(detail["data"]["birth_date"]), 15).isoformat()
    assert detail["card_expiry"] == birthdays.card_expiry(
        dt.date.fromisoformat(detail["data"]["birth_date"]),
        birthdays.today_in_japan(dt.datetime.now(dt.UTC))).isoformat()


def test_the_text_output_says_no_signing_certificate(ctx, tmp_path):
    f = tmp_path / "child.json"
    f.write_text(json.dumps(dict(HOLDER, given_name="翼", birth_date=_born_years_ago(14, days=1)),
                            ensure_ascii=False), encoding="utf-8")  # 15 tomorrow: still 14
    r = CliRunner().invoke(cli, ["provision", "--phone", "new", "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1"], env={"MCRED_HOME": str(ctx.home)})
    assert r.exit_code == 0, r.output
    assert "no signing certificate: holder under 15" in r.stdout
    assert "sign certificate serial" not in r.stdout and "auth certificate serial" in r.stdout
    assert "password" not in r.stdout.lower().replace("no signing certificate", "")


def test_a_15_year_old_gets_both(ctx, tmp_path):
    phone = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, phone, parse_holder_file(dict(HOLDER, given_name="光", birth_date=_born_years_ago(15))),
                  key_type="p384", mdoc_batch=1)
    assert r.sign_certificate is not None and r.sign_withheld is None and "password" in r.generated
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("jpki-sign", "valid"), ("mdoc", "valid")]
    assert _jpki(ctx, phone)["secrets"]["signing_password"]["set"] is True
    assert r.summary()["sign_certificate"]["serial"]


def test_the_ca_refuses_a_signing_certificate_to_a_holder_under_15(tmp_path):
    """Defence in depth: whatever a caller planned, the CA issues no signing certificate to
    a holder under 15 (a typed error that says why), and the user-authentication one as ever."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ca.db'}")
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    jpki = JpkiIssuer(sessions, MemoryKeyStore(), profile_for("http://issuer.test"))
    jpki.setup()
    hid = register(sessions, parse_holder(dict(HOLDER, birth_date=_born_years_ago(14, days=1))))
    attach_phone(sessions, hid, "phone-1")

    def proof(job, slot):
        key = ec.generate_private_key(ec.SECP384R1())
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        nonce = jpki.jpki_challenge(job, "phone-1", slot)
        return spki, key.sign(nonce + spki, ec.ECDSA(hashes.SHA384()))

    with pytest.raises(SigningCertificateRefused, match="under 15") as refused:
        jpki.issue_jpki_certificate("job-1", "phone-1", "sign", *proof("job-1", "sign"))
    assert refused.value.eligible_from == birthdays.turns(dt.date.fromisoformat(_born_years_ago(14, days=1)),
                                                          15).isoformat()
    cert, _ca = jpki.issue_jpki_certificate("job-1", "phone-1", "auth", *proof("job-1", "auth"))
    assert cert
    with sessions() as s:
        assert [c.kind for c in s.scalars(select(Credential))] == ["jpki-auth"]
    engine.dispose()


def test_a_tsm_job_planned_with_a_signing_slot_for_a_child_stops_at_the_cas_refusal(ctx):
    """The TSM job's slots are its input; planned wrong for a child, the CA still refuses,
    and the job stops interrupted naming why (not a traceback, nothing signed)."""
    phone = wallet_sim.create_phone(ctx.home)
    holder = parse_holder_file(dict(HOLDER, given_name="空", birth_date=_born_years_ago(9)))
    register_on_phone(ctx, holder, phone)
    tsm = tsm_for(ctx)
    job = tsm.create_job(phone, "provision", {"algorithm": "p384", "mdoc_count": 0, "jpki_slots": ["sign", "auth"]},
                         JobSecrets("1234", "ABC123", None))
    with pytest.raises(IssuerPortError, match="under 15"):
        tsm.run(job, wallet_sim.open_secure_element(phone, ctx.home).transmit)
    assert tsm.job(job).state == "interrupted" and tsm.job(job).current_step == "issue-sign-cert"
    assert _kinds(ctx, phone) == []


@pytest.mark.parametrize(("slots", "password", "why"), [
    (["sign"], "ABC123", "auth"),
    (["auth", "auth"], None, "auth"),
    (["auth", "mdoc"], None, "auth"),
    ("auth", None, "auth"),
    (["auth"], "ABC123", "only with it"),
    (["sign", "auth"], None, "only with it"),
])
def test_the_jobs_jpki_slots_are_checked_like_its_other_input(ctx, slots, password, why):
    with pytest.raises(JobInputError, match=why):
        tsm_for(ctx).create_job("phone-x", "provision", {"algorithm": "p384", "jpki_slots": slots},
                                JobSecrets("1234", password, None))


def test_a_childs_phone_refuses_to_sign_clearly_and_resets_only_the_pin(ctx, tmp_path):
    phone, out = _child(ctx, tmp_path)
    runner = CliRunner(env={"MCRED_HOME": str(ctx.home)})
    doc, pw = tmp_path / "doc.txt", tmp_path / "pw"
    doc.write_text("hello")
    pw.write_text("ABC123")
    signed = runner.invoke(cli, ["jpki", "sign", str(doc), "--phone", phone, "--pin-file", str(pw)])
    assert signed.exit_code == 1, signed.output  # the command's refusal, not a traceback
    assert "no signing certificate" in signed.output and "under 15" in signed.output
    status = runner.invoke(cli, ["jpki", "pin", "status", "--phone", phone])
    assert "signing password not set (no signing certificate)" in status.stdout
    with pytest.raises(ProvisionError, match="no signing certificate .*under 15"):
        reset_secrets(ctx, phone, slots=("sign",))
    reset = runner.invoke(cli, ["jpki", "pin", "reset", "--phone", phone, "--json"])
    assert reset.exit_code == 0, reset.output
    assert json.loads(reset.stdout)["reset"] == ["auth"]
    assert _jpki(ctx, phone)["secrets"]["signing_password"]["set"] is False


def test_a_childs_handover_renewal_and_move_keep_working_without_a_signing_certificate(ctx, tmp_path):
    """機種変更, カードの更新 and 異動 of a child: each workflow that re-issues certificates plans
    none for signing, and ends done."""
    old, out = _child(ctx, tmp_path)
    holder_id = out["holder"]
    new = wallet_sim.create_phone(ctx.home)
    hid = wf.create(ctx.sessions, kind="model_change", holder_id=holder_id, old_phone_id=old, new_phone_id=new,
                    actor="test")
    actions = HandoverActions(ctx, key_type="p384")
    h = actions.runner("test").run(hid)
    assert h.state == "done"
    assert _kinds(ctx, new) == [("jpki-auth", "valid"), ("mdoc", "valid")]
    assert _kinds(ctx, old) == [("jpki-auth", "revoked"), ("mdoc", "revoked")]
    assert "password" not in actions.new_phone_secrets(hid, new)
    assert _jpki(ctx, new)["slots"]["signing"]["algorithm"] is None

    moved = change_basic_four(ctx, holder_id, {"address": "東京都千代田区千代田2-2"}, reason="転居届", actor="test")
    assert moved["state"] == "done" and "under 15" in moved["sign_withheld"]
    assert [k for k in _kinds(ctx, new) if k[1] == "valid"] == [("jpki-auth", "valid"), ("mdoc", "valid")]

    renewed = renew_card(ctx, holder_id, reason="有効期限の更新", actor="test")
    assert renewed["state"] == "done" and "under 15" in renewed["sign_withheld"]
    assert "password" not in renewed["secrets"] and "pin" in renewed["secrets"]
    birth = dt.date.fromisoformat(_born_years_ago(10))
    assert renewed["card"]["card_expiry"] == birthdays.nth_birthday_after(
        birth, birthdays.today_in_japan(dt.datetime.now(dt.UTC)), 5).isoformat()
    assert [k for k in _kinds(ctx, new) if k[1] == "valid"] == [("jpki-auth", "valid"), ("mdoc", "valid")]
    assert _jpki(ctx, new)["secrets"]["signing_password"]["set"] is False


def test_the_api_provisions_a_child_with_a_null_signing_certificate_as_documented(home, every_answer_checked):
    """POST /provisioning for a 10-year-old, without a signing password (one given is refused,
    422 naming body.password: nothing would use it): the job's result has ``sign_certificate:
    null`` (and ``sign_withheld``), held to the OpenAPI document like every answer; GET
    /holders/{id} names the day a signing certificate may be issued; a PIN reset of ``sign``
    fails naming why."""
    from fastapi.testclient import TestClient
    from test_api_flows import _wait

    from issuer.api.auth import create_token
    from mcred.api_models import Job
    from mcred.service import create_app

    api_ctx = Context.open(home)
    tok = {s: {"Authorization": f"Bearer {create_token(api_ctx.sessions, [s])[1]}"} for s in ("tsm", "issuer")}
    child = dict(HOLDER, birth_date=_born_years_ago(10))
    with TestClient(create_app(api_ctx, job_workers=1)) as c:
        phone = c.post("/phones", headers=tok["tsm"], json={"model": "child"}).json()["id"]
        body = {"phone_id": phone, "holder": child, "key_type": "p384", "mdoc_batch": 1, "pin": "1111",
                "puk": "11112222"}
        r = c.post("/provisioning", headers=tok["issuer"], json={**body, "password": "NOTUSED1"})
        assert r.status_code == 422 and r.json()["errors"][0]["location"] == "body.password", r.text
        from_ = birthdays.turns(dt.date.fromisoformat(child["birth_date"]), 15).isoformat()
        assert "under 15" in r.json()["detail"] and from_ in r.json()["detail"]
        assert _kinds(api_ctx, phone) == []  # refused at the door: nothing registered or issued
        r = c.post("/provisioning", headers=tok["issuer"], json=body)
        assert r.status_code == 202, r.text
        done = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
        assert done["state"] == "succeeded", done
        result = done["result"]
        assert result["sign_certificate"] is None and "under 15" in result["sign_withheld"]
        assert result["auth_certificate"]["serial"]
        assert Job.model_validate(done).root.result.sign_certificate is None
        holder = c.get(f"/holders/{result['holder_id']}", headers=tok["issuer"]).json()
        assert holder["signing_certificate_from"] == birthdays.turns(
            dt.date.fromisoformat(child["birth_date"]), 15).isoformat()
        r = c.post("/pin-resets", headers=tok["issuer"], json={"phone_id": phone, "slots": ["sign"],
                                                                "password": "ABCDEF"})
        failed = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
        assert failed["state"] == "failed" and "no signing certificate" in json.dumps(failed["error"],
                                                                                       ensure_ascii=False)
    assert {"GET /holders/{holder_id} 200", "POST /provisioning 422"} <= set(every_answer_checked)


# --- a signing certificate once the holder is 15 -------------------------------------------------


def _a_year_passes_to_15(ctx, holder_id: str) -> None:
    """The holder, 14 when provisioned, turns 15: their registered birth date moved to 15 years
    ago today stands for the year passing (the clocks of the CA and the composition root are
    the wall clock)."""
    from sqlalchemy import update

    with ctx.sessions.begin() as s:
        data = dict(s.get(Holder, holder_id).data, birth_date=_born_years_ago(15))
        s.execute(update(Holder).where(Holder.id == holder_id).values(data=data))


class Crash(Exception):
    pass


def test_a_holder_who_turned_15_gets_a_signing_certificate_onto_the_same_phone(ctx, tmp_path):
    birth = _born_years_ago(14, days=1)  # 15 tomorrow
    f = tmp_path / "teen.json"
    f.write_text(json.dumps(dict(HOLDER, given_name="翔", birth_date=birth), ensure_ascii=False), encoding="utf-8")
    runner = CliRunner(env={"MCRED_HOME": str(ctx.home)})
    phone = wallet_sim.create_phone(ctx.home)
    out = json.loads(runner.invoke(cli, ["provision", "--phone", phone, "--holder", str(f), "--key-type", "p384",
                                         "--mdoc-batch", "1", "--json"]).stdout)
    assert out["sign_certificate"] is None
    # refused while the holder is under 15, naming from when
    early = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone])
    assert early.exit_code == 2 and "under 15" in early.output
    assert f"from {birthdays.turns(dt.date.fromisoformat(birth), 15).isoformat()}" in early.output
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("mdoc", "valid")]

    _a_year_passes_to_15(ctx, out["holder"])
    # a crash inside the job, then the same command finishes it: one key, one certificate
    def crash(step):
        if step == "write-sign-cert":
            raise Crash(step)

    with pytest.raises(Crash):
        issue_sign(ctx, phone, after_step=crash)
    got = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone, "--json"])
    assert got.exit_code == 0, got.output
    body = json.loads(got.stdout)
    assert body["resumed"] is True and body["sign_certificate"]["serial"]
    password = body["secrets_shown_once"]["password"]
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("jpki-sign", "valid"), ("mdoc", "valid")]
    jpki = _jpki(ctx, phone)
    assert jpki["slots"]["signing"]["algorithm"] == "p384" and "0001" in jpki["certificates"]
    assert jpki["certificates"]["0001"]["serial"] == body["sign_certificate"]["serial"].upper()
    assert jpki["secrets"]["signing_password"]["set"] is True
    # it signs with the password shown
    doc, pw = tmp_path / "doc.txt", tmp_path / "pw"
    doc.write_text("申請書")
    pw.write_text(password)
    signed = runner.invoke(cli, ["jpki", "sign", str(doc), "--phone", phone, "--pin-file", str(pw)])
    assert signed.exit_code == 0, signed.output
    # a second one is refused while this one lives
    again = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone, "--password-file", str(pw)])
    assert again.exit_code == 2 and "live signing certificate" in again.output
    with ctx.sessions() as s:
        issued = s.scalars(select(Credential).where(Credential.phone_id == phone, Credential.kind == "jpki-sign")).all()
    assert len(issued) == 1
    # audited: the TSM's job, the issuer's issuance
    audit = json.loads(runner.invoke(cli, ["audit", "--subject", issued[0].id, "--json"]).stdout)
    assert [e["action"] for e in audit] == ["jpki.issue"]


def test_issue_sign_with_a_password_file_and_its_job_input_checked(ctx, tmp_path):
    phone, out = _child(ctx, tmp_path, years=14)
    _a_year_passes_to_15(ctx, out["holder"])
    pw = tmp_path / "pw"
    pw.write_text("bad pw")
    runner = CliRunner(env={"MCRED_HOME": str(ctx.home)})
    bad = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone, "--password-file", str(pw)])
    assert bad.exit_code == 2 and "signing_password" in bad.output
    pw.write_text("MYPASS15")
    got = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone, "--password-file", str(pw)])
    assert got.exit_code == 0, got.output
    assert "signing certificate serial" in got.stdout and "MYPASS15" not in got.stdout
    for secrets_, job_input in ((JobSecrets("1234", "ABC123", None), {"algorithm": "p384"}),
                                (JobSecrets(None, None, None), {"algorithm": "p384"}),
                                (JobSecrets(None, "ABC123", None), {"algorithm": "ed25519"}),
                                (JobSecrets(None, "ABC123", None), {"algorithm": "p384", "slots": ["sign"]})):
        with pytest.raises(JobInputError):
            tsm_for(ctx).create_job(phone, "issue-sign", job_input, secrets_)


# --- an issue-sign given up ----------------------------------------------------------------------


def _stopped_sign_issue(ctx, tmp_path, at: str, password: str | None) -> tuple[str, str]:
    """A 15-year-old's phone (provisioned at 14) whose ``issue-sign`` job died after step ``at``
    did its work, before its record: (phone, job)."""
    phone, out = _child(ctx, tmp_path, years=14)
    _a_year_passes_to_15(ctx, out["holder"])

    def crash(step: str) -> None:
        if step == at:
            raise Crash(step)

    with pytest.raises(Crash):
        issue_sign(ctx, phone, password=password, after_step=crash)
    (job,) = list_jobs(ctx.engine, phone, kind="issue-sign", unfinished=True)
    return phone, job.id


def _sign_rows(ctx, phone: str) -> list[Credential]:
    with ctx.sessions() as s:
        return s.scalars(select(Credential).where(Credential.phone_id == phone, Credential.kind == "jpki-sign")).all()


@pytest.mark.parametrize(("at", "password", "found", "kept"), [
    # no certificate issued: nothing to revoke (the key generated stays, the next job replaces it)
    ("generate-sign-key-anew", "MYPASS15", None, False),
    # issued, never written: valid with no phone holding it
    ("issue-sign-cert", "MYPASS15", None, False),
    # written, the password not set: nothing guards the key, the holder cannot sign
    ("write-sign-cert", "MYPASS15", "password_unset", False),
    # written and the holder's own password set: in use, it stays
    ("set-sign-password", "MYPASS15", "written", True),
    # written with a generated password the abandon erases, never shown: revoked unread
    ("set-sign-password", None, None, False),
])
def test_an_abandoned_sign_issue_revokes_only_a_certificate_not_in_use(ctx, tmp_path, at, password, found, kept):
    """Abandoning an ``issue-sign`` job revoked every certificate it had issued, a signing
    certificate on the phone with the password its holder chose too, and said nothing of
    what was left. Now a certificate is kept when the SE holds it with its key and the
    password set (a read-jpki job reads the slot) and the password is the holder's own;
    otherwise it is revoked and marked (``meta.sign_issue_abandoned``), and the answer, the
    text and the issuer's audit (``jpki.abandon``) say the certificate is to be issued again,
    which ``mcred jpki issue-sign`` then does."""
    phone, job = _stopped_sign_issue(ctx, tmp_path, at, password)
    issued = _sign_rows(ctx, phone)
    runner = CliRunner(env={"MCRED_HOME": str(ctx.home)})
    got = runner.invoke(cli, ["tsm", "abandon", job, "--reason", "the holder left the counter", "--json"])
    assert got.exit_code == 0, got.output
    out = json.loads(got.stdout)
    assert (out["se_check"] or {}).get("slots") == (None if found is None else {"sign": found})
    assert out["sign_issue_needed"] is not kept
    rows = _sign_rows(ctx, phone)
    assert [r.id for r in rows] == [r.id for r in issued]
    if kept:
        assert out["revoked"] == [] and [r.status for r in rows] == ["valid"]
        pw = tmp_path / "pw"
        pw.write_text(password)
        doc = tmp_path / "doc.txt"
        doc.write_text("申請書")
        signed = runner.invoke(cli, ["jpki", "sign", str(doc), "--phone", phone, "--pin-file", str(pw)])
        assert signed.exit_code == 0, signed.output
    else:
        assert out["revoked"] == [{"credential": r.id, "kind": "jpki-sign"} for r in issued]
        assert all((r.status, r.reason, r.meta.get("sign_issue_abandoned")) == ("revoked", "cessationOfOperation", job)
                   for r in rows)
        # as a pipe has it, unwrapped (pytest-xdist's workers set COLUMNS=80)
        text = runner.invoke(cli, ["tsm", "abandon", job, "--reason", "again"], env={"COLUMNS": None}).stdout
        assert f"issue one again with `mcred jpki issue-sign --phone {phone}`" in text
    with ctx.sessions() as s:
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.abandon", AuditEvent.subject == phone)
                             .order_by(AuditEvent.id)).all()[:1]
    assert (event.detail["job"], event.detail["kind"], event.detail["sign_issue_needed"]) == (job, "issue-sign", not kept)
    assert event.detail["revoked"] == [x["credential"] for x in out["revoked"]]
    assert event.detail["password"] == (None if not issued else "given" if password else "generated")
    again = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone, "--json"])
    if kept:
        assert again.exit_code == 2 and "live signing certificate" in again.output
    else:  # issued again: a new key, a new certificate, a new password, and it signs
        assert again.exit_code == 0, again.output
        new = json.loads(again.stdout)
        assert [r.status for r in _sign_rows(ctx, phone)][-1] == "valid"
        assert _jpki(ctx, phone)["certificates"]["0001"]["serial"] == new["sign_certificate"]["serial"].upper()


def test_a_phone_an_abandoned_sign_issue_left_without_a_signing_certificate_is_named(ctx, tmp_path,
                                                                                       every_answer_checked):
    """A signing certificate revoked and marked by an abandoned ``issue-sign`` (``meta.
    sign_issue_abandoned``) was a plain revoked row in ``mcred credential list``, ``mcred
    holder show``, ``mcred phone list --long`` and ``GET /credentials`` / ``GET /holders/{id}``,
    where a slot an abandoned renewal left is named (``renewal_needed``) with its command: an
    operator could not tell the phone was to be issued one again. Each now says so
    (``sign_issue_needed``, with ``mcred jpki issue-sign --phone ID`` in the text), and stops
    once the certificate is issued; every API answer held to the document."""
    import warnings

    from issuer.api.auth import create_token

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    from mcred.service import create_app

    phone, job = _stopped_sign_issue(ctx, tmp_path, "issue-sign-cert", "MYPASS15")
    runner = CliRunner(env={"MCRED_HOME": str(ctx.home), "COLUMNS": None})
    assert runner.invoke(cli, ["tsm", "abandon", job, "--reason", "the holder left the counter"]).exit_code == 0
    (orphan,) = [r.id for r in _sign_rows(ctx, phone)]
    with ctx.sessions() as s:
        holder = s.scalar(select(Credential.holder_id).where(Credential.id == orphan))
    command = f"mcred jpki issue-sign --phone {phone}"

    def cli_rows() -> dict[str, bool]:
        out = runner.invoke(cli, ["credential", "list", "--phone", phone, "--json"])
        assert out.exit_code == 0, out.output
        return {r["id"]: r["sign_issue_needed"] for r in json.loads(out.stdout)}

    assert {k for k, v in cli_rows().items() if v} == {orphan}
    (line,) = [x for x in runner.invoke(cli, ["credential", "list", "--phone", phone]).stdout.splitlines()
               if x.startswith(orphan)]
    assert "signing certificate to issue" in line and command in line
    assert json.loads(runner.invoke(cli, ["credential", "show", orphan, "--json"]).stdout)["sign_issue_needed"]
    shown = json.loads(runner.invoke(cli, ["holder", "show", holder, "--json"]).stdout)
    assert shown["sign_issue_needed"] == [{"phone": phone, "job": job}] and shown["renewal_needed"] == []
    text = runner.invoke(cli, ["holder", "show", holder]).stdout
    assert f"signing certificate to issue: phone {phone}" in text and command in text
    listed = next(r for r in json.loads(runner.invoke(cli, ["phone", "list", "--long", "--json"]).stdout)
                  if r["id"] == phone)
    assert listed["issuer"]["sign_issue_needed"] is True
    tok = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer'])[1]}"}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        api = c.get("/credentials", headers=tok, params={"phone_id": phone}).json()["credentials"]
        assert {x["id"]: x["sign_issue_needed"] for x in api} == cli_rows()
        assert c.get(f"/credentials/{orphan}", headers=tok).json()["sign_issue_needed"] is True
        assert c.get(f"/holders/{holder}", headers=tok).json()["sign_issue_needed"] == [{"phone": phone, "job": job}]
        again = runner.invoke(cli, ["jpki", "issue-sign", "--phone", phone, "--json"])
        assert again.exit_code == 0, again.output
        assert not any(cli_rows().values())
        assert not any(x["sign_issue_needed"] for x in c.get("/credentials", headers=tok,
                                                             params={"phone_id": phone}).json()["credentials"])
        assert c.get(f"/holders/{holder}", headers=tok).json()["sign_issue_needed"] == []
    assert json.loads(runner.invoke(cli, ["holder", "show", holder, "--json"]).stdout)["sign_issue_needed"] == []
    assert command not in runner.invoke(cli, ["credential", "list", "--phone", phone]).stdout
