"""The issuer's mdoc side assembled over one database and key store.

The composition root (``mcred/``) builds one :class:`MdocService` per installation and
hands it to the HTTP routers (:mod:`issuer.api.mdoc`), the CLI and the TSM's
``IssuerPort`` (whose ``mdoc_challenge`` / ``issue_mdoc`` are this object's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from cryptography import x509
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import Holder, utcnow
from issuer.mdoc import models as _models  # noqa: F401 - registers the mdoc tables
from issuer.mdoc.issuance import IssuancePolicy, MdocIssuer
from issuer.mdoc.pki import ActiveKey, MdocPki, MdocPkiConfig
from issuer.mdoc.publication import PublishedToken, StatusPublisher
from issuer.mdoc.status_lists import StatusListPolicy, StatusRegistry
from issuer.mdoc.txn import run_transaction


class MdocService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        keystore,
        public_url: str,
        *,
        pki_config: MdocPkiConfig | None = None,
        status_policy: StatusListPolicy | None = None,
        issuance_policy: IssuancePolicy | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        portrait_for: Callable[[Holder], bytes | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.pki = MdocPki(keystore, public_url, pki_config)
        self.registry = StatusRegistry(public_url, status_policy)
        self.issuer = MdocIssuer(sessions, self.pki, self.registry, issuance_policy,
                                 clock=clock, portrait_for=portrait_for)
        self.publisher = StatusPublisher(self.pki, self.registry)

    # -- keys ---------------------------------------------------------------------------

    def setup(self) -> tuple[ActiveKey, ActiveKey, ActiveKey]:
        """IACA, DS and status-list signer, created when missing (idempotent)."""
        return run_transaction(self.sessions, lambda s: self.pki.setup(s, self.clock()))

    def iaca_certificate(self) -> x509.Certificate:
        return run_transaction(self.sessions,
                               lambda s: self.pki.ensure_iaca(s, self.clock()).certificate)

    def iaca_crl(self) -> x509.CertificateRevocationList:
        return run_transaction(self.sessions, lambda s: self.pki.iaca_crl(s, self.clock()))

    def document_signer(self) -> ActiveKey:
        return run_transaction(self.sessions, lambda s: self.pki.document_signer(s, self.clock()))

    def rollover_ds(self) -> ActiveKey:
        return run_transaction(self.sessions, lambda s: self.pki.rollover_ds(s, self.clock()))

    # -- IssuerPort (mdoc half) ---------------------------------------------------------

    def mdoc_challenge(self, job_ref: str, phone_id: str, slot_index: int) -> bytes:
        return self.issuer.mdoc_challenge(job_ref, phone_id, slot_index)

    def issue_mdoc(self, job_ref: str, phone_id: str, slot_index: int,
                   device_public_key_der: bytes, proof: bytes) -> bytes:
        return self.issuer.issue_mdoc(job_ref, phone_id, slot_index, device_public_key_der, proof)

    # -- publication --------------------------------------------------------------------

    def status_token(self, list_id: str, now: dt.datetime | None = None) -> PublishedToken:
        at = now or self.clock()
        return run_transaction(self.sessions, lambda s: self.publisher.token(s, list_id, at))

    def status_token_by_uri(self, uri: str, now: dt.datetime | None = None) -> PublishedToken:
        at = now or self.clock()
        return run_transaction(self.sessions, lambda s: self.publisher.token_by_uri(s, uri, at))
