"""VICAL signer revocation for the reader: the VICAL CA's CRL (RFC 5280 5, 6.3).

A VICAL (ISO/IEC 18013-5 Annex C.1.7) is trusted for its signer's chain to an anchor the
reader holds for VICALs; a VICAL signer's key in other hands could sign a VICAL of any IACA.
Annex C's VICAL signer certificate profile names a CRL distribution point, as the document
signer's does: :class:`VicalSignerCheck` fetches the CRL the signer's certificate names
(over HTTP, with :class:`reader.ds_crl.HttpCrlFetcher`: bounded in size and time, no
redirect), checks that the VICAL CA that certified the signer issued and signed it and that
it is current (:func:`protocols.crl.refusal`: thisUpdate not ahead, nextUpdate not passed, no
delta, indirect or unknown critical extension), that it speaks for the signer
(:func:`protocols.crl.scope`) and can say "not listed" (:func:`protocols.crl.incomplete`),
and says why the signer must not be trusted: listed (any reason: a VICAL is only as good as
its signer), or no usable CRL to be had (fail closed: a reader that cannot look the signer up
does not take the VICAL). :meth:`reader.trust.TrustStore.import_vical` calls it
(``signer_revocation=``) before it takes any IACA of the VICAL.

A signer certificate that names no http(s) CRL distribution point (one made before the
issuer's signers carried it, a test anchor, or a provider that names a directory entry) is
not looked up: its VICAL is taken on its chain alone, as before.

Each import fetches the CRL afresh (nothing is kept): a reader imports a VICAL at start and
when its bytes change, and a revocation must reach the next import.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from protocols import certs
from protocols import crl as ca_crl
from reader.ds_crl import CrlFetcher, CrlFetchError, HttpCrlFetcher


class VicalSignerCheck:
    """``signer_revocation`` of :meth:`reader.trust.TrustStore.import_vical`: callable on
    (VICAL signer certificate, the VICAL CA that certified it, now); None when the signer is
    not listed on the CRL its certificate names (or names none), else why it is refused."""

    def __init__(self, fetcher: CrlFetcher | None = None) -> None:
        self.fetcher = fetcher or HttpCrlFetcher()
        #: CRLs fetched (each import that looks a signer up fetches once)
        self.fetches = 0

    def __call__(self, signer: x509.Certificate, ca: x509.Certificate, now: dt.datetime) -> str | None:
        url = certs.crl_url(signer)
        if url is None:
            return None
        self.fetches += 1
        try:
            data = self.fetcher(url)
        except CrlFetchError as exc:
            return f"cannot be looked up: the VICAL CA's CRL is unavailable ({exc})"
        try:
            crl = ca_crl.load(data)
        except ca_crl.CrlError as exc:
            return f"cannot be looked up: the VICAL CA's CRL at {url} does not parse: {exc}"
        why = ca_crl.refusal(crl, ca, now, what="the VICAL CA") or ca_crl.scope(signer, crl)
        if why:
            return f"cannot be looked up: the VICAL CA's CRL at {url}: {why}"
        entry = crl.get_revoked_certificate_by_serial_number(signer.serial_number)
        if entry is not None:
            return f"is {ca_crl.revocation_text(entry)} (VICAL CA CRL {url})"
        why = ca_crl.incomplete(crl)
        if why:
            return f"cannot be looked up: the VICAL CA's CRL at {url}: {why}"
        return None
