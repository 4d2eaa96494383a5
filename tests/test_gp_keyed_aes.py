"""KeyedAes (protocols.gp.crypto): the session-long AES contexts give exactly what the
one-shot helpers give, message after message."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.gp.crypto import KeyedAes, aes_cbc_decrypt, aes_cbc_encrypt, aes_ecb_block, cmac
from protocols.gp.errors import KeyError_


@settings(max_examples=50, deadline=None)
@given(key=st.sampled_from([16, 24, 32]).map(os.urandom),
       messages=st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_keyed_contexts_match_the_one_shot_helpers(key, messages):
    k = KeyedAes(key)
    for m in messages:
        assert k.cmac(m) == cmac(key, m)
        block = (m + bytes(16))[:16]
        assert k.ecb_block(block) == aes_ecb_block(key, block)
        iv, padded = os.urandom(16), m + bytes(-len(m) % 16)
        if padded:
            ct = k.cbc_encrypt(iv, padded)
            assert ct == aes_cbc_encrypt(key, iv, padded)
            assert k.cbc_decrypt(iv, ct) == aes_cbc_decrypt(key, iv, ct) == padded
            # the ICV form: IV = AES(block), enciphered in the same pass
            assert k.cbc_encrypt_icv(block, padded) == aes_cbc_encrypt(key, k.ecb_block(block), padded)


def test_bad_key_and_block_sizes_are_refused():
    with pytest.raises(KeyError_):
        KeyedAes(bytes(15))
    with pytest.raises(ValueError):
        KeyedAes(bytes(16)).ecb_block(bytes(15))
    assert "00" not in repr(KeyedAes(bytes(16)))
    k = KeyedAes(bytes(16))
    with pytest.raises(ValueError):  # CBC takes whole blocks only, as the one-shot helpers
        k.cbc_decrypt(bytes(16), bytes(20))
    with pytest.raises(ValueError):
        k.cbc_encrypt_icv(bytes(16), bytes(20))
    with pytest.raises(ValueError):
        k.cbc_decrypt(bytes(8), bytes(16))
    with pytest.raises(ValueError):
        aes_cbc_decrypt(bytes(16), bytes(16), bytes(20))


def test_a_refused_decipherment_leaves_the_kept_context_as_it_was():
    """The decryption context lives as long as the key: a refused call must not leave a
    partial block in it, and any call deciphers right whatever came before."""
    key = os.urandom(16)
    k = KeyedAes(key)
    for n in (16, 48, 5, 32, 20, 16):
        iv, data = os.urandom(16), os.urandom(n)
        if n % 16:
            with pytest.raises(ValueError):
                k.cbc_decrypt(iv, data)
        else:
            assert k.cbc_decrypt(iv, data) == aes_cbc_decrypt(key, iv, data)
