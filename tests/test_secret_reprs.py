"""Objects that hold a key or a secret do not print it: a ``repr`` ends up in logs, in
tracebacks (pytest's, an operator's) and in debugger sessions, and a private key, an SE's
new static keys or the salted hash of a 4-digit PIN (found again in microseconds) must not."""

from __future__ import annotations

import hashlib

import pytest

from mcred.present import Presentation
from protocols.gp.keys import KeyBlockForm, PutKeyData
from protocols.gp.scp03 import SessionKeys, StaticKeys
from tsm.jobs import JobSecrets
from wallet_sim.applets.jpki import KeySlot, Secret
from wallet_sim.applets.mdoc import CredentialSlot

MARK = bytes.fromhex("5EC7E75EC7E75EC7E75EC7E75EC7E75E")


def _shows(obj: object, secret: bytes) -> bool:
    text = repr(obj)
    return any(form in text for form in (repr(secret), secret.hex(), secret.hex().upper()))


@pytest.mark.parametrize("make", [
    lambda: KeySlot("p256", MARK, b"\x30\x59"),
    lambda: CredentialSlot(MARK, b"\x30\x59"),
    lambda: Secret(3, 3, MARK, hashlib.sha256(MARK).digest()),
    lambda: PutKeyData(0x31, (MARK, MARK, MARK), next(iter(KeyBlockForm))),
    lambda: Presentation({"valid": True}, e_reader_private_key=MARK),
    lambda: StaticKeys(MARK, MARK, MARK),
    lambda: SessionKeys(MARK, MARK, MARK),
], ids=["jpki-key", "mdoc-device-key", "pin-hash", "put-key", "presentation", "static-keys", "session-keys"])
def test_a_repr_shows_no_key_or_secret(make):
    obj = make()
    assert not _shows(obj, MARK), repr(obj)
    if isinstance(obj, Secret):
        assert not _shows(obj, obj.digest)


def test_job_secrets_show_no_pin():
    s = JobSecrets("7391", "QZX7KV42", "58203917")
    assert not any(v in repr(s) for v in ("7391", "QZX7KV42", "58203917"))
