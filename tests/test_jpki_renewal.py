"""Certificate-only renewal (電子証明書の更新): both JPKI certificates run to the 5th birthday
after issue, an adult's card to the 10th, so half-way through every card's life the holder
renews the certificates alone (seed 004, 「マイナンバーカード及び電子証明書の更新」).
``mcred jpki renew`` (a TSM ``renew-jpki`` job), its window (3 months before the expiry, the
expiry notice's; ``--early --reason`` drills it), ``mcred credential list --expiring-within``
and ``POST /certificate-renewals``.

The clocks of the CA, the TSM and the composition root are the wall clock; a certificate
"near its expiry" is one whose expiry the registry records near today (what the window and
the expiry notices read), as the minors' tests move a holder's birth date for a year passing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import fsync_skipped, person, reveals
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from test_api_flows import _wait
from test_issuer_jpki_support import live_installation
from typer.testing import CliRunner

import wallet_sim
from issuer.api.auth import create_token
from issuer.db import AuditEvent, Credential, Holder
from mcred.api_models import Job
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.db import make_engine, migrate
from mcred.jpki_flow import sign_with_se
from mcred.provision import abandon, parse_holder, provision, renew_jpki
from protocols import birthdays
from protocols.jpki.renewal import months_before
from reader.relying_party import ocsp_answer, verify
from reader.rp_watch import RevocationWatch
from tsm.errors import JobInputError, TransportError
from tsm.jobs import JobSecrets, Tsm, list_jobs, read_job

HOLDER = {"family_name": "更新", "given_name": "一郎", "family_name_kana": "コウシン",
          "given_name_kana": "イチロウ", "birth_date": "1990-04-01", "sex": 1,
          "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"}
PASSWORD, PIN = "RENEW123", "4321"
JPKI_AID = "D392F000260100000001"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """An installation served over HTTP (CRLs and OCSP where its certificates say), its
    environment exported for the command line."""
    with fsync_skipped(), live_installation(tmp_path_factory.mktemp("renew")) as (ctx, issuer, url):
        yield ctx, issuer, url


def _phone(ctx, *, birth: str = HOLDER["birth_date"], key_type: str = "rsa2048", **extra) -> tuple[str, str]:
    """(phone, holder id) of a holder born on ``birth``, provisioned today (RSA-2048: today's
    card, whose certificates run 5 birthdays and the card 10): a person of their own (the
    installation is the module's, and one person holds the credentials on one phone)."""
    phone = wallet_sim.create_phone(ctx.home)
    secrets = {"pin": PIN, "puk": "43214321", **({"password": PASSWORD} if "password" not in extra else {})}
    holder = parse_holder({**person(HOLDER), "birth_date": birth, **secrets, **{k: v for k, v in extra.items() if v is not None}})
    r = provision(ctx, phone, holder, key_type=key_type, mdoc_batch=1)
    return phone, r.holder_id


def _expiring(ctx, phone: str, days: int) -> None:
    """The phone's JPKI certificates expire ``days`` from now, as the registry records it."""
    with ctx.sessions.begin() as s:
        s.execute(update(Credential).where(Credential.phone_id == phone, Credential.kind.in_(("jpki-sign", "jpki-auth")),
                                           Credential.status == "valid")
                  .values(not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=days)))


def _creds(ctx, phone: str) -> list[tuple[str, str, str | None, str]]:
    with ctx.sessions() as s:
        return [(c.kind, c.status, c.reason, c.serial) for c in s.scalars(
            select(Credential).where(Credential.phone_id == phone).order_by(Credential.issued_at, Credential.id))]


def _live_serials(ctx, phone: str) -> dict[str, str]:
    return {kind: serial for kind, status, _reason, serial in _creds(ctx, phone) if status == "valid"}


def _jpki(ctx, phone: str) -> dict:
    se = wallet_sim.describe(phone, ctx.home)["secure_element"]
    return next(a for a in se["applets"] if a["aid"] == JPKI_AID)["details"]


def _renew(*args: str):
    return CliRunner().invoke(cli, ["jpki", "renew", *args])


def _five_birthdays_on(birth: str) -> str:
    """The notAfter of a certificate issued today: 23:59:59 JST on the 5th birthday after."""
    day = birthdays.nth_birthday_after(dt.date.fromisoformat(birth), birthdays.today_in_japan(dt.datetime.now(dt.UTC)), 5)
    return dt.datetime.combine(day, dt.time(14, 59, 59), tzinfo=dt.UTC).isoformat()


def _phone_listed(phone: str) -> dict:
    """The phone's row of ``mcred phone list --long --json``."""
    rows = json.loads(CliRunner().invoke(cli, ["phone", "list", "--long", "--json"]).stdout)
    return next(r for r in rows if r["id"] == phone)


