"""The JPKI relying party's revocation watch (reader.rp_watch, specs/presentation.md section
17): customers' certificates on a list in the relying party's own database, swept against
the live issuer service's CRLs and OCSP responder (``mcred serve``'s app on a real port), each
change of status recorded once with what it means (death or moving abroad, renewal, loss)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_issuer_jpki_support import OTHER_TOWN, live_installation, open_issuer, provision
from test_present_http import free_port
from typer.testing import CliRunner

from issuer import revocation
from mcred.cli.main import app as cli
from mcred.db import _alembic_config, make_engine, migrate
from reader.rp_watch import RevocationWatch, WatchError


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """An installation with three provisioned phones, its service live on a free port."""
    home = tmp_path_factory.mktemp("home")
    with live_installation(home) as (_ctx, issuer, url):
        phones = {"tokyo": provision(issuer), "osaka": provision(issuer, OTHER_TOWN),
                  "rsa": provision(issuer, algorithm="rsa2048")}
        yield {"home": home, "url": url, "issuer": issuer, "phones": phones}


def _roots(issuer) -> list[x509.Certificate]:
    return [*issuer.roots("sign"), *issuer.roots("auth")]


def _watch(db_url: str, issuer, **kwargs) -> RevocationWatch:
    engine = make_engine(db_url)
    migrate(engine, "reader@head")
    return RevocationWatch(engine, lambda: _roots(issuer), **kwargs)


def _changes(report) -> dict[tuple[str, str], tuple[str | None, str, str | None]]:
    return {(c.ref, c.purpose): (c.before, c.after, c.reason) for c in report.changes}


def test_a_sweep_tells_death_loss_and_its_end_once_each(live, db_url):
    """Three customers watched (signing and user-authentication certificates); the issuer
    revokes one for a death (affiliationChanged) and holds another (lost phone): one CRL
    sweep reports exactly those changes with their meaning, a second sweep nothing new, and
    the hold lifted comes back as good. The events keep each change once."""
    issuer = live["issuer"]
    phones = {"tokyo": provision(issuer), "osaka": provision(issuer, OTHER_TOWN)}
    watch = _watch(db_url, issuer)
    for ref, phone in (("policy-1", phones["tokyo"]), ("policy-2", phones["osaka"])):
        for slot in ("sign", "auth"):
            entry, added = watch.add(ref, phone.certs[slot])
            assert added and entry.status == "unchecked" and entry.purpose == slot
    assert watch.add("policy-1", phones["tokyo"].certs["sign"])[1] is False  # idempotent
    assert watch.counts() == {"unchecked": 4}

    first = watch.sweep()
    assert first.complete and first.asked == 4
    assert _changes(first) == {(r, s): ("unchecked", "good", None)
                               for r in ("policy-1", "policy-2") for s in ("sign", "auth")}
    assert [s.certificates for s in first.sources] and all(s.problem is None for s in first.sources)
    # both partitions (Tokyo and Osaka) of both purposes: four CRLs, each fetched once
    assert len(first.sources) == 4 and sum(s.certificates for s in first.sources) == 4
    assert watch.sweep().changes == []

    revocation.revoke(issuer.sessions, phones["tokyo"].phone_id, "affiliationChanged")
    revocation.hold(issuer.sessions, phones["osaka"].phone_id, "sign")
    report = watch.sweep()
    assert report.complete
    assert _changes(report) == {("policy-1", "sign"): ("good", "revoked", "affiliationChanged"),
                                ("policy-1", "auth"): ("good", "revoked", "affiliationChanged"),
                                ("policy-2", "sign"): ("good", "hold", "certificateHold")}
    death = next(c for c in report.changes if c.ref == "policy-1")
    assert death.meaning == "death, or moving abroad (the two cannot be told apart)"
    assert death.revoked_at is not None and death.source.startswith("CRL http://127.0.0.1:")
    assert report.counts == {"good": 1, "hold": 1, "revoked": 2}

    revocation.release(issuer.sessions, phones["osaka"].phone_id, "sign")
    # one customer's: revoked, yet asked again (a revocation may be amended), nothing new
    only = watch.sweep(refs=["policy-1"])
    assert only.asked == 2 and only.complete and only.changes == []
    report = watch.sweep()
    assert report.asked == 4 and report.complete
    assert _changes(report) == {("policy-2", "sign"): ("hold", "good", None)}
    assert report.changes[0].meaning == "hold lifted: valid again"

    events = watch.events("policy-2")
    assert [(e.before, e.after) for e in events if e.purpose == "sign"] == [
        (None, "unchecked"), ("unchecked", "good"), ("good", "hold"), ("hold", "good")]
    assert watch.remove("policy-1") == 2 and watch.entries("policy-1") == []
    assert len(watch.events("policy-1")) == 6  # what was learnt stays on record


def test_ocsp_sweeps_agree_with_the_crl(live, tmp_path):
    """Swept by OCSP (one nonced request per certificate), the statuses are the CRL's."""
    issuer, phones = live["issuer"], live["phones"]
    by_crl, by_ocsp = (_watch(f"sqlite:///{tmp_path / n}", issuer) for n in ("crl.db", "ocsp.db"))
    for watch in (by_crl, by_ocsp):
        for name, phone in phones.items():
            watch.add(name, phone.certs["sign"])
    crl, ocsp = by_crl.sweep("crl"), by_ocsp.sweep("ocsp")
    assert crl.complete and ocsp.complete, (crl.unjudged, ocsp.unjudged)
    strip = [(w.ref, w.status, w.reason) for w in by_crl.entries()]
    assert strip == [(w.ref, w.status, w.reason) for w in by_ocsp.entries()]
    assert {c.source.split()[0] for c in ocsp.changes} == {"OCSP"}
    with pytest.raises(WatchError, match="unknown sweep 'both'"):
        by_crl.sweep("both")


