"""Sign a PDF with the phone's JPKI signing certificate (PAdES, ETSI EN 319 142-1 baseline B-B,
B-T, B-LT or B-LTA: the CMS SignedData inside the PDF, subfilter ETSI.CAdES.detached,
signing-certificate-v2),
the key in the SE: the way e-contract services have a holder sign with 署名用電子証明書.

pyHanko writes the PDF (an incremental update: the signed original stays byte for byte, a
signature field, /ByteRange over all but the signature) and builds the CMS; the SE signs the
hash of its signed attributes through the JPKI-AP (COMPUTE DIGITAL SIGNATURE over the
DigestInfo), as :func:`mcred.jpki_flow.sign_with_se` does for a detached signature. With
``ltv``, the certificate chain and the OCSP answer for the signing certificate are fetched
now and embedded in the PDF's document security store, so the signature can be checked
later without asking the issuer. With a ``stamper`` (:mod:`mcred.timestamps`), a signature
time-stamp goes into the CMS (B-T; B-LT with ``ltv``), and with ``lta`` a document
time-stamp over the whole file follows the validation data (B-LTA). Only the signing
certificate signs documents: the user-authentication certificate proves who logs in.

Needs the ``pdf`` extra (``pip install 'mcred[pdf]'``): pyHanko.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mcred.jpki_flow import SeSigner, se_signer
from mcred.timestamps import Stamper

#: hex digits set aside in /Contents for the CMS (4 KiB of DER; the CMS is about 2.5 KB: the
#: signing certificate, the signed attributes and the signature, P-384 or RSA-2048)
CMS_ROOM = 8192
#: more room for a signature time-stamp (4 KiB more of DER: the TSA's token with its
#: certificates is ~1.5-2.5 KB)
TIMESTAMP_ROOM = 8192
#: what a failure to gather validation data most often means in the lab
_FETCHED = ("the validation data is fetched from the OCSP and CRL addresses in the certificates: "
            "is the issuer's service (mcred serve) answering at the installation's public URL?")
#: the longest ECDSA P-384 signature in DER (two 49-byte INTEGERs), and an RSA-2048 one
_SIGNATURE_SIZE = {"sha384": 104, "sha256": 256}


class PdfSigningError(ValueError):
    """The PDF cannot be signed as asked: not a PDF, encrypted, the field taken, validation
    data not to be had; the message says which."""


def require() -> None:
    """Raise :class:`PdfSigningError` naming the extra when pyHanko is not installed."""
    try:
        import pyhanko  # noqa: F401
    except ImportError:
        raise PdfSigningError("PDF signatures need pyHanko: pip install 'mcred[pdf]'") from None


def blank_pdf(pages: int = 1, *, stream: bytes = b"") -> bytes:
    """A PDF of ``pages`` empty A4 pages, written by pyHanko, for the demo, the tests and the
    benchmarks to sign; ``stream``: bytes carried in the first page's /PieceInfo (a
    contract's attachments, by size)."""
    require()
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    writer = PdfFileWriter()
    for n in range(pages):
        page = generic.DictionaryObject({
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
        })
        if stream and n == 0:
            page[generic.NameObject("/PieceInfo")] = writer.add_object(generic.StreamObject(stream_data=stream))
        writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _pyhanko_signer(se: SeSigner):  # noqa: ANN202 - a pyhanko.sign.signers.Signer
    from asn1crypto import algos
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    class _SeSigner(signers.Signer):
        """pyHanko's signer over the SE: asked for the signature of the signed attributes."""

        def __init__(self) -> None:
            mechanism = "sha256_rsa" if se.hash_name == "sha256" else "sha384_ecdsa"
            super().__init__(signing_cert=asn1_x509.Certificate.load(se.certificate_der),
                             cert_registry=SimpleCertificateStore(),
                             signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": mechanism}))

        async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
            if digest_algorithm != se.hash_name:
                raise PdfSigningError(f"the SE's key signs over {se.hash_name}, not {digest_algorithm}")
            return bytes(_SIGNATURE_SIZE[se.hash_name]) if dry_run else se.sign(data)

    return _SeSigner()


def _pyhanko_timestamper(stamper: Stamper):  # noqa: ANN202 - a pyhanko TimeStamper
    from asn1crypto import tsp as asn1_tsp
    from pyhanko.sign.timestamps.api import TimeStamper

    class _Stamper(TimeStamper):
        """pyHanko's time-stamper over a :class:`mcred.timestamps.Stamper` (in-process or HTTP)."""

        async def async_request_tsa_response(self, req: asn1_tsp.TimeStampReq) -> asn1_tsp.TimeStampResp:
            return asn1_tsp.TimeStampResp.load(stamper.respond(req.dump()))

    return _Stamper()


def _validation_context(roots: Sequence[x509.Certificate]):  # noqa: ANN202 - pyhanko_certvalidator's
    """What pyHanko gathers validation data with: ``roots`` trusted, fetching on, a
    revocation answer that cannot be had an error. The validation time is fixed when the
    context is made; an OCSP answer produced after it (a busy responder, a slow network, a
    responder's clock a little ahead) is taken as current within :data:`SKEW_TOLERANCE`,
    OpenSSL's default (``openssl ocsp -validity_period``), where pyHanko's 1 s refused it."""
    import datetime as dt

    from asn1crypto import x509 as asn1_x509
    from pyhanko_certvalidator import ValidationContext

    return ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in roots],
        allow_fetching=True, revocation_mode="hard-fail", time_tolerance=dt.timedelta(seconds=SKEW_TOLERANCE))


#: seconds of clock difference allowed between this signer and the OCSP responder whose
#: answer goes into the PDF (OpenSSL's default for an OCSP answer's times: 5 minutes)
SKEW_TOLERANCE = 300


