"""The data directory and the files mcred writes with keys or personal data in them are their
owner's alone, whatever the umask: made 0700 / 0600 from creation (never widened, never
narrowed afterwards), and nothing anywhere below the home is writable by group or others.
The only things others may read are the certificates meant to be handed out (the SE maker's
root, the TSM's KLOC CA and OCE certificate), and only where they can reach them."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from mcred.context import Context
from mcred.db import make_engine
from mcred.demo import run_demo
from mcred.home import write_private

#: What others may read (never write) below a home: certificates to be handed out.
PUBLIC = {"se-maker", "se-maker/root.pem", "tsm-oce", "tsm-oce/ca.pem", "tsm-oce/oce.pem"}


@pytest.fixture
def umask():
    """Set the process's umask for one test, and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _modes(home: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(home.lstat().st_mode)}
    for p in home.rglob("*"):
        out[str(p.relative_to(home))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def _public(rel: str) -> bool:
    return rel in PUBLIC or rel.startswith("tsm-oce/retired")


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_the_main_job_leaves_nothing_others_may_read_or_write(tmp_path, monkeypatch, umask, mask):
    home = tmp_path / "data"  # made by mcred itself
    monkeypatch.setenv("MCRED_HOME", str(home))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    umask(mask)
    ctx = Context.open(home)
    run_demo(ctx, lambda _text: None, key_type="p384")
    ctx.engine.dispose()
    modes = _modes(home)
    assert modes["."] == 0o700
    assert modes["mcred.sqlite3"] == 0o600
    assert any(r.startswith("phones/") and r.endswith("app/wallet.json") for r in modes)
    writable = {r: oct(m) for r, m in modes.items() if m & 0o022}
    assert writable == {}
    readable = {r: oct(m) for r, m in modes.items() if m & 0o077 and not _public(r)}
    assert readable == {}


def test_a_sqlite_database_and_its_wal_are_made_0600(tmp_path, umask):
    umask(0o022)
    for url in (f"sqlite:///{tmp_path / 'reader.db'}", "sqlite:///relative.db"):
        os.chdir(tmp_path)
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(Path(url).stem))
            assert {f"{Path(url).stem}.db", f"{Path(url).stem}.db-wal"} <= set(files)
            for name in files:
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        engine.dispose()
    make_engine("sqlite://").dispose()  # in memory: nothing to make


def test_an_existing_file_written_private_is_0600_before_it_holds_anything(tmp_path, umask):
    umask(0o000)
    new = tmp_path / "new.cbor"
    write_private(new, b"secret")
    assert stat.S_IMODE(new.stat().st_mode) == 0o600 and new.read_bytes() == b"secret"
    old = tmp_path / "old.cbor"
    old.write_bytes(b"x" * 10)
    old.chmod(0o644)
    write_private(old, b"secret")
    assert stat.S_IMODE(old.stat().st_mode) == 0o600 and old.read_bytes() == b"secret"


def test_the_readers_saved_sessions_are_its_operators_alone(tmp_path, umask):
    from reader.http import ReaderService

    umask(0o000)
    service = ReaderService.__new__(ReaderService)
    service.save_dir = tmp_path / "sessions"
    outcome = SimpleNamespace(device_response=b"\xa0", session_transcript=SimpleNamespace(raw=b"\x83"))
    service._save("s1", outcome, None)
    assert stat.S_IMODE(service.save_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((service.save_dir / "s1.cbor").stat().st_mode) == 0o600
