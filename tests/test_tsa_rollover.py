"""The time-stamping authority's root rolled over (specs/issuer-keys.md, "The TSA's root"):
`mcred tsa rollover`, `POST /trust/tsa-rollover`, and the TSA by itself in its root's last
years. A new root generation with a new unit stamps at once; the older root keeps signing the
CRL of its units at its own URL until they have all expired, and its key may go only then; the
relying party trusts every generation (`/tsa/root.pem`, `mcred export tsa-root`), so tokens
made before the rollover verify after it as tokens made after do, each unit looked up on its
own root's CRL. `POST /trust/tsa-revocations` revokes a unit as `mcred tsa revoke` does. Both
database backends; OpenSSL reads the roots, both CRLs and both replies."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import subprocess

import httpx
import pytest
from api_helpers import bearer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from documented import check_every_answer
from fastapi.testclient import TestClient
from test_present_http import Server, free_port, installation_env
from test_rp_http import run_cli
from test_rp_jpki_verdicts import CONTENT as SIGNED
from test_rp_jpki_verdicts import ROOTS, SIG, _crl

from issuer.db import AuditEvent, IssuerKey
from issuer.key_destruction import CaDutiesRemain, SignerStillSigning
from issuer.tsa import (
    CRL_VALIDITY,
    ROOT_NOTICE_DAYS,
    ROOT_RENEW_DAYS,
    ROOT_STAGE_DAYS,
    ROOT_YEARS,
    UNIT_DAYS,
    UNIT_RENEW_DAYS,
    TimeStampAuthority,
    UnknownTsaKey,
)
from mcred.context import Context
from mcred.timestamps import Stamper
from protocols import tsp
from protocols.certs import crl_url
from reader.relying_party import verify

CONTENT = b"a contract, stamped before and after the root's rollover"
URL = "http://tsa.test/tsa/root.crl"
URL2 = "http://tsa.test/tsa/root-g2.crl"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def _token(tsa: TimeStampAuthority) -> bytes:
    return tsp.token_of_response(tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))


def _events(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.sessions() as s:
        return s.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id).all()


def _crl_served(tsa: TimeStampAuthority) -> httpx.Client:
    """What a relying party fetches: each root generation's CRL at the URL its units name."""
    where = {"/tsa/root.crl": 1, "/tsa/root-g2.crl": 2}
    return httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=tsa.crl(where[request.url.path]))))


def _timestamp_check(signature: bytes, tsa_roots, client: httpx.Client) -> dict:  # noqa: ANN001
    """The relying party's ``signature_timestamp`` check of a CAdES-T signature."""
    verdict = verify(SIGNED, signature, roots=ROOTS, revocation="crl", crl=_crl(), tsa_roots=tsa_roots,
                     client=client)
    return next(c for c in verdict["checks"] if c["name"] == "signature_timestamp")