def test_renewing_both_certificates_near_expiry(live, tmp_path):
    """An adult's certificates two months before their expiry: ``mcred jpki renew`` issues two new
    certificates (valid from today to the 5th birthday after), their keys born in the SE; the
    old ones are revoked as superseded on the CRL and over OCSP, the SE signs with the new key
    under the password the holder set (its retry counter as it was: no secret was reset),
    the linkage leads from the old user-authentication serial to the new one, a relying
    party's sweep reports each renewal once, and the mdoc is untouched."""
    ctx, issuer, _url = live
    phone, holder_id = _phone(ctx)
    old = _live_serials(ctx, phone)
    old_certs = {slot: issuer.certificate(phone, slot) for slot in ("sign", "auth")}
    bank = RevocationWatch(_rp_db(tmp_path), lambda: [*issuer.roots("sign"), *issuer.roots("auth")])
    for der in old_certs.values():
        bank.add("acct-1", der)
    bank.sweep()
    se = wallet_sim.open_secure_element(phone, ctx.home)
    with pytest.raises(Exception, match="63C4|4 tries"):  # a wrong password spends one of its 5 tries
        sign_with_se(se.transmit, "sign", b"WRONG999", b"x")
    assert _jpki(ctx, phone)["secrets"]["signing_password"]["tries_left"] == 4

    _expiring(ctx, phone, 60)
    got = _renew("--phone", phone, "--json")
    assert got.exit_code == 0, got.output
    out = json.loads(got.stdout)
    assert out["resumed"] is False and out["sign_withheld"] is None and out["holder"] == holder_id
    new = {c["slot"]: c for c in out["renewed"]}
    assert [c["slot"] for c in out["renewed"]] == ["sign", "auth"]
    for slot, kind in (("sign", "jpki-sign"), ("auth", "jpki-auth")):
        assert new[slot]["old_serial"] == old[kind] and new[slot]["serial"] != old[kind]
        assert new[slot]["not_after"] == _five_birthdays_on(HOLDER["birth_date"])
        assert dt.datetime.fromisoformat(new[slot]["not_before"]) > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    creds = _creds(ctx, phone)
    assert {(k, st, why) for k, st, why, _ in creds} == {
        ("jpki-sign", "revoked", "superseded"), ("jpki-auth", "revoked", "superseded"),
        ("jpki-sign", "valid", None), ("jpki-auth", "valid", None), ("mdoc", "valid", None)}
    assert len(creds) == 5  # one mdoc, as before: untouched
    assert _live_serials(ctx, phone) == {"jpki-sign": new["sign"]["serial"], "jpki-auth": new["auth"]["serial"],
                                         "mdoc": old["mdoc"]}

    # the CRL and OCSP
    now = dt.datetime.now(dt.UTC)
    for slot in ("sign", "auth"):
        crl = x509.load_der_x509_crl(issuer.crl(slot, issuer.partition_of(phone, slot)))
        entry = crl.get_revoked_certificate_by_serial_number(int(new[slot]["old_serial"], 16))
        assert entry is not None
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.superseded
        assert crl.get_revoked_certificate_by_serial_number(int(new[slot]["serial"], 16)) is None
        root = issuer.root(slot)
        was = ocsp_answer(x509.load_der_x509_certificate(old_certs[slot]), root, now)
        assert (was.status, was.reason) == ("revoked", "superseded"), was
        is_now = ocsp_answer(x509.load_der_x509_certificate(issuer.certificate(phone, slot)), root, now)
        assert is_now.status == "good", is_now

    # the SE: new keys and certificates, the holder's secrets as they were
    jpki = _jpki(ctx, phone)
    assert jpki["certificates"]["0001"]["serial"] == new["sign"]["serial"].upper()
    assert jpki["certificates"]["000A"]["serial"] == new["auth"]["serial"].upper()
    assert jpki["secrets"]["signing_password"]["tries_left"] == 4  # not set anew (that gives 5)
    assert jpki["secrets"]["user_auth_pin"]["set"] and jpki["secrets"]["puk"]["set"]
    cms, cert = sign_with_se(se.transmit, "sign", PASSWORD.encode(), "申請書".encode())
    assert format(x509.load_der_x509_certificate(cert).serial_number, "x") == new["sign"]["serial"]
    verdict = verify("申請書".encode(), cms, roots=issuer.roots("sign"), revocation="none")
    assert verdict["valid"], verdict
    _, auth_cert = sign_with_se(se.transmit, "auth", PIN.encode(), b"login challenge")
    assert format(x509.load_der_x509_certificate(auth_cert).serial_number, "x") == new["auth"]["serial"]

    # the linkage: the old login certificate leads to the new one
    linked = CliRunner().invoke(cli, ["jpki", "linkage", old["jpki-auth"], "--json"])
    assert linked.exit_code == 0, linked.output
    assert json.loads(linked.stdout)[0]["current"] == new["auth"]["serial"]

    # the relying party's sweep: each renewal once
    first = bank.sweep()
    assert {(c.purpose, c.after, c.reason) for c in first.changes} == {
        ("sign", "revoked", "superseded"), ("auth", "revoked", "superseded")}
    assert bank.sweep().changes == []
    assert [r.outcome for r in bank.relink(lambda serials: _ask(issuer, serials))] == ["linked"]

    # audited: the decision, then the issuances and supersessions by the job
    (job,) = list_jobs(ctx.engine, phone, kind="renew-jpki")
    assert job.state == "done" and "set-pins" not in job.steps and not any("mdoc" in s for s in job.steps)
    with ctx.sessions() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.renew",
                                                    AuditEvent.subject == phone)).all()
    assert [(e.detail["job"], e.detail["slots"], e.detail["early"]) for e in events] == [(job.id, ["sign", "auth"],
                                                                                          False)]


def _rp_db(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    migrate(engine, "reader@head")
    return engine


def _ask(issuer, serials):
    from issuer.jpki import linkage

    return linkage.answer(issuer.sessions, serials, relying_party="bank", actor="test")["links"]


def test_the_window_an_early_drill_and_an_expired_certificate(live):
    """More than 3 months left: refused (exit 2) naming the expiry and the day from which,
    nothing run; ``--early`` needs ``--reason`` and is audited with it. An expired certificate
    is renewed (the counter's common case); one slot alone when asked. A card that has
    expired, or whose next-card (P-384) certificates already run to its expiry, is renewed
    as a card, not here."""
    ctx, _issuer, _url = live
    phone, holder_id = _phone(ctx)
    before = _creds(ctx, phone)
    early = _renew("--phone", phone, "--json")
    assert early.exit_code == 2, early.output
    body = json.loads(early.stdout)
    expiry = birthdays.nth_birthday_after(dt.date.fromisoformat(HOLDER["birth_date"]),
                                          birthdays.today_in_japan(dt.datetime.now(dt.UTC)), 5)
    assert body["not_after"] == _five_birthdays_on(HOLDER["birth_date"])
    assert body["renewable_from"] == months_before(expiry, 3).isoformat()
    assert expiry.isoformat() in body["error"] and body["renewable_from"] in body["error"]
    text = _renew("--phone", phone)
    assert text.exit_code == 2 and "--early" in text.output and body["renewable_from"] in text.output
    assert _creds(ctx, phone) == before and list_jobs(ctx.engine, phone, kind="renew-jpki") == []

    no_reason = _renew("--phone", phone, "--early")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    drilled = _renew("--phone", phone, "--early", "--reason", "更新手続の訓練", "--json")
    assert drilled.exit_code == 0, drilled.output
    assert len(json.loads(drilled.stdout)["renewed"]) == 2
    with ctx.sessions() as s:
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.renew",
                                                      AuditEvent.subject == phone)).all()
    assert event.detail["early"] is True and event.detail["reason"] == "更新手続の訓練"
    assert event.actor.startswith("cli:")
    assert _renew("--phone", phone).exit_code == 2  # renewed: five years to go again

    # expired ten days ago: renewed without --early; the user-authentication certificate alone
    _expiring(ctx, phone, -10)
    sign_before = _live_serials(ctx, phone)["jpki-sign"]
    auth = _renew("--phone", phone, "--slot", "auth", "--json")
    assert auth.exit_code == 0, auth.output
    (renewed,) = json.loads(auth.stdout)["renewed"]
    assert renewed["slot"] == "auth" and json.loads(auth.stdout)["sign_withheld"] is None
    assert _live_serials(ctx, phone)["jpki-sign"] == sign_before

    with ctx.sessions.begin() as s:
        s.execute(update(Holder).where(Holder.id == holder_id).values(card_expiry=dt.date.today() - dt.timedelta(days=2)))
    gone = _renew("--phone", phone, "--slot", "sign")
    assert gone.exit_code == 2 and "card expired" in gone.output and "renew-card" in gone.output

    p384, _ = _phone(ctx, key_type="p384")  # the next card: 10-year certificates, to the card's expiry
    capped = _renew("--phone", p384, "--early", "--reason", "訓練")
    assert capped.exit_code == 2 and "runs to the card's expiry" in capped.output and "renew-card" in capped.output