def test_what_cannot_be_judged_keeps_its_status_and_says_why(live, tmp_path):
    """A partition whose CRL is unreachable, and a root no longer trusted: those certificates
    keep their last status and each is reported with the reason; the rest are judged."""
    issuer, phones = live["issuer"], live["phones"]
    dead = open_issuer(f"sqlite:///{tmp_path / 'dead.sqlite3'}", f"http://127.0.0.1:{free_port()}")
    stranded = provision(dead)
    trusted = [*_roots(issuer), *dead.roots("sign")]
    engine = make_engine(f"sqlite:///{tmp_path / 'rp.db'}")
    migrate(engine, "reader@head")
    watch = RevocationWatch(engine, lambda: trusted)
    watch.add("here", phones["osaka"].certs["sign"])
    watch.add("there", stranded.certs["sign"])
    report = watch.sweep()
    assert not report.complete
    assert [(u.ref, u.problem.split(" unreachable")[0][:7]) for u in report.unjudged] == [("there", "CRL at ")]
    assert {w.ref: w.status for w in watch.entries()} == {"here": "good", "there": "unchecked"}
    assert "unreachable" in watch.entries("there")[0].problem
    trusted[:] = _roots(issuer)  # the other root withdrawn
    report = watch.sweep("ocsp")
    assert [u.ref for u in report.unjudged] == ["there"]
    assert "no longer trusted" in report.unjudged[0].problem


