"""The TSM master key in a PKCS#11 token (specs/tsm.md "Key diversification", "Master key
in an HSM"): :class:`HsmMasterKey` implements :class:`tsm.keys.MasterKey` with keys that
never leave the token.

Two AES keys, generated in the token (``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``) and found again by ``CKA_LABEL``:

* the **master key** (``mcred-tsm-master``, AES-128 like the file default), usable for
  ``CKM_AES_CMAC`` signing only. An SE's keyset is the SP 800-108 counter-mode KDF of
  :func:`tsm.keys.kbkdf_counter` whose every PRF block is a ``C_Sign`` with ``CKM_AES_CMAC``
  in the token; the result equals :func:`tsm.keys.diversify` of the same key value.
  ``key_id`` is the first 8 bytes (hex) of ``CMAC(master, "mcred-tsm/key-id")``, computed
  in the token: a check value, since the file key's digest of the key bytes cannot be made
  of a key nobody can read (the KDF's inputs start with a counter byte 01/02, this one with
  "m", so it is never a KDF block).
* the **sealing key** (``mcred-tsm-seal``, AES-256), usable for ``CKM_AES_GCM`` encrypt and
  decrypt only: job secrets are sealed in the token, blob = nonce(12) || ciphertext || tag
  (16), the format of :class:`tsm.keys.InMemoryMasterKey`. A separate key, not the master
  key, because one AES key should serve one purpose (CMAC's subkeys and GCM's hash key are
  both E_K(0^128)); the file key derives its sealing key with the KDF instead, which would
  put the sealing key in host memory here.

Settings (``mcred.context``): ``MCRED_TSM_MASTER_KEY=pkcs11`` with the issuer's token
settings (``MCRED_PKCS11_MODULE``, ``MCRED_PKCS11_TOKEN``, ``MCRED_PKCS11_PIN`` /
``MCRED_PKCS11_PIN_FILE``) and its session: one per process and token, behind a lock
(:mod:`hsm`). Every failure is a :class:`tsm.errors.MasterKeyError` (a wrong key or
tampering on unseal: :class:`tsm.errors.SealError`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

from hsm import Token, open_token, pkcs11_module, raised_as, token_settings
from protocols.gp.scp03 import StaticKeys
from tsm.errors import MasterKeyError, SealError
from tsm.keys import kbkdf_cmac, kbkdf_counter, key_check_value, se_keyset

SETTING = "MCRED_TSM_MASTER_KEY=pkcs11"
MASTER_LABEL = "mcred-tsm-master"
SEAL_LABEL = "mcred-tsm-seal"
_NONCE, _TAG = 12, 16


def _token_call(p11, token_label: str, what: str, fn):  # noqa: ANN001, ANN202
    """``fn()``, a token's refusal raised as :class:`MasterKeyError` naming ``what``."""
    try:
        return fn()
    except p11.exceptions.PKCS11Error as exc:
        raise MasterKeyError(f"PKCS#11 token {token_label!r} refused to {what}: "
                             f"{type(exc).__name__} {exc}") from exc


class _Absent(Exception):
    """The key is not on the token and was not to be generated."""