def test_a_child_renews_the_user_authentication_certificate_only(live):
    """A 10-year-old's phone holds no signing certificate (none under 15): the renewal renews
    the user-authentication certificate and says why not the other; a signing certificate
    asked for by name is refused, naming the day from which. Left as it is, a minor's
    certificates end with the card (both 5 birthdays): that is a card renewal."""
    ctx, _issuer, _url = live
    birth = birthdays.birthday_in(dt.date.today(), dt.date.today().year - 10).isoformat()
    phone, _holder = _phone(ctx, birth=birth, password=None)
    ends_with_card = _renew("--phone", phone)
    assert ends_with_card.exit_code == 2 and "runs to the card's expiry" in ends_with_card.output
    _expiring(ctx, phone, 45)
    sign = _renew("--phone", phone, "--slot", "sign")
    assert sign.exit_code == 2 and "under 15" in sign.output
    assert birthdays.turns(dt.date.fromisoformat(birth), 15).isoformat() in sign.output
    got = _renew("--phone", phone, "--json")
    assert got.exit_code == 0, got.output
    out = json.loads(got.stdout)
    assert [c["slot"] for c in out["renewed"]] == ["auth"] and "under 15" in out["sign_withheld"]
    (job,) = list_jobs(ctx.engine, phone, kind="renew-jpki")
    assert read_job(ctx.engine, job.id).input["slots"] == ["auth"] and not any("sign" in s for s in job.steps)
    jpki = _jpki(ctx, phone)
    assert set(jpki["certificates"]) == {"000A", "000B"} and jpki["slots"]["signing"]["algorithm"] is None
    assert jpki["certificates"]["000A"]["serial"] == out["renewed"][0]["serial"].upper()
    assert "runs to the card's expiry" in _renew("--phone", phone).output  # renewed: to the card's expiry
    _expiring(ctx, phone, 45)
    text = _renew("--phone", phone)
    assert text.exit_code == 0 and "no signing certificate renewed: holder under 15" in text.output


@pytest.mark.parametrize(("job_input", "with_secrets", "why"), [
    ({"algorithm": "rsa2048", "slots": ["auth"]}, True, "sets no secret"),
    ({"algorithm": "rsa2048", "slots": []}, False, "one or both of sign and auth"),
    ({"algorithm": "rsa2048", "slots": ["auth", "auth"]}, False, "one or both"),
    ({"algorithm": "rsa2048", "slots": ["mdoc"]}, False, "one or both"),
    ({"algorithm": "ed25519", "slots": ["auth"]}, False, "neither rsa2048 nor p384"),
    ({"algorithm": "p384", "slots": ["auth"], "jpki_slots": ["auth"]}, False, "unknown job input"),
])
def test_a_renewal_jobs_input_is_checked(live, job_input, with_secrets, why):
    """The TSM's ``renew-jpki`` job takes its slots and key type and no secret at all: a PIN or
    password given would be set on the phone, which a renewal never does."""
    ctx, _issuer, _url = live
    tsm = Tsm(ctx.engine, ctx.master_key, **ctx.tsm_trust())
    with pytest.raises(JobInputError, match=why):
        tsm.create_job("ph-renewal-input", "renew-jpki", job_input,
                       JobSecrets("1234", "ABC123", None) if with_secrets else None)
    assert list_jobs(ctx.engine, "ph-renewal-input") == []


class Crash(Exception):
    pass


@pytest.mark.parametrize("at", ["generate-sign-key-anew", "issue-auth-cert", "write-sign-cert"])
def test_a_renewal_that_stopped_is_finished_once(live, at):
    """A crash after a step's work and before its record (the key generated, the certificate
    issued, or written): the same command finishes the job; one new key and one new
    certificate per slot, each old one superseded once."""
    ctx, issuer, _url = live
    phone, _holder = _phone(ctx)
    old = _live_serials(ctx, phone)
    _expiring(ctx, phone, 20)

    def crash(step: str) -> None:
        if step == at:
            raise Crash(step)

    with pytest.raises(Crash):
        renew_jpki(ctx, phone, after_step=crash)
    busy = CliRunner().invoke(cli, ["jpki", "renew", "--phone", phone, "--json"])
    assert busy.exit_code == 0, busy.output
    out = json.loads(busy.stdout)
    assert out["resumed"] is True
    assert {c["slot"]: c["old_serial"] for c in out["renewed"]} == {"sign": old["jpki-sign"], "auth": old["jpki-auth"]}
    for kind in ("jpki-sign", "jpki-auth"):
        rows = [(st, why) for k, st, why, _ in _creds(ctx, phone) if k == kind]
        assert sorted(rows, key=str) == sorted([("revoked", "superseded"), ("valid", None)], key=str), (kind, rows)
    (job,) = list_jobs(ctx.engine, phone, kind="renew-jpki")
    view = read_job(ctx.engine, job.id)
    assert view.state == "done"
    assert view.results["generate-sign-key-anew"]["generated"] is (at != "generate-sign-key-anew")
    with ctx.sessions() as s:
        issued = [e.detail for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.issue"))
                  if e.detail.get("job") == job.id]
    assert sorted(d["slot"] for d in issued) == ["auth", "sign"]
    new = _live_serials(ctx, phone)
    jpki = _jpki(ctx, phone)
    assert (jpki["certificates"]["0001"]["serial"], jpki["certificates"]["000A"]["serial"]) == (
        new["jpki-sign"].upper(), new["jpki-auth"].upper())
    se = wallet_sim.open_secure_element(phone, ctx.home)
    assert sign_with_se(se.transmit, "sign", PASSWORD.encode(), b"x")[1] == issuer.certificate(phone, "sign")


