"""The user-authentication certificate linkage service (利用者証明用電子証明書の新旧紐付け,
issuer/jpki/linkage.py) and the relying party following it (reader.rp_watch's ``relink``):
a holder's user-authentication certificate is replaced (a new phone, then a renewal); the
issuer names, for each old serial, the newer certificates of the same holder and the one
valid now; the relying party's watch list follows its customer to the new certificate and
watches that one from then on. Over the live service too (``POST /jpki/linkage``, scope
reader) and from the CLI (``mcred jpki linkage``, ``mcred jpki watch relink``)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_issuer_jpki_support import live_installation, open_issuer, provision
from typer.testing import CliRunner

from issuer import revocation
from issuer.api.auth import create_token
from issuer.db import AuditEvent
from issuer.jpki import linkage
from mcred.cli.main import app as cli
from mcred.db import make_engine, migrate
from reader.rp_watch import RevocationWatch, WatchError


def _serial(der: bytes) -> str:
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def _replaced_twice(issuer):
    """A holder's phone replaced (the old one's certificates revoked as cessationOfOperation),
    then their card renewed (the second phone's superseded): three phones' worth of
    certificates, the last valid."""
    first = provision(issuer)
    second = provision(issuer, holder_id=first.holder_id)
    revocation.revoke(issuer.sessions, first.phone_id, "cessationOfOperation")
    third = provision(issuer, holder_id=first.holder_id)
    revocation.revoke(issuer.sessions, second.phone_id, "superseded")
    return first, second, third


def test_an_old_serial_leads_to_the_holders_newer_certificates(db_url):
    issuer = open_issuer(db_url)
    first, second, third = _replaced_twice(issuer)
    other = provision(issuer)
    s0, s1, s2 = (_serial(p.certs["auth"]) for p in (first, second, third))
    asked = [s0, s1.upper(), "0x" + s2, _serial(first.certs["sign"]), "abc", _serial(other.certs["auth"])]
    links = linkage.successors(issuer.sessions, asked, relying_party="みらい銀行", actor="token:rp")
    got = [link.to_dict() for link in links]
    assert [g["serial"] for g in got] == [s0, s1, s2, _serial(first.certs["sign"]), "abc",
                                          _serial(other.certs["auth"])]
    assert [(s["serial"], s["status"], s["reason"]) for s in got[0]["successors"]] == [
        (s1, "revoked", "cessationOfOperation"), (s2, "valid", None)]
    assert got[0]["current"] == s2
    assert base64.b64decode(got[0]["successors"][1]["certificate"]) == third.certs["auth"]
    assert [s["serial"] for s in got[1]["successors"]] == [s2] and got[1]["current"] == s2
    assert got[2]["found"] and got[2]["successors"] == [] and got[2]["current"] is None
    # a signing certificate carries the basic four data: followed only with consent
    for unknown in got[3:5]:
        assert not unknown["found"] and unknown["problem"] == "not a user-authentication certificate of this issuer"
    assert got[5]["found"] and got[5]["successors"] == []  # another holder's: not linked to this one

    with issuer.sessions() as s:
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "linkage.query")).all()
    assert [(a.actor, a.detail) for a in audit] == [
        ("token:rp", {"relying_party": "みらい銀行", "asked": 6, "linked": 2})]
    assert s0 not in json.dumps([a.detail for a in audit])  # which customers were asked about: not kept

    # death: nothing valid after it; far in the future the last one has expired
    revocation.revoke(issuer.sessions, third.phone_id, "affiliationChanged")
    dead = linkage.successors(issuer.sessions, [s0], relying_party="rp", actor="t")[0]
    assert dead.current is None and [s.reason for s in dead.successors] == ["cessationOfOperation",
                                                                           "affiliationChanged"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 11)
    fourth = provision(issuer, holder_id=first.holder_id)
    assert linkage.successors(issuer.sessions, [s0], relying_party="rp", actor="t")[0].current.serial == \
        _serial(fourth.certs["auth"])
    aged = linkage.successors(issuer.sessions, [s0], relying_party="rp", actor="t", now=later)[0]
    assert aged.successors[-1].status == "expired" and aged.current is None


@pytest.mark.parametrize(("serials", "why"), [
    ([], "no serial asked about"),
    (["1"] * (linkage.MAX_BATCH + 1), "at most 1000 a request"),
    (["12", "xyz"], "'xyz' is not a serial number"),
    (["f" * 41], "is not a serial number: is longer than 20 octets"),
    ([12], "12 is not text"),
])
def test_a_batch_that_cannot_be_answered_is_refused_whole(tmp_path, serials, why):
    issuer = open_issuer(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(linkage.LinkageRefused, match=why):
        linkage.successors(issuer.sessions, serials, relying_party="rp", actor="t")
    with issuer.sessions() as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "linkage.query")).all() == []


def test_the_api_body_takes_what_the_service_takes():
    """``POST /jpki/linkage``'s body model writes the service's serial length and batch bound
    out, and no pattern of its own: the service reads each serial, and its refusal names the
    value (a refusal of the body's validation never does)."""
    from mcred.api_routes import LinkageRequest

    field = LinkageRequest.model_fields["serials"]
    assert f"max_length={linkage.SERIAL_MAX}" in repr(field.annotation)
    assert "pattern" not in repr(field.annotation)
    assert any(getattr(m, "max_length", None) == linkage.MAX_BATCH for m in field.metadata)


def _spellings(serial: int) -> dict[str, str]:
    """One serial as relying parties copy it."""
    octets = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
    return {"registry": format(serial, "x"), "upper": format(serial, "X"), "0x": f"0x{serial:x}",
            "0X": f"0X{serial:X}", "openssl -serial": f"serial={octets.hex().upper()}",
            "openssl -text": ":".join(f"{b:02x}" for b in octets),
            "openssl -text, leading 00": "00:" + ":".join(f"{b:02x}" for b in octets),
            "spaced": " ".join(f"{b:02X}" for b in octets), "decimal": str(serial)}


def test_a_serial_is_taken_as_relying_parties_copy_it(tmp_path):
    """Relying parties copy serials from openssl (``serial=1A2B...``, ``1a:2b:...``), with
    ``0x``, or in decimal (Python's ``serial_number``, some certificate viewers): each
    spelling of a serial of this issuer's (159 random bits) is that serial; the service took
    plain hex only."""
    from issuer.jpki.ca import random_serial

    for serial in [random_serial() for _ in range(20)] + [(1 << 159) - 1, 10**40 + 7]:
        for how, text in _spellings(serial).items():
            assert linkage.normal_serial(text) == format(serial, "x"), (how, text)
    # 40 digits or fewer: hex, as the registry writes it and as it always was read here
    assert linkage.normal_serial("1234") == "1234"
    assert linkage.normal_serial("9" * 40) == "9" * 40


@pytest.mark.parametrize(("bad", "why"), [
    ("1a:2g", "'1a:2g' is not a serial number: is not hexadecimal"),
    ("-5", "'-5' is not a serial number"),
    ("0", "'0' is not a serial number"),
    ("0x", "'0x' is not a serial number: has no hexadecimal digits"),
    ("1" * 50, "is longer than 20 octets"),  # 50 decimal digits: past 2^160 too
    ("1a;2b", "'1a;2b' is not a serial number: is not hexadecimal"),
    ("1a\x002b", "'1a\\x002b' is not a serial number"),  # a control character: named escaped
    ("0x" + "f" * 41, "is longer than 20 octets"),
    ("1" * 81, f"is longer than {linkage.SERIAL_MAX} characters"),
])
def test_a_serial_of_no_spelling_is_refused_naming_it(tmp_path, bad, why):
    issuer = open_issuer(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(linkage.LinkageRefused, match=re.escape(why)):
        linkage.successors(issuer.sessions, ["1a", bad], relying_party="rp", actor="t")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(serials=st.lists(st.one_of(st.text(max_size=44), st.from_regex(r"(0x)?[0-9a-fA-F]{1,40}", fullmatch=True)),
                        max_size=8))
def test_any_batch_is_answered_or_refused_with_the_reason(tmp_path_factory, serials):
    issuer = _fuzz_issuer(tmp_path_factory)
    try:
        links = linkage.successors(issuer.sessions, serials, relying_party="rp", actor="t")
    except linkage.LinkageRefused as exc:
        assert str(exc)
        return
    assert len(links) == len(serials) and all(not link.found for link in links)


_FUZZ: dict = {}


def _fuzz_issuer(factory):
    if "issuer" not in _FUZZ:
        _FUZZ["issuer"] = open_issuer(f"sqlite:///{factory.mktemp('fuzz') / 'r.db'}")
    return _FUZZ["issuer"]


# --- the relying party follows ------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with live_installation(home) as (ctx, issuer, url):
        tokens = {name: create_token(ctx.sessions, [scope], name)[1]
                  for name, scope in (("みらい銀行", "reader"), ("back-office", "issuer"))}
        yield {"home": home, "url": url, "issuer": issuer, "ctx": ctx, "tokens": tokens}


def _watch(db_url: str, issuer) -> RevocationWatch:
    engine = make_engine(db_url)
    migrate(engine, "reader@head")
    return RevocationWatch(engine, lambda: [*issuer.roots("sign"), *issuer.roots("auth")])


def _local(issuer):
    def ask(serials):
        return linkage.answer(issuer.sessions, serials, relying_party="rp", actor="test")["links"]
    return ask


def test_the_watch_follows_its_customer_to_the_new_certificate(live, db_url):
    """A bank watches its customer's login certificate; the customer moves to a new phone; the
    sweep sees the old one revoked; relink finds the new one, watches it under the same
    account, and the next sweep judges it good. Asked again, nothing: the link is kept."""
    issuer = live["issuer"]
    old = provision(issuer)
    watch = _watch(db_url, issuer)
    watch.add("acct-1", old.certs["auth"])
    watch.add("acct-1", old.certs["sign"])  # a signing certificate is not followed this way
    assert watch.relink(_local(issuer)) == []  # nothing replaced yet: nothing asked
    watch.sweep()
    new = provision(issuer, holder_id=old.holder_id)
    revocation.revoke(issuer.sessions, old.phone_id, "cessationOfOperation")
    assert {(c.purpose, c.after) for c in watch.sweep().changes} == {("auth", "revoked"), ("sign", "revoked")}

    s_old, s_new = _serial(old.certs["auth"]), _serial(new.certs["auth"])
    found = watch.relink(_local(issuer))
    assert [r.to_dict() for r in found] == [{"ref": "acct-1", "serial": s_old, "outcome": "linked",
                                             "successor": s_new, "problem": None}]
    entries = {w.serial: w for w in watch.entries("acct-1")}
    assert entries[s_old].successor == s_new and entries[s_old].linked_at is not None
    assert entries[s_new].status == "unchecked" and entries[s_new].purpose == "auth"
    assert [e.source for e in watch.events("acct-1") if e.serial == s_new] == [f"linked from {s_old}"]
    assert watch.relink(_local(issuer)) == []
    report = watch.sweep()
    assert [(c.serial, c.after) for c in report.changes] == [(s_new, "good")]


def test_two_relinks_racing_watch_each_successor_once(live, db_url):
    """Two relying-party processes relinking the same list at once: each successor is watched
    once, its 'linked from' event written once, and every old row linked, whichever process
    got there first (a unique-key collision falls back to one row at a time)."""
    issuer = live["issuer"]
    watch = _watch(db_url, issuer)
    news = {}
    for n in range(6):
        old = provision(issuer)
        news[f"acct-r{n}"] = _serial(provision(issuer, holder_id=old.holder_id).certs["auth"])
        revocation.revoke(issuer.sessions, old.phone_id, "cessationOfOperation")
        watch.add(f"acct-r{n}", old.certs["auth"])
    watch.sweep()
    other = RevocationWatch(watch.engine, lambda: [*issuer.roots("sign"), *issuer.roots("auth")])
    barrier, results, errors = threading.Barrier(2), [], []

    def run(w):
        barrier.wait()
        try:
            results.append(w.relink(_local(issuer)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in (watch, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2
    assert {(r.ref, r.successor) for found in results for r in found if r.outcome == "linked"} <= set(news.items())
    for ref, new in news.items():
        entries = {w.serial: w for w in watch.entries(ref)}
        assert new in entries and len(entries) == 2
        assert next(w for w in entries.values() if w.serial != new).successor == new
        assert [e.source for e in watch.events(ref) if e.serial == new] == [
            next(e.source for e in watch.events(ref) if e.source.startswith("linked from"))]
    assert watch.relink(_local(issuer)) == []


def test_an_answer_that_does_not_fit_links_nothing(live, tmp_path):
    """The linkage answer is checked before anything is written: a certificate that is not a
    user-authentication certificate, not the serial named, not base64, or no certificate;
    an answer of the wrong length is an error. The honest answer afterwards links it."""
    issuer = live["issuer"]
    old = provision(issuer)
    new = provision(issuer, holder_id=old.holder_id)
    revocation.revoke(issuer.sessions, old.phone_id, "cessationOfOperation")
    watch = _watch(f"sqlite:///{tmp_path / 'rp.db'}", issuer)
    watch.add("acct-2", old.certs["auth"])
    watch.sweep()
    honest = _local(issuer)

    def forged(change):
        def ask(serials):
            links = honest(serials)
            current = next(s for s in links[0]["successors"] if s["serial"] == links[0]["current"])
            change(links[0], current)
            return links
        return ask

    sign_der = base64.b64encode(new.certs["sign"]).decode()
    cases = {
        "not the user-authentication certificate": lambda link, cur: cur.update(certificate=sign_der),
        "does not parse": lambda link, cur: cur.update(certificate="not base64!"),
        "is not about serial": lambda link, cur: link.update(serial="1234"),
    }
    for why, change in cases.items():
        (got,) = watch.relink(forged(change))
        assert got.outcome == "refused" and why in got.problem, got
    wrong_serial = forged(lambda link, cur: cur.update(
        certificate=base64.b64encode(provision(issuer).certs["auth"]).decode()))
    assert "not the user-authentication certificate" in watch.relink(wrong_serial)[0].problem
    no_current = forged(lambda link, cur: link.update(current=None))
    assert watch.relink(no_current)[0].outcome == "no valid successor"
    with pytest.raises(WatchError, match="answered 0 links for 1 serials"):
        watch.relink(lambda serials: [])
    assert len(watch.entries("acct-2")) == 1 and watch.entries("acct-2")[0].successor is None
    assert watch.relink(honest)[0].outcome == "linked"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["serial", "found", "current", "successors",
                                                              "certificate", "problem"]), inner, max_size=6),
                           max_leaves=12))
def test_any_linkage_answer_is_judged_never_crashes(live, tmp_path_factory, answer):
    """Whatever the linkage service answers, relink reports an outcome or a WatchError."""
    watch = _fuzz_watch(live, tmp_path_factory)
    try:
        found = watch.relink(lambda serials: [answer] * len(serials) if isinstance(answer, dict) else answer)
    except WatchError:
        return
    assert all(r.outcome in ("refused", "unknown to the issuer", "no valid successor") for r in found)
    assert all(r.problem is None or (isinstance(r.problem, str) and len(r.problem) <= 400) for r in found)


def _fuzz_watch(live, factory):
    if "watch" not in _FUZZ:
        issuer = live["issuer"]
        old = provision(issuer)
        revocation.revoke(issuer.sessions, old.phone_id, "cessationOfOperation")
        watch = _watch(f"sqlite:///{factory.mktemp('fuzzrp') / 'rp.db'}", issuer)
        watch.add("acct-fuzz", old.certs["auth"])
        watch.sweep()
        _FUZZ["watch"] = watch
    return _FUZZ["watch"]


def test_over_http_and_from_the_cli(live, tmp_path):
    """``POST /jpki/linkage`` takes a reader's token (not an issuer's, not none) and a bounded
    batch of hex serials; ``mcred jpki linkage`` asks it (or this installation) and ``mcred
    jpki watch relink --issuer`` follows a customer through it."""
    import httpx

    issuer, url, tokens = live["issuer"], live["url"], live["tokens"]
    old = provision(issuer)
    new = provision(issuer, holder_id=old.holder_id)
    revocation.revoke(issuer.sessions, old.phone_id, "superseded")
    s_old, s_new = _serial(old.certs["auth"]), _serial(new.certs["auth"])

    from documented import check_every_answer

    from mcred.service import create_app

    client = httpx.Client(timeout=10)
    checked = check_every_answer(client, create_app(live["ctx"]))  # each answer as the document says

    def post(body, token=tokens["みらい銀行"]):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post(f"{url}/jpki/linkage", json=body, headers=headers)

    ok = post({"serials": [s_old]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["links"][0]["current"] == s_new and "as_of" in ok.json()
    assert post({"serials": [s_old]}, tokens["back-office"]).status_code == 403
    assert post({"serials": [s_old]}, None).status_code == 401
    for bad in ({"serials": []}, {"serials": ["zz"]}, {"serials": ["1"] * 1001}, {"serials": s_old},
                {"serials": [s_old], "more": 1}, {}):
        answer = post(bad)
        assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json"), bad
    # every spelling a relying party copies is the serial; another is refused naming it
    spelled = _spellings(int(s_old, 16))
    ok = post({"serials": list(spelled.values())})
    assert ok.status_code == 200, ok.text
    assert [(link["serial"], link["current"]) for link in ok.json()["links"]] == [(s_old, s_new)] * len(spelled)
    bad = post({"serials": [spelled["openssl -text"], "1a:2b:zz"]})
    assert bad.status_code == 422 and bad.json()["type"].endswith("/problems/validation"), bad.text
    assert "'1a:2b:zz' is not a serial number" in bad.json()["detail"], bad.text
    assert {"POST /jpki/linkage 200", "POST /jpki/linkage 422"} <= set(checked)

    runner = CliRunner()
    got = runner.invoke(cli, ["jpki", "linkage", s_old, "--issuer", url, "--token", tokens["みらい銀行"], "--json"])
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)[0]["current"] == s_new
    local = runner.invoke(cli, ["jpki", "linkage", spelled["openssl -text"], spelled["decimal"], "--json"])
    assert local.exit_code == 0 and [link["current"] for link in json.loads(local.output)] == [s_new] * 2, local.output
    table = runner.invoke(cli, ["jpki", "linkage", s_old, _serial(old.certs["sign"])], env={"COLUMNS": "250"})
    assert table.exit_code == 1 and s_new[:12] in table.output and "not a user-authentication" in table.output

    db = f"sqlite:///{tmp_path / 'bank.db'}"
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in [*issuer.roots("sign"), *issuer.roots("auth")]))
    cert = tmp_path / "old.der"
    cert.write_bytes(old.certs["auth"])
    common = ["--db", db, "--roots", str(roots)]
    assert runner.invoke(cli, ["jpki", "watch", "add", "acct-9", "--certificate", str(cert), *common]).exit_code == 0
    assert runner.invoke(cli, ["jpki", "watch", "sweep", *common]).exit_code == 0
    relinked = runner.invoke(cli, ["jpki", "watch", "relink", "--issuer", url, "--token", tokens["みらい銀行"],
                                   "--json", *common])
    assert relinked.exit_code == 0, relinked.output
    assert json.loads(relinked.output) == [{"ref": "acct-9", "serial": s_old, "outcome": "linked",
                                            "successor": s_new, "problem": None}]
    listed = runner.invoke(cli, ["jpki", "watch", "list", *common], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and s_new[:12] in listed.output


@pytest.mark.parametrize(("body", "linkage_says", "relink_says"), [
    ({"nothing": 1}, "holds no list of links", "holds no list of links"),
    ({"links": "x"}, "holds no list of links", "holds no list of links"),
    ({"links": [{"serial": "1", "found": True, "successors": "x"}]}, "is not an object with a list of successors",
     None),
    ({"links": [7]}, "is not an object with a list of successors", None),
])
def test_an_issuer_answering_nonsense_is_a_clear_failure(live, tmp_path, body, linkage_says, relink_says):
    """``mcred jpki linkage --issuer`` and ``mcred jpki watch relink --issuer`` against a
    service that answers 200 with JSON of another shape: exit 1 with what is wrong, never a
    traceback; relink judges each link it can read (a link it cannot is refused, the row
    stays unlinked)."""
    from fastapi import FastAPI
    from test_present_http import Server, free_port

    fake = FastAPI()
    fake.post("/jpki/linkage")(lambda: body)
    issuer = live["issuer"]
    old = provision(issuer)
    revocation.revoke(issuer.sessions, old.phone_id, "cessationOfOperation")
    db = f"sqlite:///{tmp_path / 'bank.db'}"
    watch = _watch(db, issuer)
    watch.add("acct-n", old.certs["auth"])
    watch.sweep()
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in [*issuer.roots("sign"), *issuer.roots("auth")]))
    runner = CliRunner()
    with Server(fake, free_port()) as server:
        got = runner.invoke(cli, ["jpki", "linkage", "1f", "--issuer", server.url, "--token", "t"],
                            env={"COLUMNS": "250"})
        assert got.exit_code == 1 and isinstance(got.exception, SystemExit | None), got.output
        assert linkage_says in got.output
        relinked = runner.invoke(cli, ["jpki", "watch", "relink", "--issuer", server.url, "--token", "t",
                                       "--db", db, "--roots", str(roots), "--json"], env={"COLUMNS": "250"})
    assert relinked.exit_code == 1 and isinstance(relinked.exception, SystemExit | None), relinked.output
    if relink_says:
        assert relink_says in relinked.output
    else:
        assert json.loads(relinked.output)[0]["outcome"] == "refused"
    assert watch.entries("acct-n")[0].successor is None and len(watch.entries("acct-n")) == 1
