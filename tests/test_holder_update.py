"""異動: a holder moves (or changes name). The registry takes the new card data, and the phone
that carries their credentials is brought in line over the TSM (the basic_four_change
workflow): the signing certificate, which carries the basic four data, is revoked as
superseded and re-issued with the new data on a key generated anew in the SE; the mdocs are
re-issued with the new address; the user-authentication certificate, which carries none,
stays valid. A crash inside the workflow resumes to the same end."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from conftest import fsync_skipped, reveals
from cryptography import x509
from sqlalchemy import select
from test_api_flows import _wait
from typer.testing import CliRunner

import wallet_sim
from issuer import handover as wf
from issuer import holders
from issuer.db import AuditEvent, Credential, Holder
from issuer.mdoc.models import MdocIssuance
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.handover_actions import HandoverActions, change_basic_four
from mcred.provision import parse_holder, provision
from protocols.jpki.parse import read_basic_four

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")

HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "やまだ",
          "given_name_kana": "はなこ", "birth_date": "1990-04-01", "sex": 2,
          "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
_PEOPLE = itertools.count()


def _person() -> dict:
    """HOLDER, as a person of their own: the installation is the module's, and the registry
    takes the same identity fields for the same person (one phone per person)."""
    born = dt.date(1990, 4, 1) + dt.timedelta(days=next(_PEOPLE))
    return dict(HOLDER, birth_date=born.isoformat())


MOVE = {"address": "大阪府大阪市北区中之島1-3-20", "prefecture": "大阪府", "municipality": "大阪市"}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    with fsync_skipped():
        yield Context.open(tmp_path_factory.mktemp("move"))


def _provisioned(ctx):
    phone = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, phone, parse_holder(_person()), key_type="p384", mdoc_batch=2)
    return r


def _credentials(ctx, phone: str) -> list[Credential]:
    with ctx.sessions() as s:
        return list(s.scalars(select(Credential).where(Credential.phone_id == phone)
                              .order_by(Credential.issued_at)))


def _card_certificate(ctx, phone: str, kind: str) -> x509.Certificate:
    (c,) = [c for c in _credentials(ctx, phone) if c.kind == kind and c.status == "valid"]
    return x509.load_der_x509_certificate(c.body)


def _mdoc_addresses(ctx, phone: str) -> list[str]:
    """The resident address element of each valid mdoc's IssuerSigned, as issued."""
    from protocols.mdoc import IssuerSigned

    out = []
    with ctx.sessions() as s:
        for c in s.scalars(select(Credential).join(MdocIssuance, MdocIssuance.credential_id == Credential.id)
                           .where(Credential.phone_id == phone, Credential.status == "valid")):
            signed = IssuerSigned.decode(c.body)
            out += [item.element_value for items in signed.items().values() for item in items
                    if item.element_identifier in ("address", "resident_address")]
    return out


def test_a_move_supersedes_the_signing_certificate_and_the_mdocs_only(ctx):
    r = _provisioned(ctx)
    before = {c.id: (c.kind, c.status) for c in _credentials(ctx, r.phone_id)}
    old_sign = _card_certificate(ctx, r.phone_id, "jpki-sign")
    old_auth = _card_certificate(ctx, r.phone_id, "jpki-auth")
    assert read_basic_four(old_sign).address == HOLDER["address"]

    out = change_basic_four(ctx, r.holder_id, MOVE, reason="転居届", actor="test")
    assert out["state"] == "done" and out["phone"] == r.phone_id
    assert out["fields"] == ["address", "municipality", "prefecture"]
    assert list(out["steps"]) == ["prepare", "reissue_sign", "reissue_mdoc", "publish", "done"]

    after = {c.id: c for c in _credentials(ctx, r.phone_id)}
    old_ids = {kind: [i for i, (k, _st) in before.items() if k == kind] for kind in ("jpki-sign", "jpki-auth", "mdoc")}
    assert all((after[i].status, after[i].reason) == ("revoked", "superseded")
               for i in old_ids["jpki-sign"] + old_ids["mdoc"])
    assert [after[i].status for i in old_ids["jpki-auth"]] == ["valid"]  # no basic four in it
    new_sign = _card_certificate(ctx, r.phone_id, "jpki-sign")
    assert new_sign.serial_number != old_sign.serial_number
    four = read_basic_four(new_sign)
    assert four.address == MOVE["address"] and four.name == "山田\u3000花子"
    assert new_sign.public_key().public_numbers() != old_sign.public_key().public_numbers()  # a new SE key
    assert _card_certificate(ctx, r.phone_id, "jpki-auth").serial_number == old_auth.serial_number
    # the new certificate is in the new municipality's CRL partition
    new_part = [c for c in after.values() if c.kind == "jpki-sign" and c.status == "valid"][0].partition
    assert new_part != [after[i] for i in old_ids["jpki-sign"]][0].partition
    assert _mdoc_addresses(ctx, r.phone_id) == [MOVE["address"]] * 2

    with ctx.sessions() as s:
        assert s.get(Holder, r.holder_id).data["address"] == MOVE["address"]
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "holder.update",
                                                      AuditEvent.subject == r.holder_id)).all()
    assert event.detail == {"fields": ["address", "municipality", "prefecture"], "reason": "転居届"}
    assert MOVE["address"] not in json.dumps(event.detail, ensure_ascii=False)  # never the values

    # the same values again change nothing and start no workflow
    assert change_basic_four(ctx, r.holder_id, MOVE, reason="again")["state"] == "unchanged"


