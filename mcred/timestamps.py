"""Composition of time-stamping: the installation's TSA (:mod:`issuer.tsa`), and a signer's
way of getting a token from it or from any RFC 3161 TSA over HTTP.

A :class:`Stamper` is what a signing flow holds: ``respond(request_der) -> response_der``,
in-process (the installation's TSA) or over HTTP (``POST`` as
``application/timestamp-query``, RFC 3161 3.4). :meth:`Stamper.stamp` asks for a token over
some bytes (a CMS signature value) and checks the answer before it is embedded: the
imprint and the nonce always, the TSA's chain when roots are given.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from cryptography import x509

from issuer.tsa import TimeStampAuthority
from mcred.context import Context
from mcred.db import setup_lock
from protocols import tsp
from protocols.jpki.cms import add_signature_timestamp, signature_value
from reader.fetch import FetchError, fetch

#: the longest TimeStampResp a signer reads (a token with a few certificates is ~2-5 KB)
MAX_RESPONSE_BYTES = 64 * 1024
TIMEOUT = 10.0

_TSAS: dict[tuple, TimeStampAuthority] = {}
_LOCK = threading.Lock()


def tsa_crl_url(ctx: Context) -> str:
    """The CRL distribution point the units of the TSA's first root generation name."""
    return f"{ctx.public_url}/tsa/root.crl"


def tsa_registry(ctx: Context) -> TimeStampAuthority:
    """The installation's TSA over its registry alone, for what reads it (the root listing,
    ``issuer.tsa_listing``): no key store (it is never opened), nothing made on first use."""
    return TimeStampAuthority(ctx.sessions, None, crl_url=tsa_crl_url(ctx), **ctx.clock_option())


def time_stamp_authority(ctx: Context) -> TimeStampAuthority:
    """The installation's TSA (one per data directory and database): its root and unit made
    on first use, by one process at a time."""
    key = ctx.clocked((str(ctx.home), ctx.database))
    if key not in _TSAS:
        with _LOCK:
            if key not in _TSAS:
                authority = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=tsa_crl_url(ctx),
                                               **ctx.clock_option())
                with setup_lock(ctx.engine, ctx.home):  # two workers must not both make the root
                    authority.unit()
                _TSAS[key] = authority
    return _TSAS[key]


#: How long after a time-stamp a revocation must come to be told apart from one before it:
#: revocation times are whole seconds (RFC 5280, RFC 6960) and the TSA promises ±1 s.
CLEAR_OF_STAMP_SECONDS = 2.1


def wait_clear_of_stamp(stamped_at: float) -> None:
    """Sleep until :data:`CLEAR_OF_STAMP_SECONDS` have passed since ``stamped_at`` (a
    ``time.monotonic()`` reading taken at the time-stamp): what a drill does before it
    revokes a certificate whose time-stamped signature must stay valid."""
    time.sleep(max(0.0, CLEAR_OF_STAMP_SECONDS - (time.monotonic() - stamped_at)))


class TimestampError(Exception):
    """No usable time-stamp: the TSA unreachable, refusing, or answering a wrong token."""


@dataclass(frozen=True)
class Stamper:
    """Where tokens come from: ``respond`` takes a DER TimeStampReq and gives the DER
    TimeStampResp; ``roots``, when given, are the TSA roots its tokens must chain to."""

    respond: Callable[[bytes], bytes]
    where: str
    roots: tuple[x509.Certificate, ...] = ()

    @classmethod
    def local(cls, ctx: Context) -> Stamper:
        """The installation's own TSA, in-process, its roots trusted."""
        authority = time_stamp_authority(ctx)
        return cls(authority.respond, "the installation's TSA", tuple(authority.roots()))

    @classmethod
    def http(cls, url: str, *, roots: Sequence[x509.Certificate] = (),
             client: httpx.Client | None = None) -> Stamper:
        """An RFC 3161 TSA at ``url``."""
        def respond(request: bytes) -> bytes:
            try:
                answer = fetch(client, "POST", url, max_bytes=MAX_RESPONSE_BYTES, timeout=TIMEOUT,
                               content=request, headers={"Content-Type": tsp.QUERY_MEDIA_TYPE})
            except FetchError as exc:
                raise TimestampError(f"TSA {url} unreachable: {exc}") from None
            if answer.status != 200:
                raise TimestampError(f"TSA {url} answered HTTP {answer.status}")
            return answer.body

        return cls(respond, url, tuple(roots))

    def stamp(self, data: bytes, hash_algorithm: str = "sha256") -> bytes:
        """A DER TimeStampToken over ``data``, checked as :meth:`exchange` checks it."""
        return self.exchange(data, hash_algorithm)[1]

    def exchange(self, data: bytes, hash_algorithm: str = "sha256") -> tuple[bytes, bytes, dt.datetime]:
        """Ask for a time-stamp of ``data`` (its hash and a random 64-bit nonce): the DER
        TimeStampResp, its token and genTime, checked: granted, the imprint of ``data``, the
        nonce sent, and (with :attr:`roots`) signed by a TSA under them."""
        nonce = secrets.randbits(64)
        request = tsp.build_request(tsp.digest(hash_algorithm, data), hash_algorithm, nonce=nonce)
        try:
            reply = self.respond(request)
            token = tsp.token_of_response(reply)
            if self.roots:
                gen_time = tsp.verify_token(token, data=data, roots=self.roots, nonce=nonce).gen_time
            else:
                gen_time = tsp.check_imprint(token, data=data, nonce=nonce)
        except tsp.TspError as exc:
            raise TimestampError(f"{self.where}: {exc}") from None
        return reply, token, gen_time

    def stamp_signature(self, cms: bytes) -> bytes:
        """A detached CMS signature with a signature time-stamp added (CAdES-T)."""
        return add_signature_timestamp(cms, self.stamp(signature_value(cms)))