def test_tokens_from_before_a_rollover_verify_after_it_under_their_own_root(home, db_url):
    ctx = Context.open(home, db_url)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=URL)
    g1 = tsa.root()
    old_token = _token(tsa)
    before = Stamper(tsa.respond, "the test's TSA", tuple(tsa.roots())).stamp_signature(SIG)

    done = tsa.rollover(actor="test")
    assert (done.root, done.previous, done.unit, done.crl, done.automatic) == (
        "tsa-root-g2", "tsa-root-g1", "tsa-unit-2", URL2, False)
    (event,) = _events(ctx, "tsa.root.rollover")
    assert (event.subject, event.actor, event.detail["previous"], event.detail["unit"], event.detail["automatic"]) == (
        "tsa-root-g2", "test", "tsa-root-g1", "tsa-unit-2", False)
    # every generation is trusted, the current first; the new one has a name of its own
    roots = tsa.roots()
    assert len(roots) == 2 and roots[1] == g1 and tsa.root() == roots[0] and roots[0].serial_number == done.serial
    assert roots[0].subject.rfc4514_string() == "CN=mcred Time-Stamping Root G2,O=mcred lab,C=JP"
    with ctx.sessions() as s:
        assert [r.label for r in s.query(IssuerKey).filter_by(purpose="tsa-root", active=True)] == ["tsa-root-g2"]

    # the new unit stamps at once, under the new root, naming the new root's CRL
    new = tsp.verify_token(_token(tsa), data=CONTENT, roots=roots)
    assert new.root == roots[0] and new.tsa_certificate.serial_number == done.unit_serial
    assert crl_url(new.tsa_certificate) == URL2
    assert new.tsa_certificate.not_valid_after_utc <= roots[0].not_valid_after_utc
    # a token made before the rollover verifies after it, under the older root, with its URL
    old = tsp.verify_token(old_token, data=CONTENT, roots=roots)
    assert old.root == g1 and crl_url(old.tsa_certificate) == URL
    # a unit chaining to no trusted root is refused
    with pytest.raises(tsp.TokenInvalid, match="does not chain to a trusted time-stamping root"):
        tsp.verify_token(old_token, data=CONTENT, roots=[roots[0]])
    with pytest.raises(tsp.TokenInvalid, match="does not chain to a trusted time-stamping root"):
        tsp.verify_token(_token(tsa), data=CONTENT, roots=[g1])

    # each root signs its own CRL, which lists only the units it certified
    crls = {n: x509.load_der_x509_crl(tsa.crl(n)) for n in (1, 2)}
    assert crls[1].is_signature_valid(g1.public_key()) and crls[1].issuer == g1.subject
    assert crls[2].is_signature_valid(roots[0].public_key()) and crls[2].issuer == roots[0].subject
    assert x509.load_der_x509_crl(tsa.crl()).issuer == roots[0].subject  # the current root's
    with pytest.raises(UnknownTsaKey, match="no TSA root generation 3"):
        tsa.crl(3)

    # the relying party: before and after the rollover, each unit on its own root's CRL
    after = Stamper(tsa.respond, "the test's TSA", tuple(roots)).stamp_signature(SIG)
    client = _crl_served(tsa)
    assert _timestamp_check(before, roots, client)["code"] == "ok"
    assert _timestamp_check(after, roots, client)["code"] == "ok"
    refused = _timestamp_check(before, [roots[0]], client)  # a relying party that dropped the older root
    assert not refused["passed"] and "does not chain to a trusted time-stamping root" in refused["reason"]
    # the old unit's CRL served in place of the new one's: not its root's, so it cannot tell
    crossed = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=tsa.crl(1))))
    said = _timestamp_check(after, roots, crossed)
    assert said["code"] == "unavailable" and "not the time-stamping root" in said["reason"], said

    # a unit of the older generation revoked: on the older root's CRL, not the new one's
    tsa.revoke_unit("tsa-unit-1", "keyCompromise")
    assert x509.load_der_x509_crl(tsa.crl(1)).get_revoked_certificate_by_serial_number(
        old.tsa_certificate.serial_number) is not None
    assert len(x509.load_der_x509_crl(tsa.crl(2))) == 0
    said = _timestamp_check(before, roots, client)
    assert (said["code"], said["revocation_reason"]) == ("revoked", "keyCompromise"), said
    assert _timestamp_check(after, roots, client)["code"] == "ok"
    # the new unit keeps stamping (the retired old unit is never taken up again)
    assert tsp.verify_token(_token(tsa), data=CONTENT, roots=roots).root == roots[0]
    tsa.revoke_unit("tsa-unit-2", "superseded")
    third = tsp.verify_token(_token(tsa), data=CONTENT, roots=roots)
    assert third.tsa_certificate.subject.rfc4514_string().startswith("CN=mcred TSA unit 3,") and third.root == roots[0]
    ctx.engine.dispose()