def test_expiry_notices_list_the_certificates_expiring_within_days(live):
    """``mcred credential list --expiring-within DAYS``: the valid JPKI certificates whose
    expiry falls within DAYS days (or has passed), soonest first, one line each with the
    holder; not a phone whose certificates run years yet, not an mdoc."""
    ctx, _issuer, _url = live
    soon, holder = _phone(ctx)
    later, _ = _phone(ctx)
    _expiring(ctx, soon, 50)
    runner = CliRunner()
    got = runner.invoke(cli, ["credential", "list", "--expiring-within", "90", "--json"])
    assert got.exit_code == 0, got.output
    rows = json.loads(got.stdout)
    horizon = dt.datetime.now(dt.UTC) + dt.timedelta(days=90)
    assert all(r["kind"] in ("jpki-sign", "jpki-auth") and r["status"] == "valid"
               and dt.datetime.fromisoformat(r["not_after"]) <= horizon for r in rows)
    assert [r["not_after"] for r in rows] == sorted(r["not_after"] for r in rows)
    assert sorted((r["kind"], r["holder"]) for r in rows if r["phone"] == soon) == [
        ("jpki-auth", holder), ("jpki-sign", holder)]
    assert not any(r["phone"] == later for r in rows)
    assert not any(r["phone"] == soon for r in json.loads(runner.invoke(
        cli, ["credential", "list", "--expiring-within", "30", "--json"]).stdout))
    text = runner.invoke(cli, ["credential", "list", "--expiring-within", "90", "--phone", soon])
    lines = text.stdout.splitlines()
    assert text.exit_code == 0 and len(lines) == 2 and all(f"holder {holder}" in line for line in lines)
    mdoc = runner.invoke(cli, ["credential", "list", "--expiring-within", "90", "--kind", "mdoc"])
    assert mdoc.exit_code == 2 and "valid JPKI certificates" in mdoc.output


# --- over the API ----------------------------------------------------------------------------------


@pytest.fixture
def api(home: Path, every_answer_checked: list[str]):
    with fsync_skipped():
        ctx = Context.open(home)
        tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"} for s in ("tsm", "issuer", "reader")}
        with TestClient(create_app_for(ctx)) as c:
            yield ctx, c, tok, every_answer_checked


def create_app_for(ctx):
    from mcred.service import create_app

    return create_app(ctx, job_workers=1)


def _refused(r, status: int, slug: str) -> dict:
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["type"] == f"/problems/{slug}", r.text
    return r.json()


def test_renewal_over_the_api(api):
    """``POST /certificate-renewals`` (scope issuer): refused before anything is queued (403 to
    a reader's token, 404 an unknown phone, 422 early without a reason, 409 too early with
    ``not_after`` and ``renewable_from``, 409 a child's signing certificate with
    ``signing_certificate_from``, 409 a stopped renewal naming its resume); near the expiry a
    job whose result is the new certificates (no secret anywhere); a stopped one finished by
    ``POST /tsm-jobs/{id}/resume``. Every answer held to the document."""
    ctx, c, tok, checked = api
    phone, _holder = _phone(ctx)
    ask = {"phone_id": phone}
    _refused(c.post("/certificate-renewals", headers=tok["reader"], json=ask), 403, "forbidden")
    _refused(c.post("/certificate-renewals", headers=tok["issuer"], json={"phone_id": "no-such-phone"}),
             404, "unknown-phone")
    bad = _refused(c.post("/certificate-renewals", headers=tok["issuer"], json={**ask, "early": True}),
                   422, "validation")
    assert bad["errors"][0]["location"] == "body.reason"
    _refused(c.post("/certificate-renewals", headers=tok["issuer"], json={**ask, "reason": "why"}), 422, "validation")
    early = _refused(c.post("/certificate-renewals", headers=tok["issuer"], json=ask), 409, "provisioning-refused")
    assert early["not_after"] == _five_birthdays_on(HOLDER["birth_date"])
    assert early["renewable_from"] in early["detail"]
    assert list_jobs(ctx.engine, phone, kind="renew-jpki") == []

    _expiring(ctx, phone, 70)
    old = _live_serials(ctx, phone)
    r = c.post("/certificate-renewals", headers=tok["issuer"], json=ask)
    assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['id']}", r.text
    assert r.json()["kind"] == "renew-jpki" and r.json()["params"] == {
        "phone_id": phone, "slot": "both", "early": False, "reason": None, "over_the_air": False}
    done = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
    assert done["state"] == "succeeded", done["error"]
    job = Job.model_validate(done).root
    assert type(job).__name__ == "RenewJob"
    assert {x.slot: x.old_serial for x in job.result.renewed} == {"sign": old["jpki-sign"], "auth": old["jpki-auth"]}
    assert {x.slot: x.serial for x in job.result.renewed} == {
        "sign": _live_serials(ctx, phone)["jpki-sign"], "auth": _live_serials(ctx, phone)["jpki-auth"]}
    for secret in (PASSWORD, PIN, "43214321"):
        assert not reveals(json.dumps(done), secret)
    tsm_job = c.get("/tsm-jobs", headers=tok["issuer"], params={"phone_id": phone}).json()["jobs"][-1]
    assert tsm_job["id"] == done["result"]["tsm_job_id"] and tsm_job["kind"] == "renew-jpki"

    # a renewal that stopped: refused anew, finished by the resume
    _expiring(ctx, phone, 10)

    def crash(step: str) -> None:
        if step == "write-auth-cert":
            raise Crash(step)

    with pytest.raises(Crash):
        renew_jpki(ctx, phone, after_step=crash)
    (stopped,) = c.get("/tsm-jobs", headers=tok["issuer"], params={"phone_id": phone, "unfinished": True}).json()["jobs"]
    busy = _refused(c.post("/certificate-renewals", headers=tok["issuer"], json=ask), 409, "provisioning-refused")
    assert f"/tsm-jobs/{stopped['id']}/resume" in busy["detail"]
    r = c.post(f"/tsm-jobs/{stopped['id']}/resume", headers=tok["issuer"])
    assert r.status_code == 202, r.text
    resumed = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
    assert resumed["state"] == "succeeded", resumed["error"]
    assert resumed["params"]["kind"] == "renew-jpki" and resumed["result"]["resumed"] is True
    assert type(Job.model_validate(resumed).root.result).__name__ == "RenewJobResult"

    # a child's signing certificate
    birth = birthdays.birthday_in(dt.date.today(), dt.date.today().year - 12).isoformat()
    child, _ = _phone(ctx, birth=birth, key_type="p384", password=None)
    minor = _refused(c.post("/certificate-renewals", headers=tok["issuer"], json={"phone_id": child, "slot": "sign"}),
                     409, "provisioning-refused")
    assert "under 15" in minor["detail"]
    assert minor["signing_certificate_from"] == birthdays.turns(dt.date.fromisoformat(birth), 15).isoformat()
    assert {"POST /certificate-renewals 202", "POST /certificate-renewals 409", "POST /certificate-renewals 404",
            "POST /certificate-renewals 403", "POST /certificate-renewals 422", "GET /jobs/{job_id} 200",
            "POST /tsm-jobs/{job_id}/resume 202"} <= set(checked)


