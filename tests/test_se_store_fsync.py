"""SE image writes: atomic tmp + os.replace always; fsync only with MCRED_SE_FSYNC=1."""

from __future__ import annotations

import os

import pytest

from wallet_sim.se import store


@pytest.fixture
def fsyncs(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    return calls


@pytest.mark.parametrize(("env", "expected"), [(None, 0), ("0", 0), ("", 0), ("1", 1)])
def test_fsync_only_when_asked(tmp_path, monkeypatch, fsyncs, env, expected):
    if env is None:
        monkeypatch.delenv(store.FSYNC_ENV, raising=False)
    else:
        monkeypatch.setenv(store.FSYNC_ENV, env)
    path = tmp_path / store.SE_FILE
    store.write_atomically(path, b"one")
    store.write_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert len(fsyncs) == 2 * expected
    assert [p.name for p in tmp_path.iterdir()] == [store.SE_FILE]  # no temporary file left


def test_explicit_argument_overrides_environment(tmp_path, monkeypatch, fsyncs):
    monkeypatch.setenv(store.FSYNC_ENV, "1")
    store.write_atomically(tmp_path / "x", b"a", fsync=False)
    assert fsyncs == []
    monkeypatch.delenv(store.FSYNC_ENV)
    store.write_atomically(tmp_path / "x", b"b", fsync=True)
    assert len(fsyncs) == 1


def test_failed_replace_keeps_old_image_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / store.SE_FILE
    store.write_atomically(path, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [store.SE_FILE]