def test_only_trusted_current_jpki_certificates_go_on_the_list(live, tmp_path):
    issuer, phones = live["issuer"], live["phones"]
    watch = _watch(f"sqlite:///{tmp_path / 'rp.db'}", issuer)
    other = open_issuer(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    with pytest.raises(WatchError, match="not a certificate of a trusted JPKI root"):
        watch.add("x", provision(other).certs["sign"])
    with pytest.raises(WatchError, match="not an X.509 certificate"):
        watch.add("x", b"\x30\x03junk")
    for bad in ("", "x" * 129, "line\nbreak"):
        with pytest.raises(WatchError, match="1 to 128 printable characters"):
            watch.add(bad, phones["tokyo"].certs["sign"])
    pem = x509.load_der_x509_certificate(phones["rsa"].certs["auth"]).public_bytes(serialization.Encoding.PEM)
    assert watch.add("pem", pem)[0].purpose == "auth"
    later = RevocationWatch(watch.engine, lambda: _roots(issuer),
                            clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 11))
    with pytest.raises(WatchError, match="expired at .*nothing left to watch"):
        later.add("late", phones["tokyo"].certs["sign"])
    # ... and one watched until it expires becomes "expired", final, without a fetch
    report = later.sweep()
    assert _changes(report) == {("pem", "auth"): ("unchecked", "expired", None)}
    assert report.sources == [] and later.sweep().asked == 0
    assert watch.entries()[0].meaning.startswith("expired")
    with pytest.raises(WatchError, match="not hexadecimal"):
        watch.remove("pem", serial="zz")


