"""One cache of fetched CRLs for the reader's ``ds_revocation`` (the IACA CRL) and the JPKI
relying party (the JPKI CRLs): the same rules for both.

An entry is kept while it is current: before its nextUpdate, at most ``max_age`` after the
fetch (a revocation is seen at the next fetch, as with any CRL), and not before the fetch
time (a clock that went back refetches); ``max_age`` zero keeps nothing. A CRL without
nextUpdate (RFC 5280 5.1.2.5 requires one; a foreign CA's may lack it) is kept by
``max_age`` alone, never for ever; what it may say is the judges' (it cannot say "good":
:func:`protocols.crl.incomplete`). At most
``size`` entries, least recently used dropped first. Only what the caller's ``fetch`` accepted is kept: a failed fetch, or a CRL
that does not parse or verify, is returned to the caller and asked for again next time.
Fetching happens outside the lock, so one slow distribution point does not hold up the
others; two callers missing the same key at once may both fetch, and the later copy wins.

Each user keeps its own instance and decides what a key is and what its ``fetch`` checks:
the relying party keys by URL and keeps parsed CRLs (their verdict, ``check_crl``, runs on
every use); ``ds_revocation`` keys by (URL, IACA) and keeps only CRLs its ``fetch`` already
verified with that IACA (signature, issuer, thisUpdate), so a hit costs no signature check.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from cryptography import x509

#: A clock this far before the fetch time still counts as after it.
SKEW = dt.timedelta(minutes=5)

F = TypeVar("F")


class CrlCache:
    """Fetched CRLs by key, reused while current (module docstring). Thread-safe."""

    def __init__(self, max_age: dt.timedelta = dt.timedelta(minutes=5), size: int = 16) -> None:
        if size < 1 or max_age < dt.timedelta(0):
            raise ValueError("CrlCache needs size >= 1 and max_age >= 0")
        self.max_age, self.size = max_age, size
        self._entries: OrderedDict[Hashable, tuple[x509.CertificateRevocationList, dt.datetime]] = OrderedDict()
        self._lock = threading.Lock()
        #: CRLs fetched (whatever became of them): for tests and metrics.
        self.fetches = 0

    def get(self, key: Hashable, at: dt.datetime,
            fetch: Callable[[Hashable], x509.CertificateRevocationList | F]) -> x509.CertificateRevocationList | F:
        """The CRL kept under ``key`` while current at ``at``, else ``fetch(key)``: a CRL it
        returns is kept, anything else (the caller's failure value) is returned as it is."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                crl, fetched = hit
                if self._current(crl, fetched, at):
                    self._entries.move_to_end(key)
                    return crl
                del self._entries[key]
        got = fetch(key)
        with self._lock:
            self.fetches += 1
            if isinstance(got, x509.CertificateRevocationList) and self.max_age > dt.timedelta(0):
                self._entries[key] = (got, at)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return got

    def _current(self, crl: x509.CertificateRevocationList, fetched: dt.datetime, at: dt.datetime) -> bool:
        return (-SKEW <= at - fetched <= self.max_age
                and (crl.next_update_utc is None or at <= crl.next_update_utc))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