def test_expiry_notices_over_the_api(api):
    """``GET /credentials?expiring_within=DAYS`` means what ``mcred credential list
    --expiring-within DAYS`` means: the valid JPKI certificates whose expiry falls within DAYS
    days or has passed, soonest first, paged by limit / offset, of one kind or phone if asked;
    the same rows as the command line's. Refused (422, naming query.expiring_within) for a
    negative, a fraction, a word, a horizon past ten years, or with kind mdoc or a status
    other than valid. Every answer held to the document."""
    ctx, c, tok, checked = api
    soon, holder = _phone(ctx)
    later, _ = _phone(ctx)
    _expiring(ctx, soon, 50)
    with ctx.sessions.begin() as s:  # its user-authentication certificate expired 5 days ago (not renewed)
        s.execute(update(Credential).where(Credential.phone_id == soon, Credential.kind == "jpki-auth")
                  .values(not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=5)))

    def listed(**params) -> list[dict]:
        r = c.get("/credentials", headers=tok["issuer"], params=params)
        assert r.status_code == 200, r.text
        assert (r.json()["limit"], r.json()["offset"]) == (params.get("limit", 100), params.get("offset", 0))
        return r.json()["credentials"]

    rows = listed(expiring_within=90)
    assert [(r["phone_id"], r["kind"]) for r in rows] == [(soon, "jpki-auth"), (soon, "jpki-sign")]  # soonest first
    assert all(r["status"] == "valid" and r["holder_id"] == holder for r in rows)
    assert [r["phone_id"] for r in listed(expiring_within=0)] == [soon]  # the expired one alone
    assert [r["kind"] for r in listed(expiring_within=90, kind="jpki-sign")] == ["jpki-sign"]
    assert [r["kind"] for r in listed(expiring_within=90, limit=1, offset=1)] == ["jpki-sign"]
    assert listed(expiring_within=90, phone_id=later) == []
    assert {r["phone_id"] for r in listed(expiring_within=3660)} == {soon, later}  # every certificate runs <= 10 years
    cli_rows = json.loads(CliRunner().invoke(cli, ["credential", "list", "--expiring-within", "90", "--json"]).stdout)
    assert [r["id"] for r in cli_rows] == [r["id"] for r in rows]  # the command line's meaning, row for row
    assert [r["phone_id"] for r in listed(kind="jpki-auth")] == [soon, later]  # without it: every one, oldest first

    for value, said in (("-1", "greater than or equal to 0"), ("1.5", "valid integer"), ("ninety", "valid integer"),
                        ("3661", "less than or equal to 3660"), ("1" + "0" * 30, "less than or equal to 3660")):
        bad = _refused(c.get("/credentials", headers=tok["issuer"], params={"expiring_within": value}),
                       422, "validation")
        assert bad["errors"][0]["location"] == "query.expiring_within" and said in bad["detail"], (value, bad)
    for other in ({"kind": "mdoc"}, {"status": "revoked"}, {"status": "hold"}):
        bad = _refused(c.get("/credentials", headers=tok["issuer"], params={"expiring_within": 90, **other}),
                       422, "validation")
        assert bad["errors"] == [{"location": "query.expiring_within", "message": bad["detail"].split(": ", 1)[1]}]
        assert "valid JPKI certificates" in bad["detail"], bad
    parameter = next(p for p in c.get("/openapi.json").json()["paths"]["/credentials"]["get"]["parameters"]
                     if p["name"] == "expiring_within")
    assert "--expiring-within" in parameter["description"] and {"type": "integer", "minimum": 0,
                                                                "maximum": 3660} in parameter["schema"]["anyOf"]
    assert {"GET /credentials 200", "GET /credentials 422"} <= set(checked)


def test_an_absurd_expiry_horizon_is_refused_on_the_command_line(live):
    """``--expiring-within`` past ten years asks for nothing more; past the calendar it ended in
    a traceback (OverflowError adding the days to now). Refused (exit 2) naming the bound, as
    GET /credentials refuses it."""
    for days in ("3661", "1000000000"):
        got = CliRunner().invoke(cli, ["credential", "list", "--expiring-within", days])
        assert got.exit_code == 2 and "3660" in got.output, got.output
    assert CliRunner().invoke(cli, ["credential", "list", "--expiring-within", "3660"]).exit_code == 0


# --- a renewal given up --------------------------------------------------------------------------


def _stopped_renewal(ctx, phone: str, at: str, **kwargs) -> str:
    """A renewal of ``phone`` whose worker died after step ``at`` did its work, before its
    record (the key generated, the certificate issued or written): the job's id."""
    def crash(step: str) -> None:
        if step == at:
            raise Crash(step)

    with pytest.raises(Crash):
        renew_jpki(ctx, phone, after_step=crash, **kwargs)
    (job,) = list_jobs(ctx.engine, phone, kind="renew-jpki", unfinished=True)
    return job.id


def _by_kind(ctx, phone: str) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for kind, status, reason, _serial in _creds(ctx, phone):
        out.setdefault(kind, []).append((status, reason))
    return out


def _ocsp(issuer, der: bytes, slot: str):
    return ocsp_answer(x509.load_der_x509_certificate(der), issuer.root(slot), dt.datetime.now(dt.UTC))


