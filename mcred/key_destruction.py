"""One door to destroy any key of the issuer's (``POST /trust/key-destructions``): the mdoc
PKI's signers, the JPKI roots and their OCSP responders, the TSA's root and units, each
decided by its own PKI (what duty still needs the key: specs/issuer-keys.md, "A signer's key
destroyed"). Every key has a label unique across the issuer's registry (``issuer_keys``), so
a label names its PKI by its prefix; a certificate serial is looked up in the mdoc PKI, then
the JPKI, then the TSA; an IACA's number is the mdoc PKI's.
"""

from __future__ import annotations

from issuer.key_destruction import KeyDestructionResult
from mcred.context import Context


def destroy_key(ctx: Context, ref: str, *, actor: str) -> KeyDestructionResult:
    """Destroy the key ``ref`` names when no duty needs it (each PKI's refusal otherwise,
    nothing changed); :class:`issuer.mdoc.errors.UnknownSigner` when no PKI knows it."""
    from issuer.jpki.errors import UnknownJpkiKey
    from issuer.mdoc.errors import UnknownSigner
    from issuer.tsa import TimeStampAuthority, UnknownTsaKey
    from mcred.jpki_flow import jpki_issuer
    from mcred.mdoc_flow import mdoc_service
    from mcred.timestamps import time_stamp_authority

    text = ref.strip()
    if text.startswith("jpki-"):
        return jpki_issuer(ctx).destroy_key(text, actor=actor)
    if text.startswith("tsa-"):
        return time_stamp_authority(ctx).destroy_key(text, actor=actor)
    try:
        return mdoc_service(ctx).destroy_key(text, actor=actor)
    except UnknownSigner:
        if text.isdigit() and len(text) <= 4:  # an IACA's number: the mdoc PKI's alone
            raise
    try:
        return jpki_issuer(ctx).destroy_key(text, actor=actor)
    except UnknownJpkiKey:
        pass
    try:  # looked up without making the TSA's root and unit, as its first use would
        return TimeStampAuthority(ctx.sessions, ctx.keystore).destroy_key(text, actor=actor)
    except UnknownTsaKey:
        raise UnknownSigner(f"no key of the issuer with label, serial or IACA number {ref!r} (mcred mdoc iaca "
                            "list, mcred mdoc ds list, mcred status-list signer list, mcred mdoc vical-signer "
                            "list show the mdoc signers; jpki-sign-root-gN, jpki-auth-root-gN-ocsp-M, tsa-unit-N, "
                            "tsa-root-gN the others)") from None
