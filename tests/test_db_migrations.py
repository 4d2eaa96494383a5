import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from issuer.db import Credential, Holder, Phone
from mcred.db import make_engine, migrate

# what these tests check is migrating itself: never from a copy (tests/conftest.py)
pytestmark = pytest.mark.real_migrations


def _i0018_identity(data: dict) -> str:
    """The identity in i0018idnorm's form (NFKC, dashes folded, ー between digits in a place,
    white space collapsed), as the later revisions must leave it to be compared against."""
    import hashlib
    import json
    import re
    import unicodedata

    def text(field: str, value: str) -> str:
        value = re.sub("[\u2010-\u2015\u2043\u2212\u2500\u2501]", "-", unicodedata.normalize("NFKC", value))
        if field in ("address", "prefecture", "municipality"):
            value = re.sub("(?<=[0-9])\u30FC(?=[0-9])", "-", value)
        return re.sub(r"\s+", " ", value).strip()

    fields = ("family_name", "given_name", "family_name_kana", "given_name_kana", "birth_date", "sex",
              "address", "prefecture", "municipality")
    values = [text(k, data[k]) if isinstance(data[k], str) else data[k] for k in fields]
    return hashlib.sha256(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def test_migrations_from_empty_database_create_every_table(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # idempotent
    names = set(sa.inspect(engine).get_table_names())
    assert {"holders", "phones", "credentials", "issuer_keys", "status_lists", "crl_state",
            "handovers", "api_tokens", "issuer_audit", "reader_sessions", "alembic_version"} <= names
    engine.dispose()


def test_serial_is_unique_per_issuing_key(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as s:
        h = Holder(data={}, card_number="1", card_expiry=dt.date(2030, 1, 1))
        s.add(h)
        s.flush()
        s.add(Phone(id="p1", holder_id=h.id))
        s.flush()
        for _ in range(2):
            s.add(Credential(holder_id=h.id, phone_id="p1", kind="jpki-sign", serial="01",
                             issuer_key="k", not_before=now, not_after=now, body=b""))
        try:
            s.commit()
            raised = False
        except sa.exc.IntegrityError:
            raised = True
    assert raised
    engine.dispose()


def test_the_migrated_schema_is_the_one_the_models_declare(db_url):
    """Every party's tables as its Alembic branch builds them match its ORM models: a
    column, index, type or nullability added to a model without a migration (or the
    reverse) shows here, on SQLite and on PostgreSQL, rather than as an error on a user's
    upgraded database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import issuer.api.jobs
    import issuer.jpki.models
    import issuer.mdoc.models
    import issuer.task_runs  # noqa: F401 - their tables join IssuerBase's metadata
    import reader.rp_watch  # noqa: F401 - its tables join ReaderBase's metadata
    import reader.vical_memory  # noqa: F401 - its table joins ReaderBase's metadata
    from issuer.db import IssuerBase
    from reader.sessions import ReaderBase
    from tsm.db import TsmBase

    engine = make_engine(db_url)
    migrate(engine)
    metadata = sa.MetaData()
    for base in (IssuerBase, TsmBase, ReaderBase):
        for table in base.metadata.tables.values():
            table.to_metadata(metadata)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, metadata)
                if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    engine.dispose()
    assert diff == [], "\n".join(map(repr, diff))


def test_the_expiry_index_comes_and_goes_with_its_migration(db_url):
    """i0014certexp adds ix_credential_expiry (kind, not_after of the valid ones), what the expiry
    notices read (``credential list --expiring-within``, ``GET /credentials?expiring_within=``);
    a downgrade of the issuer's branch one step drops it and leaves the rest, and the upgrade
    builds it again."""
    from alembic import command

    from mcred.db import _alembic_config, schema_status

    def indexes() -> dict[str, list[str]]:
        return {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes("credentials")}

    engine = make_engine(db_url)
    migrate(engine)
    assert indexes()["ix_credential_expiry"] == ["kind", "not_after"]
    # partial: of the valid credentials only (no look-up of revoked ones by kind is taken off it)
    (ix,) = [ix for ix in sa.inspect(engine).get_indexes("credentials") if ix["name"] == "ix_credential_expiry"]
    where = str(ix["dialect_options"][f"{engine.dialect.name}_where"])
    assert "status" in where and "'valid'" in where, where
    before = set(indexes())
    command.downgrade(_alembic_config(engine), "i0013wflease")
    engine.dispose()
    assert set(indexes()) == before - {"ix_credential_expiry"}
    applied, newest = schema_status(engine)
    assert "i0013wflease" in applied and "i0025taskruns" in newest and applied != newest
    migrate(engine)
    assert indexes()["ix_credential_expiry"] == ["kind", "not_after"]
    assert schema_status(engine)[0] == schema_status(engine)[1]
    engine.dispose()


def test_status_lists_made_before_iaca_generations_are_the_first_iacas(db_url):
    """i0015iacagen adds status_lists.iaca_label: a list made before IACA generations existed
    holds mdocs of the only IACA there was, ``mdoc-iaca-1``, and is signed under it."""
    from alembic import command

    from mcred.db import _alembic_config

    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "i0014certexp")
    assert "iaca_label" not in {c["name"] for c in sa.inspect(engine).get_columns("status_lists")}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO status_lists (id, uri, bits, size, allocated, period, version, "
                             "created_at) VALUES ('l1', 'http://x/status/l1', 1, 16, 0, '2026-12', 0, "
                             "'2026-12-01 00:00:00')"))
    engine.dispose()
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT iaca_label FROM status_lists")).scalar_one() == "mdoc-iaca-1"
    engine.dispose()


def test_holders_registered_before_identities_get_theirs_oldest_first(db_url):
    """i0016holderid adds holders.identity (unique): the holders there are get theirs from
    their record; a person registered twice before (the bug it ends) keeps the first record
    as the one matched, the later one none; an erased record none. The downgrade drops it."""
    import json

    from alembic import command

    from issuer.holders import identity_of
    from mcred.db import _alembic_config

    record = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
              "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
              "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "i0015iacagen")
    assert "identity" not in {c["name"] for c in sa.inspect(engine).get_columns("holders")}
    with engine.begin() as conn:
        for hid, data, day in (("h2", record, 2), ("h1", record, 1), ("h3", {"erased": True}, 3),
                               ("h4", dict(record, given_name="次郎"), 4)):
            conn.execute(sa.text("INSERT INTO holders (id, data, card_number, card_expiry, created_at) "
                                 "VALUES (:i, :d, :c, '2030-01-01', :t)"),
                         {"i": hid, "d": json.dumps(data), "c": hid, "t": f"2026-12-0{day} 00:00:00"})
    engine.dispose()
    migrate(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
    assert got == {"h1": identity_of(record), "h2": None, "h3": None, "h4": identity_of(dict(record, given_name="次郎"))}
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):  # one person, one record
        conn.execute(sa.text("UPDATE holders SET identity = :i WHERE id = 'h2'"), {"i": identity_of(record)})
    engine.dispose()


def test_credentials_revoked_from_a_hold_before_invalidity_dates_get_the_holds_time(db_url):
    """i0017invalid adds credentials.invalid_since (the invalidityDate of a held certificate
    revoked for good): a credential revoked from a hold before it gets the hold's time from the
    audit trail; one held, released and then revoked gets none (the hold was lifted), as does
    one revoked while valid. The index of the valid credentials (a partial one) survives the
    round trip, and the downgrade drops the column."""
    from alembic import command

    from mcred.db import _alembic_config

    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "i0016holderid")
    assert "invalid_since" not in {c["name"] for c in sa.inspect(engine).get_columns("credentials")}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO holders (id, data, card_number, card_expiry, created_at) "
                             "VALUES ('h', '{}', '1', '2030-01-01', '2026-12-01 00:00:00')"))
        conn.execute(sa.text("INSERT INTO phones (id, holder_id, state, created_at) "
                             "VALUES ('p', 'h', 'active', '2026-12-01 00:00:00')"))
        for cid, status in (("held_then_revoked", "revoked"), ("released_then_revoked", "revoked"),
                            ("revoked_valid", "revoked"), ("still_held", "hold")):
            conn.execute(sa.text(
                "INSERT INTO credentials (id, holder_id, phone_id, kind, status, reason, revoked_at, issued_at, "
                "not_before, not_after, serial, issuer_key, body, meta) VALUES (:i, 'h', 'p', 'jpki-sign', :s, "
                "'cessationOfOperation', '2026-12-05 00:00:00', '2026-12-01 00:00:00', '2026-12-01 00:00:00', "
                "'2030-01-01 00:00:00', :i, 'k', :b, '{}')"), {"i": cid, "s": status, "b": b""})
        for subject, action, day in (("held_then_revoked", "credential.hold", 2),
                                     ("held_then_revoked", "credential.revoke", 5),
                                     ("released_then_revoked", "credential.hold", 2),
                                     ("released_then_revoked", "credential.release", 3),
                                     ("released_then_revoked", "credential.revoke", 5),
                                     ("revoked_valid", "credential.revoke", 5),
                                     ("still_held", "credential.hold", 2)):
            conn.execute(sa.text("INSERT INTO issuer_audit (at, actor, action, subject, detail) "
                                 "VALUES (:t, 'operator', :a, :s, '{}')"),
                         {"t": f"2026-12-0{day} 00:00:00", "a": action, "s": subject})
    engine.dispose()
    migrate(engine)
    with Session(engine) as s:
        got = {c.id: c.invalid_since for c in s.query(Credential)}
    assert got == {"held_then_revoked": dt.datetime(2026, 12, 2, tzinfo=dt.UTC), "released_then_revoked": None,
                   "revoked_valid": None, "still_held": None}
    (ix,) = [ix for ix in sa.inspect(engine).get_indexes("credentials") if ix["name"] == "ix_credential_expiry"]
    assert "'valid'" in str(ix["dialect_options"][f"{engine.dialect.name}_where"])
    engine.dispose()


def _insert_holders(engine, rows) -> None:  # noqa: ANN001
    """Holders as an older revision wrote them: (id, data, identity, day of December 2026
    created), each its own card number."""
    with engine.begin() as conn:
        for hid, data, identity, day in rows:
            conn.execute(sa.text("INSERT INTO holders (id, data, card_number, card_expiry, created_at, identity) "
                                 "VALUES (:i, :d, :c, '2030-01-01', :t, :n)"),
                         {"i": hid, "d": json.dumps(data), "c": hid, "t": f"2026-12-0{day} 00:00:00", "n": identity})


def test_holder_identities_are_recomputed_normalised_and_a_later_same_person_loses_its(db_url):
    """i0018idnorm recomputes holders.identity in the normalised form (``identity_text``):
    a person registered once with full-width digits, hyphen and space in the address and a
    full-width space in a name, and once more plainly, were two identities; now the older
    record keeps the (new) identity and the later one has none, even where the later one's
    old identity is the very value the older one gets (no update meets the unique index).
    Another person keeps theirs; a holder without one (by card number) stays without. The
    downgrade gives back the identities of the text as stored."""
    import hashlib
    import json

    from alembic import command

    from issuer.holders import identity_of
    from mcred.db import _alembic_config

    def as_stored(data: dict) -> str:  # the identity before i0018idnorm
        values = [data[k] for k in ("family_name", "given_name", "family_name_kana", "given_name_kana",
                                    "birth_date", "sex", "address", "prefecture", "municipality")]
        return hashlib.sha256(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()

    plain = {"family_name": "山田", "given_name": "太郎 一", "family_name_kana": "やまだ",
             "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
             "address": "東京都千代田区千代田1-1 コーポ101", "prefecture": "東京都", "municipality": "千代田区"}
    wide = dict(plain, given_name="太郎\u3000一", address="東京都千代田区千代田\uff11\uff0d\uff11\u3000コーポ\uff11\uff10\uff11")
    other = dict(plain, given_name="次郎")
    assert as_stored(plain) == _i0018_identity(plain) != as_stored(wide)
    assert _i0018_identity(wide) == _i0018_identity(plain)
    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "i0017invalid")
    _insert_holders(engine, (("wide", wide, as_stored(wide), 1), ("plain", plain, as_stored(plain), 2),
                             ("other", other, as_stored(other), 3), ("card", plain, None, 4)))
    engine.dispose()
    migrate(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
        stored = conn.execute(sa.text("SELECT data FROM holders WHERE id = 'wide'")).scalar_one()
    assert got == {"wide": identity_of(plain), "plain": None, "other": identity_of(other), "card": None}
    assert (json.loads(stored) if isinstance(stored, str) else stored) == wide  # its text as given
    command.downgrade(_alembic_config(engine), "i0017invalid")
    engine.dispose()
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
    assert got == {"wide": as_stored(wide), "plain": None, "other": as_stored(other), "card": None}
    engine.dispose()


def test_holders_one_person_only_by_their_address_blocks_keep_the_oldest_identity(db_url):
    """i0020addrnorm recomputes holders.identity with the address's white space dropped, its
    kanji block numbers in digits and its block units folded to hyphens: a person registered
    once as 梅田二丁目1番2号 and once as 梅田 2-1-2 were two identities; now the older keeps the
    (new) identity and the later has none (logged); another person gets theirs in the new
    form; a holder without one (by card number) stays without; the records keep their text.
    The downgrade gives back i0018idnorm's identities to those that keep one."""
    import json

    from alembic import command

    from issuer.holders import identity_of
    from mcred.db import _alembic_config

    kanji = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
             "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
             "address": "大阪府大阪市北区梅田二丁目1番2号 コーポ梅田", "prefecture": "大阪府", "municipality": "大阪市北区"}
    hyphens = dict(kanji, address="大阪府大阪市北区梅田 2-1-2コーポ梅田")
    sapporo = dict(kanji, given_name="次郎", address="北海道札幌市中央区北一条西二丁目1", prefecture="北海道",
                   municipality="札幌市中央区")
    assert _i0018_identity(kanji) != _i0018_identity(hyphens) and identity_of(kanji) == identity_of(hyphens)
    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "i0019vical")
    _insert_holders(engine, (("later", hyphens, _i0018_identity(hyphens), 2), ("older", kanji, _i0018_identity(kanji), 1),
                             ("other", sapporo, _i0018_identity(sapporo), 3), ("card", kanji, None, 4)))
    engine.dispose()
    migrate(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
        stored = conn.execute(sa.text("SELECT data FROM holders WHERE id = 'older'")).scalar_one()
    assert got == {"older": identity_of(kanji), "later": None, "other": identity_of(sapporo), "card": None}
    assert identity_of(sapporo) != _i0018_identity(sapporo)  # recomputed, not just kept
    assert (json.loads(stored) if isinstance(stored, str) else stored) == kanji  # its text as given
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):  # one person, one record
        conn.execute(sa.text("UPDATE holders SET identity = :i WHERE id = 'later'"), {"i": identity_of(hyphens)})
    engine.dispose()
    command.downgrade(_alembic_config(engine), "i0019vical")
    engine.dispose()
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
    assert got == {"older": _i0018_identity(kanji), "later": None, "other": _i0018_identity(sapporo), "card": None}
    engine.dispose()


def _i0020_identity(data: dict) -> str:
    """The identity in i0020addrnorm's form, as that revision froze it (what a holder
    registered before i0021blocknum holds)."""
    import importlib.util
    from pathlib import Path

    import issuer.migrations

    path = Path(issuer.migrations.__file__).parent / "versions" / "i0020addrnorm_holder_identity_address_blocks.py"
    spec = importlib.util.spec_from_file_location("i0020addrnorm_frozen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._identity(module._text_i0020, data)


def test_holders_one_person_only_by_old_numerals_or_zeros_keep_the_oldest_identity(db_url):
    """i0021blocknum recomputes holders.identity with the old-style numerals (壱 弐 参 拾) read
    as block numbers and the block numbers' leading zeros dropped: a person registered once
    as 梅田弐丁目壱番弐号 and once as 梅田02-01-02 were two identities; now the older keeps the
    (new) identity and the later has none (logged); another person gets theirs in the new
    form, and one whose postal code and room number have zeros keeps them; a holder without
    one (by card number) stays without; the records keep their text. The downgrade gives back
    i0020addrnorm's identities to those that keep one."""
    from alembic import command

    from issuer.holders import identity_of
    from mcred.db import _alembic_config

    daiji = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
             "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
             "address": "大阪府大阪市北区梅田弐丁目壱番弐号 コーポ梅田", "prefecture": "大阪府", "municipality": "大阪市北区"}
    zeros = dict(daiji, address="大阪府大阪市北区梅田02-01-02コーポ梅田")
    other = dict(daiji, given_name="次郎", address="〒100-0001 東京都千代田区千代田01丁目01番 コーポ0101",
                 prefecture="東京都", municipality="千代田区")
    assert _i0020_identity(daiji) != _i0020_identity(zeros) and identity_of(daiji) == identity_of(zeros)
    assert identity_of(other) != identity_of(dict(other, address="〒100-1 東京都千代田区千代田1-1 コーポ101"))
    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "i0020addrnorm")
    _insert_holders(engine, (("later", zeros, _i0020_identity(zeros), 2), ("older", daiji, _i0020_identity(daiji), 1),
                             ("other", other, _i0020_identity(other), 3), ("card", daiji, None, 4)))
    engine.dispose()
    migrate(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
        stored = conn.execute(sa.text("SELECT data FROM holders WHERE id = 'older'")).scalar_one()
    assert got == {"older": identity_of(daiji), "later": None, "other": identity_of(other), "card": None}
    assert identity_of(other) != _i0020_identity(other)  # recomputed, not just kept
    assert (json.loads(stored) if isinstance(stored, str) else stored) == daiji  # its text as given
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):  # one person, one record
        conn.execute(sa.text("UPDATE holders SET identity = :i WHERE id = 'later'"), {"i": identity_of(zeros)})
    engine.dispose()
    command.downgrade(_alembic_config(engine), "i0020addrnorm")
    engine.dispose()
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, identity FROM holders")).all())
    assert got == {"older": _i0020_identity(daiji), "later": None, "other": _i0020_identity(other), "card": None}
    engine.dispose()