def test_the_phone_signs_with_the_new_certificate_and_logs_in_with_the_old(ctx):
    """After the move the phone's signature carries the new address (the relying party reads
    it from the certificate) and its user authentication still passes, unchanged."""
    from mcred.jpki_flow import jpki_issuer, sign_challenge, sign_with_se
    from reader.relying_party import RelyingPartyService, verify

    r = _provisioned(ctx)
    change_basic_four(ctx, r.holder_id, {"family_name": "佐藤", "family_name_kana": "さとう"},
                      reason="婚姻", actor="test")
    jp = jpki_issuer(ctx)
    se = wallet_sim.open_secure_element(r.phone_id, ctx.home)
    cms, _cert = sign_with_se(se.transmit, "sign", r.password.encode(), b"contract")
    verdict = verify(b"contract", cms, roots=jp.roots("sign"), revocation="none")
    assert verdict["valid"], verdict
    assert verdict["documents"][0]["basic_four"]["name"] == "佐藤\u3000花子"
    rp = RelyingPartyService(jp.roots("auth"))
    challenge = rp.challenge()
    login = rp.authenticate(challenge.id, *sign_challenge(se.transmit, r.pin.encode(), challenge.nonce),
                            revocation="none")
    assert login["valid"], login


def test_refusals_change_nothing(ctx):
    r = _provisioned(ctx)
    with ctx.sessions() as s:
        data = dict(s.get(Holder, r.holder_id).data)
    for changes, message in (({"card_number": "1"}, "cannot change card_number"),
                             ({"family_name_kana": "Yamada"}, "family_name_kana"),
                             ({"address": None}, "address cannot be removed"),
                             ({"sex": 7}, "sex"),
                             ({"birth_date": "2999-01-01"}, "'birth_date': 2999-01-01 is in the future")):
        with pytest.raises(holders.HolderError, match=message):
            change_basic_four(ctx, r.holder_id, changes, reason="x")
    with pytest.raises(holders.HolderError, match="no holder"):
        change_basic_four(ctx, "nobody", MOVE, reason="x")
    with ctx.sessions() as s:
        assert s.get(Holder, r.holder_id).data == data
    assert all(c.status == "valid" for c in _credentials(ctx, r.phone_id))
    # a phone reported lost (on hold) is settled first: nothing is changed meanwhile
    from issuer import revocation

    revocation.hold(ctx.sessions, r.phone_id)
    with pytest.raises(wf.WorkflowError, match="on hold"):
        change_basic_four(ctx, r.holder_id, MOVE, reason="転居届")
    with ctx.sessions() as s:
        assert s.get(Holder, r.holder_id).data == data