def test_the_older_roots_key_goes_once_its_units_have_expired(home, db_url):
    """The newest root's key never goes; an older root's not while a unit it certified has
    not expired (revoked or not: its CRL lists it); then it goes after signing its final CRL,
    served for good, as a JPKI root generation's. Over HTTP too."""
    from mcred import timestamps
    from mcred.service import create_app

    ctx = Context.open(home, db_url)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock, crl_url=f"{ctx.public_url}/tsa/root.crl")
    unit1 = tsp.verify_token(old_token := _token(tsa), data=CONTENT, roots=tsa.roots()).tsa_certificate
    clock.at = t0 + dt.timedelta(days=100)
    tsa.rollover()
    g2 = tsa.root()
    with pytest.raises(SignerStillSigning, match=r"tsa-root-g2 is the current one.*/tsa/root-g2\.crl.*mcred tsa rollover"):
        tsa.destroy_key("tsa-root-g2")
    # the older root's unit is retired with it: its key may go, and it never stamps again, not
    # even when the new root's unit is revoked (a unit under the current root takes over)
    assert tsa.destroy_key("tsa-unit-1").changed and not ctx.keystore.has("tsa-unit-1")
    tsa.revoke_unit("tsa-unit-2", "superseded")
    third = tsp.verify_token(_token(tsa), data=CONTENT, roots=tsa.roots())
    assert third.tsa_certificate.subject.rfc4514_string().startswith("CN=mcred TSA unit 3,") and third.root == g2
    with pytest.raises(SignerStillSigning, match="tsa-unit-3 is the one stamping now"):
        tsa.destroy_key("tsa-unit-3")
    # the older root, while its unit has not expired: refused, revoked or not (its CRL lists it to its end)
    last = unit1.not_valid_after_utc
    for _ in range(2):
        with pytest.raises(CaDutiesRemain, match=f"still certifies 1 unit.*the last ends {last:%Y-%m-%d %H:%M} UTC") as no:
            tsa.destroy_key("tsa-root-g1")
        assert no.value.until == last and no.value.duty == "crl" and ctx.keystore.has("tsa-root-g1")
        tsa.revoke_unit("tsa-unit-1", "superseded")

    # past its last unit's end: the CRL asked once more, then its key goes; over HTTP as well
    timestamps._TSAS[(str(ctx.home), ctx.database)] = tsa  # the service's TSA, on the test's clock
    api = create_app(ctx, job_workers=1)
    try:
        with contextlib.closing(TestClient(api)) as client:
            checked = check_every_answer(client, api)
            clock.at = last + dt.timedelta(hours=1)
            signed_last = client.get("/tsa/root.crl")
            assert signed_last.status_code == 200
            listed = x509.load_der_x509_crl(signed_last.content)
            assert listed.get_revoked_certificate_by_serial_number(unit1.serial_number) is not None
            done = tsa.destroy_key("tsa-root-g1", actor="test")
            assert (done.label, done.purpose, done.changed, done.revoked_at) == ("tsa-root-g1", "tsa-root", True, None)
            assert not ctx.keystore.has("tsa-root-g1") and ctx.keystore.has("tsa-root-g2")
            # its certificate stays trusted: its tokens verify
            assert tsa.roots()[1].subject.rfc4514_string() == "CN=mcred Time-Stamping Root,O=mcred lab,C=JP"
            assert tsp.verify_token(old_token, data=CONTENT, roots=tsa.roots()).tsa_certificate == unit1
            # its final CRL, signed before its key went, for good (tests/test_final_crl.py)
            final = client.get("/tsa/root.crl").content
            assert final != signed_last.content and x509.load_der_x509_crl(final).next_update_utc.year == 9999
            clock.at += CRL_VALIDITY + dt.timedelta(minutes=10)
            assert client.get("/tsa/root.crl").content == final == tsa.crl(1)
            # the current root's CRL is signed as before
            assert x509.load_der_x509_crl(client.get("/tsa/root-g2.crl").content).is_signature_valid(
                tsa.root().public_key())
            assert {"GET /tsa/{filename} 200"} <= set(checked), checked
    finally:
        api.state.jobs.shutdown()
        timestamps._TSAS.pop((str(ctx.home), ctx.database), None)
    assert [e.subject for e in _events(ctx, "tsa.key.destroy")] == ["tsa-unit-1", "tsa-root-g1"]
    ctx.engine.dispose()


