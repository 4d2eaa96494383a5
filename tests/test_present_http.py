"""End to end over HTTP (issue 6 "Done when"): a phone provisioned by ``mcred.provision``
(issuer + TSM over SCP03) presents to the reader service running in uvicorn on 127.0.0.1;
the reader fetches the issuer's Status List Token over HTTP from the issuer's own routes
(another uvicorn). VALID with exactly the consented items; a hold and a revocation at the
issuer reach the reader once its cached list is past the TTL (If-None-Match revalidation)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from documented import assert_documented, json_response
from fastapi import FastAPI

import wallet_sim
from issuer.api import problems
from issuer.api.mdoc import routers as issuer_mdoc_routers
from issuer.revocation import hold, release, revoke
from mcred.context import Context
from mcred.present import open_wallet, present_over_http, reader_app, reader_pipeline
from mcred.provision import mdoc_service, parse_holder, provision
from reader.http import ReaderService
from reader.session import RequestSpec
from reader.trust import TrustStore
from wallet_sim.consent import RulesConsent

HOLDER = {"family_name": "佐藤", "given_name": "一郎", "family_name_kana": "さとう",
          "given_name_kana": "いちろう", "birth_date": "1985-07-15", "sex": 1,
          "address": "大阪府大阪市北区1-1", "prefecture": "大阪府", "municipality": "大阪市",
          "family_name_roman": "SATO", "given_name_roman": "ICHIRO"}
OTHER_HOLDER = {**HOLDER, "family_name": "鈴木", "given_name": "花子", "family_name_kana": "すずき",
                "given_name_kana": "はなこ", "birth_date": "1990-02-03", "sex": 2,
                "family_name_roman": "SUZUKI", "given_name_roman": "HANAKO"}
DOCTYPE = NS = "jp.mcred.mynumber.cardsub.1"
ISO = "org.iso.18013.5.1"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "given_name": False, "birth_date": False,
                                     "resident_address": True, "age_over_20": False},
                                ISO: {"age_over_18": False}})
CONSENT = RulesConsent.from_mapping({"documents": {DOCTYPE: {NS: ["family_name", "given_name", "age_over_20",
                                                                   "resident_address"],
                                                              ISO: "*"}},
                                     "refuse_intent_to_retain": True})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer_when_up(proc, get, what: str, timeout: float = 60.0) -> httpx.Response:
    """The first 200 answer of ``get()`` from a server ``proc`` (a ``subprocess.Popen``) is
    starting; fails with the process's stderr if it exits, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"{what} did not answer within {timeout:g} s"
        try:
            answer = get()
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


class Server:
    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(5)


class ReaderClock:
    """The reader's injectable clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@contextlib.contextmanager
def installation_env(home: Path, issuer_port: int):
    """The environment of an installation in ``home`` (SQLite) whose public URL is
    ``issuer_port`` on this machine, SE images written without fsync, while inside; yields
    the MonkeyPatch."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCRED_HOME", str(home))
        mp.setenv("MCRED_PUBLIC_URL", f"http://127.0.0.1:{issuer_port}")
        mp.delenv("MCRED_DATABASE_URL", raising=False)
        mp.setattr(os, "fsync", lambda fd: None)
        yield mp


@contextlib.contextmanager
def provisioned_issuer(home: Path, *, mdoc_batch: int):
    """A data directory ``home`` with one phone provisioned (P-384, ``mdoc_batch`` mdocs) by
    an issuer whose public URL is a free local port, and its mdoc routes served there (the
    status lists a reader fetches, each answer held to those routes' OpenAPI document, 304
    and its ETag included): yields ``(ctx, phone, service)`` while that runs."""
    from documented import check_every_served_answer

    issuer_port = free_port()
    with installation_env(home, issuer_port) as mp:
        ctx = Context.open(home)
        phone = wallet_sim.create_phone(home)
        provision(ctx, phone, parse_holder(HOLDER), key_type="p384", mdoc_batch=mdoc_batch,
                  pin="1234", password="ABCD1234")
        service = mdoc_service(ctx)
        issuer_app = FastAPI()
        for r in issuer_mdoc_routers(lambda: service):
            issuer_app.include_router(r)
        problems.install(issuer_app)  # refusals as `mcred serve` answers them
        failures: list[str] = []
        with Server(issuer_app, issuer_port) as served:
            check_every_served_answer(mp, {served.url: issuer_app}, failures)
            yield ctx, phone, service
        assert not failures, failures