def test_a_move_of_a_phone_whose_mdocs_were_revoked_reissues_the_signing_certificate_alone(ctx):
    """A phone whose mdocs were revoked (keyCompromise, by an operator) and whose
    certificates are valid: the move re-issues the signing certificate and has no mdoc to
    re-issue. Before, its reissue_mdoc step asked for a refresh of a phone holding no valid
    mdoc, which is refused, so the workflow stopped there with the signing certificate
    already re-issued, and every resume stopped the same way (tests/test_lifecycle_model.py
    found it)."""
    from issuer import revocation

    r = _provisioned(ctx)
    revoked = revocation.revoke(ctx.sessions, r.phone_id, "keyCompromise", "mdoc", actor="test")
    assert len(revoked) == 2
    out = change_basic_four(ctx, r.holder_id, MOVE, reason="転居届", actor="test")
    assert out["state"] == "done"
    kinds = sorted((c.kind, c.status, c.reason) for c in _credentials(ctx, r.phone_id))
    assert kinds == [("jpki-auth", "valid", None), ("jpki-sign", "revoked", "superseded"),
                     ("jpki-sign", "valid", None), ("mdoc", "revoked", "keyCompromise"),
                     ("mdoc", "revoked", "keyCompromise")]
    assert read_basic_four(_card_certificate(ctx, r.phone_id, "jpki-sign")).address == MOVE["address"]
    with ctx.sessions() as s:
        h = s.get(wf.Handover, out["handover"])
        assert h.detail["results"]["reissue_mdoc"]["skipped"] == "no valid mdoc on the phone"


class _CrashOnce:
    def __init__(self, at: str) -> None:
        self.at, self.fired = at, False

    def __call__(self, step: str) -> None:
        if step == self.at and not self.fired:
            self.fired = True
            raise RuntimeError(f"crash after {step}")


@pytest.mark.parametrize("tsm_step", ["issue-sign-cert", "issue-mdoc"])
def test_a_crash_inside_the_workflow_resumes_to_the_same_end(ctx, tsm_step):
    r = _provisioned(ctx)
    hook = _CrashOnce(tsm_step)
    with pytest.raises(wf.StepFailed) as failed:
        change_basic_four(ctx, r.holder_id, MOVE, reason="転居届",
                          actions=HandoverActions(ctx, tsm_hook=hook))
    assert hook.fired
    hid = str(failed.value).split("of workflow ")[1].split()[0]
    out = change_basic_four(ctx, r.holder_id, {}, reason="", resume=hid)
    assert out["state"] == "done"
    kinds = sorted((c.kind, c.status, c.reason) for c in _credentials(ctx, r.phone_id))
    assert kinds == [("jpki-auth", "valid", None), ("jpki-sign", "revoked", "superseded"),
                     ("jpki-sign", "valid", None), ("mdoc", "revoked", "superseded"),
                     ("mdoc", "revoked", "superseded"), ("mdoc", "valid", None), ("mdoc", "valid", None)]
    assert _mdoc_addresses(ctx, r.phone_id) == [MOVE["address"]] * 2
    assert read_basic_four(_card_certificate(ctx, r.phone_id, "jpki-sign")).address == MOVE["address"]


