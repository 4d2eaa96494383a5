"""Document-signer revocation for the reader: the IACA's CRL (RFC 5280 5, 6.3).

ISO/IEC 18013-5:2021 Annex B: the DS certificate names the IACA's CRL in its
cRLDistributionPoints. :class:`DsCrlCheck` fetches that CRL over HTTP, checks that the
IACA of the verified chain issued and signed it and that it is current, keeps it until its
nextUpdate but at most ``max_age`` (default one hour: an IACA CRL is commonly valid for a day
or more, and a document signer's revocation, rare but urgent, should not wait that long;
the keeping is :class:`reader.crl_cache.CrlCache`, the relying party's rules, keyed by URL
and IACA and holding only CRLs verified with that IACA), and reports one named check, ``ds_revocation``: the MSO is refused when the
DS certificate's serial is listed (any reason: an MSO is only as good as its signer).
Fail closed: no CRL, an unverifiable one or one past its nextUpdate fails the check with
the reason; so does one that does not speak for the certificate (its issuingDistributionPoint)
or cannot say that it is not listed (no nextUpdate, onlySomeReasons: :func:`protocols.crl.incomplete`),
unless it lists the certificate: an entry is believed from any CRL the IACA signed that is
usable (:func:`protocols.crl.refusal`). It plugs into :class:`reader.pipeline.ReaderPipeline` as one of its ``extra_checks``,
and its :meth:`DsCrlCheck.signer_revoked` as the pipeline's ``signer_revocation``: the
status-list signer, also certified by the IACA, is looked up on the same CRL at every status
check, so a list signed by a revoked signer fails ``status_list_signature``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from protocols import certs
from protocols import crl as ca_crl
from protocols.mdoc import Check, DocumentContext
from reader.crl_cache import CrlCache
from reader.fetch import IACA_CRL_MAX_BYTES, FetchError, LazyClient, fetch

if TYPE_CHECKING:
    import httpx

DS_REVOCATION = "ds_revocation"
SKEW = ca_crl.SKEW
#: A kept CRL is fetched again after this even when its nextUpdate is later (or absent:
#: RFC 5280 requires one).
DEFAULT_MAX_AGE = dt.timedelta(hours=1)
MAX_CRL_BYTES = IACA_CRL_MAX_BYTES

#: ``fetch(url) -> DER/PEM bytes``; raises :class:`CrlFetchError`.
CrlFetcher = Callable[[str], bytes]


class CrlFetchError(FetchError):
    """The CRL could not be fetched (network, HTTP status, size)."""


class HttpCrlFetcher:
    def __init__(self, client: httpx.Client | None = None, *, timeout: float = 5.0,
                 max_bytes: int = MAX_CRL_BYTES) -> None:
        self._client = LazyClient(client, timeout=timeout)  # made at the first fetch
        self.max_bytes = max_bytes

    @property
    def client(self) -> httpx.Client:
        return self._client.get()

    def __call__(self, url: str) -> bytes:
        try:
            r = fetch(self.client, "GET", url, max_bytes=self.max_bytes,
                      headers={"Accept": "application/pkix-crl"})
        except FetchError as exc:
            raise CrlFetchError(str(exc)) from exc
        if r.status != 200:
            raise CrlFetchError(f"GET {url}: HTTP {r.status}")
        return r.body


class DsCrlCheck:
    """``ds_revocation`` for each document: callable on a :class:`DocumentContext`."""

    def __init__(self, fetcher: CrlFetcher | None = None, *,
                 max_age: dt.timedelta = DEFAULT_MAX_AGE, size: int = 64) -> None:
        if max_age < dt.timedelta(0):
            raise ValueError("max_age must not be negative")
        self.fetcher = fetcher or HttpCrlFetcher()
        self.max_age = max_age
        #: verified CRLs by (URL, SHA-256 of the IACA they verified with): reader.crl_cache
        self.crls = CrlCache(max_age=max_age, size=size)

    @property
    def fetches(self) -> int:
        return self.crls.fetches

    def __call__(self, ctx: DocumentContext) -> Check:
        chain = ctx.ds_chain
        if chain is None:
            return Check(DS_REVOCATION, False, "not checked: no trusted DS chain", code="not_checked")
        return self.check(chain.leaf, chain.anchor, ctx.now)

    def check(self, ds: x509.Certificate, iaca: x509.Certificate, now: dt.datetime) -> Check:
        url = certs.crl_url(ds)
        if url is None:
            return Check(DS_REVOCATION, False, "the DS certificate names no CRL distribution point",
                         code="unavailable")
        got = self._entry(ds, url, iaca, now)
        if isinstance(got, str):
            return Check(DS_REVOCATION, False, got, code="unavailable")  # no current CRL: ask again later
        entry, crl = got
        if entry is None:
            return Check(DS_REVOCATION, True, f"DS serial {ds.serial_number:x} not on the IACA CRL "
                         f"({url}, next update {_text(crl.next_update_utc)})")
        return Check(DS_REVOCATION, False, f"DS serial {ds.serial_number:x} {_revoked(entry, url)}",
                     code="ds_revoked")

    def signer_revoked(self, signer: x509.Certificate, iaca: x509.Certificate, now: dt.datetime) -> str | None:
        """Why another certificate of the IACA (a status-list signer) must not be trusted:
        listed on the IACA CRL, or no current CRL to be had (fail closed); ``None`` when the
        CRL it names does not list it. For :class:`reader.pipeline.ReaderPipeline`'s
        ``signer_revocation``."""
        url = certs.crl_url(signer)
        if url is None:
            return f"serial {signer.serial_number:x} names no CRL distribution point"
        got = self._entry(signer, url, iaca, now)
        if isinstance(got, str):
            return f"serial {signer.serial_number:x}: {got}"
        entry, _crl = got
        return None if entry is None else f"serial {signer.serial_number:x} {_revoked(entry, url)}"

    def _entry(self, cert: x509.Certificate, url: str, iaca: x509.Certificate, now: dt.datetime
               ) -> tuple[x509.RevokedCertificate | None, x509.CertificateRevocationList] | str:
        """``cert``'s entry on the IACA CRL at ``url`` (None: the CRL says it is not listed)
        and the CRL, or why there is no answer: no usable CRL, one that does not speak for
        ``cert`` (:func:`protocols.crl.scope`), or one that does not list it but cannot say
        it is not revoked (:func:`protocols.crl.incomplete`)."""
        got = self._crl(url, iaca, now)
        if isinstance(got, str):
            return got
        why = ca_crl.scope(cert, got)
        if why:
            return f"IACA CRL at {url}: {why}"
        entry = got.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            why = ca_crl.incomplete(got)
            if why:
                return f"IACA CRL at {url}: {why}"
        return entry, got

    def _crl(self, url: str, iaca: x509.Certificate, now: dt.datetime
             ) -> x509.CertificateRevocationList | str:
        """The verified, current, usable CRL at ``url`` (:func:`protocols.crl.refusal`: what
        the cache keeps), or why there is none."""

        def fetch_verified(_key: object) -> x509.CertificateRevocationList | str:
            try:
                data = self.fetcher(url)
            except CrlFetchError as exc:
                return f"IACA CRL unavailable: {exc}"
            try:
                crl = ca_crl.load(data)
            except ca_crl.CrlError as exc:
                return f"IACA CRL at {url} does not parse: {exc}"
            why = ca_crl.refusal(crl, iaca, now, what="the IACA")
            return f"IACA CRL at {url}: {why}" if why else crl

        return self.crls.get((url, iaca.fingerprint(hashes.SHA256())), now, fetch_verified)


def _revoked(entry: x509.RevokedCertificate, url: str) -> str:
    return f"{ca_crl.revocation_text(entry)} (IACA CRL {url})"


_text = ca_crl.text