def test_an_abandoned_renewal_revokes_what_never_reached_the_phone_and_the_slot_is_renewed(live):
    """A renewal whose worker died after the CA issued the new user-authentication certificate
    (superseding the old one) and before it was written, GENERATE KEY having replaced the key
    in the SE, given up (`mcred tsm abandon`). The new signing certificate, written, stays
    valid; the user-authentication one, issued and never installed, is revoked
    (cessationOfOperation): it was valid with no phone holding it, and the holder had no
    usable login certificate, yet `mcred jpki renew` refused ("its last one was revoked:
    provision the phone", a phone with live credentials that provisioning refuses). Now the
    slot is named to be renewed by the abandon, `credential list` and `holder show`, and
    `mcred jpki renew` (both) renews it alone, the signing certificate not being due, with no
    --early; the login works again and the linkage leads from the first login certificate to
    the newest."""
    ctx, issuer, _url = live
    phone, holder_id = _phone(ctx)
    first = _live_serials(ctx, phone)
    _expiring(ctx, phone, 60)
    job = _stopped_renewal(ctx, phone, "issue-auth-cert")
    new_sign, orphan = issuer.certificate(phone, "sign"), issuer.certificate(phone, "auth")
    with ctx.sessions() as s:
        orphan_id = s.scalar(select(Credential.id).where(Credential.phone_id == phone, Credential.kind == "jpki-auth",
                                                         Credential.status == "valid"))

    gone = CliRunner().invoke(cli, ["tsm", "abandon", job, "--reason", "the phone was lost mid-renewal", "--json"])
    assert gone.exit_code == 0, gone.output
    out = json.loads(gone.stdout)
    assert out["kind"] == "renew-jpki" and out["renewal_needed"] == ["auth"]
    assert out["revoked"] == [{"credential": orphan_id, "kind": "jpki-auth"}]
    assert _by_kind(ctx, phone) == {
        "jpki-sign": [("revoked", "superseded"), ("valid", None)],
        "jpki-auth": [("revoked", "superseded"), ("revoked", "cessationOfOperation")], "mdoc": [("valid", None)]}
    assert (_ocsp(issuer, orphan, "auth").status, _ocsp(issuer, orphan, "auth").reason) == (
        "revoked", "cessationOfOperation")
    assert _ocsp(issuer, new_sign, "sign").status == "good"
    se = wallet_sim.open_secure_element(phone, ctx.home)
    assert sign_with_se(se.transmit, "sign", PASSWORD.encode(), b"x")[1] == new_sign  # written: it stays

    listed = json.loads(CliRunner().invoke(cli, ["credential", "list", "--phone", phone, "--json"]).stdout)
    assert [r["id"] for r in listed if r["renewal_needed"]] == [orphan_id]
    text = CliRunner().invoke(cli, ["credential", "list", "--phone", phone]).stdout
    assert f"renewal needed (renewal abandoned: mcred jpki renew --phone {phone} --slot auth)" in text
    shown = json.loads(CliRunner().invoke(cli, ["holder", "show", holder_id, "--json"]).stdout)
    assert shown["renewal_needed"] == [{"phone": phone, "slot": "auth", "job": job}]
    assert "renewal needed: phone" in CliRunner().invoke(cli, ["holder", "show", holder_id]).stdout
    assert _phone_listed(phone)["issuer"]["renewal_needed"] == ["auth"]
    assert f"auth to renew (`mcred jpki renew --phone {phone} --slot auth`)" in CliRunner().invoke(
        cli, ["phone", "list", "--long"]).stdout

    got = _renew("--phone", phone, "--json")
    assert got.exit_code == 0, got.output
    (renewed,) = json.loads(got.stdout)["renewed"]
    assert renewed["slot"] == "auth" and renewed["old_serial"] is None  # nothing live was left to replace
    assert _live_serials(ctx, phone)["jpki-auth"] == renewed["serial"]
    assert _live_serials(ctx, phone)["jpki-sign"] == format(x509.load_der_x509_certificate(new_sign).serial_number, "x")
    _, login = sign_with_se(se.transmit, "auth", PIN.encode(), b"login challenge")
    assert format(x509.load_der_x509_certificate(login).serial_number, "x") == renewed["serial"]
    assert _ocsp(issuer, login, "auth").status == "good"
    linked = json.loads(CliRunner().invoke(cli, ["jpki", "linkage", first["jpki-auth"], "--json"]).stdout)
    assert linked[0]["current"] == renewed["serial"]
    assert not any(r["renewal_needed"] for r in json.loads(
        CliRunner().invoke(cli, ["credential", "list", "--phone", phone, "--json"]).stdout))
    assert json.loads(CliRunner().invoke(cli, ["holder", "show", holder_id, "--json"]).stdout)["renewal_needed"] == []
    assert _phone_listed(phone)["issuer"]["renewal_needed"] == []
    with ctx.sessions() as s:
        *_, event = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.renew", AuditEvent.subject == phone)
                              .order_by(AuditEvent.id)).all()
        revoked = s.scalars(select(AuditEvent).where(AuditEvent.action == "credential.revoke",
                                                     AuditEvent.subject == orphan_id)).one()
    assert event.detail["after_abandoned"] == {"auth": job} and event.detail["slots"] == ["auth"]
    assert revoked.detail["renewal_abandoned"] == job and revoked.actor.endswith(":abandon")
    assert _renew("--phone", phone).exit_code == 2  # renewed: nothing due, nothing left to repair
    # abandoned again: nothing changes, not the certificate the later renewal wrote
    twice = CliRunner().invoke(cli, ["tsm", "abandon", job, "--reason", "again", "--json"])
    assert twice.exit_code == 0, twice.output
    assert json.loads(twice.stdout)["revoked"] == [] and json.loads(twice.stdout)["renewal_needed"] == []
    assert _live_serials(ctx, phone)["jpki-auth"] == renewed["serial"]


@pytest.mark.parametrize(("at", "left", "revoked", "renewed_next"), [
    # GENERATE KEY not reached: the old keys and certificates as they were
    ("note-jpki-keys", [], {}, ["sign", "auth"]),
    # the old signing key replaced, nothing issued yet; the user-authentication certificate still due
    ("generate-sign-key-anew", ["sign"], {"jpki-sign": "old"}, ["sign", "auth"]),
    # the new signing certificate written, its record lost: the SE shows it there, so it stays (the
    # user-authentication certificate is due, and both are renewed, as for any renewal)
    ("write-sign-cert", [], {}, ["sign", "auth"]),
    # the new signing certificate written (not due again for years), the user-authentication key replaced
    ("generate-auth-key-anew", ["auth"], {"jpki-auth": "old"}, ["auth"]),
])
def test_what_an_abandoned_renewal_leaves_slot_by_slot(live, at, left, revoked, renewed_next):
    """Abandoning a renewal revokes, slot by slot, only what left the phone without a usable
    certificate: a slot whose GENERATE KEY ran with no certificate written has its live
    certificate revoked and marked (the new one, never installed, or the old one, whose key
    is gone); a slot written keeps its new certificate, whether the write was recorded or
    only found in the SE; a slot not reached keeps its old one. All of the job's
    certificates were revoked before, the written too. The next renewal (both) renews what
    was left and what is due."""
    ctx, _issuer, _url = live
    phone, _holder = _phone(ctx)
    _expiring(ctx, phone, 30)
    before = {kind: serial for kind, serial in _live_serials(ctx, phone).items() if kind != "mdoc"}
    job = _stopped_renewal(ctx, phone, at)
    during = {kind: serial for kind, serial in _live_serials(ctx, phone).items() if kind != "mdoc"}
    result = abandon(ctx, job, "drill", actor="test")
    assert list(result.renewal_needed) == left
    with ctx.sessions() as s:
        gone = {c.kind: c.serial for c in s.scalars(select(Credential).where(Credential.id.in_(
            [cid for cid, _ in result.revoked])))}
    assert {kind: ("old" if serial == before[kind] else "new") for kind, serial in gone.items()} == revoked
    for kind, serial in during.items():  # the rest as the job left it
        assert (kind in revoked) != (serial in _live_serials(ctx, phone).values()), kind
    if at == "note-jpki-keys":  # GENERATE KEY not reached: the old certificates as they were
        assert set(before.values()) <= set(_live_serials(ctx, phone).values())
    again = renew_jpki(ctx, phone, actor="test")
    assert [slot for slot, _old, _der in again.renewed] == renewed_next