def test_the_cli_moves_a_holder(ctx, monkeypatch):
    r = _provisioned(ctx)
    monkeypatch.setenv("MCRED_HOME", str(ctx.home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    runner = CliRunner()
    refused = runner.invoke(cli, ["holder", "update", r.holder_id, "--address", "x"])
    assert refused.exit_code == 2 and "reason" in refused.output
    out = runner.invoke(cli, ["holder", "update", r.holder_id, "--address", MOVE["address"], "--prefecture",
                              "大阪府", "--municipality", "大阪市", "--reason", "転居届", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["state"] == "done" and got["phone"] == r.phone_id
    bad = runner.invoke(cli, ["holder", "update", r.holder_id, "--given-name-kana", "Hanako", "--reason", "x"])
    assert bad.exit_code == 2 and "given_name_kana" in bad.output


def test_a_municipality_code_is_the_six_digit_local_government_code(ctx, monkeypatch):
    """The code names the holder's CRL partition in every certificate's CRL URL
    (specs/jpki-profile.md): the API takes 6 ASCII digits only, and so must the CLI and the
    Python API, or a code such as ``ab/cd`` would publish a URL no relying party fetches."""
    r = _provisioned(ctx)
    with ctx.sessions() as s:
        data = dict(s.get(Holder, r.holder_id).data)
    for bad in ("13101", "1310100", "ab/cd", "１３１０１６", "131016\n", " 131016"):
        with pytest.raises(holders.HolderError, match="municipality_code"):
            change_basic_four(ctx, r.holder_id, {**MOVE, "municipality_code": bad}, reason="転居届")
    monkeypatch.setenv("MCRED_HOME", str(ctx.home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    out = CliRunner().invoke(cli, ["holder", "update", r.holder_id, "--address", MOVE["address"], "--prefecture",
                                   "大阪府", "--municipality", "大阪市", "--municipality-code", "27/127",
                                   "--reason", "転居届"])
    assert out.exit_code == 2 and "municipality_code" in out.output, out.output
    with ctx.sessions() as s:
        assert s.get(Holder, r.holder_id).data == data
    assert all(c.status == "valid" for c in _credentials(ctx, r.phone_id))
    change_basic_four(ctx, r.holder_id, {**MOVE, "municipality_code": "271276"}, reason="転居届")
    cert = _card_certificate(ctx, r.phone_id, "jpki-sign")
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    uris = [n.value for dp in points for n in dp.full_name if isinstance(n, x509.UniformResourceIdentifier)]
    assert uris and uris[0].endswith("/crl/sign/271276.crl"), uris


def test_the_api_records_a_move_and_runs_its_workflow_as_a_job(ctx):
    """``POST /holders/{id}/changes`` (operator): 202 with the workflow's job, which ends
    with the signing certificate re-issued; bad data 422, unknown holder 404, no change 200."""

    from fastapi.testclient import TestClient

    from issuer.api.auth import create_token
    from mcred.service import create_app

    r = _provisioned(ctx)
    _id, token = create_token(ctx.sessions, ["operator"], "back-office")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(ctx, job_workers=1), base_url=ctx.public_url) as client:
        path = f"/holders/{r.holder_id}/changes"
        bad = client.post(path, json={"reason": "x", "family_name_kana": "Yamada"}, headers=auth)
        assert bad.status_code == 422 and "family_name_kana" in bad.json()["detail"]
        assert client.post(f"/holders/{'0' * 32}/changes", json={"reason": "x", "address": "y"},
                           headers=auth).status_code == 404
        assert client.post(path, json={"reason": "x"}, headers=auth).status_code == 422
        started = client.post(path, json={"reason": "転居届", **MOVE}, headers=auth)
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["fields"] == ["address", "municipality", "prefecture"] and body["phone"] == r.phone_id
        job = body["job"]["id"]
        view = _wait(client, auth, job)
        assert view["state"] == "succeeded", view
        assert view["result"]["state"] == "done"
        again = client.post(path, json={"reason": "again", **MOVE}, headers=auth)
        assert again.status_code == 200 and again.json()["state"] == "unchanged"
    assert read_basic_four(_card_certificate(ctx, r.phone_id, "jpki-sign")).address == MOVE["address"]


def _mdoc_elements(ctx, phone: str, name: str) -> list:
    from protocols.mdoc import IssuerSigned

    with ctx.sessions() as s:
        bodies = [c.body for c in s.scalars(select(Credential).where(
            Credential.phone_id == phone, Credential.kind == "mdoc", Credential.status == "valid"))]
    return [item.element_value for body in bodies for items in IssuerSigned.decode(body).items().values()
            for item in items if item.element_identifier == name]


def test_a_renewed_card_moves_an_rsa_phone_to_p384_with_everything_anew(ctx):
    """カードの更新 onto the next card: a new card number and expiry; the phone's RSA-2048
    certificates and mdocs all superseded and issued anew with P-384 keys born in the SE, the
    mdocs carrying the new card's expiry; new secrets shown once, the new PIN logs in."""
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from mcred.handover_actions import renew_card
    from mcred.jpki_flow import jpki_issuer, sign_challenge
    from reader.relying_party import RelyingPartyService

    phone = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, phone, parse_holder(_person()), key_type="rsa2048", mdoc_batch=1)
    assert isinstance(_card_certificate(ctx, phone, "jpki-sign").public_key(), rsa.RSAPublicKey)

    def still_rsa() -> list[str]:
        """``mcred credential list --key-type rsa2048 --status valid``: what is to move off RSA."""
        out = CliRunner().invoke(cli, ["credential", "list", "--key-type", "rsa2048", "--status", "valid",
                                       "--phone", phone, "--json"], env={"MCRED_HOME": str(ctx.home)})
        assert out.exit_code == 0, out.output
        return sorted(c["kind"] for c in json.loads(out.output))

    assert still_rsa() == ["jpki-auth", "jpki-sign"]
    with ctx.sessions() as s:
        old_card = s.get(Holder, r.holder_id).card_number
    out = renew_card(ctx, r.holder_id, reason="有効期限の更新", key_type="p384", actor="test")
    assert out["state"] == "done" and out["phone"] == phone and out["key_type"] == "p384"
    assert out["card"]["previous_card_number"] == old_card != out["card"]["card_number"]
    assert sorted(out["secrets"]) == ["password", "pin", "puk"]
    kinds = sorted((c.kind, c.status, c.reason) for c in _credentials(ctx, phone))
    assert kinds == [("jpki-auth", "revoked", "superseded"), ("jpki-auth", "valid", None),
                     ("jpki-sign", "revoked", "superseded"), ("jpki-sign", "valid", None),
                     ("mdoc", "revoked", "superseded"), ("mdoc", "valid", None)]
    assert still_rsa() == []
    for kind in ("jpki-sign", "jpki-auth"):
        key = _card_certificate(ctx, phone, kind).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    with ctx.sessions() as s:
        row = s.get(Holder, r.holder_id)
        assert row.card_number == out["card"]["card_number"]
        expiry = row.card_expiry
    assert _mdoc_elements(ctx, phone, "card_expiry_date") in ([expiry], [dt.date.fromisoformat(str(expiry))])
    rp = RelyingPartyService(jpki_issuer(ctx).roots("auth"))
    challenge = rp.challenge()
    se = wallet_sim.open_secure_element(phone, ctx.home)
    login = rp.authenticate(challenge.id, *sign_challenge(se.transmit, out["secrets"]["pin"].encode(),
                                                          challenge.nonce), revocation="none")
    assert login["valid"], login


@pytest.mark.parametrize("change", ["renew_card", "move"])
def test_the_workflow_goes_to_the_phone_with_the_valid_credentials(ctx, monkeypatch, change):
    """A holder's first phone A had its credentials revoked kind by kind (an operator's
    keyCompromise; such a phone stays active) and the holder was provisioned anew on B.
    A card renewal, or a move, is for B. Before, the workflow went to the holder's first
    active phone by id and, finding A without valid credentials, to none: the renewal said
    "registry only" and the move changed the registry alone, B keeping credentials with the
    old card's data (tests/test_lifecycle_model.py found it, when A's id sorted first)."""
    import uuid
    from types import SimpleNamespace

    from issuer import revocation
    from mcred.handover_actions import renew_card
    from mcred.provision import check_holder_for_new_phone

    ids = iter([f"00{uuid.uuid4().hex[:10]}", f"ff{uuid.uuid4().hex[:10]}"])  # A sorts before B
    monkeypatch.setattr(wallet_sim.phone, "secrets", SimpleNamespace(token_hex=lambda n: next(ids)))
    a = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, a, parse_holder(_person()), key_type="p384", mdoc_batch=1)
    for kind in ("jpki", "mdoc"):
        revocation.revoke(ctx.sessions, a, "keyCompromise", kind, actor="test")
    b = wallet_sim.create_phone(ctx.home)
    assert a < b
    check_holder_for_new_phone(ctx, r.holder_id, b)
    provision(ctx, b, r.holder_id, key_type="p384", mdoc_batch=1, alone=True)
    before = {c.id for c in _credentials(ctx, b)}
    if change == "renew_card":
        out = renew_card(ctx, r.holder_id, reason="有効期限の更新", actor="test")
        renewed = {"jpki-sign", "jpki-auth", "mdoc"}
    else:
        out = change_basic_four(ctx, r.holder_id, MOVE, reason="転居届", actor="test")
        renewed = {"jpki-sign", "mdoc"}
    assert (out["phone"], out["state"]) == (b, "done")
    after = _credentials(ctx, b)
    assert {c.kind for c in after if c.id in before and c.status == "revoked"} == renewed
    assert {c.kind for c in after if c.id not in before and c.status == "valid"} == renewed
    assert all(c.status == "revoked" and c.reason == "keyCompromise" for c in _credentials(ctx, a))


def test_a_card_renewal_is_refused_before_anything_changes(ctx):
    from issuer import revocation
    from mcred.handover_actions import renew_card

    r = _provisioned(ctx)
    with ctx.sessions() as s:
        card = s.get(Holder, r.holder_id).card_number
    with pytest.raises(holders.HolderError, match="16 digits"):
        renew_card(ctx, r.holder_id, reason="x", card_number="12")
    with pytest.raises(holders.HolderError, match="is the holder's card already"):
        renew_card(ctx, r.holder_id, reason="x", card_number=card)
    with pytest.raises(wf.WorkflowError, match="neither rsa2048 nor p384"):
        renew_card(ctx, r.holder_id, reason="x", key_type="ed25519")
    revocation.hold(ctx.sessions, r.phone_id)
    with pytest.raises(wf.WorkflowError, match="on hold"):
        renew_card(ctx, r.holder_id, reason="x")
    with ctx.sessions() as s:
        assert s.get(Holder, r.holder_id).card_number == card


def test_the_cli_renews_a_card(ctx, monkeypatch):
    r = _provisioned(ctx)
    monkeypatch.setenv("MCRED_HOME", str(ctx.home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["holder", "renew-card", r.holder_id]).exit_code == 2  # no reason
    out = runner.invoke(cli, ["holder", "renew-card", r.holder_id, "--reason", "更新", "--card-number",
                              "1234567812345678"])
    assert out.exit_code == 0, out.output
    assert "card 1234567812345678 until" in out.output and "new user-auth PIN (shown once):" in out.output
    taken = runner.invoke(cli, ["holder", "renew-card", r.holder_id, "--reason", "x", "--card-number",
                                "1234567812345678"])
    assert taken.exit_code == 2 and "already" in taken.output


def test_the_api_renews_a_card_with_the_secrets_it_is_given(ctx):
    """``POST /holders/{id}/card-renewals`` (operator): 202 and a job; the phone ends with P-384
    certificates and the PIN the body gave (nothing generated, nothing returned)."""

    from fastapi.testclient import TestClient

    from issuer.api.auth import create_token
    from mcred.jpki_flow import jpki_issuer, sign_challenge
    from mcred.service import create_app
    from reader.relying_party import RelyingPartyService

    phone = wallet_sim.create_phone(ctx.home)
    r = provision(ctx, phone, parse_holder(_person()), key_type="rsa2048", mdoc_batch=1)
    _id, token = create_token(ctx.sessions, ["operator"], "counter")
    auth = {"Authorization": f"Bearer {token}"}
    body = {"reason": "更新", "key_type": "p384", "pin": "4321", "password": "NEWPASS1", "puk": "87654321"}
    with TestClient(create_app(ctx, job_workers=1), base_url=ctx.public_url) as client:
        path = f"/holders/{r.holder_id}/card-renewals"
        assert client.post(path, json={**body, "pin": "12"}, headers=auth).status_code == 422
        started = client.post(path, json=body, headers=auth)
        assert started.status_code == 202, started.text
        assert not reveals(started.text, "4321")
        job = started.json()["job"]["id"]
        view = _wait(client, auth, job)
        assert view["state"] == "succeeded", view
        assert not reveals(json.dumps(view), "4321")
    key = _card_certificate(ctx, phone, "jpki-auth").public_key()
    assert key.curve.name == "secp384r1"
    rp = RelyingPartyService(jpki_issuer(ctx).roots("auth"))
    challenge = rp.challenge()
    se = wallet_sim.open_secure_element(phone, ctx.home)
    assert rp.authenticate(challenge.id, *sign_challenge(se.transmit, b"4321", challenge.nonce),
                           revocation="none")["valid"]


_FIELDS = [*holders.CHANGEABLE, "card_number", "erased", "x"]


@pytest.fixture(scope="module")
def registered(ctx):
    """One holder, registered only (no phone): the registry side of a change."""
    return holders.register(ctx.sessions, parse_holder(dict(HOLDER, family_name="変更")))


def test_any_change_leaves_a_record_the_card_can_hold(ctx, registered):
    """Changes from anywhere (known and unknown fields, any value): refused with a HolderError
    and nothing written, or written as a record that parses as a new holder's would."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from protocols.cardsub.holder import parse_holder as parse_card

    values = st.one_of(st.none(), st.text(max_size=30), st.integers(-3, 12),
                       st.sampled_from(["やまだ", "Yamada", "1999-02-30", "2001-01-01", "大阪府", "131016"]))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(_FIELDS), values, max_size=4))
    def run(changes):
        with ctx.sessions() as s:
            before = dict(s.get(Holder, registered).data)
        try:
            holders.update(ctx.sessions, registered, changes, actor="fuzz", reason="fuzz")
        except holders.HolderError as exc:
            assert str(exc)
            with ctx.sessions() as s:
                assert s.get(Holder, registered).data == before
            return
        with ctx.sessions() as s:
            data = dict(s.get(Holder, registered).data)
        parse_card({k: v for k, v in data.items() if k != "municipality_code"})

    run()


@pytest.mark.parametrize("what", ["move", "new card"])
def test_a_stop_between_the_registry_and_its_workflow_leaves_neither(ctx, monkeypatch, what):
    """The registry's change (a move, a new card) and the workflow that re-issues the
    credentials from it are written in one transaction. A chaos test killed `mcred holder
    update` between the two: the registry kept the new address, the credentials the old,
    with no workflow to resume, and the same command again said "nothing changed". Here the
    workflow's creation fails: nothing of the change stays, and the command run again does
    it all."""
    from mcred import handover_actions
    from mcred.handover_actions import renew_card

    r = _provisioned(ctx)
    with ctx.sessions() as s:
        before = dict(s.get(Holder, r.holder_id).data), s.get(Holder, r.holder_id).card_number

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("the process is killed here")

    def run():
        if what == "move":
            return change_basic_four(ctx, r.holder_id, MOVE, reason="転居届")
        return renew_card(ctx, r.holder_id, reason="更新")

    with monkeypatch.context() as m:
        m.setattr(handover_actions.wf, "create_in", killed)
        with pytest.raises(KeyboardInterrupt):
            run()
    with ctx.sessions() as s:
        assert (dict(s.get(Holder, r.holder_id).data), s.get(Holder, r.holder_id).card_number) == before
    assert run()["state"] == "done"
    if what == "move":
        assert _mdoc_addresses(ctx, r.phone_id) == [MOVE["address"]] * 2


def test_a_stopped_cli_update_names_the_command_that_resumes_it(ctx, monkeypatch):
    """The hint a stopped ``holder update`` prints is the command ``mcred workflows`` lists
    for that workflow (mcred.handover_actions.resume_command), and running it finishes."""
    from mcred import handover_actions
    from mcred.handover_actions import resume_command

    r = _provisioned(ctx)
    monkeypatch.setenv("MCRED_HOME", str(ctx.home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    hook = _CrashOnce("issue-sign-cert")
    real = handover_actions.HandoverActions
    monkeypatch.setattr(handover_actions, "HandoverActions",
                        lambda *a, **kw: real(*a, **{**kw, "tsm_hook": hook}))
    out = CliRunner().invoke(cli, ["holder", "update", r.holder_id, "--address", MOVE["address"], "--prefecture",
                                   "大阪府", "--municipality", "大阪市", "--reason", "転居届"])
    assert out.exit_code == 1 and hook.fired, out.output
    hint = out.output.split("(resume: ")[1].rsplit(")", 1)[0]
    with ctx.sessions() as s:
        (h,) = s.scalars(select(wf.Handover).where(wf.Handover.holder_id == r.holder_id,
                                                   wf.Handover.state != "done")).all()
    assert hint == resume_command(h) == f"mcred holder update {r.holder_id} --resume {h.id}"
    monkeypatch.setattr(handover_actions, "HandoverActions", real)
    done = CliRunner().invoke(cli, hint.split()[1:])
    assert done.exit_code == 0, done.output