def test_the_tsa_rolls_its_root_over_by_itself_in_its_last_years(home):
    """No unit is cut short by its root's end: a unit due in the root's last ROOT_RENEW_DAYS
    comes with a new root generation (audited, automatic). A year before that window
    (ROOT_STAGE_DAYS) the TSA stages that root by itself at a time-stamp, so that it is in
    /tsa/root.pem long before its first time-stamp, and the rollover starts it. A unit made
    late in the root's life still has its full term; `mcred doctor` warns ROOT_NOTICE_DAYS
    before the staging while nothing is staged."""
    from mcred.doctor import _tsa

    ctx = Context.open(home)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock, crl_url=f"{ctx.public_url}/tsa/root.crl")
    _token(tsa)
    g1 = tsa.root()
    rolls = g1.not_valid_after_utc - dt.timedelta(days=ROOT_RENEW_DAYS)
    stages = rolls - dt.timedelta(days=ROOT_STAGE_DAYS)
    assert _tsa(ctx, t0).ok and "root tsa-root-g1 valid until" in _tsa(ctx, t0).detail
    warned = _tsa(ctx, stages - dt.timedelta(days=ROOT_NOTICE_DAYS - 1))
    assert not warned.ok and f"none staged: from {stages.date().isoformat()} the TSA stages its next root by " \
        f"itself, and from {rolls.date().isoformat()} the next unit due comes with a new root" in warned.detail
    assert warned.fix.startswith("mcred tsa stage, give relying parties the roots")
    assert _tsa(ctx, stages - dt.timedelta(days=ROOT_NOTICE_DAYS + 1)).ok

    # just before the staging window: a time-stamp (by a new unit: the first has ended) stages nothing
    clock.at = stages - dt.timedelta(days=1)
    assert tsp.verify_token(_token(tsa), data=CONTENT, roots=[g1]).tsa_certificate.subject.rfc4514_string(
        ).startswith("CN=mcred TSA unit 2,")
    assert tsa.roots() == [g1] and not _events(ctx, "tsa.root.stage")
    # just before the rollover window: a new unit under the same root, with its full term; the
    # time-stamp that reads it stages the next root, listed after the current one
    clock.at = rolls - dt.timedelta(days=10)
    tsa.revoke_unit("tsa-unit-2", "superseded")
    late = tsp.verify_token(_token(tsa), data=CONTENT, roots=tsa.roots())
    assert late.tsa_certificate.subject.rfc4514_string().startswith("CN=mcred TSA unit 3,")
    assert late.root == g1 == tsa.root() and late.tsa_certificate.not_valid_after_utc - clock.at >= dt.timedelta(
        days=UNIT_DAYS - 1)
    (staging,) = _events(ctx, "tsa.root.stage")
    assert (staging.subject, staging.actor, staging.detail["automatic"], staging.detail["current"]) == (
        "tsa-root-g2", "issuer", True, "tsa-root-g1")
    staged = tsa.roots()
    assert len(staged) == 2 and staged[0] == g1 and "Root G2" in staged[1].subject.rfc4514_string()
    assert _tsa(ctx, clock.at).ok and "tsa-root-g2 staged (in /tsa/root.pem)" in _tsa(ctx, clock.at).detail
    assert not _events(ctx, "tsa.root.rollover")
    # its renewal falls in the root's last years: the staged root is started with the next unit
    clock.at = late.tsa_certificate.not_valid_after_utc - dt.timedelta(days=UNIT_RENEW_DAYS - 1)
    renewed = tsp.verify_token(_token(tsa), data=CONTENT, roots=staged)  # the roots taken at the staging
    roots = tsa.roots()
    assert roots == [staged[1], g1] and renewed.root == staged[1]
    assert renewed.tsa_certificate.not_valid_after_utc == clock.at + dt.timedelta(days=UNIT_DAYS)
    assert roots[0].not_valid_after_utc == rolls - dt.timedelta(days=10) + dt.timedelta(days=365 * ROOT_YEARS)
    (event,) = _events(ctx, "tsa.root.rollover")
    assert (event.subject, event.actor, event.detail["automatic"], event.detail["unit"],
            event.detail["staged_since"]) == ("tsa-root-g2", "issuer", True, "tsa-unit-4",
                                              (rolls - dt.timedelta(days=10)).isoformat())
    assert crl_url(renewed.tsa_certificate) == f"{ctx.public_url}/tsa/root-g2.crl"
    # no unit ever outlived its root
    with ctx.sessions() as s:
        units = [x509.load_der_x509_certificate(r.certificate) for r in s.query(IssuerKey).filter_by(purpose="tsa-unit")]
    by_key = {r.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest: r for r in roots}
    for unit in units:
        issuer = by_key[unit.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier]
        assert unit.not_valid_after_utc <= issuer.not_valid_after_utc
    assert _tsa(ctx, clock.at).ok  # the new root is far from its end
    ctx.engine.dispose()


