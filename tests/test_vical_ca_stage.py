"""The next VICAL CA staged ahead of its use (specs/issuer-keys.md, "The VICAL CA staged
ahead"): ``mcred mdoc vical-ca stage``, POST /trust/vical-ca-stage. The staged CA is made in
the key store and published at once in /trust/vical-ca.pem, after the current one, while the
current CA's signer goes on signing the VICAL; the rollover starts it (the very certificate
readers took), so a reader that refreshed its anchor file from /trust/vical-ca.pem after the
staging takes the VICAL after the rollover with nothing more to do. The VICAL CA stages its
successor by itself in its last 180 days and starts it in its last 90. A compromise rollover
starts the staged CA too, unless ``fresh`` (the staged one withdrawn with it). Both database
backends."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading

import pytest
from api_helpers import bearer
from cryptography import x509
from documented import check_every_answer
from fastapi.testclient import TestClient
from test_iaca_rollover import NOW, world  # noqa: F401 - a fixture
from test_vical_ca_rollover import _cas
from test_vical_publication import _crl_fetch, _following_reader, _issuer_app, _payload, _served
from test_vical_signer_revocation import _signer_of
from typer.testing import CliRunner

from issuer.api import problems
from issuer.db import AuditEvent
from issuer.mdoc.errors import (
    SignerStillSigning,
    UnknownVicalCa,
    VicalCaAlreadyStaged,
    VicalCaRolloverRefused,
)
from reader.trust import TrustStore, VicalAnchorMissing
from reader.vical_crl import VicalSignerCheck


def _events(sessions, action: str) -> list[AuditEvent]:  # noqa: ANN001
    with sessions() as s:
        return s.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id).all()


def test_a_staged_vical_ca_is_published_at_once_signs_nothing_and_the_rollover_starts_it(world):  # noqa: F811
    """Staged: in the key store, in /trust/vical-ca.pem after the current CA, no signer under
    it, the VICAL still signed under the current CA (not even re-signed); a second staging
    refused; its key kept (the next rollover starts it). The rollover starts the very
    certificate published (``staged_since``), which a reader holding the anchors it took after
    the staging verifies; a rollover with nothing staged makes one and says readers had no
    warning (``staged_since`` None)."""
    svc, sessions, clock, client = world
    with pytest.raises(UnknownVicalCa, match="no VICAL CA yet"):
        svc.stage_vical_ca(actor="test")
    first = client.get("/trust/vical").content
    (ca1,) = _cas(client)

    clock.now = NOW + dt.timedelta(minutes=10)
    staged = svc.stage_vical_ca(actor="test")
    assert (staged.staged.label, staged.staged.state, staged.staged.trusted, staged.current) == (
        "mdoc-vical-ca-2", "staged", True, "mdoc-vical-ca-1")
    assert staged.staged.signers == () and svc.pki.keystore.has("mdoc-vical-ca-2")
    anchors = _cas(client)
    assert anchors[0] == ca1 and len(anchors) == 2 and format(anchors[1].serial_number, "x") == staged.staged.serial
    ca2 = anchors[1]
    assert "mcred VICAL CA 2" in ca2.subject.rfc4514_string()
    # signing nothing: the VICAL is the same one (not re-signed), and one signed later is still under CA 1
    assert client.get("/trust/vical").content == first
    later = svc.vical(now=clock.now + dt.timedelta(hours=2))
    _signer_of(later).verify_directly_issued_by(ca1)
    assert [(c.label, c.state, c.signers) for c in svc.vical_ca_list()] == [
        ("mdoc-vical-ca-1", "current", ("mdoc-vical-signer-1",)), ("mdoc-vical-ca-2", "staged", ())]
    assert svc.staged_vical_ca().label == "mdoc-vical-ca-2"
    with pytest.raises(VicalCaAlreadyStaged, match="mdoc-vical-ca-2 is already staged"):
        svc.stage_vical_ca()
    with pytest.raises(SignerStillSigning, match="staged") as kept:
        svc.destroy_key("mdoc-vical-ca-2")
    assert kept.value.duty == "staged"
    (event,) = _events(sessions, "mdoc.vical-ca.stage")
    assert (event.actor, event.subject, event.detail) == (
        "test", "mdoc-vical-ca-2", {"current": "mdoc-vical-ca-1", "serial": staged.staged.serial})

    taken_after_staging = _cas(client)
    clock.now = NOW + dt.timedelta(days=30)
    done = svc.rollover_vical_ca(actor="test")
    assert done.staged_since == NOW + dt.timedelta(minutes=10) and done.withdrawn_staged is None
    assert (done.current.label, done.current.serial, done.current.state) == ("mdoc-vical-ca-2", staged.staged.serial,
                                                                             "current")
    assert done.previous.state == "retired" and done.retired_signers == ("mdoc-vical-signer-1",)
    served = client.get("/trust/vical").content
    assert _payload(served)["vicalIssueID"] == done.vical_issue_id > _payload(later)["vicalIssueID"]
    _signer_of(served).verify_directly_issued_by(ca2)
    assert _cas(client) == [ca2, ca1]  # CA 1 while its signer is valid
    assert svc.staged_vical_ca() is None
    check = VicalSignerCheck(_crl_fetch(client))
    took = TrustStore().import_vical(served, vical_anchors=taken_after_staging, now=clock.now, signer_revocation=check)
    assert took.issue_id == done.vical_issue_id and took.imported == 1
    with pytest.raises(VicalAnchorMissing):  # what every reader met before the staging
        TrustStore().import_vical(served, vical_anchors=[ca1], now=clock.now, signer_revocation=check)
    rolled = _events(sessions, "mdoc.vical-ca.rollover")[-1]
    assert rolled.detail["staged_since"] == (NOW + dt.timedelta(minutes=10)).isoformat()

    again = svc.rollover_vical_ca()  # nothing staged: made now, readers had no warning
    assert again.current.label == "mdoc-vical-ca-3" and again.staged_since is None
    assert _events(sessions, "mdoc.vical-ca.rollover")[-1].detail["staged_since"] is None


def test_a_reader_that_refreshed_its_anchors_after_the_staging_follows_the_vical_across_the_rollover(
        world, tmp_path):  # noqa: F811
    """`mcred reader serve --vical URL --vical-trust CA.pem`, the issuer's own routes behind the
    URL: the operator puts /trust/vical-ca.pem in the anchor file after the staging (a reload,
    the same VICAL); after the planned rollover the reader takes the new VICAL, signed under the
    staged CA, at its next look, with no other step and no error. A reader that kept the anchor
    file of before the staging refuses it, naming the CA it lacks."""
    svc, _sessions, _clock, client = world
    first = svc.iaca_certificate()
    with _served(_issuer_app(svc)) as url:
        verifier, ticks, _what = _following_reader(f"{url}/trust/vical", client, tmp_path)
        (tmp_path / "stale").mkdir()
        stale, stale_ticks, _ = _following_reader(f"{url}/trust/vical", client, tmp_path / "stale")
        anchors = tmp_path / "vical-ca.pem"
        svc.stage_vical_ca(actor="test")
        tmp = tmp_path / "vical-ca.pem.new"  # the operator refreshes the anchor file
        tmp.write_bytes(client.get("/trust/vical-ca.pem").content)
        os.replace(tmp, anchors)
        assert len(x509.load_pem_x509_certificates(anchors.read_bytes())) == 2
        ticks.t = 31.0
        verifier.trust()
        verifier.refresher.join(10)
        assert verifier.reloads == 1 and verifier.last_error is None
        held = verifier.vical.issue_id

        done = svc.rollover_vical_ca(actor="test")
        assert done.staged_since is not None
        staged_iaca = svc.stage_iaca().certificate  # the new VICAL lists an IACA the one held does not
        for v, t in ((verifier, ticks), (stale, stale_ticks)):
            t.t = 62.0
            v.trust()
            v.refresher.join(10)
        assert verifier.last_error is None, verifier.last_error
        assert verifier.reloads == 2 and verifier.vical.issue_id > held
        assert verifier.trust().certificates == [first, staged_iaca]
        _signer_of(client.get("/trust/vical").content).verify_directly_issued_by(
            x509.load_pem_x509_certificates(anchors.read_bytes())[1])
        # the reader that kept the anchors of before the staging: refused, naming the CA
        assert stale.reloads == 0 and stale.trust().certificates == [first]
        said = " ".join(stale.last_error.split())
        assert "mcred VICAL CA 2" in said and "not among the 1 VICAL anchor(s)" in said, said


def test_the_vical_ca_stages_its_successor_in_its_last_180_days_and_starts_it_in_its_last_90(world):  # noqa: F811
    """By the clock alone: nothing before the CA's last 180 days; in them the next VICAL CA is
    staged at the next VICAL (or /trust/vical-ca.pem asked), audited as automatic, the VICAL
    still signed under the current CA; in the last 90 days the staged CA is started and signs
    the VICAL, which a reader holding the anchors it took in the staging window takes."""
    svc, sessions, clock, client = world
    client.get("/trust/vical")
    (ca1,) = _cas(client)
    end = ca1.not_valid_after_utc
    clock.now = end - dt.timedelta(days=181)
    assert _cas(client) == [ca1] and svc.staged_vical_ca() is None
    clock.now = end - dt.timedelta(days=179)
    anchors = _cas(client)  # a reader following /trust/vical-ca.pem takes it now
    assert len(anchors) == 2 and anchors[0] == ca1
    ca2 = anchors[1]
    (event,) = _events(sessions, "mdoc.vical-ca.stage")
    assert (event.actor, event.subject) == ("issuer", "mdoc-vical-ca-2") and event.detail["automatic"] is True
    assert [(c.label, c.state) for c in svc.vical_ca_list()] == [("mdoc-vical-ca-1", "current"),
                                                                 ("mdoc-vical-ca-2", "staged")]
    in_window = svc.vical()
    _signer_of(in_window).verify_directly_issued_by(ca1)
    assert _cas(client) == anchors and len(svc.vical_ca_list()) == 2  # staged once

    clock.now = end - dt.timedelta(days=89)
    started = svc.vical()
    _signer_of(started).verify_directly_issued_by(ca2)
    assert _payload(started)["vicalIssueID"] > _payload(in_window)["vicalIssueID"]
    assert [(c.label, c.state) for c in svc.vical_ca_list()] == [("mdoc-vical-ca-1", "retired"),
                                                                 ("mdoc-vical-ca-2", "current")]
    (rolled,) = _events(sessions, "mdoc.vical-ca.rollover")
    assert rolled.detail["automatic"] is True and rolled.detail["previous"] == "mdoc-vical-ca-1"
    assert rolled.detail["staged_since"] == (end - dt.timedelta(days=179)).isoformat()
    check = VicalSignerCheck(_crl_fetch(client))
    assert TrustStore().import_vical(started, vical_anchors=anchors, now=clock.now, signer_revocation=check).imported
    with pytest.raises(VicalAnchorMissing):
        TrustStore().import_vical(started, vical_anchors=[ca1], now=clock.now, signer_revocation=check)
    assert _cas(client)[:1] == [ca2] and svc.staged_vical_ca() is None  # the next one's window is years away


def test_with_nothing_asked_in_the_window_the_automatic_rollover_makes_a_ca_readers_never_saw(world):  # noqa: F811
    """A VICAL CA nobody asked for in its staging window rolls over in its last 90 days onto a
    new CA, audited with ``staged_since`` None (what `mcred doctor` warns of beforehand)."""
    svc, sessions, clock, client = world
    client.get("/trust/vical")
    (ca1,) = _cas(client)
    clock.now = ca1.not_valid_after_utc - dt.timedelta(days=89)
    vical = svc.vical()
    assert [(c.label, c.state) for c in svc.vical_ca_list()] == [("mdoc-vical-ca-1", "retired"),
                                                                 ("mdoc-vical-ca-2", "current")]
    (rolled,) = _events(sessions, "mdoc.vical-ca.rollover")
    assert rolled.detail["staged_since"] is None and rolled.detail["automatic"] is True
    assert not _events(sessions, "mdoc.vical-ca.stage")
    _signer_of(vical).verify_directly_issued_by(_cas(client)[0])


def test_a_compromise_starts_the_staged_ca_unless_fresh_withdraws_it_too(world):  # noqa: F811
    """--compromised with a CA staged: the staged CA is started (another key, which never
    signed anything; readers that took it since the staging take the new VICAL at once), the
    compromised one withdrawn. --compromised --fresh: the staged CA is withdrawn with it
    (cACompromise, out of /trust/vical-ca.pem, its key destroyable at once) and a new one made.
    --fresh alone is refused, nothing changed."""
    svc, _sessions, clock, client = world
    client.get("/trust/vical")
    (ca1,) = _cas(client)
    svc.stage_vical_ca()
    ca2 = _cas(client)[1]
    with pytest.raises(VicalCaRolloverRefused, match="with compromised"):
        svc.rollover_vical_ca(fresh=True)
    assert _cas(client) == [ca1, ca2]

    clock.now = NOW + dt.timedelta(minutes=5)
    done = svc.rollover_vical_ca(compromised=True, actor="test")
    assert done.withdrawn and done.staged_since is not None and done.withdrawn_staged is None
    assert (done.previous.state, done.current.label) == ("withdrawn", "mdoc-vical-ca-2")
    assert _cas(client) == [ca2]
    served = client.get("/trust/vical").content
    assert TrustStore().import_vical(served, vical_anchors=[ca1, ca2], now=clock.now).imported == 1

    svc.stage_vical_ca()
    ca3 = _cas(client)[1]
    clock.now = NOW + dt.timedelta(minutes=10)
    done = svc.rollover_vical_ca(compromised=True, fresh=True, actor="test")
    assert done.withdrawn and done.staged_since is None and done.withdrawn_staged == "mdoc-vical-ca-3"
    assert (done.previous.label, done.current.label) == ("mdoc-vical-ca-2", "mdoc-vical-ca-4")
    (ca4,) = _cas(client)
    assert ca4 not in (ca2, ca3)
    assert [(c.label, c.state, c.trusted, c.reason) for c in svc.vical_ca_list()] == [
        ("mdoc-vical-ca-1", "withdrawn", False, "cACompromise"), ("mdoc-vical-ca-2", "withdrawn", False, "cACompromise"),
        ("mdoc-vical-ca-3", "withdrawn", False, "cACompromise"), ("mdoc-vical-ca-4", "current", True, None)]
    with pytest.raises(VicalAnchorMissing, match="mcred VICAL CA 4"):
        TrustStore().import_vical(client.get("/trust/vical").content, vical_anchors=[ca2, ca3], now=clock.now)
    assert svc.destroy_key("mdoc-vical-ca-3").changed  # withdrawn: no duty left


def test_two_operators_staging_at_once_make_one_staged_vical_ca(world, monkeypatch):  # noqa: F811
    """The second staging waits for the first (the VICAL CA rows taken: FOR UPDATE on
    PostgreSQL, the write lock first on SQLite) and finds one staged: refused, nothing made.
    The second starts while the first has read "nothing staged" and not committed, and the
    first waits (a second at most) for the second to read too: without the lock both read
    "nothing staged", and the second, counting the generations once the first committed, made
    a generation further."""
    from issuer.mdoc.pki import MdocPki

    svc, _sessions, _clock, client = world
    client.get("/trust/vical")
    read = MdocPki.staged_vical_ca
    first_read, second_read, committed = threading.Event(), threading.Event(), threading.Event()

    def watched(self, session, now):  # noqa: ANN001, ANN202
        found = read(self, session, now)
        name = threading.current_thread().name
        if name == "first" and not first_read.is_set():
            first_read.set()
            second_read.wait(1)  # with the lock the second cannot read before the first commits
        elif name == "second" and not second_read.is_set():
            second_read.set()
            committed.wait(10)
        return found

    monkeypatch.setattr(MdocPki, "staged_vical_ca", watched)
    out: list[object] = []

    def stage() -> None:
        try:
            out.append(svc.stage_vical_ca())
        except VicalCaAlreadyStaged as exc:
            out.append(exc)
        finally:
            if threading.current_thread().name == "first":
                committed.set()

    first = threading.Thread(target=stage, name="first")
    first.start()
    assert first_read.wait(10)
    second = threading.Thread(target=stage, name="second")
    second.start()
    for t in (first, second):
        t.join(60)
    assert sorted(type(x).__name__ for x in out) == ["VicalCaAlreadyStaged", "VicalCaStageResult"], out
    monkeypatch.undo()
    assert [c.label for c in svc.vical_ca_list()] == ["mdoc-vical-ca-1", "mdoc-vical-ca-2"]


@pytest.fixture
def installation(home, db_url, monkeypatch):
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    ctx = Context.open(home)
    yield ctx
    ctx.engine.dispose()


def _cli(*args: str) -> tuple[int, str]:
    from mcred.cli.main import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_cli_vical_ca_stage_list_and_rollover(installation, tmp_path):
    code, out = _cli("mdoc", "vical-ca", "stage", "--json")
    assert code == 2 and "no VICAL CA yet" in json.loads(out)["error"], out
    assert _cli("export", "vical", "--out", str(tmp_path / "v.cbor"))[0] == 0

    code, out = _cli("mdoc", "vical-ca", "stage", "--json")
    assert code == 0, out
    staged = json.loads(out)
    assert (staged["label"], staged["state"], staged["trusted"], staged["current"], staged["signers"]) == (
        "mdoc-vical-ca-2", "staged", True, "mdoc-vical-ca-1", [])
    code, out = _cli("export", "vical", "--out", str(tmp_path / "w.cbor"), "--ca", str(tmp_path / "ca.pem"))
    cas = x509.load_pem_x509_certificates((tmp_path / "ca.pem").read_bytes())
    assert code == 0 and [format(c.serial_number, "x") for c in cas][1] == staged["serial"], out
    code, out = _cli("mdoc", "vical-ca", "list", "--json")
    assert [(r["label"], r["state"], r["trusted"]) for r in json.loads(out)] == [
        ("mdoc-vical-ca-1", "current", True), ("mdoc-vical-ca-2", "staged", True)]
    code, out = _cli("mdoc", "vical-ca", "list")
    assert code == 0 and "staged: in /trust/vical-ca.pem, certifying nothing until the rollover" in " ".join(
        out.split()), out
    code, out = _cli("mdoc", "vical-ca", "stage")
    flat = " ".join(out.split())
    assert code == 2 and "already staged" in flat and "mcred mdoc vical-ca rollover" in flat, out
    code, out = _cli("mdoc", "vical-ca", "rollover", "--fresh", "--json")
    assert code == 2 and "with compromised" in json.loads(out)["error"], out

    code, out = _cli("mdoc", "vical-ca", "rollover")
    flat = " ".join(out.split())
    assert code == 0 and "staged VICAL CA mdoc-vical-ca-2 started" in flat, out
    assert "in /trust/vical-ca.pem since" in flat and "no warning" not in flat, out
    _signer_of(_cli_vical(tmp_path)).verify_directly_issued_by(cas[1])
    code, out = _cli("mdoc", "vical-ca", "rollover", "--json")
    done = json.loads(out)
    assert code == 0 and done["staged_since"] is None and done["current"]["label"] == "mdoc-vical-ca-3", out
    code, out = _cli("mdoc", "vical-ca", "rollover")
    flat = " ".join(out.split())
    assert code == 0 and "new VICAL CA mdoc-vical-ca-4" in flat and "readers had no warning" in flat, out

    assert _cli("mdoc", "vical-ca", "stage")[0] == 0
    code, out = _cli("mdoc", "vical-ca", "rollover", "--compromised", "--fresh", "--json")
    done = json.loads(out)
    assert code == 0 and done["withdrawn_staged"] == "mdoc-vical-ca-5" and done["current"]["label"] == "mdoc-vical-ca-6"
    with installation.sessions() as s:
        assert [e.subject for e in s.query(AuditEvent).filter_by(action="mdoc.vical-ca.stage")
                .order_by(AuditEvent.id)] == ["mdoc-vical-ca-2", "mdoc-vical-ca-5"]


def _cli_vical(tmp_path) -> bytes:  # noqa: ANN001
    out = tmp_path / "now.cbor"
    code, said = _cli("export", "vical", "--out", str(out))
    assert code == 0, said
    return out.read_bytes()


def test_vical_ca_stage_over_http_operator_only(installation):
    from mcred.api_models import VicalCaRollover, VicalCaStage
    from mcred.service import create_app

    api = create_app(installation, job_workers=1)
    with contextlib.closing(TestClient(api)) as client:
        checked = check_every_answer(client, api)
        tok = bearer(installation.sessions, ["operator", "issuer"])
        r = client.post("/trust/vical-ca-stage", headers=tok["operator"])
        assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-vical-ca", r.text
        (ca1,) = _cas(client)  # the first VICAL CA, made with the first anchors asked for
        assert client.post("/trust/vical-ca-stage").status_code == 401
        r = client.post("/trust/vical-ca-stage", headers=tok["issuer"])
        assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
        assert _cas(client) == [ca1]  # nothing staged by the refusals
        r = client.post("/trust/vical-ca-stage", headers=tok["operator"])
        assert r.status_code == 200, r.text
        got = VicalCaStage.model_validate(r.json())
        assert (got.label, got.state, got.current) == ("mdoc-vical-ca-2", "staged", "mdoc-vical-ca-1")
        ca1_, ca2 = _cas(client)
        assert ca1_ == ca1 and format(ca2.serial_number, "x") == got.serial
        again = client.post("/trust/vical-ca-stage", headers=tok["operator"])
        assert again.status_code == 409 and again.json()["type"] == problems.VICAL_CA_ALREADY_STAGED.uri, again.text
        r = client.post("/trust/vical-ca-rollover", json={"fresh": True}, headers=tok["operator"])
        assert r.status_code == 422, r.text
        r = client.post("/trust/vical-ca-rollover", headers=tok["operator"])
        assert r.status_code == 200, r.text
        rolled = VicalCaRollover.model_validate(r.json())
        assert rolled.current.serial == got.serial and rolled.staged_since and rolled.withdrawn_staged is None
        now = dt.datetime.now(dt.UTC)
        served = client.get("/trust/vical").content
        assert TrustStore().import_vical(served, vical_anchors=[ca1, ca2], now=now).imported == 1
        assert client.post("/trust/vical-ca-stage", headers=tok["operator"]).status_code == 200
        r = client.post("/trust/vical-ca-rollover", json={"compromised": True, "fresh": True}, headers=tok["operator"])
        assert r.status_code == 200 and r.json()["withdrawn_staged"] == "mdoc-vical-ca-3", r.text
        assert {"POST /trust/vical-ca-stage 200", "POST /trust/vical-ca-stage 403", "POST /trust/vical-ca-stage 404",
                "POST /trust/vical-ca-stage 409"} <= set(checked), checked
        with installation.sessions() as s:
            events = s.query(AuditEvent).filter_by(action="mdoc.vical-ca.stage").order_by(AuditEvent.id).all()
        assert [e.subject for e in events] == ["mdoc-vical-ca-2", "mdoc-vical-ca-3"] and events[0].actor != "issuer"


def test_doctor_warns_of_a_vical_ca_to_roll_over_with_none_staged_and_names_a_staged_one(installation):
    """The VICAL CA finding reads the registry only: not made yet; in the CA's last 180 days
    with none staged, a warning that it rolls over onto a CA readers never had, naming the
    staging; once one is staged, ok, naming it and when it starts."""
    from mcred.doctor import _vical_ca
    from mcred.mdoc_flow import mdoc_service

    assert _vical_ca(installation).ok and _vical_ca(installation).detail.startswith("not made yet")
    svc = mdoc_service(installation)
    (ca1,) = svc.vical_cas()
    end = ca1.not_valid_after_utc
    f = _vical_ca(installation)
    assert f.ok and f.detail == f"mdoc-vical-ca-1 valid until {end.date().isoformat()}; 1 generation(s)"
    assert _vical_ca(installation, end - dt.timedelta(days=181)).ok
    soon = _vical_ca(installation, end - dt.timedelta(days=179))
    assert not soon.ok and f"rolls over by itself on {(end - dt.timedelta(days=90)).date().isoformat()}" in soon.detail
    assert soon.fix.startswith("mcred mdoc vical-ca stage") and "/trust/vical-ca.pem" in soon.fix
    late = _vical_ca(installation, end - dt.timedelta(days=30))
    assert not late.ok and "at the next VICAL" in late.detail
    svc.stage_vical_ca()
    f = _vical_ca(installation, end - dt.timedelta(days=179))
    assert f.ok and "mdoc-vical-ca-2 staged (in /trust/vical-ca.pem)" in f.detail, f.detail
    assert f"started by itself on {(end - dt.timedelta(days=90)).date().isoformat()}" in f.detail

