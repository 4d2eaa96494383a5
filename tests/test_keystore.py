import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.keystore import (
    FileKeyStore,
    KeyNotFound,
    KeyStoreError,
    LocalSigner,
    generate_private_key,
)


def test_file_keystore_persists_encrypted_keys(tmp_path):
    ks = FileKeyStore(tmp_path / "keys", passphrase=b"pw")
    s = ks.create("iaca-1", "p256")
    pem = (tmp_path / "keys" / "iaca-1.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert oct(os.stat(tmp_path / "keys" / "iaca-1.pem").st_mode)[-3:] == "600"
    again = FileKeyStore(tmp_path / "keys", passphrase=b"pw").signer("iaca-1")
    sig = again.sign(b"data")
    s.public_key().verify(sig, b"data", ec.ECDSA(hashes.SHA256()))
    assert len(again.sign_raw(b"x")) == 64


def test_keystore_refuses_bad_labels_duplicates_and_wrong_passphrase(tmp_path):
    ks = FileKeyStore(tmp_path / "k", passphrase=b"pw")
    with pytest.raises(KeyStoreError):
        ks.create("../evil", "p256")
    ks.create("a", "p384")
    with pytest.raises(KeyStoreError):
        ks.create("a", "p384")
    with pytest.raises(KeyNotFound):
        ks.signer("b")
    with pytest.raises(KeyStoreError):
        FileKeyStore(tmp_path / "k", passphrase=b"wrong").signer("a")


def test_a_key_is_never_seen_half_written(tmp_path):
    """Two workers rolling the same signer generation over: one creates the key, the others
    find it and open it. A reader sees no file or the whole key, never a torn PEM (the
    ds_compromise drill's parallel refreshes hit 'MalformedFraming' before keys were linked
    into place whole)."""
    import threading

    errors: list[BaseException] = []
    for round_ in range(20):
        label = f"mdoc-ds-{round_}"
        writers = [FileKeyStore(tmp_path / "k", passphrase=b"pw") for _ in range(4)]
        start = threading.Barrier(len(writers))

        def grab(ks: FileKeyStore, label: str = label, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                for _ in range(200):
                    if ks.has(label):
                        ks.signer(label).sign(b"x")
                        return
                    try:
                        ks.create(label, "p256")
                        return
                    except KeyStoreError:
                        continue  # another worker linked it first: open theirs next
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=grab, args=(ks,)) for ks in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert not list((tmp_path / "k").glob("*.tmp")) and len(list((tmp_path / "k").glob("*.pem"))) == 20


@pytest.mark.parametrize("algorithm, size, hash_alg", [("p256", 32, hashes.SHA256), ("p384", 48, hashes.SHA384),
                                                       ("p521", 66, hashes.SHA512)])
def test_sign_raw_is_r_s_with_the_key_types_hash(algorithm, size, hash_alg):
    """sign_raw keeps its ECDSA parameters once per signer: every call still signs with the
    key type's hash and pads r and s to the curve size; an RSA key is refused every time."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    signer = LocalSigner("k", generate_private_key(algorithm))
    for data in (b"a", b"b" * 1000):
        raw = signer.sign_raw(data)
        assert len(raw) == 2 * size
        der = encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))
        signer.public_key().verify(der, data, ec.ECDSA(hash_alg()))
    rsa_signer = LocalSigner("r", generate_private_key("rsa2048"))
    for _ in range(2):
        with pytest.raises(KeyStoreError, match="not an EC key"):
            rsa_signer.sign_raw(b"x")


def test_the_key_directory_is_never_open_to_others_even_for_a_moment(tmp_path, monkeypatch):
    """Made 0700 whatever the umask, not made with the umask's mode and narrowed afterwards:
    in between, anyone could have put a .passphrase of their own in it."""
    import stat

    import issuer.keystore

    real_chmod = os.chmod
    seen = []

    def chmod(path, mode, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(stat.S_IMODE(os.stat(path).st_mode))
        return real_chmod(path, mode, *args, **kwargs)

    monkeypatch.setattr(issuer.keystore.os, "chmod", chmod)
    old = os.umask(0)
    try:
        FileKeyStore(tmp_path / "keys")
    finally:
        os.umask(old)
    assert seen == [0o700]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_a_file_key_destroyed_is_gone_from_disk_durably_and_from_the_store(tmp_path, monkeypatch):
    """``destroy``: the file's bytes overwritten, the file unlinked and the directory fsynced
    (the removal survives a crash, as ``create``'s link does); the store, and a second store
    on the same directory, find no key from then on; the other keys stay; a second destroy
    is ``KeyNotFound`` (nothing to destroy), as a label never made is."""
    import issuer.keystore

    ks = FileKeyStore(tmp_path / "k", passphrase=b"pw")
    ks.create("mdoc-iaca-1", "p256").sign(b"x")  # opened, so cached
    ks.create("mdoc-iaca-2", "p256")
    other = FileKeyStore(tmp_path / "k", passphrase=b"pw")
    path = tmp_path / "k" / "mdoc-iaca-1.pem"
    written: list[bytes] = []
    synced: list[Path] = []
    real_write = os.write
    monkeypatch.setattr(issuer.keystore.os, "write", lambda fd, data: written.append(bytes(data)) or real_write(fd, data))
    monkeypatch.setattr(issuer.keystore, "_fsync_dir", lambda d: synced.append(Path(d)))
    size = path.stat().st_size
    ks.destroy("mdoc-iaca-1")
    assert written == [bytes(size)] and synced == [tmp_path / "k"]
    assert not path.exists() and not ks.has("mdoc-iaca-1") and not other.has("mdoc-iaca-1")
    assert ks.labels() == ["mdoc-iaca-2"]
    for store in (ks, other):
        with pytest.raises(KeyNotFound):
            store.signer("mdoc-iaca-1")
    with pytest.raises(KeyNotFound):
        ks.destroy("mdoc-iaca-1")
    with pytest.raises(KeyNotFound):
        ks.destroy("never-made")
    with pytest.raises(KeyStoreError, match="invalid key label"):
        ks.destroy("../mdoc-iaca-2")
    assert ks.signer("mdoc-iaca-2").sign(b"x")


def test_a_memory_key_destroyed_is_gone():
    from issuer.keystore import MemoryKeyStore

    ks = MemoryKeyStore()
    ks.create("a", "p256")
    ks.create("b", "p256")
    ks.destroy("a")
    assert ks.labels() == ["b"] and not ks.has("a")
    with pytest.raises(KeyNotFound):
        ks.signer("a")
    with pytest.raises(KeyNotFound):
        ks.destroy("a")