@needs_openssl
def test_the_commands_and_openssl_before_and_after_a_rollover(tmp_path):
    """`mcred tsa stamp`, `rollover`, `verify` (its unit on its root's CRL, from `mcred serve`),
    `revoke` and `export tsa-root`; OpenSSL verifies both replies under the exported roots and
    reads the new root and both CRLs as served."""
    from mcred.service import create_app

    home, port = tmp_path / "home", free_port()
    home.mkdir()
    doc = tmp_path / "doc.txt"
    doc.write_bytes(CONTENT)
    old_reply, new_reply = tmp_path / "old.tsr", tmp_path / "new.tsr"
    with installation_env(home, port):
        run_cli("tsa", "stamp", str(doc), "--out", str(old_reply))
        done = json.loads(run_cli("tsa", "rollover", "--json"))
        assert (done["root"], done["previous"], done["unit"], done["automatic"]) == (
            "tsa-root-g2", "tsa-root-g1", "tsa-unit-2", False)
        assert done["crl"] == f"http://127.0.0.1:{port}/tsa/root-g2.crl"
        said = " ".join(run_cli("tsa", "rollover").split())
        assert "tsa-root-g3 (serial " in said and "tsa-unit-3 (serial" in said and "tsa-root-g2 is retired" in said
        assert "mcred export tsa-root --out tsa-root.pem" in said
        run_cli("tsa", "stamp", str(doc), "--out", str(new_reply))
        run_cli("export", "tsa-root", "--out", str(tmp_path / "roots.pem"))
        exported = x509.load_pem_x509_certificates((tmp_path / "roots.pem").read_bytes())
        assert [c.subject.rfc4514_string().split(",")[0] for c in exported] == [
            "CN=mcred Time-Stamping Root G3", "CN=mcred Time-Stamping Root G2", "CN=mcred Time-Stamping Root"]
        ctx = Context.open(home)
        app = create_app(ctx, job_workers=1)
        try:
            with Server(app, port) as server:
                for reply in (old_reply, new_reply):
                    verdict = json.loads(run_cli("tsa", "verify", str(reply), "--data", str(doc), "--json"))
                    assert verdict["valid"] and verdict["revocation"] == "crl", verdict
                    ok = subprocess.run(["openssl", "ts", "-verify", "-data", str(doc), "-in", str(reply),
                                         "-CAfile", str(tmp_path / "roots.pem")], capture_output=True, text=True)
                    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
                assert httpx.get(f"{server.url}/tsa/root.pem").content == (tmp_path / "roots.pem").read_bytes()
                (tmp_path / "g3.der").write_bytes(httpx.get(f"{server.url}/tsa/root.der").content)
                text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "g3.der"), "-inform", "DER", "-noout",
                                       "-subject"], capture_output=True, text=True, check=True).stdout
                assert "mcred Time-Stamping Root G3" in text
                assert httpx.get(f"{server.url}/tsa/root-g2.pem").content == exported[1].public_bytes(Encoding.PEM)
                assert httpx.get(f"{server.url}/tsa/root-g4.crl").status_code == 404

                # the first unit revoked: on the first root's CRL; its reply no longer valid, the new one is
                run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "keyCompromise")
                said = run_cli("tsa", "verify", str(old_reply), "--data", str(doc), code=1)
                assert "NOT VALID" in said and "none of its time-stamps is relied on" in said
                assert run_cli("tsa", "verify", str(new_reply), "--data", str(doc)).startswith("VALID")
                texts = {}
                for name in ("root.crl", "root-g2.crl", "root-g3.crl"):
                    (tmp_path / name).write_bytes(httpx.get(f"{server.url}/tsa/{name}").content)
                    texts[name] = subprocess.run(["openssl", "crl", "-in", str(tmp_path / name), "-inform", "DER",
                                                  "-noout", "-text"], capture_output=True, text=True, check=True).stdout
        finally:
            app.state.jobs.shutdown()
        with ctx.sessions() as s:
            serial1 = x509.load_der_x509_certificate(s.get(IssuerKey, "tsa-unit-1").certificate).serial_number
        ctx.engine.dispose()
    texts = {name: re.sub(r" *= *", "=", text) for name, text in texts.items()}  # OpenSSL 1.1 and 3 alike
    assert "Issuer: C=JP, O=mcred lab, CN=mcred Time-Stamping Root\n" in texts["root.crl"]
    assert format(serial1, "X") in texts["root.crl"].replace(":", "").upper() and "Key Compromise" in texts["root.crl"]
    assert "CN=mcred Time-Stamping Root G2" in texts["root-g2.crl"] and "No Revoked Certificates" in texts["root-g2.crl"]
    assert "CN=mcred Time-Stamping Root G3" in texts["root-g3.crl"]


