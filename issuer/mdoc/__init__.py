"""The issuer's mdoc side (ISO/IEC 18013-5): IACA and document signer keys, issuance of
IssuerSigned with a status reference, status lists and their publication.

Modules: :mod:`~issuer.mdoc.pki` (IACA, DS with rollover, status signer),
:mod:`~issuer.mdoc.issuance` (MSOs per phone, idempotent by job reference),
:mod:`~issuer.mdoc.status_lists` (allocation, contents), :mod:`~issuer.mdoc.publication`
(Status List Tokens with ETag and TTL), :mod:`~issuer.mdoc.txn` (retried transactions).
"""
