"""The installation's mdoc issuer, built once per data directory, database and public URL.

Beside :mod:`mcred.jpki_flow`: every caller (CLI, provisioning, drills, the HTTP service)
gets the same :class:`issuer.mdoc.service.MdocService`, configured the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from issuer.mdoc.issuance import IssuancePolicy
from issuer.mdoc.pki import MdocPkiConfig
from issuer.mdoc.service import MdocService
from mcred.context import ConfigError, Context
from protocols import cardsub

_SERVICES: dict[tuple, MdocService] = {}


def portrait_path(home: Path, holder_id: str) -> Path:
    """Where provisioning keeps a holder's portrait (the registry stores no JPEG)."""
    return Path(home) / "portraits" / f"{holder_id}.jpg"


def _portraits(home: Path) -> Callable[[Any], bytes | None]:
    def portrait_for(holder_row: Any) -> bytes | None:
        p = portrait_path(home, holder_row.id)
        return p.read_bytes() if p.is_file() else None

    return portrait_for


def age_over_setting() -> tuple[int, ...]:
    """The NN of the age_over_NN elements mdocs are issued with: 18 and 20, and those
    ``$MCRED_MDOC_AGE_OVER`` lists (comma-separated, ``65`` or ``15,65``). Raises
    :class:`ConfigError` naming the setting when an entry is not an NN of 1 to 99."""
    raw = os.environ.get("MCRED_MDOC_AGE_OVER", "")
    extra = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        if not (part.isascii() and part.isdigit() and 0 < int(part) < 100):
            raise ConfigError(f"MCRED_MDOC_AGE_OVER={raw[:80]!r}: {part[:20]!r} is not an age of 1 to 99 "
                              "(a comma-separated list, such as 15,65)")
        extra.append(int(part))
    return cardsub.check_age_thresholds(extra)


def mdoc_service(ctx: Context) -> MdocService:
    """The installation's mdoc issuer (one per data directory, database and public URL),
    reading holders' portraits from ``<home>/portraits``.

    ``$MCRED_MDOC_ALG`` picks ES256 (default) or ES384 for keys created from now on;
    ``$MCRED_MDOC_IDENTIFIER_LIST=1`` puts an ``identifier_list`` reference into MSOs issued
    from now on, beside the status list reference (specs/status-list.md);
    ``$MCRED_MDOC_AGE_OVER`` (:func:`age_over_setting`) adds age_over_NN elements to 18 and 20.
    """
    key = ctx.clocked((str(ctx.home), ctx.database, ctx.public_url))
    if key not in _SERVICES:
        config = MdocPkiConfig(algorithm=os.environ.get("MCRED_MDOC_ALG", "ES256"))
        policy = IssuancePolicy(identifier_list=os.environ.get(
            "MCRED_MDOC_IDENTIFIER_LIST", "").strip().lower() in ("1", "true", "yes", "on"),
                                age_over=age_over_setting())
        _SERVICES[key] = MdocService(ctx.sessions, ctx.keystore, ctx.public_url,
                                     pki_config=config, issuance_policy=policy,
                                     portrait_for=_portraits(ctx.home), **ctx.clock_option())
    return _SERVICES[key]