def test_an_abandoned_renewal_over_the_api(api):
    """An early renewal (a drill) whose worker died after GENERATE KEY replaced the signing key,
    before the CA issued anything, given up by ``POST /tsm-jobs/{id}/abandon``: the old signing
    certificate, whose key is gone from the SE, is revoked (cessationOfOperation) and the slot
    named (``renewal_needed``, also in ``GET /holders/{id}``); ``POST /certificate-renewals``
    then renews it without ``early`` (its old expiry years away, the user-authentication
    certificate not due and left as it is), and the holder signs again with the password they
    set. Every answer held to the document."""
    ctx, c, tok, checked = api
    phone, holder_id = _phone(ctx)
    old = _live_serials(ctx, phone)
    job = _stopped_renewal(ctx, phone, "generate-sign-key-anew", early=True, reason="更新手続の訓練")
    r = c.post(f"/tsm-jobs/{job}/abandon", headers=tok["issuer"], json={"reason": "the holder left the counter"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["renewal_needed"] == ["sign"] and [x["kind"] for x in body["revoked"]] == ["jpki-sign"]
    assert {kind: (status, reason) for kind, status, reason, serial in _creds(ctx, phone)
            if serial == old["jpki-sign"]} == {"jpki-sign": ("revoked", "cessationOfOperation")}
    assert _live_serials(ctx, phone)["jpki-auth"] == old["jpki-auth"]  # not reached: as it was
    holder = c.get(f"/holders/{holder_id}", headers=tok["issuer"]).json()
    assert holder["renewal_needed"] == [{"phone": phone, "slot": "sign", "job": job}]
    # the credential listing names the certificate whose slot is to be renewed, as `credential list` does
    # (it named none: an operator reading GET /credentials saw a revoked certificate, not a slot to renew)
    listed = c.get("/credentials", headers=tok["issuer"], params={"phone_id": phone}).json()["credentials"]
    (orphan,) = [x for x in listed if x["renewal_needed"]]
    assert (orphan["kind"], orphan["serial"], orphan["status"]) == ("jpki-sign", old["jpki-sign"], "revoked")
    assert c.get(f"/credentials/{orphan['id']}", headers=tok["issuer"]).json()["renewal_needed"] is True
    cli_rows = json.loads(CliRunner().invoke(cli, ["credential", "list", "--phone", phone, "--json"]).stdout)
    assert {x["id"]: x["renewal_needed"] for x in cli_rows} == {x["id"]: x["renewal_needed"] for x in listed}
    assert json.loads(CliRunner().invoke(cli, ["credential", "show", orphan["id"], "--json"]).stdout)["renewal_needed"]

    r = c.post("/certificate-renewals", headers=tok["issuer"], json={"phone_id": phone})
    assert r.status_code == 202, r.text
    done = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
    assert done["state"] == "succeeded", done["error"]
    (renewed,) = Job.model_validate(done).root.result.renewed
    assert (renewed.slot, renewed.old_serial) == ("sign", None)
    assert _live_serials(ctx, phone) == {**old, "jpki-sign": renewed.serial}
    se = wallet_sim.open_secure_element(phone, ctx.home)
    cms, cert = sign_with_se(se.transmit, "sign", PASSWORD.encode(), "申請書".encode())
    assert format(x509.load_der_x509_certificate(cert).serial_number, "x") == renewed.serial
    assert c.get(f"/holders/{holder_id}", headers=tok["issuer"]).json()["renewal_needed"] == []
    assert not any(x["renewal_needed"] for x in c.get("/credentials", headers=tok["issuer"],
                                                      params={"phone_id": phone}).json()["credentials"])
    assert c.get(f"/credentials/{orphan['id']}", headers=tok["issuer"]).json()["renewal_needed"] is False
    again = _refused(c.post("/certificate-renewals", headers=tok["issuer"], json={"phone_id": phone}),
                     409, "provisioning-refused")
    assert "renewable_from" in again  # repaired: the window holds again
    assert {"POST /tsm-jobs/{job_id}/abandon 200", "GET /holders/{holder_id} 200",
            "POST /certificate-renewals 202", "GET /credentials 200", "GET /credentials/{credential_id} 200"
            } <= set(checked)


class _Cuttable:
    """A link to the phone's SE that, once cut, loses every command before it reaches the SE:
    the TSM sees a lost answer and cannot know whether the command ran."""

    def __init__(self, se) -> None:
        self.se, self.cut = se, False

    def __call__(self, apdu: bytes) -> bytes:
        if self.cut:
            raise ConnectionError("link cut: the command never reached the SE")
        return self.se.transmit(apdu)


def _renewal_cut_after(ctx, phone: str, step: str, **kwargs) -> str:
    """A renewal of ``phone`` whose link is cut once ``step`` has done its work: the next
    step's command never reaches the SE, and the job stops at that step (which, to the TSM,
    may have run). The job's id."""
    link = _Cuttable(wallet_sim.open_secure_element(phone, ctx.home))

    def cut(done: str) -> None:
        if done == step:
            link.cut = True

    with pytest.raises(TransportError):
        renew_jpki(ctx, phone, transmit=link, after_step=cut, **kwargs)
    (job,) = list_jobs(ctx.engine, phone, kind="renew-jpki", unfinished=True)
    return job.id


def _abandon_audit(ctx, phone: str) -> dict:
    with ctx.sessions() as s:
        *_, event = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.abandon",
                                                       AuditEvent.subject == phone).order_by(AuditEvent.id)).all()
    return event.detail