class HsmMasterKey:
    """The TSM master key (and its sealing key) in a PKCS#11 token; the token computes."""

    def __init__(self, module: str, token_label: str, pin: str, *, label: str = MASTER_LABEL,
                 seal_label: str = SEAL_LABEL, create: bool = True) -> None:
        self._create = create
        with raised_as(MasterKeyError):
            self._p11 = pkcs11_module(SETTING)
            self._token: Token = open_token(module, token_label, pin)
        self.module, self.token_label, self.label, self.seal_label = module, token_label, label, seal_label
        A = self._p11.Attribute  # noqa: N806
        with self._token.lock:
            self._master = self._key(label, 128, {A.SIGN: True}, A.SIGN)
            self._seal = self._key(seal_label, 256, {A.ENCRYPT: True, A.DECRYPT: True}, A.DECRYPT)
            self._length = self._master[A.VALUE_LEN]
        if self._length not in (16, 24, 32):
            raise MasterKeyError(f"TSM master key {label!r} is {self._length} bytes; AES needs 16, 24 or 32")
        self.key_id = key_check_value(self._cmac)
        self.also_known_as: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HsmMasterKey:
        with raised_as(MasterKeyError):
            return cls(*token_settings(os.environ if env is None else env, SETTING))

    @classmethod
    def import_key(cls, key: bytes, env: Mapping[str, str] | None = None) -> HsmMasterKey:
        """Move a file master key into the token (``mcred tsm import-master-key``): the key
        itself for CMAC, and the sealing key derived from it as the file store derives it
        (SP 800-108, label ``mcred-tsm/SEAL``) for GCM, both sensitive and not extractable.
        SEs diversified by the file key then open with the token, its ``key_id`` is the
        file key's, and job secrets the file key sealed open in the token. Refused when the
        token already holds either label."""
        if len(key) not in (16, 24, 32):
            raise MasterKeyError(f"master key is {len(key)} bytes; AES needs 16, 24 or 32")
        with raised_as(MasterKeyError):
            module, token_label, pin = token_settings(os.environ if env is None else env, SETTING)
            p11 = pkcs11_module(SETTING)
            token = open_token(module, token_label, pin)
        A = p11.Attribute  # noqa: N806
        base = {A.CLASS: p11.ObjectClass.SECRET_KEY, A.KEY_TYPE: p11.KeyType.AES, A.TOKEN: True,
                A.PRIVATE: True, A.SENSITIVE: True, A.EXTRACTABLE: False, A.MODIFIABLE: False}
        wanted = ((MASTER_LABEL, bytes(key), {A.SIGN: True}),
                  (SEAL_LABEL, kbkdf_cmac(bytes(key), b"mcred-tsm/SEAL", b"", 32), {A.ENCRYPT: True, A.DECRYPT: True}))
        with token.lock:
            try:
                for label, _, _ in wanted:
                    if list(token.session.get_objects({A.CLASS: p11.ObjectClass.SECRET_KEY, A.LABEL: label})):
                        raise MasterKeyError(f"PKCS#11 token {token_label!r} already holds a key labelled "
                                             f"{label!r}: nothing imported")
                for label, value, usage in wanted:
                    token.session.create_object({**base, A.LABEL: label, A.VALUE: value,
                                                 A.ID: secrets.token_bytes(16), **usage})
            except p11.exceptions.PKCS11Error as exc:
                raise MasterKeyError(f"PKCS#11 token {token_label!r} refused the import: "
                                     f"{type(exc).__name__} {exc}") from exc
        return cls(module, token_label, pin, create=False)

    @classmethod
    def existing(cls, env: Mapping[str, str] | None = None) -> HsmMasterKey | None:
        """The key if the token holds it already, else None: looks, generates nothing (the
        readiness probe and ``mcred doctor``)."""
        with raised_as(MasterKeyError):
            settings = token_settings(os.environ if env is None else env, SETTING)
        try:
            return cls(*settings, create=False)
        except _Absent:
            return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token={self.token_label!r}, label={self.label!r}, key_id={self.key_id})"

    def describe(self) -> str:
        """Where the key is and its non-secret name; asks the token (a live check)."""
        with self._token.lock:
            length = self._call("read", lambda: self._master[self._p11.Attribute.VALUE_LEN])
        return (f"PKCS#11 token {self.token_label!r}, AES-{8 * length} key {self.label!r}, "
                f"key_id {self.key_id}")

    # -- the keys ---------------------------------------------------------------------------

    def _find(self, label: str) -> list:
        A, p11 = self._p11.Attribute, self._p11  # noqa: N806
        return list(self._token.session.get_objects({A.CLASS: p11.ObjectClass.SECRET_KEY,
                                                     A.LABEL: label}))

    def _key(self, label: str, bits: int, usage: dict, needed):  # noqa: ANN001, ANN202
        """The AES key labelled ``label``, generated in the token if there is none. Two
        processes may generate it at once: a generator that then finds another key
        destroys its own (unused) one, so every process ends on the same key, or on none
        (an error; the next attempt generates again). Several keys labelled alike that no
        generation explains are refused, never chosen between."""
        p11, A = self._p11, self._p11.Attribute  # noqa: N806
        found = self._call(f"find {label!r}", lambda: self._find(label))
        if not found and not self._create:
            raise _Absent(label)
        if not found:
            template = {A.TOKEN: True, A.PRIVATE: True, A.SENSITIVE: True, A.EXTRACTABLE: False,
                        A.MODIFIABLE: False, **usage}
            mine = self._call(f"generate AES-{bits} key {label!r}", lambda: self._token.session.generate_key(
                p11.KeyType.AES, bits, label=label, id=secrets.token_bytes(16), store=True,
                capabilities=p11.MechanismFlag(0), template=template))
            found = self._call(f"find {label!r}", lambda: self._find(label))
            if len(found) > 1:  # another process generated one at the same time
                self._call(f"destroy duplicate {label!r}", mine.destroy)
                found = self._call(f"find {label!r}", lambda: self._find(label))
        if len(found) != 1:
            raise MasterKeyError(
                f"{len(found)} AES keys labelled {label!r} on PKCS#11 token {self.token_label!r}"
                + (": created concurrently by another process; try again" if not found else
                   ": keep the one the SEs were diversified with, delete the others"))
        (key,) = found
        if key.key_type != p11.KeyType.AES:
            raise MasterKeyError(f"key {label!r} on the token is {key.key_type.name}, not AES")
        if not key[A.SENSITIVE] or key[A.EXTRACTABLE]:
            raise MasterKeyError(f"key {label!r} on the token is readable outside it "
                                 "(not CKA_SENSITIVE or CKA_EXTRACTABLE): refused")
        if not key[needed]:
            raise MasterKeyError(f"key {label!r} on the token lacks {needed.name}")
        return key

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        return _token_call(self._p11, self.token_label, what, fn)

    def _cmac(self, data: bytes) -> bytes:
        with self._token.lock:
            return self._call(f"CMAC with {self.label!r}", lambda: self._master.sign(
                data, mechanism=self._p11.Mechanism.AES_CMAC))

    # -- MasterKey --------------------------------------------------------------------------

    def se_keys(self, kdd: bytes) -> StaticKeys:
        return se_keyset(lambda label, context, n: kbkdf_counter(self._cmac, label, context, n),
                         kdd, self._length)

    def _gcm(self, nonce: bytes, aad: bytes):  # noqa: ANN202
        return {"mechanism": self._p11.Mechanism.AES_GCM,
                "mechanism_param": self._p11.mechanisms.GCMParams(nonce, bytes(aad), 8 * _TAG)}

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        with self._token.lock:
            return nonce + self._call(f"seal with {self.seal_label!r}", lambda: self._seal.encrypt(
                bytes(plaintext), **self._gcm(nonce, aad)))

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < _NONCE + _TAG:
            raise SealError(f"sealed secrets of {len(sealed)} bytes are too short")
        ex = self._p11.exceptions
        with self._token.lock:
            try:
                return self._seal.decrypt(bytes(sealed[_NONCE:]), **self._gcm(bytes(sealed[:_NONCE]), aad))
            except (ex.GeneralError, ex.EncryptedDataInvalid, ex.EncryptedDataLenRange) as exc:
                # SoftHSM2 answers a failed tag check with CKR_GENERAL_ERROR
                raise SealError("sealed job secrets do not open under this master key "
                                f"({type(exc).__name__})") from exc
            except ex.PKCS11Error as exc:
                raise MasterKeyError(f"PKCS#11 token {self.token_label!r} refused to unseal: "
                                     f"{type(exc).__name__} {exc}") from exc