def test_the_rollover_and_a_units_revocation_over_http(home, db_url):
    """`POST /trust/tsa-rollover` and `POST /trust/tsa-revocations` (operator), answering as
    `mcred tsa rollover --json` and `mcred tsa revoke --json`, with the same refusals as typed
    problems; the trust material served follows the rollover."""
    from mcred.api_models import TsaRevocation, TsaRollover
    from mcred.service import create_app
    from mcred.timestamps import time_stamp_authority

    ctx = Context.open(home, db_url)
    tsa = time_stamp_authority(ctx)
    unit1 = tsa.unit().certificate
    api = create_app(ctx, job_workers=1)
    try:
        with contextlib.closing(TestClient(api)) as client:
            checked = check_every_answer(client, api)
            tok = bearer(ctx.sessions, ["operator", "issuer", "reader"])
            for who in ("issuer", "reader"):
                assert client.post("/trust/tsa-rollover", headers=tok[who]).status_code == 403
                r = client.post("/trust/tsa-revocations", json={"unit": "tsa-unit-1", "reason": "superseded"},
                                headers=tok[who])
                assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
            assert client.post("/trust/tsa-rollover").status_code == 401
            assert client.post("/trust/tsa-revocations", json={"unit": "tsa-unit-1", "reason": "superseded"}
                               ).status_code == 401
            assert len(tsa.roots()) == 1  # nothing was done

            r = client.post("/trust/tsa-rollover", headers=tok["operator"])
            got = TsaRollover.model_validate(r.json())
            assert r.status_code == 200 and (got.root, got.previous, got.unit, got.automatic) == (
                "tsa-root-g2", "tsa-root-g1", "tsa-unit-2", False)
            assert got.crl == f"{ctx.public_url}/tsa/root-g2.crl"
            (event,) = _events(ctx, "tsa.root.rollover")
            assert event.actor.startswith("token:")
            served = x509.load_pem_x509_certificates(client.get("/tsa/root.pem").content)
            assert [format(c.serial_number, "x") for c in served][0] == got.serial and len(served) == 2
            assert x509.load_der_x509_certificate(client.get("/tsa/root.der").content) == served[0]
            assert x509.load_der_x509_certificate(client.get("/tsa/root-g1.der").content) == served[1]
            assert client.get("/tsa/root-g1.crl").content == client.get("/tsa/root.crl").content
            for missing in ("root-g3.crl", "root-g3.pem", "root-g0.crl", "root-g02.crl", "roots.pem"):
                r = client.get(f"/tsa/{missing}")
                assert r.status_code == 404 and r.json()["type"] == "/problems/not-found", (missing, r.text)

            def revoke(**body):  # noqa: ANN202
                return client.post("/trust/tsa-revocations", json=body, headers=tok["operator"])

            since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
            r = revoke(unit="tsa-unit-1", reason="superseded", invalid_since=since.isoformat())
            got = TsaRevocation.model_validate(r.json())
            assert r.status_code == 200 and r.json() == {
                "unit": "tsa-unit-1", "serial": format(unit1.serial_number, "x"), "reason": "superseded",
                "changed": True, "invalid_since": since.isoformat()}
            # on its own root's CRL (the first generation's), not on the new one's
            assert x509.load_der_x509_crl(client.get("/tsa/root.crl").content).get_revoked_certificate_by_serial_number(
                unit1.serial_number) is not None
            assert len(x509.load_der_x509_crl(client.get("/tsa/root-g2.crl").content)) == 0
            # again: nothing to amend, as the command says; keyCompromise amends, and destroys its key
            assert revoke(unit="tsa-unit-1", reason="superseded").json()["changed"] is False
            r = revoke(unit=format(unit1.serial_number, "x"), reason="keyCompromise", destroy_key=True)
            assert r.status_code == 200 and (r.json()["amended_from"], r.json()["reason"]) == (
                "superseded", "keyCompromise") and r.json()["key_destroyed_at"], r.text
            assert not ctx.keystore.has("tsa-unit-1")
            # refusals: no such unit, an invalidity date to come, one without its offset, a reason there is not
            r = revoke(unit="tsa-unit-9", reason="superseded")
            assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer" and "tsa-unit-9" in r.text
            r = revoke(unit="tsa-root-g1", reason="superseded")  # a root is no unit
            assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer"
            later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
            r = revoke(unit="tsa-unit-2", reason="superseded", invalid_since=later)
            assert r.status_code == 400 and r.json()["type"] == "/problems/signer-revocation-refused", r.text
            assert "time to come" in r.json()["detail"]
            r = revoke(unit="tsa-unit-2", reason="superseded", invalid_since="0001-01-01T00:00:00+09:00")
            assert r.status_code == 400 and r.json()["type"] == "/problems/signer-revocation-refused", r.text
            for bad in ({"unit": "tsa-unit-2", "reason": "superseded", "invalid_since": "2026-12-01T09:00:00"},
                        {"unit": "tsa-unit-2", "reason": "lost"}, {"unit": "tsa-unit-2"},
                        {"unit": "tsa-unit-2", "reason": "superseded", "invalid_since": 1765000000}):
                r = revoke(**bad)
                assert r.status_code == 422 and r.json()["type"] == "/problems/validation", (bad, r.text)
            with ctx.sessions() as s:
                assert s.get(IssuerKey, "tsa-unit-2").revoked_at is None  # none of those revoked it

            # the older root's key: its unit has not expired (CaDutiesRemain); the current one's never
            r = client.post("/trust/key-destructions", json={"signer": "tsa-root-g1"}, headers=tok["operator"])
            assert r.status_code == 409 and r.json()["type"] == "/problems/ca-duties-remain", r.text
            r = client.post("/trust/key-destructions", json={"signer": "tsa-root-g2"}, headers=tok["operator"])
            assert r.status_code == 409 and r.json()["type"] == "/problems/signer-still-signing", r.text
            assert {"POST /trust/tsa-rollover 200", "POST /trust/tsa-rollover 403", "POST /trust/tsa-rollover 401",
                    "POST /trust/tsa-revocations 200", "POST /trust/tsa-revocations 400",
                    "POST /trust/tsa-revocations 403", "POST /trust/tsa-revocations 404",
                    "POST /trust/tsa-revocations 422", "GET /tsa/{filename} 404"} <= set(checked), checked
    finally:
        api.state.jobs.shutdown()
    # the command answers as the route did, on the same database
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCRED_DATABASE_URL", db_url)
        doc = json.loads(run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "keyCompromise", "--json"))
        assert doc == {"unit": "tsa-unit-1", "serial": format(unit1.serial_number, "x"), "reason": "keyCompromise",
                       "changed": False, "invalid_since": since.isoformat()}
        assert "no TSA unit 'tsa-unit-9'" in run_cli("tsa", "revoke", "tsa-unit-9", "--reason", "superseded", code=2)
    ctx.engine.dispose()


