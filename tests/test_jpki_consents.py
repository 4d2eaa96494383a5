"""The latest basic four data service (最新の利用者情報提供, issuer/jpki/consents.py): a holder
signs a relying party's consent document with the signing key in their phone's SE; the
relying party registers it over the API (its token's name is the party) and then asks for
the holder's basic four data now, which follows the holder's move; the holder withdraws the
consent and the relying party is refused from then on."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from conftest import fsync_skipped, person
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import wallet_sim
from issuer.api.auth import create_token
from issuer.db import AuditEvent
from issuer.jpki import consents
from mcred.context import Context
from mcred.handover_actions import change_basic_four
from mcred.jpki_flow import sign_with_se
from mcred.provision import parse_holder, provision
from mcred.service import create_app
from protocols.jpki.consent import ConsentError, build_consent, parse_consent

HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "やまだ",
          "given_name_kana": "はなこ", "birth_date": "1950-04-01", "sex": 2,
          "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
INSURER = "ひまわり生命保険"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with fsync_skipped():
        home = tmp_path_factory.mktemp("consent")
        ctx = Context.open(home)
        app = create_app(ctx, job_workers=1)
        with TestClient(app, base_url=ctx.public_url) as client:
            tokens = {name: create_token(ctx.sessions, [scope], name)[1]
                      for name, scope in ((INSURER, "reader"), ("他社", "reader"), ("", "reader"),
                                          ("back-office", "issuer"))}
            yield {"ctx": ctx, "client": client, "tokens": tokens}


def _phone(ctx, holder: dict | None = None):
    """A phone provisioned for ``holder``, by default a person of their own (the installation
    is the module's: one person, one phone)."""
    phone = wallet_sim.create_phone(ctx.home)
    return provision(ctx, phone, parse_holder(holder or person(HOLDER)), key_type="p384", mdoc_batch=1)


def _signed(ctx, r, relying_party: str = INSURER, **kwargs) -> tuple[bytes, bytes]:
    document = build_consent(relying_party, "保険金・年金のお支払いのため", **kwargs)
    se = wallet_sim.open_secure_element(r.phone_id, ctx.home)
    p7s, _cert = sign_with_se(se.transmit, "sign", r.password.encode(), document)
    return document, p7s


def _call(world, method: str, path: str, who: str, body: dict | None = None):
    headers = {"Authorization": f"Bearer {world['tokens'][who]}"}
    return world["client"].request(method, path, json=body, headers=headers)


def _register(world, document: bytes, p7s: bytes, who: str = INSURER):
    return _call(world, "POST", "/jpki/consents", who,
                 {"document": base64.b64encode(document).decode(), "signature": base64.b64encode(p7s).decode()})


def test_a_consent_gives_the_basic_four_now_until_it_is_withdrawn(world):
    ctx = world["ctx"]
    holder = person(HOLDER)
    r = _phone(ctx, holder)
    document, p7s = _signed(ctx, r)
    first = _register(world, document, p7s)
    assert first.status_code == 201, first.text
    consent = first.json()
    assert consent["holder"] == r.holder_id and consent["state"] == "active" and consent["registered"]
    granted, expires = (dt.datetime.fromisoformat(consent[k]) for k in ("granted_at", "expires_at"))
    assert 3650 <= (expires - granted).days <= 3653  # ten years
    again = _register(world, document, p7s)
    assert again.status_code == 200 and again.json()["id"] == consent["id"] and not again.json()["registered"]

    path = f"/jpki/consents/{consent['id']}/basic-four"
    now = _call(world, "GET", path, INSURER).json()
    assert now["basic_four"] == {"name": "山田\u3000花子", "birth_date": "1950-04-01", "sex": 2,
                                 "address": holder["address"]}
    assert now["changed"] == [] and now["signing_certificate"] == consent["signer_serial"]
    # nobody else's: another party (a token made without a name is "token-<id>") learns
    # nothing, not even that the consent exists
    assert _call(world, "GET", path, "他社").status_code == 404
    assert _call(world, "GET", path, "").status_code == 404

    change_basic_four(ctx, r.holder_id, {"address": "大阪府大阪市北区中之島1-3-20", "prefecture": "大阪府",
                                         "municipality": "大阪市"}, reason="転居届", actor="test")
    moved = _call(world, "GET", path, INSURER).json()
    assert moved["basic_four"]["address"] == "大阪府大阪市北区中之島1-3-20" and moved["changed"] == ["address"]
    assert moved["signing_certificate"] not in (None, consent["signer_serial"])  # the new certificate

    listed = _call(world, "GET", f"/holders/{r.holder_id}/consents", "back-office").json()["consents"]
    assert [(c["id"], c["state"]) for c in listed] == [(consent["id"], "active")]
    gone = _call(world, "POST", f"/holders/{r.holder_id}/consents/{consent['id']}/withdraw", "back-office",
                 {"reason": "本人の申出"})
    assert gone.status_code == 200 and gone.json()["state"] == "withdrawn"
    refused = _call(world, "GET", path, INSURER)
    assert refused.status_code == 403 and "withdrawn" in refused.json()["detail"]
    with ctx.sessions() as s:
        events = [(e.action, e.detail) for e in s.scalars(select(AuditEvent).where(
            AuditEvent.subject == consent["id"]).order_by(AuditEvent.at))]
    assert [a for a, _ in events] == ["consent.register", "consent.query", "consent.query", "consent.withdraw"]
    assert "大阪" not in str(events)  # the trail names who asked, never the answer


def test_what_is_refused_at_registration(world):
    ctx = world["ctx"]
    r = _phone(ctx)
    document, p7s = _signed(ctx, r)
    # the consent names another party than the token
    wrong = _register(world, document, p7s, who="他社")
    assert wrong.status_code == 403 and "not to '他社'" in wrong.json()["detail"]
    # a changed document no longer matches the signature
    tampered = document.replace("保険金".encode(), "保険料".encode())
    assert _register(world, tampered, p7s).status_code == 422
    # a document made long ago
    old_doc, old_sig = _signed(ctx, r, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=31))
    stale = _register(world, old_doc, old_sig)
    assert stale.status_code == 422 and "within 30 days" in stale.json()["detail"]
    # a signing certificate since revoked (a move supersedes it) cannot consent any more
    later_doc, later_sig = _signed(ctx, r)
    change_basic_four(ctx, r.holder_id, {"address": "東京都千代田区永田町1-7-1"}, reason="転居届", actor="test")
    revoked = _register(world, later_doc, later_sig)
    assert revoked.status_code == 422 and "revoked (superseded)" in revoked.json()["detail"]
    assert _call(world, "POST", "/jpki/consents", INSURER, {"document": "!", "signature": ""}).status_code == 422
    assert _call(world, "GET", f"/jpki/consents/{'0' * 32}/basic-four", INSURER).status_code == 404


