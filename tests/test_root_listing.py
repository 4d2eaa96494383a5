"""Every root generation listed (specs/issuer-keys.md, "The JPKI root generations", "The TSA's
root"), as ``mcred mdoc iaca list`` lists the IACA's: ``mcred jpki root list [--slot S]
[--json]`` and ``GET /trust/roots/jpki`` (each generation of each slot with its state, issuing
/ staged / retired, validity, key destroyed, the valid certificates it issued, until when it
has duties, its CRLs and its OCSP responders), ``mcred tsa root list [--json]`` and ``GET
/trust/roots/tsa`` (each root with its state, current / staged / retired, its CRL and its
units). Read from the registry alone: the key store is never asked, nothing is made. Played
across stagings, rollovers and key destructions on a moved clock, on both databases; the
commands in JSON and text; the routes for the operator alone."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from api_helpers import bearer
from cryptography import x509
from documented import check_every_answer
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from test_issuer_jpki_support import HOLDER, provision
from test_rp_http import run_cli
from test_tsa_rollover import CONTENT, URL, Clock

from issuer.db import IssuerKey
from issuer.jpki import JpkiCa, JpkiIssuer, profile_for
from issuer.jpki.listing import list_roots
from issuer.jpki.partitions import municipality_of
from issuer.keystore import MemoryKeyStore
from issuer.tsa import TimeStampAuthority
from issuer.tsa_listing import list_roots as list_tsa_roots
from mcred.context import Context
from mcred.db import make_engine, migrate
from protocols import tsp
from protocols.jpki.profile import KeyType, Purpose

PUBLIC = "http://issuer.test"


class LockedKeyStore:
    """A key store that fails the test if anything asks it for anything: the listings read the
    registry alone."""

    def __getattr__(self, name: str):  # noqa: ANN204
        raise AssertionError(f"the key store was asked for {name!r}")


def _by_label(rows: list) -> dict:
    return {r.label: r for r in rows}


def _ws(text: str) -> str:
    return " ".join(text.split())


def test_jpki_roots_listed_across_stage_rollover_and_destroy(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    issuer = JpkiIssuer(sessionmaker(engine, expire_on_commit=False), MemoryKeyStore(), profile_for(PUBLIC),
                        clock=clock)
    view = JpkiCa(issuer.sessions, LockedKeyStore(), issuer.profile, clock)  # the registry alone
    assert list_roots(view) == []  # nothing yet, and nothing made by looking
    issuer.setup(KeyType.EC_P384)
    phone = provision(issuer)
    sign_cert = x509.load_der_x509_certificate(phone.certs["sign"])
    code = municipality_of(HOLDER).code

    (g1,) = list_roots(view, ("sign",))
    g1_auth = list_roots(view, ("auth",))[0]
    assert (g1.slot, g1.label, g1.state, g1.algorithm, g1.valid_certificates) == (
        "sign", "jpki-sign-root-g1", "issuing", "p384", 1)
    root = issuer.root("sign")
    assert (g1.serial, g1.not_after, g1.subject) == (
        root.serial_number, root.not_valid_after_utc, root.subject.rfc4514_string())
    assert g1.crls == (f"{PUBLIC}/crl/sign/{code}.crl?key_id={g1.key_id.hex()}",)
    assert g1.duties_end_at == sign_cert.not_valid_after_utc and g1.key_destroyed_at is None
    assert [(o.label, o.state) for o in g1.responders] == [("jpki-sign-root-g1-ocsp-1", "answering")]
    assert g1_auth.label == "jpki-auth-root-g1" and g1_auth.crls[0].startswith(f"{PUBLIC}/crl/auth/{code}.crl")
    json.dumps([r.to_json() for r in list_roots(view)])  # JSON as it is

    clock.at = t0 + dt.timedelta(days=1)
    issuer.stage("sign", KeyType.EC_P384)
    rows = _by_label(list_roots(view, ("sign",)))
    g2 = rows["jpki-sign-root-g2"]
    assert (rows["jpki-sign-root-g1"].state, g2.state, g2.responders, g2.crls, g2.valid_certificates) == (
        "issuing", "staged", (), (), 0)
    assert g2.created_at == clock.at and g2.to_json()["created_at"] == clock.at.isoformat()
    # the served CRL of each listed URL is the generation's own
    assert issuer.crl("sign", code, key_id=g1.key_id)

    issuer.rollover("sign")
    rows = _by_label(list_roots(view, ("sign",)))
    assert (rows["jpki-sign-root-g1"].state, rows["jpki-sign-root-g2"].state) == ("retired", "issuing")
    assert [o.state for o in rows["jpki-sign-root-g2"].responders] == ["answering"]
    assert rows["jpki-sign-root-g1"].valid_certificates == 1  # still valid, under the retired generation
    assert [r.state for r in list_roots(view, ("auth",))] == ["issuing"]  # the other slot as it was

    # years later: the retired generation's certificates have expired, its responder too; its
    # key goes, and so does its responder's; the issuing one's responder was renewed
    clock.at = sign_cert.not_valid_after_utc + dt.timedelta(days=1)
    issuer.ca.responder(issuer.ca.active(Purpose.SIGN))
    destroyed = issuer.destroy_key("jpki-sign-root-g1")
    issuer.destroy_key("jpki-sign-root-g1-ocsp-1")
    rows = _by_label(list_roots(view, ("sign",)))
    old = rows["jpki-sign-root-g1"]
    assert (old.state, old.valid_certificates, old.duties_end_at) == ("retired", 0, None)
    assert old.key_destroyed_at == destroyed.key_destroyed_at == clock.at
    assert [(o.state, o.key_destroyed_at) for o in old.responders] == [("expired", clock.at)]
    assert old.to_json()["key_destroyed_at"] == clock.at.isoformat()
    assert [o.state for o in rows["jpki-sign-root-g2"].responders] == ["expired", "answering"]
    engine.dispose()


def _token(tsa: TimeStampAuthority) -> bytes:
    return tsp.token_of_response(tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))


def test_tsa_roots_listed_across_stage_rollover_revocation_and_destroy(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    tsa = TimeStampAuthority(sessions, MemoryKeyStore(), clock=clock, crl_url=URL)
    view = TimeStampAuthority(sessions, LockedKeyStore(), clock=clock, crl_url=URL)  # the registry alone
    assert list_tsa_roots(view) == []
    with sessions() as s:
        assert not s.scalars(select(IssuerKey)).all()  # nothing made by looking
    _token(tsa)

    (g1,) = list_tsa_roots(view)
    root = tsa.root()
    assert (g1.label, g1.state, g1.serial, g1.not_after, g1.crl, g1.valid_units) == (
        "tsa-root-g1", "current", root.serial_number, root.not_valid_after_utc, URL, 1)
    assert g1.subject == "CN=mcred Time-Stamping Root,O=mcred lab,C=JP"
    (unit,) = g1.units
    assert (unit.label, unit.state, unit.revoked_at) == ("tsa-unit-1", "stamping", None)
    assert g1.duties_end_at == unit.not_after

    clock.at = t0 + dt.timedelta(days=1)
    staged = tsa.stage()
    rows = _by_label(list_tsa_roots(view))
    assert (rows["tsa-root-g1"].state, rows["tsa-root-g2"].state, rows["tsa-root-g2"].units) == (
        "current", "staged", ())
    assert rows["tsa-root-g2"].crl == URL.removesuffix(".crl") + "-g2.crl"
    assert rows["tsa-root-g2"].serial == staged.serial

    tsa.rollover()
    tsa.revoke_unit("tsa-unit-2", "keyCompromise")
    _token(tsa)  # a new unit takes over
    rows = _by_label(list_tsa_roots(view))
    assert (rows["tsa-root-g1"].state, rows["tsa-root-g2"].state) == ("retired", "current")
    assert [u.state for u in rows["tsa-root-g1"].units] == ["retired"]
    assert [(u.label, u.state, u.reason) for u in rows["tsa-root-g2"].units] == [
        ("tsa-unit-2", "revoked", "keyCompromise"), ("tsa-unit-3", "stamping", None)]
    assert rows["tsa-root-g2"].valid_units == 1 and rows["tsa-root-g1"].valid_units == 1

    # the retired root's unit has expired: its key goes, and the unit's
    clock.at = rows["tsa-root-g1"].units[0].not_after + dt.timedelta(days=1)
    tsa.destroy_key("tsa-unit-1")
    tsa.destroy_key("tsa-root-g1")
    old = _by_label(list_tsa_roots(view))["tsa-root-g1"]
    assert (old.state, old.valid_units, old.duties_end_at, old.key_destroyed_at) == ("retired", 0, None, clock.at)
    assert [(u.state, u.key_destroyed_at) for u in old.units] == [("expired", clock.at)]
    assert old.to_json()["units"][0]["key_destroyed_at"] == clock.at.isoformat()
    engine.dispose()


def test_the_commands_list_the_roots(home, tmp_path):
    ctx = Context.open(home)
    assert json.loads(run_cli("jpki", "root", "list", "--json")) == {"roots": []}
    assert "no JPKI root yet" in run_cli("jpki", "root", "list")
    assert json.loads(run_cli("tsa", "root", "list", "--json")) == {"roots": []}
    assert "no TSA root yet" in run_cli("tsa", "root", "list")
    with ctx.sessions() as s:
        assert not s.scalars(select(IssuerKey)).all()  # looking made nothing
    assert not ctx.keystore.labels()

    run_cli("jpki", "setup", "--key-type", "p384")
    run_cli("jpki", "stage", "--slot", "auth", "--key-type", "p384")
    listed = json.loads(run_cli("jpki", "root", "list", "--json"))["roots"]
    assert [(r["slot"], r["label"], r["state"]) for r in listed] == [
        ("sign", "jpki-sign-root-g1", "issuing"), ("auth", "jpki-auth-root-g1", "issuing"),
        ("auth", "jpki-auth-root-g2", "staged")]
    assert listed[2]["responders"] == [] and listed[0]["responders"][0]["state"] == "answering"
    assert set(listed[0]) == {"slot", "label", "algorithm", "key_id", "serial", "subject", "not_before",
                              "not_after", "state", "created_at", "key_destroyed_at", "valid_certificates",
                              "duties_end_at", "crls", "responders"}
    auth = json.loads(run_cli("jpki", "root", "list", "--slot", "auth", "--json"))["roots"]
    assert [r["label"] for r in auth] == ["jpki-auth-root-g1", "jpki-auth-root-g2"]
    text = _ws(run_cli("jpki", "root", "list", "--slot", "auth"))
    assert f"auth jpki-auth-root-g2 (p384) serial {auth[1]['serial']}" in text
    assert "staged" in text and "mcred jpki rollover --slot auth" in text
    assert "OCSP jpki-auth-root-g1-ocsp-1 serial" in text and "answering" in text
    assert "OCSP: no responder (made when the rollover starts it)" in text
    refused = json.loads(run_cli("jpki", "root", "list", "--slot", "both", "--json", code=2))
    assert "sign, auth or all" in refused["error"]

    (tmp_path / "doc.txt").write_bytes(CONTENT)
    run_cli("tsa", "stamp", str(tmp_path / "doc.txt"), "--out", str(tmp_path / "doc.tsr"))
    run_cli("tsa", "stage")
    roots = json.loads(run_cli("tsa", "root", "list", "--json"))["roots"]
    assert [(r["label"], r["state"], [u["state"] for u in r["units"]]) for r in roots] == [
        ("tsa-root-g1", "current", ["stamping"]), ("tsa-root-g2", "staged", [])]
    assert roots[1]["crl"] == f"{ctx.public_url}/tsa/root-g2.crl"
    text = _ws(run_cli("tsa", "root", "list"))
    assert f"tsa-root-g2 serial {roots[1]['serial']}" in text and "staged" in text
    assert f"unit tsa-unit-1 serial {roots[0]['units'][0]['serial']}" in text and "stamping" in text
    assert f"CRL {ctx.public_url}/tsa/root.crl" in text
    ctx.engine.dispose()


def test_the_routes_list_the_roots_for_the_operator_alone(home, db_url):
    from mcred.api_models import JpkiRoots, TsaRoots
    from mcred.jpki_flow import jpki_registry
    from mcred.service import create_app
    from mcred.timestamps import time_stamp_authority, tsa_registry

    ctx = Context.open(home, db_url)
    api = create_app(ctx, job_workers=1)
    try:
        with contextlib.closing(TestClient(api)) as client:
            checked = check_every_answer(client, api)
            tok = bearer(ctx.sessions, ["operator", "issuer", "reader", "tsm"])
            for route in ("/trust/roots/jpki", "/trust/roots/tsa"):
                assert client.get(route).status_code == 401
                for who in ("issuer", "reader", "tsm"):
                    r = client.get(route, headers=tok[who])
                    assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden", (route, who)
            op = tok["operator"]
            client.post("/trust/jpki-stage", json={"slot": "sign", "key_type": "p384"}, headers=op)
            r = client.get("/trust/roots/jpki", headers=op)
            assert r.status_code == 200, r.text
            listed = JpkiRoots.model_validate(r.json())
            assert [(g.slot, g.label, g.state) for g in listed.roots] == [
                ("sign", "jpki-sign-root-g1", "issuing"), ("sign", "jpki-sign-root-g2", "staged"),
                ("auth", "jpki-auth-root-g1", "issuing")]
            assert r.json() == {"roots": [g.to_json() for g in list_roots(jpki_registry(ctx))]}
            auth = client.get("/trust/roots/jpki", params={"slot": "auth"}, headers=op).json()["roots"]
            assert [g["label"] for g in auth] == ["jpki-auth-root-g1"]
            for bad in ({"slot": "both"}, {"slots": "auth"}):
                r = client.get("/trust/roots/jpki", params=bad, headers=op)
                assert r.status_code == 422 and r.json()["type"] == "/problems/validation", (bad, r.text)

            time_stamp_authority(ctx)  # the TSA's first root and unit
            client.post("/trust/tsa-stage", headers=op)
            r = client.get("/trust/roots/tsa", headers=op)
            assert r.status_code == 200, r.text
            roots = TsaRoots.model_validate(r.json())
            assert [(g.label, g.state, len(g.units)) for g in roots.roots] == [
                ("tsa-root-g1", "current", 1), ("tsa-root-g2", "staged", 0)]
            assert r.json() == {"roots": [g.to_json() for g in list_tsa_roots(tsa_registry(ctx))]}
            assert {"GET /trust/roots/jpki 200", "GET /trust/roots/jpki 401", "GET /trust/roots/jpki 403",
                    "GET /trust/roots/jpki 422", "GET /trust/roots/tsa 200", "GET /trust/roots/tsa 401",
                    "GET /trust/roots/tsa 403"} <= set(checked), checked
    finally:
        api.state.jobs.shutdown()
    ctx.engine.dispose()

