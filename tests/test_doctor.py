"""``mcred doctor``: each component found or not, what it enables and how to install it;
exit 1 only when the installation itself (database, key store) is unusable."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mcred.cli.main import app


def _run(*args: str) -> tuple[int, dict]:
    r = CliRunner().invoke(app, ["doctor", "--json", *args])
    return r.exit_code, json.loads(r.output)


def test_doctor_reports_each_component(home):
    code, report = _run()
    assert code == 0 and report["ready"] and report["home"] == str(home)
    found = {f["name"]: f for f in report["findings"]}
    assert list(found)[:5] == ["database", "public URL", "issuer key store", "TSM master key", "reader session key"]
    assert found["public URL"]["ok"] and found["public URL"]["detail"] == "http://127.0.0.1:8470"
    assert "none yet" in found["reader session key"]["detail"]
    assert found["database"]["ok"] and found["database"]["detail"] == "sqlite, schema current"
    assert found["TSM secure elements"]["ok"]
    assert found["TSM secure elements"]["detail"] == "0 on record, 0 quarantined, 0 unfinished job(s)"
    assert {"PostgreSQL", "PC/SC bridge and OpenSC", "HSM (PKCS#11)", "@auth0/mdl interop", "@owf/mdoc interop",
            "@sd-jwt/jwt-status-list interop", "@hpke/core interop", "jose interop", "yubikit SCP03 host",
            "openssl", "Bluetooth LE host (bumble)", "tshark", "PDF signatures (pyHanko)"} <= set(found)
    for f in report["findings"]:
        assert f["enables"] and (f["ok"] or f["fix"]), f  # anything missing says how to get it


def test_doctor_names_what_is_missing_and_fails_for_an_unusable_key_store(home, monkeypatch):
    monkeypatch.setenv("MCRED_PKCS11_MODULE", "/nonexistent/libhsm.so")
    code, report = _run()
    hsm = next(f for f in report["findings"] if f["name"] == "HSM (PKCS#11)")
    assert code == 0 and not hsm["ok"] and "/nonexistent/libhsm.so" in hsm["detail"] and hsm["fix"]
    monkeypatch.setenv("MCRED_KEYSTORE", "vault")
    code, report = _run()
    keys = next(f for f in report["findings"] if f["name"] == "issuer key store")
    assert code == 1 and not report["ready"] and "MCRED_KEYSTORE='vault'" in keys["detail"]
    monkeypatch.delenv("MCRED_KEYSTORE")
    monkeypatch.setenv("MCRED_TSM_MASTER_KEY", "vault")
    code, report = _run()
    master = next(f for f in report["findings"] if f["name"] == "TSM master key")
    assert code == 1 and not report["ready"] and "MCRED_TSM_MASTER_KEY='vault'" in master["detail"]
    assert master["fix"]
    monkeypatch.delenv("MCRED_TSM_MASTER_KEY")
    monkeypatch.setenv("MCRED_PUBLIC_URL", "issuer.example")  # no scheme: no URL in a credential works
    code, report = _run()
    url = next(f for f in report["findings"] if f["name"] == "public URL")
    assert code == 1 and not report["ready"] and "http or https" in url["detail"] and url["fix"]
    monkeypatch.delenv("MCRED_PUBLIC_URL")
    (home / "reader").mkdir(parents=True)
    (home / "reader" / "session.key").write_text("00" * 8 + "\n")
    code, report = _run()
    key = next(f for f in report["findings"] if f["name"] == "reader session key")
    assert code == 1 and not report["ready"] and "needs 32" in key["detail"] and key["fix"]


def test_the_typescript_peer_is_found_from_a_checkout_even_when_installed_elsewhere(monkeypatch, tmp_path):
    """A plain ``pip install .`` puts the package in site-packages, with no interop/ beside
    it: the doctor then looks above the working directory, and says so when there is none."""
    from pathlib import Path

    from mcred import doctor

    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(doctor, "__file__", str(tmp_path / "site-packages" / "mcred" / "doctor.py"))
    monkeypatch.chdir(checkout / "specs")
    for folder, *_ in doctor.NODE_PEERS:
        assert doctor._interop(folder) == checkout / "interop" / folder
    monkeypatch.chdir(tmp_path)
    assert doctor._interop("auth0-mdl") is None
    finding = doctor._node_peer(*doctor.NODE_PEERS[1])
    assert not finding.ok and "no source checkout" in finding.detail and finding.name == "@owf/mdoc interop"


def test_a_quarantined_se_is_named_with_how_to_clear_it_and_the_installation_stays_ready(home):
    """Every job on a quarantined SE stops until an operator clears it: doctor names it and
    the command, without calling the installation unusable."""
    from mcred.context import Context
    from tsm import records

    ctx = Context.open(home)
    records.load_or_create(ctx.engine, "ph-quarantined")
    records.update_se(ctx.engine, "ph-quarantined", state="suspect")
    records.load_or_create(ctx.engine, "ph-fine")
    ctx.engine.dispose()
    code, report = _run()
    se = next(f for f in report["findings"] if f["name"] == "TSM secure elements")
    assert code == 0 and report["ready"]
    assert not se["ok"] and se["detail"] == "2 on record, 1 quarantined (ph-quarantined), 0 unfinished job(s)"
    assert "mcred tsm clear-quarantine" in se["fix"]


def test_doctor_says_how_to_get_the_bluetooth_host(home, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bumble", None)  # an installation without the ble extra
    code, report = _run()
    ble = next(f for f in report["findings"] if f["name"] == "Bluetooth LE host (bumble)")
    assert code == 0 and not ble["ok"] and ble["fix"] == "pip install '.[ble]'"


def test_doctor_says_how_to_get_pdf_signatures(home, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyhanko", None)  # an installation without the pdf extra
    code, report = _run()
    pdf = next(f for f in report["findings"] if f["name"] == "PDF signatures (pyHanko)")
    assert code == 0 and not pdf["ok"] and pdf["fix"] == "pip install '.[pdf]'"


def test_doctor_reads_the_tsa_and_names_a_unit_without_a_crl(home):
    """The TSA finding reads the registry only: not made yet; a unit naming its root's CRL;
    a unit from before units named one, with the command that replaces it."""
    from issuer.tsa import TimeStampAuthority
    from mcred.context import Context
    from protocols import tsp

    def finding() -> dict:
        return next(f for f in _run()[1]["findings"] if f["name"] == "time-stamping authority")

    assert finding()["detail"] == "not made yet: its root and unit are made on first use"
    ctx = Context.open(home)
    old = TimeStampAuthority(ctx.sessions, ctx.keystore)  # as before this session: no CRL named
    old.respond(tsp.build_request(bytes(32)))
    f = finding()
    assert not f["ok"] and "naming no CRL; 0 unit(s) revoked, 1 token(s) stamped" in f["detail"]
    assert f["fix"].startswith("relying parties cannot learn of tsa-unit-1's revocation: mcred tsa revoke tsa-unit-1")
    new = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url="http://127.0.0.1:8470/tsa/root.crl")
    new.revoke_unit("tsa-unit-1", "superseded")
    new.respond(tsp.build_request(bytes(32)))
    f = finding()
    assert f["ok"] and f["detail"].startswith("tsa-unit-2 valid until ")
    assert "its revocation at http://127.0.0.1:8470/tsa/root.crl; 1 unit(s) revoked, 2 token(s) stamped" in f["detail"]
    ctx.engine.dispose()


def test_doctor_names_a_data_directory_or_database_others_may_read(tmp_path, monkeypatch):
    """A home made before mcred made it 0700 (or under a wide umask) keeps its mode: doctor
    says so and how to narrow it, without calling the installation unusable; one made by
    mcred now is its owner's alone."""
    home = tmp_path / "made-by-mcred"
    monkeypatch.setenv("MCRED_HOME", str(home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    code, report = _run()
    access = next(f for f in report["findings"] if f["name"] == "data directory access")
    assert code == 0 and access["ok"] and access["detail"] == "owner only"
    home.chmod(0o755)
    (home / "mcred.sqlite3").chmod(0o644)
    code, report = _run()
    access = next(f for f in report["findings"] if f["name"] == "data directory access")
    assert code == 0 and report["ready"] and not access["ok"]
    assert access["detail"] == f"others may read: {home} is 0755; {home / 'mcred.sqlite3'} is 0644"
    assert access["fix"] == f"chmod 700 {home}; chmod 600 {home / 'mcred.sqlite3'}*"


def test_the_tsm_finding_counts_ses_and_unfinished_jobs_without_reading_them(db_url, home, monkeypatch):
    """It read every unfinished job whole, its results included (after an outage, at 5,000
    of them 1 s and 93 MB), and the id of every quarantined SE, to show five."""
    import datetime as dt

    from sqlalchemy import Engine, event

    from mcred.context import Context
    from mcred.doctor import _secure_elements
    from tsm.db import JobRow, SecureElementRow, transaction

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    ctx = Context.open(home)
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with transaction(ctx.engine) as conn:
        conn.execute(SecureElementRow.__table__.insert(), [
            {"se_id": f"ph-{i:02d}", "kvn": 0x30, "state": "suspect" if i % 3 == 0 else "active",
             "created_at": at, "updated_at": at} for i in range(20)])
        conn.execute(JobRow.__table__.insert(), [
            {"id": f"{i:032x}", "se_id": f"ph-{i % 20:02d}", "kind": "provision", "state": state, "steps": ["a"],
             "next_step": 0, "input": {}, "results": {"bulk": "ab" * 1000}, "actor": "test", "attempts": 1,
             "created_at": at, "updated_at": at}
            for i, state in enumerate(["done", "interrupted", "failed", "abandoned", "running", "pending"] * 3)])
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        finding = _secure_elements(ctx)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert finding.detail == ("20 on record, 7 quarantined (ph-00, ph-03, ph-06, ph-09, ph-12, ...), "
                              "12 unfinished job(s)"), finding.detail
    assert not any("results" in s for s in seen), seen
    ctx.engine.dispose()


def test_doctor_piped_is_one_line_per_component_and_what_a_missing_one_needs(home, monkeypatch):
    """Out of a terminal (a pipe, a CI log) the table, as wide as its longest cell in every
    column, came out hundreds of columns wide and padded; the plain form is one line per
    component, with what a missing one enables and how to get it beneath, nothing padded."""
    import mcred.doctor as doctor

    findings = [doctor.Finding("database", True, "sqlite, schema current", "everything"),
                doctor.Finding("HSM (PKCS#11)", False, "python-pkcs11 missing", "issuer keys in an HSM",
                               "pip install 'mcred[hsm]'")]
    monkeypatch.setattr(doctor, "diagnose", lambda ctx: findings)
    monkeypatch.delenv("COLUMNS", raising=False)
    r = CliRunner().invoke(app, ["doctor"])
    assert r.exit_code == 1, r.output  # two findings: both are the installation's own
    assert r.output.splitlines() == [
        f"mcred at {home}",
        "ok  database       sqlite, schema current",
        "--  HSM (PKCS#11)  python-pkcs11 missing",
        "    enables: issuer keys in an HSM",
        "    to get it: pip install 'mcred[hsm]'",
    ]


def test_doctor_warns_before_the_iaca_stops_issuance_and_names_the_rollover(home):
    """The mdoc IACA finding reads the registry only: not made yet; the current generation's
    end; a warning from 180 days before issuance stops (the IACA's last 90 days), naming the
    commands that stage the next IACA and roll it over; quiet again after the rollover."""
    import datetime as dt

    from mcred.context import Context
    from mcred.doctor import _mdoc_iaca
    from mcred.mdoc_flow import mdoc_service

    def finding() -> dict:
        return next(f for f in _run()[1]["findings"] if f["name"] == "mdoc IACA")

    assert finding()["detail"].startswith("not made yet")
    ctx = Context.open(home)
    iaca = mdoc_service(ctx).iaca_certificate()
    f = finding()
    assert f["ok"] and f["detail"] == f"mdoc-iaca-1 valid until {iaca.not_valid_after_utc.date().isoformat()}; 1 generation(s)"
    stops = iaca.not_valid_after_utc - dt.timedelta(days=90)
    assert _mdoc_iaca(ctx, stops - dt.timedelta(days=181)).ok
    soon = _mdoc_iaca(ctx, stops - dt.timedelta(days=179))
    assert not soon.ok and f"issuance stops on {stops.date().isoformat()}" in soon.detail
    # publish before use: stage the next IACA, hand out the bundle, then roll over
    assert soon.fix.startswith("mcred mdoc iaca stage") and soon.fix.endswith("mcred mdoc iaca rollover")
    assert "issuance has stopped" in _mdoc_iaca(ctx, stops + dt.timedelta(days=1)).detail
    mdoc_service(ctx).rollover_iaca()
    f = finding()
    assert f["ok"] and f["detail"].startswith("mdoc-iaca-2 valid until ") and "2 generation(s)" in f["detail"]
    ctx.engine.dispose()


def test_doctor_reads_the_installations_own_rollover_margin(home):
    """The IACA finding counts back from the end by the margin the installation's mdoc PKI
    has (it counted the default 90 days, warning a month early on a 30-day installation)."""
    import dataclasses
    import datetime as dt

    from mcred.context import Context
    from mcred.doctor import _mdoc_iaca
    from mcred.mdoc_flow import mdoc_service

    ctx = Context.open(home)
    svc = mdoc_service(ctx)
    end = svc.iaca_certificate().not_valid_after_utc
    default = svc.pki.config
    try:
        svc.pki.config = dataclasses.replace(default, rollover_margin=dt.timedelta(days=30))
        assert _mdoc_iaca(ctx, end - dt.timedelta(days=240)).ok  # 210 days before issuance stops
        late = _mdoc_iaca(ctx, end - dt.timedelta(days=200))
        assert not late.ok and f"stops on {(end - dt.timedelta(days=30)).date().isoformat()}" in late.detail
    finally:
        svc.pki.config = default


def test_doctor_names_a_staged_iaca_only_while_it_can_be_started(home):
    """A staged IACA in its own last 90 days can be started no more (no document signer is
    made under it; MdocPki.staged_iaca): the doctor had still asked to start it, which the
    rollover refused; it asks to stage a new one then."""
    import datetime as dt

    from mcred.context import Context
    from mcred.doctor import _mdoc_iaca
    from mcred.mdoc_flow import mdoc_service

    ctx = Context.open(home)
    svc = mdoc_service(ctx)
    svc.iaca_certificate()
    staged = svc.stage_iaca().certificate
    end = staged.not_valid_after_utc
    startable = _mdoc_iaca(ctx, end - dt.timedelta(days=91))  # the first IACA ended: issuance stopped
    assert "mdoc-iaca-2 staged" in startable.detail and startable.fix.startswith("start mdoc-iaca-2")
    late = _mdoc_iaca(ctx, end - dt.timedelta(days=89))
    assert "staged" not in late.detail and late.fix.startswith("mcred mdoc iaca stage"), late
    ctx.engine.dispose()
