"""A signer's private key destroyed (specs/issuer-keys.md, "A signer's key destroyed"): once a
signer is revoked (a key-compromise procedure, CA/B Forum BR 6.2, ETSI EN 319 411), or its
duties have all ended, the operator destroys its key in the key store (``mcred mdoc key
destroy``, ``--destroy-key`` on the revocations, ``POST /trust/key-destructions`` or
``destroy_key`` in their bodies) and the destruction is recorded (``issuer_keys.key_destroyed_at``,
audited ``mdoc.key.destroy``). Its certificate is read from the registry, never through the
key: it stays published (``/trust/iaca-N.pem``, the bundle while it belongs there, the
listings) and everything else behaves as before. Refused, naming the duty, for a signer
signing now or staged, and for a retired, unrevoked CA still certifying signers that have not
expired. Both database backends."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from api_helpers import bearer
from cryptography import x509
from documented import check_every_answer
from fastapi.testclient import TestClient
from test_iaca_rollover import NOW, _issue, _present, _reader, world  # noqa: F401 - a fixture
from test_vical_publication import _payload
from test_vical_signer_revocation import _signer_of
from typer.testing import CliRunner

from issuer.db import AuditEvent
from issuer.mdoc.errors import CaDutiesRemain, SignerKeyDestroyed, SignerStillSigning, UnknownSigner


def _events(sessions, action: str = "mdoc.key.destroy") -> list[AuditEvent]:  # noqa: ANN001
    with sessions() as s:
        return s.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id).all()


def _served(client) -> dict[str, tuple[int, bytes | str]]:  # noqa: ANN001
    """What the trust routes answer: status and body (a problem's type for a refusal)."""
    out = {}
    for path in ("/trust/iaca.pem", "/trust/iaca.der", "/trust/iaca-1.pem", "/trust/iaca-1.der", "/trust/iaca-2.pem",
                 "/trust/iaca.crl", "/trust/iaca-2.crl", "/trust/vical-ca.pem"):
        r = client.get(path)
        out[path] = (r.status_code, r.content if r.status_code == 200 else r.json()["type"])
    return out


def _vical_iacas(client, now) -> list[x509.Certificate]:  # noqa: ANN001
    from reader.trust import TrustStore

    trust = TrustStore()
    trust.import_vical(client.get("/trust/vical").content,
                       vical_anchors=x509.load_pem_x509_certificates(client.get("/trust/vical-ca.pem").content),
                       now=now)
    return trust.certificates


def test_a_revoked_iacas_key_destroyed_leaves_its_certificate_published_and_all_else_as_before(world):  # noqa: F811
    svc, sessions, clock, client = world
    check_every_answer(client, client.app)
    old_key, old = _issue(svc, "phone-1", "job-1")
    first = svc.iaca_certificate()
    clock.now = NOW + dt.timedelta(days=1)
    staged = svc.stage_iaca()
    clock.now = NOW + dt.timedelta(days=2)
    svc.revoke_iaca(1, "cACompromise", actor="test")
    status_url = old.mso().status.status_list.uri.removeprefix("http://issuer.test")
    clock.now = NOW + dt.timedelta(days=3)
    before = _served(client)
    listing = {i.label: i.to_json() for i in svc.signers("iaca")}
    signed = svc.signed_by("1")
    assert svc.pki.keystore.has("mdoc-iaca-1")

    done = svc.destroy_key("1", actor="test")
    assert (done.label, done.purpose, done.changed, done.found_absent) == ("mdoc-iaca-1", "iaca", True, False)
    assert (done.key_destroyed_at, done.reason, done.serial) == (clock.now, "cACompromise", format(first.serial_number, "x"))
    assert not svc.pki.keystore.has("mdoc-iaca-1") and "mdoc-iaca-1" not in svc.pki.keystore.labels()
    # its certificate is still served by its generation; every trust route answers as before
    assert _served(client) == before
    assert x509.load_pem_x509_certificate(client.get("/trust/iaca-1.pem").content) == first
    assert svc.iaca_certificate(1) == first and svc.trusted_iacas() == [staged.certificate]
    assert _vical_iacas(client, clock.now) == [staged.certificate]
    # its CRL and its mdocs' list: refused as a revoked IACA's, as before (not as a missing key)
    for url in ("/trust/iaca.crl", status_url):
        r = client.get(url)
        assert r.status_code == 410 and r.json()["type"] == "/problems/iaca-withdrawn", (url, r.text)
    # the listing says it; nothing else of it changed
    now_listed = {i.label: i.to_json() for i in svc.signers("iaca")}
    assert now_listed["mdoc-iaca-1"].pop("key_destroyed_at") == clock.now.isoformat()
    assert listing["mdoc-iaca-1"].pop("key_destroyed_at") is None
    assert now_listed == listing
    # the re-issue reads its phones as before; a new MSO for the phone chains to the new IACA
    assert svc.signed_by("1")[1:] == signed[1:] == (("phone-1",), ())
    new_key, new = _issue(svc, "phone-1", "job-2")
    data, st = _present(new, new_key)
    assert _reader(client, clock, [staged.certificate], []).verify(data, session_transcript=st).valid
    # recorded and audited once; asked again: already destroyed, nothing changed
    (event,) = _events(sessions)
    assert (event.subject, event.actor) == ("mdoc-iaca-1", "test")
    assert event.detail == {"serial": done.serial, "purpose": "iaca", "revoked": True, "reason": "cACompromise",
                            "found_absent": False}
    clock.now = NOW + dt.timedelta(days=4)
    for ref in ("1", "mdoc-iaca-1", format(first.serial_number, "x")):
        again = svc.destroy_key(ref)
        assert not again.changed and again.to_json()["already"] and again.key_destroyed_at == NOW + dt.timedelta(days=3)
    assert len(_events(sessions)) == 1


def test_a_key_is_refused_while_a_duty_needs_it_and_nothing_changes(world):  # noqa: F811
    """The signers signing now (current IACA, DS, status-list signer, VICAL signer, VICAL CA),
    a staged IACA, and a retired IACA whose document signers have not all expired: each
    refused with the duty named, its key kept, nothing recorded. A retired document signer
    has no duty (a newer one signs): its key goes, unrevoked."""
    svc, sessions, clock, _client = world
    svc.setup()
    _issue(svc, "phone-1", "job-1")
    svc.vical()
    for ref, duty in (("1", "signing"), ("mdoc-ds-1", "signing"), ("mdoc-status-1", "signing"),
                      ("mdoc-vical-signer-1", "signing"), ("mdoc-vical-ca-1", "signing")):
        with pytest.raises(SignerStillSigning, match="signing now") as refused:
            svc.destroy_key(ref)
        assert refused.value.duty == duty
    clock.now = NOW + dt.timedelta(days=1)
    svc.stage_iaca()
    with pytest.raises(SignerStillSigning, match="staged.*next rollover") as refused:
        svc.destroy_key("2")
    assert refused.value.duty == "staged"
    clock.now = NOW + dt.timedelta(days=2)
    svc.rollover()
    ds1 = next(i for i in svc.signers() if i.label == "mdoc-ds-1")
    with pytest.raises(CaDutiesRemain, match="mdoc-iaca-1 is retired.*mdoc-ds-1") as refused:
        svc.destroy_key("mdoc-iaca-1")
    assert refused.value.duty == "crl" and refused.value.until == ds1.not_after
    with pytest.raises(SignerStillSigning):  # it signs its IACA's lists
        svc.destroy_key("mdoc-status-1")
    for ref in ("mdoc-ds-9", "9", "jpki-sign-root-g1", "ffff"):
        with pytest.raises(UnknownSigner, match="no mdoc signer"):
            svc.destroy_key(ref)
    kept = svc.pki.keystore.labels()
    assert {"mdoc-iaca-1", "mdoc-iaca-2", "mdoc-ds-1", "mdoc-status-1", "mdoc-vical-signer-1",
            "mdoc-vical-ca-1"} <= set(kept)
    assert _events(sessions) == [] and all(i.key_destroyed_at is None for i in svc.signers("iaca"))
    # a retired document signer: a newer one signs, none is ever started again
    done = svc.destroy_key("mdoc-ds-1")
    assert done.changed and done.revoked_at is None and not svc.pki.keystore.has("mdoc-ds-1")
    assert [i.label for i in svc.signers() if i.key_destroyed_at] == ["mdoc-ds-1"]


def test_a_retired_iacas_key_goes_once_its_document_signers_have_ended(world):  # noqa: F811
    """An older IACA, not revoked: refused while a DS it certified is valid; after that its key
    may go. Its certificate stays at /trust/iaca-1.pem; it signs its final CRL before its key
    goes (nextUpdate 9999-12-31: tests/test_final_crl.py), served for good, while a list of its
    long-expired mdocs that needs a new status-list signer answers 410 signer-key-destroyed;
    what would sign with it says so."""
    svc, sessions, clock, client = world
    check_every_answer(client, client.app)
    _key, old = _issue(svc, "phone-1", "job-1")
    first = svc.iaca_certificate()
    svc.rollover()
    ds1 = next(i for i in svc.signers() if i.label == "mdoc-ds-1")
    clock.now = ds1.not_after + dt.timedelta(hours=1)
    crl = client.get("/trust/iaca.crl")
    assert crl.status_code == 200
    done = svc.destroy_key("mdoc-iaca-1", actor="test")
    assert done.changed and done.revoked_at is None
    assert x509.load_pem_x509_certificate(client.get("/trust/iaca-1.pem").content) == first
    final = client.get("/trust/iaca.crl").content  # its final CRL, signed before its key went
    assert final != crl.content and x509.load_der_x509_crl(final).next_update_utc.year == 9999
    clock.now += dt.timedelta(hours=24)
    keys = svc.pki.keystore.labels()
    assert client.get("/trust/iaca.crl").content == final
    r = client.get(old.mso().status.status_list.uri.removeprefix("http://issuer.test"))
    assert r.status_code == 410 and r.json()["type"] == "/problems/signer-key-destroyed", r.text
    assert "mdoc-iaca-1" in r.json()["detail"]
    assert svc.pki.keystore.labels() == keys  # no key made for a status-list signer it cannot certify
    with pytest.raises(SignerKeyDestroyed), sessions() as s:
        svc.pki.iaca(s, 1)
    # the current generation goes on as before
    assert client.get("/trust/iaca-2.crl").status_code == 200
    assert svc.iaca_certificate().subject != first.subject


def test_revoking_with_destroy_key_destroys_after_the_revocation(world):  # noqa: F811
    """``destroy_key`` on a document signer's, a status-list signer's and a VICAL signer's
    revocation: each revoked as before (the IACA CRL, the VICAL CA's CRL list it, with the
    reason; lists and the VICAL re-signed by new signers), then its key destroyed, which the
    answer says. Revoked again with it: nothing changes."""
    svc, sessions, clock, client = world
    svc.setup()
    _issue(svc, "phone-1", "job-1")
    first_vical = svc.vical()
    done = svc.revoke_signer_detail("mdoc-ds-1", "keyCompromise", actor="test", destroy_key=True)
    assert done.changed and done.key_destruction.changed and done.info.key_destroyed_at == clock.now
    assert done.info.to_json()["key_destroyed_at"] == clock.now.isoformat()
    status = svc.revoke_signer_detail("mdoc-status-1", "superseded", purposes=("status-signer",), destroy_key=True)
    assert status.info.key_destroyed_at == clock.now
    vical = svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise", destroy_key=True)
    assert vical.info.key_destroyed_at == clock.now and vical.to_json()["key_destroyed_at"] == clock.now.isoformat()
    for label in ("mdoc-ds-1", "mdoc-status-1", "mdoc-vical-signer-1"):
        assert not svc.pki.keystore.has(label)
    crl = svc.iaca_crl()
    ds1 = {int(i.serial, 16): i for i in svc.signers()}
    listed = {e.serial_number for e in crl}
    assert {s for s, i in ds1.items() if i.label == "mdoc-ds-1"} <= listed
    vcrl = x509.load_der_x509_crl(client.get("/trust/vical-ca.crl").content)
    assert vcrl.get_revoked_certificate_by_serial_number(int(vical.info.serial, 16)) is not None
    assert _signer_of(client.get("/trust/vical").content).serial_number == int(vical.signing.serial, 16)
    assert _payload(client.get("/trust/vical").content)["vicalIssueID"] > _payload(first_vical)["vicalIssueID"]
    assert [v.key_destroyed_at for v in svc.vical_signers()] == [clock.now, None]
    _issue(svc, "phone-2", "job-2")  # issuance goes on under new signers
    assert {e.subject for e in _events(sessions)} == {"mdoc-ds-1", "mdoc-status-1", "mdoc-vical-signer-1"}
    again = svc.revoke_signer_detail("mdoc-ds-1", "keyCompromise", destroy_key=True)
    assert not again.changed and not again.key_destruction.changed and len(_events(sessions)) == 3


def test_a_key_gone_before_it_was_recorded_is_recorded_as_found_absent(world):  # noqa: F811
    """The key is destroyed before the transaction that records it commits: one rolled back
    after leaves the key gone, unrecorded. The next call records it, saying the store held
    no key any more."""
    svc, sessions, _clock, _client = world
    svc.setup()
    svc.revoke_signer("mdoc-ds-1", "keyCompromise")
    svc.pki.keystore.destroy("mdoc-ds-1")
    done = svc.destroy_key("mdoc-ds-1")
    assert done.changed and done.found_absent and done.to_json()["found_absent"]
    (event,) = _events(sessions)
    assert event.detail["found_absent"] is True


# -- the command line and the API ------------------------------------------------------------


@pytest.fixture
def installation(home):
    from mcred.context import Context

    return Context.open(home)


def _cli(*args: str) -> tuple[int, str]:
    from mcred.cli.main import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def _flat(out: str) -> str:
    return " ".join(out.split())


def test_cli_key_destroy_and_destroy_key_on_the_revocations(installation, tmp_path):
    keys = installation.home / "keys"
    code, out = _cli("mdoc", "iaca", "stage", "--json")
    assert code == 0, out
    code, out = _cli("mdoc", "key", "destroy", "2", "--json")
    assert code == 2 and "staged" in json.loads(out)["error"], out
    code, out = _cli("mdoc", "key", "destroy", "mdoc-iaca-1")
    assert code == 2 and "signing now" in _flat(out), out
    code, out = _cli("mdoc", "key", "destroy", "mdoc-nothing-1", "--json")
    assert code == 2 and "no mdoc signer" in json.loads(out)["error"], out

    code, out = _cli("mdoc", "iaca", "revoke", "1", "--reason", "cACompromise", "--destroy-key", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["changed"] and done["key_destroyed_at"] and done["successor"]["label"] == "mdoc-iaca-2"
    assert not (keys / "mdoc-iaca-1.pem").exists() and (keys / "mdoc-iaca-2.pem").exists()
    code, out = _cli("mdoc", "iaca", "list", "--json")
    rows = {r["label"]: r for r in json.loads(out)}
    assert rows["mdoc-iaca-1"]["key_destroyed_at"] == done["key_destroyed_at"] and rows["mdoc-iaca-2"]["key_destroyed_at"] is None
    code, out = _cli("mdoc", "iaca", "list")
    assert code == 0 and "key destroyed" in _flat(out.splitlines()[0]) and "key destroyed" not in out.splitlines()[1], out
    code, out = _cli("mdoc", "key", "destroy", "1")
    assert code == 0 and "already destroyed" in _flat(out), out
    code, out = _cli("export", "iaca", "--out", str(tmp_path / "bundle.pem"))
    assert code == 0, out

    code, out = _cli("mdoc", "ds", "list", "--json")
    ds1 = next(r for r in json.loads(out) if r["label"] == "mdoc-ds-1")
    code, out = _cli("mdoc", "ds", "revoke", ds1["serial"], "--reason", "keyCompromise", "--destroy-key")
    # retired with its IACA, not revoked: revoked now, then its key destroyed
    assert code == 0 and "revoked (keyCompromise)" in _flat(out) and "the key of mdoc-ds-1 destroyed" in _flat(out), out
    assert not (keys / "mdoc-ds-1.pem").exists()
    code, out = _cli("mdoc", "ds", "list")
    assert "key destroyed" in _flat(out), out
    code, out = _cli("status-list", "signer", "revoke", "mdoc-status-2", "--reason", "keyCompromise", "--destroy-key",
                     "--json")
    assert code == 0 and json.loads(out)["key_destroyed_at"], out
    code, out = _cli("export", "vical", "--out", str(tmp_path / "v.cbor"))
    assert code == 0, out
    code, out = _cli("mdoc", "vical-signer", "revoke", "mdoc-vical-signer-1", "--reason", "keyCompromise",
                     "--destroy-key")
    assert code == 0 and "the key of mdoc-vical-signer-1 destroyed" in _flat(out), out
    code, out = _cli("mdoc", "vical-signer", "list")
    assert "key destroyed" in _flat(out.splitlines()[0]), out
    code, out = _cli("mdoc", "key", "destroy", "mdoc-ds-2", "--json")
    assert code == 2 and "signing now" in json.loads(out)["error"], out
    assert {e.subject for e in _events(installation.sessions)} == {"mdoc-iaca-1", "mdoc-ds-1", "mdoc-status-2",
                                                                   "mdoc-vical-signer-1"}


def test_key_destruction_over_http_is_the_operators_with_typed_refusals(installation):
    from mcred.api_models import IacaRevocation, KeyDestruction, SignerRevocation
    from mcred.service import create_app

    api = create_app(installation, job_workers=1)
    with contextlib.closing(TestClient(api)) as client:
        checked = check_every_answer(client, api)
        first = client.get("/trust/iaca-1.pem").content
        tok = bearer(installation.sessions, ["operator", "issuer"])
        r = client.post("/trust/key-destructions", json={"signer": "1"}, headers=tok["issuer"])
        assert r.status_code == 403
        r = client.post("/trust/key-destructions", json={"signer": "1"}, headers=tok["operator"])
        assert r.status_code == 409 and r.json()["type"] == "/problems/signer-still-signing", r.text
        assert "mdoc-iaca-1" in r.json()["detail"]
        r = client.post("/trust/key-destructions", json={"signer": "mdoc-ds-7"}, headers=tok["operator"])
        assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer"
        r = client.post("/trust/key-destructions", json={"signer": "../x"}, headers=tok["operator"])
        assert r.status_code == 422
        r = client.post("/trust/iaca-rollover", headers=tok["operator"])
        assert r.status_code == 200
        r = client.post("/trust/key-destructions", json={"signer": "mdoc-iaca-1"}, headers=tok["operator"])
        assert r.status_code == 409 and r.json()["type"] == "/problems/ca-duties-remain", r.text
        body = {"iaca": "1", "reason": "cACompromise", "destroy_key": True}
        r = client.post("/trust/iaca-revocations", json=body, headers=tok["issuer"])
        assert r.status_code == 403
        assert installation.keystore.has("mdoc-iaca-1")
        r = client.post("/trust/iaca-revocations", json=body, headers=tok["operator"])
        assert r.status_code == 200, r.text
        got = IacaRevocation.model_validate(r.json())
        assert got.changed and got.key_destroyed_at and not installation.keystore.has("mdoc-iaca-1")
        assert client.get("/trust/iaca-1.pem").content == first
        r = client.post("/trust/key-destructions", json={"signer": "mdoc-iaca-1"}, headers=tok["operator"])
        again = KeyDestruction.model_validate(r.json())
        assert r.status_code == 200 and again.already and not again.changed and again.key_destroyed_at == got.key_destroyed_at
        r = client.post("/trust/ds-revocations", json={"ds": "mdoc-ds-2", "reason": "keyCompromise",
                                                       "destroy_key": True}, headers=tok["operator"])
        assert r.status_code == 200 and SignerRevocation.model_validate(r.json()).key_destroyed_at, r.text
        r = client.post("/trust/key-destructions", json={"signer": "mdoc-ds-1"}, headers=tok["operator"])
        done = KeyDestruction.model_validate(r.json())
        assert done.changed and done.purpose == "ds" and done.revoked_at is None  # retired with its IACA
        assert {"POST /trust/key-destructions 200", "POST /trust/key-destructions 403",
                "POST /trust/key-destructions 404", "POST /trust/key-destructions 409",
                "POST /trust/iaca-revocations 200", "POST /trust/ds-revocations 200"} <= set(checked), checked
        events = _events(installation.sessions)
        assert [e.subject for e in events] == ["mdoc-iaca-1", "mdoc-ds-2", "mdoc-ds-1"]
        assert all(e.actor.startswith("token:") for e in events)


def test_doctor_names_a_compromised_signers_key_still_kept(installation):
    """``mcred doctor``: a signer revoked for keyCompromise or cACompromise whose key the store
    still holds is named with the command that destroys it; another reason is not; once
    destroyed, the finding is quiet."""
    from mcred.doctor import _compromised_keys
    from mcred.mdoc_flow import mdoc_service

    svc = mdoc_service(installation)
    svc.setup()
    assert _compromised_keys(installation).ok
    svc.rollover()
    svc.revoke_iaca(1, "superseded")
    svc.revoke_signer("mdoc-ds-2", "keyCompromise")
    f = _compromised_keys(installation)
    assert not f.ok and "mdoc-ds-2" in f.detail and "mdoc-iaca-1" not in f.detail
    assert f.fix == "mcred mdoc key destroy mdoc-ds-2"
    svc.revoke_iaca(1, "cACompromise")  # amended to a compromise
    f = _compromised_keys(installation)
    # in the order they were revoked (the IACA's time kept when its reason was amended)
    assert f.fix == "mcred mdoc key destroy mdoc-iaca-1; mcred mdoc key destroy mdoc-ds-2", f
    code, out = _cli("doctor", "--json")
    (found,) = [x for x in json.loads(out)["findings"] if x["name"] == "compromised signer keys"]
    assert not found["ok"] and found["fix"] == f.fix
    svc.destroy_key("mdoc-ds-2")
    svc.destroy_key("1")
    assert _compromised_keys(installation).ok