def test_a_reader_database_at_r0007_gets_its_vical_memory(db_url):
    """r0008 adds reader_vicals (the last VICAL taken per provider) to a reader database made
    at r0007: its sessions are kept, the table starts empty (the first VICAL fetched is taken,
    as before), and the downgrade drops it."""
    from alembic import command

    from mcred.db import _alembic_config
    from reader.trust import VicalImport
    from reader.vical_memory import SqlVicalMemory

    engine = make_engine(db_url)
    try:
        command.upgrade(_alembic_config(engine), "r0007")
        assert "reader_vicals" not in sa.inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO reader_sessions (id, created_at, state, transcript) "
                                 "VALUES ('s1', '2026-12-07 00:00:00', 'done', :t)"), {"t": b"\x80"})
        migrate(engine, "reader@head")
        memory = SqlVicalMemory(engine)
        assert memory.held("MCRED") is None
        taken = VicalImport("MCRED", dt.datetime(2026, 12, 7, tzinfo=dt.UTC), 2**40, 1, (), b"\x01" * 32)
        assert memory.take(taken) == taken
        assert memory.held("MCRED").issue_id == 2**40
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM reader_sessions")).scalar_one() == 1
        command.downgrade(_alembic_config(engine), "r0007")
        assert "reader_vicals" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize(("revision", "before", "column", "label", "purpose", "reason", "at"), [
    # i0022keydestroy: when MdocPki.destroy_key (and the JPKI's and the TSA's) destroyed a key
    ("i0022keydestroy", "i0021blocknum", "key_destroyed_at", "mdoc-iaca-1", "iaca", "cACompromise",
     dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)),
    # i0023keyinvalid: a TSA unit's invalidity date (mcred tsa revoke --invalid-since)
    ("i0023keyinvalid", "i0022keydestroy", "invalid_since", "tsa-unit-1", "tsa-unit", "keyCompromise",
     dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)),
], ids=["key-destroyed", "invalid-since"])
def test_issuer_keys_get_a_new_time_column_and_lose_it_on_the_way_down(db_url, revision, before, column, label,
                                                                        purpose, reason, at):
    """A migration that adds a nullable time to issuer_keys: the revoked keys there are keep
    their rows, revocations and certificates, none with a value; a time written reads back as
    the instant it was; the downgrade drops the column and keeps the rows and their
    revocations."""
    from alembic import command

    from issuer.db import IssuerKey
    from mcred.db import _alembic_config

    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), before)
    assert column not in {c["name"] for c in sa.inspect(engine).get_columns("issuer_keys")}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO issuer_keys (label, purpose, algorithm, certificate, active, created_at, "
                             "revoked_at, revocation_reason) VALUES (:l, :p, 'p256', :c, false, "
                             "'2026-12-01 00:00:00', '2026-12-02 00:00:00', :r)"),
                     {"l": label, "p": purpose, "c": b"\x30\x00", "r": reason})
    engine.dispose()
    migrate(engine)
    with Session(engine) as s:
        row = s.get(IssuerKey, label)
        assert (getattr(row, column), row.revocation_reason, row.certificate) == (None, reason, b"\x30\x00")
        setattr(row, column, at)
        s.commit()
    with Session(engine) as s:
        assert getattr(s.get(IssuerKey, label), column) == at
    engine.dispose()
    command.downgrade(_alembic_config(engine), before)
    engine.dispose()
    assert column not in {c["name"] for c in sa.inspect(engine).get_columns("issuer_keys")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT label, revocation_reason FROM issuer_keys")).all() == [(label, reason)]
    engine.dispose()
