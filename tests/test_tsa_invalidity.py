"""A TSA unit revoked with an invalidity date (``mcred tsa revoke --invalid-since``, RFC 5280
5.3.2; specs/revocation.md 5.2, "A TSA unit revoked"): its root's CRL entry carries the date
(OpenSSL reads it), a later revocation amends it as a credential's is (an earlier date, the
reason to keyCompromise; never the other way), and a relying party judges the unit's
time-stamps by it: for a reason other than keyCompromise, one made before the date stands
and one made at or after it is refused by name (``signature_timestamp`` code ``revoked``,
``invalid_since`` the date), from ``mcred jpki verify`` as from ``POST /rp/jpki/verify``; for
keyCompromise none stands, an earlier genTime included (it is what the key in question
signed)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import shutil
import subprocess

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_present_http import Server, free_port, installation_env
from test_rp_http import rp_app, run_cli
from test_rp_jpki_verdicts import CONTENT as SIGNED
from test_rp_jpki_verdicts import ROOTS, SIG, _crl

from issuer.db import AuditEvent
from issuer.revocation import InvalidSinceRefused
from issuer.tsa import TimeStampAuthority
from mcred.context import Context
from mcred.timestamps import Stamper
from protocols import tsp
from reader.crl_cache import CrlCache
from reader.relying_party import RelyingPartyService, signature_timestamp, tsa_unit_refusal

CONTENT = "賃貸借契約書 2026-12-12".encode()
URL = "http://tsa.test/tsa/root.crl"


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def _stamp(tsa: TimeStampAuthority) -> tuple[bytes, tsp.TimeStamp]:
    token = tsp.token_of_response(tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))
    return token, tsp.verify_token(token, data=CONTENT, roots=tsa.roots())


def _judged(tsa: TimeStampAuthority, stamp: tsp.TimeStamp, at: dt.datetime):  # noqa: ANN202 - a Check or None
    """The unit's revocation as a relying party reads it from the root's CRL as served now."""
    cache = CrlCache()
    cache.get(URL, at, lambda _url: x509.load_der_x509_crl(tsa.crl()))
    return tsa_unit_refusal(stamp, at, cache=cache)


def _entry(tsa: TimeStampAuthority, stamp: tsp.TimeStamp) -> x509.RevokedCertificate:
    return x509.load_der_x509_crl(tsa.crl()).get_revoked_certificate_by_serial_number(
        stamp.tsa_certificate.serial_number)


def _invalidity(entry: x509.RevokedCertificate) -> dt.datetime | None:
    try:
        return entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
    except x509.ExtensionNotFound:
        return None


def test_a_units_invalidity_date_is_on_its_crl_entry_and_judges_its_time_stamps(home, db_url, tmp_path):
    """Two time-stamps of one unit, an hour apart; the unit revoked (its clock found out of its
    accuracy since between them: unspecified) with that date. The earlier one stands, the later
    one is refused naming the date; the CRL entry carries it (OpenSSL prints Invalidity Date);
    the revocation's own time stays what it was. Without the date (the test's control), both
    would stand: the revocation came after both."""
    real = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(real - dt.timedelta(hours=3))
    ctx = Context.open(home, db_url)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock, crl_url=URL)
    before_token, before = _stamp(tsa)
    clock.at += dt.timedelta(hours=1)
    after_token, after = _stamp(tsa)
    assert before.tsa_certificate == after.tsa_certificate
    since = before.gen_time + dt.timedelta(minutes=30)
    clock.at = real - dt.timedelta(minutes=10)

    # a time to come, or one without its offset, is no invalidity date: nothing is revoked
    for bad, said in ((clock.at + dt.timedelta(seconds=5), "a TSA unit cannot be known compromised at a time to come"),
                      (since.replace(tzinfo=None), "has no UTC offset")):
        with pytest.raises(InvalidSinceRefused, match=said):
            tsa.revoke_unit_detail("tsa-unit-1", "unspecified", invalid_since=bad)
    assert _entry(tsa, before) is None

    done = tsa.revoke_unit_detail("tsa-unit-1", "unspecified", actor="test",
                                  invalid_since=since.astimezone(dt.timezone(dt.timedelta(hours=9))))
    assert (done.changed, done.reason, done.invalid_since, done.amended_from) == (True, "unspecified", since, None)
    entry = _entry(tsa, before)
    assert (entry.revocation_date_utc, _invalidity(entry)) == (clock.at, since)
    assert _judged(tsa, before, real) is None
    refused = _judged(tsa, after, real)
    assert (refused.code, refused.revoked_at, refused.revocation_reason, refused.invalid_since) == (
        "revoked", clock.at, "unspecified", since)
    assert f"invalid since {since.isoformat()}" in refused.reason, refused.reason
    assert f"genTime {after.gen_time.isoformat()} is not before it" in refused.reason, refused.reason
    assert refused.to_dict()["invalid_since"] == since.isoformat()
    # the signature_timestamp check of each: the earlier passes, the later carries the date
    cache = CrlCache()
    cache.get(URL, real, lambda _url: x509.load_der_x509_crl(tsa.crl()))
    ok, _ = signature_timestamp([(before_token, CONTENT)], tsa.roots(), revocation="crl", at=real, cache=cache)
    no, _ = signature_timestamp([(after_token, CONTENT)], tsa.roots(), revocation="crl", at=real, cache=cache)
    assert (ok.code, no.code, no.to_dict()["invalid_since"]) == ("ok", "revoked", since.isoformat())
    with ctx.sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="tsa.unit.revoke").all()
        assert event.detail["invalid_since"] == since.isoformat() and event.actor == "test"
    if shutil.which("openssl"):
        (tmp_path / "root.crl").write_bytes(tsa.crl())
        text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "root.crl"), "-text",
                               "-noout"], capture_output=True, text=True, check=True).stdout
        assert "Invalidity Date" in text and since.strftime("%b %e %H:%M:%S %Y GMT") in text, text


def test_a_units_revocation_is_amended_by_an_earlier_date_or_a_compromise(home, db_url):
    """Revoked superseded with no date, a time-stamp of the unit made before the revocation
    stands; an invalidity date before it amends the revocation (the CRL entry gets it, the
    time-stamp is refused), a later date changes nothing, and keyCompromise then makes the
    reason a compromise, date and time kept: no time-stamp of the unit stands, its genTime
    before the date included, and the reason says why. Audited as amendments."""
    real = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(real - dt.timedelta(hours=2))
    ctx = Context.open(home, db_url)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock, crl_url=URL)
    _token, stamp = _stamp(tsa)
    clock.at = real - dt.timedelta(minutes=30)
    tsa.revoke_unit_detail("tsa-unit-1", "superseded")
    revoked_at = clock.at
    assert _judged(tsa, stamp, real) is None and _invalidity(_entry(tsa, stamp)) is None

    clock.at = real - dt.timedelta(minutes=20)
    early = stamp.gen_time - dt.timedelta(minutes=5)
    done = tsa.revoke_unit_detail("tsa-unit-1", "superseded", invalid_since=early, actor="test")
    assert (done.changed, done.reason, done.invalid_since, done.amended_from) == (True, "superseded", early,
                                                                                  "superseded")
    entry = _entry(tsa, stamp)
    assert (entry.revocation_date_utc, _invalidity(entry)) == (revoked_at, early)
    assert _judged(tsa, stamp, real).invalid_since == early
    # a later date, or the same one: nothing new
    for later in (early, early + dt.timedelta(minutes=1), revoked_at):
        again = tsa.revoke_unit_detail("tsa-unit-1", "cessationOfOperation", invalid_since=later)
        assert (again.changed, again.reason, again.invalid_since) == (False, "superseded", early), later

    compromised = tsa.revoke_unit_detail("tsa-unit-1", "keyCompromise", actor="test")
    assert (compromised.changed, compromised.reason, compromised.amended_from, compromised.invalid_since) == (
        True, "keyCompromise", "superseded", early)
    # a time-stamp whose genTime is before the compromise date: refused all the same
    earlier = dataclasses.replace(stamp, gen_time=early - dt.timedelta(hours=1))
    refused = _judged(tsa, earlier, real)
    assert (refused.code, refused.revocation_reason, refused.invalid_since) == ("revoked", "keyCompromise", early)
    assert "none of its time-stamps is relied on" in refused.reason and "whoever held it" in refused.reason
    entry = _entry(tsa, stamp)
    assert (entry.revocation_date_utc, _invalidity(entry)) == (revoked_at, early)
    with ctx.sessions() as s:
        events = s.query(AuditEvent).filter_by(action="tsa.unit.revoke.amend").order_by(AuditEvent.id).all()
        assert [(e.detail["previous_reason"], e.detail["reason"], e.detail.get("previous_invalid_since"),
                 e.detail["invalid_since"]) for e in events] == [
            ("superseded", "superseded", None, early.isoformat()),
            ("superseded", "keyCompromise", early.isoformat(), early.isoformat())]


def test_tsa_revoke_invalid_since_from_the_command_line(home, tmp_path):
    """``mcred tsa revoke --invalid-since``: said in the text and the JSON; a value that is no
    instant, or one to come, is a bad --invalid-since (exit 2), nothing revoked; a later
    call with an earlier date amends it."""
    from mcred.timestamps import time_stamp_authority

    ctx = Context.open(home)
    tsa = time_stamp_authority(ctx)
    tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT)))
    for bad in ("yesterday", "2999-01-01T00:00:00+09:00"):
        out = run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "cessationOfOperation", "--invalid-since", bad,
                      code=2)
        assert "--invalid-since" in out, out
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    since = now - dt.timedelta(hours=2)
    text = run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "cessationOfOperation", "--invalid-since",
                   since.astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat())
    assert f"revoked (cessationOfOperation, invalid since {since.isoformat()})" in " ".join(text.split()), text
    earlier = since - dt.timedelta(hours=1)
    doc = json.loads(run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "cessationOfOperation", "--invalid-since",
                             earlier.isoformat(), "--json"))
    assert doc == {"unit": "tsa-unit-1", "serial": doc["serial"], "reason": "cessationOfOperation", "changed": True,
                   "amended_from": "cessationOfOperation", "invalid_since": earlier.isoformat()}


def test_jpki_verify_and_the_rp_api_judge_time_stamps_by_the_units_invalidity_date(tmp_path, every_answer_checked):
    """The signature stamped before the unit's invalidity date is valid; the one stamped after
    it is refused with ``signature_timestamp`` code ``revoked`` and ``invalid_since`` the date,
    by ``mcred jpki verify`` (the unit's CRL fetched from ``mcred serve``, JSON and text) and
    by ``POST /rp/jpki/verify``. The revocation itself came after both time-stamps."""
    from fastapi.testclient import TestClient

    from mcred.service import create_app

    home, port = tmp_path / "home", free_port()
    home.mkdir()
    real = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with installation_env(home, port):
        ctx = Context.open(home)
        clock = Clock(real - dt.timedelta(hours=2))
        authority = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock,
                                       crl_url=f"{ctx.public_url}/tsa/root.crl")
        stamper = Stamper(authority.respond, "the test's TSA", tuple(authority.roots()))
        files = {"doc.txt": SIGNED, "before.p7s": stamper.stamp_signature(SIG),
                 "roots.pem": b"".join(r.public_bytes(serialization.Encoding.PEM) for r in ROOTS),
                 "tsa.pem": b"".join(r.public_bytes(serialization.Encoding.PEM) for r in stamper.roots),
                 "signer.crl": _crl()}
        clock.at += dt.timedelta(hours=1)
        files["after.p7s"] = stamper.stamp_signature(SIG)
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        since = real - dt.timedelta(minutes=90)
        run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "unspecified", "--invalid-since", since.isoformat())
        crl = authority.crl()

        def args(p7s: str) -> list[str]:
            return ["jpki", "verify", str(tmp_path / "doc.txt"), "--signature", str(tmp_path / p7s),
                    "--roots", str(tmp_path / "roots.pem"), "--tsa-roots", str(tmp_path / "tsa.pem"),
                    "--revocation", "crl", "--crl", str(tmp_path / "signer.crl")]

        app = create_app(ctx, job_workers=1)
        try:
            with Server(app, port):  # the unit's CRL at the URL it names
                good = json.loads(run_cli(*args("before.p7s"), "--json"))
                bad = json.loads(run_cli(*args("after.p7s"), "--json", code=1))
                text = run_cli(*args("after.p7s"), code=1)
        finally:
            app.state.jobs.shutdown()
    assert good["valid"], good
    stamped = {c["name"]: c for c in good["checks"]}["signature_timestamp"]
    assert stamped["code"] == "ok" and stamped["revoked_at"] is None, stamped
    refused = {c["name"]: c for c in bad["checks"]}["signature_timestamp"]
    assert (refused["code"], refused["revocation_reason"], refused["invalid_since"]) == (
        "revoked", "unspecified", since.isoformat()), refused
    assert f"invalid since {since.isoformat()}" in refused["reason"], refused
    assert f"invalid_since={since.isoformat()}" in text and "INVALID" in text, text

    def answer(request: httpx.Request) -> httpx.Response:  # the TSA unit's CRL, and the signer's
        return httpx.Response(200, content=crl if request.url.path.startswith("/tsa/") else _crl())

    rp = RelyingPartyService(ROOTS, tsa_roots=list(stamper.roots),
                             client=httpx.Client(transport=httpx.MockTransport(answer)))
    verdicts = {}
    with TestClient(rp_app(rp)) as c:
        for name in ("before.p7s", "after.p7s"):
            r = c.post("/rp/jpki/verify", json={"content": base64.b64encode(SIGNED).decode(),
                                                "signature": base64.b64encode(files[name]).decode(),
                                                "revocation": "crl"})
            assert r.status_code == 200, r.text
            verdicts[name] = r.json()
    assert verdicts["before.p7s"]["valid"], verdicts["before.p7s"]
    assert not verdicts["after.p7s"]["valid"]
    over_http = {c["name"]: c for c in verdicts["after.p7s"]["checks"]}["signature_timestamp"]
    assert {k: over_http[k] for k in ("code", "invalid_since", "revocation_reason")} == {
        "code": "revoked", "invalid_since": since.isoformat(), "revocation_reason": "unspecified"}
    assert "POST /rp/jpki/verify 200" in every_answer_checked