def test_a_consent_expires_after_ten_years(world):
    ctx = world["ctx"]
    r = _phone(ctx)
    document, p7s = _signed(ctx, r)
    view, _ = consents.register(ctx.sessions, document, p7s, relying_party=INSURER, actor="test")
    later = view.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(consents.ConsentRefused, match="is expired") as refused:
        consents.latest_basic_four(ctx.sessions, view.id, relying_party=INSURER, actor="test", now=later)
    assert refused.value.status == 403


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode),
                 st.dictionaries(st.sampled_from(["type", "relying_party", "purpose", "issued_at", "nonce", "x"]),
                                 st.one_of(st.text(max_size=20), st.integers(), st.none()))
                 .map(lambda d: __import__("json").dumps(d).encode())))
def test_a_consent_document_parses_or_says_what_is_wrong(data):
    try:
        parse_consent(data)
    except ConsentError as exc:
        assert str(exc)


def test_a_built_consent_parses_back():
    doc = build_consent(INSURER, "目的")
    got = parse_consent(doc)
    assert got.relying_party == INSURER and got.purpose == "目的" and len(got.nonce) == 32
    assert build_consent(INSURER, "目的") != doc  # a nonce each
    with pytest.raises(ConsentError, match="relying_party: 1 to 128"):
        build_consent("", "目的")


def test_hostile_bodies_never_reach_a_500(world):
    """Registration bodies from anywhere: a 4xx problem, never a 500."""

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(document=st.binary(max_size=200), signature=st.binary(max_size=200))
    def run(document, signature):
        answer = _register(world, document, signature)
        assert 400 <= answer.status_code < 500, answer.text

    run()


