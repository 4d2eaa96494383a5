"""The revocation lists of reader CAs that a wallet holds, and what they say of a reader.

A reader authentication certificate (ISO/IEC 18013-5 Annex B.1.7) is revoked by its reader
CA on a CRL (RFC 5280): a reader whose key leaked, a counter closed, a relying party no
longer allowed to ask. A wallet cannot fetch a CRL in the middle of a presentation (it may
be offline, and asking the CA would tell it where the holder is), so it holds the lists it
was given beforehand: files its provider pushed, or lists fetched when the wallet started.

Fail closed, once any list is held: a reader certificate is trusted only when a current
list of the CA that issued it (issuer name, signature by that CA's key, thisUpdate not in
the future, nextUpdate not passed), one that speaks for it (RFC 5280 6.3.3 (b)(2): not an
issuingDistributionPoint for CA certificates only, or for another partition), does not
name its serial. A certificate whose CA has no
list here, or only stale ones, is not trusted, and the reason says which. Of several lists
of one CA, the newest (cRLNumber, then thisUpdate) that is current decides. A wallet that
runs for long takes its lists again in the background (:meth:`ReaderCrls.refresh`), as a
wallet app does when its provider publishes new ones.

:class:`ReaderCrls` is a :data:`protocols.mdoc.verify.ReaderRevocation`: the wallet passes it
to reader authentication, where a refusal fails the ``reader_certificate_revocation`` check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

from cryptography import x509

from protocols import crl as ca_crl


class ReaderCrlError(ValueError):
    """A revocation list given to the wallet cannot be used; the message names it and says why."""


class ReaderCrls:
    """The reader CA CRLs a wallet holds (parsed once; judged at every use against the CA
    of the verified path and the wallet's clock)."""

    def __init__(self, crls: Iterable[x509.CertificateRevocationList], *,
                 reload: Callable[[], Iterable[tuple[str, bytes]]] | None = None) -> None:
        """``reload``: where the lists come from again (``(name, bytes)`` pairs, as
        :meth:`load` takes them), for :meth:`refresh`."""
        self.crls = sorted(crls, key=_newest_first)
        self._reload = reload
        #: why the last :meth:`refresh` kept the lists it had, or None
        self.last_error: str | None = None

    @classmethod
    def load(cls, named: Iterable[tuple[str, bytes]], *,
             reload: Callable[[], Iterable[tuple[str, bytes]]] | None = None) -> ReaderCrls:
        """From ``(name, DER or PEM bytes)`` pairs; :class:`ReaderCrlError` names the first
        that is not a CRL."""
        return cls(_parsed(named), reload=reload)

    def refresh(self) -> bool:
        """Take the lists again from where they came (a wallet does this in the background,
        never during a presentation): all of them or, when one cannot be had or read, none,
        keeping the lists held and saying why in :attr:`last_error`. True when replaced."""
        if self._reload is None:
            return False
        try:
            fresh = _parsed(self._reload())
        except (ReaderCrlError, OSError) as exc:
            self.last_error = str(exc)
            return False
        self.crls, self.last_error = sorted(fresh, key=_newest_first), None
        return True

    def __len__(self) -> int:
        return len(self.crls)

    def issuers(self) -> list[str]:
        """The CAs these lists are of (RFC 4514), newest list first, each once."""
        return list(dict.fromkeys(c.issuer.rfc4514_string() for c in self.crls))

    def __call__(self, path: Sequence[x509.Certificate], anchor: x509.Certificate, now: dt.datetime) -> str | None:
        """Why the verified ``path`` (leaf first, ``anchor`` left out) must not be trusted
        at ``now``, or None."""
        crls = self.crls  # one set of lists for the whole path, whatever a refresh does meanwhile
        for i, cert in enumerate(path):
            issuer = path[i + 1] if i + 1 < len(path) else anchor
            why = self._judge(crls, cert, issuer, now)
            if why is not None:
                return why
        return None

    @staticmethod
    def _judge(crls: list[x509.CertificateRevocationList], cert: x509.Certificate, issuer: x509.Certificate,
               now: dt.datetime) -> str | None:
        who = f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:x})"
        ca = issuer.subject.rfc4514_string()
        of_ca = [c for c in crls if c.issuer == cert.issuer]
        if not of_ca:
            return f"{who}: no revocation list of reader CA {ca} is held, so it cannot be checked"
        refused = []
        for crl in of_ca:
            # a list that does not speak for this certificate (issuingDistributionPoint: CA
            # certificates only, another partition) says nothing of it by leaving it out
            why = ca_crl.judge(crl, issuer, now, what="the reader CA") or ca_crl.scope(cert, crl)
            if why is not None:
                refused.append(why)
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                return None
            return f"{who} {ca_crl.revocation_text(entry)} on reader CA {ca}'s CRL{_numbered(crl)}"
        return f"{who}: no current revocation list of reader CA {ca}: {refused[0]}"


def _parsed(named: Iterable[tuple[str, bytes]]) -> list[x509.CertificateRevocationList]:
    out = []
    for name, data in named:
        try:
            out.append(ca_crl.load(data))
        except ca_crl.CrlError as exc:
            raise ReaderCrlError(f"{name}: {exc}") from None
    return out


def _newest_first(crl: x509.CertificateRevocationList) -> tuple[int, float]:
    return -(ca_crl.number(crl) or 0), -crl.last_update_utc.timestamp()


def _numbered(crl: x509.CertificateRevocationList) -> str:
    n = ca_crl.number(crl)
    return "" if n is None else f" number {n}"