def sign_pdf_with_se(transmit, pin: bytes, pdf: bytes, *, field: str | None = None,  # noqa: ANN001
                     reason: str | None = None, location: str | None = None,
                     ltv_roots: Sequence[x509.Certificate] | None = None,
                     stamper: Stamper | None = None, lta: bool = False) -> bytes:
    """``pdf`` signed by the SE's signing key: the signed PDF's bytes. ``field``: the new
    signature field's name (default ``Signature<n>``, the next free); ``reason`` and
    ``location`` go into the signature dictionary; ``ltv_roots``: embed the chain to one of
    these JPKI roots and the OCSP answer (fetched now from the certificate's responder);
    ``stamper``: a signature time-stamp from that TSA in the CMS (PAdES B-T; with
    ``ltv_roots``, B-LT), so that the signature is judged at that time later, after the
    certificate was revoked or expired; ``lta`` (with both): a document time-stamp over the
    whole file after the validation data (PAdES B-LTA), which a later time-stamp can renew.
    Raises :class:`PdfSigningError`, or the SE's errors (:class:`mcred.jpki_flow.SeError`,
    :class:`mcred.jpki_flow.SecretFormatError`)."""
    require()
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    from reader.jpki_pdf import is_pdf, refresh_asn1_name_maps

    if not is_pdf(pdf):
        raise PdfSigningError("not a PDF (no %PDF- header)")
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on a damaged file
        raise PdfSigningError(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from None
    if writer.prev.encrypted:
        raise PdfSigningError("the PDF is encrypted: decrypt it first")
    taken = {name for name, _value, _ref in fields.enumerate_sig_fields(writer.prev)}
    if field is None:
        field = next(f"Signature{n}" for n in range(1, len(taken) + 2) if f"Signature{n}" not in taken)
    elif field in taken:
        raise PdfSigningError(f"the PDF has a signature field {field!r} already: choose another --field")
    if lta and (ltv_roots is None or stamper is None):
        raise PdfSigningError("PAdES B-LTA needs the validation data (--ltv) and a time-stamp (--timestamp or --tsa)")
    se = se_signer(transmit, "sign", pin)
    refresh_asn1_name_maps()  # pyHanko's names, whatever this process looked up before
    context = None
    if ltv_roots is not None:
        context = _validation_context((*ltv_roots, *(stamper.roots if stamper else ())))
    meta = signers.PdfSignatureMetadata(
        field_name=field, md_algorithm=se.hash_name, subfilter=fields.SigSeedSubFilter.PADES, reason=reason,
        location=location, embed_validation_info=context is not None, validation_context=context,
        use_pades_lta=lta)
    try:
        # room for the CMS set aside up front: pyHanko otherwise builds it twice, once to size it
        out = signers.PdfSigner(meta, signer=_pyhanko_signer(se),
                                timestamper=_pyhanko_timestamper(stamper) if stamper else None
                                ).sign_pdf(writer, bytes_reserved=CMS_ROOM + (TIMESTAMP_ROOM if stamper else 0))
    except PdfSigningError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SE's errors pass through below
        from mcred.jpki_flow import SecretFormatError, SeError

        if isinstance(exc, SeError | SecretFormatError):
            raise
        if stamper is not None and type(exc).__name__ in ("TimestampRequestError", "TimestampError"):
            raise PdfSigningError(f"no time-stamp from {stamper.where}: {exc}") from None
        if context is None:
            raise PdfSigningError(f"the PDF cannot be signed: {type(exc).__name__}: {exc}") from None
        raise PdfSigningError(f"the PDF's validation data (chain, OCSP) cannot be had: {type(exc).__name__}: {exc} "
                              f"({_FETCHED})") from None
    return out.getvalue()


def sign_pdf_file(phone_id: str, pin: bytes, pdf: bytes, home: Path | None = None, **options) -> bytes:
    """Open the phone's SE (wallet_sim) and sign ``pdf`` (:func:`sign_pdf_with_se`)."""
    import wallet_sim

    se = wallet_sim.open_secure_element(phone_id, home)
    return sign_pdf_with_se(se.transmit, pin, pdf, **options)


def timestamp_pdf(pdf: bytes, stamper: Stamper, *, trust_roots: Sequence[x509.Certificate]) -> bytes:
    """``pdf`` with a document time-stamp added over the whole file (PAdES B-LTA). When it
    has one already, the validation data of the last one (the TSA's chain and revocation
    data, fetched now) goes into the document security store first: the renewal an archive
    makes before that time-stamp's TSA certificate ends. ``trust_roots``: the roots the
    validation data is gathered up to (the JPKI roots and the TSA's). Raises
    :class:`PdfSigningError`."""
    require()
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.signers.pdf_signer import PdfTimeStamper

    from reader.jpki_pdf import is_pdf, refresh_asn1_name_maps

    if not is_pdf(pdf):
        raise PdfSigningError("not a PDF (no %PDF- header)")
    refresh_asn1_name_maps()
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        if reader.encrypted:
            raise PdfSigningError("the PDF is encrypted: decrypt it first")
        context = _validation_context(trust_roots)
        stamps = PdfTimeStamper(_pyhanko_timestamper(stamper))
        if reader.embedded_timestamp_signatures:
            return stamps.update_archival_timestamp_chain(reader, context, in_place=False).getvalue()
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        return stamps.timestamp_pdf(writer, "sha256", validation_context=context).getvalue()
    except PdfSigningError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds (a damaged file, a TSA refusing)
        raise PdfSigningError(f"the PDF cannot be time-stamped: {type(exc).__name__}: {exc} ({_FETCHED})") from None
