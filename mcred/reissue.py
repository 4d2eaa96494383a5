"""New MSOs for every phone whose mdocs a compromised signer vouched for.

After a document signer is revoked (``mcred mdoc ds revoke``) or an IACA taken out of trust
(``mcred mdoc iaca revoke``), every MSO it signed is refused by readers, and each phone
holding one needs fresh MSOs under the current signers. :func:`reissue_signed_by` finds
those phones in the registry and refreshes each (:func:`mcred.provision.refresh_mdocs`: new
device keys born in the SE, the old MSOs superseded), phone by phone, so that one phone
refused (its holder's card ended, a credential on hold, an SE that cannot be read) stops
nothing else. It is its own resumption: run again, it finds only the phones that still hold
a valid mdoc of that signer (a refresh that stopped half-way is finished by
``refresh_mdocs`` itself). A phone whose mdocs of the signer are on hold (reported lost) is
named and left: its refresh would be refused; it is re-issued by a run after the hold is
released (a phone found), and needs none once the loss is confirmed (revoked).

Over the air (``links``: a GP SERAM session per phone whose SE is not in this installation,
:func:`phones_away`), each such phone is refreshed through its Local Agent
(``mcred phone agent``) in its own session, beside the phones refreshed here. A phone whose
agent never joins its session within the link's connect timeout is ``unreached`` and stops
nothing else; its session is ended as every other is (:func:`mcred.ota.run_over`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tsm.seram import SeramLink

#: What became of one phone.
REISSUED, REFUSED, NOT_HERE, ON_HOLD = "reissued", "refused", "not-here", "on-hold"
#: over the air: the phone's Local Agent never joined its session (nothing reached its SE)
UNREACHED = "unreached"
#: the word the sessions' last notification starts with (``reissue/done/OK``)
WHAT = "reissue"


@dataclass(frozen=True)
class PhoneReissue:
    phone_id: str
    outcome: str
    #: the refresh job and the new MSOs (``reissued``), or why not
    job_id: str | None = None
    mdocs: int = 0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"phone": self.phone_id, "outcome": self.outcome, "job": self.job_id, "mdocs": self.mdocs,
                "detail": self.detail}


@dataclass(frozen=True)
class ReissueReport:
    """The signer (label, purpose, reason it was revoked for, if it was) and each phone."""

    signer: str
    purpose: str
    revoked: str | None
    phones: tuple[PhoneReissue, ...] = field(default=())
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        """Whether every phone holding an mdoc of the signer got new ones."""
        return all(p.outcome == REISSUED for p in self.phones)

    def count(self, outcome: str) -> int:
        return sum(1 for p in self.phones if p.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        return {"signer": self.signer, "purpose": self.purpose, "revoked": self.revoked, "done": self.done,
                "reissued": self.count(REISSUED), "refused": self.count(REFUSED),
                "not_here": self.count(NOT_HERE), "on_hold": self.count(ON_HOLD), "unreached": self.count(UNREACHED),
                "phones": [p.to_json() for p in self.phones],
                "seconds": round(self.seconds, 3)}


def check_reissue(svc: Any, ref: str) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:  # noqa: ANN401
    """The signer ``ref`` names, its phones and its phones on hold
    (:meth:`issuer.mdoc.service.MdocService.signed_by`), when a re-issue may start: raises
    :class:`issuer.mdoc.errors.UnknownSigner` for a ``ref`` that names none, and
    :class:`mcred.provision.ProvisionError` for the signer signing now (the new MSOs would be
    its own again) or while the current IACA can sign no MSO (in its last months, or ended:
    roll it over first)."""
    from mcred.provision import ProvisionError

    info, phones, held = svc.signed_by(ref)
    if info.active:
        what, how = (("IACA", "mcred mdoc iaca revoke, or mcred mdoc iaca rollover") if info.purpose == "iaca"
                     else ("document signer", "mcred mdoc ds revoke, or mcred mdoc ds rollover"))
        raise ProvisionError(f"{info.label} is the {what} signing now: a re-issue would have it sign the new "
                             f"MSOs again; revoke it or roll it over first ({how})")
    refusal = svc.issuance_refusal()
    if refusal is not None and phones:
        raise ProvisionError(f"no MSO can be signed now, so no phone is re-issued: {refusal}")
    return info, phones, held


def phones_away(ctx: Any, ref: str) -> tuple[str, ...]:  # noqa: ANN401 - a Context
    """The phones a re-issue of ``ref`` would have to reach over the air: those of
    :func:`check_reissue` (which raises as it does) whose SE is not under ``ctx.home``."""
    import wallet_sim
    from mcred.mdoc_flow import mdoc_service

    _, phones, _ = check_reissue(mdoc_service(ctx), ref)
    here = set(wallet_sim.list_phones(ctx.home))
    return tuple(p for p in phones if p not in here)


def reissue_signed_by(ctx: Any, ref: str, *, actor: str = "mcred", workers: int = 4,  # noqa: ANN401 - a Context
                      progress: Callable[[PhoneReissue, int, int], None] | None = None,
                      links: Mapping[str, SeramLink] | None = None,
                      stop_wait_s: float | None = None) -> ReissueReport:
    """Refresh the MSOs of every phone holding a valid mdoc signed by ``ref`` (a document
    signer's label or serial; an IACA's label, number or serial: by any document signer it
    issued; not the one signing now: :func:`check_reissue`), ``workers`` phones at a time;
    ``progress(phone's outcome, phones done, phones in all)`` after each. A phone of the
    registry whose SE is not on this machine (provisioned over the air) is refreshed through
    its GP SERAM session in ``links`` (phone id to the session opened for it, as
    :func:`phones_away` names them), or else reported ``not-here``. Each session ends with
    ``reissue/done/OK`` or ``reissue/stopped/<error>`` (``stop_wait_s``: how long its phone
    is given to collect it, :data:`mcred.ota.STOP_WAIT_S` by default); a session whose phone
    needs nothing by the time the run looks (re-issued meanwhile, put on hold) is ended too.
    A phone whose agent never joined is ``unreached``."""
    import threading

    import wallet_sim
    from issuer.mdoc.errors import IssuerMdocError
    from mcred.mdoc_flow import mdoc_service
    from mcred.ota import STOP_WAIT_S, run_over
    from mcred.provision import ProvisionError, refresh_mdocs
    from tsm.errors import MasterKeyError, TransportError, TsmError
    from tsm.jobs import list_jobs

    t0 = time.perf_counter()
    links = dict(links or {})
    wait_s = STOP_WAIT_S if stop_wait_s is None else stop_wait_s
    taken: set[str] = set()
    held: tuple[str, ...] = ()
    stopped = ""
    try:
        info, phones, held = check_reissue(mdoc_service(ctx), ref)
        here = set(wallet_sim.list_phones(ctx.home))
        lock, finished = threading.Lock(), [0]
        again = f"mcred mdoc reissue --signer {info.label} --over-the-air"

        def unreached(phone: str, link: SeramLink) -> PhoneReissue:
            left = list_jobs(ctx.engine, phone, kind="refresh-mdoc", unfinished=True)
            return PhoneReissue(
                phone, UNREACHED, left[-1].id if left else None,
                detail=f"its GP SERAM agent did not join session {link.session_id} within "
                       f"{link.connect_timeout_s:g} s, so nothing reached its SE: run `{again}` again once "
                       f"the phone is on" + (f" (its stopped refresh job {left[-1].id} is finished then)"
                                             if left else ""))

        def one(phone: str) -> PhoneReissue:
            link = links.get(phone) if phone not in here else None
            if phone not in here and link is None:
                out = PhoneReissue(phone, NOT_HERE, detail=f"its SE is not under {ctx.home}: re-issue it over the "
                                                           f"air (`{again}`)")
            else:
                try:
                    if link is None:
                        r = refresh_mdocs(ctx, phone, actor=actor)
                    else:
                        with lock:
                            taken.add(phone)
                        r = run_over(link, lambda transmit: refresh_mdocs(ctx, phone, actor=actor, transmit=transmit),
                                     what=WHAT, stop_wait_s=wait_s)
                    out = PhoneReissue(phone, REISSUED, r.job_id, len(r.issued),
                                       "a stopped refresh finished" if r.resumed else "")
                except MasterKeyError:
                    raise  # the installation's key, not this phone's: every other phone would fail too
                except (ProvisionError, TsmError, IssuerMdocError, wallet_sim.SeError) as exc:
                    # a lost first order: the phone's agent never came (a job refused before
                    # it sent anything, a busy SE, is refused as here)
                    out = (unreached(phone, link) if link is not None and not link.reached
                           and isinstance(exc, TransportError) else PhoneReissue(phone, REFUSED, detail=str(exc)))
            if progress is not None:
                with lock:
                    finished[0] += 1
                    progress(out, finished[0], len(phones))
            return out

        if workers <= 1 or len(phones) <= 1:
            done = [one(p) for p in phones]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                done = list(pool.map(one, phones))
        waiting = tuple(PhoneReissue(p, ON_HOLD, detail="its mdocs of this signer are on hold (a phone reported "
                                                        "lost): run this again once they are released (mcred "
                                                        "release), or they are revoked when the loss is confirmed")
                        for p in held)
    except BaseException as exc:
        stopped = type(exc).__name__
        raise
    finally:  # a session no phone was refreshed through (it needs nothing now, or the run
        # stopped first): its phone is told, and let go
        for phone, link in links.items():
            if phone not in taken:
                link.close(f"{WHAT}/stopped/{stopped}" if stopped else f"{WHAT}/stopped/on-hold" if phone in held
                           else f"{WHAT}/done/OK", wait_s=wait_s)
    return ReissueReport(info.label, info.purpose, info.reason, tuple(done) + waiting, time.perf_counter() - t0)
