import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.keystore import FileKeyStore, KeyNotFound, KeyStoreError


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
