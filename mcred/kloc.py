"""Rotating the TSM's KLOC CA (specs/tsm.md, "Rotating the KLOC CA"): the CA whose OCE
certificates the SEs take key loading from (SCP11a) is replaced, then each SE the TSM
reaches is moved to it (a ``rotate-kloc`` job: PUT KEY of the SE's CA-KLOC key), so that
whoever holds the old CA's key loads nothing onto them. A factory-fresh SE that still names
the old CA is met with the TSM's retired chain and moved in its first contact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select

import wallet_sim
from mcred.context import ConfigError, Context, master_key_store
from tsm.errors import JobInputError
from tsm.jobs import JobView, Tsm, list_jobs


def rotate_ca(ctx: Context) -> tuple[x509.Certificate, x509.Certificate]:
    """Replace the installation's KLOC CA (``<home>/tsm-oce/``; :func:`tsm.oce.rotate_kloc_ca`):
    a new CA certifies the TSM's key (the file key, or the HSM's under
    ``MCRED_TSM_MASTER_KEY=pkcs11``); the old chain is kept as retired. Returns (old CA, new
    CA). New phones of this installation's factory name the new CA from then on."""
    from tsm.oce import OceError, rotate_kloc_ca

    key = None
    if master_key_store() == "pkcs11":
        from tsm.hsm import HsmOceKey

        key = HsmOceKey.from_env()
    try:
        return rotate_kloc_ca(ctx.home, key)
    except OceError as exc:
        raise ConfigError(f"the TSM's OCE identity: {exc}") from None


@dataclass(frozen=True)
class Move:
    """One SE's rotate-kloc job: what it found and did (``kloc``: replaced; current; stale:
    a check found another CA; none: the SE's issuer named no OCE)."""

    phone_id: str
    job_id: str
    kloc: str
    old_ca_ski: str | None
    ca_ski: str | None

    def summary(self) -> dict[str, Any]:
        return {"phone": self.phone_id, "job": self.job_id, "kloc": self.kloc,
                "old_ca_ski": self.old_ca_ski, "ca_ski": self.ca_ski}


def check_movable(ctx: Context, phone_id: str) -> None:
    """Refuse (:class:`tsm.errors.JobInputError`) an SE the TSM never keyed: it has no
    record of it, or only a new one (a factory-fresh SE is moved at its first contact, by
    whatever job makes it). Checked before anything reaches the phone (over the air, before
    a session is opened for it)."""
    from tsm import records

    rec = records.load(ctx.engine, phone_id)
    if rec is None or rec.state == "new":
        raise JobInputError(f"the TSM has not keyed the SE of phone {phone_id}: there is nothing to move yet "
                            "(its first contact shows the chain of the CA it names and moves it)")


def move_se(ctx: Context, phone_id: str, *, actor: str = "mcred", check: bool = False,
            transmit: Callable[[bytes], bytes] | None = None, trace: Any = None) -> Move:
    """Move one phone's SE to the TSM's current KLOC CA: a ``rotate-kloc`` job (an
    unfinished one of that phone's is resumed rather than another made). Idempotent: an SE
    already there is left as it is. Raises :class:`tsm.errors.TsmError` as jobs do (the job
    stays resumable), :class:`tsm.errors.JobInputError` for an SE the TSM never keyed
    (:func:`check_movable`); the phone must be in this data directory unless ``transmit`` is
    given. ``check``: only read which CA the SE names (``kloc``: current or stale), over the
    TSM's authenticated session; nothing is changed."""
    check_movable(ctx, phone_id)
    trust = ctx.tsm_trust()
    if trust.get("oce") is None:
        raise ConfigError("the TSM has no OCE identity to move SEs to: MCRED_TSM_FIRST_CONTACT is "
                          "scp11 (default) or scp11a")
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit
    tsm = Tsm(ctx.engine, ctx.master_key, actor=actor, **trust)
    left = [j for j in list_jobs(ctx.engine, phone_id, kind="rotate-kloc", unfinished=True)
            if bool(j.input.get("check")) == check]
    job = left[-1].id if left else tsm.create_job(phone_id, "rotate-kloc", {"check": check})
    view: JobView = tsm.run(job, transmit, trace=trace)
    r = view.results.get("replace-kloc", {})
    return Move(phone_id, view.id, r.get("kloc", "?"), r.get("old_ca_ski"), r.get("ca_ski"))


def known_phones(ctx: Context) -> list[tuple[str, str]]:
    """The SEs the TSM has a record of, with their record's state (new: never reached;
    active; suspect: quarantined), by phone id."""
    from tsm.db import SecureElementRow

    with ctx.engine.connect() as conn:
        return [(r.se_id, r.state) for r in conn.execute(
            select(SecureElementRow.se_id, SecureElementRow.state).order_by(SecureElementRow.se_id))]