OCE_LABEL = "mcred-tsm-oce"


class HsmOceKey:
    """The TSM's SCP11a key SK.OCE.ECKA in a PKCS#11 token (specs/tsm.md "First contact"):
    a P-256 pair generated there on first use, the private key sensitive, not extractable,
    usable for key derivation only. :meth:`exchange` is ``CKM_ECDH1_DERIVE`` (no KDF) in the
    token: its result, the shared secret ShSes that SCP11's X9.63 KDF takes, is a session
    object read once and destroyed; the private key never leaves the token."""

    def __init__(self, module: str, token_label: str, pin: str, *, label: str = OCE_LABEL) -> None:
        with raised_as(MasterKeyError):
            self._p11 = pkcs11_module(SETTING)
            self._token: Token = open_token(module, token_label, pin)
        self.token_label, self.label = token_label, label
        from cryptography.hazmat.primitives import serialization
        from pkcs11.util.ec import encode_ec_public_key

        with self._token.lock:
            self._private, public = self._pair()
            self._public = serialization.load_der_public_key(encode_ec_public_key(public))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HsmOceKey:
        with raised_as(MasterKeyError):
            return cls(*token_settings(os.environ if env is None else env, SETTING))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token={self.token_label!r}, label={self.label!r})"

    def public_key(self):  # noqa: ANN201 - ec.EllipticCurvePublicKey
        return self._public

    def _pair(self):  # noqa: ANN202
        p11, A = self._p11, self._p11.Attribute  # noqa: N806

        def find(cls):  # noqa: ANN001, ANN202
            return list(self._token.session.get_objects({A.CLASS: cls, A.LABEL: self.label}))

        private = self._call("find the OCE key", lambda: find(p11.ObjectClass.PRIVATE_KEY))
        if not private:
            from pkcs11.util.ec import encode_named_curve_parameters

            def generate() -> None:
                params = self._token.session.create_domain_parameters(
                    p11.KeyType.EC, {A.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
                params.generate_keypair(label=self.label, store=True, id=secrets.token_bytes(16),
                                        public_template={A.TOKEN: True, A.VERIFY: False},
                                        private_template={A.TOKEN: True, A.PRIVATE: True, A.SENSITIVE: True,
                                                          A.EXTRACTABLE: False, A.DERIVE: True, A.SIGN: False})

            self._call("generate the OCE key (P-256)", generate)
            private = self._call("find the OCE key", lambda: find(p11.ObjectClass.PRIVATE_KEY))
        public = self._call("find the OCE key", lambda: find(p11.ObjectClass.PUBLIC_KEY))
        if len(private) != 1 or len(public) != 1:
            raise MasterKeyError(f"{len(private)} private and {len(public)} public keys labelled {self.label!r} on "
                                 f"PKCS#11 token {self.token_label!r}: keep one pair")
        (key,) = private
        if key.key_type != p11.KeyType.EC or not key[A.SENSITIVE] or key[A.EXTRACTABLE] or not key[A.DERIVE]:
            raise MasterKeyError(f"key {self.label!r} on the token is not a sensitive, unextractable EC key "
                                 "for key derivation: refused")
        return key, public[0]

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        return _token_call(self._p11, self.token_label, what, fn)

    def exchange(self, peer) -> bytes:  # noqa: ANN001 - ec.EllipticCurvePublicKey
        """ECDH(SK.OCE.ECKA, peer), the raw shared secret (its X coordinate)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        p11, A = self._p11, self._p11.Attribute  # noqa: N806
        point = peer.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

        def derive() -> bytes:
            z = self._private.derive_key(p11.KeyType.GENERIC_SECRET, 256, mechanism=p11.Mechanism.ECDH1_DERIVE,
                                         mechanism_param=(p11.KDF.NULL, None, point),
                                         template={A.TOKEN: False, A.SENSITIVE: False, A.EXTRACTABLE: True})
            try:
                return bytes(z[A.VALUE])
            finally:
                z.destroy()

        with self._token.lock:
            return self._call("derive an ECDH secret with the OCE key", derive)