@contextlib.contextmanager
def provisioned_files(home: Path, *, mdoc_batch: int):
    """:func:`provisioned_issuer`, and beside it what a reader and a phone on the command
    line take: the IACA (PEM) and consent rules that release everything. Yields
    ``{"home", "phone", "iaca", "consent"}``."""
    import json

    from cryptography.hazmat.primitives import serialization

    with provisioned_issuer(home, mdoc_batch=mdoc_batch) as (_ctx, phone, service):
        iaca = home / "iaca.pem"
        iaca.write_bytes(service.iaca_certificate().public_bytes(serialization.Encoding.PEM))
        consent = home / "consent.json"
        consent.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
        yield {"home": home, "phone": phone, "iaca": iaca, "consent": consent}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with provisioned_issuer(home, mdoc_batch=2) as (ctx, phone, service):
        trust = TrustStore()
        trust.add(service.iaca_certificate())
        clock = ReaderClock()
        pipeline = reader_pipeline(trust=trust, clock=clock, require_status=True)
        reader = ReaderService(pipeline, [REQUEST])
        app = reader_app(reader)
        with Server(app, free_port()) as rs:
            yield {"ctx": ctx, "home": home, "phone": phone, "reader_url": rs.url,
                   "pipeline": pipeline, "clock": clock, "app": app}


def present(world, phone=None):
    w = open_wallet(phone or world["phone"], world["home"], CONSENT)
    return present_over_http(w, world["reader_url"])


def checks(result):
    return {c["name"]: c for c in result["checks"]}


def test_provisioned_phone_presents_over_http_valid_with_exactly_the_consented_items(world):
    out = present(world)
    assert out.valid, [c for c in out.result["checks"] if not c["passed"]]
    (doc,) = out.result["documents"]
    assert doc["docType"] == DOCTYPE
    # the verdict GET /sessions/{id}/result answered is the MdocVerdict the document declares
    assert_documented(world["app"], "GET", "/sessions/{sid}/result", json_response(out.result))
    # consented: family_name, given_name, age_over_20 (resident_address refused: the reader
    # means to retain it and the rules refuse retention); birth_date not consented; ISO "*"
    assert doc["elements"] == {NS: {"family_name": "佐藤", "given_name": "一郎", "age_over_20": True},
                               ISO: {"age_over_18": True}}
    c = checks(out.result)
    assert c["status_list_signature"]["passed"] and c["revocation_status"]["passed"]
    assert "VALID" in c["revocation_status"]["reason"]
    assert c["device_authentication"]["passed"] and c["ds_profile"]["passed"]
    response = out.wallet_events[-2]
    assert response.kind == "response"
    assert response.refused == {NS: frozenset({"birth_date", "resident_address"})}


def test_each_presentation_takes_another_mso_of_the_batch(world):
    slots = [next(e.slot for e in present(world).wallet_events if e.kind == "response") for _ in range(2)]
    assert sorted(slots) == [0, 1]


def test_hold_then_revocation_at_the_issuer_reach_the_reader_after_the_ttl(world):
    ctx, pipeline, clock = world["ctx"], world["pipeline"], world["clock"]
    # a phone of its own (another holder: one phone per person), so that the other tests of
    # this module find theirs valid in any order
    phone = wallet_sim.create_phone(world["home"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)
        provision(ctx, phone, parse_holder(OTHER_HOLDER), key_type="p384", mdoc_batch=2,
                  pin="1234", password="ABCD1234")
    assert present(world, phone).valid
    hold(ctx.sessions, phone, "mdoc")
    assert present(world, phone).valid  # the reader's copy is still within its ttl
    clock.offset += dt.timedelta(seconds=301)
    out = present(world, phone)
    assert {n for n, c in checks(out.result).items() if not c["passed"]} == {"revocation_status"}
    assert "SUSPENDED" in checks(out.result)["revocation_status"]["reason"]
    release(ctx.sessions, phone, "mdoc")
    clock.offset += dt.timedelta(seconds=301)
    assert present(world, phone).valid
    revoke(ctx.sessions, phone, "cessationOfOperation", "mdoc")
    clock.offset += dt.timedelta(seconds=301)
    out = present(world, phone)
    assert not out.valid and "revoked" in checks(out.result)["revocation_status"]["reason"]
    assert pipeline.status.fetches >= 3
    assert present(world).valid  # the module's phone: untouched