def test_a_rollover_with_the_keys_in_a_token(softhsm_token, tmp_path):
    """Over a PKCS#11 token (SoftHSM2): the new root's key is born in the token and signs its
    unit's certificate and its CRL there; the older root's pair goes from the token once its
    unit has expired, the new one's stays; both generations' tokens verify."""
    pkcs11 = pytest.importorskip("pkcs11", reason="needs python-pkcs11 (the test extra installs it)")
    from softhsm import SOFTHSM_PIN
    from sqlalchemy.orm import sessionmaker

    from issuer.hsm import SOFTHSM2, Pkcs11KeyStore
    from mcred.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    keystore = Pkcs11KeyStore(SOFTHSM2, softhsm_token, SOFTHSM_PIN)
    clock = Clock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    tsa = TimeStampAuthority(sessions, keystore, clock=clock, crl_url=URL)
    old_token = _token(tsa)
    done = tsa.rollover()
    new_token = _token(tsa)
    roots = tsa.roots()
    assert tsp.verify_token(old_token, data=CONTENT, roots=roots).root == roots[1]
    assert tsp.verify_token(new_token, data=CONTENT, roots=roots).tsa_certificate.serial_number == done.unit_serial
    assert x509.load_der_x509_crl(tsa.crl(2)).is_signature_valid(roots[0].public_key())
    with pkcs11.lib(SOFTHSM2).get_token(token_label=softhsm_token).open() as session:
        for label in ("tsa-root-g1", "tsa-root-g2", "tsa-unit-2"):
            assert len(list(session.get_objects({pkcs11.Attribute.LABEL: label}))) == 2, label
    clock.at += dt.timedelta(days=UNIT_DAYS, hours=1)  # the first unit has expired
    tsa.crl(1)
    assert tsa.destroy_key("tsa-root-g1").changed
    with pkcs11.lib(SOFTHSM2).get_token(token_label=softhsm_token).open() as session:
        assert list(session.get_objects({pkcs11.Attribute.LABEL: "tsa-root-g1"})) == []
        assert len(list(session.get_objects({pkcs11.Attribute.LABEL: "tsa-root-g2"}))) == 2
    assert tsp.verify_token(old_token, data=CONTENT, roots=tsa.roots()).root == roots[1]
    engine.dispose()