def test_the_cli_makes_registers_asks_and_withdraws(world, tmp_path, monkeypatch):
    """``mcred jpki consent document|register|basic-four`` (this installation as the relying
    party --rp) and ``mcred holder consents --withdraw``."""
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    ctx = world["ctx"]
    monkeypatch.setenv("MCRED_HOME", str(ctx.home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == code, result.output
        return result.output

    r = _phone(ctx)
    doc = tmp_path / "consent.json"
    run("jpki", "consent", "document", "--rp", INSURER, "--purpose", "年金の現況確認", "--out", str(doc))
    se = wallet_sim.open_secure_element(r.phone_id, ctx.home)
    p7s, _cert = sign_with_se(se.transmit, "sign", r.password.encode(), doc.read_bytes())
    (tmp_path / "consent.p7s").write_bytes(p7s)
    got = json.loads(run("jpki", "consent", "register", "--content", str(doc), "--signature",
                         str(tmp_path / "consent.p7s"), "--rp", INSURER, "--json"))
    assert got["registered"] and got["holder"] == r.holder_id
    out = run("jpki", "consent", "basic-four", got["id"], "--rp", INSURER)
    assert "name 山田\u3000花子" in out and "changed since the consent: nothing" in out
    assert "no consent" in run("jpki", "consent", "basic-four", got["id"], "--rp", "他社", code=1)
    # the table (not a terminal here: a pipe, a log) shows the id --withdraw takes whole, on its row
    monkeypatch.delenv("COLUMNS", raising=False)  # as a pipe has it (pytest-xdist's workers set 80)
    row = [line for line in run("holder", "consents", r.holder_id).splitlines() if got["id"] in line]
    assert len(row) == 1 and INSURER in row[0] and "active" in row[0], row
    run("holder", "consents", r.holder_id, "--withdraw", got["id"], "--reason", "本人の申出")
    listed = json.loads(run("holder", "consents", r.holder_id, "--json"))
    assert [(c["id"], c["state"]) for c in listed] == [(got["id"], "withdrawn")]
    assert "withdrawn" in run("jpki", "consent", "basic-four", got["id"], "--rp", INSURER, code=1)


def test_over_http_the_cli_refuses_rp_which_the_token_name_stands_for(tmp_path):
    """The README's `mcred jpki consent basic-four ID --rp 'Life Co'` with `--issuer URL
    --token T` added: --rp was left unread, so a token named otherwise was answered as its own
    party ("no consent ... to 'rd'"). With --issuer, --rp is refused before anything is sent,
    naming the token the party needs (nothing listens on the URL here)."""
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    doc, sig = tmp_path / "c.json", tmp_path / "c.json.p7s"
    doc.write_text("{}")
    sig.write_bytes(b"0")
    http = ["--issuer", "http://127.0.0.1:9", "--token", "mcred_x_y", "--rp", "Life Co", "--json"]
    for args in (["basic-four", "0" * 32, *http], ["register", "--content", str(doc), "--signature", str(sig), *http]):
        result = CliRunner().invoke(cli, ["jpki", "consent", *args])
        assert result.exit_code == 2, result.output
        error = json.loads(result.stdout)["error"]
        assert "--rp" in error and "mcred token create --scope reader --name 'Life Co'" in error, error


def test_the_same_consent_registered_at_once_is_registered_once(world):
    import threading

    ctx = world["ctx"]
    r = _phone(ctx)
    document, p7s = _signed(ctx, r)
    barrier = threading.Barrier(4)
    results: list = []

    def register() -> None:
        barrier.wait()
        results.append(consents.register(ctx.sessions, document, p7s, relying_party=INSURER, actor="test"))

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(new for _view, new in results) == [False, False, False, True]
    assert len({view.id for view, _new in results}) == 1


def test_the_consents_of_a_holder_not_there_are_refused_not_an_empty_list(world, monkeypatch):
    """``mcred holder consents ID`` and ``GET /holders/{id}/consents`` of an id the registry
    does not know (a typo, another installation's holder) answered an empty list, exit 0 /
    200, as if that person had consented to nothing: the holder is named as not there, exit 2
    / 404, as ``holder show`` and ``GET /holders/{id}`` do."""
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    nobody = "0" * 32
    got = _call(world, "GET", f"/holders/{nobody}/consents", "back-office")
    assert got.status_code == 404 and got.json()["type"] == "/problems/not-found", got.text
    assert f"no holder '{nobody}'" in got.json()["detail"]
    monkeypatch.setenv("MCRED_HOME", str(world["ctx"].home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    for args in ([nobody], ["nope"], ["nope", "--json"]):
        r = CliRunner().invoke(cli, ["holder", "consents", *args])
        assert r.exit_code == 2, r.output
        said = json.loads(r.stdout)["error"] if "--json" in args else r.stderr
        assert "no holder" in said and "in the issuer's registry" in said, r.output