def test_two_sweeps_racing_record_each_change_once(live, db_url):
    """Two processes sweeping the same list at once (two cron jobs): every status change is
    one conditional UPDATE, so each is recorded by exactly one of them."""
    issuer, phones = live["issuer"], live["phones"]
    watch = _watch(db_url, issuer)
    for name, phone in phones.items():
        for slot in ("sign", "auth"):
            watch.add(name, phone.certs[slot])
    other = RevocationWatch(watch.engine, lambda: _roots(issuer))
    reports = []
    threads = [threading.Thread(target=lambda w=w: reports.append(w.sweep())) for w in (watch, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2 and all(r.complete for r in reports)
    assert sum(len(r.changes) for r in reports) == 6
    assert len([e for e in watch.events() if e.after != "unchecked"]) == 6


def test_the_cli_watches_sweeps_and_lists(live, tmp_path):
    """``mcred jpki watch add|sweep|list|events|remove`` on the installation's database and
    roots; ``sweep`` exits 0 when every certificate was judged."""
    phones, home = live["phones"], live["home"]
    runner = CliRunner()
    cert = tmp_path / "c.pem"
    cert.write_bytes(x509.load_der_x509_certificate(phones["osaka"].certs["sign"])
                     .public_bytes(serialization.Encoding.PEM))
    db = f"sqlite:///{tmp_path / 'rp.db'}"

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, ["jpki", "watch", *args], env={"MCRED_HOME": str(home)})
        assert result.exit_code == code, result.output
        return result.output

    assert "added" in run("add", "cust-9", "--certificate", str(cert), "--db", db)
    assert "already watched" in run("add", "cust-9", "--certificate", str(cert), "--db", db)
    out = json.loads(run("sweep", "--db", db, "--json"))
    assert out["complete"] and [c["after"] for c in out["changes"]] == ["good"]
    listed = json.loads(run("list", "--db", db, "--json"))
    assert [(e["ref"], e["status"]) for e in listed] == [("cust-9", "good")]
    assert "cust-9" in run("list", "--db", db) and "good" in run("events", "--db", db)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"junk")
    assert "not an X.509 certificate" in run("add", "x", "--certificate", str(bad), "--db", db, code=2)
    assert "removed 1" in run("remove", "cust-9", "--db", db)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_certificates_and_references_are_a_watch_error_and_write_nothing(live, tmp_path_factory, data):
    """Bytes from anywhere (junk, a real certificate with one byte changed or cut short) and
    any reference: added when valid, else a WatchError naming why; never another exception,
    and a refusal writes no row and no event."""
    issuer, phones = live["issuer"], live["phones"]
    watch = _WATCHES.get("fuzz") or _WATCHES.setdefault(
        "fuzz", _watch(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'rp.db'}", issuer))
    real = phones["osaka"].certs["sign"]
    blob = data.draw(st.one_of(
        st.binary(max_size=300),
        st.builds(lambda i, b: real[:i] + bytes([b]) + real[i + 1:],
                  st.integers(0, len(real) - 1), st.integers(0, 255)),
        st.builds(lambda n: real[:n], st.integers(0, len(real)))))
    ref = data.draw(st.one_of(st.just("fuzz"), st.text(max_size=140)))
    before = (len(watch.entries()), len(watch.events()))
    try:
        entry, _added = watch.add(ref, blob)
    except WatchError as exc:
        assert str(exc)
        assert (len(watch.entries()), len(watch.events())) == before
    else:
        assert entry.serial == format(x509.load_der_x509_certificate(real).serial_number, "x")


_WATCHES: dict[str, RevocationWatch] = {}


def test_the_cli_watches_the_signer_of_a_valid_consent_only(live, tmp_path):
    """``add REF --signature APP.p7s --content APP``: the customer's signed consent is
    verified in full (chain, policy, validity, revocation) before its signer is watched; a
    consent that does not verify watches nothing (exit 2, the failed checks named)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols.jpki.cms import build_detached_signature

    issuer = live["issuer"]
    phone = provision(issuer)
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    consent = "保険契約 第123号: 失効情報の照会に同意します".encode()
    p7s = build_detached_signature(content=consent, certificate=cert,
                                   sign=lambda d: phone.keys["sign"].sign(d, ec.ECDSA(hashes.SHA384())),
                                   signing_time=dt.datetime.now(dt.UTC))
    (tmp_path / "consent.txt").write_bytes(consent)
    (tmp_path / "consent.p7s").write_bytes(p7s)
    (tmp_path / "other.txt").write_bytes(consent + b"!")
    db = f"sqlite:///{tmp_path / 'rp.db'}"
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(cli, ["jpki", "watch", *args, "--db", db, "--json"],
                             env={"MCRED_HOME": str(live["home"])})

    refused = run("add", "policy-123", "--signature", str(tmp_path / "consent.p7s"),
                  "--content", str(tmp_path / "other.txt"))
    assert refused.exit_code == 2 and "signature: " in json.loads(refused.output)["error"]
    added = run("add", "policy-123", "--signature", str(tmp_path / "consent.p7s"),
                "--content", str(tmp_path / "consent.txt"))
    assert added.exit_code == 0, added.output
    out = json.loads(added.output)
    assert out["added"] and out["serial"] == format(cert.serial_number, "x") and out["purpose"] == "sign"
    revocation.revoke(issuer.sessions, phone.phone_id, "superseded", "sign")
    swept = json.loads(run("sweep").output)
    (change,) = swept["changes"]
    assert (change["before"], change["after"], change["reason"]) == ("unchecked", "revoked", "superseded")
    assert change["meaning"].startswith("certificate renewed: a basic four datum")
    assert run("add", "x", "--signature", str(tmp_path / "consent.p7s")).exit_code == 2  # no --content


def test_a_long_list_is_swept_in_chunks_with_each_crl_fetched_once(live, tmp_path, monkeypatch):
    """The list is read CHUNK rows at a time; a CRL met again in a later chunk is not fetched
    again, and its source counts every certificate it judged."""
    import reader.rp_watch as rp_watch

    issuer, phones = live["issuer"], live["phones"]
    watch = _watch(f"sqlite:///{tmp_path / 'rp.db'}", issuer)
    for name, phone in phones.items():
        for slot in ("sign", "auth"):
            watch.add(name, phone.certs[slot])
    fetched: list[str] = []
    fetch = watch._fetch_crl
    monkeypatch.setattr(watch, "_fetch_crl", lambda url: fetched.append(url) or fetch(url))
    monkeypatch.setattr(rp_watch, "CHUNK", 2)
    report = watch.sweep()
    assert report.complete and report.asked == 6 and len(report.changes) == 6
    assert len(fetched) == len(set(fetched)) == len(report.sources) == 4  # Tokyo and Osaka, both purposes
    assert sum(s.certificates for s in report.sources) == 6


def test_the_same_certificate_added_at_once_is_added_once(live, db_url):
    """Two processes putting the same customer's certificate on the list at the same moment:
    one adds it, the other gets it back as already watched (no error), one 'added' event."""
    issuer, phones = live["issuer"], live["phones"]
    watch = _watch(db_url, issuer)
    barrier = threading.Barrier(4)
    results: list = []

    def add() -> None:
        barrier.wait()
        results.append(watch.add("policy-9", phones["osaka"].certs["auth"])[1])

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False, False, False, True]
    assert [e.after for e in watch.events("policy-9")] == ["unchecked"]


def test_the_cli_imports_a_csv_and_sweeps_one_customer(live, tmp_path):
    """``mcred jpki watch import FILE.csv``: every good line added, each bad one refused with
    its reason while the others go on (exit 1); ``sweep --ref`` asks about one customer."""
    phones, home = live["phones"], live["home"]
    runner = CliRunner()
    for name in ("tokyo", "osaka"):
        (tmp_path / f"{name}.pem").write_bytes(x509.load_der_x509_certificate(phones[name].certs["sign"])
                                              .public_bytes(serialization.Encoding.PEM))
    (tmp_path / "junk.pem").write_bytes(b"junk")
    (tmp_path / "customers.csv").write_text(
        "ref,certificate\nA-1,tokyo.pem\nA-2,osaka.pem\nA-2,osaka.pem\nA-3,missing.pem\nA-4,junk.pem\n,tokyo.pem\n",
        encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'rp.db'}"

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, ["jpki", "watch", *args, "--db", db], env={"MCRED_HOME": str(home)})
        assert result.exit_code == code, result.output
        return result.output

    out = json.loads(run("import", str(tmp_path / "customers.csv"), "--json", code=1))
    assert [(r["line"], r["result"]) for r in out] == [(2, "added"), (3, "added"), (4, "already watched"),
                                                        (5, "refused"), (6, "refused"), (7, "refused")]
    assert "No such file" in out[3]["reason"] and "not an X.509 certificate" in out[4]["reason"]
    assert "printable characters" in out[5]["reason"]
    # the same file again: nothing new, the same refusals
    assert "0 added, 3 already watched, 3 refused" in run("import", str(tmp_path / "customers.csv"), code=1)
    swept = json.loads(run("sweep", "--ref", "A-2", "--json"))
    assert swept["asked"] == 1 and [c["ref"] for c in swept["changes"]] == ["A-2"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,file\nx,y\n", encoding="utf-8")
    assert "header row must name ref and certificate" in run("import", str(bad), code=2)


def _lost_then_compromised(issuer, phone) -> tuple[dt.datetime, dt.datetime]:
    """The phone's signing certificate revoked cessationOfOperation (the phone lost), to be
    amended: its revocation time and a compromise time two hours before, to the second (as
    a CRL entry and an OCSP answer say it)."""
    lost = dt.datetime.now(dt.UTC).replace(microsecond=0)
    revocation.revoke(issuer.sessions, phone.phone_id, "cessationOfOperation", "sign", now=lost)
    return lost, lost - dt.timedelta(hours=2)


@pytest.mark.parametrize("via", ["crl", "ocsp"])
def test_a_lost_phone_found_compromised_is_one_change_with_its_invalidity_date(live, db_url, via):
    """The issuer amends a revocation (issuer.revocation._amend): a lost phone's signing
    certificate, watched as revoked cessationOfOperation, is revoked keyCompromise with an
    invalidity date. A sweep (by CRL, by OCSP) still asks about the revoked certificate and
    records that once, with the date and what it means for the signatures archived; asked
    again, nothing more. A keyCompromise stays watched: an earlier date still to come is one
    more change."""
    issuer = live["issuer"]
    phone = provision(issuer)
    watch = _watch(db_url, issuer)
    watch.add("contract-7", phone.certs["sign"])
    assert _changes(watch.sweep(via)) == {("contract-7", "sign"): ("unchecked", "good", None)}
    lost, stolen = _lost_then_compromised(issuer, phone)
    report = watch.sweep(via)
    assert _changes(report) == {("contract-7", "sign"): ("good", "revoked", "cessationOfOperation")}
    assert report.changes[0].invalid_since is None and report.changes[0].to_dict()["invalid_since"] is None
    assert watch.sweep(via).changes == []

    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", invalid_since=stolen)
    report = watch.sweep(via)
    assert report.complete and report.asked == 1
    [change] = report.changes
    assert (change.before, change.after, change.reason, change.invalid_since) == (
        "revoked", "revoked", "keyCompromise", stolen)
    assert change.revoked_at == lost  # the revocation's time stays
    assert change.meaning == (f"revocation amended: key compromised since {stolen.isoformat()}: "
                              "signatures made after it are not to be trusted")
    assert change.to_dict()["invalid_since"] == stolen.isoformat()
    [entry] = watch.entries("contract-7")
    assert (entry.status, entry.reason, entry.invalid_since) == ("revoked", "keyCompromise", stolen)
    assert entry.to_dict()["invalid_since"] == stolen.isoformat()
    assert entry.meaning.startswith(f"key compromised since {stolen.isoformat()}")
    again = watch.sweep(via)
    assert again.asked == 1 and again.complete and again.changes == []

    earlier = stolen - dt.timedelta(days=1)
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", invalid_since=earlier)
    assert [(c.reason, c.invalid_since) for c in watch.sweep(via).changes] == [("keyCompromise", earlier)]
    assert watch.sweep(via).changes == []
    events = watch.events("contract-7")
    assert [(e.before, e.after, e.reason, e.invalid_since) for e in events] == [
        (None, "unchecked", None, None), ("unchecked", "good", None, None),
        ("good", "revoked", "cessationOfOperation", None), ("revoked", "revoked", "keyCompromise", stolen),
        ("revoked", "revoked", "keyCompromise", earlier)]


def test_two_sweeps_racing_record_an_amended_revocation_once(live, db_url):
    """Two sweeps at once after the issuer amended a revocation: the UPDATE is conditional on
    the reason and invalidity date read, so one of them records the change."""
    issuer = live["issuer"]
    phone = provision(issuer)
    watch = _watch(db_url, issuer)
    watch.add("contract-8", phone.certs["sign"])
    _lost, stolen = _lost_then_compromised(issuer, phone)
    watch.sweep()
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", invalid_since=stolen)
    other = RevocationWatch(watch.engine, lambda: _roots(issuer))
    reports = []
    threads = [threading.Thread(target=lambda w=w, v=v: reports.append(w.sweep(v)))
               for w, v in ((watch, "crl"), (other, "ocsp"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2 and all(r.complete for r in reports)
    assert [(c.reason, c.invalid_since) for r in reports for c in r.changes] == [("keyCompromise", stolen)]
    assert [e.reason for e in watch.events("contract-8") if e.before == "revoked"] == ["keyCompromise"]


def test_a_revocation_is_never_undone_by_the_evidence(live, tmp_path):
    """A certificate the list holds as revoked that a CRL or OCSP answer calls good (a broken
    or rolled-back publication) is reported unjudged and stays revoked: nothing is recorded."""
    issuer = live["issuer"]
    watch = _watch(f"sqlite:///{tmp_path / 'rp.db'}", issuer)
    watch.add("contract-9", live["phones"]["tokyo"].certs["auth"])
    watch.sweep()
    with watch.engine.begin() as conn:
        conn.execute(sa.text("UPDATE rp_watch SET status = 'revoked', reason = 'cessationOfOperation'"))
    for via in ("crl", "ocsp"):
        report = watch.sweep(via)
        assert report.changes == [] and [u.ref for u in report.unjudged] == ["contract-9"]
        assert "never undone" in report.unjudged[0].problem
    [entry] = watch.entries()
    assert (entry.status, entry.reason) == ("revoked", "cessationOfOperation")
    assert [e.after for e in watch.events("contract-9")] == ["unchecked", "good"]


def test_the_cli_shows_an_amended_revocations_invalidity_date(live, tmp_path):
    """``mcred jpki watch sweep|list|events``: the amended revocation's invalidity date in the
    text (``invalid since``) and as ``invalid_since`` in the JSON, next to the keys there were."""
    issuer, home = live["issuer"], live["home"]
    phone = provision(issuer)
    cert = tmp_path / "c.der"
    cert.write_bytes(phone.certs["sign"])
    db = f"sqlite:///{tmp_path / 'rp.db'}"
    runner = CliRunner()

    def run(*args: str) -> str:
        # a wide console: the listings' tables fold a header ("invalid since") at 80 columns
        result = runner.invoke(cli, ["jpki", "watch", *args, "--db", db],
                               env={"MCRED_HOME": str(home), "COLUMNS": "240"})
        assert result.exit_code == 0, result.output
        return result.output

    run("add", "contract-10", "--certificate", str(cert))
    _lost, stolen = _lost_then_compromised(issuer, phone)
    assert json.loads(run("sweep", "--json"))["changes"][0]["invalid_since"] is None
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "sign", invalid_since=stolen)
    text = " ".join(run("sweep").split())  # as read, whatever width the console wrapped it at
    assert f"invalid since {stolen:%Y-%m-%d %H:%M}" in text and "key compromised since" in text
    assert json.loads(run("sweep", "--json"))["changes"] == []
    [listed] = json.loads(run("list", "--json"))
    assert (listed["reason"], listed["invalid_since"], listed["status"]) == (
        "keyCompromise", stolen.isoformat(), "revoked")
    events = json.loads(run("events", "--json"))
    assert [(e["before"], e["after"], e["reason"], e["invalid_since"]) for e in events[-2:]] == [
        ("unchecked", "revoked", "cessationOfOperation", None), ("revoked", "revoked", "keyCompromise", stolen.isoformat())]
    assert {"meaning", "source", "seen_at", "revoked_at"} <= set(events[-1])
    assert "invalid since" in run("list") and "invalid since" in run("events")


def test_a_watch_list_from_before_invalidity_dates_is_upgraded_with_its_rows(db_url):
    """r0007 adds invalid_since to rp_watch and rp_watch_events: a list made at r0006 keeps
    its rows and events, with no invalidity date (the next sweep asks the revoked ones again);
    the downgrade drops the columns."""
    from alembic import command

    engine = make_engine(db_url)
    try:
        command.upgrade(_alembic_config(engine), "r0006")
        assert "invalid_since" not in {c["name"] for c in sa.inspect(engine).get_columns("rp_watch")}
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO rp_watch (ref, purpose, serial, issuer_key_id, certificate, not_after, dp_names, "
                "status, reason, revoked_at, added_at) VALUES ('old', 'sign', 'a1', 'k', :c, '2030-01-01 00:00:00', "
                "'', 'revoked', 'cessationOfOperation', '2026-12-01 00:00:00', '2026-11-01 00:00:00')"),
                {"c": b"\x30"})
            conn.execute(sa.text(
                "INSERT INTO rp_watch_events (ref, serial, purpose, seen_at, before, after, reason, source) "
                "VALUES ('old', 'a1', 'sign', '2026-12-01 01:00:00', 'good', 'revoked', 'cessationOfOperation', "
                "'CRL http://x')"))
        migrate(engine, "reader@head")
        watch = RevocationWatch(engine, [])
        [entry] = watch.entries()
        assert (entry.ref, entry.status, entry.reason, entry.invalid_since) == (
            "old", "revoked", "cessationOfOperation", None)
        assert entry.to_dict()["invalid_since"] is None
        [event] = watch.events()
        assert (event.after, event.invalid_since) == ("revoked", None)
        command.downgrade(_alembic_config(engine), "r0006")
        for table in ("rp_watch", "rp_watch_events"):
            assert "invalid_since" not in {c["name"] for c in sa.inspect(engine).get_columns(table)}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM rp_watch")).scalar_one() == 1
    finally:
        engine.dispose()
