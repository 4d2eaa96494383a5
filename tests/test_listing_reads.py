"""Listings of everything an installation holds read only what they show, a batch at a time:
their memory does not grow with each row's bulk (a job's results, a credential's body)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, event
from typer.testing import CliRunner

from mcred.cli.main import app
from tsm.db import JobRow, transaction
from tsm.jobs import job_lines

#: what a provisioning job's results hold: its certificates and MSOs (some 20 kB of JSON)
BULK = {"certificates": ["ab" * 5000, "cd" * 5000]}


def _jobs(engine: Engine, n: int) -> list[str]:
    ids = [f"{i:032x}" for i in range(n)]
    with transaction(engine) as conn:
        conn.execute(JobRow.__table__.insert(), [
            {"id": jid, "se_id": f"phone-{i % 3}", "kind": "provision", "state": "done" if i % 2 else "failed",
             "steps": ["open", "install", "close"], "next_step": 3 if i % 2 else 1, "input": {"phone_id": "x"},
             "results": BULK, "actor": "test", "attempts": 1, "error": None if i % 2 else "lost answer"}
            for i, jid in enumerate(ids)])
    return ids


def _statements(run) -> list[str]:  # noqa: ANN001
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return [s for s in seen if "FROM tsm_jobs" in s]


def test_job_lines_read_no_jobs_input_or_results(engine):
    ids = _jobs(engine, 7)
    out: list = []
    [statement] = _statements(lambda: out.extend(job_lines(engine)))
    assert "results" not in statement and "input" not in statement and "sealed_secrets" not in statement
    assert [j.id for j in out] == ids
    assert out[0].current_step == "install" and out[0].error == "lost answer"
    assert out[1].current_step is None
    assert [j.id for j in job_lines(engine, "phone-1", unfinished=True)] == [ids[4]]
    assert [j.id for j in job_lines(engine, limit=2, offset=3)] == ids[3:5]


def test_mcred_tsm_jobs_lists_every_job_as_before_without_their_results(home: Path, db_url: str, monkeypatch):
    """``mcred tsm jobs`` loaded every job whole, results included, before printing the first:
    at 20,840 jobs on PostgreSQL 1.1 GB of memory and 12 s."""
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    engine = Context.open().engine
    ids = _jobs(engine, 5)
    runner = CliRunner()
    answers: list = []
    statements = _statements(lambda: answers.append(runner.invoke(app, ["tsm", "jobs", "--json"])))
    assert statements and all("results" not in s for s in statements)
    r = answers[0]
    assert r.exit_code == 0, r.output
    from sqlalchemy import select

    from tsm.db import JobRow

    with engine.connect() as conn:  # each job's times as the registry keeps them (aware UTC)
        times = {row.id: (row.created_at.isoformat(), row.updated_at.isoformat())
                 for row in conn.execute(select(JobRow.id, JobRow.created_at, JobRow.updated_at))}
    assert all(t.endswith("+00:00") for pair in times.values() for t in pair), times
    assert r.output == json.dumps([
        {"id": jid, "phone": f"phone-{i % 3}", "phone_id": f"phone-{i % 3}", "kind": "provision",
         "state": "done" if i % 2 else "failed", "next_step": None if i % 2 else "install",
         "steps_done": 3 if i % 2 else 1, "steps": 3, "attempts": 1, "error": None if i % 2 else "lost answer",
         "created_at": times[jid][0], "updated_at": times[jid][1]}
        for i, jid in enumerate(ids)], ensure_ascii=False, indent=2) + "\n"
    text = runner.invoke(app, ["tsm", "jobs", "--phone", "phone-0"]).output.splitlines()
    assert text == [f"{ids[0]}  phone-0  provision failed 1/3 next install  since {times[ids[0]][1][:19]}Z",
                    "    lost answer", f"{ids[3]}  phone-0  provision done 3/3  since {times[ids[3]][1][:19]}Z"]
    assert runner.invoke(app, ["tsm", "jobs", "--json", "--phone", "nobody"]).output == "[]\n"
    assert runner.invoke(app, ["tsm", "jobs", "--phone", "nobody"]).output == "no job on nobody\n"



def _certificate(key) -> bytes:  # noqa: ANN001
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "listing")])
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_mcred_credential_list_reads_no_mdoc_body_and_lists_as_before(home: Path, db_url: str, monkeypatch):
    """``mcred credential list`` loaded every credential whole, each mdoc's IssuerSigned
    included, before printing the first: at 62,520 credentials on PostgreSQL 836 MB of
    memory and 13.4 s."""
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from sqlalchemy.orm import sessionmaker

    from issuer.db import Credential, Holder, Phone
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    engine = Context.open().engine
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    p384 = _certificate(ec.generate_private_key(ec.SECP384R1()))
    rsa2048 = _certificate(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with sessionmaker(engine).begin() as s:
        s.add(Holder(id="h" * 32, data={}, card_number="1" * 16, card_expiry=dt.date(2035, 1, 1)))
        s.flush()
        s.add(Phone(id="phone-1", holder_id="h" * 32))
        s.flush()
        for i, (kind, body) in enumerate([("jpki-sign", rsa2048), ("jpki-auth", p384), ("mdoc", b"\xa0" * 50_000),
                                          ("jpki-sign", p384), ("jpki-auth", rsa2048)]):
            s.add(Credential(id=f"{i:032x}", holder_id="h" * 32, phone_id="phone-1", kind=kind,
                             status="revoked" if i == 0 else "valid", reason="superseded" if i == 0 else None,
                             issued_at=now + dt.timedelta(seconds=i), not_before=now,
                             not_after=now + dt.timedelta(days=365), serial=None if kind == "mdoc" else f"{i:x}",
                             issuer_key=f"{kind}-key", body=body, meta={},
                             status_list_id=None, status_idx=None))
    runner = CliRunner()
    answers: list = []
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        answers.append(runner.invoke(app, ["credential", "list", "--json"]))
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    [statement] = [s for s in seen if "FROM credentials" in s]
    # the body is asked for only under CASE, for JPKI certificates: no mdoc's IssuerSigned
    assert statement.count("credentials.body") == 1 and "CASE WHEN" in statement, statement
    rows = json.loads(answers[0].output)
    assert [(r["id"][-1], r["kind"], r["key_type"]) for r in rows] == [
        ("0", "jpki-sign", "rsa2048"), ("1", "jpki-auth", "p384"), ("2", "mdoc", None), ("3", "jpki-sign", "p384"),
        ("4", "jpki-auth", "rsa2048")]
    assert answers[0].output == json.dumps(rows, ensure_ascii=False) + "\n"
    listed = runner.invoke(app, ["credential", "list", "--key-type", "rsa2048"]).output.splitlines()
    assert [line.split()[0][-1] for line in listed] == ["0", "4"]
    assert listed[0].endswith("serial 0  rsa2048") and "revoked (superseded)" in listed[0]
    assert [line.split()[0][-1] for line in runner.invoke(
        app, ["credential", "list", "--key-type", "rsa2048", "--status", "valid"]).output.splitlines()] == ["4"]
    page = runner.invoke(app, ["credential", "list", "--key-type", "p384", "--offset", "1", "--limit", "1"])
    assert [line.split()[0][-1] for line in page.output.splitlines()] == ["3"]
    assert runner.invoke(app, ["credential", "list", "--limit", "2", "--offset", "1", "--json"]).output == \
        json.dumps(rows[1:3], ensure_ascii=False) + "\n"
    assert runner.invoke(app, ["credential", "list", "--phone", "nobody", "--json"]).output == "[]\n"
    assert runner.invoke(app, ["credential", "list", "--kind", "mdoc", "--status", "hold"]).output == \
        "no credential of kind mdoc hold\n"
    # a damaged row (a certificate body that is no DER) is listed as such; it stopped the
    # listing with a traceback
    from sqlalchemy import update

    with sessionmaker(engine).begin() as s:
        s.execute(update(Credential).where(Credential.id == f"{3:032x}").values(body=b"\x30\x03garbage"))
    damaged = runner.invoke(app, ["credential", "list", "--json"])
    assert damaged.exit_code == 0, damaged.output
    assert [r["key_type"] for r in json.loads(damaged.output)] == ["rsa2048", "p384", None, "unreadable", "rsa2048"]


def test_job_lines_read_in_the_callers_transaction_leave_its_connection_as_it_was(engine):
    ids = _jobs(engine, 3)
    with engine.connect() as conn:
        assert [j.id for j in job_lines(conn)] == ids
        assert "yield_per" not in conn.get_execution_options()


def test_mcred_tsm_ses_lists_each_se_on_a_line_as_read(home: Path, db_url: str, monkeypatch):
    """``mcred tsm ses`` drew one rich table of every SE, measured whole before its first
    line was out: at 20,000 SEs 16.5 s (1.7 s a line each, as read)."""
    import datetime as dt

    from mcred.context import Context
    from tsm.db import SecureElementRow

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    engine = Context.open().engine
    runner = CliRunner()
    assert runner.invoke(app, ["tsm", "ses"]).output == "no SE\n"
    assert runner.invoke(app, ["tsm", "ses", "--json"]).output == "[]\n"
    at = dt.datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
    n = 1203  # more than a batch (500)
    long_id = "p" * 64
    with transaction(engine) as conn:
        conn.execute(SecureElementRow.__table__.insert(), [
            {"se_id": f"phone-{i:05d}", "kdd": f"{i:020x}", "cplc": "9f7f" * 20, "kvn": 0x31 if i % 2 else 0x30,
             "master_key_id": None if i == 1 else "mk-1", "state": "suspect" if i % 400 == 0 else "active",
             "created_at": at, "updated_at": at} for i in range(n)])
        conn.execute(SecureElementRow.__table__.insert(), [
            {"se_id": long_id, "kdd": None, "kvn": 0x30, "state": "new", "created_at": at, "updated_at": at}])
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        listed = runner.invoke(app, ["tsm", "ses", "--json"])
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    [statement] = [s for s in seen if "FROM tsm_se" in s]
    assert "cplc" not in statement  # not shown
    rows = json.loads(listed.output)
    assert listed.output == json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    assert [r["phone"] for r in rows] == [f"phone-{i:05d}" for i in range(n)] + [long_id]
    assert rows[0] == {"phone": "phone-00000", "phone_id": "phone-00000", "state": "suspect", "kvn": "30",
                       "kdd": f"{0:020x}", "master_key_id": "mk-1", "updated_at": rows[0]["updated_at"]}
    assert rows[0]["updated_at"].startswith("2026-12-01T09:30:15.123456")
    text = runner.invoke(app, ["tsm", "ses"]).output.splitlines()
    assert len(text) == n + 1
    assert text[0].startswith("phone-00000  suspect (quarantined)  keyset 30  master key mk-1  updated 2026-12-01T09:30:15")
    assert text[1].startswith("phone-00001  active  keyset 31  master key -  updated ")
    assert text[-1].startswith(f"{long_id}  new  keyset 30  master key -  updated ")
    assert sum("suspect" in line for line in text) == 4


def test_mcred_holder_list_reads_and_writes_a_batch_at_a_time(home: Path, db_url: str, monkeypatch):
    """``mcred holder list`` read the page whole, asked for the phones and credentials of all
    its holders in one statement (a parameter each) and drew one rich table: at 20,000
    holders (--limit 20000) 28 s and 239 MB. Batches of 3 here, holders registered at the
    same instant among them (the next batch starts after the last one by id)."""
    import datetime as dt

    from sqlalchemy.orm import sessionmaker

    import issuer.holders
    from issuer.db import Credential, Holder, Phone
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    monkeypatch.setattr(issuer.holders, "BATCH", 3)
    engine = Context.open().engine
    runner = CliRunner()
    assert runner.invoke(app, ["holder", "list"]).output == "no holder\n"
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    n = 11
    with sessionmaker(engine).begin() as s:
        for i in range(n):
            hid = f"{(i * 7) % n:032x}"  # ids out of registration order
            s.add(Holder(id=hid, data={"family_name": "一括", "given_name": f"{i}"}, card_number=f"{i:016d}",
                         card_expiry=dt.date(2035, 1, 1), created_at=at + dt.timedelta(seconds=i // 4)))
            s.flush()
            for k in range(i % 3):
                s.add(Phone(id=f"phone-{i}-{k}", holder_id=hid, state="active" if k else "retired",
                            created_at=at + dt.timedelta(seconds=k)))
                s.flush()
                s.add(Credential(id=f"{i:030x}{k:02x}", holder_id=hid, phone_id=f"phone-{i}-{k}", kind="mdoc",
                                 status="valid" if k else "revoked", issued_at=at, not_before=at,
                                 not_after=at + dt.timedelta(days=90), issuer_key="ds", body=b"", meta={}))
    order = sorted(range(n), key=lambda i: (i // 4, f"{(i * 7) % n:032x}"))
    expected = [{"id": f"{(i * 7) % n:032x}", "name": f"一括 {i}", "erased": False, "card_number": f"{i:016d}",
                 "card_expiry": "2035-01-01", "phones": [{"id": f"phone-{i}-{k}", "state": "active" if k else "retired"}
                                                         for k in range(i % 3)],
                 "credentials": {**({"mdoc:revoked": 1} if i % 3 else {}), **({"mdoc:valid": 1} if i % 3 == 2 else {})},
                 "live": 1 if i % 3 == 2 else 0} for i in order]

    def listed(*args: str) -> list[dict]:
        r = runner.invoke(app, ["holder", "list", "--json", *args])
        assert r.exit_code == 0, r.output
        rows = json.loads(r.output)
        assert r.output == json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
        return [{k: v for k, v in row.items() if k != "registered_at"} for row in rows]

    assert listed() == expected
    for offset, limit in ((0, 3), (2, 5), (4, 7), (9, 5), (11, 2), (1, 1)):
        assert listed("--offset", str(offset), "--limit", str(limit)) == expected[offset:offset + limit], (offset, limit)
    text = runner.invoke(app, ["holder", "list"]).output.splitlines()
    assert [line.split("  ")[0] for line in text] == [e["id"] for e in expected]
    i = order.index(2)
    assert text[i] == f"{expected[i]['id']}  一括 2  phone-2-0 (retired), phone-2-1 (active)  1"
    assert text[order.index(0)].endswith("  一括 0  -  0")
    assert runner.invoke(app, ["holder", "list", "--card", f"{5:016d}"]).output.startswith(f"{(5 * 7) % n:032x}  一括 5")
