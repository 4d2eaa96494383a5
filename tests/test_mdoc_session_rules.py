"""Session encryption (protocols/mdoc/session.py, ISO/IEC 18013-5 §9.1.1.5), rule by rule,
where mutation testing found no test holding the rule: AES-256-GCM keys only, ECDH only
between keys of one curve (a typed error otherwise), and a message counter that stops
before its 4 bytes would wrap (an IV never used twice under one key)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor
from protocols.cose import CoseKey
from protocols.mdoc import SessionData, SessionEncryption
from protocols.mdoc.errors import MdocDecodeError, SessionError
from protocols.mdoc.session import ecdh


def test_session_keys_are_32_bytes_aes_256_gcm_only():
    """§9.1.1.5: SKReader and SKDevice are 32-byte keys for AES-256-GCM; AESGCM would take a
    16-byte key (AES-128) without a word."""
    for sk_reader, sk_device in ((bytes(16), bytes(32)), (bytes(32), bytes(16)), (bytes(24), bytes(24))):
        with pytest.raises(SessionError, match="32 bytes"):
            SessionEncryption("reader", sk_reader, sk_device)
    SessionEncryption("mdoc", bytes(32), bytes(32))


def test_ecdh_between_keys_of_two_curves_is_a_session_error():
    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    for private, public in ((p256, p384.public_key()), (p384, CoseKey.from_public_key(p256.public_key()))):
        with pytest.raises(SessionError, match="curves differ"):
            ecdh(private, public)
    assert len(ecdh(p256, ec.generate_private_key(ec.SECP256R1()).public_key())) == 32


def test_the_message_counter_stops_before_its_four_bytes_wrap():
    """The IV is the 8-byte identifier and a 4-byte message counter: message 2^32 - 1 is the
    last one; the next would need a fifth byte (or wrap to an IV used before), so it is a
    SessionError, and nothing is sent."""
    reader, mdoc = SessionEncryption("reader", bytes(32), bytes(range(32))), \
        SessionEncryption("mdoc", bytes(32), bytes(range(32)))
    reader.send_counter = mdoc.receive_counter = 2**32 - 1
    assert mdoc.decrypt(reader.encrypt(b"last")) == b"last"
    assert reader.send_counter == 2**32
    with pytest.raises(SessionError, match="message counter exhausted"):
        reader.encrypt(b"one too many")
    assert reader.send_counter == 2**32


def test_session_data_is_data_or_status_and_nothing_else():
    """§9.1.1.4 SessionData = {? "data": bstr, ? "status": uint}: neither is no message, a
    negative status is no uint, another key is not SessionData."""
    with pytest.raises(MdocDecodeError, match="needs data or status"):
        SessionData()
    for bad in ({}, {"status": -1}, {"data": b"x", "other": 1}):
        with pytest.raises(MdocDecodeError):
            SessionData.decode(cbor.dumps(bad))
    assert SessionData.decode(cbor.dumps({"status": 20})).status == 20


def test_a_message_that_does_not_decrypt_leaves_the_counter_where_it_was():
    """A forged or damaged message is refused and does not move the receive counter, so the
    genuine message with that number still decrypts (§9.1.1.5)."""
    reader, mdoc = SessionEncryption("reader", bytes(32), bytes(range(32))), \
        SessionEncryption("mdoc", bytes(32), bytes(range(32)))
    genuine = reader.encrypt(b"request")
    damaged = genuine[:-1] + bytes([genuine[-1] ^ 1])
    from protocols.mdoc.errors import SessionDecryptError

    with pytest.raises(SessionDecryptError, match="message 1 does not decrypt"):
        mdoc.decrypt(damaged)
    assert mdoc.receive_counter == 1 and mdoc.decrypt(genuine) == b"request" and mdoc.receive_counter == 2