class ValidationDataError(Exception):
    """The validation data of a signature could not be had (a responder or CRL unreachable
    or refusing); the message says which."""


def gather_validation_data(certificate: x509.Certificate, stamps: Sequence[tuple[bytes, bytes]], *,
                           roots: Sequence[x509.Certificate], tsa_roots: Sequence[x509.Certificate] = (),
                           client: httpx.Client | None = None) -> tuple[list[bytes], list[bytes]]:
    """What a relying party needs to judge a signature by ``certificate`` later with no
    network: the certificate's OCSP answer, asked now of its responder and verified as a
    relying party verifies it, and for each of ``stamps`` (a token and the bytes it stamps)
    that verifies under ``tsa_roots``, its TSA unit's CRL. Returns (DER OCSP responses, DER
    CRLs); raises :class:`ValidationDataError` naming what could not be had."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from protocols import certs
    from protocols.jpki.relying_party import Check, find_issuer
    from reader.relying_party import fetch_crl, ocsp_answer

    root = find_issuer(certificate, roots)
    if root is None:
        raise ValidationDataError("the signing certificate's root is not among the given roots")
    answer = ocsp_answer(certificate, root, dt.datetime.now(dt.UTC), client=client)
    if isinstance(answer, Check):
        raise ValidationDataError(answer.reason)
    crls = []
    for token, data in stamps:
        try:
            stamp = tsp.verify_token(token, data=data, roots=tsa_roots) if tsa_roots else None
        except tsp.TspError:
            continue
        where = certs.crl_url(stamp.tsa_certificate) if stamp else None
        if where:
            crl = fetch_crl(where, client)
            if isinstance(crl, Check):
                raise ValidationDataError(crl.reason)
            crls.append(crl.public_bytes(Encoding.DER))
    return [answer.der], crls


def add_validation_data(cms: bytes, content: bytes, *, roots: Sequence[x509.Certificate],
                        tsa_roots: Sequence[x509.Certificate] = (), client: httpx.Client | None = None) -> bytes:
    """``cms`` (a detached signature over ``content``) with its validation data
    (:func:`gather_validation_data`) in the SignedData's ``crls`` field (the CAdES-LT idea;
    ``mcred jpki verify --revocation embedded`` reads it)."""
    from protocols.jpki.cms import add_revocation_info, verify_detached_signature

    sig = verify_detached_signature(cms, content)
    ocsp_responses, crls = gather_validation_data(
        sig.signer_certificate, [(token, sig.signature_value) for token in sig.timestamp_tokens],
        roots=roots, tsa_roots=tsa_roots, client=client)
    return add_revocation_info(cms, ocsp_responses=ocsp_responses, crls=crls)


def add_xml_validation_data(document: bytes, *, roots: Sequence[x509.Certificate],
                            tsa_roots: Sequence[x509.Certificate] = (), client: httpx.Client | None = None) -> bytes:
    """A XAdES-T ``document`` with its validation data (:func:`gather_validation_data`) in
    its unsigned properties' xades:RevocationValues: XAdES B-LT
    (:func:`protocols.jpki.xmlsig.add_revocation_values`)."""
    from protocols.jpki.xmlsig import XmlSignatureError, add_revocation_values, verify_enveloped

    try:
        signed = verify_enveloped(document)
    except XmlSignatureError as exc:
        raise ValidationDataError(f"the signature: {exc}") from None
    ocsp_responses, crls = gather_validation_data(signed.signer_certificate, signed.timestamps, roots=roots,
                                                  tsa_roots=tsa_roots, client=client)
    return add_revocation_values(document, ocsp_responses=ocsp_responses, crls=crls)
