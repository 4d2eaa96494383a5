"""COSE_Sign1 done by hand on ``cryptography`` (RFC 9052 §4.2, Sig_structure §4.4).

ISO/IEC 18013-5 uses untagged COSE_Sign1 for issuerAuth (§9.1.2.4), deviceSignature
(§9.1.3.6) and readerAuth (§9.1.4), with detached payloads for the latter two.
The protected header is kept as the exact bytes received: verification never re-encodes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor
from protocols.cose._headers import (
    TAG_SIGN1,
    decode_protected,
    encode_protected,
    header_alg,
    header_x5chain,
    split_array,
)
from protocols.cose.algorithms import HEADER_ALG, CoseSigner, ecdsa_verify_raw
from protocols.cose.errors import CoseError, CoseSignatureError

_SIG1_HEAD = b"\x84" + cbor.dumps("Signature1")


def sig_structure(protected_bytes: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """``Sig_structure = ["Signature1", body_protected, external_aad, payload]`` (§4.4).

    Written head by head: the bytes ``cbor.dumps`` gives for that array (definite lengths,
    shortest heads), without the encoder's per-call setup."""
    if type(protected_bytes) is not bytes or type(external_aad) is not bytes or type(payload) is not bytes:
        return cbor.dumps(["Signature1", protected_bytes, external_aad, payload])
    return b"".join((
        _SIG1_HEAD, cbor.bstr_head(len(protected_bytes)), protected_bytes,
        cbor.bstr_head(len(external_aad)), external_aad, cbor.bstr_head(len(payload)), payload,
    ))


@dataclass(frozen=True)
class Sign1:
    protected_bytes: bytes
    protected: dict = field(hash=False)
    unprotected: dict = field(hash=False)
    payload: bytes | None
    signature: bytes

    @staticmethod
    def create(
        signer: CoseSigner,
        payload: bytes | None,
        *,
        detached: bytes | None = None,
        protected: dict | None = None,
        unprotected: dict | None = None,
        external_aad: bytes = b"",
    ) -> Sign1:
        """Sign ``payload`` (carried) or ``detached`` (payload nil) with ``signer``."""
        if (payload is None) == (detached is None):
            raise CoseError("Sign1.create: give exactly one of payload and detached")
        headers = {HEADER_ALG: signer.alg}
        headers.update(protected or {})
        if headers[HEADER_ALG] != signer.alg:
            raise CoseError(f"protected alg {headers[HEADER_ALG]} differs from signer alg {signer.alg}")
        protected_bytes = encode_protected(headers)
        content = payload if payload is not None else detached
        signature = signer.sign(sig_structure(protected_bytes, external_aad, content))
        return Sign1._of(protected_bytes, headers, dict(unprotected or {}), payload, bytes(signature))

    @classmethod
    def _of(cls, protected_bytes: bytes, protected: dict, unprotected: dict, payload: bytes | None,
            signature: bytes) -> Sign1:
        """The instance from fields already checked, without the frozen dataclass's ``__init__``
        (one ``object.__setattr__`` per field): every issuing and verification makes some."""
        obj = object.__new__(cls)
        obj.__dict__.update(protected_bytes=protected_bytes, protected=protected, unprotected=unprotected,
                            payload=payload, signature=signature)
        return obj

    @staticmethod
    def decode(data: bytes | list | tuple | cbor.CBORTag) -> Sign1:
        """From encoded bytes or the decoded array, untagged or tagged 18."""
        protected_bytes, protected, unprotected, payload, signature = split_array(
            data, TAG_SIGN1, "COSE_Sign1"
        )
        return Sign1._of(protected_bytes, protected, unprotected, payload, signature)

    def to_cbor_array(self) -> list:
        return [self.protected_bytes, self.unprotected, self.payload, self.signature]

    def encode(self, *, tag: bool = False) -> bytes:
        array = self.to_cbor_array()
        return cbor.dumps(cbor.CBORTag(TAG_SIGN1, array) if tag else array)

    @property
    def alg(self) -> int | None:
        return header_alg(self.protected)

    @property
    def x5chain(self) -> list[bytes]:
        return header_x5chain(self.protected, self.unprotected, "COSE_Sign1")

    def to_be_signed(self, *, detached: bytes | None = None, external_aad: bytes = b"") -> bytes:
        if self.payload is not None and detached is not None:
            raise CoseSignatureError("COSE_Sign1 carries a payload: do not pass a detached one")
        content = self.payload if self.payload is not None else detached
        if content is None:
            raise CoseSignatureError("COSE_Sign1 payload is detached (nil): the detached content is needed")
        return sig_structure(self.protected_bytes, external_aad, content)

    def verify(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        detached: bytes | None = None,
        external_aad: bytes = b"",
    ) -> None:
        """Raise :class:`CoseSignatureError` unless the signature verifies with ``public_key``."""
        alg = self.alg
        if alg is None:
            raise CoseSignatureError("COSE_Sign1 has no algorithm in its protected header")
        _verify_tbs(alg, public_key, self.signature, self.to_be_signed(detached=detached, external_aad=external_aad))


def _verify_tbs(alg: int, public_key: ec.EllipticCurvePublicKey, signature: bytes, tbs: bytes) -> None:
    """Verify ``signature`` over the Sig_structure ``tbs``; any other COSE error (a key of the
    wrong type or curve) is reported as :class:`CoseSignatureError`, as a Sign1's
    verification promises. ``ecdsa_verify_raw`` makes the same checks, with the same errors,
    as ``ecdsa_verify``."""
    try:
        ecdsa_verify_raw(alg, public_key, signature, tbs)
    except CoseSignatureError:
        raise
    except CoseError as exc:
        raise CoseSignatureError(str(exc)) from exc


__all__ = ["Sign1", "decode_protected", "sig_structure", "verify_sign1"]


_BSTR_HEADS = tuple(cbor.bstr_head(n) for n in range(256))


def verify_sign1(sign1: Sign1, public_key: ec.EllipticCurvePublicKey, *, detached: bytes | None = None) -> None:
    """``sign1.verify(public_key, detached=detached)``: the same checks and errors, with the
    Sig_structure (empty external_aad) written in one join and ``ecdsa_verify_raw``; any
    unusual input goes to :meth:`Sign1.verify` itself."""
    protected, payload = sign1.protected, sign1.payload
    alg = protected.get(HEADER_ALG) if type(protected) is dict else None
    protected_bytes = sign1.protected_bytes
    content = payload if detached is None else detached
    if (type(alg) is not int or type(content) is not bytes or (payload is not None and detached is not None)
            or type(protected_bytes) is not bytes or len(protected_bytes) >= 256):
        return sign1.verify(public_key, detached=detached)
    n = len(content)
    tbs = b"".join((_SIG1_HEAD, _BSTR_HEADS[len(protected_bytes)], protected_bytes, b"\x40",
                    _BSTR_HEADS[n] if n < 256 else cbor.bstr_head(n), content))
    return _verify_tbs(alg, public_key, sign1.signature, tbs)