@pytest.mark.parametrize(("stop", "verdict", "revoked", "needed"), [
    # GENERATE KEY lost on its way: the old key and certificate are in the slot, usable
    (("cut", "note-jpki-keys"), "unchanged", {}, []),
    # GENERATE KEY ran, its answer lost: the old key is gone
    (("crash", "generate-sign-key-anew"), "replaced", {"jpki-sign": "old"}, ["sign"]),
    # the new certificate issued, its write lost on its way: the new key holds no certificate
    (("cut", "issue-sign-cert"), "replaced", {"jpki-sign": "new"}, ["sign"]),
    # the new certificate written, its answer lost: it is on the phone
    (("crash", "write-sign-cert"), "written", {}, []),
])
def test_an_abandoned_renewal_asks_the_se_what_a_step_that_may_have_run_did(live, stop, verdict, revoked, needed):
    """A renewal stopped at a step that may have run (its command sent, the answer lost): the
    TSM does not know whether the SE acted. Abandoning it revoked the slot's live certificate
    whatever the SE held, so a GENERATE KEY that never reached the SE cost the holder a
    usable certificate and a renewal. Now a read-jpki TSM job reads the slot over a new
    session (READ STATE: the key's and the certificate's SHA-256) and the abandon holds them
    to the registry: the old certificate with its key, or the new one with its key, stays
    valid; a key with no certificate of its own is revoked and marked as before. The answer
    and the issuer's audit (``jpki.abandon``) say what was found."""
    ctx, issuer, _url = live
    phone, _holder = _phone(ctx)
    _expiring(ctx, phone, 30)
    old = _live_serials(ctx, phone)
    how, step = stop
    job = (_renewal_cut_after(ctx, phone, step, slot="sign") if how == "cut"
           else _stopped_renewal(ctx, phone, step, slot="sign"))
    during = _live_serials(ctx, phone)

    got = CliRunner().invoke(cli, ["tsm", "abandon", job, "--reason", "the holder left", "--json"])
    assert got.exit_code == 0, got.output
    out = json.loads(got.stdout)
    assert out["se_check"]["slots"] == {"sign": verdict} and out["se_check"]["error"] is None
    assert read_job(ctx.engine, out["se_check"]["job"]).state == "done"
    assert out["renewal_needed"] == needed
    with ctx.sessions() as s:
        gone = {c.kind: ("old" if c.serial == old[c.kind] else "new") for c in s.scalars(
            select(Credential).where(Credential.id.in_([x["credential"] for x in out["revoked"]])))}
    assert gone == revoked
    if not revoked:  # the certificate the SE holds is valid, and it signs
        assert _live_serials(ctx, phone) == during
        se = wallet_sim.open_secure_element(phone, ctx.home)
        _cms, cert = sign_with_se(se.transmit, "sign", PASSWORD.encode(), b"x")
        assert format(x509.load_der_x509_certificate(cert).serial_number, "x") == during["jpki-sign"]
        assert _ocsp(issuer, cert, "sign").status == "good"
    audit = _abandon_audit(ctx, phone)
    assert (audit["job"], audit["se_check"]["slots"], audit["renewal_needed"]) == (job, {"sign": verdict}, needed)
    assert audit["revoked"] == [x["credential"] for x in out["revoked"]]
    text = CliRunner().invoke(cli, ["tsm", "abandon", job, "--reason", "again"]).stdout
    assert f"the sign slot was read (job {out['se_check']['job']}): {verdict}" in text
    # decided once: a second call reads nothing more and changes nothing
    assert [j.id for j in list_jobs(ctx.engine, phone, kind="read-jpki")] == [out["se_check"]["job"]]


def test_an_abandoned_renewal_whose_se_is_busy_decides_nothing_until_it_is_read(live, monkeypatch):
    """The SE held by another job when the abandon reads it (past the TSM's lock wait): the
    read never reached the SE, yet every slot counted ``unknown`` and the slot's live
    certificate was revoked, here one the SE still held with its key (GENERATE KEY never
    reached it). Now the abandon stops with a typed "SE busy" error (an ``se-busy`` problem
    over the API: a LockBusyError) that says the job is abandoned and nothing is revoked yet;
    the read job waits, and the same abandon again, the SE free, reads it and keeps the
    certificate."""
    import tsm.jobs
    from mcred.provision import AbandonSeBusyError
    from tsm.errors import LockBusyError

    ctx, _issuer, _url = live
    phone, _holder = _phone(ctx)
    _expiring(ctx, phone, 30)
    old = _live_serials(ctx, phone)
    job = _renewal_cut_after(ctx, phone, "note-jpki-keys", slot="sign")  # GENERATE KEY never reached the SE
    during = _live_serials(ctx, phone)
    real = tsm.jobs.acquire

    def busy_for_the_read(engine, se_id, owner, **kwargs):  # noqa: ANN001, ANN202
        if owner.startswith(f"abandon:{job}"):  # another job holds the SE while the abandon reads it
            raise LockBusyError(f"SE {se_id} is locked by another worker (waited 30 s)")
        return real(engine, se_id, owner, **kwargs)

    monkeypatch.setattr(tsm.jobs, "acquire", busy_for_the_read)
    with pytest.raises(AbandonSeBusyError, match="nothing is revoked yet") as raised:
        abandon(ctx, job, "the holder left", actor="test")
    assert isinstance(raised.value, LockBusyError)
    assert read_job(ctx.engine, job).state == "abandoned"
    assert _live_serials(ctx, phone) == during
    (read,) = list_jobs(ctx.engine, phone, kind="read-jpki")
    assert read_job(ctx.engine, read.id).state == "pending"
    said = CliRunner().invoke(cli, ["tsm", "abandon", job, "--reason", "the holder left"], env={"COLUMNS": None})
    assert said.exit_code == 1 and f"mcred tsm abandon {job}" in " ".join(said.output.split()), said.output
    assert "nothing was changed" not in said.output and _live_serials(ctx, phone) == during
    monkeypatch.setattr(tsm.jobs, "acquire", real)
    result = abandon(ctx, job, "the holder left", actor="test")
    assert result.se_check is not None and result.se_check.slots == {"sign": "unchanged"}
    assert result.se_check.job == read.id and read_job(ctx.engine, read.id).state == "done"
    assert result.revoked == () and list(result.renewal_needed) == []
    assert _live_serials(ctx, phone) == during and during["jpki-sign"] == old["jpki-sign"]
    assert len(list_jobs(ctx.engine, phone, kind="read-jpki")) == 1


def test_an_abandoned_renewal_whose_se_cannot_be_read_revokes_as_before(live):
    """The SE not reached for the check (a lost answer, a phone out of reach): the slot may
    have been changed, so its live certificate is revoked and marked, the read job abandoned
    (not left unfinished), and the answer says why the SE could not be read. A second call
    does not read again: the abandon decided once."""
    ctx, _issuer, _url = live
    phone, _holder = _phone(ctx)
    _expiring(ctx, phone, 30)
    old = _live_serials(ctx, phone)
    job = _renewal_cut_after(ctx, phone, "note-jpki-keys", slot="sign")  # GENERATE KEY never reached the SE

    def unreachable(apdu: bytes) -> bytes:
        raise ConnectionError("no signal")

    result = abandon(ctx, job, "the phone is out of reach", actor="test", transmit=unreachable)
    assert result.se_check is not None and result.se_check.slots == {"sign": "unknown"}
    assert "no signal" in result.se_check.error or "ConnectionError" in result.se_check.error
    assert read_job(ctx.engine, result.se_check.job).state == "abandoned"
    assert list(result.renewal_needed) == ["sign"]
    assert {c for c, _k in result.revoked} and old["jpki-sign"] not in _live_serials(ctx, phone).values()
    again = abandon(ctx, job, "again", actor="test")  # the phone is reachable now: not read again
    assert again.se_check == result.se_check and again.revoked == ()
    assert len(list_jobs(ctx.engine, phone, kind="read-jpki")) == 1
